# -*- test-case-name: tests.test_session -*-
"""
The admitted-session base: what happens to every TCP connection one of our
listeners accepts, written once for all front-ends (docs/architecture.md,
"Writing a front-end").

  L{Gate}             who may connect to one listener: the accessible IP
                      list, a connection limit, socket tuning (TCP_NODELAY,
                      TCP alive check), the inactivity time, the net table.
                      Needs no serial port: the TCP 4900 capture, the telnet
                      console and the web face use it as the serial modes do.
  L{AdmittedSession}  a Protocol let in by a Gate: inactivity timer on the
                      injected clock (TimeoutMixin), its write buffer watched
                      by the one producer adapter, reading paused for named
                      reasons, exceptions from its handler closing only it,
                      cleanup on loss.  Subclasses fill in hooks.
  L{ChannelSession}   an AdmittedSession that is one peer of a serial
                      channel (L{IChannelSession}): attached while admitted,
                      jammed while its buffer is full, raw relay by default.
  L{PortContext}      everything a front-end of one serial port is handed;
                      L{PortContext.gate} builds the Gate its settings ask for.

Admission, in order (L{Gate.admit}): accessible IP list (refused: abort),
connection limit (refused: close, or abort), the session's own claim (a
Real COM slot, pairing; refused: close), then the connection is counted,
put in the net table, and tuned; then the session registers its producer,
starts its inactivity timer and runs L{AdmittedSession.admitted}.
"""

from __future__ import annotations

import enum
import socket
from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import BufferProducer, write_now
from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines, SerialChannel
from nport_twisted.net.listener import ConnectionInfo, NetTable, split_endpoint


# --- socket tuning -------------------------------------------------------------------


def peer_host(transport: Any) -> str:
    """The peer's host of a transport ("" when it has none, as some fakes)."""
    try:
        return str(transport.getPeer().host)
    except AttributeError:
        return ""


def _tcp_transport(transport: Any) -> Any:
    """The TCP transport under a TLS one (whose getHandle() is the OpenSSL connection)."""
    inner = getattr(transport, "transport", None)
    if ISSLTransport.providedBy(transport) and inner is not None:
        return inner
    return transport


def set_keepalive(transport: Any, minutes: int) -> None:
    """
    TCP alive check: with C{minutes} > 0 a silent dead peer is detected and
    the connection closed after about that many minutes (NPort "TCP alive
    check time"); 0 leaves keep-alive off.
    """
    if minutes <= 0:
        return
    transport = _tcp_transport(transport)
    try:
        transport.setTcpKeepAlive(True)
        sock = transport.getHandle()
        total = minutes * 60
        interval, count = 10, 3
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, total - interval * count))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # also bounds unacknowledged writes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, total * 1000)
    except (AttributeError, OSError):
        pass  # not a real TCP socket (tests, TLS wrappers): nothing to tune


def set_nodelay(transport: Any) -> None:
    """TCP_NODELAY: small replies and serial pieces leave at once, not after a delayed ACK."""
    transport = _tcp_transport(transport)
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass


# --- the inactivity timer ------------------------------------------------------------


class ClockedTimeout(TimeoutMixin):
    """
    Twisted's L{TimeoutMixin} (C{setTimeout}, C{resetTimeout},
    C{timeoutConnection}) on an injected clock instead of the global
    reactor.  The one inactivity timer of the package: sessions use it per
    connection, TCP Client mode for all its destinations.
    """

    clock: IReactorTime

    def callLater(self, period: float, func: Callable[[], object]) -> IDelayedCall:
        return self.clock.callLater(period, func)


# --- admission -----------------------------------------------------------------------


class Refusal(enum.Enum):
    """Why a connection was not admitted (counted in L{GateStats}, named in the log)."""

    ACCESSIBLE_IP = "not in the accessible IP list"
    LIMIT = "connection limit"
    CLAIM = "no free slot"


@attrs.define
class GateStats:
    """Counters of one gate, for the monitor and SNMP."""

    admitted: int = 0
    refused_accessible_ip: int = 0
    refused_limit: int = 0
    refused_claim: int = 0


_REFUSAL_COUNTERS = {Refusal.ACCESSIBLE_IP: "refused_accessible_ip",
                     Refusal.LIMIT: "refused_limit", Refusal.CLAIM: "refused_claim"}


