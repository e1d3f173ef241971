"""
Shared pieces of the benchmark: the test pattern, per-port load bookkeeping
(pacing, chunk latency, byte checks), percentiles and /proc sampling.

Used by run.py (plain-socket clients) and twisted_client.py (the Real COM
client and a raw Twisted client), so both measure the same way.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections import deque

#: 921,600 baud, 8N1: 10 bits per byte on the wire.
LOAD_RATE = 92_160  # bytes per second per port
#: Pacing tick of the load generators: one chunk per port every 10 ms (~922 bytes).
LOAD_TICK = 0.010
#: Throughput test: write size and bytes allowed in flight (sent, not yet echoed).
TP_WRITE = 4096
TP_WINDOW = 256 * 1024
#: After a paced load: wait for the echoes until all are back, or nothing came for
#: DRAIN_IDLE seconds, or DRAIN_MAX seconds passed; what is missing then is "lost".
DRAIN_IDLE = 5.0
DRAIN_MAX = 120.0

_PATTERN_LEN = 1 << 16
# Byte p of every stream is _BLOCK[p % 64 KiB]: pseudo-random (fixed seed), so a
# reordered, repeated or altered piece is noticed.  Doubled for slicing.
_BLOCK = random.Random(2217).randbytes(_PATTERN_LEN)
_PATTERN = _BLOCK + _BLOCK


def pattern(offset: int, length: int) -> memoryview:
    """Bytes C{offset} .. C{offset + length} of the endless test stream (length <= 64 KiB)."""
    start = offset % _PATTERN_LEN
    return memoryview(_PATTERN)[start:start + length]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of C{values}; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class PortLoad:
    """
    One port under paced load: what is due, what was sent when, what came back.

    The echo device returns the byte stream unchanged, so chunk k has
    arrived once the received byte count reaches its end offset; its latency
    is that moment minus the moment it was handed to the socket.  Received
    bytes are compared with the pattern (any difference counts as corrupt).
    """

    __slots__ = ("_chunks", "corrupt", "latencies", "rate", "received", "sent", "start")

    def __init__(self, rate: float, start_ns: int) -> None:
        self.rate = rate
        self.start = start_ns
        self.sent = 0
        self.received = 0
        self.corrupt = 0
        self._chunks: deque[tuple[int, int]] = deque()  # (end offset, send time ns)
        self.latencies: list[float] = []  # seconds

    def due(self, now_ns: int) -> int:
        """Bytes to send now to stay on the paced schedule."""
        target = int(self.rate * (now_ns - self.start) / 1e9)
        return max(0, min(target - self.sent, _PATTERN_LEN))

    def next_chunk(self, now_ns: int) -> memoryview | None:
        n = self.due(now_ns)
        if not n:
            return None
        return pattern(self.sent, n)

    def on_sent(self, n: int, now_ns: int) -> None:
        self.sent += n
        self._chunks.append((self.sent, now_ns))

    def on_received(self, data: bytes, now_ns: int) -> None:
        n = len(data)
        if data != pattern(self.received, n):
            self.corrupt += n
        self.received += n
        chunks = self._chunks
        while chunks and chunks[0][0] <= self.received:
            _, t = chunks.popleft()
            self.latencies.append((now_ns - t) / 1e9)

    @property
    def outstanding(self) -> int:
        return self.sent - self.received


def summarize_load(ports: list[PortLoad], seconds: float) -> dict[str, float | int | None]:
    """Totals of a paced load run."""
    lat = [x for p in ports for x in p.latencies]
    sent = sum(p.sent for p in ports)
    received = sum(p.received for p in ports)
    return {
        "ports": len(ports),
        "seconds": seconds,
        "bytes_sent": sent,
        "bytes_received": received,
        "bytes_lost": sent - received,
        "bytes_corrupt": sum(p.corrupt for p in ports),
        "rate_per_port": sent / len(ports) / seconds if ports and seconds else 0,
        "lat_median_ms": _ms(percentile(lat, 50)),
        "lat_p99_ms": _ms(percentile(lat, 99)),
        "lat_max_ms": _ms(max(lat) if lat else None),
        "chunks": len(lat),
    }


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


# --- /proc --------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of a process, all its threads (/proc/PID/stat); 0, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0, 0.0
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK  # fields 14 and 15 of stat(5)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (/proc/PID/stat); 0 if it is gone."""
    return sum(cpu_split(pid))


def status_kib(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, VmHWM); 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class CpuMeter:
    """CPU seconds used by a group of processes between start() and stop()."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = list(pids)
        self._t0 = 0.0
        self._c0 = 0.0
        self.cpu = 0.0
        self.wall = 0.0

    def _total(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def start(self) -> None:
        self._c0 = self._total()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.cpu = self._total() - self._c0
        self.wall = time.perf_counter() - self._t0

    @property
    def percent(self) -> float:
        """CPU use in percent of one core."""
        return 100 * self.cpu / self.wall if self.wall else 0.0
