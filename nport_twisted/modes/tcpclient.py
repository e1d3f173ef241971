# -*- test-case-name: tests.test_tcpclient -*-
"""
TCP Client mode (settings.md §5.2, §5.5).

Wire: raw bytes both ways, no framing, on outgoing TCP connections to up to
four destinations ("HOST:PORT").  Serial data (after packing) is copied to
every connected destination; data from any destination is written to the
serial port first in, first out.  Each connection may be bound to a
designated local port (0 = ephemeral), shifted by --port-offset like every
port of the box.

Connection control decides when the destinations are wanted:

  startup/none                   from start until stop
  any-character/none             from the first serial byte until stop
  any-character/inactivity-time  from a serial byte until no data moved in
                                 either direction for inactivity_ms
  dsr-on/dsr-off, dcd-on/dcd-off while the modem line is on
  dsr-on/none, dcd-on/none       from the line turning on until stop

While wanted, every destination is kept connected by its own Twisted
C{ClientService} (an Automat state machine on the injected clock): a refused
attempt or a lost connection is retried after 1 s, doubling to 30 s, reset
by a successful connection.  Serial data arriving while no destination is
connected waits in a bounded buffer (L{BUFFER_SIZE}, oldest bytes dropped
and counted) and goes to the first destination that connects.  A
destination's failure never reaches the serial side.  See
docs/modes/tcp-client.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import BufferProducer
from nport_twisted.config.settings import ConnectionControl
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines
from nport_twisted.device.portbuffer import NewestBytes
from nport_twisted.net.listener import ConnectionInfo
from nport_twisted.net.session import ClockedTimeout, PortContext, set_keepalive

#: Serial bytes kept while no destination is connected; beyond it the oldest
#: are dropped (and counted).  Ours: a classic NPort has a 1 KiB serial
#: buffer, later models offer "port buffering" of 64 KiB or more.
BUFFER_SIZE = 64 * 1024

#: Reconnect delays: 1 s after the first failure or loss, doubling to 30 s.
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0

#: Seconds an outgoing connection attempt may take.
CONNECT_TIMEOUT = 10.0

#: Seconds stopService lets connections flush before aborting them.
STOP_GRACE = 3.0

_LINE_MODES = {
    ConnectionControl.DSR_ON_DSR_OFF: ("dsr", True),
    ConnectionControl.DSR_ON_NONE: ("dsr", False),
    ConnectionControl.DCD_ON_DCD_OFF: ("dcd", True),
    ConnectionControl.DCD_ON_NONE: ("dcd", False),
}
_CHARACTER_MODES = (ConnectionControl.ANY_CHARACTER_NONE,
                    ConnectionControl.ANY_CHARACTER_INACTIVITY)


def reconnect_delay(attempt: int) -> float:
    """Seconds before reconnect attempt C{attempt} (1 = after the first failure or loss)."""
    return float(min(BACKOFF_INITIAL * 2 ** min(max(attempt, 1) - 1, 30), BACKOFF_MAX))


def parse_destination(text: str) -> tuple[str, int]:
    """C{("host", port)} from C{"host:port"} or C{"[v6addr]:port"}."""
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def client_endpoint(reactor: Any, host: str, port: int,
                    bind: tuple[str, int] | None = None) -> IStreamClientEndpoint:
    """
    An endpoint to C{host}:C{port}: plain TCP for an IP literal (connects at
    once), L{HostnameEndpoint} for a name (resolved on every attempt).
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, CONNECT_TIMEOUT, bind)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, CONNECT_TIMEOUT, bind)
    return HostnameEndpoint(reactor, host, port, CONNECT_TIMEOUT, bind)


