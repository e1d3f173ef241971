"""
Tests for RFC 2217 mode (nport_twisted.modes.rfc2217): the protocol over in-memory
transports, and pyserial's real ``rfc2217://`` client against the running
service on a pty.
"""

from __future__ import annotations

import os
import termios
import time
from typing import Any

import attrs
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from nport_twisted.wire import telnet as t
from nport_twisted.device.channel import IChannelSession
from nport_twisted.modes.rfc2217 import Rfc2217Factory, Rfc2217Protocol, rfc2217_frontend
from nport_twisted.device.adapter import LineCounters, ModemLines
from nport_twisted.server import frontend_builders
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    FlowControl,
    OpMode,
    Parity,
    SerialSettings,
)
from nport_twisted.wire.telnet import ComPortCommand as Cmd
from nport_twisted.wire.telnet import ComPortMessage
from nport_twisted.testing import FakePort, FakeTcpTransport
from tests.e2e_util import LOOPBACK, Pty, Service, free_port_offset, have_ptys

#: What the server sends on connect.
GREETING = bytes((255, t.WILL, t.BINARY, 255, t.DO, t.BINARY, 255, t.WILL, t.SGA,
                  255, t.DO, t.SGA, 255, t.DO, t.COM_PORT_OPTION))


def request(command: Cmd, value: int | bytes | None = None) -> bytes:
    """A client's COM-PORT-OPTION message."""
    return t.encode_com_port(ComPortMessage(command, value))


def reply(command: Cmd, value: int | bytes | None = None) -> bytes:
    """The server's COM-PORT-OPTION message."""
    return t.server_reply(command, value)


def neg(verb: int, option: int) -> bytes:
    return t.encode_negotiation(verb, option)


#: Default modem lines of the fake device: all off.
_NO_LINES_SET = ModemLines()


class Harness(FakePort):
    def __init__(self, test: SynchronousTestCase, lines: ModemLines | None = _NO_LINES_SET,
                 counters: LineCounters | None = None, **operating: Any) -> None:
        super().__init__(OpMode.RFC2217, lines=lines, counters=counters, **operating)
        test.addCleanup(self.stop)
        self.factory = Rfc2217Factory(self.ctx)

    @property
    def control(self) -> Any:
        return self.device.control

    def connect(self, peer: str = "10.0.0.1", rfc2217: bool = True) -> tuple[Rfc2217Protocol, FakeTcpTransport]:
        """A client; with C{rfc2217} it agrees to the COM-PORT-OPTION and its output is cleared."""
        proto = self.factory.buildProtocol(None)
        transport = self.accept(proto, peer)
        if rfc2217 and not transport.disconnecting:
            proto.dataReceived(neg(t.WILL, t.COM_PORT_OPTION) + neg(t.DO, t.BINARY)
                               + neg(t.WILL, t.BINARY))
            transport.clear()
        return proto, transport

    def ask(self, proto: Rfc2217Protocol, transport: FakeTcpTransport, data: bytes) -> bytes:
        """Send C{data} from the client; what the server answered."""
        transport.clear()
        proto.dataReceived(data)
        out = transport.value()
        transport.clear()
        return out


