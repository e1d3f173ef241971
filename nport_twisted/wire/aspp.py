# -*- test-case-name: tests.test_aspp -*-
"""
Sans-IO codec for MOXA's ASPP command channel (the Real COM command port).

Wire format (``realcom.md`` §1, §2, §4-§6 are authoritative):

* Host -> device requests are ``[cmd][len][len payload bytes]``.  A request
  whose ``len`` is wrong for a known ``cmd`` is still consumed (``2 + len``
  bytes) but must get no reply at all; `RequestParser` reports it as
  `MalformedRequest`.
* Device -> host replies are *not* length-prefixed in practice: the Linux
  daemon cuts the stream with a fixed total length per code
  (`REPLY_LENGTHS`) and takes any other first byte as "the rest of this read".
  So every encoder here produces exactly the length of that table, and the
  server must only send codes in `LINUX_SAFE_REPLY_CODES` to a Linux host
  unless the host used the other commands itself.
* ``OK`` = ``[cmd] 4F 4B``, ``NA`` = ``[cmd] 4E 41``.
* Multi-byte integers are little-endian, except the timed-break duration
  (0x23) and the break count reply (0x37), which are big-endian.
* IPv6 only: the host first writes 16 arbitrary bytes on the command socket
  and expects exactly 16 bytes back (§6.4); `RequestParser` can split them
  off as `Ipv6Check`.

Nothing here does I/O, keeps time or logs: the protocol layer feeds bytes in,
acts on the events and writes the encoded replies.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import ClassVar, Literal, TypeAlias

import attrs


class AsppError(Exception):
    """A value cannot be encoded as an ASPP frame (out of range, wrong size)."""


# --- command codes -----------------------------------------------------------

CMD_IOCTL = 0x10
CMD_FLOWCTRL = 0x11
CMD_LINECTRL = 0x12
CMD_LSTATUS = 0x13
CMD_FLUSH = 0x14
CMD_IQUEUE = 0x15
CMD_OQUEUE = 0x16
CMD_SETBAUD = 0x17
CMD_XONXOFF = 0x18
CMD_PORT_RESET = 0x20
CMD_START_BREAK = 0x21
CMD_STOP_BREAK = 0x22
CMD_BREAK_SEND = 0x23
CMD_START_NOTIFY = 0x24
CMD_STOP_NOTIFY = 0x25
CMD_NOTIFY = 0x26
CMD_POLLING = 0x27
CMD_ALIVE = 0x28
CMD_HOST = 0x2B
CMD_PORT_INIT = 0x2C
CMD_WAIT_OQUEUE = 0x2F
CMD_TX_FIFO = 0x30
CMD_DSR_SEN = 0x32
CMD_SETXON = 0x33
CMD_SETXOFF = 0x34
CMD_FLUSH_START = 0x35
CMD_FLUSH_STOP = 0x36
CMD_BREAK_COUNT = 0x37
CMD_DATA_STATUS = 0x38

# NOTIFY "events" byte (§5.1).
EVENT_PARITY = 0x01
EVENT_FRAMING = 0x02
EVENT_HW_OVERRUN = 0x04
EVENT_SW_OVERRUN = 0x08
EVENT_BREAK = 0x10
EVENT_MODEM = 0x20

# NOTIFY "msr" byte: 16550 layout, state in the high nibble, deltas low.
MSR_DELTA_CTS = 0x01
MSR_DELTA_DSR = 0x02
MSR_DELTA_RI = 0x04
MSR_DELTA_DCD = 0x08
MSR_CTS = 0x10
MSR_DSR = 0x20
MSR_RI = 0x40
MSR_DCD = 0x80

# NOTIFY "hold" byte; the device always sets HOLD_NEW_VERSION.
HOLD_CTS = 0x01
HOLD_DSR = 0x02
HOLD_DCD = 0x04
HOLD_XOFF = 0x08
HOLD_XOFF_SENT = 0x10
HOLD_NEW_VERSION = 0x80

FLUSH_RX = 0
FLUSH_TX = 1
FLUSH_BOTH = 2

# The device answers a timed break (0x23) only inside this range [P].
TIMED_BREAK_MIN_MS = 10
TIMED_BREAK_MAX_MS = 1000

# The only valid PORT_RESET payload [P].
PORT_RESET_MAGIC = b"16a"

_OK = b"OK"
_NA = b"NA"
_MAX_PAYLOAD = 0xFF
_IPV6_CHECK_SIZE = 16


# --- integer helpers -----------------------------------------------------------


def _u8(value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise AsppError(f"{value!r} does not fit in one byte")
    return value


def _pack(fmt: str, value: int) -> bytes:
    try:
        return struct.pack(fmt, value)
    except struct.error as e:
        raise AsppError(f"{value!r} does not fit in {fmt!r}") from e


def _clamp16(value: int) -> int:
    # Counts saturate rather than wrap: a huge queue must not look empty.
    return max(0, min(value, 0xFFFF))


# --- §4.1 baud index ---------------------------------------------------------------

BAUD_TABLE: tuple[int, ...] = (
    300, 600, 1200, 2400, 4800, 7200, 9600, 19200, 38400, 57600,
    115200, 230400, 460800, 921600, 150, 134, 110, 75, 50,
)  # fmt: skip
BAUD_INDEX_CUSTOM = 0xFF


def baud_from_index(idx: int) -> int | None:
    """Return the baud rate of a wire baud index, or None if it has none (0xFF, unknown)."""
    if 0 <= idx < len(BAUD_TABLE):
        return BAUD_TABLE[idx]
    return None


def index_from_baud(baud: int) -> int:
    """Return the wire baud index of ``baud``, or `BAUD_INDEX_CUSTOM` when a SETBAUD is needed."""
    try:
        return BAUD_TABLE.index(baud)
    except ValueError:
        return BAUD_INDEX_CUSTOM


# --- §4.2 mode byte -------------------------------------------------------------------

Parity: TypeAlias = Literal["N", "E", "O", "M", "S"]

# Wire parity values (not MOXA's internal PComm encoding, which differs).
_PARITY_TO_WIRE: dict[str, int] = {"N": 0x00, "E": 0x08, "O": 0x10, "M": 0x18, "S": 0x20}
_WIRE_TO_PARITY: dict[int, Parity] = {0x00: "N", 0x08: "E", 0x10: "O", 0x18: "M", 0x20: "S"}
_MODE_DATA_BITS = 0x03
_MODE_STOP_BITS = 0x04
_MODE_PARITY = 0x38


@attrs.frozen
class LineMode:
    """
    Data bits, parity and stop bits as carried by the mode byte.

    ``parity`` uses pyserial's ``PARITY_*`` values; ``stopbits`` is 1, 1.5 or 2.
    """

    bytesize: int = attrs.field(validator=attrs.validators.in_((5, 6, 7, 8)))
    parity: Parity = attrs.field(validator=attrs.validators.in_(tuple(_PARITY_TO_WIRE)))
    stopbits: float = attrs.field(validator=attrs.validators.in_((1, 1.5, 2)))


def decode_mode(mode_byte: int) -> LineMode:
    """Decode a mode byte the way the device does (unknown parity values mean none)."""
    bytesize = 5 + (mode_byte & _MODE_DATA_BITS)
    stopbits = 1.0
    if mode_byte & _MODE_STOP_BITS:
        # UART convention: the "2 stop bits" bit gives 1.5 with 5 data bits.
        stopbits = 1.5 if bytesize == 5 else 2.0
    parity = _WIRE_TO_PARITY.get(mode_byte & _MODE_PARITY, "N")
    return LineMode(bytesize, parity, stopbits)


def encode_mode(mode: LineMode) -> int:
    """
    Encode ``mode`` as a mode byte.

    Like POSIX ``CSTOPB``, any stop bit count above 1 sets the one stop bit
    flag, so 5 data bits with 2 stop bits and 6-8 data bits with 1.5 stop
    bits come back from `decode_mode` as 1.5 and 2 respectively.
    """
    value = (mode.bytesize - 5) | _PARITY_TO_WIRE[mode.parity]
    if mode.stopbits != 1:
        value |= _MODE_STOP_BITS
    return value


# --- request events (host -> device) -------------------------------------------------


def _flag(value: int) -> bool:
    # The device tests these bytes for non-zero, not for 1.
    return value != 0


@attrs.frozen
class Ioctl:
    """0x10: set baud (by index) and line mode."""

    code: ClassVar[int] = CMD_IOCTL
    baud_index: int
    mode: LineMode

    @property
    def baud(self) -> int | None:
        """The baud rate, or None if the index has none (the device then uses 38400)."""
        return baud_from_index(self.baud_index)

    @classmethod
    def _decode(cls, payload: bytes) -> Ioctl:
        return cls(payload[0], decode_mode(payload[1]))

    def _encode(self) -> bytes:
        return bytes((_u8(self.baud_index), encode_mode(self.mode)))


@attrs.frozen
class FlowControl:
    """0x11: set flow control (§4.3)."""

    code: ClassVar[int] = CMD_FLOWCTRL
    cts_flow: bool
    rts_flow: bool
    tx_xonxoff: bool
    rx_xonxoff: bool

    @classmethod
    def _decode(cls, payload: bytes) -> FlowControl:
        return cls(*(_flag(b) for b in payload[:4]))

    def _encode(self) -> bytes:
        return bytes((self.cts_flow, self.rts_flow, self.tx_xonxoff, self.rx_xonxoff))


@attrs.frozen
class LineControl:
    """0x12: drive DTR and RTS."""

    code: ClassVar[int] = CMD_LINECTRL
    dtr: bool
    rts: bool

    @classmethod
    def _decode(cls, payload: bytes) -> LineControl:
        return cls(_flag(payload[0]), _flag(payload[1]))

    def _encode(self) -> bytes:
        return bytes((self.dtr, self.rts))


class _Empty:
    """Encoder shared by the requests without payload."""

    __slots__ = ()
    code: ClassVar[int]

    def _encode(self) -> bytes:
        return b""


@attrs.frozen
class LineStatusQuery(_Empty):
    """0x13: ask for DSR, CTS and DCD."""

    code: ClassVar[int] = CMD_LSTATUS


@attrs.frozen
class Flush:
    """0x14: flush serial queues; ``mode`` is one of the ``FLUSH_*`` values."""

    code: ClassVar[int] = CMD_FLUSH
    mode: int

    @classmethod
    def _decode(cls, payload: bytes) -> Flush:
        return cls(payload[0])

    def _encode(self) -> bytes:
        return bytes((_u8(self.mode),))


@attrs.frozen
class InputQueueQuery(_Empty):
    """0x15: ask for the number of bytes in the serial RX queue."""

    code: ClassVar[int] = CMD_IQUEUE


@attrs.frozen
class OutputQueueQuery(_Empty):
    """0x16: ask for the number of bytes in the serial TX queue."""

    code: ClassVar[int] = CMD_OQUEUE


@attrs.frozen
class SetBaud:
    """0x17: set an arbitrary baud rate (LE32)."""

    code: ClassVar[int] = CMD_SETBAUD
    baud: int

    @classmethod
    def _decode(cls, payload: bytes) -> SetBaud:
        return cls(int.from_bytes(payload, "little"))

    def _encode(self) -> bytes:
        return _pack("<I", self.baud)


@attrs.frozen
class XonXoffChars:
    """0x18: the XON and XOFF characters."""

    code: ClassVar[int] = CMD_XONXOFF
    xon: int
    xoff: int

    @classmethod
    def _decode(cls, payload: bytes) -> XonXoffChars:
        return cls(payload[0], payload[1])

    def _encode(self) -> bytes:
        return bytes((_u8(self.xon), _u8(self.xoff)))


@attrs.frozen
class PortReset:
    """0x20: port reset; only ``valid`` (payload "16a") ones get an OK, others no reply."""

    code: ClassVar[int] = CMD_PORT_RESET
    valid: bool

    @classmethod
    def _decode(cls, payload: bytes) -> PortReset:
        return cls(payload == PORT_RESET_MAGIC)

    def _encode(self) -> bytes:
        return PORT_RESET_MAGIC if self.valid else b"\x00\x00\x00"


@attrs.frozen
class StartBreak(_Empty):
    """0x21: start sending a break."""

    code: ClassVar[int] = CMD_START_BREAK


@attrs.frozen
class StopBreak(_Empty):
    """0x22: stop sending a break."""

    code: ClassVar[int] = CMD_STOP_BREAK


@attrs.frozen
class TimedBreak:
    """0x23: send a break for ``ms`` milliseconds (BE16)."""

    code: ClassVar[int] = CMD_BREAK_SEND
    ms: int

    @property
    def in_range(self) -> bool:
        """Whether the device performs (and acknowledges) this break."""
        return TIMED_BREAK_MIN_MS <= self.ms <= TIMED_BREAK_MAX_MS

    @classmethod
    def _decode(cls, payload: bytes) -> TimedBreak:
        return cls(int.from_bytes(payload, "big"))

    def _encode(self) -> bytes:
        return _pack(">H", self.ms)


@attrs.frozen
class StartNotify(_Empty):
    """0x24: enable NOTIFY (and keep-alive probing) on this connection."""

    code: ClassVar[int] = CMD_START_NOTIFY


@attrs.frozen
class StopNotify(_Empty):
    """0x25: disable NOTIFY (and keep-alive probing) on this connection."""

    code: ClassVar[int] = CMD_STOP_NOTIFY


@attrs.frozen
class Alive:
    """0x28: the host's answer to a POLLING probe; never replied to."""

    code: ClassVar[int] = CMD_ALIVE
    probe_id: int

    @classmethod
    def _decode(cls, payload: bytes) -> Alive:
        return cls(payload[0])

    def _encode(self) -> bytes:
        return bytes((_u8(self.probe_id),))


