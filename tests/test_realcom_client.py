"""
Tests for L{nport_twisted.tools.realcom_client}: the Real COM client against our
own Real COM front-end, in memory (iosim pumps over a MemoryReactorClock, a
FakeSerialDevice as the serial port).  Expected bytes are those of
realcom.md §3.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire import aspp
from nport_twisted.device.channel import SerialChannel
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.modes.realcom import CommandProtocol, DataProtocol, RealComPort
from nport_twisted.tools.realcom_client import (
    LINUX_DEFAULT,
    BaudRateRejected,
    CommandFailed,
    CommandTimeout,
    LineSettings,
    ModemState,
    NotConnected,
    Notification,
    RealComClient,
    _parser,
    connect,
    line_settings,
)
from nport_twisted.device.adapter import ModemLines
from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings, SerialSettings
from nport_twisted.testing import FakeSerialDevice

DATA_PORT = 950
_ALL_ON = ModemLines(cts=True, dsr=True, dcd=True)
COMMAND_PORT = 966


class _RecordingCommand(CommandProtocol):
    """The server's command protocol, keeping every chunk the client sent."""

    def __init__(self, port: RealComPort, log: list[bytes]) -> None:
        super().__init__(port)
        self._record = log

    def dataReceived(self, data: bytes) -> None:
        self._record.append(data)
        super().dataReceived(data)


class _Factory(Factory):
    def __init__(self, build: Any) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._build()


class _Harness:
    """A Real COM server front-end and a reactor connecting clients to it in memory."""

    def __init__(
        self,
        max_connection: int = 1,
        lines: ModemLines | None = _ALL_ON,
    ) -> None:
        self.reactor = MemoryReactorClock()
        self.device = FakeSerialDevice(lines=lines)
        self.channel = SerialChannel(
            0,
            self.device.path,
            SerialSettings(),
            self.reactor,
            self.device.opener,
            keep_open=False,
        )
        self.channel.startService()
        ctx = PortContext(
            index=0,
            channel=self.channel,
            operating=OperatingSettings(max_connection=max_connection),
            reactor=self.reactor,
            endpoint=lambda proto, port: f"{proto}:{port}",
            net=NetTable(),
            accessible=AccessibleIPSettings,
        )
        self.port = RealComPort(ctx)
        self.commands: list[list[bytes]] = []  # per command connection, the chunks received
        self.reactor.listenTCP(DATA_PORT, _Factory(lambda: DataProtocol(self.port)))
        self.reactor.listenTCP(COMMAND_PORT, _Factory(self._command))
        self._completer = ConnectionCompleter(self.reactor)
        self.pumps: list[IOPump] = []

    def _command(self) -> CommandProtocol:
        log: list[bytes] = []
        self.commands.append(log)
        return _RecordingCommand(self.port, log)

    def sent(self, connection: int = -1) -> bytes:
        """Everything the client sent on one command connection."""
        return b"".join(self.commands[connection])

    def flush(self) -> None:
        """Complete pending connects and move bytes until nothing moves."""
        while True:
            moved = False
            pump = self._completer.succeedOnce()
            if pump is not None:
                self.pumps.append(pump)
                moved = True
            for p in self.pumps:
                moved = p.flush() or moved
            if not moved:
                return

    def run(self, d: Deferred[Any], step: float = 0.01, limit: float = 60.0) -> None:
        """Pump and advance the clock in small steps until C{d} has fired (or C{limit})."""
        fired: list[object] = []
        d.addBoth(lambda r: (fired.append(r), r)[1])
        waited = 0.0
        self.flush()
        while not fired and waited < limit:
            self.reactor.advance(step)
            waited += step
            self.flush()

    def open(self, **kw: Any) -> RealComClient:
        d = connect(self.reactor, "127.0.0.1", DATA_PORT, COMMAND_PORT, **kw)
        self.run(d)
        return d.result if not isinstance(d.result, Failure) else d.result.raiseException()


