# -*- test-case-name: tests.test_faults -*-
"""
Fault scenarios against the real service (issue 6 part 2; docs/reliability.md).

Each scenario is a plain synchronous function that runs ``twistd -n nport``
as a subprocess on loopback with real ptys as serial devices, drives it with
blocking sockets and the pty masters, measures the service from /proc
(VmRSS, VmHWM, open fds) and returns its figures.  The tests below run them
small (a few seconds together); C{stress/run.py} runs the same functions
long (10,000 cycles, hundreds of MB) and records the figures.

Scenarios: the device vanishes mid-transfer and returns (pty closed, symlink
replaced); a client resets its connection mid-write; a jammed client with
ignore-jammed on (others keep receiving, memory bounded) and off (the serial
reader pauses, the pty master's writes stall, nothing is lost); half-open
TCP (the keep-alive the alive check sets on the accepted socket here; the
namespace experiment in the stress runner); connect/disconnect cycles (no
growth of fds or memory); corrupt and truncated settings files on SIGHUP
(the running configuration is kept); disk full on save (the old file is
intact, the error is raised, nothing is lost).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.e2e_util import (
    LOOPBACK,
    SERVICE_TCP_PORTS,
    Service,
    free_port_offset,
    has_open_file,
    have_ptys,
    tcp_listening,
)

Figures = dict[str, Any]

TCP_SERVER = 4001
REALCOM_DATA = 950
REALCOM_COMMAND = 966
#: PORT_INIT as MOXA's Linux driver sends it on open (115200 8N1, no flow control).
PORT_INIT = bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00")


# --- helpers ----------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll C{predicate} until it is true (returned) or C{timeout} s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def proc_status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/<pid>/status (VmRSS, VmHWM …)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            parts = value.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[name] = int(parts[0])
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class PtyDevice:
    """A pty whose slave the service opens (optionally through a symlink); we hold the master."""

    def __init__(self, link: str | None = None) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.tty = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.path = self.tty
        if link is not None:
            tmp = f"{link}.new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.tty, tmp)
            os.replace(tmp, link)  # atomic: the service sees the old device or the new one
            self.path = link

    def write_some(self, data: bytes | memoryview) -> int:
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            return 0

    def read_some(self) -> bytes:
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""

    def drain(self, quiet: float = 0.2) -> int:
        """Read and drop until nothing arrived for C{quiet} s; return the bytes dropped."""
        dropped, last = 0, time.monotonic()
        while time.monotonic() - last < quiet:
            select.select([self.master], [], [], 0.05)
            got = self.read_some()
            if got:
                dropped += len(got)
                last = time.monotonic()
        return dropped

    def read_exact(self, n: int, timeout: float) -> bytes:
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while len(buf) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(buf)} of {n} bytes reached the device in {timeout} s")
            select.select([self.master], [], [], 0.1)
            buf += self.read_some()
        return bytes(buf)

    def baudrate(self) -> int:
        """The output speed the service set (termios constant, e.g. termios.B9600)."""
        return int(termios.tcgetattr(self.slave)[5])

    def close(self) -> None:
        for name in ("master", "slave"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)


def connect(port: int, rcvbuf: int | None = None, timeout: float = 5.0) -> socket.socket:
    """A blocking TCP client on loopback (C{rcvbuf} shrinks its receive buffer, before connecting)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect((LOOPBACK, port))
    return s


def reset(s: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0), as a crashing client or a middlebox does."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def recv_exact(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got = s.recv(n - len(buf))
        except TimeoutError:
            raise AssertionError(f"only {len(buf)} of {n} bytes arrived in {timeout} s") from None
        if not got:
            raise AssertionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += got
    return bytes(buf)


def recv_until_quiet(s: socket.socket, quiet: float = 0.2) -> int:
    """Read and drop until nothing arrived for C{quiet} s (or EOF)."""
    s.settimeout(quiet)
    dropped = 0
    while True:
        try:
            got = s.recv(65536)
        except TimeoutError:
            return dropped
        if not got:
            return dropped
        dropped += len(got)


def is_connected(s: socket.socket) -> bool:
    """Whether the peer has not closed or reset C{s} (nothing unread is consumed)."""
    timeout = s.gettimeout()
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        s.settimeout(timeout)


def pattern(size: int, seed: int = 1) -> bytes:
    """Incompressible test data; a stream is this block repeated (checked by length + hash)."""
    return random.Random(seed).randbytes(size)


def transfer(client: socket.socket, device: PtyDevice, to_device: bytes, to_client: bytes,
             timeout: float = 30.0) -> None:
    """Send both ways at once (neither side can block the other) and check both arrive exactly."""
    client.setblocking(False)
    sent = written = 0
    at_device, at_client = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        while len(at_device) < len(to_device) or len(at_client) < len(to_client):
            if time.monotonic() > deadline:
                raise AssertionError(f"transfer timed out: device got {len(at_device)}/{len(to_device)}, "
                                     f"client got {len(at_client)}/{len(to_client)}")
            if sent < len(to_device):
                try:
                    sent += client.send(to_device[sent: sent + 65536])
                except BlockingIOError:
                    pass
            if written < len(to_client):
                written += device.write_some(to_client[written: written + 65536])
            at_device += device.read_some()
            try:
                got = client.recv(1 << 18)
                if not got:
                    raise AssertionError("the client was disconnected during the transfer")
                at_client += got
            except BlockingIOError:
                pass
            select.select([client.fileno(), device.master], [], [], 0.005)
    finally:
        client.setblocking(True)
    assert bytes(at_device) == to_device, "the device got other bytes than the client sent"
    assert bytes(at_client) == to_client, "the client got other bytes than the device sent"