@attrs.frozen
class HostName:
    """0x2B: "set connection remote name"; payload format unknown, so kept raw."""

    code: ClassVar[int] = CMD_HOST
    payload: bytes

    @classmethod
    def _decode(cls, payload: bytes) -> HostName:
        return cls(payload)

    def _encode(self) -> bytes:
        return self.payload


@attrs.frozen
class PortInit:
    """0x2C: baud index, mode, DTR/RTS and flow control, sent on every open."""

    code: ClassVar[int] = CMD_PORT_INIT
    baud_index: int
    mode: LineMode
    dtr: bool
    rts: bool
    cts_flow: bool
    rts_flow: bool
    tx_xonxoff: bool
    rx_xonxoff: bool

    @property
    def baud(self) -> int | None:
        """The baud rate, or None when the index has none (a SETBAUD may follow)."""
        return baud_from_index(self.baud_index)

    @property
    def flow(self) -> FlowControl:
        """The flow control part, as a FLOWCTRL request would carry it."""
        return FlowControl(self.cts_flow, self.rts_flow, self.tx_xonxoff, self.rx_xonxoff)

    @classmethod
    def _decode(cls, payload: bytes) -> PortInit:
        # Bytes past the 8th are accepted and ignored, as the device does.
        flags = (_flag(b) for b in payload[2:8])
        return cls(payload[0], decode_mode(payload[1]), *flags)

    def _encode(self) -> bytes:
        return bytes(
            (
                _u8(self.baud_index),
                encode_mode(self.mode),
                self.dtr,
                self.rts,
                self.cts_flow,
                self.rts_flow,
                self.tx_xonxoff,
                self.rx_xonxoff,
            )
        )