def _frames(*requests: aspp.Request) -> bytes:
    return b"".join(aspp.encode_request(r) for r in requests)


class OpenTests(SynchronousTestCase):
    """The open sequence (realcom.md §3.2)."""

    def test_command_port_first(self) -> None:
        """The command connection is made first; the data connection only once it is up."""
        h = _Harness()
        d = connect(h.reactor, "127.0.0.1", DATA_PORT, COMMAND_PORT)
        self.assertEqual([c[1] for c in h.reactor.tcpClients], [COMMAND_PORT])
        h.pumps.append(h._completer.succeedOnce())
        self.assertEqual([c[1] for c in h.reactor.tcpClients], [DATA_PORT])
        h.run(d)
        self.successResultOf(d)

    def test_linux_default_open_bytes(self) -> None:
        """The first Linux open (9600 8N1, DTR, RTS, IXON): exactly PORT_INIT, XONXOFF, TX_FIFO."""
        h = _Harness()
        d = RealComClient(h.reactor).open("127.0.0.1", DATA_PORT, COMMAND_PORT, LINUX_DEFAULT)
        h.run(d)
        client = self.successResultOf(d)
        self.assertEqual(
            h.sent(), bytes.fromhex("2C 08 06 03 01 01 00 00 01 0018 02 11 1330 01 10")
        )
        self.assertEqual(client.state, "open")
        self.assertEqual(client.modem, ModemState(dsr=True, cts=True, dcd=True))
        self.assertEqual(h.device.control.dtr, True)  # type: ignore[union-attr]
        self.assertEqual(h.device.control.rts, True)  # type: ignore[union-attr]

    def test_lifecycle_guards(self) -> None:
        """A second open() or a recover() while connecting is refused; the state compares as a string."""
        from nport_twisted.tools.realcom_client import ClientState, RealComError

        h = _Harness()
        client = RealComClient(h.reactor)
        self.assertRaises(NotConnected, client.recover)  # no earlier open()
        d = client.open("127.0.0.1", DATA_PORT, COMMAND_PORT)
        self.assertIs(client.state, ClientState.CONNECTING)
        self.assertRaises(RealComError, client.open, "127.0.0.1", DATA_PORT, COMMAND_PORT)
        self.assertRaises(RealComError, client.recover)
        h.run(d)
        self.successResultOf(d)
        self.assertEqual((client.state, str(client.state)), ("open", "open"))
        self.assertRaises(RealComError, client.open, "127.0.0.1", DATA_PORT, COMMAND_PORT)

    def test_raw_115200(self) -> None:
        """A raw 115200 8N1 open sends PORT_INIT without XONXOFF, then TX_FIFO."""
        h = _Harness()
        h.open(baudrate=115200)
        self.assertEqual(h.sent(), bytes.fromhex("2C 08 0A 03 01 01 00 00 00 0030 01 10"))
        self.assertEqual(h.device.in_force.baudrate, 115200)

    def test_mode_and_flow_bytes(self) -> None:
        """7E2, RTS/CTS, XON/XOFF both ways, DTR off: the mode and flag bytes of §4."""
        h = _Harness()
        h.open(
            baudrate=19200,
            bytesize=7,
            parity="E",
            stopbits=2,
            rtscts=True,
            xonxoff=True,
            dtr=False,
        )
        self.assertEqual(
            h.sent(), bytes.fromhex("2C 08 07 0E 00 01 01 01 01 0118 02 11 1330 01 10")
        )

    def test_custom_baud(self) -> None:
        """A rate outside the table goes as index 0xFF followed by SETBAUD (LE32)."""
        h = _Harness()
        h.open(baudrate=250000)
        self.assertEqual(
            h.sent(), bytes.fromhex("2C 08 FF 03 01 01 00 00 00 0017 04 90 D0 03 0030 01 10")
        )
        self.assertEqual(h.device.in_force.baudrate, 250000)

    def test_b0_has_no_setbaud(self) -> None:
        """B0 is index 0xFF with no SETBAUD."""
        self.assertEqual(
            LineSettings(baudrate=0).requests(True, True),
            [LineSettings(baudrate=0).port_init(True, True)],
        )
        self.assertEqual(LineSettings(baudrate=0).port_init(True, True).baud_index, 0xFF)

    def test_fifo_disabled(self) -> None:
        """With the FIFO off the last open step is TX_FIFO 1."""
        h = _Harness()
        h.open(fifo=1)
        self.assertTrue(h.sent().endswith(bytes.fromhex("30 01 01")))

    def test_baud_rejected_fails_open(self) -> None:
        """A refused speed (2C 03 FF FF FF) fails the open and closes both connections."""
        h = _Harness()
        h.device.refuse = {"baudrate"}
        d = connect(h.reactor, "127.0.0.1", DATA_PORT, COMMAND_PORT, baudrate=19200)
        h.run(d)
        self.failureResultOf(d, BaudRateRejected)
        self.assertTrue(all(p.clientIO.disconnected for p in h.pumps))
        self.assertEqual(h.port.slots, [None])

    def test_timeout(self) -> None:
        """A device that never replies fails the open after the 10 s command timeout."""
        h = _Harness()
        h.reactor.tcpServers.clear()
        h.reactor.listenTCP(COMMAND_PORT, Factory.forProtocol(Protocol))
        h.reactor.listenTCP(DATA_PORT, Factory.forProtocol(Protocol))
        d = connect(h.reactor, "127.0.0.1", DATA_PORT, COMMAND_PORT)
        h.flush()
        h.reactor.advance(9.9)
        h.flush()
        self.assertNoResult(d)
        h.reactor.advance(0.2)
        h.flush()
        self.failureResultOf(d, CommandTimeout)
        self.assertTrue(all(p.clientIO.disconnected for p in h.pumps))

    def test_connect_refused(self) -> None:
        """A refused command connection fails the open without a data connection."""
        reactor = MemoryReactorClock()
        d = connect(reactor, "127.0.0.1", DATA_PORT, COMMAND_PORT)
        ConnectionCompleter(reactor).failOnce()
        self.failureResultOf(d)
        self.assertEqual(reactor.tcpClients, [])

    def test_line_settings_shorthand(self) -> None:
        """C{xonxoff} sets IXON and IXOFF unless given one by one."""
        self.assertEqual(line_settings(xonxoff=True), LineSettings(ixon=True, ixoff=True))
        self.assertEqual(line_settings(ixon=True), LINUX_DEFAULT)
        self.assertRaises(ValueError, LineSettings, parity="X")


