# -*- test-case-name: tests.test_telnet -*-
"""
A sans-IO telnet codec with the RFC 2217 (COM-PORT-OPTION) layer.

No I/O and no serial access here: the RFC 2217 front-end
(L{nport_twisted.modes.rfc2217}) feeds bytes from the socket into a
L{TelnetParser}, acts on the events and writes what the encoders build.

Parsing works on chunks: the parser splits on IAC with C{bytes.find} and
passes plain data runs through as single slices (the hot path is one
C{find} and, without any IAC in the chunk, no copy at all).  Sequences may
be split anywhere across chunks (an IAC at the end of one chunk, IAC SB …
IAC SE spanning several).  IAC IAC is one 0xFF data byte, also inside a
subnegotiation payload.  CR NUL and CR LF are passed through untouched
(BINARY data path); L{CrNulFilter} and L{escape_data} implement the NVT
rules for a peer that refuses BINARY.

Negotiation follows pyserial's four-state model (REQUESTED, ACTIVE,
INACTIVE, REALLY_INACTIVE) per option and side in L{OptionTable}: options
we do not support are refused politely (WONT / DONT) and refusals are
never answered, so no negotiation loop is possible (RFC 854, RFC 1143).

RFC 2217 subnegotiations: C{IAC SB 44 <command> <value> IAC SE}; the
client uses command codes 0-12, the access server answers with code + 100.
The baud rate is a 32-bit big-endian value, the signature free text,
FLOWCONTROL-SUSPEND/RESUME carry nothing and every other value is one byte;
a value of 0 is a query.
"""

from __future__ import annotations

import enum
import re
import struct

import attrs

from nport_twisted._exceptions import NPortError

# -- telnet bytes (RFC 854) -----------------------------------------------------

SE = 240
NOP = 241
DM = 242
BRK = 243
IP = 244
AO = 245
AYT = 246
EC = 247
EL = 248
GA = 249
SB = 250
WILL = 251
WONT = 252
DO = 253
DONT = 254
IAC = 255

# -- options ---------------------------------------------------------------------

BINARY = 0  # RFC 856
ECHO = 1  # RFC 857
SGA = 3  # RFC 858, suppress go-ahead
COM_PORT_OPTION = 44  # RFC 2217

_IAC_BYTE = b"\xff"
_IAC_IAC = b"\xff\xff"

#: Longest subnegotiation payload kept; longer ones are dropped whole.
MAX_SUBNEGOTIATION = 4096


class TelnetError(NPortError, ValueError):
    """A malformed or unknown RFC 2217 message."""


# -- events ------------------------------------------------------------------------

@attrs.frozen
class Data:
    """Plain data bytes (IAC IAC already undoubled)."""

    data: bytes


@attrs.frozen
class Command:
    """A telnet command other than negotiation (NOP, BRK, AYT, GA …)."""

    command: int


@attrs.frozen
class Negotiation:
    """IAC WILL/WONT/DO/DONT <option>."""

    verb: int
    option: int


@attrs.frozen
class Subnegotiation:
    """IAC SB <option> <payload> IAC SE, with IAC IAC in the payload undoubled."""

    option: int
    payload: bytes


TelnetEvent = Data | Command | Negotiation | Subnegotiation


# -- parser ------------------------------------------------------------------------

_S_DATA = 0  # plain data
_S_IAC = 1  # after IAC
_S_VERB = 2  # after IAC WILL/WONT/DO/DONT: the option byte follows
_S_SB = 3  # inside IAC SB … (payload)
_S_SB_IAC = 4  # after IAC inside a subnegotiation

_VERBS = frozenset((WILL, WONT, DO, DONT))