@attrs.frozen
class WaitOutputQueue:
    """0x2F: reply once the output drains or ``timeout_ms`` passes (deferred reply)."""

    code: ClassVar[int] = CMD_WAIT_OQUEUE
    timeout: int

    @property
    def timeout_ms(self) -> int:
        """The timeout as the device reads it: milliseconds, 0 meaning 1."""
        return self.timeout or 1

    @classmethod
    def _decode(cls, payload: bytes) -> WaitOutputQueue:
        return cls(int.from_bytes(payload, "little"))

    def _encode(self) -> bytes:
        return _pack("<I", self.timeout)


@attrs.frozen
class TxFifo:
    """0x30: UART FIFO; ``fifo`` <= 1 disables it."""

    code: ClassVar[int] = CMD_TX_FIFO
    fifo: int

    @property
    def enabled(self) -> bool:
        """Whether the device enables its UART FIFO for this value."""
        return self.fifo > 1

    @classmethod
    def _decode(cls, payload: bytes) -> TxFifo:
        return cls(payload[0])

    def _encode(self) -> bytes:
        return bytes((_u8(self.fifo),))


@attrs.frozen
class DsrSensitivity:
    """0x32: DSR sensitivity (a stub on real devices)."""

    code: ClassVar[int] = CMD_DSR_SEN
    value: int

    @classmethod
    def _decode(cls, payload: bytes) -> DsrSensitivity:
        return cls(payload[0])

    def _encode(self) -> bytes:
        return bytes((_u8(self.value),))


