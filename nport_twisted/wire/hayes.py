# -*- test-case-name: tests.test_hayes -*-
"""
Hayes AT command emulation for Ethernet Modem mode, sans-IO.

Bytes from the serial device go in (L{HayesModem.feed}, with the time they
arrived), actions come out: L{Output} (bytes for the serial device: echo,
result codes, information text), L{NetworkData} (bytes for the call's TCP
connection), L{Dial}, L{Answer}, L{Hangup}, L{Escape} (the call is up but
the modem is in command mode: stop reading the network), L{GoOnline} (back
to data mode).  The front-end (L{nport_twisted.modes.ethernet_modem}) does
the networking and tells the modem what happened (L{HayesModem.dialed},
L{HayesModem.dial_failed}, L{HayesModem.incoming}, L{HayesModem.ring},
L{HayesModem.remote_hangup} …).  No clock here: the time is an argument,
and L{HayesModem.next_deadline}/L{HayesModem.poll} drive the escape guard
time.

What is MOXA's (settings.md §5.5, NPort 6000 manual [S32]): Ethernet
Modem mode is an AT-command modem emulation, ``ATD <ip>:<port>`` dials
out, an incoming connection rings (``RING``) and ``ATA`` answers it.
Everything else here is ours and follows Hayes practice: the other
commands, the result codes (``CONNECT <baud>``, ``NO CARRIER``, ``BUSY``
for a refused dial), ``+++`` framed by the S12 guard time, auto-answer on
the S0-th ring, the registers and the dial-string forms below
(docs/modes/ethernet-modem.md).

Commands (after ``AT``; spaces ignored; several per line):
  D<target>   dial: ``host:port``, ``[v6]:port``, a 12-digit address
              (``192168001001`` = 192.168.1.1) with ``:port`` or more digits
              for the port; ``T``/``P`` after D ignored (ATDT, ATDP)
  A  answer   H/H0 hang up (H1: OK)   O return online   Z reset   &F factory
  E0/E1 echo  Q0/Q1 quiet  V0/V1 verbose/numeric results  I<n> information
  Sn=v / Sn?  registers (0-31, values 0-255)   &V show the settings
  &C0/&C1 DCD always on / on while connected   &D0-&D3 (2, 3: DTR drop
  from the terminal hangs up)   X, L, M, B, N, W, &K, &S accepted (no effect)
  A/          repeat the last command line (no CR needed)
Registers used: S0 rings before answering (0 = ring until ATA), S1 ring
count, S2 escape character (above 127: no escape), S3 line end (CR), S4
line feed, S5 backspace, S7 seconds to wait for a connection when dialing,
S12 escape guard time in 1/50 s (0: no guard time).

Result codes: verbose ``<CR><LF>TEXT<CR><LF>``, numeric ``n<CR>``:
0 OK, 1 CONNECT (``CONNECT <baud>`` when verbose), 2 RING, 3 NO CARRIER,
4 ERROR, 7 BUSY (the remote refused the connection).
"""

from __future__ import annotations

import enum
import ipaddress
import re

import attrs


class Result(enum.IntEnum):
    """Hayes result codes (numeric value, verbose text)."""

    OK = 0
    CONNECT = 1
    RING = 2
    NO_CARRIER = 3
    ERROR = 4
    NO_DIALTONE = 6
    BUSY = 7
    NO_ANSWER = 8

    @property
    def text(self) -> str:
        return self.name.replace("_", " ")


class CallState(enum.Enum):
    """Where the modem is."""

    IDLE = "idle"  # command mode, no call
    DIALING = "dialing"  # ATD: waiting for the TCP connection
    RINGING = "ringing"  # an incoming call waits for ATA
    ONLINE = "online"  # data mode
    ONLINE_COMMAND = "online-command"  # the call is up, command mode (after +++)


# -- actions ------------------------------------------------------------------------

