# -*- test-case-name: tests.test_pair -*-
"""
Pair Connection mode (master / slave): two boxes tunnel one serial line
over TCP, data and modem lines (settings.md §5.1; docs/modes/pair.md).

Wire: the framed format of L{nport_twisted.wire.pairframe} -- **ours**:
MOXA's format between two NPorts is not public, so a pair of nport-twisted
boxes interoperates, a MOXA NPort does not.

  slave   listens on its local TCP port (4001+n-1 unless configured) and
          takes one master at a time (accessible IP list applies; a second
          master is refused while one is linked).
  master  connects to C{pair_remote} (the slave's HOST:PORT) and keeps
          reconnecting (1 s doubling to 30 s, as TCP Client mode); the
          serial port stays open meanwhile.

Each side sends HELLO with its role and then its input lines (LINES);
serial data (after packing) goes as DATA frames, a break on the line as a
BREAK frame.  The receiver of LINES drives its DTR from the peer's DSR and
its RTS from the peer's CTS, as a null-modem cable would: the device on one
side sees the other device's DTR/RTS as its own DSR/CTS (MOXA documents
that the master's DTR/RTS appear as the slave's DSR/CTS and back; how we
carry them is ours).

While no peer is linked (ours): DTR and RTS are off, as with the cable
unplugged; serial data waits in a bounded buffer (64 KiB, oldest dropped
and counted) and goes to the peer once it has said HELLO.  A peer whose
lines are unknown (its device has none, a pty) leaves DTR/RTS on.  A
malformed stream, a peer of the wrong role or another version closes the
link with one log line; nothing reaches the serial transport.
"""

from __future__ import annotations

from collections.abc import Callable
import attrs
from twisted.application import service
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.config.settings import AccessibleIPSettings, tcp_server_port
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines
from nport_twisted.device.portbuffer import NewestBytes
from nport_twisted.modes.tcpclient import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    _ReportingEndpoint,
    client_endpoint,
    parse_destination,
    reconnect_delay,
)
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import (
    AdmittedSession,
    Gate,
    PortContext,
    ReadHold,
    SessionFactory,
)
from nport_twisted.wire import pairframe as pf

#: Serial bytes kept while no peer is linked (ours, as TCP Client mode's buffer).
BUFFER_SIZE = 64 * 1024

#: How long a break on our line lasts on the peer's (the kernel reports
#: breaks as counts, not durations; ours).
BREAK_MS = 250


@attrs.define
class PairStats:
    """Counters of one Pair Connection port (besides the channel's own)."""

    links: int = 0  # links made (HELLO exchanged)
    link_failures: int = 0  # connection attempts refused or timed out (master)
    bad_streams: int = 0  # links closed for a malformed stream or a wrong peer
    buffer_dropped: int = 0  # serial bytes dropped from the offline buffer, oldest first


class PairLink(AdmittedSession):
    """
    One TCP connection between the two ends, on the admitted-session base
    (admission, net table, keep-alive, exceptions closing only it); it
    decodes frames and hands the events to its L{PairEnd}.
    """

    _log = Logger()

    def __init__(self, end: PairEnd) -> None:
        super().__init__(end.gate)
        self.end = end
        self.decoder = pf.PairDecoder()
        self.ready = False  # the peer said HELLO with the right role

    def __repr__(self) -> str:
        return f"<Pair link {self.end.channel.name} {self.peer}>"

    def claim(self) -> str | None:
        return self.end.claim(self)

    def admitted(self) -> None:
        self.end.link_up(self)

    def received(self, data: bytes) -> None:
        try:
            events = self.decoder.feed(data)
        except pf.PairFrameError as e:
            self.end.bad_stream(self, str(e))
            return
        for event in events:
            if self._aborted:
                return
            self.end.link_event(self, event)

    def closed(self, reason: Failure) -> None:
        self.end.link_down(self, reason)

    def write_buffer_changed(self) -> None:
        self.end.update_jam()


