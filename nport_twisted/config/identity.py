# -*- test-case-name: tests.test_discovery -*-
"""
Who the box says it is, and the host network facts its discovery replies
report.

Device identity (L{resolve_identity}), from the settings and the host:

  - model: C{[identity] model}, else picked by the port count
    (L{nport_twisted.config.models.default_model}); only AP ID / HW ID pairs MOXA
    published or that were seen on the wire (dsci.md §8).
  - MAC: C{[identity] mac}; else the MAC of the interface that carries the
    IPv4 default route (C{/proc/net/route} + C{/sys/class/net/IF/address});
    else, on a host without such a route or interface, a locally
    administered unicast MAC derived from C{/etc/machine-id} (stable across
    restarts, unique per installation; ours: a real NPort's MAC is burnt
    in).
  - serial number: C{[identity] serial_number}; else the last two bytes of
    the MAC read as a big-endian u16 (ours: a real NPort's serial comes from
    the factory; two bytes because 0x96 carries a u16).
  - firmware: C{[identity] firmware}.
  - server name: C{[basic] server_name}; else C{NP<short model>_<serial>}
    as a factory-default NPort names itself (dsci.md §4.1, e.g.
    C{NP5110_4660}).
  - uptime: seconds since the service started, on the injected clock.

Host network helpers: the IPv4 addresses of every interface (netlink
RTM_GETADDR dump, parsed by the pure L{parse_netlink_addresses}), the
default routes (L{parse_routes} on C{/proc/net/route}) and the DNS servers
(L{parse_resolv_conf}).  Everything that reads the host goes through
L{HostNetwork}, whose fields tests replace with fixtures.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network

import attrs

from nport_twisted.wire import dsci
from nport_twisted.config.models import Model
from nport_twisted.config.settings import DeviceConfig, format_mac, parse_mac

__all__ = [
    "MACHINE_ID_PATHS",
    "RESOLV_CONF_PATHS",
    "ZERO_IP",
    "DeviceIdentity",
    "HostNetwork",
    "InterfaceAddress",
    "Route",
    "address_by_ip",
    "address_for_peer",
    "address_on_interface",
    "default_gateway",
    "default_route",
    "default_server_name",
    "derive_serial_number",
    "dns_servers",
    "host_mac",
    "interface_mac",
    "ipv4_addresses",
    "is_ipv4_literal",
    "machine_id_mac",
    "parse_netlink_addresses",
    "parse_resolv_conf",
    "parse_routes",
    "resolve_identity",
    "route_source_address",
    "uptime",
]

ZERO_IP = IPv4Address(0)

MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")
# systemd-resolved's own file lists the real upstream servers; /etc/resolv.conf
# then usually says 127.0.0.53, which means nothing to a remote PC.
RESOLV_CONF_PATHS = ("/run/systemd/resolve/resolv.conf", "/etc/resolv.conf")
ROUTE_PATH = "/proc/net/route"
SYS_CLASS_NET = "/sys/class/net"

_RTF_UP = 0x0001


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


# --- routes -----------------------------------------------------------------


@attrs.frozen
class Route:
    """One IPv4 route of C{/proc/net/route}."""

    iface: str
    destination: IPv4Address
    gateway: IPv4Address
    mask: IPv4Address
    flags: int
    metric: int

    @property
    def is_default(self) -> bool:
        return self.destination == ZERO_IP and self.mask == ZERO_IP and bool(self.flags & _RTF_UP)


def _route_ip(field: str) -> IPv4Address:
    # The kernel prints the __be32 as a host-order %08X: packing it back in
    # native order restores the network-order bytes on either endianness.
    return IPv4Address(struct.pack("=I", int(field, 16)))


def parse_routes(text: str) -> list[Route]:
    """Parse the contents of C{/proc/net/route}; bad lines are skipped."""
    routes = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 8:
            continue
        try:
            routes.append(Route(iface=parts[0], destination=_route_ip(parts[1]),
                                gateway=_route_ip(parts[2]), flags=int(parts[3], 16),
                                metric=int(parts[6]), mask=_route_ip(parts[7])))
        except ValueError:
            continue
    return routes


def default_route(routes: Iterable[Route], iface: str | None = None) -> Route | None:
    """The default route with the lowest metric (on C{iface} if given)."""
    candidates = [r for r in routes if r.is_default and (iface is None or r.iface == iface)]
    return min(candidates, key=lambda r: r.metric, default=None)


def default_gateway(routes: Iterable[Route], iface: str | None = None) -> IPv4Address:
    """The gateway of L{default_route}, or 0.0.0.0 when there is none."""
    route = default_route(routes, iface)
    return route.gateway if route is not None else ZERO_IP


# --- MAC, serial number, name -------------------------------------------------


def interface_mac(ifname: str, sys_class_net: str = SYS_CLASS_NET) -> bytes | None:
    """The MAC of C{ifname} from sysfs, or None (missing, all zero, not Ethernet)."""
    if not ifname or "/" in ifname or ifname in (".", ".."):
        return None
    text = _read_text(os.path.join(sys_class_net, ifname, "address"))
    mac = parse_mac(text.strip()) if text else None
    if mac is None or mac == bytes(6):
        return None
    return mac


def machine_id_mac(machine_id: str) -> bytes:
    """
    A locally administered unicast MAC derived from a machine id: the first
    six bytes of SHA-256("nport-twisted:" + id), with bit 1 of the first
    byte set (locally administered) and bit 0 cleared (unicast).
    """
    import hashlib  # here, not at the top: it loads libcrypto (idle memory)

    digest = hashlib.sha256(b"nport-twisted:" + machine_id.strip().encode()).digest()
    return bytes([(digest[0] | 0x02) & 0xFE]) + digest[1:6]


def host_mac(route_path: str = ROUTE_PATH, sys_class_net: str = SYS_CLASS_NET,
             machine_id_paths: Sequence[str] = MACHINE_ID_PATHS) -> tuple[bytes, str]:
    """
    The MAC a box without a configured one presents, and where it came from:
    the default-route interface's MAC, else one derived from the machine id,
    else one derived from the host name.
    """
    text = _read_text(route_path)
    route = default_route(parse_routes(text)) if text else None
    if route is not None:
        mac = interface_mac(route.iface, sys_class_net)
        if mac is not None:
            return mac, f"interface {route.iface} (default route)"
    for path in machine_id_paths:
        machine_id = (_read_text(path) or "").strip()
        if machine_id:
            return machine_id_mac(machine_id), f"derived from {path}"
    return machine_id_mac(socket.gethostname()), "derived from the host name"


@functools.lru_cache(maxsize=1)
def _cached_host_mac() -> tuple[bytes, str]:
    return host_mac()


def derive_serial_number(mac: bytes) -> int:
    """The serial number of a box without a configured one: MAC bytes 4-5, big-endian."""
    return int.from_bytes(mac[4:6], "big")


def default_server_name(model: Model, serial_number: int) -> str:
    """A factory-default NPort name: C{NP5110_1234} (dsci.md §4.1)."""
    return f"NP{model.short_name}_{serial_number}"


@attrs.frozen
class DeviceIdentity:
    """The resolved identity; every value is what goes on the wire."""

    model: Model
    mac: bytes
    serial_number: int
    firmware: str
    server_name: str
    port_count: int
    mac_source: str

    @property
    def device_id(self) -> dsci.DeviceId:
        """The 12-byte DSCI device ID block (AP ID, HW ID, MAC)."""
        ap_id, hw_id = self.model.ids  # ValueError for a model without known IDs
        return dsci.DeviceId(ap_id=ap_id, hw_id=hw_id, mac=self.mac)

    @property
    def mac_text(self) -> str:
        return format_mac(self.mac)


def resolve_identity(config: DeviceConfig, port_count: int | None = None,
                     mac: Callable[[], tuple[bytes, str]] = _cached_host_mac) -> DeviceIdentity:
    """
    The identity presented for C{config}; C{port_count} defaults to the
    number of configured ports.  C{mac} is asked only when no MAC is
    configured.
    """
    count = len(config.ports) if port_count is None else port_count
    model = config.identity.model_info(max(count, 1))
    configured = parse_mac(config.identity.mac) if config.identity.mac else None
    if configured is not None:
        the_mac, source = configured, "configured"
    else:
        the_mac, source = mac()
    serial = config.identity.serial_number or derive_serial_number(the_mac)
    name = config.basic.server_name or default_server_name(model, serial)
    return DeviceIdentity(model=model, mac=the_mac, serial_number=serial,
                          firmware=config.identity.firmware, server_name=name,
                          port_count=count, mac_source=source)


def uptime(started_at: float, now: float) -> float:
    """Seconds since C{started_at}, never negative (clocks can step)."""
    return max(0.0, now - started_at)


# --- interface addresses --------------------------------------------------------


@attrs.frozen
class InterfaceAddress:
    """One IPv4 address of one interface."""

    index: int
    name: str  # the address label: "eth0", or "eth0:1" for an alias
    address: IPv4Address
    prefixlen: int

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(f"{self.address}/{self.prefixlen}", strict=False)

    @property
    def netmask(self) -> IPv4Address:
        return self.network.netmask

    @property
    def broadcast(self) -> IPv4Address | None:
        """The directed broadcast address; None for /31 and /32."""
        return self.network.broadcast_address if self.prefixlen < 31 else None

    @property
    def ifname(self) -> str:
        """The interface name without an alias suffix (as in /proc/net/route)."""
        return self.name.split(":", 1)[0]


_NLMSG_HDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
_NLMSG_DONE = 3
_NLMSG_ERROR = 2
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLM_F_REQUEST = 0x01
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_IFA_LABEL = 3


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_netlink_addresses(data: bytes,
                            names: Callable[[int], str] | None = None) -> tuple[list[InterfaceAddress], bool]:
    """
    Parse netlink messages of an RTM_GETADDR dump.

    @return: the IPv4 addresses found and whether the dump ended
        (NLMSG_DONE or an error message).  Malformed messages end parsing.
    """
    found: list[InterfaceAddress] = []
    pos = 0
    while pos + _NLMSG_HDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, pos)
        if length < _NLMSG_HDR.size or pos + length > len(data):
            return found, True
        if mtype in (_NLMSG_DONE, _NLMSG_ERROR):
            return found, True
        body = data[pos + _NLMSG_HDR.size:pos + length]
        pos += _align4(length)
        if mtype != _RTM_NEWADDR or len(body) < _IFADDRMSG.size:
            continue
        family, prefixlen, _f, _scope, index = _IFADDRMSG.unpack_from(body)
        if family != socket.AF_INET:
            continue
        attrs_: dict[int, bytes] = {}
        apos = _IFADDRMSG.size
        while apos + _RTATTR.size <= len(body):
            alen, atype = _RTATTR.unpack_from(body, apos)
            if alen < _RTATTR.size or apos + alen > len(body):
                break
            attrs_[atype] = body[apos + _RTATTR.size:apos + alen]
            apos += _align4(alen)
        # IFA_LOCAL is our address; IFA_ADDRESS is the peer on point-to-point links.
        raw = attrs_.get(_IFA_LOCAL) or attrs_.get(_IFA_ADDRESS)
        if raw is None or len(raw) != 4 or prefixlen > 32:
            continue
        label = attrs_.get(_IFA_LABEL, b"").split(b"\0", 1)[0].decode("ascii", "replace")
        if not label and names is not None:
            label = names(index)
        found.append(InterfaceAddress(index=index, name=label, address=IPv4Address(raw),
                                      prefixlen=prefixlen))
    return found, False


def _index_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return ""


def ipv4_addresses() -> list[InterfaceAddress]:
    """Every IPv4 address of this network namespace (netlink); [] on failure."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (OSError, AttributeError):
        return []
    with sock:
        try:
            sock.settimeout(1.0)
            sock.bind((0, 0))
            request = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
            sock.send(_NLMSG_HDR.pack(_NLMSG_HDR.size + len(request), _RTM_GETADDR,
                                      _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0) + request)
            result: list[InterfaceAddress] = []
            for _ in range(1000):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                found, done = parse_netlink_addresses(chunk, _index_name)
                result.extend(found)
                if done:
                    break
            return result
        except OSError:
            return []


