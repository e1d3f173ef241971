"""
nport-twisted against ser2net on the same pty "devices", side by side.

Usage (from the repository root; docs/performance.md has a recorded run)::

    python benchmarks/run.py                 # the full run (about 6.5 minutes)
    python benchmarks/run.py --quick         # about 30 s, noisy: for development
    python benchmarks/run.py --only nport    # without ser2net
    python benchmarks/run.py --json out.json

One echo process serves the ptys (benchmarks/echo_device.py).  The servers:
nport-twisted (TCP Server mode, and Real COM mode) and ser2net 4.x with
chardelay off and with its default chardelay on, each on free TCP ports on
127.0.0.1.  Measured:

  * one port per server, all servers running at once on their own ptys and
    measured in turns (round-robin batches, so a busy machine slows them
    alike): 1-byte and 8 KiB round trips (median, p99); echo throughput
    with 4 KiB writes (MB/s; 256 KiB in flight at most) and the server's CPU
    seconds (utime + stime, /proc/PID/stat) per MB echoed (every echoed byte
    crosses the server twice); resident memory (VmRSS) with the port
    connected and its device open;
  * then each server alone with N ports: VmRSS and PSS, and every port
    loaded with 92,160 B/s (921,600 baud 8N1) in 10 ms chunks for
    --duration seconds: server CPU in % of one core over the load, chunk
    latency (sent until fully echoed) median and p99, bytes lost (not
    echoed once the echoes stop coming) and bytes altered.

Plain-socket clients in this process measure TCP Server mode against
ser2net raw TCP.  For Real COM, a Twisted subprocess (twisted_client.py)
drives nport-twisted through our Real COM client and ser2net raw TCP
through a plain Twisted protocol, with the same tests.

nport-twisted serves at most 16 ports per process (the largest NPort model
it presents), so N > 16 ports run as ceil(N/16) processes, as one would
deploy it; CPU and memory are the sums over them.  ser2net serves all ports
from one process.

The runner installs nothing; ser2net must be installed (Debian:
``apt-get install ser2net``) unless ``--only nport``.  Every process it
starts is stopped on exit, error, Ctrl-C or SIGTERM, and every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
if REPO_ROOT not in sys.path:
    sys.path.append(REPO_ROOT)  # nport_twisted from the checkout when not installed

from common import (
    DRAIN_IDLE,
    DRAIN_MAX,
    LOAD_RATE,
    LOAD_TICK,
    TP_WINDOW,
    TP_WRITE,
    CpuMeter,
    PortLoad,
    percentile,
    status_kib,
    summarize_load,
)

LOOPBACK = "127.0.0.1"
#: The "large write" round trip: more than one pty read (4095 bytes) and one TCP segment.
BIG_WRITE = 8192


class BenchError(Exception):
    """A benchmark step failed (the message says which and why)."""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------


class Processes:
    """Every child process the run started; stop_all() ends them (bounded)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []
        self.started: list[int] = []  # every pid, for the record (and the smoke test)

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, **kw)
        self.procs.append(proc)
        self.started.append(proc.pid)
        return proc

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
            except ProcessLookupError:
                pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception as e:  # noqa: BLE001 - keep stopping the others
                log(f"could not stop pid {proc.pid}: {e}")


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state (/proc/net/tcp and tcp6)."""
    ports: set[int] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A":
                        ports.add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_base(needed: Callable[[int], list[tuple[int, int]]], taken: set[int],
              low: int, high: int) -> int:
    """A base b in [low, high) whose ports needed(b) are all free and not in C{taken}."""
    rng = random.Random(os.urandom(8))
    for _ in range(300):
        base = rng.randrange(low, high)
        ports = needed(base)
        if all(p not in taken and port_free(p, k) for p, k in ports):
            taken.update(p for p, _ in ports)
            return base
    raise BenchError("no free TCP/UDP port range found on this machine")


class Server:
    """One server under test (one or more processes) serving a list of ptys."""

    label = ""

    def __init__(self, procs: Processes, workdir: str) -> None:
        self.procs = procs
        self.workdir = workdir
        self.popen: list[subprocess.Popen[Any]] = []
        self.logs: list[str] = []
        self.data_ports: list[int] = []  # TCP port of pty i
        self.command_ports: list[int] = []  # Real COM only

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.popen]

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for path in self.logs:
            try:
                with open(path, errors="replace") as f:
                    out.extend(f.read().splitlines()[-lines:])
            except OSError:
                pass
        return "\n".join(out)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        want = set(self.data_ports) | set(self.command_ports)
        while True:
            for p in self.popen:
                if p.poll() is not None:
                    raise BenchError(f"{self.label} exited with {p.returncode}:\n{self.log_tail()}")
            if want <= listening_ports():
                return
            if time.monotonic() > deadline:
                missing = sorted(want - listening_ports())
                raise BenchError(f"{self.label} not listening on {missing[:8]} after {timeout} s:\n"
                                 f"{self.log_tail()}")
            time.sleep(0.05)

    def rss_kib(self) -> int:
        return sum(status_kib(pid, "VmRSS") for pid in self.pids)

    def hwm_kib(self) -> int:
        return sum(status_kib(pid, "VmHWM") for pid in self.pids)

    def pss_kib(self) -> int:
        """Proportional set size: shared pages (libraries) split among their users."""
        return sum(pss_kib(pid) for pid in self.pids)

    def stop(self) -> None:
        for p in self.popen:
            self.procs.stop(p)
        self.popen = []


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def twistd_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c",
            "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


class NPortServer(Server):
    """nport-twisted: ``twistd -n nport`` per group of at most 16 ports."""

    def __init__(self, procs: Processes, workdir: str, paths: list[str], mode: str,
                 taken: set[int], root: str = REPO_ROOT, reactor: str | None = None) -> None:
        super().__init__(procs, workdir)
        self.label = f"nport-twisted ({mode}{', ' + root if root != REPO_ROOT else ''})"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.pop("TWISTED_REACTOR", None)
        from nport_twisted.config.models import MAX_PORTS  # ports one process can present (16)

        groups = [paths[i:i + MAX_PORTS] for i in range(0, len(paths), MAX_PORTS)]
        for g, group in enumerate(groups):
            k = len(group)

            def needed(off: int, k: int = k) -> list[tuple[int, int]]:
                tcp = [23, 80, 443, 4900, *range(950, 950 + k), *range(966, 966 + k),
                       *range(4001, 4001 + k)]
                return [(off + p, socket.SOCK_STREAM) for p in tcp] + [
                    (off + 4800, socket.SOCK_DGRAM), (off + 4000, socket.SOCK_DGRAM)]

            offset = free_base(needed, taken, 20000, 27000)
            if mode == "tcp-server":
                self.data_ports += [offset + 4001 + i for i in range(k)]
            else:
                self.data_ports += [offset + 950 + i for i in range(k)]
                self.command_ports += [offset + 966 + i for i in range(k)]
            d = os.path.join(workdir, f"nport-{mode}-{len(paths)}-{g}-{offset}")
            os.makedirs(d, exist_ok=True)
            logfile = os.path.join(d, "twistd.log")
            self.logs.append(logfile)
            argv = [*twistd_command(), *(["--reactor", reactor] if reactor else []), "-n",
                    "--pidfile=", f"--logfile={logfile}", "nport",
                    "--ports", ",".join(group), "--mode", mode, "--port-offset", str(offset),
                    "--interface", LOOPBACK]
            with open(os.path.join(d, "twistd.out"), "wb") as out:
                self.logs.append(out.name)
                self.popen.append(procs.start(argv, cwd=d, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT))


class Ser2netServer(Server):
    """ser2net 4.x, one process, one YAML connection per pty."""

    def __init__(self, procs: Processes, workdir: str, paths: list[str], chardelay: bool,
                 taken: set[int], nodelay: bool = True, bufsize: int | None = None) -> None:
        super().__init__(procs, workdir)
        self.label = f"ser2net (chardelay {'on' if chardelay else 'off'})"
        n = len(paths)
        base = free_base(lambda b: [(b + i, socket.SOCK_STREAM) for i in range(n)], taken,
                         30000, 39000)
        self.data_ports = [base + i for i in range(n)]
        d = os.path.join(workdir, f"ser2net-{'on' if chardelay else 'off'}-{n}")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "ser2net.yaml")
        with open(conf, "w") as f:
            f.write(ser2net_yaml(paths, self.data_ports, chardelay, nodelay, bufsize))
        out = os.path.join(d, "ser2net.out")
        self.logs.append(out)
        argv = ["ser2net", "-n", "-u", "-c", conf, "-P", os.path.join(d, "ser2net.pid")]
        with open(out, "wb") as o:
            self.popen.append(procs.start(argv, cwd=d, stdin=subprocess.DEVNULL, stdout=o,
                                          stderr=subprocess.STDOUT))


def ser2net_yaml(paths: list[str], ports: list[int], chardelay: bool, nodelay: bool = True,
                 bufsize: int | None = None) -> str:
    """
    ser2net 4.x configuration: raw TCP on loopback to each pty at 921600 8N1,
    no modem lines.  C{nodelay}: TCP_NODELAY on the accepted sockets
    (gensio's ``tcp(nodelay)``), as nport-twisted and our clients use it;
    ser2net's default leaves Nagle on.  C{bufsize}: dev-to-net-bufsize and
    net-to-dev-bufsize (ser2net's default is 64 bytes each way).
    """
    tcp = "tcp(nodelay)" if nodelay else "tcp"
    lines = ["%YAML 1.1", "---", "# generated by nport-twisted benchmarks/run.py", ""]
    for i, (path, port) in enumerate(zip(paths, ports)):
        lines += [
            f"connection: &bench{i + 1}",
            f"    accepter: {tcp},{LOOPBACK},{port}",
            f"    connector: serialdev,{path},921600n81,local",
            "    options:",
            "      kickolduser: true",
            f"      chardelay: {'true' if chardelay else 'false'}",
            *([f"      dev-to-net-bufsize: {bufsize}", f"      net-to-dev-bufsize: {bufsize}"]
              if bufsize else []),
            "",
        ]
    return "\n".join(lines)


# --- the pty echo device ----------------------------------------------------------------------


class EchoDevice:
    def __init__(self, procs: Processes, count: int) -> None:
        self.proc = procs.start([sys.executable, os.path.join(HERE, "echo_device.py"), str(count)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(10):
            raise BenchError("the echo device did not start")
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the echo device exited at start")
        self.paths: list[str] = json.loads(line)["paths"]

    @property
    def pid(self) -> int:
        return self.proc.pid


# --- plain socket clients ---------------------------------------------------------------------


def connect(port: int, timeout: float = 15.0) -> socket.socket:
    """
    Connect to a raw port and check the path end to end with a 1-byte echo;
    retry while the server refuses (a previous client still attached) or
    the device is not open yet.  Returns a socket with nothing pending.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((LOOPBACK, port), timeout=2)
        except OSError as e:
            last = str(e)
            time.sleep(0.1)
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            ok = _probe(s, deadline)
        except OSError as e:
            ok, last = False, str(e)
        if ok:
            return s
        last = last if last != "no attempt" else "closed or no echo"
        s.close()
        time.sleep(0.1)
    raise BenchError(f"port {port}: no echo within {timeout} s ({last})")


def _probe(s: socket.socket, deadline: float) -> bool:
    while time.monotonic() < deadline:
        s.sendall(b"P")
        s.settimeout(0.5)
        try:
            data = s.recv(64)
        except TimeoutError:
            continue  # device not open yet: the byte may be lost; send another
        if not data:
            return False  # refused (max connections) or closed
        drain(s, 0.1)
        return True
    return False


def drain(s: socket.socket, quiet: float) -> int:
    """Read until nothing arrives for C{quiet} seconds; return the bytes discarded."""
    n = 0
    s.settimeout(quiet)
    while True:
        try:
            data = s.recv(65536)
        except TimeoutError:
            return n
        if not data:
            return n
        n += len(data)


def rtt_batch(s: socket.socket, count: int, size: int = 1) -> list[float]:
    """C{count} writes of C{size} bytes, one at a time, each waiting for its whole echo (us)."""
    s.settimeout(5)
    samples: list[float] = []
    clock = time.perf_counter_ns
    data = b"x" * size
    for _ in range(count):
        t0 = clock()
        s.sendall(data)
        got = 0
        while got < size:
            n = len(s.recv(65536))
            if not n:
                raise BenchError("connection closed during the round-trip test")
            got += n
        samples.append((clock() - t0) / 1e3)
    return samples


def rtt_stats(samples: list[float]) -> dict[str, Any]:
    return {"count": len(samples), "median_us": percentile(samples, 50),
            "p99_us": percentile(samples, 99), "max_us": max(samples) if samples else None}


def interleaved(keys: list[str], rounds: int, step: Callable[[str], None]) -> None:
    """Run C{step} for every key, round after round, rotating the order each round."""
    for r in range(rounds):
        k = r % len(keys)
        for key in keys[k:] + keys[:k]:
            step(key)


def throughput_test(s: socket.socket, seconds: float, meter: CpuMeter) -> dict[str, Any]:
    """4 KiB writes with at most TP_WINDOW bytes in flight, for C{seconds}, then drain."""
    from common import pattern

    s.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    clock = time.perf_counter_ns
    load = PortLoad(float("inf"), clock())
    meter.start()
    t0 = clock()
    stop_at = t0 + int(seconds * 1e9)
    drain_deadline = stop_at + int(15e9)
    t_last = t0
    sending = True
    try:
        while True:
            now = clock()
            if sending and now >= stop_at:
                sending = False
                sel.modify(s, selectors.EVENT_READ)
            if not sending and load.received >= load.sent:
                break
            if now > drain_deadline:
                break
            for _key, ev in sel.select(0.5):
                if ev & selectors.EVENT_READ:
                    while True:  # everything there is, in pieces the pattern check takes
                        try:
                            data = s.recv(65536)
                        except BlockingIOError:
                            break
                        if not data:
                            raise BenchError("connection closed during the throughput test")
                        t_last = clock()
                        load.on_received(data, t_last)
                        if len(data) < 65536:
                            break
                if sending and ev & selectors.EVENT_WRITE:
                    while load.outstanding + TP_WRITE <= TP_WINDOW:
                        try:
                            n = s.send(pattern(load.sent, TP_WRITE))
                        except BlockingIOError:
                            break
                        load.on_sent(n, clock())
                        if n < TP_WRITE:
                            break
    finally:
        meter.stop()
        sel.close()
        s.setblocking(True)
    return {"seconds": (t_last - t0) / 1e9, "bytes_sent": load.sent,
            "bytes_received": load.received, "bytes_corrupt": load.corrupt, "cpu_s": meter.cpu}


def tp_total(slices: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput slices summed: MB/s over all slices, CPU seconds per MB echoed."""
    secs = sum(x["seconds"] for x in slices)
    sent = sum(x["bytes_sent"] for x in slices)
    got = sum(x["bytes_received"] for x in slices)
    cpu = sum(x["cpu_s"] for x in slices)
    mb = got / 1e6
    return {"slices": len(slices), "seconds": secs, "bytes_sent": sent, "bytes_received": got,
            "bytes_lost": sent - got, "bytes_corrupt": sum(x["bytes_corrupt"] for x in slices),
            "mb_per_s": mb / secs if secs else 0.0, "cpu_s": cpu,
            "cpu_s_per_mb": cpu / mb if mb else None}


def load_test(socks: list[socket.socket], seconds: float, meter: CpuMeter) -> dict[str, Any]:
    """
    Every socket paced at LOAD_RATE in LOAD_TICK chunks for C{seconds}; then
    drain (see DRAIN_*).  The server's CPU is measured over the paced part only.
    """
    sel = selectors.DefaultSelector()
    clock = time.perf_counter_ns
    for s in socks:
        s.setblocking(False)
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    meter.start()
    t0 = clock()
    loads = [PortLoad(LOAD_RATE, t0) for _ in socks]
    tick = int(LOAD_TICK * 1e9)
    next_tick = t0
    stop_at = t0 + int(seconds * 1e9)
    sending = True
    sending_end = stop_at
    deadline = stop_at + int(DRAIN_MAX * 1e9)
    last_progress = stop_at
    got = 0
    try:
        while True:
            now = clock()
            if sending and now >= stop_at:
                sending = False
                sending_end = last_progress = now
                meter.stop()
                deadline = now + int(DRAIN_MAX * 1e9)
            if sending and now >= next_tick:
                for s, ld in zip(socks, loads):
                    chunk = ld.next_chunk(now)
                    if chunk is None:
                        continue
                    try:
                        n = s.send(chunk)
                    except BlockingIOError:
                        continue  # behind schedule: the next tick sends more
                    ld.on_sent(n, now)
                next_tick += tick
                if next_tick < now:
                    next_tick = now + tick
            if not sending:
                received = sum(ld.received for ld in loads)
                if received != got:
                    got, last_progress = received, now
                if (all(ld.received >= ld.sent for ld in loads) or now > deadline
                        or now - last_progress > DRAIN_IDLE * 1e9):
                    break
                timeout = 0.2
            else:
                timeout = max(0.0, (next_tick - clock()) / 1e9)
            for key, _ev in sel.select(timeout):
                s = socks[key.data]
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                if not data:
                    raise BenchError("a connection closed during the load test")
                loads[key.data].on_received(data, clock())
    finally:
        if sending:
            meter.stop()
        sel.close()
        for s in socks:
            s.setblocking(True)
    out = summarize_load(loads, (sending_end - t0) / 1e9)
    out["drain_seconds"] = (clock() - sending_end) / 1e9
    out["cpu_s"] = meter.cpu
    out["cpu_percent"] = 100 * meter.cpu / (meter.wall or 1)
    return out


# --- the Twisted client subprocess (Real COM and raw) ------------------------------------------


def twisted_client(procs: Processes, servers: dict[str, Server], kinds: dict[str, str],
                   tests: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    """
    Run twisted_client.py against C{servers} ({name: server}); the server's
    CPU is summed over the client's BEGIN/END segments.  Returns
    {name: {test: result}}.
    """
    spec = {"host": LOOPBACK, **tests, "targets": [
        {"name": name, "kind": kinds[name], "data_ports": srv.data_ports,
         "command_ports": srv.command_ports} for name, srv in servers.items()]}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    proc = procs.start([sys.executable, os.path.join(HERE, "twisted_client.py"), json.dumps(spec)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       env=env)
    assert proc.stdout is not None and proc.stderr is not None
    results: dict[str, dict[str, Any]] = {name: {} for name in servers}
    meters = {name: CpuMeter(srv.pids) for name, srv in servers.items()}
    cpu: dict[tuple[str, str], float] = {}
    wall: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout
    # Unbuffered: each BEGIN/END line must be seen when it is written.
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    sel = selectors.DefaultSelector()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(err_fd, selectors.EVENT_READ)
    pending, err = b"", b""
    open_fds = 2
    try:
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"the Twisted client took longer than {timeout:.0f} s")
            for key, _ev in sel.select(min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    open_fds -= 1
                    continue
                if key.fd == err_fd:
                    err = (err + chunk)[-20000:]
                    continue
                pending += chunk
                while b"\n" in pending:
                    raw, pending = pending.split(b"\n", 1)
                    parts = raw.decode().strip().split(" ", 3)
                    if parts[0] == "BEGIN":
                        meters[parts[1]].start()
                    elif parts[0] == "END":
                        meters[parts[1]].stop()
                        k = (parts[1], parts[2])
                        cpu[k] = cpu.get(k, 0.0) + meters[parts[1]].cpu
                        wall[k] = wall.get(k, 0.0) + meters[parts[1]].wall
                    elif parts[0] == "RESULT":
                        name, test, res = parts[1], parts[2], json.loads(parts[3])
                        res["cpu_s"] = c = cpu.get((name, test), 0.0)
                        if test == "load":
                            res["cpu_percent"] = 100 * c / (wall.get((name, test)) or 1)
                        elif test == "tp":
                            mb = res["bytes_received"] / 1e6
                            res["cpu_s_per_mb"] = c / mb if mb else None
                        results[name][test] = res
        proc.wait(10)
    finally:
        sel.close()
        procs.stop(proc)
    if proc.returncode != 0:
        raise BenchError(f"the Twisted client failed ({proc.returncode}):\n"
                         f"{err.decode(errors='replace')[-3000:]}")
    return results


# --- the phases ------------------------------------------------------------------------------------

#: Result keys: nport-twisted, ser2net with chardelay off (the reference) and on, and
#: the --baseline copy of nport-twisted.
NPORT, S2N_OFF, S2N_ON, BASE = "nport", "ser2net_off", "ser2net_on", "baseline"
NPORTS = (NPORT, BASE)


def start_server(name: str, mode: str, cfg: argparse.Namespace, procs: Processes, workdir: str,
                 paths: list[str], taken: set[int]) -> Server:
    if name in NPORTS:
        return NPortServer(procs, workdir, paths, mode, taken,
                           cfg.baseline if name == BASE else REPO_ROOT, cfg.reactor)
    return Ser2netServer(procs, workdir, paths, name == S2N_ON, taken, cfg.ser2net_nodelay,
                         cfg.ser2net_bufsize)


def phase_one_port(cfg: argparse.Namespace, procs: Processes, echo: EchoDevice, workdir: str,
                   names: list[str], taken: set[int], raw: dict[str, Any],
                   tw: dict[str, Any]) -> None:
    """
    Every server with one port, all running at once on their own ptys, and
    measured in turns (round-robin batches), so a busy machine slows them
    alike: round trips, throughput and CPU per MB, RSS.
    """
    servers: dict[str, Server] = {}
    realcom: dict[str, Server] = {}
    paths = iter(echo.paths)
    try:
        for name in names:
            servers[name] = start_server(name, "tcp-server", cfg, procs, workdir, [next(paths)], taken)
        if cfg.realcom:
            for name in names:
                if name in NPORTS:
                    realcom[name] = start_server(name, "realcom", cfg, procs, workdir,
                                                 [next(paths)], taken)
        for srv in [*servers.values(), *realcom.values()]:
            srv.wait_ready()
        log(f"one port each, measured in turns: {', '.join(servers)}"
            + (f" + Real COM {', '.join(realcom)}" if realcom else ""))
        socks = {name: connect(srv.data_ports[0]) for name, srv in servers.items()}
        try:
            for name, srv in servers.items():
                raw[name]["rss_1_kib"] = srv.rss_kib()
            keys = list(servers)
            samples: dict[str, list[float]] = {k: [] for k in keys}
            for k in keys:
                rtt_batch(socks[k], 50)  # warm-up
            batch = 100
            interleaved(keys, math.ceil(cfg.rtt_count / batch),
                        lambda k: samples[k].extend(rtt_batch(socks[k], batch)))
            big: dict[str, list[float]] = {k: [] for k in keys}
            interleaved(keys, max(2, cfg.rtt_count // 200),
                        lambda k: big[k].extend(rtt_batch(socks[k], 10, BIG_WRITE)))
            slices: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
            rounds = max(1, round(cfg.tp_seconds))
            interleaved(keys, rounds, lambda k: slices[k].append(
                throughput_test(socks[k], cfg.tp_seconds / rounds, CpuMeter(servers[k].pids))))
            for k in keys:
                raw[k]["rtt"] = rtt_stats(samples[k])
                raw[k]["rtt_big"] = rtt_stats(big[k])
                raw[k]["tp"] = tp_total(slices[k])
                r, t = raw[k]["rtt"], raw[k]["tp"]
                log(f"  {k}: RTT median {r['median_us']:.0f} us, p99 {r['p99_us']:.0f} us; "
                    f"{BIG_WRITE} B RTT median {raw[k]['rtt_big']['median_us'] / 1000:.2f} ms; "
                    f"{t['mb_per_s']:.2f} MB/s, {fmt(t['cpu_s_per_mb'], 3)} CPU s/MB, "
                    f"lost {t['bytes_lost']}, RSS {raw[k]['rss_1_kib'] / 1024:.1f} MiB")
        finally:
            for s in socks.values():
                s.close()
        if cfg.realcom:
            tw_servers = {k: realcom.get(k, v) for k, v in servers.items()}
            kinds = {k: "realcom" if k in NPORTS else "raw" for k in tw_servers}
            log(f"Twisted client, in turns: {', '.join(tw_servers)}")
            res = twisted_client(procs, tw_servers, kinds, {
                "tests": ["rtt", "tp"], "rtt_count": cfg.rtt_count, "rtt_batch": 100,
                "tp_seconds": cfg.tp_seconds, "tp_rounds": max(1, round(cfg.tp_seconds))},
                tw_timeout(cfg))
            for k, v in res.items():
                tw[k].update(v)
                log_tw(k, v)
    finally:
        for srv in [*servers.values(), *realcom.values()]:
            srv.stop()


def phase_many_ports(cfg: argparse.Namespace, procs: Processes, echo: EchoDevice, workdir: str,
                     name: str, taken: set[int], raw: dict[str, Any], tw: dict[str, Any]) -> None:
    """One server at a time with N ports: RSS, then the paced load (plain sockets, then Twisted)."""
    paths = echo.paths[:cfg.ports]
    srv = start_server(name, "tcp-server", cfg, procs, workdir, paths, taken)
    try:
        srv.wait_ready()
        socks: list[socket.socket] = []
        try:
            for port in srv.data_ports:
                socks.append(connect(port))
            raw["rss_n_kib"] = srv.rss_kib()
            raw["pss_n_kib"] = srv.pss_kib()
            log(f"{name}: {len(socks)} ports connected ({len(srv.pids)} process(es)), "
                f"RSS {raw['rss_n_kib'] / 1024:.1f} MiB; load for {cfg.duration:g} s")
            r = raw["load"] = load_test(socks, cfg.duration, CpuMeter(srv.pids))
            raw["rss_n_after_kib"] = srv.rss_kib()
            raw["hwm_n_kib"] = srv.hwm_kib()
            log(f"  CPU {r['cpu_percent']:.1f} %, latency median {fmt(r['lat_median_ms'], 2)} ms "
                f"p99 {fmt(r['lat_p99_ms'], 2)} ms, lost {r['bytes_lost']}, "
                f"corrupt {r['bytes_corrupt']}, {r['rate_per_port']:.0f} B/s per port")
        finally:
            for s in socks:
                s.close()
        if cfg.realcom and name not in NPORTS:
            log(f"{name}: {cfg.ports} ports, Twisted raw client, load for {cfg.duration:g} s")
            res = twisted_client(procs, {name: srv}, {name: "raw"},
                                 {"tests": ["load"], "load_seconds": cfg.duration}, tw_timeout(cfg))
            tw.update(res[name])
            log_tw(name, res[name])
    finally:
        srv.stop()
    if cfg.realcom and name in NPORTS:
        srv = start_server(name, "realcom", cfg, procs, workdir, paths, taken)
        try:
            srv.wait_ready()
            log(f"{name} Real COM: {cfg.ports} ports ({len(srv.pids)} process(es)), our Real COM "
                f"client, load for {cfg.duration:g} s")
            res = twisted_client(procs, {name: srv}, {name: "realcom"},
                                 {"tests": ["load"], "load_seconds": cfg.duration}, tw_timeout(cfg))
            tw.update(res[name])
            log_tw(name, res[name])
        finally:
            srv.stop()


def tw_timeout(cfg: argparse.Namespace) -> float:
    return 120 + DRAIN_MAX + 3 * (cfg.duration + cfg.tp_seconds) + cfg.rtt_count * 0.01


def log_tw(name: str, res: dict[str, Any]) -> None:
    parts = []
    if "rtt" in res:
        parts.append(f"RTT median {res['rtt']['median_us']:.0f} us, p99 {res['rtt']['p99_us']:.0f} us")
    if "tp" in res:
        parts.append(f"{res['tp']['mb_per_s']:.2f} MB/s, {fmt(res['tp'].get('cpu_s_per_mb'), 3)} "
                     "CPU s/MB")
    if "load" in res:
        r = res["load"]
        parts.append(f"load CPU {r['cpu_percent']:.1f} %, p99 {fmt(r['lat_p99_ms'], 2)} ms, "
                     f"lost {r['bytes_lost']}")
    log(f"  {name} (Twisted client): " + "; ".join(parts))


# --- the table ----------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def get(d: dict[str, Any] | None, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


# (label, path into a result, scale, digits, target kind, target text)
#   kind "le": nport <= ser2net-off; "ge5": nport >= 5x ser2net-off; "le2": nport <= 2x;
#   "lt50": nport < 50 (absolute); "zero": nport == 0; "": information only
ROWS_RAW = [
    ("RTT 1 B, median (us)", ("rtt", "median_us"), 1, 0, "le", "<= ser2net off"),
    ("RTT 1 B, p99 (us)", ("rtt", "p99_us"), 1, 0, "le", "<= ser2net off"),
    (f"RTT {BIG_WRITE} B write, median (ms)", ("rtt_big", "median_us"), 1e-3, 2, "", ""),
    ("echo throughput, 4 KiB writes (MB/s)", ("tp", "mb_per_s"), 1, 2, "ge5", ">= 5x ser2net off"),
    ("server CPU s per MB echoed", ("tp", "cpu_s_per_mb"), 1, 3, "le2", "<= 2x ser2net off"),
    ("RSS, 1 port (MiB)", ("rss_1_kib",), 1 / 1024, 1, "", ""),
    ("RSS, {n} ports (MiB)", ("rss_n_kib",), 1 / 1024, 1, "", ""),
    ("PSS, {n} ports (MiB)", ("pss_n_kib",), 1 / 1024, 1, "", ""),
    ("{n} ports x 92 KB/s: server CPU (% of a core)", ("load", "cpu_percent"), 1, 1, "lt50",
     "< 50 %"),
    ("{n} ports x 92 KB/s: latency median (ms)", ("load", "lat_median_ms"), 1, 2, "", ""),
    ("{n} ports x 92 KB/s: latency p99 (ms)", ("load", "lat_p99_ms"), 1, 2, "", ""),
    ("{n} ports x 92 KB/s: bytes lost (not echoed)", ("load", "bytes_lost"), 1, 0, "zero", "0"),
    ("{n} ports x 92 KB/s: bytes altered", ("load", "bytes_corrupt"), 1, 0, "zero", "0"),
]
ROWS_TW = [r for r in ROWS_RAW if r[1][0] not in ("rss_1_kib", "rss_n_kib", "pss_n_kib", "rtt_big")]


def value(res: dict[str, Any] | None, path: tuple[str, ...], scale: float) -> Any:
    v = get(res, *path)
    if v is not None and scale != 1:
        v = v * scale
    return v


def judge(kind: str, ours: Any, ref: Any) -> str:
    if not kind or ours is None:
        return ""
    if kind == "lt50":
        return "yes" if ours < 50 else "NO"
    if kind == "zero":
        return "yes" if ours == 0 else "NO"
    if ref is None:
        return "n/a"
    if kind == "le":
        return "yes" if ours <= ref else "NO"
    if kind == "ge5":
        return "yes" if ours >= 5 * ref else "NO"
    if kind == "le2":
        return "yes" if ours <= 2 * ref else "NO"
    return ""


def table(title: str, cols: list[str], results: list[dict[str, Any] | None],
          rows: list[Any], n: int, ours_i: int | None, ref_i: int | None,
          ) -> tuple[str, list[dict[str, Any]]]:
    """
    The table; column C{ours_i} (nport-twisted) is judged against column
    C{ref_i} (ser2net, chardelay off).  Returns the text and the verdicts.
    """
    header = ["metric", *cols, "ratio vs ser2net off", "target", "met?"]
    body: list[list[str]] = []
    verdicts: list[dict[str, Any]] = []
    for label, path, scale, digits, kind, target in rows:
        vals = [value(r, path, scale) for r in results]
        ours = vals[ours_i] if ours_i is not None else None
        ref = vals[ref_i] if ref_i is not None else None
        ratio = ours / ref if ours is not None and ref else None
        met = judge(kind, ours, ref)
        lab = label.format(n=n)
        body.append([lab, *[fmt(v, digits) for v in vals],
                     "n/a" if ratio is None else f"{ratio:.2f}", target, met])
        if met:
            verdicts.append({"metric": lab, "nport": ours, "ser2net_off": ref, "target": target,
                             "met": met == "yes"})
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [title, "", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    return "\n".join(out), verdicts


def machine() -> dict[str, str]:
    info = {"nproc": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import twisted
        info["twisted"] = twisted.__version__
    except ImportError:
        pass
    try:
        import nport_twisted
        info["nport_twisted"] = nport_twisted.__version__
    except (ImportError, AttributeError):
        pass
    if shutil.which("ser2net"):
        out = subprocess.run(["ser2net", "-v"], capture_output=True, text=True, timeout=10,
                             check=False)
        info["ser2net"] = (out.stdout or out.stderr).strip().rsplit(" ", 1)[-1]
    info["loadavg_at_start"] = loadavg()
    return info


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short and noisy, for development: 4 ports, 2 s load, 1 s throughput, "
                        "200 round trips (explicit options still win)")
    p.add_argument("--ports", type=int, default=None, help="ports under load (default 64)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of the N-port load (default 30)")
    p.add_argument("--tp-seconds", type=float, default=None,
                   help="seconds of the throughput test (default 5)")
    p.add_argument("--rtt-count", type=int, default=None, help="round trips (default 2000)")
    p.add_argument("--only", choices=("nport", "ser2net"), help="measure one server only")
    p.add_argument("--no-realcom", dest="realcom", action="store_false",
                   help="skip the Real COM comparison")
    p.add_argument("--ser2net-nagle", dest="ser2net_nodelay", action="store_false",
                   help="leave Nagle on in ser2net (its default); by default the runner gives "
                        "its accepters TCP_NODELAY (tcp(nodelay)) as nport-twisted has")
    p.add_argument("--baseline", metavar="DIR",
                   help="also measure the nport-twisted in DIR (a copy of another version, "
                        "e.g. `git archive` of a commit) as an extra column, for before/after "
                        "figures of a change")
    p.add_argument("--reactor", metavar="NAME",
                   help="run nport-twisted with `twistd --reactor NAME` (e.g. asyncio)")
    p.add_argument("--ser2net-bufsize", type=int, metavar="BYTES",
                   help="ser2net's dev-to-net-bufsize and net-to-dev-bufsize (its default: 64)")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE (JSON)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    cfg = p.parse_args(argv)
    quick = {"ports": 4, "duration": 2.0, "tp_seconds": 1.0, "rtt_count": 200}
    full = {"ports": 64, "duration": 30.0, "tp_seconds": 5.0, "rtt_count": 2000}
    for key, default in (quick if cfg.quick else full).items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, default)
    if cfg.ports < 1:
        p.error("--ports must be at least 1")
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    want_nport = cfg.only in (None, "nport")
    want_s2n = cfg.only in (None, "ser2net")
    if want_s2n and not shutil.which("ser2net"):
        print("ser2net is not installed. Install it (Debian/Ubuntu: `sudo apt-get install "
              "ser2net`; this runner installs nothing) or run with --only nport.",
              file=sys.stderr)
        return 2

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    procs = Processes()
    workdir = tempfile.mkdtemp(prefix="nport-bench-")
    started = time.monotonic()
    info = machine()
    log(f"machine: {info}")
    log(f"config: ports={cfg.ports} duration={cfg.duration}s tp={cfg.tp_seconds}s "
        f"rtt={cfg.rtt_count} realcom={cfg.realcom}; work directory {workdir}")
    taken: set[int] = set()
    results: dict[str, Any] = {"machine": info, "config": vars(cfg).copy()}
    names = ([NPORT] if want_nport else []) + ([S2N_OFF, S2N_ON] if want_s2n else [])
    if cfg.baseline:
        names.append(BASE)
    raw: dict[str, Any] = {n: {} for n in names}
    tw: dict[str, Any] = {n: {} for n in names}
    results["raw"], results["realcom"] = raw, tw
    echo_cpu = CpuMeter([])
    try:
        echo = EchoDevice(procs, max(cfg.ports, 2 * len(names)))
        echo_cpu = CpuMeter([echo.pid])
        echo_cpu.start()
        phase_one_port(cfg, procs, echo, workdir, names, taken, raw, tw)
        for name in names:
            phase_many_ports(cfg, procs, echo, workdir, name, taken, raw[name], tw[name])
    except KeyboardInterrupt:
        log("interrupted; stopping every process started")
        procs.stop_all()
        return 130
    except BenchError as e:
        log(f"FAILED: {e}")
        procs.stop_all()
        return 1
    finally:
        echo_cpu.stop()
        procs.stop_all()
        if not cfg.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    results["child_pids"] = procs.started
    results["client"] = {"tp_write": TP_WRITE, "tp_window": TP_WINDOW, "load_rate": LOAD_RATE,
                         "load_tick": LOAD_TICK, "big_write": BIG_WRITE}
    info["loadavg_at_end"] = loadavg()
    results["echo_device_cpu_percent"] = echo_cpu.percent

    titles = {NPORT: "nport-twisted", S2N_OFF: "ser2net (chardelay off)",
              S2N_ON: "ser2net (chardelay on)", BASE: "nport-twisted baseline"}
    keys = names
    cols = [titles[k] for k in keys]
    ours_i = keys.index(NPORT) if NPORT in keys else None
    ref_i = keys.index(S2N_OFF) if S2N_OFF in keys else None
    text1, v1 = table(f"TCP (nport-twisted TCP Server mode vs ser2net raw TCP), plain-socket "
                      f"clients, {cfg.ports} ports under load",
                      cols, [results["raw"].get(k) for k in keys], ROWS_RAW, cfg.ports, ours_i, ref_i)
    print()
    print(text1)
    verdicts = v1
    if cfg.realcom:
        cols2 = [c + " Real COM" if k in NPORTS else c + " raw" for c, k in zip(cols, keys)]
        text2, v2 = table("Real COM (our Real COM client) vs ser2net raw TCP (the same Twisted "
                          "client, plain protocol)",
                          cols2, [results["realcom"].get(k) for k in keys], ROWS_TW, cfg.ports,
                          ours_i, ref_i)
        print()
        print(text2)
        for v in v2:
            v["metric"] = "Real COM: " + v["metric"]
        verdicts += v2
    if want_nport and want_s2n:
        missed = [v["metric"] for v in verdicts if not v["met"]]
        print()
        print(f"targets met: {sum(v['met'] for v in verdicts)}/{len(verdicts)}"
              + (f"; missed: {', '.join(missed)}" if missed else ""))
    print(f"\nrun took {results['seconds']:.0f} s; echo device CPU "
          f"{results['echo_device_cpu_percent']:.1f} % of a core on average")
    results["verdicts"] = verdicts
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
