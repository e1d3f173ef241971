"""
Tests for Ethernet Modem mode (nport_twisted.modes.ethernet_modem): the
front-end on a FakeSerialDevice (with modem lines) and a MemoryReactorClock
whose dials the tests complete or refuse by hand, then end-to-end through
``twistd -n nport --mode ethernet-modem`` on a pty and loopback TCP.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    OperatingSettings,
    OpMode,
    SerialSettings,
)
from nport_twisted.device.adapter import ModemLines
from nport_twisted.device.channel import SerialChannel
from nport_twisted.modes.ethernet_modem import (
    HELD_MAX,
    MAX_RINGS,
    RING_INTERVAL,
    EthernetModemController,
    IncomingCall,
    ethernet_modem_frontend,
)
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import PortContext, ReadHold
from nport_twisted.testing import FakeSerialDevice, FakeTcpTransport
from nport_twisted.wire.hayes import CallState
from tests import test_telnet_console, test_web

OK = b"\r\nOK\r\n"
CONNECT = b"\r\nCONNECT 115200\r\n"  # the port's baud rate (factory: 115200)
RING = b"\r\nRING\r\n"
NO_CARRIER = b"\r\nNO CARRIER\r\n"
BUSY = b"\r\nBUSY\r\n"


class Harness:
    """A channel on a fake device (modem lines on) and the Ethernet Modem front-end."""

    def __init__(self, test: SynchronousTestCase, lines: ModemLines | None = ModemLines(dsr=True),
                 **operating: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.device = FakeSerialDevice(lines=lines)
        self.channel = SerialChannel(0, "/dev/fake0", SerialSettings(), self.reactor,
                                     self.device.opener)
        self.channel.startService()
        self.net = NetTable()
        self.acl = AccessibleIPSettings()
        self.ctx = PortContext(
            index=0, channel=self.channel,
            operating=OperatingSettings(mode=OpMode.ETHERNET_MODEM, **operating),
            reactor=self.reactor, endpoint=lambda proto, port: f"{proto}:{port}",
            net=self.net, accessible=lambda: self.acl)
        self.front = ethernet_modem_frontend(self.ctx)
        self.modem: EthernetModemController = self.front.controller
        test.addCleanup(self.stop)
        self.front.startService()
        self.command(b"ATE0")  # echo off: the tests see results only
        self.clear()

    def stop(self) -> None:
        if self.front.running:
            self.front.stopService()
        self.channel.stopService()
        self.device.close_complete()

    def clear(self) -> None:
        assert self.device.transport is not None
        self.device.transport.clear()

    def type(self, data: bytes) -> bytes:
        """The terminal sends C{data}; what the modem wrote back since the last call."""
        self.device.receive(data)
        out = self.device.written
        self.clear()
        return out

    def command(self, line: bytes) -> bytes:
        return self.type(line + b"\r")

    @property
    def dtr(self) -> bool | None:
        assert self.device.control is not None
        return self.device.control.dtr

    def attempts(self) -> list[tuple[str, int, float]]:
        return [(host, port, timeout) for host, port, _, timeout, _ in self.reactor.tcpClients]

    def accept_dial(self) -> tuple[Protocol, FakeTcpTransport]:
        """Complete the latest dial."""
        host, port, factory, _, _ = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = FakeTcpTransport(host, port, local_port=50000)
        protocol.makeConnection(transport)
        return protocol, transport

    def refuse_dial(self) -> None:
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(self.reactor.connectors[-1],
                                       Failure(ConnectionRefusedError()))

    def dial(self) -> tuple[Protocol, FakeTcpTransport]:
        """ATD and a connected call, results cleared."""
        self.command(b"ATD127.0.0.1:7")
        call = self.accept_dial()
        self.clear()
        return call

    def ring(self, peer: str = "10.0.0.9") -> tuple[IncomingCall, FakeTcpTransport]:
        """A caller connects to the local TCP port."""
        protocol = IncomingCall(self.modem)
        transport = FakeTcpTransport(peer)
        protocol.makeConnection(transport)
        return protocol, transport

    def advance(self, seconds: float) -> None:
        self.reactor.advance(seconds)


def lose(protocol: Protocol, transport: FakeTcpTransport) -> None:
    """Finish a connection's close (the peer closed, or ours completed)."""
    protocol.connectionLost(Failure(ConnectionDone()))


