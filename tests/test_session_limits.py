# -*- test-case-name: tests.test_session_limits -*-
"""
Hostile peers against the admitted-session base (issue 10): replies a peer
never reads, floods of bad frames, floods of requests in one read, peers
that vanish while we are not reading them, reconnects at the limit.  Over
in-memory transports, with real sockets where the kernel must tell
(closed peers, unread bytes).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import Logger, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.settings import OpMode
from nport_twisted.modes.aspp_command import CommandProtocol
from nport_twisted.modes.rfc2217 import Rfc2217Factory
from nport_twisted.modes.tcpserver import TcpServerCommandPort, TcpServerFactory
from nport_twisted.net.loglimit import LogLimiter
from nport_twisted.net.session import ReadHold
from nport_twisted.testing import FakePort, FakeTcpTransport
from nport_twisted.wire import aspp
from nport_twisted.wire import telnet as t

LSTATUS = bytes([aspp.CMD_LSTATUS, 0])
#: A LSTATUS request with a wrong length: ignored, no reply, logged (rate limited).
MALFORMED = bytes([aspp.CMD_LSTATUS, 2, 0, 0])


def socket_pair(test: SynchronousTestCase) -> tuple[socket.socket, socket.socket]:
    """(ours, theirs): a connected pair of TCP sockets on loopback."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    theirs = socket.create_connection(server.getsockname())
    ours, _ = server.accept()
    server.close()
    for s in (ours, theirs):
        test.addCleanup(s.close)
    return ours, theirs


def reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def wait_kernel(predicate: Any) -> None:
    """Loopback delivers at once, but leave the kernel a moment (bounded) to settle a close."""
    import select
    for _ in range(100):
        if predicate():
            return
        select.select([], [], [], 0.01)
    raise AssertionError("the kernel did not get there")


class Harness(FakePort):
    """TCP Server port 1 with its data factory and ASPP command port."""

    def __init__(self, test: SynchronousTestCase, mode: OpMode = OpMode.TCP_SERVER,
                 **operating: Any) -> None:
        super().__init__(mode, **operating)
        test.addCleanup(self.stop)
        self.test = test
        self.factory = TcpServerFactory(self.ctx)
        self.command_port = TcpServerCommandPort(self.ctx)

    def connect(self, proto: Any, peer: str = "10.0.0.1",
                handle: socket.socket | None = None) -> FakeTcpTransport:
        transport = FakeTcpTransport(peer, handle=handle)
        proto.makeConnection(transport)
        return transport

    def data(self, peer: str = "10.0.0.1", handle: socket.socket | None = None) -> tuple[Any, FakeTcpTransport]:
        proto = self.factory.buildProtocol(None)
        return proto, self.connect(proto, peer, handle)

    def command(self, peer: str = "10.0.0.1",
                handle: socket.socket | None = None) -> tuple[CommandProtocol, FakeTcpTransport]:
        self.data(peer)  # the host holds a data connection (TCP Server's command port may ask)
        proto = CommandProtocol(self.command_port)
        return proto, self.connect(proto, peer, handle)


class LogLimiterTests(SynchronousTestCase):
    def test_burst_then_summary(self) -> None:
        """Five lines per source and kind pass; the rest are counted and summarised at the window's end."""
        clock = Clock()
        lines: list[dict[str, Any]] = []
        limiter = LogLimiter(clock, burst=5, window=10.0)

        def log(fmt: str, **kw: Any) -> None:
            lines.append(dict(kw, fmt=fmt))

        for _ in range(1000):
            limiter.emit(log, "bad", "10.0.0.5", "bad frame from {peer}", peer="10.0.0.5")
        limiter.emit(log, "bad", "10.0.0.6", "bad frame from {peer}", peer="10.0.0.6")
        self.assertEqual(len(lines), 6)
        clock.advance(10)
        self.assertEqual(len(lines), 7)
        self.assertEqual((lines[-1]["suppressed"], lines[-1]["source"]), (995, "10.0.0.5"))
        self.assertIn("suppressed", lines[-1]["fmt"])
        limiter.emit(log, "bad", "10.0.0.5", "bad frame from {peer}", peer="10.0.0.5")
        self.assertEqual(len(lines), 8)  # a new window

    def test_keys_bounded(self) -> None:
        """Sources beyond max_keys evict the oldest, whose suppressed count is reported then."""
        clock = Clock()
        lines: list[str] = []
        limiter = LogLimiter(clock, burst=1, window=10.0, max_keys=4)
        for i in range(100):
            for _ in range(3):
                limiter.emit(lambda fmt, **kw: lines.append(fmt), "k", f"h{i}", "x")
        self.assertLessEqual(len(limiter), 4)
        self.assertEqual(len(lines), 100 + 96)  # one line each, one summary per evicted source


