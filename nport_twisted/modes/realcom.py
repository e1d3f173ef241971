# -*- test-case-name: tests.test_realcom -*-
"""
Real COM mode: what MOXA's Real COM drivers (Windows, Linux npreal2) talk to.

Wire protocol (realcom.md is authoritative; this header is a summary kept in
sync with docs/modes/realcom.md):

  data port 950+n-1 (ports 17-32: 982+): raw serial bytes both ways,
      optionally TLS ("Secure Real COM"; the command port stays plain).
  command port 966+n-1 (ports 17-32: 998+): ASPP requests
      ``[cmd][len][payload]`` from the host; fixed-length replies
      (``[cmd] 4F 4B`` = OK …), all replies of one read in one send with
      TCP_NODELAY; unsolicited NOTIFY ``26 ev msr hold`` and POLLING
      ``27 01 id`` from us.  No greeting.

Connections: command slot i pairs with data slot i by arrival order.  The
serial device is opened with the first data connection and closed (DTR/RTS
dropped, the host's settings forgotten) when the last one goes; closing
either connection of a pair closes both.  Command bytes wait until the
pair's data connection exists.  With max connection 1 the host has full
control; with 2-4 the port is a data tunnel: control requests are answered
OK but not applied (unless "allow driver control"), and even with driver
control WAIT_OQUEUE is answered 0 at once and FLUSH is ignored, as in MOXA's
device code.

NOTIFY: at most one per 100 ms per notify-enabled command connection; MSR
delta bits are latched until sent (16550 style), the baseline is the line
state when the pair's data connection (and so the device) came up.

Keep-alive: after 40 s without data a notify-enabled command connection gets
``27 01 id`` every 3 s until the host answers ``28 01 id``; after 4 misses
both connections are closed.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application import service
from twisted.internet.address import IPv6Address
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import discard_unread, unread_bytes, write_now
from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines, SerialChannel
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import AdmittedSession, PortContext, ReadHold, SessionFactory, peer_host
from nport_twisted.wire import aspp
from nport_twisted.config.settings import (
    FlowControl,
    Parity,
    SerialSettings,
    realcom_command_port,
    realcom_data_port,
)

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
    """

    probe_idle: float = 40.0
    probe_interval: float = 3.0
    probe_misses: int = 4
    notify_interval: float = 0.1
    wait_poll_interval: float = 0.01
    answer_host_name: bool = False
    lines_without_modem: bool = True


def _msr_state(lines: ModemLines | None, default_on: bool) -> int:
    if lines is None:
        return (aspp.MSR_CTS | aspp.MSR_DSR | aspp.MSR_DCD) if default_on else 0
    return ((aspp.MSR_CTS if lines.cts else 0) | (aspp.MSR_DSR if lines.dsr else 0)
            | (aspp.MSR_RI if lines.ri else 0) | (aspp.MSR_DCD if lines.dcd else 0))


def _msr_delta(old: int, new: int) -> int:
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

    def __init__(self, port: RealComPort, slot: int) -> None:
        self.port = port
        self.slot = slot
        self.command: CommandProtocol | None = None
        self.data: DataProtocol | None = None
        self.last_activity = port.clock.seconds()
        self.attached = False

    def __repr__(self) -> str:
        return f"<Real COM {self.port.channel.name} slot {self.slot}>"

    @property
    def data_ready(self) -> bool:
        return self.data is not None

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
            self.command.modem_changed(_msr_delta(_msr_state(old, False), _msr_state(new, False)))

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


