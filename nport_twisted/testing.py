# -*- test-case-name: tests.test_channel -*-
"""
Fakes for testing code that uses serial channels and TCP front-ends,
shipped with the package (like txtorcon's testutil) so front-ends and
users' tests share them.

L{FakeSerialDevice} plays the device: an opener that attaches a
L{StringTransport} (as the SerialPort would be) and a L{FakeSerialControl}
with modem lines and counters the test sets, and that can be made to vanish,
refuse opening, or refuse settings like a pty does.

L{FakeTcpTransport} plays one accepted or outgoing TCP connection;
L{FakePort} is one serial port (fake device, started channel, net table,
accessible IP list) with the L{PortContext} a front-end under test takes.
"""

from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.device.adapter import ISerialControl, OpenedSerial, SerialHandle
from nport_twisted.device.lines import LineCounters, ModemLines
from nport_twisted.config.settings import (
    AccessibleIPSettings,
    OperatingSettings,
    OpMode,
    SerialSettings,
)
from nport_twisted.device.channel import SerialChannel
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import PortContext


@implementer(ISerialControl)
class FakeSerialControl:
    """An L{ISerialControl} whose state the test reads and drives."""

    def __init__(self, device: FakeSerialDevice) -> None:
        self._device = device
        self.name = device.path
        self.applied: list[SerialSettings] = []
        self.dtr: bool | None = None
        self.rts: bool | None = None
        self.break_on = False
        self.suspended = False
        self.xon_xoff_chars: tuple[int, int] | None = None
        self.input_resets = 0
        self.output_resets = 0

    def apply(self, settings: SerialSettings) -> SerialSettings:
        self.applied.append(settings)
        refused = self._device.refuse
        actual = settings
        previous = self._device.in_force
        for field in refused:
            actual = attrs.evolve(actual, **{field: getattr(previous, field)})
        self._device.in_force = actual
        return actual

    def set_dtr(self, on: bool) -> bool:
        if self._device.lines is None:
            return False
        self.dtr = on
        return True

    def set_rts(self, on: bool) -> bool:
        if self._device.lines is None:
            return False
        self.rts = on
        return True

    def modem_lines(self) -> ModemLines | None:
        return self._device.lines

    def line_counters(self) -> LineCounters | None:
        return self._device.counters

    def set_break(self, on: bool) -> bool:
        self.break_on = on
        return True

    def reset_input(self) -> None:
        self.input_resets += 1
        self._device.input_queue = 0

    def reset_output(self) -> None:
        self.output_resets += 1
        self._device.output_queue = 0
        transport = self._device.transport
        if transport is not None:
            transport.clear()

    def output_waiting(self) -> int:
        return self._device.output_queue

    def input_waiting(self) -> int:
        return self._device.input_queue

    def set_xon_xoff_chars(self, xon: int, xoff: int) -> bool:
        self.xon_xoff_chars = (xon, xoff)
        return True

    def set_output_suspended(self, suspended: bool) -> bool:
        self.suspended = suspended
        return True


class FakeSerialDevice:
    """
    One fake serial device.  Use L{opener} as a channel's opener; drive it
    with L{receive} (bytes from the line), L{vanish}, C{lines}, C{counters}.

    @ivar present: whether opening succeeds.
    @ivar lines: modem lines, or None for a device without them (a pty).
    @ivar refuse: SerialSettings field names the device refuses to change.
    """

    def __init__(self, path: str = "/dev/fake0", lines: ModemLines | None = ModemLines(),
                 counters: LineCounters | None = None) -> None:
        self.path = path
        self.present = True
        self.lines = lines
        self.counters = counters
        self.refuse: set[str] = set()
        self.in_force = SerialSettings()
        self.output_queue = 0
        self.input_queue = 0
        self.opens = 0
        self.transport: StringTransport | None = None
        self.protocol: Protocol | None = None
        self.control: FakeSerialControl | None = None

    def opener(self, protocol: Protocol, device: str, settings: SerialSettings) -> SerialHandle:
        if not self.present:
            raise OSError(2, "No such file or directory", device)
        self.opens += 1
        self.transport = StringTransport()
        self.control = FakeSerialControl(self)
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        return OpenedSerial(self.transport, self.control)

    @property
    def written(self) -> bytes:
        """Everything written to the device since it was (re)opened."""
        return self.transport.value() if self.transport is not None else b""

    def receive(self, data: bytes) -> None:
        """Bytes arrive on the serial line."""
        assert self.protocol is not None, "device is not open"
        self.protocol.dataReceived(data)

    def vanish(self, reason: Exception | None = None) -> None:
        """The device disappears (USB unplug): the transport is lost."""
        self.present = False
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(reason or OSError(5, "Input/output error")))

    def close_complete(self) -> None:
        """Finish an orderly close (what the SerialPort does after loseConnection)."""
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            from twisted.internet.error import ConnectionDone
            protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def closing(self) -> bool:
        """The channel asked the transport to close."""
        return bool(self.transport is not None and self.transport.disconnecting)


