# -*- test-case-name: tests.test_channel -*-
"""
Line-state values of a serial port: the modem lines as sampled, the
kernel's error counters, and the events a channel derives from them.

Plain frozen values with no behaviour beyond arithmetic, shared by the
device adapter (which samples them), the channel (which turns counters into
events) and the front-ends (which encode them: ASPP NOTIFY, RFC 2217
NOTIFY-MODEMSTATE …).  Front-ends import them through
L{nport_twisted.device.channel}, never from the adapter.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class ModemLines:
    """Input modem lines as sampled from the device."""

    cts: bool = False
    dsr: bool = False
    ri: bool = False
    dcd: bool = False

    def bits(self, cts: int, dsr: int, ri: int, dcd: int) -> int:
        """The lines that are on, as the sum of the given bit values (a wire encoding)."""
        return ((cts if self.cts else 0) | (dsr if self.dsr else 0) | (ri if self.ri else 0)
                | (dcd if self.dcd else 0))


@attrs.frozen
class LineCounters:
    """Kernel counters of line events (TIOCGICOUNT); deltas become L{LineEvents}."""

    frame: int = 0
    overrun: int = 0
    parity: int = 0
    brk: int = 0
    buf_overrun: int = 0


@attrs.frozen
class LineEvents:
    """New line events since the last sample (counts)."""

    parity: int = 0
    framing: int = 0
    overrun: int = 0
    buffer_overrun: int = 0
    breaks: int = 0

    def __bool__(self) -> bool:
        return any((self.parity, self.framing, self.overrun, self.buffer_overrun, self.breaks))

    @classmethod
    def between(cls, prev: LineCounters, now: LineCounters) -> LineEvents:
        """The events counted from C{prev} to C{now} (a counter reset counts as none)."""
        return cls(parity=max(0, now.parity - prev.parity),
                   framing=max(0, now.frame - prev.frame),
                   overrun=max(0, now.overrun - prev.overrun),
                   buffer_overrun=max(0, now.buf_overrun - prev.buf_overrun),
                   breaks=max(0, now.brk - prev.brk))
