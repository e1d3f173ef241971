# -*- test-case-name: tests.test_realtty_relay -*-
"""
One remote Real COM port as a local tty: the pty on one side, a
L{RealComClient} on the other, and what MOXA's kernel module does in
between (realcom.md §3).

Lifecycle (states of L{RelayState})::

    idle --open--> connecting --connected--> open --close--> closing --> idle
                       |  ^ retry (backoff)    |  ^                  \\-> kept (on_close = keep)
                       |  '-------'           lost  connected              |
                       |                       v    |                     open --> open
                       '--close--> idle     reconnecting --close--> idle

  - open of the tty: connect (command port, then data port) and send the
    open sequence with the tty's current termios (PORT_INIT, SETBAUD,
    XONXOFF, TX_FIFO);
  - every termios change: PORT_INIT (+ SETBAUD) (+ XONXOFF) when the
    resulting settings differ from what the device has; a refused speed
    is put back into the tty's termios, as MOXA's driver does;
  - tcflush -> FLUSH, tcflow -> SETXOFF/SETXON (packet-mode events);
  - last close: what the application wrote is sent, then the drain
    (WAIT_OQUEUE until three zeros, at most closing_wait), FLUSH and the
    disconnect — or, with on_close = keep, the connection stays (DTR/RTS
    dropped if HUPCL) and the next open only repeats the open sequence;
  - a lost connection while the tty is open: reconnect at once, then with
    backoff (1, 2, 4 ... reconnect_max s), each time sending the recovery
    batch in one write (PORT_INIT, SETBAUD, XONXOFF, TX_FIFO, LINECTRL);
    meanwhile the tty is not read, so the application's writes wait
    (while_disconnected = block) — or the tty is hung up and replaced
    (fail), so they fail with EIO;
  - flow control: the pty is not read while the data connection's buffer
    is full, and the data connection is not read while the tty's is.

NOTIFY: the remote modem lines are kept for L{status}; a break received
is inserted into the application's input as NUL (or C{FF 00 00} with
PARMRK, nothing with IGNBRK), as MOXA's driver does.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Any, Protocol as TypingProtocol

import attrs
from automat import TypeMachine, TypeMachineBuilder
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.tools.realcom_client import (
    BaudRateRejected,
    LineSettings,
    Notification,
    RealComClient,
    RealComError,
)
from nport_twisted.tools.realtty.config import (
    OnClose,
    PortConfig,
    TermiosWatch,
    WhileDisconnected,
)
from nport_twisted.tools.realtty.pty import MasterDescriptor, OpenWatcher, PtyPair
from nport_twisted.tools.realtty.termios_map import (
    PacketEvents,
    TermiosState,
    decode_status,
    split_packet,
)
from nport_twisted.wire import aspp

import termios

__all__ = ["PortRelay", "RelayState", "RelayStats"]

#: First delays between reconnect attempts; then doubling up to reconnect_max.
FIRST_RETRY = 1.0
#: How often the open/close watcher checks when inotify is available (a safety net).
WATCH_INTERVAL_INOTIFY = 5.0
#: ... and when it is not (open latency).
WATCH_INTERVAL_POLL = 0.1
#: A service stop waits this long for a graceful close, then aborts.
STOP_CLOSE_TIMEOUT = 5.0


class RelayState(str, enum.Enum):
    """Where a port is: see the module docstring."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    CLOSING = "closing"
    KEPT = "kept"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


class _Inputs(TypingProtocol):
    def tty_opened(self) -> None: "An application opened the tty."
    def tty_closed(self) -> None: "Its last close."
    def connected(self) -> None: "The open sequence or the recovery succeeded."
    def lost(self) -> None: "The connection went away (retry follows)."
    def hung_up(self) -> None: "The connection went away and the tty was hung up."
    def closed(self) -> None: "The close sequence ended (disconnected)."
    def kept(self) -> None: "The close sequence ended, connection kept."
    def stop(self) -> None: "The service stops."


@attrs.define
class _Core:
    state: RelayState = RelayState.IDLE