class BoundedRepliesTests(SynchronousTestCase):
    """Item 1: a command-port client that never reads cannot grow our memory."""

    def test_aspp_reading_paused_while_replies_unread(self) -> None:
        """When the socket buffer is full, the command connection is no longer read; it resumes on drain."""
        h = Harness(self)
        proto, transport = h.command()
        proto.dataReceived(LSTATUS)
        self.assertEqual(len(transport.value()), 5)
        transport.producer.pauseProducing()  # the socket buffer passed its high-water mark
        self.assertEqual(transport.producerState, "paused")
        self.assertIn(ReadHold.PEER_NOT_READING, proto.read_holds)
        transport.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_dropped_when_jammed_and_still_sending(self) -> None:
        """Jammed for jam_timeout with requests still waiting unread: closed (logged); idle jam is kept."""
        h = Harness(self)
        ours, theirs = socket_pair(self)
        proto, transport = h.command(handle=ours)
        transport.producer.pauseProducing()
        h.clock.advance(proto.jam_timeout)
        self.assertFalse(transport.aborted)  # not reading, but not sending either
        theirs.sendall(LSTATUS * 100)  # requests keep coming
        wait_kernel(lambda: len(ours.recv(1 << 16, socket.MSG_PEEK)) == 200)
        h.clock.advance(proto.jam_timeout)
        self.assertTrue(transport.aborted)

    def test_unsent_over_bound_dropped(self) -> None:
        """More than max_unsent reply bytes queued for a peer: dropped at once."""
        h = Harness(self)
        proto, transport = h.command()
        transport.dataBuffer = b"x" * (proto.max_unsent + 1)  # as a FileDescriptor would hold them
        transport.offset = 0
        transport._tempDataLen = 0
        proto.dataReceived(LSTATUS)
        self.assertTrue(transport.aborted)

    def test_rfc2217_reading_paused_while_replies_unread(self) -> None:
        """RFC 2217: a full socket stops reading the client's requests too."""
        h = Harness(self, mode=OpMode.RFC2217)
        factory = Rfc2217Factory(h.ctx)
        proto = factory.buildProtocol(None)
        transport = h.connect(proto)
        transport.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertIn(ReadHold.PEER_NOT_READING, proto.read_holds)


