# -*- test-case-name: tests.test_realtty_termios -*-
"""
What an application does to its tty, as MOXA's Linux driver turns it into
ASPP (realcom.md §3.2, §3.6, §4) — the pure part: termios values and
packet-mode status bytes in, L{LineSettings} and ASPP requests out.

A pty master in packet mode (C{TIOCPKT}) reads either C{00} + data or one
status byte (Linux C{<linux/tty.h>}):

  ======  ==================  =======================================
  bit     name                we send
  ======  ==================  =======================================
  0x01    TIOCPKT_FLUSHREAD   FLUSH 0 (tcflush TCIFLUSH)
  0x02    TIOCPKT_FLUSHWRITE  FLUSH 1 (tcflush TCOFLUSH); both: FLUSH 2
  0x04    TIOCPKT_STOP        SETXOFF (tcflow TCOOFF, MOXA's tty stop())
  0x08    TIOCPKT_START       SETXON  (tcflow TCOON, start())
  0x10    TIOCPKT_NOSTOP      (termios changed: IXON/VSTART/VSTOP)
  0x20    TIOCPKT_DOSTOP      (termios changed: IXON/VSTART/VSTOP)
  0x40    TIOCPKT_IOCTL       (termios changed; only with EXTPROC set)
  ======  ==================  =======================================

A termios change is compared with what the device last got; only a
difference is sent (PORT_INIT, then SETBAUD for a rate without index and
XONXOFF when IXON/IXOFF is on, as L{LineSettings.requests} builds it).
MOXA's driver always sends FLUSH 2; we send the queue the application
named (both are valid requests).  Ptys force CS8 without parity, so data
bits and parity come from the port's configuration; stop bits come from
the tty's CSTOPB (which ptys keep) unless the configuration fixes them.
"""

from __future__ import annotations

import struct
import termios

import attrs

from nport_twisted.tools.realcom_client import LineSettings
from nport_twisted.wire import aspp

__all__ = [
    "TIOCPKT_DATA",
    "TIOCPKT_DOSTOP",
    "TIOCPKT_FLUSHREAD",
    "TIOCPKT_FLUSHWRITE",
    "TIOCPKT_IOCTL",
    "TIOCPKT_NOSTOP",
    "TIOCPKT_START",
    "TIOCPKT_STOP",
    "PacketEvents",
    "TermiosState",
    "decode_status",
    "requests_for",
    "split_packet",
]

TIOCPKT_DATA = 0x00
TIOCPKT_FLUSHREAD = 0x01
TIOCPKT_FLUSHWRITE = 0x02
TIOCPKT_STOP = 0x04
TIOCPKT_START = 0x08
TIOCPKT_NOSTOP = 0x10
TIOCPKT_DOSTOP = 0x20
TIOCPKT_IOCTL = 0x40

# Linux values, spelled out where Python's termios module may lack them.
EXTPROC = getattr(termios, "EXTPROC", 0o200000)
CRTSCTS = getattr(termios, "CRTSCTS", 0o20000000000)
CBAUD = getattr(termios, "CBAUD", 0o10017)
BOTHER = getattr(termios, "BOTHER", 0o10000)
CMSPAR = getattr(termios, "CMSPAR", 0o10000000000)
NCCS_TERMIOS2 = 19  # struct termios2 on Linux: 19 control characters
TERMIOS2_SIZE = 4 * 4 + 1 + NCCS_TERMIOS2 + 2 * 4  # 44

#: Bxxx constant -> bits per second, for every speed this Python knows.
SPEEDS: dict[int, int] = {
    getattr(termios, f"B{rate}"): rate
    for rate in (
        0, 50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200, 38400,
        57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
        2000000, 2500000, 3000000, 3500000, 4000000,
    )
    if hasattr(termios, f"B{rate}")
}  # fmt: skip