def _machine() -> TypeMachine[_Inputs, _Core]:
    b = TypeMachineBuilder(_Inputs, _Core)
    st = {s: b.state(s.value) for s in RelayState}
    I, C, O, R, X, K, S = (RelayState.IDLE, RelayState.CONNECTING, RelayState.OPEN,
                           RelayState.RECONNECTING, RelayState.CLOSING, RelayState.KEPT,
                           RelayState.STOPPED)
    every = tuple(RelayState)
    table: list[tuple[Callable[..., None], tuple[RelayState, ...], RelayState | None]] = [
        (_Inputs.tty_opened, (I,), C),
        (_Inputs.tty_opened, (K,), O),
        (_Inputs.tty_opened, (C, O, R, X, S), None),
        (_Inputs.tty_closed, (C, R), I),
        (_Inputs.tty_closed, (O,), X),
        (_Inputs.tty_closed, (I, X, K, S), None),
        (_Inputs.connected, (C, R), O),
        (_Inputs.connected, (I, O, X, K, S), None),
        (_Inputs.lost, (O,), R),
        (_Inputs.lost, (K,), I),
        (_Inputs.lost, (I, C, R, X, S), None),
        (_Inputs.hung_up, (C, O, R), I),
        (_Inputs.hung_up, (I, X, K, S), None),
        (_Inputs.closed, (X, K, O, C, R), I),
        (_Inputs.closed, (I, S), None),
        (_Inputs.kept, (X,), K),
        (_Inputs.kept, (I, C, O, R, K, S), None),
        (_Inputs.stop, every, S),
    ]
    for event, sources, target in table:
        for source in sources:
            end = source if target is None else target
            st[source].upon(event).to(st[end])(_enter(end))
    return b.build()


def _enter(state: RelayState) -> Callable[[_Inputs, _Core], None]:
    def enter(inputs: _Inputs, core: _Core) -> None:
        core.state = state
    return enter


_MACHINE = _machine()


@attrs.define
class RelayStats:
    """Counters shown by C{nport-realtty status}."""

    to_remote: int = 0
    from_remote: int = 0
    connects: int = 0
    reconnects: int = 0
    losses: int = 0
    opens: int = 0
    discarded: int = 0  # bytes dropped because the tty or the server was gone (each logged)
    parity_errors: int = 0
    framing_errors: int = 0
    overruns: int = 0
    breaks: int = 0
    last_error: str = ""


@implementer(IPushProducer)
class _PtyProducer:
    """Registered with the data connection: pauses reading the pty while its buffer is full."""

    def __init__(self, relay: PortRelay) -> None:
        self._relay = relay

    def pauseProducing(self) -> None:
        self._relay._tcp_full(True)

    def resumeProducing(self) -> None:
        self._relay._tcp_full(False)

    def stopProducing(self) -> None:
        self._relay._tcp_full(False)