def address_by_ip(addresses: Iterable[InterfaceAddress], ip: str | IPv4Address) -> InterfaceAddress | None:
    """The entry holding C{ip}, if any."""
    try:
        wanted = IPv4Address(ip)
    except ValueError:
        return None
    return next((a for a in addresses if a.address == wanted), None)


def address_for_peer(addresses: Iterable[InterfaceAddress], peer: str,
                     ifindex: int = 0) -> InterfaceAddress | None:
    """
    The address whose subnet contains C{peer} (the most specific one), on
    interface C{ifindex} if that is not 0.
    """
    try:
        ip = IPv4Address(peer)
    except ValueError:
        return None
    matches = [a for a in addresses if ip in a.network and (not ifindex or a.index == ifindex)]
    return max(matches, key=lambda a: a.prefixlen, default=None)


def address_on_interface(addresses: Iterable[InterfaceAddress], ifindex: int,
                         peer: str | None = None) -> InterfaceAddress | None:
    """
    An address of interface C{ifindex}: the one whose subnet holds C{peer}
    if there is one, else the first (the primary address).
    """
    on_if = [a for a in addresses if a.index == ifindex]
    if peer is not None:
        match = address_for_peer(on_if, peer)
        if match is not None:
            return match
    return on_if[0] if on_if else None


