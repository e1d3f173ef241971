# -*- test-case-name: tests.test_realcom -*-
"""
The ASPP command protocol (MOXA's "Async Server Property Protocol"), as a
device answers it on the command port 966+n-1: Real COM mode's command
connection and TCP Server mode's command port both use it.  The codec is
L{nport_twisted.wire.aspp}; this module applies requests to the channel.

Wire protocol (realcom.md is authoritative; docs/modes/realcom.md is the
user-facing version): ASPP requests ``[cmd][len][payload]`` from the host;
fixed-length replies (``[cmd] 4F 4B`` = OK …), all replies of one read in
one send with TCP_NODELAY; unsolicited NOTIFY ``26 ev msr hold`` and POLLING
``27 01 id`` from us.  No greeting.  An IPv6 host first sends 16 bytes that
are echoed back.

Control: with max connection 1 the host has full control; with 2-4 control
requests are answered OK but not applied (unless "allow driver control"),
and even with driver control WAIT_OQUEUE is answered 0 at once and FLUSH is
ignored, as in MOXA's device code.  Requests marked [P] in the handlers
follow MOXA's device code where it differs from the obvious reading.

NOTIFY: at most one per 100 ms per notify-enabled command connection; MSR
delta bits are latched until sent (16550 style), the baseline is the line
state when the pair's data connection (and so the device) came up.

Keep-alive: after 40 s without data a notify-enabled command connection gets
``27 01 id`` every 3 s until the host answers ``28 01 id``; after 4 misses
both connections of the pair are closed.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import discard_unread, unread_bytes, write_now
from nport_twisted.config.settings import FlowControl, Parity, SerialSettings
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines, SerialChannel
from nport_twisted.net.session import AdmittedSession, PortContext, ReadHold
from nport_twisted.wire import aspp

#: Command bytes held while a command connection waits for its data connection.
_MAX_EARLY_COMMAND_BYTES = 4096
#: What MOXA's device uses for a baud index outside the table (realcom.md §4.1).
_UNKNOWN_INDEX_BAUD = 38400


@attrs.frozen
class RealComOptions:
    """
    Timing and the behaviours the sources leave open (realcom.md §5, §10).

    @ivar answer_host_name: reply OK to 0x2B (set connection remote name).
        MOXA's device code does not answer it; the Linux daemon's splitter
        would take a 3-byte reply (inferred).  Off by default, as MOXA's code.
    @ivar lines_without_modem: what PORT_INIT/LSTATUS report for a device
        with no modem lines (a pty): True = DSR/CTS/DCD on, so hosts that
        open without CLOCAL do not wait for carrier (ours, inferred).
    @ivar refuse_without_device: close a host's new Real COM pair when the
        serial device cannot be opened, so the host's open fails (EIO on
        Linux) instead of succeeding on a dead line.  MOXA's port daemon
        exits when its serial port does not open [P aspp_open_serial], so
        an NPort in that state drops the host's connections too; ours
        refuses per connection and keeps listening (inferred from [P]).
    """

    probe_idle: float = 40.0
    probe_interval: float = 3.0
    probe_misses: int = 4
    notify_interval: float = 0.1
    wait_poll_interval: float = 0.01
    answer_host_name: bool = False
    lines_without_modem: bool = True
    #: Pair a command connection only with a data connection from the same
    #: host (MOXA's drivers always connect both from one host): another
    #: host's idle command connection can neither take the driver's place
    #: nor drive its line.  Ours (issue 10); MOXA's device pairs by arrival.
    pair_by_peer: bool = True
    #: Seconds a command connection may wait for its data connection before
    #: it is closed (0 = forever).  Ours: a driver connects both at once.
    pair_timeout: float = 10.0
    refuse_without_device: bool = True


def host_of(address: str) -> str:
    """A peer's host for pairing: an IPv4-mapped IPv6 address is the IPv4 one."""
    return address[7:] if address.startswith("::ffff:") and "." in address else address


