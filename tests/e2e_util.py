"""
Helpers for the end-to-end tests: the real service (``twistd -n nport``) as
a subprocess on loopback, real ptys as serial devices, and byte collectors
for the pty masters and TCP clients, all on the real reactor.

Every wait is bounded: readiness is polled with a deadline (a listener
bound, a device opened by the service), data arrival is event driven with a
timeout.  Nothing sleeps to synchronise.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import subprocess
import sys
import tty
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import abstract, fdesc
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

import nport_twisted

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nport_twisted.__file__)))
LOOPBACK = "127.0.0.1"

#: TCP/UDP ports (before the offset) the service may listen on; all must be free.
SERVICE_TCP_PORTS = (23, 80, 443, 4900, *range(950, 954), *range(966, 970), *range(4001, 4005))
SERVICE_UDP_PORTS = (4800, 4000, *range(4001, 4005))


def have_ptys() -> bool:
    """Whether this machine can allocate pseudo-terminals."""
    try:
        master, slave = os.openpty()
    except OSError:
        return False
    os.close(master)
    os.close(slave)
    return True


def twistd_command() -> list[str]:
    """How to run twistd with this interpreter: the script beside it, else its module."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
    ]


def _port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_offset(
    tcp: Iterable[int] = SERVICE_TCP_PORTS,
    udp: Iterable[int] = SERVICE_UDP_PORTS,
    attempts: int = 200,
) -> int:
    """
    A --port-offset whose shifted ports are all free.  Offsets come from
    20000-27000, so every port stays below the Linux ephemeral range.
    """
    rng = random.Random(os.urandom(8))
    tcp, udp = tuple(tcp), tuple(udp)
    for _ in range(attempts):
        offset = rng.randrange(20000, 27000)
        if all(_port_free(offset + p, socket.SOCK_STREAM) for p in tcp) and all(
            _port_free(offset + p, socket.SOCK_DGRAM) for p in udp
        ):
            return offset
    raise RuntimeError("no free port offset found")


def tcp_listening(port: int, host: str = LOOPBACK) -> bool:
    """Whether something listens on C{port}: our bind (without SO_REUSEADDR) is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


class Pty:
    """A pseudo-terminal: the service opens C{path} (the slave), the test uses the master."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.reader: PtyMaster | None = None

    def attach(self, reactor: Any) -> PtyMaster:
        """Read and write the master through the reactor."""
        self.reader = PtyMaster(self.master, reactor)
        return self.reader

    def close(self) -> None:
        """Close both ends (idempotent); the service then sees the device vanish."""
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
        for name in ("master", "slave"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)


class Collector:
    """Bytes received so far and Deferreds waiting for an amount of them."""

    def __init__(self) -> None:
        self.data = bytearray()
        self._waiters: list[tuple[int, Deferred[bytes]]] = []

    def _got(self, data: bytes) -> None:
        self.data += data
        ready = [(n, d) for n, d in self._waiters if len(self.data) >= n]
        self._waiters = [(n, d) for n, d in self._waiters if len(self.data) < n]
        for _, d in ready:
            d.callback(bytes(self.data))

    def wait_bytes(self, count: int, reactor: Any, timeout: float) -> Deferred[bytes]:
        """Fire with all received once C{count} bytes arrived; fail after C{timeout} s."""
        if len(self.data) >= count:
            d: Deferred[bytes] = Deferred()
            d.callback(bytes(self.data))
            return d
        d = Deferred()
        self._waiters.append((count, d))

        def timed_out(f: Failure) -> Failure:
            self._waiters = [(n, w) for n, w in self._waiters if w is not d]
            f.trap(Exception)
            raise AssertionError(
                f"only {len(self.data)} of {count} bytes arrived within {timeout} s"
            )

        return d.addTimeout(timeout, reactor).addErrback(timed_out)


