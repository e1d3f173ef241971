# -*- test-case-name: tests.test_events -*-
"""
Device events and the small publisher that carries them (docs/monitoring.md).

Events come from several layers — the serial channel (modem lines, device
present), the sessions (connection open/close), the consoles (failed
logins, password changes), the service (start, network changes) — and go
to several consumers: Auto Warning e-mail and SNMP traps, syslog, the
monitor's timeline, metrics.  The producers only know this module: each
gets the one L{EventPublisher} of the box injected and calls
L{EventPublisher.publish} with a frozen value below.

No reactor here: the publisher takes the time from an injected clock (any
object with C{seconds()}, e.g. the reactor or a L{twisted.internet.task.Clock}),
so every consumer sees the same time stamp for one event.

Port numbers in events are the NPort's serial port numbers, 1-based, as an
operator reads them ("port 1"); C{None} means the device as a whole.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, ClassVar, Protocol, Union

import attrs
from twisted.logger import Logger

__all__ = [
    "AuthFailure",
    "ColdStart",
    "ConnectionClosed",
    "ConnectionOpened",
    "DeviceStateChanged",
    "Event",
    "EventPublisher",
    "IPChanged",
    "LinkChanged",
    "ModemLineChanged",
    "PasswordChanged",
    "WarmStart",
    "summary",
]


class Clock(Protocol):
    def seconds(self) -> float: ...


@attrs.frozen
class ColdStart:
    """The service started after the host booted (the NPort's power-on)."""

    kind: ClassVar[str] = "cold_start"
    reason: str = ""


@attrs.frozen
class WarmStart:
    """The service restarted without a host reboot (the NPort's software restart)."""

    kind: ClassVar[str] = "warm_start"
    reason: str = ""


@attrs.frozen
class AuthFailure:
    """
    A failed authentication: a wrong password on the web or telnet console
    (C{service} "web", "api", "telnet"), an unknown SNMP community or v3 user
    ("snmp"), a wrong metrics token ("metrics").  C{user} is the name tried
    where the protocol has one; a wrong password or community is never put
    in an event.
    """

    kind: ClassVar[str] = "auth_failure"
    service: str
    peer: str
    user: str = ""
    reason: str = ""


@attrs.frozen
class PasswordChanged:
    """The console password was set or changed (C{service} as in L{AuthFailure})."""

    kind: ClassVar[str] = "password_changed"
    service: str
    peer: str = ""


@attrs.frozen
class IPChanged:
    """The IPv4 addresses of a host interface changed (C{old}/C{new} as CIDR texts)."""

    kind: ClassVar[str] = "ip_changed"
    interface: str
    old: tuple[str, ...]
    new: tuple[str, ...]


@attrs.frozen
class LinkChanged:
    """A host network interface went down (C{up} False: MOXA's "link down") or up."""

    kind: ClassVar[str] = "link_changed"
    interface: str
    up: bool


@attrs.frozen
class ModemLineChanged:
    """An input modem line of serial port C{port} changed (C{line}: dcd, dsr, cts, ri)."""

    kind: ClassVar[str] = "modem_line_changed"
    port: int
    line: str
    on: bool


@attrs.frozen
class DeviceStateChanged:
    """The serial device of port C{port} was opened (present) or vanished/closed."""

    kind: ClassVar[str] = "device_state_changed"
    port: int
    device: str
    present: bool


@attrs.frozen
class ConnectionOpened:
    """
    A network peer connected to a serial port's service (or, with C{port}
    None, to a device service such as a console).
    """

    kind: ClassVar[str] = "connection_opened"
    port: int | None
    peer_host: str
    peer_port: int
    local_port: int
    service: str = ""


@attrs.frozen
class ConnectionClosed:
    """The connection L{ConnectionOpened} announced ended."""

    kind: ClassVar[str] = "connection_closed"
    port: int | None
    peer_host: str
    peer_port: int
    local_port: int
    service: str = ""
    reason: str = ""


Event = Union[
    ColdStart,
    WarmStart,
    AuthFailure,
    PasswordChanged,
    IPChanged,
    LinkChanged,
    ModemLineChanged,
    DeviceStateChanged,
    ConnectionOpened,
    ConnectionClosed,
]

#: Every event type, by its C{kind}.
EVENT_TYPES: dict[str, type[Event]] = {
    t.kind: t
    for t in (ColdStart, WarmStart, AuthFailure, PasswordChanged, IPChanged, LinkChanged,
              ModemLineChanged, DeviceStateChanged, ConnectionOpened, ConnectionClosed)
}

Subscriber = Callable[[float, Event], None]


def _port(port: int | None) -> str:
    return "device" if port is None else f"port {port}"


def summary(event: Event) -> str:
    """One line of text for an operator (mail subject, syslog message, timeline)."""
    if isinstance(event, ColdStart):
        return "cold start" + (f" ({event.reason})" if event.reason else "")
    if isinstance(event, WarmStart):
        return "warm start" + (f" ({event.reason})" if event.reason else "")
    if isinstance(event, AuthFailure):
        who = f" user {event.user!r}" if event.user else ""
        why = f": {event.reason}" if event.reason else ""
        return f"authentication failure on {event.service} from {event.peer or '?'}{who}{why}"
    if isinstance(event, PasswordChanged):
        by = f" from {event.peer}" if event.peer else ""
        return f"password changed on {event.service}{by}"
    if isinstance(event, IPChanged):
        return (f"IP address of {event.interface} changed from "
                f"{', '.join(event.old) or 'none'} to {', '.join(event.new) or 'none'}")
    if isinstance(event, LinkChanged):
        return f"link {'up' if event.up else 'down'} on {event.interface}"
    if isinstance(event, ModemLineChanged):
        return f"port {event.port}: {event.line.upper()} {'on' if event.on else 'off'}"
    if isinstance(event, DeviceStateChanged):
        state = "present" if event.present else "gone"
        return f"port {event.port}: device {event.device} {state}"
    if isinstance(event, ConnectionOpened):
        svc = f" ({event.service})" if event.service else ""
        return (f"{_port(event.port)}: connection from {event.peer_host}:{event.peer_port} "
                f"to local port {event.local_port}{svc}")
    svc = f" ({event.service})" if event.service else ""
    why = f": {event.reason}" if event.reason else ""
    return (f"{_port(event.port)}: connection from {event.peer_host}:{event.peer_port} "
            f"to local port {event.local_port} closed{svc}{why}")


class EventPublisher:
    """
    Delivers each published event, with one time stamp, to every subscriber.

    A subscriber that raises is logged and stays subscribed; the publisher
    never raises into the code that published.  An event published while
    another is being delivered (a subscriber publishing) is delivered after
    it, in order.  One outside L{publish} call delivers at most
    C{max_pending} events in all; later ones published by subscribers in
    that call are counted in L{dropped} — so a subscriber loop can grow
    neither memory nor time.
    """

    _log = Logger()

    def __init__(self, clock: Clock, max_pending: int = 1000) -> None:
        self._clock = clock
        self._subscribers: list[Subscriber] = []
        self._pending: deque[tuple[float, Event]] = deque()
        self._delivering = False
        self._run = 0  # events delivered by the current outside publish() call
        self.max_pending = max_pending
        self.published = 0
        self.dropped = 0

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call C{subscriber(when, event)} for every later event; returns the unsubscriber."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)
        return unsubscribe

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Stamp C{event} with the clock's time and hand it to every subscriber."""
        if self._delivering:
            if self._run >= self.max_pending:
                self.dropped += 1
                return
            self._run += 1
        self.published += 1
        self._pending.append((self._clock.seconds(), event))
        if self._delivering:
            return
        self._delivering = True
        self._run = 1
        try:
            while self._pending:
                when, next_event = self._pending.popleft()
                for subscriber in list(self._subscribers):
                    try:
                        subscriber(when, next_event)
                    except Exception:
                        self._log.failure("event subscriber {subscriber!r} failed on {event!r}",
                                          subscriber=subscriber, event=next_event)
        finally:
            self._delivering = False