@implementer(IChannelSession)
class PairEnd(service.Service):
    """
    One end of a Pair Connection: attached to the channel while running,
    it relays between the serial line and the current L{PairLink}.
    """

    _log = Logger()
    role: pf.Role = pf.Role.SLAVE
    peer_role: pf.Role = pf.Role.MASTER

    def __init__(self, ctx: PortContext, gate: Gate) -> None:
        self.ctx = ctx
        self.channel = ctx.channel
        self.gate = gate
        self.stats = PairStats()
        self.link: PairLink | None = None
        self._buffer = NewestBytes(BUFFER_SIZE)
        self._input_paused = False
        self._break_timer: IDelayedCall | None = None
        #: The peer's input lines last reported (None: no link or not yet told).
        self.peer_lines: pf.Lines | None = None

    def __repr__(self) -> str:
        return f"<Pair {self.role.name.lower()} {self.channel.name}>"

    @property
    def linked(self) -> bool:
        """A peer is connected and said HELLO."""
        return self.link is not None and self.link.ready

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.channel.attach(self)
        self._drive_lines(None)  # no peer yet: as with the cable unplugged

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self.channel.detach(self)
        self._cancel_break()
        if self.link is not None:
            self.link.abort()
        # The next mode starts from the lines' rest state.
        self.channel.set_dtr(True)
        self.channel.set_rts(True)
        return None

    # -- links ---------------------------------------------------------------------------

    def claim(self, link: PairLink) -> str | None:
        if self.link is not None and self.link is not link:
            return f"a {self.peer_role.name.lower()} is already linked ({self.link.peer})"
        return None

    def link_up(self, link: PairLink) -> None:
        self.link = link
        if self._input_paused:
            link.pause_reading(ReadHold.SERIAL_BUSY)
        link.send(pf.encode_hello(self.role) + pf.encode_lines(self._local_lines()))

    def link_event(self, link: PairLink, event: pf.PairEvent) -> None:
        if link is not self.link:
            return
        if isinstance(event, pf.Data):
            self.channel.write(event.data)
        elif isinstance(event, pf.Lines):
            self.peer_lines = event
            self._drive_lines(event)
        elif isinstance(event, pf.Break):
            self._peer_break(event.ms)
        elif isinstance(event, pf.Hello):
            if event.role is not self.peer_role:
                self.bad_stream(link, f"the peer is a pair {event.role.name.lower()} too "
                                      f"(a {self.role.name.lower()} needs a "
                                      f"{self.peer_role.name.lower()})")
                return
            link.ready = True
            self.stats.links += 1
            self._log.info("{channel}: pair {role} linked to {peer}", channel=self.channel.name,
                           role=self.role.name.lower(), peer=link.peer)
            if self._buffer:
                data = self._buffer.take()
                link.send(pf.encode_data(data))
            self.update_jam()

    def bad_stream(self, link: PairLink, why: str) -> None:
        """A malformed stream or a wrong peer: one log line, the link closes."""
        self.stats.bad_streams += 1
        self.gate.logs.emit(self._log.warn, "pair-bad-stream", link.peer,
                            "{channel}: closing the pair link with {peer}: {why}",
                            channel=self.channel.name, peer=link.peer, why=why)
        link.abort()

    def link_down(self, link: PairLink, reason: Failure) -> None:
        if link is not self.link:
            return
        was_ready = link.ready
        self.link = None
        self.peer_lines = None
        self.channel.set_jammed(self, False)
        self._cancel_break()
        if self.running:
            self._drive_lines(None)
        if was_ready:
            self._log.info("{channel}: pair link with {peer} lost ({reason})",
                           channel=self.channel.name, peer=link.peer,
                           reason=reason.getErrorMessage())

    def update_jam(self) -> None:
        link = self.link
        self.channel.set_jammed(self, link is not None and link.ready and link.write_full)

    # -- the peer drives our outputs -----------------------------------------------------

    def _drive_lines(self, peer: pf.Lines | None) -> None:
        if peer is None:
            dtr = rts = False  # no peer: the far end is gone
        elif not peer.present:
            dtr = rts = True  # the peer's device has no lines: leave ours on
        else:
            dtr, rts = peer.dsr, peer.cts
        self.channel.set_dtr(dtr)
        self.channel.set_rts(rts)

    def _peer_break(self, ms: int) -> None:
        self._cancel_break()
        if self.channel.set_break(True):
            self._break_timer = self.ctx.reactor.callLater(max(ms, 1) / 1000, self._break_off)

    def _break_off(self) -> None:
        self._break_timer = None
        self.channel.set_break(False)

    def _cancel_break(self) -> None:
        if self._break_timer is not None:
            if self._break_timer.active():
                self._break_timer.cancel()
            self._break_timer = None
            self.channel.set_break(False)

    def _local_lines(self) -> pf.Lines:
        channel = self.channel
        if not channel.is_open:
            return pf.Lines()  # the device is gone: its lines are off
        modem = channel.modem
        if modem is None:
            return pf.Lines(present=False)
        return pf.Lines(cts=modem.cts, dsr=modem.dsr, dcd=modem.dcd, ri=modem.ri)

    def _send_lines(self) -> None:
        if self.linked:
            assert self.link is not None
            self.link.send(pf.encode_lines(self._local_lines()))

    def _keep(self, data: bytes) -> None:
        dropped, first = self._buffer.add(data)
        if dropped:
            self.stats.buffer_dropped += dropped
            self.channel.stats.serial_rx_dropped += dropped
            if first:
                self._log.warn("{channel}: no pair peer linked and {size} bytes buffered; "
                               "dropping the oldest serial data", channel=self.channel.name,
                               size=BUFFER_SIZE)

    # -- IChannelSession ------------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        link = self.link
        if link is not None and link.ready:
            link.send(pf.encode_data(data))
        else:
            self._keep(data)

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        self._send_lines()

    def line_errors(self, events: LineEvents) -> None:
        if events.breaks and self.linked:
            assert self.link is not None
            self.link.send(pf.encode_break(BREAK_MS))

    def device_state_changed(self, available: bool) -> None:
        self._send_lines()
        if available:
            self._drive_lines(self.peer_lines if self.linked else None)

    def pause_input(self) -> None:
        self._input_paused = True
        if self.link is not None:
            self.link.pause_reading(ReadHold.SERIAL_BUSY)

    def resume_input(self) -> None:
        self._input_paused = False
        if self.link is not None:
            self.link.resume_reading(ReadHold.SERIAL_BUSY)

    def abort(self) -> None:
        if self.link is not None:
            self.link.abort()