@attrs.frozen
class TermiosState:
    """
    A tty's termios with real speeds (the kernel's C{c_ispeed}/C{c_ospeed}
    of C{struct termios2}, so rates set with BOTHER are exact).
    """

    iflag: int
    oflag: int
    cflag: int
    lflag: int
    cc: bytes
    ispeed: int
    ospeed: int

    @classmethod
    def from_termios2(cls, buf: bytes) -> TermiosState:
        """Decode a C{struct termios2} as C{TCGETS2} returns it (44 bytes on Linux)."""
        iflag, oflag, cflag, lflag = struct.unpack_from("=4I", buf)
        cc = bytes(buf[17 : 17 + NCCS_TERMIOS2])
        ispeed, ospeed = struct.unpack_from("=2I", buf, 17 + NCCS_TERMIOS2)
        return cls(iflag, oflag, cflag, lflag, cc, ispeed, ospeed)

    @classmethod
    def from_tcgetattr(cls, attrs_: list[object]) -> TermiosState:
        """
        From C{termios.tcgetattr}: speeds are Bxxx codes, mapped back to
        rates (BOTHER, which tcgetattr cannot tell, reads as 0: unknown).
        """
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs_
        chars = bytes(c if isinstance(c, int) else ord(c) for c in cc)  # type: ignore[attr-defined]
        return cls(int(iflag), int(oflag), int(cflag), int(lflag), chars,  # type: ignore[call-overload]
                   SPEEDS.get(int(ispeed), 0), SPEEDS.get(int(ospeed), 0))  # type: ignore[call-overload]

    def to_termios2(self) -> bytes:
        """Encode as C{struct termios2} (line discipline 0) for C{TCSETS2}."""
        cc = self.cc[:NCCS_TERMIOS2].ljust(NCCS_TERMIOS2, b"\0")
        return (struct.pack("=4IB", self.iflag, self.oflag, self.cflag, self.lflag, 0) + cc
                + struct.pack("=2I", self.ispeed, self.ospeed))

    @property
    def baudrate(self) -> int:
        """The output speed; 0 for B0 (hang up: PORT_INIT index 0xFF without SETBAUD)."""
        if (self.cflag & CBAUD) == 0:  # B0
            return 0
        return self.ospeed

    @property
    def extproc(self) -> bool:
        """Whether EXTPROC is set (then every tcsetattr gives a TIOCPKT_IOCTL event)."""
        return bool(self.lflag & EXTPROC)

    @property
    def hupcl(self) -> bool:
        """HUPCL: drop DTR/RTS on the last close."""
        return bool(self.cflag & termios.HUPCL)

    def _cc(self, index: int, default: int) -> int:
        return self.cc[index] if index < len(self.cc) else default

    def line_settings(
        self, bytesize: int = 8, parity: str = "N", stopbits: float | None = None
    ) -> LineSettings:
        """
        What MOXA's driver would put in PORT_INIT for this termios, with
        data bits and parity from the configuration (a pty cannot hold
        them) and stop bits from CSTOPB unless C{stopbits} is given.
        """
        if stopbits is None:
            stopbits = 2.0 if self.cflag & termios.CSTOPB else 1.0
            if bytesize == 5 and stopbits == 2.0:
                stopbits = 1.5  # the UART convention the mode byte follows
        return LineSettings(
            baudrate=self.baudrate,
            bytesize=bytesize,
            parity=parity,
            stopbits=stopbits,
            rtscts=bool(self.cflag & CRTSCTS),
            ixon=bool(self.iflag & termios.IXON),
            ixoff=bool(self.iflag & termios.IXOFF),
            xon_char=self._cc(termios.VSTART, 0x11),
            xoff_char=self._cc(termios.VSTOP, 0x13),
        )

    def with_speed(self, rate: int) -> TermiosState:
        """The same termios at C{rate} (BOTHER unless a Bxxx code exists)."""
        code = next((c for c, r in SPEEDS.items() if r == rate), BOTHER)
        return attrs.evolve(self, cflag=(self.cflag & ~CBAUD) | code, ispeed=rate, ospeed=rate)


@attrs.frozen
class PacketEvents:
    """The meaning of one packet-mode status byte."""

    flush_read: bool = False
    flush_write: bool = False
    stop: bool = False
    start: bool = False
    termios_changed: bool = False

    @property
    def flush_mode(self) -> int | None:
        """The FLUSH mode to send, or None."""
        if self.flush_read and self.flush_write:
            return aspp.FLUSH_BOTH
        if self.flush_write:
            return aspp.FLUSH_TX
        if self.flush_read:
            return aspp.FLUSH_RX
        return None


def decode_status(status: int) -> PacketEvents:
    """Decode a packet-mode status byte (any bits; unknown ones are ignored)."""
    return PacketEvents(
        flush_read=bool(status & TIOCPKT_FLUSHREAD),
        flush_write=bool(status & TIOCPKT_FLUSHWRITE),
        stop=bool(status & TIOCPKT_STOP),
        start=bool(status & TIOCPKT_START),
        termios_changed=bool(status & (TIOCPKT_IOCTL | TIOCPKT_DOSTOP | TIOCPKT_NOSTOP)),
    )


def requests_for(events: PacketEvents) -> list[aspp.Request]:
    """
    The ASPP requests a status byte asks for, in the order MOXA's driver
    would meet them: FLUSH, then SETXOFF or SETXON.  (A termios change is
    handled by comparing settings, not here.)
    """
    out: list[aspp.Request] = []
    mode = events.flush_mode
    if mode is not None:
        out.append(aspp.Flush(mode))
    if events.stop and not events.start:
        out.append(aspp.SetXoff())
    elif events.start and not events.stop:
        out.append(aspp.SetXon())
    elif events.start and events.stop:
        # Both since the last read: the kernel does not say which came last;
        # the tty's own state (tcflow) decides, so leave output running.
        out.append(aspp.SetXon())
    return out


def split_packet(chunk: bytes) -> tuple[int | None, bytes]:
    """
    One read of a packet-mode master: C{(None, data)} for C{00} + data,
    C{(status, b"")} for a status byte.
    """
    if not chunk:
        return None, b""
    if chunk[0] == TIOCPKT_DATA:
        return None, chunk[1:]
    return chunk[0], b""
