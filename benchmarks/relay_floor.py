"""
How fast can a relay written in Python be?  The floor under nport-twisted's
1-byte round trip (docs/performance.md, "Round trip: what is left").

Runs, side by side on ptys of one echo device and measured in turns:

  * nport-twisted in TCP Server mode (``python -m nport_twisted``, as deployed);
  * the smallest relay Python can be: this file with ``--relay PORT PTY``, one
    epoll loop, one accepted socket and the pty, ``recv``/``os.write`` and
    ``os.read``/``send`` and nothing else (no framework, no statistics, no
    flow control: not a server anyone should deploy, only the floor);
  * ser2net 4 (chardelay off, TCP_NODELAY) and socat, when installed.

For each: 1-byte round trips (median, p99) and the server's CPU time per
round trip, from ``/proc/PID/task/*/schedstat`` (nanoseconds, not the
10 ms ticks of ``/proc/PID/stat``).  Usage::

    python benchmarks/relay_floor.py [--count 3000] [--rounds 5] [--baseline DIR]

``--baseline DIR`` adds another nport-twisted (a copy of another version, e.g.
``git archive`` of a commit, or an experiment) as one more server in the turns.

Every process it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import glob
import os
import select
import shutil
import socket
import statistics
import sys
import termios
import tty

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def relay(port: int, path: str) -> int:
    """The floor: accept one connection on 127.0.0.1:C{port}, relay it to C{path}."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B921600
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    print("listening", flush=True)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setblocking(False)
    sfd = conn.fileno()
    ep = select.epoll()
    ep.register(sfd, select.EPOLLIN)
    ep.register(fd, select.EPOLLIN)
    recv, send, read, write = conn.recv, conn.send, os.read, os.write
    while True:
        for efd, _ in ep.poll():
            if efd == sfd:
                data = recv(65536)
                if not data:
                    return 0
                write(fd, data)  # a 1-byte echo never fills the pty: no buffering needed
            else:
                try:
                    send(read(fd, 8192))
                except BlockingIOError:
                    pass


class _Cpu:
    """Nanosecond CPU time of a process (all threads) between start() and stop()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.cpu = 0.0
        self._c0 = 0.0

    def _now(self) -> float:
        total = 0
        for name in glob.glob(f"/proc/{self.pid}/task/*/schedstat"):
            try:
                with open(name) as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total / 1e9

    def start(self) -> None:
        self._c0 = self._now()

    def stop(self) -> None:
        self.cpu = self._now() - self._c0


def compare(count: int, rounds: int, baseline: str | None = None) -> int:
    import run as R

    procs = R.Processes()
    try:
        names = ["nport-twisted", "python floor"] + (["nport-twisted baseline"] if baseline else [])
        if shutil.which("ser2net"):
            names.append("ser2net")
        if shutil.which("socat"):
            names.append("socat")
        echo = R.EchoDevice(procs, len(names))
        taken: set[int] = set()
        pids: dict[str, int] = {}
        socks: dict[str, socket.socket] = {}
        nport = R.NPortServer(procs, "/tmp", [echo.paths[0]], "tcp-server", taken)
        servers: list[tuple[str, R.Server]] = [("nport-twisted", nport)]
        if baseline:
            servers.append(("nport-twisted baseline",
                            R.NPortServer(procs, "/tmp", [echo.paths[names.index(
                                "nport-twisted baseline")]], "tcp-server", taken, root=baseline)))
        if "ser2net" in names:
            servers.append(("ser2net", R.Ser2netServer(procs, "/tmp",
                                                       [echo.paths[names.index("ser2net")]],
                                                       False, taken)))
        if "socat" in names:
            servers.append(("socat", R.SocatServer(procs, "/tmp", [echo.paths[-1]], taken)))
        port = R.free_base(lambda b: [(b, socket.SOCK_STREAM)], taken, 50000, 59000)
        floor = procs.start([sys.executable, os.path.abspath(__file__), "--relay", str(port),
                             echo.paths[1]], stdout=__import__("subprocess").PIPE)
        assert floor.stdout is not None
        floor.stdout.readline()
        socks["python floor"] = R.connect(port)
        pids["python floor"] = floor.pid
        for name, srv in servers:
            srv.wait_ready()
            socks[name] = R.connect(srv.data_ports[0], srv.data_hosts[0])
            pids[name] = srv.pids[0]
        for name in names:
            R.rtt_batch(socks[name], 200, name=name)  # warm-up
        got: dict[str, dict[str, list[float]]] = {n: {"med": [], "p99": [], "cpu": []}
                                                  for n in names}
        for r in range(rounds):
            for name in R.rotated(names, r):
                meter = _Cpu(pids[name])
                meter.start()
                samples = R.rtt_batch(socks[name], count, name=name)
                meter.stop()
                stats = R.rtt_stats(samples)
                got[name]["med"].append(stats["median_us"])
                got[name]["p99"].append(stats["p99_us"])
                got[name]["cpu"].append(meter.cpu / count * 1e6)
        print(f"{count} 1-byte round trips x {rounds} rounds, in turns; median of the rounds "
              "(min-max)")
        print("| server | RTT median (us) | RTT p99 (us) | server CPU per round trip (us) |")
        print("|---|---|---|---|")
        for name in names:
            cells = []
            for key in ("med", "p99", "cpu"):
                v = got[name][key]
                cells.append(f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})")
            print(f"| {name} | " + " | ".join(cells) + " |")
        for s in socks.values():
            s.close()
    finally:
        procs.stop_all()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each server in turn")
    parser.add_argument("--baseline", metavar="DIR",
                        help="also measure the nport-twisted in DIR")
    parser.add_argument("--relay", nargs=2, metavar=("PORT", "PTY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        return relay(int(args.relay[0]), args.relay[1])
    return compare(args.count, args.rounds, args.baseline)


if __name__ == "__main__":
    sys.exit(main())
