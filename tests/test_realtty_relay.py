"""
Tests for L{nport_twisted.tools.realtty.relay}: a real pty on one side, our
own Real COM front-end in memory on the other (a fake serial device behind
it), the clock faked.  What an application does to the tty must reach the
device as MOXA's driver would send it (realcom.md §3); expected bytes are
that document's.
"""

from __future__ import annotations

import errno
import os
import termios
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from nport_twisted.config.settings import FlowControl
from nport_twisted.device.adapter import LineCounters, ModemLines
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.tools.realtty.config import OnClose, TermiosWatch, WhileDisconnected
from nport_twisted.tools.realtty.relay import RelayState
from tests.e2e_util import have_ptys
from tests.realtty_util import Harness, default_open_bytes

try:
    from twisted.internet.testing import EventLoggingObserver
except ImportError:  # pragma: no cover
    EventLoggingObserver = None  # type: ignore[assignment,misc]


class _RelayTestCase(SynchronousTestCase):
    def harness(self, counters: LineCounters | None = None, **port: Any) -> Harness:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        h = Harness(os.path.abspath(self.mktemp()), counters=counters, **port)
        self.addCleanup(h.close)
        h.relay.start()
        return h

    def opened(self, **port: Any) -> tuple[Harness, int]:
        """A harness whose tty an application opened (raw mode, the open sequence done)."""
        h = self.harness(**port)
        fd = h.app_open()
        h.until(lambda: h.relay.state is RelayState.OPEN)
        return h, fd

    def write_all(self, h: Harness, fd: int, data: bytes) -> None:
        """Write like a blocking application: as the tty takes it, pumping in between."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view[:4096])
            except BlockingIOError:
                n = 0
            view = view[n:]
            h.advance(0.01)

    def read_all(self, h: Harness, fd: int, count: int) -> bytes:
        out = b""
        for _ in range(10000):
            out += h.app_read(fd)
            if len(out) >= count:
                return out
            h.advance(0.01)
        return out

    def logged(self) -> list[dict[str, Any]]:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        return observer  # type: ignore[return-value]


class OpenTests(_RelayTestCase):
    """Open: connect and send the tty's settings."""

    def test_first_open(self) -> None:
        """The first open sends MOXA's first-open sequence: 9600 8N1 IXON, XONXOFF, TX_FIFO."""
        h, fd = self.opened()
        self.assertEqual(h.sent(), default_open_bytes())
        self.assertEqual(h.in_force().baudrate, 9600)
        self.assertEqual(h.in_force().flow_control, FlowControl.XON_XOFF)
        self.assertEqual(len(h.commands), 1)

    def test_fifo_off(self) -> None:
        """FIFO off in the configuration: TX_FIFO 1."""
        h, fd = self.opened(fifo=False)
        self.assertEqual(h.sent()[-3:], bytes.fromhex("30 01 01"))

    def test_dtr_rts_from_configuration(self) -> None:
        """DTR/RTS of the configuration go into PORT_INIT."""
        h, fd = self.opened(dtr=False)
        self.assertEqual(h.sent()[4:6], bytes.fromhex("00 01"))
        assert h.device.control is not None
        self.assertIs(h.device.control.dtr, False)

    def test_nothing_before_open(self) -> None:
        """No connection is made until an application opens the tty (npreal2d's OpenTty)."""
        h = self.harness()
        h.advance(1.0)
        self.assertEqual(h.commands, [])
        self.assertIs(h.relay.state, RelayState.IDLE)


