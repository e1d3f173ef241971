# -*- test-case-name: tests.test_serialdev -*-
"""
The serial device adapter: the only code that touches pyserial objects and
Twisted's SerialPort (style.md §2.14); the write-buffer internals it reads
live in L{nport_twisted._txinternals}.

It applies settings one at a time with rollback, so a device that refuses a
value (a pty refuses parity and data bits with EINVAL) keeps working with the
old value and we can report what is really in force.  Modem-line ioctls that
fail with ENOTTY (ptys) mean "this device has no modem lines".
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import termios
from typing import Any, Callable, Protocol

import attrs
import serial
from twisted.internet.interfaces import IReactorFDSet
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from nport_twisted._txinternals import TtyEof, discard_unsent, read_serial, unsent_bytes
from nport_twisted.device.locks import (
    DeviceBusy,
    acquire,
    busy_reason,
    default_lock_dir,
    lock_path,
    release,
)
from nport_twisted.config.settings import FlowControl, Parity, SerialInterface, SerialSettings
from nport_twisted.device.lines import LineCounters, ModemLines

__all__ = ["ISerialControl", "LineCounters", "ModemLines", "OpenedSerial", "Opener",
           "PySerialControl", "SerialHandle", "open_serial_port"]

_REFUSED = (serial.SerialException, termios.error, ValueError, OSError)

# Linux ioctl numbers (asm-generic/ioctls.h), used where pyserial has no API.
_TIOCGICOUNT = 0x545D
_TIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)


class ISerialControl(Interface):
    """Control of one open serial device beyond reading and writing bytes."""

    name = Attribute("The device path, for log lines.")

    def apply(settings: SerialSettings) -> SerialSettings:
        """Apply line settings; return the settings actually in force."""

    def set_dtr(on: bool) -> bool:
        """Drive DTR; False when the device has no modem lines."""

    def set_rts(on: bool) -> bool:
        """Drive RTS; False when the device has no modem lines."""

    def modem_lines() -> ModemLines | None:
        """Sample CTS/DSR/RI/DCD; None when the device has no modem lines."""

    def line_counters() -> LineCounters | None:
        """Error and break counters; None when the device cannot tell."""

    def set_break(on: bool) -> bool:
        """Start or stop a break condition."""

    def reset_input() -> None:
        """Discard bytes received but not yet read."""

    def reset_output() -> None:
        """Discard bytes written but not yet sent, including our own buffer."""

    def output_waiting() -> int:
        """Bytes written but not yet on the wire (our buffer + the kernel's)."""

    def input_waiting() -> int:
        """Bytes received by the kernel but not yet read."""

    def set_xon_xoff_chars(xon: int, xoff: int) -> bool:
        """Set the software flow control characters."""

    def set_output_suspended(suspended: bool) -> bool:
        """Suspend or resume transmission (as XOFF/XON received would)."""


class SerialHandle(Protocol):
    """What an opener returns: the byte transport and its control."""

    transport: Any  # ITransport + IPushProducer + IConsumer (SerialPort)
    control: ISerialControl


@attrs.define
class OpenedSerial:
    transport: Any
    control: ISerialControl


Opener = Callable[[TwistedProtocol, str, SerialSettings], SerialHandle]


_PARITY = {p: p.value for p in Parity}
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}