class DialTests(SynchronousTestCase):
    """ATD: the outgoing call."""

    def test_dial_connect_and_relay(self) -> None:
        """ATD host:port connects (S7 s allowed): CONNECT <baud>, data both ways, carrier on."""
        h = Harness(self)
        self.assertFalse(h.dtr)  # &C1: no carrier while idle
        self.assertEqual(h.command(b"ATD127.0.0.1:2000"), b"")
        self.assertEqual(h.attempts(), [("127.0.0.1", 2000, 50.0)])
        protocol, transport = h.accept_dial()
        self.assertEqual(h.device.written, CONNECT)
        self.assertTrue(h.dtr)
        self.assertEqual([(c.remote_host, c.remote_port) for c in h.net.connections],
                         [("127.0.0.1", 2000)])
        h.clear()
        self.assertEqual(h.type(b"up the line"), b"")
        self.assertEqual(transport.value(), b"up the line")
        protocol.dataReceived(b"down")
        self.assertEqual(h.device.written, b"down")

    def test_dial_forms(self) -> None:
        """ATDT and ATDP, dotted and 12-digit addresses all dial the same host."""
        h = Harness(self)
        for line in (b"ATDT127.0.0.1:2001", b"ATDP 127000000001:2002", b"atdt127000000001 2003"):
            h.command(line)
            h.type(b"x")  # a key aborts the dial: back to command mode
        self.assertEqual([(a[0], a[1]) for a in h.attempts()],
                         [("127.0.0.1", 2001), ("127.0.0.1", 2002), ("127.0.0.1", 2003)])

    def test_s7_is_the_dial_timeout(self) -> None:
        """ATS7=5: the dial gives up after 5 s with NO CARRIER and a log line."""
        h = Harness(self)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h.command(b"ATS7=5")
        h.command(b"ATD127.0.0.1:2000")
        h.advance(4.9)
        self.assertEqual(h.device.written, b"")
        h.advance(0.2)
        self.assertEqual(h.device.written, NO_CARRIER)
        self.assertIs(h.modem.modem.state, CallState.IDLE)
        self.assertIn("port1: dial to 127.0.0.1:2000 failed (no answer in time): NO CARRIER",
                      [e["log_format"].format(**e) for e in logged
                       if "dial to" in e["log_format"]])

    def test_refused_is_busy(self) -> None:
        """A refused dial answers BUSY; the modem takes commands again."""
        h = Harness(self)
        h.command(b"ATD127.0.0.1:2000")
        h.refuse_dial()
        self.assertEqual(h.device.written, BUSY)
        h.clear()
        self.assertEqual(h.command(b"AT"), OK)
        self.assertEqual(h.modem.stats.dial_failures, 1)

    def test_bad_dial_string(self) -> None:
        """A dial string that is no address: ERROR, nothing dialed."""
        h = Harness(self)
        self.assertEqual(h.command(b"ATD999.1.1.1:7"), b"\r\nERROR\r\n")
        self.assertEqual(h.attempts(), [])

    def test_key_aborts_dial_and_late_connection_is_dropped(self) -> None:
        """A key during the dial: NO CARRIER; the attempt is cancelled."""
        h = Harness(self)
        h.command(b"ATD127.0.0.1:2000")
        self.assertEqual(h.type(b"x"), NO_CARRIER)
        self.assertTrue(h.reactor.connectors[-1].stoppedConnecting)  # type: ignore[attr-defined]

    def test_escape_online_and_hangup(self) -> None:
        """+++ after the guard time: OK, the call is not read; ATO resumes; ATH hangs up."""
        h = Harness(self)
        protocol, transport = h.dial()
        h.advance(1.1)
        self.assertEqual(h.type(b"+++"), b"")
        self.assertEqual(transport.value(), b"")
        h.advance(1.1)  # the guard time after it, on the clock
        self.assertEqual(h.device.written, OK)
        h.clear()
        protocol.dataReceived(b"while in command mode")
        self.assertEqual(h.command(b"ATS0?"), b"\r\n000\r\n" + OK)  # kept, not shown
        self.assertEqual(h.command(b"ATO"), CONNECT + b"while in command mode")
        self.assertEqual(h.type(b"data"), b"")
        self.assertEqual(transport.value(), b"data")
        h.advance(1.1)
        h.type(b"+++")
        h.advance(1.1)
        h.clear()
        self.assertEqual(h.command(b"ATH"), NO_CARRIER)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(h.dtr)
        lose(protocol, transport)
        self.assertEqual(h.device.written, b"")  # no second NO CARRIER
        self.assertEqual(h.net.connections, [])

    def test_plus_within_data_is_data(self) -> None:
        """+++ without the guard time before it is sent as data."""
        h = Harness(self)
        _, transport = h.dial()
        h.type(b"a+++b")
        self.assertEqual(transport.value(), b"a+++b")

    def test_remote_hangup(self) -> None:
        """The remote closing: NO CARRIER, carrier off, commands again."""
        h = Harness(self)
        protocol, transport = h.dial()
        lose(protocol, transport)
        self.assertEqual(h.device.written, NO_CARRIER)
        self.assertFalse(h.dtr)
        h.clear()
        self.assertEqual(h.command(b"AT"), OK)

    def test_terminal_dtr_drop_hangs_up(self) -> None:
        """The terminal dropping DTR (our DSR) hangs up (&D2, the factory setting)."""
        h = Harness(self)
        _, transport = h.dial()
        h.device.lines = ModemLines(dsr=False)
        h.advance(h.channel.modem_poll_interval)
        self.assertEqual(h.device.written, NO_CARRIER)
        self.assertTrue(transport.disconnecting)

    def test_dcd_always_on(self) -> None:
        """AT&C0: carrier (our DTR) stays on while idle."""
        h = Harness(self)
        h.command(b"AT&C0")
        self.assertTrue(h.dtr)

    def test_failing_call_write_never_reaches_the_serial_side(self) -> None:
        """A call whose transport raises on write is hung up with NO CARRIER; nothing raises."""
        h = Harness(self)
        _, transport = h.dial()

        def broken(data: bytes) -> None:
            raise OSError("broken")
        transport.write = broken  # type: ignore[method-assign]
        h.device.receive(b"data")
        self.assertEqual(h.device.written, NO_CARRIER)
        self.assertTrue(transport.aborted)
        self.assertEqual(self.flushLoggedErrors(OSError)[0].value.args, ("broken",))
        self.assertIn(h.modem, h.channel.sessions)

    def test_jammed_call_pauses_the_serial_reader(self) -> None:
        """A call that does not take our bytes holds the serial reader, released by hang-up."""
        h = Harness(self)
        protocol, transport = h.dial()
        transport.producer.pauseProducing()  # type: ignore[union-attr]
        self.assertEqual(h.device.transport.producerState, "paused")  # type: ignore[union-attr]
        lose(protocol, transport)
        self.assertEqual(h.device.transport.producerState, "producing")  # type: ignore[union-attr]


