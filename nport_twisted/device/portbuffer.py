# -*- test-case-name: tests.test_portbuffer -*-
"""
Port buffering (NPort 6000): where a serial channel keeps the serial input
that arrives while no host holds its port, until the next host takes it.

Two stores with one interface, both bounded by their capacity: once full,
newer bytes are refused (the channel drops and counts them), so what is
kept is the first stretch of the stream after the last host left, without a
gap (ours: MOXA does not document what a full buffer does).

  L{MemoryBuffer}  chunks in memory.
  L{FileBuffer}    a file beside the settings file: an 8-byte header (how
                   much of the data was already delivered, little-endian)
                   and the data.  It survives a restart of the service: what
                   was not delivered goes to the first host after it.  Not
                   fsync'ed (each write would cost a disk flush): a power
                   loss may lose the last seconds.  A failing disk (full, EIO)
                   is logged once and the bytes are refused.
"""

from __future__ import annotations

import os
import struct
from collections import deque

import attrs
from twisted.logger import Logger

_HEADER = struct.Struct("<Q")


@attrs.frozen
class BufferSpec:
    """What a port's buffering is: C{capacity} bytes in memory, or in C{path}."""

    capacity: int
    path: str | None = None  # None: in memory


class PortBuffer:
    """The interface of both stores."""

    capacity: int

    @property
    def size(self) -> int:
        raise NotImplementedError

    def append(self, data: bytes) -> int:
        """Keep what fits of C{data}; return how many bytes were kept."""
        raise NotImplementedError

    def peek(self, n: int) -> bytes:
        """Up to C{n} of the oldest bytes, without removing them."""
        raise NotImplementedError

    def consume(self, n: int) -> None:
        """Remove the C{n} oldest bytes (delivered)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the store (a file keeps what it holds)."""


class MemoryBuffer(PortBuffer):
    """Serial input kept in memory (a deque of chunks)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: deque[bytes] = deque()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, data: bytes) -> int:
        room = self.capacity - self._size
        kept = data if len(data) <= room else data[:max(0, room)]
        if kept:
            self._chunks.append(kept)
            self._size += len(kept)
        return len(kept)

    def peek(self, n: int) -> bytes:
        out = bytearray()
        for chunk in self._chunks:
            if len(out) >= n:
                break
            out += chunk[:n - len(out)]
        return bytes(out)

    def consume(self, n: int) -> None:
        n = min(n, self._size)
        self._size -= n
        while n:
            first = self._chunks[0]
            if len(first) <= n:
                self._chunks.popleft()
                n -= len(first)
            else:
                self._chunks[0] = first[n:]
                n = 0


class FileBuffer(PortBuffer):
    """Serial input kept in a file (see the module docstring for the format)."""

    _log = Logger()

    def __init__(self, path: str, capacity: int) -> None:
        self.path = path
        self.capacity = capacity
        self._failed = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        length = os.fstat(self._fd).st_size
        header = os.pread(self._fd, _HEADER.size, 0)
        if len(header) < _HEADER.size:
            self._reset()
        else:
            self._offset = int(_HEADER.unpack(header)[0])
            self._length = length - _HEADER.size
            if self._offset > self._length:  # a damaged header: start over
                self._reset()
        if self.size:
            self._log.info("port buffer {path}: {size} bytes kept from before, for the next host",
                           path=path, size=self.size)

    def _reset(self) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, _HEADER.pack(0), 0)
        self._offset = self._length = 0

    @property
    def size(self) -> int:
        return self._length - self._offset

    def append(self, data: bytes) -> int:
        room = self.capacity - self.size
        kept = data[:max(0, room)]
        if not kept or self._failed:
            return 0
        try:
            written = os.pwrite(self._fd, kept, _HEADER.size + self._length)
        except OSError as e:
            self._fail(e)
            return 0
        self._length += written
        return written

    def peek(self, n: int) -> bytes:
        n = min(n, self.size)
        if n <= 0:
            return b""
        try:
            return os.pread(self._fd, n, _HEADER.size + self._offset)
        except OSError as e:
            self._fail(e)
            return b""

    def consume(self, n: int) -> None:
        self._offset = min(self._length, self._offset + n)
        try:
            if self._offset == self._length:
                self._reset()  # all delivered: the file shrinks back to its header
            else:
                os.pwrite(self._fd, _HEADER.pack(self._offset), 0)
        except OSError as e:
            self._fail(e)

    def _fail(self, error: OSError) -> None:
        if not self._failed:
            self._failed = True
            self._log.error("port buffer {path}: {error}; serial input is no longer kept in it",
                            path=self.path, error=error)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


def buffer_spec(kib: int, location: str, state_dir: str | None, name: str) -> BufferSpec | None:
    """
    The port buffering of a port's settings (C{port_buffer_kib},
    C{port_buffer_location}): None when off; in the state directory as
    C{<name>.buffer}; in memory when asked, or when there is no state
    directory (no --config: logged).
    """
    if kib <= 0:
        return None
    if location == "state-dir":
        if state_dir is not None:
            return BufferSpec(kib * 1024, os.path.join(state_dir, f"{name}.buffer"))
        FileBuffer._log.warn("{name}: port buffering in the state directory needs --config; "
                             "buffering in memory instead", name=name)
        kib = min(kib, 64 * 1024)
    return BufferSpec(kib * 1024)


def open_buffer(spec: BufferSpec) -> PortBuffer:
    """The store C{spec} describes; a file that cannot be opened falls back to memory (logged)."""
    if spec.path is None:
        return MemoryBuffer(spec.capacity)
    try:
        return FileBuffer(spec.path, spec.capacity)
    except OSError as e:
        FileBuffer._log.error("port buffer {path}: cannot open it ({error}); buffering in "
                              "memory instead, at most {size} bytes", path=spec.path, error=e,
                              size=min(spec.capacity, 64 << 20))
        return MemoryBuffer(min(spec.capacity, 64 << 20))


class NewestBytes:
    """
    Serial input held while a client-side mode (TCP Client, Pair Connection)
    has no peer to send it to: the newest C{limit} bytes, the oldest dropped.

    Unlike port buffering's stores (which keep the first stretch), a link that
    comes back wants what is current.  L{add} says how many bytes it dropped
    and whether this is the first overflow since the last L{take}, so the
    owner counts every drop and logs once per outage.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._data = bytearray()
        self._overflowed = False

    def __len__(self) -> int:
        return len(self._data)

    def add(self, data: bytes) -> tuple[int, bool]:
        """Keep C{data}; return (bytes dropped, whether this is a new overflow)."""
        self._data += data
        excess = len(self._data) - self.limit
        if excess <= 0:
            return 0, False
        del self._data[:excess]
        first = not self._overflowed
        self._overflowed = True
        return excess, first

    def take(self) -> bytes:
        """Everything held, oldest first; the buffer is empty afterwards."""
        data, self._data = bytes(self._data), bytearray()
        self._overflowed = False
        return data
