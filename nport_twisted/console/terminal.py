# -*- test-case-name: tests.test_telnet_console.TerminalTests -*-
"""
The telnet side of the NPort console, sans-IO: bytes from the client in,
typed lines and the bytes to send back (negotiation answers, echo) out;
text out -> bytes for the wire.

What the box does (MOXA's NPort, as scanners fingerprint it):

  - On connect it sends exactly IAC WILL ECHO, IAC WILL SGA, IAC WILL
    BINARY, IAC DO ECHO, IAC DO BINARY (L{GREETING}); the answers are
    handled by the option table of L{nport_twisted.wire.telnet} (options we
    do not support are refused, refusals are never answered).
  - Every line it writes ends with CR NUL LF (C{\\r\\0\\n}).

Input works with every kind of client:

  - a telnet client in character mode (it agreed to our ECHO): we echo
    what is typed (nothing while a password is typed), handle backspace,
    DEL, ^U (erase the line), ^C / IAC IP (drop the line), IAC EC / EL, and
    answer IAC AYT;
  - a client in line mode, a script, or a plain C{nc} that answers no
    negotiation: no echo (it echoes locally), lines as they come.

A line ends at CR LF, CR NUL, a bare CR or a bare LF (CR LF split across
reads is still one line end).  Lines are UTF-8 (invalid bytes replaced),
at most L{MAX_LINE} bytes (more is dropped, with a bell).
"""

from __future__ import annotations

import attrs

from nport_twisted.wire.telnet import (
    AYT,
    BINARY,
    DO,
    EC,
    ECHO,
    EL,
    IP,
    SGA,
    WILL,
    Command,
    Data,
    Negotiation,
    OptionTable,
    TelnetParser,
    encode_negotiation,
    escape_iac,
)

#: Sent on connect, byte for byte as an NPort does.
GREETING = b"".join(
    encode_negotiation(verb, option)
    for verb, option in ((WILL, ECHO), (WILL, SGA), (WILL, BINARY), (DO, ECHO), (DO, BINARY))
)

#: The NPort's line end.
EOL = b"\r\x00\n"

#: Longest input line kept (bytes); the rest of a longer line is dropped.
MAX_LINE = 512

_BS, _DEL, _CTRL_C, _CTRL_U, _ESC, _BELL = 0x08, 0x7F, 0x03, 0x15, 0x1B, b"\x07"


@attrs.frozen
class Line:
    """One line the user entered (without its line end); C{cancelled} for ^C / IAC IP."""

    text: str
    cancelled: bool = False


def to_wire(text: str) -> bytes:
    """Console text for the wire: UTF-8, IAC doubled, every line end CR NUL LF."""
    data = text.replace("\r\n", "\n").encode("utf-8", "replace")
    return escape_iac(data).replace(b"\n", EOL)