@attrs.define
class TcpClientStats:
    """Counters of one TCP Client port (besides the channel's own)."""

    connects: int = 0  # connections established
    connect_failures: int = 0  # attempts refused, timed out or not resolved
    disconnects: int = 0  # established connections that ended (either side)
    buffer_dropped: int = 0  # serial bytes dropped from the offline buffer, oldest first
    jammed_dropped: int = 0  # serial bytes a jammed destination missed (ignore jammed IP)


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Passes connection attempts through and reports their failures."""

    def __init__(self, endpoint: IStreamClientEndpoint, label: str,
                 failed: Callable[[Failure], None]) -> None:
        self._endpoint = endpoint
        self._label = label
        self._failed = failed

    def __repr__(self) -> str:  # ClientService logs its retries with it
        return self._label

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        def report(f: Failure) -> Failure:
            if not f.check(CancelledError, ConnectingCancelledError):
                self._failed(f)
            return f
        return self._endpoint.connect(protocolFactory).addErrback(report)


class TcpClientProtocol(Protocol):
    """One connection to a destination: hands everything to its L{Destination}."""

    transport: Any  # a TCP transport: ITCPTransport + IPushProducer

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    def connectionMade(self) -> None:
        self.destination.controller._connected(self.destination, self)

    def dataReceived(self, data: bytes) -> None:
        self.destination.controller._network_data(self.destination, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.destination.controller._lost(self.destination, self, reason)


class _DestinationFactory(Factory):
    noisy = False

    def __init__(self, destination: Destination) -> None:
        self.destination = destination

    def buildProtocol(self, addr: Any) -> TcpClientProtocol:
        return TcpClientProtocol(self.destination)


class Destination:
    """One destination: its address, its reconnecting connector and its current connection."""

    def __init__(self, controller: TcpClientController, label: str, host: str, port: int,
                 local_port: int, retry_policy: Callable[[int], float]) -> None:
        self.controller = controller
        self.label = label
        self.host = host
        self.port = port
        self.local_port = local_port  # after the port offset; 0 = ephemeral
        bind = ("", local_port) if local_port else None
        self.endpoint = client_endpoint(controller.ctx.reactor, host, port, bind)
        self.connector = ClientService(_ReportingEndpoint(self.endpoint, label, self._failed),
                                       _DestinationFactory(self), retry_policy,
                                       clock=controller.ctx.reactor)
        self.protocol: TcpClientProtocol | None = None
        self.closing = False  # we asked the current connection to close
        self.failing = False  # the last attempt failed (logged once per outage)
        self.net: ConnectionInfo | None = None

    def __repr__(self) -> str:
        return f"<TCP Client {self.controller.ctx.channel.name} -> {self.label}>"

    @property
    def connected(self) -> bool:
        """Connected and usable (not being closed by us)."""
        return self.protocol is not None and not self.closing

    def _failed(self, reason: Failure) -> None:
        self.controller._connect_failed(self, reason)


@implementer(IChannelSession)
class TcpClientController(service.Service, ClockedTimeout):
    """
    One serial port in TCP Client mode: attached to the channel while
    running, it decides when the destinations are wanted, fans serial data
    out to them and buffers it while none is connected.
    """

    _log = Logger()

    def __init__(self, ctx: PortContext,
                 retry_policy: Callable[[int], float] = reconnect_delay) -> None:
        self.ctx = ctx
        self.clock = ctx.reactor  # the inactivity timer's
        self.channel = ctx.channel
        self.control = ctx.operating.connection_control
        self.stats = TcpClientStats()
        self.wanted = False
        self._buffer = NewestBytes(BUFFER_SIZE)
        self._no_lines_logged = False
        self._input_paused = False
        self._jammed: set[Destination] = set()
        self.destinations: list[Destination] = []
        local_ports = ctx.operating.designated_local_ports
        for i, text in enumerate(ctx.operating.destinations):
            host, port = parse_destination(text)
            local = local_ports[i] if i < len(local_ports) else 0
            if local:
                try:
                    local = _shifted(ctx, local)
                except ValueError as e:
                    self._log.error("{channel}: destination {destination} skipped: designated "
                                    "local port {error}", channel=self.channel.name,
                                    destination=text, error=e)
                    continue
            self.destinations.append(Destination(self, text, host, port, local, retry_policy))

    def __repr__(self) -> str:
        return f"<TCP Client {self.channel.name}>"

    @property
    def buffered(self) -> int:
        """Serial bytes waiting for a destination."""
        return len(self._buffer)

    @property
    def connected(self) -> list[Destination]:
        return [d for d in self.destinations if d.connected]

    # -- lifecycle ----------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._log.info("{channel}: TCP Client to {destinations} ({control})",
                       channel=self.channel.name, control=self.control.value,
                       destinations=", ".join(d.label for d in self.destinations) or "nowhere")
        if not self.destinations:
            self._log.warn("{channel}: TCP Client mode without destinations: serial data is "
                           "buffered and dropped", channel=self.channel.name)
        if (self.control is ConnectionControl.ANY_CHARACTER_INACTIVITY
                and not self.ctx.operating.inactivity_ms):
            self._log.warn("{channel}: inactivity time is 0: connections stay up once made",
                           channel=self.channel.name)
        self.channel.attach(self)
        if self.control is ConnectionControl.STARTUP_NONE:
            self._want(True, "startup")
        elif self.control in _LINE_MODES:
            self._check_lines()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.wanted = False
        self._cancel_idle()
        self.channel.detach(self)
        stopping = [d.connector.stopService() for d in self.destinations]
        grace = self.ctx.reactor.callLater(STOP_GRACE, self._abort_all)

        def stopped(_: object) -> None:
            if grace.active():
                grace.cancel()
        return DeferredList(stopping, consumeErrors=True).addCallback(stopped)

    def _abort_all(self) -> None:
        for d in self.destinations:
            if d.protocol is not None:
                self._log.info("{channel}: {destination} did not close in {grace} s; aborting",
                               channel=self.channel.name, destination=d.label, grace=STOP_GRACE)
                d.protocol.transport.abortConnection()

    # -- connection control --------------------------------------------------------

    def _want(self, wanted: bool, why: str) -> None:
        if wanted == self.wanted or not self.running:
            return
        self.wanted = wanted
        if wanted:
            self._log.info("{channel}: connecting to the destinations ({why})",
                           channel=self.channel.name, why=why)
            for d in self.destinations:
                d.connector.startService()
        else:
            self._log.info("{channel}: disconnecting from the destinations ({why})",
                           channel=self.channel.name, why=why)
            self._cancel_idle()
            for d in self.destinations:
                if d.protocol is not None:
                    d.closing = True
                d.connector.stopService()
                self._set_jammed(d, False)

    def _check_lines(self) -> None:
        rule = _LINE_MODES.get(self.control)
        if rule is None:
            return
        line, off_disconnects = rule
        modem = self.channel.modem
        if modem is None:
            if self.channel.is_open and not self._no_lines_logged:
                self._no_lines_logged = True
                self._log.warn("{channel}: {device} has no modem lines, so connection control "
                               "{control} can never connect", channel=self.channel.name,
                               device=self.channel.device, control=self.control.value)
            return
        if getattr(modem, line):
            self._want(True, f"{line.upper()} on")
        elif off_disconnects:
            self._want(False, f"{line.upper()} off")

    # -- inactivity time -------------------------------------------------------------

    def _touch(self) -> None:
        """Data moved: restart the inactivity timer (Any Character/Inactivity Time only)."""
        ms = self.ctx.operating.inactivity_ms
        if (self.control is not ConnectionControl.ANY_CHARACTER_INACTIVITY or not ms
                or not self.wanted or not self.connected):
            return
        self.setTimeout(ms / 1000)  # (re)starts the one timer

    def timeoutConnection(self) -> None:
        self._want(False, f"{self.ctx.operating.inactivity_ms} ms of inactivity")

    def _cancel_idle(self) -> None:
        self.setTimeout(None)

    # -- destination events ------------------------------------------------------------

    def _connected(self, dest: Destination, protocol: TcpClientProtocol) -> None:
        ctx = self.ctx
        transport = protocol.transport
        dest.protocol = protocol
        dest.closing = False
        dest.failing = False
        self.stats.connects += 1
        dest.net = ctx.net.add_connection(transport, ctx.index)
        set_keepalive(transport, ctx.operating.tcp_alive_check_min)
        transport.registerProducer(BufferProducer(lambda full: self._set_jammed(dest, full)), True)
        if self._input_paused:
            transport.pauseProducing()
        count = len(self.connected)
        self._log.info("{channel}: connected to {destination} ({count}/{total})",
                       channel=self.channel.name, destination=dest.label, count=count,
                       total=len(self.destinations))
        if not self.wanted:  # connected while we were stopping: let it go
            dest.closing = True
            transport.loseConnection()
            return
        if self._buffer:
            data = self._buffer.take()
            self._log.info("{channel}: sending {size} buffered bytes to {destination}",
                           channel=self.channel.name, size=len(data), destination=dest.label)
            self._send(dest, data)
        self._touch()

    def _network_data(self, dest: Destination, data: bytes) -> None:
        if dest.connected:
            self.channel.write(data)
            self._touch()

    def _lost(self, dest: Destination, protocol: TcpClientProtocol, reason: Failure) -> None:
        if dest.protocol is not protocol:
            return
        dest.protocol = None
        self._set_jammed(dest, False)
        self.ctx.net.remove_connection(dest.net)
        dest.net = None
        self.stats.disconnects += 1
        if dest.closing or not self.running:
            self._log.info("{channel}: disconnected from {destination}",
                           channel=self.channel.name, destination=dest.label)
        else:
            self._log.info("{channel}: connection to {destination} lost ({reason}); "
                           "reconnecting", channel=self.channel.name, destination=dest.label,
                           reason=reason.getErrorMessage())
        dest.closing = False
        if not self.connected:
            self._cancel_idle()

    def _connect_failed(self, dest: Destination, reason: Failure) -> None:
        self.stats.connect_failures += 1
        if not dest.failing:
            dest.failing = True
            self._log.warn("{channel}: cannot connect to {destination} ({error}); retrying "
                           "every {initial:g} s doubling to {maximum:g} s",
                           channel=self.channel.name, destination=dest.label,
                           error=reason.getErrorMessage(), initial=BACKOFF_INITIAL,
                           maximum=BACKOFF_MAX)

    def _set_jammed(self, dest: Destination, jammed: bool) -> None:
        if jammed and dest.protocol is not None:
            self._jammed.add(dest)
        else:
            self._jammed.discard(dest)
        # Without "ignore jammed IP" a jammed destination holds the serial
        # reader for all; with it, only that destination misses data.
        self.channel.set_jammed(self, bool(self._jammed) and not self.channel.ignore_jammed)

    def _send(self, dest: Destination, data: bytes) -> None:
        """Write to one destination; its failure drops only that connection."""
        protocol = dest.protocol
        if protocol is None:
            return
        try:
            protocol.transport.write(data)
        except Exception:
            self._log.failure("{channel}: writing to {destination} failed; dropping it",
                              channel=self.channel.name, destination=dest.label)
            try:
                protocol.transport.abortConnection()
            except Exception:
                self._log.failure("{channel}: aborting {destination} failed",
                                  channel=self.channel.name, destination=dest.label)

    def _keep(self, data: bytes) -> None:
        """Buffer serial data while no destination is connected; drop the oldest beyond the limit."""
        dropped, first = self._buffer.add(data)
        if dropped:
            self.stats.buffer_dropped += dropped
            self.channel.stats.serial_rx_dropped += dropped
            if first:
                self._log.warn("{channel}: no destination connected and {size} bytes buffered; "
                               "dropping the oldest serial data", channel=self.channel.name,
                               size=BUFFER_SIZE)

    # -- IChannelSession ------------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        try:
            if self.control in _CHARACTER_MODES:
                self._want(True, "serial data")
            connected = self.connected
            if not connected:
                self._keep(data)
                return
            skip_jammed = self.channel.ignore_jammed
            for dest in connected:
                if skip_jammed and dest in self._jammed:
                    self.stats.jammed_dropped += len(data)
                    self.channel.stats.serial_rx_dropped += len(data)
                    continue
                self._send(dest, data)
            self._touch()
        except Exception:  # never detach from the channel: the port would go deaf
            self._log.failure("{channel}: error handling serial data", channel=self.channel.name)

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        try:
            self._check_lines()
        except Exception:
            self._log.failure("{channel}: error handling modem lines", channel=self.channel.name)

    def line_errors(self, events: LineEvents) -> None:
        pass  # raw TCP has no way to tell

    def device_state_changed(self, available: bool) -> None:
        # Connections are kept across a device replug; a reopened device's
        # lines decide again in the DSR/DCD modes.
        if available:
            self.modem_lines_changed(ModemLines(), ModemLines())

    def pause_input(self) -> None:
        self._input_paused = True
        for d in self.destinations:
            if d.protocol is not None:
                d.protocol.transport.pauseProducing()

    def resume_input(self) -> None:
        self._input_paused = False
        for d in self.destinations:
            if d.protocol is not None:
                d.protocol.transport.resumeProducing()

    def abort(self) -> None:
        for d in self.destinations:
            if d.protocol is not None:
                d.closing = True
                d.protocol.transport.abortConnection()


def _shifted(ctx: PortContext, port: int) -> int:
    """C{port} of this box shifted by --port-offset (from the port's endpoint string)."""
    return ctx.local_address("tcp", port)[0]


class TcpClientService(service.MultiService):
    """The services of TCP Client mode for one port (its controller), typed."""

    def __init__(self, controller: TcpClientController) -> None:
        super().__init__()
        self.controller = controller
        controller.setServiceParent(self)


def tcp_client_frontend(ctx: PortContext) -> TcpClientService:
    """The services of TCP Client mode for one port: its connection controller."""
    return TcpClientService(TcpClientController(ctx))
