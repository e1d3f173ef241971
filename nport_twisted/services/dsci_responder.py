# -*- test-case-name: tests.test_discovery -*-
"""
The UDP 4800 DSCI responder: what NPort Administrator, the Device Search
Utility and the Real COM drivers' liveness polling talk to (docs/discovery.md,
specification dsci.md).  The codec is L{nport_twisted.wire.dsci}.
"""

# UDP 4800 (DSCI), what this responder does with one datagram (dsci.md §11):
#
#   1. drop (silently; counted; logged at debug, itself rate limited) when:
#      longer than MAX_REQUEST; shorter than 8 bytes; header length !=
#      datagram length; reply bit set; a request other than the 8-byte search
#      without a full device ID; a device ID that is not ours; a source the
#      accessible IP list refuses; a source over its rate (token bucket per
#      source IP, plus one for everybody).
#   2. answer, echoing the transaction id:
#      0x01 -> 0x81 (8-byte and 20-byte forms), 0x02 -> 0x82, 0x10 -> 0x90,
#      0x14 -> 0x94, 0x16 -> 0x96, 0x1A -> 0x9A, 0x1B -> 0x9B, 0x1D -> 0x9D,
#      0x21/0x22/0x23 -> 0xA1/0xA2/0xA3, 0x25 -> 0xA5, 0x26 -> 0xA6,
#      0x27 -> 0xA7; anything else, the credential codes 0x1E, 0x28, 0x29,
#      0x2C included, -> the 8-byte header with status 0x04.
#   3. send from the listening socket (source port 4800): a request that
#      arrived by broadcast is answered to 255.255.255.255:<client port> out
#      of the interface it came in on, a unicast one to the client.  The
#      destination address and the interface come from IP_PKTINFO, which
#      Twisted's UDP port discards; PktInfoUDPPort reads the socket itself.

from __future__ import annotations

import datetime as _dt
import errno
import socket
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IReactorFDSet, IReactorTime, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted.config.identity import (
    ZERO_IP,
    DeviceIdentity,
    HostNetwork,
    InterfaceAddress,
    address_by_ip,
    address_for_peer,
    address_on_interface,
    as_ipv4,
    ipv4_bind_address,
    resolve_identity,
)
from nport_twisted.config.settings import DeviceConfig
from nport_twisted.net.context import IDeviceContext
from nport_twisted.net.listener import (
    ConnectionInfo,
    ListenerInfo,
    ListenError,
    NetTable,
    listen_failure,
)
from nport_twisted.net.ratelimit import RateLimiter
from nport_twisted.wire import dsci
from nport_twisted.wire.dsci import (
    DsciError,
    NetstatEntry,
    NetstatPagedRequest,
    NetstatRequest,
    Request,
)
from nport_twisted.wire.pktinfo import (
    IN_PKTINFO,
    IP_PKTINFO,
    LIMITED_BROADCAST,
    PacketInfo,
    arrived_by_broadcast,
    pack_pktinfo,
    unpack_pktinfo,
)

__all__ = ["MAX_REQUEST", "DsciProtocol", "DsciService", "DsciStats", "Outgoing",
           "PktInfoUDPPort", "netstat_groups"]

#: The largest request we look at; every known request is at most 32 bytes.
MAX_REQUEST = 512