class IncomingTests(SynchronousTestCase):
    """Callers on the local TCP port: RING, ATA, S0."""

    def test_listens_on_the_local_tcp_port(self) -> None:
        """4001+n-1 by default; local_tcp_port when set."""
        self.assertEqual([p[0] for p in Harness(self).reactor.tcpServers], [4001])
        self.assertEqual([p[0] for p in Harness(self, local_tcp_port=5000).reactor.tcpServers],
                         [5000])

    def test_ring_and_answer(self) -> None:
        """A caller rings at once and every RING_INTERVAL; its bytes wait for ATA; then relays."""
        h = Harness(self)
        protocol, transport = h.ring()
        self.assertEqual(h.device.written, RING)
        protocol.dataReceived(b"early ")
        self.assertEqual(h.device.written, RING)
        h.clear()
        h.advance(RING_INTERVAL)
        self.assertEqual(h.device.written, RING)
        h.clear()
        self.assertEqual(h.command(b"ATS1?"), b"\r\n002\r\n" + OK)
        self.assertEqual(h.command(b"ATA"), CONNECT + b"early ")
        self.assertTrue(h.dtr)
        h.advance(RING_INTERVAL * 3)
        self.assertEqual(h.device.written, b"")  # no more rings
        protocol.dataReceived(b"from the caller")
        self.assertEqual(h.device.written, b"from the caller")
        h.type(b"to the caller")
        self.assertEqual(transport.value(), b"to the caller")

    def test_flood_while_ringing_pauses_the_caller(self) -> None:
        """From HELD_MAX kept bytes on the caller is not read; ATA delivers all, in order."""
        h = Harness(self)
        protocol, transport = h.ring()
        chunk = bytes(range(256)) * 64  # 16 KiB
        for _ in range(HELD_MAX // len(chunk)):
            self.assertEqual(protocol.read_holds, frozenset())
            protocol.dataReceived(chunk)
        self.assertEqual(protocol.read_holds, frozenset({ReadHold.MODEM_COMMAND}))
        h.clear()
        self.assertEqual(h.command(b"ATA"), CONNECT + chunk * (HELD_MAX // len(chunk)))
        self.assertEqual(protocol.read_holds, frozenset())

    def test_auto_answer(self) -> None:
        """ATS0=2: answered on the second ring."""
        h = Harness(self)
        h.command(b"ATS0=2")
        protocol, _ = h.ring()
        h.advance(RING_INTERVAL)
        self.assertEqual(h.device.written, RING + RING + CONNECT)

    def test_unanswered_caller_dropped(self) -> None:
        """After MAX_RINGS rings without ATA the caller is closed; the modem is idle."""
        h = Harness(self)
        protocol, transport = h.ring()
        for _ in range(MAX_RINGS):
            h.advance(RING_INTERVAL)
        self.assertEqual(h.device.written, RING * MAX_RINGS)
        self.assertTrue(transport.disconnecting)
        lose(protocol, transport)
        self.assertIs(h.modem.modem.state, CallState.IDLE)
        self.assertEqual(h.modem.stats.unanswered, 1)

    def test_caller_leaving_stops_the_rings(self) -> None:
        """The caller closing while it rings: no NO CARRIER, no more RING."""
        h = Harness(self)
        protocol, transport = h.ring()
        h.clear()
        lose(protocol, transport)
        h.advance(RING_INTERVAL * 2)
        self.assertEqual(h.device.written, b"")
        self.assertEqual(h.command(b"ATA"), NO_CARRIER)

    def test_busy_modem_refuses_callers(self) -> None:
        """While a call is up (or ringing) another caller is closed at once."""
        h = Harness(self)
        h.dial()
        _, second = h.ring("10.0.0.8")
        self.assertTrue(second.disconnecting)
        self.assertEqual(h.device.written, b"")
        self.assertEqual(h.modem.stats.refused_busy, 1)

    def test_accessible_ip_list(self) -> None:
        """A caller the accessible IP list does not allow never rings."""
        h = Harness(self)
        h.acl = AccessibleIPSettings(entries=(AccessibleIP("10.0.0.1"),))
        _, transport = h.ring("10.0.0.9")
        self.assertTrue(transport.aborted)
        self.assertEqual(h.device.written, b"")

    def test_remote_hangup_after_answer(self) -> None:
        h = Harness(self)
        protocol, transport = h.ring()
        h.command(b"ATA")
        h.clear()
        lose(protocol, transport)
        self.assertEqual(h.device.written, NO_CARRIER)


class RobustnessTests(SynchronousTestCase):
    """Bad input gets a result code; the serial side never sees an exception."""

    def test_line_too_long(self) -> None:
        """An AT line longer than the buffer: ERROR when it ends."""
        h = Harness(self)
        self.assertEqual(h.command(b"AT" + b"E" * 200), b"\r\nERROR\r\n")
        self.assertEqual(h.command(b"AT"), OK)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.one_of(
        st.tuples(st.just("serial"), st.sampled_from(
            [b"AT\r", b"ATD127.0.0.1:7\r", b"ATA\r", b"ATH\r", b"ATO\r", b"+++", b"ATZ\r",
             b"ATS0=1\r", b"ATS12=0\r", b"AT&C0\r"]) | st.binary(max_size=30)),
        st.tuples(st.just("advance"), st.sampled_from([0.01, 0.5, 1.1, RING_INTERVAL, 60.0])),
        st.tuples(st.just("accept"), st.just(b"")),
        st.tuples(st.just("refuse"), st.just(b"")),
        st.tuples(st.just("ring"), st.just(b"")),
        st.tuples(st.just("remote"), st.binary(min_size=1, max_size=30)),
        st.tuples(st.just("lose"), st.just(b"")),
    ), max_size=40))
    def test_any_sequence_never_raises(self, steps: list[tuple[str, Any]]) -> None:
        """Any serial bytes, times and network events: no failure logged, still attached."""
        h = Harness(self)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        calls: list[tuple[Protocol, FakeTcpTransport]] = []
        handled = 0  # dial attempts completed or refused
        for kind, value in steps:
            if kind == "serial":
                h.device.receive(value)
            elif kind == "advance":
                h.advance(value)
            elif kind in ("accept", "refuse") and len(h.reactor.tcpClients) > handled:
                handled = len(h.reactor.tcpClients)
                if kind == "accept":
                    calls.append(h.accept_dial())
                else:
                    h.refuse_dial()
            elif kind == "ring":
                calls.append(h.ring())
            elif kind == "remote" and calls and not calls[-1][1].disconnecting:
                calls[-1][0].dataReceived(value)
            elif kind == "lose" and calls:
                lose(*calls.pop())
        self.assertEqual([e for e in logged if e.get("log_failure") is not None], [])
        self.assertIn(h.modem, h.channel.sessions)
        self.assertLessEqual(len(h.modem._held), HELD_MAX + 30)

    def test_modem_failure_is_logged_not_raised(self) -> None:
        """An exception inside the modem is logged; the session stays attached."""
        h = Harness(self)

        def broken(data: bytes, now: float) -> Any:
            raise RuntimeError("boom")
        h.modem.modem.feed = broken  # type: ignore[method-assign]
        h.device.receive(b"AT\r")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn(h.modem, h.channel.sessions)

    def test_stop_cleans_up(self) -> None:
        """Stopping: the call aborted, no timer left, DTR back on for the next mode."""
        h = Harness(self)
        protocol, transport = h.ring()
        h.front.stopService()
        self.assertTrue(transport.aborted)
        lose(protocol, transport)
        self.assertEqual([c for c in h.reactor.getDelayedCalls() if "_poll_lines" not in repr(c)],
                         [])  # the channel's modem-line poll is the channel's
        self.assertTrue(h.dtr)
        self.assertNotIn(h.modem, h.channel.sessions)

    def test_stop_while_dialing(self) -> None:
        h = Harness(self)
        h.command(b"ATD127.0.0.1:2000")
        h.front.stopService()
        self.assertTrue(h.reactor.connectors[-1].stoppedConnecting)  # type: ignore[attr-defined]
        self.assertEqual(h.device.written, b"")

    def test_registered(self) -> None:
        from nport_twisted.server import frontend_builders

        self.assertIs(frontend_builders()[OpMode.ETHERNET_MODEM], ethernet_modem_frontend)


class SettingsFacesTests(SynchronousTestCase):
    """The mode and its settings through the settings file, the web form and the JSON API."""

    def test_settings_file(self) -> None:
        """mode = ethernet-modem with its local TCP port loads and is written back."""
        from nport_twisted.config.store import dumps, loads

        config = loads("[port1.operating]\nmode = ethernet-modem\nlocal_tcp_port = 5000\n"
                       "tcp_alive_check_min = 3\n")
        operating = config.ports[0].operating
        self.assertEqual((operating.mode, operating.local_tcp_port, operating.tcp_alive_check_min),
                         (OpMode.ETHERNET_MODEM, 5000, 3))
        self.assertEqual(loads(dumps(config)).ports[0].operating, operating)

    def test_web_form(self) -> None:
        """The operating form takes the mode's fields (alive check, packing, local TCP port)."""
        from nport_twisted.server import frontend_builders
        from nport_twisted.web import forms

        form = {"mode": "ethernet-modem", "tcp_alive_check_min": "2", "packing_length": "0",
                "delimiter1": "0d", "delimiter2": "", "delimiter_process": "do-nothing",
                "force_transmit_ms": "0", "local_tcp_port": "4101"}
        new = forms.parse_operating_form(form, OperatingSettings(), frontend_builders())
        self.assertEqual((new.mode, new.tcp_alive_check_min, new.delimiter1, new.local_tcp_port),
                         (OpMode.ETHERNET_MODEM, 2, 0x0D, 4101))


class ApiTests(test_web.WebTestCase):
    """PUT the mode over the JSON API: saved, and the port runs the modem on its port."""

    def setUp(self) -> None:
        from nport_twisted.server import frontend_builders

        self.patch(test_web, "_BUILDERS", frontend_builders())  # every mode, not the web's three
        super().setUp()

    def test_api_puts_the_mode_in_force(self) -> None:
        from nport_twisted.modes.ethernet_modem import EthernetModemService

        h = {"Authorization": f"Bearer {self.api_token()}"}
        response = self.client.request(
            "PUT", "/api/v1/settings/ports/1/operating", headers=h,
            json_body={"mode": "ethernet-modem", "local_tcp_port": 4101})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.client.post("/api/v1/save", headers=h).json(),
                         {"applied": True, "saved": True})
        self.assertIsInstance(self.server.ports[0].frontend, EthernetModemService)
        self.assertIn(test_web.OFFSET + 4101, self.listening())
        got = self.client.get("/api/v1/settings/ports/1/operating", headers=h).json()
        self.assertEqual((got["mode"], got["local_tcp_port"]), ("ethernet-modem", 4101))