class Gate:
    """
    Admission to one listener: who may connect, how many at once, how the
    socket is tuned, how long it may stay silent; and the sessions it let in.

    @param label: who is speaking in log lines ("port1", "TCP 4900").
    @param clock: the injected clock (inactivity timers).
    @param accessible: the accessible IP list, asked at every connection
        (so a change applies to the next one).
    @param net: the box's net table; None keeps the connections out of it.
    @param port_index: the serial port (0-based) in the net table, None for
        device services.
    @param limit: connections at once; None for no limit of the gate's own
        (a session's L{AdmittedSession.claim} may still refuse).
    @param idle_timeout: seconds without traffic (as the session counts it,
        L{AdmittedSession.touch}) before the connection is closed; 0 = never.
    @param keepalive_min: TCP alive check time in minutes; 0 = off.
    @param nodelay: set TCP_NODELAY.
    @param abort_over_limit: refuse over the limit with an abort (RST)
        instead of a clean close.
    @param kind: what a connection is called in log lines.
    """

    _log = Logger()

    def __init__(self, label: str, clock: IReactorTime,
                 accessible: Callable[[], AccessibleIPSettings] = AccessibleIPSettings, *,
                 net: NetTable | None = None, port_index: int | None = None,
                 limit: int | None = None, idle_timeout: float = 0.0, keepalive_min: int = 0,
                 nodelay: bool = False, abort_over_limit: bool = False,
                 kind: str = "connection") -> None:
        self.label = label
        self.clock = clock
        self.accessible = accessible
        self.net = net
        self.port_index = port_index
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.keepalive_min = keepalive_min
        self.nodelay = nodelay
        self.abort_over_limit = abort_over_limit
        self.kind = kind
        self.active: list[AdmittedSession] = []
        self.stats = GateStats()

    def __repr__(self) -> str:
        return f"<Gate {self.label} {self.kind}>"

    def admit(self, session: AdmittedSession) -> bool:
        """
        Let C{session} (whose transport just connected) in, or refuse it and
        close its connection.  True when admitted: it is then counted in
        L{active}, in the net table, and its socket is tuned.
        """
        transport = session.transport
        host = peer_host(transport)
        if not self.accessible().allows(host):
            self._refuse(transport, host, Refusal.ACCESSIBLE_IP, Refusal.ACCESSIBLE_IP.value,
                         abort=True)
            return False
        if self.limit is not None and len(self.active) >= self.limit:
            self._refuse(transport, host, Refusal.LIMIT, f"max connection {self.limit} reached",
                         abort=self.abort_over_limit)
            return False
        why = session.claim()
        if why is not None:
            self._refuse(transport, host, Refusal.CLAIM, why, abort=False)
            return False
        self.active.append(session)
        self.stats.admitted += 1
        if self.net is not None:
            session.net_entry = self.net.add_connection(transport, self.port_index)
        if self.nodelay:
            set_nodelay(transport)
        set_keepalive(transport, self.keepalive_min)
        return True

    def release(self, session: AdmittedSession) -> None:
        """C{session}'s connection is gone: uncount it and take it out of the net table."""
        if session in self.active:
            self.active.remove(session)
        if self.net is not None:
            self.net.remove_connection(session.net_entry)
        session.net_entry = None

    def _refuse(self, transport: Any, host: str, refusal: Refusal, why: str, abort: bool) -> None:
        # One place for refusals: counted, logged (rate limiting per source goes here), closed.
        counter = _REFUSAL_COUNTERS[refusal]
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        self._log.warn("{label}: refusing {kind} from {peer}: {why}", label=self.label,
                       kind=self.kind, peer=host, why=why, refusal=refusal,
                       port_index=self.port_index)
        if abort:
            transport.abortConnection()
        else:
            transport.loseConnection()


class ReadHold(enum.Enum):
    """Why reading from a peer is paused; it resumes when no reason is left."""

    SERIAL_BUSY = "the serial device is not keeping up"
    PEER_NOT_READING = "the peer does not read what we send"


class AdmittedSession(Protocol, ClockedTimeout):
    """
    One TCP connection that passed its L{Gate}.  Subclasses override the
    hooks (each does nothing by default):

      - L{claim}: last admission step (a slot, pairing); return why not.
      - L{admitted}: the connection is in.
      - L{received}: bytes from the peer, only once admitted.  An exception
        is logged and aborts this connection, nothing else.
      - L{closed}: the admitted connection ended; undo L{admitted}.
      - L{write_buffer_changed}: L{write_full} changed.
      - C{timeoutConnection}: the inactivity time passed (default: log, close).

    and use L{send}, L{touch}, L{pause_reading}/L{resume_reading}, L{abort},
    L{peer}.  A connection that was not admitted never reaches a hook.
    """

    transport: Any  # a TCP (or TLS) transport: ITCPTransport + IPushProducer + IConsumer

    _log = Logger()

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.clock = gate.clock
        self.is_admitted = False
        self.net_entry: ConnectionInfo | None = None
        self.write_full = False  # the transport's write buffer is over its high-water mark
        self._read_holds: set[ReadHold] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.gate.label} {self.peer}>"

    @property
    def peer(self) -> str:
        return peer_host(self.transport)

    # -- Twisted's events -----------------------------------------------------------

    def connectionMade(self) -> None:
        if not self.gate.admit(self):
            return
        self.is_admitted = True
        self.transport.registerProducer(BufferProducer(self._write_buffer_full), True)
        if self.gate.idle_timeout > 0:
            self.setTimeout(self.gate.idle_timeout)
        self.admitted()

    def dataReceived(self, data: bytes) -> None:
        if not self.is_admitted:
            return
        try:
            self.received(data)
        except Exception:  # noqa: BLE001 - logged; only this connection is dropped
            self._log.failure("{label}: error handling data from {peer}; closing",
                              label=self.gate.label, peer=self.peer)
            self.abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.is_admitted:
            return
        self.is_admitted = False
        self.setTimeout(None)
        self.gate.release(self)
        self.closed(reason)

    def timeoutConnection(self) -> None:
        self._log.info("{label}: closing {peer} after {seconds:g} s of inactivity",
                       label=self.gate.label, peer=self.peer, seconds=self.gate.idle_timeout)
        self.transport.loseConnection()

    # -- hooks ------------------------------------------------------------------------

    def claim(self) -> str | None:
        """Take what this connection needs beyond the gate's checks; None, or why not."""
        return None

    def admitted(self) -> None:
        """The connection is in: start the conversation."""

    def received(self, data: bytes) -> None:
        """Bytes from the peer."""

    def closed(self, reason: Failure) -> None:
        """The admitted connection ended (the gate has already let it go)."""

    def write_buffer_changed(self) -> None:
        """L{write_full} changed: the peer stopped or resumed taking our bytes."""

    # -- tools ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Bytes for the peer: written at once when nothing is queued ahead."""
        write_now(self.transport, data)

    def touch(self) -> None:
        """Traffic that counts as activity: restart the inactivity timer."""
        self.resetTimeout()

    def pause_reading(self, why: ReadHold) -> None:
        """Stop reading from the peer until every reason given is withdrawn."""
        if not self._read_holds:
            self.transport.pauseProducing()
        self._read_holds.add(why)

    def resume_reading(self, why: ReadHold) -> None:
        if why in self._read_holds:
            self._read_holds.discard(why)
            if not self._read_holds:
                self.transport.resumeProducing()

    def abort(self) -> None:
        """Drop the connection at once (RST, nothing more sent)."""
        self.transport.abortConnection()

    def _write_buffer_full(self, full: bool) -> None:
        if full != self.write_full:
            self.write_full = full
            self.write_buffer_changed()


