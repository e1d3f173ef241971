# -*- test-case-name: tests.test_serialdev -*-
"""
Tests for L{nport_twisted.device.adapter} on real ptys (style.md §2.26, §4): what a
pty accepts and refuses, and Twisted's SerialPort opened by the default opener.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import termios
import tty
from typing import Any

import serial
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from nport_twisted.device.channel import IChannelSession, SerialChannel
from nport_twisted.device.adapter import SHARED, ISerialControl, PySerialControl, open_serial_port
from nport_twisted.config.settings import Parity, SerialInterface, SerialSettings
from tests.e2e_util import poll_until

reactor: Any = _reactor


class Pty:
    """A new pty: the master fd (closed once, in cleanup or by the test) and the slave's path."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)  # the code under test opens the slave by its path
        self._open = True
        case.addCleanup(self.close)

    def close(self) -> None:
        # Closing twice could close an unrelated fd that reused the number.
        if self._open:
            self._open = False
            os.close(self.master)


def pyserial_on_pty(case: SynchronousTestCase) -> tuple[int, serial.Serial]:
    """A pyserial Serial on a new pty's slave, closed in cleanup."""
    pty = Pty(case)
    ser = serial.Serial(pty.path)
    case.addCleanup(ser.close)
    return pty.master, ser


def warnings(observer: EventLoggingObserver) -> list[Any]:
    return [e for e in observer if e["log_level"] == LogLevel.warn]


class PySerialControlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.master, self.ser = pyserial_on_pty(self)
        self.control = PySerialControl(self.ser)
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_provides_interface(self) -> None:
        """PySerialControl implements ISerialControl."""
        self.assertTrue(verifyObject(ISerialControl, self.control))

    def test_baudrate_and_stopbits_applied(self) -> None:
        """A pty accepts baud rate and stop bits: termios changes and the new values are reported."""
        actual = self.control.apply(SerialSettings(baudrate=19200, stopbits=2))
        self.assertEqual((actual.baudrate, actual.stopbits), (19200, 2))
        attrs_ = termios.tcgetattr(self.ser.fd)
        self.assertEqual(attrs_[4], termios.B19200)
        self.assertTrue(attrs_[2] & termios.CSTOPB)
        self.assertEqual(warnings(self.observer), [])

    def test_parity_refused_rolled_back(self) -> None:
        """A pty refuses parity: pyserial's value is restored, the old one reported, one warning logged."""
        actual = self.control.apply(SerialSettings(baudrate=19200, parity=Parity.EVEN))
        self.assertEqual(actual.parity, Parity.NONE)
        self.assertEqual(actual.baudrate, 19200)
        self.assertEqual(self.ser.parity, serial.PARITY_NONE)
        self.assertFalse(termios.tcgetattr(self.ser.fd)[2] & termios.PARENB)
        self.control.apply(SerialSettings(baudrate=19200, parity=Parity.EVEN))
        (event,) = warnings(self.observer)
        self.assertEqual((event["setting"], event["value"], event["old"]), ("parity", "E", "N"))

    def test_bytesize_refused_rolled_back(self) -> None:
        """A pty refuses 7 data bits: pyserial keeps 8 and 8 is reported."""
        actual = self.control.apply(SerialSettings(bytesize=7))
        self.assertEqual(actual.bytesize, 8)
        self.assertEqual(self.ser.bytesize, serial.EIGHTBITS)
        self.assertEqual(termios.tcgetattr(self.ser.fd)[2] & termios.CSIZE, termios.CS8)
        self.assertEqual(len(warnings(self.observer)), 1)

    def test_refused_rs485_does_not_block_later_settings(self) -> None:
        """A pty refuses kernel RS-485 mode without breaking later baud rate changes."""
        actual = self.control.apply(SerialSettings(baudrate=19200, interface=SerialInterface.RS485_2WIRE))
        self.assertEqual(actual.baudrate, 19200)
        self.assertIsNone(self.ser.rs485_mode)
        self.assertTrue(any("RS-485" in e["log_format"] for e in self.observer))
        actual = self.control.apply(SerialSettings(baudrate=38400))
        self.assertEqual(actual.baudrate, 38400)
        self.assertEqual(termios.tcgetattr(self.ser.fd)[4], termios.B38400)
        self.assertEqual(warnings(self.observer), [])

    def test_no_modem_lines(self) -> None:
        """Modem-line ioctls fail with ENOTTY on a pty: no modem lines, DTR and RTS refused."""
        self.assertIsNone(self.control.modem_lines())
        self.assertFalse(self.control.set_dtr(True))
        self.assertFalse(self.control.set_rts(False))

    def test_no_line_counters(self) -> None:
        """TIOCGICOUNT is not supported on a pty, so there are no line counters."""
        self.assertIsNone(self.control.line_counters())
        self.assertIsNone(self.control.line_counters())

    def test_input_waiting(self) -> None:
        """input_waiting counts bytes the kernel received and nobody read yet."""
        self.assertEqual(self.control.input_waiting(), 0)
        os.write(self.master, b"abc")
        select.select([self.ser.fd], [], [], 5)
        self.assertEqual(self.control.input_waiting(), 3)
        self.control.reset_input()
        self.assertEqual(self.control.input_waiting(), 0)

    def test_output_waiting_counts_transport_buffer(self) -> None:
        """output_waiting is an int that includes the bytes still held in the transport's buffer."""
        self.assertIsInstance(self.control.output_waiting(), int)

        class Buffered:
            dataBuffer = b"abcdef"
            offset = 2
            _tempDataLen = 3

        control = PySerialControl(self.ser, Buffered())
        waiting = control.output_waiting()
        self.assertIsInstance(waiting, int)
        self.assertGreaterEqual(waiting, 7)