@attrs.frozen
class Output:
    """Bytes for the serial device (echo, result codes, information text)."""

    data: bytes


@attrs.frozen
class NetworkData:
    """Bytes from the serial device for the call's TCP connection."""

    data: bytes


@attrs.frozen
class Dial:
    """Connect to C{host}:C{port}; give up after C{timeout} seconds."""

    host: str
    port: int
    timeout: float


@attrs.frozen
class Answer:
    """Accept the ringing incoming call (its connection is already there)."""


@attrs.frozen
class Hangup:
    """End the call (or the dial, or the ringing call)."""


@attrs.frozen
class Escape:
    """Data mode left with +++: the call stays up; stop reading the network."""


@attrs.frozen
class GoOnline:
    """Back to data mode (ATO, or a call answered or dialed): read the network again."""


Action = Output | NetworkData | Dial | Answer | Hangup | Escape | GoOnline


# -- settings -------------------------------------------------------------------------

#: Longest command line kept (characters after the line was started); a longer
#: line is answered with ERROR when it ends.  Ours (Hayes modems keep 40).
LINE_MAX = 80

#: Registers S0-S31 exist; these have factory values other than 0.
REGISTER_COUNT = 32
FACTORY_REGISTERS = {2: 43, 3: 13, 4: 10, 5: 8, 6: 2, 7: 50, 8: 2, 10: 14, 12: 50}

#: Port used when a dial string gives none (ours: the NPort's first TCP port).
DEFAULT_DIAL_PORT = 4001

_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_DIAL_NOISE = str.maketrans("", "", " -()")


@attrs.define
class Profile:
    """What AT&F restores and AT&V shows."""

    echo: bool = True
    quiet: bool = False
    verbose: bool = True
    x_level: int = 4
    dcd_mode: int = 1  # &C: 0 = always on, 1 = on while connected
    dtr_mode: int = 2  # &D: 0/1 ignore the terminal's DTR, 2/3 its drop hangs up
    registers: list[int] = attrs.Factory(
        lambda: [FACTORY_REGISTERS.get(n, 0) for n in range(REGISTER_COUNT)])


class DialError(ValueError):
    """A dial string that names no reachable address."""