# --- DNS ------------------------------------------------------------------------


def parse_resolv_conf(text: str) -> list[IPv4Address]:
    """The IPv4 C{nameserver} entries of a resolv.conf, in order."""
    servers = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                servers.append(IPv4Address(parts[1]))
            except ValueError:
                continue
    return servers


def dns_servers(paths: Sequence[str] = RESOLV_CONF_PATHS) -> list[IPv4Address]:
    """
    The host's IPv4 DNS servers that mean something to another machine:
    the first file in C{paths} that lists a non-loopback server wins.
    """
    for path in paths:
        text = _read_text(path)
        if text is None:
            continue
        servers = [s for s in parse_resolv_conf(text) if not s.is_loopback]
        if servers:
            return servers
    return []


def route_source_address(host: str) -> str | None:
    """
    The local address the kernel would send from to reach C{host} (a UDP
    socket is connected, which sends nothing), or None.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((host, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


@attrs.frozen
class HostNetwork:
    """
    The host queries discovery needs; tests replace any of them with fixtures.
    """

    addresses: Callable[[], list[InterfaceAddress]] = ipv4_addresses
    routes: Callable[[], list[Route]] = attrs.field(
        default=lambda: parse_routes(_read_text(ROUTE_PATH) or ""))
    dns: Callable[[], list[IPv4Address]] = dns_servers
    mac: Callable[[], tuple[bytes, str]] = _cached_host_mac
    source_for: Callable[[str], str | None] = route_source_address

    def gateway_for(self, address: InterfaceAddress | None) -> IPv4Address:
        """The default gateway reached through C{address}'s interface, else 0.0.0.0."""
        if address is None:
            return ZERO_IP
        return default_gateway(self.routes(), address.ifname)


def is_ipv4_literal(text: str) -> bool:
    """Whether C{text} is a dotted-quad IPv4 address."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def as_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address C{host} names (an IPv4-mapped IPv6 address too), else None."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return ip.ipv4_mapped
    return ip


def ipv4_bind_address(interface: str) -> str | None:
    """The IPv4 address to bind DSCI to for C{--interface}, None if it is IPv6-only."""
    if interface in ("", "::", "0.0.0.0"):
        return "0.0.0.0"
    ip = as_ipv4(interface)
    if ip is not None:
        return str(ip)
    if ":" in interface:
        return None
    return interface  # a host name: let bind() resolve it or fail
