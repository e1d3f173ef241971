# -*- test-case-name: tests.test_rfc2217 -*-
"""
RFC 2217 mode: the serial port over telnet with the COM-PORT-OPTION.

Wire protocol (docs/modes/rfc2217.md is the user-facing version):

  local TCP port 4001+n-1 (settings ``local_tcp_port``; TLS 1.2 with
  ``secure``, client certificates with ``tls_ca_file``): telnet.  On
  connect we send IAC WILL BINARY, DO BINARY, WILL SGA, DO SGA and
  DO COM-PORT-OPTION; we accept DO COM-PORT-OPTION (WILL) and refuse every
  other option (WONT/DONT).  Data is 8-bit clean with IAC doubled both
  ways (CR NUL handling only if the client refuses BINARY).  Once the
  COM-PORT-OPTION is on in either direction we send one NOTIFY-MODEMSTATE
  with the current lines.

  Client -> server ``IAC SB 44 <cmd> <value> IAC SE``; every SET and query
  is answered at once with ``<cmd + 100>`` and the value actually in force
  (value 0 = query):
    0 SIGNATURE (empty = ours is asked for)  1 SET-BAUDRATE (BE32)
    2 SET-DATASIZE  3 SET-PARITY  4 SET-STOPSIZE  5 SET-CONTROL (flow
    control, BREAK, DTR, RTS and their queries)  6/7 NOTIFY-LINESTATE /
    NOTIFY-MODEMSTATE (polls)  8/9 FLOWCONTROL-SUSPEND/RESUME (no answer;
    serial data to this client is held)  10/11 SET-LINESTATE-MASK /
    SET-MODEMSTATE-MASK (answered with the mask)  12 PURGE-DATA (applied,
    then answered with the same value).
  Server -> client unsolicited: NOTIFY-MODEMSTATE (107) when the lines AND
  the mask (initially 255) is not zero after a change; NOTIFY-LINESTATE
  (106) for parity/framing/overrun errors and breaks AND the mask
  (initially 0).

Settings a client applies are the channel's override (as in Real COM):
they stay in force while any RFC 2217 client is connected; when the last
one leaves the configured settings return and DTR/RTS go back on, BREAK
off.  Max connection (1-4), the accessible IP list, TCP alive check and
inactivity time work as in TCP Server mode; with several clients every
client's change wins and every client gets the serial data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted import __version__
from nport_twisted._txinternals import direct_writer, write_now
from nport_twisted.device.channel import LineEvents, ModemLines
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import AdmittedSession, ChannelSession, Gate, PortContext
from nport_twisted.wire import telnet as t
from nport_twisted.config.settings import (
    MAX_BAUDRATE,
    FlowControl,
    Parity,
    SerialSettings,
    tcp_server_port,
)

Cmd = t.ComPortCommand

#: Serial bytes held for a client that sent FLOWCONTROL-SUSPEND; beyond this they are dropped.
_MAX_HELD = 64 * 1024
#: The telnet IAC byte: data without it needs no parsing or escaping (the fast paths).
_IAC = b"\xff"

_PARITY_CODE = {Parity.NONE: t.PARITY_NONE, Parity.ODD: t.PARITY_ODD, Parity.EVEN: t.PARITY_EVEN,
                Parity.MARK: t.PARITY_MARK, Parity.SPACE: t.PARITY_SPACE}
_CODE_PARITY = {v: k for k, v in _PARITY_CODE.items()}
_STOP_CODE = {1: t.STOPSIZE_1, 2: t.STOPSIZE_2, 1.5: t.STOPSIZE_1_5}
_CODE_STOP = {v: k for k, v in _STOP_CODE.items()}

# SET-CONTROL flow values: (outbound/both code, inbound code) per setting.
_FLOW_OUT = {FlowControl.NONE: t.CONTROL_FLOW_NONE, FlowControl.XON_XOFF: t.CONTROL_FLOW_XONXOFF,
             FlowControl.RTS_CTS: t.CONTROL_FLOW_HARDWARE, FlowControl.DTR_DSR: t.CONTROL_FLOW_DSR}
_FLOW_IN = {FlowControl.NONE: t.CONTROL_INBOUND_FLOW_NONE,
            FlowControl.XON_XOFF: t.CONTROL_INBOUND_FLOW_XONXOFF,
            FlowControl.RTS_CTS: t.CONTROL_INBOUND_FLOW_HARDWARE,
            FlowControl.DTR_DSR: t.CONTROL_INBOUND_FLOW_DTR}
# Our flow control is one setting for both directions: either code sets it.
_SET_FLOW = {code: flow for table in (_FLOW_OUT, _FLOW_IN) for flow, code in table.items()}
_INBOUND_CODES = frozenset((t.CONTROL_INBOUND_FLOW_QUERY, *_FLOW_IN.values()))

#: What a device without modem lines (a pty) reports: CTS, DSR and CD on, so
#: clients that wait for carrier or CTS work (as Real COM's lines_without_modem).
_NO_MODEM_LINES = t.MODEMSTATE_CTS | t.MODEMSTATE_DSR | t.MODEMSTATE_CD


def modem_state(lines: ModemLines | None, device_open: bool) -> int:
    """The NOTIFY-MODEMSTATE state bits (high nibble) for C{lines}."""
    if not device_open:
        return 0
    if lines is None:
        return _NO_MODEM_LINES
    return lines.bits(t.MODEMSTATE_CTS, t.MODEMSTATE_DSR, t.MODEMSTATE_RI, t.MODEMSTATE_CD)


def modem_deltas(old: int, new: int) -> int:
    """The delta bits (low nibble) between two states; RI only on its trailing edge."""
    changed = old ^ new
    return ((t.MODEMSTATE_DELTA_CTS if changed & t.MODEMSTATE_CTS else 0)
            | (t.MODEMSTATE_DELTA_DSR if changed & t.MODEMSTATE_DSR else 0)
            | (t.MODEMSTATE_TRAILING_RI if old & t.MODEMSTATE_RI and not new & t.MODEMSTATE_RI else 0)
            | (t.MODEMSTATE_DELTA_CD if changed & t.MODEMSTATE_CD else 0))


def line_state(events: LineEvents) -> int:
    """The NOTIFY-LINESTATE error bits for C{events}."""
    return ((t.LINESTATE_OVERRUN if events.overrun or events.buffer_overrun else 0)
            | (t.LINESTATE_PARITY if events.parity else 0)
            | (t.LINESTATE_FRAMING if events.framing else 0)
            | (t.LINESTATE_BREAK if events.breaks else 0))


class Rfc2217Protocol(ChannelSession):
    """One RFC 2217 client of a serial port."""

    _log = Logger()
    bounded_replies = True  # a client that does not read our answers stops being read

    def __init__(self, factory: Rfc2217Factory) -> None:
        super().__init__(factory.gate, factory.ctx.channel)
        self.factory = factory
        self.ctx = factory.ctx
        self._parser = t.TelnetParser()
        self._options = t.OptionTable(local=(t.BINARY, t.SGA, t.COM_PORT_OPTION),
                                      remote=(t.BINARY, t.SGA, t.COM_PORT_OPTION))
        self._cr_nul: t.CrNulFilter | None = None  # only while the client refuses BINARY
        self._binary = False  # _binary_out, kept up to date by admitted() and _negotiated()
        self._com_port = False  # the client speaks RFC 2217 (initial NOTIFY sent)
        self.linestate_mask = 0  # RFC 2217 initial masks
        self.modemstate_mask = 255
        self._modem_reported = 0  # state bits of the last NOTIFY-MODEMSTATE (or initial)
        self._line_latched = 0  # error bits not yet reported in a poll answer
        self.suspended = False  # the client sent FLOWCONTROL-SUSPEND
        self._held: list[bytes] = []
        self._held_len = 0
        self._handlers: dict[Cmd, Callable[[t.ComPortMessage], bytes]] = {
            Cmd.SIGNATURE: self._signature,
            Cmd.SET_BAUDRATE: self._set_baudrate,
            Cmd.SET_DATASIZE: self._set_datasize,
            Cmd.SET_PARITY: self._set_parity,
            Cmd.SET_STOPSIZE: self._set_stopsize,
            Cmd.SET_CONTROL: self._set_control,
            Cmd.NOTIFY_LINESTATE: self._poll_linestate,
            Cmd.NOTIFY_MODEMSTATE: self._poll_modemstate,
            Cmd.FLOWCONTROL_SUSPEND: self._suspend,
            Cmd.FLOWCONTROL_RESUME: self._resume,
            Cmd.SET_LINESTATE_MASK: self._set_linestate_mask,
            Cmd.SET_MODEMSTATE_MASK: self._set_modemstate_mask,
            Cmd.PURGE_DATA: self._purge,
        }

    def __repr__(self) -> str:
        return f"<RFC 2217 {self.ctx.channel.name} {self.peer}>"

    # -- connection ----------------------------------------------------------------

    def admitted(self) -> None:
        super().admitted()
        self._modem_reported = self._modem_now()
        opts = self._options
        self.transport.write(b"".join((
            opts.request(t.BINARY, local=True), opts.request(t.BINARY, local=False),
            opts.request(t.SGA, local=True), opts.request(t.SGA, local=False),
            opts.request(t.COM_PORT_OPTION, local=False))))
        self._binary = self._binary_out
        self.touch()
        self.gate.logs.emit(self._log.info, "connected", self.peer,
                            "{channel}: RFC 2217 client {peer} connected ({count}/{limit})",
                            channel=self.channel.name, peer=self.peer,
                            count=len(self.gate.active), limit=self.gate.limit)

    def received(self, data: bytes) -> None:
        if (self._cr_nul is None and not self._backlog and self._parser.in_data
                and _IAC not in data):
            # Plain data between commands, nothing waiting (the hot path): no parser, no events.
            self.ctx.channel.write(data)
            self.touch()
            return
        # Bounded work per reactor turn; the answers of a batch leave in one send.
        self.handle_events(list(self._parser.feed(data)), self._event)

    @property
    def fast_received(self) -> Callable[[bytes], None]:
        # The reactor's fast reader hands data here: the hot path of received() without
        # dataReceived's layer; anything else (IAC, a backlog, CR NUL) goes through it,
        # and so does everything for a subclass with its own received.
        if type(self).received is Rfc2217Protocol.received:
            return self._fast_received
        return self.dataReceived

    def _fast_received(self, data: bytes) -> None:
        """L{dataReceived} + L{received} for plain data, flattened (same rules)."""
        if (self.is_admitted and self._cr_nul is None and not self._backlog
                and self._parser.in_data and _IAC not in data):
            try:
                self.ctx.channel.write(data)
                self.touch()
            except Exception:  # noqa: BLE001 - as dataReceived: only this connection is dropped
                self._log.failure("{label}: error handling data from {peer}; closing",
                                  label=self.gate.label, peer=self.peer)
                self.abort()
            return
        self.dataReceived(data)

    def closed(self, reason: Failure) -> None:
        self._held.clear()
        super().closed(reason)
        self.gate.logs.emit(self._log.info, "disconnected", self.peer,
                            "{channel}: RFC 2217 client {peer} disconnected",
                            channel=self.channel.name, peer=self.peer)
        if not self.factory.active:
            self.factory.last_client_left()

    # -- telnet --------------------------------------------------------------------------

    def _event(self, event: Any, out: list[bytes]) -> None:
        channel = self.ctx.channel
        if isinstance(event, t.Data):
            payload = self._cr_nul.filter(event.data) if self._cr_nul else event.data
            if payload:
                channel.write(payload)
                self.touch()
        elif isinstance(event, t.Subnegotiation):
            if event.option == t.COM_PORT_OPTION:
                out.append(self._com_port_message(event.payload))
            else:
                self._log.debug("{channel}: ignoring subnegotiation of option {option}",
                                channel=channel.name, option=event.option)
        elif isinstance(event, t.Negotiation):
            out.append(self._options.receive(event))
            self._negotiated(out)
        # Commands (NOP, AYT, BRK …) need no action on a binary data path.

    def _negotiated(self, out: list[bytes]) -> None:
        opts = self._options
        # NVT line endings only when the client explicitly refused BINARY.
        theirs = opts.get(t.BINARY, local=False)
        refused = theirs is not None and theirs.state is t.OptionState.INACTIVE
        self._binary = self._binary_out
        if refused and self._cr_nul is None:
            self._cr_nul = t.CrNulFilter()
        elif not refused:
            self._cr_nul = None
        if not self._com_port and (opts.enabled(t.COM_PORT_OPTION, local=True)
                                   or opts.enabled(t.COM_PORT_OPTION, local=False)):
            out.append(self._start_com_port())

    def _start_com_port(self) -> bytes:
        """The client speaks RFC 2217: tell it the modem lines once (pyserial waits for it)."""
        self._com_port = True
        self._modem_reported = state = self._modem_now()
        value = state & self.modemstate_mask
        return t.server_reply(Cmd.NOTIFY_MODEMSTATE, value)

    @property
    def _binary_out(self) -> bool:
        ours = self._options.get(t.BINARY, local=True)
        return ours is None or ours.state is not t.OptionState.INACTIVE

    # -- RFC 2217 ----------------------------------------------------------------------

    def _com_port_message(self, payload: bytes) -> bytes:
        try:
            message = t.decode_com_port(payload)
        except t.TelnetError as e:
            self.gate.logs.emit(self._log.info, "rfc2217-bad-message", self.peer,
                                "{channel}: ignoring COM-PORT-OPTION message from {peer}: {error}",
                                channel=self.ctx.channel.name, peer=self.peer, error=e)
            return b""
        if message.server:
            self.gate.logs.emit(self._log.info, "rfc2217-server-message", self.peer,
                                "{channel}: ignoring server-side COM-PORT-OPTION {command} from {peer}",
                                channel=self.ctx.channel.name, command=message.command.name,
                                peer=self.peer)
            return b""
        # Tolerate clients that send COM-PORT-OPTION without negotiating it.
        prefix = b"" if self._com_port else self._start_com_port()
        return prefix + self._handlers[message.command](message)

    @staticmethod
    def _number(message: t.ComPortMessage) -> int:
        return message.value if isinstance(message.value, int) else 0

    @property
    def _in_force(self) -> SerialSettings:
        """The settings really in force (what the device accepted), else those to be applied."""
        channel = self.ctx.channel
        return channel.actual_settings or channel.effective_settings

    def _apply(self, **changes: Any) -> None:
        """Make C{changes} the client's settings; an identical repeat costs nothing."""
        channel = self.ctx.channel
        current = channel.effective_settings
        new = attrs.evolve(current, **changes)
        if new != current:
            channel.override_settings(new)
            self.factory.overridden = True

    def _signature(self, message: t.ComPortMessage) -> bytes:
        if message.value:
            self.gate.logs.emit(self._log.info, "rfc2217-signature", self.peer,
                                "{channel}: client {peer} signature {text!r}", channel=self.ctx.channel.name,
                                peer=self.peer, text=message.value)
            return b""
        return t.server_reply(Cmd.SIGNATURE, self.factory.signature.encode())

    def _set_baudrate(self, message: t.ComPortMessage) -> bytes:
        baud = self._number(message)
        if 50 <= baud <= MAX_BAUDRATE:
            self._apply(baudrate=baud)
        elif baud:
            self._refused("baud rate", baud)
        return t.server_reply(Cmd.SET_BAUDRATE, self._in_force.baudrate)

    def _set_datasize(self, message: t.ComPortMessage) -> bytes:
        size = self._number(message)
        if 5 <= size <= 8:
            self._apply(bytesize=size)
        elif size:
            self._refused("data size", size)
        return t.server_reply(Cmd.SET_DATASIZE, self._in_force.bytesize)

    def _set_parity(self, message: t.ComPortMessage) -> bytes:
        code = self._number(message)
        if code in _CODE_PARITY:
            self._apply(parity=_CODE_PARITY[code])
        elif code:
            self._refused("parity", code)
        return t.server_reply(Cmd.SET_PARITY, _PARITY_CODE[self._in_force.parity])

    def _set_stopsize(self, message: t.ComPortMessage) -> bytes:
        code = self._number(message)
        if code in _CODE_STOP:
            self._apply(stopbits=_CODE_STOP[code])
        elif code:
            self._refused("stop size", code)
        return t.server_reply(Cmd.SET_STOPSIZE, _STOP_CODE.get(self._in_force.stopbits, t.STOPSIZE_1))

    def _refused(self, what: str, value: int) -> None:
        self.gate.logs.emit(self._log.info, "rfc2217-out-of-range", self.peer,
                            "{channel}: {peer} asked for {what} {value}, which is out of range; "
                            "answering with the value in force", channel=self.ctx.channel.name,
                            peer=self.peer, what=what, value=value)

    def _set_control(self, message: t.ComPortMessage) -> bytes:
        channel = self.ctx.channel
        value = self._number(message)
        answer: int
        if value in _SET_FLOW:
            self._apply(flow_control=_SET_FLOW[value])
        if value in _SET_FLOW or value in (t.CONTROL_FLOW_QUERY, t.CONTROL_INBOUND_FLOW_QUERY,
                                           t.CONTROL_FLOW_DCD):
            flow = self._in_force.flow_control
            answer = (_FLOW_IN if value in _INBOUND_CODES else _FLOW_OUT)[flow]
        elif value in (t.CONTROL_BREAK_ON, t.CONTROL_BREAK_OFF):
            self.factory.set_break(value == t.CONTROL_BREAK_ON)
            answer = t.CONTROL_BREAK_ON if self.factory.break_on else t.CONTROL_BREAK_OFF
        elif value == t.CONTROL_BREAK_QUERY:
            answer = t.CONTROL_BREAK_ON if self.factory.break_on else t.CONTROL_BREAK_OFF
        elif value in (t.CONTROL_DTR_ON, t.CONTROL_DTR_OFF, t.CONTROL_DTR_QUERY):
            if value != t.CONTROL_DTR_QUERY:
                # A device without modem lines (pty) keeps the wish for when one appears.
                channel.set_dtr(value == t.CONTROL_DTR_ON)
            answer = t.CONTROL_DTR_ON if channel.dtr else t.CONTROL_DTR_OFF
        elif value in (t.CONTROL_RTS_ON, t.CONTROL_RTS_OFF, t.CONTROL_RTS_QUERY):
            if value != t.CONTROL_RTS_QUERY:
                channel.set_rts(value == t.CONTROL_RTS_ON)
            answer = t.CONTROL_RTS_ON if channel.rts else t.CONTROL_RTS_OFF
        else:
            self.gate.logs.emit(self._log.info, "rfc2217-bad-control", self.peer,
                                "{channel}: ignoring unknown SET-CONTROL value {value} from {peer}",
                                channel=channel.name, value=value, peer=self.peer)
            return b""
        return t.server_reply(Cmd.SET_CONTROL, answer)

    def _poll_linestate(self, message: t.ComPortMessage) -> bytes:
        state, self._line_latched = self._line_latched, 0
        if self.ctx.channel.output_waiting() == 0:
            state |= t.LINESTATE_THRE | t.LINESTATE_TSRE
        return t.server_reply(Cmd.NOTIFY_LINESTATE, state)

    def _poll_modemstate(self, message: t.ComPortMessage) -> bytes:
        # A poll is an explicit question: answered whatever the mask says.
        now = self._modem_now()
        value = now | modem_deltas(self._modem_reported, now)
        self._modem_reported = now
        return t.server_reply(Cmd.NOTIFY_MODEMSTATE, value)

    def _suspend(self, message: t.ComPortMessage) -> bytes:
        if not self.suspended:
            self.suspended = True
            self.update_jam()
        return b""

    def _resume(self, message: t.ComPortMessage) -> bytes:
        if self.suspended:
            self.suspended = False
            held, self._held, self._held_len = self._held, [], 0
            if held:
                self.transport.write(b"".join(held))
            self.update_jam()
        return b""

    def _set_linestate_mask(self, message: t.ComPortMessage) -> bytes:
        self.linestate_mask = self._number(message)
        return t.server_reply(Cmd.SET_LINESTATE_MASK, self.linestate_mask)

    def _set_modemstate_mask(self, message: t.ComPortMessage) -> bytes:
        self.modemstate_mask = self._number(message)
        return t.server_reply(Cmd.SET_MODEMSTATE_MASK, self.modemstate_mask)

    def _purge(self, message: t.ComPortMessage) -> bytes:
        value = self._number(message)
        channel = self.ctx.channel
        if value not in (t.PURGE_RECEIVE, t.PURGE_TRANSMIT, t.PURGE_BOTH):
            self.gate.logs.emit(self._log.info, "rfc2217-bad-purge", self.peer,
                                "{channel}: ignoring PURGE-DATA {value} from {peer}",
                                channel=channel.name, value=value, peer=self.peer)
            return b""
        if value & t.PURGE_RECEIVE:
            channel.flush_input()
            self._held, self._held_len = [], 0
        if value & t.PURGE_TRANSMIT:
            channel.flush_output()
        return t.server_reply(Cmd.PURGE_DATA, value)

    # -- flow towards the client ---------------------------------------------------------

    @property
    def jammed(self) -> bool:
        """Serial data waits while the socket is full or the client asked us to suspend."""
        return self.write_full or self.suspended

    def _send(self, data: bytes) -> None:
        """Unsolicited bytes for the client: held while it asked us to suspend."""
        if not self.suspended:
            # At once when nothing is queued (after any reply queued before); serial
            # data is bounded by the jam rule, not by the reply bound of send().
            write_now(self.transport, data)
        elif self._held_len + len(data) <= _MAX_HELD:
            self._held.append(data)
            self._held_len += len(data)
        else:
            self.ctx.channel.stats.serial_rx_dropped += len(data)

    def _direct_serial_writer(self) -> Callable[[bytes], bool] | None:
        """
        The dedicated relay towards the client (docs/performance.md): device
        bytes with nothing to escape (BINARY on, no 0xFF, not suspended) sent
        at once on a plain, idle socket, touching the inactivity timer as
        L{serial_data} does.  Anything else returns False and takes
        L{serial_data}.  Serial data is bounded by the jam rule, not by the
        reply bound (L{_send}); a direct send happens only when nothing is
        queued, so it never overtakes a reply.  None for TLS and wrappers, or
        a subclass with its own serial_data.
        """
        if type(self).serial_data is not Rfc2217Protocol.serial_data:
            return None
        write = direct_writer(self.transport)
        if write is None:
            return None

        def direct_serial_data(data: bytes) -> bool:
            if (not self._binary or self.suspended or _IAC in data or not self.is_admitted
                    or not write(data)):
                return False
            self.touch()
            return True

        return direct_serial_data

    # -- IChannelSession -----------------------------------------------------------------

    def serial_data(self, data: bytes) -> None:
        if self._binary and not self.suspended and _IAC not in data:
            write_now(self.transport, data)  # nothing to escape (the hot path)
        else:
            self._send(t.escape_data(data, self._binary_out))
        self.touch()

    def _modem_now(self) -> int:
        channel = self.ctx.channel
        return modem_state(channel.modem, channel.is_open)

    def _modem_update(self) -> None:
        now = self._modem_now()
        if now == self._modem_reported:
            return
        value = (now | modem_deltas(self._modem_reported, now)) & self.modemstate_mask
        self._modem_reported = now
        if value and self._com_port:
            self._send(t.server_reply(Cmd.NOTIFY_MODEMSTATE, value))

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        self._modem_update()

    def line_errors(self, events: LineEvents) -> None:
        bits = line_state(events)
        self._line_latched |= bits
        value = bits & self.linestate_mask
        if value and self._com_port:
            self._send(t.server_reply(Cmd.NOTIFY_LINESTATE, value))

    def device_state_changed(self, available: bool) -> None:
        if not available:
            self.factory.break_on = False
        self._modem_update()  # CD and the others drop while the device is gone



