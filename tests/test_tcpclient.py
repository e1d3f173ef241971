"""
Tests for TCP Client mode (nport_twisted.modes.tcpclient): connection attempts on
a MemoryReactorClock completed or refused by hand, a FakeSerialDevice as the
serial port, and one loopback test on the real reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.protocol import Factory
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from nport_twisted.device.channel import IChannelSession, SerialChannel
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.device.adapter import ModemLines
from nport_twisted.config.settings import (
    AccessibleIPSettings,
    ConnectionControl,
    OperatingSettings,
    OpMode,
    SerialSettings,
)
from nport_twisted.modes.tcpclient import (
    BUFFER_SIZE,
    CONNECT_TIMEOUT,
    STOP_GRACE,
    TcpClientController,
    reconnect_delay,
    tcp_client_frontend,
)
from nport_twisted.testing import FakeSerialDevice, FakeTcpTransport

DESTS = ("10.0.0.1:4001", "10.0.0.2:4002")


class _Conn:
    """One accepted connection attempt: the endpoint's protocol and our transport."""

    def __init__(self, protocol: Any, transport: FakeTcpTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.lost = False

    def send(self, data: bytes) -> None:
        """The destination sends C{data}."""
        self.protocol.dataReceived(data)

    def lose(self, reason: Exception | None = None) -> None:
        """The connection ends (the peer closed, or our close completed)."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(reason or ConnectionDone()))


class Harness:
    """A channel on a fake device and a TCP Client front-end on a MemoryReactorClock."""

    def __init__(self, test: SynchronousTestCase, destinations: tuple[str, ...] = DESTS,
                 lines: ModemLines | None = None, offset: int = 0, start: bool = True,
                 **operating: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.device = FakeSerialDevice(lines=lines)
        self.channel = SerialChannel(0, "/dev/fake0", SerialSettings(), self.reactor,
                                     self.device.opener,
                                     ignore_jammed=operating.get("ignore_jammed", False))
        self.channel.startService()
        self.net = NetTable()
        self.ctx = PortContext(
            index=0, channel=self.channel,
            operating=OperatingSettings(mode=OpMode.TCP_CLIENT, destinations=destinations,
                                        **operating),
            reactor=self.reactor, endpoint=lambda proto, port: f"{proto}:{port + offset}",
            net=self.net, accessible=AccessibleIPSettings)
        self.front = tcp_client_frontend(self.ctx)
        self.controller: TcpClientController = self.front.controller  # type: ignore[attr-defined]
        self.conns: list[_Conn] = []
        test.addCleanup(self.stop)
        if start:
            self.front.startService()

    def stop(self) -> None:
        if self.front.running:
            self.front.stopService()
        for conn in self.conns:
            conn.lose()
        self.channel.stopService()
        self.device.close_complete()

    def attempts(self) -> list[str]:
        """Every connection attempt so far, as HOST:PORT."""
        return [f"{host}:{port}" for host, port, *_ in self.reactor.tcpClients]

    def _last(self, dest: str) -> int:
        return max(i for i, a in enumerate(self.attempts()) if a == dest)

    def accept(self, dest: str = DESTS[0]) -> _Conn:
        """Complete the latest attempt to C{dest}."""
        host, port, factory, _, _ = self.reactor.tcpClients[self._last(dest)]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = FakeTcpTransport(host, port, local_port=50000)
        protocol.makeConnection(transport)
        conn = _Conn(protocol, transport)
        self.conns.append(conn)
        return conn

    def refuse(self, dest: str = DESTS[0]) -> None:
        """Fail the latest attempt to C{dest} with connection refused."""
        i = self._last(dest)
        factory = self.reactor.tcpClients[i][2]
        factory.clientConnectionFailed(self.reactor.connectors[i], Failure(ConnectionRefusedError()))

    def count(self, dest: str = DESTS[0]) -> int:
        return self.attempts().count(dest)

    def delay_to_next_attempt(self, dest: str = DESTS[0], limit: float = 100.0) -> float:
        """Advance the clock in 0.125 s steps until a new attempt to C{dest}; return the time taken."""
        before, start = self.count(dest), self.reactor.seconds()
        while self.count(dest) == before:
            if self.reactor.seconds() - start > limit:
                raise AssertionError(f"no new attempt to {dest} within {limit} s")
            self.reactor.advance(0.125)
        return self.reactor.seconds() - start

    def set_lines(self, **lines: bool) -> None:
        """Change the device's modem lines and let the channel's poll see it."""
        self.device.lines = ModemLines(**lines)
        self.reactor.advance(self.channel.modem_poll_interval)


class StartupTests(SynchronousTestCase):
    def test_controller_is_a_session(self) -> None:
        """The controller implements IChannelSession and is attached to the channel while running."""
        h = Harness(self)
        self.assertTrue(verifyObject(IChannelSession, h.controller))
        self.assertEqual(h.channel.sessions, (h.controller,))
        h.front.stopService()
        self.assertEqual(h.channel.sessions, ())

    def test_startup_connects_to_all(self) -> None:
        """Startup/None connects to every destination at start, with the connect timeout and no bind."""
        h = Harness(self)
        self.assertEqual(h.attempts(), list(DESTS))
        self.assertEqual([(c[3], c[4]) for c in h.reactor.tcpClients],
                         [(CONNECT_TIMEOUT, None)] * 2)

    def test_fan_out_and_from_any(self) -> None:
        """Serial data goes to every connected destination; data from any destination goes to the device."""
        h = Harness(self)
        a, b = h.accept(DESTS[0]), h.accept(DESTS[1])
        h.device.receive(b"\x00broadcast\xff")
        self.assertEqual([a.transport.value(), b.transport.value()], [b"\x00broadcast\xff"] * 2)
        b.send(b"from-b ")
        a.send(b"from-a")
        self.assertEqual(h.device.written, b"from-b from-a")

    def test_net_table_and_keepalive(self) -> None:
        """Connections are listed in the net table while open and get TCP keep-alive."""
        h = Harness(self)
        a = h.accept()
        self.assertEqual([(c.remote_host, c.remote_port) for c in h.net.connections],
                         [("10.0.0.1", 4001)])
        self.assertTrue(a.transport.keepalive)
        a.lose()
        self.assertEqual(h.net.connections, [])

    def test_no_keepalive_when_alive_check_zero(self) -> None:
        """TCP alive check time 0 leaves keep-alive off."""
        h = Harness(self, tcp_alive_check_min=0)
        self.assertFalse(h.accept().transport.keepalive)

    def test_designated_local_port_is_bound_and_shifted(self) -> None:
        """A designated local port is the attempt's bindAddress, shifted by the port offset; 0 binds nothing."""
        h = Harness(self, designated_local_ports=(5011, 0), offset=10000)
        self.assertEqual([c[4] for c in h.reactor.tcpClients], [("", 15011), None])

    def test_designated_local_port_out_of_range(self) -> None:
        """A designated local port that the offset pushes past 65535 skips that destination with an error."""
        h = Harness(self, designated_local_ports=(5011, 0), offset=61000, start=False)
        h.ctx.endpoint = lambda proto, port: _checked(port + 61000)
        front = tcp_client_frontend(h.ctx)
        front.startService()
        self.addCleanup(front.stopService)
        self.assertEqual(h.attempts(), [DESTS[1]])

    def test_endpoints_by_address_kind(self) -> None:
        """IPv4 and IPv6 literals get plain TCP endpoints, names a HostnameEndpoint."""
        h = Harness(self, destinations=("10.0.0.1:4001", "[::1]:4002", "example.invalid:4003"),
                    start=False)
        kinds = [type(d.endpoint) for d in h.controller.destinations]
        self.assertEqual(kinds, [TCP4ClientEndpoint, TCP6ClientEndpoint, HostnameEndpoint])
        self.assertEqual([(d.host, d.port) for d in h.controller.destinations],
                         [("10.0.0.1", 4001), ("::1", 4002), ("example.invalid", 4003)])

    def test_registered_as_tcp_client_mode(self) -> None:
        """The server's mode table builds TCP Client ports with tcp_client_frontend."""
        from nport_twisted.server import frontend_builders
        self.assertIs(frontend_builders()[OpMode.TCP_CLIENT], tcp_client_frontend)

    def test_device_vanish_keeps_connections(self) -> None:
        """When the device vanishes connections stay up; bytes for it are dropped and counted."""
        h = Harness(self)
        a = h.accept()
        h.device.vanish()
        self.assertFalse(a.transport.disconnecting)
        a.send(b"lost")
        self.assertEqual(h.channel.stats.serial_tx_dropped, 4)
        h.device.present = True
        h.reactor.advance(1)
        h.device.receive(b"back")
        self.assertEqual(a.transport.value(), b"back")


def _checked(port: int) -> str:
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is outside 1-65535")
    return f"tcp:{port}"


class ReconnectTests(SynchronousTestCase):
    def test_policy(self) -> None:
        """The reconnect delay starts at 1 s and doubles up to 30 s."""
        self.assertEqual([reconnect_delay(n) for n in range(1, 9)],
                         [1, 2, 4, 8, 16, 30, 30, 30])

    def test_reconnect_after_loss(self) -> None:
        """A lost connection is retried after 1 s, and only that destination."""
        h = Harness(self)
        a = h.accept(DESTS[0])
        h.accept(DESTS[1])
        a.lose(ConnectionLost())
        self.assertEqual(h.delay_to_next_attempt(DESTS[0]), 1.0)
        self.assertEqual(h.count(DESTS[1]), 1)

    def test_refused_backoff_doubles_to_30(self) -> None:
        """Refused attempts are retried after 1, 2, 4, 8, 16, 30, 30 s."""
        h = Harness(self, destinations=DESTS[:1])
        delays = []
        for _ in range(7):
            h.refuse()
            delays.append(h.delay_to_next_attempt())
        self.assertEqual(delays, [1, 2, 4, 8, 16, 30, 30])

    def test_success_resets_backoff(self) -> None:
        """After a successful connection the next loss is retried after 1 s again."""
        h = Harness(self, destinations=DESTS[:1])
        for _ in range(3):
            h.refuse()
            h.delay_to_next_attempt()
        h.accept().lose()
        self.assertEqual(h.delay_to_next_attempt(), 1.0)

    def test_failure_logged_once_per_outage(self) -> None:
        """Repeated refusals are counted but logged once until a connection succeeds."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self, destinations=DESTS[:1])
        for _ in range(3):
            h.refuse()
            h.delay_to_next_attempt()
        warnings = [e for e in events if "cannot connect" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(h.controller.stats.connect_failures, 3)
        h.accept().lose()
        h.delay_to_next_attempt()
        h.refuse()
        self.assertEqual(len([e for e in events if "cannot connect" in e["log_format"]]), 2)


class ConnectionControlTests(SynchronousTestCase):
    def test_any_character_connects_on_serial_data(self) -> None:
        """Any Character/None makes no attempt until a serial byte arrives; that byte is sent on connect."""
        h = Harness(self, connection_control=ConnectionControl.ANY_CHARACTER_NONE)
        h.reactor.advance(60)
        self.assertEqual(h.attempts(), [])
        h.device.receive(b"!")
        self.assertEqual(h.attempts(), list(DESTS))
        self.assertEqual(h.accept().transport.value(), b"!")

    def test_any_character_none_never_disconnects(self) -> None:
        """Any Character/None keeps the connection however long it is idle, even with an inactivity time."""
        h = Harness(self, connection_control=ConnectionControl.ANY_CHARACTER_NONE,
                    inactivity_ms=500)
        h.device.receive(b"!")
        a = h.accept()
        h.reactor.advance(3600)
        self.assertFalse(a.transport.disconnecting)

    def test_inactivity_disconnects_until_next_character(self) -> None:
        """Any Character/Inactivity Time closes after the idle time (data either way resets it) and reconnects on the next byte."""
        h = Harness(self, destinations=DESTS[:1],
                    connection_control=ConnectionControl.ANY_CHARACTER_INACTIVITY,
                    inactivity_ms=500)
        h.device.receive(b"1")
        a = h.accept()
        h.reactor.advance(0.4)
        h.device.receive(b"2")
        h.reactor.advance(0.4)
        a.send(b"x")
        h.reactor.advance(0.4)
        self.assertFalse(a.transport.disconnecting)
        h.reactor.advance(0.1)
        self.assertTrue(a.transport.disconnecting)
        a.lose()
        h.reactor.advance(120)
        self.assertEqual(h.count(), 1)
        h.device.receive(b"3")
        self.assertEqual(h.count(), 2)
        self.assertEqual(h.accept().transport.value(), b"3")

    def test_inactivity_timer_waits_for_a_connection(self) -> None:
        """The inactivity time does not run while no destination is connected yet."""
        h = Harness(self, destinations=DESTS[:1],
                    connection_control=ConnectionControl.ANY_CHARACTER_INACTIVITY,
                    inactivity_ms=500)
        h.device.receive(b"1")
        h.refuse()
        h.delay_to_next_attempt()
        a = h.accept()
        self.assertEqual(a.transport.value(), b"1")
        self.assertFalse(a.transport.disconnecting)

    def test_data_while_closing_is_buffered_for_the_next_connection(self) -> None:
        """A byte arriving while an idle connection is closing is kept and sent on the reconnection."""
        h = Harness(self, destinations=DESTS[:1],
                    connection_control=ConnectionControl.ANY_CHARACTER_INACTIVITY,
                    inactivity_ms=500)
        h.device.receive(b"1")
        a = h.accept()
        h.reactor.advance(0.5)
        self.assertTrue(a.transport.disconnecting)
        h.device.receive(b"late")
        a.lose()
        self.assertEqual(a.transport.value(), b"1")
        self.assertEqual(h.count(), 2)
        self.assertEqual(h.accept().transport.value(), b"late")

    def _line_on_off(self, control: ConnectionControl, line: str) -> None:
        h = Harness(self, destinations=DESTS[:1], lines=ModemLines(),
                    connection_control=control)
        h.reactor.advance(10)
        self.assertEqual(h.attempts(), [])
        h.set_lines(**{line: True})
        a = h.accept()
        h.set_lines(**{line: True, "cts": True})  # another line: no change
        self.assertFalse(a.transport.disconnecting)
        h.set_lines()
        self.assertTrue(a.transport.disconnecting)
        a.lose()
        h.reactor.advance(120)
        self.assertEqual(h.count(), 1)
        h.set_lines(**{line: True})
        self.assertEqual(h.count(), 2)

    def test_dsr_on_dsr_off(self) -> None:
        """DSR On/DSR Off connects when DSR turns on and disconnects when it turns off."""
        self._line_on_off(ConnectionControl.DSR_ON_DSR_OFF, "dsr")

    def test_dcd_on_dcd_off(self) -> None:
        """DCD On/DCD Off connects when DCD turns on and disconnects when it turns off."""
        self._line_on_off(ConnectionControl.DCD_ON_DCD_OFF, "dcd")

    def _line_on_none(self, control: ConnectionControl, line: str, other: str) -> None:
        h = Harness(self, destinations=DESTS[:1], lines=ModemLines(),
                    connection_control=control)
        h.set_lines(**{other: True})
        self.assertEqual(h.attempts(), [])
        h.set_lines(**{line: True})
        a = h.accept()
        h.set_lines()
        h.reactor.advance(60)
        self.assertFalse(a.transport.disconnecting)

    def test_dsr_on_none(self) -> None:
        """DSR On/None connects when DSR turns on (not on DCD) and stays connected when it turns off."""
        self._line_on_none(ConnectionControl.DSR_ON_NONE, "dsr", "dcd")

    def test_dcd_on_none(self) -> None:
        """DCD On/None connects when DCD turns on (not on DSR) and stays connected when it turns off."""
        self._line_on_none(ConnectionControl.DCD_ON_NONE, "dcd", "dsr")

    def test_line_already_on_at_start(self) -> None:
        """With DSR already on when the port starts, DSR On/DSR Off connects at once."""
        h = Harness(self, lines=ModemLines(dsr=True),
                    connection_control=ConnectionControl.DSR_ON_DSR_OFF)
        self.assertEqual(h.attempts(), list(DESTS))

    def test_no_modem_lines_logged_once(self) -> None:
        """A device without modem lines never connects in DSR/DCD modes, logged once across replugs."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self, lines=None, connection_control=ConnectionControl.DCD_ON_NONE)
        h.device.vanish()
        h.device.present = True
        h.reactor.advance(1)
        self.assertTrue(h.channel.is_open)
        h.device.receive(b"data")
        self.assertEqual(h.attempts(), [])
        self.assertEqual(len([e for e in events if "no modem lines" in e["log_format"]]), 1)
        self.flushLoggedErrors()

    def test_lines_reevaluated_after_replug(self) -> None:
        """After a replug, the reopened device's DSR decides again (off: disconnect)."""
        h = Harness(self, destinations=DESTS[:1], lines=ModemLines(dsr=True),
                    connection_control=ConnectionControl.DSR_ON_DSR_OFF)
        a = h.accept()
        h.device.vanish()
        self.assertFalse(a.transport.disconnecting)
        h.device.present = True
        h.device.lines = ModemLines()
        h.reactor.advance(1)
        self.assertTrue(a.transport.disconnecting)
        self.flushLoggedErrors()


class BufferTests(SynchronousTestCase):
    def test_buffer_flushed_to_first_connection(self) -> None:
        """Serial data received while nothing is connected goes to the first destination that connects, only."""
        h = Harness(self)
        h.device.receive(b"early ")
        h.device.receive(b"bytes")
        self.assertEqual(h.controller.buffered, 11)
        b = h.accept(DESTS[1])
        a = h.accept(DESTS[0])
        self.assertEqual((a.transport.value(), b.transport.value()), (b"", b"early bytes"))
        h.device.receive(b"!")
        self.assertEqual((a.transport.value(), b.transport.value()), (b"!", b"early bytes!"))
        self.assertEqual(h.controller.buffered, 0)

    def test_buffer_after_all_lost(self) -> None:
        """When every destination is gone, serial data is buffered again until one returns."""
        h = Harness(self, destinations=DESTS[:1])
        h.accept().lose()
        h.device.receive(b"meanwhile")
        h.delay_to_next_attempt()
        self.assertEqual(h.accept().transport.value(), b"meanwhile")

    def test_overflow_drops_oldest_and_counts(self) -> None:
        """Beyond BUFFER_SIZE the oldest bytes are dropped and counted on the port and the channel."""
        h = Harness(self, destinations=DESTS[:1])
        data = bytes(range(256)) * (BUFFER_SIZE // 256) + b"0123456789"
        for i in range(0, len(data), 1000):
            h.device.receive(data[i:i + 1000])
        self.assertEqual(h.controller.buffered, BUFFER_SIZE)
        self.assertEqual(h.controller.stats.buffer_dropped, 10)
        self.assertEqual(h.channel.stats.serial_rx_dropped, 10)
        self.assertEqual(h.accept().transport.value(), data[10:])


class BackpressureTests(SynchronousTestCase):
    def test_jammed_destination_pauses_reader(self) -> None:
        """Without ignore-jammed, a full destination pauses the serial reader until it drains."""
        h = Harness(self)
        a = h.accept(DESTS[0])
        h.accept(DESTS[1])
        a.transport.producer.pauseProducing()
        self.assertEqual(h.device.transport.producerState, "paused")  # type: ignore[union-attr]
        a.transport.producer.resumeProducing()
        self.assertEqual(h.device.transport.producerState, "producing")  # type: ignore[union-attr]

    def test_jammed_destination_lost_releases_reader(self) -> None:
        """A jammed destination that disconnects no longer holds the serial reader."""
        h = Harness(self)
        a = h.accept()
        a.transport.producer.pauseProducing()
        a.lose()
        self.assertEqual(h.device.transport.producerState, "producing")  # type: ignore[union-attr]

    def test_jammed_destination_skipped(self) -> None:
        """With ignore-jammed, a full destination misses data (counted) and the others still get it."""
        h = Harness(self, ignore_jammed=True)
        a, b = h.accept(DESTS[0]), h.accept(DESTS[1])
        a.transport.producer.pauseProducing()
        h.device.receive(b"data")
        self.assertEqual((a.transport.value(), b.transport.value()), (b"", b"data"))
        self.assertEqual(h.device.transport.producerState, "producing")  # type: ignore[union-attr]
        self.assertEqual((h.controller.stats.jammed_dropped, h.channel.stats.serial_rx_dropped),
                         (4, 4))

    def test_device_backpressure_pauses_destinations(self) -> None:
        """When the device's write buffer is full every destination's input is paused, including new ones."""
        h = Harness(self)
        a = h.accept(DESTS[0])
        producer = h.device.transport.producer  # type: ignore[union-attr]
        producer.pauseProducing()
        b = h.accept(DESTS[1])
        self.assertEqual((a.transport.producerState, b.transport.producerState),
                         ("paused", "paused"))
        producer.resumeProducing()
        self.assertEqual((a.transport.producerState, b.transport.producerState),
                         ("producing", "producing"))

    def test_destination_failure_isolated(self) -> None:
        """A destination whose write raises is aborted; the device and the other destination keep working."""
        h = Harness(self)
        a, b = h.accept(DESTS[0]), h.accept(DESTS[1])

        def boom(data: bytes) -> None:
            raise RuntimeError("destination failure")
        a.transport.write = boom  # type: ignore[method-assign]
        h.device.receive(b"z")
        self.assertEqual(b.transport.value(), b"z")
        self.assertTrue(a.transport.aborted)
        self.assertEqual(h.channel.sessions, (h.controller,))
        self.assertTrue(h.channel.is_open)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class StopTests(SynchronousTestCase):
    def test_stop_leaves_no_delayed_calls(self) -> None:
        """stopService closes connections, cancels retries and the idle timer, and fires once all are closed."""
        h = Harness(self, connection_control=ConnectionControl.ANY_CHARACTER_INACTIVITY,
                    inactivity_ms=500)
        h.device.receive(b"go")
        a = h.accept(DESTS[0])
        h.refuse(DESTS[1])
        self.assertNotEqual(h.reactor.getDelayedCalls(), [])
        d = h.front.stopService()
        self.assertTrue(a.transport.disconnecting)
        self.assertNoResult(d)
        grace = h.reactor.getDelayedCalls()
        self.assertEqual([c.getTime() for c in grace], [h.reactor.seconds() + STOP_GRACE])
        a.lose()
        self.successResultOf(d)
        self.assertEqual(h.reactor.getDelayedCalls(), [])
        h.reactor.advance(120)
        self.assertEqual(h.count(DESTS[1]), 1)

    def test_stop_while_connecting(self) -> None:
        """stopService during a connection attempt cancels it and fires at once."""
        h = Harness(self)
        self.successResultOf(h.front.stopService())
        self.assertEqual(h.reactor.getDelayedCalls(), [])

    def test_stop_aborts_after_grace(self) -> None:
        """A connection that does not close within the grace time is aborted."""
        h = Harness(self, destinations=DESTS[:1])
        a = h.accept()
        d = h.front.stopService()
        h.reactor.advance(STOP_GRACE)
        self.assertTrue(a.transport.aborted)
        a.lose()
        self.successResultOf(d)


class _Server(Factory):
    """A destination on the real reactor: hands out each new connection through a Deferred."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[Any]] = []
        self.connected: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        from tests.e2e_util import TcpCollector

        server = self

        class Peer(TcpCollector):
            def connectionMade(self) -> None:
                server.connected.append(self)
                waiting, server.waiting = server.waiting, []
                for d in waiting:
                    d.callback(self)
        return Peer()

    def next_connection(self, reactor: Any, timeout: float = 10.0) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.waiting.append(d)
        return d.addTimeout(timeout, reactor)


class LoopbackTests(TestCase):
    """The whole service in-process on the real reactor, against a real TCP server."""

    timeout = 30

    async def test_relay_and_reconnect(self) -> None:
        """The port connects to a loopback server, relays both ways, and reconnects after the server drops it."""
        from twisted.internet import reactor as global_reactor

        from nport_twisted.config.store import SettingsStore
        from nport_twisted.server import NPortService
        from nport_twisted.config.settings import DeviceConfig
        from tests.e2e_util import poll_until

        reactor: Any = global_reactor
        server = _Server()
        listening = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        dest = f"127.0.0.1:{listening.getHost().port}"
        device = FakeSerialDevice(lines=None)
        config = DeviceConfig().with_port_count(1, OpMode.TCP_CLIENT)
        config = config.replace_port(0, type(config.ports[0])(
            operating=OperatingSettings(mode=OpMode.TCP_CLIENT, destinations=(dest,))))
        svc = NPortService(reactor, ["/dev/fake0"], config, SettingsStore(None), device.opener,
                           default_mode=OpMode.TCP_CLIENT)
        first = server.next_connection(reactor)
        svc.startService()

        def stop() -> Deferred[None]:
            stopped: Deferred[None] = svc.stopService()
            device.close_complete()  # the fake device's close completes at once
            return stopped
        self.addCleanup(stop)
        peer = await first

        device.receive(b"up the line")
        await peer.wait_bytes(11, reactor, 10)
        peer.transport.write(b"down")
        await poll_until(lambda: device.written == b"down", 10, what="bytes at the device")
        self.assertEqual([c.remote_port for c in svc.net.connections],
                         [listening.getHost().port])

        second = server.next_connection(reactor)
        peer.transport.loseConnection()
        peer2 = await second
        device.receive(b"again")
        self.assertEqual(await peer2.wait_bytes(5, reactor, 10), b"again")
        self.assertEqual(bytes(peer.data), b"up the line")
