# -*- test-case-name: tests.test_realcom -*-
"""
Real COM mode: what MOXA's Real COM drivers (Windows, Linux npreal2) talk to.

Wire protocol (realcom.md is authoritative; this header is a summary kept in
sync with docs/modes/realcom.md):

  data port 950+n-1 (ports 17-32: 982+): raw serial bytes both ways,
      optionally TLS ("Secure Real COM"; the command port stays plain).
  command port 966+n-1 (ports 17-32: 998+): ASPP, the command protocol
      of L{nport_twisted.modes.aspp_command} (requests, replies, NOTIFY,
      keep-alive are described there).

Connections: a command and a data connection from the same host pair in
one slot (by arrival order among that host's; MOXA's device pairs by
arrival only, RealComOptions.pair_by_peer); a command connection without its
data connection is closed after RealComOptions.pair_timeout.  The
serial device is opened with the first data connection and closed (DTR/RTS
dropped, the host's settings forgotten) when the last one goes; closing
either connection of a pair closes both.  While the device cannot be
opened (missing, locked by another program) a new pair is closed at once,
so the host's open fails instead of succeeding on a dead line; a device
that vanishes during a session is reported as DSR/CTS/DCD off (NOTIFY) and
reopened when it returns.  Command bytes wait until the
pair's data connection exists.  With max connection 1 the host has full
control; with 2-4 the port is a data tunnel (aspp_command says which
requests still apply).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application import service
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.config.settings import realcom_command_port, realcom_data_port
from nport_twisted.modes.aspp_command import AsppPort, CommandProtocol, Pair, RealComOptions
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import AdmittedSession, PortContext, SessionFactory, peer_host

__all__ = ["CommandProtocol", "DataProtocol", "RealComOptions", "RealComPort", "RealComService",
           "realcom_frontend"]


class DataProtocol(AdmittedSession):
    """The data connection of one pair: raw bytes to and from the serial device."""

    _log = Logger()

    def __init__(self, port: RealComPort) -> None:
        super().__init__(port.data_gate)
        self.port = port
        self.pair: Pair | None = None

    def claim(self) -> str | None:
        self.pair = self.port.take_slot("data", self)
        return None if self.pair is not None else self.port.last_refusal

    def admitted(self) -> None:
        assert self.pair is not None
        self.port.data_connected(self.pair)

    def write_buffer_changed(self) -> None:
        # The pair is the channel's session: its data socket filling jams it.
        if self.pair is not None:
            self.port.channel.set_jammed(self.pair, self.write_full)

    def received(self, data: bytes) -> None:
        pair = self.pair
        if pair is None:
            return
        pair.last_activity = self.port.clock.seconds()
        if pair.command is not None and pair.command.flushing:
            return  # between FLUSH_START and FLUSH_STOP host data is discarded (inferred)
        self.port.channel.write(data)

    @property
    def fast_received(self) -> Callable[[bytes], None]:
        # The reactor's fast reader hands data here: received() without dataReceived's
        # layer (a subclass with its own received keeps dataReceived).
        if type(self).received is DataProtocol.received:
            return self._fast_received
        return self.dataReceived

    def _fast_received(self, data: bytes) -> None:
        """L{dataReceived} + L{received}, flattened (same rules)."""
        pair = self.pair
        if not self.is_admitted or pair is None:
            return
        try:
            port = self.port
            pair.last_activity = port.clock.seconds()
            command = pair.command
            if command is not None and command.flushing:
                return  # between FLUSH_START and FLUSH_STOP host data is discarded (inferred)
            port.channel.write(data)
        except Exception:  # noqa: BLE001 - as dataReceived: only this connection is dropped
            self._log.failure("{label}: error handling data from {peer}; closing",
                              label=self.gate.label, peer=self.peer)
            self.abort()

    def closed(self, reason: Failure) -> None:
        if self.pair is not None:
            self.port.data_lost(self.pair)
            self.pair = None


class RealComPort(AsppPort):
    """
    The Real COM front-end of one serial port: command and data connections
    paired by slot; the device is held open while any pair has its data
    connection.
    """

    _log = Logger()

    def __init__(self, ctx: PortContext, options: RealComOptions | None = None) -> None:
        super().__init__(ctx, options)
        self.data_gate = ctx.gate("data connection", limited=False, inactivity=False)

    def data_connected(self, pair: Pair) -> None:
        self.channel.hold()
        if not self.channel.is_open and self.options.refuse_without_device:
            # A host must learn that the line is down: its open fails, as
            # with an NPort whose serial port cannot open (RealComOptions).
            self.channel.release()
            self._log.warn("{channel}: refusing a Real COM open from {peer}: {device} cannot be "
                           "opened ({error}); the host's open fails until the device is back",
                           channel=self.channel.name,
                           peer=peer_host(pair.data.transport if pair.data else None),
                           device=self.channel.device, error=self.channel.last_error or "missing")
            pair.close()
            return
        pair.touch()
        pair.attached = True
        self.channel.attach(pair)
        peer = peer_host(pair.data.transport if pair.data else None)
        self.data_gate.logs.emit(self._log.info, "connected", peer,
                                 "{channel}: Real COM data connection from {peer} (slot {slot})",
                                 channel=self.channel.name, peer=peer, slot=pair.slot)
        if pair.command is not None:
            pair.command.data_connected()

    def data_lost(self, pair: Pair) -> None:
        pair.data = None
        if pair.attached:
            pair.attached = False
            self.channel.detach(pair)
            self.channel.release()
        self._retire(pair)
        if pair.command is not None:
            pair.command.transport.loseConnection()

class RealComService(service.MultiService):
    """The services of Real COM mode for one port (its two listeners), with its port exposed."""

    def __init__(self, realcom: RealComPort) -> None:
        super().__init__()
        self.realcom = realcom


def realcom_frontend(ctx: PortContext, options: RealComOptions | None = None) -> RealComService:
    """The services of Real COM mode for one port: data and command listeners."""
    port = RealComPort(ctx, options)
    front = RealComService(port)
    data_port = ctx.operating.data_port or realcom_data_port(ctx.index)
    cmd_port = ctx.operating.command_port or realcom_command_port(ctx.index)
    # Secure Real COM: TLS 1.2 without post-handshake messages, which MOXA's
    # SSL daemon needs (config/tls.py); never a client certificate (it sends none).
    tls = ctx.data_tls(client_certificates=False)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", data_port),
                    SessionFactory(port.data_gate, lambda: DataProtocol(port)),
                    ctx.net, ctx.index, tls=tls).setServiceParent(front)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", cmd_port),
                    SessionFactory(port.command_gate, lambda: CommandProtocol(port)),
                    ctx.net, ctx.index).setServiceParent(front)
    return front
