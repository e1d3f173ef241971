# -*- test-case-name: tests.test_history -*-
"""
The last 15 minutes of every port, for the web Monitor's graphs and
C{GET /api/v1/history} (docs/monitoring.md, "Monitor graphs").

  - Byte rates: every C{bucket} seconds (10) the port's tx/rx byte
    counters (the channel's, the same the monitor tables, SNMP and
    Prometheus report) are read and the difference kept as one bucket;
    C{buckets} (90) of them per port, the oldest dropped.  A counter that
    went down (a new channel after a restart) starts over from its value.
  - A timeline of modem-line changes, connections opened and closed and
    the device appearing or vanishing, from the device events; at most
    C{max_events} (500) for the whole box, the oldest dropped, none older
    than the graphs' window.

All on the injected clock; nothing here grows without bound.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from nport_twisted.events import (
    ConnectionClosed,
    ConnectionOpened,
    DeviceStateChanged,
    Event,
    ModemLineChanged,
    summary,
)
from nport_twisted.net.context import IDeviceContext

__all__ = ["BUCKET_S", "BUCKETS", "History", "MAX_EVENTS"]

BUCKET_S = 10.0
BUCKETS = 90  # 15 minutes of 10 s buckets
MAX_EVENTS = 500


@attrs.frozen
class Bucket:
    """Bytes moved on one port from C{start} for C{seconds}."""

    start: float
    seconds: float
    tx: int  # written to the device
    rx: int  # read from the device


@attrs.frozen
class TimelineEvent:
    when: float
    port: int | None  # NPort port number; None for a device service (a console)
    kind: str  # "dcd", "dsr", "cts", "ri", "connect", "disconnect", "device"
    on: bool  # line on, connection opened, device present
    text: str


class _Port:
    def __init__(self, buckets: int) -> None:
        self.buckets: deque[Bucket] = deque(maxlen=buckets)
        self.last_tx: int | None = None
        self.last_rx: int | None = None


def _grown(now: int, last: int | None) -> int:
    if last is None:
        return 0
    return now - last if now >= last else now  # a reset counter counts from zero


class History(service.Service):
    """Per-port byte-rate buckets and an event timeline (see the module docstring)."""

    _log = Logger()
    name = "history"

    def __init__(self, ctx: IDeviceContext, bucket: float = BUCKET_S, buckets: int = BUCKETS,
                 max_events: int = MAX_EVENTS) -> None:
        self.ctx = ctx
        self.clock = ctx.reactor
        self.bucket = bucket
        self.window = bucket * buckets
        self._buckets = buckets
        self._ports: dict[int, _Port] = {}
        self.events: deque[TimelineEvent] = deque(maxlen=max_events)
        self._loop: LoopingCall | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._last_tick: float | None = None

    def startService(self) -> None:
        super().startService()
        self._unsubscribe = self.ctx.events.subscribe(self.event)
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self.clock
        self._loop.start(self.bucket, now=True)

    def stopService(self) -> Any:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return None

    # -- collection ----------------------------------------------------------------------

    def _counters(self, index: int) -> tuple[int, int]:
        stats = self.ctx.ports[index].channel.stats
        return int(stats.serial_tx_bytes), int(stats.serial_rx_bytes)

    def tick(self) -> None:
        """Close the current bucket of every port (the LoopingCall's work)."""
        try:
            now = self.clock.seconds()
            start = self._last_tick
            for index in range(len(self.ctx.ports)):
                port = self._ports.setdefault(index, _Port(self._buckets))
                tx, rx = self._counters(index)
                if start is not None and now > start:
                    port.buckets.append(Bucket(start, now - start, _grown(tx, port.last_tx),
                                               _grown(rx, port.last_rx)))
                port.last_tx, port.last_rx = tx, rx
            for gone in [i for i in self._ports if i >= len(self.ctx.ports)]:
                del self._ports[gone]
            self._last_tick = now
            self._expire(now)
        except Exception:
            self._log.failure("history: reading the counters failed")

    def _expire(self, now: float) -> None:
        while self.events and self.events[0].when < now - self.window:
            self.events.popleft()

    def event(self, when: float, event: Event) -> None:
        """Keep the events the timeline shows (an EventPublisher subscriber)."""
        item: TimelineEvent | None = None
        if isinstance(event, ModemLineChanged):
            item = TimelineEvent(when, event.port, event.line, event.on, summary(event))
        elif isinstance(event, ConnectionOpened) and event.port is not None:
            item = TimelineEvent(when, event.port, "connect", True, summary(event))
        elif isinstance(event, ConnectionClosed) and event.port is not None:
            item = TimelineEvent(when, event.port, "disconnect", False, summary(event))
        elif isinstance(event, DeviceStateChanged):
            item = TimelineEvent(when, event.port, "device", event.present, summary(event))
        if item is not None:
            self.events.append(item)

    # -- reading -------------------------------------------------------------------------

    def port_json(self, index: int) -> dict[str, Any]:
        """Port C{index} (0-based): its buckets and, last, the bucket still filling."""
        now = self.clock.seconds()
        port = self._ports.get(index)
        samples = []
        if port is not None:
            samples = [{"t": round(b.start, 3), "s": round(b.seconds, 3),
                        "tx_bps": round(b.tx / b.seconds, 1), "rx_bps": round(b.rx / b.seconds, 1),
                        "tx": b.tx, "rx": b.rx} for b in port.buckets]
            start = self._last_tick
            if start is not None and now > start and index < len(self.ctx.ports):
                tx, rx = self._counters(index)
                dtx, drx = _grown(tx, port.last_tx), _grown(rx, port.last_rx)
                seconds = now - start
                samples.append({"t": round(start, 3), "s": round(seconds, 3),
                                "tx_bps": round(dtx / seconds, 1), "rx_bps": round(drx / seconds, 1),
                                "tx": dtx, "rx": drx, "partial": True})
        return {
            "port": index + 1,
            "samples": samples,
            "events": [self._event_json(e) for e in self.events if e.port == index + 1],
        }

    @staticmethod
    def _event_json(e: TimelineEvent) -> dict[str, Any]:
        return {"t": round(e.when, 3), "port": e.port, "kind": e.kind, "on": e.on,
                "text": e.text}

    def to_json(self) -> dict[str, Any]:
        """Everything: C{GET /api/v1/history}."""
        now = self.clock.seconds()
        self._expire(now)
        return {
            "now": round(now, 3),
            "bucket_s": self.bucket,
            "window_s": self.window,
            "ports": [self.port_json(i) for i in range(len(self.ctx.ports))],
        }