class TelnetParser:
    """
    Turns a telnet byte stream into L{TelnetEvent}s, chunk by chunk.

    Adjacent data within one L{feed} is merged into one L{Data} event; how a
    stream is chunked changes only where data events are split.

    @ivar dropped_subnegotiations: subnegotiations discarded because they
        were empty, longer than C{max_subnegotiation} or cut short by
        another command.
    """

    def __init__(self, max_subnegotiation: int = MAX_SUBNEGOTIATION) -> None:
        self._max_sb = max_subnegotiation
        self._state = _S_DATA
        self._verb = 0
        self._sb = bytearray()
        self._sb_overflow = False
        self.dropped_subnegotiations = 0

    @property
    def in_data(self) -> bool:
        """
        Between sequences (no IAC pending): a chunk with no IAC byte is then
        all data, and the caller may pass it on without L{feed}.
        """
        return self._state == _S_DATA

    def feed(self, data: bytes) -> list[TelnetEvent]:
        """The events completed by C{data}; incomplete sequences wait for the next chunk."""
        events: list[TelnetEvent] = []
        pieces: list[bytes] = []  # data slices not yet emitted (merged into one Data)
        state = self._state
        i, n = 0, len(data)
        while i < n:
            if state == _S_DATA:
                j = data.find(_IAC_BYTE, i)
                if j < 0:
                    pieces.append(data[i:] if i else data)
                    break
                if j + 1 < n and data[j + 1] == IAC:  # IAC IAC: keep one 0xFF in the run
                    pieces.append(data[i:j + 1])
                    i = j + 2
                    continue
                if j > i:
                    pieces.append(data[i:j])
                i = j + 1
                state = _S_IAC
            elif state == _S_IAC:
                byte = data[i]
                i += 1
                if byte == IAC:  # the IAC IAC pair was split across chunks
                    pieces.append(_IAC_BYTE)
                    state = _S_DATA
                elif byte in _VERBS:
                    self._verb = byte
                    state = _S_VERB
                elif byte == SB:
                    _flush(pieces, events)
                    self._sb.clear()
                    self._sb_overflow = False
                    state = _S_SB
                else:
                    _flush(pieces, events)
                    events.append(Command(byte))
                    state = _S_DATA
            elif state == _S_VERB:
                _flush(pieces, events)
                events.append(Negotiation(self._verb, data[i]))
                i += 1
                state = _S_DATA
            elif state == _S_SB:
                j = data.find(_IAC_BYTE, i)
                end = n if j < 0 else j
                self._sb_append(data[i:end])
                if j < 0:
                    break
                i = j + 1
                state = _S_SB_IAC
            else:  # _S_SB_IAC
                byte = data[i]
                if byte == IAC:
                    self._sb_append(_IAC_BYTE)
                    i += 1
                    state = _S_SB
                elif byte == SE:
                    i += 1
                    self._end_subnegotiation(events)
                    state = _S_DATA
                else:
                    # Another command inside a subnegotiation: the peer broke
                    # it off.  Drop it and read this byte as a command.
                    self.dropped_subnegotiations += 1
                    self._sb.clear()
                    state = _S_IAC
        self._state = state
        _flush(pieces, events)
        return events

    def _sb_append(self, chunk: bytes) -> None:
        if self._sb_overflow or not chunk:
            return
        if len(self._sb) + len(chunk) > self._max_sb:
            self._sb_overflow = True
            self._sb.clear()
            return
        self._sb += chunk

    def _end_subnegotiation(self, events: list[TelnetEvent]) -> None:
        if self._sb_overflow or not self._sb:
            self.dropped_subnegotiations += 1
        else:
            events.append(Subnegotiation(self._sb[0], bytes(self._sb[1:])))
        self._sb.clear()
        self._sb_overflow = False


def _flush(pieces: list[bytes], events: list[TelnetEvent]) -> None:
    if pieces:
        events.append(Data(pieces[0] if len(pieces) == 1 else b"".join(pieces)))
        pieces.clear()


# -- NVT line endings (only when the peer refuses BINARY) ---------------------------

