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
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import (
    BufferProducer,
    PeerClosed,
    direct_writer,
    fast_io,
    peer_closed,
    slow_io,
    tls_handshake_pending,
    unread_bytes,
    unsent_bytes,
    write_now,
)
from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines, SerialChannel
from nport_twisted.net.listener import ConnectionInfo, NetTable, split_endpoint
from nport_twisted.net.loglimit import LogLimiter


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
        #: Log lines of this gate and its sessions, bounded per source (refusals, bad frames).
        self.logs = LogLimiter(clock)
        if net is not None:
            net.gates.add(self)

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
            # A peer that closed and reconnected at once: its old connection's
            # close may not be processed yet.  Reap such sessions first.
            self.reap()
        if self.limit is not None and len(self.active) >= self.limit:
            self._refuse(transport, host, Refusal.LIMIT, f"max connection {self.limit} reached",
                         abort=self.abort_over_limit)
            return False
        why = session.claim()
        if why is not None and self.reap():
            why = session.claim()  # a slot held by a connection that was already gone
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

    def reap(self) -> int:
        """
        End the admitted sessions whose peer has already gone (reset, or
        closed with nothing left unread) but whose close the reactor has not
        processed yet; return how many.  Called before refusing at a limit.
        """
        reaped = 0
        for session in list(self.active):
            state = peer_closed(session.transport)
            if state is PeerClosed.RESET or (
                    state is PeerClosed.FIN and unread_bytes(session.transport) == 0):
                session.reap(state)
                reaped += 1
        return reaped

    def enforce_accessible(self) -> int:
        """
        Close the admitted sessions whose peer the accessible IP list no
        longer allows (the list was changed); return how many.
        """
        acl = self.accessible()
        closed = 0
        for session in list(self.active):
            host = session.peer
            if not acl.allows(host):
                self._log.warn("{label}: closing {kind} from {peer}: no longer in the accessible "
                               "IP list", label=self.label, kind=self.kind, peer=host,
                               port_index=self.port_index)
                session.abort()
                closed += 1
        return closed

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
        self.logs.emit(self._log.warn, f"refused: {refusal.value}", host,
                       "{label}: refusing {kind} from {peer}: {why}", label=self.label,
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
    BACKLOG = "requests already read wait for the next reactor turn"
    MODEM_COMMAND = "the emulated modem is ringing or in command mode"


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

    #: A request/reply protocol (ASPP command port, RFC 2217, consoles):
    #: while the peer does not take our replies (L{write_full}) its
    #: requests are not read (so replies cannot pile up), it is dropped
    #: after L{jam_timeout} seconds in that state, and at once when more
    #: than L{max_unsent} bytes wait for it.  Raw relays leave it off: their
    #: jam is the channel's business ("ignore jammed IP").
    bounded_replies = False
    jam_timeout = 30.0
    max_unsent = 1 << 20
    #: While reading is paused, how often the socket is asked whether the
    #: peer closed or reset it (a paused transport notices neither), and how
    #: long a peer that closed its side may wait for its bytes to be taken.
    closed_poll_interval = 1.0
    closed_grace = 30.0
    #: Requests (events) handled per reactor turn by L{handle_events}: a
    #: flood on one connection cannot starve the other ports of the box.
    max_events_per_turn = 256

    _log = Logger()

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.clock = gate.clock
        self.is_admitted = False
        self.net_entry: ConnectionInfo | None = None
        self.write_full = False  # the transport's write buffer is over its high-water mark
        self._read_holds: set[ReadHold] = set()
        self._jam_timer: IDelayedCall | None = None
        self._closed_watch: IDelayedCall | None = None
        self._fin_seen: float | None = None
        self._backlog: list[Any] = []
        self._backlog_call: IDelayedCall | None = None
        self._aborted = False

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
        fast_io(self.clock, self.transport, self.fast_received)  # where the reactor offers it
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
        slow_io(self.clock, self.transport)
        self.setTimeout(None)
        for timer in (self._jam_timer, self._closed_watch, self._backlog_call):
            if timer is not None and timer.active():
                timer.cancel()
        self._jam_timer = self._closed_watch = self._backlog_call = None
        self._backlog.clear()
        self.gate.release(self)
        self.closed(reason)

    def reap(self, state: PeerClosed) -> None:
        """
        The peer is gone (L{Gate.reap}) but the reactor has not noticed:
        abort the transport and end the session now, so its slot is free
        for the connection being admitted.
        """
        self.gate.logs.emit(self._log.info, "reaped", self.peer,
                            "{label}: {peer} {how} before its close was processed; "
                            "freeing its place", label=self.gate.label, peer=self.peer,
                            how=state.value)
        self.abort()
        self.connectionLost(Failure(ConnectionLost(f"the peer {state.value}")))

    @property
    def fast_received(self) -> Callable[[bytes], None]:
        """What the reactor's fast reader hands data to: L{dataReceived}, or a shortcut doing the same."""
        return self.dataReceived

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
        if self.bounded_replies and self.is_admitted:
            unsent = unsent_bytes(self.transport)
            if unsent > self.max_unsent:
                self.gate.logs.emit(self._log.warn, "unsent", self.peer,
                                    "{label}: {peer} leaves {n} bytes of replies unread; closing",
                                    label=self.gate.label, peer=self.peer, n=unsent)
                self.abort()

    def touch(self) -> None:
        """Traffic that counts as activity: restart the inactivity timer."""
        self.resetTimeout()

    def pause_reading(self, why: ReadHold) -> None:
        """Stop reading from the peer until every reason given is withdrawn."""
        if not self._read_holds:
            self.transport.pauseProducing()
            self._watch_closed()
        self._read_holds.add(why)

    def resume_reading(self, why: ReadHold) -> None:
        if why in self._read_holds:
            self._read_holds.discard(why)
            if not self._read_holds:
                if self._closed_watch is not None and self._closed_watch.active():
                    self._closed_watch.cancel()
                self._closed_watch = None
                self._fin_seen = None
                if not self._aborted:  # an aborted transport is not read again
                    self.transport.resumeProducing()

    @property
    def read_holds(self) -> frozenset[ReadHold]:
        """Why reading from the peer is paused now (empty: it is not)."""
        return frozenset(self._read_holds)

    def abort(self) -> None:
        """Drop the connection at once (RST, nothing more sent)."""
        self._aborted = True
        self.transport.abortConnection()

    def handle_events(self, events: list[Any], handle: Callable[[Any, list[bytes]], None]) -> None:
        """
        Call C{handle(event, out)} for each of C{events} (parsed requests),
        at most L{max_events_per_turn} per reactor turn; the replies each
        batch appends to C{out} leave in one L{send}.  Events beyond the
        budget wait for the next turn with reading paused (L{ReadHold.BACKLOG}),
        in order.
        """
        self._backlog.extend(events)
        if self._backlog_call is None:
            self._handle_backlog(handle)

    def _handle_backlog(self, handle: Callable[[Any, list[bytes]], None]) -> None:
        self._backlog_call = None
        if not self.is_admitted or self._aborted:
            self._backlog.clear()
            return
        budget = max(1, self.max_events_per_turn)
        batch, self._backlog = self._backlog[:budget], self._backlog[budget:]
        out: list[bytes] = []
        try:
            for event in batch:
                handle(event, out)
        finally:
            if out and not self._aborted:
                self.send(b"".join(out))
        if self._backlog and not self._aborted:
            self.pause_reading(ReadHold.BACKLOG)
            self._backlog_call = self.clock.callLater(0, self._next_batch, handle)
        else:
            self.resume_reading(ReadHold.BACKLOG)

    def _next_batch(self, handle: Callable[[Any, list[bytes]], None]) -> None:
        try:
            self._handle_backlog(handle)
        except Exception:  # noqa: BLE001 - as in dataReceived: only this connection is dropped
            self._log.failure("{label}: error handling data from {peer}; closing",
                              label=self.gate.label, peer=self.peer)
            self.abort()

    def _write_buffer_full(self, full: bool) -> None:
        if full != self.write_full:
            self.write_full = full
            if self.bounded_replies and self.is_admitted:
                self._reply_jam(full)
            self.write_buffer_changed()

    def _reply_jam(self, full: bool) -> None:
        if full and tls_handshake_pending(self.transport):
            return  # the greeting waits for the TLS handshake, which needs our reading
        if full:
            self.pause_reading(ReadHold.PEER_NOT_READING)
            if self._jam_timer is None and self.jam_timeout > 0:
                self._jam_timer = self.clock.callLater(self.jam_timeout, self._jammed_too_long)
        else:
            if self._jam_timer is not None and self._jam_timer.active():
                self._jam_timer.cancel()
            self._jam_timer = None
            self.resume_reading(ReadHold.PEER_NOT_READING)

    def _jammed_too_long(self) -> None:
        self._jam_timer = None
        if not self.is_admitted or not self.write_full:
            return
        if unread_bytes(self.transport) == 0 and not self._backlog:
            # Not reading, but not sending requests either: nothing piles up.
            self._jam_timer = self.clock.callLater(self.jam_timeout, self._jammed_too_long)
            return
        self.gate.logs.emit(self._log.warn, "jammed", self.peer,
                            "{label}: {peer} keeps sending requests but has not read our "
                            "replies for {seconds:g} s; closing", label=self.gate.label,
                            peer=self.peer, seconds=self.jam_timeout)
        self.abort()

    # -- a paused peer that goes away ----------------------------------------------

    def _watch_closed(self) -> None:
        if self._closed_watch is None and self.closed_poll_interval > 0:
            self._closed_watch = self.clock.callLater(self.closed_poll_interval, self._check_closed)

    def _check_closed(self) -> None:
        self._closed_watch = None
        if not self.is_admitted or not self._read_holds:
            return
        state = peer_closed(self.transport)
        now = self.clock.seconds()
        if state is PeerClosed.RESET:
            self.gate.logs.emit(self._log.info, "paused-reset", self.peer,
                                "{label}: {peer} reset the connection while we were not reading "
                                "it ({why}); closing", label=self.gate.label, peer=self.peer,
                                why=", ".join(sorted(h.value for h in self._read_holds)))
            self.abort()
            return
        if state is PeerClosed.FIN:
            if self._fin_seen is None:
                self._fin_seen = now
            elif now - self._fin_seen >= self.closed_grace:
                self.gate.logs.emit(self._log.info, "paused-fin", self.peer,
                                    "{label}: {peer} closed its side {seconds:g} s ago and what it "
                                    "sent still cannot be taken ({why}); closing",
                                    label=self.gate.label, peer=self.peer,
                                    seconds=now - self._fin_seen,
                                    why=", ".join(sorted(h.value for h in self._read_holds)))
                self.abort()
                return
        self._watch_closed()


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

    #: The dedicated relay towards the peer (set while admitted, where it applies): the
    #: channel's lone-session delivery calls it first; False means "take serial_data".
    direct_serial_data: Callable[[bytes], bool] | None = None

    def __init__(self, gate: Gate, channel: SerialChannel) -> None:
        super().__init__(gate)
        self.channel = channel

    def admitted(self) -> None:
        self.direct_serial_data = self._direct_serial_writer()
        self.channel.attach(self)

    def closed(self, reason: Failure) -> None:
        self.direct_serial_data = None
        self.channel.detach(self)

    def received(self, data: bytes) -> None:
        self.channel.write(data)
        self.touch()

    @property
    def fast_received(self) -> Callable[[bytes], None]:
        # The raw relay (received not overridden): dataReceived + received in one call;
        # channel.write sends at once through the device's direct writer where it can.
        if type(self).received is ChannelSession.received:
            return self._relay_received
        return self.dataReceived

    def _direct_serial_writer(self) -> Callable[[bytes], bool] | None:
        """
        The dedicated relay towards the peer: device bytes sent at once on a
        plain, idle TCP socket, touching the inactivity timer as
        L{serial_data} does.  Only for the raw relay (serial_data and touch
        not overridden) without a reply bound; None otherwise (TLS and
        wrappers have no direct writer).
        """
        if (type(self).serial_data is not ChannelSession.serial_data
                or type(self).touch is not AdmittedSession.touch or self.bounded_replies):
            return None
        write = direct_writer(self.transport)
        if write is None:
            return None

        def direct_serial_data(data: bytes) -> bool:
            if not self.is_admitted or not write(data):
                return False
            if self.timeOut:
                self.resetTimeout()
            return True

        return direct_serial_data

    def _relay_received(self, data: bytes) -> None:
        """L{dataReceived} + L{received} of the raw relay, flattened (same rules)."""
        if not self.is_admitted:
            return
        try:
            self.channel.write(data)
            self.touch()
        except Exception:  # noqa: BLE001 - as dataReceived: only this connection is dropped
            self._log.failure("{label}: error handling data from {peer}; closing",
                              label=self.gate.label, peer=self.peer)
            self.abort()

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

    def data_tls(self, client_certificates: bool = True) -> Callable[[], Any] | None:
        """
        The TLS of this port's data listener (for L{ListenerService}'s
        C{tls}) when C{secure} is on, else None: TLS 1.2 with nothing after
        the handshake (config/tls.py), client certificates checked against
        C{tls_ca_file} when one is set and C{client_certificates} is true.
        """
        if not self.operating.secure:
            return None
        from nport_twisted.config.tls import tls_for

        ca = self.operating.tls_ca_file if client_certificates else ""
        return tls_for(self.state_dir, ca)

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