def msr_state(lines: ModemLines | None, default_on: bool) -> int:
    """The MSR state bits (high nibble) for C{lines}; a device without modem lines reports C{default_on}."""
    if lines is None:
        return (aspp.MSR_CTS | aspp.MSR_DSR | aspp.MSR_DCD) if default_on else 0
    return lines.bits(aspp.MSR_CTS, aspp.MSR_DSR, aspp.MSR_RI, aspp.MSR_DCD)


def msr_delta(old: int, new: int) -> int:
    """The MSR delta bits (low nibble) between two states."""
    changed = old ^ new
    return ((aspp.MSR_DELTA_CTS if changed & aspp.MSR_CTS else 0)
            | (aspp.MSR_DELTA_DSR if changed & aspp.MSR_DSR else 0)
            | (aspp.MSR_DELTA_RI if changed & aspp.MSR_RI else 0)
            | (aspp.MSR_DELTA_DCD if changed & aspp.MSR_DCD else 0))


@implementer(IChannelSession)
class Pair:
    """
    One host: a command connection and a data connection in the same slot.
    This is what attaches to the serial channel.
    """

    def __init__(self, port: AsppPort, slot: int) -> None:
        self.port = port
        self.slot = slot
        self.command: CommandProtocol | None = None
        self.data: AdmittedSession | None = None  # the data connection, where the mode has one
        self.last_activity = port.clock.seconds()
        self.attached = False
        self._pair_timer: IDelayedCall | None = None

    def __repr__(self) -> str:
        return f"<Real COM {self.port.channel.name} slot {self.slot}>"

    @property
    def data_ready(self) -> bool:
        return self.data is not None

    def host(self) -> str | None:
        """The host this pair belongs to (of whichever connection it has), None when empty."""
        for proto in (self.data, self.command):
            if proto is not None:
                return host_of(proto.peer)
        return None

    def wait_for_data(self, timeout: float) -> None:
        """The command connection came first: close it if no data connection joins in C{timeout} s."""
        if timeout > 0 and self._pair_timer is None:
            self._pair_timer = self.port.clock.callLater(timeout, self._no_data)

    def data_joined(self) -> None:
        if self._pair_timer is not None and self._pair_timer.active():
            self._pair_timer.cancel()
        self._pair_timer = None

    def _no_data(self) -> None:
        self._pair_timer = None
        command = self.command
        if command is None or self.data is not None:
            return
        command.gate.logs.emit(command._log.warn, "unpaired-command", command.peer,
                               "{channel}: closing the command connection from {peer}: no data "
                               "connection from that host within {seconds:g} s",
                               channel=self.port.channel.name, peer=command.peer,
                               seconds=self.port.options.pair_timeout)
        command.transport.loseConnection()

    def touch(self) -> None:
        self.last_activity = self.port.clock.seconds()

    def unread(self) -> int:
        return unread_bytes(self.data.transport if self.data else None)

    def discard_unread(self) -> int:
        return discard_unread(self.data.transport if self.data else None)

    def close(self) -> None:
        for proto in (self.command, self.data):
            if proto is not None and proto.transport is not None:
                proto.transport.loseConnection()

    # IChannelSession

    def serial_data(self, data: bytes) -> None:
        if self.data is not None:
            write_now(self.data.transport, data)
            self.last_activity = self.port.clock.seconds()

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        if self.command is not None:
            self.command.modem_changed(msr_delta(msr_state(old, False), msr_state(new, False)))

    def line_errors(self, events: LineEvents) -> None:
        if self.command is not None:
            self.command.line_errors(events)

    def device_state_changed(self, available: bool) -> None:
        if self.command is not None:
            self.command.modem_changed(0)

    def pause_input(self) -> None:
        if self.data is not None:
            self.data.pause_reading(ReadHold.SERIAL_BUSY)

    def resume_input(self) -> None:
        if self.data is not None:
            self.data.resume_reading(ReadHold.SERIAL_BUSY)

    def abort(self) -> None:
        for proto in (self.command, self.data):
            if proto is not None and proto.transport is not None:
                proto.transport.abortConnection()


