# -*- test-case-name: tests.test_tcpserver -*-
"""
TCP Server mode (settings.md §5.2–§5.3).

Wire: raw bytes both ways on the port's local TCP port (4001+n-1 by
default), no framing.  The command port (966+n-1 by default) speaks ASPP
as in Real COM mode (nport_twisted.modes.realcom) to control the same port.  Up to "max connection" (1–4) hosts at once: serial
data is copied to every host, host data goes to the serial port first in,
first out.  A host beyond the limit is accepted and closed at once (logged),
so the client sees a clean refusal rather than a hang in the listen backlog.

Per connection: TCP alive check (keep-alive, minutes) and inactivity time
(milliseconds without serial data in either direction closes the
connection).  When the device vanishes, connections stay open; bytes from
the hosts are dropped and counted until it returns (docs/modes/tcp-server.md).
"""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.device.channel import IChannelSession, LineEvents
from nport_twisted.net.frontend import (
    ConnectionInfo,
    JamProducer,
    ListenerService,
    PortContext,
    peer_host,
    set_keepalive,
    set_nodelay,
)
from nport_twisted.device.adapter import ModemLines, write_now
from nport_twisted.config.settings import tcp_server_port


@implementer(IChannelSession)
class TcpServerProtocol(Protocol):
    """One host connected to a TCP Server mode port."""

    transport: Any  # a TCP (or TLS) transport: ITCPTransport + IPushProducer

    _log = Logger()

    def __init__(self, factory: TcpServerFactory) -> None:
        self.factory = factory
        self.ctx = factory.ctx
        self._attached = False
        self._idle: IDelayedCall | None = None
        self._net: ConnectionInfo | None = None

    def __repr__(self) -> str:
        return f"<TCP Server {self.ctx.channel.name} {peer_host(self.transport)}>"

    def connectionMade(self) -> None:
        host = peer_host(self.transport)
        ctx = self.ctx
        if not ctx.accessible().allows(host):
            self._log.warn("{channel}: {peer} is not in the accessible IP list; closing",
                           channel=ctx.channel.name, peer=host)
            self.transport.abortConnection()
            return
        if len(self.factory.active) >= ctx.operating.max_connection:
            self._log.warn("{channel}: refusing {peer}: max connection {limit} reached",
                           channel=ctx.channel.name, peer=host, limit=ctx.operating.max_connection)
            self.transport.loseConnection()
            return
        self.factory.active.append(self)
        self._attached = True
        self._net = ctx.net.add_connection(self.transport, ctx.index)
        set_keepalive(self.transport, ctx.operating.tcp_alive_check_min)
        # Serial data leaves in pieces of one device read (at most 4 KiB on a
        # pty): with Nagle on, the second piece of a larger burst would wait
        # for the client's delayed ACK (40 ms on Linux).
        set_nodelay(self.transport)
        self.transport.registerProducer(JamProducer(ctx.channel, self), True)
        ctx.channel.attach(self)
        self._touch()
        self._log.info("{channel}: {peer} connected ({count}/{limit})", channel=ctx.channel.name,
                       peer=host, count=len(self.factory.active), limit=ctx.operating.max_connection)

    def dataReceived(self, data: bytes) -> None:
        if self._attached:
            self.ctx.channel.write(data)
            self._touch()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if not self._attached:
            return
        self._attached = False
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self.factory.active.remove(self)
        self.ctx.net.remove_connection(self._net)
        self.ctx.channel.detach(self)
        self._log.info("{channel}: {peer} disconnected", channel=self.ctx.channel.name,
                       peer=peer_host(self.transport))

    # -- inactivity time ---------------------------------------------------------

    def _touch(self) -> None:
        ms = self.ctx.operating.inactivity_ms
        if not ms:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(ms / 1000)
        else:
            self._idle = self.ctx.reactor.callLater(ms / 1000, self._inactive)

    def _inactive(self) -> None:
        self._log.info("{channel}: closing {peer} after {ms} ms of inactivity",
                       channel=self.ctx.channel.name, peer=peer_host(self.transport),
                       ms=self.ctx.operating.inactivity_ms)
        self.transport.loseConnection()

    # -- IChannelSession ---------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        write_now(self.transport, data)
        self._touch()

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        pass  # raw TCP has no way to tell; the ASPP command port does

    def line_errors(self, events: LineEvents) -> None:
        pass

    def device_state_changed(self, available: bool) -> None:
        pass  # connections are kept across a device replug

    def pause_input(self) -> None:
        self.transport.pauseProducing()

    def resume_input(self) -> None:
        self.transport.resumeProducing()

    def abort(self) -> None:
        self.transport.abortConnection()


class TcpServerFactory(Factory):
    """Creates L{TcpServerProtocol}s for one serial port."""

    noisy = False

    def __init__(self, ctx: PortContext) -> None:
        self.ctx = ctx
        self.active: list[TcpServerProtocol] = []

    def buildProtocol(self, addr: Any) -> TcpServerProtocol:
        return TcpServerProtocol(self)


def tcp_server_frontend(ctx: PortContext) -> service.IService:
    """
    The services of TCP Server mode for one port: its data listener and the
    ASPP command port (966+n-1 by default) for IP-Serial-style control.
    """
    from nport_twisted.modes.realcom import tcp_server_command_listener

    front = service.MultiService()
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    factory = TcpServerFactory(ctx)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port), factory, ctx.net,
                    ctx.index).setServiceParent(front)
    tcp_server_command_listener(ctx).setServiceParent(front)
    front.factory = factory  # type: ignore[attr-defined]
    return front