class CommandTests(SynchronousTestCase):
    """Commands on an open port."""

    def setUp(self) -> None:
        self.h = _Harness()
        self.client = self.h.open()
        self.h.commands[-1].clear()

    def _result(self, d: Deferred[Any]) -> Any:
        self.h.run(d)
        return self.successResultOf(d)

    def test_set_line(self) -> None:
        """set_line repeats PORT_INIT (+ XONXOFF) like tcsetattr, never TX_FIFO."""
        state = self._result(self.client.set_line(57600, xonxoff=True))
        self.assertEqual(self.h.sent(), bytes.fromhex("2C 08 09 03 01 01 00 00 01 0118 02 11 13"))
        self.assertEqual(state, ModemState(dsr=True, cts=True, dcd=True))
        self.assertEqual(self.client.settings, line_settings(57600, xonxoff=True))
        self.assertEqual(self.h.device.in_force.baudrate, 57600)

    def test_set_line_rejected(self) -> None:
        """A refused speed fails set_line and keeps the old settings recorded."""
        self.h.device.refuse = {"baudrate"}
        d = self.client.set_line(38400)
        self.h.run(d)
        self.failureResultOf(d, BaudRateRejected)
        self.assertEqual(self.client.settings.baudrate, 9600)

    def test_set_lines(self) -> None:
        """set_lines sends LINECTRL and the device drives DTR/RTS."""
        self._result(self.client.set_lines(dtr=False))
        self.assertEqual(self.h.sent(), bytes.fromhex("12 02 00 01"))
        self.assertEqual((self.client.dtr, self.client.rts), (False, True))
        self.assertEqual(self.h.device.control.dtr, False)  # type: ignore[union-attr]

    def test_line_status(self) -> None:
        """line_status asks LSTATUS and decodes DSR/CTS/DCD."""
        self.h.device.lines = ModemLines(cts=True)
        self.h.channel.modem = ModemLines(cts=True)
        state = self._result(self.client.line_status())
        self.assertEqual(self.h.sent()[:2], bytes.fromhex("13 00"))
        self.assertEqual(state, ModemState(cts=True))

    def test_flush_break_queues(self) -> None:
        """FLUSH, START/STOP_BREAK, OQUEUE and IQUEUE go out with their codes and get replies."""
        self._result(self.client.flush(aspp.FLUSH_RX))
        self.assertEqual(self.h.device.control.input_resets, 1)  # type: ignore[union-attr]
        self.h.device.output_queue = 7
        self.h.device.input_queue = 3
        self._result(self.client.start_break())
        self.assertTrue(self.h.device.control.break_on)  # type: ignore[union-attr]
        self._result(self.client.stop_break())
        self.assertEqual(self._result(self.client.output_queue()), 7)
        self.assertEqual(self._result(self.client.input_queue()), 3)
        self.assertEqual(self.h.sent(), bytes.fromhex("14 01 00 21 00 22 00 16 00 15 00"))

    def test_one_outstanding_command(self) -> None:
        """Commands issued together are sent one at a time, each after the previous reply."""
        d1 = self.client.start_break()
        d2 = self.client.stop_break()
        self.assertEqual(self.h.sent(), b"")  # not pumped yet
        self.h.pumps[0].pump()  # one step: the first request reaches the server
        self.assertEqual(self.h.sent(), bytes.fromhex("21 00"))
        self.h.run(d2)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual(self.h.commands[-1], [bytes.fromhex("21 00"), bytes.fromhex("22 00")])

    def test_wait_output_queue(self) -> None:
        """WAIT_OQUEUE is answered once the device's output drained."""
        self.h.device.output_queue = 10
        d = self.client.wait_output_queue(5000)
        self.h.flush()
        self.h.reactor.advance(0.05)
        self.h.flush()
        self.assertNoResult(d)
        self.h.device.output_queue = 0
        self.h.run(d)
        self.assertEqual(self.successResultOf(d), 0)
        self.assertEqual(self.h.sent(), bytes.fromhex("2F 04 88 13 00 00"))

    def test_na_is_failure(self) -> None:
        """An NA reply fails the command."""
        d = self.client.command(aspp.SetBaud(10))  # below 50: the device answers NA
        self.h.run(d)
        self.assertEqual(self.successResultOf(d), aspp.NaReply(aspp.CMD_SETBAUD))
        d2 = self.client._ok(aspp.SetBaud(10))
        self.h.run(d2)
        self.failureResultOf(d2, CommandFailed)

    def test_data_both_ways(self) -> None:
        """Bytes written go to the serial device; bytes from the device arrive in received."""
        self.client.write(b"hello\x00\xff")
        self.h.flush()
        self.assertEqual(self.h.device.written, b"hello\x00\xff")
        self.h.device.receive(b"wor")
        self.h.device.receive(b"ld")
        self.h.flush()
        d = self.client.read_exactly(4)
        self.assertEqual(self.successResultOf(d), b"worl")
        d = self.client.read_exactly(2)
        self.assertNoResult(d)
        self.h.device.receive(b"!")
        self.h.flush()
        self.assertEqual(self.successResultOf(d), b"d!")

    def test_on_data_callback(self) -> None:
        """With on_data set, received bytes go to it instead of the queue."""
        got: list[bytes] = []
        self.client.on_data = got.append
        self.h.device.receive(b"abc")
        self.h.flush()
        self.assertEqual(got, [b"abc"])


