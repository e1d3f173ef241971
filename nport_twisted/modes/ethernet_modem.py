# -*- test-case-name: tests.test_ethernet_modem -*-
"""
Ethernet Modem mode (settings.md §5.5; docs/modes/ethernet-modem.md).

The serial device talks to us as to a Hayes modem: in command mode its
bytes are AT commands (L{nport_twisted.wire.hayes} parses them and keeps
the modem's state), in data mode they go to the call's TCP connection.

  - ``ATD<host>:<port>`` dials: an outgoing TCP connection, given S7
    seconds; ``CONNECT <baud>`` when it is up, ``BUSY`` when the remote
    refused it, ``NO CARRIER`` when it timed out or failed otherwise.
  - An incoming TCP connection on the local TCP port (4001+n-1 unless
    set), let in by the port's gate (accessible IP list), rings:
    ``RING`` at once and every L{RING_INTERVAL} seconds; ``ATA`` answers,
    S0=n answers on the n-th ring; after L{MAX_RINGS} unanswered rings
    the caller is dropped.  While the modem is not idle (a call, a dial,
    a ringing call) another caller is refused (closed at once).
  - ``+++`` framed by the S12 guard time returns to command mode with the
    call up (what it sends meanwhile is kept, up to L{HELD_MAX}, for
    ``ATO``), ``ATH`` hangs up.  The remote closing is ``NO CARRIER``.
  - Carrier: our DTR output (the terminal's DCD and DSR through a
    null-modem cable) follows the modem's DCD (&C1: on during a call;
    &C0: always on); the terminal dropping its DTR (our DSR input) hangs
    up with &D2/&D3.  Devices without modem lines (ptys) skip both.

One L{EthernetModemController} per port is the channel's only session;
the call is an L{IncomingCall} (an admitted session of the port's gate)
or a L{DialedCall}.  Nothing a peer or the serial device sends raises into
the serial transport: failures are logged and end the call.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application import service
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectingCancelledError, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import nport_twisted
from nport_twisted._txinternals import BufferProducer
from nport_twisted.config.settings import tcp_server_port
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines
from nport_twisted.net.listener import ConnectionInfo, ListenerService
from nport_twisted.net.session import (
    AdmittedSession,
    PortContext,
    ReadHold,
    SessionFactory,
    set_keepalive,
)
from nport_twisted.wire.hayes import (
    Action,
    Answer,
    CallState,
    Dial,
    Escape,
    GoOnline,
    Hangup,
    HayesModem,
    NetworkData,
    Output,
    Result,
)

#: Seconds between RINGs of a waiting call (ours: the 2 s on, 4 s off cadence
#: of a North American ring).
RING_INTERVAL = 6.0

#: Unanswered rings after which the caller is dropped (ours; a TCP caller
#: would otherwise wait for ever).
MAX_RINGS = 10

#: Network bytes kept while the call is not in data mode (ringing, or in
#: command mode after +++); from this much on the call is not read until data
#: mode resumes.  The call is read until then so that a caller who leaves is
#: noticed at once (a paused socket reports no close).
HELD_MAX = 64 * 1024

#: Identity text of ATI / ATI0; ATI3 answers the version.
IDENTITY = "NPort Ethernet Modem (nport-twisted)"


@attrs.define
class EthernetModemStats:
    """Counters of one Ethernet Modem port (besides the channel's own)."""

    dials: int = 0  # ATD that started a connection attempt
    dial_failures: int = 0  # refused (BUSY), timed out or failed (NO CARRIER)
    calls_out: int = 0  # dials that connected
    calls_in: int = 0  # incoming calls admitted (they rang)
    answered: int = 0  # incoming calls answered (ATA or S0)
    unanswered: int = 0  # callers dropped after MAX_RINGS
    refused_busy: int = 0  # callers refused because the modem was not idle


def dial_endpoint(reactor: Any, host: str, port: int, timeout: float) -> IStreamClientEndpoint:
    """An endpoint to C{host}:C{port} that gives up after C{timeout} seconds."""
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port, timeout)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port, timeout)
    return HostnameEndpoint(reactor, host, port, timeout)


class IncomingCall(AdmittedSession):
    """A caller on the local TCP port, admitted by the port's gate; the controller decides."""

    def __init__(self, controller: EthernetModemController) -> None:
        super().__init__(controller.gate)
        self.controller = controller

    def claim(self) -> str | None:
        return self.controller._claim_incoming()

    def admitted(self) -> None:
        self.controller._incoming(self)

    def received(self, data: bytes) -> None:
        self.controller._network_data(self, data)

    def closed(self, reason: Failure) -> None:
        self.controller._call_lost(self, reason)

    def write_buffer_changed(self) -> None:
        self.controller._call_jammed(self, self.write_full)

    # -- what the controller uses of a call ---------------------------------------------

    def hold(self, why: ReadHold) -> None:
        self.pause_reading(why)

    def release(self, why: ReadHold) -> None:
        self.resume_reading(why)