class BoundedWorkTests(SynchronousTestCase):
    """Item 3: one read full of requests is answered over several reactor turns."""

    def test_aspp_flood_in_one_read(self) -> None:
        """10,000 LSTATUS in one read: 256 answered per turn, reading paused meanwhile, order kept."""
        h = Harness(self)
        proto, transport = h.command()
        transport.clear()
        proto.dataReceived(LSTATUS * 10_000)
        budget = proto.max_events_per_turn
        self.assertEqual([len(w) for w in transport.writes], [5 * budget])
        self.assertEqual(transport.producerState, "paused")
        h.clock.advance(0)  # (task.Clock runs the follow-up turns at once; the reactor does one per turn)
        sizes = [len(w) // 5 for w in transport.writes]
        self.assertEqual(sizes, [budget] * (10_000 // budget) + [10_000 % budget])
        self.assertEqual(transport.value(), transport.value()[:5] * 10_000)
        self.assertEqual(transport.producerState, "producing")

    def test_rfc2217_flood_in_one_read(self) -> None:
        """RFC 2217: signature queries in one read are answered a batch per turn, data kept in order."""
        h = Harness(self, mode=OpMode.RFC2217)
        proto = Rfc2217Factory(h.ctx).buildProtocol(None)
        transport = h.connect(proto)
        transport.clear()
        query = bytes([t.IAC, t.SB, t.COM_PORT_OPTION, 0, t.IAC, t.SE])
        proto.dataReceived(query * 1000 + b"tail")
        self.assertEqual(h.device.written, b"")  # the data after the queries waits its turn
        for _ in range(10):
            h.clock.advance(0)
        self.assertEqual(h.device.written, b"tail")


class LogFloodTests(SynchronousTestCase):
    """Item 3: bad frames are logged a few times per source, then summarised."""

    def test_malformed_aspp_flood(self) -> None:
        """100,000 wrong-length requests give 5 warnings and one summary line, not 100,000."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self)
        proto, _ = h.command()
        for _ in range(100):
            proto.dataReceived(MALFORMED * 1000)
            while proto.read_holds:
                h.clock.advance(0)
        h.clock.advance(10)
        lines = [e for e in observer if "wrong length" in e["log_format"] or "suppressed" in e["log_format"]]
        self.assertEqual(len(lines), 6)
        self.assertEqual(lines[-1]["suppressed"], 100_000 - 5)

    def test_refusals_rate_limited_per_source(self) -> None:
        """A host refused 1,000 times logs 5 refusals (then a summary); another host still gets its line."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self)
        h.data("10.0.0.1")
        for _ in range(1000):
            h.data("10.0.0.2")
        h.data("10.0.0.3")
        refusals = [e for e in observer if e["log_format"].startswith("{label}: refusing")]
        self.assertEqual([e["peer"] for e in refusals], ["10.0.0.2"] * 5 + ["10.0.0.3"])
        self.assertEqual(h.factory.gate.stats.refused_limit, 1001)


class ReconnectLogTests(SynchronousTestCase):
    def test_reconnect_loop_logs_bounded(self) -> None:
        """1,000 connect/disconnect cycles from one host log a handful of lines (then summaries)."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self)
        for _ in range(1000):
            proto, _ = h.data("10.0.0.1")
            proto.connectionLost()
        h.clock.advance(10)
        lines = [e for e in observer if e["log_level"].name == "info"]
        self.assertLess(len(lines), 20)


class ReapTests(SynchronousTestCase):
    """Item 10: a peer that closed and reconnected at once is not refused."""

    def test_reset_peer_reaped_at_the_limit(self) -> None:
        """Max connection 1: the old connection was reset but not yet noticed; the new one gets in."""
        h = Harness(self)
        ours, theirs = socket_pair(self)
        old, old_transport = h.data(handle=ours)
        reset(theirs)
        wait_kernel(lambda: __import__("nport_twisted._txinternals", fromlist=["x"]).peer_closed(old_transport))
        _, new_transport = h.data("10.0.0.1")
        self.assertFalse(new_transport.disconnecting)
        self.assertTrue(old_transport.aborted)
        self.assertEqual(len(h.factory.gate.active), 1)
        h.device.receive(b"z")
        self.assertEqual(new_transport.value(), b"z")

    def test_live_peer_not_reaped(self) -> None:
        """A connection whose peer is still there keeps its place; the newcomer is refused."""
        h = Harness(self)
        ours, _theirs = socket_pair(self)
        _, old_transport = h.data(handle=ours)
        _, new_transport = h.data("10.0.0.2")
        self.assertTrue(new_transport.disconnecting)
        self.assertFalse(old_transport.aborted)

    def test_closed_peer_with_unread_bytes_not_reaped(self) -> None:
        """A peer that closed after sending bytes we have not read yet keeps its place (the bytes count)."""
        h = Harness(self)
        ours, theirs = socket_pair(self)
        _, old_transport = h.data(handle=ours)
        theirs.sendall(b"last words")
        theirs.shutdown(socket.SHUT_WR)
        wait_kernel(lambda: __import__("nport_twisted._txinternals", fromlist=["x"]).peer_closed(old_transport))
        _, new_transport = h.data("10.0.0.2")
        self.assertTrue(new_transport.disconnecting)
        self.assertFalse(old_transport.aborted)


class PausedCloseTests(SynchronousTestCase):
    """Item 10: while the serial write buffer is full, a client's close is still noticed."""

    def paused(self) -> tuple[Harness, Any, FakeTcpTransport, socket.socket]:
        h = Harness(self)
        ours, theirs = socket_pair(self)
        proto, transport = h.data(handle=ours)
        assert h.device.transport is not None
        h.device.transport.producer.pauseProducing()  # the device's write buffer is full
        self.assertEqual(transport.producerState, "paused")
        return h, proto, transport, theirs

    def test_reset_noticed(self) -> None:
        """A client that resets while paused is closed within one poll interval; its slot is free."""
        h, proto, transport, theirs = self.paused()
        reset(theirs)
        wait_kernel(lambda: __import__("nport_twisted._txinternals", fromlist=["x"]).peer_closed(transport))
        h.clock.advance(proto.closed_poll_interval)
        self.assertTrue(transport.aborted)

    def test_fin_waits_for_its_bytes_then_closes(self) -> None:
        """A client that closed its side keeps its connection for closed_grace (its bytes may still go)."""
        h, proto, transport, theirs = self.paused()
        theirs.shutdown(socket.SHUT_WR)
        wait_kernel(lambda: __import__("nport_twisted._txinternals", fromlist=["x"]).peer_closed(transport))
        h.clock.advance(proto.closed_poll_interval)
        self.assertFalse(transport.aborted)
        h.clock.advance(proto.closed_grace)
        self.assertTrue(transport.aborted)

    def test_live_paused_client_kept(self) -> None:
        """A paused client that is still there is kept however long the device is busy."""
        h, proto, transport, _theirs = self.paused()
        for _ in range(100):
            h.clock.advance(proto.closed_poll_interval)
        self.assertFalse(transport.aborted)
        h.device.transport.producer.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(h.clock.getDelayedCalls(), [])


_log = Logger()


class AccessibleChangeTests(SynchronousTestCase):
    """Item 6: a changed accessible IP list reaches the connections already open."""

    def test_removed_host_closed_on_apply(self) -> None:
        """Saving a list without 10.0.0.2 closes its TCP Server and command connections (logged); others stay."""
        import attrs
        from twisted.internet.testing import MemoryReactorClock

        from nport_twisted.config.settings import (
            AccessibleIP, AccessibleIPSettings, DeviceConfig, OperatingSettings)
        from nport_twisted.config.store import SettingsStore
        from nport_twisted.server import NPortService
        from nport_twisted.testing import FakeSerialDevice

        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = MemoryReactorClock()
        device = FakeSerialDevice()
        config = DeviceConfig().with_port_count(1, OpMode.TCP_SERVER)
        config = config.replace_port(0, attrs.evolve(config.ports[0], operating=OperatingSettings(
            mode=OpMode.TCP_SERVER, max_connection=4)))
        svc = NPortService(reactor, ["/dev/fake0"], config, SettingsStore(None), device.opener,
                           port_offset=10000, interface="127.0.0.1", default_mode=OpMode.TCP_SERVER)
        svc.startService()
        self.addCleanup(svc.stopService)
        factories = {port: factory for port, factory, _, _ in reactor.tcpServers}
        transports = {}
        for host in ("10.0.0.1", "10.0.0.2"):
            for port in (14001, 10966):
                proto = factories[port].buildProtocol(None)
                transport = FakeTcpTransport(host)
                proto.makeConnection(transport)
                transports[host, port] = transport
        self.assertFalse(any(t.disconnecting for t in transports.values()))
        allowed = AccessibleIPSettings(entries=(AccessibleIP(ip="10.0.0.1"),))
        svc.apply_config(attrs.evolve(svc.config, accessible_ip=allowed))
        self.assertEqual({k for k, t in transports.items() if t.aborted},
                         {("10.0.0.2", 14001), ("10.0.0.2", 10966)})
        closed = [e for e in observer if "no longer in the accessible IP list" in e["log_format"]]
        self.assertEqual(len(closed), 2)


PORT_INIT_9600 = bytes.fromhex("2C 08 06 0A 01 01 00 00 00 00")  # 9600 7E1, DTR/RTS on


class PairingTests(SynchronousTestCase):
    """Item 5: one host cannot take or drive another host's Real COM line."""

    def realcom(self, **options: Any) -> tuple[FakePort, Any]:
        from nport_twisted.modes.aspp_command import RealComOptions
        from nport_twisted.modes.realcom import RealComPort
        fake = FakePort(OpMode.REAL_COM, max_connection=options.pop("max_connection", 1))
        self.addCleanup(fake.stop)
        return fake, RealComPort(fake.ctx, RealComOptions(**options))

    def conn(self, port: Any, kind: str, host: str) -> tuple[Any, FakeTcpTransport]:
        from nport_twisted.modes.realcom import DataProtocol
        proto = CommandProtocol(port) if kind == "command" else DataProtocol(port)
        transport = FakeTcpTransport(host)
        proto.makeConnection(transport)
        return proto, transport

    def test_intruder_command_cannot_pair_with_the_drivers_data(self) -> None:
        """An idle command connection from G gives way to H's data connection; H's command pairs with it."""
        fake, port = self.realcom()
        intruder, it = self.conn(port, "command", "10.0.0.66")
        data, dt = self.conn(port, "data", "10.0.0.1")
        self.assertTrue(it.disconnecting)  # evicted: it had no data connection
        self.assertFalse(dt.disconnecting)
        intruder.dataReceived(PORT_INIT_9600)
        self.assertEqual(fake.channel.effective_settings.baudrate, 115200)  # not applied
        command, ct = self.conn(port, "command", "10.0.0.1")
        self.assertFalse(ct.disconnecting)
        self.assertIs(command.pair, data.pair)
        command.dataReceived(PORT_INIT_9600)
        self.assertEqual(fake.channel.effective_settings.baudrate, 9600)
        self.assertEqual(len(ct.value()), 5)

    def test_other_hosts_never_pair(self) -> None:
        """With two slots, G's command and H's data stay apart; G's requests get no answer."""
        fake, port = self.realcom(max_connection=2)
        intruder, it = self.conn(port, "command", "10.0.0.66")
        data, _ = self.conn(port, "data", "10.0.0.1")
        self.assertIsNot(intruder.pair, data.pair)
        intruder.dataReceived(PORT_INIT_9600)
        self.assertEqual(it.value(), b"")  # waits for its own data connection
        command, _ = self.conn(port, "command", "10.0.0.1")
        self.assertIs(command.pair, data.pair)

    def test_unpaired_command_times_out(self) -> None:
        """A command connection whose data connection never comes is closed after pair_timeout (logged)."""
        fake, port = self.realcom(max_connection=2)
        lonely, lt = self.conn(port, "command", "10.0.0.66")
        paired, pt = self.conn(port, "command", "10.0.0.1")
        self.conn(port, "data", "10.0.0.1")
        fake.clock.advance(port.options.pair_timeout)
        self.assertTrue(lt.disconnecting)
        self.assertFalse(pt.disconnecting)

    def test_pair_by_arrival_when_asked(self) -> None:
        """pair_by_peer=False keeps MOXA's arrival-order pairing."""
        fake, port = self.realcom(pair_by_peer=False)
        command, _ = self.conn(port, "command", "10.0.0.66")
        data, _ = self.conn(port, "data", "10.0.0.1")
        self.assertIs(command.pair, data.pair)


class TcpServerCommandPortTests(SynchronousTestCase):
    """Item 5: TCP Server's command port is for the hosts using the line."""

    def front(self, **operating: Any) -> tuple[FakePort, Any]:
        from nport_twisted.modes.tcpserver import tcp_server_frontend
        fake = FakePort(OpMode.TCP_SERVER, **operating)
        self.addCleanup(fake.stop)
        return fake, tcp_server_frontend(fake.ctx)

    def connect(self, proto: Any, host: str) -> FakeTcpTransport:
        transport = FakeTcpTransport(host)
        proto.makeConnection(transport)
        return transport

    def test_command_needs_a_data_connection_from_the_host(self) -> None:
        """A host without a data connection is refused (logged); one with it is served."""
        fake, front = self.front()
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        stranger = self.connect(CommandProtocol(front.command_port), "10.0.0.66")
        self.assertTrue(stranger.disconnecting)
        self.assertTrue(any("no TCP Server data connection" in str(e.get("why")) for e in observer))
        data = front.factory.buildProtocol(None)
        self.connect(data, "10.0.0.1")
        command = CommandProtocol(front.command_port)
        ct = self.connect(command, "10.0.0.1")
        self.assertFalse(ct.disconnecting)
        command.dataReceived(PORT_INIT_9600)
        self.assertEqual(fake.channel.effective_settings.baudrate, 9600)
        data.connectionLost()  # its last data connection goes: so does its command connection
        self.assertTrue(ct.disconnecting)

    def test_any_host_when_configured(self) -> None:
        """command_requires_data = no: any host the accessible IP list allows, as on an NPort."""
        _, front = self.front(command_requires_data=False)
        stranger = self.connect(CommandProtocol(front.command_port), "10.0.0.66")
        self.assertFalse(stranger.disconnecting)
