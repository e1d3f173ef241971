# -*- test-case-name: tests.test_realtty_pty -*-
"""
The local side of nport-realtty: a pseudo-terminal per remote port, the
stable symlinks applications open, and the pty master in the reactor.

  - L{PtyPair} owns the master fd.  The slave is closed at once: the
    master then reports hang-up (POLLHUP, EIO on read) until an
    application opens the slave, and again after its last close — that is
    how "open" and "close" are seen without a kernel module.
  - The master is in packet mode (C{TIOCPKT}); with C{EXTPROC} set on the
    slave's termios every C{tcsetattr} of the application gives a
    C{TIOCPKT_IOCTL} status byte (Linux >= 2.6.36).  Termios ioctls on a
    Linux pty master act on the slave, so we read the application's
    settings (C{TCGETS2}: exact rates) and restore a refused speed there.
  - L{MasterDescriptor} is the master in the reactor: packets in, bytes out
    with a bounded buffer and a high/low water mark for flow control.
  - L{OpenWatcher} notices opens and closes while the master is not read:
    inotify C{IN_OPEN}/C{IN_CLOSE} on the slave (devpts sends them), and a
    periodic non-destructive C{poll()} for POLLHUP as the fallback.

Only this module touches file descriptors, ioctls and the file system.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import termios
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.tools.realtty.termios_map import EXTPROC, TERMIOS2_SIZE, TermiosState

__all__ = [
    "LinkError",
    "MasterDescriptor",
    "OpenWatcher",
    "PtyPair",
    "TCGETS2",
    "TCSETS2",
]

TIOCPKT = getattr(termios, "TIOCPKT", 0x5420)
# _IOR('T', 0x2A, struct termios2) / _IOW('T', 0x2B, ...) with the generic
# ioctl encoding (x86, ARM, RISC-V); other architectures fall back to tcgetattr.
TCGETS2 = (2 << 30) | (TERMIOS2_SIZE << 16) | (ord("T") << 8) | 0x2A
TCSETS2 = (1 << 30) | (TERMIOS2_SIZE << 16) | (ord("T") << 8) | 0x2B

#: One read of the master (packet mode returns one packet per read).
READ_SIZE = 65536


class LinkError(OSError):
    """A link path cannot be made (it exists and is not a symlink, or no permission)."""


def _initial_termios(state: TermiosState, extproc: bool, baudrate: int) -> TermiosState:
    # What MOXA's module gives a tty before its first open: 9600 8N1,
    # CREAD|HUPCL|CLOCAL, and the kernel's standard iflag/oflag/lflag (IXON on).
    cflag = (state.cflag & ~(termios.CSIZE | termios.PARENB | termios.CSTOPB)) | (
        termios.CS8 | termios.CREAD | termios.HUPCL | termios.CLOCAL)
    lflag = (state.lflag | EXTPROC) if extproc else (state.lflag & ~EXTPROC)
    return TermiosState(state.iflag, state.oflag, cflag, lflag, state.cc,
                        state.ispeed, state.ospeed).with_speed(baudrate)


class PtyPair:
    """
    One pseudo-terminal and the symlinks that point at its slave.

    C{links}: paths to create (symlinks to the slave, replaced atomically);
    C{mode}/C{gid}: applied to the slave device node (C{gid} -1 keeps it).
    """

    _log = Logger()

    def __init__(self, links: tuple[str, ...], mode: int = 0o660, gid: int = -1,
                 extproc: bool = True, baudrate: int = 9600) -> None:
        self.links = links
        self.mode = mode
        self.gid = gid
        self.extproc = extproc
        self.baudrate = baudrate
        self.master: int | None = None
        self.slave_path = ""
        self._termios2 = True

    # -- life -----------------------------------------------------------------------

    def open(self) -> None:
        """Create the pty, set packet mode and the first termios, point the links at it."""
        for link in self.links:
            self._check_link(link)
        master, slave = os.openpty()
        try:
            path = os.ttyname(slave)
            fcntl.ioctl(master, TIOCPKT, struct.pack("i", 1))
            os.set_blocking(master, False)
            self.master, self.slave_path = master, path
            self.write_termios(_initial_termios(self.read_termios(), self.extproc, self.baudrate))
            self._permissions(path)
        except BaseException:
            self.master = None
            os.close(master)
            raise
        finally:
            os.close(slave)  # from now on the master sees hang-up until someone opens it
        for link in self.links:
            self._link(link, path)

    def close(self) -> None:
        """Close the master (any open slave is hung up) and remove links that still point here."""
        for link in self.links:
            try:
                if os.readlink(link) == self.slave_path:
                    os.unlink(link)
            except OSError:
                pass
        if self.master is not None:
            fd, self.master = self.master, None
            try:
                os.close(fd)
            except OSError:
                pass

    def renew(self) -> None:
        """
        Hang up the tty and make a new one behind the same links: the
        application's open file gets EOF/EIO and a reopen of the link gets
        the new pty.  The links are repointed before the old master closes.
        """
        old_master, old_path = self.master, self.slave_path
        self.master = None
        try:
            self.open()
        finally:
            if old_master is not None:
                os.close(old_master)
        self._log.info("{link}: tty hung up; {old} replaced by {new}",
                       link=self.links[0], old=old_path, new=self.slave_path)

    # -- links and permissions ------------------------------------------------------

    @staticmethod
    def _check_link(link: str) -> None:
        try:
            st = os.lstat(link)
        except FileNotFoundError:
            parent = os.path.dirname(link) or "."
            if not os.path.isdir(parent):
                raise LinkError(errno.ENOENT, f"{link}: directory {parent} does not exist") from None
            return
        import stat
        if not stat.S_ISLNK(st.st_mode):
            kind = "a device node" if stat.S_ISCHR(st.st_mode) else "not a symlink"
            raise LinkError(
                errno.EEXIST,
                f"{link} exists and is {kind} (a leftover of MOXA's driver? remove it: rm {link})")

    def _link(self, link: str, target: str) -> None:
        tmp = f"{link}.realtty-{os.getpid()}"
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(target, tmp)
            os.replace(tmp, link)  # atomic: the link never disappears
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise LinkError(e.errno, f"cannot create {link}: {e.strerror}") from None

    def _permissions(self, path: str) -> None:
        try:
            os.chmod(path, self.mode)
        except OSError as e:
            self._log.warn("{path}: cannot set mode {mode:o}: {error}", path=path,
                           mode=self.mode, error=e.strerror)
        if self.gid >= 0:
            try:
                os.chown(path, -1, self.gid)
            except OSError as e:
                self._log.warn("{path}: cannot set group {gid}: {error}", path=path,
                               gid=self.gid, error=e.strerror)

    # -- termios ----------------------------------------------------------------------

    def _fd(self) -> int:
        if self.master is None:
            raise OSError(errno.EBADF, "the pty is closed")
        return self.master

    def read_termios(self) -> TermiosState:
        """The slave's termios, with exact speeds when C{TCGETS2} works."""
        fd = self._fd()
        if self._termios2:
            try:
                return TermiosState.from_termios2(fcntl.ioctl(fd, TCGETS2, bytes(TERMIOS2_SIZE)))
            except OSError:
                self._termios2 = False  # not this architecture's number: tcgetattr from now on
        return TermiosState.from_tcgetattr(termios.tcgetattr(fd))

    def write_termios(self, state: TermiosState) -> None:
        """Set the slave's termios (our own changes: EXTPROC, a refused speed put back)."""
        fd = self._fd()
        if self._termios2:
            try:
                fcntl.ioctl(fd, TCSETS2, state.to_termios2())
                return
            except OSError:
                self._termios2 = False
        attrs_: list[Any] = termios.tcgetattr(fd)
        attrs_[0:4] = [state.iflag, state.oflag, state.cflag, state.lflag]
        termios.tcsetattr(fd, termios.TCSANOW, attrs_)

    def set_extproc(self, on: bool) -> None:
        """Turn EXTPROC on or off on the slave."""
        state = self.read_termios()
        if state.extproc != on:
            lflag = (state.lflag | EXTPROC) if on else (state.lflag & ~EXTPROC)
            self.write_termios(TermiosState(state.iflag, state.oflag, state.cflag, lflag,
                                            state.cc, state.ispeed, state.ospeed))

    # -- state -------------------------------------------------------------------------

    def hung_up(self) -> bool:
        """True while no application has the slave open (a non-destructive poll)."""
        poller = select.poll()
        poller.register(self._fd(), select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def pending(self) -> int:
        """Bytes the application wrote that the master has not read yet."""
        fd = self._fd()
        poller = select.poll()  # poll() first: it flushes the kernel's buffer work, FIONREAD not
        poller.register(fd, select.POLLIN)
        poller.poll(0)
        try:
            buf = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])