class PortRelay:
    """
    One configured port.  C{start()} creates the pty and the links;
    C{stop()} closes everything and removes the links.  C{on_change()} is
    called whenever L{status} may have changed; C{on_activity()} for every
    data chunk moved (UDP liveness).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        config: PortConfig,
        *,
        gid: int = -1,
        notifier: Any = None,
        client: RealComClient | None = None,
        pty: PtyPair | None = None,
        on_change: Callable[[], None] | None = None,
        on_activity: Callable[[], None] | None = None,
    ) -> None:
        self._reactor = reactor
        self.config = config
        self.client = client or RealComClient(
            reactor,
            command_timeout=config.command_timeout,
            closing_wait=config.closing_wait,
            connect_timeout=config.connect_timeout,
            fifo=config.fifo_value,
        )
        self.client.on_data = self._from_remote
        self.client.on_notify = self._notified
        self.client.on_lost = self._lost
        self.client.auto_reconnect = False
        self.pty = pty or PtyPair(
            config.links, config.mode, gid, extproc=config.termios_watch is TermiosWatch.EXTPROC)
        self.master = MasterDescriptor(reactor, self.pty, self._packet, self._tty_hangup,
                                       self._tty_full)
        self.watcher = OpenWatcher(
            reactor, self._check_tty,
            WATCH_INTERVAL_INOTIFY if notifier is not None else WATCH_INTERVAL_POLL, notifier)
        self.on_change = on_change
        self.on_activity = on_activity
        self.dtr, self.rts = config.dtr, config.rts
        self.stats = RelayStats()
        self.tty_open = False
        self.since = 0.0
        self._core = _Core()
        self._life = _MACHINE(self._core)
        self._wanted: LineSettings | None = None
        self._applying = False
        self._termios_loop: LoopingCall | None = None
        self._retry: IDelayedCall | None = None
        self._attempt = 0
        self._tcp: Any = None  # the data transport our producer is registered with
        self._tcp_paused_by: set[str] = set()  # why we paused reading the data connection
        self._tcp_is_full = False
        self._busy: Deferred[Any] | None = None  # the open/recovery/close in progress
        self._failed_target: LineSettings | None = None
        self._orphan_deadline: float | None = None  # closed, bytes unsent, still connecting

    def __repr__(self) -> str:
        return f"<PortRelay {self.config.link} {self.state.value}>"

    @property
    def state(self) -> RelayState:
        return self._core.state

    # -- service -------------------------------------------------------------------

    def start(self) -> None:
        """Create the pty and links and start watching for an open."""
        self.pty.open()
        self.since = self._reactor.seconds()
        self.watcher.start(self.pty.slave_path)
        self._log.info("{link} -> {pty}: Real COM {server}{tls}", link=self.config.link,
                       pty=self.pty.slave_path, server=self.config.server,
                       tls=" (TLS)" if self.config.tls else "")
        self._changed()

    def stop(self) -> Deferred[None]:
        """Close the connection (drain at most a few seconds), hang up the tty, remove the links."""
        self._cancel_retry()
        self._stop_termios_loop()
        self.watcher.stop()
        self.master.stop()
        self._set_state(_Inputs.stop)
        d: Deferred[None]
        if self.client.connected or self.client.state != "closed":
            d = self.client.close()
            d.addTimeout(STOP_CLOSE_TIMEOUT, self._reactor)
            d.addErrback(lambda f: self.client.abort())
            d.addErrback(lambda f: None)
        else:
            d = succeed(None)

        def done(_: object) -> None:
            self.pty.close()

        return d.addCallback(done)

    def _set_state(self, event: Callable[[_Inputs], None]) -> None:
        before = self.state
        getattr(self._life, event.__name__)()
        if self.state != before:
            self.since = self._reactor.seconds()
            self._log.debug("{link}: {old} -> {new}", link=self.config.link, old=before,
                            new=self.state)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - a status writer must not break the relay
                self._log.failure("status update failed")

    # -- the tty's open and close -------------------------------------------------------

    def _check_tty(self) -> None:
        if self.state is RelayState.STOPPED or self.pty.master is None:
            return
        hung = self.pty.hung_up()
        if not hung and not self.tty_open:
            self._tty_opened()
        elif hung and self.tty_open and not self.master.reading:
            self._tty_closed()
        elif (hung and not self.tty_open and self.state in (RelayState.IDLE, RelayState.KEPT)
              and self.pty.pending()):
            # Opened, written and closed between two checks (echo > tty): a
            # session whose close waits for the data to be sent, as MOXA's does.
            self._tty_opened()
            if self.tty_open:
                self._tty_closed()

    def _tty_hangup(self) -> None:
        # The master said EIO/POLLHUP: everything the application wrote was read.
        if self.tty_open:
            self._tty_closed()

    def _tty_opened(self) -> None:
        if self.state is RelayState.CLOSING:
            return  # checked again when the close sequence ends
        self.tty_open = True
        self._orphan_deadline = None
        self.stats.opens += 1
        self._log.info("{link}: opened", link=self.config.link)
        previous = self.state
        self._set_state(_Inputs.tty_opened)
        self._start_termios_watch()
        if previous is RelayState.IDLE:
            self._attempt = 0
            self._connect()
        elif previous is RelayState.KEPT:
            self._reopen_kept()

    def _tty_closed(self) -> None:
        self.tty_open = False
        self._stop_termios_loop()
        if self.state is RelayState.OPEN:
            # What the application wrote before closing is still in the master.
            for chunk in self.master.drain_input():
                self._packet(chunk)
        self._end_tty_session()
        self._log.info("{link}: closed", link=self.config.link)
        if self.state is RelayState.OPEN:
            self._set_state(_Inputs.tty_closed)
            self._close_sequence()
        elif self.state in (RelayState.CONNECTING, RelayState.RECONNECTING):
            pending = self.pty.pending()
            if (pending and self.config.closing_wait > 0
                    and self.config.while_disconnected is WhileDisconnected.BLOCK):
                # Its close would wait for these bytes to be sent: keep trying for closing_wait.
                self._orphan_deadline = self._reactor.seconds() + self.config.closing_wait
                self._log.info("{link}: closed with {n} bytes not sent yet; trying {server} "
                               "for up to {s:g} s more", link=self.config.link, n=pending,
                               server=self.config.server, s=self.config.closing_wait)
            else:
                self._give_up(f"the tty was closed before {self.config.server} answered")

    def _end_tty_session(self) -> None:
        self.master.stop()
        dropped = self.master.discard_output()
        if dropped:
            self._log.debug("{link}: closed with {n} received bytes unread", link=self.config.link,
                            n=dropped)
        if self.config.termios_watch is TermiosWatch.EXTPROC:
            self._safely(lambda: self.pty.set_extproc(True))  # for the next open

    def _give_up(self, why: str) -> None:
        """The tty is closed and the server unreachable: drop what it wrote, stop trying."""
        self._orphan_deadline = None
        self._cancel_retry()
        self._discard_input(why)
        self._set_state(_Inputs.tty_closed)
        if self._busy is None and (self.client.connected or self.client.state != "closed"):
            self.client.abort()  # (an open in flight is closed when it ends: _close_abandoned)

    def _discard_input(self, why: str) -> None:
        """Read and drop what the application wrote (it closed the tty while disconnected)."""
        count = 0
        for chunk in self.master.drain_input():
            status, data = split_packet(chunk)
            count += len(data)
        if count:
            self.stats.discarded += count
            self._log.warn("{link}: {n} bytes written by the application were not sent: {why}",
                           link=self.config.link, n=count, why=why)

    # -- connecting ---------------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if self.state is not RelayState.CONNECTING or self._busy is not None:
            return  # busy: an abandoned open or a close still running; _after_busy goes on
        settings = self._current_settings()
        self._wanted = settings
        try:
            self._busy = d = self.client.open(
                self._host(), self.config.data_port, self.config.command_port, settings,
                dtr=self.dtr, rts=self.rts, tls=self.config.tls)
        except RealComError as e:  # the previous attempt is still closing
            self._connect_failed(Failure(e))
            return
        d.addCallbacks(self._connect_done, self._connect_failed)

    def _host(self) -> str:
        """The server address, with the interface as scope of an IPv6 link-local one."""
        host, iface = self.config.host, self.config.interface
        if iface and ":" in host and "%" not in host and host.lower().startswith("fe80"):
            return f"{host}%{iface}"
        return host

    def _connect_done(self, client: RealComClient) -> None:
        self._busy = None
        self.stats.connects += 1
        if self.state is not RelayState.CONNECTING:
            self._close_abandoned()
            return
        s = self.client.settings
        self._log.info("{link}: connected to {server}: {baud} {fmt}", link=self.config.link,
                       server=self.config.server, baud=s.baudrate, fmt=_format(s))
        self._set_state(_Inputs.connected)
        self._attach()
        self._orphan_sent()

    def _orphan_sent(self) -> None:
        """Connected for a tty that was closed meanwhile: send what it wrote, then close."""
        if self.tty_open or self._orphan_deadline is None:
            return
        self._orphan_deadline = None
        for chunk in self.master.drain_input():
            self._packet(chunk)
        self._set_state(_Inputs.tty_closed)
        self._close_sequence()

    def _orphan_expired(self, delay: float) -> bool:
        deadline = self._orphan_deadline
        if deadline is None or self._reactor.seconds() + delay <= deadline:
            return False
        self._give_up(f"{self.config.server} did not answer within closing_wait "
                      f"({self.config.closing_wait:g} s) after the close")
        return True

    def _connect_failed(self, f: Failure) -> None:
        self._busy = None
        self.stats.last_error = f.getErrorMessage()
        if self.state is not RelayState.CONNECTING:
            self._after_busy()
            return
        if self.config.while_disconnected is WhileDisconnected.FAIL:
            self._log.warn("{link}: cannot reach {server} ({error}); hanging up the tty",
                           link=self.config.link, server=self.config.server,
                           error=f.getErrorMessage())
            self._hang_up()
            return
        delay = self._next_delay()
        if self._orphan_expired(delay):
            return
        self._log.warn("{link}: cannot reach {server} ({error}); retrying in {s:g} s",
                       link=self.config.link, server=self.config.server,
                       error=f.getErrorMessage(), s=delay)
        self._retry = self._reactor.callLater(delay, self._connect)
        self._changed()

    def _close_abandoned(self) -> None:
        """An open or recovery that finished after the tty was closed: close it again."""
        if self.state is RelayState.STOPPED:
            self.client.abort()
            return
        self._busy = d = self.client.close()
        d.addErrback(self._log_failure, "close")
        d.addBoth(lambda _: self._after_busy())

    def _after_busy(self) -> None:
        """The client is free again: go on with what happened meanwhile."""
        self._busy = None
        if self.state is RelayState.STOPPED:
            return
        if self.state is RelayState.CONNECTING and self._retry is None:
            self._connect()
        elif self.state is RelayState.RECONNECTING and self._retry is None:
            self._recover()
        self._check_tty()

    def _next_delay(self) -> float:
        delay: float = min(FIRST_RETRY * 2.0 ** min(self._attempt, 30), self.config.reconnect_max)
        self._attempt += 1
        return delay

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _attach(self) -> None:
        """Entering OPEN with a (new) connection: producers, reading, catch-up."""
        if self.state is not RelayState.OPEN:
            return
        self._attempt = 0
        self._failed_target = None
        transport: Any = self.client.data_transport
        if transport is not None and transport is not self._tcp:
            self._tcp = transport
            self._tcp_is_full = False
            try:
                transport.registerProducer(_PtyProducer(self), True)
            except RuntimeError:
                pass  # one already registered (a TLS wrapper re-using it)
        self._tcp_paused_by.discard("tty closed")
        self._update_tcp_reading()
        self._catch_up()
        self._update_reading()
        self._check_termios()
        if (self.dtr, self.rts) != (self.client.dtr, self.client.rts):
            self._send(self.client.set_lines(self.dtr, self.rts), "LINECTRL")
        self._changed()

    def _catch_up(self) -> None:
        """
        What the application did before the connection was up: its writes
        go out in order; its tcflush()es are dropped — they discarded
        queues the device did not have yet (pyserial flushes at every open,
        and a late FLUSH would throw away the device's first bytes).
        """
        if not self.tty_open:
            return
        seen_data = False
        for chunk in self.master.drain_input(limit=65536):
            status, data = split_packet(chunk)
            if status is not None and not seen_data:
                events = decode_status(status)
                self._status(PacketEvents(stop=events.stop, start=events.start,
                                          termios_changed=events.termios_changed))
                continue
            seen_data = seen_data or bool(data)
            self._packet(chunk)

    def _update_reading(self) -> None:
        want = (self.state is RelayState.OPEN and self.tty_open and not self._tcp_is_full)
        if want:
            self.master.start_reading()
        else:
            self.master.stop_reading()

    def _tcp_full(self, full: bool) -> None:
        self._tcp_is_full = full
        self._update_reading()

    def _tty_full(self, full: bool) -> None:
        if full:
            self._tcp_paused_by.add("tty full")
        else:
            self._tcp_paused_by.discard("tty full")
        self._update_tcp_reading()

    def _update_tcp_reading(self) -> None:
        transport: Any = self.client.data_transport
        if transport is None:
            return
        try:
            if self._tcp_paused_by:
                transport.pauseProducing()
            else:
                transport.resumeProducing()
        except Exception:  # noqa: BLE001 - a transport that is going away
            pass

    # -- connection loss and recovery ------------------------------------------------------

    def _lost(self, reason: Failure) -> None:
        self.stats.losses += 1
        self.stats.last_error = reason.getErrorMessage()
        self._tcp = None
        self._tcp_is_full = False
        self.master.stop_reading()
        if self.state is RelayState.KEPT:
            self._log.info("{link}: kept connection lost ({error})", link=self.config.link,
                           error=reason.getErrorMessage())
            self._set_state(_Inputs.lost)
            return
        if self.state is not RelayState.OPEN:
            return
        if self.config.while_disconnected is WhileDisconnected.FAIL:
            self._log.warn("{link}: connection to {server} lost ({error}); hanging up the tty",
                           link=self.config.link, server=self.config.server,
                           error=reason.getErrorMessage())
            self._hang_up()
            return
        self._log.warn("{link}: connection to {server} lost ({error}); reconnecting",
                       link=self.config.link, server=self.config.server,
                       error=reason.getErrorMessage())
        self._set_state(_Inputs.lost)
        self._attempt = 0
        self._retry = self._reactor.callLater(0, self._recover)  # at once, as npreal2d does

    def _recover(self) -> None:
        self._retry = None
        if self.state is not RelayState.RECONNECTING or self._busy is not None:
            return
        try:
            self._busy = d = self.client.recover()
        except RealComError as e:
            self._recover_failed(Failure(e))
            return
        d.addCallbacks(self._recovered, self._recover_failed)

    def _recovered(self, client: RealComClient) -> None:
        self._busy = None
        self.stats.reconnects += 1
        if self.state is not RelayState.RECONNECTING:
            self._close_abandoned()
            return
        self._log.info("{link}: reconnected to {server}", link=self.config.link,
                       server=self.config.server)
        self._set_state(_Inputs.connected)
        self._attach()
        self._orphan_sent()

    def _recover_failed(self, f: Failure) -> None:
        self._busy = None
        self.stats.last_error = f.getErrorMessage()
        if self.state is not RelayState.RECONNECTING:
            self._after_busy()
            return
        delay = self._next_delay()
        if self._orphan_expired(delay):
            return
        self._log.info("{link}: reconnect failed ({error}); retrying in {s:g} s",
                       link=self.config.link, error=f.getErrorMessage(), s=delay)
        self._retry = self._reactor.callLater(delay, self._recover)
        self._changed()

    def _hang_up(self) -> None:
        """while_disconnected = fail: the application's tty goes away; a new one takes the links."""
        self._cancel_retry()
        self._stop_termios_loop()
        self._discard_input(f"the connection to {self.config.server} is down")
        self.master.stop()
        self.master.discard_output()
        self.tty_open = False
        try:
            self.pty.renew()
        except OSError as e:
            self._log.error("{link}: cannot make a new tty: {error}", link=self.config.link,
                            error=e)
        self.watcher.watch(self.pty.slave_path)
        self._set_state(_Inputs.hung_up)
        if self._busy is None and (self.client.connected or self.client.state != "closed"):
            self.client.abort()

    def reset_connection(self, reason: str) -> None:
        """Close both connections and reconnect (UDP liveness); only while open."""
        if self.state not in (RelayState.OPEN, RelayState.KEPT):
            return
        self._log.warn("{link}: resetting the connection: {reason}", link=self.config.link,
                       reason=reason)

        def aborted(_: object) -> None:
            self._lost(Failure(RealComError(reason)))  # kept: back to idle; open: reconnect

        self.client.abort().addCallback(aborted)

    # -- close ----------------------------------------------------------------------------

    def _close_sequence(self) -> None:
        self._tcp_paused_by.discard("tty full")  # what the tty did not take is dropped
        self._update_tcp_reading()
        if self.config.on_close is OnClose.KEEP:
            self._busy = d = Deferred.fromCoroutine(self._keep())
        else:
            self._busy = d = self.client.close()
            d.addCallback(lambda _: self._set_state(_Inputs.closed))
        d.addErrback(self._log_failure, "close")
        d.addBoth(self._close_done)

    async def _keep(self) -> None:
        # MOXA's close minus the disconnect; HUPCL drops the lines as the device
        # would when the connection ended.
        await self.client.drain()
        if self.client.connected:
            try:
                await self.client.flush(aspp.FLUSH_BOTH)
                if self._termios().hupcl:
                    await self.client.set_lines(False, False)
            except (RealComError, OSError) as e:
                self._log.info("{link}: close sequence: {error}", link=self.config.link, error=e)
        if self.client.connected:
            self._tcp_paused_by.add("tty closed")  # the device's data waits for the next open
            self._update_tcp_reading()
            self._set_state(_Inputs.kept)
        else:
            self._set_state(_Inputs.closed)

    def _close_done(self, result: object) -> None:
        self._busy = None
        if self.state is RelayState.CLOSING:  # the close failed half-way
            self._set_state(_Inputs.closed)
        self._check_tty()  # opened again meanwhile?

    def _reopen_kept(self) -> None:
        """An open while the connection was kept: the open sequence without connecting."""
        self._tcp_paused_by.discard("tty closed")
        settings = self._current_settings()
        self._wanted = settings

        async def reinit() -> None:
            # As an open: PORT_INIT carries DTR/RTS (dropped at the close by HUPCL).
            self.client.dtr, self.client.rts = self.dtr, self.rts
            await self.client.set_line_settings(settings)
            await self.client.command(aspp.TxFifo(self.config.fifo_value))

        self._busy = d = Deferred.fromCoroutine(reinit())

        def done(_: object) -> None:
            self._busy = None
            self._attach()

        def failed(f: Failure) -> None:
            self._busy = None
            self._log.warn("{link}: open sequence on the kept connection failed ({error})",
                           link=self.config.link, error=f.getErrorMessage())
            self._attach()

        d.addCallbacks(done, failed)

    # -- pty -> server ----------------------------------------------------------------------

    def _packet(self, chunk: bytes) -> None:
        status, data = split_packet(chunk)
        if status is not None:
            self._status(decode_status(status))
            return
        if self._termios_loop is not None:
            self._check_termios()  # polling: catch a change before the data after it
        if not data:
            return
        if self.state in (RelayState.OPEN, RelayState.CLOSING) and self.client.connected:
            try:
                self.client.write(data)
            except RealComError:
                self._dropped(len(data), "the connection is down")
                return
            self.stats.to_remote += len(data)
            self._activity()
        else:
            self._dropped(len(data), "the connection is down")

    def _dropped(self, count: int, why: str) -> None:
        self.stats.discarded += count
        self._log.warn("{link}: {n} bytes written by the application were not sent: {why}",
                       link=self.config.link, n=count, why=why)

    def _status(self, events: PacketEvents) -> None:
        if events.termios_changed:
            self._check_termios()
        connected = self.state is RelayState.OPEN and self.client.connected
        mode = events.flush_mode
        if mode is not None:
            if events.flush_read:
                self.master.discard_output()  # not yet given to the tty: flushed too
            if connected:
                self._send(self.client.flush(mode), "FLUSH")
        if connected and events.stop != events.start:
            if events.stop:
                self._send(self.client.suspend_output(), "SETXOFF")
            else:
                self._send(self.client.resume_output(), "SETXON")
        elif connected and events.stop and events.start:
            self._send(self.client.resume_output(), "SETXON")

    def _send(self, d: Deferred[Any], what: str) -> None:
        d.addErrback(self._log_failure, what)

    def _log_failure(self, f: Failure, what: str) -> None:
        self.stats.last_error = f"{what}: {f.getErrorMessage()}"
        self._log.info("{link}: {what} failed: {error}", link=self.config.link, what=what,
                       error=f.getErrorMessage())
        self._changed()

    # -- termios ------------------------------------------------------------------------------

    def _termios(self) -> TermiosState:
        return self.pty.read_termios()

    def _current_settings(self) -> LineSettings:
        c = self.config
        try:
            return self._termios().line_settings(c.bytesize, c.parity, c.stopbits)
        except OSError:
            return LineSettings(bytesize=c.bytesize, parity=c.parity, stopbits=c.stopbits or 1.0)

    def _start_termios_watch(self) -> None:
        if self.config.termios_watch is TermiosWatch.POLL:
            self._start_termios_loop()

    def _start_termios_loop(self) -> None:
        if self._termios_loop is None:
            self._termios_loop = LoopingCall(self._check_termios)
            self._termios_loop.clock = self._reactor
            self._termios_loop.start(self.config.poll_interval, now=False)

    def _stop_termios_loop(self) -> None:
        if self._termios_loop is not None and self._termios_loop.running:
            self._termios_loop.stop()
        self._termios_loop = None

    def _check_termios(self) -> None:
        if self.pty.master is None or not self.tty_open:
            return
        try:
            state = self._termios()
        except OSError:
            return
        if (self.config.termios_watch is TermiosWatch.EXTPROC and not state.extproc
                and self._termios_loop is None):
            # The application turned EXTPROC off (e.g. stty sane): no more
            # events, so poll until it closes the tty.
            self._log.info("{link}: the application cleared EXTPROC; polling its termios",
                           link=self.config.link)
            self._start_termios_loop()
        c = self.config
        self._wanted = state.line_settings(c.bytesize, c.parity, c.stopbits)
        self._apply_settings()

    def _apply_settings(self) -> None:
        if self._applying or self.state is not RelayState.OPEN or self._wanted is None:
            return
        target = self._wanted
        if target == self.client.settings or target == self._failed_target:
            return
        self._applying = True
        before = self.client.settings
        d = self.client.set_line_settings(target)

        def done(_: object) -> None:
            self._applying = False
            self._log.info("{link}: {baud} {fmt} rtscts={rtscts} ixon={ixon} ixoff={ixoff}",
                           link=self.config.link, baud=target.baudrate,
                           fmt=_format(target), rtscts=target.rtscts, ixon=target.ixon,
                           ixoff=target.ixoff)
            self._changed()
            self._apply_settings()  # changed again meanwhile?

        def failed(f: Failure) -> None:
            self._applying = False
            if f.check(BaudRateRejected):
                # As MOXA's driver: the tty gets back the speed the device keeps, and
                # the device gets the old settings again (PORT_INIT went out already).
                self._log.warn("{link}: {server} refused {baud} baud; the tty stays at {old}",
                               link=self.config.link, server=self.config.server,
                               baud=target.baudrate, old=before.baudrate)
                self._wanted = attrs.evolve(target, baudrate=before.baudrate)
                self._safely(lambda: self.pty.write_termios(
                    self._termios().with_speed(before.baudrate)))
                self._applying = True
                restore = self.client.set_line_settings(self._wanted)

                def restored(_: object) -> None:
                    self._applying = False
                    self._apply_settings()

                restore.addErrback(self._log_failure, "PORT_INIT")
                restore.addBoth(restored)
                return
            self._failed_target = target  # tried again on the next change or connection
            self._log_failure(f, "PORT_INIT")
            self._apply_settings()

        d.addCallbacks(done, failed)

    def _safely(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError as e:
            self._log.info("{link}: termios: {error}", link=self.config.link, error=e)

    # -- server -> pty ----------------------------------------------------------------------------

    def _from_remote(self, data: bytes) -> None:
        self.stats.from_remote += len(data)
        self._activity()
        if self.tty_open and self.state is RelayState.OPEN:
            self.master.write(data)
        else:
            # The tty is closed (closing): like a closed serial port, nobody reads this.
            self._log.debug("{link}: {n} bytes from the server while the tty is closed",
                            link=self.config.link, n=len(data))

    def _notified(self, note: Notification) -> None:
        self.stats.parity_errors += note.parity_error
        self.stats.framing_errors += note.framing_error
        self.stats.overruns += note.overrun
        if note.break_received:
            self.stats.breaks += 1
            self._insert_break()
        self._changed()

    def _insert_break(self) -> None:
        if not (self.tty_open and self.state is RelayState.OPEN):
            return
        try:
            iflag = self._termios().iflag
        except OSError:
            return
        if iflag & termios.IGNBRK:
            return
        self.master.write(b"\xff\x00\x00" if iflag & termios.PARMRK else b"\x00")

    def _activity(self) -> None:
        if self.on_activity is not None:
            self.on_activity()

    # -- control ------------------------------------------------------------------------------

    def set_lines(self, dtr: bool | None = None, rts: bool | None = None) -> Deferred[None]:
        """
        Drive DTR/RTS (a pty has no modem lines: C{nport-realtty set}).  The
        values also hold for the next open and the recovery batch.
        """
        if dtr is not None:
            self.dtr = dtr
        if rts is not None:
            self.rts = rts
        self._changed()
        if self.state in (RelayState.OPEN, RelayState.KEPT) and self.client.connected:
            return self.client.set_lines(self.dtr, self.rts)
        return succeed(None)

    def send_break(self, ms: int) -> Deferred[None]:
        """A break of C{ms} milliseconds (START_BREAK, STOP_BREAK; tcsendbreak is invisible on a pty)."""
        if not (self.state is RelayState.OPEN and self.client.connected):
            raise RealComError(f"{self.config.link} is not open")
        done: Deferred[None] = Deferred()

        def started(_: object) -> None:
            self._reactor.callLater(ms / 1000, lambda: self.client.stop_break().chainDeferred(done))

        self.client.start_break().addCallbacks(started, done.errback)
        return done

    # -- status -------------------------------------------------------------------------------

    @property
    def polled_connected(self) -> bool:
        return self.state in (RelayState.OPEN, RelayState.KEPT) and self.client.connected

    def polled_ports(self) -> tuple[int, int, int, int] | None:
        data, command = self.client.data_transport, self.client.command_transport
        try:
            local_data = data.getHost().port  # type: ignore[union-attr]
            local_command = command.getHost().port  # type: ignore[union-attr]
        except AttributeError:
            return None
        return self.config.data_port, self.config.command_port, local_data, local_command

    def status(self) -> dict[str, Any]:
        """What C{nport-realtty status} shows (JSON-ready)."""
        s = self.client.settings
        m = self.client.modem
        return {
            "link": self.config.link,
            "callout": self.config.callout,
            "pty": self.pty.slave_path,
            "server": self.config.host,
            "data_port": self.config.data_port,
            "command_port": self.config.command_port,
            "tls": self.config.tls,
            "state": self.state.value,
            "since": self.since,
            "tty_open": self.tty_open,
            "baudrate": s.baudrate,
            "format": _format(s),
            "rtscts": s.rtscts,
            "ixon": s.ixon,
            "ixoff": s.ixoff,
            "dtr": self.dtr,
            "rts": self.rts,
            "cts": m.cts,
            "dsr": m.dsr,
            "dcd": m.dcd,
            "ri": m.ri,
            **attrs.asdict(self.stats),
            "pid": os.getpid(),
        }


def _format(s: LineSettings) -> str:
    stop = {1.0: "1", 1.5: "1.5", 2.0: "2"}.get(float(s.stopbits), str(s.stopbits))
    return f"{s.bytesize}{s.parity}{stop}"
