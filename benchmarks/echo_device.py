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
reading its side), the rest is kept in order and the master is still read,
as a real device keeps receiving, until 1 MiB is held for it; then it is not
read again until it is written, so memory stays bounded and no byte is
dropped.  (Stopping at once would deadlock a relay that writes to the pty
with blocking writes, as socat does.)
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import tty

READ_SIZE = 65536
#: Echo bytes held per pty at most while the relay does not read them; reading stops there.
MAX_PENDING = 1 << 20


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
    pending: dict[int, bytearray] = {}  # echo bytes the master did not take yet
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
            buf = pending.get(fd)
            if buf is not None and ev & EPOLLOUT:
                try:
                    n = write(fd, buf)
                except BlockingIOError:
                    n = 0
                except OSError:
                    n = len(buf)  # slave side gone: nothing to echo to
                del buf[:n]
                if not buf:
                    del pending[fd]
                    buf = None
                    ep.modify(fd, EPOLLIN)
                elif len(buf) < MAX_PENDING:
                    ep.modify(fd, EPOLLIN | EPOLLOUT)
            if not ev & EPOLLIN or (buf is not None and len(buf) >= MAX_PENDING):
                continue
            try:
                data = read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                continue  # EIO: no slave open (cannot happen while we hold it)
            if not data:
                continue
            if buf is not None:
                buf += data  # behind already: keep the order
            else:
                try:
                    n = write(fd, data)
                except BlockingIOError:
                    n = 0
                if n == len(data):
                    continue
                buf = pending[fd] = bytearray(data[n:])
            # Keep reading while behind, up to MAX_PENDING, as a device keeps
            # receiving: a relay whose writes block (socat) then never waits on
            # an echo it has not read yet.
            ep.modify(fd, EPOLLOUT if len(buf) >= MAX_PENDING else EPOLLIN | EPOLLOUT)
    for fd in masters + slaves:
        try:
            os.close(fd)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