def fake_transport_producer(transport: StringTransport) -> Any:
    """The producer a front-end registered on C{transport} (for jam tests)."""
    return transport.producer


class FakeTcpTransport(StringTransport):
    """
    A L{StringTransport} that looks like a TCP connection to our front-ends:
    it records TCP_NODELAY (L{nodelay}), keep-alive (L{keepalive}), aborts
    (L{aborted}; also C{disconnected}, as StringTransport does) and every
    C{write} call separately (L{writes}).  C{getHandle()} returns the socket
    a test gives as C{handle} (Real COM's FIONREAD and FLUSH read it), else
    raises C{AttributeError} like a transport with no socket, so keep-alive
    tuning is skipped.

    @param peer: the peer's host, at C{peer_port}.
    @param local: our host, at C{local_port}.
    @param peerAddress: the peer's address object, overriding C{peer}.
    @param hostAddress: our address object, overriding C{local} (an
        L{IPv6Address} for an IPv6 listener).
    """

    def __init__(self, peer: str = "10.0.0.1", peer_port: int = 40000, *,
                 local: str = "127.0.0.1", local_port: int = 4001,
                 peerAddress: IPv4Address | IPv6Address | None = None,
                 hostAddress: IPv4Address | IPv6Address | None = None,
                 handle: socket.socket | None = None) -> None:
        super().__init__(
            hostAddress=hostAddress or IPv4Address("TCP", local, local_port),
            peerAddress=peerAddress or IPv4Address("TCP", peer, peer_port))
        self.aborted = False
        self.keepalive = False
        self.nodelay = False
        self.writes: list[bytes] = []
        self.handle = handle

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def setTcpKeepAlive(self, on: bool) -> None:
        self.keepalive = on

    def setTcpNoDelay(self, on: bool) -> None:
        self.nodelay = on

    def getHandle(self) -> socket.socket:
        """The socket behind this connection, when the test gave one."""
        if self.handle is None:
            raise AttributeError("no socket")
        return self.handle

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def clear(self) -> None:
        super().clear()
        self.writes = []


class FakePort:
    """
    Port 1 of a box, faked for front-end tests: a L{FakeSerialDevice}
    (C{lines}, C{counters}) behind a started L{SerialChannel} on a
    L{Clock}, a L{NetTable}, an accessible IP list the test may replace
    (L{acl}, asked at every connection), and the L{PortContext} of C{mode}
    with C{operating} settings.  Call L{stop} when done (e.g. with
    C{addCleanup}).
    """

    def __init__(self, mode: OpMode, *, lines: ModemLines | None = None,
                 counters: LineCounters | None = None, **operating: Any) -> None:
        self.clock = Clock()
        self.device = FakeSerialDevice(lines=lines, counters=counters)
        self.channel = SerialChannel(0, self.device.path, SerialSettings(), self.clock,
                                     self.device.opener)
        self.channel.ignore_jammed = operating.get("ignore_jammed", False)
        self.channel.startService()
        self.net = NetTable()
        self.acl = AccessibleIPSettings()
        self.ctx = PortContext(index=0, channel=self.channel,
                               operating=OperatingSettings(mode=mode, **operating),
                               reactor=self.clock, endpoint=lambda proto, port: f"{proto}:{port}",
                               net=self.net, accessible=lambda: self.acl)

    def stop(self) -> None:
        """Stop the channel and finish the device's close."""
        self.channel.stopService()
        self.device.close_complete()

    @staticmethod
    def accept(protocol: Protocol, peer: str = "10.0.0.1") -> FakeTcpTransport:
        """C{protocol} gets a connection from C{peer}; returns its transport."""
        transport = FakeTcpTransport(peer)
        protocol.makeConnection(transport)
        return transport