@attrs.frozen
class SetXon(_Empty):
    """0x33: act as if XON was received on the serial side (resume TX)."""

    code: ClassVar[int] = CMD_SETXON


@attrs.frozen
class SetXoff(_Empty):
    """0x34: act as if XOFF was received on the serial side (hold TX)."""

    code: ClassVar[int] = CMD_SETXOFF


@attrs.frozen
class FlushStart:
    """0x35: flush and enter flush state; reply when done or after ``wait_ms``."""

    code: ClassVar[int] = CMD_FLUSH_START
    mode: int
    wait_ms: int

    @classmethod
    def _decode(cls, payload: bytes) -> FlushStart:
        return cls(payload[0], int.from_bytes(payload[1:5], "little"))

    def _encode(self) -> bytes:
        return bytes((_u8(self.mode),)) + _pack("<I", self.wait_ms)


@attrs.frozen
class FlushStop(_Empty):
    """0x36: leave the flush state."""

    code: ClassVar[int] = CMD_FLUSH_STOP


@attrs.frozen
class BreakCountQuery(_Empty):
    """0x37: ask for the breaks received since the last query."""

    code: ClassVar[int] = CMD_BREAK_COUNT


@attrs.frozen
class DataStatusQuery(_Empty):
    """0x38: ask for the error bits accumulated since the last query."""

    code: ClassVar[int] = CMD_DATA_STATUS