class NegotiationTests(SynchronousTestCase):
    """Telnet option negotiation."""

    def test_session_interface(self) -> None:
        """An RFC 2217 connection implements IChannelSession."""
        proto, _ = Harness(self).connect()
        self.assertTrue(verifyObject(IChannelSession, proto))

    def test_greeting(self) -> None:
        """On connect the server offers BINARY and SGA both ways and asks for the COM-PORT-OPTION."""
        h = Harness(self)
        _, transport = h.connect(rfc2217=False)
        self.assertEqual(transport.value(), GREETING)
        self.assertTrue(transport.nodelay)

    def test_com_port_accepted_then_modem_state_sent(self) -> None:
        """The client's WILL needs no answer; its DO gets WILL; then one NOTIFY-MODEMSTATE follows."""
        h = Harness(self, lines=ModemLines(cts=True, dcd=True))
        proto, transport = h.connect(rfc2217=False)
        out = h.ask(proto, transport, neg(t.WILL, t.COM_PORT_OPTION) + neg(t.DO, t.COM_PORT_OPTION))
        self.assertEqual(out, reply(Cmd.NOTIFY_MODEMSTATE, 0x90) + neg(t.WILL, t.COM_PORT_OPTION))

    def test_unknown_options_refused(self) -> None:
        """DO ECHO gets WONT, WILL TERMINAL-TYPE gets DONT, and refusals are not answered."""
        h = Harness(self)
        proto, transport = h.connect()
        self.assertEqual(h.ask(proto, transport, neg(t.DO, t.ECHO) + neg(t.WILL, 24)),
                         neg(t.WONT, t.ECHO) + neg(t.DONT, 24))
        self.assertEqual(h.ask(proto, transport, neg(t.DONT, t.ECHO) + neg(t.WONT, 24)), b"")

    def test_com_port_without_negotiation(self) -> None:
        """A client that skips negotiation still gets the modem state and its answer."""
        h = Harness(self, lines=None)
        proto, transport = h.connect(rfc2217=False)
        out = h.ask(proto, transport, request(Cmd.SET_BAUDRATE, 0))
        self.assertEqual(out, reply(Cmd.NOTIFY_MODEMSTATE, 0xB0) + reply(Cmd.SET_BAUDRATE, 115200))

    def test_signature(self) -> None:
        """An empty SIGNATURE asks for ours; a client's own signature is only logged."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SIGNATURE, b""))
        self.assertTrue(out.startswith(b"\xff\xfa\x2c\x64nport-twisted "), out)
        self.assertEqual(h.ask(proto, transport, request(Cmd.SIGNATURE, b"pyserial")), b"")

    def test_nvt_when_binary_refused(self) -> None:
        """A client refusing BINARY gets CR NUL for a bare CR, and its CR NUL arrives as CR."""
        h = Harness(self)
        proto, transport = h.connect(rfc2217=False)
        proto.dataReceived(neg(t.WONT, t.BINARY) + neg(t.DONT, t.BINARY) + b"a\r\x00b\r\n")
        self.assertEqual(h.device.written, b"a\rb\r\n")
        transport.clear()
        h.device.receive(b"x\ry\r\n")
        self.assertEqual(transport.value(), b"x\r\x00y\r\n")


class SettingsTests(SynchronousTestCase):
    """SET-BAUDRATE, -DATASIZE, -PARITY, -STOPSIZE."""

    def test_every_set_answered_with_value(self) -> None:
        """Each SET is applied and answered (code + 100) with the value in force."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_BAUDRATE, 19200) + request(Cmd.SET_DATASIZE, 7)
                    + request(Cmd.SET_PARITY, t.PARITY_EVEN) + request(Cmd.SET_STOPSIZE, t.STOPSIZE_2))
        self.assertEqual(out, reply(Cmd.SET_BAUDRATE, 19200) + reply(Cmd.SET_DATASIZE, 7)
                         + reply(Cmd.SET_PARITY, t.PARITY_EVEN) + reply(Cmd.SET_STOPSIZE, t.STOPSIZE_2))
        self.assertEqual(h.device.in_force, SerialSettings(baudrate=19200, bytesize=7,
                                                           parity=Parity.EVEN, stopbits=2))

    def test_refused_parity_answers_value_in_force(self) -> None:
        """A parity the device refuses (a pty) is answered with the parity really in force."""
        h = Harness(self)
        h.device.refuse = {"parity"}
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_PARITY, t.PARITY_ODD))
        self.assertEqual(out, reply(Cmd.SET_PARITY, t.PARITY_NONE))

    def test_query_with_zero(self) -> None:
        """Value 0 asks for the current setting without applying anything."""
        h = Harness(self)
        proto, transport = h.connect()
        applied = len(h.control.applied)
        out = h.ask(proto, transport, request(Cmd.SET_BAUDRATE, 0) + request(Cmd.SET_DATASIZE, 0)
                    + request(Cmd.SET_PARITY, 0) + request(Cmd.SET_STOPSIZE, 0))
        self.assertEqual(out, reply(Cmd.SET_BAUDRATE, 115200) + reply(Cmd.SET_DATASIZE, 8)
                         + reply(Cmd.SET_PARITY, t.PARITY_NONE) + reply(Cmd.SET_STOPSIZE, t.STOPSIZE_1))
        self.assertEqual(len(h.control.applied), applied)

    def test_identical_repeat_is_free(self) -> None:
        """pyserial's repeated full configuration is answered without touching the device again."""
        h = Harness(self)
        proto, transport = h.connect()
        config = (request(Cmd.SET_BAUDRATE, 9600) + request(Cmd.SET_DATASIZE, 8)
                  + request(Cmd.SET_PARITY, t.PARITY_NONE) + request(Cmd.SET_STOPSIZE, t.STOPSIZE_1)
                  + request(Cmd.SET_CONTROL, t.CONTROL_FLOW_NONE))
        first = h.ask(proto, transport, config)
        applied = len(h.control.applied)
        self.assertEqual(h.ask(proto, transport, config), first)
        self.assertEqual(len(h.control.applied), applied)

    def test_out_of_range_answers_value_in_force(self) -> None:
        """An impossible value is not applied; the answer is the value in force."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_BAUDRATE, 10) + request(Cmd.SET_DATASIZE, 9)
                    + request(Cmd.SET_PARITY, 9) + request(Cmd.SET_STOPSIZE, 7))
        self.assertEqual(out, reply(Cmd.SET_BAUDRATE, 115200) + reply(Cmd.SET_DATASIZE, 8)
                         + reply(Cmd.SET_PARITY, t.PARITY_NONE) + reply(Cmd.SET_STOPSIZE, t.STOPSIZE_1))

    def test_split_request_answered_once(self) -> None:
        """A SET arriving one byte at a time is answered once, when complete."""
        h = Harness(self)
        proto, transport = h.connect()
        for byte in request(Cmd.SET_BAUDRATE, 0x0000FFFF):  # contains an escaped IAC
            proto.dataReceived(bytes((byte,)))
        self.assertEqual(transport.value(), reply(Cmd.SET_BAUDRATE, 0xFFFF))

    def test_settings_revert_when_client_leaves(self) -> None:
        """When the last client leaves the configured settings return and DTR goes back on."""
        h = Harness(self, max_connection=2)
        p1, t1 = h.connect()
        p2, _ = h.connect("10.0.0.2")
        h.ask(p1, t1, request(Cmd.SET_BAUDRATE, 19200) + request(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF))
        p1.connectionLost()
        self.assertEqual(h.device.in_force.baudrate, 19200)
        p2.connectionLost()
        self.assertEqual(h.device.in_force.baudrate, 115200)
        self.assertEqual((h.channel.dtr, h.control.dtr), (True, True))

    def test_device_absent(self) -> None:
        """Without the device a SET is remembered, answered, and applied when it returns."""
        h = Harness(self)
        proto, transport = h.connect()
        h.device.vanish()
        self.assertEqual(h.ask(proto, transport, request(Cmd.SET_BAUDRATE, 4800)),
                         reply(Cmd.SET_BAUDRATE, 4800))
        h.device.present = True
        h.clock.advance(1)
        self.assertEqual(h.device.in_force.baudrate, 4800)
        self.flushLoggedErrors()


class ControlTests(SynchronousTestCase):
    """SET-CONTROL, PURGE-DATA, masks and notifications."""

    def test_dtr_rts(self) -> None:
        """DTR and RTS follow SET-CONTROL and their queries report them."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF)
                    + request(Cmd.SET_CONTROL, t.CONTROL_RTS_OFF)
                    + request(Cmd.SET_CONTROL, t.CONTROL_DTR_QUERY)
                    + request(Cmd.SET_CONTROL, t.CONTROL_RTS_QUERY))
        self.assertEqual(out, reply(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF)
                         + reply(Cmd.SET_CONTROL, t.CONTROL_RTS_OFF)
                         + reply(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF)
                         + reply(Cmd.SET_CONTROL, t.CONTROL_RTS_OFF))
        self.assertEqual((h.control.dtr, h.control.rts), (False, False))
        h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_DTR_ON))
        self.assertTrue(h.control.dtr)

    def test_dtr_without_modem_lines(self) -> None:
        """On a device without modem lines (a pty) the wish is kept and acknowledged."""
        h = Harness(self, lines=None)
        proto, transport = h.connect()
        self.assertEqual(h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF)),
                         reply(Cmd.SET_CONTROL, t.CONTROL_DTR_OFF))
        self.assertFalse(h.channel.dtr)

    def test_break(self) -> None:
        """BREAK on/off is applied and its query reports the state; leaving ends it."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_BREAK_ON)
                    + request(Cmd.SET_CONTROL, t.CONTROL_BREAK_QUERY))
        self.assertEqual(out, reply(Cmd.SET_CONTROL, t.CONTROL_BREAK_ON) * 2)
        self.assertTrue(h.control.break_on)
        proto.connectionLost()
        self.assertFalse(h.control.break_on)

    def test_flow_control(self) -> None:
        """Flow settings are applied and answered; queries answer in their direction's codes."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_FLOW_HARDWARE)
                    + request(Cmd.SET_CONTROL, t.CONTROL_FLOW_QUERY)
                    + request(Cmd.SET_CONTROL, t.CONTROL_INBOUND_FLOW_QUERY)
                    + request(Cmd.SET_CONTROL, t.CONTROL_FLOW_DCD))
        self.assertEqual(out, reply(Cmd.SET_CONTROL, t.CONTROL_FLOW_HARDWARE) * 2
                         + reply(Cmd.SET_CONTROL, t.CONTROL_INBOUND_FLOW_HARDWARE)
                         + reply(Cmd.SET_CONTROL, t.CONTROL_FLOW_HARDWARE))
        self.assertIs(h.device.in_force.flow_control, FlowControl.RTS_CTS)
        self.assertEqual(h.ask(proto, transport, request(Cmd.SET_CONTROL, t.CONTROL_INBOUND_FLOW_XONXOFF)),
                         reply(Cmd.SET_CONTROL, t.CONTROL_INBOUND_FLOW_XONXOFF))
        self.assertIs(h.device.in_force.flow_control, FlowControl.XON_XOFF)

    def test_unknown_control_ignored(self) -> None:
        """A SET-CONTROL value RFC 2217 does not define gets no answer and changes nothing."""
        h = Harness(self)
        proto, transport = h.connect()
        self.assertEqual(h.ask(proto, transport, request(Cmd.SET_CONTROL, 99)), b"")

    def test_purge(self) -> None:
        """PURGE-DATA flushes the named buffers and is acknowledged with the same value."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.PURGE_DATA, t.PURGE_RECEIVE)
                    + request(Cmd.PURGE_DATA, t.PURGE_TRANSMIT) + request(Cmd.PURGE_DATA, t.PURGE_BOTH))
        self.assertEqual(out, reply(Cmd.PURGE_DATA, 1) + reply(Cmd.PURGE_DATA, 2)
                         + reply(Cmd.PURGE_DATA, 3))
        self.assertEqual((h.control.input_resets, h.control.output_resets), (2, 2))

    def test_masks_acknowledged(self) -> None:
        """SET-LINESTATE-MASK and SET-MODEMSTATE-MASK are answered with the new mask."""
        h = Harness(self)
        proto, transport = h.connect()
        out = h.ask(proto, transport, request(Cmd.SET_LINESTATE_MASK, 0x1E)
                    + request(Cmd.SET_MODEMSTATE_MASK, 0x11))
        self.assertEqual(out, reply(Cmd.SET_LINESTATE_MASK, 0x1E) + reply(Cmd.SET_MODEMSTATE_MASK, 0x11))

    def test_modemstate_notified_with_mask(self) -> None:
        """A line change is notified with delta bits, filtered through the client's mask."""
        h = Harness(self)
        proto, transport = h.connect()
        h.device.lines = ModemLines(cts=True)
        h.clock.advance(0.1)
        self.assertEqual(transport.value(), reply(Cmd.NOTIFY_MODEMSTATE, 0x11))
        h.ask(proto, transport, request(Cmd.SET_MODEMSTATE_MASK, t.MODEMSTATE_DELTA_CD))
        h.device.lines = ModemLines(cts=True, dsr=True)
        h.clock.advance(0.1)
        self.assertEqual(transport.value(), b"")
        h.device.lines = ModemLines(cts=True, dsr=True, dcd=True)
        h.clock.advance(0.1)
        self.assertEqual(transport.value(), reply(Cmd.NOTIFY_MODEMSTATE, t.MODEMSTATE_DELTA_CD))

    def test_modemstate_poll(self) -> None:
        """A NOTIFY-MODEMSTATE without value (pyserial's poll) is answered with the lines."""
        h = Harness(self, lines=ModemLines(dsr=True, ri=True))
        proto, transport = h.connect()
        self.assertEqual(h.ask(proto, transport, request(Cmd.NOTIFY_MODEMSTATE)),
                         reply(Cmd.NOTIFY_MODEMSTATE, 0x60))

    def test_linestate_notified_when_masked(self) -> None:
        """Line errors are notified only for bits in the line state mask (initially 0)."""
        h = Harness(self, counters=LineCounters())
        proto, transport = h.connect()
        h.device.counters = LineCounters(parity=1)
        h.clock.advance(0.1)
        self.assertEqual(transport.value(), b"")
        h.ask(proto, transport, request(Cmd.SET_LINESTATE_MASK, 0xFF))
        h.device.counters = LineCounters(parity=1, frame=1, brk=1)
        h.clock.advance(0.1)
        self.assertEqual(transport.value(), reply(Cmd.NOTIFY_LINESTATE,
                                                  t.LINESTATE_FRAMING | t.LINESTATE_BREAK))

    def test_linestate_poll(self) -> None:
        """A line state poll reports errors since the last poll and empty transmit registers."""
        h = Harness(self, counters=LineCounters())
        proto, transport = h.connect()
        h.device.counters = LineCounters(overrun=2)
        h.clock.advance(0.1)
        self.assertEqual(h.ask(proto, transport, request(Cmd.NOTIFY_LINESTATE)),
                         reply(Cmd.NOTIFY_LINESTATE, 0x62))
        self.assertEqual(h.ask(proto, transport, request(Cmd.NOTIFY_LINESTATE)),
                         reply(Cmd.NOTIFY_LINESTATE, 0x60))

    def test_device_loss_drops_carrier(self) -> None:
        """When the device vanishes the client is told all lines dropped."""
        h = Harness(self, lines=None)
        _, transport = h.connect()
        h.device.vanish()
        self.assertEqual(transport.value(), reply(Cmd.NOTIFY_MODEMSTATE, 0x0B))
        self.flushLoggedErrors()


