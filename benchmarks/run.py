"""
nport-twisted against ser2net on the same pty "devices", side by side.

Usage (from the repository root; docs/performance.md has a recorded run)::

    python benchmarks/run.py                 # the full run (about 10 minutes)
    python benchmarks/run.py --quick         # about 50 s, noisy: for development
    python benchmarks/run.py --only nport    # without ser2net
    python benchmarks/run.py --json out.json

One echo process serves the ptys (benchmarks/echo_device.py).  The servers:
nport-twisted (TCP Server, Real COM and RFC 2217 mode), ser2net 4.x with
chardelay off and with its default chardelay on, and socat, each on free
TCP ports on 127.0.0.1.  Measured:

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

nport-twisted serves up to 32 ports per NPort identity and several
identities per process (``--box``, each on its own loopback address), so N
ports run in one process as ceil(N/32) identities; a --baseline version
without ``--box`` runs 16 ports per process, as many processes as needed,
and its CPU and memory are the sums over them.  ser2net serves all ports
from one process; socat needs one process per port.

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
import statistics
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
        self.data_hosts: list[str] = []  # the address it listens on
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


def _tap_source(root: str) -> str:
    try:
        with open(os.path.join(root, "nport_twisted", "tap.py")) as f:
            return f.read()
    except OSError:
        return ""


def _root_ports(root: str) -> tuple[Callable[[int], int], Callable[[int], int], int]:
    """(Real COM data port, command port, ports per identity) of the nport-twisted in C{root}."""
    box = "opt_box" in _tap_source(root)
    from nport_twisted.config.settings import realcom_command_port, realcom_data_port

    return realcom_data_port, realcom_command_port, (32 if box else 16)


#: Loopback addresses of the identities of one process (each identity on its own address).
BOX_HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]


class NPortServer(Server):
    """
    nport-twisted: ``twistd -n nport``.  A version with ``--box`` serves up
    to 32 ports per identity and every identity in one process (each on its
    own loopback address); an older one 16 ports per process, as many
    processes as needed.
    """

    def __init__(self, procs: Processes, workdir: str, paths: list[str], mode: str,
                 taken: set[int], root: str = REPO_ROOT, reactor: str | None = None,
                 consoles: bool = False) -> None:
        super().__init__(procs, workdir)
        self.label = f"nport-twisted ({mode}{', ' + root if root != REPO_ROOT else ''})"
        self.mode = mode
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.pop("TWISTED_REACTOR", None)
        source = _tap_source(root)
        boxes_ok = "opt_box" in source
        data_port, command_port, per_box = _root_ports(root)
        groups = [paths[i:i + per_box] for i in range(0, len(paths), per_box)]
        per_process = [groups] if boxes_ok else [[g] for g in groups]
        self.data_hosts: list[str] = []
        for p_index, boxes in enumerate(per_process):
            k = max(len(g) for g in boxes)

            def needed(off: int, k: int = k) -> list[tuple[int, int]]:
                tcp = [23, 80, 443, 4900, *(data_port(i) for i in range(k)),
                       *(command_port(i) for i in range(k)), *range(4001, 4001 + k)]
                return [(off + p, socket.SOCK_STREAM) for p in tcp] + [
                    (off + 4800, socket.SOCK_DGRAM), (off + 4000, socket.SOCK_DGRAM)]

            offset = free_base(needed, taken, 20000, 27000)
            d = os.path.join(workdir, f"nport-{mode}-{len(paths)}-{p_index}-{offset}")
            os.makedirs(d, exist_ok=True)
            if reactor or not os.path.isfile(os.path.join(root, "nport_twisted", "__main__.py")):
                argv = [*twistd_command(), *(["--reactor", reactor] if reactor else []), "-n",
                        "--pidfile=", f"--logfile={os.path.join(d, 'twistd.log')}", "nport"]
            else:  # as deployed (systemd unit, container): nport-twisted = python -m nport_twisted
                argv = [sys.executable, "-m", "nport_twisted"]
            argv += ["--mode", mode, "--port-offset", str(offset)]
            if not consoles:
                argv += ["--http-port", "0"]
                if "telnet-port" in source:
                    argv += ["--telnet-port", "0"]
            for b, group in enumerate(boxes):
                host = BOX_HOSTS[b]
                if mode == "tcp-server" or mode == "rfc2217":
                    self.data_ports += [offset + 4001 + i for i in range(len(group))]
                else:
                    self.data_ports += [offset + data_port(i) for i in range(len(group))]
                    self.command_ports += [offset + command_port(i) for i in range(len(group))]
                self.data_hosts += [host] * len(group)
                if len(boxes) == 1:
                    argv += ["--ports", ",".join(group), "--interface", host]
                    continue
                conf = os.path.join(d, f"box{b + 1}.ini")
                with open(conf, "w") as f:  # each identity its own MAC (documentation range)
                    f.write(f"[identity]\nmac = 02:00:00:00:00:{b + 1:02x}\n")
                if b == 0:
                    argv += ["--ports", ",".join(group), "--interface", host, "--config", conf]
                else:
                    argv += ["--box", f"ports={','.join(group)};interface={host};config={conf}"]
            self.logs.append(os.path.join(d, "twistd.log"))
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
        self.data_hosts = [LOOPBACK] * n
        d = os.path.join(workdir, f"ser2net-{'on' if chardelay else 'off'}-{n}-{base}")
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


class SocatServer(Server):
    """
    socat, one process per port: ``TCP4-LISTEN`` (TCP_NODELAY) to the pty in
    raw mode, one connection (no fork), so every byte it relays is counted
    in that process.  ``-b4096``: with socat's default 8 KiB transfer
    buffer its blocking 8 KiB writes to the pty stall against the echo
    device (the pty holds about 4 KiB each way) and the throughput test
    hangs; 4 KiB never blocks and is socat at its fastest here.
    """

    def __init__(self, procs: Processes, workdir: str, paths: list[str], taken: set[int]) -> None:
        super().__init__(procs, workdir)
        self.label = "socat"
        n = len(paths)
        base = free_base(lambda b: [(b + i, socket.SOCK_STREAM) for i in range(n)], taken,
                         40000, 49000)
        self.data_ports = [base + i for i in range(n)]
        self.data_hosts = [LOOPBACK] * n
        d = os.path.join(workdir, f"socat-{n}-{base}")
        os.makedirs(d, exist_ok=True)
        out = os.path.join(d, "socat.out")
        self.logs.append(out)
        with open(out, "wb") as o:
            for port, path in zip(self.data_ports, paths):
                argv = ["socat", "-b4096", f"TCP4-LISTEN:{port},bind={LOOPBACK},reuseaddr,nodelay",
                        f"FILE:{path},raw,echo=0,b921600"]
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


def connect(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> socket.socket:
    """
    Connect to a raw port and check the path end to end with a 1-byte echo;
    retry while the server refuses (a previous client still attached) or
    the device is not open yet.  Returns a socket with nothing pending.
    """
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((host, port), timeout=2)
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


def rtt_batch(s: socket.socket, count: int, size: int = 1, name: str = "") -> list[float]:
    """C{count} writes of C{size} bytes, one at a time, each waiting for its whole echo (us)."""
    s.settimeout(5)
    samples: list[float] = []
    clock = time.perf_counter_ns
    data = b"x" * size
    for i in range(count):
        t0 = clock()
        s.sendall(data)
        got = 0
        while got < size:
            try:
                n = len(s.recv(65536))
            except TimeoutError:
                raise BenchError(f"{name or 'a server'}: no echo within 5 s (round trip {i + 1} "
                                 f"of {count}, {got} of {size} bytes back)") from None
            if not n:
                raise BenchError("connection closed during the round-trip test")
            got += n
        samples.append((clock() - t0) / 1e3)
    return samples


def rtt_stats(samples: list[float]) -> dict[str, Any]:
    return {"count": len(samples), "median_us": percentile(samples, 50),
            "p99_us": percentile(samples, 99), "p999_us": percentile(samples, 99.9),
            "max_us": max(samples) if samples else None}


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


def twisted_client(procs: Processes, targets: list[dict[str, Any]], pids: dict[str, list[int]],
                   tests: dict[str, Any], timeout: float) -> dict[str, dict[str, Any]]:
    """
    Run twisted_client.py against C{targets} (name, kind, data_ports,
    command_ports, hosts); the CPU of the processes C{pids[name]} is summed
    over the client's BEGIN/END segments.  Returns {name: {test: result}}.
    """
    spec = {"host": LOOPBACK, **tests, "targets": targets}
    servers = {t["name"]: t for t in targets}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    proc = procs.start([sys.executable, os.path.join(HERE, "twisted_client.py"), json.dumps(spec)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       env=env)
    assert proc.stdout is not None and proc.stderr is not None
    results: dict[str, dict[str, Any]] = {name: {} for name in servers}
    meters = {name: CpuMeter(pids.get(name, [])) for name in servers}
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

#: Server names.  NPORT_*: nport-twisted in TCP Server, Real COM and RFC 2217 mode;
#: BASE_*: the same modes of the --baseline copy; S2N_OFF is the reference ser2net
#: (chardelay off), S2N_ON its default; SOCAT the other reference.
NPORT, NPORT_RC, NPORT_2217 = "nport", "nport_realcom", "nport_rfc2217"
BASE, BASE_RC, BASE_2217 = "baseline", "baseline_realcom", "baseline_rfc2217"
S2N_OFF, S2N_ON, SOCAT = "ser2net_off", "ser2net_on", "socat"
NPORT_IDLE, BASE_IDLE = "nport_consoles", "baseline_consoles"

#: Servers of the one-port phase: name -> (kind, mode, ports).  The Real COM servers have
#: three ports: a plain socket on port 1, our Real COM client on port 2 and a plain
#: socket from the Twisted client process on port 3 (its reference); ser2net (off) a
#: second port for the Twisted raw client.  *_consoles: only their memory is measured.
ONE_PORT: dict[str, tuple[str, str, int]] = {
    NPORT: ("nport", "tcp-server", 1), NPORT_RC: ("nport", "realcom", 3),
    NPORT_2217: ("nport", "rfc2217", 1), NPORT_IDLE: ("nport", "tcp-server", 1),
    S2N_OFF: ("ser2net", "off", 2), S2N_ON: ("ser2net", "on", 1), SOCAT: ("socat", "", 1),
    BASE: ("baseline", "tcp-server", 1), BASE_RC: ("baseline", "realcom", 3),
    BASE_2217: ("baseline", "rfc2217", 1), BASE_IDLE: ("baseline", "tcp-server", 1),
}
#: Plain-socket targets of the one-port phase: round trips on all, throughput (4 KiB
#: writes of the pseudo-random pattern, which holds 0xFF) on all but RFC 2217, whose
#: clients must double IAC.
RTT_TARGETS = [NPORT, NPORT_RC, NPORT_2217, S2N_OFF, S2N_ON, SOCAT, BASE, BASE_RC, BASE_2217]
TP_TARGETS = [NPORT, NPORT_RC, S2N_OFF, S2N_ON, SOCAT, BASE, BASE_RC]
#: Twisted client targets: our Real COM client, a plain socket in the same process (on
#: the same Real COM server), ser2net through a plain Twisted protocol.
RC_CLIENT, RC_SOCKET, S2N_TW, BASE_RC_CLIENT = "rc_client", "rc_socket", "ser2net_tw", "baseline_rc_client"
#: Servers of the N-port phase (plain-socket load; Real COM through the Twisted client).
LOAD_TCP = [NPORT, S2N_OFF, S2N_ON, SOCAT, BASE]
LOAD_TW = [NPORT_RC, S2N_OFF, BASE_RC]


def start_server(name: str, cfg: argparse.Namespace, procs: Processes, workdir: str,
                 paths: list[str], taken: set[int], mode: str | None = None) -> Server:
    kind, default_mode, _ = ONE_PORT[name]
    mode = mode or default_mode
    if kind in ("nport", "baseline"):
        return NPortServer(procs, workdir, paths, mode, taken,
                           cfg.baseline if kind == "baseline" else REPO_ROOT, cfg.reactor,
                           consoles=name in (NPORT_IDLE, BASE_IDLE))
    if kind == "socat":
        return SocatServer(procs, workdir, paths, taken)
    return Ser2netServer(procs, workdir, paths, mode == "on", taken, cfg.ser2net_nodelay,
                         cfg.ser2net_bufsize)


def ready(servers: dict[str, Server], restart: Callable[[str], Server], timeout: float = 30.0,
          tries: int = 3) -> None:
    """
    Wait until every server listens.  One that lost a port to another program
    between the runner's check and its own bind (the machine is shared) is
    started again on other ports, up to C{tries} times.
    """
    for name in list(servers):
        for attempt in range(tries):
            try:
                servers[name].wait_ready(timeout)
                break
            except BenchError as e:
                if "Address already in use" not in str(e) or attempt == tries - 1:
                    raise
                log(f"{name}: a port was taken meanwhile; starting it again on other ports")
                servers[name].stop()
                servers[name] = restart(name)


def wanted(cfg: argparse.Namespace, names: list[str]) -> list[str]:
    """The servers of C{names} this run measures (--only, --baseline, socat installed)."""
    out = []
    for name in names:
        kind = ONE_PORT[name][0]
        if kind == "nport" and cfg.only not in (None, "nport"):
            continue
        if kind == "baseline" and not cfg.baseline:
            continue
        if kind in ("ser2net", "socat") and cfg.only not in (None, "ser2net"):
            continue
        if kind == "socat" and not cfg.socat:
            continue
        if ONE_PORT[name][1] == "realcom" and not cfg.realcom:
            continue
        out.append(name)
    return out


def rotated(names: list[str], r: int) -> list[str]:
    k = r % len(names) if names else 0
    return names[k:] + names[:k]


def phase_one_port(cfg: argparse.Namespace, procs: Processes, echo: EchoDevice, workdir: str,
                   taken: set[int], rep: dict[str, Any]) -> None:
    """
    Every server with one port (Real COM: three), all running at once on
    their own ptys and measured in turns, C{cfg.repeats} times: round trips,
    throughput and CPU per MB, RSS; then the Twisted client's round trips and
    throughput (Real COM client against a plain socket and ser2net).
    """
    names = wanted(cfg, list(ONE_PORT))
    servers: dict[str, Server] = {}
    paths = iter(echo.paths)
    ptys = {name: [next(paths) for _ in range(ONE_PORT[name][2])] for name in names}
    try:
        for name in names:
            servers[name] = start_server(name, cfg, procs, workdir, ptys[name], taken)
        ready(servers, lambda n: start_server(n, cfg, procs, workdir, ptys[n], taken))
        rtt_names = [n for n in RTT_TARGETS if n in servers]
        tp_names = [n for n in TP_TARGETS if n in servers]
        log(f"one port each, measured in turns, {cfg.repeats} repeats: {', '.join(rtt_names)}")
        socks = {n: connect(servers[n].data_ports[0], servers[n].data_hosts[0]) for n in servers}
        try:
            for n, srv in servers.items():
                rep["rss_1_kib"][n] = [srv.rss_kib()]
            for k in rtt_names:
                rtt_batch(socks[k], 50, name=k)  # warm-up
            for r in range(cfg.repeats):
                samples: dict[str, list[float]] = {k: [] for k in rtt_names}
                batch = 100
                for rnd in range(math.ceil(cfg.rtt_count / batch)):
                    for k in rotated(rtt_names, r + rnd):
                        samples[k].extend(rtt_batch(socks[k], batch, name=k))
                big: dict[str, list[float]] = {k: [] for k in rtt_names if k != NPORT_2217}
                for rnd in range(max(2, cfg.rtt_count // 200)):
                    for k in rotated(list(big), r + rnd):
                        big[k].extend(rtt_batch(socks[k], 10, BIG_WRITE, name=k))
                slices: dict[str, list[dict[str, Any]]] = {k: [] for k in tp_names}
                rounds = max(1, round(cfg.tp_seconds))
                for rnd in range(rounds):
                    for k in rotated(tp_names, r + rnd):
                        slices[k].append(throughput_test(socks[k], cfg.tp_seconds / rounds,
                                                         CpuMeter(servers[k].pids)))
                for k in rtt_names:
                    rep["rtt"].setdefault(k, []).append(rtt_stats(samples[k]))
                for k in big:
                    rep["rtt_big"].setdefault(k, []).append(rtt_stats(big[k]))
                for k in tp_names:
                    rep["tp"].setdefault(k, []).append(tp_total(slices[k]))
                for k in rtt_names:
                    x = rep["rtt"][k][-1]
                    t = rep["tp"].get(k, [{}])[-1]
                    log(f"  [{r + 1}/{cfg.repeats}] {k}: RTT median {x['median_us']:.0f} us, p99 "
                        f"{x['p99_us']:.0f}, p99.9 {x['p999_us']:.0f}"
                        + (f"; {t['mb_per_s']:.2f} MB/s, {fmt(t['cpu_s_per_mb'], 4)} CPU s/MB"
                           if t else ""))
                for k in servers:
                    rep["rss_1_busy_kib"].setdefault(k, []).append(servers[k].rss_kib())
        finally:
            for s in socks.values():
                s.close()
        targets: list[dict[str, Any]] = []
        pids: dict[str, list[int]] = {}

        def add(name: str, srv_name: str, kind: str, i: int) -> None:
            if srv_name in servers and len(servers[srv_name].data_ports) > i:
                srv = servers[srv_name]
                targets.append({"name": name, "kind": kind, "data_ports": [srv.data_ports[i]],
                                "command_ports": srv.command_ports[i:i + 1],
                                "hosts": [srv.data_hosts[i]]})
                pids[name] = srv.pids

        add(RC_CLIENT, NPORT_RC, "realcom", 1)
        add(RC_SOCKET, NPORT_RC, "socket", 2)
        add(S2N_TW, S2N_OFF, "raw", 1)
        add(BASE_RC_CLIENT, BASE_RC, "realcom", 1)
        if targets and cfg.realcom:
            for r in range(cfg.repeats):
                log(f"Twisted client [{r + 1}/{cfg.repeats}], in turns: "
                    f"{', '.join(t['name'] for t in targets)}")
                res = twisted_client(procs, targets, pids, {
                    "tests": ["rtt", "tp"], "rtt_count": cfg.rtt_count, "rtt_batch": 100,
                    "tp_seconds": cfg.tp_seconds, "tp_rounds": max(1, round(cfg.tp_seconds)),
                    "rotate": r}, tw_timeout(cfg))
                for k, v in res.items():
                    for test, figures in v.items():
                        rep["tw_" + test].setdefault(k, []).append(figures)
                    log_tw(k, v)
    finally:
        for srv in servers.values():
            srv.stop()


def phase_many_ports(cfg: argparse.Namespace, procs: Processes, echo: EchoDevice, workdir: str,
                     taken: set[int], rep: dict[str, Any]) -> None:
    """
    Every server with N ports, all running at once (the idle ones cost
    nothing), each connected; RSS and PSS; then the paced load, one server
    at a time in rotating order, C{cfg.repeats} times.  Then the Real COM
    servers (and ser2net) under the same load from the Twisted client.
    """
    free = iter(echo.paths[cfg.one_port_ptys:])
    names = wanted(cfg, LOAD_TCP)
    servers: dict[str, Server] = {}
    ptys: dict[str, list[str]] = {}

    def restart(name: str) -> Server:
        return start_server(name, cfg, procs, workdir, ptys[name], taken)

    try:
        for name in names:
            ptys[name] = [next(free) for _ in range(cfg.ports)]
            servers[name] = restart(name)
        ready(servers, restart, 60)
        socks: dict[str, list[socket.socket]] = {}
        try:
            for name, srv in servers.items():
                socks[name] = [connect(p, h) for p, h in zip(srv.data_ports, srv.data_hosts)]
                rep["rss_n_kib"][name] = [srv.rss_kib()]
                rep["pss_n_kib"][name] = [srv.pss_kib()]
                rep["processes_n"][name] = [len(srv.pids)]
                log(f"{name}: {cfg.ports} ports connected ({len(srv.pids)} process(es)), RSS "
                    f"{rep['rss_n_kib'][name][0] / 1024:.1f} MiB, PSS "
                    f"{rep['pss_n_kib'][name][0] / 1024:.1f} MiB")
            for r in range(cfg.repeats):
                for name in rotated(names, r):
                    res = load_test(socks[name], cfg.duration, CpuMeter(servers[name].pids))
                    rep["load"].setdefault(name, []).append(res)
                    rep["rss_n_kib"][name].append(servers[name].rss_kib())
                    log(f"  [{r + 1}/{cfg.repeats}] {name}: load CPU {res['cpu_percent']:.1f} %, "
                        f"latency median {fmt(res['lat_median_ms'], 2)} ms p99 "
                        f"{fmt(res['lat_p99_ms'], 2)} ms, lost {res['bytes_lost']}, "
                        f"altered {res['bytes_corrupt']}")
        finally:
            for sl in socks.values():
                for s in sl:
                    s.close()
        for name in [n for n in names if n != S2N_OFF]:
            servers.pop(name).stop()
        if not cfg.realcom:
            return
        tw_names = wanted(cfg, LOAD_TW)
        for name in tw_names:
            if name not in servers:
                ptys[name] = [next(free) for _ in range(cfg.ports)]
                servers[name] = restart(name)
        ready(servers, restart, 60)
        targets = [{"name": n, "kind": "realcom" if ONE_PORT[n][1] == "realcom" else "raw",
                    "data_ports": servers[n].data_ports, "command_ports": servers[n].command_ports,
                    "hosts": servers[n].data_hosts} for n in tw_names]
        pids = {n: servers[n].pids for n in tw_names}
        for r in range(cfg.repeats):
            log(f"Twisted client load [{r + 1}/{cfg.repeats}]: {', '.join(tw_names)}")
            res = twisted_client(procs, targets, pids, {"tests": ["load"],
                                                        "load_seconds": cfg.duration,
                                                        "rotate": r}, tw_timeout(cfg))
            for k, v in res.items():
                rep["tw_load"].setdefault(k, []).append(v["load"])
                log_tw(k, v)
    finally:
        for srv in servers.values():
            srv.stop()


def tw_timeout(cfg: argparse.Namespace) -> float:
    return 120 + 3 * DRAIN_MAX + 4 * (cfg.duration + cfg.tp_seconds) + cfg.rtt_count * 0.05


def log_tw(name: str, res: dict[str, Any]) -> None:
    parts = []
    if "rtt" in res:
        r = res["rtt"]
        parts.append(f"RTT median {r['median_us']:.0f} us, p99 {r['p99_us']:.0f} us, p99.9 "
                     f"{fmt(r.get('p999_us'), 0)} us")
    if "tp" in res:
        parts.append(f"{res['tp']['mb_per_s']:.2f} MB/s, {fmt(res['tp'].get('cpu_s_per_mb'), 4)} "
                     "CPU s/MB")
    if "load" in res:
        r = res["load"]
        parts.append(f"load CPU {r['cpu_percent']:.1f} %, p99 {fmt(r['lat_p99_ms'], 2)} ms, "
                     f"lost {r['bytes_lost']}")
    log(f"  {name} (Twisted client): " + "; ".join(parts))


# --- summaries and the table --------------------------------------------------------------------------


def fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


#: Keys summed over repeats (counts of bytes and samples); every other number is the median.
_SUMMED = ("count", "bytes_sent", "bytes_received", "bytes_lost", "bytes_corrupt", "chunks",
           "slices")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure per key over the repeats: the median (counts: the sum)."""
    out: dict[str, Any] = {}
    for key in runs[0] if runs else []:
        vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if not vals:
            continue
        out[key] = sum(vals) if key in _SUMMED else statistics.median(vals)
    return out


