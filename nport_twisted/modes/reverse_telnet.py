# -*- test-case-name: tests.test_reverse_telnet -*-
"""
Reverse Telnet mode (terminal / console server use; settings.md §5.1,
docs/modes/reverse-telnet.md).

Wire: a telnet server (RFC 854/855) on the local TCP port (4001+n-1 unless
configured) in front of the serial line.  On connect we send
IAC WILL ECHO, WILL SGA, DO SGA, WILL BINARY, DO BINARY: the client goes to
character mode and leaves echoing to the far end (the serial device echoes,
as a console does; we never echo ourselves).  Every other option is refused
(WONT/DONT) and refusals are never answered (no negotiation loop).

Data: IAC doubled both ways.  From the client, every Enter (CR LF, CR NUL
or a bare CR) becomes what "Map <CR-LF>" (C{telnet_map_cr}: CR-LF, CR or
LF; MOXA's option) says on the serial line.  Towards the client, a bare CR
goes as CR NUL while the client refuses our BINARY (RFC 854).  IAC BRK
sends a break of 250 ms on the line and IAC AYT is answered with a short
text (both ours); other commands (NOP, GA, IP, AO, EC, EL) and every
subnegotiation are ignored.

Max connection (1-4, every client gets the serial data, client data goes
to the line first in first out), accessible IP list, TCP alive check and
inactivity time work as in TCP Server mode.  Malformed telnet never
reaches the serial transport: broken-off subnegotiations are dropped and
logged, an exception closes only that connection.
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted._txinternals import write_now
from nport_twisted.config.settings import tcp_server_port
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import AdmittedSession, ChannelSession, Gate, PortContext
from nport_twisted.wire import telnet as t

_IAC = b"\xff"

#: Length of the break IAC BRK puts on the serial line (ours).
BREAK_SECONDS = 0.25

#: The answer to IAC AYT (ours).
AYT_REPLY = b"\r\n[nport-twisted: yes]\r\n"


class ReverseTelnetProtocol(ChannelSession):
    """One telnet client of a Reverse Telnet port."""

    _log = Logger()
    # Negotiation answers are replies: a client that floods requests but
    # does not read is paused, then dropped (session base).
    bounded_replies = True

    def __init__(self, factory: ReverseTelnetFactory) -> None:
        super().__init__(factory.gate, factory.ctx.channel)
        self.factory = factory
        self.ctx = factory.ctx
        self._parser = t.TelnetParser()
        self._options = t.OptionTable(local=(t.BINARY, t.SGA, t.ECHO), remote=(t.BINARY, t.SGA))
        self._enter = t.EnterMapper(t.ENTER_MAPS[factory.ctx.operating.telnet_map_cr])
        self._binary = True  # we send 8-bit clean until the client refuses our BINARY
        self._dropped_seen = 0

    def __repr__(self) -> str:
        return f"<Reverse Telnet {self.ctx.channel.name} {self.peer}>"

    # -- connection --------------------------------------------------------------------

    def admitted(self) -> None:
        super().admitted()
        opts = self._options
        write_now(self.transport, b"".join((
            opts.request(t.ECHO, local=True),
            opts.request(t.SGA, local=True), opts.request(t.SGA, local=False),
            opts.request(t.BINARY, local=True), opts.request(t.BINARY, local=False))))
        self.touch()
        self.gate.logs.emit(self._log.info, "connected", self.peer,
                            "{channel}: telnet client {peer} connected ({count}/{limit})",
                            channel=self.channel.name, peer=self.peer,
                            count=len(self.gate.active), limit=self.gate.limit)

    def received(self, data: bytes) -> None:
        if not self._backlog and self._parser.in_data and _IAC not in data:
            self._to_serial(data)  # plain typing between commands: no events
            return
        self.handle_events(list(self._parser.feed(data)), self._event)
        dropped = self._parser.dropped_subnegotiations
        if dropped != self._dropped_seen:
            self._dropped_seen = dropped
            self.gate.logs.emit(self._log.info, "telnet-bad-subnegotiation", self.peer,
                                "{channel}: dropped a malformed telnet subnegotiation from "
                                "{peer} ({count} so far)", channel=self.channel.name,
                                peer=self.peer, count=dropped)

    def closed(self, reason: Failure) -> None:
        super().closed(reason)
        self.gate.logs.emit(self._log.info, "disconnected", self.peer,
                            "{channel}: telnet client {peer} disconnected",
                            channel=self.channel.name, peer=self.peer)

    # -- telnet ------------------------------------------------------------------------

    def _to_serial(self, data: bytes) -> None:
        mapped = self._enter.map(data)
        if mapped:
            self.channel.write(mapped)
        self.touch()

    def _event(self, event: Any, out: list[bytes]) -> None:
        if isinstance(event, t.Data):
            self._to_serial(event.data)
        elif isinstance(event, t.Negotiation):
            out.append(self._options.receive(event))
            ours = self._options.get(t.BINARY, local=True)
            self._binary = ours is None or ours.state is not t.OptionState.INACTIVE
        elif isinstance(event, t.Command):
            if event.command == t.BRK:
                self.factory.send_break()
            elif event.command == t.AYT:
                out.append(t.escape_data(AYT_REPLY, self._binary))
            # NOP, GA, IP, AO, EC, EL …: nothing to do on a serial line.
        elif isinstance(event, t.Subnegotiation):
            self.gate.logs.emit(self._log.info, "telnet-subnegotiation", self.peer,
                                "{channel}: ignoring a subnegotiation of telnet option {option} "
                                "from {peer}", channel=self.channel.name, option=event.option,
                                peer=self.peer)

    # -- IChannelSession ---------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        if self._binary and _IAC not in data:
            write_now(self.transport, data)  # nothing to escape (the hot path)
        else:
            write_now(self.transport, t.escape_data(data, self._binary))
        self.touch()


class ReverseTelnetFactory(Factory):
    """Creates L{ReverseTelnetProtocol}s for one serial port."""

    noisy = False

    def __init__(self, ctx: PortContext) -> None:
        self.ctx = ctx
        self.gate: Gate = ctx.gate("telnet connection")
        self._break_timer: IDelayedCall | None = None

    @property
    def active(self) -> list[AdmittedSession]:
        return self.gate.active

    def buildProtocol(self, addr: Any) -> ReverseTelnetProtocol:
        return ReverseTelnetProtocol(self)

    def send_break(self) -> None:
        """IAC BRK: a break on the line (one at a time; another restarts it)."""
        if self._break_timer is not None and self._break_timer.active():
            self._break_timer.cancel()
        if self.ctx.channel.set_break(True):
            self._break_timer = self.ctx.reactor.callLater(BREAK_SECONDS, self._break_off)

    def _break_off(self) -> None:
        self._break_timer = None
        self.ctx.channel.set_break(False)

    def stop(self) -> None:
        if self._break_timer is not None and self._break_timer.active():
            self._break_timer.cancel()
            self._break_off()


class ReverseTelnetService(service.MultiService):
    """The services of Reverse Telnet mode for one port (its listener), with the factory."""

    def __init__(self, factory: ReverseTelnetFactory) -> None:
        super().__init__()
        self.factory = factory

    def stopService(self) -> Any:
        self.factory.stop()
        return super().stopService()


def reverse_telnet_frontend(ctx: PortContext) -> ReverseTelnetService:
    """Reverse Telnet for one port: a telnet listener on 4001+n-1 unless configured."""
    factory = ReverseTelnetFactory(ctx)
    front = ReverseTelnetService(factory)
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port), factory, ctx.net,
                    ctx.index).setServiceParent(front)
    return front