@attrs.frozen
class UnknownRequest:
    """A request with a code this codec does not implement; the device does not reply."""

    code: int
    payload: bytes


@attrs.frozen
class MalformedRequest:
    """A known code with a wrong ``len``; the device must not reply (the caller logs it)."""

    code: int
    payload: bytes


@attrs.frozen
class Ipv6Check:
    """The 16 bytes an IPv6 host sends before any request; echo them back unchanged."""

    data: bytes


Request: TypeAlias = (
    Ioctl
    | FlowControl
    | LineControl
    | LineStatusQuery
    | Flush
    | InputQueueQuery
    | OutputQueueQuery
    | SetBaud
    | XonXoffChars
    | PortReset
    | StartBreak
    | StopBreak
    | TimedBreak
    | StartNotify
    | StopNotify
    | Alive
    | HostName
    | PortInit
    | WaitOutputQueue
    | TxFifo
    | DsrSensitivity
    | SetXon
    | SetXoff
    | FlushStart
    | FlushStop
    | BreakCountQuery
    | DataStatusQuery
    | UnknownRequest
    | MalformedRequest
)

_Decoder: TypeAlias = Callable[[bytes], Request]


def _empty(cls: Callable[[], Request]) -> _Decoder:
    return lambda payload: cls()


def _exactly(size: int) -> range:
    return range(size, size + 1)


# code -> (accepted payload lengths, decoder), lengths as the device checks them [P].
_REQUESTS: dict[int, tuple[range, _Decoder]] = {
    CMD_IOCTL: (_exactly(2), Ioctl._decode),
    CMD_FLOWCTRL: (_exactly(4), FlowControl._decode),
    CMD_LINECTRL: (_exactly(2), LineControl._decode),
    CMD_LSTATUS: (_exactly(0), _empty(LineStatusQuery)),
    CMD_FLUSH: (_exactly(1), Flush._decode),
    CMD_IQUEUE: (_exactly(0), _empty(InputQueueQuery)),
    CMD_OQUEUE: (_exactly(0), _empty(OutputQueueQuery)),
    CMD_SETBAUD: (_exactly(4), SetBaud._decode),
    CMD_XONXOFF: (_exactly(2), XonXoffChars._decode),
    CMD_PORT_RESET: (_exactly(3), PortReset._decode),
    CMD_START_BREAK: (_exactly(0), _empty(StartBreak)),
    CMD_STOP_BREAK: (_exactly(0), _empty(StopBreak)),
    CMD_BREAK_SEND: (_exactly(2), TimedBreak._decode),
    CMD_START_NOTIFY: (_exactly(0), _empty(StartNotify)),
    CMD_STOP_NOTIFY: (_exactly(0), _empty(StopNotify)),
    CMD_ALIVE: (_exactly(1), Alive._decode),
    CMD_HOST: (range(_MAX_PAYLOAD + 1), HostName._decode),
    CMD_PORT_INIT: (range(8, 64), PortInit._decode),
    CMD_WAIT_OQUEUE: (_exactly(4), WaitOutputQueue._decode),
    CMD_TX_FIFO: (_exactly(1), TxFifo._decode),
    CMD_DSR_SEN: (_exactly(1), DsrSensitivity._decode),
    CMD_SETXON: (_exactly(0), _empty(SetXon)),
    CMD_SETXOFF: (_exactly(0), _empty(SetXoff)),
    CMD_FLUSH_START: (_exactly(5), FlushStart._decode),
    CMD_FLUSH_STOP: (_exactly(0), _empty(FlushStop)),
    CMD_BREAK_COUNT: (_exactly(0), _empty(BreakCountQuery)),
    CMD_DATA_STATUS: (_exactly(0), _empty(DataStatusQuery)),
}


