# -*- test-case-name: tests.test_realcom -*-
"""
Tests for L{nport_twisted.modes.realcom}, the Real COM (ASPP) front-end.

The request and reply bytes are the ones of the Real COM specification
(realcom.md): what MOXA's Linux driver sends on open, close, tcsetattr and
reconnect recovery, and what the device must answer.  The serial side is a
real L{SerialChannel} over a L{FakeSerialDevice}; time is a
L{MemoryReactorClock}.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, protocol, ssl
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.device.channel import SerialChannel
from nport_twisted.net.listener import ConnectionInfo, ListenerService, NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.modes.realcom import (
    CommandProtocol,
    DataProtocol,
    RealComOptions,
    RealComPort,
    realcom_frontend,
)
from nport_twisted.device.adapter import LineCounters, ModemLines, OpenedSerial, SerialHandle
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    FlowControl,
    OperatingSettings,
    Parity,
    SerialSettings,
)
from nport_twisted.testing import FakeSerialDevice, FakeTcpTransport
from nport_twisted.config.tls import CERT_FILE, certificate_path, tls_endpoint_options


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


OK = b"\x4f\x4b"
NA = b"\x4e\x41"
ALL_ON = ModemLines(cts=True, dsr=True, dcd=True)

# Linux's first open after module load: 9600 8N1, IXON (realcom.md §3.2 step 5).
FIRST_PORT_INIT = h("2C 08 06 03 01 01 00 00 01 00")
# A typical application's tcsetattr right after open: 115200 8N1 raw (§3.2 step 10).
TCSETATTR_115200 = h("2C 08 0A 03 01 01 00 00 00 00")
# Reconnect recovery, one batch in one write (§3.5).
RECOVERY_BATCH = h("2C 08 0A 03 01 01 00 00 00 00 30 01 10 12 02 01 01")
WAIT_OQUEUE_1S = h("2F 04 E8 03 00 00")  # timeout 1000 (ms to the device)
FLUSH_BOTH = h("14 01 02")


class Box:
    """
    One Real COM port wired to a fake serial device, with helpers to play
    the host's command and data connections.
    """

    def __init__(self, max_connection: int = 1, allow_driver_control: bool = False,
                 lines: ModemLines | None = ALL_ON, counters: LineCounters | None = None,
                 settings: SerialSettings | None = None, modem_poll_interval: float = 0.1,
                 options: RealComOptions | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.device = FakeSerialDevice(lines=lines, counters=counters)
        self.settings = settings or SerialSettings()
        self.channel = SerialChannel(0, self.device.path, self.settings, self.reactor, self.device.opener,
                                     keep_open=False, modem_poll_interval=modem_poll_interval)
        self.channel.startService()
        self.net = NetTable()
        self.operating = OperatingSettings(max_connection=max_connection,
                                           allow_driver_control=allow_driver_control)
        self.ctx = PortContext(index=0, channel=self.channel, operating=self.operating, reactor=self.reactor,
                               endpoint=lambda proto, port: f"{proto}:{port}", net=self.net,
                               accessible=AccessibleIPSettings)
        self.port = RealComPort(self.ctx, options)
        self.live: list[protocol.Protocol] = []
        self._peer_port = 40000

    def _connect(self, proto: protocol.Protocol, local: Any, handle: socket.socket | None = None) -> Any:
        self._peer_port += 1
        transport = FakeTcpTransport(hostAddress=local,
                                     peerAddress=IPv4Address("TCP", "192.0.2.7", self._peer_port),
                                     handle=handle)
        proto.makeConnection(transport)
        self.live.append(proto)
        return proto

    def command(self, local: Any = None) -> CommandProtocol:
        """A host connects to the command port."""
        proto = CommandProtocol(self.port)
        self._connect(proto, local or IPv4Address("TCP", "192.0.2.1", 966))
        return proto

    def data(self, handle: socket.socket | None = None) -> DataProtocol:
        """A host connects to the data port (optionally over a real socket C{handle})."""
        proto = DataProtocol(self.port)
        self._connect(proto, IPv4Address("TCP", "192.0.2.1", 950), handle)
        return proto

    def pair(self) -> tuple[CommandProtocol, DataProtocol]:
        """A host opens the port: command connection first, then data (as npreal2d does)."""
        return self.command(), self.data()

    def opened(self, init: bytes = FIRST_PORT_INIT) -> tuple[CommandProtocol, DataProtocol]:
        """A pair that has sent PORT_INIT (notify on), with the transports cleared."""
        cmd, data = self.pair()
        cmd.dataReceived(init)
        cmd.transport.clear()
        return cmd, data

    def send(self, cmd: CommandProtocol, request: bytes) -> bytes:
        """Feed C{request} to C{cmd} in one read; return everything it answered."""
        cmd.transport.clear()
        cmd.dataReceived(request)
        return cmd.transport.value()

    def settle(self) -> None:
        """Deliver connectionLost to every connection whose transport was asked to close."""
        progress = True
        while progress:
            progress = False
            for proto in list(self.live):
                if proto.transport.disconnecting:
                    self.live.remove(proto)
                    proto.connectionLost(Failure(ConnectionDone()))
                    progress = True

    def hang_up(self, proto: protocol.Protocol) -> None:
        """The host closes one connection; the consequences run to completion."""
        proto.transport.loseConnection()
        self.settle()

    def control(self) -> Any:
        assert self.device.control is not None, "the device is not open"
        return self.device.control


class MissingDeviceTests(SynchronousTestCase):
    """
    A host must learn that the line is down (issue 13): while the device
    cannot be opened, a new Real COM pair is closed at once, so the host's
    open fails as with an NPort whose serial port cannot open.
    """

    def test_open_refused_while_missing(self) -> None:
        """Both connections of the pair close, the device is not held, the refusal is logged."""
        box = Box()
        box.device.present = False
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        cmd, data = box.pair()
        self.assertTrue(cmd.transport.disconnecting)
        self.assertTrue(data.transport.disconnecting)
        box.settle()
        self.assertEqual(box.channel.sessions, ())
        self.assertEqual(box.reactor.getDelayedCalls(), [])  # no open retry left running
        refusals = [e for e in events if "refusing a Real COM open" in e.get("log_format", "")]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(refusals[0]["log_level"], LogLevel.warn)
        self.assertEqual(refusals[0]["error"], "No such file or directory")

    def test_open_accepted_once_back(self) -> None:
        """When the device is back, the host's next open works as usual."""
        box = Box()
        box.device.present = False
        box.pair()
        box.settle()
        box.device.present = True
        cmd, data = box.opened()
        self.assertFalse(data.transport.disconnecting)
        self.assertTrue(box.channel.is_open)
        self.assertEqual(cmd.transport.value(), b"")

    def test_refusal_can_be_turned_off(self) -> None:
        """RealComOptions(refuse_without_device=False): the old accept-and-wait behaviour."""
        box = Box(options=RealComOptions(refuse_without_device=False))
        box.device.present = False
        cmd, data = box.pair()
        self.assertFalse(data.transport.disconnecting)
        box.device.present = True
        box.reactor.advance(1)  # the open retry
        self.assertTrue(box.channel.is_open)