class AsppPort:
    """
    One serial port controlled over ASPP: the command connections' slots
    (paired by arrival order with data connections, where the mode has
    them), the line state they share, and how requests apply to the channel.
    Real COM (L{nport_twisted.modes.realcom.RealComPort}) and TCP Server's
    command port (L{nport_twisted.modes.tcpserver.TcpServerCommandPort})
    specialise it.
    """

    _log = Logger()

    def __init__(self, ctx: PortContext, options: RealComOptions | None = None) -> None:
        self.ctx = ctx
        self.channel: SerialChannel = ctx.channel
        self.clock = ctx.reactor
        self.options = options or RealComOptions()
        self.slots: list[Pair | None] = [None] * ctx.operating.max_connection
        self.max_baud = 4_000_000
        # Slots, not the gate, count connections (a retired pair frees its
        # slot before its other connection has finished closing).
        self.command_gate = ctx.gate("command connection", limited=False, inactivity=False)

    @property
    def exclusive(self) -> bool:
        """Max connection 1: the host has the port to itself (MOXA's "realtty")."""
        return self.ctx.operating.max_connection == 1

    @property
    def control_allowed(self) -> bool:
        """Whether control requests are applied (exclusive, or "allow driver control")."""
        return self.exclusive or self.ctx.operating.allow_driver_control

    # -- pairing -----------------------------------------------------------------

    def take_slot(self, kind: str, proto: AdmittedSession) -> Pair | None:
        """
        Put C{proto} (a C{"command"} or C{"data"} connection) in a slot: the
        first one whose other connection is from the same host and whose
        C{kind} side is free, else the first empty slot (arrival order, as
        MOXA's device).  With L{RealComOptions.pair_by_peer} off, any slot
        whose C{kind} side is free.  A data connection may take the slot of
        another host's command connection that still waits for its data
        connection (that one is closed): a driver's data connection is
        stronger evidence than an idle command connection.  None when no
        slot fits (L{refusal} says why).
        """
        host = host_of(proto.peer)
        other = "command" if kind == "data" else "data"
        by_peer = self.options.pair_by_peer
        candidates: list[int] = []
        for i, pair in enumerate(self.slots):
            if pair is None or (pair.command is None and pair.data is None):
                candidates.append(i)
            elif getattr(pair, kind) is None and (not by_peer or pair.host() == host):
                candidates.insert(0, i) if getattr(pair, other) is not None else candidates.append(i)
        if not candidates and kind == "data" and by_peer:
            candidates = self._evict_unpaired_command(host)
        if not candidates:
            self.last_refusal = (f"max connection {self.ctx.operating.max_connection}"
                                 + (" (no free slot for this host)" if by_peer else ""))
            return None
        i = candidates[0]
        pair = self.slots[i]
        if pair is None or (pair.command is None and pair.data is None):
            pair = self.slots[i] = Pair(self, i)
        setattr(pair, kind, proto)
        if kind == "data":
            pair.data_joined()
        elif pair.data is None:
            pair.wait_for_data(self.options.pair_timeout)
        return pair

    def _evict_unpaired_command(self, host: str) -> list[int]:
        for i, pair in enumerate(self.slots):
            if pair is not None and pair.data is None and pair.command is not None \
                    and pair.host() != host:
                command = pair.command
                command.gate.logs.emit(command._log.warn, "evicted-command", command.peer,
                                       "{channel}: closing the command connection from {peer}: "
                                       "it has no data connection and {host} needs the slot",
                                       channel=self.channel.name, peer=command.peer, host=host)
                pair.data_joined()
                self.slots[i] = None
                pair.command = None
                command.pair = None
                command.transport.loseConnection()
                return [i]
        return []

    last_refusal = "no free slot"

    def _retire(self, pair: Pair) -> None:
        """
        A pair whose first connection is gone is finished: free its slot at
        once, so a host reconnecting before the other half has finished
        closing gets a fresh pair instead of half of the dying one.
        """
        if self.slots[pair.slot] is pair:
            self.slots[pair.slot] = None

    def command_lost(self, pair: Pair) -> None:
        pair.command = None
        pair.data_joined()  # nothing to wait for any more
        self._retire(pair)
        if pair.data is not None:
            pair.data.transport.loseConnection()

    # -- line state shared by the pairs ----------------------------------------------

    def msr_state(self) -> int:
        if not self.channel.is_open:
            return 0
        return msr_state(self.channel.modem, self.options.lines_without_modem)

    def line_status_reply(self, code: int) -> bytes:
        msr = self.msr_state()
        return aspp.encode_line_status(code, bool(msr & aspp.MSR_DSR), bool(msr & aspp.MSR_CTS),
                                       bool(msr & aspp.MSR_DCD))

    def hold_bits(self) -> int:
        hold = aspp.HOLD_NEW_VERSION
        settings = self.channel.actual_settings
        if settings is not None and settings.rtscts and not (self.msr_state() & aspp.MSR_CTS):
            hold |= aspp.HOLD_CTS
        return hold

    def apply_line(self, baud_index: int, mode: aspp.LineMode, flow: aspp.FlowControl | None) -> bool:
        """
        Apply a PORT_INIT/IOCTL line setting; return True when the device
        refused the baud rate (PORT_INIT then answers "baud rejected").

        Index 0xFF keeps the current speed: a SETBAUD follows (for B0 none
        does; MOXA's device would fall back to 38400, we keep the speed to
        avoid a needless glitch — ours).  Any other index outside the table
        gives 38400, as MOXA's device does.
        """
        current = self.channel.effective_settings
        baud = aspp.baud_from_index(baud_index)
        if baud is None:
            baud = current.baudrate if baud_index == aspp.BAUD_INDEX_CUSTOM else _UNKNOWN_INDEX_BAUD
        changes: dict[str, Any] = dict(baudrate=baud, bytesize=mode.bytesize,
                                       parity=Parity(mode.parity), stopbits=mode.stopbits)
        if flow is not None:
            changes["flow_control"] = self._flow(flow)
        actual = self.channel.override_settings(attrs.evolve(current, **changes))
        return actual.baudrate != baud

    @staticmethod
    def _flow(flow: aspp.FlowControl) -> FlowControl:
        if flow.cts_flow or flow.rts_flow:
            return FlowControl.RTS_CTS
        if flow.tx_xonxoff or flow.rx_xonxoff:
            return FlowControl.XON_XOFF
        return FlowControl.NONE

    def apply_flow(self, flow: aspp.FlowControl) -> None:
        current = self.channel.effective_settings
        self.channel.override_settings(attrs.evolve(current, flow_control=self._flow(flow)))

    def apply_baud(self, baud: int) -> bool:
        current: SerialSettings = self.channel.effective_settings
        actual = self.channel.override_settings(attrs.evolve(current, baudrate=baud))
        return actual.baudrate == baud