class PtyMaster(abstract.FileDescriptor, Collector):
    """A pty master in the reactor: collects what the service writes, sends what we write."""

    def __init__(self, fd: int, reactor: Any) -> None:
        abstract.FileDescriptor.__init__(self, reactor)
        Collector.__init__(self)
        self.fd = fd
        fdesc.setNonBlocking(fd)
        self.connected = 1
        self.startReading()

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:
        return fdesc.readFromFD(self.fd, self._got)

    def writeSomeData(self, data: bytes) -> Any:
        return fdesc.writeToFD(self.fd, data)

    def connectionLost(self, reason: Failure) -> None:
        abstract.FileDescriptor.connectionLost(self, reason)

    def stop(self) -> None:
        """Stop using the fd (the owner closes it)."""
        self.stopReading()
        self.stopWriting()
        self.connected = 0
        self.disconnected = 1


class TcpCollector(Protocol, Collector):
    """A TCP client that keeps what it receives; C{closed} fires when the connection ends."""

    def __init__(self) -> None:
        Collector.__init__(self)
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._got(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed.callback(None)


def tcp_connect(reactor: Any, port: int, timeout: float = 5.0) -> Deferred[TcpCollector]:
    """Connect a L{TcpCollector} to C{port} on loopback."""
    return connectProtocol(
        TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=timeout), TcpCollector()
    )


def poll_until(
    predicate: Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
    reactor: Any = None,
) -> Deferred[None]:
    """
    Check C{predicate} every C{interval} s until true (fires) or C{timeout}
    passes (fails naming C{what}).  Readiness polling, not synchronisation.
    """
    from twisted.internet import reactor as default_reactor
    from twisted.internet.task import LoopingCall

    clock = reactor or default_reactor
    deadline = clock.seconds() + timeout
    done: Deferred[None] = Deferred()

    def check() -> None:
        if predicate():
            loop.stop()
        elif clock.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    loop = LoopingCall(check)
    loop.clock = clock
    loop.start(interval, now=True).addCallbacks(lambda _: done.callback(None), done.errback)
    return done


def has_open_file(pid: int, path: str) -> bool:
    """Whether process C{pid} has C{path} open (Linux /proc)."""
    directory = f"/proc/{pid}/fd"
    try:
        names = os.listdir(directory)
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(os.path.join(directory, name)) == path:
                return True
        except OSError:
            continue
    return False


class Service:
    """``twistd -n nport …`` running in a subprocess, with its log and output in C{directory}."""

    def __init__(self, directory: str, args: list[str]) -> None:
        self.directory = directory
        self.logfile = os.path.join(directory, "twistd.log")
        self.outfile = os.path.join(directory, "twistd.out")
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def env() -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
        env.pop("TWISTED_REACTOR", None)
        return env

    def command(self) -> list[str]:
        return [
            *twistd_command(),
            "-n",
            "--pidfile=",
            f"--logfile={self.logfile}",
            "nport",
            *self.args,
        ]

    def start(self) -> None:
        with open(self.outfile, "wb") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def run_to_exit(self, timeout: float = 30.0) -> tuple[int, str]:
        """Run until the process exits by itself; return (exit code, stdout + stderr + log)."""
        proc = subprocess.run(  # noqa: PLW1510 - the exit code is the result
            self.command(),
            cwd=self.directory,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout.decode("utf-8", "replace") + self.log()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        text = ""
        for path in (self.outfile, self.logfile):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def wait_listening(self, ports: Iterable[int], timeout: float = 15.0) -> Deferred[None]:
        """Fire when every TCP port in C{ports} is listening; fail early if the process dies."""
        ports = tuple(ports)

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(
                    f"the service exited ({self.process and self.process.returncode}):\n"
                    f"{self.log()}"
                )
            return all(tcp_listening(p) for p in ports)

        return poll_until(ready, timeout, what=f"the service to listen on {ports}")

    def wait_device_open(self, path: str, timeout: float = 10.0) -> Deferred[None]:
        """Fire when the service has C{path} (a pty slave) open."""

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"the service exited:\n{self.log()}")
            return has_open_file(self.pid, path)

        return poll_until(ready, timeout, what=f"the service to open {path}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait (bounded), then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def problems(self) -> list[str]:
        """Log lines that show a server bug (tracebacks, unhandled errors)."""
        return [
            line
            for line in self.log().splitlines()
            if "Traceback" in line or "Unhandled" in line or "[-] Error" in line
        ]