class TermiosTests(_RelayTestCase):
    """tcsetattr, tcflush, tcflow."""

    def test_speed_change(self) -> None:
        """raw + 115200 -> PORT_INIT 0A 03 ... without XON/XOFF; the device runs at 115200."""
        h, fd = self.opened()
        h.app_raw(fd)
        h.app_speed(fd, termios.B115200)
        h.advance(0.05)
        self.assertIn(bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00"), h.sent())
        self.assertEqual(h.in_force().baudrate, 115200)
        self.assertEqual(h.in_force().flow_control, FlowControl.NONE)

    def test_custom_rate(self) -> None:
        """pyserial's 250000 (BOTHER): PORT_INIT FF + SETBAUD 250000."""
        import serial

        h, fd = self.opened()
        port = serial.Serial(h.link, 9600)
        self.addCleanup(port.close)
        h.advance(0.05)
        port.baudrate = 250000
        h.advance(0.05)
        self.assertIn(bytes.fromhex("17 04 90 D0 03 00"), h.sent())
        self.assertEqual(h.in_force().baudrate, 250000)

    def test_no_change_no_command(self) -> None:
        """A tcsetattr that changes nothing the device has sends nothing."""
        h, fd = self.opened()
        before = h.sent()
        termios.tcsetattr(fd, termios.TCSANOW, termios.tcgetattr(fd))
        h.advance(0.05)
        self.assertEqual(h.sent(), before)

    def test_format_from_configuration(self) -> None:
        """Data bits and parity of the configuration reach the device (a pty has none)."""
        h, fd = self.opened(bytesize=7, parity="E")
        self.assertEqual(h.sent()[3], 0x0A)
        self.assertEqual((h.in_force().bytesize, h.in_force().parity.value), (7, "E"))

    def test_refused_rate_put_back(self) -> None:
        """A rate the server refuses (NA) is put back in the tty, and the old settings resent."""
        import serial

        h, fd = self.opened()
        h.port.max_baud = 200000
        port = serial.Serial(h.link, 115200)
        self.addCleanup(port.close)
        h.advance(0.05)
        port.baudrate = 250000
        h.advance(0.1)
        self.assertEqual(termios.tcgetattr(fd)[5], termios.B115200)
        self.assertEqual(h.relay.client.settings.baudrate, 115200)
        self.assertTrue(h.sent().endswith(bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00")))

    def test_flush(self) -> None:
        """tcflush: TCIFLUSH -> FLUSH 0, TCOFLUSH -> FLUSH 1, TCIOFLUSH -> FLUSH 2."""
        h, fd = self.opened()
        for queue, mode in ((termios.TCIFLUSH, 0), (termios.TCOFLUSH, 1), (termios.TCIOFLUSH, 2)):
            termios.tcflush(fd, queue)
            h.advance(0.02)
            self.assertEqual(h.chunks()[-1], bytes((0x14, 1, mode)), queue)

    def test_tcflow(self) -> None:
        """tcflow(TCOOFF) -> SETXOFF holds the device's output; TCOON -> SETXON resumes it."""
        h, fd = self.opened()
        termios.tcflow(fd, termios.TCOOFF)
        h.advance(0.02)
        self.assertEqual(h.chunks()[-1], bytes.fromhex("34 00"))
        termios.tcflow(fd, termios.TCOON)
        h.advance(0.02)
        self.assertEqual(h.chunks()[-1], bytes.fromhex("33 00"))

    def test_poll_mode(self) -> None:
        """termios_watch = poll: a change is seen within the poll interval, without EXTPROC."""
        h, fd = self.opened(termios_watch=TermiosWatch.POLL)
        self.assertFalse(h.relay.pty.read_termios().extproc)
        h.app_raw(fd)
        h.app_speed(fd, termios.B57600)
        h.advance(0.1)
        self.assertEqual(h.in_force().baudrate, 57600)

    def test_extproc_cleared(self) -> None:
        """An application that clears EXTPROC is polled; the next open has EXTPROC again."""
        h, fd = self.opened()
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~0o200000
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        h.advance(0.05)
        h.app_speed(fd, termios.B19200)  # no event any more: seen by polling
        h.advance(0.2)
        self.assertEqual(h.in_force().baudrate, 19200)
        h.app_close(fd)
        h.advance(1.0)
        self.assertTrue(h.relay.pty.read_termios().extproc)


class EarlyEventTests(_RelayTestCase):
    """What happens before the connection is up."""

    def test_open_time_flush_dropped(self) -> None:
        """A tcflush before the connection (pyserial flushes at open) sends no late FLUSH."""
        h = self.harness()
        h.hold = True
        fd = h.app_open()
        h.advance(0.2)
        termios.tcflush(fd, termios.TCIOFLUSH)
        os.write(fd, b"early")
        h.hold = False
        h.until(lambda: h.relay.state is RelayState.OPEN)
        h.advance(0.05)
        self.assertEqual(h.sent(), default_open_bytes())
        self.assertEqual(bytes(h.device.log), b"early")

    def test_reopen_adopts_pending_open(self) -> None:
        """Closed and reopened while connecting: the open in flight is used, no second connection."""
        h = self.harness()
        h.hold = True
        fd = h.app_open()
        h.advance(0.2)
        h.app_close(fd)
        h.advance(0.2)
        self.assertIs(h.relay.state, RelayState.IDLE)
        fd = h.app_open()
        h.advance(0.2)
        self.assertIs(h.relay.state, RelayState.CONNECTING)
        h.hold = False
        h.until(lambda: h.relay.state is RelayState.OPEN)
        self.assertEqual(len(h.commands), 1)
        h.app_raw(fd)
        h.advance(0.02)
        os.write(fd, b"one")
        h.advance(0.05)
        self.assertEqual(bytes(h.device.log), b"one")

    def test_abandoned_open_closed(self) -> None:
        """Closed while connecting and not reopened: the open that completes later is closed."""
        h = self.harness()
        h.hold = True
        fd = h.app_open()
        h.advance(0.2)
        h.app_close(fd)
        h.advance(0.2)
        h.hold = False
        h.advance(2.0)
        self.assertIs(h.relay.state, RelayState.IDLE)
        self.assertFalse(h.relay.client.connected)
        self.assertTrue(all(p.server.transport.disconnected for p in h.pumps))  # type: ignore[union-attr]


class DataTests(_RelayTestCase):
    """Bytes both ways, flow control, breaks and modem lines."""

    def test_both_ways(self) -> None:
        """64 KiB each way arrive exactly."""
        h, fd = self.opened()
        h.app_raw(fd)
        h.advance(0.02)
        up, down = os.urandom(65536), os.urandom(65536)
        self.write_all(h, fd, up)
        h.advance(0.05)
        self.assertEqual(bytes(h.device.log), up)
        h.device.receive(down)
        self.assertEqual(self.read_all(h, fd, len(down)), down)
        status = h.relay.status()
        self.assertEqual((status["to_remote"], status["from_remote"]), (65536, 65536))

    def test_flow_control(self) -> None:
        """The pty is not read while the data connection is full; the connection not while the tty is."""
        h, fd = self.opened()
        h.relay._tcp_full(True)
        self.assertFalse(h.relay.master.reading)
        h.relay._tcp_full(False)
        self.assertTrue(h.relay.master.reading)
        transport: Any = h.relay.client.data_transport
        transport.producer.pauseProducing()  # the data connection's buffer is full
        self.assertFalse(h.relay.master.reading)
        transport.producer.resumeProducing()
        self.assertTrue(h.relay.master.reading)
        h.relay._tty_full(True)
        self.assertIn("tty full", h.relay._tcp_paused_by)
        h.relay._tty_full(False)
        self.assertEqual(h.relay._tcp_paused_by, set())

    def test_unread_tty_pauses(self) -> None:
        """An application that does not read: what the server sends waits, bounded, and none is lost."""
        h, fd = self.opened()
        h.app_raw(fd)
        h.advance(0.02)
        down = os.urandom(300000)
        h.device.receive(down)
        h.advance(0.2)
        self.assertLessEqual(h.relay.master.buffered, 300000)
        self.assertEqual(self.read_all(h, fd, len(down)), down)

    def test_modem_lines_and_errors(self) -> None:
        """NOTIFY: the remote lines and error counters show in the status."""
        h, fd = self.opened(counters=LineCounters())
        h.device.lines = ModemLines(cts=False, dsr=True, dcd=False)
        h.advance(0.5)
        h.device.counters = LineCounters(parity=2, frame=1)
        h.advance(0.5)
        status = h.relay.status()
        self.assertEqual((status["cts"], status["dsr"], status["dcd"]), (False, True, False))
        self.assertGreaterEqual(status["parity_errors"], 1)

    def test_break_received(self) -> None:
        """A break from the device is a NUL in the application's input (no IGNBRK, no PARMRK)."""
        h = self.harness(counters=LineCounters())
        fd = h.app_open()
        h.until(lambda: h.relay.state is RelayState.OPEN)
        h.app_raw(fd)
        h.advance(0.5)
        h.app_read(fd)
        h.device.counters = LineCounters(brk=1)
        h.advance(0.5)
        self.assertEqual(h.app_read(fd), b"\x00")
        self.assertEqual(h.relay.status()["breaks"], 1)

    def test_set_lines(self) -> None:
        """set_lines drives DTR/RTS (LINECTRL) and holds for the next open."""
        h, fd = self.opened()
        h.run(h.relay.set_lines(dtr=False))
        self.assertEqual(h.chunks()[-1], bytes.fromhex("12 02 00 01"))
        assert h.device.control is not None
        self.assertIs(h.device.control.dtr, False)
        h.app_close(fd)
        h.advance(1.0)
        h.app_open()
        h.until(lambda: h.relay.state is RelayState.OPEN)
        self.assertEqual(h.sent()[:6], bytes.fromhex("2C 08 06 03 00 01"))

    def test_send_break(self) -> None:
        """send_break: START_BREAK, then STOP_BREAK after the time asked."""
        h, fd = self.opened()
        d = h.relay.send_break(250)
        h.advance(0.2)
        self.assertEqual(h.chunks()[-1], bytes.fromhex("21 00"))
        h.run(d)
        self.assertEqual(h.chunks()[-1], bytes.fromhex("22 00"))


class CloseTests(_RelayTestCase):
    """The last close."""

    def test_drain_flush_disconnect(self) -> None:
        """Close: the written bytes reach the device, then WAIT_OQUEUE x3, FLUSH 2, disconnect."""
        h, fd = self.opened()
        h.app_raw(fd)
        h.advance(0.02)
        os.write(fd, b"last words")
        h.app_close(fd)
        h.advance(1.0)
        self.assertEqual(bytes(h.device.log), b"last words")
        tail = h.sent()[-21:]
        self.assertEqual(tail[-3:], bytes.fromhex("14 01 02"))
        self.assertEqual([tail[i] for i in (0, 6, 12)], [0x2F, 0x2F, 0x2F])
        self.assertIs(h.relay.state, RelayState.IDLE)
        self.assertFalse(h.relay.client.connected)

    def test_drain_waits_for_output(self) -> None:
        """The disconnect waits while the device still has output queued."""
        h, fd = self.opened()
        h.device.output_queue = 500
        h.app_close(fd)
        h.advance(2.0)
        self.assertIs(h.relay.state, RelayState.CLOSING)
        self.assertTrue(h.relay.client.connected)
        h.device.output_queue = 0
        h.advance(2.0)
        self.assertIs(h.relay.state, RelayState.IDLE)

    def test_echo_style_session(self) -> None:
        """Open, write and close before any check (echo > tty): the bytes are still sent, then closed."""
        h = self.harness()
        fd = os.open(h.link, os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"hello\n")
        os.close(fd)
        h.advance(1.0)
        self.assertEqual(bytes(h.device.log), b"hello\r\n")  # OPOST ONLCR: a tty's default
        self.assertIs(h.relay.state, RelayState.IDLE)

    def test_keep_connection(self) -> None:
        """on_close = keep: drain, FLUSH, DTR/RTS off (HUPCL), stay connected; a reopen only re-inits."""
        h, fd = self.opened(on_close=OnClose.KEEP)
        h.app_close(fd)
        h.advance(1.0)
        self.assertIs(h.relay.state, RelayState.KEPT)
        self.assertTrue(h.sent().endswith(bytes.fromhex("14 01 02 12 02 00 00")))
        fd = h.app_open()
        h.until(lambda: h.relay.state is RelayState.OPEN)
        self.assertEqual(len(h.commands), 1)  # the same connection
        self.assertTrue(h.sent().endswith(bytes.fromhex("2C 08 06 03 01 01 00 00 01 00 "
                                                        "18 02 11 13 30 01 10")))
        h.app_raw(fd)
        h.advance(0.02)
        os.write(fd, b"again")
        h.advance(0.05)
        self.assertTrue(bytes(h.device.log).endswith(b"again"))


class ReconnectTests(_RelayTestCase):
    """A lost connection while the tty is open."""

    def test_recovery_batch(self) -> None:
        """Reconnect with backoff; the batch restores the port; what was written meanwhile is sent."""
        h, fd = self.opened()
        h.app_raw(fd)
        h.app_speed(fd, termios.B115200)
        h.advance(0.05)
        h.listening = False
        h.drop_connections()
        self.assertIs(h.relay.state, RelayState.RECONNECTING)
        os.write(fd, b"while away")
        h.advance(3.5)  # attempts at once, after 1 s and 2 s: refused
        self.assertEqual(len(h.commands), 1)
        self.assertNotIn(b"while away", bytes(h.device.log))
        h.listening = True
        h.until(lambda: h.relay.state is RelayState.OPEN, limit=10)
        self.assertEqual(len(h.commands), 2)
        self.assertEqual(h.chunks()[0],
                         bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00 30 01 10 12 02 01 01"))
        h.advance(0.05)
        self.assertTrue(bytes(h.device.log).endswith(b"while away"))
        self.assertEqual(h.relay.status()["reconnects"], 1)

    def test_fail_hangs_up(self) -> None:
        """while_disconnected = fail: the tty is hung up (EIO) and the link gets a new tty."""
        h, fd = self.opened(while_disconnected=WhileDisconnected.FAIL)
        old = h.relay.pty.slave_path
        h.listening = False
        h.drop_connections()
        with self.assertRaises(OSError) as e:
            os.write(fd, b"x")
        self.assertEqual(e.exception.errno, errno.EIO)
        self.assertNotEqual(os.readlink(h.link), old)
        self.assertIs(h.relay.state, RelayState.IDLE)

    def test_server_down_at_open(self) -> None:
        """Server down at open: retries 1, 2, 4 s ...; the writes wait and go out once it is up."""
        h = self.harness()
        h.listening = False
        fd = h.app_open()
        h.app_raw(fd)
        h.advance(0.05)
        os.write(fd, b"queued")
        h.advance(6.5)
        self.assertIs(h.relay.state, RelayState.CONNECTING)
        self.assertIn("refused", h.relay.status()["last_error"])
        h.listening = True
        h.until(lambda: h.relay.state is RelayState.OPEN, limit=10)
        h.advance(0.05)
        self.assertTrue(bytes(h.device.log).endswith(b"queued"))

    def test_closed_while_unreachable(self) -> None:
        """Closed while the server is down: tried for closing_wait, then dropped with a warning."""
        h = self.harness(closing_wait=3.0)
        events = self.logged()
        h.listening = False
        fd = h.app_open()
        h.advance(0.05)
        os.write(fd, b"lost")
        h.app_close(fd)
        h.advance(5.0)
        self.assertIs(h.relay.state, RelayState.IDLE)
        self.assertEqual(h.relay.status()["discarded"], 4)
        self.assertTrue(any("were not sent" in e.get("log_format", "") for e in events))

    def test_reset_connection(self) -> None:
        """reset_connection (UDP liveness) closes both connections and reconnects."""
        h, fd = self.opened()
        h.relay.reset_connection("test")
        h.until(lambda: len(h.commands) == 2 and h.relay.state is RelayState.OPEN, limit=5)
        self.assertEqual(h.relay.status()["reconnects"], 1)


class KeepAliveTests(_RelayTestCase):
    """The device's keep-alive probes on an idle port."""

    def test_polling_answered(self) -> None:
        """Idle for two minutes: every POLLING is answered with ALIVE and the port stays open."""
        h, fd = self.opened()
        before = len(h.sent())
        h.advance(120.0, step=0.5)
        alive = h.sent()[before:]
        self.assertGreaterEqual(alive.count(b"\x28\x01"), 2)
        self.assertIs(h.relay.state, RelayState.OPEN)
        self.assertEqual((len(h.commands), h.relay.status()["reconnects"]), (1, 0))


class StopTests(_RelayTestCase):
    """The service stops."""

    def test_stop(self) -> None:
        """stop: the connection is closed, the tty hung up and the link removed."""
        h, fd = self.opened()
        h.run(h.relay.stop())
        self.assertFalse(os.path.lexists(h.link))
        self.assertFalse(h.relay.client.connected)
        self.assertIs(h.relay.state, RelayState.STOPPED)
        self.assertIsInstance(FakeSerialDevice(), FakeSerialDevice)
        _ = Failure