@implementer(IReadDescriptor, IWriteDescriptor)
class MasterDescriptor:
    """
    The pty master in the reactor.  C{on_packet(chunk)} gets every read
    (packet-mode framing), C{on_hangup()} is called once per session when
    the application's last close is seen (EIO, or the reactor's POLLHUP).
    Writes go through a bounded buffer; C{on_full(True/False)} reports
    crossing the high/low water marks (to pause the TCP side).
    """

    _log = Logger()

    def __init__(self, reactor: Any, pty: PtyPair, on_packet: Callable[[bytes], None],
                 on_hangup: Callable[[], None], on_full: Callable[[bool], None],
                 high_water: int = 65536, low_water: int = 16384) -> None:
        self._reactor = reactor
        self._pty = pty
        self._on_packet = on_packet
        self._on_hangup = on_hangup
        self._on_full = on_full
        self.high_water = high_water
        self.low_water = low_water
        self._out = bytearray()
        self._reading = False
        self._writing = False
        self._full = False
        self.discarded = 0  # bytes written to a tty nobody had open

    # -- IReadDescriptor / IWriteDescriptor --------------------------------------------

    def fileno(self) -> int:
        return self._pty.master if self._pty.master is not None else -1

    def logPrefix(self) -> str:
        return f"pty {self._pty.slave_path}"

    def doRead(self) -> None:
        for _ in range(16):  # a few packets per turn, then let others run
            if not self._reading:
                return None
            try:
                chunk = os.read(self.fileno(), READ_SIZE)
            except BlockingIOError:
                return None
            except OSError as e:
                if e.errno == errno.EIO:  # the last slave fd closed and nothing is left
                    self._hangup()
                    return None
                raise
            if not chunk:
                self._hangup()
                return None
            self._on_packet(chunk)
        return None

    def doWrite(self) -> None:
        if self._out:
            try:
                sent = os.write(self.fileno(), self._out)
            except BlockingIOError:
                sent = 0
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                self.discard_output()
                sent = 0
            del self._out[:sent]
        if not self._out:
            self._stop_writing()
        self._check_full()
        return None

    def connectionLost(self, reason: Failure) -> None:
        # The reactor saw POLLHUP (no slave open) and removed us.
        self._reading = self._writing = False
        self._hangup()

    # -- control --------------------------------------------------------------------------

    def start_reading(self) -> None:
        if not self._reading and self._pty.master is not None:
            self._reading = True
            self._reactor.addReader(self)

    def stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    @property
    def reading(self) -> bool:
        return self._reading

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._reactor.removeWriter(self)

    def write(self, data: bytes) -> None:
        """Queue bytes for the application (sent as the tty takes them)."""
        if not data or self._pty.master is None:
            return
        self._out += data
        if not self._writing:
            self._writing = True
            self._reactor.addWriter(self)
        self._check_full()

    @property
    def buffered(self) -> int:
        """Bytes queued for the application."""
        return len(self._out)

    def discard_output(self) -> int:
        """Drop what is queued for the application (tcflush TCIFLUSH, or it closed the tty)."""
        count = len(self._out)
        self._out.clear()
        self._stop_writing()
        self._check_full()
        return count

    def drain_input(self, limit: int = 1 << 20) -> list[bytes]:
        """Read what the master still holds (after a close), at most C{limit} bytes."""
        out: list[bytes] = []
        total = 0
        while total < limit and self._pty.master is not None:
            try:
                chunk = os.read(self._pty.master, READ_SIZE)
            except OSError:
                break
            if not chunk:
                break
            out.append(chunk)
            total += len(chunk)
        return out

    def stop(self) -> None:
        """Leave the reactor (the session ended or the port stops)."""
        self.stop_reading()
        self._stop_writing()

    def _check_full(self) -> None:
        if not self._full and len(self._out) >= self.high_water:
            self._full = True
            self._on_full(True)
        elif self._full and len(self._out) <= self.low_water:
            self._full = False
            self._on_full(False)

    def _hangup(self) -> None:
        self.stop()
        self._on_hangup()


