# -*- test-case-name: tests.test_realcom_client -*-
"""
A Real COM (ASPP) client: drive any NPort, or ours, the way MOXA's Linux
driver does (realcom.md §3).

Wire protocol (realcom.md is authoritative):

  command connection (966+n-1): requests ``[cmd][len][payload]`` from us,
      fixed-length replies from the device, one outstanding command at a
      time; unsolicited NOTIFY ``26 ev msr hold`` and POLLING ``27 01 id``
      from the device.  We answer every POLLING at once with ``28 01 id``
      (no reply), as the Linux daemon does.
  data connection (950+n-1): raw serial bytes both ways, optionally TLS
      (no certificate verification, like MOXA's driver).

Open (§3.2): connect the command port, then the data port (to an IPv6 server,
16 bytes on the command connection that must come back first, §6.4); then PORT_INIT
(baud index, or 0xFF followed by SETBAUD for a rate outside the table),
XONXOFF when IXON or IXOFF is on, TX_FIFO.  Each command waits for its reply
(default 10 s, the Linux driver's NPREAL_CMD_TIMEOUT, on the injected clock).

Close (§3.3): WAIT_OQUEUE every 10 ms until three consecutive replies say 0
(bounded by the closing wait, 30 s by default), FLUSH both queues, then close
both connections.  Nothing else is sent: there is no close command.

Reconnect recovery (§3.5): L{RealComClient.recover} reconnects both
connections and sends PORT_INIT (+ SETBAUD) (+ XONXOFF) + TX_FIFO + LINECTRL
in one write; with C{auto_reconnect} this happens by itself after an
unexpected loss, retried every second.

Also a small command line tool bridging stdin/stdout to a port::

    python -m nport_twisted.tools.realcom_client HOST [--data-port N] [--command-port N] [--baud N]
"""

from __future__ import annotations

import enum
import sys
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, Protocol as TypingProtocol

import attrs
from automat import NoTransition, TypeMachine, TypeMachineBuilder
from twisted.internet.defer import Deferred, DeferredQueue, fail, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted._exceptions import NPortError
from nport_twisted._txinternals import fast_io, slow_io, unsent_bytes, write_now
from nport_twisted.wire import aspp

__all__ = [
    "LINUX_DEFAULT",
    "BaudRateRejected",
    "ClientState",
    "CommandFailed",
    "CommandTimeout",
    "LineSettings",
    "ModemState",
    "NotConnected",
    "Notification",
    "RealComClient",
    "RealComError",
    "connect",
    "main",
]

#: The Linux driver's wait for every command reply (NPREAL_CMD_TIMEOUT).
DEFAULT_COMMAND_TIMEOUT = 10.0
#: The Linux driver's default closing wait.
DEFAULT_CLOSING_WAIT = 30.0
#: Gap between two WAIT_OQUEUE requests of the close drain loop.
DRAIN_INTERVAL = 0.01
#: Consecutive "0 bytes queued" replies that end the close drain loop.
DRAIN_ZEROS = 3
#: Delay before retrying a failed reconnect (the Linux daemon: >= 1 s).
RECONNECT_DELAY = 1.0

# --- errors -------------------------------------------------------------------
# (Client-only errors; they live here because nothing else raises them.)


class RealComError(NPortError):
    """A Real COM command or connection failed."""


class NotConnected(RealComError):
    """The port is not open (never opened, closed, or the connection was lost)."""


class CommandTimeout(RealComError):
    """The device did not reply in time (the Linux driver fails the call with EIO)."""


class CommandFailed(RealComError):
    """The device replied, but not what the driver requires (e.g. NA instead of OK)."""


class BaudRateRejected(CommandFailed):
    """PORT_INIT was answered ``2C 03 FF FF FF`` or SETBAUD with NA."""


# --- values -----------------------------------------------------------------------


def _parity(value: str) -> str:
    value = str(value).upper()[:1]
    if value not in ("N", "E", "O", "M", "S"):
        raise ValueError(f"parity must be one of N, E, O, M, S, not {value!r}")
    return value


@attrs.frozen
class LineSettings:
    """
    What a host sets with ``tcsetattr``: speed, character format and flow
    control.  C{ixon}: the device obeys XON/XOFF from the serial side;
    C{ixoff}: the device sends XON/XOFF (realcom.md §4.3).  A baud rate of 0
    is B0 (index 0xFF without SETBAUD).
    """

    baudrate: int = attrs.field(default=9600, validator=attrs.validators.ge(0))
    bytesize: int = attrs.field(default=8, validator=attrs.validators.in_((5, 6, 7, 8)))
    parity: str = attrs.field(default="N", converter=_parity)
    stopbits: float = attrs.field(default=1.0, validator=attrs.validators.in_((1.0, 1.5, 2.0)))
    rtscts: bool = False
    ixon: bool = False
    ixoff: bool = False
    xon_char: int = attrs.field(
        default=0x11, validator=[attrs.validators.ge(0), attrs.validators.le(255)]
    )
    xoff_char: int = attrs.field(
        default=0x13, validator=[attrs.validators.ge(0), attrs.validators.le(255)]
    )

    @property
    def baud_index(self) -> int:
        """The wire baud index (0xFF when a SETBAUD must follow)."""
        return aspp.index_from_baud(self.baudrate)

    @property
    def mode(self) -> aspp.LineMode:
        return aspp.LineMode(self.bytesize, self.parity, self.stopbits)  # type: ignore[arg-type]

    def port_init(self, dtr: bool, rts: bool) -> aspp.PortInit:
        """The PORT_INIT request for these settings and lines."""
        return aspp.PortInit(
            self.baud_index, self.mode, dtr, rts, self.rtscts, self.rtscts, self.ixon, self.ixoff
        )

    def requests(self, dtr: bool, rts: bool) -> list[aspp.Request]:
        """What a ``tcsetattr`` sends: PORT_INIT, then SETBAUD and XONXOFF when needed."""
        out: list[aspp.Request] = [self.port_init(dtr, rts)]
        if self.baud_index == aspp.BAUD_INDEX_CUSTOM and self.baudrate != 0:
            out.append(aspp.SetBaud(self.baudrate))
        if self.ixon or self.ixoff:
            out.append(aspp.XonXoffChars(self.xon_char, self.xoff_char))
        return out