def parse_dial(text: str) -> tuple[str, int]:
    """
    C{(host, port)} from the dial string of ``ATD``: C{T}/C{P} prefix,
    ``host:port``, ``[v6addr]:port``, a 12-digit IPv4 address (three digits
    per octet) followed by ``:port`` or by the port's digits, or a host alone
    (port L{DEFAULT_DIAL_PORT}).  Spaces, ``-``, ``(`` and ``)`` between
    digits are ignored.

    @raise DialError: when the string is no address.
    """
    target = text.strip().rstrip(";").strip()
    if target[:1] in ("T", "P", "t", "p"):
        target = target[1:].strip()  # ATDT/ATDP; a host named t… is dialed as ATDTt…
    if not target:
        raise DialError("empty dial string")
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise DialError("unclosed [ in dial string")
        host, rest = target[1:end], target[end + 1:]
        if rest and not rest.startswith(":"):
            raise DialError("expected :port after ]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise DialError(f"{host!r} is not an IPv6 address") from None
        return host, _port(rest[1:]) if rest else DEFAULT_DIAL_PORT
    compact = target.translate(_DIAL_NOISE)
    if compact.isdigit():
        if len(compact) < 12:
            raise DialError("a numeric dial string needs 12 digits (3 per address byte)")
        return _twelve_digits(compact[:12]), _port(compact[12:]) if compact[12:] else DEFAULT_DIAL_PORT
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, ""
    host = host.strip()
    compact_host = host.translate(_DIAL_NOISE)
    if compact_host.isdigit() and len(compact_host) == 12:
        host = _twelve_digits(compact_host)
    elif not _HOST_NAME.match(host) or ".." in host:
        raise DialError(f"{host!r} is not an address or host name")
    elif all(part.isdigit() for part in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise DialError(f"{host!r} is not an IPv4 address") from None
    return host, _port(port_text) if sep else DEFAULT_DIAL_PORT


def _twelve_digits(digits: str) -> str:
    octets = [int(digits[i:i + 3]) for i in range(0, 12, 3)]
    if any(o > 255 for o in octets):
        raise DialError(f"{digits} is not an address (a group is above 255)")
    return ".".join(str(o) for o in octets)


def _port(text: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise DialError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


# -- the modem ----------------------------------------------------------------------------

class HayesModem:
    """
    One emulated modem.  Feed it the serial bytes with the time they
    arrived; act on the actions it returns.

    @param identity: the text of ``ATI`` (``ATI0``).
    @param version: the text of ``ATI3``.
    """

    def __init__(self, identity: str = "NPort Ethernet Modem", version: str = "") -> None:
        self.identity = identity
        self.version = version
        self.profile = Profile()
        self.state = CallState.IDLE
        self.baud = 0  # of the call, for CONNECT
        self._line = bytearray()
        self._overflow = False
        self._last_line = b""
        self._answered = False  # the command line's last command gave its own result
        # escape detection in data mode
        self._last_rx = 0.0
        self._plus = 0
        self._plus_time = 0.0

    # -- what the front-end reads ----------------------------------------------------

    @property
    def registers(self) -> list[int]:
        return self.profile.registers

    @property
    def dcd(self) -> bool:
        """Whether carrier (the terminal's DCD, through our DTR output) should be on."""
        if self.profile.dcd_mode == 0:
            return True
        return self.state in (CallState.ONLINE, CallState.ONLINE_COMMAND)

    @property
    def guard_time(self) -> float:
        return self.registers[12] / 50.0

    @property
    def in_call(self) -> bool:
        return self.state in (CallState.ONLINE, CallState.ONLINE_COMMAND)

    def next_deadline(self) -> float | None:
        """When L{poll} has work: the guard time after (part of) an escape sequence."""
        if self.state is CallState.ONLINE and self._plus:
            return self._plus_time + self.guard_time
        return None

    # -- serial input ---------------------------------------------------------------------

    def feed(self, data: bytes, now: float) -> list[Action]:
        """Bytes from the serial device, received at C{now}."""
        if not data:
            return []
        if self.state is CallState.ONLINE:
            return self._feed_online(data, now)
        if self.state is CallState.DIALING:
            # Any character but a line feed (or NUL) after the dial line aborts the dial.
            if data.strip(b"\n\x00" + bytes((self.registers[4] & 0xFF,))):
                self.state = CallState.IDLE
                return [Hangup(), *self._result(Result.NO_CARRIER)]
            return []
        return self._feed_command(data, now)

    def poll(self, now: float) -> list[Action]:
        """The time is C{now}: a completed escape sequence, or '+' held too long."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._plus == 3:
            self._plus = 0
            self.state = CallState.ONLINE_COMMAND
            return [Escape(), *self._result(Result.OK)]
        held = bytes((self.registers[2],)) * self._plus
        self._plus = 0
        self._last_rx = self._plus_time
        return [NetworkData(held)]

    # -- network events -----------------------------------------------------------------

    def dialed(self, baud: int, now: float) -> list[Action]:
        """The dial's TCP connection is up: CONNECT, data mode."""
        if self.state is not CallState.DIALING:
            return [Hangup()]  # aborted meanwhile: drop the late connection
        return self._connect(baud, now)

    def dial_failed(self, result: Result = Result.NO_CARRIER) -> list[Action]:
        """The dial failed: C{result} (NO CARRIER, or BUSY when refused)."""
        if self.state is not CallState.DIALING:
            return []
        self.state = CallState.IDLE
        return self._result(result)

    def incoming(self, baud: int, now: float) -> list[Action]:
        """
        A TCP connection arrived while idle: it rings now (L{ring} for the
        next rings).  S0 = 0: it rings until ATA; S0 = n: it is answered on
        the n-th ring (Hayes auto-answer).  The front-end refuses calls
        while the modem is not idle.
        """
        if self.state is not CallState.IDLE:
            return [Hangup()]
        self.baud = baud
        self.state = CallState.RINGING
        self.registers[1] = 0
        return self.ring(now)

    def ring(self, now: float = 0.0) -> list[Action]:
        """One more RING for the waiting call (S1 counts them); the S0-th answers it."""
        if self.state is not CallState.RINGING:
            return []
        self.registers[1] = min(255, self.registers[1] + 1)
        actions = self._result(Result.RING)
        if self.registers[0] and self.registers[1] >= self.registers[0]:
            actions += [Answer(), *self._connect(self.baud, now)]
        return actions

    def incoming_gone(self) -> list[Action]:
        """The ringing call went away (the caller left, or nobody answered)."""
        if self.state is CallState.RINGING:
            self.state = CallState.IDLE
            self.registers[1] = 0
        return []

    def remote_hangup(self) -> list[Action]:
        """The call's connection closed: NO CARRIER, command mode."""
        if self.state is CallState.RINGING:
            return self.incoming_gone()
        if not self.in_call:
            return []
        self.state = CallState.IDLE
        self._plus = 0
        return [*self._result(Result.NO_CARRIER)]

    def terminal_dtr_dropped(self) -> list[Action]:
        """The terminal dropped DTR (our DSR input): with &D2/&D3 a call is hung up."""
        if self.profile.dtr_mode < 2 or not (self.in_call or self.state is CallState.DIALING):
            return []
        self.state = CallState.IDLE
        self._plus = 0
        return [Hangup(), *self._result(Result.NO_CARRIER)]

    # -- data mode ---------------------------------------------------------------------------

    def _feed_online(self, data: bytes, now: float) -> list[Action]:
        esc = self.registers[2]
        if esc > 127 or (not self._plus and esc not in data):
            self._last_rx = now
            return [NetworkData(data)]
        guard = self.guard_time
        out = bytearray()
        plus_byte = bytes((esc,))
        for byte in data:
            if self._plus == 0:
                if byte == esc and (guard == 0 or now - self._last_rx >= guard):
                    self._plus, self._plus_time = 1, now
                else:
                    out.append(byte)
                    self._last_rx = now
            elif self._plus < 3 and byte == esc and (guard == 0 or now - self._plus_time <= guard):
                self._plus, self._plus_time = self._plus + 1, now
            else:  # the sequence is broken: what was held is data
                out += plus_byte * self._plus
                self._plus = 0
                out.append(byte)
                self._last_rx = now
        actions: list[Action] = [NetworkData(bytes(out))] if out else []
        if self._plus == 3 and guard == 0:
            actions += self.poll(now)
        return actions

    def _connect(self, baud: int, now: float) -> list[Action]:
        self.baud = baud
        self.state = CallState.ONLINE
        self._last_rx = now
        self._plus = 0
        return [GoOnline(), *self._result(Result.CONNECT)]

    # -- command mode -----------------------------------------------------------------------

    def _feed_command(self, data: bytes, now: float) -> list[Action]:
        regs = self.registers
        cr, lf, bs = regs[3], regs[4], regs[5]
        actions: list[Action] = []
        echo = bytearray()
        for index, byte in enumerate(data):
            if byte == cr:
                if self.profile.echo:
                    echo.append(byte)
                line, overflow = bytes(self._line), self._overflow
                self._line.clear()
                self._overflow = False
                actions += self._flush_echo(echo)
                actions += self._result(Result.ERROR) if overflow else self._line_done(line, now)
            elif byte in (bs, 0x7F):
                if self._line:
                    self._line.pop()
                    if self.profile.echo:
                        echo += b"\x08 \x08"
            elif (byte == lf and not self._line) or (byte < 0x20 and byte != 0x09):
                pass  # the LF of a CR LF line end; other controls are no part of a command
            else:
                if self.profile.echo:
                    echo.append(byte)
                if len(self._line) >= LINE_MAX:
                    self._overflow = True
                else:
                    self._line.append(byte)
                    if self._line.upper() == b"A/":  # repeat the last line, no CR needed
                        self._line.clear()
                        actions += self._flush_echo(echo)
                        actions += self._line_done(self._last_line, now, repeat=True)
            if self.state in (CallState.ONLINE, CallState.DIALING):
                # The line dialed or went online: the rest of the chunk is for that state.
                actions += self._flush_echo(echo)
                return actions + self.feed(data[index + 1:], now)
        actions += self._flush_echo(echo)
        return actions

    def _flush_echo(self, echo: bytearray) -> list[Action]:
        if not echo:
            return []
        out = Output(bytes(echo))
        echo.clear()
        return [out]

    def _line_done(self, line: bytes, now: float, repeat: bool = False) -> list[Action]:
        text = line.decode("latin-1")
        start = text.upper().find("AT")
        if start < 0:
            return []  # not a command line: ignored, as a modem does
        if not repeat:
            self._last_line = line[start:]
        return self._execute(text[start + 2:], now)

    def _execute(self, commands: str, now: float) -> list[Action]:
        """Run every command of one line; OK at the end unless one answered itself."""
        actions: list[Action] = []
        info: list[str] = []
        self._answered = False
        i, n = 0, len(commands)
        upper = commands.upper()
        while i < n:
            c = upper[i]
            i += 1
            if c.isspace():
                continue
            if c == "D":
                return actions + self._info(info) + self._dial(commands[i:])
            if c == "A":
                return actions + self._info(info) + self._answer(now)
            if c == "O":
                _, i = _number(upper, i)
                return actions + self._info(info) + self._online(now)
            extra: list[Action] | None
            if c == "S":
                extra, i = self._register(upper, i, info)
            elif c == "&" and i < n:
                letter = upper[i]
                value, i = _number(upper, i + 1)
                extra = self._ampersand(letter, value, info)
            else:
                value, i = _number(upper, i)
                extra = self._basic(c, value, info)
            if extra is None:
                return actions + self._info(info) + self._result(Result.ERROR)
            actions += extra
        if self._answered:
            return actions + self._info(info)
        return actions + self._info(info) + self._result(Result.OK)

    def _basic(self, c: str, value: int | None, info: list[str]) -> list[Action] | None:
        """One basic command; None when it is not valid."""
        p = self.profile
        v = 0 if value is None else value
        if c == "E" and v in (0, 1):
            p.echo = bool(v)
        elif c == "Q" and v in (0, 1):
            p.quiet = bool(v)
        elif c == "V" and v in (0, 1):
            p.verbose = bool(v)
        elif c == "X" and 0 <= v <= 4:
            p.x_level = v
        elif c in "LMBNW" and v <= 3:
            pass  # speaker, modulation, error correction: nothing to emulate
        elif c == "H" and v in (0, 1):
            return self._hangup() if v == 0 else []
        elif c == "Z" and v <= 1:
            extra = self._hangup_silently()
            self.profile = Profile()
            return extra
        elif c == "I" and v <= 9:
            info.append(self.version if v == 3 and self.version else self.identity)
        else:
            return None
        return []

    def _ampersand(self, letter: str, value: int | None, info: list[str]) -> list[Action] | None:
        v = 0 if value is None else value
        if letter == "F" and v == 0:
            self.profile = Profile()
        elif letter == "C" and v in (0, 1):
            self.profile.dcd_mode = v
        elif letter == "D" and 0 <= v <= 3:
            self.profile.dtr_mode = v
        elif letter in ("K", "S") and v <= 6:
            pass  # flow control is the port's serial setting; DSR is the cable's
        elif letter == "V" and v == 0:
            info.extend(self._settings_text())
        else:
            return None  # includes &W: nothing is stored, so say so
        return []

    def _register(self, upper: str, i: int, info: list[str]) -> tuple[list[Action] | None, int]:
        number, i = _number(upper, i)
        reg = 0 if number is None else number
        if reg >= REGISTER_COUNT:
            return None, i
        if i < len(upper) and upper[i] == "?":
            info.append(f"{self.registers[reg]:03d}")
            return [], i + 1
        if i < len(upper) and upper[i] == "=":
            value, i = _number(upper, i + 1)
            if value is None or value > 255:
                return None, i
            self.registers[reg] = value
            return [], i
        return None, i

    def _settings_text(self) -> list[str]:
        p = self.profile
        flags = (f"E{int(p.echo)} Q{int(p.quiet)} V{int(p.verbose)} X{p.x_level} "
                 f"&C{p.dcd_mode} &D{p.dtr_mode}")
        regs = " ".join(f"S{n:02d}:{self.registers[n]:03d}" for n in (0, 1, 2, 3, 4, 5, 7, 12))
        return ["ACTIVE PROFILE:", flags, regs]

    def _dial(self, target: str) -> list[Action]:
        if self.state is not CallState.IDLE:
            return self._result(Result.ERROR)
        try:
            host, port = parse_dial(target)
        except DialError:
            return self._result(Result.ERROR)
        self.state = CallState.DIALING
        return [Dial(host, port, float(max(1, self.registers[7])))]

    def _answer(self, now: float) -> list[Action]:
        if self.state is not CallState.RINGING:
            return [*self._result(Result.NO_CARRIER)]
        return [Answer(), *self._connect(self.baud, now)]

    def _online(self, now: float) -> list[Action]:
        if self.state is not CallState.ONLINE_COMMAND:
            return [*self._result(Result.NO_CARRIER)]
        return self._connect(self.baud, now)

    def _hangup(self) -> list[Action]:
        """ATH: with a call, hang up and answer NO CARRIER (ours, as Hayes modems do); else OK."""
        if self.in_call:
            self.state = CallState.IDLE
            self._answered = True
            return [Hangup(), *self._result(Result.NO_CARRIER)]
        return self._hangup_silently()

    def _hangup_silently(self) -> list[Action]:
        if self.state is CallState.IDLE:
            return []
        self.state = CallState.IDLE
        self.registers[1] = 0
        return [Hangup()]

    # -- output ---------------------------------------------------------------------------------

    def _result(self, result: Result) -> list[Action]:
        """The result code as the profile shows it (nothing when quiet)."""
        p = self.profile
        if p.quiet:
            return []
        cr, lf = bytes((self.registers[3],)), bytes((self.registers[4],))
        if not p.verbose:
            return [Output(str(int(result)).encode() + cr)]
        text = result.text
        if result is Result.CONNECT and self.baud:
            text = f"CONNECT {self.baud}"
        return [Output(cr + lf + text.encode() + cr + lf)]

    def _info(self, lines: list[str]) -> list[Action]:
        if not lines:
            return []
        cr, lf = bytes((self.registers[3],)), bytes((self.registers[4],))
        body = b"".join(line.encode("latin-1", "replace") + cr + lf for line in lines)
        lines.clear()
        return [Output(cr + lf + body if self.profile.verbose else body)]


def _number(text: str, i: int) -> tuple[int | None, int]:
    """The decimal number at C{text[i:]} (None when there is none) and the index after it."""
    j = i
    while j < len(text) and text[j].isascii() and text[j].isdigit():
        j += 1
    if j == i:
        return None, i
    return int(text[i:j]), j


def join_output(actions: list[Action]) -> bytes:
    """All L{Output} bytes of C{actions}, in order (for tests and simple callers)."""
    return b"".join(a.data for a in actions if isinstance(a, Output))