def decode_request(code: int, payload: bytes) -> Request:
    """Decode one request from its code and payload (never raises for byte input)."""
    entry = _REQUESTS.get(code)
    if entry is None:
        return UnknownRequest(code, payload)
    sizes, decoder = entry
    if len(payload) not in sizes:
        return MalformedRequest(code, payload)
    return decoder(payload)


def encode_request(event: Request) -> bytes:
    """Encode a request as the host sends it: ``[cmd][len][payload]``."""
    if isinstance(event, (UnknownRequest, MalformedRequest)):
        payload = event.payload
    else:
        payload = event._encode()
    if len(payload) > _MAX_PAYLOAD:
        raise AsppError(f"payload of {len(payload)} bytes is too long")
    return bytes((_u8(event.code), len(payload))) + payload


class RequestParser:
    """
    Split the host -> device command stream into request events.

    Frames may arrive several per segment or split at any byte; the
    incomplete tail is kept for the next `feed`.  A frame is always
    ``2 + len`` bytes, valid or not, so the kept tail never exceeds 256 bytes.
    """

    def __init__(self, ipv6_check: bool = False) -> None:
        self._buffer = b""
        self._ipv6_pending = ipv6_check

    @property
    def buffered(self) -> int:
        """The number of bytes kept from an incomplete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Request | Ipv6Check]:
        """Consume ``data`` and return the complete requests it finishes, in order."""
        buf = self._buffer + data
        events: list[Request | Ipv6Check] = []
        pos = 0
        if self._ipv6_pending:
            if len(buf) < _IPV6_CHECK_SIZE:
                self._buffer = buf
                return events
            events.append(Ipv6Check(buf[:_IPV6_CHECK_SIZE]))
            pos = _IPV6_CHECK_SIZE
            self._ipv6_pending = False
        end = len(buf)
        while end - pos >= 2:
            size = buf[pos + 1]
            if end - pos - 2 < size:
                break
            events.append(decode_request(buf[pos], buf[pos + 2 : pos + 2 + size]))
            pos += 2 + size
        self._buffer = buf[pos:]
        return events


# --- replies (device -> host) -------------------------------------------------

# The Linux daemon's splitter (§2): total reply length per first byte.
REPLY_LENGTHS: dict[int, int] = {
    **dict.fromkeys((CMD_NOTIFY, CMD_WAIT_OQUEUE, CMD_OQUEUE, CMD_IQUEUE), 4),
    **dict.fromkeys((CMD_LSTATUS, CMD_PORT_INIT), 5),
    **dict.fromkeys(
        (
            CMD_IOCTL,
            CMD_FLOWCTRL,
            CMD_LINECTRL,
            CMD_FLUSH,
            CMD_SETBAUD,
            CMD_XONXOFF,
            CMD_START_BREAK,
            CMD_STOP_BREAK,
            CMD_START_NOTIFY,
            CMD_STOP_NOTIFY,
            CMD_HOST,
            CMD_TX_FIFO,
            CMD_SETXON,
            CMD_SETXOFF,
            CMD_POLLING,
        ),
        3,
    ),
}

# Reply codes a Linux host can split; anything else desynchronises it.
LINUX_SAFE_REPLY_CODES: frozenset[int] = frozenset(REPLY_LENGTHS)

# REPLY_LENGTHS plus the replies only other hosts ask for (§1).
CLIENT_REPLY_LENGTHS: dict[int, int] = {
    **REPLY_LENGTHS,
    **dict.fromkeys((CMD_PORT_RESET, CMD_BREAK_SEND, CMD_DSR_SEN, CMD_FLUSH_STOP), 3),
    CMD_FLUSH_START: 6,
    CMD_BREAK_COUNT: 4,
    CMD_DATA_STATUS: 3,
}

_LINE_STATUS_CODES = frozenset((CMD_LSTATUS, CMD_PORT_INIT))
_QUEUE_CODES = frozenset((CMD_IQUEUE, CMD_OQUEUE, CMD_WAIT_OQUEUE))
_BAUD_REJECTED = 0xFF


def encode_ok(code: int) -> bytes:
    """``[code] 4F 4B``: request accepted."""
    return bytes((_u8(code),)) + _OK


def encode_na(code: int) -> bytes:
    """``[code] 4E 41``: request not accepted."""
    return bytes((_u8(code),)) + _NA


def encode_line_status(code: int, dsr: bool, cts: bool, dcd: bool) -> bytes:
    """``[code] 03 dsr cts dcd``, the reply to LSTATUS (0x13) and PORT_INIT (0x2C)."""
    if code not in _LINE_STATUS_CODES:
        raise AsppError(f"0x{code:02X} has no line status reply")
    return bytes((code, 3, bool(dsr), bool(cts), bool(dcd)))


def encode_baud_rejected() -> bytes:
    """``2C 03 FF FF FF``: PORT_INIT refused its baud rate (the host restores the old one)."""
    return bytes((CMD_PORT_INIT, 3, _BAUD_REJECTED, _BAUD_REJECTED, _BAUD_REJECTED))


def encode_queue_count(code: int, count: int) -> bytes:
    """``[code] 02 lo hi`` for IQUEUE, OQUEUE and WAIT_OQUEUE; ``count`` saturates at 0xFFFF."""
    if code not in _QUEUE_CODES:
        raise AsppError(f"0x{code:02X} has no queue count reply")
    return bytes((code, 2)) + _clamp16(count).to_bytes(2, "little")


def encode_notify(events: int, msr: int, hold: int) -> bytes:
    """``26 events msr hold``, with the "new version" bit always set in ``hold``."""
    return bytes((CMD_NOTIFY, _u8(events), _u8(msr), _u8(hold) | HOLD_NEW_VERSION))


def encode_polling(probe_id: int) -> bytes:
    """``27 01 id``: keep-alive probe."""
    return bytes((CMD_POLLING, 1, _u8(probe_id)))


def encode_flush_start_done(tcp_in_queue: int) -> bytes:
    """``35 04 lo hi 00 00``: FLUSH_START finished; ``tcp_in_queue`` saturates at 0xFFFF."""
    return bytes((CMD_FLUSH_START, 4)) + _clamp16(tcp_in_queue).to_bytes(2, "little") + b"\0\0"


def encode_break_count(count: int) -> bytes:
    """``37 02 hi lo`` (big-endian); ``count`` saturates at 0xFFFF."""
    return bytes((CMD_BREAK_COUNT, 2)) + _clamp16(count).to_bytes(2, "big")


def encode_data_status(bits: int) -> bytes:
    """``38 01 bits``, only the parity/framing/overrun bits (low nibble)."""
    return bytes((CMD_DATA_STATUS, 1, bits & 0x0F))


def encode_ipv6_echo(data: bytes) -> bytes:
    """The answer to an `Ipv6Check`: the same 16 bytes, to be sent in one segment."""
    if len(data) != _IPV6_CHECK_SIZE:
        raise AsppError(f"IPv6 check is {_IPV6_CHECK_SIZE} bytes, not {len(data)}")
    return bytes(data)


@attrs.frozen
class OkReply:
    """``[code] OK``."""

    code: int


@attrs.frozen
class NaReply:
    """``[code] NA``."""

    code: int


@attrs.frozen
class LineStatusReply:
    """
    The LSTATUS / PORT_INIT reply.

    The three values are kept raw (normally 0/1) so that the PORT_INIT
    "baud rejected" form ``FF FF FF`` stays visible.
    """

    code: int
    dsr: int
    cts: int
    dcd: int

    @property
    def baud_rejected(self) -> bool:
        """Whether this is ``2C 03 FF FF FF``: the device refused the baud rate."""
        return (self.dsr, self.cts, self.dcd) == (_BAUD_REJECTED,) * 3


@attrs.frozen
class QueueCountReply:
    """IQUEUE, OQUEUE or WAIT_OQUEUE reply: bytes queued."""

    code: int
    count: int


@attrs.frozen
class NotifyMessage:
    """Unsolicited ``26 events msr hold`` (§5.1)."""

    code: ClassVar[int] = CMD_NOTIFY
    events: int
    msr: int
    hold: int

    @property
    def cts(self) -> bool:
        """Current CTS."""
        return bool(self.msr & MSR_CTS)

    @property
    def dsr(self) -> bool:
        """Current DSR."""
        return bool(self.msr & MSR_DSR)

    @property
    def ri(self) -> bool:
        """Current RI."""
        return bool(self.msr & MSR_RI)

    @property
    def dcd(self) -> bool:
        """Current DCD."""
        return bool(self.msr & MSR_DCD)

    @property
    def delta_cts(self) -> bool:
        """CTS changed since the last NOTIFY."""
        return bool(self.msr & MSR_DELTA_CTS)

    @property
    def delta_dsr(self) -> bool:
        """DSR changed since the last NOTIFY."""
        return bool(self.msr & MSR_DELTA_DSR)

    @property
    def delta_ri(self) -> bool:
        """RI changed since the last NOTIFY."""
        return bool(self.msr & MSR_DELTA_RI)

    @property
    def delta_dcd(self) -> bool:
        """DCD changed since the last NOTIFY."""
        return bool(self.msr & MSR_DELTA_DCD)


@attrs.frozen
class PollingMessage:
    """Unsolicited keep-alive probe ``27 01 id``; answer with `Alive`."""

    code: ClassVar[int] = CMD_POLLING
    probe_id: int


@attrs.frozen
class FlushStartReply:
    """Deferred FLUSH_START reply: bytes still unread on the device's data socket."""

    code: ClassVar[int] = CMD_FLUSH_START
    tcp_in_queue: int


