# -*- test-case-name: tests.test_syslog -*-
"""
Syslog of the device events (docs/monitoring.md, "Syslog"): every event of
L{nport_twisted.events} — and, unless C{[monitoring] syslog_connections} is
off, every connection opened and closed per port — as an RFC 5424 message
to C{syslog_server:syslog_port}, over UDP (RFC 5426) or, with
C{syslog_tcp}, TCP with octet counting (RFC 6587).

Never stalls the reactor or grows memory: host names are resolved by the
reactor's resolver; UDP is fire and forget; over TCP at most
L{SyslogService.max_queue} messages wait while the server is unreachable or
slow (older ones are dropped and counted), reconnects back off up to a
minute, and a failure is logged once per outage.  The settings are read for
every message, so changes apply at once.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted import __version__
from nport_twisted.config.identity import ipv4_bind_address, resolve_identity
from nport_twisted.events import (
    AuthFailure,
    ColdStart,
    ConnectionClosed,
    ConnectionOpened,
    DeviceStateChanged,
    Event,
    IPChanged,
    LinkChanged,
    ModemLineChanged,
    PasswordChanged,
    WarmStart,
    summary,
)
from nport_twisted.net.context import IDeviceContext
from nport_twisted.wire.syslog import Severity, SyslogMessage, for_tcp, for_udp

__all__ = ["SyslogService", "severity_of"]


def severity_of(event: Event) -> Severity:
    """How serious an operator finds each event."""
    if isinstance(event, (ColdStart, WarmStart, PasswordChanged, IPChanged)):
        return Severity.NOTICE
    if isinstance(event, AuthFailure):
        return Severity.WARNING
    if isinstance(event, LinkChanged):
        return Severity.NOTICE if event.up else Severity.ERROR
    if isinstance(event, DeviceStateChanged):
        return Severity.INFO if event.present else Severity.WARNING
    return Severity.INFO  # modem lines, connections


def _params(event: Event) -> list[tuple[str, str]]:
    """The event's fields for the message text (key=value)."""
    import attrs
    out = []
    for f in attrs.fields(type(event)):
        v = getattr(event, f.name)
        if v is None or v == "" or v == ():
            continue
        out.append((f.name, ",".join(v) if isinstance(v, tuple) else str(v)))
    return out


class _TcpSyslog(Protocol):
    """One TCP connection to the syslog server; the service writes frames through it."""

    def __init__(self, owner: SyslogService) -> None:
        self.owner = owner
        self.paused = False

    def connectionMade(self) -> None:
        self.transport.registerProducer(_Watch(self), True)  # type: ignore[union-attr]
        self.owner._tcp_connected(self)

    def dataReceived(self, data: bytes) -> None:
        pass  # a syslog server says nothing

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.owner._tcp_lost(self, reason)


@implementer(IPushProducer)
class _Watch:
    """The TCP transport's buffer filling pauses our writes (the queue holds the rest)."""

    def __init__(self, proto: _TcpSyslog) -> None:
        self.proto = proto

    def pauseProducing(self) -> None:
        self.proto.paused = True

    def resumeProducing(self) -> None:
        self.proto.paused = False
        self.proto.owner._flush()

    def stopProducing(self) -> None:
        self.proto.paused = True