class StubSerial:
    """The pyserial 3 properties PySerialControl.apply uses, accepting everything."""

    port = "/dev/stub"
    baudrate = 9600
    bytesize = 8
    parity = "N"
    stopbits = 1
    rtscts = False
    xonxoff = False
    dsrdtr = False
    rs485_mode: Any = None


class PySerialControlStubTests(SynchronousTestCase):
    def test_rs232_turns_kernel_rs485_off(self) -> None:
        """Applying RS-232 after 2-wire RS-485 clears the kernel RS-485 mode again."""
        ser = StubSerial()
        control = PySerialControl(ser)
        control.apply(SerialSettings(interface=SerialInterface.RS485_2WIRE))
        self.assertIsNotNone(ser.rs485_mode)
        control.apply(SerialSettings(interface=SerialInterface.RS232))
        self.assertIsNone(ser.rs485_mode)


class Collector(Protocol):
    """Collects bytes until C{expected} arrived; records connectionLost."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.data = b""
        self.received: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= self.expected and not self.received.called:
            self.received.callback(self.data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.reason = reason
        self.lost.callback(None)


@implementer(IChannelSession)
class StateSession:
    """A session that fires a Deferred when the device goes away."""

    def __init__(self) -> None:
        self.gone: Deferred[None] = Deferred()
        self.paused = False
        self.data = bytearray()

    def serial_data(self, data: bytes) -> None:
        self.data += data

    def modem_lines_changed(self, old: Any, new: Any) -> None:
        pass

    def line_errors(self, events: Any) -> None:
        pass

    def device_state_changed(self, available: bool) -> None:
        if not available and not self.gone.called:
            self.gone.callback(None)

    def pause_input(self) -> None:
        self.paused = True

    def resume_input(self) -> None:
        self.paused = False

    def abort(self) -> None:
        pass


def _in_waiting(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


@inlineCallbacks
def turns_until(predicate: Any, max_turns: int = 2000, each: Any = None) -> Any:
    """Let the reactor turn until C{predicate()} holds (bounded); run C{each} every turn."""
    for _ in range(max_turns):
        if predicate():
            return True
        if each is not None:
            each()
        yield deferLater(reactor, 0, lambda: None)
    return bool(predicate())


class SerialPortOnPtyTests(TestCase):
    timeout = 10

    @inlineCallbacks
    def test_open_serial_port_receives(self) -> Any:
        """The default opener opens a SerialPort on a pty that receives bytes written to the master."""
        pty = Pty(self)
        master, path = pty.master, pty.path
        protocol = Collector(5)
        handle = open_serial_port(reactor)(protocol, path, SerialSettings())
        self.assertTrue(verifyObject(ISerialControl, handle.control))

        def close() -> Deferred[None]:
            handle.transport.loseConnection()
            return protocol.lost

        self.addCleanup(close)
        self.assertEqual(handle.control.apply(SerialSettings(baudrate=38400)).baudrate, 38400)
        os.write(master, b"hello")
        data = yield protocol.received
        self.assertEqual(data, b"hello")
        handle.transport.write(b"back")
        self.assertTrue((yield turns_until(lambda: select.select([master], [], [], 0)[0])))
        self.assertEqual(os.read(master, 100), b"back")

    @inlineCallbacks
    def test_open_keeps_input_already_held(self) -> Any:
        """Bytes the device received before the open are delivered, not flushed (pyserial's open flushes)."""
        pty = Pty(self)
        holder = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)  # the tty stays open, as a device would
        self.addCleanup(os.close, holder)
        tty.setraw(holder)
        os.write(pty.master, b"held")
        yield poll_until(lambda: _in_waiting(holder) == 4, timeout=5, what="the bytes in the tty")
        protocol = Collector(4)
        handle = open_serial_port(reactor)(protocol, pty.path, SerialSettings())

        def close() -> Deferred[None]:
            handle.transport.loseConnection()
            return protocol.lost

        self.addCleanup(close)
        yield poll_until(lambda: len(protocol.data) >= 4, timeout=5, what="the held bytes")
        self.assertEqual(protocol.data, b"held")

    @inlineCallbacks
    def test_reopen_after_hangup_keeps_input(self) -> Any:
        """After a hang-up, the channel's reopen delivers what the device received meanwhile."""
        pty = Pty(self)
        holder = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)  # keeps the tty (and its queue) alive
        self.addCleanup(os.close, holder)
        clock = Clock()
        channel = SerialChannel(0, pty.path, SerialSettings(), clock, open_serial_port(reactor))
        channel.startService()
        self.addCleanup(channel.stopService)
        session = StateSession()
        channel.attach(session)
        assert channel._handle is not None
        # A spurious hang-up as the SerialPort reports it (read gave EOF): fd closed, ConnectionDone.
        channel._handle.transport.connectionLost(Failure(ConnectionDone()))
        yield session.gone
        os.write(pty.master, b"arrived during the hang-up")
        yield poll_until(lambda: _in_waiting(holder) == 26, timeout=5, what="the bytes in the tty")
        clock.advance(0.5)  # the channel's reopen
        self.assertTrue(channel.is_open)
        yield poll_until(lambda: len(session.data) >= 26, timeout=5, what="the held bytes")
        self.assertEqual(bytes(session.data), b"arrived during the hang-up")

    @inlineCallbacks
    def test_channel_pty_vanish_schedules_reopen(self) -> Any:
        """Closing a pty's master makes a real channel log the loss and schedule a reopen on its clock."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        pty = Pty(self)
        clock = Clock()
        channel = SerialChannel(0, pty.path, SerialSettings(baudrate=19200), clock, open_serial_port(reactor))
        channel.startService()
        self.addCleanup(channel.stopService)
        self.assertTrue(channel.is_open)
        self.assertEqual(clock.getDelayedCalls(), [])  # a pty has neither modem lines nor counters
        session = StateSession()
        channel.attach(session)
        pty.close()
        yield session.gone
        self.assertFalse(channel.is_open)
        self.assertIn(session, channel.sessions)
        self.assertTrue(any("vanished" in e["log_format"] for e in warnings(observer)))
        (retry,) = clock.getDelayedCalls()
        self.assertEqual(retry.getTime(), 0.5)
        clock.advance(0.5)  # the pty is gone for good: the reopen fails and is retried later
        self.assertEqual(channel.stats.open_failures, 1)
        (retry,) = clock.getDelayedCalls()
        self.assertEqual(retry.getTime(), 1.5)
        yield channel.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_channel_stop_while_write_paused(self) -> Any:
        """A channel stopped while the SerialPort has paused it still closes once the buffer drains."""
        pty = Pty(self)
        master, path = pty.master, pty.path
        os.set_blocking(master, False)
        channel = SerialChannel(0, path, SerialSettings(), Clock(), open_serial_port(reactor))
        channel.startService()
        transport = channel._handle.transport if channel._handle is not None else None

        def force_close() -> None:
            if transport is not None and transport.connected:
                transport.connectionLost(Failure(ConnectionDone()))

        self.addCleanup(force_close)
        session = StateSession()
        channel.attach(session)
        size = 1_000_000
        self.assertTrue(channel.write(b"x" * size))
        self.assertTrue(session.paused)
        stopped = channel.stopService()
        received = bytearray()
        hung_up = []

        def drain() -> None:
            try:
                received.extend(os.read(master, 1 << 16))
            except BlockingIOError:
                pass
            except OSError:  # EIO: the slave is closed and everything was read
                hung_up.append(True)

        done = yield turns_until(lambda: stopped.called, max_turns=5000, each=drain)
        self.assertTrue(done, "the SerialPort never closed")
        yield turns_until(lambda: bool(hung_up), max_turns=5000, each=drain)
        self.assertEqual(len(received), size)
        self.assertFalse(session.paused)


class WriteNowTests(SynchronousTestCase):
    """write_now's fast path must never bypass a TLS layer."""

    def test_tls_transport_not_bypassed(self) -> None:
        """A TLS transport forwarding attributes to its TCP transport gets write(), never writeSomeData()."""
        from zope.interface import implementer as _implementer
        from twisted.internet.interfaces import ISSLTransport

        from nport_twisted._txinternals import write_now

        class Raw:
            _tempDataLen = 0
            dataBuffer = b""
            offset = 0
            connected = True
            disconnecting = False
            _writeDisconnected = False
            raw: list[bytes] = []

            def writeSomeData(self, data: bytes) -> int:
                self.raw.append(data)
                return len(data)

        @_implementer(ISSLTransport)
        class Tls:
            def __init__(self) -> None:
                self.transport = Raw()
                self.written: list[bytes] = []

            def __getattr__(self, name: str) -> object:  # like twisted.protocols.policies.ProtocolWrapper
                return getattr(self.transport, name)

            def write(self, data: bytes) -> None:
                self.written.append(data)

        tls = Tls()
        write_now(tls, b"secret")
        self.assertEqual((tls.written, Raw.raw), ([b"secret"], []))