@implementer(IReadDescriptor)
class PktInfoUDPPort:
    """
    A UDP socket read with C{recvmsg} so that each datagram comes with its
    L{PacketInfo}, and written with C{sendmsg} so that a reply can name the
    interface and source address.

    Twisted's UDP port reads with C{recvfrom}, which drops the ancillary
    data, and has no way to choose the outgoing interface of a broadcast.
    This class is the smallest reader that does: a non-blocking socket
    registered with the injected reactor's C{addReader}, so everything still
    runs on the reactor thread.

    The protocol gets C{makeConnection(port)}, then
    C{datagramReceived(data, (host, port), info)} per datagram; it answers
    with L{send_reply}.
    """

    _log = Logger()
    #: Datagrams read per doRead, so a flood cannot starve the reactor.
    max_per_read = 64

    def __init__(self, reactor: IReactorFDSet, port: int, interface: str, protocol: Any) -> None:
        self._reactor = reactor
        self._port = port
        self._interface = interface
        self.protocol = protocol
        self.socket: socket.socket | None = None
        self._buffer = bytearray(65536)
        self._anc_size = socket.CMSG_SPACE(IN_PKTINFO.size)

    def startListening(self) -> None:
        """Open, bind and start reading; raises C{OSError} when the port is taken."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((self._interface, self._port))
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.protocol.makeConnection(self)
        self._reactor.addReader(self)

    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self) -> str:
        return "DSCI"

    def getHost(self) -> IAddress:
        from twisted.internet.address import IPv4Address as TwistedIPv4Address
        assert self.socket is not None
        host, port = self.socket.getsockname()[:2]
        return TwistedIPv4Address("UDP", host, port)

    def doRead(self) -> None:
        sock = self.socket
        for _ in range(self.max_per_read):
            if sock is None or sock.fileno() < 0:
                return
            try:
                nbytes, ancdata, _flags, addr = sock.recvmsg_into([self._buffer], self._anc_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                # ICMP errors of earlier replies surface here; keep reading.
                if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue
                self._log.warn("DSCI receive error: {error}", error=e)
                return
            info = None
            for level, kind, data in ancdata:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= IN_PKTINFO.size:
                    info = unpack_pktinfo(data)
            # A truncated datagram (MSG_TRUNC) fills the 64 KiB buffer, far over
            # MAX_REQUEST, so the protocol drops it as oversized.
            datagram = bytes(self._buffer[:nbytes])
            try:
                self.protocol.datagramReceived(datagram, addr[:2], info)
            except Exception:  # noqa: BLE001 - a bug must not stop the reader
                self._log.failure("DSCI protocol error")

    def send_reply(self, data: bytes, addr: tuple[str, int], ifindex: int = 0, source: str = "") -> bool:
        """Send one datagram; False if it could not be sent now (it is dropped)."""
        sock = self.socket
        if sock is None:
            return False
        anc = [(socket.IPPROTO_IP, IP_PKTINFO, pack_pktinfo(ifindex, source))] if (ifindex or source) else []
        try:
            sock.sendmsg([data], anc, 0, addr)
            return True
        except OSError as e:
            if anc and e.errno == errno.EINVAL:
                # The source address is no longer ours (address removed): let routing pick.
                try:
                    sock.sendmsg([data], [], 0, addr)
                    return True
                except OSError as e2:
                    e = e2
            self._log.debug("DSCI reply to {addr} not sent: {error}", addr=addr, error=e)
            return False

    def stopListening(self) -> Deferred[None]:
        sock, self.socket = self.socket, None
        if sock is not None:
            self._reactor.removeReader(self)
            sock.close()
        return succeed(None)

    def connectionLost(self, reason: Failure) -> None:
        self.stopListening()


@attrs.define
class DsciStats:
    """Counters of the responder, for the monitor and tests."""

    received: int = 0
    replied: int = 0
    unsupported: int = 0
    dropped_invalid: int = 0
    dropped_oversized: int = 0
    dropped_reply: int = 0
    dropped_foreign: int = 0
    dropped_acl: int = 0
    dropped_rate: int = 0
    dropped_unroutable: int = 0
    send_failed: int = 0


@attrs.frozen
class Outgoing:
    """One reply and where it goes."""

    data: bytes
    host: str
    port: int
    ifindex: int = 0
    source: str = ""

    @property
    def broadcast(self) -> bool:
        return self.host == LIMITED_BROADCAST


def _ip4(host: str) -> bytes:
    """Network-order bytes of an IPv4 (or IPv4-mapped IPv6) address; 0.0.0.0 otherwise."""
    ip = as_ipv4(host)
    return ip.packed if ip is not None else ZERO_IP.packed


def netstat_groups(net: NetTable) -> list[list[NetstatEntry]]:
    """
    The netstat entries of C{net}, grouped so that a page boundary can avoid
    splitting a listener from its connections.

    Device services (UDP 4800, TCP 4900) come first, then each serial port's
    listeners, each followed by the connections on its port.  Listeners show
    local IP 0.0.0.0 (bound to any, as a real NPort fills in INADDR_ANY), TCP
    state LISTEN (UDP: 0); connections show both ends and CONNECTED.  The
    serial-port byte is the 1-based port number (MOXA's device code stores
    its port number there), 0 for device services.  IPv6-only peers cannot
    be expressed and are left out.

    MOXA's driver resets a tty when the last page of a poll shows its data or
    command port in LISTEN without showing both of its own connections (data
    and command) on that page, hence one group per serial port: its
    listeners and their connections are never split across pages.
    """
    listeners = sorted(enumerate(net.listeners),
                       key=lambda il: (il[1].port_index is not None, il[1].port_index or 0, il[0]))
    connections = list(net.connections)
    used: set[int] = set()
    groups: list[list[NetstatEntry]] = []
    groups_port: list[int | None] = []

    def serial_byte(index: int | None) -> int:
        return 0 if index is None else min(index + 1, 255)

    def conn_entry(c: ConnectionInfo) -> NetstatEntry | None:
        remote, local = as_ipv4(c.remote_host), as_ipv4(c.local_host)
        if remote is None or local is None:
            return None
        return NetstatEntry(remote_ip=remote.packed, local_ip=local.packed, remote_port=c.remote_port,
                            local_port=c.local_port, sock_type=dsci.SOCK_TCP, state=dsci.TCP_CONNECTED,
                            serial_port=serial_byte(c.port_index))

    for _, listener in listeners:
        udp = listener.proto.lower().startswith("udp")
        group = [NetstatEntry(remote_ip=ZERO_IP.packed, local_ip=ZERO_IP.packed, remote_port=0,
                              local_port=listener.port,
                              sock_type=dsci.SOCK_UDP if udp else dsci.SOCK_TCP,
                              state=0 if udp else dsci.TCP_LISTEN,
                              serial_port=serial_byte(listener.port_index))]
        if not udp:
            for j, conn in enumerate(connections):
                if j not in used and conn.local_port == listener.port:
                    used.add(j)
                    entry = conn_entry(conn)
                    if entry is not None:
                        group.append(entry)
        # All listeners of one serial port share a group: the driver checks
        # the data AND the command port on the same (last) page.
        if listener.port_index is not None and groups and groups_port[-1] == listener.port_index:
            groups[-1].extend(group)
        else:
            groups.append(group)
            groups_port.append(listener.port_index)
    for j, conn in enumerate(connections):
        if j not in used:
            entry = conn_entry(conn)
            if entry is not None:
                groups.append([entry])
                groups_port.append(None)
    return groups


def _page_length(groups: list[list[NetstatEntry]], start: int, limit: int) -> int:
    """Entries on the page from C{start}: up to C{limit}, ending on a group boundary if one fits."""
    total = sum(len(g) for g in groups)
    best, end = 0, 0
    for group in groups:
        end += len(group)
        if start < end <= start + limit:
            best = end - start
    return best or max(1, min(limit, total - start))


@attrs.frozen
class _Query:
    """One admitted request and what its answer is made from."""

    request: Request
    identity: DeviceIdentity
    config: DeviceConfig
    peer: str
    info: PacketInfo | None

    @property
    def txid(self) -> int:
        return self.request.txid

    @property
    def devid(self) -> dsci.DeviceId:
        return self.identity.device_id


class DsciProtocol:
    """
    Answers DSCI requests for one device.  Everything it reads is injected:
    the live configuration, the network table, the clock and the host
    queries, so tests drive it with fakes.

    @ivar transport: anything with L{PktInfoUDPPort.send_reply}'s signature.
    """

    _log = Logger()

    def __init__(self, config: Callable[[], DeviceConfig], net: NetTable, clock: IReactorTime,
                 host: HostNetwork | None = None, *,
                 per_source: RateLimiter | None = None, overall: RateLimiter | None = None) -> None:
        self._config = config
        self._net = net
        self._clock = clock
        self._host = host if host is not None else HostNetwork()
        self.per_source = per_source if per_source is not None else RateLimiter(20.0, 40.0, 1024)
        self.overall = overall if overall is not None else RateLimiter(200.0, 400.0, 1)
        self._debug_logs = RateLimiter(2.0, 20.0, 1)
        self.stats = DsciStats()
        self.transport: Any = None
        self._addr_cache: tuple[float, list[InterfaceAddress]] | None = None
        self._bad_firmware_logged = False
        self._answers: dict[int, Callable[[_Query], bytes]] = {
            dsci.OP_SEARCH: self._search,
            dsci.OP_PING: self._ping,
            dsci.OP_NAME: self._name,
            dsci.OP_NETSTAT: self._netstat,
            dsci.OP_NETSTAT_PAGED: self._netstat_paged,
            dsci.OP_KERNEL_INFO: self._kernel_info,
            dsci.OP_DATETIME: self._datetime,
            dsci.OP_TIME_SERVER: self._time_server,
            dsci.OP_IP: self._address,
            dsci.OP_NETMASK: self._address,
            dsci.OP_GATEWAY: self._address,
            dsci.OP_NETWORK_CONFIG: self._address,
            dsci.OP_AUTO_REPORT: self._auto_report,
            dsci.OP_DNS: self._dns,
        }

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport

    # -- input ----------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: tuple[str, int], info: PacketInfo | None = None) -> None:
        """Handle one datagram and send the reply, if any."""
        out = self.handle(datagram, addr, info)
        if out is None:
            return
        if self.transport.send_reply(out.data, (out.host, out.port), out.ifindex, out.source) is False:
            self.stats.send_failed += 1
        else:
            self.stats.replied += 1

    def _drop(self, counter: str, reason: str, peer: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)
        if self._debug_logs.allow("log", self._clock.seconds()):
            self._log.debug("DSCI: dropped a datagram from {peer}: {reason}", peer=peer, reason=reason)

    def handle(self, datagram: bytes, addr: tuple[str, int], info: PacketInfo | None) -> Outgoing | None:
        """The reply to one datagram and where it goes, or None to stay silent."""
        self.stats.received += 1
        host, port = str(addr[0]), int(addr[1])
        if len(datagram) > MAX_REQUEST:
            self._drop("dropped_oversized", f"{len(datagram)} bytes", host)
            return None
        if len(datagram) >= 1 and datagram[0] & dsci.REPLY_BIT:
            self._drop("dropped_reply", f"opcode 0x{datagram[0]:02x} is a reply", host)
            return None
        try:
            request = dsci.parse_request(datagram)
        except DsciError as e:
            self._drop("dropped_invalid", str(e), host)
            return None
        config = self._config()
        if not config.accessible_ip.allows(host):
            self._drop("dropped_acl", "not in the accessible IP list", host)
            return None
        identity = resolve_identity(config, mac=self._host.mac)
        if not request.is_addressed_to(identity.device_id):
            self._drop("dropped_foreign", f"request 0x{request.opcode:02x} for another device", host)
            return None
        broadcast = info is not None and arrived_by_broadcast(info, self._addresses())
        source_ip = as_ipv4(host)
        if port == 0 or (not broadcast and (source_ip is None or source_ip == ZERO_IP or
                                            source_ip.is_multicast or
                                            str(source_ip) == LIMITED_BROADCAST)):
            self._drop("dropped_unroutable", "no address to answer to", host)
            return None
        now = self._clock.seconds()
        if not self.per_source.allow(host, now) or not self.overall.allow("*", now):
            self._drop("dropped_rate", "over the reply rate", host)
            return None
        data = self._answer(request, identity, config, host, info)
        if broadcast:
            assert info is not None
            return Outgoing(data, LIMITED_BROADCAST, port, info.ifindex, info.local)
        return Outgoing(data, host, port, 0, info.local if info is not None else "")

    # -- answers --------------------------------------------------------------

    def _addresses(self) -> list[InterfaceAddress]:
        now = self._clock.seconds()
        if self._addr_cache is None or not 0 <= now - self._addr_cache[0] < 1.0:
            self._addr_cache = (now, self._host.addresses())
        return self._addr_cache[1]

    def _local_address(self, peer: str, info: PacketInfo | None) -> InterfaceAddress | None:
        """
        The device's address as seen by the requester: the address a unicast
        request was sent to, else an address of the interface it arrived on
        (the one whose subnet holds the requester first), else one whose
        subnet holds the requester.
        """
        addresses = self._addresses()
        if info is not None:
            found = address_by_ip(addresses, info.local)
            if found is not None:
                return found
            if info.ifindex:
                found = address_on_interface(addresses, info.ifindex, peer)
                if found is not None:
                    return found
        return address_for_peer(addresses, peer)

    def _firmware(self, identity: DeviceIdentity) -> str:
        try:
            dsci.encode_firmware_version(identity.firmware)
            return identity.firmware
        except ValueError:
            if not self._bad_firmware_logged:
                self._bad_firmware_logged = True
                self._log.warn("firmware {firmware!r} cannot be sent in DSCI replies (it must be "
                               "1-4 dot-separated hex numbers like 1.0.0); sending 0.0",
                               firmware=identity.firmware)
            return "0.0"

    def _answer(self, request: Request, identity: DeviceIdentity, config: DeviceConfig,
                peer: str, info: PacketInfo | None) -> bytes:
        answer = self._answers.get(request.opcode)
        if answer is None:
            # Unknown codes and, deliberately, the credential-bearing 0x1E, 0x28,
            # 0x29 and 0x2C: status 0x04, header only, so no secret can leak.
            self.stats.unsupported += 1
            return dsci.encode_status_reply(request.opcode, request.txid)
        return answer(_Query(request, identity, config, peer, info))

    def _search(self, q: _Query) -> bytes:
        local = self._local_address(q.peer, q.info)
        ip = local.address.packed if local is not None else _ip4(q.info.local if q.info else "")
        return dsci.encode_search_reply(q.txid, q.devid, ip)

    def _ping(self, q: _Query) -> bytes:
        return dsci.encode_devid_only_reply(q.request.opcode, q.txid, q.devid)

    def _name(self, q: _Query) -> bytes:
        return dsci.encode_name_reply(q.txid, q.devid, q.identity.server_name)

    def _netstat(self, q: _Query) -> bytes:
        assert isinstance(q.request, NetstatRequest)
        entries = [e for g in netstat_groups(self._net) for e in g]
        return dsci.encode_netstat_reply(q.txid, q.devid, entries, q.request.max_entries)

    def _netstat_paged(self, q: _Query) -> bytes:
        request = q.request
        assert isinstance(request, NetstatPagedRequest)
        groups = netstat_groups(self._net)
        entries = [e for g in groups for e in g]
        wanted = request.max_entries if request.max_entries > 0 else dsci.NETSTAT_PAGE_SIZE
        limit = min(wanted, dsci.NETSTAT_PAGE_SIZE)
        length = _page_length(groups, request.start_index, limit)
        return dsci.encode_netstat_paged_reply(q.txid, q.devid, entries, request.start_index, length)

    def _kernel_info(self, q: _Query) -> bytes:
        # Byte 35 = serial ports served; >= 1 makes MOXA's driver poll with 0x1D.
        identity = q.identity
        return dsci.encode_kernel_info_reply(q.txid, q.devid, self._firmware(identity),
                                             identity.serial_number & 0xFFFF,
                                             min(max(identity.port_count, 1), 255))

    def _datetime(self, q: _Query) -> bytes:
        return dsci.encode_datetime_reply(q.txid, q.devid, self._now(q.config.basic.time_zone))

    def _time_server(self, q: _Query) -> bytes:
        return dsci.encode_time_server_reply(q.txid, q.devid, q.config.basic.time_server)

    def _address(self, q: _Query) -> bytes:
        """0x21/0x22/0x23 and 0x26: the address of the interface the request came in on."""
        op = q.request.opcode
        local = self._local_address(q.peer, q.info)
        addr: IPv4Address = local.address if local is not None else ZERO_IP
        mask: IPv4Address = local.netmask if local is not None else ZERO_IP
        gateway = self._host.gateway_for(local)
        if op == dsci.OP_NETWORK_CONFIG:
            return dsci.encode_network_config_reply(q.txid, q.devid, addr.packed, mask.packed,
                                                    gateway.packed)
        value = {dsci.OP_IP: addr, dsci.OP_NETMASK: mask, dsci.OP_GATEWAY: gateway}[op]
        return dsci.encode_address_reply(op, q.txid, q.devid, value.packed)

    def _auto_report(self, q: _Query) -> bytes:
        net = q.config.network
        return dsci.encode_auto_report_settings_reply(q.txid, q.devid, net.auto_report_host,
                                                      net.auto_report_port, net.auto_report_period)

    def _dns(self, q: _Query) -> bytes:
        servers = [s.packed for s in self._host.dns()]
        if not servers:
            network = q.config.network
            servers = [IPv4Address(s).packed for s in (network.dns1, network.dns2) if s]
        servers += [ZERO_IP.packed] * 2
        return dsci.encode_dns_reply(q.txid, q.devid, servers[0], servers[1])

    def _now(self, zone: str) -> _dt.datetime:
        import zoneinfo  # on the first time query: with sysconfig about 0.9 MiB (idle memory)

        try:
            tz: _dt.tzinfo = zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = _dt.UTC
        return _dt.datetime.fromtimestamp(self._clock.seconds(), tz).replace(tzinfo=None)


class DsciService(service.Service):
    """
    The UDP 4800 (+ port offset) DSCI responder of C{server} while running.
    It appears in the server's netstat as UDP 4800.
    """

    _log = Logger()
    name = "dsci"

    def __init__(self, server: IDeviceContext, host: HostNetwork | None = None,
                 listen: Callable[[Any, int, str, DsciProtocol], Any] | None = None) -> None:
        self._server = server
        self._host = host if host is not None else HostNetwork()
        self._listen = listen if listen is not None else self._listen_pktinfo
        self.protocol: DsciProtocol | None = None
        self.port: Any = None
        self._info: ListenerInfo | None = None

    @staticmethod
    def _listen_pktinfo(reactor: Any, port: int, interface: str, protocol: DsciProtocol) -> PktInfoUDPPort:
        udp = PktInfoUDPPort(reactor, port, interface, protocol)
        udp.startListening()
        return udp

    def startService(self) -> None:
        super().startService()
        server = self._server
        # --dsci-port overrides: MOXA's drivers and tools always use 4800,
        # which needs no privilege even when the TCP ports are offset.
        fixed = server.dsci_port
        port = fixed if fixed else dsci.DSCI_PORT + server.port_offset
        bind = ipv4_bind_address(server.interface)
        if bind is None:
            self._log.warn("DSCI (UDP {port}) is IPv4 only and --interface {interface} is IPv6: "
                           "MOXA's utilities and drivers will not find this box",
                           port=port, interface=server.interface)
            return
        if not 0 < port < 65536:
            raise ListenError(f"DSCI port {port} is outside 1-65535")
        self.protocol = DsciProtocol(lambda: server.config, server.net, server.reactor, self._host)
        try:
            self.port = self._listen(server.reactor, port, bind, self.protocol)
        except OSError as e:
            message = listen_failure("udp", port, bind if bind not in ("", "0.0.0.0") else "", e,
                                     "discovery (DSCI); --no-discovery turns it off")
            self._log.critical("{message}", message=message)
            raise ListenError(message, port=port) from None
        self._info = ListenerInfo("udp", port, None, "dsci")
        server.net.add_listener(self._info)
        identity = resolve_identity(server.config, mac=self._host.mac)
        self._log.info("DSCI responder listening on UDP {bind}:{port}: {model}, MAC {mac} ({source}), "
                       "name {name!r}, serial {serial}", bind=bind, port=port,
                       model=identity.model.name, mac=identity.mac_text, source=identity.mac_source,
                       name=identity.server_name, serial=identity.serial_number)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._info is not None:
            self._server.net.remove_listener(self._info)
            self._info = None
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d = port.stopListening()
        return d if isinstance(d, Deferred) else succeed(None)
