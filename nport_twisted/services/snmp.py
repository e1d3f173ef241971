# -*- test-case-name: tests.test_snmp -*-
"""
The SNMP agent (UDP 161 + port offset, C{--snmp-port}) and the trap sender
(docs/monitoring.md, "SNMP").

  - Read-only.  v1 and v2c with the configured community; no default
    community.  v3 (USM authPriv, SHA-256 and AES-128, one user:
    L{nport_twisted.wire.snmpv3}) once C{snmp_v3_user} and both of its
    passwords are set.  With neither (or C{snmp} off) nothing listens.  The settings are checked every second, so a
    Save/Restart or SIGHUP turns the agent on or off without a restart.
  - One thin L{DatagramProtocol}: per-source rate limit, the agent's share
    of the reactor, the accessible IP list, then the sans-IO
    L{nport_twisted.wire.snmp.Responder} over the tree of
    L{nport_twisted.services.snmp_mib}.  The share bounds the time all
    sources together may spend in the responder (L{WORK_SHARE} of each
    second, at most L{WORK_BURST} at once), measured around each answer:
    a request's cost varies tenfold (a GETBULK of 50 took 7 ms), so a
    per-request rate alone let one source at its allowed 200 a second keep
    the reactor busy and every serial port waiting (issue 10 items 1, 3).
    pysnmp (the message codec) is imported only when the agent first
    listens or a trap is sent, so a box with SNMP off never loads it.
  - An unknown community is counted (snmpInBadCommunityNames), answered
    with nothing and published as an L{AuthFailure} (at most once a minute
    per source, so a scan cannot flood the mail and trap receivers); the
    Auto Warning service turns that into the authenticationFailure trap
    when C{trap_auth_failure} is on.

Wire protocol: SNMPv1 (RFC 1157) and SNMPv2c (RFC 1901, RFC 3416) over UDP;
traps v1 (RFC 1157 Trap-PDU) or v2c (SNMPv2-Trap-PDU) to
C{trap_server:trap_port}.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from nport_twisted.config.identity import ipv4_bind_address
from nport_twisted.events import AuthFailure
from nport_twisted.net.context import IDeviceContext
from nport_twisted.net.loglimit import LogLimiter
from nport_twisted.net.ratelimit import RateLimiter
from nport_twisted.services.hostif import HostInterface, read_interfaces
from nport_twisted.wire.mib import OID, SnmpStats, Value

if TYPE_CHECKING:
    from nport_twisted.services.snmp_mib import NPortMib
    from nport_twisted.wire.snmp import Responder
    from nport_twisted.wire.snmpv3 import UsmUser, V3Responder

__all__ = ["SNMP_PORT", "SnmpAgentService", "TrapSender"]

SNMP_PORT = 161
TRAP_PORT = 162

#: Seconds of responder work (CPU time of the reactor's thread) the agent
#: may use per second, all sources together (ours: 40 % of the reactor; a
#: full v2c walk of a 2-port box costs about 0.1-0.2 s, a v3 one more), and
#: at most at once (after a quiet spell).
WORK_SHARE = 0.4
WORK_BURST = 0.25


class SnmpProtocol(DatagramProtocol):
    """Rate limit, access list, then the responder; never raises into the reactor."""

    _log = Logger()

    #: Datagrams read after a pause began (Twisted's UDP port reads every
    #: queued datagram in one doRead) kept for when reading starts again;
    #: beyond these they are dropped and counted, as the kernel drops a flood.
    HELD = 16
    #: Seconds added to the computed pause: the request read first afterwards
    #: must find a whole token, not one short by a rounding error.
    RESUME_MARGIN = 0.001

    def __init__(self, agent: SnmpAgentService, responder: Responder) -> None:
        from nport_twisted.wire.snmp import peek_version  # pysnmp: loaded only once listening

        self.agent = agent
        self.responder = responder
        self._peek = peek_version
        self._resume: Any = None  # the delayed call that reads again after a pause
        self._held: deque[tuple[bytes, Any]] = deque()

    def doStop(self) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self._resume = None
        self._held.clear()

    def _pace(self, now: float) -> None:
        """
        Over the work share: stop reading until it is paid back.  A manager
        walking the tree then waits a moment in the socket's queue instead of
        losing its request (net-snmp's tools give up after one timeout with
        -r 0); a flood's excess is dropped by the kernel, costing us nothing.
        """
        work = self.agent.work
        missing = 1.0 - work.level("", now)
        read = getattr(self.transport, "stopReading", None)
        if missing <= 0 or self._resume is not None or read is None:
            return
        read()
        self._resume = self.agent.clock.callLater(missing / work.rate + self.RESUME_MARGIN,
                                                  self._read_again)

    def _read_again(self) -> None:
        self._resume = None
        held = self._held
        while held and self._resume is None:  # in order; a new pause keeps the rest
            self._answer(*held.popleft())
        if (self._resume is None and self.transport is not None
                and hasattr(self.transport, "startReading")):
            self.transport.startReading()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self._resume is not None:  # paused, but read in the same doRead: wait
            if len(self._held) < self.HELD:
                self._held.append((data, addr))
            else:
                self.agent.stats.rate_limited += 1
            return
        self._answer(data, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        host = str(addr[0])
        agent = self.agent
        now = agent.clock.seconds()
        if not agent.limiter.allow(host, now):
            agent.stats.rate_limited += 1
            return
        if not agent.work.allow("", now):  # the agent's share of the reactor is used up
            agent.stats.rate_limited += 1
            return
        if not agent.ctx.config.accessible_ip.allows(host):
            agent.stats.silent_drops += 1
            return
        started = agent.timer()
        try:
            v3 = agent.v3
            if v3 is not None and data[:1] == b"\x30" and self._peek(data) == 3:
                agent.stats.in_pkts += 1
                outcome = v3.respond(data)
            else:
                outcome = self.responder.respond(data)
        except Exception:
            agent.logs.emit(self._log.failure, "bug", host, "SNMP: error answering {peer}",
                            peer=host)
            return
        finally:
            # In microseconds (a request takes 1 us for itself when let in, the
            # bucket's unit; its measured time is added here).
            agent.work.charge("", (agent.timer() - started) * 1e6)
            self._pace(now)
        if outcome.bad_community:
            agent.bad_community(host)
        elif outcome.auth_failure:
            agent.bad_community(host, outcome.auth_failure)
        elif outcome.dropped:
            agent.logs.emit(self._log.debug, "dropped", host, "SNMP: {why} from {peer}",
                            why=outcome.dropped, peer=host)
        if outcome.reply is not None and self.transport is not None:
            try:
                self.transport.write(outcome.reply, addr)
            except OSError as e:  # ICMP errors surface here on some kernels
                agent.logs.emit(self._log.info, "send", host, "SNMP: cannot answer {peer}: {e}",
                                peer=host, e=e)


class SnmpAgentService(service.Service):
    """
    Listens on UDP C{port} (already shifted by the port offset; 0 = off)
    while the settings enable SNMP and name a community.
    """

    _log = Logger()
    name = "snmp"

    def __init__(self, ctx: IDeviceContext, port: int,
                 interfaces: Callable[[], list[HostInterface]] = read_interfaces,
                 listen_udp: Callable[[int, DatagramProtocol, str], Any] | None = None,
                 poll_interval: float = 1.0, timer: Callable[[], float] = time.thread_time,
                 work_share: float = WORK_SHARE, work_burst: float = WORK_BURST) -> None:
        self.ctx = ctx
        self.clock = ctx.reactor
        self.port = port
        self._interfaces = interfaces
        self._listen_udp = listen_udp if listen_udp is not None else (
            lambda p, proto, iface: ctx.reactor.listenUDP(p, proto, interface=iface))
        self.poll_interval = poll_interval
        self.stats = SnmpStats()
        self.limiter = RateLimiter(rate=200.0, burst=400.0)
        # Responder time in microseconds, all sources in one bucket; C{timer} measures it.
        self.work = RateLimiter(rate=work_share * 1e6, burst=work_burst * 1e6, max_keys=1)
        self.timer = timer
        self._auth_limiter = RateLimiter(rate=1 / 60, burst=1.0)
        self.logs = LogLimiter(ctx.reactor)
        self._listening: Any = None
        self._poll: LoopingCall | None = None
        self._mib: NPortMib | None = None
        #: The v3 engine (made when the agent first listens; its user follows the settings).
        self.v3: V3Responder | None = None
        self._v3_user: UsmUser | None = None
        self._v3_key: tuple[str, str, str] | None = None
        self._failed_port = False
        self._unsubscribe: Callable[[], None] | None = None

    # -- settings --------------------------------------------------------------------

    def community(self) -> bytes:
        net = self.ctx.config.network
        return net.snmp_community.encode("utf-8") if net.snmp else b""

    def wanted(self) -> bool:
        net = self.ctx.config.network
        v3 = bool(net.snmp and net.snmp_v3_user and net.snmp_v3_auth_password
                  and net.snmp_v3_priv_password)
        return self.port > 0 and (bool(self.community()) or v3)

    # -- lifecycle ---------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._poll = LoopingCall(self._check)
        self._poll.clock = self.clock
        self._poll.start(self.poll_interval, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._poll is not None and self._poll.running:
            self._poll.stop()
        self._poll = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return self._stop_listening()

    @property
    def listening(self) -> bool:
        return self._listening is not None

    @property
    def mib(self) -> NPortMib:
        """The agent's tree (built, and pysnmp's codec imported, on first use)."""
        if self._mib is None:
            from nport_twisted.services.snmp_mib import NPortMib
            self._mib = NPortMib(self.ctx, self._interfaces, self.stats,
                                 auth_traps=lambda: self.ctx.config.auto_warning.trap_auth_failure,
                                 usm=lambda: self.v3)
            self._unsubscribe = self.ctx.events.subscribe(self._mib.baselines)
        return self._mib

    def _check(self) -> None:
        try:
            if self.wanted() and self._listening is None:
                self._start_listening()
            elif not self.wanted() and self._listening is not None:
                self._stop_listening()
        except Exception:
            self._log.failure("SNMP: checking the settings failed")

    def _start_listening(self) -> None:
        from nport_twisted.wire.snmp import Responder

        mib = self.mib
        responder = Responder(self.community, lambda: mib.mib.view(), self.stats)
        if self.v3 is None:
            self.v3 = self._make_v3()
        bind = ipv4_bind_address(self.ctx.interface) or "0.0.0.0"
        try:
            self._listening = self._listen_udp(self.port, SnmpProtocol(self, responder), bind)
        except CannotListenError as e:
            if not self._failed_port:
                self._failed_port = True
                self._log.error("SNMP: cannot listen on UDP {port} ({error}); retrying every "
                                "{interval:g} s", port=self.port, error=e.socketError,
                                interval=self.poll_interval)
            return
        self._failed_port = False
        self._log.info("SNMP agent ({versions}, read-only) on UDP {port}", port=self.port,
                       versions=self.versions())

    def _stop_listening(self) -> Deferred[None]:
        port, self._listening = self._listening, None
        if port is None:
            return succeed(None)
        self._log.info("SNMP agent stopped (SNMP off or no community set)")
        d = port.stopListening()
        return d if isinstance(d, Deferred) else succeed(None)

    def versions(self) -> str:
        """What the settings serve: "v1/v2c", "v3 (authPriv)" or both."""
        served = ["v1/v2c"] if self.community() else []
        if self.v3_user() is not None:
            served.append("v3 authPriv")
        return " and ".join(served) or "nothing"

    def bad_community(self, host: str, reason: str = "unknown community") -> None:
        """An unknown community (or v3 user, or digest) from C{host}: published, bounded."""
        if self._auth_limiter.allow(host, self.clock.seconds()):
            self.ctx.events.publish(AuthFailure("snmp", host, reason=reason))

    # -- SNMPv3 ------------------------------------------------------------------------

    def v3_user(self) -> UsmUser | None:
        """The configured v3 user with its localised keys (cached), or None when v3 is off."""
        net = self.ctx.config.network
        if not (net.snmp and net.snmp_v3_user and net.snmp_v3_auth_password
                and net.snmp_v3_priv_password):
            return None
        key = (net.snmp_v3_user, net.snmp_v3_auth_password, net.snmp_v3_priv_password)
        if self._v3_key != key or self._v3_user is None:
            from nport_twisted.wire.snmpv3 import UsmUser

            assert self.v3 is not None
            self._v3_user = UsmUser.from_passwords(*key, engine_id=self.v3.engine_id)
            self._v3_key = key
        return self._v3_user

    def _engine_boots(self) -> int:
        """snmpEngineBoots: one more than last start's, kept in the state directory."""
        state = self.ctx.state_dir
        if not state:
            return 1
        path = os.path.join(state, ".snmp_engine_boots")
        boots = 0
        try:
            with open(path, encoding="ascii") as f:
                boots = int(f.read().strip() or 0)
        except (OSError, ValueError):
            boots = 0
        boots = boots + 1 if 0 <= boots < 2**31 - 2 else 1
        try:
            from nport_twisted.config.store import atomic_write

            atomic_write(path, f"{boots}\n".encode("ascii"), mode=0o644)
        except OSError as e:
            self._log.warn("SNMP: cannot keep snmpEngineBoots in {path} ({e})", path=path, e=e)
        return boots

    def _make_v3(self) -> V3Responder:
        from nport_twisted.config.identity import resolve_identity
        from nport_twisted.wire.snmp import Responder
        from nport_twisted.wire.snmpv3 import V3Responder, engine_id_for

        mac = resolve_identity(self.ctx.config, len(self.ctx.ports)).mac
        started = self.clock.seconds()
        mib = self.mib
        # The PDUs are answered by a v2c responder whose answers leave room for
        # the v3 header, security parameters and digest (~150 bytes).
        inner = Responder(lambda: b"", lambda: mib.mib.view(), self.stats, max_size=1472 - 192)
        return V3Responder(self.v3_user, engine_id_for(mac), self._engine_boots(),
                           lambda: int(self.clock.seconds() - started), inner, self.stats)


