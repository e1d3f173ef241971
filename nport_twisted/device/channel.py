# -*- test-case-name: tests.test_channel -*-
"""
The serial channel core: one per serial port.

A L{SerialChannel} owns the serial device (through an injectable opener),
its settings, modem lines, statistics, data packing and the multiplexer that
connects it to the front-ends (TCP Server connections, Real COM pairs, …).
Front-ends implement L{IChannelSession} and attach themselves.

Data paths and backpressure:

  serial → network: SerialPort → packing → every attached session.  A
  session whose transport is full reports itself jammed; with "ignore
  jammed IP" it is skipped (its data dropped and counted), otherwise the
  serial reader is paused until every session drains.  Either way memory
  stays bounded.

  network → serial: sessions call L{SerialChannel.write}; bytes are queued
  to the device in arrival order (FIFO).  When the device's write buffer is
  full the SerialPort pauses us and we pause reading from every session.

The device may be missing at start or vanish (USB unplug): the channel logs
once, retries with backoff on the injected clock and reopens with the same
settings; sessions are told and stay connected.
"""

from __future__ import annotations

import errno
from typing import Any, Callable

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from nport_twisted._txinternals import (BufferProducer, chained, direct_writer, fast_io, slow_io,
                                        write_now)
from nport_twisted.config.settings import SerialSettings
from nport_twisted.device.adapter import (
    ISerialControl,
    Opener,
    SerialHandle,
    describe_open_error,
    device_present,
)
from nport_twisted.device.locks import DeviceBusy
from nport_twisted.events import DeviceStateChanged, EventPublisher, ModemLineChanged
from nport_twisted.device.lines import LineCounters, LineEvents, ModemLines
from nport_twisted.device.portbuffer import BufferSpec, PortBuffer, open_buffer
from nport_twisted.wire.packing import Packer, PackingConfig

# Front-ends take the line-state values from here, never from the device adapter.
__all__ = ["ChannelStats", "IChannelSession", "LineCounters", "LineEvents", "ModemLines",
           "SerialChannel"]


class IChannelSession(Interface):
    """A front-end attached to a serial channel: one connection or peer."""

    def serial_data(data: bytes) -> None:
        """Bytes from the serial device (after packing) for this peer."""

    def modem_lines_changed(old: ModemLines, new: ModemLines) -> None:
        """CTS/DSR/RI/DCD changed on the device."""

    def line_errors(events: LineEvents) -> None:
        """The device reported parity/framing/overrun errors or a break."""

    def device_state_changed(available: bool) -> None:
        """The serial device vanished (False) or was (re)opened (True)."""

    def pause_input() -> None:
        """Stop reading from the network: the serial device is not keeping up."""

    def resume_input() -> None:
        """Resume reading from the network."""

    def abort() -> None:
        """
        Drop the connection(s) of this peer at once: it failed, or the port's
        operating mode changed.  The channel has already detached it.
        """


@attrs.define
class ChannelStats:
    """Counters of one port, for the monitor pages and the JSON API."""

    serial_rx_bytes: int = 0  # read from the device
    serial_tx_bytes: int = 0  # written to the device
    serial_rx_dropped: int = 0  # device bytes not delivered to a jammed/absent peer
    serial_tx_dropped: int = 0  # network bytes dropped while the device was absent
    frames: int = 0  # packed frames sent to the network
    parity_errors: int = 0
    framing_errors: int = 0
    overrun_errors: int = 0
    breaks: int = 0
    connections_total: int = 0
    connections_active: int = 0
    opens: int = 0
    open_failures: int = 0


class _SerialProtocol(Protocol):
    """Receives the SerialPort's events; never lets an exception out (style.md §2.13)."""

    def __init__(self, channel: SerialChannel) -> None:
        self._channel = channel

    def dataReceived(self, data: bytes) -> None:
        try:
            self._channel._serial_received(data)
        except Exception:
            self._channel._log.failure("{channel}: error handling serial data", channel=self._channel.name)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self._channel._serial_lost(self, reason)


