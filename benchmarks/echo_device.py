"""
The benchmark's serial "devices": N pseudo-terminals whose master side
echoes every byte back, all served by this one process (epoll over the
masters).

The servers under test open the slave paths.  Usage::

    python echo_device.py N

prints one JSON line ``{"paths": [...]}`` on stdout, then echoes until its
stdin reaches end of file (the runner exits or closes the pipe) or it gets
SIGTERM/SIGINT.  The slaves stay open here too, so a server closing and
reopening a device (ser2net does that per connection) never hangs the
master up.

Backpressure: when a master cannot take the whole echo (the server is not
reading its side), the rest is kept and that master is not read again until
it is written, so memory stays bounded and no byte is dropped.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tty

READ_SIZE = 65536


def main() -> int:
    count = int(sys.argv[1])
    masters: list[int] = []
    slaves: list[int] = []
    paths: list[str] = []
    for _ in range(count):
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        masters.append(master)
        slaves.append(slave)
        paths.append(os.ttyname(slave))
    print(json.dumps({"paths": paths, "pid": os.getpid()}), flush=True)

    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    ep = select.epoll()
    stdin = sys.stdin.fileno()
    ep.register(stdin, select.EPOLLIN | select.EPOLLHUP)
    for fd in masters:
        ep.register(fd, select.EPOLLIN)
    pending: dict[int, memoryview] = {}
    read, write = os.read, os.write
    EPOLLIN, EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
    while not stop:
        try:
            events = ep.poll(1.0)
        except InterruptedError:
            continue
        for fd, ev in events:
            if fd == stdin:
                if not os.read(stdin, 4096):
                    stop = True
                continue
            if fd in pending:
                if not ev & EPOLLOUT:
                    continue
                buf = pending[fd]
                try:
                    n = write(fd, buf)
                except BlockingIOError:
                    continue
                except OSError:
                    n = len(buf)  # slave side gone: nothing to echo to
                if n < len(buf):
                    pending[fd] = buf[n:]
                else:
                    del pending[fd]
                    ep.modify(fd, EPOLLIN)
                continue
            try:
                data = read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                continue  # EIO: no slave open (cannot happen while we hold it)
            if not data:
                continue
            try:
                n = write(fd, data)
            except BlockingIOError:
                n = 0
            if n < len(data):
                pending[fd] = memoryview(data)[n:]
                ep.modify(fd, EPOLLOUT)
    for fd in masters + slaves:
        try:
            os.close(fd)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