class CommandProtocol(AdmittedSession):
    """The ASPP command connection of one pair."""

    _log = Logger()

    def __init__(self, port: RealComPort) -> None:
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

    def __repr__(self) -> str:
        return f"<Real COM command {self.port.channel.name} {self.peer}>"

    # -- connection -------------------------------------------------------------

    def claim(self) -> str | None:
        self.pair = self.port.take_slot("command", self)
        return None if self.pair is not None else f"max connection {self.port.ctx.operating.max_connection}"

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
                self._log.warn("{channel}: {peer} sent {n} command bytes without a data connection; "
                               "closing", channel=self.port.channel.name, peer=self.peer,
                               n=len(self._early))
                self.transport.loseConnection()
            return
        try:
            self._process(data)
        except Exception:
            self._log.failure("{channel}: error handling ASPP from {peer}; closing the pair",
                              channel=self.port.channel.name, peer=self.peer)
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
        out: list[bytes] = []
        for event in self._parser.feed(data):
            reply = self._handle(event)
            if reply:
                out.append(reply)
        if out:
            # One read's replies in one send: the Linux daemon keeps no partial frame.
            self.send(b"".join(out))

    # -- requests -----------------------------------------------------------------

    def _handle(self, ev: aspp.Request | aspp.Ipv6Check) -> bytes:
        port = self.port
        control = port.control_allowed
        ok = aspp.encode_ok
        if isinstance(ev, aspp.Ipv6Check):
            return aspp.encode_ipv6_echo(ev.data)
        if isinstance(ev, aspp.PortInit):
            rejected = False
            if control:
                rejected = port.apply_line(ev.baud_index, ev.mode, flow=ev.flow)
                port.channel.set_dtr(ev.dtr)
                port.channel.set_rts(ev.rts)
            self.enable_notify(True)
            reply = aspp.encode_baud_rejected() if rejected else port.line_status_reply(aspp.CMD_PORT_INIT)
            return reply + self._take_notify()
        if isinstance(ev, aspp.LineStatusQuery):
            return port.line_status_reply(aspp.CMD_LSTATUS) + self._take_notify()
        if isinstance(ev, aspp.StartNotify):
            self.enable_notify(True)
            return ok(ev.code) + self._take_notify()
        if isinstance(ev, aspp.StopNotify):
            self.enable_notify(False)
            return ok(ev.code)
        if isinstance(ev, aspp.Alive):
            self._misses = 0
            assert self.pair is not None
            self.pair.touch()
            self._arm_probe()
            return b""
        if isinstance(ev, aspp.WaitOutputQueue):
            return self._wait_oqueue(ev.timeout_ms, port.exclusive)
        if isinstance(ev, aspp.OutputQueueQuery):
            return aspp.encode_queue_count(ev.code, port.channel.output_waiting())
        if isinstance(ev, aspp.InputQueueQuery):
            return aspp.encode_queue_count(ev.code, port.channel.input_waiting())
        if isinstance(ev, aspp.SetBaud):
            if not control:
                return ok(ev.code)  # [P]: a data tunnel accepts any speed without a range check
            if not 50 <= ev.baud <= port.max_baud or not port.apply_baud(ev.baud):
                return aspp.encode_na(ev.code)
            return ok(ev.code)
        if isinstance(ev, aspp.Ioctl):
            if control:
                port.apply_line(ev.baud_index, ev.mode, flow=None)
            return ok(ev.code)
        if isinstance(ev, aspp.FlowControl):
            if control:
                port.apply_flow(ev)
            return ok(ev.code)
        if isinstance(ev, aspp.LineControl):
            if control:
                port.channel.set_dtr(ev.dtr)
                port.channel.set_rts(ev.rts)
            return ok(ev.code)
        if isinstance(ev, aspp.XonXoffChars):
            if control:
                port.channel.set_xon_xoff_chars(ev.xon, ev.xoff)
            return ok(ev.code)
        if isinstance(ev, aspp.Flush):
            if port.exclusive:  # [P]: never with several hosts, even with driver control
                self._flush(ev.mode)
            return ok(ev.code)
        if isinstance(ev, (aspp.StartBreak, aspp.StopBreak)):
            if control:
                port.channel.set_break(isinstance(ev, aspp.StartBreak))
            return ok(ev.code)
        if isinstance(ev, aspp.TimedBreak):
            if not ev.in_range:
                return b""  # [P]: out of range gets no reply
            if control and port.channel.set_break(True):
                port.clock.callLater(ev.ms / 1000, port.channel.set_break, False)
            return ok(ev.code)
        if isinstance(ev, aspp.TxFifo):
            return ok(ev.code)  # a Linux UART FIFO is not switchable from user space
        if isinstance(ev, (aspp.SetXon, aspp.SetXoff)):
            if control:
                port.channel.set_output_suspended(isinstance(ev, aspp.SetXoff))
            return ok(ev.code)
        if isinstance(ev, aspp.DsrSensitivity):
            return ok(ev.code)  # a stub in MOXA's device code too
        if isinstance(ev, aspp.PortReset):
            return ok(ev.code) if ev.valid and control else b""
        if isinstance(ev, aspp.FlushStart):
            if not port.exclusive:  # [P]: answered with zeros, no flush state
                return aspp.encode_flush_start_done(0)
            self._flush(ev.mode)
            self.flushing = True
            assert self.pair is not None
            return aspp.encode_flush_start_done(self.pair.unread())
        if isinstance(ev, aspp.FlushStop):
            self.flushing = False
            return ok(ev.code)
        if isinstance(ev, aspp.BreakCountQuery):
            count, self._breaks = self._breaks, 0
            return aspp.encode_break_count(count)
        if isinstance(ev, aspp.DataStatusQuery):
            bits, self._error_bits = self._error_bits, 0
            return aspp.encode_data_status(bits)
        if isinstance(ev, aspp.HostName):
            self.host_name = ev.payload
            self._log.info("{channel}: host {peer} names itself {name!r}", channel=port.channel.name,
                           peer=self.peer, name=ev.payload)
            return ok(ev.code) if port.options.answer_host_name else b""
        if isinstance(ev, aspp.MalformedRequest):
            self._log.warn("{channel}: ASPP 0x{code:02X} from {peer} has a wrong length ({n}); "
                           "ignored without reply", channel=port.channel.name, code=ev.code,
                           peer=self.peer, n=len(ev.payload))
            return b""
        self._log.info("{channel}: unsupported ASPP 0x{code:02X} from {peer}; no reply",
                       channel=port.channel.name, code=ev.code, peer=self.peer)
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
        delta = _msr_delta(self._msr_sent, state) | self._msr_delta
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


