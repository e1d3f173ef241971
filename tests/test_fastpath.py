"""
The dedicated relay's fast paths on real transports (issue 14): a direct
write to a plain TCP socket goes out at once and in order, and falls back
to Twisted's queue whenever that would not be what C{transport.write}
does now (bytes queued ahead, TLS started, a TLS listener, several
sessions).  The fakes of test_tcpserver/test_serialdev prove the
decisions; these prove them on the sockets and TLS wrappers the service
really gets.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import Any

from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from nport_twisted._txinternals import direct_writer, unsent_bytes
from nport_twisted.config.settings import (
    AccessibleIPSettings,
    OperatingSettings,
    OpMode,
    SerialSettings,
)
from nport_twisted.config.tls import server_tls
from nport_twisted.device.channel import SerialChannel
from nport_twisted.net.listener import ListenerService, NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.testing import FakeSerialDevice
from tests.e2e_util import poll_until


class _Accepted(Protocol):
    """Records the server side of each accepted connection."""

    def __init__(self, accepted: list[_Accepted]) -> None:
        self.accepted = accepted

    def connectionMade(self) -> None:
        self.accepted.append(self)


def _recv_some(sock: socket.socket, into: bytearray) -> bool:
    """Read what is there without blocking; False once the peer has closed."""
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        into += chunk


class DirectWriterTcpTests(TestCase):
    """_txinternals.direct_writer on Twisted's own tcp.Server connections over loopback."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.accepted: list[_Accepted] = []
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: _Accepted(self.accepted)),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        self.addCleanup(self.client.close)

    @defer.inlineCallbacks
    def _server_transport(self) -> Any:
        yield poll_until(lambda: bool(self.accepted), 10, what="the connection to be accepted")
        transport = self.accepted[0].transport
        self.addCleanup(transport.abortConnection)
        return transport

    @defer.inlineCallbacks
    def test_written_at_once(self) -> Any:
        """A plain idle connection: the bytes are in the peer's socket when the call returns."""
        transport = yield self._server_transport()
        write = direct_writer(transport)
        self.assertIsNotNone(write)
        assert write is not None
        self.assertTrue(write(b"now"))
        self.assertEqual(unsent_bytes(transport), 0)
        self.assertEqual(self.client.recv(10), b"now")  # no reactor turn in between

    @defer.inlineCallbacks
    def test_queued_ahead_refused_and_order_kept(self) -> Any:
        """Bytes queued by transport.write: the writer refuses; after the drain it sends again."""
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # no autotuning
        transport = yield self._server_transport()
        write = direct_writer(transport)
        assert write is not None
        bulk = os.urandom(32 << 20)  # far more than loopback's socket buffers hold
        transport.write(bulk)
        self.assertFalse(write(b"X"))  # Twisted has not even tried: the bulk is queued
        yield poll_until(lambda: 0 < unsent_bytes(transport) < len(bulk), 10,
                         what="the kernel to take part of the bulk")
        self.assertFalse(write(b"Y"))  # what the kernel did not take is still queued

        def read_all() -> bytes:
            got = bytearray()
            while len(got) < len(bulk) + 1:
                chunk = self.client.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            return bytes(got)
        self.client.settimeout(30)
        reader = threads.deferToThread(read_all)
        yield poll_until(lambda: unsent_bytes(transport) == 0, 30, what="the bulk to drain")
        self.assertTrue(write(b"Z"))
        got = yield reader
        self.assertEqual(bytes(got), bulk + b"Z")

    @defer.inlineCallbacks
    def test_tls_started_refused(self) -> Any:
        """After startTLS an earlier writer refuses (no plaintext sent); no new one is made."""
        transport = yield self._server_transport()
        write = direct_writer(transport)
        assert write is not None
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        transport.startTLS(server_tls(state))
        self.assertFalse(write(b"plaintext"))
        self.assertIsNone(direct_writer(transport))
        self.client.setblocking(False)
        got = bytearray()
        _recv_some(self.client, got)
        self.assertEqual(bytes(got), b"")  # a TLS server says nothing before the client hello

    @defer.inlineCallbacks
    def test_closing_refused(self) -> Any:
        """A connection told to close refuses: its close is not overtaken."""
        transport = yield self._server_transport()
        write = direct_writer(transport)
        assert write is not None
        transport.loseConnection()
        self.assertFalse(write(b"late"))


