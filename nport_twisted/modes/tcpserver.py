# -*- test-case-name: tests.test_tcpserver -*-
"""
TCP Server mode (settings.md §5.2–§5.3).

Wire: raw bytes both ways on the port's local TCP port (4001+n-1 by
default), no framing.  The command port (966+n-1 by default) speaks ASPP
as in Real COM mode (nport_twisted.modes.aspp_command) to control the same
port; only a host holding a data connection on the port may use it
(command_requires_data, default on).  Up to "max connection" (1–4) hosts at
once: serial data is copied to every host, host data goes to the serial port first in,
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
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.config.settings import realcom_command_port, tcp_server_port
from nport_twisted.modes.aspp_command import (
    AsppPort,
    CommandProtocol,
    Pair,
    RealComOptions,
    host_of,
)
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import (
    AdmittedSession,
    ChannelSession,
    Gate,
    PortContext,
    SessionFactory,
)


class TcpServerProtocol(ChannelSession):
    """
    One host connected to a TCP Server mode port: the admitted-session
    base's raw relay (host bytes to the device, device bytes to every host,
    both count as activity), connections kept across a device replug.
    """

    _log = Logger()

    def __init__(self, factory: TcpServerFactory) -> None:
        super().__init__(factory.gate, factory.ctx.channel)
        self.factory = factory
        self.ctx = factory.ctx

    def __repr__(self) -> str:
        return f"<TCP Server {self.ctx.channel.name} {self.peer}>"

    def admitted(self) -> None:
        super().admitted()
        # Connect/disconnect lines per source are bounded too (a reconnect loop is a log flood).
        self.gate.logs.emit(self._log.info, "connected", self.peer,
                            "{channel}: {peer} connected ({count}/{limit})",
                            channel=self.channel.name, peer=self.peer, count=len(self.gate.active),
                            limit=self.gate.limit)

    def closed(self, reason: Failure) -> None:
        super().closed(reason)
        self.gate.logs.emit(self._log.info, "disconnected", self.peer,
                            "{channel}: {peer} disconnected", channel=self.channel.name,
                            peer=self.peer)
        if self.factory.command_port is not None:
            self.factory.command_port.data_closed(self.peer)


class TcpServerFactory(Factory):
    """Creates L{TcpServerProtocol}s for one serial port."""

    noisy = False

    def __init__(self, ctx: PortContext) -> None:
        self.ctx = ctx
        self.gate: Gate = ctx.gate()
        #: The port's ASPP command port, told when a host's last data connection goes.
        self.command_port: TcpServerCommandPort | None = None

    @property
    def active(self) -> list[AdmittedSession]:
        """The hosts connected now (admitted by the gate)."""
        return self.gate.active

    def buildProtocol(self, addr: Any) -> TcpServerProtocol:
        return TcpServerProtocol(self)


class CommandOnlyPair(Pair):
    """
    A command connection with no data connection of its own: TCP Server
    mode's command port (966+n-1), used by MOXA's IP-Serial library and
    drivers to control a port whose data flows on the TCP Server port.
    """

    #: It takes no serial data: with port buffering, data waits for a data connection.
    takes_serial_data = False

    @property
    def data_ready(self) -> bool:
        return True

    def close(self) -> None:
        if self.command is not None and self.command.transport is not None:
            self.command.transport.loseConnection()


class TcpServerCommandPort(AsppPort):
    """
    The ASPP command port of a TCP Server mode port.  Requests apply to the
    channel as in Real COM mode (full control with max connection 1 or
    "allow driver control"); NOTIFY reports its modem lines.  The device
    stays open (TCP Server keeps it open), so nothing is held or released.

    With C{command_requires_data} (the default) only a host holding a TCP
    Server data connection on this port (C{data_gate}) may connect, and its
    command connections close when its last data connection does: no other
    host can change the flow control, DTR/RTS, break or speed of a line in
    use (issue 10; ours, MOXA's device takes any host).
    """

    def __init__(self, ctx: PortContext, options: RealComOptions | None = None, *,
                 data_gate: Gate | None = None) -> None:
        super().__init__(ctx, options)
        self.data_gate = data_gate

    def _data_hosts(self) -> set[str] | None:
        if self.data_gate is None or not self.ctx.operating.command_requires_data:
            return None
        return {host_of(s.peer) for s in self.data_gate.active}

    def take_slot(self, kind: str, proto: AdmittedSession) -> Pair | None:
        if kind != "command" or not isinstance(proto, CommandProtocol):
            return None
        hosts = self._data_hosts()
        if hosts is not None and host_of(proto.peer) not in hosts:
            self.last_refusal = ("the host holds no TCP Server data connection on this port "
                                 "(command_requires_data)")
            return None
        self.last_refusal = f"max connection {self.ctx.operating.max_connection}"
        for i, pair in enumerate(self.slots):
            if pair is None:
                new = CommandOnlyPair(self, i)
                new.command = proto
                self.slots[i] = new
                self.channel.attach(new)
                return new
        return None

    def command_lost(self, pair: Pair) -> None:
        pair.command = None
        self.channel.detach(pair)
        if self.slots[pair.slot] is pair:
            self.slots[pair.slot] = None
        if not any(self.slots):
            # The device stays open in TCP Server mode: end the host's settings here.
            self.channel.clear_override()


    def data_closed(self, peer: str) -> None:
        """A data connection of C{peer} ended: its command connections go with its last one."""
        hosts = self._data_hosts()
        host = host_of(peer)
        if hosts is None or host in hosts:
            return
        for pair in list(self.slots):
            command = pair.command if pair is not None else None
            if command is not None and host_of(command.peer) == host:
                command.gate.logs.emit(command._log.info, "command-without-data", command.peer,
                                       "{channel}: closing the command connection from {peer}: "
                                       "its last data connection closed",
                                       channel=self.channel.name, peer=command.peer)
                command.transport.loseConnection()


def tcp_server_command_listener(ctx: PortContext, options: RealComOptions | None = None, *,
                                port: TcpServerCommandPort | None = None) -> ListenerService:
    """The command port listener of TCP Server mode (966+n-1 unless configured)."""
    port = port if port is not None else TcpServerCommandPort(ctx, options)
    cmd_port = ctx.operating.command_port or realcom_command_port(ctx.index)
    return ListenerService(ctx.reactor, ctx.endpoint("tcp", cmd_port),
                           SessionFactory(port.command_gate, lambda: CommandProtocol(port)),
                           ctx.net, ctx.index)


class TcpServerService(service.MultiService):
    """The services of TCP Server mode for one port (data and command listeners), typed."""

    def __init__(self, factory: TcpServerFactory, command_port: TcpServerCommandPort) -> None:
        super().__init__()
        self.factory = factory
        self.command_port = command_port


def tcp_server_frontend(ctx: PortContext) -> TcpServerService:
    """
    The services of TCP Server mode for one port: its data listener and the
    ASPP command port (966+n-1 by default) for IP-Serial-style control,
    unless C{command_port_enabled} is off (a plain relay).
    """
    factory = TcpServerFactory(ctx)
    command_port = TcpServerCommandPort(ctx, data_gate=factory.gate)
    front = TcpServerService(factory, command_port)
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port), factory, ctx.net,
                    ctx.index, tls=ctx.data_tls()).setServiceParent(front)
    if ctx.operating.command_port_enabled:
        factory.command_port = command_port
        tcp_server_command_listener(ctx, port=command_port).setServiceParent(front)
    return front