def spread(runs: list[Any] | None, key: str | None, scale: float) -> tuple[float, float, float] | None:
    """(median, min, max) of one figure over the repeats, or None."""
    if not runs:
        return None
    vals = [(r if key is None else r.get(key)) for r in runs]
    nums = [v * scale for v in vals if isinstance(v, (int, float))]
    if not nums:
        return None
    return statistics.median(nums), min(nums), max(nums)


def cell(s: tuple[float, float, float] | None, digits: int) -> str:
    if s is None:
        return "n/a"
    med, lo, hi = s
    if lo == hi:
        return fmt(med, digits)
    return f"{fmt(med, digits)} ({fmt(lo, digits)}–{fmt(hi, digits)})"


# A row: (label, section, our target, key, scale, digits, reference targets of the columns
# [baseline, ser2net off, ser2net on, socat], judge).  Judges: ("le", (section, target),
# factor): ours <= factor x that median; ("lt"/"le_abs", limit); ("zero",); None.
_TCP_REFS = (BASE, S2N_OFF, S2N_ON, SOCAT)
_RC_REFS = (BASE_RC, S2N_OFF, S2N_ON, SOCAT)
_2217_REFS = (BASE_2217, S2N_OFF, S2N_ON, SOCAT)
_TW_REFS = (BASE_RC_CLIENT, S2N_TW, None, None)
_TWL_REFS = (BASE_RC, S2N_OFF, None, None)
Row = tuple[str, str, str, str | None, float, int, tuple[str | None, ...], Any]