#: The termios of the first open after the Linux module loads: 9600 8N1, IXON.
LINUX_DEFAULT = LineSettings(ixon=True)


def line_settings(
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    rtscts: bool = False,
    xonxoff: bool = False,
    ixon: bool | None = None,
    ixoff: bool | None = None,
    xon_char: int = 0x11,
    xoff_char: int = 0x13,
) -> LineSettings:
    """
    pyserial-style settings: C{xonxoff} sets both IXON and IXOFF unless
    C{ixon}/C{ixoff} say otherwise.
    """
    return LineSettings(
        baudrate,
        bytesize,
        parity,
        stopbits,
        rtscts,
        xonxoff if ixon is None else ixon,
        xonxoff if ixoff is None else ixoff,
        xon_char,
        xoff_char,
    )


@attrs.frozen
class ModemState:
    """The device's input modem lines as last reported."""

    dsr: bool = False
    cts: bool = False
    dcd: bool = False
    ri: bool = False


@attrs.frozen
class Notification:
    """A decoded NOTIFY (realcom.md §5.1)."""

    state: ModemState
    changed: frozenset[str]  # of "cts", "dsr", "ri", "dcd"
    modem_changed: bool
    parity_error: bool
    framing_error: bool
    overrun: bool  # hardware or software (buffer) overrun
    break_received: bool
    hold: int
    raw: aspp.NotifyMessage

    @classmethod
    def decode(cls, msg: aspp.NotifyMessage) -> Notification:
        changed = frozenset(
            name
            for name, on in (
                ("cts", msg.delta_cts),
                ("dsr", msg.delta_dsr),
                ("ri", msg.delta_ri),
                ("dcd", msg.delta_dcd),
            )
            if on
        )
        ev = msg.events
        return cls(
            state=ModemState(dsr=msg.dsr, cts=msg.cts, dcd=msg.dcd, ri=msg.ri),
            changed=changed,
            modem_changed=bool(ev & aspp.EVENT_MODEM),
            parity_error=bool(ev & aspp.EVENT_PARITY),
            framing_error=bool(ev & aspp.EVENT_FRAMING),
            overrun=bool(ev & (aspp.EVENT_HW_OVERRUN | aspp.EVENT_SW_OVERRUN)),
            break_received=bool(ev & aspp.EVENT_BREAK),
            hold=msg.hold,
            raw=msg,
        )


# --- protocols -------------------------------------------------------------------


def _tune(transport: Any) -> None:
    # As the Linux daemon: keep-alive on both sockets; no Nagle delay for commands.
    try:
        transport.setTcpNoDelay(True)
        transport.setTcpKeepAlive(True)
    except (AttributeError, OSError):
        pass  # not a TCP transport (tests) or a TLS wrapper without these