class TelnetConsoleTests(test_telnet_console.ConsoleTestCase):
    """The telnet console's operating menu offers the mode with its fields."""

    def test_choose_mode(self) -> None:
        client = self.logged_in()
        client.send("4", "1", "1", "ethernet-modem")
        self.assertEqual(self.console.pending.ports[0].operating.mode, OpMode.ETHERNET_MODEM)
        answer = client.send("")
        self.assertIn("Local TCP port", answer)
        self.assertIn("TCP alive check", answer)
        self.assertNotIn("Max connection", answer)


# -- end to end ----------------------------------------------------------------------------


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class EndToEndTests(TestCase):
    """``twistd -n nport --mode ethernet-modem`` on a pty, calls over loopback."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        from tests.e2e_util import have_ptys

        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        self.reactor: Any = reactor
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    async def _start(self) -> tuple[Any, int, Any]:
        from tests.e2e_util import LOOPBACK, Pty, Service, free_port_offset

        pty = Pty()
        self.addCleanup(pty.close)
        offset = free_port_offset()
        service = Service(self.dir, ["--interface", LOOPBACK, "--port-offset", str(offset),
                                     "--mode", "ethernet-modem", "--ports", pty.path])
        service.start()
        self.addCleanup(self._check_and_stop, service)
        await service.wait_listening([4001 + offset])
        await service.wait_device_open(pty.path)
        return pty.attach(self.reactor), offset, service

    def _check_and_stop(self, service: Any) -> None:
        service.stop()
        if service.problems():
            self.fail("the service logged errors:\n" + service.log())

    async def _expect(self, master: Any, text: bytes, what: str) -> None:
        from tests.e2e_util import poll_until

        try:
            await poll_until(lambda: text in master.data, 15, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the pty got {bytes(master.data)!r}") from None
        del master.data[:master.data.index(text) + len(text)]

    async def test_dial_echo_then_ring_and_answer(self) -> None:
        """
        The pty "terminal" dials a loopback echo server and gets its bytes
        back, escapes (+++ with S12=0) and hangs up; then a TCP client
        connects, the pty sees RING, ATA answers, data flows both ways.
        """
        from tests.e2e_util import poll_until, tcp_connect

        echo = self.reactor.listenTCP(0, Factory.forProtocol(_Echo), interface="127.0.0.1")
        self.addCleanup(echo.stopListening)
        master, offset, service = await self._start()

        # A caller that leaves while it rings frees the modem at once (no 30 s wait).
        gone = await tcp_connect(self.reactor, 4001 + offset)
        await self._expect(master, b"RING\r\n", "RING of the first caller")
        gone.transport.loseConnection()
        await gone.closed
        await poll_until(lambda: "127.0.0.1 hung up" in service.log(), 15,
                         what="the service to notice the caller left")
        master.write(b"ATS12=0\r")
        await self._expect(master, b"OK\r\n", "OK to ATS12=0")
        master.write(b"ATDT127.0.0.1:%d\r" % echo.getHost().port)
        await self._expect(master, b"CONNECT 115200\r\n", "CONNECT")
        payload = os.urandom(4096).replace(b"+", b"-")
        master.write(payload)
        await self._expect(master, payload, "the echo of 4 KiB")
        master.write(b"+++")
        await self._expect(master, b"OK\r\n", "OK after +++")
        master.write(b"ATH\r")
        await self._expect(master, b"NO CARRIER\r\n", "NO CARRIER after ATH")

        client = await tcp_connect(self.reactor, 4001 + offset)
        self.addCleanup(lambda: client.transport.loseConnection())
        await self._expect(master, b"RING\r\n", "RING")
        master.write(b"ATA\r")
        await self._expect(master, b"CONNECT 115200\r\n", "CONNECT after ATA")
        client.transport.write(b"hello terminal")
        await self._expect(master, b"hello terminal", "the caller's bytes")
        master.write(b"hello caller")
        await client.wait_bytes(12, self.reactor, 15)
        self.assertEqual(bytes(client.data), b"hello caller")
        client.transport.loseConnection()
        await self._expect(master, b"NO CARRIER\r\n", "NO CARRIER after the caller left")

    async def test_refused_dial_is_busy(self) -> None:
        """Dialing a loopback port nobody listens on answers BUSY."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        master, _, _ = await self._start()
        master.write(b"ATD127.0.0.1:%d\r" % closed_port)
        await self._expect(master, b"BUSY\r\n", "BUSY")
        master.write(b"AT\r")
        await self._expect(master, b"OK\r\n", "OK after BUSY")


