# -*- test-case-name: tests.test_reactor -*-
"""
Tests for L{nport_twisted._reactor} (the epoll reactor with the cheaper
dispatch) and for keeping the TLS stack out of a process that serves no TLS
(L{nport_twisted._txinternals.import_without_tls}, L{enable_tls}).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from nport_twisted import _reactor

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Reader(FileDescriptor):
    """One end of a socket pair, registered for reading; records what happens."""

    def __init__(self, reactor: object, sock: socket.socket, fail: bool = False) -> None:
        super().__init__(reactor)  # type: ignore[arg-type]
        self.sock = sock
        self.fail = fail
        self.connected = True
        self.got: list[bytes] = []
        self.lost: list[Failure] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        data = self.sock.recv(100)
        if self.fail:
            raise ValueError("reader bug")
        self.got.append(data)

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason)
        super().connectionLost(reason)


class FastReactorTests(SynchronousTestCase):
    """FastEPollReactor dispatches as Twisted's epoll reactor does, minus callWithLogger."""

    def setUp(self) -> None:
        if _reactor.FastEPollReactor is None:
            raise SkipTest("no epoll here")
        self.reactor = _reactor.FastEPollReactor()
        self.addCleanup(self._close)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []

    def _close(self) -> None:
        for r in list(self.reactor.getReaders()):
            self.reactor.removeReader(r)
        self.reactor._poller.close()
        for a, b in self.pairs:
            a.close()
            b.close()

    def _reader(self, fail: bool = False) -> tuple[_Reader, socket.socket]:
        a, b = socket.socketpair()
        self.pairs.append((a, b))
        reader = _Reader(self.reactor, a, fail)
        self.reactor.addReader(reader)
        return reader, b

    def test_ready_descriptor_read(self) -> None:
        """A readable descriptor gets doRead in one poll."""
        reader, peer = self._reader()
        peer.send(b"ping")
        self.reactor.doIteration(1)
        self.assertEqual(reader.got, [b"ping"])

    def test_exception_disconnects_only_that_descriptor(self) -> None:
        """doRead raising is logged and ends that descriptor; another one in the same poll is served."""
        bad, bad_peer = self._reader(fail=True)
        good, good_peer = self._reader()
        bad_peer.send(b"x")
        good_peer.send(b"y")
        self.reactor.doIteration(1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(len(bad.lost), 1)
        self.assertNotIn(bad, self.reactor.getReaders())
        self.assertEqual((good.got, good.lost), ([b"y"], []))

    def test_read_returning_a_reason_disconnects(self) -> None:
        """A doRead returning a reason (the peer closed) ends the descriptor with that reason."""
        reader, peer = self._reader()
        reader.doRead = lambda: ConnectionDone()  # type: ignore[assignment,method-assign,return-value]
        peer.send(b"bye")
        self.reactor.doIteration(1)
        self.assertEqual(len(reader.lost), 1)
        self.assertTrue(reader.lost[0].check(ConnectionDone))
        self.assertNotIn(reader, self.reactor.getReaders())

    def test_install_default_leaves_an_installed_reactor(self) -> None:
        """With a global reactor installed (trial's), install_default changes nothing."""
        from twisted.internet import reactor

        self.assertFalse(_reactor.install_default())
        from twisted.internet import reactor as after
        self.assertIs(after, reactor)


def _run(code: str) -> dict[str, object]:
    """Run C{code} in a fresh interpreter (no reactor, nothing imported); its JSON output."""
    env = dict(os.environ, PYTHONPATH=_ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60, cwd=_ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


class FreshProcessTests(SynchronousTestCase):
    """What a fresh twistd/twist process gets: our reactor, and no TLS stack until TLS is used."""

    def test_options_install_fast_reactor_without_tls(self) -> None:
        """Parsing our options installs FastEPollReactor and imports no pyOpenSSL."""
        if _reactor.FastEPollReactor is None:
            raise SkipTest("no epoll here")
        result = _run(
            "import json, sys\n"
            "from nport_twisted.tap import Options\n"
            "o = Options(); o.parseOptions(['--ports', '/nonexistent/ttyX', '--mode', 'tcp-server'])\n"
            "from twisted.internet import reactor\n"
            "print(json.dumps({'reactor': type(reactor).__name__,\n"
            "                  'openssl': 'OpenSSL' in sys.modules}))\n")
        self.assertEqual(result, {"reactor": "FastEPollReactor", "openssl": False})

    def test_twisted_reactor_flag(self) -> None:
        """--twisted-reactor leaves the choice to Twisted (its default epoll reactor)."""
        result = _run(
            "import json\n"
            "from nport_twisted.tap import Options\n"
            "o = Options(); o.parseOptions(['--ports', '/nonexistent/ttyX', '--twisted-reactor'])\n"
            "from twisted.internet import reactor\n"
            "print(json.dumps({'reactor': type(reactor).__name__}))\n")
        self.assertNotEqual(result["reactor"], "FastEPollReactor")

    def test_enable_tls_makes_ssl_listeners_work(self) -> None:
        """After enable_tls, an ssl: endpoint listens and a TLS handshake completes on loopback."""
        try:
            import OpenSSL  # noqa: F401
        except ImportError:
            raise SkipTest("pyOpenSSL is not installed") from None
        result = _run(
            "import json, sys\n"
            "from nport_twisted.tap import Options\n"
            "o = Options(); o.parseOptions(['--ports', '/nonexistent/ttyX', '--mode', 'tcp-server'])\n"
            "before = 'OpenSSL' in sys.modules\n"
            "from twisted.internet import reactor, endpoints, protocol, task, ssl\n"
            "from twisted.internet.interfaces import IReactorSSL\n"
            "import tempfile, os\n"
            "from nport_twisted.config.tls import tls_endpoint_options\n"
            "opts = tls_endpoint_options(tempfile.mkdtemp())\n"
            "class Echo(protocol.Protocol):\n"
            "    def dataReceived(self, d): self.transport.write(d)\n"
            "port = endpoints.serverFromString(reactor, 'ssl:0:interface=127.0.0.1' + opts)\n"
            "got = []\n"
            "class C(protocol.Protocol):\n"
            "    def connectionMade(self): self.transport.write(b'hello')\n"
            "    def dataReceived(self, d):\n"
            "        got.append(d); self.transport.loseConnection(); reactor.stop()\n"
            "def go(p):\n"
            "    ep = endpoints.wrapClientTLS(ssl.CertificateOptions(verify=False),\n"
            "        endpoints.TCP4ClientEndpoint(reactor, '127.0.0.1', p.getHost().port))\n"
            "    endpoints.connectProtocol(ep, C())\n"
            "port.listen(protocol.Factory.forProtocol(Echo)).addCallback(go)\n"
            "reactor.callLater(20, reactor.stop)\n"
            "reactor.run()\n"
            "print(json.dumps({'before': before, 'ssl': IReactorSSL.providedBy(reactor),\n"
            "                  'got': b''.join(got).decode()}))\n")
        self.assertEqual(result, {"before": False, "ssl": True, "got": "hello"})