class DataTests(SynchronousTestCase):
    """The data path, flow control and connection rules."""

    def test_iac_escaped_both_ways(self) -> None:
        """0xFF is doubled towards the client and undoubled towards the device."""
        h = Harness(self)
        proto, transport = h.connect()
        proto.dataReceived(b"a\xff\xffb\r\x00\xff")
        proto.dataReceived(b"\xffc")
        self.assertEqual(h.device.written, b"a\xffb\r\x00\xffc")
        h.device.receive(b"\xff\x00\xff")
        self.assertEqual(transport.value(), b"\xff\xff\x00\xff\xff")

    def test_flowcontrol_suspend(self) -> None:
        """FLOWCONTROL-SUSPEND holds serial data (pausing the reader); RESUME delivers it."""
        h = Harness(self)
        proto, transport = h.connect()
        self.assertEqual(h.ask(proto, transport, request(Cmd.FLOWCONTROL_SUSPEND)), b"")
        self.assertEqual(h.device.transport.producerState, "paused")
        h.device.receive(b"held")
        self.assertEqual(transport.value(), b"")
        h.ask(proto, transport, b"")
        proto.dataReceived(request(Cmd.FLOWCONTROL_RESUME))
        self.assertEqual(transport.value(), b"held")
        self.assertEqual(h.device.transport.producerState, "producing")

    def test_jammed_transport_pauses_reader(self) -> None:
        """A full client transport pauses the serial reader until it drains."""
        h = Harness(self)
        _, transport = h.connect()
        transport.producer.pauseProducing()
        self.assertEqual(h.device.transport.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(h.device.transport.producerState, "producing")

    def test_max_connection(self) -> None:
        """A client beyond max connection is closed; the slot is free again after a leave."""
        h = Harness(self)
        p1, _ = h.connect()
        _, t2 = h.connect("10.0.0.2", rfc2217=False)
        self.assertTrue(t2.disconnecting)
        self.assertEqual(t2.value(), b"")
        p1.connectionLost()
        _, t3 = h.connect("10.0.0.3", rfc2217=False)
        self.assertFalse(t3.disconnecting)

    def test_accessible_ip_list(self) -> None:
        """A host outside an active accessible IP list is aborted."""
        h = Harness(self)
        h.acl = AccessibleIPSettings((AccessibleIP("192.168.1.0", "255.255.255.0"),))
        _, bad = h.connect("10.0.0.1")
        _, good = h.connect("192.168.1.7")
        self.assertTrue(bad.aborted)
        self.assertFalse(good.disconnecting)

    def test_alive_check_and_inactivity(self) -> None:
        """Keep-alive is on per the alive check; no serial data for the inactivity time closes."""
        h = Harness(self, inactivity_ms=500)
        proto, transport = h.connect()
        self.assertTrue(transport.keepalive)
        h.clock.advance(0.4)
        proto.dataReceived(b"x")
        h.clock.advance(0.4)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_frontend_ports(self) -> None:
        """Port 3 listens on 4003 unless a local TCP port is configured; the mode is registered."""
        h = Harness(self)
        front = rfc2217_frontend(attrs.evolve(h.ctx, index=2))
        self.assertEqual([s.description for s in front], ["tcp:4003"])  # type: ignore[attr-defined]
        other = rfc2217_frontend(attrs.evolve(h.ctx, operating=attrs.evolve(h.ctx.operating,
                                                                             local_tcp_port=5000)))
        self.assertEqual([s.description for s in other], ["tcp:5000"])  # type: ignore[attr-defined]
        self.assertIs(frontend_builders()[OpMode.RFC2217], rfc2217_frontend)


class PySerialEndToEndTests(TestCase):
    """pyserial's rfc2217:// client against ``twistd -n nport --mode rfc2217`` on a pty."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        try:
            import serial  # noqa: F401
        except ImportError:
            raise SkipTest("pyserial is not installed") from None
        self.reactor: Any = reactor
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def _check_and_stop(self, service: Service) -> None:
        service.stop()
        if service.problems():
            self.fail("the service logged errors:\n" + service.log())

    async def test_pyserial_client(self) -> None:
        """
        pyserial opens the port, changes the baud rate (seen in the pty's
        termios), is told when parity is refused, moves 16 KiB with 0xFF
        bytes exactly both ways, purges without a timeout, drops DTR, reads
        the modem lines, and its repeated full configuration is answered at
        once.
        """
        import serial

        pty = Pty()
        self.addCleanup(pty.close)
        offset = free_port_offset()
        service = Service(self.dir, ["--interface", LOOPBACK, "--port-offset", str(offset),
                                     "--mode", "rfc2217", "--ports", pty.path])
        service.start()
        self.addCleanup(self._check_and_stop, service)
        await service.wait_listening([4001 + offset])
        await service.wait_device_open(pty.path)
        master = pty.attach(self.reactor)

        url = f"rfc2217://{LOOPBACK}:{4001 + offset}"
        ser = await deferToThread(serial.serial_for_url, url, baudrate=19200, timeout=10)
        self.addCleanup(deferToThread, ser.close)
        self.assertEqual(termios.tcgetattr(pty.slave)[4], termios.B19200)
        await deferToThread(setattr, ser, "baudrate", 57600)
        self.assertEqual(termios.tcgetattr(pty.slave)[4], termios.B57600)

        def set_parity() -> str:
            try:
                ser.parity = serial.PARITY_EVEN
            except ValueError as e:  # the server answered with NONE, the parity in force
                ser.parity = serial.PARITY_NONE
                return str(e)
            return ""

        self.assertIn("parity", await deferToThread(set_parity))

        up = os.urandom(8192) + b"\xff" * 4096 + os.urandom(4096)
        await deferToThread(ser.write, up)
        self.assertEqual(await master.wait_bytes(len(up), self.reactor, 15), up)

        down = b"\xff\xff" + os.urandom(16 * 1024) + b"\xff"
        master.write(down)
        self.assertEqual(await deferToThread(ser.read, len(down)), down)

        def timed(fn: Any, *args: Any) -> float:
            start = time.monotonic()
            fn(*args)
            return time.monotonic() - start

        self.assertLess(await deferToThread(timed, ser.reset_input_buffer), 1.0)
        self.assertLess(await deferToThread(timed, setattr, ser, "dtr", False), 1.0)
        # A pty has no modem lines: reported as CTS, DSR and CD on.
        self.assertEqual(await deferToThread(lambda: (ser.cts, ser.dsr, ser.cd, ser.ri)),
                         (True, True, True, False))
        # Assigning the timeout makes pyserial resend the whole configuration and wait for it.
        self.assertLess(await deferToThread(timed, setattr, ser, "timeout", 5), 1.0)
        self.assertEqual(termios.tcgetattr(pty.slave)[4], termios.B57600)


class FastPathTests(SynchronousTestCase):
    """
    Data with no IAC byte skips the telnet parser and the escaping; anything
    else (0xFF in the data, a sequence split across reads, NVT line endings,
    a suspended client) must take the general path.
    """

    def test_plain_data_skips_the_parser(self) -> None:
        """A chunk without IAC between sequences reaches the device without a parser call."""
        h = Harness(self)
        proto, _ = h.connect()
        fed: list[bytes] = []
        feed = proto._parser.feed
        proto._parser.feed = lambda data: fed.append(data) or feed(data)  # type: ignore[method-assign]
        proto.dataReceived(b"plain")
        proto.dataReceived(b"a\xff\xffb")
        self.assertEqual((h.device.written, fed), (b"plaina\xffb", [b"a\xff\xffb"]))

    def test_iac_split_across_reads(self) -> None:
        """An IAC at the end of one read makes the next read (with no IAC) go to the parser."""
        h = Harness(self)
        proto, _ = h.connect()
        proto.dataReceived(b"ab\xff")
        proto.dataReceived(bytes((t.NOP,)) + b"cd")  # IAC NOP split after the IAC
        proto.dataReceived(b"\xff")
        proto.dataReceived(b"\xffef")  # IAC IAC split: one 0xFF of data
        self.assertEqual(h.device.written, b"abcd\xffef")

    def test_subnegotiation_spanning_reads_never_reaches_the_device(self) -> None:
        """The IAC-free middle of a subnegotiation split over reads is payload, not data."""
        h = Harness(self)
        proto, transport = h.connect()
        sb = request(Cmd.SET_BAUDRATE, 115200)
        proto.dataReceived(sb[:4])  # IAC SB 44 1
        proto.dataReceived(sb[4:-2])  # the baud rate: no IAC in 115200
        proto.dataReceived(sb[-2:])
        self.assertEqual(h.device.written, b"")
        self.assertEqual(transport.value(), reply(Cmd.SET_BAUDRATE, 115200))

    def test_client_without_binary_gets_nvt_rules(self) -> None:
        """A client refusing BINARY has CR NUL undone on the way in, bare CR escaped on the way out."""
        h = Harness(self)
        proto, transport = h.connect(rfc2217=False)
        proto.dataReceived(neg(t.WONT, t.BINARY) + neg(t.DONT, t.BINARY))
        transport.clear()
        proto.dataReceived(b"a\r\x00b")
        self.assertEqual(h.device.written, b"a\rb")
        h.device.receive(b"x\ry")
        self.assertEqual(transport.value(), b"x\r\x00y")

    def test_serial_iac_doubled_and_suspend_holds(self) -> None:
        """Serial 0xFF is doubled; while suspended even IAC-free data is held, not written."""
        h = Harness(self)
        proto, transport = h.connect()
        h.device.receive(b"\xff")
        self.assertEqual(transport.value(), b"\xff\xff")
        proto.dataReceived(request(Cmd.FLOWCONTROL_SUSPEND))
        transport.clear()
        h.device.receive(b"later")
        self.assertEqual(transport.value(), b"")
        proto.dataReceived(request(Cmd.FLOWCONTROL_RESUME))
        self.assertEqual(transport.value(), b"later")

    def test_fast_reader_plain_data_goes_straight_to_the_device(self) -> None:
        """The reactor's fast reader: IAC-free data reaches the device without the parser."""
        h = Harness(self)
        proto, _ = h.connect()
        fast = proto.fast_received
        self.assertNotEqual(fast, proto.dataReceived)
        fed: list[bytes] = []
        feed = proto._parser.feed
        proto._parser.feed = lambda data: fed.append(data) or feed(data)  # type: ignore[method-assign]
        fast(b"plain")
        self.assertEqual((h.device.written, fed), (b"plain", []))
        self.assertEqual(h.channel.stats.serial_tx_bytes, 5)

    def test_fast_reader_falls_back_for_iac_and_commands(self) -> None:
        """0xFF in the data, a command, a split IAC: the fast reader uses the full protocol."""
        h = Harness(self)
        proto, transport = h.connect()
        fast = proto.fast_received
        fast(b"a\xff\xffb")  # a doubled IAC is one 0xFF of data
        transport.clear()
        fast(request(Cmd.SET_BAUDRATE, 9600))
        self.assertEqual(h.device.in_force.baudrate, 9600)
        self.assertEqual(transport.value(), reply(Cmd.SET_BAUDRATE, 9600))
        fast(b"c\xff")
        fast(b"\xffd")  # IAC IAC split across reads: the second read has no IAC of its own
        fast(b"\xff")
        fast(bytes((t.NOP,)) + b"e")  # IAC NOP split after the IAC
        self.assertEqual(h.device.written, b"a\xffbc\xffde")
        proto.connectionLost()
        self.assertEqual(h.device.in_force.baudrate, 115200)

    def test_fast_reader_falls_back_without_binary(self) -> None:
        """A client refusing BINARY still gets CR NUL undone through the fast reader."""
        h = Harness(self)
        proto, _ = h.connect(rfc2217=False)
        proto.dataReceived(neg(t.WONT, t.BINARY) + neg(t.DONT, t.BINARY))
        proto.fast_received(b"a\r\x00b")
        self.assertEqual(h.device.written, b"a\rb")

    def test_fast_reader_nothing_after_close_and_errors_drop_only_the_client(self) -> None:
        """As dataReceived: nothing once closed; an error aborts this connection only."""
        h = Harness(self)
        proto, transport = h.connect()
        fast = proto.fast_received

        def broken(data: bytes) -> bool:
            raise RuntimeError("boom")

        h.channel.write = broken  # type: ignore[method-assign]
        fast(b"x")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(transport.disconnecting)
        del h.channel.write
        proto.connectionLost()
        fast(b"late")
        self.assertEqual(h.device.written, b"")

    def test_host_data_through_the_channel_direct_writer(self) -> None:
        """
        Host data reaches the channel's direct writer (the dedicated relay's,
        used by SerialChannel.write), the fast reader's and the parser's
        (0xFF undoubled) alike: counted; a writer that cannot write now
        leaves it to the queued path.
        """
        h = Harness(self)
        proto, _ = h.connect()
        taken: list[bytes] = []
        h.channel.direct_write = lambda data: taken.append(data) is None
        proto.fast_received(b"direct")
        proto.fast_received(b"a\xff\xffb")  # an IAC: the parser, then channel.write
        h.channel.direct_write = lambda data: False
        proto.fast_received(b"queued")
        self.assertEqual((taken, h.device.written), ([b"direct", b"a\xffb"], b"queued"))
        self.assertEqual(h.channel.stats.serial_tx_bytes, 6 + 3 + 6)

    def test_direct_sender_only_for_plain_unescaped_data(self) -> None:
        """
        The direct sender towards the client (given a plain socket's writer)
        sends IAC-free data with BINARY on; 0xFF, a suspended client, NVT
        mode or a writer that refuses: False, and serial_data sends as before.
        """
        from nport_twisted.modes import rfc2217 as mod

        sent: list[bytes] = []
        accept = [True]
        self.patch(mod, "direct_writer",
                   lambda transport: lambda data: accept[0] and sent.append(data) is None)
        h = Harness(self)
        proto, transport = h.connect()
        direct = proto._direct_serial_writer()
        assert direct is not None
        self.assertTrue(direct(b"plain"))
        self.assertFalse(direct(b"\xff"))
        proto.dataReceived(request(Cmd.FLOWCONTROL_SUSPEND))
        self.assertFalse(direct(b"held"))
        proto.dataReceived(request(Cmd.FLOWCONTROL_RESUME))
        accept[0] = False
        self.assertFalse(direct(b"refused"))
        accept[0] = True
        proto.dataReceived(neg(t.WONT, t.BINARY) + neg(t.DONT, t.BINARY))
        self.assertFalse(direct(b"nvt"))
        self.assertEqual(sent, [b"plain"])
        proto.connectionLost()
        self.assertFalse(direct(b"late"))

    def test_subclass_with_own_received_keeps_data_received(self) -> None:
        """A subclass overriding received gets dataReceived from the fast reader."""
        class Custom(Rfc2217Protocol):
            def received(self, data: bytes) -> None:
                super().received(data)

        h = Harness(self)
        proto = Custom(h.factory)
        self.assertEqual(proto.fast_received, proto.dataReceived)