class _Sender(DatagramProtocol):
    noisy = False


class TrapSender:
    """
    Sends one trap per call to the configured trap server, v1 or v2c as the
    settings say.  Fire and forget over UDP: a host name is resolved
    without blocking (the reactor's resolver), nothing is queued, an
    unreachable receiver costs nothing but one log line per outage.
    """

    _log = Logger()

    def __init__(self, ctx: IDeviceContext, uptime: Callable[[], float] | None = None,
                 resolve: Callable[[str], Deferred[str]] | None = None,
                 listen_udp: Callable[[DatagramProtocol], Any] | None = None) -> None:
        self.ctx = ctx
        self._uptime = uptime if uptime is not None else (
            lambda: max(0.0, ctx.reactor.seconds() - ctx.started_at))
        self._resolve = resolve if resolve is not None else (lambda name: ctx.reactor.resolve(name))
        bind = ipv4_bind_address(ctx.interface) or "0.0.0.0"
        self._listen_udp = listen_udp if listen_udp is not None else (
            lambda proto: ctx.reactor.listenUDP(0, proto, interface=bind))
        self._proto: _Sender | None = None
        self._port: Any = None
        self._failing = False
        self._request_id = 0
        self.sent = 0
        self.failed = 0

    def configured(self) -> bool:
        aw = self.ctx.config.auto_warning
        return bool(aw.trap_server and aw.trap_community)

    def send(self, trap_oid: OID, varbinds: Sequence[tuple[OID, Value]] = ()) -> Deferred[bool]:
        """Send a trap; the Deferred fires True when it left, False otherwise (never fails)."""
        aw = self.ctx.config.auto_warning
        if not self.configured():
            return succeed(False)
        from nport_twisted.wire.snmp import V1, V2C, encode_trap

        self._request_id = (self._request_id + 1) % 2**31
        data = encode_trap(V1 if aw.trap_version == "v1" else V2C,
                           aw.trap_community.encode("utf-8"), int(self._uptime() * 100),
                           trap_oid, list(varbinds), request_id=self._request_id)
        d: Deferred[Any] = self._resolve(aw.trap_server)
        d.addCallback(self._write, data, aw.trap_port, aw.trap_server)
        d.addErrback(self._failed, aw.trap_server)
        return d

    def _write(self, ip: str, data: bytes, port: int, server: str) -> bool:
        if self._proto is None:
            self._proto = _Sender()
            self._port = self._listen_udp(self._proto)
        assert self._proto.transport is not None
        self._proto.transport.write(data, (ip, port))
        self.sent += 1
        if self._failing:
            self._failing = False
            self._log.info("SNMP trap: sending to {server} works again", server=server)
        return True

    def _failed(self, f: Any, server: str) -> bool:
        self.failed += 1
        if not self._failing:
            self._failing = True
            self._log.warn("SNMP trap: cannot send to {server}: {error} (logged once until it "
                           "works again)", server=server, error=f.getErrorMessage())
        return False

    def close(self) -> Deferred[None]:
        port, self._port, self._proto = self._port, None, None
        if port is None:
            return succeed(None)
        d = port.stopListening()
        return d if isinstance(d, Deferred) else succeed(None)