class OpenSequenceTests(SynchronousTestCase):
    """What npreal2 sends when an application opens and configures the tty (realcom.md §3.2)."""

    def test_no_greeting(self) -> None:
        """Neither connection gets a byte from the device on connect."""
        box = Box()
        cmd, data = box.pair()
        self.assertEqual(cmd.transport.value(), b"")
        self.assertEqual(data.transport.value(), b"")

    def test_first_port_init_reply(self) -> None:
        """The first PORT_INIT gets exactly the 5-byte line status reply."""
        box = Box(lines=ModemLines(cts=True, dsr=False, dcd=True))
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 00 01 01"))
        self.assertEqual(cmd.transport.writes, [h("2C 03 00 01 01")])

    def test_first_port_init_applies_9600_8n1(self) -> None:
        """The first PORT_INIT sets the device to 9600 8N1 with XON/XOFF (IXON) and DTR/RTS on."""
        box = Box()
        cmd, _ = box.pair()
        box.control().dtr = box.control().rts = False
        box.send(cmd, FIRST_PORT_INIT)
        applied = box.device.in_force
        self.assertEqual((applied.baudrate, applied.bytesize, applied.parity, applied.stopbits),
                         (9600, 8, Parity.NONE, 1))
        self.assertEqual(applied.flow_control, FlowControl.XON_XOFF)
        self.assertEqual((box.control().dtr, box.control().rts), (True, True))

    def test_port_init_drives_dtr_rts(self) -> None:
        """PORT_INIT's DTR and RTS bytes set the lines (DTR off, RTS on)."""
        box = Box()
        cmd, _ = box.pair()
        box.send(cmd, h("2C 08 06 03 00 01 00 00 00 00"))
        self.assertEqual((box.control().dtr, box.control().rts), (False, True))

    def test_port_init_hardware_flow(self) -> None:
        """PORT_INIT's CTS/RTS flow bytes select RTS/CTS flow control."""
        box = Box()
        cmd, _ = box.pair()
        box.send(cmd, h("2C 08 06 03 01 01 01 01 00 00"))
        self.assertEqual(box.device.in_force.flow_control, FlowControl.RTS_CTS)

    def test_xonxoff_chars(self) -> None:
        """XONXOFF 11 13 is answered 18 4F 4B and stored on the device."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("18 02 11 13")), h("18 4F 4B"))
        self.assertEqual(box.control().xon_xoff_chars, (0x11, 0x13))

    def test_tx_fifo(self) -> None:
        """TX_FIFO (16, and 1 = FIFO off) is answered 30 4F 4B."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("30 01 10")), h("30 4F 4B"))
        self.assertEqual(box.send(cmd, h("30 01 01")), h("30 4F 4B"))

    def test_whole_open_in_order(self) -> None:
        """PORT_INIT, XONXOFF and TX_FIFO sent one by one get their replies one by one."""
        box = Box()
        cmd, _ = box.pair()
        replies = [box.send(cmd, req) for req in (FIRST_PORT_INIT, h("18 02 11 13"), h("30 01 10"))]
        self.assertEqual(replies, [h("2C 03 01 01 01"), h("18 4F 4B"), h("30 4F 4B")])

    def test_commands_wait_for_data_connection(self) -> None:
        """Command bytes sent before the data connection exists are answered once it connects."""
        box = Box()
        cmd = box.command()
        cmd.dataReceived(FIRST_PORT_INIT + h("18 02 11"))
        self.assertEqual(cmd.transport.value(), b"")
        self.assertEqual(box.device.opens, 0)
        box.data()
        self.assertEqual(cmd.transport.value(), h("2C 03 01 01 01"))
        cmd.dataReceived(h("13"))
        self.assertEqual(cmd.transport.value(), h("2C 03 01 01 01 18 4F 4B"))
        self.assertEqual(box.device.in_force.baudrate, 9600)

    def test_data_connection_first(self) -> None:
        """A host that connects the data port first gets PORT_INIT answered at once."""
        box = Box()
        box.data()
        cmd = box.command()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 01 01 01"))

    def test_tcsetattr_115200(self) -> None:
        """tcsetattr's PORT_INIT with index 0x0A applies 115200 8N1."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, TCSETATTR_115200), h("2C 03 01 01 01"))
        self.assertEqual(box.device.in_force.baudrate, 115200)
        self.assertEqual(box.device.in_force.flow_control, FlowControl.NONE)

    def test_mode_7e1(self) -> None:
        """Mode byte 0x0A applies 7 data bits, even parity, 1 stop bit."""
        box = Box()
        cmd, _ = box.opened()
        box.send(cmd, h("2C 08 07 0A 01 01 00 00 00 00"))
        got = box.device.in_force
        self.assertEqual((got.baudrate, got.bytesize, got.parity, got.stopbits), (19200, 7, Parity.EVEN, 1))

    def test_mode_8o2(self) -> None:
        """Mode byte 0x17 applies 8 data bits, odd parity, 2 stop bits."""
        box = Box()
        cmd, _ = box.opened()
        box.send(cmd, h("2C 08 08 17 01 01 00 00 00 00"))
        got = box.device.in_force
        self.assertEqual((got.baudrate, got.bytesize, got.parity, got.stopbits), (38400, 8, Parity.ODD, 2))

    def test_custom_baud(self) -> None:
        """PORT_INIT with index 0xFF then SETBAUD 250000 runs the device at 250000."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("2C 08 FF 03 01 01 00 00 00 00")), h("2C 03 01 01 01"))
        self.assertEqual(box.send(cmd, h("17 04") + (250000).to_bytes(4, "little")), h("17 4F 4B"))
        self.assertEqual(box.device.in_force.baudrate, 250000)

    def test_unknown_baud_index_falls_back_to_38400(self) -> None:
        """A PORT_INIT baud index outside the table (not 0xFF) gives 38400, as MOXA's device does."""
        box = Box()
        cmd, _ = box.opened()
        box.send(cmd, h("2C 08 20 03 01 01 00 00 00 00"))
        self.assertEqual(box.device.in_force.baudrate, 38400)

    def test_setbaud_below_50_not_accepted(self) -> None:
        """SETBAUD 49 is answered 17 4E 41 and the speed stays."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("17 04 31 00 00 00")), h("17 4E 41"))
        self.assertEqual(box.device.in_force.baudrate, 9600)

    def test_setbaud_refused_by_device(self) -> None:
        """A speed the device cannot do is answered NA."""
        box = Box()
        cmd, _ = box.opened()
        box.device.refuse = {"baudrate"}
        self.assertEqual(box.send(cmd, h("17 04") + (250000).to_bytes(4, "little")), h("17 4E 41"))

    def test_port_init_baud_rejected(self) -> None:
        """A PORT_INIT speed the device refuses is answered 2C 03 FF FF FF."""
        box = Box()
        cmd, _ = box.opened()
        box.device.refuse = {"baudrate"}
        self.assertEqual(box.send(cmd, TCSETATTR_115200), h("2C 03 FF FF FF"))

    def test_session_recovery_batch_one_write(self) -> None:
        """The reconnect recovery batch in one read is answered in order in one write."""
        box = Box()
        cmd, _ = box.pair()
        cmd.dataReceived(RECOVERY_BATCH)
        self.assertEqual(cmd.transport.writes, [h("2C 03 01 01 01") + h("30 4F 4B") + h("12 4F 4B")])
        self.assertEqual(box.device.in_force.baudrate, 115200)

    def test_request_split_across_reads(self) -> None:
        """A request split over two reads is answered once complete."""
        box = Box()
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT[:4]), b"")
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT[4:]), h("2C 03 01 01 01"))

    def test_wrong_length_ignored_and_logged(self) -> None:
        """A known code with a wrong len gets no reply, is logged, and later requests are answered."""
        box = Box()
        cmd, _ = box.opened()
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertEqual(box.send(cmd, h("12 01 01")), b"")
        self.assertEqual(box.send(cmd, h("17 02 80 25 30 01 10")), h("30 4F 4B"))
        warnings = [e for e in events if e["log_level"] == LogLevel.warn and "wrong length" in e["log_format"]]
        self.assertEqual([e["code"] for e in warnings], [0x12, 0x17])

    def test_unimplemented_codes_get_no_reply(self) -> None:
        """0x29, 0x2A, 0x2B, 0x2E, 0x31 and unknown codes get no reply, as on MOXA's device."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("29 00 2A 01 00 2B 03 61 62 63 2E 00 31 00 39 00 7F 00")), b"")
        self.assertEqual(box.send(cmd, h("30 01 10")), h("30 4F 4B"))

    def test_host_name_answered_when_configured(self) -> None:
        """With answer_host_name, 0x2B is answered OK (3 bytes)."""
        box = Box(options=RealComOptions(answer_host_name=True))
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("2B 03 61 62 63")), h("2B 4F 4B"))

    def test_alive_unprompted_gets_no_reply(self) -> None:
        """ALIVE is never answered."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("28 01 05")), b"")

    def test_data_both_ways(self) -> None:
        """Data-port bytes go to the device unchanged and device bytes come back unchanged."""
        box = Box()
        _, data = box.opened()
        data.dataReceived(b"\x00\xff\x13\x11AT\r")
        self.assertEqual(box.device.written, b"\x00\xff\x13\x11AT\r")
        box.device.receive(b"OK\r\n\xff")
        self.assertEqual(data.transport.value(), b"OK\r\n\xff")

    def test_lines_without_modem(self) -> None:
        """A device without modem lines reports DSR, CTS and DCD on (lines_without_modem)."""
        box = Box(lines=None)
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 01 01 01"))

    def test_lines_without_modem_off(self) -> None:
        """With lines_without_modem off, such a device reports the lines off."""
        box = Box(lines=None, options=RealComOptions(lines_without_modem=False))
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 00 00 00"))


class DrainAndFlushTests(SynchronousTestCase):
    """The close sequence: WAIT_OQUEUE drain loop and FLUSH (realcom.md §3.3)."""

    def test_wait_oqueue_empty(self) -> None:
        """WAIT_OQUEUE with nothing queued is answered 2F 02 00 00 at once."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), h("2F 02 00 00"))

    def test_drain_loop(self) -> None:
        """Four WAIT_OQUEUE requests on a quiet port each get 2F 02 00 00."""
        box = Box()
        cmd, _ = box.opened()
        for _ in range(4):
            self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), h("2F 02 00 00"))
            box.reactor.advance(0.01)

    def test_wait_oqueue_deferred_until_drained(self) -> None:
        """With output queued the reply waits until the queue reaches 0."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 10
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), b"")
        box.reactor.advance(0.2)
        self.assertEqual(cmd.transport.value(), b"")
        box.device.output_queue = 0
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), h("2F 02 00 00"))
        box.reactor.advance(2)
        self.assertEqual(cmd.transport.value(), h("2F 02 00 00"))

    def test_second_wait_oqueue_answers_both_in_one_send(self) -> None:
        """A WAIT_OQUEUE arriving while one is pending answers the old one first, in the same single send."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 5
        box.send(cmd, WAIT_OQUEUE_1S)
        writes: list[bytes] = []
        original = cmd.transport.write
        cmd.transport.write = lambda data: (writes.append(data), original(data))  # type: ignore[method-assign]
        box.device.output_queue = 0
        cmd.dataReceived(WAIT_OQUEUE_1S)
        self.assertEqual(writes, [h("2F 02 00 00 2F 02 00 00")])
        box.reactor.advance(2)
        self.assertEqual(len(writes), 1)

    def test_wait_oqueue_timeout_reports_remaining(self) -> None:
        """At the timeout the reply carries the bytes still queued (LE16)."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 0x0107
        self.assertEqual(box.send(cmd, h("2F 04 32 00 00 00")), b"")  # 50 ms
        box.reactor.advance(0.045)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), h("2F 02 07 01"))

    def test_wait_oqueue_zero_timeout(self) -> None:
        """A timeout of 0 is read as 1 ms."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 3
        box.send(cmd, h("2F 04 00 00 00 00"))
        box.reactor.advance(0.001)
        self.assertEqual(cmd.transport.value(), h("2F 02 03 00"))

    def test_wait_oqueue_cancelled_by_close(self) -> None:
        """A pending WAIT_OQUEUE is dropped when the connection closes."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 3
        box.send(cmd, WAIT_OQUEUE_1S)
        box.hang_up(cmd)
        box.device.output_queue = 0
        box.reactor.advance(2)
        self.assertEqual(cmd.transport.writes, [])

    def test_flush_both(self) -> None:
        """FLUSH 2 is answered 14 4F 4B and resets the device's input and output."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 20
        box.device.input_queue = 5
        self.assertEqual(box.send(cmd, FLUSH_BOTH), h("14 4F 4B"))
        self.assertEqual((box.control().input_resets, box.control().output_resets), (1, 1))
        self.assertEqual((box.device.input_queue, box.device.output_queue), (0, 0))

    def test_flush_rx_only(self) -> None:
        """FLUSH 0 resets only the input side."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("14 01 00")), h("14 4F 4B"))
        self.assertEqual((box.control().input_resets, box.control().output_resets), (1, 0))

    def test_flush_tx_only(self) -> None:
        """FLUSH 1 resets only the output side."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("14 01 01")), h("14 4F 4B"))
        self.assertEqual((box.control().input_resets, box.control().output_resets), (0, 1))

    def test_close_sequence(self) -> None:
        """Drain loop, FLUSH, then the host closes both: the device is closed."""
        box = Box()
        cmd, data = box.opened()
        box.device.output_queue = 4
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), b"")
        box.device.output_queue = 0
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), h("2F 02 00 00"))
        for _ in range(3):
            self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), h("2F 02 00 00"))
        self.assertEqual(box.send(cmd, FLUSH_BOTH), h("14 4F 4B"))
        box.hang_up(cmd)
        self.assertTrue(data.transport.disconnecting)
        self.assertTrue(box.device.closing)

    def _socket_pair(self, box: Box) -> tuple[CommandProtocol, socket.socket]:
        """An opened pair whose data connection is a real socket; returns the host's end."""
        ours, host = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(host.close)
        cmd = box.command()
        box.data(handle=ours)
        cmd.dataReceived(FIRST_PORT_INIT)
        cmd.transport.clear()
        return cmd, host

    def test_wait_oqueue_counts_unread_socket_bytes(self) -> None:
        """Bytes the host sent that are still unread on the data socket count as queued."""
        box = Box()
        cmd, host = self._socket_pair(box)
        host.sendall(b"12345")
        self.assertEqual(box.send(cmd, h("2F 04 32 00 00 00")), b"")
        box.reactor.advance(0.055)
        self.assertEqual(cmd.transport.value(), h("2F 02 05 00"))

    def test_wait_oqueue_answered_when_socket_read(self) -> None:
        """The deferred reply comes once the unread bytes have been taken off the socket."""
        box = Box()
        cmd, host = self._socket_pair(box)
        host.sendall(b"abc")
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), b"")
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), b"")
        cmd.pair.data.transport.getHandle().recv(3)
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), h("2F 02 00 00"))

    def test_flush_discards_unread_socket_bytes(self) -> None:
        """FLUSH 2 also drops what the host sent and was not read yet; FLUSH 0 does not."""
        box = Box()
        cmd, host = self._socket_pair(box)
        ours = cmd.pair.data.transport.getHandle()
        host.sendall(b"stale")
        self.assertEqual(box.send(cmd, h("14 01 00")), h("14 4F 4B"))
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), b"")
        self.assertEqual(box.send(cmd, FLUSH_BOTH), h("14 4F 4B"))
        box.reactor.advance(0.01)
        self.assertEqual(cmd.transport.value(), h("14 4F 4B 2F 02 00 00"))
        self.assertRaises(BlockingIOError, ours.recv, 10, socket.MSG_DONTWAIT)

    def test_flush_start_and_stop(self) -> None:
        """FLUSH_START is answered 35 04 00 00 00 00, host data is discarded until FLUSH_STOP."""
        box = Box()
        cmd, data = box.opened()
        self.assertEqual(box.send(cmd, h("35 05 02 64 00 00 00")), h("35 04 00 00 00 00"))
        data.dataReceived(b"dropped")
        self.assertEqual(box.send(cmd, h("36 00")), h("36 4F 4B"))
        data.dataReceived(b"kept")
        self.assertEqual(box.device.written, b"kept")