class DialedCall(Protocol):
    """The connection of an ``ATD``: hands everything to the controller."""

    transport: Any  # a TCP transport: ITCPTransport + IPushProducer

    def __init__(self, controller: EthernetModemController, label: str) -> None:
        self.controller = controller
        self.label = label
        self.peer = label
        self.net: ConnectionInfo | None = None
        self._holds: set[ReadHold] = set()

    def __repr__(self) -> str:
        return f"<Ethernet Modem call to {self.label}>"

    def connectionMade(self) -> None:
        self.transport.registerProducer(
            BufferProducer(lambda full: self.controller._call_jammed(self, full)), True)
        self.controller._dial_connected(self)

    def dataReceived(self, data: bytes) -> None:
        try:
            self.controller._network_data(self, data)
        except Exception:  # noqa: BLE001 - only this call ends
            self.controller._log.failure("{channel}: error handling data from {peer}; hanging up",
                                         channel=self.controller.channel.name, peer=self.label)
            self.abort()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.controller._call_lost(self, reason)

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def hold(self, why: ReadHold) -> None:
        if not self._holds:
            self.transport.pauseProducing()
        self._holds.add(why)

    def release(self, why: ReadHold) -> None:
        if why in self._holds:
            self._holds.discard(why)
            if not self._holds:
                self.transport.resumeProducing()

    def abort(self) -> None:
        self.transport.abortConnection()


class _DialFactory(Factory):
    noisy = False

    def __init__(self, controller: EthernetModemController, label: str) -> None:
        self.controller = controller
        self.label = label

    def buildProtocol(self, addr: Any) -> DialedCall:
        return DialedCall(self.controller, self.label)


Call = IncomingCall | DialedCall