class UnsolicitedTests(SynchronousTestCase):
    """NOTIFY and POLLING from the device (realcom.md §5)."""

    def setUp(self) -> None:
        self.h = _Harness(lines=ModemLines())
        self.notes: list[Notification] = []
        self.client = self.h.open(on_notify=self.notes.append)
        self.h.commands[-1].clear()

    def test_notify_decoded(self) -> None:
        """A modem line change arrives as a decoded Notification and updates the client's lines."""
        self.h.device.lines = ModemLines(cts=True, dcd=True)
        self.h.reactor.advance(0.1)  # the channel's modem poll
        self.h.flush()
        self.h.reactor.advance(0.1)
        self.h.flush()
        self.assertEqual(len(self.notes), 1)
        note = self.notes[0]
        self.assertTrue(note.modem_changed)
        self.assertEqual(note.state, ModemState(cts=True, dcd=True))
        self.assertEqual(note.changed, frozenset({"cts", "dcd"}))
        self.assertFalse(
            note.parity_error or note.framing_error or note.overrun or note.break_received
        )
        self.assertEqual(note.hold & aspp.HOLD_NEW_VERSION, aspp.HOLD_NEW_VERSION)
        self.assertEqual(self.client.modem, ModemState(cts=True, dcd=True))

    def test_notify_events(self) -> None:
        """The events byte decodes into error flags."""
        note = Notification.decode(
            aspp.NotifyMessage(
                aspp.EVENT_PARITY | aspp.EVENT_BREAK | aspp.EVENT_SW_OVERRUN, 0, 0x80
            )
        )
        self.assertEqual(
            (
                note.parity_error,
                note.framing_error,
                note.overrun,
                note.break_received,
                note.modem_changed,
            ),
            (True, False, True, True, False),
        )

    def test_polling_answered(self) -> None:
        """After 40 s idle the device probes; the client answers 28 01 id at once and stays."""
        self.h.reactor.advance(40)
        self.h.flush()
        self.assertEqual(self.h.sent(), bytes.fromhex("28 01 01"))
        for _ in range(30):  # 60 s more: probes are answered, nothing is dropped
            self.h.reactor.advance(2)
            self.h.flush()
        self.assertTrue(self.client.connected)
        self.assertEqual(self.h.port.slots[0].command._misses, 0)  # type: ignore[union-attr]

    def test_polling_while_command_outstanding(self) -> None:
        """A POLLING between a request and its reply is answered and does not disturb the reply."""
        self.h.device.output_queue = 5
        d = self.client.wait_output_queue(60000)
        self.h.flush()
        self.h.reactor.advance(40)
        self.h.flush()
        self.assertIn(bytes.fromhex("28 01 01"), self.h.sent())
        self.h.device.output_queue = 0
        self.h.run(d)
        self.assertEqual(self.successResultOf(d), 0)

    def test_unanswered_polls_drop(self) -> None:
        """Without the client's answers the server drops the pair (control for the test above)."""
        self.client._reply = lambda reply: None  # type: ignore[method-assign]
        lost: list[Failure] = []
        self.client.on_lost = lost.append
        for _ in range(40):
            self.h.reactor.advance(2)
            self.h.flush()
        self.assertFalse(self.client.connected)
        self.assertEqual(len(lost), 1)