class CrNulFilter:
    """
    Receiving side of NVT ASCII: CR NUL means a bare CR, so the NUL is
    dropped (also when the pair is split across chunks).  Only for a peer
    that refused BINARY; in BINARY mode data is never touched.
    """

    def __init__(self) -> None:
        self._after_cr = False

    def filter(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._after_cr and data[0] == 0:
            data = data[1:]
        out = data.replace(b"\r\x00", b"\r") if b"\r\x00" in data else data
        self._after_cr = data.endswith(b"\r")
        return out


_BARE_CR = re.compile(rb"\r(?!\n)")


#: What the client's Enter may look like: CR LF, CR NUL (NVT) or a bare CR.
_ENTER = re.compile(rb"\r[\n\x00]?")

#: Reverse Telnet "Map <CR-LF>" choices: what an Enter becomes on the serial line.
ENTER_MAPS = {"crlf": b"\r\n", "cr": b"\r", "lf": b"\n"}


class EnterMapper:
    """
    Reverse Telnet's "Map <CR-LF>" (MOXA's option) on data from the client:
    every Enter -- CR LF, CR NUL or a CR followed by anything else -- becomes
    C{enter} (CR LF, CR or LF).  A CR at the end of a chunk is mapped at once
    and an LF or NUL opening the next chunk is dropped, so nothing waits.  A
    bare LF passes unchanged (ours: it is not an Enter a telnet client sends).
    """

    def __init__(self, enter: bytes = b"\r\n") -> None:
        self.enter = enter
        self._after_cr = False

    def map(self, data: bytes) -> bytes:
        if not data:
            return data
        if self._after_cr:
            self._after_cr = False
            if data[0] in (0x0A, 0x00):
                data = data[1:]
        if b"\r" not in data:
            return data
        self._after_cr = data.endswith(b"\r")
        enter = self.enter
        return _ENTER.sub(lambda _m: enter, data)


def escape_iac(data: bytes) -> bytes:
    """Double every IAC (0xFF) so C{data} passes through telnet unchanged."""
    return data.replace(_IAC_BYTE, _IAC_IAC)


def escape_data(data: bytes, binary: bool = True) -> bytes:
    """
    Data for the wire: IAC doubled; when the peer refused BINARY also a bare
    CR (not followed by LF in this chunk) sent as CR NUL (RFC 854).
    """
    if not binary:
        data = _BARE_CR.sub(b"\r\x00", data)
    return data.replace(_IAC_BYTE, _IAC_IAC)


# -- encoders ----------------------------------------------------------------------

def encode_command(command: int) -> bytes:
    """IAC <command>."""
    return bytes((IAC, command))


def encode_negotiation(verb: int, option: int) -> bytes:
    """IAC WILL/WONT/DO/DONT <option>."""
    if verb not in _VERBS:
        raise ValueError(f"{verb} is not WILL, WONT, DO or DONT")
    return bytes((IAC, verb, option))


def encode_subnegotiation(option: int, payload: bytes) -> bytes:
    """IAC SB <option> <payload, IAC doubled> IAC SE."""
    return bytes((IAC, SB, option)) + escape_iac(payload) + bytes((IAC, SE))


# -- option negotiation --------------------------------------------------------------

class OptionState(enum.Enum):
    """pyserial's TelnetOption states."""

    REQUESTED = "requested"  # we asked to enable it and wait for the answer
    ACTIVE = "active"
    INACTIVE = "inactive"  # off, but we agree when the peer asks
    REALLY_INACTIVE = "really-inactive"  # off, and we refuse when the peer asks


@attrs.define
class TelnetOption:
    """
    One option on one side.  C{local}: our side (we send WILL/WONT and
    receive DO/DONT); otherwise the peer's side (we send DO/DONT and receive
    WILL/WONT).
    """

    option: int
    local: bool
    state: OptionState = OptionState.INACTIVE

    @property
    def active(self) -> bool:
        return self.state is OptionState.ACTIVE

    @property
    def _yes(self) -> int:
        return WILL if self.local else DO

    @property
    def _no(self) -> int:
        return WONT if self.local else DONT

    def request(self) -> bytes:
        """Ask the peer to enable the option; what to send (nothing if already on or asked)."""
        if self.state in (OptionState.ACTIVE, OptionState.REQUESTED):
            return b""
        self.state = OptionState.REQUESTED
        return encode_negotiation(self._yes, self.option)

    def receive(self, verb: int) -> bytes:
        """The peer sent C{verb} for this option and side: update the state, return the reply."""
        if verb in (DO, WILL):
            if self.state is OptionState.REQUESTED:
                self.state = OptionState.ACTIVE
            elif self.state is OptionState.INACTIVE:
                self.state = OptionState.ACTIVE
                return encode_negotiation(self._yes, self.option)
            elif self.state is OptionState.REALLY_INACTIVE:
                return encode_negotiation(self._no, self.option)
            return b""
        if self.state is OptionState.ACTIVE:
            self.state = OptionState.INACTIVE
            return encode_negotiation(self._no, self.option)
        if self.state is OptionState.REQUESTED:
            self.state = OptionState.INACTIVE  # refused: do not ask again
        return b""


class OptionTable:
    """
    The options we support on each side; everything else is refused.

    @param local: options we are willing to enable on our side (WILL).
    @param remote: options we are willing to let the peer enable (DO).
    """

    def __init__(self, local: tuple[int, ...], remote: tuple[int, ...]) -> None:
        self._options: dict[tuple[bool, int], TelnetOption] = {}
        for option in local:
            self._options[(True, option)] = TelnetOption(option, True)
        for option in remote:
            self._options[(False, option)] = TelnetOption(option, False)

    def get(self, option: int, local: bool) -> TelnetOption | None:
        return self._options.get((local, option))

    def enabled(self, option: int, local: bool) -> bool:
        opt = self._options.get((local, option))
        return opt is not None and opt.active

    def request(self, option: int, local: bool) -> bytes:
        """Ask the peer to enable a supported option; what to send."""
        opt = self._options.get((local, option))
        if opt is None:
            raise KeyError(f"option {option} is not supported on that side")
        return opt.request()

    def receive(self, event: Negotiation) -> bytes:
        """Handle a negotiation from the peer; the reply to send (maybe nothing)."""
        local = event.verb in (DO, DONT)
        opt = self._options.get((local, event.option))
        if opt is not None:
            return opt.receive(event.verb)
        if event.verb == DO:
            return encode_negotiation(WONT, event.option)
        if event.verb == WILL:
            return encode_negotiation(DONT, event.option)
        return b""  # a refusal of something we never offered: no answer (RFC 1143)


# -- RFC 2217 ---------------------------------------------------------------------------

#: The access server answers with the client's command code + 100.
SERVER_OFFSET = 100


class ComPortCommand(enum.IntEnum):
    """RFC 2217 command codes as sent by the client."""

    SIGNATURE = 0
    SET_BAUDRATE = 1
    SET_DATASIZE = 2
    SET_PARITY = 3
    SET_STOPSIZE = 4
    SET_CONTROL = 5
    NOTIFY_LINESTATE = 6
    NOTIFY_MODEMSTATE = 7
    FLOWCONTROL_SUSPEND = 8
    FLOWCONTROL_RESUME = 9
    SET_LINESTATE_MASK = 10
    SET_MODEMSTATE_MASK = 11
    PURGE_DATA = 12


# SET-PARITY values
PARITY_QUERY, PARITY_NONE, PARITY_ODD, PARITY_EVEN, PARITY_MARK, PARITY_SPACE = range(6)
# SET-STOPSIZE values (note: 1.5 is 3)
STOPSIZE_QUERY, STOPSIZE_1, STOPSIZE_2, STOPSIZE_1_5 = range(4)

# SET-CONTROL values
CONTROL_FLOW_QUERY = 0  # outbound (or both)
CONTROL_FLOW_NONE = 1
CONTROL_FLOW_XONXOFF = 2
CONTROL_FLOW_HARDWARE = 3
CONTROL_BREAK_QUERY = 4
CONTROL_BREAK_ON = 5
CONTROL_BREAK_OFF = 6
CONTROL_DTR_QUERY = 7
CONTROL_DTR_ON = 8
CONTROL_DTR_OFF = 9
CONTROL_RTS_QUERY = 10
CONTROL_RTS_ON = 11
CONTROL_RTS_OFF = 12
CONTROL_INBOUND_FLOW_QUERY = 13
CONTROL_INBOUND_FLOW_NONE = 14
CONTROL_INBOUND_FLOW_XONXOFF = 15
CONTROL_INBOUND_FLOW_HARDWARE = 16
CONTROL_FLOW_DCD = 17  # outbound
CONTROL_INBOUND_FLOW_DTR = 18
CONTROL_FLOW_DSR = 19  # outbound

# NOTIFY-LINESTATE bits
LINESTATE_TIMEOUT = 0x80
LINESTATE_TSRE = 0x40  # transfer shift register empty
LINESTATE_THRE = 0x20  # transfer holding register empty
LINESTATE_BREAK = 0x10
LINESTATE_FRAMING = 0x08
LINESTATE_PARITY = 0x04
LINESTATE_OVERRUN = 0x02
LINESTATE_DATA_READY = 0x01

# NOTIFY-MODEMSTATE bits
MODEMSTATE_CD = 0x80
MODEMSTATE_RI = 0x40
MODEMSTATE_DSR = 0x20
MODEMSTATE_CTS = 0x10
MODEMSTATE_DELTA_CD = 0x08
MODEMSTATE_TRAILING_RI = 0x04
MODEMSTATE_DELTA_DSR = 0x02
MODEMSTATE_DELTA_CTS = 0x01

# PURGE-DATA values
PURGE_RECEIVE = 1  # the access server's receive buffer (serial -> network)
PURGE_TRANSMIT = 2  # its transmit buffer (network -> serial)
PURGE_BOTH = 3

ComPortValue = int | bytes | None


@attrs.frozen
class ComPortMessage:
    """
    One RFC 2217 message.  C{value}: C{bytes} for SIGNATURE, C{None} for
    FLOWCONTROL-SUSPEND/RESUME and for a command sent without its value (a
    poll), else an C{int} (0 = query).
    """

    command: ComPortCommand
    value: ComPortValue = None
    server: bool = False  # sent by the access server (code + 100)


_NO_VALUE = frozenset((ComPortCommand.FLOWCONTROL_SUSPEND, ComPortCommand.FLOWCONTROL_RESUME))


def decode_com_port(payload: bytes) -> ComPortMessage:
    """
    Decode the payload of a COM-PORT-OPTION subnegotiation (after the
    option byte).  Tolerant of trailing bytes (sredird pads its baud rate
    answer with four NULs); raises L{TelnetError} when the command is
    unknown or the baud rate is cut short.
    """
    if not payload:
        raise TelnetError("empty COM-PORT-OPTION subnegotiation")
    code, value = payload[0], payload[1:]
    server = code >= SERVER_OFFSET
    try:
        command = ComPortCommand(code - SERVER_OFFSET if server else code)
    except ValueError:
        raise TelnetError(f"unknown COM-PORT-OPTION command {code}") from None
    if command is ComPortCommand.SIGNATURE:
        return ComPortMessage(command, value, server)
    if command in _NO_VALUE or not value:
        return ComPortMessage(command, None, server)
    if command is ComPortCommand.SET_BAUDRATE:
        if len(value) < 4:
            raise TelnetError(f"SET-BAUDRATE needs 4 bytes, got {len(value)}")
        return ComPortMessage(command, struct.unpack_from("!I", value)[0], server)
    return ComPortMessage(command, value[0], server)


def encode_com_port(message: ComPortMessage) -> bytes:
    """The whole subnegotiation (IAC SB 44 … IAC SE) for C{message}."""
    command, value = message.command, message.value
    code = command + (SERVER_OFFSET if message.server else 0)
    if value is None:
        body = b""
    elif isinstance(value, bytes):
        if command is not ComPortCommand.SIGNATURE:
            raise ValueError(f"{command.name} takes a number, not bytes")
        body = value
    elif command is ComPortCommand.SET_BAUDRATE:
        body = struct.pack("!I", value)
    else:
        if not 0 <= value <= 255:
            raise ValueError(f"{command.name} value {value} is not one byte")
        body = bytes((value,))
    return encode_subnegotiation(COM_PORT_OPTION, bytes((code,)) + body)


def server_reply(command: ComPortCommand, value: ComPortValue = None) -> bytes:
    """The access server's message for C{command} (code + 100) with C{value}."""
    return encode_com_port(ComPortMessage(command, value, server=True))
