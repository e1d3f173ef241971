# -*- test-case-name: tests.test_pairframe -*-
"""
The framed format between the two ends of a Pair Connection, sans-IO.

MOXA's wire format between two NPorts in Pair Connection mode is not
public, so this one is **ours** (docs/modes/pair.md): a pair of
nport-twisted boxes interoperates, a MOXA NPort does not.

After the TCP connection is made each side sends one HELLO, then any
number of frames, all of the same shape::

    type (1 byte) | length (2 bytes, big-endian) | payload (length bytes)

  0x01 HELLO   b"NPPC" | version (1) | role (1 = master, 2 = slave)
  0x02 DATA    serial bytes, 1-65535 of them (longer runs are split)
  0x03 LINES   one byte, the sender's input lines: bit 0 CTS, bit 1 DSR,
               bit 2 DCD, bit 3 RI; bit 7 set = the device has no modem
               lines (a pty), the other bits then mean nothing
  0x04 BREAK   2 bytes big-endian: the sender's line received a break of
               about this many milliseconds

The receiver of LINES drives its own outputs from them (DTR from DSR, RTS
from CTS: the two ends behave like a null-modem cable, so each end's
device sees the other's DTR/RTS as DSR/CTS).  Frames of a type this
version does not know are skipped, so later versions may add types.  A
stream that does not begin with a valid HELLO, a HELLO of another
version, a second HELLO, an empty DATA frame or a LINES/BREAK frame of
the wrong length is malformed (L{PairFrameError}): the connection is
closed.
"""

from __future__ import annotations

import enum
import struct

import attrs

from nport_twisted._exceptions import NPortError

MAGIC = b"NPPC"
VERSION = 1
MAX_PAYLOAD = 0xFFFF
_HEADER = struct.Struct("!BH")


class FrameType(enum.IntEnum):
    HELLO = 0x01
    DATA = 0x02
    LINES = 0x03
    BREAK = 0x04


class Role(enum.IntEnum):
    MASTER = 1
    SLAVE = 2


class PairFrameError(NPortError, ValueError):
    """A malformed pair-connection stream."""


# -- events ---------------------------------------------------------------------------

@attrs.frozen
class Hello:
    """The peer introduced itself."""

    role: Role
    version: int = VERSION


@attrs.frozen
class Data:
    """Serial bytes from the peer's line."""

    data: bytes


@attrs.frozen
class Lines:
    """The peer's input modem lines (C{present} False: its device has none)."""

    cts: bool = False
    dsr: bool = False
    dcd: bool = False
    ri: bool = False
    present: bool = True

    def to_byte(self) -> int:
        if not self.present:
            return 0x80
        return (int(self.cts) | int(self.dsr) << 1 | int(self.dcd) << 2 | int(self.ri) << 3)

    @classmethod
    def from_byte(cls, value: int) -> Lines:
        if value & 0x80:
            return cls(present=False)
        return cls(cts=bool(value & 1), dsr=bool(value & 2), dcd=bool(value & 4),
                   ri=bool(value & 8))


@attrs.frozen
class Break:
    """The peer's line received a break of C{ms} milliseconds."""

    ms: int


PairEvent = Hello | Data | Lines | Break


# -- encoders -------------------------------------------------------------------------

def _frame(kind: int, payload: bytes) -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


def encode_hello(role: Role) -> bytes:
    return _frame(FrameType.HELLO, MAGIC + bytes((VERSION, role)))


def encode_data(data: bytes) -> bytes:
    """DATA frames for C{data} (nothing for nothing; split every 65535 bytes)."""
    if len(data) <= MAX_PAYLOAD:
        return _frame(FrameType.DATA, data) if data else b""
    view = memoryview(data)
    return b"".join(_frame(FrameType.DATA, bytes(view[i:i + MAX_PAYLOAD]))
                    for i in range(0, len(data), MAX_PAYLOAD))


def encode_lines(lines: Lines) -> bytes:
    return _frame(FrameType.LINES, bytes((lines.to_byte(),)))


def encode_break(ms: int) -> bytes:
    return _frame(FrameType.BREAK, struct.pack("!H", max(0, min(ms, 0xFFFF))))


# -- decoder --------------------------------------------------------------------------

class PairDecoder:
    """
    Frames to events, chunk by chunk.  Holds at most one incomplete frame
    (64 KiB + 3 bytes).

    @ivar skipped: frames of unknown types skipped so far.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._hello_seen = False
        self.skipped = 0

    def feed(self, data: bytes) -> list[PairEvent]:
        """The events completed by C{data}.  @raise PairFrameError: malformed stream."""
        self._buf += data
        buf = self._buf
        events: list[PairEvent] = []
        pos = 0
        size = len(buf)
        while size - pos >= 3:
            kind, length = _HEADER.unpack_from(buf, pos)
            if not self._hello_seen and (kind != FrameType.HELLO or not 6 <= length <= 64):
                raise PairFrameError("the peer is not an nport-twisted Pair Connection "
                                     "(no HELLO at the start)")
            end = pos + 3 + length
            if end > size:
                break
            payload = bytes(buf[pos + 3:end])
            pos = end
            if not self._hello_seen:
                events.append(self._hello(kind, payload))
                continue
            if kind == FrameType.DATA:
                if not payload:
                    raise PairFrameError("empty DATA frame")
                events.append(Data(payload))
            elif kind == FrameType.LINES:
                if length != 1:
                    raise PairFrameError(f"LINES frame of {length} bytes (1 expected)")
                events.append(Lines.from_byte(payload[0]))
            elif kind == FrameType.BREAK:
                if length != 2:
                    raise PairFrameError(f"BREAK frame of {length} bytes (2 expected)")
                events.append(Break(struct.unpack("!H", payload)[0]))
            elif kind == FrameType.HELLO:
                raise PairFrameError("a second HELLO")
            else:
                self.skipped += 1  # a later version's frame: skip it
        del buf[:pos]
        return events

    def _hello(self, kind: int, payload: bytes) -> Hello:
        if kind != FrameType.HELLO or len(payload) < 6 or payload[:4] != MAGIC:
            raise PairFrameError("the peer is not an nport-twisted Pair Connection "
                                 "(no HELLO at the start)")
        version, role = payload[4], payload[5]
        if version != VERSION:
            raise PairFrameError(f"the peer speaks pair format version {version}, "
                                 f"we speak {VERSION}")
        try:
            parsed = Role(role)
        except ValueError:
            raise PairFrameError(f"unknown role {role} in HELLO") from None
        self._hello_seen = True
        return Hello(parsed, version)
