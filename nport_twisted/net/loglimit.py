# -*- test-case-name: tests.test_session.LogLimiterTests -*-
"""
Repeated log lines, bounded per source (issue 10 item 3).

A peer that sends a wrong frame a thousand times a second must not write a
thousand log lines a second: that filled the log at 2.8 MB/s and starved
the other ports of CPU.  L{LogLimiter} lets the first C{burst} lines of one
kind from one source through in each C{window} seconds, counts the rest and
ends the window with one summary line ("… 9,312 more like this from
10.0.0.5 in the last 10 s"), so nothing is hidden and the log stays small.
The clock is injected (timers for the summary); keys are bounded (the
least recently used is summarised and forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["LogLimiter"]

#: A bound method of a Logger: C{log.warn}, C{log.info} …
LogMethod = Callable[..., None]


@attrs.define
class _Window:
    start: float
    emitted: int = 0
    suppressed: int = 0
    log: LogMethod | None = None
    fields: dict[str, Any] = attrs.Factory(dict)
    timer: IDelayedCall | None = None


class LogLimiter:
    """
    At most C{burst} log lines per (C{kind}, C{source}) in each C{window}
    seconds; the lines over it are counted and reported in one summary
    line when the window ends.

    @param clock: the injected clock.
    @param burst: lines let through per kind and source per window.
    @param window: seconds.
    @param max_keys: (kind, source) pairs remembered; beyond, the least
        recently used one is summarised at once and forgotten.
    """

    def __init__(self, clock: IReactorTime, burst: int = 5, window: float = 10.0,
                 max_keys: int = 256) -> None:
        if burst < 1 or window <= 0 or max_keys < 1:
            raise ValueError("burst >= 1, window > 0 and max_keys >= 1 are required")
        self.clock = clock
        self.burst = burst
        self.window = window
        self.max_keys = max_keys
        self.suppressed_total = 0
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def emit(self, log: LogMethod, kind: str, source: str, fmt: str, /, **fields: Any) -> bool:
        """
        Log C{fmt} with C{fields} through C{log} (e.g. C{self._log.warn})
        unless C{source} already had C{burst} lines of this C{kind} in the
        current window; return whether it was logged.
        """
        key = (kind, source)
        now = self.clock.seconds()
        window = self._windows.get(key)
        if window is not None and now - window.start >= self.window and window.timer is None:
            del self._windows[key]
            window = None
        if window is None:
            while len(self._windows) >= self.max_keys:
                old_key, old = self._windows.popitem(last=False)
                self._summarise(old_key, old)
            window = self._windows[key] = _Window(start=now)
        else:
            self._windows.move_to_end(key)
        if window.emitted < self.burst:
            window.emitted += 1
            log(fmt, **fields)
            return True
        window.suppressed += 1
        self.suppressed_total += 1
        if window.timer is None:
            window.log = log
            window.fields = {k: v for k, v in fields.items() if isinstance(v, (str, int, float))}
            delay = max(0.0, window.start + self.window - now)
            window.timer = self.clock.callLater(delay, self._window_over, key)
        return False

    def flush(self) -> None:
        """Summarise every open window now (at service stop)."""
        for key, window in list(self._windows.items()):
            del self._windows[key]
            self._summarise(key, window)

    def _window_over(self, key: tuple[str, str]) -> None:
        window = self._windows.pop(key, None)
        if window is not None:
            window.timer = None
            self._summarise(key, window)

    def _summarise(self, key: tuple[str, str], window: _Window) -> None:
        if window.timer is not None and window.timer.active():
            window.timer.cancel()
        window.timer = None
        if not window.suppressed or window.log is None:
            return
        kind, source = key
        fields = dict(window.fields)
        fields.update(suppressed=window.suppressed, line_kind=kind, source=source,
                      seconds=round(self.clock.seconds() - window.start, 1))
        window.log("{suppressed} more log lines like the last ({line_kind}) from {source} "
                   "suppressed in {seconds} s", **fields)