class CloseTests(SynchronousTestCase):
    """The driver's close (realcom.md §3.3)."""

    def test_close_drains_then_flushes(self) -> None:
        """close(): WAIT_OQUEUE until 3 zeros 10 ms apart, FLUSH 2, then both connections close."""
        h = _Harness()
        client = h.open()
        h.commands[-1].clear()
        h.device.output_queue = 100
        d = client.close()
        h.flush()
        h.reactor.advance(0.05)
        h.flush()
        self.assertEqual(len(h.sent()), 6)  # one WAIT_OQUEUE, deferred by the device
        self.assertNoResult(d)
        h.device.output_queue = 0
        h.run(d)
        self.successResultOf(d)
        frames = [h.sent()[i : i + 6] for i in range(0, 18, 6)]
        for frame in frames:
            self.assertEqual(frame[:2], bytes.fromhex("2F 04"))
            self.assertGreater(
                int.from_bytes(frame[2:], "little"), 29000
            )  # the closing wait left, in ms
        self.assertEqual(h.sent()[18:], bytes.fromhex("14 01 02"))
        self.assertEqual(client.state, "closed")
        self.assertFalse(client.connected)
        self.assertTrue(all(p.clientIO.disconnected and p.serverIO.disconnected for p in h.pumps))
        self.assertEqual(h.port.slots, [None])

    def test_nonzero_resets_count(self) -> None:
        """A non-zero reply restarts the count of zero replies."""
        h = _Harness()
        client = h.open()
        h.commands[-1].clear()
        answers = iter([0, 0, 4, 0, 0, 0])
        real = client.wait_output_queue
        sent: list[int] = []

        def wait_output_queue(timeout_ms: int = 100) -> Deferred[int]:
            sent.append(timeout_ms)
            return real(timeout_ms).addCallback(lambda _: next(answers))

        client.wait_output_queue = wait_output_queue  # type: ignore[method-assign]
        d = client.close()
        h.run(d)
        self.successResultOf(d)
        self.assertEqual(len(sent), 6)

    def test_drain_is_bounded(self) -> None:
        """The drain gives up after the closing wait and still flushes and closes."""
        h = _Harness()
        client = h.open(closing_wait=1.0)
        h.commands[-1].clear()
        h.device.output_queue = 100  # never drains
        d = client.close()
        h.run(d, step=0.05, limit=30)
        self.successResultOf(d)
        self.assertTrue(h.sent().endswith(bytes.fromhex("14 01 02")))
        self.assertLess(h.reactor.seconds(), 5)

    def test_reopen_after_close(self) -> None:
        """After close the server frees the port and a new open works."""
        h = _Harness()
        client = h.open()
        d = client.close()
        h.run(d)
        h.device.close_complete()
        self.assertFalse(h.channel.is_open)
        h.open()
        self.assertTrue(h.channel.is_open)
        self.assertEqual(len(h.commands), 2)

    def test_abort(self) -> None:
        """abort() drops both connections without drain or flush."""
        h = _Harness()
        client = h.open()
        h.commands[-1].clear()
        d = client.abort()
        h.flush()
        self.successResultOf(d)
        self.assertEqual(h.sent(), b"")
        self.assertEqual(client.state, "closed")
        self.assertRaises(NotConnected, client.write, b"x")