def settle(live: LiveService, *ports: int, timeout: float = 15.0) -> int:
    """Wait until the service holds no connection on C{ports} (unshifted); return its fd count."""
    def quiet() -> bool:
        return not any(state in ("01", "08") for p in ports for state in live.tcp_states(live.port(p)))
    wait_until(quiet, timeout, f"the service to close its connections on {ports}")
    time.sleep(0.05)
    return live.fds()


class LiveService:
    """
    ``twistd -n nport`` on loopback with a free port offset; C{settings} is
    written to the settings file (SIGHUP reloads it).
    """

    def __init__(self, directory: str, devices: list[str], settings: str, mode: str = "tcp-server",
                 wait_ports: tuple[int, ...] = (TCP_SERVER,), prefix: list[str] | None = None,
                 interface: str = LOOPBACK) -> None:
        self.directory = directory
        self.config = os.path.join(directory, "nport.ini")
        with open(self.config, "w") as f:
            f.write(settings)
        for attempt in range(3):
            self.offset = free_port_offset(tcp=(*SERVICE_TCP_PORTS, 4900))
            args = ["--ports", ",".join(devices), "--interface", interface,
                    "--port-offset", str(self.offset), "--mode", mode, "--config", self.config]
            self.service = _PrefixedService(directory, args, prefix or [])
            self.service.start()
            try:
                wait_until(lambda: self._listening(wait_ports, interface), 20,
                           f"the service to listen on {wait_ports}")
                break
            except AssertionError:
                # Another test's service (the suite runs several at once) can bind one of
                # our ports between the choice of the offset and our bind: a new offset.
                if (attempt == 2 or self.service.alive()
                        or "Address already in use" not in self.service.log()):
                    raise
                for path in (self.service.logfile, self.service.outfile):
                    if os.path.exists(path):
                        os.replace(path, f"{path}.{attempt}")
        self.baseline = proc_status(self.pid)

    def _listening(self, ports: tuple[int, ...], interface: str) -> bool:
        if not self.service.alive():
            raise AssertionError(f"the service exited:\n{self.service.log()}")
        if interface != LOOPBACK:  # in another namespace: ask /proc/<pid>/net/tcp
            return all(self.tcp_states(self.port(p)).count("0A") for p in ports)
        return all(tcp_listening(self.port(p)) for p in ports)

    @property
    def pid(self) -> int:
        return self.service.pid

    def port(self, port: int) -> int:
        return port + self.offset

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def rss(self) -> int:
        return self.status()["VmRSS"]

    def fds(self) -> int:
        return fd_count(self.pid)

    def alive(self) -> bool:
        return self.service.alive()

    def log(self) -> str:
        return self.service.log()

    def log_count(self, text: str) -> int:
        return self.log().count(text)

    def tcp_states(self, local_port: int) -> list[str]:
        """Hex TCP states (01 established, 0A listen …) of the sockets on C{local_port} in the service's netns."""
        states = []
        for name in ("tcp", "tcp6"):
            try:
                with open(f"/proc/{self.pid}/net/{name}") as f:
                    next(f)
                    for line in f:
                        fields = line.split()
                        if int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                            states.append(fields[3])
            except OSError:
                pass
        return states

    def catches(self, signum: int) -> bool:
        """Whether the service has installed a handler for C{signum} (SigCgt in /proc/<pid>/status)."""
        with open(f"/proc/{self.pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
        return bool(mask >> (signum - 1) & 1)

    def sighup(self) -> None:
        """SIGHUP once the handler is in place (makeService installs it; the wait is only a check)."""
        wait_until(lambda: self.catches(signal.SIGHUP), 10, "the SIGHUP handler")
        os.kill(self.pid, signal.SIGHUP)

    def stop(self) -> list[str]:
        """Stop it; return the log lines that show a server bug."""
        self.service.stop()
        return self.service.problems()


class _PrefixedService(Service):
    def __init__(self, directory: str, args: list[str], prefix: list[str]) -> None:
        super().__init__(directory, args)
        self.prefix = prefix

    def command(self) -> list[str]:
        return [*self.prefix, *super().command()]


@contextmanager
def running(devices: list[str], settings: str, **kw: Any) -> Iterator[LiveService]:
    """A L{LiveService} in a fresh directory; fails if it logged a traceback or died."""
    directory = tempfile.mkdtemp(prefix="nport-faults-")
    live = LiveService(directory, devices, settings, **kw)
    try:
        yield live
        assert live.alive(), "the service died"
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- service log (end) ---\n{live.log()[-3000:]}") from e
    finally:
        problems = live.stop()
        log = live.log()
        shutil.rmtree(directory, ignore_errors=True)
    if problems:
        raise AssertionError("the service logged errors:\n" + "\n".join(problems) + "\n" + log[-4000:])


def tcp_server_settings(**operating: Any) -> str:
    lines = ["[port1.operating]", "mode = tcp-server"]
    lines += [f"{k} = {v}" for k, v in operating.items()]
    return "\n".join(lines) + "\n"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --- scenarios ----------------------------------------------------------------------------------


def scenario_device_vanish(rounds: int = 1, size: int = 256 * 1024) -> Figures:
    """
    The device vanishes mid-transfer (pty master closed while bytes flow both
    ways) and returns as a new pty behind the same symlink, C{rounds} times.
    The TCP Server client stays connected throughout; after each return the
    same connection carries C{size} bytes each way, exactly.
    """
    start = time.monotonic()
    linkdir = tempfile.mkdtemp(prefix="nport-link-")
    link = os.path.join(linkdir, "ttyNPORT")
    device = PtyDevice(link)
    block = pattern(size)
    moved, peak, reopen_s = 0, 0, 0.0
    try:
        with running([link], tcp_server_settings()) as live:
            wait_until(lambda: has_open_file(live.pid, device.tty), 10, "the device to open")
            client = connect(live.port(TCP_SERVER))
            for _ in range(rounds):
                # Mid-transfer: both directions in flight when the device goes.
                device.write_some(block[: size // 2])
                client.sendall(block[: size // 4])
                old = device.tty
                device.close()

                def lost(old: str = old) -> bool:
                    return not has_open_file(live.pid, old)

                wait_until(lost, 10, "the service to notice the loss")
                t0 = time.monotonic()
                device = PtyDevice(link)

                def reopened(new: str = device.tty) -> bool:
                    return has_open_file(live.pid, new)

                wait_until(reopened, 15, "the service to reopen the device")
                reopen_s = max(reopen_s, time.monotonic() - t0)
                assert is_connected(client), "the TCP Server client was disconnected by the device loss"
                recv_until_quiet(client)  # what was in flight before the loss
                device.drain()
                # The same connection works both ways, byte for byte.
                transfer(client, device, block, block[::-1])
                moved += 2 * size
                peak = max(peak, live.status()["VmHWM"])
            client.close()
    finally:
        device.close()
        shutil.rmtree(linkdir, ignore_errors=True)
    return {"rounds": rounds, "bytes": moved, "max_reopen_s": round(reopen_s, 2), "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


def scenario_client_reset(rounds: int = 2, size: int = 1 << 20) -> Figures:
    """
    A client resets its connection (SO_LINGER 0) in the middle of a big write
    to the device while the device floods it and it is not reading.  The
    service survives: once the device drains what the client queued (as a
    UART does at its baud rate), the slot is freed, the next client's bytes
    go through both ways, and fds do not grow.

    Measured, not asserted: whether the reset is noticed while the device is
    still stalled.  Not when the device's write buffer is full at that moment:
    the service has then stopped reading every client and sees the RST only
    when it reads again (docs/reliability.md, findings).
    """
    start = time.monotonic()
    device = PtyDevice()
    block = pattern(size, seed=2)
    peak, fds, freed_stalled, slot_s, drained = 0, [], 0, 0.0, 0
    try:
        with running([device.path], tcp_server_settings(max_connection=1)) as live:
            wait_until(lambda: has_open_file(live.pid, device.tty), 10, "the device to open")

            def fresh() -> socket.socket | None:
                s = connect(live.port(TCP_SERVER))
                time.sleep(0.05)
                if is_connected(s):
                    return s
                s.close()
                return None

            for n in range(rounds):
                victim = connect(live.port(TCP_SERVER), rcvbuf=4096)
                victim.setblocking(False)
                sent = written = 0
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and (sent < size or written < size):
                    try:
                        sent += victim.send(block[sent: sent + 65536]) if sent < size else 0
                    except BlockingIOError:
                        pass
                    written += device.write_some(block[written: written + 4096]) if written < size else 0
                    time.sleep(0.001)
                reset(victim)  # mid-write: neither direction finished
                reset_at = time.monotonic()
                time.sleep(0.2)
                client = fresh()
                if client is not None:
                    freed_stalled += 1
                # The device drains (a UART at its baud rate); then the service reads again.
                while client is None:
                    assert time.monotonic() - reset_at < 30, "the reset client's slot was never freed"
                    drained += device.drain(0.05)
                    client = fresh()
                slot_s = max(slot_s, time.monotonic() - reset_at)
                drained += device.drain()
                recv_until_quiet(client)  # the victim's flood still in the pty goes to the new client
                marker = f"after reset {n};".encode()
                transfer(client, device, marker * 1000, marker[::-1] * 1000)
                client.close()
                fds.append(settle(live, TCP_SERVER))
                peak = max(peak, live.status()["VmHWM"])
    finally:
        device.close()
    return {"rounds": rounds, "bytes": rounds * 2 * size, "drained_from_device": drained,
            "freed_while_device_stalled": freed_stalled, "max_slot_free_s": round(slot_s, 2),
            "fds": f"{fds[0]}..{fds[-1]}", "fd_growth": fds[-1] - fds[0], "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


class Flood:
    """
    Writes C{block} repeated into a pty master while clients read, keeping
    the count and hash of what the master accepted (resumable: a later
    L{run} continues the same stream).
    """

    def __init__(self, device: PtyDevice, block: bytes, live: LiveService) -> None:
        self.device = device
        self.block = block
        self.live = live
        self.written = 0
        self.sent_hash = hashlib.sha256()
        self.readers: dict[socket.socket, list[Any]] = {}  # socket -> [bytes, hash]

    def read(self, client: socket.socket) -> None:
        """C{client} reads from now on."""
        client.setblocking(False)
        self.readers[client] = [0, hashlib.sha256()]

    def received(self, client: socket.socket) -> tuple[int, bool]:
        """Bytes C{client} got and whether they are exactly the stream written so far."""
        count, digest = self.readers[client]
        return count, count == self.written and digest.digest() == self.sent_hash.digest()

    def run(self, total: int, stall: float | None = None, timeout: float = 120.0) -> Figures:
        """
        Write until C{total} bytes were accepted and every reader has them;
        with C{stall}, stop once the master accepted nothing for that long.
        Samples the service's VmRSS.
        """
        size = len(self.block)
        rss_max = 0
        last_sample = last_progress = time.monotonic()
        deadline = last_progress + timeout
        stalled = False
        while True:
            now = time.monotonic()
            if now > deadline:
                raise AssertionError(f"flood timed out: written {self.written} of {total}, "
                                     f"received {[r[0] for r in self.readers.values()]}")
            writing = self.written < total and not stalled
            if writing:
                offset = self.written % size
                chunk = self.block[offset: offset + min(65536, total - self.written, size - offset)]
                n = self.device.write_some(chunk)
                if n:
                    self.sent_hash.update(chunk[:n])
                    self.written += n
                    last_progress = now
                elif stall is not None and now - last_progress > stall:
                    stalled = True
            for client, state in self.readers.items():
                while True:
                    try:
                        got = client.recv(1 << 18)
                    except BlockingIOError:
                        break
                    if not got:
                        raise AssertionError("a reading client was disconnected")
                    state[0] += len(got)
                    state[1].update(got)
            if now - last_sample > 0.05:
                rss_max = max(rss_max, self.live.rss())
                last_sample = now
            if not writing and all(r[0] >= self.written for r in self.readers.values()):
                break
            select.select(list(self.readers), [self.device.master] if writing else [], [], 0.01)
        return {"written": self.written, "stalled": stalled, "rss_max_kb": max(rss_max, self.live.rss())}


def scenario_jammed_ignored(flood: int = 16 << 20) -> Figures:
    """
    Ignore jammed IP on: one client stops reading (tiny receive buffer) while
    the pty floods C{flood} bytes; the other client receives every byte in
    order, and the service's RSS stays within a few MB of its start.
    """
    start = time.monotonic()
    device = PtyDevice()
    try:
        with running([device.path], tcp_server_settings(max_connection=2, ignore_jammed="yes")) as live:
            wait_until(lambda: has_open_file(live.pid, device.tty), 10, "the device to open")
            jammed = connect(live.port(TCP_SERVER), rcvbuf=4096)
            good = connect(live.port(TCP_SERVER))
            time.sleep(0.1)
            base = live.rss()
            flow = Flood(device, pattern(1 << 20, seed=3), live)
            flow.read(good)
            result = flow.run(flood, timeout=300)
            received, exact = flow.received(good)
            assert exact, f"the reading client lost or reordered bytes ({received} of {flood})"
            assert is_connected(jammed), "the jammed client was disconnected"
            jammed_got = recv_until_quiet(jammed, 0.3)
            growth = result["rss_max_kb"] - base
            jammed.close()
            good.close()
            peak = live.status()["VmHWM"]
    finally:
        device.close()
    return {"bytes": flood, "received_by_reader": received, "received_by_jammed": jammed_got,
            "rss_base_kb": base, "rss_max_kb": result["rss_max_kb"], "rss_growth_kb": growth,
            "peak_rss_kb": peak, "duration_s": round(time.monotonic() - start, 1)}


def scenario_jammed_paused(flood: int = 64 << 20, stall: float = 1.0) -> Figures:
    """
    Ignore jammed IP off: the only client stops reading; the serial reader
    pauses, so the pty master's writes stall after a bounded amount (kernel
    buffers plus Twisted's) and the service's RSS stays bounded.  When the
    client reads again, every accepted byte arrives in order.
    """
    start = time.monotonic()
    device = PtyDevice()
    block = pattern(1 << 20, seed=4)
    try:
        with running([device.path], tcp_server_settings(max_connection=1, ignore_jammed="no")) as live:
            wait_until(lambda: has_open_file(live.pid, device.tty), 10, "the device to open")
            client = connect(live.port(TCP_SERVER), rcvbuf=4096)
            time.sleep(0.1)
            base = live.rss()
            flow = Flood(device, block, live)
            jam = flow.run(flood, stall=stall)
            assert jam["stalled"], f"the master accepted all {flood} bytes: the reader never paused"
            accepted = jam["written"]
            assert is_connected(client)
            # Unjam: everything accepted arrives, in order, and the flow resumes.
            flow.read(client)
            flow.run(accepted + (1 << 20))
            after, exact = flow.received(client)
            assert exact, "bytes were lost or reordered while paused"
            client.close()
            peak = live.status()["VmHWM"]
    finally:
        device.close()
    return {"offered": flood, "accepted_before_stall": accepted, "rss_base_kb": base,
            "rss_max_kb": jam["rss_max_kb"], "rss_growth_kb": jam["rss_max_kb"] - base,
            "bytes_after_unjam": after, "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


_KEEPALIVE = re.compile(r"timer:\(keepalive,(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)ms)?")


def keepalive_timer(local_port: int) -> list[float | None]:
    """Seconds left on the keep-alive timer of each established socket on C{local_port} (ss), None without."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{local_port} )"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    timers: list[float | None] = []
    for line in out.splitlines():
        if not line.strip():
            continue
        m = _KEEPALIVE.search(line)
        timers.append(None if m is None else
                      int(m.group(1) or 0) * 60 + int(m.group(2) or 0) + int(m.group(3) or 0) / 1000)
    return timers


def scenario_keepalive_settings() -> Figures:
    """
    Half-open connections are ended by the TCP alive check: the accepted
    socket has keep-alive armed with the first probe at (alive check - 30 s),
    so a client that vanished without FIN is dropped after the alive check
    time; with alive check 0 no keep-alive runs.
    """
    if shutil.which("ss") is None:
        raise SkipTest("needs ss (iproute2) to read the service's socket timers")
    start = time.monotonic()
    device = PtyDevice()
    try:
        with running([device.path, device.path + "-absent"],
                     "[port1.operating]\nmode = tcp-server\ntcp_alive_check_min = 1\n"
                     "[port2.operating]\nmode = tcp-server\ntcp_alive_check_min = 0\n",
                     wait_ports=(TCP_SERVER, TCP_SERVER + 1)) as live:
            one = connect(live.port(TCP_SERVER))
            off = connect(live.port(TCP_SERVER + 1))
            # ss lists the socket as soon as the kernel completes the handshake, before the
            # service has accepted it and armed keep-alive: wait for the armed timer.
            timers = wait_until(lambda: [t for t in keepalive_timer(live.port(TCP_SERVER)) if t is not None],
                                5, "the keep-alive timer of the accepted connection in ss")
            unarmed = wait_until(lambda: keepalive_timer(live.port(TCP_SERVER + 1)), 5, "the connection in ss")
            one.close()
            off.close()
            peak = live.status()["VmHWM"]
    finally:
        device.close()
    return {"alive_check_1min_first_probe_s": timers[0], "alive_check_0": unarmed[0], "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


def _realcom_cycle(live: LiveService, rst: bool) -> bool:
    """
    One Real COM open/close as the driver does it; False when the service
    refused the pair because the previous one had not finished closing.
    """
    data = connect(live.port(REALCOM_DATA + 1))
    command = connect(live.port(REALCOM_COMMAND + 1))
    try:
        command.sendall(PORT_INIT)
        command.setblocking(False)
        reply = b""
        deadline = time.monotonic() + 10
        while len(reply) < 5:
            if time.monotonic() > deadline:
                raise AssertionError(f"no PORT_INIT reply within 10 s ({reply!r})")
            select.select([command], [], [], 0.02)
            try:
                got = command.recv(5 - len(reply))
            except BlockingIOError:
                if not is_connected(data):
                    return False  # data refused: the command waits for a data connection that never comes
                continue
            if not got:
                return False  # refused
            reply += got
        assert reply[:2] == b"\x2c\x03", reply
        return True
    finally:
        for s in (data, command):
            reset(s) if rst else s.close()


def scenario_cycles(cycles: int = 500, warmup: int = 50) -> Figures:
    """
    C{cycles} connect/disconnect cycles, alternating a TCP Server client
    (port 1) and a Real COM pair opening and closing the device (port 2),
    every third one closed with an RST.  The service's fds return to their
    count after the warm-up and its RSS grows by less than a small tolerance.
    """
    start = time.monotonic()
    tcp_dev, realcom_dev = PtyDevice(), PtyDevice()
    retries = 0
    settings = ("[port1.operating]\nmode = tcp-server\nmax_connection = 4\n"
                "[port2.operating]\nmode = realcom\n")
    try:
        with running([tcp_dev.path, realcom_dev.path], settings,
                     wait_ports=(TCP_SERVER, REALCOM_DATA + 1, REALCOM_COMMAND + 1)) as live:
            wait_until(lambda: has_open_file(live.pid, tcp_dev.tty), 10, "the device to open")

            def cycle(i: int) -> None:
                nonlocal retries
                rst = i % 3 == 2
                if i % 2:
                    s = connect(live.port(TCP_SERVER))
                    s.sendall(b"x")
                    reset(s) if rst else s.close()
                else:
                    while not _realcom_cycle(live, rst):
                        retries += 1
                        time.sleep(0.01)

            def settled() -> int:
                # Wait until the service has closed what the last cycles opened.
                wait_until(lambda: not has_open_file(live.pid, realcom_dev.tty), 15, "the Real COM device to close")
                return settle(live, TCP_SERVER, REALCOM_DATA + 1, REALCOM_COMMAND + 1)

            for i in range(warmup):
                cycle(i)
            fds_before, rss_before = settled(), live.rss()
            for i in range(cycles):
                cycle(i)
                tcp_dev.read_some()
            fds_after, rss_after = settled(), live.rss()
            peak = live.status()["VmHWM"]
    finally:
        tcp_dev.close()
        realcom_dev.close()
    return {"cycles": cycles, "connections": cycles // 2 + 2 * (cycles - cycles // 2), "refused_retries": retries,
            "fds_before": fds_before, "fds_after": fds_after, "rss_before_kb": rss_before,
            "rss_after_kb": rss_after, "rss_growth_kb": rss_after - rss_before, "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


_GOOD_SETTINGS = """\
[basic]
server_name = reliability

[port1.serial]
baudrate = 9600
alias = fault-test

[port1.operating]
mode = tcp-server
max_connection = 2
"""


def settings_variants(count: int, seed: int = 5) -> list[tuple[str, bytes]]:
    """Corrupt and truncated versions of L{_GOOD_SETTINGS}: (label, file bytes)."""
    rng = random.Random(seed)
    text = _GOOD_SETTINGS.encode()
    fixed: list[tuple[str, bytes]] = [
        ("binary garbage", bytes(range(256))),
        ("invalid utf-8", text.replace(b"reliability", b"reli\xff\xfeability")),
        ("bad value", text.replace(b"9600", b"96x0")),
        ("unknown key", text.replace(b"alias", b"alais")),
        ("no section header", text.split(b"\n", 1)[1].replace(b"[basic]", b"")),
        ("mode cut", text.replace(b"tcp-server", b"tcp-ser")),
        ("empty", b""),
    ]
    out = fixed[:count]
    while len(out) < count:
        cut = rng.randrange(len(text))
        if rng.random() < 0.5:
            out.append((f"truncated at {cut}", text[:cut]))
        else:
            out.append((f"byte {cut} flipped", text[:cut] + bytes([text[cut] ^ (1 << rng.randrange(8))])
                        + text[cut + 1:]))
    return out


def scenario_corrupt_settings(variants: int = 8) -> Figures:
    """
    SIGHUP with a corrupt or truncated settings file: the service logs which
    key is wrong and keeps the running configuration (the pty stays at 9600,
    the client stays connected and its data flows); a variant that happens to
    be valid is applied.  The good file then restores the settings.
    """
    from nport_twisted._exceptions import ConfigError
    from nport_twisted.config.store import loads
    from nport_twisted.config.settings import OpMode

    start = time.monotonic()
    device = PtyDevice()
    kept = applied = 0
    try:
        with running([device.path], _GOOD_SETTINGS) as live:
            wait_until(lambda: has_open_file(live.pid, device.tty), 10, "the device to open")
            wait_until(lambda: device.baudrate() == termios.B9600, 5, "9600 baud")
            client = connect(live.port(TCP_SERVER))

            def reload(content: bytes) -> str:
                before = (live.log_count("settings not reloaded"), live.log_count("settings reloaded from"))
                with open(live.config + ".tmp", "wb") as f:
                    f.write(content)
                os.replace(live.config + ".tmp", live.config)
                live.sighup()
                outcome = wait_until(
                    lambda: ("kept" if live.log_count("settings not reloaded") > before[0] else
                             "applied" if live.log_count("settings reloaded from") > before[1] else ""),
                    10, "the reload to be logged")
                assert live.alive()
                return str(outcome)

            for label, content in settings_variants(variants):
                try:
                    expected = loads(content.decode("utf-8"), "x", default_mode=OpMode.TCP_SERVER)
                except (ConfigError, UnicodeDecodeError):
                    expected = None
                outcome = reload(content)
                if expected is None:
                    assert outcome == "kept", f"{label}: a bad file was applied"
                    kept += 1
                    assert device.baudrate() == termios.B9600, f"{label}: the running baud rate changed"
                else:
                    applied += 1
                if is_connected(client):  # a valid variant may restart the listener (mode change)
                    client.sendall(b"ping")
                    assert device.read_exact(4, 5)[-4:] == b"ping", label
                else:
                    client.close()
                    client = wait_until(lambda: connect(live.port(TCP_SERVER)), 10, "the listener")
                assert reload(_GOOD_SETTINGS.encode()) == "applied"
                wait_until(lambda: device.baudrate() == termios.B9600, 5, f"{label}: 9600 baud again")
            client.close()
            reasons = re.findall(r"settings not reloaded, keeping the running ones: (.*)", live.log())
            peak = live.status()["VmHWM"]
    finally:
        device.close()
    return {"cases": variants, "rejected_kept": kept, "valid_applied": applied,
            "example_error": next((r for r in reasons if "baudrate" in r), reasons[0] if reasons else "")[:160],
            "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


@contextmanager
def tiny_filesystem(size_kb: int = 64) -> Iterator[tuple[str, bool]]:
    """A tmpfs of C{size_kb} (as root), else a plain directory: (path, is_tmpfs)."""
    directory = tempfile.mkdtemp(prefix="nport-full-")
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=700", "tmpfs", directory],
                                 capture_output=True, timeout=10, check=False).returncode == 0
    try:
        yield directory, mounted
    finally:
        if mounted:
            subprocess.run(["umount", directory], capture_output=True, timeout=10, check=False)
        shutil.rmtree(directory, ignore_errors=True)


def _fill(directory: str, leave: int) -> str:
    """Fill the filesystem of C{directory} until about C{leave} bytes are free."""
    path = os.path.join(directory, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    if leave:
        size = os.path.getsize(path)
        os.truncate(path, max(0, size - leave))
    return path


class _PatchedOs:
    """The C{os} module as configfile sees it, with another C{fdopen}."""

    def __init__(self, fdopen: Callable[..., Any]) -> None:
        self.fdopen = fdopen

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@contextmanager
def _enospc_after(limit: int) -> Iterator[None]:
    """Without a real tiny filesystem: writes to the settings temp file fail with ENOSPC after C{limit} bytes."""
    from unittest import mock

    from nport_twisted.config import store as configfile

    real_fdopen = os.fdopen

    def fdopen(fd: int, *args: Any, **kw: Any) -> Any:
        f = real_fdopen(fd, *args, **kw)
        real_write = f.write
        budget = [limit]

        def write(data: bytes) -> int:
            if len(data) > budget[0]:
                real_write(data[: budget[0]])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            budget[0] -= len(data)
            return int(real_write(data))

        f.write = write
        return f

    with mock.patch.object(configfile, "os", _PatchedOs(fdopen)):
        yield


def scenario_disk_full(rounds: int = 4) -> Figures:
    """
    Saving the settings on a full disk (a 64 KB tmpfs filled to different
    levels; without root an emulated ENOSPC): the save raises ENOSPC, the old
    file is intact byte for byte, no temporary file is left, the running
    configuration is still in memory, and the next save after space is
    freed writes it.
    """
    import attrs
    from twisted.internet.testing import MemoryReactorClock

    from nport_twisted.config.store import SettingsStore, dumps
    from nport_twisted.server import NPortService
    from nport_twisted.config.settings import DeviceConfig, OpMode
    from nport_twisted.testing import FakeSerialDevice

    start = time.monotonic()
    failures = 0
    with tiny_filesystem() as (directory, real):
        path = os.path.join(directory, "nport.ini")
        config = DeviceConfig().with_port_count(16, OpMode.TCP_SERVER)
        svc = NPortService(MemoryReactorClock(), [f"/dev/fake{n}" for n in range(16)], config,
                           SettingsStore(path), FakeSerialDevice().opener)
        svc.save()
        for n in range(rounds):
            with open(path, "rb") as f:
                old = f.read()
            new = attrs.evolve(svc.config, basic=attrs.evolve(svc.config.basic, server_name=f"round{n}",
                                                               server_location="x" * 39))
            svc.config = new  # what apply_config does for the running service
            size = len(dumps(new).encode())
            leave = size * n // rounds  # 0 … almost enough room
            filler = _fill(directory, leave) if real else None
            try:
                with (_enospc_after(leave) if not real else _null()):
                    svc.save()
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                failures += 1
            else:
                raise AssertionError(f"save with {leave} of {size} bytes free did not fail")
            with open(path, "rb") as f:
                assert f.read() == old, "the old settings file was damaged"
            # No temporary file is left behind (the store's "saved once" marker is expected).
            left = [n for n in os.listdir(directory) if n != ".nport.ini.saved"]
            assert sorted(left) == sorted(["nport.ini"] + (["filler"] if real else [])), \
                os.listdir(directory)
            assert svc.config == new
            if filler is not None:
                os.unlink(filler)
            svc.save()
            assert SettingsStore(path).load(OpMode.TCP_SERVER) == new
    return {"rounds": rounds, "enospc_raised": failures, "file_bytes": size, "real_tmpfs": real,
            "duration_s": round(time.monotonic() - start, 2)}


@contextmanager
def _null() -> Iterator[None]:
    yield


def scenario_half_open(alive_check_min: int = 1, timeout: float = 150.0) -> Figures:
    """
    A half-open connection for real: the service runs in one network
    namespace, a client in another joined by a veth pair; the client connects,
    then its end of the link goes down and the client dies, so it vanishes
    without FIN or RST while the service's side stays up.  The service
    must drop the connection after about the alive check time (keep-alive),
    freeing the max-connection slot for a new client.  Needs root and
    ``ip netns``.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise SkipTest("needs root and ip netns")
    pid = os.getpid()
    dev_ns, cli_ns = f"nptfd{pid}", f"nptfc{pid}"
    veth_a, veth_b = f"nptfA{pid}"[:15], f"nptfB{pid}"[:15]

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    start = time.monotonic()
    created: list[str] = []
    device = PtyDevice()
    client: subprocess.Popen[bytes] | None = None
    try:
        for ns in (dev_ns, cli_ns):
            ip("netns", "add", ns)
            created.append(ns)
        ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        ip("link", "set", veth_a, "netns", dev_ns)
        ip("link", "set", veth_b, "netns", cli_ns)
        for ns, dev, addr in ((dev_ns, veth_a, "10.78.0.1"), (cli_ns, veth_b, "10.78.0.2")):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
            ip("-n", ns, "link", "set", "lo", "up")
        with running([device.path], tcp_server_settings(max_connection=1, tcp_alive_check_min=alive_check_min),
                     prefix=["ip", "netns", "exec", dev_ns], interface="10.78.0.1") as live:
            port = live.port(TCP_SERVER)
            # The client: connect, say hello, then hang (it will lose its link).
            script = ("import socket,sys,time; s=socket.create_connection(('10.78.0.1', int(sys.argv[1])));"
                      "s.sendall(b'hello'); print('connected', flush=True); time.sleep(600)")
            client = subprocess.Popen(["ip", "netns", "exec", cli_ns, sys.executable, "-c", script, str(port)],
                                      stdout=subprocess.PIPE)
            assert client.stdout is not None and client.stdout.readline().strip() == b"connected"
            assert device.read_exact(5, 10) == b"hello"
            wait_until(lambda: "01" in live.tcp_states(port), 5, "the connection in the service")
            # The client's machine vanishes: its link goes down (our side stays up, as when a
            # cable is cut further away), then the client dies; its FIN never arrives.
            ip("-n", cli_ns, "link", "set", veth_b, "down")
            client.kill()
            client.wait(10)
            vanished = time.monotonic()
            device.write_some(b"data for nobody")  # unacknowledged data too: TCP_USER_TIMEOUT
            wait_until(lambda: "01" not in live.tcp_states(port), timeout, "the half-open connection to be dropped",
                       interval=0.5)
            detected = time.monotonic() - vanished
            assert live.alive()
            peak = live.status()["VmHWM"]
    finally:
        if client is not None:
            client.kill()
            client.wait(10)
        device.close()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)
    return {"alive_check_min": alive_check_min, "dropped_after_s": round(detected, 1), "peak_rss_kb": peak,
            "duration_s": round(time.monotonic() - start, 1)}


#: name -> (function, fast keyword arguments, stress keyword arguments; "cycles"/"cases" from the command line)
SCENARIOS: dict[str, tuple[Callable[..., Figures], dict[str, Any], dict[str, Any]]] = {
    "device-vanish": (scenario_device_vanish, {"rounds": 1}, {"rounds": 20, "size": 4 << 20}),
    "client-reset": (scenario_client_reset, {"rounds": 2}, {"rounds": 100, "size": 4 << 20}),
    "jammed-ignored": (scenario_jammed_ignored, {"flood": 16 << 20}, {"flood": 512 << 20}),
    "jammed-paused": (scenario_jammed_paused, {"flood": 64 << 20}, {"flood": 512 << 20, "stall": 2.0}),
    "keepalive-settings": (scenario_keepalive_settings, {}, {}),
    "half-open": (scenario_half_open, {}, {}),
    "cycles": (scenario_cycles, {"cycles": 500}, {"cycles": 10_000}),
    "corrupt-settings": (scenario_corrupt_settings, {"variants": 8}, {"variants": 200}),
    "disk-full": (scenario_disk_full, {"rounds": 4}, {"rounds": 16}),
}


# --- the fast versions ---------------------------------------------------------------------------


class FaultTests(SynchronousTestCase):
    """Each scenario, small; blocking (the service is another process with its own reactor)."""

    def setUp(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")

    def test_device_vanishes_and_returns(self) -> None:
        """The device vanishes mid-transfer and returns: the client stays connected and data flows again."""
        figures = scenario_device_vanish(rounds=1)
        self.assertEqual(figures["bytes"], 2 * 256 * 1024)

    def test_client_reset_mid_write(self) -> None:
        """A client's RST mid-write leaves the service serving the next client, without fd growth."""
        figures = scenario_client_reset(rounds=2)
        self.assertLessEqual(figures["fd_growth"], 0)

    def test_jammed_client_ignored(self) -> None:
        """Ignore jammed on: the other client gets every byte and the service's RSS stays bounded."""
        figures = scenario_jammed_ignored(flood=16 << 20)
        self.assertEqual(figures["received_by_reader"], 16 << 20)
        self.assertLess(figures["rss_growth_kb"], 8 * 1024, figures)

    def test_jammed_client_pauses_reader(self) -> None:
        """Ignore jammed off: pty writes stall after a bounded amount, RSS stays bounded, nothing is lost."""
        figures = scenario_jammed_paused(flood=64 << 20, stall=1.0)
        self.assertLess(figures["accepted_before_stall"], 16 << 20, figures)
        self.assertLess(figures["rss_growth_kb"], 8 * 1024, figures)

    def test_keepalive_on_accepted_sockets(self) -> None:
        """Alive check 1 min arms keep-alive with the first probe within 30 s; alive check 0 arms none."""
        figures = scenario_keepalive_settings()
        first = figures["alive_check_1min_first_probe_s"]
        self.assertIsNotNone(first)
        self.assertTrue(20 <= first <= 30, figures)
        self.assertIsNone(figures["alive_check_0"])

    def test_connect_disconnect_cycles(self) -> None:
        """500 TCP Server and Real COM connect/disconnect cycles leave no fd and little memory behind."""
        figures = scenario_cycles(cycles=500, warmup=50)
        self.assertLessEqual(figures["fds_after"], figures["fds_before"], figures)
        self.assertLess(figures["rss_growth_kb"], 2048, figures)

    def test_corrupt_settings_keep_running_config(self) -> None:
        """SIGHUP with corrupt or truncated files keeps the running settings; the good file restores them."""
        figures = scenario_corrupt_settings(variants=8)
        self.assertGreaterEqual(figures["rejected_kept"], 5)
        self.assertIn("nport.ini", figures["example_error"])

    def test_disk_full_on_save(self) -> None:
        """ENOSPC on save raises, keeps the old file and the running config; the next save succeeds."""
        figures = scenario_disk_full(rounds=4)
        self.assertEqual(figures["enospc_raised"], 4)

    def test_disk_full_emulated(self) -> None:
        """The emulated ENOSPC (used without root) behaves like the real one."""
        from unittest import mock

        with mock.patch.object(os, "geteuid", return_value=1000):
            figures = scenario_disk_full(rounds=2)
        self.assertEqual((figures["enospc_raised"], figures["real_tmpfs"]), (2, False))
