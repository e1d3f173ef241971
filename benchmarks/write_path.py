"""
What Twisted's write path costs per write event towards a serial device
(docs/performance.md, "CPU per MB").

A pty takes about 4 KiB per write, so a relay that received 64 KiB from the
network writes it to the device in about 16 writable events.  This measures
one such event through Twisted's layers (the reactor's C{_doReadOrWrite},
C{FileDescriptor.doWrite} and its buffer bookkeeping, C{writeSomeData},
C{fdesc.writeToFD}) against a bare C{os.write} of the same bytes, on a pipe
shrunk to 4 KiB (so each write takes 4 KiB, as a pty does), drained after
every event.  C{startWriting}/C{stopWriting} (two epoll_ctl calls per
buffer) are left out of both.  Usage::

    python benchmarks/write_path.py [--events 3000] [--repeats 7]

Prints the minimum and median over the repeats, nanoseconds per event.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

F_SETPIPE_SZ = 1031
CHUNK = b"x" * 65536


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from twisted.internet import abstract, fdesc

    from nport_twisted._reactor import FastEPollReactor

    if FastEPollReactor is None:
        print("needs epoll (Linux)", file=sys.stderr)
        return 2
    reactor = FastEPollReactor()
    rd, wr = os.pipe()
    fcntl.fcntl(wr, F_SETPIPE_SZ, 4096)
    os.set_blocking(wr, False)
    os.set_blocking(rd, False)

    class Device(abstract.FileDescriptor):
        """A SerialPort's write side: writeSomeData is fdesc.writeToFD on its descriptor."""

        def fileno(self) -> int:
            return wr

        def writeSomeData(self, data: bytes) -> object:
            return fdesc.writeToFD(wr, data)

        def startWriting(self) -> None:
            pass

        def stopWriting(self) -> None:
            pass

    device = Device(reactor=reactor)
    device.connected = 1

    def twisted_path(n: int) -> float:
        elapsed = events = 0
        while events < n:
            device.write(CHUNK)
            while device.dataBuffer or device._tempDataLen:
                t0 = time.perf_counter_ns()
                reactor._doReadOrWrite(device, wr, select.EPOLLOUT)
                elapsed += time.perf_counter_ns() - t0
                events += 1
                os.read(rd, 65536)
        return elapsed / events

    def bare(n: int) -> float:
        elapsed = events = 0
        view = memoryview(CHUNK)
        while events < n:
            offset = 0
            while offset < len(CHUNK):
                t0 = time.perf_counter_ns()
                offset += os.write(wr, view[offset:])
                elapsed += time.perf_counter_ns() - t0
                events += 1
                os.read(rd, 65536)
        return elapsed / events

    got: dict[str, list[float]] = {"Twisted write path": [], "bare os.write": []}
    for _ in range(args.repeats):  # interleaved
        got["Twisted write path"].append(twisted_path(args.events))
        got["bare os.write"].append(bare(args.events))
    for name, values in got.items():
        print(f"{name}: {min(values):.0f} ns per 4 KiB write event (min), "
              f"{statistics.median(values):.0f} (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
