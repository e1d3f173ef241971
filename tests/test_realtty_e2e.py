"""
End-to-end tests of nport-realtty: the real ``nport-realtty`` console script
(and ``twistd nport --realtty``) against our own Real COM server
(``twistd -n nport``), both as subprocesses on loopback with a free
--port-offset, ptys on both sides.  Applications are pyserial, stty, cat
and echo on the symlinked tty.  Every wait is bounded; nothing sleeps to
synchronise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from nport_twisted.tools.realtty.control import request
from tests.e2e_util import (
    LOOPBACK,
    REPO_ROOT,
    Pty,
    Service,
    free_port_offset,
    has_open_file,
    have_ptys,
    poll_until,
)

SIZE = 64 * 1024
TIMEOUT = 20.0


class RealTty:
    """``nport-realtty ...`` in a subprocess, its output in C{directory}."""

    def __init__(self, directory: str, args: list[str], control: str,
                 name: str = "realtty") -> None:
        self.directory = directory
        self.logfile = os.path.join(directory, f"{name}.log")
        self.control = control  # short: AF_UNIX paths have at most 107 bytes
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        script = os.path.join(os.path.dirname(sys.executable), "nport-realtty")
        head = [script] if os.access(script, os.X_OK) else [
            sys.executable, "-m", "nport_twisted.tools.realtty.cli"]
        return [*head, *self.args, "--control", self.control, "--debug"]

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            self.process = subprocess.Popen(
                self.command(), cwd=self.directory, env=Service.env(), stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def status(self) -> dict[str, Any]:
        """The first port's status (as nport-realtty status --json shows it)."""
        reply = request(self.control, {"command": "status"}, timeout=5)
        return reply["ports"][0]  # type: ignore[no-any-return]

    def ready(self, path: str) -> Deferred[None]:
        def check() -> bool:
            if not self.alive():
                raise AssertionError(f"nport-realtty exited:\n{self.log()}")
            return os.path.islink(path) and os.path.exists(self.control)

        return poll_until(check, TIMEOUT, what=f"nport-realtty to make {path}")

    def until(self, predicate: Any, what: str, timeout: float = TIMEOUT) -> Deferred[None]:
        """Poll the status until C{predicate(status)}."""
        def check() -> bool:
            if not self.alive():
                raise AssertionError(f"nport-realtty exited:\n{self.log()}")
            return bool(predicate(self.status()))

        return poll_until(check, timeout, what=what)

    def stop(self) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def problems(self) -> list[str]:
        return [line for line in self.log().splitlines()
                if "Traceback" in line or "Unhandled" in line or "#critical" in line]


class _RealTtyTestCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.link = os.path.join(self.dir, "ttyNP0")
        self.offset = free_port_offset()
        self.pty = Pty()
        self.addCleanup(self.pty.close)
        self.short = tempfile.mkdtemp(prefix="nprt-")
        self.addCleanup(shutil.rmtree, self.short, True)

    def within(self, d: Any, seconds: float = TIMEOUT) -> Deferred[Any]:
        return ensureDeferred(d).addTimeout(seconds, self.reactor)

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{950 + self.offset}/{966 + self.offset}"

    async def server(self, *args: str) -> Service:
        service = Service(self.dir, ["--interface", LOOPBACK, "--port-offset", str(self.offset),
                                     "--http-port", "0", "--telnet-port", "0",
                                     "--ports", self.pty.path, *args])
        service.start()
        self.addCleanup(self._stop_checked, service, service.problems)
        await service.wait_listening((950 + self.offset, 966 + self.offset))
        return service

    async def realtty(self, *args: str, link: str | None = None) -> RealTty:
        tty = RealTty(self.dir, list(args), os.path.join(self.short, "ctl.sock"))
        tty.start()
        self.addCleanup(self._stop_checked, tty, tty.problems)
        await tty.ready(link or self.link)
        return tty

    def _stop_checked(self, process: Any, problems: Any) -> None:
        process.stop()
        found = problems()
        if found:
            self.fail("logged errors:\n" + process.log())

    def server_speed(self) -> int:
        assert self.pty.slave is not None
        return termios.tcgetattr(self.pty.slave)[5]  # type: ignore[no-any-return]

    def serial(self, path: str | None = None, baudrate: int = 9600) -> Deferred[Any]:
        """pyserial opens the link (in a thread: its calls block)."""
        import serial

        def open_port() -> Any:
            return serial.Serial(path or self.link, baudrate, timeout=TIMEOUT)

        def opened(port: Any) -> Any:
            self.addCleanup(port.close)
            return port

        return deferToThread(open_port).addCallback(opened)