class Terminal:
    """
    One client's telnet terminal.  Call L{greeting} once, L{feed} with
    every chunk received; set L{secret} while a password is being typed.
    """

    def __init__(self) -> None:
        self._parser = TelnetParser(max_subnegotiation=512)
        # We offer ECHO, SGA and BINARY and ask the client for ECHO and BINARY (what
        # MOXA's greeting does); a client that also offers SGA is welcome.
        self._options = OptionTable(local=(ECHO, SGA, BINARY), remote=(ECHO, SGA, BINARY))
        self._line = bytearray()
        self._overflow = False
        self._after_cr = False
        self._esc = 0  # 1: after ESC, 2: inside a control sequence
        self.secret = False

    def greeting(self) -> bytes:
        """The negotiation the box starts every connection with (L{GREETING})."""
        out = b"".join(
            (
                self._options.request(ECHO, True),
                self._options.request(SGA, True),
                self._options.request(BINARY, True),
                self._options.request(ECHO, False),
                self._options.request(BINARY, False),
            )
        )
        assert out == GREETING
        return out

    @property
    def echoing(self) -> bool:
        """We echo typed characters: the client agreed to our ECHO and does not echo itself."""
        return self._options.enabled(ECHO, True) and not self._options.enabled(ECHO, False)

    @property
    def pending_input(self) -> bool:
        """Characters typed but not yet ended by a line end."""
        return bool(self._line)

    def feed(self, data: bytes) -> tuple[list[Line], bytes]:
        """The lines C{data} completes and what to send back (answers and echo)."""
        lines: list[Line] = []
        out: list[bytes] = []
        for event in self._parser.feed(data):
            if isinstance(event, Data):
                self._typed(event.data, lines, out)
            elif isinstance(event, Negotiation):
                out.append(self._options.receive(event))
            elif isinstance(event, Command):
                self._command(event.command, lines, out)
            # Subnegotiations (terminal type, window size …) were never asked for.
        return lines, b"".join(out)

    def _command(self, command: int, lines: list[Line], out: list[bytes]) -> None:
        if command == IP:
            self._cancel(lines, out)
        elif command == EC:
            self._erase_char(out)
        elif command == EL:
            self._erase_line(out)
        elif command == AYT:
            out.append(b"[yes]" + EOL)

    def _typed(self, data: bytes, lines: list[Line], out: list[bytes]) -> None:
        echo = self.echoing
        start = 0
        for i, byte in enumerate(data):
            if self._esc:
                # Inside an escape sequence (cursor keys: ESC [ A, ESC O P …): dropped.
                start = i + 1
                if self._esc == 1:
                    self._esc = 2 if byte in (0x5B, 0x4F) else 0  # "[" or "O"
                elif 0x40 <= byte <= 0x7E:
                    self._esc = 0
                continue
            if byte < 0x20 or byte == _DEL:
                self._add(data[start:i], out, echo)
                start = i + 1
                if byte == _ESC:
                    self._esc = 1
                    self._after_cr = False
                else:
                    self._control(byte, lines, out, echo)
            else:
                self._after_cr = False
        self._add(data[start:], out, echo)

    def _control(self, byte: int, lines: list[Line], out: list[bytes], echo: bool) -> None:
        after_cr, self._after_cr = self._after_cr, False
        if byte == 0x0D:
            self._end_line(lines, out, echo)
            self._after_cr = True
        elif byte in (0x0A, 0x00):
            if not after_cr and byte == 0x0A:  # a bare LF ends a line; after CR it is part of it
                self._end_line(lines, out, echo)
        elif byte in (_BS, _DEL):
            self._erase_char(out)
        elif byte == _CTRL_U:
            self._erase_line(out)
        elif byte == _CTRL_C:
            self._cancel(lines, out)
        # Other control characters (tab, ^D …) are ignored: no setting may contain them.

    def _add(self, chunk: bytes, out: list[bytes], echo: bool) -> None:
        if not chunk:
            return
        room = MAX_LINE - len(self._line)
        if len(chunk) > room:
            chunk = chunk[:room]
            if not self._overflow:
                out.append(_BELL)
            self._overflow = True
        self._line += chunk
        if echo and not self.secret and chunk:
            out.append(escape_iac(chunk))

    def _end_line(self, lines: list[Line], out: list[bytes], echo: bool) -> None:
        lines.append(Line(bytes(self._line).decode("utf-8", "replace")))
        self._line.clear()
        self._overflow = False
        if echo:
            out.append(b"\r\n")

    def _erase_char(self, out: list[bytes]) -> None:
        if not self._line:
            return
        # Remove one character: UTF-8 continuation bytes go with their lead byte.
        while self._line and (self._line[-1] & 0xC0) == 0x80:
            self._line.pop()
        if self._line:
            self._line.pop()
        if self.echoing and not self.secret:
            out.append(b"\x08 \x08")

    def _erase_line(self, out: list[bytes]) -> None:
        if self.echoing and not self.secret and self._line:
            count = len(bytes(self._line).decode("utf-8", "replace"))
            out.append(b"\x08 \x08" * count)
        self._line.clear()

    def _cancel(self, lines: list[Line], out: list[bytes]) -> None:
        self._line.clear()
        self._overflow = False
        lines.append(Line("", cancelled=True))
        if self.echoing:
            out.append(b"^C\r\n")


__all__ = ["EOL", "GREETING", "MAX_LINE", "Line", "Terminal", "to_wire"]
