# -*- test-case-name: tests.test_packing -*-
"""
Serial to network data packing, as done by a MOXA NPort.

An NPort does not forward every byte read from the UART on its own: the
operating settings of each port (``settings.md`` section 5.4) decide when the
bytes buffered from the serial line are sent to the network as one chunk.

Documented behaviour (NPort manuals):

* **Packing length** ``n`` (0..1024, 0 = off): send as soon as ``n`` bytes are
  buffered, so chunks are exactly ``n`` bytes; a remainder waits.
* **Delimiter 1 / Delimiter 2** (one byte each, each with an enable flag):
  send when delimiter 1 is received, or - when delimiter 2 is enabled too -
  only when delimiter 1 is immediately followed by delimiter 2.  Delimiter 2
  alone does not work: here a ``delimiter2`` without ``delimiter1`` is
  ignored.
* **Delimiter process**: Do Nothing sends the delimiter(s) with the data;
  Delimiter+1 / Delimiter+2 wait for one or two more bytes after the
  delimiter(s) and send them too; Strip sends the data without the
  delimiter(s).
* **Force transmit** ``t`` ms (0..65535, 0 = off): send the buffer when the
  serial line has been idle for ``t`` ms.
* The buffer holds 1 KB per port, and a full buffer is always sent.

Inferred where the manuals are silent (MOXA's own device code, ``delimit.c``
of the device-side sources cited as [S10] in ``settings.md``, agrees unless
noted):

* Rules are evaluated byte by byte in arrival order; whichever rule fires
  first sends.  After the byte that completes a delimiter, the delimiter rule
  is checked before the packing-length and buffer-full rules, so a delimiter
  that is also the n-th byte is still stripped.  The result does not depend
  on how the input is split into feeds.  (MOXA's code ignores the delimiters
  altogether when a packing length is set, and checks for a full buffer
  before scanning a UART read for delimiters; we follow the manuals, which
  present the rules as combinable, and stay independent of read sizes.)
* Every send restarts delimiter detection: a delimiter 1 sent by the length
  or buffer-full rule cannot pair with a delimiter 2 received afterwards.
* The pair is matched left to right without overlap: ``d1 d1 d2`` matches on
  the second ``d1``; with ``d1 == d2`` the bytes pair up two by two.
* The one or two bytes awaited by Delimiter+1/+2 are plain data, even if they
  are delimiters themselves.  The packing-length and buffer-full rules still
  apply while waiting (and cancel the wait).
* Force transmit measures idle time from the last byte received and releases
  everything pending, including a Delimiter+1/+2 wait that never got its
  extra bytes and a delimiter 1 still waiting for its delimiter 2 (sent
  unstripped: it is no delimiter).  Without delimiters and packing length,
  force transmit alone buffers until the line is idle or the buffer is full.
  It fires at ``last byte + t`` (MOXA's loop uses "idle > t"; the difference
  is below one timer tick).
* Strip removes one byte (delimiter 1 only) or two bytes (pair); when nothing
  is left, nothing is sent.
* Packing length and buffer size both count the delimiter bytes, stripped or
  not.

The packer is a pure state machine: the caller passes the time in, asks
`Packer.next_deadline` when to call `Packer.poll`, and owns the timer.  The
rule "inactivity time must be greater than force transmit" (``settings.md``
section 5.2) involves other settings and is checked by the channel
configuration, not here.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["DelimiterProcess", "Packer", "PackingConfig"]


class DelimiterProcess(enum.Enum):
    """
    What happens to the data around a recognised delimiter.
    """

    DO_NOTHING = "do-nothing"
    PLUS_1 = "delimiter+1"
    PLUS_2 = "delimiter+2"
    STRIP = "strip"


_EXTRA_BYTES = {DelimiterProcess.PLUS_1: 1, DelimiterProcess.PLUS_2: 2}

_int = attrs.validators.instance_of(int)
_byte = attrs.validators.optional(
    attrs.validators.and_(_int, attrs.validators.ge(0), attrs.validators.le(255))
)


@attrs.frozen
class PackingConfig:
    """
    The data packing settings of one port.

    @ivar packing_length: 0..1024; send every that many bytes, 0 = off.
    @ivar delimiter1: 0..255, or L{None} when disabled.
    @ivar delimiter2: 0..255, or L{None}; only used together with
        C{delimiter1}.
    @ivar delimiter_process: what to do around a recognised delimiter.
    @ivar force_transmit_ms: 0..65535; send after that much serial idle time,
        0 = off.
    @ivar buffer_size: the serial buffer (1 KB on an NPort); a full buffer is
        always sent.
    """

    packing_length: int = attrs.field(
        default=0,
        validator=[_int, attrs.validators.ge(0), attrs.validators.le(1024)],
    )
    delimiter1: int | None = attrs.field(default=None, validator=_byte)
    delimiter2: int | None = attrs.field(default=None, validator=_byte)
    delimiter_process: DelimiterProcess = attrs.field(
        default=DelimiterProcess.DO_NOTHING,
        validator=attrs.validators.instance_of(DelimiterProcess),
    )
    force_transmit_ms: int = attrs.field(
        default=0,
        validator=[_int, attrs.validators.ge(0), attrs.validators.le(65535)],
    )
    buffer_size: int = attrs.field(default=1024, validator=[_int, attrs.validators.ge(1)])

    @property
    def passthrough(self) -> bool:
        """
        C{True} when no packing rule is enabled and data goes out as read.
        """
        return self.packing_length == 0 and self.delimiter1 is None and self.force_transmit_ms == 0


class Packer:
    """
    Serial to network packing state of one port.

    Memory use is bounded by C{config.buffer_size} whatever is fed.
    """

    def __init__(self, config: PackingConfig) -> None:
        self.config = config
        self._passthrough = config.passthrough
        # A chunk is sent when the buffer reaches this many bytes.
        limit = config.buffer_size
        if config.packing_length:
            limit = min(limit, config.packing_length)
        self._limit = limit
        # The delimiter as a byte string (one byte, or the pair), or None.
        delimiter: bytes | None = None
        if config.delimiter1 is not None:
            delimiter = bytes([config.delimiter1])
            if config.delimiter2 is not None:
                delimiter += bytes([config.delimiter2])
        self._delimiter = delimiter
        self._extra = _EXTRA_BYTES.get(config.delimiter_process, 0)
        # Bytes removed after a delimiter by Strip (1 or the pair's 2), or 0.
        self._strip = 0
        if delimiter is not None and config.delimiter_process is DelimiterProcess.STRIP:
            self._strip = len(delimiter)
        self._force_s = config.force_transmit_ms / 1000.0
        self._buf = bytearray()
        # Bytes still awaited after a delimiter (Delimiter+1/+2), 0 if none.
        self._wait = 0
        self._last = 0.0

    @property
    def pending(self) -> int:
        """
        The number of bytes buffered and not yet released.
        """
        return len(self._buf)

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """
        Take bytes read from the serial port at time C{now} (seconds).

        @return: the chunks to send now, in order.
        """
        if self._passthrough:
            return [data] if data else []
        if not data:
            return []
        self._last = now
        out: list[bytes] = []
        buf = self._buf
        limit = self._limit
        delimiter = self._delimiter
        size = len(data)
        pos = 0
        while pos < size:
            room = limit - len(buf)
            if self._wait:
                # Delimiter+1/+2: the awaited bytes are plain data.
                end = pos + min(self._wait, room, size - pos)
                self._wait -= end - pos
                buf += data[pos:end]
                pos = end
                if not self._wait or len(buf) == limit:
                    self._wait = 0
                    out.append(bytes(buf))
                    buf.clear()
                continue
            window = min(size, pos + room)
            found = -1
            if delimiter is not None:
                # A pair split across two feeds: d1 ends the buffer.
                pair_tail = len(delimiter) == 2 and buf and buf[-1] == delimiter[0]
                if pair_tail and data[pos] == delimiter[1]:
                    found = pos + 1
                if found < 0:
                    index = data.find(delimiter, pos, window)
                    if index >= 0:
                        found = index + len(delimiter)
            if found < 0:
                if not buf and window - pos == limit:
                    # Fast path: a whole chunk straight from the input.
                    out.append(data[pos:window])
                else:
                    buf += data[pos:window]
                    if len(buf) == limit:
                        out.append(bytes(buf))
                        buf.clear()
                pos = window
                continue
            buf += data[pos:found]
            pos = found
            if self._extra and len(buf) < limit:
                self._wait = self._extra
                continue
            if self._strip:
                del buf[-self._strip :]
            if buf:
                out.append(bytes(buf))
                buf.clear()
        return out

    def next_deadline(self) -> float | None:
        """
        The time (seconds) at which L{poll} must run, or L{None} when no
        timer would release anything.
        """
        if self._force_s and self._buf:
            return self._last + self._force_s
        return None

    def poll(self, now: float) -> list[bytes]:
        """
        Release what force transmit releases at time C{now}.

        @return: the chunks to send now (at most one).
        """
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return [self.flush()]

    def flush(self) -> bytes:
        """
        Take everything pending, forgetting any delimiter state; used on
        force transmit, close and reconfiguration.
        """
        data = bytes(self._buf)
        self._buf.clear()
        self._wait = 0
        return data
