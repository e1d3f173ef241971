"""
Where the CPU of the N-port load goes: user and system time of each server
and its read(2)/write(2) calls per chunk (docs/performance.md, "64 ports
at 92 KB/s").

Usage (from the repository root, with the interpreter that runs nport-twisted)::

    python benchmarks/load_profile.py                  # 64 ports, 10 s, nport and ser2net
    python benchmarks/load_profile.py --only nport --ports 16

It uses run.py's echo device, servers and paced load (every port 92,160 B/s
in 10 ms chunks), one server at a time, and prints for each: CPU in % of one
core split into user and system time (/proc/PID/stat), the read(2) and
write(2) calls per chunk (/proc/PID/io syscr and syscw, which count the
read and write families but not recv/send: for nport-twisted they are its
pty calls, one of each per chunk when nothing is held back; ser2net reads
and writes its sockets with read/write too), and bytes lost.  socat is left
out: one socat process serves one connection and exits with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402  (benchmarks/run.py: servers, echo device, load)
from common import CpuMeter, cpu_split  # noqa: E402

def user_system(pids: list[int]) -> tuple[float, float]:
    """utime and stime in seconds, summed over C{pids} (all threads)."""
    splits = [cpu_split(pid) for pid in pids]
    return sum(u for u, _ in splits), sum(s for _, s in splits)


def io_calls(pids: list[int]) -> tuple[int, int]:
    """
    read(2)- and write(2)-family calls so far (syscr, syscw of /proc/PID/io;
    recv/send on sockets are not counted there), kept by the kernel at no
    cost to the process (strace would slow it, and a slowed relay reads two
    chunks at once more often).
    """
    reads = writes = 0
    for pid in pids:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key == "syscr":
                    reads += int(value)
                elif key == "syscw":
                    writes += int(value)
    return reads, writes


def profile(name: str, srv: Any, seconds: float) -> None:
    """The load on every port of C{srv}: CPU split into user and system, I/O calls per chunk."""
    socks = [run.connect(p, h) for p, h in zip(srv.data_ports, srv.data_hosts)]
    try:
        u0, s0 = user_system(srv.pids)
        r0, w0 = io_calls(srv.pids)
        t0 = time.perf_counter()
        res = run.load_test(socks, seconds, CpuMeter(srv.pids))
        u1, s1 = user_system(srv.pids)
        r1, w1 = io_calls(srv.pids)
        wall = time.perf_counter() - t0
    finally:
        for s in socks:
            s.close()
    chunks = len(socks) * 100 * seconds  # one 10 ms chunk per port, each way through the server
    print(f"{name}: {len(socks)} ports, CPU {100 * (u1 - u0 + s1 - s0) / wall:.1f} % of a core "
          f"(user {100 * (u1 - u0) / wall:.1f} %, system {100 * (s1 - s0) / wall:.1f} %); "
          f"read(2) {(r1 - r0) / chunks:.2f} and write(2) {(w1 - w0) / chunks:.2f} calls per "
          f"chunk ({chunks:.0f} chunks); lost {res['bytes_lost']}, altered "
          f"{res['bytes_corrupt']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ports", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0, help="load seconds per server")
    p.add_argument("--only", choices=("nport", "ser2net"))
    args = p.parse_args(argv)
    names = ["nport", "ser2net_off"]
    if args.only:
        names = ["nport" if args.only == "nport" else "ser2net_off"]
    if "ser2net_off" in names and shutil.which("ser2net") is None:
        print("ser2net is not installed (Debian: apt-get install ser2net); use --only nport",
              file=sys.stderr)
        return 2
    cfg = run.parse_args(["--ports", str(args.ports)])
    procs = run.Processes()
    work = tempfile.mkdtemp(prefix="nport-load-profile-")
    try:
        echo = run.EchoDevice(procs, args.ports * len(names))
        free = iter(echo.paths)
        ptys = {n: [next(free) for _ in range(args.ports)] for n in names}
        taken: set[int] = set()

        def start(name: str) -> Any:
            return run.start_server(name, cfg, procs, work, ptys[name], taken)

        servers = {n: start(n) for n in names}
        run.ready(servers, start, 60)
        for name, srv in servers.items():
            profile(name, srv, args.seconds)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