class ControlRequestTests(SynchronousTestCase):
    """Line control, breaks, queues and status requests (realcom.md §1)."""

    def test_linectrl(self) -> None:
        """LINECTRL drives DTR and RTS and is answered 12 4F 4B."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("12 02 00 01")), h("12 4F 4B"))
        self.assertEqual((box.control().dtr, box.control().rts), (False, True))
        self.assertEqual(box.send(cmd, h("12 02 01 00")), h("12 4F 4B"))
        self.assertEqual((box.control().dtr, box.control().rts), (True, False))

    def test_break_on_off(self) -> None:
        """START_BREAK and STOP_BREAK switch the break condition and are answered OK."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("21 00")), h("21 4F 4B"))
        self.assertTrue(box.control().break_on)
        self.assertEqual(box.send(cmd, h("22 00")), h("22 4F 4B"))
        self.assertFalse(box.control().break_on)

    def test_timed_break(self) -> None:
        """A timed break of 100 ms (BE16) is answered OK and ends on the clock."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("23 02 00 64")), h("23 4F 4B"))
        self.assertTrue(box.control().break_on)
        box.reactor.advance(0.099)
        self.assertTrue(box.control().break_on)
        box.reactor.advance(0.001)
        self.assertFalse(box.control().break_on)

    def test_timed_break_limits(self) -> None:
        """10 and 1000 ms are accepted; 9 and 1001 ms get no reply and no break."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("23 02 00 0A")), h("23 4F 4B"))
        box.reactor.advance(0.01)
        self.assertEqual(box.send(cmd, h("23 02 03 E8")), h("23 4F 4B"))
        box.reactor.advance(1)
        self.assertFalse(box.control().break_on)
        self.assertEqual(box.send(cmd, h("23 02 00 09")), b"")
        self.assertEqual(box.send(cmd, h("23 02 03 E9")), b"")
        self.assertFalse(box.control().break_on)

    def test_setxoff_setxon(self) -> None:
        """SETXOFF suspends output and SETXON resumes it, both answered OK."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("34 00")), h("34 4F 4B"))
        self.assertTrue(box.control().suspended)
        self.assertEqual(box.send(cmd, h("33 00")), h("33 4F 4B"))
        self.assertFalse(box.control().suspended)

    def test_queue_counts(self) -> None:
        """IQUEUE and OQUEUE report the device's queues as LE16."""
        box = Box()
        cmd, _ = box.opened()
        box.device.input_queue = 0x1234
        box.device.output_queue = 300
        self.assertEqual(box.send(cmd, h("15 00")), h("15 02 34 12"))
        self.assertEqual(box.send(cmd, h("16 00")), h("16 02 2C 01"))

    def test_queue_count_saturates(self) -> None:
        """A queue above 65535 is reported as FF FF, never wrapped to a small number."""
        box = Box()
        cmd, _ = box.opened()
        box.device.output_queue = 70000
        self.assertEqual(box.send(cmd, h("16 00")), h("16 02 FF FF"))

    def test_break_count(self) -> None:
        """BREAK_COUNT reports breaks received since the last query, big-endian, then resets."""
        box = Box(counters=LineCounters())
        cmd, _ = box.opened()
        box.device.counters = LineCounters(brk=0x0102)
        box.reactor.advance(0.1)
        self.assertEqual(box.send(cmd, h("37 00")), h("37 02 01 02"))
        self.assertEqual(box.send(cmd, h("37 00")), h("37 02 00 00"))

    def test_data_status(self) -> None:
        """DATA_STATUS reports accumulated parity/framing/overrun bits, then resets."""
        box = Box(counters=LineCounters())
        cmd, _ = box.opened()
        box.device.counters = LineCounters(parity=1, frame=2)
        box.reactor.advance(0.1)
        box.device.counters = LineCounters(parity=1, frame=2, overrun=1)
        box.reactor.advance(0.1)
        self.assertEqual(box.send(cmd, h("38 00")), h("38 01 07"))
        self.assertEqual(box.send(cmd, h("38 00")), h("38 01 00"))

    def test_port_reset(self) -> None:
        """PORT_RESET "16a" is answered OK; another payload gets no reply."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("20 03 31 36 61")), h("20 4F 4B"))
        self.assertEqual(box.send(cmd, h("20 03 31 36 62")), b"")

    def test_lstatus(self) -> None:
        """LSTATUS reports DSR, CTS and DCD."""
        box = Box(lines=ModemLines(cts=False, dsr=True, dcd=False))
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("13 00")), h("13 03 01 00 00"))

    def test_ioctl_and_flowctrl(self) -> None:
        """IOCTL sets speed and mode, FLOWCTRL sets flow control; both answered OK."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("10 02 09 0A")), h("10 4F 4B"))
        got = box.device.in_force
        self.assertEqual((got.baudrate, got.bytesize, got.parity), (57600, 7, Parity.EVEN))
        self.assertEqual(box.send(cmd, h("11 04 01 01 00 00")), h("11 4F 4B"))
        self.assertEqual(box.device.in_force.flow_control, FlowControl.RTS_CTS)
        self.assertEqual(box.send(cmd, h("11 04 00 00 00 00")), h("11 4F 4B"))
        self.assertEqual(box.device.in_force.flow_control, FlowControl.NONE)

    def test_stubs_answered_ok(self) -> None:
        """DSR_SEN and START_NOTIFY/STOP_NOTIFY are answered OK."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("32 01 01 24 00 25 00")), h("32 4F 4B 24 4F 4B 25 4F 4B"))


class NotifyTests(SynchronousTestCase):
    """Unsolicited NOTIFY messages (realcom.md §5.1, §5.3)."""

    def test_cts_change(self) -> None:
        """CTS dropping is reported as 26 20 A1 80 after the next modem poll."""
        box = Box()
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 20 A1 80"))

    def test_cts_rise(self) -> None:
        """CTS rising is reported with the state high nibble and the delta low nibble."""
        box = Box(lines=ModemLines(dsr=True, dcd=True))
        cmd, _ = box.opened()
        box.device.lines = ALL_ON
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 20 B1 80"))

    def test_no_notify_before_port_init(self) -> None:
        """A connection that has not sent PORT_INIT (notify off) gets no NOTIFY."""
        box = Box()
        cmd, _ = box.pair()
        box.device.lines = ModemLines(dsr=True)
        box.reactor.advance(0.5)
        self.assertEqual(cmd.transport.value(), b"")

    def test_start_notify_enables(self) -> None:
        """START_NOTIFY enables NOTIFY without a PORT_INIT."""
        box = Box()
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, h("24 00")), h("24 4F 4B"))
        cmd.transport.clear()
        box.device.lines = ModemLines(cts=True, dsr=True)
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 20 38 80"))

    def test_rate_limited(self) -> None:
        """Two changes within 100 ms: the second NOTIFY waits until 100 ms after the first."""
        box = Box(modem_poll_interval=0.02)
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.02)
        self.assertEqual(cmd.transport.value(), h("26 20 A1 80"))
        cmd.transport.clear()
        box.device.lines = ModemLines(cts=False, dsr=False, dcd=True)
        box.reactor.advance(0.02)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.pump([0.02] * 3)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(0.03)
        self.assertEqual(cmd.transport.value(), h("26 20 82 80"))

    def test_coalesced(self) -> None:
        """Changes within one 100 ms window are coalesced into one NOTIFY with all deltas."""
        box = Box(modem_poll_interval=0.02)
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.02)
        cmd.transport.clear()
        box.device.lines = ModemLines(cts=False, dsr=False, dcd=True)
        box.reactor.advance(0.02)
        box.device.lines = ModemLines(cts=False, dsr=False, dcd=False)
        box.reactor.pump([0.02] * 5)
        self.assertEqual(cmd.transport.writes, [h("26 20 0A 80")])

    def test_pulse_within_window_reported(self) -> None:
        """A line that drops and returns within one window is still reported as changed."""
        box = Box(modem_poll_interval=0.02)
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.02)
        cmd.transport.clear()
        box.device.lines = ModemLines(cts=True, dsr=True, dcd=False)
        box.reactor.advance(0.02)
        box.device.lines = ALL_ON
        box.reactor.pump([0.02] * 5)
        self.assertEqual(cmd.transport.writes, [h("26 20 B9 80")])

    def test_stop_notify(self) -> None:
        """After STOP_NOTIFY line changes send nothing."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("25 00")), h("25 4F 4B"))
        cmd.transport.clear()
        box.device.lines = ModemLines()
        box.reactor.advance(1)
        self.assertEqual(cmd.transport.value(), b"")

    def test_lstatus_carries_pending_notify(self) -> None:
        """A NOTIFY held back by the rate limit rides on the LSTATUS reply and is not sent again."""
        box = Box(modem_poll_interval=0.02)
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.02)
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=False)
        box.reactor.advance(0.02)
        self.assertEqual(box.send(cmd, h("13 00")), h("13 03 01 00 00 26 20 28 80"))
        box.reactor.advance(1)
        self.assertEqual(cmd.transport.value(), h("13 03 01 00 00 26 20 28 80"))

    def test_port_init_reply_with_notify_tail(self) -> None:
        """The spec's example: PORT_INIT reply 2C 03 01 01 01 followed by NOTIFY 26 20 B1 80."""
        box = Box(modem_poll_interval=0.02)
        cmd, _ = box.opened()
        box.device.lines = ModemLines(cts=False, dsr=True, dcd=True)
        box.reactor.advance(0.02)
        self.assertEqual(cmd.transport.value(), h("26 20 A1 80"))
        box.device.lines = ALL_ON
        box.reactor.advance(0.02)
        self.assertEqual(box.send(cmd, TCSETATTR_115200), h("2C 03 01 01 01 26 20 B1 80"))

    def test_line_errors(self) -> None:
        """Parity, framing, overrun and break counts set event bits 0x01, 0x02, 0x04 and 0x10."""
        box = Box(counters=LineCounters())
        cmd, _ = box.opened()
        box.device.counters = LineCounters(parity=1, frame=1, overrun=1, brk=1)
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 17 B0 80"))

    def test_buffer_overrun(self) -> None:
        """A software (buffer) overrun sets event bit 0x08."""
        box = Box(counters=LineCounters())
        cmd, _ = box.opened()
        box.device.counters = LineCounters(buf_overrun=2)
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 08 B0 80"))

    def test_hold_cts(self) -> None:
        """With RTS/CTS flow and CTS off, hold reports 0x01 (TX held by CTS) with 0x80."""
        box = Box()
        cmd, _ = box.opened(h("2C 08 06 03 01 01 01 01 00 00"))
        box.device.lines = ModemLines(dsr=True, dcd=True)
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("26 20 A1 81"))

    def test_every_notify_connection(self) -> None:
        """With two hosts, each notify-enabled command connection gets the NOTIFY."""
        box = Box(max_connection=2)
        cmd1, _ = box.opened()
        cmd2, _ = box.opened()
        box.device.lines = ModemLines(dsr=True, dcd=True)
        box.reactor.advance(0.1)
        self.assertEqual((cmd1.transport.value(), cmd2.transport.value()), (h("26 20 A1 80"),) * 2)