class DataProtocol(AdmittedSession):
    """The data connection of one pair: raw bytes to and from the serial device."""

    _log = Logger()

    def __init__(self, port: RealComPort) -> None:
        super().__init__(port.data_gate)
        self.port = port
        self.pair: Pair | None = None

    def claim(self) -> str | None:
        self.pair = self.port.take_slot("data", self)
        return None if self.pair is not None else f"max connection {self.port.ctx.operating.max_connection}"

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

    def closed(self, reason: Failure) -> None:
        if self.pair is not None:
            self.port.data_lost(self.pair)
            self.pair = None


class RealComPort:
    """The Real COM front-end of one serial port: slots, pairing, shared line state."""

    _log = Logger()

    def __init__(self, ctx: PortContext, options: RealComOptions | None = None) -> None:
        self.ctx = ctx
        self.channel: SerialChannel = ctx.channel
        self.clock = ctx.reactor
        self.options = options or RealComOptions()
        self.slots: list[Pair | None] = [None] * ctx.operating.max_connection
        self.max_baud = 4_000_000
        # Slots, not the gates, count connections (a retired pair frees its
        # slot before its other connection has finished closing).
        self.data_gate = ctx.gate("data connection", limited=False, inactivity=False)
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

    def take_slot(self, kind: str, proto: CommandProtocol | DataProtocol) -> Pair | None:
        """Put C{proto} in the first slot whose C{kind} side is free (arrival order)."""
        for i, pair in enumerate(self.slots):
            if pair is None:
                pair = self.slots[i] = Pair(self, i)
            if getattr(pair, kind) is None:
                setattr(pair, kind, proto)
                return pair
        return None

    def _retire(self, pair: Pair) -> None:
        """
        A pair whose first connection is gone is finished: free its slot at
        once, so a host reconnecting before the other half has finished
        closing gets a fresh pair instead of half of the dying one.
        """
        if self.slots[pair.slot] is pair:
            self.slots[pair.slot] = None

    def data_connected(self, pair: Pair) -> None:
        self.channel.hold()
        pair.touch()
        pair.attached = True
        self.channel.attach(pair)
        self._log.info("{channel}: Real COM data connection from {peer} (slot {slot})",
                       channel=self.channel.name, peer=peer_host(pair.data.transport if pair.data else None),
                       slot=pair.slot)
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

    def command_lost(self, pair: Pair) -> None:
        pair.command = None
        self._retire(pair)
        if pair.data is not None:
            pair.data.transport.loseConnection()

    # -- line state shared by the pairs ----------------------------------------------

    def msr_state(self) -> int:
        if not self.channel.is_open:
            return 0
        return _msr_state(self.channel.modem, self.options.lines_without_modem)

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


def realcom_frontend(ctx: PortContext, options: RealComOptions | None = None) -> service.IService:
    """The services of Real COM mode for one port: data and command listeners."""
    from nport_twisted.config.tls import tls_endpoint_options

    front = service.MultiService()
    port = RealComPort(ctx, options)
    data_port = ctx.operating.data_port or realcom_data_port(ctx.index)
    cmd_port = ctx.operating.command_port or realcom_command_port(ctx.index)
    data_desc = ctx.endpoint("tcp", data_port)
    if ctx.operating.secure:
        data_desc = "ssl" + data_desc[3:] + tls_endpoint_options(ctx.state_dir)
    ListenerService(ctx.reactor, data_desc, SessionFactory(port.data_gate, lambda: DataProtocol(port)),
                    ctx.net, ctx.index).setServiceParent(front)
    ListenerService(ctx.reactor, ctx.endpoint("tcp", cmd_port),
                    SessionFactory(port.command_gate, lambda: CommandProtocol(port)),
                    ctx.net, ctx.index).setServiceParent(front)
    front.realcom = port  # type: ignore[attr-defined]
    return front


class CommandOnlyPair(Pair):
    """
    A command connection with no data connection of its own: TCP Server
    mode's command port (966+n-1), used by MOXA's IP-Serial library and
    drivers to control a port whose data flows on the TCP Server port.
    """

    @property
    def data_ready(self) -> bool:
        return True

    def close(self) -> None:
        if self.command is not None and self.command.transport is not None:
            self.command.transport.loseConnection()


class TcpServerCommandPort(RealComPort):
    """
    The ASPP command port of a TCP Server mode port.  Requests apply to the
    channel as in Real COM mode (full control with max connection 1 or
    "allow driver control"); NOTIFY reports its modem lines.  The device
    stays open (TCP Server keeps it open), so nothing is held or released.
    """

    def take_slot(self, kind: str, proto: CommandProtocol | DataProtocol) -> Pair | None:
        if kind != "command" or not isinstance(proto, CommandProtocol):
            return None
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


def tcp_server_command_listener(ctx: PortContext, options: RealComOptions | None = None) -> ListenerService:
    """The command port listener of TCP Server mode (966+n-1 unless configured)."""
    port = TcpServerCommandPort(ctx, options)
    cmd_port = ctx.operating.command_port or realcom_command_port(ctx.index)
    return ListenerService(ctx.reactor, ctx.endpoint("tcp", cmd_port),
                           SessionFactory(port.command_gate, lambda: CommandProtocol(port)),
                           ctx.net, ctx.index)