class _Fd:
    """Builds a FileDescriptor whose kernel side the test scripts."""

    @staticmethod
    def make(accept: list[object]) -> "object":
        from twisted.internet.abstract import FileDescriptor
        from twisted.internet.testing import MemoryReactor

        class Fd(FileDescriptor):
            def __init__(self) -> None:
                super().__init__(MemoryReactor())
                self.connected = True
                self.sent: list[bytes] = []

            def writeSomeData(self, data: bytes) -> object:
                result = accept.pop(0)
                if isinstance(result, int):
                    self.sent.append(bytes(data[:result]))
                return result

        return Fd()


def _queued(fd: object) -> bytes:
    return bytes(fd.dataBuffer[fd.offset:]) + b"".join(fd._tempDataBuffer)  # type: ignore[attr-defined]


class WriteNowPathTests(SynchronousTestCase):
    """write_now on a plain FileDescriptor: direct when idle, queued otherwise, never reordered."""

    def test_idle_write_goes_out_at_once(self) -> None:
        """With nothing queued, all bytes the kernel takes leave at once and nothing is queued."""
        from nport_twisted._txinternals import write_now
        fd = _Fd.make([5])
        write_now(fd, b"hello")
        self.assertEqual((fd.sent, _queued(fd)), ([b"hello"], b""))  # type: ignore[attr-defined]

    def test_partial_write_queues_the_rest(self) -> None:
        """What the kernel does not take is queued in order for the normal write path."""
        from nport_twisted._txinternals import write_now
        fd = _Fd.make([3])
        write_now(fd, b"0123456789")
        self.assertEqual((fd.sent, _queued(fd)), ([b"012"], b"3456789"))  # type: ignore[attr-defined]

    def test_error_left_to_write_path(self) -> None:
        """An error from the direct write queues the bytes so the normal path reports the loss."""
        from twisted.internet.error import ConnectionLost

        from nport_twisted._txinternals import write_now
        fd = _Fd.make([ConnectionLost()])
        write_now(fd, b"data")
        self.assertEqual(_queued(fd), b"data")

    def test_busy_transport_appends(self) -> None:
        """With bytes already queued, new bytes are appended, not sent ahead of them."""
        from nport_twisted._txinternals import write_now
        fd = _Fd.make([2])
        write_now(fd, b"abcd")  # 2 sent, "cd" queued
        write_now(fd, b"ef")  # must not jump the queue
        self.assertEqual((fd.sent, _queued(fd)), ([b"ab"], b"cdef"))  # type: ignore[attr-defined]