@implementer(ISerialControl)
class PySerialControl:
    """L{ISerialControl} over a pyserial 3 C{Serial} (the one inside Twisted's SerialPort)."""

    _log = Logger()

    def __init__(self, ser: Any, transport: Any = None) -> None:
        self._serial = ser
        self._transport = transport
        self.name = str(getattr(ser, "port", "?"))
        self._no_modem_lines = False
        self._no_counters = False
        self._refused_logged: set[tuple[str, object]] = set()

    def _set(self, attr: str, value: object) -> bool:
        old = getattr(self._serial, attr)
        if old == value:
            return True
        try:
            setattr(self._serial, attr, value)
            return True
        except _REFUSED as e:
            try:
                setattr(self._serial, attr, old)
            except _REFUSED:
                pass  # the old value was in force before; nothing better to do
            if (attr, value) not in self._refused_logged:
                self._refused_logged.add((attr, value))
                self._log.warn("{device} refused {setting}={value} ({error}); keeping {old}",
                               device=self.name, setting=attr, value=value, error=e, old=old)
            return False

    def apply(self, settings: SerialSettings) -> SerialSettings:
        actual: dict[str, Any] = {}
        if self._set("baudrate", settings.baudrate):
            actual["baudrate"] = settings.baudrate
        if self._set("bytesize", settings.bytesize):
            actual["bytesize"] = settings.bytesize
        if self._set("parity", _PARITY[settings.parity]):
            actual["parity"] = settings.parity
        if self._set("stopbits", _STOPBITS[settings.stopbits]):
            actual["stopbits"] = settings.stopbits
        ok = all([
            self._set("rtscts", settings.rtscts),
            self._set("xonxoff", settings.xonxoff),
            self._set("dsrdtr", settings.dsrdtr),
        ])
        if ok:
            actual["flow_control"] = settings.flow_control
        self._apply_rs485(settings.interface)  # also turns it off again for RS-232
        return attrs.evolve(self.current(settings), **actual)

    def _apply_rs485(self, interface: SerialInterface) -> None:
        import serial.rs485
        mode = serial.rs485.RS485Settings() if interface is SerialInterface.RS485_2WIRE else None
        old = getattr(self._serial, "rs485_mode", None)
        if mode is None and old is None:
            return
        try:
            self._serial.rs485_mode = mode
        except _REFUSED as e:
            # pyserial keeps the refused mode and would retry (and fail) it on
            # every later reconfiguration, refusing the baud rate and all.
            try:
                self._serial.rs485_mode = old
            except _REFUSED:
                pass
            self._log.info("{device}: no kernel RS-485 mode ({error}); the adapter must switch "
                           "direction itself", device=self.name, error=e)

    def current(self, requested: SerialSettings) -> SerialSettings:
        """What pyserial says is in force (after a rollback it is the old value)."""
        s = self._serial
        parity = next((p for p, v in _PARITY.items() if v == s.parity), Parity.NONE)
        stop = next((k for k, v in _STOPBITS.items() if v == s.stopbits), 1)
        flow = (FlowControl.RTS_CTS if s.rtscts else FlowControl.XON_XOFF if s.xonxoff
                else FlowControl.DTR_DSR if s.dsrdtr else FlowControl.NONE)
        return attrs.evolve(requested, baudrate=int(s.baudrate), bytesize=int(s.bytesize),
                            parity=parity, stopbits=stop, flow_control=flow)

    def _modem_call(self, fn: Callable[[], Any]) -> Any:
        if self._no_modem_lines:
            return None
        try:
            return fn()
        except (OSError, serial.SerialException) as e:
            if getattr(e, "errno", None) in (errno.ENOTTY, errno.EINVAL, None):
                self._no_modem_lines = True
                self._log.info("{device} has no modem lines ({error})", device=self.name, error=e)
                return None
            raise

    def _set_line(self, name: str, on: bool) -> bool:
        def set_it() -> bool:
            setattr(self._serial, name, on)
            return True
        return self._modem_call(set_it) is not None

    def set_dtr(self, on: bool) -> bool:
        return self._set_line("dtr", on)

    def set_rts(self, on: bool) -> bool:
        return self._set_line("rts", on)

    def modem_lines(self) -> ModemLines | None:
        s = self._serial
        result: ModemLines | None = self._modem_call(
            lambda: ModemLines(cts=bool(s.cts), dsr=bool(s.dsr), ri=bool(s.ri), dcd=bool(s.cd)))
        return result

    def line_counters(self) -> LineCounters | None:
        if self._no_counters:
            return None
        buf = array.array("i", [0] * 16)
        try:
            fcntl.ioctl(self._serial.fd, _TIOCGICOUNT, buf, True)
        except OSError:
            self._no_counters = True
            return None
        # struct serial_icounter_struct: cts dsr rng dcd rx tx frame overrun parity brk buf_overrun
        return LineCounters(frame=buf[6], overrun=buf[7], parity=buf[8], brk=buf[9], buf_overrun=buf[10])

    def set_break(self, on: bool) -> bool:
        try:
            self._serial.break_condition = on
            return True
        except _REFUSED as e:
            self._log.info("{device} refused break {state} ({error})", device=self.name,
                           state="on" if on else "off", error=e)
            return False

    def reset_input(self) -> None:
        try:
            self._serial.reset_input_buffer()
        except _REFUSED:
            pass

    def reset_output(self) -> None:
        if self._transport is not None:
            discard_unsent(self._transport)
        try:
            self._serial.reset_output_buffer()
        except _REFUSED:
            pass

    def output_waiting(self) -> int:
        queued = unsent_bytes(self._transport) if self._transport is not None else 0
        buf = array.array("i", [0])
        try:
            fcntl.ioctl(self._serial.fd, _TIOCOUTQ, buf, True)
            queued += buf[0]
        except (OSError, AttributeError, TypeError):
            pass
        return queued

    def input_waiting(self) -> int:
        try:
            return int(self._serial.in_waiting)
        except _REFUSED:
            return 0

    def set_output_suspended(self, suspended: bool) -> bool:
        try:
            termios.tcflow(self._serial.fd, termios.TCOOFF if suspended else termios.TCOON)
            return True
        except (termios.error, OSError, AttributeError, TypeError) as e:
            self._log.info("{device} cannot suspend output ({error})", device=self.name, error=e)
            return False

    def set_xon_xoff_chars(self, xon: int, xoff: int) -> bool:
        # pyserial has no API for VSTART/VSTOP: set them with termios directly.
        try:
            fd = self._serial.fd
            attrs_ = termios.tcgetattr(fd)
            attrs_[6][termios.VSTART] = bytes([xon])
            attrs_[6][termios.VSTOP] = bytes([xoff])
            termios.tcsetattr(fd, termios.TCSANOW, attrs_)
            return True
        except (termios.error, OSError, AttributeError, TypeError) as e:
            self._log.info("{device} refused XON/XOFF characters ({error})", device=self.name, error=e)
            return False