class LossTests(SynchronousTestCase):
    """Connection loss and reconnect recovery (realcom.md §3.4, §3.5)."""

    def test_either_loss_closes_pair(self) -> None:
        """The server closing the data connection closes the command one too; on_lost is told."""
        h = _Harness()
        lost: list[Failure] = []
        client = h.open(on_lost=lost.append)
        h.device.output_queue = 1
        d = client.wait_output_queue(5000)  # deferred by the device: still outstanding at the loss
        h.flush()
        h.port.slots[0].data.transport.loseConnection()  # type: ignore[union-attr]
        h.flush()
        self.failureResultOf(d, NotConnected)
        self.assertFalse(client.connected)
        self.assertTrue(all(p.clientIO.disconnected for p in h.pumps))
        self.assertEqual(len(lost), 1)
        self.assertEqual(client.state, "closed")
        self.failureResultOf(client.line_status(), NotConnected)

    def test_recovery_batch(self) -> None:
        """With auto_reconnect a lost port comes back with the one-write batch of §3.5."""
        h = _Harness()
        client = h.open(baudrate=115200, auto_reconnect=True)
        h.port.slots[0].command.transport.loseConnection()  # type: ignore[union-attr]
        h.flush()
        h.reactor.advance(0)
        h.flush()
        self.assertEqual(client.state, "open")
        self.assertEqual(len(h.commands), 2)
        self.assertEqual(
            h.commands[1], [bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00 30 01 10 12 02 01 01")]
        )
        client.write(b"again")
        h.flush()
        self.assertTrue(h.device.written.endswith(b"again"))

    def test_recovery_custom_baud_and_xonxoff(self) -> None:
        """The batch carries SETBAUD and XONXOFF when the settings need them."""
        h = _Harness()
        client = h.open(baudrate=250000, ixon=True)
        d = client.recover()
        h.run(d)
        self.successResultOf(d)
        self.assertEqual(
            h.commands[-1],
            [
                bytes.fromhex(
                    "2C 08 FF 03 01 01 00 00 01 0017 04 90 D0 03 0018 02 11 1330 01 1012 02 01 01"
                )
            ],
        )

    def test_recovery_retries(self) -> None:
        """A failed reconnect is retried after a second until it succeeds; close() stops it."""
        h = _Harness()
        client = h.open(auto_reconnect=True)
        servers = list(h.reactor.tcpServers)
        h.reactor.tcpServers.clear()  # nothing listens: the connects stay pending, then fail
        h.port.slots[0].command.transport.loseConnection()  # type: ignore[union-attr]
        h.flush()
        h.reactor.advance(0)
        self.assertEqual(client.state, "recovering")
        ConnectionCompleter(h.reactor).failOnce()
        self.assertEqual(h.reactor.tcpClients, [])
        h.reactor.advance(1.0)
        self.assertEqual(len(h.reactor.tcpClients), 1)  # retried
        h.reactor.tcpServers.extend(servers)
        h.flush()
        self.assertEqual(client.state, "open")
        d = client.close()
        h.run(d)
        self.successResultOf(d)
        self.assertEqual(client.state, "closed")


class CommandLineTests(SynchronousTestCase):
    """The ``python -m nport_twisted.tools.realcom_client`` arguments."""

    def test_options_after_host(self) -> None:
        """Options may follow the host, as in the documented usage."""
        args = _parser().parse_args(
            [
                "10.0.0.5",
                "--data-port",
                "951",
                "--command-port",
                "967",
                "--baud",
                "250000",
                "--parity",
                "e",
                "--xonxoff",
            ]
        )
        self.assertEqual((args.host, args.data_port, args.command_port), ("10.0.0.5", 951, 967))
        self.assertEqual(
            line_settings(
                args.baud, args.bytesize, args.parity, args.stopbits, args.rtscts, args.xonxoff
            ),
            LineSettings(250000, 8, "E", 1, False, True, True),
        )

    def test_defaults(self) -> None:
        """Without options: ports 950/966 at 9600 8N1, no flow control."""
        args = _parser().parse_args(["nport"])
        self.assertEqual(
            (
                args.data_port,
                args.command_port,
                args.baud,
                args.bytesize,
                args.parity,
                args.stopbits,
                args.rtscts,
                args.xonxoff,
                args.tls,
            ),
            (950, 966, 9600, 8, "N", 1, False, False, False),
        )


class BridgeOpenFailureTests(SynchronousTestCase):
    """The command-line bridge: a failed open is one critical line and exit status 1."""

    def test_refused_open_is_one_line(self) -> None:
        from twisted.internet.defer import inlineCallbacks
        from twisted.logger import globalLogPublisher

        from nport_twisted.tools.realcom_client import _bridge

        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        reactor = MemoryReactorClock()
        d = inlineCallbacks(_bridge)(reactor, _parser().parse_args(["127.0.0.1"]))
        ConnectionCompleter(reactor).failOnce()
        failure = self.failureResultOf(d, SystemExit)
        self.assertEqual(failure.value.code, 1)
        critical = [e for e in events if e.get("log_namespace") == "realcom_client"]
        self.assertEqual(len(critical), 1)
        self.assertIn("cannot open 127.0.0.1 data port 950 / command port 966",
                      critical[0]["log_format"].format(**critical[0]))