@implementer(IChannelSession)
class EthernetModemController(service.Service):
    """
    One serial port in Ethernet Modem mode: the emulated modem between the
    serial device and at most one call.  Attached to the channel while
    running.
    """

    _log = Logger()

    def __init__(self, ctx: PortContext) -> None:
        self.ctx = ctx
        self.channel = ctx.channel
        self.clock = ctx.reactor
        self.gate = ctx.gate("call", limited=False, inactivity=False)
        self.modem = HayesModem(IDENTITY, f"nport-twisted {nport_twisted.__version__}")
        self.stats = EthernetModemStats()
        self.call: Call | None = None
        self._dialing: Deferred[Any] | None = None
        self._dial_label = ""
        self._ring_timer: IDelayedCall | None = None
        self._guard_timer: IDelayedCall | None = None
        self._held = bytearray()
        self._input_paused = False
        self._dtr_set = False

    def __repr__(self) -> str:
        return f"<Ethernet Modem {self.channel.name}>"

    # -- lifecycle ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.channel.attach(self)
        self._sync_carrier()
        self._log.info("{channel}: Ethernet Modem (AT commands on the serial side)",
                       channel=self.channel.name)

    def stopService(self) -> None:
        super().stopService()
        self.channel.detach(self)
        for timer in (self._ring_timer, self._guard_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._ring_timer = self._guard_timer = None
        self._cancel_dial()
        self._drop_call(abort=True)
        if self._dtr_set:  # the next mode starts with the channel's default, DTR on
            self.channel.set_dtr(True)
            self._dtr_set = False

    # -- running the modem's actions --------------------------------------------------------

    def _now(self) -> float:
        return float(self.clock.seconds())

    @property
    def baud(self) -> int:
        settings = self.channel.actual_settings or self.channel.settings
        return int(settings.baudrate)

    def _run(self, actions: list[Action]) -> None:
        online = False
        for action in actions:
            if isinstance(action, Output):
                self.channel.write(action.data)
            elif isinstance(action, NetworkData):
                self._to_network(action.data)
            elif isinstance(action, Dial):
                self._dial(action)
            elif isinstance(action, Answer):
                self.stats.answered += 1
                self._cancel_ring()
                self._log.info("{channel}: answered the call from {peer}",
                               channel=self.channel.name, peer=self._peer())
            elif isinstance(action, Hangup):
                self._hangup()
            elif isinstance(action, Escape):
                pass  # the call's bytes are kept from now on (_network_data)
            elif isinstance(action, GoOnline):
                online = True
        if online:  # after the actions: CONNECT comes before the call's kept bytes
            self._go_online()
        self._sync_carrier()
        self._schedule_guard()

    def _peer(self) -> str:
        call = self.call
        return call.peer if call is not None else "nobody"

    def _to_network(self, data: bytes) -> None:
        call = self.call
        if call is None or not data:
            return
        try:
            call.send(data)
        except Exception:  # noqa: BLE001 - only the call ends
            self._log.failure("{channel}: writing to {peer} failed; hanging up",
                              channel=self.channel.name, peer=call.peer)
            self._call_failed(call)

    def _go_online(self) -> None:
        """Data mode again: what the call sent meanwhile goes out (after CONNECT), then reading."""
        call = self.call
        if call is None or self.modem.state is not CallState.ONLINE:
            return
        if self._held:
            data, self._held = bytes(self._held), bytearray()
            self.channel.write(data)
        call.release(ReadHold.MODEM_COMMAND)

    def _sync_carrier(self) -> None:
        """Our DTR (the terminal's DCD/DSR) as the modem's carrier says, when it changed."""
        want = self.modem.dcd
        if self.channel.dtr != want or not self._dtr_set:
            self.channel.set_dtr(want)
            self._dtr_set = True

    def _schedule_guard(self) -> None:
        deadline = self.modem.next_deadline()
        timer = self._guard_timer
        if timer is not None and timer.active():
            if deadline is not None and timer.getTime() == deadline:
                return
            timer.cancel()
        self._guard_timer = None
        if deadline is not None and self.running:
            self._guard_timer = self.clock.callLater(max(0.0, deadline - self._now()),
                                                     self._guard_passed)

    def _guard_passed(self) -> None:
        self._guard_timer = None
        self._safely("escape timer", lambda: self.modem.poll(self._now()))

    def _safely(self, what: str, step: Any) -> None:
        """Run one modem step and its actions; a failure is logged, never raised."""
        try:
            self._run(step())
        except Exception:  # noqa: BLE001 - the serial transport must never see it
            self._log.failure("{channel}: Ethernet Modem {what} failed",
                              channel=self.channel.name, what=what)

    # -- dialing ------------------------------------------------------------------------------

    def _dial(self, dial: Dial) -> None:
        label = f"[{dial.host}]:{dial.port}" if ":" in dial.host else f"{dial.host}:{dial.port}"
        self.stats.dials += 1
        self._dial_label = label
        self._log.info("{channel}: dialing {destination} ({timeout:g} s)",
                       channel=self.channel.name, destination=label, timeout=dial.timeout)
        endpoint = dial_endpoint(self.clock, dial.host, dial.port, dial.timeout)
        d = endpoint.connect(_DialFactory(self, label))
        d.addTimeout(dial.timeout, self.clock)
        self._dialing = d
        d.addErrback(self._dial_failed, d, label)

    def _dial_connected(self, call: DialedCall) -> None:
        if self._dialing is None or self.call is not None or not self.running:
            call.transport.loseConnection()  # the dial was abandoned meanwhile
            return
        self._dialing = None
        self.call = call
        self.stats.calls_out += 1
        call.net = self.ctx.net.add_connection(call.transport, self.ctx.index)
        set_keepalive(call.transport, self.ctx.operating.tcp_alive_check_min)
        if self._input_paused:
            call.hold(ReadHold.SERIAL_BUSY)
        self._log.info("{channel}: connected to {destination}", channel=self.channel.name,
                       destination=call.label)
        self._safely("dial", lambda: self.modem.dialed(self.baud, self._now()))

    def _dial_failed(self, reason: Failure, d: Deferred[Any], label: str) -> None:
        if self._dialing is not d:
            return None  # cancelled by us (a key pressed, ATH, stop): already answered
        self._dialing = None
        self.stats.dial_failures += 1
        if reason.check(ConnectionRefusedError):
            result, why = Result.BUSY, "refused"
        elif reason.check(TimeoutError, DeferredTimeout, CancelledError, ConnectingCancelledError):
            result, why = Result.NO_CARRIER, "no answer in time"
        else:
            result, why = Result.NO_CARRIER, reason.getErrorMessage()
        self._log.warn("{channel}: dial to {destination} failed ({why}): {result}",
                       channel=self.channel.name, destination=label, why=why,
                       result=result.text)
        self._safely("dial failure", lambda: self.modem.dial_failed(result))
        return None

    def _cancel_dial(self) -> None:
        d, self._dialing = self._dialing, None
        if d is not None:
            d.cancel()

    # -- incoming calls ------------------------------------------------------------------------

    def _claim_incoming(self) -> str | None:
        if not self.running:
            return "the port is stopping"
        busy = self.call is not None or self._dialing is not None
        if busy or self.modem.state is not CallState.IDLE:
            self.stats.refused_busy += 1
            return "the modem is busy"
        if not self.channel.is_open:
            return "the serial device is not open"
        return None

    def _incoming(self, call: IncomingCall) -> None:
        self.call = call
        self.stats.calls_in += 1
        if self._input_paused:
            call.hold(ReadHold.SERIAL_BUSY)
        self._log.info("{channel}: incoming call from {peer}", channel=self.channel.name,
                       peer=call.peer)
        self._safely("incoming call", lambda: self.modem.incoming(self.baud, self._now()))
        if self.modem.state is CallState.RINGING:
            self._ring_timer = self.clock.callLater(RING_INTERVAL, self._ring)

    def _ring(self) -> None:
        self._ring_timer = None
        if self.modem.state is not CallState.RINGING or self.call is None:
            return
        if self.modem.registers[1] >= MAX_RINGS:
            self.stats.unanswered += 1
            self._log.info("{channel}: {peer} not answered after {rings} rings; dropping it",
                           channel=self.channel.name, peer=self._peer(), rings=MAX_RINGS)
            self._drop_call()
            self._safely("ring", self.modem.incoming_gone)
            return
        self._ring_timer = self.clock.callLater(RING_INTERVAL, self._ring)
        self._safely("ring", lambda: self.modem.ring(self._now()))

    def _cancel_ring(self) -> None:
        if self._ring_timer is not None and self._ring_timer.active():
            self._ring_timer.cancel()
        self._ring_timer = None

    # -- the call ---------------------------------------------------------------------------------

    def _network_data(self, call: Call, data: bytes) -> None:
        if call is not self.call:
            return
        if self.modem.state is CallState.ONLINE:
            self.channel.write(data)
            return
        # Ringing or in command mode: kept for data mode; once HELD_MAX is
        # kept the call is not read (at most one read beyond it is kept).
        self._held += data
        if len(self._held) >= HELD_MAX:
            call.hold(ReadHold.MODEM_COMMAND)

    def _hangup(self) -> None:
        """The modem hung up: end the dial, the ringing call or the call."""
        self._cancel_dial()
        self._cancel_ring()
        if self.call is not None:
            self._log.info("{channel}: hanging up on {peer}", channel=self.channel.name,
                           peer=self.call.peer)
        self._drop_call()

    def _drop_call(self, abort: bool = False) -> None:
        call, self.call = self.call, None
        self._held.clear()
        self.channel.set_jammed(self, False)
        if call is None:
            return
        self._forget(call)
        if abort:
            call.abort()
        else:
            call.transport.loseConnection()

    def _forget(self, call: Call) -> None:
        if isinstance(call, DialedCall) and call.net is not None:
            self.ctx.net.remove_connection(call.net)
            call.net = None

    def _call_failed(self, call: Call) -> None:
        self._drop_call(abort=True)
        self._safely("hang-up", self.modem.remote_hangup)

    def _call_lost(self, call: Call, reason: Failure) -> None:
        self._forget(call)
        if call is not self.call:
            return
        self.call = None
        self._held.clear()
        self._cancel_ring()
        self.channel.set_jammed(self, False)
        self._log.info("{channel}: {peer} hung up ({reason})", channel=self.channel.name,
                       peer=call.peer, reason=reason.getErrorMessage())
        self._safely("remote hang-up", self.modem.remote_hangup)

    def _call_jammed(self, call: Call, full: bool) -> None:
        if call is self.call:
            # The call does not take our bytes: the serial reader waits for it.
            self.channel.set_jammed(self, full)

    # -- IChannelSession -------------------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        self._safely("serial input", lambda: self.modem.feed(data, self._now()))

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        if old.dsr and not new.dsr:  # the terminal dropped its DTR
            self._safely("DTR drop", self.modem.terminal_dtr_dropped)

    def line_errors(self, events: LineEvents) -> None:
        pass

    def device_state_changed(self, available: bool) -> None:
        # The call is kept across a device replug (as TCP Server keeps its
        # hosts); a reopened device gets the modem's carrier on our DTR again
        # (an orderly close resets the channel's DTR to on).
        if available:
            self._dtr_set = False
            self._safely("device reopened", lambda: [])

    def pause_input(self) -> None:
        self._input_paused = True
        if self.call is not None:
            self.call.hold(ReadHold.SERIAL_BUSY)

    def resume_input(self) -> None:
        self._input_paused = False
        if self.call is not None:
            self.call.release(ReadHold.SERIAL_BUSY)

    def abort(self) -> None:
        self._cancel_dial()
        self._drop_call(abort=True)


class EthernetModemService(service.MultiService):
    """The services of Ethernet Modem mode for one port (controller, listener), typed."""

    def __init__(self, controller: EthernetModemController) -> None:
        super().__init__()
        self.controller = controller
        controller.setServiceParent(self)


def ethernet_modem_frontend(ctx: PortContext) -> EthernetModemService:
    """
    The services of Ethernet Modem mode for one port: the modem (attached
    to the channel) and the listener whose callers ring (the local TCP
    port, 4001+n-1 by default).
    """
    controller = EthernetModemController(ctx)
    front = EthernetModemService(controller)
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port),
                    SessionFactory(controller.gate, lambda: IncomingCall(controller)),
                    ctx.net, ctx.index).setServiceParent(front)
    return front