class _KeepInputSerial(serial.Serial):  # type: ignore[misc]
    """
    pyserial's C{Serial} whose C{open()} keeps what the device already
    received.  pyserial flushes the input queue at the end of every open;
    after a spurious hang-up that threw away bytes the device was holding
    for us (142,866 once).  An explicit C{reset_input_buffer()} still works.
    """

    _opening = False

    def open(self) -> None:
        self._opening = True
        try:
            super().open()
        finally:
            self._opening = False

    def _reset_input_buffer(self) -> None:
        if not self._opening:
            super()._reset_input_buffer()


def _serial_port_class() -> type[Any]:
    """
    Twisted's SerialPort without its open-time input flush, and without
    taking a flushed wake-up for a hang-up (L{TtyEof}); imported lazily.
    """
    from twisted.internet.serialport import SerialPort

    class KeepInputSerialPort(SerialPort):
        _serialFactory = _KeepInputSerial
        _opened = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            #: Shared with the reactor's fast reader (_txinternals.fast_io).
            self.tty_eof = TtyEof()
            super().__init__(*args, **kwargs)
            self._opened = True

        def doRead(self) -> object:
            # Twisted's doRead takes every empty read as a hang-up; on a tty
            # with VMIN=0 it is often only flushed input (TtyEof).
            return read_serial(self.fileno(), self.protocol.dataReceived, self.tty_eof)

        def flushInput(self) -> None:
            # SerialPort.__init__ flushes the input; later calls are meant.
            if self._opened:
                super().flushInput()

    return KeepInputSerialPort


def describe_open_error(error: BaseException) -> str:
    """
    A short reason for a failed open: pyserial wraps the OS error twice
    (C{[Errno 2] could not open port X: [Errno 2] No such file …}); the
    strerror is what an operator needs, or who holds a busy device.
    """
    if isinstance(error, DeviceBusy):
        return str(error)
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code > 0:
        return os.strerror(code)
    return str(error) or type(error).__name__


def device_present(path: str) -> bool:
    """Whether the device node (or the udev link to it) exists now; nothing is opened."""
    return os.path.exists(path)