class PySerialTests(_RealTtyTestCase):
    """An application on the symlinked tty with pyserial."""

    async def test_speeds_and_64k_both_ways(self) -> None:
        """Open at 9600 then 115200 (the server's tty follows); 64 KiB each way exactly; close drains."""
        service = await self.server()
        await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0")
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial(baudrate=9600))
        await poll_until(lambda: has_open_file(service.pid, self.pty.path), TIMEOUT,
                         what="the server to open its serial port")
        await poll_until(lambda: self.server_speed() == termios.B9600, TIMEOUT,
                         what="the server's tty at 9600")
        port.baudrate = 115200
        await poll_until(lambda: self.server_speed() == termios.B115200, TIMEOUT,
                         what="the server's tty at 115200")
        up, down = os.urandom(SIZE), os.urandom(SIZE)
        written = deferToThread(port.write, up)
        self.assertEqual(await master.wait_bytes(SIZE, self.reactor, TIMEOUT), up)
        await self.within(written)
        master.write(down)
        self.assertEqual(await self.within(deferToThread(port.read, SIZE)), down)
        await self.within(deferToThread(port.close))
        await poll_until(lambda: not has_open_file(service.pid, self.pty.path), TIMEOUT,
                         what="the server to close its port after the disconnect")

    async def test_close_drains_before_disconnect(self) -> None:
        """After the application's close the connection stays until the server sent everything."""
        service = await self.server()
        tty = await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0")
        port = await self.within(self.serial(baudrate=115200))
        data = os.urandom(4 * SIZE)
        # Nobody reads the server's tty yet: its output queue cannot drain.
        await self.within(deferToThread(port.write, data))
        await self.within(deferToThread(port.close))
        await tty.until(lambda s: s["state"] == "closing" and not s["tty_open"],
                        "the close to wait for the drain")
        self.assertTrue(has_open_file(service.pid, self.pty.path))
        master = self.pty.attach(self.reactor)
        self.assertEqual(await master.wait_bytes(len(data), self.reactor, TIMEOUT), data)
        await tty.until(lambda s: s["state"] == "idle", "the disconnect after the drain")
        await poll_until(lambda: not has_open_file(service.pid, self.pty.path), TIMEOUT,
                         what="the server to close its port")

    async def test_server_restarted(self) -> None:
        """The server restarted while the tty is open: reconnected, and the port keeps working."""
        service = await self.server()
        tty = await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0")
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial(baudrate=115200))
        await self.within(deferToThread(port.write, b"before"))
        await master.wait_bytes(6, self.reactor, TIMEOUT)
        service.stop()
        await tty.until(lambda s: s["state"] == "reconnecting", "the loss to be noticed")
        await self.server()
        await tty.until(lambda s: s["state"] == "open" and s["reconnects"] >= 1,
                        "the reconnect", timeout=45)
        await poll_until(lambda: self.server_speed() == termios.B115200, TIMEOUT,
                         what="the recovery batch to set 115200 again")
        await self.within(deferToThread(port.write, b"after"))
        self.assertEqual(await master.wait_bytes(11, self.reactor, TIMEOUT), b"beforeafter")
        master.write(b"back")
        self.assertEqual(await self.within(deferToThread(port.read, 4)), b"back")