class PollingTests(SynchronousTestCase):
    """The device's keep-alive probes (realcom.md §5.2)."""

    def test_first_probe_after_40s(self) -> None:
        """40 s without data bring 27 01 01."""
        box = Box()
        cmd, _ = box.opened()
        box.reactor.advance(39.9)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(0.1)
        self.assertEqual(cmd.transport.value(), h("27 01 01"))

    def test_probes_every_3s_while_unanswered(self) -> None:
        """Unanswered probes repeat every 3 s with increasing ids."""
        box = Box()
        cmd, _ = box.opened()
        box.reactor.advance(40)
        box.reactor.advance(3)
        box.reactor.advance(3)
        self.assertEqual(cmd.transport.value(), h("27 01 01 27 01 02 27 01 03"))

    def test_alive_resets(self) -> None:
        """ALIVE stops the probing until the line has been idle for 40 s again."""
        box = Box()
        cmd, _ = box.opened()
        box.reactor.pump([40, 3])
        self.assertEqual(cmd.transport.value(), h("27 01 01 27 01 02"))
        self.assertEqual(box.send(cmd, h("28 01 02")), b"")
        box.reactor.advance(39)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(1)
        self.assertEqual(cmd.transport.value(), h("27 01 03"))
        box.reactor.advance(11)
        self.assertFalse(cmd.transport.disconnecting)

    def test_four_misses_close_both(self) -> None:
        """After 4 unanswered probes both connections of the pair are closed (about 52 s)."""
        box = Box()
        cmd, data = box.opened()
        box.reactor.advance(40)
        box.reactor.pump([3, 3, 3])
        self.assertEqual(cmd.transport.value(), h("27 01 01 27 01 02 27 01 03 27 01 04"))
        self.assertFalse(cmd.transport.disconnecting)
        box.reactor.advance(3)
        self.assertTrue(cmd.transport.disconnecting)
        self.assertTrue(data.transport.disconnecting)
        box.settle()
        self.assertTrue(box.device.closing)

    def test_host_data_postpones(self) -> None:
        """Data from the host postpones the first probe to 40 s after it."""
        box = Box()
        cmd, data = box.opened()
        box.reactor.advance(30)
        data.dataReceived(b"x")
        box.reactor.advance(39)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(1)
        self.assertEqual(cmd.transport.value(), h("27 01 01"))

    def test_serial_data_postpones(self) -> None:
        """Data from the serial device postpones the first probe too."""
        box = Box()
        cmd, _ = box.opened()
        box.reactor.advance(20)
        box.device.receive(b"y")
        box.reactor.advance(39)
        self.assertEqual(cmd.transport.value(), b"")
        box.reactor.advance(1)
        self.assertEqual(cmd.transport.value(), h("27 01 01"))

    def test_no_probe_without_notify(self) -> None:
        """A connection without notify (no PORT_INIT, or after STOP_NOTIFY) is never probed."""
        box = Box()
        cmd, _ = box.pair()
        box.reactor.advance(120)
        self.assertEqual(cmd.transport.value(), b"")
        cmd.dataReceived(FIRST_PORT_INIT + h("25 00"))
        cmd.transport.clear()
        box.reactor.advance(120)
        self.assertEqual(cmd.transport.value(), b"")
        self.assertFalse(cmd.transport.disconnecting)

    def test_repeated_port_init_does_not_postpone(self) -> None:
        """Command traffic is not data: tcsetattr calls do not delay the probe."""
        box = Box()
        cmd, _ = box.opened()
        box.reactor.advance(30)
        box.send(cmd, TCSETATTR_115200)
        box.reactor.advance(10)
        self.assertEqual(cmd.transport.value(), h("2C 03 01 01 01 27 01 01"))

    def test_ids_skip_zero(self) -> None:
        """Probe ids run 1..255 and wrap to 1, never 0."""
        box = Box()
        cmd, _ = box.opened()
        ids = []
        for _ in range(256):
            box.reactor.advance(40)
            reply = cmd.transport.value()
            self.assertEqual(reply[:2], h("27 01"))
            ids.append(reply[2])
            box.send(cmd, h("28 01") + reply[2:3])
        self.assertEqual(ids, list(range(1, 256)) + [1])