class WriteNowFallbackTests(SynchronousTestCase):
    """write_now's per-type decision must not let a TLS transport or a wrapper through."""

    def test_instance_declared_tls_not_bypassed(self) -> None:
        """A FileDescriptor declared ISSLTransport on the instance gets write(), not a direct send."""
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import directlyProvides

        from nport_twisted._txinternals import write_now
        plain, tls = _Fd.make([3]), _Fd.make([3])
        directlyProvides(tls, ISSLTransport)
        write_now(plain, b"abc")  # the type is now known as direct-capable
        write_now(tls, b"xyz")
        self.assertEqual((plain.sent, tls.sent), ([b"abc"], []))  # type: ignore[attr-defined]
        self.assertEqual(_queued(tls), b"xyz")

    def test_tls_started_connection_not_bypassed(self) -> None:
        """A connection that started TLS (its TLS flag set) is written through write()."""
        from nport_twisted._txinternals import write_now
        fd = _Fd.make([4])
        fd.TLS = True  # type: ignore[attr-defined]
        write_now(fd, b"data")
        self.assertEqual((fd.sent, _queued(fd)), ([], b"data"))  # type: ignore[attr-defined]

    def test_tls_class_never_direct(self) -> None:
        """A FileDescriptor class implementing ISSLTransport is never given the direct path."""
        from twisted.internet.abstract import FileDescriptor
        from twisted.internet.interfaces import ISSLTransport
        from zope.interface import implementer as _implementer

        from nport_twisted._txinternals import _direct_write_type

        @_implementer(ISSLTransport)
        class TlsFd(FileDescriptor):
            pass

        self.assertEqual((bool(_direct_write_type(TlsFd)), bool(_direct_write_type(FileDescriptor))),
                         (False, True))