class Rfc2217Factory(Factory):
    """Creates L{Rfc2217Protocol}s for one serial port and holds what they share."""

    noisy = False

    _log = Logger()

    def __init__(self, ctx: PortContext) -> None:
        self.ctx = ctx
        # Answers go out at once (esptool waits for each): the gate sets TCP_NODELAY.
        self.gate: Gate = ctx.gate()
        self.break_on = False
        self.overridden = False
        self.signature = f"nport-twisted {__version__} {ctx.channel.name} ({ctx.channel.device})"

    @property
    def active(self) -> list[AdmittedSession]:
        """The clients connected now (admitted by the gate)."""
        return self.gate.active

    def buildProtocol(self, addr: Any) -> Rfc2217Protocol:
        return Rfc2217Protocol(self)

    def set_break(self, on: bool) -> None:
        if self.ctx.channel.set_break(on):
            self.break_on = on

    def last_client_left(self) -> None:
        """The configured settings return; lines the clients changed go back to their rest state."""
        channel = self.ctx.channel
        if self.break_on:
            self.set_break(False)
            self.break_on = False
        if not channel.dtr:
            channel.set_dtr(True)
        if not channel.rts:
            channel.set_rts(True)
        if self.overridden:
            self.overridden = False
            settings = channel.clear_override()
            self._log.info("{channel}: last RFC 2217 client left; configured settings "
                           "({baudrate} baud) are back", channel=channel.name,
                           baudrate=settings.baudrate)


class Rfc2217Service(service.MultiService):
    """The services of RFC 2217 mode for one port (its listener), with the factory exposed."""

    def __init__(self, factory: Rfc2217Factory) -> None:
        super().__init__()
        self.factory = factory


def rfc2217_frontend(ctx: PortContext) -> Rfc2217Service:
    """The services of RFC 2217 mode for one port: its telnet listener (4001+n-1 by default)."""
    factory = Rfc2217Factory(ctx)
    front = Rfc2217Service(factory)
    port = ctx.operating.local_tcp_port or tcp_server_port(ctx.index)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", port), factory, ctx.net,
                    ctx.index, tls=ctx.data_tls()).setServiceParent(front)
    return front