class PairingTests(SynchronousTestCase):
    """Command/data pairing, device open/close and several hosts (realcom.md §6.1, §6.2)."""

    def test_device_opens_with_first_data_connection(self) -> None:
        """The device is opened when the first data connection arrives, not before."""
        box = Box()
        box.command()
        self.assertEqual(box.device.opens, 0)
        box.data()
        self.assertEqual(box.device.opens, 1)
        self.assertTrue(box.channel.is_open)

    def test_closing_command_closes_data(self) -> None:
        """The host closing the command connection closes the data connection and the device."""
        box = Box()
        cmd, data = box.opened()
        box.hang_up(cmd)
        self.assertTrue(data.transport.disconnecting)
        self.assertTrue(box.device.closing)

    def test_closing_data_closes_command(self) -> None:
        """The host closing the data connection closes the command connection and the device."""
        box = Box()
        cmd, data = box.opened()
        box.hang_up(data)
        self.assertTrue(cmd.transport.disconnecting)
        self.assertTrue(box.device.closing)

    def test_connections_listed_while_open(self) -> None:
        """Both connections are in the network table while open and leave it on close."""
        box = Box()
        cmd, _ = box.opened()
        self.assertEqual(sorted(c.local_port for c in box.net.connections), [950, 966])
        self.assertTrue(all(isinstance(c, ConnectionInfo) for c in box.net.connections))
        box.hang_up(cmd)
        self.assertEqual(box.net.connections, [])

    def test_second_pair_refused(self) -> None:
        """With max connection 1 a second host's connections are closed at once."""
        box = Box()
        box.opened()
        cmd2, data2 = box.pair()
        self.assertTrue(cmd2.transport.disconnecting)
        self.assertTrue(data2.transport.disconnecting)
        box.settle()
        self.assertEqual(box.device.opens, 1)
        self.assertFalse(box.device.closing)

    def test_accessible_ip_list(self) -> None:
        """A host outside an active accessible IP list is cut off on both ports and opens nothing."""
        box = Box()
        box.ctx.accessible = lambda: AccessibleIPSettings(entries=(AccessibleIP("10.0.0.0", "255.0.0.0"),))
        cmd, data = box.pair()
        self.assertTrue(cmd.transport.disconnected)
        self.assertTrue(data.transport.disconnected)
        self.assertEqual(box.device.opens, 0)
        self.assertEqual(box.net.connections, [])

    def test_reopen_after_close(self) -> None:
        """After a host closes, the next one gets the port and a freshly opened device."""
        box = Box()
        cmd, _ = box.opened()
        box.hang_up(cmd)
        box.device.close_complete()
        cmd2, _ = box.pair()
        self.assertEqual(box.send(cmd2, FIRST_PORT_INIT), h("2C 03 01 01 01"))
        self.assertEqual(box.device.opens, 2)

    def test_quick_reconnect_while_old_data_closing(self) -> None:
        """A host reconnecting before its old data connection finished closing gets a working pair."""
        box = Box()
        cmd, data = box.opened()
        cmd.transport.loseConnection()
        box.live.remove(cmd)
        cmd.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(data.transport.disconnecting)
        cmd2, data2 = box.pair()
        self.assertFalse(cmd2.transport.disconnecting)
        self.assertFalse(data2.transport.disconnecting)
        box.settle()
        self.assertFalse(box.device.closing)
        self.assertEqual(box.send(cmd2, FIRST_PORT_INIT), h("2C 03 01 01 01"))
        box.device.receive(b"still here")
        self.assertEqual(data2.transport.value(), b"still here")

    def test_settings_revert_after_last_pair(self) -> None:
        """The host's settings are forgotten when the port closes; the next open uses the configured ones."""
        configured = SerialSettings(baudrate=38400, parity=Parity.EVEN, bytesize=7)
        box = Box(settings=configured)
        cmd, _ = box.pair()
        self.assertEqual(box.device.in_force.baudrate, 38400)
        box.send(cmd, TCSETATTR_115200)
        self.assertEqual(box.device.in_force.baudrate, 115200)
        box.hang_up(cmd)
        box.device.close_complete()
        self.assertEqual(box.channel.effective_settings, configured)
        box.pair()
        self.assertEqual(box.device.in_force, configured)
        self.assertEqual(box.control().applied, [configured])

    def test_device_open_failure_still_answers(self) -> None:
        """If the device cannot be opened PORT_INIT is still answered (lines off), data is dropped."""
        box = Box()
        box.device.present = False
        cmd, data = box.pair()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 00 00 00"))
        data.dataReceived(b"lost")
        self.assertEqual(box.channel.stats.serial_tx_dropped, 4)