def rows(n: int) -> list[tuple[str, list[Row]]]:
    s2n = ("le", ("rtt", S2N_OFF), 1.0)
    return [
        ("Plain-socket clients (TCP Server, Real COM data port, RFC 2217; ser2net and socat raw TCP)", [
            ("TCP Server RTT 1 B median (us)", "rtt", NPORT, "median_us", 1, 0, _TCP_REFS, s2n),
            ("TCP Server RTT 1 B p99 (us)", "rtt", NPORT, "p99_us", 1, 0, _TCP_REFS,
             ("le", ("rtt", S2N_OFF, "p99_us"), 1.0)),
            ("TCP Server RTT 1 B p99.9 (us)", "rtt", NPORT, "p999_us", 1, 0, _TCP_REFS, None),
            ("Real COM RTT 1 B median (us)", "rtt", NPORT_RC, "median_us", 1, 0, _RC_REFS, s2n),
            ("Real COM RTT 1 B p99 (us)", "rtt", NPORT_RC, "p99_us", 1, 0, _RC_REFS,
             ("le", ("rtt", S2N_OFF, "p99_us"), 1.0)),
            ("Real COM RTT 1 B p99.9 (us)", "rtt", NPORT_RC, "p999_us", 1, 0, _RC_REFS, None),
            ("RFC 2217 RTT 1 B median (us)", "rtt", NPORT_2217, "median_us", 1, 0, _2217_REFS,
             ("le", ("rtt", NPORT), 1.05)),
            ("RFC 2217 RTT 1 B p99 (us)", "rtt", NPORT_2217, "p99_us", 1, 0, _2217_REFS,
             ("le", ("rtt", NPORT, "p99_us"), 1.05)),
            ("RFC 2217 RTT 1 B p99.9 (us)", "rtt", NPORT_2217, "p999_us", 1, 0, _2217_REFS, None),
            (f"TCP Server RTT {BIG_WRITE} B median (ms)", "rtt_big", NPORT, "median_us", 1e-3, 2,
             _TCP_REFS, None),
            ("TCP Server echo throughput, 4 KiB writes (MB/s)", "tp", NPORT, "mb_per_s", 1, 2,
             _TCP_REFS, None),
            ("TCP Server CPU s per MB echoed", "tp", NPORT, "cpu_s_per_mb", 1, 4, _TCP_REFS,
             ("le", ("tp", SOCAT, "cpu_s_per_mb"), 1.3)),
            ("Real COM echo throughput (MB/s)", "tp", NPORT_RC, "mb_per_s", 1, 2, _RC_REFS, None),
            ("Real COM CPU s per MB echoed", "tp", NPORT_RC, "cpu_s_per_mb", 1, 4, _RC_REFS,
             ("le", ("tp", SOCAT, "cpu_s_per_mb"), 1.3)),
            ("RSS, 1 port idle (connected, no traffic yet), consoles off (MiB)", "rss_1_kib",
             NPORT, None, 1 / 1024, 1, _TCP_REFS, ("le_abs", 32)),
            ("RSS, 1 port, consoles off, after each repeat's tests (MiB)", "rss_1_busy_kib",
             NPORT, None, 1 / 1024, 1, _TCP_REFS, None),
            ("RSS, 1 port idle, web + telnet consoles on (MiB)", "rss_1_kib", NPORT_IDLE, None,
             1 / 1024, 1, (BASE_IDLE, None, None, None), None),
            (f"RSS, {n} ports (MiB)", "rss_n_kib", NPORT, None, 1 / 1024, 1, _TCP_REFS,
             ("le_abs", 48) if n <= 64 else None),
            (f"PSS, {n} ports (MiB)", "pss_n_kib", NPORT, None, 1 / 1024, 1, _TCP_REFS, None),
            (f"processes for {n} ports", "processes_n", NPORT, None, 1, 0, _TCP_REFS, None),
            (f"{n} ports x 92 KB/s: server CPU (% of a core)", "load", NPORT, "cpu_percent", 1, 1,
             _TCP_REFS, ("lt", 15)),
            (f"{n} ports x 92 KB/s: latency median (ms)", "load", NPORT, "lat_median_ms", 1, 2,
             _TCP_REFS, None),
            (f"{n} ports x 92 KB/s: latency p99 (ms)", "load", NPORT, "lat_p99_ms", 1, 2,
             _TCP_REFS, None),
            (f"{n} ports x 92 KB/s: bytes lost", "load", NPORT, "bytes_lost", 1, 0, _TCP_REFS,
             ("zero",)),
            (f"{n} ports x 92 KB/s: bytes altered", "load", NPORT, "bytes_corrupt", 1, 0,
             _TCP_REFS, ("zero",)),
        ]),
        ("Twisted client process: our Real COM client (Real COM mode) against ser2net raw TCP "
         "(plain Twisted protocol) and a plain socket on the same Real COM server", [
            ("Real COM client RTT 1 B median (us)", "tw_rtt", RC_CLIENT, "median_us", 1, 0,
             _TW_REFS, ("le", ("tw_rtt", RC_SOCKET), 1.2)),
            ("Real COM client RTT 1 B p99 (us)", "tw_rtt", RC_CLIENT, "p99_us", 1, 0, _TW_REFS,
             ("le", ("tw_rtt", RC_SOCKET, "p99_us"), 1.2)),
            ("Real COM client RTT 1 B p99.9 (us)", "tw_rtt", RC_CLIENT, "p999_us", 1, 0,
             _TW_REFS, None),
            ("  plain socket, same server: RTT median (us)", "tw_rtt", RC_SOCKET, "median_us", 1,
             0, (None, None, None, None), None),
            ("  plain socket, same server: RTT p99 (us)", "tw_rtt", RC_SOCKET, "p99_us", 1, 0,
             (None, None, None, None), None),
            ("Real COM client echo throughput (MB/s)", "tw_tp", RC_CLIENT, "mb_per_s", 1, 2,
             _TW_REFS, None),
            ("Real COM server CPU s per MB echoed", "tw_tp", RC_CLIENT, "cpu_s_per_mb", 1, 4,
             _TW_REFS, None),
            (f"Real COM {n} ports x 92 KB/s: server CPU (% of a core)", "tw_load", NPORT_RC,
             "cpu_percent", 1, 1, _TWL_REFS, ("lt", 15)),
            (f"Real COM {n} ports x 92 KB/s: latency median (ms)", "tw_load", NPORT_RC,
             "lat_median_ms", 1, 2, _TWL_REFS, None),
            (f"Real COM {n} ports x 92 KB/s: latency p99 (ms)", "tw_load", NPORT_RC,
             "lat_p99_ms", 1, 2, _TWL_REFS, None),
            (f"Real COM {n} ports x 92 KB/s: bytes lost", "tw_load", NPORT_RC, "bytes_lost", 1,
             0, _TWL_REFS, ("zero",)),
            (f"Real COM {n} ports x 92 KB/s: bytes altered", "tw_load", NPORT_RC,
             "bytes_corrupt", 1, 0, _TWL_REFS, ("zero",)),
        ]),
    ]