class PairSlave(PairEnd):
    """The slave end: takes the master's connection on its local TCP port."""


class PairMaster(PairEnd):
    """The master end: connects to the slave, reconnecting with backoff."""

    role = pf.Role.MASTER
    peer_role = pf.Role.SLAVE

    def _connect_failed(self, reason: Failure) -> None:
        self.stats.link_failures += 1
        if not self._failing:
            self._failing = True
            self._log.warn("{channel}: cannot connect to the pair slave {destination} ({error}); "
                           "retrying every {initial:g} s doubling to {maximum:g} s",
                           channel=self.channel.name, destination=self.ctx.operating.pair_remote,
                           error=reason.getErrorMessage(), initial=BACKOFF_INITIAL,
                           maximum=BACKOFF_MAX)

    _failing = False

    def link_up(self, link: PairLink) -> None:
        self._failing = False
        super().link_up(link)


def _gate(ctx: PortContext, kind: str, accessible: Callable[[], AccessibleIPSettings]) -> Gate:
    op = ctx.operating
    return Gate(ctx.channel.name or f"port{ctx.number}", ctx.reactor, accessible, net=ctx.net,
                port_index=ctx.index, limit=1, keepalive_min=op.tcp_alive_check_min,
                nodelay=True, kind=kind)


class PairService(service.MultiService):
    """The services of one Pair Connection port: its end first, then its listener or connector."""

    def __init__(self, end: PairEnd) -> None:
        super().__init__()
        self.end = end
        #: The master's reconnecting connector (None on a slave, or without a destination).
        self.connector: ClientService | None = None
        end.setServiceParent(self)


def pair_slave_frontend(ctx: PortContext) -> PairService:
    """Pair Connection slave: the master's link on the local TCP port (4001+n-1 by default)."""
    end = PairSlave(ctx, _gate(ctx, "pair master connection", lambda: ctx.accessible()))
    front = PairService(end)
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port),
                    SessionFactory(end.gate, lambda: PairLink(end)), ctx.net,
                    ctx.index).setServiceParent(front)
    return front


def pair_master_frontend(ctx: PortContext,
                         retry_policy: Callable[[int], float] = reconnect_delay) -> PairService:
    """Pair Connection master: a link to C{pair_remote}, kept up while running."""
    # Outgoing: the accessible IP list is for who may connect to us, not whom we call.
    end = PairMaster(ctx, _gate(ctx, "pair slave connection", AccessibleIPSettings))
    front = PairService(end)
    remote = ctx.operating.pair_remote
    if not remote:
        end._log.warn("{channel}: pair master without a destination (pair_remote): serial data "
                      "is buffered and dropped", channel=ctx.channel.name)
        return front
    host, port = parse_destination(remote)
    endpoint = _ReportingEndpoint(client_endpoint(ctx.reactor, host, port), remote,
                                  end._connect_failed)
    connector = ClientService(endpoint, SessionFactory(end.gate, lambda: PairLink(end)),
                              retry_policy, clock=ctx.reactor)
    connector.setServiceParent(front)
    front.connector = connector
    return front