class MultiConnectionTests(SynchronousTestCase):
    """Max connection 2-4: a data tunnel shared by several hosts (realcom.md §6.2)."""

    def test_fan_out(self) -> None:
        """Every host receives every serial byte; bytes from each host reach the device."""
        box = Box(max_connection=2)
        _, data1 = box.opened()
        _, data2 = box.opened()
        box.device.receive(b"both")
        self.assertEqual((data1.transport.value(), data2.transport.value()), (b"both", b"both"))
        data1.dataReceived(b"one,")
        data2.dataReceived(b"two")
        self.assertEqual(box.device.written, b"one,two")
        self.assertEqual(box.device.opens, 1)

    def test_third_pair_refused(self) -> None:
        """With max connection 2 a third host is refused."""
        box = Box(max_connection=2)
        box.opened()
        box.opened()
        cmd3, data3 = box.pair()
        self.assertTrue(cmd3.transport.disconnecting)
        self.assertTrue(data3.transport.disconnecting)

    def test_control_not_applied(self) -> None:
        """Control requests are answered as usual but the device is left alone."""
        box = Box(max_connection=2)
        cmd, _ = box.pair()
        self.assertEqual(box.send(cmd, TCSETATTR_115200), h("2C 03 01 01 01"))
        replies = box.send(cmd, h("17 04 90 D0 03 00 12 02 00 00 21 00 34 00 14 01 02 18 02 11 13"))
        self.assertEqual(replies, h("17 4F 4B 12 4F 4B 21 4F 4B 34 4F 4B 14 4F 4B 18 4F 4B"))
        control = box.control()
        self.assertEqual(len(control.applied), 1)
        self.assertEqual(box.device.in_force, SerialSettings())
        self.assertEqual((control.dtr, control.rts, control.break_on, control.suspended), (True, True, False, False))
        self.assertEqual((control.input_resets, control.output_resets, control.xon_xoff_chars), (0, 0, None))

    def test_wait_oqueue_immediate(self) -> None:
        """WAIT_OQUEUE is answered 2F 02 00 00 at once even with output queued."""
        box = Box(max_connection=2)
        cmd, _ = box.opened()
        box.device.output_queue = 50
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), h("2F 02 00 00"))

    def test_setbaud_any_speed_accepted(self) -> None:
        """SETBAUD is answered OK without a range check, as nothing is applied."""
        box = Box(max_connection=2)
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("17 04 31 00 00 00")), h("17 4F 4B"))
        self.assertEqual(box.device.in_force, SerialSettings())

    def test_port_reset_refused(self) -> None:
        """PORT_RESET without full control gets no reply."""
        box = Box(max_connection=2)
        cmd, _ = box.opened()
        self.assertEqual(box.send(cmd, h("20 03 31 36 61")), b"")

    def test_allow_driver_control(self) -> None:
        """With allow_driver_control, control requests are applied."""
        box = Box(max_connection=2, allow_driver_control=True)
        cmd, _ = box.pair()
        box.send(cmd, TCSETATTR_115200)
        self.assertEqual(box.device.in_force.baudrate, 115200)
        self.assertEqual(box.send(cmd, h("12 02 00 00 21 00 20 03 31 36 61")), h("12 4F 4B 21 4F 4B 20 4F 4B"))
        self.assertEqual((box.control().dtr, box.control().rts, box.control().break_on), (False, False, True))

    def test_allow_driver_control_keeps_tunnel_rules(self) -> None:
        """Even with allow_driver_control, FLUSH is not applied and WAIT_OQUEUE is answered at once."""
        box = Box(max_connection=2, allow_driver_control=True)
        cmd, _ = box.opened()
        box.device.output_queue = 50
        self.assertEqual(box.send(cmd, WAIT_OQUEUE_1S), h("2F 02 00 00"))
        self.assertEqual(box.send(cmd, FLUSH_BOTH), h("14 4F 4B"))
        self.assertEqual(box.control().output_resets, 0)
        self.assertEqual(box.send(cmd, h("35 05 02 00 00 00 00")), h("35 04 00 00 00 00"))

    def test_one_host_leaving_keeps_the_other(self) -> None:
        """When one of two hosts closes, the other keeps the open device."""
        box = Box(max_connection=2)
        cmd1, _ = box.opened()
        _, data2 = box.opened()
        box.hang_up(cmd1)
        self.assertFalse(box.device.closing)
        box.device.receive(b"z")
        self.assertEqual(data2.transport.value(), b"z")
        box.hang_up(data2)
        self.assertTrue(box.device.closing)