@attrs.frozen
class TlsProbe:
    """What L{moxa_tls_probe} saw."""

    version: str  # "TLSv1.2"
    cipher: str
    #: None: nothing arrived after the handshake (as MOXA's daemon needs);
    #: else why its first read would have failed.
    failure: str | None
    data: bytes = b""  # what the first successful read returned


def moxa_tls_probe(host: str, port: int, *, quiet_for: float = 0.5, send: bytes = b"",
                   expect: int = 0, timeout: float = 5.0,
                   client_cert: str | None = None) -> TlsProbe:
    """
    Connect like MOXA's Real TTY daemon in secure mode (npreal2d ``ssl_init``
    and ``ConnectSSL``, realcom.md §6.3): OpenSSL's flexible client method,
    C{SSL_OP_ALL}, cipher list C{ALL:@STRENGTH}, C{SSL_MODE_AUTO_RETRY}, no
    verification, no SNI; then read the data socket as its loop does: the
    socket non-blocking, wait until it is readable, one C{SSL_read}.  A read
    that yields no application data (a TLS 1.3 session ticket) is the
    daemon's "connection closed": reported in C{failure}.

    Blocking (run it in a thread beside a reactor): waits up to
    C{quiet_for} seconds for anything to arrive after the handshake (the
    failure case arrives within milliseconds), then sends C{send} and reads
    until C{expect} bytes came, each wait bounded by C{timeout}.
    """
    import select
    import socket
    import time

    from OpenSSL import SSL

    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)  # SSLv23_client_method
    ctx.set_options(SSL.OP_ALL)
    ctx.set_cipher_list(b"ALL:@STRENGTH")
    ctx.set_mode(0x00000004)  # SSL_MODE_AUTO_RETRY, as npreal2d sets it
    if client_cert is not None:
        ctx.use_privatekey_file(client_cert)
        ctx.use_certificate_file(client_cert)
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setblocking(False)  # bounded waits with select (npreal2d handshakes non-blocking too)

    def wait(readable: bool, until: float) -> None:
        left = until - time.monotonic()
        ready = select.select([raw] if readable else [], [] if readable else [raw], [],
                              max(0.0, left))
        if not any(ready):
            raise TimeoutError(f"no progress within {timeout} s")

    try:
        conn = SSL.Connection(ctx, raw)
        conn.set_connect_state()
        until = time.monotonic() + timeout
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                wait(True, until)
            except SSL.WantWriteError:
                wait(False, until)
        version, cipher = conn.get_protocol_version_name(), conn.get_cipher_name() or ""

        def read_once(wait: float) -> bytes | None:
            readable, _, _ = select.select([raw], [], [], wait)
            if not readable:
                return None
            try:
                return bytes(conn.recv(65536))
            except SSL.WantReadError:
                raise _NoData() from None
            except SSL.ZeroReturnError:
                return b""

        try:
            first = read_once(quiet_for)
        except _NoData:
            return TlsProbe(version, cipher, "the first read after the handshake returned no "
                                             "data (a post-handshake message)")
        if first == b"":
            return TlsProbe(version, cipher, "the server closed the connection")
        got = first or b""
        pending = send
        until = time.monotonic() + timeout
        while pending:
            try:
                pending = pending[conn.send(pending):]
            except SSL.WantWriteError:
                wait(False, until)
            except SSL.WantReadError:
                wait(True, until)
        while len(got) < expect:
            try:
                more = read_once(timeout)
            except _NoData:
                continue  # part of a record: MOXA's rule is about the first read only
            if not more:
                return TlsProbe(version, cipher, f"only {len(got)} of {expect} bytes arrived", got)
            got += more
        return TlsProbe(version, cipher, None, got)
    finally:
        raw.close()


class _NoData(Exception):
    pass