class _ModeTestCase(TestCase):
    """A mode's front-end on the real reactor and loopback, with a fake serial device."""

    timeout = 60

    def start(self, mode: OpMode, **operating: Any) -> tuple[FakeSerialDevice, SerialChannel, int]:
        from twisted.internet import reactor

        from nport_twisted.server import frontend_builders

        state_dir = os.path.abspath(self.mktemp())
        os.makedirs(state_dir)
        device = FakeSerialDevice(lines=None)
        channel = SerialChannel(0, device.path, SerialSettings(), reactor, device.opener,
                                keep_open=True)
        channel.startService()
        self.addCleanup(lambda: (channel.stopService(), device.close_complete()))
        ctx = PortContext(index=0, channel=channel,
                          operating=OperatingSettings(mode=mode, **operating),
                          reactor=reactor,
                          endpoint=lambda proto, port: f"{proto}:0:interface=127.0.0.1",
                          net=NetTable(), accessible=AccessibleIPSettings, state_dir=state_dir)
        front = frontend_builders()[mode](ctx)
        front.startService()
        self.addCleanup(front.stopService)
        ports = [s.port.getHost().port for s in service.IServiceCollection(front)
                 if isinstance(s, ListenerService) and s.port is not None]
        return device, channel, ports[0]

    def connect(self, port: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(sock.close)
        return sock


class DedicatedRelayTcpServerTests(_ModeTestCase):
    """TCP Server mode: the lone plain session uses the dedicated relay; others do not."""

    @defer.inlineCallbacks
    def test_one_plain_session_direct(self) -> Any:
        """One session on a plain socket: device bytes go out through its direct sender."""
        device, channel, port = self.start(OpMode.TCP_SERVER)
        client = self.connect(port)
        yield poll_until(lambda: len(channel.sessions) == 1, 10, what="the session")
        session: Any = channel.sessions[0]
        self.assertIsNotNone(session.direct_serial_data)
        used: list[bytes] = []
        direct = session.direct_serial_data
        session.direct_serial_data = lambda data: used.append(data) is None and direct(data)
        channel._fast_serial(b"fast")
        self.assertEqual((used, client.recv(10)), ([b"fast"], b"fast"))
        client.sendall(b"host")
        yield poll_until(lambda: device.written == b"host", 10, what="the host's bytes")

    @defer.inlineCallbacks
    def test_two_sessions_general_path(self) -> Any:
        """Two sessions: both get the bytes through serial_data, the direct sender unused."""
        _device, channel, port = self.start(OpMode.TCP_SERVER, max_connection=2)
        first, second = self.connect(port), self.connect(port)
        yield poll_until(lambda: len(channel.sessions) == 2, 10, what="two sessions")
        for session in channel.sessions:
            s: Any = session
            s.direct_serial_data = lambda data: self.fail("direct with two sessions")
        channel._fast_serial(b"both")
        for sock in (first, second):
            got = b""
            while len(got) < 4:
                got += sock.recv(10)
            self.assertEqual(got, b"both")

    @defer.inlineCallbacks
    def test_packing_on_general_path(self) -> Any:
        """Packing on: the packer cuts the frame; the direct sender is not used."""
        from nport_twisted.wire.packing import PackingConfig

        _device, channel, port = self.start(OpMode.TCP_SERVER)
        client = self.connect(port)
        yield poll_until(lambda: len(channel.sessions) == 1, 10, what="the session")
        s: Any = channel.sessions[0]
        s.direct_serial_data = lambda data: self.fail("direct with packing")
        channel.set_packing(PackingConfig(packing_length=4))
        channel._fast_serial(b"abcdef")  # one frame of 4; "ef" waits in the packer
        got = b""
        while len(got) < 4:
            got += client.recv(10)
        self.assertEqual(got, b"abcd")

    @defer.inlineCallbacks
    def test_secure_tcp_server_no_direct_sender(self) -> Any:
        """Secure TCP Server: the session's transport is a TLS wrapper, so no direct sender."""
        device, channel, port = self.start(OpMode.TCP_SERVER, secure=True)
        answered = threading.Event()

        def client() -> bytes:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"ping")
                    got = b""
                    while len(got) < 4:
                        got += tls.recv(10)
                    answered.set()
                    return got
        reply = threads.deferToThread(client)
        yield poll_until(lambda: device.written == b"ping" or reply.called, 20,
                         what="ping through TLS")
        self.assertEqual(len(channel.sessions), 1)
        session: Any = channel.sessions[0]
        self.assertIsNone(session.direct_serial_data)
        channel._fast_serial(b"pong")  # through the TLS wrapper's write: encrypted
        self.assertEqual((yield reply), b"pong")
        self.assertTrue(answered.is_set())


class DedicatedRelayRfc2217Tests(_ModeTestCase):
    """RFC 2217 on a plain socket: IAC-free data direct, 0xFF escaped through serial_data."""

    @defer.inlineCallbacks
    def test_direct_and_escaped(self) -> Any:
        """A BINARY client: plain bytes through the direct sender, 0xFF doubled by serial_data."""
        from nport_twisted.wire import telnet as t

        _device, channel, port = self.start(OpMode.RFC2217)
        client = self.connect(port)
        client.sendall(bytes((t.IAC, t.DO, t.BINARY, t.IAC, t.WILL, t.BINARY,
                              t.IAC, t.WILL, t.COM_PORT_OPTION)))
        yield poll_until(lambda: len(channel.sessions) == 1
                         and getattr(channel.sessions[0], "_binary", False), 10,
                         what="the session in BINARY")
        session: Any = channel.sessions[0]
        self.assertIsNotNone(session.direct_serial_data)
        used: list[bytes] = []
        direct = session.direct_serial_data
        session.direct_serial_data = lambda data: used.append(data) is None and direct(data)
        client.setblocking(False)
        got = bytearray()
        _recv_some(client, got)  # the negotiation
        got.clear()
        channel._fast_serial(b"plain")
        channel._fast_serial(b"a\xffb")
        yield poll_until(lambda: _recv_some(client, got) and len(got) >= 9, 10,
                         what="the device bytes")
        self.assertEqual(bytes(got), b"plaina\xff\xffb")
        self.assertEqual(used, [b"plain", b"a\xffb"])  # asked both times; the second said no