class _Collect(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)


def _wait_readable(fd: int) -> None:
    """Block (bounded) until C{fd} has input: the kernel's pty hand-over is not instant."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(5000):
        raise AssertionError("the pty never became readable")


class FlushedWakeUpTests(SynchronousTestCase):
    """
    A tty at VMIN=0 answers read() with 0 bytes when the input that woke the
    reader was flushed first (Real COM FLUSH, PURGE-DATA, tcflush): that is
    not a hang-up, and the device must stay open for everyone.
    """

    def _port(self) -> tuple[Pty, Any, _Collect]:
        from twisted.internet.testing import MemoryReactor

        pty = Pty(self)
        tty.setraw(pty.master)
        protocol = _Collect()
        handle = open_serial_port(MemoryReactor(), SHARED)(protocol, pty.path, SerialSettings())
        self.addCleanup(handle.transport.connectionLost, Failure(ConnectionDone()))
        return pty, handle.transport, protocol

    def _flushed_wake_up(self, pty: Pty, fd: int) -> None:
        os.write(pty.master, b"lost")
        _wait_readable(fd)
        termios.tcflush(fd, termios.TCIFLUSH)

    def test_serial_port_read_after_flush(self) -> None:
        """SerialPort.doRead after a flushed wake-up keeps the port; later bytes arrive."""
        pty, port, protocol = self._port()
        fd = port.fileno()
        self._flushed_wake_up(pty, fd)
        self.assertIsNone(port.doRead())
        os.write(pty.master, b"kept")
        _wait_readable(fd)
        self.assertIsNone(port.doRead())
        self.assertEqual(b"".join(protocol.received), b"kept")

    def test_fast_reader_after_flush(self) -> None:
        """The reactor's fast reader (fast_io) follows the same rule."""
        from nport_twisted._txinternals import fast_io

        pty, port, protocol = self._port()
        readers: list[Any] = []

        class Reactor:
            def add_fast_reader(self, selectable: Any, read: Any) -> None:
                readers.append(read)

        self.assertTrue(fast_io(Reactor(), port))
        fd = port.fileno()
        self._flushed_wake_up(pty, fd)
        self.assertIsNone(readers[0]())
        os.write(pty.master, b"kept")
        _wait_readable(fd)
        self.assertIsNone(readers[0]())
        self.assertEqual(b"".join(protocol.received), b"kept")

    def test_master_closed_is_hang_up(self) -> None:
        """A closed pty master still ends the port (EIO or an empty read with POLLHUP)."""
        pty, port, _ = self._port()
        pty.close()
        self.assertIsNotNone(port.doRead())

    def test_endless_empty_reads_end_the_port(self) -> None:
        """A descriptor that keeps waking with nothing to read cannot spin the loop."""
        from nport_twisted._txinternals import TtyEof

        pty, port, _ = self._port()
        results = [port.doRead() for _ in range(TtyEof.limit)]
        self.assertEqual(results[:-1], [None] * (TtyEof.limit - 1))
        self.assertIsNotNone(results[-1])