class Ipv6CheckTests(SynchronousTestCase):
    """The IPv6 16-byte connect check (realcom.md §6.4)."""

    def test_echo(self) -> None:
        """On an IPv6 command connection the first 16 bytes are echoed in one write."""
        box = Box()
        cmd = box.command(local=IPv6Address("TCP", "2001:db8::1", 966))
        check = bytes(range(0xA0, 0xB0))
        cmd.dataReceived(check[:10])
        box.data()
        self.assertEqual(cmd.transport.value(), b"")
        cmd.dataReceived(check[10:])
        self.assertEqual(cmd.transport.writes, [check])
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT), h("2C 03 01 01 01"))

    def test_mapped_ipv4_not_checked(self) -> None:
        """An IPv4 host reaching an IPv6 listener (::ffff:) gets no echo: PORT_INIT is a request."""
        box = Box()
        cmd = box.command(local=IPv6Address("TCP", "::ffff:192.0.2.1", 966))
        box.data()
        self.assertEqual(box.send(cmd, FIRST_PORT_INIT + bytes(6)), h("2C 03 01 01 01"))


class FrontendTests(SynchronousTestCase):
    """The listeners realcom_frontend sets up (realcom.md §0)."""

    def _listen(self, index: int, **operating: Any) -> list[int]:
        reactor = MemoryReactorClock()
        device = FakeSerialDevice()
        channel = SerialChannel(index, device.path, SerialSettings(), reactor, device.opener, keep_open=False)
        ctx = PortContext(index=index, channel=channel, operating=OperatingSettings(**operating),
                          reactor=reactor, endpoint=lambda proto, port: f"{proto}:{port + 10000}",
                          net=NetTable(), accessible=AccessibleIPSettings, state_dir=self.mktemp())
        front = realcom_frontend(ctx)
        front.startService()
        self.addCleanup(front.stopService)
        return [p[0] for p in reactor.tcpServers] + [p[0] for p in reactor.sslServers]

    def test_port_1(self) -> None:
        """Port 1 listens on data 950 and command 966 (plus the offset)."""
        self.assertEqual(self._listen(0), [10950, 10966])

    def test_port_16_and_17(self) -> None:
        """Port 16 uses 965/981; port 17 moves to 982/998."""
        self.assertEqual(self._listen(15), [10965, 10981])
        self.assertEqual(self._listen(16), [10982, 10998])
        self.assertEqual(self._listen(31), [10997, 11013])

    def test_overrides(self) -> None:
        """Per-port data_port and command_port replace the defaults."""
        self.assertEqual(self._listen(0, data_port=4001, command_port=966), [14001, 10966])

    def test_secure_data_port_only(self) -> None:
        """With secure on, the data port is a TLS listener and the command port stays plain TCP."""
        reactor = MemoryReactorClock()
        device = FakeSerialDevice()
        channel = SerialChannel(0, device.path, SerialSettings(), reactor, device.opener, keep_open=False)
        ctx = PortContext(index=0, channel=channel, operating=OperatingSettings(secure=True), reactor=reactor,
                          endpoint=lambda proto, port: f"{proto}:{port}", net=NetTable(),
                          accessible=AccessibleIPSettings, state_dir=self.mktemp())
        front = realcom_frontend(ctx)
        front.startService()
        self.addCleanup(front.stopService)
        self.assertEqual([p[0] for p in reactor.sslServers], [950])
        self.assertEqual([p[0] for p in reactor.tcpServers], [966])