def _retry_until(error: Exception) -> str:
    """What the open retries wait for, in words."""
    if isinstance(error, DeviceBusy):
        return "until it is free"
    code = getattr(error, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return "until it appears"
    if code in (errno.EACCES, errno.EPERM):
        return "(give this user access: its group, e.g. dialout, or a udev rule)"
    return "with backoff"


_BACKOFF_START = 0.5
_BACKOFF_MAX = 5.0


class SerialChannel(service.Service):
    """
    One serial port and everything attached to it.

    @param keep_open: open the device at start and keep it open (TCP Server
        and most modes); when False it is opened while at least one holder
        calls L{hold} (Real COM opens on the first data connection).
    """

    _log = Logger()

    def __init__(self, index: int, device: str, settings: SerialSettings, clock: IReactorTime,
                 opener: Opener, packing: PackingConfig | None = None, keep_open: bool = True,
                 ignore_jammed: bool = False, modem_poll_interval: float = 0.1,
                 present: Callable[[str], bool] | None = None,
                 presence_interval: float = 2.0,
                 events: EventPublisher | None = None) -> None:
        self.index = index
        self.name = f"port{index + 1}"
        self.device = device
        self.settings = settings  # configured (saved) settings
        self._override: SerialSettings | None = None  # a Real COM host's, until it closes
        self.actual_settings: SerialSettings | None = None
        self.clock = clock
        self._opener = opener
        self._packer = Packer(packing or PackingConfig())
        self._passthrough = self._packer_config_passthrough(packing)
        self.keep_open = keep_open
        self._ignore_jammed = ignore_jammed
        self.modem_poll_interval = modem_poll_interval
        self.stats = ChannelStats()
        self.modem: ModemLines | None = None
        self.dtr = True
        self.rts = True
        self._handle: SerialHandle | None = None
        #: While the device is open on a plain SerialPort: writes it at once and returns True,
        #: or returns False when it cannot (_txinternals.direct_writer).  L{write} tries it
        #: first (the dedicated relay's host-to-device half, for every session).
        self.direct_write: Callable[[bytes], bool] | None = None
        self._protocol: _SerialProtocol | None = None
        self._sessions: list[IChannelSession] = []
        self._jammed: set[IChannelSession] = set()
        self._holders = 0
        self._reader_paused = False
        self._tx_paused = False
        self._retry: IDelayedCall | None = None
        self._backoff = _BACKOFF_START
        self._pack_timer: IDelayedCall | None = None
        self._poller: LoopingCall | None = None
        self._counters: LineCounters | None = None
        self._closing: Deferred[None] | None = None
        self._missing_logged = False
        self.last_error: str | None = None  # why the last open failed (start-up summary, logs)
        self.device_busy = False  # the last open failed because another process holds the device
        # Presence watch (Real COM): the device is closed until a host connects.
        self._present = present if present is not None else device_present
        self.presence_interval = presence_interval
        self._presence_watch = False
        self._presence_loop: LoopingCall | None = None
        self._seen_present: bool | None = None
        self._listeners: list[Callable[[], None]] = []
        # Modem-line and device events for Auto Warning, syslog and the monitor.
        self.events = events if events is not None else EventPublisher(clock)
        # Port buffering: serial input kept while no session takes data.
        self._buffer: PortBuffer | None = None
        self._buffer_spec: BufferSpec | None = None
        self._drain_to: IChannelSession | None = None  # the session the buffer goes to now
        self._drain_call: IDelayedCall | None = None
        self._buffer_full_logged = False

    # -- lifecycle ------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        if self._wanted():  # keep_open, or a holder arrived before the service started
            self._try_open()
        self._update_presence_loop()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._cancel_retry()
        self._update_presence_loop()
        return self._close()

    # -- presence of a device kept closed (Real COM) ----------------------------

    def set_presence_watch(self, on: bool) -> None:
        """
        Log when the device, while closed, appears or goes away (Real COM
        opens it only when a host connects, so nothing else would notice).
        The state at start is the start-up summary's to report.
        """
        self._presence_watch = on
        self._update_presence_loop()

    def _update_presence_loop(self) -> None:
        want = self._presence_watch and bool(self.running)
        if want and self._presence_loop is None:
            self._seen_present = self._probe()
            loop = LoopingCall(self._check_presence)
            loop.clock = self.clock
            loop.start(self.presence_interval, now=False).addErrback(
                lambda f: self._log.failure("{channel}: presence check failed", f, channel=self.name))
            self._presence_loop = loop
        elif not want and self._presence_loop is not None:
            if self._presence_loop.running:
                self._presence_loop.stop()
            self._presence_loop = None

    def _probe(self) -> bool | None:
        try:
            return self._present(self.device)
        except Exception:
            return None

    def _check_presence(self) -> None:
        if self._handle is not None:  # open: a loss is the serial protocol's to report
            self._seen_present = True
            return
        now = self._probe()
        if now is None or now == self._seen_present:
            return
        self._seen_present = now
        if now:
            self._log.info("{channel}: {device} appeared; it is opened when a host connects",
                           channel=self.name, device=self.device)
        else:
            self._log.warn("{channel}: {device} is gone; hosts are refused until it returns",
                           channel=self.name, device=self.device)

    @property
    def is_open(self) -> bool:
        return self._handle is not None

    @property
    def control(self) -> ISerialControl | None:
        return self._handle.control if self._handle is not None else None

    def set_keep_open(self, keep: bool) -> Deferred[None]:
        """Change whether the device stays open without holders; opens or closes it now."""
        self.keep_open = keep
        if self._wanted():
            if self._handle is None and self._retry is None:
                self._try_open()
            return succeed(None)
        self._cancel_retry()
        return self._close()

    def hold(self) -> None:
        """A front-end needs the device open (Real COM data connection)."""
        self._holders += 1
        if self._handle is None and self.running:
            self._try_open()

    def release(self) -> Deferred[None]:
        """
        The front-end no longer needs it; the last release closes it unless
        kept open.  Kept open (Real COM with port buffering), the last host's
        session ends as a close would end it: the configured settings return
        and DTR/RTS go back on.
        """
        self._holders = max(0, self._holders - 1)
        if self._holders == 0 and not self.keep_open:
            self._cancel_retry()
            return self._close()
        if self._holders == 0 and self._override is not None:
            self.clear_override()
            self.set_dtr(True)
            self.set_rts(True)
        return succeed(None)

    def _wanted(self) -> bool:
        return bool(self.running) and (self.keep_open or self._holders > 0)

    def _try_open(self) -> None:
        # Called by the retry timer or directly (hold, set_keep_open): either
        # way no second retry may stay scheduled.
        self._cancel_retry()
        if self._handle is not None or not self._wanted():
            return
        protocol = _SerialProtocol(self)
        try:
            handle = self._opener(protocol, self.device, self.effective_settings)
        except Exception as e:  # SerialException, OSError, termios.error: all "not now"
            self._open_failed(e)
            return
        try:
            # A device unplugged right after open fails here (EIO): close it
            # and retry rather than raise out of startService or the timer.
            actual = self._apply_settings(handle.control, self.effective_settings)
            handle.control.set_dtr(self.dtr)
            handle.control.set_rts(self.rts)
            modem = handle.control.modem_lines()
            counters = handle.control.line_counters()
        except Exception as e:
            try:
                handle.transport.loseConnection()
            except Exception:
                pass
            self._open_failed(e)
            return
        self._protocol = protocol
        self._handle = handle
        self._backoff = _BACKOFF_START
        self.stats.opens += 1
        self._missing_logged = False
        self.last_error = None
        self.device_busy = False
        self.actual_settings = actual
        # The device's write buffer filling pauses reading from every session.
        handle.transport.registerProducer(BufferProducer(self._set_tx_paused), True)
        # Fewer layers per read where the reactor offers it (_reactor.FastEPollReactor).
        fast_io(self.clock, handle.transport, self._fast_serial)
        self.direct_write = direct_writer(handle.transport)
        if self._reader_paused:
            handle.transport.pauseProducing()
        self.modem = modem
        self._counters = counters
        if self.modem is not None or self._counters is not None:
            self._poller = LoopingCall(self._poll_lines)
            self._poller.clock = self.clock
            self._poller.start(self.modem_poll_interval, now=False).addErrback(
                lambda f: self._log.failure("{channel}: modem poll failed", f, channel=self.name))
        self._log.info("{channel}: opened {device} at {baudrate} {bytesize}{parity}{stopbits:g}",
                       channel=self.name, device=self.device, baudrate=self.actual_settings.baudrate,
                       bytesize=self.actual_settings.bytesize,
                       parity=self.actual_settings.parity.value, stopbits=self.actual_settings.stopbits)
        self._broadcast(lambda s: s.device_state_changed(True))
        self.events.publish(DeviceStateChanged(self.index + 1, self.device, True))
        self._changed()

    def _open_failed(self, error: Exception) -> None:
        self.stats.open_failures += 1
        self.last_error = describe_open_error(error)
        self.device_busy = isinstance(error, DeviceBusy)
        if not self._missing_logged:
            self._missing_logged = True
            self._log.warn("{channel}: cannot open {device} ({error}); retrying {until}",
                           channel=self.name, device=self.device, error=self.last_error,
                           until=_retry_until(error))
        self._schedule_retry()

    def _apply_settings(self, control: ISerialControl, settings: SerialSettings) -> SerialSettings:
        try:
            return control.apply(settings)
        except Exception:
            self._log.failure("{channel}: applying settings failed", channel=self.name)
            return settings

    def _schedule_retry(self) -> None:
        if self._retry is None and self._wanted():
            self._retry = self.clock.callLater(self._backoff, self._try_open)
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _close(self) -> Deferred[None]:
        if self._handle is None:
            return succeed(None)
        if self._closing is None:
            self._closing = Deferred()
            self._flush_packer()
            # A FileDescriptor whose streaming producer is paused resumes it
            # instead of closing once its buffer drains: unregister first.
            self._handle.transport.unregisterProducer()
            self._handle.transport.loseConnection()
        return chained(self._closing)

    def _serial_lost(self, protocol: _SerialProtocol, reason: Failure) -> None:
        if protocol is not self._protocol:
            return
        self._stop_poller()
        self._flush_packer()  # what was received before the loss still goes out
        if self._handle is not None:
            slow_io(self.clock, self._handle.transport)
        self._handle = None
        self.direct_write = None
        self._protocol = None
        self.modem = None
        self._counters = None
        self.actual_settings = None
        self._set_tx_paused(False)  # no device buffer is holding the sessions back any more
        closing, self._closing = self._closing, None
        if closing is not None:  # an orderly close ends the host's session settings
            self._override = None
            self.dtr = self.rts = True
        if closing is not None:
            self._log.info("{channel}: closed {device}", channel=self.name, device=self.device)
            closing.callback(None)
        else:
            # A hang-up (pty master closed, adapter gone) arrives as a "clean" close.
            why = "hang-up" if reason.check(ConnectionDone) else reason.getErrorMessage()
            self._log.warn("{channel}: {device} vanished ({reason}); reopening when it returns",
                           channel=self.name, device=self.device, reason=why)
            self._missing_logged = True
            self._schedule_retry()
        self._broadcast(lambda s: s.device_state_changed(False))
        self.events.publish(DeviceStateChanged(self.index + 1, self.device, False))
        self._changed()
        if closing is not None and self._wanted() and self._retry is None:
            self._try_open()  # a holder arrived while the close was in progress

    # -- settings ---------------------------------------------------------------

    @property
    def effective_settings(self) -> SerialSettings:
        """The host's settings while a Real COM host set some, else the configured ones."""
        return self._override if self._override is not None else self.settings

    def apply_settings(self, settings: SerialSettings) -> SerialSettings:
        """
        Make C{settings} the configured settings and apply them to the live
        device (unless a Real COM host's own settings are in force); return
        what is in force.
        """
        self.settings = settings
        if self._override is not None:
            return self.actual_settings or self._override
        return self._apply_live(settings)

    def override_settings(self, settings: SerialSettings) -> SerialSettings:
        """
        Settings from a Real COM host (PORT_INIT, SETBAUD …): in force until
        the device is closed, then the configured settings return.
        """
        self._override = settings
        return self._apply_live(settings)

    def clear_override(self) -> SerialSettings:
        """End a host's session settings now: the configured settings return."""
        if self._override is None:
            return self.actual_settings or self.settings
        self._override = None
        return self._apply_live(self.settings)

    def _apply_live(self, settings: SerialSettings) -> SerialSettings:
        if self._handle is not None:
            self.actual_settings = self._apply_settings(self._handle.control, settings)
            self._changed()
            return self.actual_settings
        return settings

    # -- port buffering ---------------------------------------------------------------

    #: Bytes of buffered data handed to a session per reactor turn while it drains.
    DRAIN_PER_TURN = 256 * 1024
    _DRAIN_PIECE = 16 * 1024

    def set_port_buffer(self, spec: BufferSpec | None) -> None:
        """
        Keep serial input while no session takes data (C{spec}), or not
        (None).  The same spec again keeps what is buffered; another one
        replaces the store (a memory store's content is dropped and logged; a
        file keeps its content for when it is used again).
        """
        if spec == self._buffer_spec:
            return
        old, self._buffer = self._buffer, None
        self._buffer_spec = spec
        self._drain_to = None
        if old is not None:
            if old.size and getattr(old, "path", None) is None:
                self._log.warn("{channel}: port buffering changed; {size} buffered bytes dropped",
                               channel=self.name, size=old.size)
                self.stats.serial_rx_dropped += old.size
            old.close()
        if spec is not None:
            self._buffer = open_buffer(spec)
            self._buffer_full_logged = False
        self._changed()

    @property
    def buffered_bytes(self) -> int:
        """Serial bytes kept for the next session (port buffering; the monitor shows it)."""
        return self._buffer.size if self._buffer is not None else 0

    @staticmethod
    def _takes_data(session: IChannelSession) -> bool:
        # A command-only ASPP connection is a session that receives no serial data.
        return bool(getattr(session, "takes_serial_data", True))

    def _keep(self, chunk: bytes) -> None:
        """Into the port buffer; what does not fit is dropped and counted (logged once per fill)."""
        assert self._buffer is not None
        kept = self._buffer.append(chunk)
        if kept < len(chunk):
            self.stats.serial_rx_dropped += len(chunk) - kept
            if not self._buffer_full_logged:
                self._buffer_full_logged = True
                self._log.warn("{channel}: port buffer full ({size} bytes); newer serial input "
                               "is dropped until a host takes it", channel=self.name,
                               size=self._buffer.capacity)

    def _start_drain(self, session: IChannelSession) -> None:
        if (self._buffer is None or not self._buffer.size or self._drain_to is not None
                or not self._takes_data(session)):
            return
        self._drain_to = session
        self._log.info("{channel}: delivering {size} buffered bytes to {session!r}",
                       channel=self.name, size=self._buffer.size, session=session)
        self._drain()

    def _schedule_drain(self) -> None:
        if self._drain_call is None or not self._drain_call.active():
            self._drain_call = self.clock.callLater(0, self._drain)

    def _drain(self) -> None:
        """Hand buffered bytes to their session, oldest first, while it is not jammed."""
        self._drain_call = None
        buffer, session = self._buffer, self._drain_to
        if buffer is None or session is None:
            return
        budget = self.DRAIN_PER_TURN
        while buffer.size and session in self._sessions and session not in self._jammed:
            if budget <= 0:
                self._schedule_drain()  # the rest next turn: other ports get their share
                return
            piece = buffer.peek(min(self._DRAIN_PIECE, budget))
            if not piece:
                break
            buffer.consume(len(piece))
            budget -= len(piece)
            if not self._call(session, lambda s: s.serial_data(piece)):
                break
        if not buffer.size:
            self._drain_to = None
            self._buffer_full_logged = False
            self._changed()

    def set_packing(self, config: PackingConfig) -> None:
        """Replace the packing rules; what the old packer held is sent first."""
        self._flush_packer()
        self._packer = Packer(config)
        self._passthrough = self._packer_config_passthrough(config)

    @staticmethod
    def _packer_config_passthrough(config: PackingConfig | None) -> bool:
        return config is None or config.passthrough

    def set_dtr(self, on: bool) -> bool:
        self.dtr = on
        return self._handle.control.set_dtr(on) if self._handle is not None else False

    def set_rts(self, on: bool) -> bool:
        self.rts = on
        return self._handle.control.set_rts(on) if self._handle is not None else False

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call C{listener} when the open state or settings change (monitor, DSCI)."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:
                self._log.failure("{channel}: change listener failed", channel=self.name)

    # -- sessions -----------------------------------------------------------------

    @property
    def sessions(self) -> tuple[IChannelSession, ...]:
        return tuple(self._sessions)

    def attach(self, session: IChannelSession) -> None:
        """Start delivering serial data and events to C{session}."""
        if session in self._sessions:
            return
        self._sessions.append(session)
        self.stats.connections_total += 1
        self.stats.connections_active = len(self._sessions)
        if self._tx_paused:
            self._call(session, lambda s: s.pause_input())
        self._start_drain(session)
        self._changed()

    def detach(self, session: IChannelSession) -> None:
        """Stop delivering to C{session}; a jam it caused is released."""
        if session not in self._sessions:
            return
        self._sessions.remove(session)
        self.stats.connections_active = len(self._sessions)
        if session is self._drain_to:
            self._drain_to = None  # the rest waits for the next session
        self.set_jammed(session, False)
        self._changed()

    @property
    def ignore_jammed(self) -> bool:
        """"Ignore jammed IP": skip a jammed session instead of pausing the serial reader."""
        return self._ignore_jammed

    @ignore_jammed.setter
    def ignore_jammed(self, value: bool) -> None:
        self._ignore_jammed = value
        self._update_reader()  # a session jammed under the old rule may now be skipped

    def close_sessions(self) -> None:
        """Detach every session and close its connection (the port's mode changed)."""
        for session in list(self._sessions):
            self.detach(session)
            try:
                session.abort()
            except Exception:
                self._log.failure("{channel}: closing {session!r} failed", channel=self.name,
                                  session=session)

    def set_jammed(self, session: IChannelSession, jammed: bool) -> None:
        """
        A session's transport buffer filled (True) or drained (False).
        Without "ignore jammed IP" the serial reader waits for it.
        """
        if jammed and session in self._sessions:
            self._jammed.add(session)
        else:
            self._jammed.discard(session)
            if session is self._drain_to:
                self._schedule_drain()
        self._update_reader()

    def _update_reader(self) -> None:
        pause = bool(self._jammed) and not self.ignore_jammed
        if pause == self._reader_paused:
            return
        self._reader_paused = pause
        if self._handle is not None:
            if pause:
                self._handle.transport.pauseProducing()
            else:
                self._handle.transport.resumeProducing()

    def _call(self, session: IChannelSession, fn: Callable[[IChannelSession], Any]) -> bool:
        """Deliver to one session; its failure detaches it, never the device."""
        try:
            fn(session)
            return True
        except Exception:
            self._failed(session)
            return False

    def _failed(self, session: IChannelSession) -> None:
        """C{session} raised (inside an C{except} block): log it, detach it, drop it."""
        self._log.failure("{channel}: session {session!r} failed; detaching it",
                          channel=self.name, session=session)
        self.detach(session)
        try:
            session.abort()
        except Exception:
            pass  # already logged why it goes; its transport is beyond help

    def _broadcast(self, fn: Callable[[IChannelSession], Any]) -> None:
        for session in list(self._sessions):
            self._call(session, fn)

    # -- serial → network ---------------------------------------------------------

    def _serial_received(self, data: bytes) -> None:
        self.stats.serial_rx_bytes += len(data)
        if self._passthrough:  # no packing rule: straight to the sessions (the hot path)
            if data:
                self._deliver(data)
            return
        for chunk in self._packer.feed(data, self.clock.seconds()):
            self._deliver(chunk)
        self._schedule_pack_timer()

    def _fast_serial(self, data: bytes) -> None:
        """
        A read of the device through the reactor's fast reader: the common
        case (one unjammed session, no packing) straight to the session;
        everything else as L{_SerialProtocol.dataReceived} would do it.
        """
        sessions = self._sessions
        # The same conditions as _deliver's short path, plus no packing: with port
        # buffering on, a lone session may take no data (a command-only ASPP
        # connection) or still be draining the buffer, so the general path decides.
        if (len(sessions) == 1 and self._passthrough and not self._jammed
                and self._buffer is None):
            stats = self.stats
            stats.serial_rx_bytes += len(data)
            stats.frames += 1
            session = sessions[0]
            try:
                # The dedicated relay (a raw session's direct send), else the session's own.
                direct = getattr(session, "direct_serial_data", None)
                if direct is None or not direct(data):
                    session.serial_data(data)
            except Exception:
                self._failed(session)
            return
        protocol = self._protocol
        if protocol is not None:
            protocol.dataReceived(data)

    def _deliver(self, chunk: bytes) -> None:
        self.stats.frames += 1
        sessions = self._sessions
        if len(sessions) == 1 and not self._jammed and self._buffer is None:
            # One peer, not jammed, no port buffering (the common case): no copy
            # of the list, no closure.  Everything else takes the general loop.
            session = sessions[0]
            try:
                session.serial_data(chunk)
            except Exception:
                self._failed(session)
            return
        buffer = self._buffer
        if buffer is not None:
            takers = [s for s in sessions if self._takes_data(s)]
            if not takers or self._drain_to is not None:
                # Nobody takes data, or the buffer is still going to its session:
                # behind what is buffered, in order.
                self._keep(chunk)
            sessions = [s for s in takers if s is not self._drain_to]
        elif not sessions:
            self.stats.serial_rx_dropped += len(chunk)
            return
        for session in list(sessions):
            if session in self._jammed and self.ignore_jammed:
                self.stats.serial_rx_dropped += len(chunk)
                continue
            self._call(session, lambda s: s.serial_data(chunk))

    def _schedule_pack_timer(self) -> None:
        deadline = self._packer.next_deadline()
        if self._pack_timer is not None and self._pack_timer.active():
            if deadline is not None and self._pack_timer.getTime() == deadline:
                return
            self._pack_timer.cancel()
        self._pack_timer = None
        if deadline is not None:
            delay = max(0.0, deadline - self.clock.seconds())
            self._pack_timer = self.clock.callLater(delay, self._pack_timeout)

    def _pack_timeout(self) -> None:
        self._pack_timer = None
        try:
            for chunk in self._packer.poll(self.clock.seconds()):
                self._deliver(chunk)
            self._schedule_pack_timer()
        except Exception:
            self._log.failure("{channel}: packing timer failed", channel=self.name)

    def _flush_packer(self) -> None:
        if self._pack_timer is not None and self._pack_timer.active():
            self._pack_timer.cancel()
        self._pack_timer = None
        rest = self._packer.flush()
        if rest:
            self._deliver(rest)

    # -- network → serial -----------------------------------------------------------

    def write(self, data: bytes) -> bool:
        """
        Queue C{data} for the device, after what other sessions queued
        before (FIFO).  Returns False (and counts the bytes as dropped)
        when the device is not open.
        """
        direct = self.direct_write
        if direct is not None and direct(data):  # plain and idle: sent at once, nothing queued
            self.stats.serial_tx_bytes += len(data)
            return True
        if self._handle is None:
            self.stats.serial_tx_dropped += len(data)
            return False
        self.stats.serial_tx_bytes += len(data)
        write_now(self._handle.transport, data)
        return True

    def _set_tx_paused(self, paused: bool) -> None:
        if paused == self._tx_paused:
            return
        self._tx_paused = paused
        if paused:
            self._broadcast(lambda s: s.pause_input())
        else:
            self._broadcast(lambda s: s.resume_input())

    # -- control pass-through ---------------------------------------------------------

    def output_waiting(self) -> int:
        """Bytes queued towards the device and not yet sent."""
        return self._handle.control.output_waiting() if self._handle is not None else 0

    def input_waiting(self) -> int:
        return self._handle.control.input_waiting() if self._handle is not None else 0

    def flush_output(self) -> None:
        if self._handle is not None:
            self._handle.control.reset_output()

    def set_output_suspended(self, suspended: bool) -> bool:
        """Hold or resume transmission as if XOFF/XON was received (ASPP 0x34/0x33)."""
        return self._handle.control.set_output_suspended(suspended) if self._handle is not None else False

    def set_break(self, on: bool) -> bool:
        return self._handle.control.set_break(on) if self._handle is not None else False

    def set_xon_xoff_chars(self, xon: int, xoff: int) -> bool:
        return self._handle.control.set_xon_xoff_chars(xon, xoff) if self._handle is not None else False

    def flush_input(self) -> None:
        """Discard received bytes not yet delivered (device queue and packing buffer)."""
        self._packer.flush()
        if self._handle is not None:
            self._handle.control.reset_input()

    # -- modem lines and line events ----------------------------------------------------

    def _poll_lines(self) -> None:
        try:
            self._sample_lines()
        except Exception as e:  # EIO while the device goes away: the reader will notice
            self._log.info("{channel}: modem line poll failed ({error}); stopping it",
                           channel=self.name, error=e)
            self._stop_poller()

    def _sample_lines(self) -> None:
        handle = self._handle
        if handle is None:
            return
        if self.modem is not None:
            new = handle.control.modem_lines()
            if new is not None and new != self.modem:
                old, self.modem = self.modem, new
                self._broadcast(lambda s: s.modem_lines_changed(old, new))
                for line in ("dcd", "dsr", "cts", "ri"):
                    if getattr(old, line) != getattr(new, line):
                        self.events.publish(ModemLineChanged(self.index + 1, line,
                                                             bool(getattr(new, line))))
        if self._counters is not None:
            counters = handle.control.line_counters()
            if counters is not None and counters != self._counters:
                prev, self._counters = self._counters, counters
                events = LineEvents.between(prev, counters)
                self.stats.parity_errors += events.parity
                self.stats.framing_errors += events.framing
                self.stats.overrun_errors += events.overrun + events.buffer_overrun
                self.stats.breaks += events.breaks
                if events:
                    self._broadcast(lambda s: s.line_errors(events))
        if self.modem is None and self._counters is None:
            self._stop_poller()

    def _stop_poller(self) -> None:
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