def _ratio(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> str:
    if a is None or b is None or not b[0]:
        return "n/a"
    return f"{a[0] / b[0]:.2f}"


def judge_row(rep: dict[str, Any], row: Row, ours: tuple[float, float, float] | None
              ) -> tuple[str, str]:
    """(target text, "yes"/"NO"/"n/a"/"") for one row."""
    spec = row[7]
    if spec is None:
        return "", ""
    kind = spec[0]
    if kind == "zero":
        return "0", "" if ours is None else ("yes" if ours[2] == 0 else "NO")
    if kind in ("lt", "le_abs"):
        text = f"{'<' if kind == 'lt' else '<='} {spec[1]}"
        if ours is None:
            return text, "n/a"
        return text, "yes" if (ours[0] < spec[1] if kind == "lt" else ours[0] <= spec[1]) else "NO"
    ref_path, factor = spec[1], spec[2]
    section, target = ref_path[0], ref_path[1]
    key = ref_path[2] if len(ref_path) > 2 else row[3]
    ref = spread(rep[section].get(target), key, row[4])
    text = f"<= {factor:g}x {target}"
    if ours is None or ref is None:
        return text, "n/a"
    ratio = f" ({ours[0] / ref[0]:.2f})" if ref[0] else ""
    return text + ratio, "yes" if ours[0] <= factor * ref[0] else "NO"


def table(rep: dict[str, Any], n: int) -> tuple[str, list[dict[str, Any]]]:
    """The tables (markdown) and the verdicts."""
    header = ["metric", "nport-twisted", "baseline", "ser2net (chardelay off)",
              "ser2net (chardelay on)", "socat", "x ser2net off", "x socat", "target", "met?"]
    out: list[str] = []
    verdicts: list[dict[str, Any]] = []
    for title, spec_rows in rows(n):
        body: list[list[str]] = []
        for row in spec_rows:
            label, section, target, key, scale, digits, refs, _ = row
            ours = spread(rep[section].get(target), key, scale)
            if ours is None and all(spread(rep[section].get(r), key, scale) is None
                                    for r in refs if r):
                continue
            cols = [spread(rep[section].get(r), key, scale) if r else None for r in refs]
            text, met = judge_row(rep, row, ours)
            body.append([label, cell(ours, digits), *(cell(c, digits) if r else ""
                                                       for c, r in zip(cols, refs)),
                         _ratio(ours, cols[1]) if refs[1] else "",
                         _ratio(ours, cols[3]) if refs[3] else "", text, met])
            if met:
                verdicts.append({"metric": label, "nport": ours, "target": text,
                                 "met": met == "yes"})
        if not body:
            continue
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

        out += ["", title, "", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in body]
    return "\n".join(out), verdicts


def compat(rep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """
    The per-server summaries of earlier runners ("raw" and "realcom"
    sections: rtt, tp, load, RSS), each figure the median of the repeats.
    """
    raw: dict[str, Any] = {}
    realcom: dict[str, Any] = {}
    for name in set(rep["rtt"]) | set(rep["load"]) | set(rep["rss_1_kib"]):
        d: dict[str, Any] = {}
        for test in ("rtt", "rtt_big", "tp", "load"):
            if rep[test].get(name):
                d[test] = summary(rep[test][name])
        for key in ("rss_1_kib", "rss_1_busy_kib", "rss_n_kib", "pss_n_kib"):
            if rep[key].get(name):
                d[key] = statistics.median(rep[key][name])
        raw[name] = d
    for name, src in ((NPORT, RC_CLIENT), (BASE, BASE_RC_CLIENT), (S2N_OFF, S2N_TW),
                      (RC_SOCKET, RC_SOCKET)):
        d = {}
        for test in ("rtt", "tp"):
            if rep["tw_" + test].get(src):
                d[test] = summary(rep["tw_" + test][src])
        load_src = {NPORT: NPORT_RC, BASE: BASE_RC, S2N_OFF: S2N_OFF}.get(name)
        if load_src and rep["tw_load"].get(load_src):
            d["load"] = summary(rep["tw_load"][load_src])
        if d:
            realcom[name] = d
    return raw, realcom


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
    if shutil.which("socat"):
        out = subprocess.run(["socat", "-V"], capture_output=True, text=True, timeout=10,
                             check=False)
        for line in out.stdout.splitlines():
            if "socat version" in line:
                info["socat"] = line.split("version", 1)[1].split()[0]
                break
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
                        "200 round trips, 1 repeat (explicit options still win)")
    p.add_argument("--ports", type=int, default=None, help="ports under load (default 64)")
    p.add_argument("--repeats", type=int, default=None,
                   help="measure everything this many times, interleaved; tables show the "
                        "median (min-max) of the repeats (default 3)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of each N-port load (default 20)")
    p.add_argument("--tp-seconds", type=float, default=None,
                   help="seconds of each throughput test (default 3)")
    p.add_argument("--rtt-count", type=int, default=None,
                   help="round trips per target and repeat (default 2000)")
    p.add_argument("--only", choices=("nport", "ser2net"),
                   help="measure one side only (ser2net: ser2net and socat)")
    p.add_argument("--no-realcom", dest="realcom", action="store_false",
                   help="skip Real COM mode and the Twisted client")
    p.add_argument("--no-socat", dest="socat", action="store_false",
                   help="skip socat (also skipped when socat is not installed)")
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
    quick = {"ports": 4, "duration": 2.0, "tp_seconds": 1.0, "rtt_count": 200, "repeats": 1}
    full = {"ports": 64, "duration": 20.0, "tp_seconds": 3.0, "rtt_count": 2000, "repeats": 3}
    for key, default in (quick if cfg.quick else full).items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, default)
    if cfg.ports < 1:
        p.error("--ports must be at least 1")
    if cfg.repeats < 1:
        p.error("--repeats must be at least 1")
    if cfg.socat and not shutil.which("socat"):
        log("socat is not installed (Debian: apt-get install socat): no socat column")
        cfg.socat = False
    return cfg