class _ClientProtocol(Protocol):
    """One of the client's two connections; its bytes go to C{on_data}."""

    transport: Any

    def __init__(self, client: RealComClient,
                 on_data: Callable[[_ClientProtocol, bytes], None]) -> None:
        self._client = client
        self._on_data = on_data

    def connectionMade(self) -> None:
        _tune(self.transport)
        fast_io(self._client._reactor, self.transport)  # where the reactor offers it

    def dataReceived(self, data: bytes) -> None:
        self._on_data(self, data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        slow_io(self._client._reactor, self.transport)
        self._client._lost(self, reason)


class _Factory(Factory):
    noisy = False

    def __init__(self, build: Callable[[], Protocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._build()


@attrs.define
class _Pending:
    """One command in flight: frames written at once, replies expected in order."""

    frames: bytes
    codes: list[int]
    timeout: float
    deferred: Deferred[list[aspp.Reply]]
    replies: list[aspp.Reply] = attrs.Factory(list)
    timer: IDelayedCall | None = None


def _endpoint(reactor: Any, host: str, port: int, timeout: float, tls: bool) -> Any:
    from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS

    cls = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
    endpoint: IStreamClientEndpoint = cls(reactor, host, port, timeout=timeout)
    if tls:
        from twisted.internet.ssl import CertificateOptions

        # MOXA's driver verifies nothing: no CA, no host name, no client certificate.
        endpoint = wrapClientTLS(CertificateOptions(verify=False), endpoint, clock=reactor)
    return endpoint


#: The IPv6 connect check of MOXA's daemon: 16 bytes out, 16 back (realcom.md §6.4).
_IPV6_CHECK_SIZE = 16


def _ipv6_peer(transport: Any) -> bool:
    """Whether a connection goes to an IPv6 server (an IPv4-mapped address is IPv4)."""
    from twisted.internet.address import IPv6Address

    try:
        peer = transport.getPeer()
    except Exception:  # noqa: BLE001 - a transport without addresses (tests)
        return False
    return isinstance(peer, IPv6Address) and not peer.host.startswith("::ffff:")


def _sleep(clock: IReactorTime, seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    clock.callLater(seconds, d.callback, None)
    return d


# --- the client ----------------------------------------------------------------------


# --- lifecycle -------------------------------------------------------------------------


class ClientState(str, enum.Enum):
    """
    Where a L{RealComClient} is in its life.  A C{str} enum: it compares
    equal to the plain strings earlier versions used (C{client.state ==
    "open"}).
    """

    CLOSED = "closed"
    CONNECTING = "connecting"
    OPEN = "open"
    RECOVERING = "recovering"
    CLOSING = "closing"

    def __str__(self) -> str:
        return self.value


class _Lifecycle(TypingProtocol):
    """What happens to a client (the inputs of its lifecycle machine)."""

    def open(self) -> None:
        "open() was called."

    def opened(self) -> None:
        "The open sequence succeeded."

    def open_failed(self) -> None:
        "The open sequence failed."

    def recover(self) -> None:
        "recover() was called (or auto reconnect started it)."

    def recovered(self) -> None:
        "The recovery batch succeeded."

    def recover_failed(self) -> None:
        "The recovery failed."

    def retry(self) -> None:
        "Auto reconnect keeps trying after a failed recovery."

    def lost(self) -> None:
        "Both connections went away, not by our close."

    def close(self) -> None:
        "close() or abort() was called."

    def closed(self) -> None:
        "Both connections are closed after a close."


@attrs.define
class _LifecycleCore:
    state: ClientState = ClientState.CLOSED


def _lifecycle_machine() -> TypeMachine[_Lifecycle, _LifecycleCore]:
    """
    The transitions of a client.  C{open} only from CLOSED, C{recover} only
    from CLOSED, OPEN or RECOVERING (anything else is L{NoTransition}, which
    the client reports as L{RealComError}); C{lost} matters only while OPEN
    and C{recover_failed} only while RECOVERING; the ends of the open,
    recovery and close sequences and C{close} itself apply in every state.
    """
    builder = TypeMachineBuilder(_Lifecycle, _LifecycleCore)
    states = {s: builder.state(s.value) for s in ClientState}
    every = tuple(ClientState)
    C, K, O, R, X = (ClientState.CLOSED, ClientState.CONNECTING, ClientState.OPEN,
                     ClientState.RECOVERING, ClientState.CLOSING)
    table: list[tuple[Callable[..., None], tuple[ClientState, ...], ClientState | None]] = [
        (_Lifecycle.open, (C,), K),
        (_Lifecycle.opened, every, O),
        (_Lifecycle.open_failed, every, C),
        (_Lifecycle.recover, (C, O, R), R),
        (_Lifecycle.recovered, every, O),
        (_Lifecycle.recover_failed, (R,), C),
        (_Lifecycle.recover_failed, (C, K, O, X), None),  # None: stay
        (_Lifecycle.retry, every, R),
        (_Lifecycle.lost, (O,), C),
        (_Lifecycle.lost, (C, K, R, X), None),
        (_Lifecycle.close, every, X),
        (_Lifecycle.closed, every, C),
    ]
    for event, sources, target in table:
        for source in sources:
            end = source if target is None else target
            states[source].upon(event).to(states[end])(_enter(end))
    return builder.build()


def _enter(state: ClientState) -> Callable[[_Lifecycle, _LifecycleCore], None]:
    def enter(inputs: _Lifecycle, core: _LifecycleCore) -> None:
        core.state = state
    return enter


_LIFECYCLE = _lifecycle_machine()


class RealComClient:
    """
    One Real COM port as a host sees it (the Linux driver's behaviour).

    Received serial bytes go to C{on_data} when given, else into
    L{received} (a C{DeferredQueue}; L{read_exactly} reads from it).
    C{on_notify} gets a L{Notification} for every NOTIFY; L{modem} holds the
    lines from the last PORT_INIT / LSTATUS reply or NOTIFY.  C{on_lost} is
    called with the reason when the connections are lost other than by
    L{close} (and not recovered).

    Every command method returns a Deferred; commands are sent one at a
    time, each waiting up to C{command_timeout} seconds for its reply.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        closing_wait: float = DEFAULT_CLOSING_WAIT,
        connect_timeout: float = 10.0,
        fifo: int = 16,
        auto_reconnect: bool = False,
        on_data: Callable[[bytes], object] | None = None,
        on_notify: Callable[[Notification], object] | None = None,
        on_lost: Callable[[Failure], object] | None = None,
    ) -> None:
        self._reactor = reactor
        self.command_timeout = command_timeout
        self.closing_wait = closing_wait
        self.connect_timeout = connect_timeout
        self.fifo = fifo
        self.auto_reconnect = auto_reconnect
        self.on_data = on_data
        self.on_notify = on_notify
        self.on_lost = on_lost
        self.received: DeferredQueue[bytes] = DeferredQueue()
        self._leftover = b""
        self.settings = LineSettings()
        self.dtr = True
        self.rts = True
        self.modem = ModemState()
        self._core = _LifecycleCore()
        self._life = _LIFECYCLE(self._core)
        self._address: tuple[str, int, int, bool] | None = None
        self._command: _ClientProtocol | None = None
        self._data: _ClientProtocol | None = None
        self._parser = aspp.ReplyParser()
        self._queue: deque[_Pending] = deque()
        self._current: _Pending | None = None
        self._all_lost: list[Deferred[None]] = []
        self._retry: IDelayedCall | None = None
        self._wanted = False  # open() succeeded and neither close() nor abort() was called since
        self._ipv6_echo: tuple[bytearray, Deferred[None]] | None = None

    def __repr__(self) -> str:
        where = (
            f"{self._address[0]}:{self._address[1]}/{self._address[2]}" if self._address else "-"
        )
        return f"<RealComClient {where} {self.state.value}>"

    @property
    def state(self) -> ClientState:
        """Closed, connecting, open, recovering or closing (L{ClientState})."""
        return self._core.state

    # -- open -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Both connections are up."""
        return self._command is not None and self._data is not None

    def open(
        self,
        host: str,
        data_port: int = 950,
        command_port: int = 966,
        settings: LineSettings = LineSettings(),
        dtr: bool = True,
        rts: bool = True,
        tls: bool = False,
    ) -> Deferred[RealComClient]:
        """
        Connect (command port first, then data port) and run the open
        sequence; fires with this client once the port is open.  On failure
        both connections are closed and the Deferred fails.
        """
        try:
            self._life.open()
        except NoTransition:
            raise RealComError(f"{self!r} is already in use") from None
        self._address = (host, data_port, command_port, tls)
        self.settings, self.dtr, self.rts = settings, dtr, rts
        return Deferred.fromCoroutine(self._open())

    async def _open(self) -> RealComClient:
        try:
            await self._connect_both()
            await self._init_port()
        except BaseException:
            await self._drop()
            self._life.open_failed()
            raise
        self._life.opened()
        self._wanted = True
        return self

    async def _connect_both(self) -> None:
        assert self._address is not None
        host, data_port, command_port, tls = self._address
        self._parser = aspp.ReplyParser()
        command = _endpoint(self._reactor, host, command_port, self.connect_timeout, False)
        self._command = await command.connect(_Factory(lambda: _ClientProtocol(self, self._command_data)))
        data = _endpoint(self._reactor, host, data_port, self.connect_timeout, tls)
        proto = await data.connect(_Factory(lambda: _ClientProtocol(self, self._serial_data)))
        if self._command is None:  # lost while the data connection was being made
            proto.transport.loseConnection()
            raise NotConnected("the command connection was closed during the open")
        self._data = proto
        if _ipv6_peer(self._command.transport):
            await self._ipv6_check()
        self._log.info("{client}: connected", client=self)

    async def _ipv6_check(self) -> None:
        """
        MOXA's daemon on an IPv6 connection (realcom.md §6.4): 16 bytes on the
        command connection (content not checked), and exactly 16 back first.
        """
        import os

        assert self._command is not None
        done: Deferred[None] = Deferred()
        self._ipv6_echo = (bytearray(), done)
        def timed_out() -> None:
            if not done.called:
                done.errback(CommandTimeout(f"no IPv6 check echo within {self.command_timeout} s"))

        timer = self._reactor.callLater(self.command_timeout, timed_out)
        self._command.transport.write(os.urandom(_IPV6_CHECK_SIZE))
        try:
            await done
        finally:
            self._ipv6_echo = None
            if timer.active():
                timer.cancel()

    async def _init_port(self) -> None:
        await self._apply_line(self.settings)
        self._expect_reply(
            await self._command_one(aspp.TxFifo(self.fifo)), aspp.CMD_TX_FIFO, any_reply=True
        )

    # -- settings ------------------------------------------------------------------------

    def set_line(
        self,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        rtscts: bool = False,
        xonxoff: bool = False,
        *,
        ixon: bool | None = None,
        ixoff: bool | None = None,
        xon_char: int = 0x11,
        xoff_char: int = 0x13,
    ) -> Deferred[ModemState]:
        """
        Change speed, format and flow control as ``tcsetattr`` does:
        PORT_INIT (+ SETBAUD) (+ XONXOFF).  Fires with the modem lines of
        the PORT_INIT reply; fails with L{BaudRateRejected} if the device
        refuses the speed (the old settings then stay recorded).
        """
        settings = line_settings(
            baudrate, bytesize, parity, stopbits, rtscts, xonxoff, ixon, ixoff, xon_char, xoff_char
        )
        return Deferred.fromCoroutine(self._apply_line(settings))

    def set_line_settings(self, settings: LineSettings) -> Deferred[ModemState]:
        """L{set_line} with a L{LineSettings} value."""
        return Deferred.fromCoroutine(self._apply_line(settings))

    async def _apply_line(self, settings: LineSettings) -> ModemState:
        requests = settings.requests(self.dtr, self.rts)
        reply = await self._command_one(requests[0])
        if not isinstance(reply, aspp.LineStatusReply):
            raise CommandFailed(f"PORT_INIT got {reply!r}")
        if reply.baud_rejected:
            raise BaudRateRejected(f"the device rejected {settings.baudrate} baud")
        self._set_modem(reply)
        for request in requests[1:]:
            reply = await self._command_one(request)
            if isinstance(request, aspp.SetBaud) and isinstance(reply, aspp.NaReply):
                raise BaudRateRejected(f"the device rejected SETBAUD {settings.baudrate}")
            self._expect_reply(reply, request.code)
        self.settings = settings
        return self.modem

    def set_lines(self, dtr: bool | None = None, rts: bool | None = None) -> Deferred[None]:
        """Drive DTR and/or RTS (LINECTRL carries both; None keeps the current value)."""
        new_dtr = self.dtr if dtr is None else bool(dtr)
        new_rts = self.rts if rts is None else bool(rts)

        def done(reply: aspp.Reply) -> None:
            self._expect_reply(reply, aspp.CMD_LINECTRL)
            self.dtr, self.rts = new_dtr, new_rts

        return self._command_one(aspp.LineControl(new_dtr, new_rts)).addCallback(done)

    def set_flow_control(
        self, cts_flow: bool, rts_flow: bool, tx_xonxoff: bool, rx_xonxoff: bool
    ) -> Deferred[None]:
        """FLOWCTRL (0x11), as the Windows driver and IP-Serial library use it."""
        return self._ok(aspp.FlowControl(cts_flow, rts_flow, tx_xonxoff, rx_xonxoff))

    # -- queries and control ----------------------------------------------------------------

    def line_status(self) -> Deferred[ModemState]:
        """LSTATUS: ask the device for DSR, CTS and DCD."""

        def done(reply: aspp.Reply) -> ModemState:
            if not isinstance(reply, aspp.LineStatusReply):
                raise CommandFailed(f"LSTATUS got {reply!r}")
            return self._set_modem(reply)

        return self._command_one(aspp.LineStatusQuery()).addCallback(done)

    def flush(self, mode: int = aspp.FLUSH_BOTH) -> Deferred[None]:
        """FLUSH: 0 input, 1 output, 2 both (the Linux driver only checks that a reply comes)."""

        def done(reply: aspp.Reply) -> None:
            self._expect_reply(reply, aspp.CMD_FLUSH, any_reply=True)

        return self._command_one(aspp.Flush(mode)).addCallback(done)

    def wait_output_queue(self, timeout_ms: int = 100) -> Deferred[int]:
        """
        WAIT_OQUEUE: the device replies when its output drained or after
        C{timeout_ms}; fires with the bytes still queued.  The reply wait
        is C{timeout_ms} plus the command timeout.
        """
        timeout = timeout_ms / 1000 + self.command_timeout
        return self._command_one(aspp.WaitOutputQueue(timeout_ms), timeout=timeout).addCallback(
            self._queue_count
        )

    def output_queue(self) -> Deferred[int]:
        """OQUEUE: bytes in the device's serial TX queue."""
        return self._command_one(aspp.OutputQueueQuery()).addCallback(self._queue_count)

    def input_queue(self) -> Deferred[int]:
        """IQUEUE: bytes in the device's serial RX queue."""
        return self._command_one(aspp.InputQueueQuery()).addCallback(self._queue_count)

    def start_break(self) -> Deferred[None]:
        """START_BREAK."""
        return self._ok(aspp.StartBreak())

    def stop_break(self) -> Deferred[None]:
        """STOP_BREAK."""
        return self._ok(aspp.StopBreak())

    def suspend_output(self) -> Deferred[None]:
        """SETXOFF: the device holds its serial output as if XOFF had been received."""
        return self._ok(aspp.SetXoff())

    def resume_output(self) -> Deferred[None]:
        """SETXON: the device resumes its serial output."""
        return self._ok(aspp.SetXon())

    def command(
        self, request: aspp.Request, reply_code: int | None = None, timeout: float | None = None
    ) -> Deferred[aspp.Reply]:
        """Send any request and fire with its reply (the code defaults to the request's)."""
        return self._command_one(request, reply_code, timeout)

    # -- data ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send serial bytes; raises L{NotConnected} when the data connection is down."""
        if self._data is None or self.state not in (ClientState.OPEN, ClientState.CLOSING):
            raise NotConnected(f"{self!r}: cannot write")
        write_now(self._data.transport, data)  # at once when nothing is queued (no extra turn)

    @property
    def data_transport(self) -> ITransport | None:
        """The data connection's transport (for producers and flow control), or None."""
        return self._data.transport if self._data is not None else None

    @property
    def command_transport(self) -> ITransport | None:
        """The command connection's transport (e.g. for its local address), or None."""
        return self._command.transport if self._command is not None else None

    def read_exactly(self, count: int) -> Deferred[bytes]:
        """Fire with the next C{count} bytes from L{received} (one reader at a time)."""
        return Deferred.fromCoroutine(self._read_exactly(count))

    async def _read_exactly(self, count: int) -> bytes:
        buf = bytearray(self._leftover)
        self._leftover = b""
        while len(buf) < count:
            buf += await self.received.get()
        data, self._leftover = bytes(buf[:count]), bytes(buf[count:])
        return data

    # -- close ------------------------------------------------------------------------------

    def close(self) -> Deferred[None]:
        """
        Close as the Linux driver does: drain (WAIT_OQUEUE until 3 zeros,
        10 ms apart, at most C{closing_wait} s), FLUSH 2, close both
        connections.  Command errors end the drain early but never the
        close.  Fires when both connections are closed.
        """
        self._stop_recovery()
        if self.state is ClientState.CLOSED and self._command is None and self._data is None:
            return succeed(None)
        return Deferred.fromCoroutine(self._close())

    def _stop_recovery(self) -> None:
        self._wanted = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    async def _close(self) -> None:
        was_open = self.state is ClientState.OPEN
        self._life.close()
        if was_open and self.connected:
            await self._drain()
            try:
                await self.flush(aspp.FLUSH_BOTH)
            except RealComError as e:
                self._log.info("{client}: FLUSH on close failed: {error}", client=self, error=e)
        await self._drop()
        self._life.closed()
        self._log.info("{client}: closed", client=self)

    def drain(self) -> Deferred[None]:
        """
        The drain of L{close} without closing: wait until the data
        connection's buffer is sent, then WAIT_OQUEUE every 10 ms until
        three consecutive replies say 0, at most C{closing_wait} seconds.
        Errors end the drain (logged), never fail it.
        """
        return Deferred.fromCoroutine(self._drain())

    async def _drain(self) -> None:
        clock = self._reactor
        deadline = clock.seconds() + self.closing_wait
        # Like the driver's wait for its own buffer to reach the daemon.
        while (
            self._data is not None and unsent_bytes(self._data.transport) and clock.seconds() < deadline
        ):
            await _sleep(clock, DRAIN_INTERVAL)
        zeros = 0
        while self.connected:
            remaining = deadline - clock.seconds()
            if remaining <= 0:
                self._log.warn(
                    "{client}: output not drained after {s} s; closing anyway",
                    client=self,
                    s=self.closing_wait,
                )
                return
            try:
                count = await self.wait_output_queue(max(1, int(remaining * 1000)))
            except RealComError as e:
                self._log.info("{client}: drain ended: {error}", client=self, error=e)
                return
            zeros = zeros + 1 if count == 0 else 0
            if zeros >= DRAIN_ZEROS:
                return
            await _sleep(clock, DRAIN_INTERVAL)

    def abort(self) -> Deferred[None]:
        """Drop both connections at once, without drain or flush (a hang-up)."""
        self._stop_recovery()
        self._life.close()
        d = self._wait_all_lost()
        for proto in (self._command, self._data):
            if proto is not None and proto.transport is not None:
                proto.transport.abortConnection()

        def done(_: object) -> None:
            self._life.closed()

        return d.addCallback(done)

    async def _drop(self) -> None:
        d = self._wait_all_lost()
        for proto in (self._data, self._command):
            if proto is not None and proto.transport is not None:
                proto.transport.loseConnection()
        await d

    def _wait_all_lost(self) -> Deferred[None]:
        if self._command is None and self._data is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._all_lost.append(d)
        return d

    # -- reconnect recovery ------------------------------------------------------------------

    def recover(self) -> Deferred[RealComClient]:
        """
        Reconnect both connections and restore the port with one batch
        (realcom.md §3.5): PORT_INIT, SETBAUD if the speed has no index,
        XONXOFF if IXON/IXOFF, TX_FIFO, LINECTRL.  Fires with this client.
        """
        if self._address is None:
            raise NotConnected("recover() needs an earlier open()")
        try:
            self._life.recover()
        except NoTransition:
            raise RealComError(f"{self!r}: cannot recover now") from None
        return Deferred.fromCoroutine(self._recover())

    async def _recover(self) -> RealComClient:
        try:
            if self._command is not None or self._data is not None:
                await self._drop()
            await self._connect_both()
            if self.state is not ClientState.RECOVERING:
                raise NotConnected("closed during recovery")
            requests = self.settings.requests(self.dtr, self.rts)
            requests += [aspp.TxFifo(self.fifo), aspp.LineControl(self.dtr, self.rts)]
            replies = await self._submit(
                b"".join(aspp.encode_request(r) for r in requests), [r.code for r in requests]
            )
        except BaseException:
            await self._drop()
            self._life.recover_failed()
            raise
        for reply in replies:
            if isinstance(reply, aspp.LineStatusReply) and not reply.baud_rejected:
                self._set_modem(reply)
        self._life.recovered()
        self._wanted = True
        self._log.info("{client}: recovered", client=self)
        return self

    def _auto_recover(self) -> None:
        self._retry = None
        if not self._wanted or self.state not in (ClientState.CLOSED, ClientState.RECOVERING):
            return

        def failed(f: Failure) -> None:
            if not self._wanted:
                return
            self._log.info(
                "{client}: reconnect failed ({error}); retrying in {s} s",
                client=self,
                error=f.getErrorMessage(),
                s=RECONNECT_DELAY,
            )
            self._life.retry()  # keep recovering until close()
            self._retry = self._reactor.callLater(RECONNECT_DELAY, self._auto_recover)

        self.recover().addErrback(failed)

    # -- command machinery ------------------------------------------------------------------

    def _ok(self, request: aspp.Request) -> Deferred[None]:
        def done(reply: aspp.Reply) -> None:
            self._expect_reply(reply, request.code)

        return self._command_one(request).addCallback(done)

    @staticmethod
    def _expect_reply(reply: aspp.Reply, code: int, any_reply: bool = False) -> None:
        if isinstance(reply, aspp.OkReply) and reply.code == code:
            return
        if any_reply and reply.code == code:
            return
        if isinstance(reply, aspp.NaReply):
            raise CommandFailed(f"0x{code:02X} was not accepted (NA)")
        raise CommandFailed(f"0x{code:02X} got {reply!r}, expected OK")

    @staticmethod
    def _queue_count(reply: aspp.Reply) -> int:
        if not isinstance(reply, aspp.QueueCountReply):
            raise CommandFailed(f"expected a queue count, got {reply!r}")
        return reply.count

    def _command_one(
        self, request: aspp.Request, reply_code: int | None = None, timeout: float | None = None
    ) -> Deferred[aspp.Reply]:
        code = request.code if reply_code is None else reply_code
        return self._submit(aspp.encode_request(request), [code], timeout).addCallback(
            lambda r: r[0]
        )

    def _submit(
        self, frames: bytes, codes: list[int], timeout: float | None = None
    ) -> Deferred[list[aspp.Reply]]:
        if self._command is None:
            return fail(NotConnected(f"{self!r}: the command connection is down"))
        pending = _Pending(
            frames, codes, self.command_timeout if timeout is None else timeout, Deferred()
        )
        self._queue.append(pending)
        self._next()
        return pending.deferred

    def _next(self) -> None:
        if self._current is not None or not self._queue or self._command is None:
            return
        pending = self._current = self._queue.popleft()
        pending.timer = self._reactor.callLater(pending.timeout, self._timed_out, pending)
        self._command.transport.write(pending.frames)

    def _timed_out(self, pending: _Pending) -> None:
        pending.timer = None
        if self._current is pending:
            self._current = None
        self._log.warn(
            "{client}: no reply to 0x{code:02X} within {s} s",
            client=self,
            code=pending.codes[len(pending.replies)],
            s=pending.timeout,
        )
        pending.deferred.errback(
            CommandTimeout(
                f"no reply to 0x{pending.codes[len(pending.replies)]:02X} "
                f"within {pending.timeout} s"
            )
        )
        self._next()

    def _command_data(self, proto: _ClientProtocol, data: bytes) -> None:
        if proto is not self._command:
            return
        if self._ipv6_echo is not None:  # the IPv6 check's 16 bytes come before any reply
            buf, done = self._ipv6_echo
            take = _IPV6_CHECK_SIZE - len(buf)
            buf += data[:take]
            data = data[take:]
            if len(buf) == _IPV6_CHECK_SIZE and not done.called:
                self._ipv6_echo = None
                done.callback(None)
            if not data:
                return
        for reply in self._parser.feed(data):
            try:
                self._reply(reply)
            except Exception:  # noqa: BLE001 - a bad reply must not break the connection
                self._log.failure("{client}: error handling {reply!r}", client=self, reply=reply)

    def _reply(self, reply: aspp.Reply) -> None:
        if isinstance(reply, aspp.PollingMessage):
            # Answered at once, as npreal2d does; never a command reply.
            if self._command is not None:
                self._command.transport.write(aspp.encode_request(aspp.Alive(reply.probe_id)))
            return
        if isinstance(reply, aspp.NotifyMessage):
            note = Notification.decode(reply)
            if note.modem_changed:
                self.modem = attrs.evolve(note.state)
            if self.on_notify is not None:
                self.on_notify(note)
            return
        pending = self._current
        if pending is None or reply.code != pending.codes[len(pending.replies)]:
            self._log.warn(
                "{client}: unexpected reply {reply!r}; ignored", client=self, reply=reply
            )
            return
        pending.replies.append(reply)
        if len(pending.replies) < len(pending.codes):
            return
        self._current = None
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        pending.deferred.callback(pending.replies)
        self._next()

    def _set_modem(self, reply: aspp.LineStatusReply) -> ModemState:
        self.modem = attrs.evolve(
            self.modem, dsr=bool(reply.dsr), cts=bool(reply.cts), dcd=bool(reply.dcd)
        )
        return self.modem

    def _serial_data(self, proto: _ClientProtocol, data: bytes) -> None:
        if proto is not self._data:
            return
        if self.on_data is not None:
            try:
                self.on_data(data)
            except Exception:  # noqa: BLE001 - the user's callback
                self._log.failure("{client}: on_data failed", client=self)
        else:
            self.received.put(data)

    def _lost(self, proto: Protocol, reason: Failure) -> None:
        if proto is self._command:
            self._command = None
            other: Protocol | None = self._data
        elif proto is self._data:
            self._data = None
            other = self._command
        else:
            return
        if other is not None and other.transport is not None:
            other.transport.loseConnection()  # either one closing closes the pair
            return
        # Both are gone.
        current, self._current = self._current, None
        pending = ([current] if current is not None else []) + list(self._queue)
        self._queue.clear()
        for p in pending:
            if p.timer is not None and p.timer.active():
                p.timer.cancel()
            p.deferred.errback(NotConnected(f"connection lost: {reason.getErrorMessage()}"))
        waiters, self._all_lost = self._all_lost, []
        for d in waiters:
            d.callback(None)
        if self.state is ClientState.OPEN:
            self._log.warn(
                "{client}: connection lost ({reason})",
                client=self,
                reason=reason.getErrorMessage(),
            )
            self._life.lost()
            if self.auto_reconnect and self._wanted:
                self._life.retry()
                self._retry = self._reactor.callLater(0, self._auto_recover)
            elif self.on_lost is not None:
                self.on_lost(reason)


def connect(
    reactor: IReactorTCP,
    host: str,
    data_port: int = 950,
    command_port: int = 966,
    *,
    baudrate: int = 9600,
    bytesize: int = 8,
    parity: str = "N",
    stopbits: float = 1,
    rtscts: bool = False,
    xonxoff: bool = False,
    ixon: bool | None = None,
    ixoff: bool | None = None,
    dtr: bool = True,
    rts: bool = True,
    tls: bool = False,
    **options: Any,
) -> Deferred[RealComClient]:
    """
    Open a Real COM port: fires with an open L{RealComClient}.  C{options}
    go to L{RealComClient} (C{command_timeout}, C{closing_wait}, C{fifo},
    C{on_data}, C{on_notify}, C{on_lost}, C{auto_reconnect} …).
    """
    client = RealComClient(reactor, **options)
    settings = line_settings(baudrate, bytesize, parity, stopbits, rtscts, xonxoff, ixon, ixoff)
    return client.open(host, data_port, command_port, settings, dtr=dtr, rts=rts, tls=tls)


# --- command line -------------------------------------------------------------------------


def _parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nport_twisted.tools.realcom_client",
        description="Open a Real COM port of an NPort (or nport-twisted) and bridge it to "
        "stdin/stdout. At end of input the port is drained and closed as MOXA's Linux "
        "driver does.",
    )
    from nport_twisted import __version__
    parser.add_argument("--version", action="version",
                        version=f"realcom_client (nport-twisted) {__version__}")
    parser.add_argument("host", help="the NPort's address")
    parser.add_argument(
        "--data-port", type=int, default=950, help="data TCP port (950 + port - 1)"
    )
    parser.add_argument(
        "--command-port", type=int, default=966, help="command TCP port (966 + port - 1)"
    )
    parser.add_argument("--baud", type=int, default=9600, help="baud rate (default 9600)")
    parser.add_argument("--bytesize", type=int, default=8, choices=(5, 6, 7, 8), help="data bits")
    parser.add_argument("--parity", default="N", choices=("N", "E", "O", "M", "S"), type=str.upper)
    parser.add_argument("--stopbits", type=float, default=1, choices=(1, 1.5, 2))
    parser.add_argument("--rtscts", action="store_true", help="RTS/CTS flow control")
    parser.add_argument("--xonxoff", action="store_true", help="XON/XOFF flow control")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="Secure Real COM: TLS on the data connection (no certificate verification)",
    )
    return parser


def _bridge(reactor: Any, config: Any) -> Generator[Deferred[Any], Any, None]:
    from twisted.internet.error import ConnectError
    from twisted.internet.interfaces import IHalfCloseableProtocol
    from twisted.internet.stdio import StandardIO
    from zope.interface import implementer

    lost: Deferred[None] = Deferred()
    client = RealComClient(reactor, on_lost=lambda reason: lost.errback(reason))
    settings = line_settings(
        config.baud, config.bytesize, config.parity, config.stopbits, config.rtscts, config.xonxoff
    )
    try:
        yield client.open(config.host, config.data_port, config.command_port, settings,
                          tls=config.tls)
    except (RealComError, ConnectError, OSError) as exc:
        # As MOXA's driver fails open() with EIO: one line, no traceback.  An NPort (or
        # nport-twisted) whose serial port cannot be opened refuses by closing both connections.
        hint = ("; the server dropped the open, as an NPort does whose serial port cannot be "
                "opened (device missing or busy: its log says which)"
                if isinstance(exc, RealComError) else "")
        Logger(namespace="realcom_client").critical(
            "cannot open {host} data port {data_port} / command port {command_port}: "
            "{reason}{hint}", host=config.host, data_port=config.data_port,
            command_port=config.command_port, reason=str(exc) or type(exc).__name__, hint=hint)
        raise SystemExit(1)

    @implementer(IHalfCloseableProtocol)
    class Stdio(Protocol):
        def dataReceived(self, data: bytes) -> None:
            try:
                client.write(data)
            except NotConnected:
                pass

        def readConnectionLost(self) -> None:
            if not lost.called:
                client.close().chainDeferred(lost)

        def writeConnectionLost(self) -> None:
            pass

        def connectionLost(self, reason: Failure = connectionDone) -> None:
            self.readConnectionLost()

    stdio = Stdio()
    client.on_data = lambda data: stdio.transport.write(data)  # type: ignore[union-attr]
    StandardIO(stdio, reactor=reactor)
    yield lost


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m nport_twisted.tools.realcom_client``."""
    from twisted.internet.defer import inlineCallbacks
    from twisted.internet.task import react
    from twisted.logger import globalLogBeginner, textFileLogObserver

    config = _parser().parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    react(inlineCallbacks(_bridge), (config,))


if __name__ == "__main__":
    main()
