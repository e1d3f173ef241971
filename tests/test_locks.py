"""
Tests for exclusive device access: UUCP lock files
(nport_twisted.device.locks) and the default opener's TIOCEXCL and lock
handling (nport_twisted.device.adapter), on real ptys.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.config.settings import SerialSettings
from nport_twisted.device.adapter import Exclusive, open_serial_port
from nport_twisted.device.channel import SerialChannel
from nport_twisted.device.locks import DeviceBusy, acquire, holders, lock_path, release
from tests.test_serialdev import Collector, Pty


def _sleeper(test: SynchronousTestCase, **kw: Any) -> subprocess.Popen[bytes]:
    """A live process that is not us (its pid owns locks in these tests)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **kw)
    test.addCleanup(proc.wait)
    test.addCleanup(proc.kill)
    return proc


class LockFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)

    def test_names(self) -> None:
        """LCK.. plus the name under /dev, links followed, / as _."""
        self.assertEqual(lock_path("/run/lock", "/dev/ttyUSB0"), "/run/lock/LCK..ttyUSB0")
        self.assertEqual(lock_path("/run/lock", "/dev/pts/3"), "/run/lock/LCK..pts_3")
        link = os.path.join(self.dir, "by-id")
        os.symlink("/dev/ttyS0", link)
        self.assertEqual(lock_path("/x", link), "/x/LCK..ttyS0")

    def test_hdb_format_and_release(self) -> None:
        """The lock holds our pid as ten digits and a newline; release removes only ours."""
        path = lock_path(self.dir, "/dev/ttyUSB0")
        acquire(path, "/dev/ttyUSB0")
        with open(path) as f:
            self.assertEqual(f.read(), f"{os.getpid():10d}\n")
        acquire(path, "/dev/ttyUSB0")  # ours already: fine
        release(path, pid=os.getpid() + 1)  # not its owner: kept
        self.assertTrue(os.path.exists(path))
        release(path)
        self.assertFalse(os.path.exists(path))
        self.assertEqual([n for n in os.listdir(self.dir)], [])  # no temporary file left

    def test_live_owner_refused_with_its_pid(self) -> None:
        """A lock held by a running process is DeviceBusy naming the pid and the program."""
        owner = _sleeper(self)
        path = lock_path(self.dir, "/dev/ttyUSB0")
        with open(path, "w") as f:
            f.write(f"{owner.pid:10d}\n")
        e = self.assertRaises(DeviceBusy, acquire, path, "/dev/ttyUSB0")
        self.assertEqual((e.pid, e.errno), (owner.pid, errno.EBUSY))
        self.assertIn(f"locked by pid {owner.pid} (python", str(e))
        self.assertIn(path, str(e))

    def test_stale_lock_taken_over(self) -> None:
        """A lock whose process is gone (or unreadable) is removed and taken."""
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        path = lock_path(self.dir, "/dev/ttyUSB1")
        for content in (f"{gone.pid:10d}\n", "garbage\n"):
            with open(path, "w") as f:
                f.write(content)
            acquire(path, "/dev/ttyUSB1")
            with open(path) as f:
                self.assertEqual(int(f.read()), os.getpid())
            release(path)

    def test_unwritable_directory(self) -> None:
        """A lock directory that cannot be written is an OSError, not DeviceBusy."""
        e = self.assertRaises(OSError, acquire, os.path.join(self.dir, "missing", "LCK..x"), "/dev/x")
        self.assertNotIsInstance(e, DeviceBusy)

    def test_holders(self) -> None:
        """holders() finds the processes that have a device open."""
        pty = Pty(self)
        fd = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)
        self.addCleanup(os.close, fd)
        child = _sleeper(self, stdin=fd)
        self.assertEqual(holders(pty.path), [child.pid])  # ours is left out


class ExclusiveOpenTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.mkdir(self.dir)

    def _open(self, pty: Pty) -> tuple[Any, Collector]:
        protocol = Collector(1)
        handle = open_serial_port(reactor, Exclusive(lock_dir=self.dir))(
            protocol, pty.path, SerialSettings())
        return handle, protocol

    @inlineCallbacks
    def test_lock_held_while_open_released_on_close(self) -> Any:
        """The opener takes the lock with the device and drops it with the close."""
        pty = Pty(self)
        handle, protocol = self._open(pty)
        path = lock_path(self.dir, pty.path)
        with open(path) as f:
            self.assertEqual(int(f.read()), os.getpid())
        handle.transport.loseConnection()
        yield protocol.lost
        self.assertFalse(os.path.exists(path))

    @inlineCallbacks
    def test_tiocexcl_refuses_other_opens(self) -> Any:
        """Once open, an unprivileged program's open of the device fails with EBUSY."""
        if os.getuid() != 0:
            self.skipTest("needs root to open the pty as another user")
        pty = Pty(self)
        os.chmod(pty.path, 0o666)
        handle, protocol = self._open(pty)
        result = subprocess.run([sys.executable, "-c", self._OPEN_AS_NOBODY, pty.path],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.stdout.strip(), str(errno.EBUSY), result.stderr)
        handle.transport.loseConnection()
        yield protocol.lost

    @inlineCallbacks
    def test_exclusive_mode_cleared_on_close(self) -> Any:
        """
        Closing clears TIOCEXCL even while another process keeps the tty open
        (socat's end of a pty, a getty), so the next unprivileged open works.
        """
        if os.getuid() != 0:
            self.skipTest("needs root to open the pty as another user")
        pty = Pty(self)
        os.chmod(pty.path, 0o666)
        keeper = os.open(pty.path, os.O_RDWR | os.O_NOCTTY)  # the tty stays open throughout
        self.addCleanup(os.close, keeper)
        handle, protocol = self._open(pty)
        handle.transport.loseConnection()
        yield protocol.lost
        result = subprocess.run([sys.executable, "-c", self._OPEN_AS_NOBODY, pty.path],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.stdout.strip(), "0", result.stderr)

    _OPEN_AS_NOBODY = ("import os, sys\nos.setgid(65534); os.setuid(65534)\n"
                       "try:\n    os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)\n"
                       "except OSError as e:\n    print(e.errno)\nelse:\n    print(0)\n")

    def test_locked_device_refused(self) -> None:
        """A device locked by a live process is not opened at all."""
        pty = Pty(self)
        owner = _sleeper(self)
        with open(lock_path(self.dir, pty.path), "w") as f:
            f.write(f"{owner.pid:10d}\n")
        e = self.assertRaises(DeviceBusy, self._open, pty)
        self.assertEqual(e.pid, owner.pid)

    @inlineCallbacks
    def test_channel_retries_until_the_owner_is_gone(self) -> Any:
        """The channel logs the owner's pid once and opens the device when the lock goes stale."""
        pty = Pty(self)
        owner = _sleeper(self)
        with open(lock_path(self.dir, pty.path), "w") as f:
            f.write(f"{owner.pid:10d}\n")
        clock = Clock()
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        channel = SerialChannel(0, pty.path, SerialSettings(), clock,
                                open_serial_port(reactor, Exclusive(lock_dir=self.dir)))
        channel.startService()
        self.addCleanup(channel.stopService)
        clock.advance(1)
        clock.advance(2)
        self.assertFalse(channel.is_open)
        texts = [formatEvent(e) for e in events if "cannot open" in e.get("log_format", "")]
        self.assertEqual(len(texts), 1, texts)
        self.assertIn(f"locked by pid {owner.pid}", texts[0])
        self.assertIn("retrying until it is free", texts[0])
        self.assertIn(f"locked by pid {owner.pid}", channel.last_error or "")
        owner.kill()
        owner.wait()
        clock.advance(5)
        self.assertTrue(channel.is_open)
        yield channel.stopService()
        self.assertFalse(os.path.exists(lock_path(self.dir, pty.path)))
