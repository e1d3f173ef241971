# -*- test-case-name: tests.test_locks -*-
"""
UUCP-style lock files for serial devices (what ser2net, minicom, cu and
lockdev use): C{/run/lock/LCK..ttyUSB0} holds the owner's pid as ten ASCII
digits and a newline (the "HDB" format).  A lock whose pid no longer runs is
stale and taken over; one held by a live process makes the open fail with
L{DeviceBusy} naming that process, and the channel retries.

Together with TIOCEXCL (L{nport_twisted.device.adapter}) this keeps
minicom, ModemManager or a second nport-twisted from sharing a line
unnoticed.  File operations only: the device itself is not touched here.
"""

from __future__ import annotations

import atexit
import errno
import os
import tempfile

__all__ = ["DEFAULT_LOCK_DIRS", "DeviceBusy", "acquire", "default_lock_dir", "holders",
           "lock_path", "release"]

#: Where lock files go, first existing directory wins (FHS: /run/lock; /var/lock is
#: usually a link to it).
DEFAULT_LOCK_DIRS = ("/run/lock", "/var/lock")

_held: set[str] = set()  # lock files this process holds (removed at exit, whatever the exit)


class DeviceBusy(OSError):
    """
    The device is in use by another process: a UUCP lock file names it, or
    its exclusive mode (TIOCEXCL) refused the open.
    """

    def __init__(self, device: str, why: str, pid: int | None = None) -> None:
        super().__init__(errno.EBUSY, why, device)
        self.device = device
        self.why = why
        self.pid = pid

    def __str__(self) -> str:
        return self.why


def default_lock_dir() -> str | None:
    """The first of L{DEFAULT_LOCK_DIRS} that exists, else None."""
    for directory in DEFAULT_LOCK_DIRS:
        if os.path.isdir(directory):
            return directory
    return None


def lock_path(lock_dir: str, device: str) -> str:
    """
    The lock file of C{device}: C{LCK..} and its name under /dev after
    following links (a by-id link and the ttyUSB0 it points to share one
    lock), with C{/} as C{_} (C{/dev/pts/3} -> C{LCK..pts_3}).
    """
    real = os.path.realpath(device)
    name = real[len("/dev/"):] if real.startswith("/dev/") else os.path.basename(real)
    return os.path.join(lock_dir, "LCK.." + name.replace("/", "_"))


def _read_pid(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            data = f.read(128)
    except FileNotFoundError:
        return None
    text = data.decode("ascii", "replace").strip()
    if text.isdigit():
        return int(text)
    if len(data) == 4:  # the old binary format: a native int
        return int.from_bytes(data, "little")
    return 0  # unreadable: treated as stale


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True


def process_name(pid: int) -> str:
    """C{minicom} for a pid, or "" when it cannot be read."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _owner_text(pid: int) -> str:
    name = process_name(pid)
    return f"pid {pid} ({name})" if name else f"pid {pid}"


def acquire(path: str, device: str, pid: int | None = None) -> None:
    """
    Take the lock file C{path} for C{device}.  A stale lock (its pid is
    gone) is removed first; our own pid's lock is ours already.

    @raise DeviceBusy: a live process holds it (named with its pid).
    @raise OSError: the lock directory cannot be written (EACCES, EROFS…).
    """
    pid = os.getpid() if pid is None else pid
    directory = os.path.dirname(path)
    for _ in range(3):  # a stale lock removed, or a race with another taker
        fd, tmp = tempfile.mkstemp(prefix=".LTMP.", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{pid:10d}\n")
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, path)  # atomic: fails if the lock exists
                _held.add(path)
                return
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        owner = _read_pid(path)
        if owner is None:
            continue  # released meanwhile: try again
        if owner == pid:
            _held.add(path)
            return
        if _alive(owner):
            raise DeviceBusy(device, f"locked by {_owner_text(owner)} ({path})", owner)
        try:  # stale: its owner is gone
            os.unlink(path)
        except FileNotFoundError:
            pass
    raise DeviceBusy(device, f"lock {path} keeps changing owner")


def release(path: str, pid: int | None = None) -> None:
    """Remove the lock file C{path} if it is ours."""
    pid = os.getpid() if pid is None else pid
    _held.discard(path)
    if _read_pid(path) == pid:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def holders(device: str, proc: str = "/proc") -> list[int]:
    """The pids that have C{device} open (from /proc/*/fd), ours left out."""
    real = os.path.realpath(device)
    found = []
    me = os.getpid()
    try:
        entries = os.listdir(proc)
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = os.path.join(proc, entry, "fd")
        try:
            for fd in os.listdir(fd_dir):
                if os.readlink(os.path.join(fd_dir, fd)) == real:
                    found.append(int(entry))
                    break
        except OSError:
            continue  # gone, or not ours to read
    return sorted(found)


def busy_reason(device: str) -> str:
    """Why an open failed with EBUSY: who has the device open, when we can tell."""
    pids = holders(device)
    if not pids:
        return "in exclusive use by another program (TIOCEXCL)"
    return "in exclusive use by " + ", ".join(_owner_text(p) for p in pids)


@atexit.register
def _release_all() -> None:
    for path in list(_held):
        release(path)