REPEATED = ("rtt", "rtt_big", "tp", "load", "tw_rtt", "tw_tp", "tw_load", "rss_1_kib",
            "rss_1_busy_kib",
            "rss_n_kib", "pss_n_kib", "processes_n")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
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
    log(f"config: ports={cfg.ports} repeats={cfg.repeats} duration={cfg.duration}s "
        f"tp={cfg.tp_seconds}s rtt={cfg.rtt_count} realcom={cfg.realcom} socat={cfg.socat}; "
        f"work directory {workdir}")
    taken: set[int] = set()
    rep: dict[str, Any] = {k: {} for k in REPEATED}
    results: dict[str, Any] = {"machine": info, "config": vars(cfg).copy(), "repeats": rep}
    cfg.one_port_ptys = sum(ONE_PORT[n][2] for n in wanted(cfg, list(ONE_PORT)))
    load_servers = len(set(wanted(cfg, LOAD_TCP)) | set(wanted(cfg, LOAD_TW)))
    echo_cpu = CpuMeter([])
    try:
        echo = EchoDevice(procs, cfg.one_port_ptys + cfg.ports * load_servers)
        echo_cpu = CpuMeter([echo.pid])
        echo_cpu.start()
        phase_one_port(cfg, procs, echo, workdir, taken, rep)
        info["loadavg_after_one_port"] = loadavg()
        phase_many_ports(cfg, procs, echo, workdir, taken, rep)
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
    results["raw"], results["realcom"] = compat(rep)
    text, verdicts = table(rep, cfg.ports)
    print(f"Every figure: median of {cfg.repeats} interleaved repeat(s), (min–max) when they differ;"
          f" load average {info['loadavg_at_start']} at the start, {info['loadavg_at_end']} at "
          "the end.")
    print(text)
    if verdicts:
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