class ShellTests(_RealTtyTestCase):
    """stty, cat and echo on the symlinked tty."""

    async def test_stty_cat_echo(self) -> None:
        """stty sets 115200 raw; cat reads what the server's side sends; echo writes to it."""
        service = await self.server()
        await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0")
        master = self.pty.attach(self.reactor)
        # cat holds the tty first and stty changes it under cat's open.  The other way
        # round stty's own open and close are a session of their own: the server's bytes
        # could reach that one while it closed (lost, as on a closed serial port) before
        # cat's open reached the server, which the check below could not tell apart.
        out_path = os.path.join(self.dir, "cat.out")
        with open(out_path, "wb") as out:
            cat = subprocess.Popen(["cat", self.link], stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (cat.poll() is None and cat.kill(), cat.wait(10)))
        await poll_until(lambda: has_open_file(service.pid, self.pty.path), TIMEOUT,
                         what="cat's open to reach the server")
        stty = subprocess.run(["stty", "-F", self.link, "115200", "raw", "-echo"],
                              capture_output=True, timeout=TIMEOUT)
        self.assertEqual(stty.returncode, 0, stty.stderr)
        await poll_until(lambda: self.server_speed() == termios.B115200, TIMEOUT,
                         what="stty's 115200 to reach the server")
        master.write(b"from the server\n")

        def got() -> bool:
            with open(out_path, "rb") as f:
                return f.read() == b"from the server\n"

        await poll_until(got, TIMEOUT, what="cat to print the server's bytes")
        echo = subprocess.run(["sh", "-c", f"echo 'hello from echo' > {self.link}"],
                              timeout=TIMEOUT)
        self.assertEqual(echo.returncode, 0)
        self.assertEqual(await master.wait_bytes(16, self.reactor, TIMEOUT), b"hello from echo\n")

    async def test_echo_alone(self) -> None:
        """echo > tty with nobody else holding it open: the line still reaches the server."""
        await self.server()
        await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0")
        master = self.pty.attach(self.reactor)
        subprocess.run(["stty", "-F", self.link, "raw"], check=True, timeout=TIMEOUT)
        echo = subprocess.run(["sh", "-c", f"echo 'just once' > {self.link}"], timeout=TIMEOUT)
        self.assertEqual(echo.returncode, 0)
        self.assertEqual(await master.wait_bytes(10, self.reactor, TIMEOUT), b"just once\n")


class MigrationTests(_RealTtyTestCase):
    """A host's npreal2d.cf, unchanged."""

    async def test_npreal2d_cf(self) -> None:
        """MOXA's file with an mxaddsvr line: ttyr00 and cur00 move data through the server."""
        await self.server()
        cf = os.path.join(self.dir, "npreal2d.cf")
        with open(cf, "w") as f:
            f.write("#=========================================================#\n"
                    "#   This configuration file is created by Moxa NPort      #\n"
                    "#=========================================================#\n"
                    "ttymajor=33\ncalloutmajor=38\n"
                    "#[Minor] [ServerIP]\t[data]\t[cmd]\t[FIFO]\t[SSL]\t[ttyName] [coutName] "
                    "[interface][mode][BackIP]\n"
                    f"0\t{LOOPBACK}\t{950 + self.offset}\t{966 + self.offset}\t1\t0\t"
                    "ttyr00\tcur00\t0\t0\t\n")
        ttyr00 = os.path.join(self.dir, "ttyr00")
        await self.realtty("--config", cf, "--link-dir", self.dir, "--alive-timeout", "0",
                           link=ttyr00)
        self.assertEqual(os.readlink(ttyr00), os.readlink(os.path.join(self.dir, "cur00")))
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial(os.path.join(self.dir, "cur00"), 38400))
        await self.within(deferToThread(port.write, b"via cur00"))
        self.assertEqual(await master.wait_bytes(9, self.reactor, TIMEOUT), b"via cur00")
        master.write(b"reply")
        self.assertEqual(await self.within(deferToThread(port.read, 5)), b"reply")
        self.assertEqual(self.server_speed(), termios.B38400)