@attrs.frozen
class Exclusive:
    """
    How a device is taken (C{--lock-dir}, C{--no-exclusive}).

    @ivar tiocexcl: set TIOCEXCL once open: further opens by other
        (unprivileged) programs fail with EBUSY.
    @ivar lock_dir: where UUCP lock files go (None: no lock files).
    """

    tiocexcl: bool = True
    lock_dir: str | None = attrs.field(factory=default_lock_dir)


#: Sharing the device as plain pyserial does (tests, C{--no-exclusive}).
SHARED = Exclusive(tiocexcl=False, lock_dir=None)


def _take_exclusive(port: Any, device: str, exclusive: Exclusive) -> None:
    """TIOCEXCL on the open device; a device that refuses it is used anyway (logged)."""
    if not exclusive.tiocexcl:
        return
    try:
        fcntl.ioctl(port._serial.fd, termios.TIOCEXCL)
    except (OSError, AttributeError, TypeError) as e:
        _log.info("{device}: no exclusive mode (TIOCEXCL: {error}); other programs can open it",
                  device=device, error=e)


_log = Logger()


def open_serial_port(reactor: IReactorFDSet, exclusive: Exclusive | None = None) -> Opener:
    """
    The default opener: Twisted's SerialPort at a safe 9600 8N1 with no flow
    control (which every device accepts), then the real settings one by one
    through L{PySerialControl.apply} so a refusal only costs that one value.

    Opening never discards input the device already holds (pyserial and
    Twisted both flush it on open): a reopen after a hang-up delivers what
    arrived in between.  A host that wants a clean start asks for it (Real
    COM FLUSH, RFC 2217 PURGE-DATA).

    The device is taken exclusively (L{Exclusive}, default on): a UUCP lock
    file first (a live owner fails the open with L{DeviceBusy} naming its
    pid; the channel retries), then TIOCEXCL; the lock goes with the close.
    A lock directory we cannot write is logged once and costs only the
    lock file, not the port.
    """
    policy: Exclusive = exclusive if exclusive is not None else Exclusive()
    base = _serial_port_class()
    unlockable: set[str] = set()

    class LockedSerialPort(base):  # type: ignore[misc,valid-type]
        lock: str | None = None

        def connectionLost(self, reason: Any) -> None:
            # TIOCEXCL stays on the tty while anyone else still has it open (a
            # getty, socat's end of a pty): clear it, or our own next open (as
            # an unprivileged user) fails with EBUSY.
            if policy.tiocexcl:
                try:
                    fcntl.ioctl(self._serial.fd, termios.TIOCNXCL)
                except (OSError, AttributeError, TypeError):
                    pass  # already closed, or never exclusive
            # Release first: the protocol may reopen at once (and lock again).
            lock, self.lock = self.lock, None
            if lock is not None:
                release(lock)
            super().connectionLost(reason)

    def take_lock(device: str) -> str | None:
        if policy.lock_dir is None:
            return None
        path = lock_path(policy.lock_dir, device)
        try:
            acquire(path, device)
        except DeviceBusy:
            raise
        except OSError as e:
            if policy.lock_dir not in unlockable:
                unlockable.add(policy.lock_dir)
                _log.warn("cannot create UUCP lock files in {dir} ({error}): devices are taken "
                          "with TIOCEXCL only, so a program running as root could still share "
                          "them. Fix: make {dir} writable for this user, or --lock-dir DIR, or "
                          "--lock-dir none", dir=policy.lock_dir, error=e.strerror or e)
            return None
        return path

    def opener(protocol: TwistedProtocol, device: str, settings: SerialSettings) -> SerialHandle:
        lock = take_lock(device)
        try:
            port = LockedSerialPort(protocol, device, reactor, baudrate=9600)
        except serial.SerialException as e:
            if lock is not None:
                release(lock)
            if getattr(e, "errno", None) == errno.EBUSY:
                raise DeviceBusy(device, busy_reason(device)) from None
            raise
        except BaseException:
            if lock is not None:
                release(lock)
            raise
        port.lock = lock
        _take_exclusive(port, device, policy)
        control = PySerialControl(port._serial, port)
        return OpenedSerial(port, control)

    return opener