class OpenWatcher:
    """
    Calls C{check()} when the slave may have been opened or closed:
    on inotify events for its path when C{notifier} (a
    C{twisted.internet.inotify.INotify}) is given, and every C{interval}
    seconds on C{clock} in any case (the fallback, and a safety net).
    """

    _log = Logger()

    def __init__(self, clock: Any, check: Callable[[], None], interval: float,
                 notifier: Any = None) -> None:
        self._clock = clock
        self._check = check
        self.interval = interval
        self._notifier = notifier
        self._watched: str | None = None
        self._loop: LoopingCall | None = None

    def start(self, path: str) -> None:
        self.watch(path)
        self._loop = LoopingCall(self._safe_check)
        self._loop.clock = self._clock
        self._loop.start(self.interval, now=False)

    def watch(self, path: str) -> None:
        """Watch C{path} (again, after the pty was renewed)."""
        if self._notifier is None:
            return
        from twisted.internet import inotify
        from twisted.python.filepath import FilePath

        if self._watched is not None:
            try:
                self._notifier.ignore(FilePath(self._watched))
            except KeyError:
                pass
        try:
            self._notifier.watch(FilePath(path), mask=inotify.IN_OPEN | inotify.IN_CLOSE,
                                 callbacks=[lambda *_: self._safe_check()])
            self._watched = path
        except Exception as e:  # noqa: BLE001 - fall back to polling only
            self._log.info("{path}: no inotify watch ({error}); polling every {s} s",
                           path=path, error=e, s=self.interval)
            self._watched = None

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._notifier is not None and self._watched is not None:
            from twisted.python.filepath import FilePath
            try:
                self._notifier.ignore(FilePath(self._watched))
            except KeyError:
                pass
            self._watched = None

    def _safe_check(self) -> None:
        try:
            self._check()
        except Exception:  # noqa: BLE001 - never stop watching
            self._log.failure("open/close check failed")