class LivenessTests(_RealTtyTestCase):
    """UDP 4800 liveness polling, toward the server on 127.0.0.1 only."""

    async def test_server_answers(self) -> None:
        """The server's DSCI answers the netstat polls: an idle port stays connected past T."""
        await self.server()
        tty = await self.realtty(self.target, "--link", self.link, "--alive-timeout", "4",
                                 "--dsci-port", str(4800 + self.offset))
        await self.within(self.serial())
        await tty.until(lambda s: s["state"] == "open", "the open")
        await tty.until(lambda s: (s["udp"] or {}).get("replies", 0) >= 8,
                        "eight UDP replies (more than 1.5 T of silence on the data channel)",
                        timeout=40)
        status = tty.status()
        self.assertEqual((status["state"], status["reconnects"], status["udp"]["resets"]),
                         ("open", 0, 0))
        self.assertNotEqual(status["udp"]["dsci_version"], None)

    async def test_silent_server_reset(self) -> None:
        """No UDP answer and no data for T seconds: the port is reset and reconnected."""
        await self.server()
        silent = free_port_offset(tcp=(), udp=(4800,)) + 4800
        tty = await self.realtty(self.target, "--link", self.link, "--alive-timeout", "3",
                                 "--dsci-port", str(silent))
        await self.within(self.serial())
        await tty.until(lambda s: s["reconnects"] >= 1 and s["state"] == "open",
                        "a reset and reconnect after T", timeout=40)
        self.assertGreaterEqual(tty.status()["udp"]["resets"], 1)


def _ipv6_listening(port: int) -> bool:
    import errno
    import socket

    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("::1", port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


class Ipv6Tests(_RealTtyTestCase):
    """Real COM over IPv6 loopback: MOXA's 16-byte connect check both ways."""

    async def test_ipv6(self) -> None:
        """[::1]:DATA/COMMAND: the check is answered by the server and data moves."""
        if not _ipv6_available():
            raise SkipTest("no IPv6 loopback")
        service = Service(self.dir, ["--interface", "::1", "--port-offset", str(self.offset),
                                     "--http-port", "0", "--telnet-port", "0",
                                     "--ports", self.pty.path])
        service.start()
        self.addCleanup(self._stop_checked, service, service.problems)
        ports = (950 + self.offset, 966 + self.offset)
        await poll_until(lambda: service.alive() and all(_ipv6_listening(p) for p in ports),
                         TIMEOUT, what="the server on ::1")
        await self.realtty(f"[::1]:{ports[0]}/{ports[1]}", "--link", self.link,
                           "--alive-timeout", "0")
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial(baudrate=57600))
        await self.within(deferToThread(port.write, b"over v6"))
        self.assertEqual(await master.wait_bytes(7, self.reactor, TIMEOUT), b"over v6")
        master.write(b"6")
        self.assertEqual(await self.within(deferToThread(port.read, 1)), b"6")
        self.assertEqual(self.server_speed(), termios.B57600)


def _ipv6_available() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class TwistdTests(_RealTtyTestCase):
    """twistd nport --realtty FILE: the server and the tty in one process; Secure Real COM."""

    async def test_beside_the_server(self) -> None:
        """One twistd serves a port and its own Real COM port as a local tty."""
        ini = os.path.join(self.dir, "realtty.ini")
        with open(ini, "w") as f:
            f.write(f"[realtty]\ncontrol = {self.short}/ctl.sock\nalive_timeout = 0\n"
                    f"[{self.link}]\nserver = {self.target}\n")
        await self.server("--realtty", ini)
        await poll_until(lambda: os.path.islink(self.link), TIMEOUT, what="the link")
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial(baudrate=19200))
        await self.within(deferToThread(port.write, b"loop"))
        self.assertEqual(await master.wait_bytes(4, self.reactor, TIMEOUT), b"loop")
        master.write(b"pool")
        self.assertEqual(await self.within(deferToThread(port.read, 4)), b"pool")
        self.assertEqual(self.server_speed(), termios.B19200)

    async def test_secure_realcom(self) -> None:
        """The SSL column / --ssl: TLS on the data connection to a secure server port."""
        config = os.path.join(self.dir, "nport.ini")
        with open(config, "w") as f:
            f.write("[port1.operating]\nmode = realcom\nsecure = yes\n")
        await self.server("--config", config)
        await self.realtty(self.target, "--link", self.link, "--alive-timeout", "0", "--ssl")
        master = self.pty.attach(self.reactor)
        port = await self.within(self.serial())
        up = os.urandom(SIZE)
        written = deferToThread(port.write, up)
        self.assertEqual(await master.wait_bytes(SIZE, self.reactor, TIMEOUT), up)
        await self.within(written)
        master.write(b"secure")
        self.assertEqual(await self.within(deferToThread(port.read, 6)), b"secure")
        _ = REPO_ROOT