@implementer(IChannelSession)
class ChannelSession(AdmittedSession):
    """
    An admitted connection that is one peer of a serial channel: attached
    while admitted, jammed while it does not take our bytes (the channel
    then pauses the serial reader or, with "ignore jammed IP", skips it),
    paused while the device does not keep up.  By default a raw relay: host
    bytes go to the device, device bytes to the host, both count as activity.
    Subclasses calling the hooks' C{super()} keep this.
    """

    def __init__(self, gate: Gate, channel: SerialChannel) -> None:
        super().__init__(gate)
        self.channel = channel

    def admitted(self) -> None:
        self.channel.attach(self)

    def closed(self, reason: Failure) -> None:
        self.channel.detach(self)

    def received(self, data: bytes) -> None:
        self.channel.write(data)
        self.touch()

    @property
    def jammed(self) -> bool:
        """Serial data must wait for this peer (override to add reasons of your own)."""
        return self.write_full

    def write_buffer_changed(self) -> None:
        self.update_jam()

    def update_jam(self) -> None:
        """Tell the channel whether this peer is jammed now."""
        if self.is_admitted:
            self.channel.set_jammed(self, self.jammed)

    # -- IChannelSession ----------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        self.send(data)
        self.touch()

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        pass

    def line_errors(self, events: LineEvents) -> None:
        pass

    def device_state_changed(self, available: bool) -> None:
        pass  # connections are kept across a device replug

    def pause_input(self) -> None:
        self.pause_reading(ReadHold.SERIAL_BUSY)

    def resume_input(self) -> None:
        self.resume_reading(ReadHold.SERIAL_BUSY)


class SessionFactory(Factory):
    """Builds one kind of session for one gate."""

    noisy = False

    def __init__(self, gate: Gate, build: Callable[[], Protocol]) -> None:
        self.gate = gate
        self._build = build

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._build()


# --- the context of one serial port's front-end ---------------------------------------


@attrs.define
class PortContext:
    """Everything a front-end of one serial port needs, injected."""

    index: int
    channel: SerialChannel
    operating: OperatingSettings
    reactor: Any
    endpoint: Callable[[str, int], str]  # ("tcp"/"udp", port) -> endpoint string with offset
    net: NetTable
    accessible: Callable[[], AccessibleIPSettings]
    state_dir: str | None = None

    @property
    def number(self) -> int:
        return self.index + 1

    def local_address(self, proto: str, port: int) -> tuple[int, str]:
        """(port after --port-offset, interface) of one of this box's local ports."""
        _, actual, interface = split_endpoint(self.endpoint(proto, port))
        return actual, interface

    def gate(self, kind: str = "connection", *, limited: bool = True,
             inactivity: bool = True) -> Gate:
        """
        The gate of one of this port's listeners, from its operating
        settings: accessible IP list, max connection (unless C{limited} is
        False: the front-end counts slots itself), inactivity time (unless
        C{inactivity} is False), TCP alive check, TCP_NODELAY.
        """
        op = self.operating
        # Through the context, not its current value: the list may be replaced later.
        return Gate(self.channel.name or f"port{self.number}", self.reactor, lambda: self.accessible(), net=self.net,
                    port_index=self.index, limit=op.max_connection if limited else None,
                    idle_timeout=op.inactivity_ms / 1000 if inactivity else 0.0,
                    keepalive_min=op.tcp_alive_check_min, nodelay=True, kind=kind)
