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
import time

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

    def test_fast_reader_replaces_do_read(self) -> None:
        """A registered fast reader gets the readable event; doRead is not called."""
        reader, peer = self._reader()
        fast: list[bytes] = []
        self.reactor.add_fast_reader(reader, lambda: fast.append(reader.sock.recv(100)))
        peer.send(b"quick")
        self.reactor.doIteration(1)
        self.assertEqual((fast, reader.got), ([b"quick"], []))

    def test_fast_reader_reason_and_exception_disconnect(self) -> None:
        """A fast reader's reason ends the descriptor; its exception is logged and ends it too."""
        done, done_peer = self._reader()
        bad, bad_peer = self._reader()
        self.reactor.add_fast_reader(done, lambda: ConnectionDone())
        self.reactor.add_fast_reader(bad, lambda: 1 / 0)
        done_peer.send(b"a")
        bad_peer.send(b"b")
        self.reactor.doIteration(1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(done.lost[0].check(ConnectionDone))
        self.assertTrue(bad.lost[0].check(ZeroDivisionError))
        self.assertNotIn(bad, self.reactor.getReaders())

    def test_stale_fast_reader_dropped(self) -> None:
        """An entry whose descriptor number now belongs to another selectable is ignored and dropped."""
        reader, peer = self._reader()
        other = _Reader(self.reactor, reader.sock)
        self.reactor.add_fast_reader(other, lambda: self.fail("stale fast reader called"))
        peer.send(b"x")
        self.reactor.doIteration(1)
        self.assertEqual((reader.got, self.reactor._fast), ([b"x"], {}))

    def test_removed_fast_reader_not_used(self) -> None:
        """After remove_fast_reader the normal doRead is back."""
        reader, peer = self._reader()
        self.reactor.add_fast_reader(reader, lambda: self.fail("removed fast reader called"))
        self.reactor.remove_fast_reader(reader)
        peer.send(b"y")
        self.reactor.doIteration(1)
        self.assertEqual(reader.got, [b"y"])

    def test_burst_of_fast_events_still_runs_timers(self) -> None:
        """Polling again after fast events stops for a timed call that fell due meanwhile."""
        reader, peer = self._reader()
        fired: list[bool] = []
        self.reactor._stopped = False  # as while running: bursts are polled on
        self.reactor.callLater(0.05, fired.append, True)
        self.reactor.runUntilCurrent()  # the call is now pending

        def read() -> None:
            reader.sock.recv(100)
            peer.send(b"more")  # keeps the descriptor readable: fast events forever

        self.reactor.add_fast_reader(reader, read)
        peer.send(b"go")
        started = time.monotonic()
        self.reactor.doIteration(5)  # returns once the 50 ms call is due, not after 5 s
        self.reactor.runUntilCurrent()
        self.assertEqual(fired, [True])
        self.assertLess(time.monotonic() - started, 4)

    def test_timer_added_by_a_fast_reader_ends_the_burst(self) -> None:
        """A call scheduled from a fast reader returns control to the main loop at once."""
        reader, peer = self._reader()
        self.reactor._stopped = False  # as while running: bursts are polled on
        calls: list[int] = []

        def read() -> None:
            reader.sock.recv(100)
            self.reactor.callLater(0, calls.append, 1)
            peer.send(b"again")

        self.reactor.add_fast_reader(reader, read)
        peer.send(b"x")
        self.reactor.doIteration(5)
        self.reactor.runUntilCurrent()
        self.assertEqual(calls, [1])

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


class FastReadsChoiceTests(SynchronousTestCase):
    """fast_io registers only plain TCP connections and SerialPorts, on a reactor offering it."""

    def test_not_for_wrappers_fakes_or_other_reactors(self) -> None:
        """A TLS wrapper, a test transport or a reactor without fast readers: nothing registered."""
        from twisted.internet.interfaces import ISSLTransport
        from twisted.internet.testing import MemoryReactor, StringTransport
        from zope.interface import implementer

        from nport_twisted._txinternals import fast_io

        calls: list[object] = []

        class Offering:
            def add_fast_reader(self, selectable: object, read: object) -> None:
                calls.append(selectable)

        @implementer(ISSLTransport)
        class Tls(FileDescriptor):
            pass

        self.assertFalse(fast_io(MemoryReactor(), StringTransport()))
        self.assertFalse(fast_io(Offering(), StringTransport()))
        self.assertFalse(fast_io(Offering(), Tls()))
        self.assertEqual(calls, [])


class SerialGatherTests(SynchronousTestCase):
    """A SerialPort on FastEPollReactor: its fast reads gather what a busy pty holds."""

    def setUp(self) -> None:
        if _reactor.FastEPollReactor is None:
            raise SkipTest("no epoll here")
        import pty
        import tty

        from twisted.internet.protocol import Protocol
        from twisted.internet.serialport import SerialPort

        from nport_twisted._txinternals import fast_io

        self.reactor = _reactor.FastEPollReactor()
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.addCleanup(os.close, self.master)
        self.chunks: list[bytes] = []
        chunks = self.chunks

        class Collect(Protocol):
            def dataReceived(self, data: bytes) -> None:
                chunks.append(data)

        self.port = SerialPort(Collect(), os.ttyname(slave), self.reactor, baudrate=921600)
        os.close(slave)
        self.addCleanup(self._close)
        self.assertTrue(fast_io(self.reactor, self.port))

    def _close(self) -> None:
        self.reactor.removeAll()
        self.port._serial.close()
        self.reactor._poller.close()

    def test_busy_pty_gathered(self) -> None:
        """12 KiB waiting in the pty arrive in order in fewer deliveries than 4 KiB reads."""
        data = bytes(range(256)) * 48
        os.set_blocking(self.master, False)
        sent = 0
        for _ in range(200):  # the pty holds a few KiB: write what fits, then let it be read
            try:
                sent += os.write(self.master, data[sent:])
            except BlockingIOError:
                pass
            if sent == len(data) and sum(map(len, self.chunks)) >= len(data):
                break
            self.reactor.doIteration(0.05)
        self.assertEqual(b"".join(self.chunks), data)
        reads = len(data) // 4095 + 1
        self.assertLess(len(self.chunks), reads + 1)
        self.assertTrue(any(len(c) > 4095 for c in self.chunks), [len(c) for c in self.chunks])

    def test_short_read_delivered_alone(self) -> None:
        """A few bytes are delivered from one read, as they came."""
        os.write(self.master, b"abc")
        self.reactor.doIteration(1)
        self.assertEqual(self.chunks, [b"abc"])