class CommandProtocol(AdmittedSession):
    """The ASPP command connection of one pair."""

    _log = Logger()
    bounded_replies = True  # a host that does not read its replies stops being read

    def __init__(self, port: AsppPort) -> None:
        super().__init__(port.command_gate)
        self.port = port
        self.pair: Pair | None = None
        self._parser: aspp.RequestParser | None = None
        self._early = bytearray()
        self.notify_enabled = False
        # NOTIFY state
        self._msr_sent = 0
        self._msr_delta = 0  # MSR delta bits latched since the last NOTIFY
        self._events = 0
        self._notify_timer: IDelayedCall | None = None
        self._last_notify = float("-inf")
        # per-connection counters since the last query (0x37, 0x38)
        self._breaks = 0
        self._error_bits = 0
        # keep-alive probing
        self._probe_timer: IDelayedCall | None = None
        self._probe_id = 0
        self._misses = 0
        # deferred WAIT_OQUEUE
        self._wait_timer: IDelayedCall | None = None
        self._wait_deadline = 0.0
        self.flushing = False
        self.host_name = b""
        self._handlers: dict[type[Any], Callable[[Any], bytes]] = {
            aspp.Ipv6Check: self._ipv6_check,
            aspp.PortInit: self._port_init,
            aspp.LineStatusQuery: self._line_status,
            aspp.StartNotify: self._start_notify,
            aspp.StopNotify: self._stop_notify,
            aspp.Alive: self._alive,
            aspp.WaitOutputQueue: self._wait_output_queue,
            aspp.OutputQueueQuery: self._output_queue,
            aspp.InputQueueQuery: self._input_queue,
            aspp.SetBaud: self._set_baud,
            aspp.Ioctl: self._ioctl,
            aspp.FlowControl: self._flow_control,
            aspp.LineControl: self._line_control,
            aspp.XonXoffChars: self._xon_xoff_chars,
            aspp.Flush: self._flush_request,
            aspp.StartBreak: self._break,
            aspp.StopBreak: self._break,
            aspp.TimedBreak: self._timed_break,
            aspp.TxFifo: self._ok,  # a Linux UART FIFO is not switchable from user space
            aspp.SetXon: self._xon_xoff,
            aspp.SetXoff: self._xon_xoff,
            aspp.DsrSensitivity: self._ok,  # a stub in MOXA's device code too
            aspp.PortReset: self._port_reset,
            aspp.FlushStart: self._flush_start,
            aspp.FlushStop: self._flush_stop,
            aspp.BreakCountQuery: self._break_count,
            aspp.DataStatusQuery: self._data_status,
            aspp.HostName: self._host_name,
            aspp.MalformedRequest: self._malformed,
        }

    def __repr__(self) -> str:
        return f"<Real COM command {self.port.channel.name} {self.peer}>"

    # -- connection -------------------------------------------------------------

    def claim(self) -> str | None:
        self.pair = self.port.take_slot("command", self)
        return None if self.pair is not None else self.port.last_refusal

    def admitted(self) -> None:
        local = self.transport.getHost()
        ipv6 = isinstance(local, IPv6Address) and not local.host.startswith("::ffff:")
        self._parser = aspp.RequestParser(ipv6_check=ipv6)
        self._msr_sent = self.port.msr_state()

    def closed(self, reason: Failure) -> None:
        for timer in (self._notify_timer, self._probe_timer, self._wait_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._notify_timer = self._probe_timer = self._wait_timer = None
        if self.pair is not None:
            self.port.command_lost(self.pair)
            self.pair = None

    def received(self, data: bytes) -> None:
        if self.pair is None or self._parser is None:
            return
        if not self.pair.data_ready:
            # Commands wait until the data connection of this pair exists.
            self._early += data
            if len(self._early) > _MAX_EARLY_COMMAND_BYTES:
                self.gate.logs.emit(self._log.warn, "early-commands", self.peer,
                                    "{channel}: {peer} sent {n} command bytes without a data "
                                    "connection; closing", channel=self.port.channel.name,
                                    peer=self.peer, n=len(self._early))
                self.transport.loseConnection()
            return
        try:
            self._process(data)
        except Exception:
            self._log.failure("{channel}: error handling ASPP from {peer}; closing the pair",
                              channel=self.port.channel.name, peer=self.peer)
            if self.pair is not None:
                self.pair.close()

    def data_connected(self) -> None:
        """The pair's data connection arrived: run what waited."""
        # The device may only now be open: NOTIFY reports changes from this
        # state on, so the first PORT_INIT reply has no NOTIFY tail.
        self._msr_sent = self.port.msr_state()
        self._msr_delta = 0
        self._events = 0
        if self._early:
            early, self._early = bytes(self._early), bytearray()
            self.received(early)

    def _process(self, data: bytes) -> None:
        assert self._parser is not None
        # The replies of one batch leave in one send (the Linux daemon keeps no
        # partial frame); a read of more than max_events_per_turn requests
        # (never a driver's) is answered over several reactor turns.
        self.handle_events(list(self._parser.feed(data)), self._handle_into)

    def _handle_into(self, event: aspp.Request | aspp.Ipv6Check, out: list[bytes]) -> None:
        reply = self._handle(event)
        if reply:
            out.append(reply)

    # -- requests -----------------------------------------------------------------
    #
    # One handler per request type (the table in __init__); each returns the
    # reply bytes, b"" for none.  "control" requests change the device only
    # where the host has control (max connection 1 or "allow driver control").

    def _handle(self, ev: aspp.Request | aspp.Ipv6Check) -> bytes:
        handler = self._handlers.get(type(ev))
        if handler is None:
            self.gate.logs.emit(self._log.info, "aspp-unsupported", self.peer,
                                "{channel}: unsupported ASPP 0x{code:02X} from {peer}; no reply",
                                channel=self.port.channel.name, code=getattr(ev, "code", -1),
                                peer=self.peer)
            return b""
        return handler(ev)

    @staticmethod
    def _ok(ev: Any) -> bytes:
        return aspp.encode_ok(ev.code)

    def _ipv6_check(self, ev: aspp.Ipv6Check) -> bytes:
        return aspp.encode_ipv6_echo(ev.data)

    def _port_init(self, ev: aspp.PortInit) -> bytes:
        port = self.port
        rejected = False
        if port.control_allowed:
            rejected = port.apply_line(ev.baud_index, ev.mode, flow=ev.flow)
            port.channel.set_dtr(ev.dtr)
            port.channel.set_rts(ev.rts)
        self.enable_notify(True)
        reply = aspp.encode_baud_rejected() if rejected else port.line_status_reply(aspp.CMD_PORT_INIT)
        return reply + self._take_notify()

    def _line_status(self, ev: aspp.LineStatusQuery) -> bytes:
        return self.port.line_status_reply(aspp.CMD_LSTATUS) + self._take_notify()

    def _start_notify(self, ev: aspp.StartNotify) -> bytes:
        self.enable_notify(True)
        return aspp.encode_ok(ev.code) + self._take_notify()

    def _stop_notify(self, ev: aspp.StopNotify) -> bytes:
        self.enable_notify(False)
        return aspp.encode_ok(ev.code)

    def _alive(self, ev: aspp.Alive) -> bytes:
        self._misses = 0
        assert self.pair is not None
        self.pair.touch()
        self._arm_probe()
        return b""

    def _wait_output_queue(self, ev: aspp.WaitOutputQueue) -> bytes:
        return self._wait_oqueue(ev.timeout_ms, self.port.exclusive)

    def _output_queue(self, ev: aspp.OutputQueueQuery) -> bytes:
        return aspp.encode_queue_count(ev.code, self.port.channel.output_waiting())

    def _input_queue(self, ev: aspp.InputQueueQuery) -> bytes:
        return aspp.encode_queue_count(ev.code, self.port.channel.input_waiting())

    def _set_baud(self, ev: aspp.SetBaud) -> bytes:
        port = self.port
        if not port.control_allowed:
            return aspp.encode_ok(ev.code)  # [P]: a data tunnel accepts any speed without a range check
        if not 50 <= ev.baud <= port.max_baud or not port.apply_baud(ev.baud):
            return aspp.encode_na(ev.code)
        return aspp.encode_ok(ev.code)

    def _ioctl(self, ev: aspp.Ioctl) -> bytes:
        if self.port.control_allowed:
            self.port.apply_line(ev.baud_index, ev.mode, flow=None)
        return aspp.encode_ok(ev.code)

    def _flow_control(self, ev: aspp.FlowControl) -> bytes:
        if self.port.control_allowed:
            self.port.apply_flow(ev)
        return aspp.encode_ok(ev.code)

    def _line_control(self, ev: aspp.LineControl) -> bytes:
        if self.port.control_allowed:
            self.port.channel.set_dtr(ev.dtr)
            self.port.channel.set_rts(ev.rts)
        return aspp.encode_ok(ev.code)

    def _xon_xoff_chars(self, ev: aspp.XonXoffChars) -> bytes:
        if self.port.control_allowed:
            self.port.channel.set_xon_xoff_chars(ev.xon, ev.xoff)
        return aspp.encode_ok(ev.code)

    def _flush_request(self, ev: aspp.Flush) -> bytes:
        if self.port.exclusive:  # [P]: never with several hosts, even with driver control
            self._flush(ev.mode)
        return aspp.encode_ok(ev.code)

    def _break(self, ev: aspp.StartBreak | aspp.StopBreak) -> bytes:
        if self.port.control_allowed:
            self.port.channel.set_break(isinstance(ev, aspp.StartBreak))
        return aspp.encode_ok(ev.code)

    def _timed_break(self, ev: aspp.TimedBreak) -> bytes:
        if not ev.in_range:
            return b""  # [P]: out of range gets no reply
        port = self.port
        if port.control_allowed and port.channel.set_break(True):
            port.clock.callLater(ev.ms / 1000, port.channel.set_break, False)
        return aspp.encode_ok(ev.code)

    def _xon_xoff(self, ev: aspp.SetXon | aspp.SetXoff) -> bytes:
        if self.port.control_allowed:
            self.port.channel.set_output_suspended(isinstance(ev, aspp.SetXoff))
        return aspp.encode_ok(ev.code)

    def _port_reset(self, ev: aspp.PortReset) -> bytes:
        return aspp.encode_ok(ev.code) if ev.valid and self.port.control_allowed else b""

    def _flush_start(self, ev: aspp.FlushStart) -> bytes:
        if not self.port.exclusive:  # [P]: answered with zeros, no flush state
            return aspp.encode_flush_start_done(0)
        self._flush(ev.mode)
        self.flushing = True
        assert self.pair is not None
        return aspp.encode_flush_start_done(self.pair.unread())

    def _flush_stop(self, ev: aspp.FlushStop) -> bytes:
        self.flushing = False
        return aspp.encode_ok(ev.code)

    def _break_count(self, ev: aspp.BreakCountQuery) -> bytes:
        count, self._breaks = self._breaks, 0
        return aspp.encode_break_count(count)

    def _data_status(self, ev: aspp.DataStatusQuery) -> bytes:
        bits, self._error_bits = self._error_bits, 0
        return aspp.encode_data_status(bits)

    def _host_name(self, ev: aspp.HostName) -> bytes:
        self.host_name = ev.payload
        self.gate.logs.emit(self._log.info, "aspp-host-name", self.peer,
                            "{channel}: host {peer} names itself {name!r}",
                            channel=self.port.channel.name, peer=self.peer, name=ev.payload)
        return aspp.encode_ok(ev.code) if self.port.options.answer_host_name else b""

    def _malformed(self, ev: aspp.MalformedRequest) -> bytes:
        self.gate.logs.emit(self._log.warn, "aspp-malformed", self.peer,
                            "{channel}: ASPP 0x{code:02X} from {peer} has a wrong length ({n}); "
                            "ignored without reply", channel=self.port.channel.name, code=ev.code,
                            peer=self.peer, n=len(ev.payload))
        return b""

    def _flush(self, mode: int) -> None:
        channel = self.port.channel
        if mode in (aspp.FLUSH_RX, aspp.FLUSH_BOTH):
            channel.flush_input()
        if mode in (aspp.FLUSH_TX, aspp.FLUSH_BOTH):
            channel.flush_output()
            if self.pair is not None:
                self.pair.discard_unread()

    # -- WAIT_OQUEUE --------------------------------------------------------------

    def _queued(self) -> int:
        unread = self.pair.unread() if self.pair is not None else 0
        return self.port.channel.output_waiting() + unread

    def _wait_oqueue(self, timeout_ms: int, exclusive: bool) -> bytes:
        previous = b""
        if self._wait_timer is not None and self._wait_timer.active():
            # One outstanding command at a time: answer the old one first, in
            # this read's batch (one send per batch, realcom.md §2.3).
            self._wait_timer.cancel()
            self._wait_timer = None
            previous = aspp.encode_queue_count(aspp.CMD_WAIT_OQUEUE, self._queued())
        if not exclusive:
            return previous + aspp.encode_queue_count(aspp.CMD_WAIT_OQUEUE, 0)
        queued = self._queued()
        if queued == 0:
            return previous + aspp.encode_queue_count(aspp.CMD_WAIT_OQUEUE, 0)
        clock = self.port.clock
        self._wait_deadline = clock.seconds() + timeout_ms / 1000
        self._wait_timer = clock.callLater(min(self.port.options.wait_poll_interval, timeout_ms / 1000),
                                           self._wait_check)
        return previous

    def _wait_check(self) -> None:
        self._wait_timer = None
        clock = self.port.clock
        queued = self._queued()
        if queued and clock.seconds() < self._wait_deadline:
            delay = min(self.port.options.wait_poll_interval, self._wait_deadline - clock.seconds())
            self._wait_timer = clock.callLater(delay, self._wait_check)
            return
        self.send(aspp.encode_queue_count(aspp.CMD_WAIT_OQUEUE, queued))

    # -- NOTIFY ---------------------------------------------------------------------

    def enable_notify(self, on: bool) -> None:
        self.notify_enabled = on
        if on:
            # Command traffic is not data: a repeated PORT_INIT must not
            # postpone a probe that is already due or running.
            if self._probe_timer is None or not self._probe_timer.active():
                self._arm_probe()
        elif self._probe_timer is not None and self._probe_timer.active():
            self._probe_timer.cancel()
            self._probe_timer = None

    def modem_changed(self, delta: int) -> None:
        """
        Modem lines changed; C{delta} has the MSR delta bits of this change.
        Like a 16550's MSR they stay latched until a NOTIFY carries them, so
        a line that drops and returns within one 100 ms window is still
        reported as changed.
        """
        self._msr_delta |= delta
        self._events |= aspp.EVENT_MODEM
        self._schedule_notify()

    def line_errors(self, ev: LineEvents) -> None:
        bits = ((aspp.EVENT_PARITY if ev.parity else 0) | (aspp.EVENT_FRAMING if ev.framing else 0)
                | (aspp.EVENT_HW_OVERRUN if ev.overrun else 0)
                | (aspp.EVENT_SW_OVERRUN if ev.buffer_overrun else 0)
                | (aspp.EVENT_BREAK if ev.breaks else 0))
        self._breaks += ev.breaks
        self._error_bits |= bits & 0x0F
        self._events |= bits
        self._schedule_notify()

    def _pending_notify(self) -> bytes:
        """The NOTIFY that describes what changed since the last one, or b""."""
        state = self.port.msr_state()
        delta = msr_delta(self._msr_sent, state) | self._msr_delta
        events = self._events & ~aspp.EVENT_MODEM
        if delta:
            events |= aspp.EVENT_MODEM
        if not events:
            self._events = 0
            return b""
        self._msr_sent = state
        self._msr_delta = 0
        self._events = 0
        return aspp.encode_notify(events, state | delta, self.port.hold_bits())

    def _take_notify(self) -> bytes:
        """A pending NOTIFY to append to a reply (PORT_INIT, LSTATUS, START_NOTIFY)."""
        if not self.notify_enabled:
            return b""
        if self._notify_timer is not None and self._notify_timer.active():
            self._notify_timer.cancel()
        self._notify_timer = None
        msg = self._pending_notify()
        if msg:
            self._last_notify = self.port.clock.seconds()
        return msg

    def _schedule_notify(self) -> None:
        if not self.notify_enabled or self.transport is None:
            return
        if self._notify_timer is not None and self._notify_timer.active():
            return  # coalesced into the one already due
        wait = self._last_notify + self.port.options.notify_interval - self.port.clock.seconds()
        if wait <= 0:
            self._send_notify()
        else:
            self._notify_timer = self.port.clock.callLater(wait, self._send_notify)

    def _send_notify(self) -> None:
        self._notify_timer = None
        if not self.notify_enabled or self.pair is None:
            return
        msg = self._pending_notify()
        if msg:
            self._last_notify = self.port.clock.seconds()
            self.send(msg)

    # -- POLLING / ALIVE ---------------------------------------------------------------

    def _arm_probe(self, delay: float | None = None) -> None:
        if self._probe_timer is not None and self._probe_timer.active():
            self._probe_timer.cancel()
        if delay is None:
            delay = self.port.options.probe_idle
        self._probe_timer = self.port.clock.callLater(delay, self._probe_tick)

    def _probe_tick(self) -> None:
        self._probe_timer = None
        if not self.notify_enabled or self.pair is None:
            return
        opts = self.port.options
        if self._misses == 0:
            idle = self.port.clock.seconds() - self.pair.last_activity
            if idle < opts.probe_idle:
                self._arm_probe(opts.probe_idle - idle)
                return
        if self._misses >= opts.probe_misses:
            self._log.warn("{channel}: {peer} did not answer {n} keep-alive probes; closing",
                           channel=self.port.channel.name, peer=self.peer, n=self._misses)
            self.pair.close()
            return
        self._probe_id = self._probe_id % 255 + 1  # 1..255, never 0
        self._misses += 1
        self.send(aspp.encode_polling(self._probe_id))
        self._arm_probe(opts.probe_interval)