@attrs.frozen
class BreakCountReply:
    """BREAK_COUNT reply."""

    code: ClassVar[int] = CMD_BREAK_COUNT
    count: int


@attrs.frozen
class DataStatusReply:
    """DATA_STATUS reply: ``EVENT_*`` error bits (low nibble)."""

    code: ClassVar[int] = CMD_DATA_STATUS
    bits: int


@attrs.frozen
class UnknownReply:
    """Bytes that cannot be split: an unknown first byte, or a 3-byte reply not OK/NA."""

    data: bytes

    @property
    def code(self) -> int:
        """The first byte."""
        return self.data[0]


Reply: TypeAlias = (
    OkReply
    | NaReply
    | LineStatusReply
    | QueueCountReply
    | NotifyMessage
    | PollingMessage
    | FlushStartReply
    | BreakCountReply
    | DataStatusReply
    | UnknownReply
)


def _decode_reply(frame: bytes) -> Reply:
    # frame has exactly CLIENT_REPLY_LENGTHS[frame[0]] bytes; the len byte is
    # ignored, as the Linux daemon does.
    code = frame[0]
    if code in _LINE_STATUS_CODES:
        return LineStatusReply(code, frame[2], frame[3], frame[4])
    if code in _QUEUE_CODES:
        return QueueCountReply(code, int.from_bytes(frame[2:4], "little"))
    if code == CMD_NOTIFY:
        return NotifyMessage(frame[1], frame[2], frame[3])
    if code == CMD_POLLING:
        return PollingMessage(frame[2])
    if code == CMD_FLUSH_START:
        return FlushStartReply(int.from_bytes(frame[2:4], "little"))
    if code == CMD_BREAK_COUNT:
        return BreakCountReply(int.from_bytes(frame[2:4], "big"))
    if code == CMD_DATA_STATUS:
        return DataStatusReply(frame[2])
    if frame[1:] == _OK:
        return OkReply(code)
    if frame[1:] == _NA:
        return NaReply(code)
    return UnknownReply(frame)


class ReplyParser:
    """
    Split the device -> host command stream into reply events (client side).

    Uses the fixed lengths of `CLIENT_REPLY_LENGTHS`.  Unlike the Linux
    daemon, an incomplete frame is kept for the next `feed`; like it, an
    unknown first byte takes everything received so far as one reply.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[Reply]:
        """Consume ``data`` and return the complete replies it finishes, in order."""
        buf = self._buffer + data
        replies: list[Reply] = []
        pos = 0
        end = len(buf)
        while pos < end:
            size = CLIENT_REPLY_LENGTHS.get(buf[pos])
            if size is None:
                replies.append(UnknownReply(buf[pos:]))
                pos = end
                break
            if end - pos < size:
                break
            replies.append(_decode_reply(buf[pos : pos + size]))
            pos += size
        self._buffer = buf[pos:]
        return replies