class SyslogService(service.Service):
    """Sends each device event to the configured syslog server."""

    _log = Logger()
    name = "syslog"
    max_queue = 1000

    def __init__(self, ctx: IDeviceContext,
                 resolve: Callable[[str], Deferred[str]] | None = None,
                 pid: int | None = None) -> None:
        self.ctx = ctx
        self.clock: IReactorTime = ctx.reactor
        self._resolve = resolve if resolve is not None else (lambda name: ctx.reactor.resolve(name))
        self._pid = str(pid if pid is not None else os.getpid())
        self._unsubscribe: Callable[[], None] | None = None
        self._udp: Any = None
        self._udp_proto: DatagramProtocol | None = None
        self._tcp: _TcpSyslog | None = None
        self._connecting: Any = None
        self._target: tuple[str, int] | None = None
        self._retry: Any = None
        self._backoff = 1.0
        self._queue: deque[bytes] = deque()
        self._failing = False
        self.sent = 0
        self.dropped = 0

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._unsubscribe = self.ctx.events.subscribe(self.event)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._drop_tcp()
        udp, self._udp, self._udp_proto = self._udp, None, None
        if udp is not None:
            d = udp.stopListening()
            if isinstance(d, Deferred):
                return d
        return succeed(None)

    # -- events ---------------------------------------------------------------------------

    def event(self, when: float, event: Event) -> None:
        m = self.ctx.config.monitoring
        if not m.syslog_server:
            return
        if isinstance(event, (ConnectionOpened, ConnectionClosed)) and not m.syslog_connections:
            return
        text = summary(event)
        params = " ".join(f"{k}={v}" for k, v in _params(event))
        message = SyslogMessage(
            when=when, severity=severity_of(event), facility=m.syslog_facility,
            message=f"{text} [{params}]" if params else text,
            hostname=self._hostname(), procid=self._pid, msgid=event.kind,
            structured=(("origin", (("software", "nport-twisted"), ("swVersion", __version__))),))
        if m.syslog_tcp:
            self._send_tcp(m.syslog_server, m.syslog_port, for_tcp(message))
        else:
            self._drop_tcp()
            self._send_udp(m.syslog_server, m.syslog_port, for_udp(message))

    def _hostname(self) -> str:
        try:
            return resolve_identity(self.ctx.config, len(self.ctx.ports)).server_name
        except Exception:
            return ""

    def _outage(self, server: str, error: str) -> None:
        if not self._failing:
            self._failing = True
            self._log.warn("syslog: cannot send to {server}: {error} (logged once until it "
                           "works again)", server=server, error=error)

    def _works(self, server: str) -> None:
        if self._failing:
            self._failing = False
            self._log.info("syslog: sending to {server} works again", server=server)

    # -- UDP ---------------------------------------------------------------------------------

    def _send_udp(self, server: str, port: int, data: bytes) -> None:
        def write(ip: str) -> None:
            if self._udp_proto is None:
                self._udp_proto = DatagramProtocol()
                bind = ipv4_bind_address(self.ctx.interface) or "0.0.0.0"
                self._udp = self.ctx.reactor.listenUDP(0, self._udp_proto, interface=bind)
            assert self._udp_proto.transport is not None
            try:
                self._udp_proto.transport.write(data, (ip, port))
            except OSError as e:
                self.dropped += 1
                self._outage(server, str(e))
                return
            self.sent += 1
            self._works(server)

        def failed(f: Failure) -> None:
            self.dropped += 1
            self._outage(server, f.getErrorMessage())
        self._resolve(server).addCallbacks(write, failed)

    # -- TCP ---------------------------------------------------------------------------------

    def _send_tcp(self, server: str, port: int, frame: bytes) -> None:
        if self._target != (server, port):
            self._drop_tcp()
            self._target = (server, port)
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(frame)
        if self._tcp is None:
            self._connect()
        else:
            self._flush()

    def _connect(self) -> None:
        if self._connecting is not None or self._retry is not None or self._target is None:
            return
        server, port = self._target
        factory = Factory.forProtocol(lambda: _TcpSyslog(self))
        from twisted.internet.endpoints import HostnameEndpoint

        endpoint = HostnameEndpoint(self.ctx.reactor, server, port, timeout=10)
        d = endpoint.connect(factory)
        self._connecting = d

        def failed(f: Failure) -> None:
            self._connecting = None
            if f.check(CancelledError):
                return  # we gave this target up (settings changed, stopping)
            self._outage(server, f.getErrorMessage())
            self._schedule_retry()
        d.addCallbacks(lambda _: setattr(self, "_connecting", None), failed)

    def _schedule_retry(self) -> None:
        if self.running and self._retry is None and self._queue:
            self._retry = self.clock.callLater(self._backoff, self._retry_now)
            self._backoff = min(60.0, self._backoff * 2)

    def _retry_now(self) -> None:
        self._retry = None
        self._connect()

    def _tcp_connected(self, proto: _TcpSyslog) -> None:
        self._tcp = proto
        self._backoff = 1.0
        if self._target is not None:
            self._works(self._target[0])
        self._flush()

    def _tcp_lost(self, proto: _TcpSyslog, reason: Failure) -> None:
        if proto is not self._tcp:
            return
        self._tcp = None
        if self._target is not None and self.running:
            self._outage(self._target[0], reason.getErrorMessage())
            self._schedule_retry()

    def _flush(self) -> None:
        proto = self._tcp
        while proto is not None and self._queue and not proto.paused:
            assert proto.transport is not None
            proto.transport.write(self._queue.popleft())
            self.sent += 1

    def _drop_tcp(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        proto, self._tcp = self._tcp, None
        if proto is not None and proto.transport is not None:
            proto.transport.loseConnection()
        self._target = None