class CertificateTests(SynchronousTestCase):
    """Where the Secure Real COM certificate lives (tlsutil)."""

    def setUp(self) -> None:
        self.base = self.mktemp()
        os.mkdir(self.base)
        self.patch(tempfile, "tempdir", self.base)

    def test_without_state_dir(self) -> None:
        """Without a state directory the certificate goes to a private (0700) per-user temp directory."""
        path = certificate_path(None)
        directory = os.path.join(self.base, f"nport-twisted-{os.getuid()}")
        self.assertEqual(os.path.dirname(path), directory)
        self.assertEqual(stat.S_IMODE(os.stat(directory).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(certificate_path(None), path)

    def test_unsafe_temp_dir_not_used(self) -> None:
        """A per-user temp directory others can write to is not used; a fresh private one is."""
        planted = os.path.join(self.base, f"nport-twisted-{os.getuid()}")
        os.mkdir(planted)
        os.chmod(planted, 0o777)
        path = certificate_path(None)
        self.assertNotEqual(os.path.dirname(path), planted)
        self.assertEqual(os.listdir(planted), [])
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)

    def test_endpoint_options_quoted(self) -> None:
        """A state directory with ':' and '\\' still yields a parseable ssl: endpoint."""
        state_dir = os.path.join(self.base, "a:b\\c")
        options = tls_endpoint_options(state_dir)
        reactor = MemoryReactorClock()
        endpoints.serverFromString(reactor, "ssl:0" + options).listen(protocol.Factory())
        self.assertEqual(len(reactor.sslServers), 1)
        self.assertTrue(os.path.exists(os.path.join(state_dir, CERT_FILE)))


# -- Secure Real COM over real loopback sockets --------------------------------------------


class WatchedDevice(FakeSerialDevice):
    """A FakeSerialDevice that can fire a Deferred when some bytes have been written to it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._waiting: list[tuple[bytes, defer.Deferred[None]]] = []

    def opener(self, protocol: Any, device: str, settings: SerialSettings) -> SerialHandle:
        handle = super().opener(protocol, device, settings)
        transport = handle.transport
        plain_write = transport.write

        def write(data: bytes) -> None:
            plain_write(data)
            self._check()

        transport.write = write
        return OpenedSerial(transport, handle.control)

    def _check(self) -> None:
        for item in list(self._waiting):
            if item[0] in self.written:
                self._waiting.remove(item)
                item[1].callback(None)

    def wait_written(self, expected: bytes) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append((expected, d))
        self._check()
        return d


class WatchedNet(NetTable):
    """A NetTable that tells when its last connection has gone."""

    def __init__(self) -> None:
        super().__init__()
        self._empty: list[defer.Deferred[None]] = []

    def remove_connection(self, info: ConnectionInfo | None) -> None:
        super().remove_connection(info)
        if not self.connections:
            waiting, self._empty = self._empty, []
            for d in waiting:
                d.callback(None)

    def wait_empty(self) -> defer.Deferred[None]:
        if not self.connections:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._empty.append(d)
        return d


class Collector(protocol.Protocol):
    """A host-side connection that collects what it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: defer.Deferred[None] = defer.Deferred()
        self._waiting: list[tuple[int, defer.Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for item in list(self._waiting):
            if len(self.received) >= item[0]:
                self._waiting.remove(item)
                item[1].callback(self.received)

    def wait_for(self, size: int) -> defer.Deferred[bytes]:
        if len(self.received) >= size:
            return defer.succeed(self.received)
        d: defer.Deferred[bytes] = defer.Deferred()
        self._waiting.append((size, d))
        return d

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


class SecureRealComTests(TestCase):
    """Secure Real COM: TLS on the data port only, over real loopback sockets (realcom.md §6.3)."""

    timeout = 30

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.device = WatchedDevice(lines=ALL_ON)
        self.channel = SerialChannel(0, self.device.path, SerialSettings(), reactor, self.device.opener,
                                     keep_open=False)
        self.channel.startService()
        self.addCleanup(self._stop_channel)
        self.net = WatchedNet()
        self.state_dir = self.mktemp()
        self.ctx = PortContext(index=0, channel=self.channel, operating=OperatingSettings(secure=True),
                               reactor=reactor, endpoint=lambda proto, port: f"{proto}:0:interface=127.0.0.1",
                               net=self.net, accessible=AccessibleIPSettings, state_dir=self.state_dir)

    def _stop_channel(self) -> defer.Deferred[None]:
        d = self.channel.stopService()
        self.device.close_complete()
        return d

    def _start(self) -> tuple[int, int]:
        """Start the front-end; return the (data, command) ports it listens on."""
        front = realcom_frontend(self.ctx)
        self.front = front
        front.startService()
        self.addCleanup(front.stopService)
        listeners = [s for s in service.IServiceCollection(front) if isinstance(s, ListenerService)]
        ports = [s.port.getHost().port for s in listeners if s.port is not None]
        data_port, command_port = ports
        return data_port, command_port

    async def _connect(self, data_port: int, command_port: int) -> tuple[Collector, Collector]:
        cmd, data = Collector(), Collector()
        await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(self.reactor, "127.0.0.1", command_port), cmd)
        await endpoints.connectProtocol(
            endpoints.SSL4ClientEndpoint(self.reactor, "127.0.0.1", data_port, ssl.CertificateOptions()), data)
        return cmd, data

    async def _close(self, *conns: Collector) -> None:
        for conn in conns:
            conn.transport.loseConnection()
        for conn in conns:
            await conn.lost
        await self.net.wait_empty()

    @defer.inlineCallbacks
    def test_tls_data_plain_command(self) -> Any:
        """PORT_INIT on the plain command port is answered; bytes pass both ways over TLS."""
        data_port, command_port = self._start()
        cmd, data = yield defer.Deferred.fromCoroutine(self._connect(data_port, command_port))
        cmd.transport.write(FIRST_PORT_INIT)
        reply = yield cmd.wait_for(5)
        self.assertEqual(reply, h("2C 03 01 01 01"))
        data.transport.write(b"to the device")
        yield self.device.wait_written(b"to the device")
        self.device.receive(b"to the host")
        received = yield data.wait_for(len(b"to the host"))
        self.assertEqual(received, b"to the host")
        peer = ssl.Certificate(data.transport.getPeerCertificate())
        with open(os.path.join(self.state_dir, CERT_FILE), "rb") as f:
            served = ssl.Certificate.loadPEM(f.read())
        self.assertEqual(peer.digest(), served.digest())
        server_data = self.front.realcom.slots[0].data.transport  # type: ignore[attr-defined]
        sock = server_data.transport.getHandle()
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)
        # TCP alive check 7 min: probes start early enough to give up at 7 min.
        self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 7 * 60 - 30)
        yield defer.Deferred.fromCoroutine(self._close(cmd, data))
        self.assertTrue(self.device.closing)

    def test_certificate_created_private_and_reused(self) -> None:
        """The certificate is created with mode 0600 in the state directory and reused on the next start."""
        self._start()
        path = os.path.join(self.state_dir, CERT_FILE)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            first = f.read()
        self.assertIn(b"PRIVATE KEY", first)
        self._start()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), first)


class FastReceivedTests(SynchronousTestCase):
    """The data connection's flattened receive (the reactor's fast reader) keeps its rules."""

    def test_data_to_the_device_and_activity(self) -> None:
        """Host bytes reach the device unchanged and count as the pair's activity."""
        box = Box()
        _, data = box.opened()
        fast = data.fast_received
        self.assertNotEqual(fast, data.dataReceived)
        box.reactor.advance(5)
        fast(b"\x00\xff\x13\x11AT\r")
        self.assertEqual(box.device.written, b"\x00\xff\x13\x11AT\r")
        assert data.pair is not None
        self.assertEqual(data.pair.last_activity, box.reactor.seconds())

    def test_discarded_while_flushing_and_after_close(self) -> None:
        """Between FLUSH_START and FLUSH_STOP, and once the connection is gone: nothing."""
        box = Box()
        cmd, data = box.opened()
        fast = data.fast_received
        cmd.flushing = True
        fast(b"dropped")
        cmd.flushing = False
        fast(b"kept")
        box.hang_up(data)
        fast(b"late")
        self.assertEqual(box.device.written, b"kept")

    def test_error_drops_only_this_connection(self) -> None:
        """An exception on the way to the device aborts the data connection, logged."""
        box = Box()
        _, data = box.opened()

        def broken(chunk: bytes) -> bool:
            raise RuntimeError("boom")

        box.channel.write = broken  # type: ignore[method-assign]
        data.fast_received(b"x")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(data.transport.disconnecting)

    def test_subclass_with_own_received_keeps_data_received(self) -> None:
        """A data protocol overriding received gets dataReceived from the fast reader."""
        class Custom(DataProtocol):
            def received(self, data: bytes) -> None:
                super().received(data)

        box = Box()
        proto = Custom(box.port)
        self.assertEqual(proto.fast_received, proto.dataReceived)