class DirectWriterTests(SynchronousTestCase):
    """_txinternals.direct_writer: at once when plain and idle, else False and nothing done."""

    def _serial(self) -> tuple[Pty, Any]:
        from twisted.internet.testing import MemoryReactor

        pty = Pty(self)
        tty.setraw(pty.master)
        handle = open_serial_port(MemoryReactor(), SHARED)(_Collect(), pty.path, SerialSettings())
        self.addCleanup(handle.transport.connectionLost, Failure(ConnectionDone()))
        return pty, handle.transport

    def test_serial_port_written_at_once(self) -> None:
        """An idle SerialPort: the bytes are on the device at once, nothing queued."""
        from nport_twisted._txinternals import direct_writer, unsent_bytes

        pty, port = self._serial()
        write = direct_writer(port)
        assert write is not None
        self.assertTrue(write(b"now"))
        _wait_readable(pty.master)
        self.assertEqual(os.read(pty.master, 100), b"now")
        self.assertEqual(unsent_bytes(port), 0)

    def test_queued_closing_or_closed_is_refused(self) -> None:
        """Something queued ahead, closing or closed: False, and nothing is written."""
        from nport_twisted._txinternals import direct_writer

        pty, port = self._serial()
        write = direct_writer(port)
        assert write is not None
        port._tempDataBuffer, port._tempDataLen = [b"ahead"], 5
        self.assertFalse(write(b"x"))
        port._tempDataBuffer, port._tempDataLen = [], 0
        port.disconnecting = True
        self.assertFalse(write(b"x"))
        port.disconnecting = False
        port.connected = 0
        self.assertFalse(write(b"x"))
        port.connected = 1
        self.assertEqual(select.select([pty.master], [], [], 0)[0], [])  # nothing reached it

    def test_only_plain_transports(self) -> None:
        """Fakes, TLS-started connections and non-descriptors get no direct writer."""
        from nport_twisted._txinternals import direct_writer
        from nport_twisted.testing import FakeTcpTransport

        self.assertIsNone(direct_writer(FakeTcpTransport()))
        self.assertIsNone(direct_writer(object()))
        _, port = self._serial()
        port.TLS = True
        self.assertIsNone(direct_writer(port))
