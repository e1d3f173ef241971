# -*- test-case-name: tests.test_discovery -*-
"""
Tests for L{nport_twisted.config.identity} and the device services: the
device identity, the UDP 4800 DSCI responder, the Auto IP Report and the
TCP 4900 capture.

Fixtures marked "real" are datagrams or values quoted in dsci.md §4-§5.
"""

from __future__ import annotations

import datetime
import os
import socket
import struct
from ipaddress import IPv4Address
from typing import Any

import attrs
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address as TCPAddress
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.wire import dsci
from nport_twisted.config.store import SettingsStore
from nport_twisted.net.ratelimit import RateLimiter
from nport_twisted.services.autoreport import AutoReportService
from nport_twisted.services.capture import CAPTURE_FILE, CaptureFactory, CaptureLog, capture_service, hexdump
from nport_twisted.services.discovery import device_services
from nport_twisted.services.dsci_responder import (
    DsciProtocol,
    DsciService,
    Outgoing,
    PktInfoUDPPort,
    netstat_groups,
)
from nport_twisted.wire.pktinfo import PacketInfo, arrived_by_broadcast, pack_pktinfo, unpack_pktinfo
from nport_twisted.net.listener import ConnectionInfo, ListenerInfo, NetTable
from nport_twisted.config.identity import (
    DeviceIdentity,
    HostNetwork,
    InterfaceAddress,
    address_for_peer,
    address_on_interface,
    default_gateway,
    default_route,
    default_server_name,
    derive_serial_number,
    dns_servers,
    host_mac,
    interface_mac,
    ipv4_addresses,
    machine_id_mac,
    parse_netlink_addresses,
    parse_resolv_conf,
    parse_routes,
    resolve_identity,
    uptime,
)
from nport_twisted.config.models import MODELS
from nport_twisted.server import NPortService
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    AutoWarningSettings,
    BasicSettings,
    DeviceConfig,
    Identity,
    NetworkSettings,
    OpMode,
    PasswordSettings,
)
from nport_twisted.testing import FakeSerialDevice


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


# /proc/net/route of a little-endian host: default via 192.168.127.1 on eth0.
ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "eth0\t00000000\t017FA8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "eth0\t007FA8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
    "eth1\t0000000A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
)

MAC = h("00 90 e8 12 34 56")
ETH0 = InterfaceAddress(2, "eth0", IPv4Address("192.168.127.254"), 24)
ETH1 = InterfaceAddress(3, "eth1", IPv4Address("10.0.0.5"), 16)
LO = InterfaceAddress(1, "lo", IPv4Address("127.0.0.1"), 8)

HOST = HostNetwork(
    addresses=lambda: [LO, ETH0, ETH1],
    routes=lambda: parse_routes(ROUTES),
    dns=lambda: [IPv4Address("192.168.127.53"), IPv4Address("9.9.9.9")],
    mac=lambda: (MAC, "fixture"),
    source_for=lambda host: "192.168.127.254",
)

PC = ("192.168.127.1", 50000)
VIA_BROADCAST = PacketInfo(ifindex=2, local="192.168.127.254", destination="255.255.255.255")
VIA_UNICAST = PacketInfo(ifindex=2, local="192.168.127.254", destination="192.168.127.254")

CONFIG = DeviceConfig().with_port_count(1, OpMode.REAL_COM)
DEVID = dsci.DeviceId(ap_id=0x80005110, hw_id=0x5110, mac=MAC)
SEARCH = h("01 00 00 08 00 00 00 00")


class FakeUDP:
    """Records what a protocol sends, like L{PktInfoUDPPort.send_reply}."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def send_reply(self, data: bytes, addr: tuple[str, int], ifindex: int = 0, source: str = "") -> bool:
        self.sent.append(Outgoing(data, addr[0], addr[1], ifindex, source))
        return True


def responder(config: DeviceConfig = CONFIG, net: NetTable | None = None, clock: Clock | None = None,
              host: HostNetwork = HOST, **kw: Any) -> tuple[DsciProtocol, FakeUDP, Clock]:
    """A DSCI protocol on a fake transport and clock."""
    clock = clock if clock is not None else Clock()
    holder = {"config": config}
    proto = DsciProtocol(lambda: holder["config"], net if net is not None else NetTable(), clock,
                         host, **kw)
    proto.holder = holder  # type: ignore[attr-defined]
    udp = FakeUDP()
    proto.makeConnection(udp)
    return proto, udp, clock


def ask(proto: DsciProtocol, udp: FakeUDP, datagram: bytes, info: PacketInfo | None = VIA_UNICAST,
        peer: tuple[str, int] = PC) -> Outgoing | None:
    """Feed one datagram; the reply sent, or None."""
    before = len(udp.sent)
    proto.datagramReceived(datagram, peer, info)
    return udp.sent[-1] if len(udp.sent) > before else None


def request(opcode: int, payload: bytes = b"", txid: int = 0x01020304,
            device_id: dsci.DeviceId = DEVID) -> bytes:
    return dsci.encode_request(opcode, txid, device_id, payload)


# --- identity ------------------------------------------------------------------------


class RouteTests(SynchronousTestCase):
    def test_default_route_and_gateway(self) -> None:
        """The default route of /proc/net/route gives the interface and the gateway."""
        routes = parse_routes(ROUTES)
        self.assertEqual(default_route(routes).iface, "eth0")  # type: ignore[union-attr]
        self.assertEqual(default_gateway(routes), IPv4Address("192.168.127.1"))
        self.assertEqual(default_gateway(routes, "eth1"), IPv4Address("0.0.0.0"))

    def test_lowest_metric_wins(self) -> None:
        """Of two default routes the one with the lower metric is used."""
        text = ROUTES + "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t50\t00000000\t0\t0\t0\n"
        self.assertEqual(default_route(parse_routes(text)).iface, "wlan0")  # type: ignore[union-attr]

    def test_down_route_ignored_and_garbage_skipped(self) -> None:
        """A default route without RTF_UP and malformed lines are ignored."""
        text = "Iface\n" + "eth9\t00000000\t017FA8C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\nbad line\n"
        self.assertIsNone(default_route(parse_routes(text)))


class MacTests(SynchronousTestCase):
    def _sysfs(self, macs: dict[str, str]) -> str:
        root = self.mktemp()
        for name, mac in macs.items():
            os.makedirs(os.path.join(root, name))
            with open(os.path.join(root, name, "address"), "w") as f:
                f.write(mac + "\n")
        return root

    def _file(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_default_route_interface_mac(self) -> None:
        """Without a configured MAC the default-route interface's MAC is used."""
        sysfs = self._sysfs({"eth0": "00:90:e8:aa:bb:cc", "eth1": "00:11:22:33:44:55"})
        mac, source = host_mac(self._file(ROUTES), sysfs, ())
        self.assertEqual(mac, h("00 90 e8 aa bb cc"))
        self.assertIn("eth0", source)

    def test_machine_id_fallback(self) -> None:
        """Without a default route the MAC is derived from the machine id: local, unicast, stable."""
        machine_id = self._file("0123456789abcdef0123456789abcdef\n")
        mac, source = host_mac(self._file("Iface\n"), self._sysfs({}), [machine_id])
        self.assertEqual(mac, machine_id_mac("0123456789abcdef0123456789abcdef"))
        self.assertEqual(mac[0] & 0x03, 0x02)
        self.assertIn(machine_id, source)

    def test_zero_mac_rejected(self) -> None:
        """An all-zero sysfs MAC (e.g. a tunnel) is not a MAC."""
        self.assertIsNone(interface_mac("tun0", self._sysfs({"tun0": "00:00:00:00:00:00"})))
        self.assertIsNone(interface_mac("../etc", self._sysfs({})))


class IdentityTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """One port: NPort 5110, host MAC, serial from the MAC's last two bytes, NP5110_<serial>."""
        identity = resolve_identity(CONFIG, mac=lambda: (MAC, "fixture"))
        self.assertEqual(identity.model, MODELS["NPort 5110"])
        self.assertEqual(identity.mac, MAC)
        self.assertEqual(identity.serial_number, 0x3456)
        self.assertEqual(identity.server_name, f"NP5110_{0x3456}")
        self.assertEqual(identity.device_id, DEVID)
        self.assertEqual(identity.firmware, "1.0.0")

    def test_configured_values_win(self) -> None:
        """A configured model, MAC, serial number and server name are used as they are."""
        config = attrs.evolve(CONFIG, identity=Identity(model="NPort 5232", mac="00-90-E8-01-02-03",
                                                        serial_number=2002, firmware="2.10"),
                              basic=BasicSettings(server_name="Xcom-LAN"))

        def no_host() -> tuple[bytes, str]:
            raise AssertionError("the host MAC must not be read")

        identity = resolve_identity(config, mac=no_host)
        self.assertEqual((identity.model.name, identity.mac, identity.serial_number,
                          identity.server_name, identity.mac_source),
                         ("NPort 5232", h("00 90 e8 01 02 03"), 2002, "Xcom-LAN", "configured"))

    def test_default_name_like_real_devices(self) -> None:
        """Factory-default names look like NP5110A_1234 (real: NP6250_5896, NP5450_9335)."""
        self.assertEqual(default_server_name(MODELS["NPort 5110A"], 1234), "NP5110A_1234")
        self.assertEqual(default_server_name(MODELS["NPort 6250"], 5896), "NP6250_5896")
        self.assertEqual(derive_serial_number(h("00 90 e8 00 17 0f")), 0x170F)

    def test_uptime(self) -> None:
        """Uptime counts from the start on the injected clock and never goes negative."""
        self.assertEqual(uptime(100.0, 160.5), 60.5)
        self.assertEqual(uptime(100.0, 50.0), 0.0)


def _nlmsg(mtype: int, body: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 1, 0) + body + b"\0" * (-len(body) % 4)


def _rta(atype: int, data: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(data), atype) + data + b"\0" * (-len(data) % 4)


class AddressTests(SynchronousTestCase):
    def test_parse_netlink(self) -> None:
        """RTM_NEWADDR messages give index, label, local address and prefix; IPv6 is skipped."""
        v4 = struct.pack("=BBBBI", socket.AF_INET, 24, 0, 0, 2) + _rta(1, h("c0 a8 7f fe")) \
            + _rta(2, h("c0 a8 7f fe")) + _rta(3, b"eth0\0")
        ptp = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 5) + _rta(1, h("0a 00 00 01")) \
            + _rta(2, h("0a 00 00 02"))
        v6 = struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 2) + _rta(1, bytes(16))
        data = _nlmsg(20, v4) + _nlmsg(20, ptp) + _nlmsg(20, v6) + _nlmsg(3, b"\0" * 4)
        found, done = parse_netlink_addresses(data, names=lambda i: f"if{i}")
        self.assertTrue(done)
        self.assertEqual(found, [InterfaceAddress(2, "eth0", IPv4Address("192.168.127.254"), 24),
                                 InterfaceAddress(5, "if5", IPv4Address("10.0.0.2"), 32)])

    def test_parse_netlink_truncated(self) -> None:
        """A message cut short ends parsing without an exception."""
        found, done = parse_netlink_addresses(_nlmsg(20, b"\x02\x18")[:-3])
        self.assertEqual((found, done), ([], True))

    def test_host_addresses_include_loopback(self) -> None:
        """The netlink dump of this host lists 127.0.0.1 on loopback."""
        self.assertIn(IPv4Address("127.0.0.1"), [a.address for a in ipv4_addresses()])

    def test_address_selection(self) -> None:
        """The address of an interface prefers the subnet holding the peer; peers pick subnets."""
        alias = InterfaceAddress(2, "eth0:1", IPv4Address("172.16.0.1"), 12)
        addrs = [ETH0, alias, ETH1]
        self.assertEqual(address_on_interface(addrs, 2, "172.16.9.9"), alias)
        self.assertEqual(address_on_interface(addrs, 2, "8.8.8.8"), ETH0)
        self.assertEqual(address_for_peer(addrs, "10.0.200.1"), ETH1)
        self.assertIsNone(address_for_peer(addrs, "8.8.8.8"))
        self.assertEqual(alias.ifname, "eth0")

    def test_resolv_conf(self) -> None:
        """IPv4 nameservers are read in order; loopback stubs make the next file count."""
        self.assertEqual(parse_resolv_conf("# x\nnameserver 1.1.1.1 # c\nnameserver ::1\n"
                                           "search lan\nnameserver 9.9.9.9\n"),
                         [IPv4Address("1.1.1.1"), IPv4Address("9.9.9.9")])
        stub, real = self.mktemp(), self.mktemp()
        with open(stub, "w") as f:
            f.write("nameserver 127.0.0.53\n")
        with open(real, "w") as f:
            f.write("nameserver 192.0.2.53\n")
        self.assertEqual(dns_servers([stub, real]), [IPv4Address("192.0.2.53")])


# --- the DSCI responder ---------------------------------------------------------------


class SearchTests(SynchronousTestCase):
    def test_broadcast_search_answered_by_broadcast(self) -> None:
        """The 8-byte search that came by broadcast is answered to 255.255.255.255 from the same interface."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, VIA_BROADCAST)
        self.assertEqual(out, Outgoing(dsci.encode_search_reply(0, DEVID, h("c0 a8 7f fe")),
                                       "255.255.255.255", 50000, 2, "192.168.127.254"))

    def test_real_5110a_reply(self) -> None:
        """Presenting the NPort 5110A of the DSU capture gives byte for byte its real 0x81 reply."""
        config = attrs.evolve(CONFIG, identity=Identity(model="5110A", mac="00:90:e8:3c:f8:7e"))
        host = attrs.evolve(HOST, addresses=lambda: [
            InterfaceAddress(2, "eth0", IPv4Address("192.168.88.250"), 24)])
        proto, udp, _ = responder(config, host=host)
        info = PacketInfo(2, "192.168.88.250", "255.255.255.255")
        out = ask(proto, udp, SEARCH, info, ("192.168.88.10", 61000))
        assert out is not None
        self.assertEqual(out.data, h("81 00 00 18 00 00 00 00 00 51 01 80 1a 51 00 90 e8 3c f8 7e "
                                     "c0 a8 58 fa"))

    def test_unicast_search_answered_by_unicast(self) -> None:
        """A unicast search is answered to the sender, from the address it was sent to."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, VIA_UNICAST)
        self.assertEqual((out.host, out.port, out.ifindex, out.source),  # type: ignore[union-attr]
                         ("192.168.127.1", 50000, 0, "192.168.127.254"))

    def test_directed_broadcast_answered_by_broadcast(self) -> None:
        """A search sent to our subnet's broadcast address is answered by limited broadcast."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, PacketInfo(2, "192.168.127.254", "192.168.127.255"))
        self.assertTrue(out.broadcast)  # type: ignore[union-attr]

    def test_reply_ip_is_the_receiving_interface(self) -> None:
        """The IPv4 in 0x81 is the address of the interface the request arrived on."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, PacketInfo(3, "10.0.0.5", "255.255.255.255"), ("10.0.9.9", 4000))
        self.assertEqual(dsci.decode_search_reply(out.data).ipv4, h("0a 00 00 05"))  # type: ignore[union-attr]

    def test_targeted_search(self) -> None:
        """The 20-byte search with our device ID is answered with the normal 0x81, txid echoed."""
        proto, udp, _ = responder()
        out = ask(proto, udp, dsci.encode_search_request(0xCAFE, DEVID))
        reply = dsci.decode_search_reply(out.data)  # type: ignore[union-attr]
        self.assertEqual((reply.txid, reply.device_id), (0xCAFE, DEVID))

    def test_foreign_device_id_dropped(self) -> None:
        """A targeted request naming another device gets no reply."""
        proto, udp, _ = responder()
        other = attrs.evolve(DEVID, mac=h("00 90 e8 00 00 01"))
        for datagram in (dsci.encode_search_request(0, other), request(dsci.OP_NAME, device_id=other),
                         request(0x28, device_id=other)):
            self.assertIsNone(ask(proto, udp, datagram))
        self.assertEqual(proto.stats.dropped_foreign, 3)

    def test_no_packet_info(self) -> None:
        """Without IP_PKTINFO the reply is unicast and the IP comes from the peer's subnet."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, None)
        self.assertEqual((out.host, out.ifindex), ("192.168.127.1", 0))  # type: ignore[union-attr]
        self.assertEqual(dsci.decode_search_reply(out.data).ipv4, h("c0 a8 7f fe"))  # type: ignore[union-attr]


class ValidationTests(SynchronousTestCase):
    def assertDropped(self, datagram: bytes, counter: str, **kw: Any) -> None:
        proto, udp, _ = responder()
        self.assertIsNone(ask(proto, udp, datagram, **kw))
        self.assertEqual(getattr(proto.stats, counter), 1)
        self.assertEqual(udp.sent, [])

    def test_short(self) -> None:
        """Datagrams shorter than the 8-byte header are dropped."""
        for datagram in (b"", b"\x01", h("01 00 00 08 00 00 00")):
            self.assertDropped(datagram, "dropped_invalid")

    def test_length_mismatch(self) -> None:
        """A header length different from the datagram length is dropped, either way."""
        self.assertDropped(h("01 00 00 09 00 00 00 00"), "dropped_invalid")
        self.assertDropped(SEARCH + b"\0", "dropped_invalid")
        self.assertDropped(request(dsci.OP_NAME)[:-1], "dropped_invalid")

    def test_missing_device_id(self) -> None:
        """A request other than the search without a device ID is dropped."""
        self.assertDropped(h("10 00 00 08 00 00 00 00"), "dropped_invalid")

    def test_oversized(self) -> None:
        """A datagram over MAX_REQUEST is dropped even with a matching length field."""
        self.assertDropped(request(dsci.OP_NAME, b"\0" * 600), "dropped_oversized")

    def test_replies_never_answered(self) -> None:
        """Datagrams with the reply bit set, e.g. a real 0x81, are never answered."""
        real_5232 = h("81 00 00 18 00 00 00 00 12 03 00 80 32 03 00 90 e8 26 4a ab c0 a8 7f fe")
        self.assertDropped(real_5232, "dropped_reply")
        self.assertDropped(dsci.encode_status_reply(0x28, 0), "dropped_reply")

    def test_unanswerable_source(self) -> None:
        """A unicast request from port 0 or from 0.0.0.0 cannot be answered and is dropped."""
        self.assertDropped(SEARCH, "dropped_unroutable", peer=("192.168.127.1", 0))
        self.assertDropped(SEARCH, "dropped_unroutable", peer=("0.0.0.0", 68))

    def test_zero_source_by_broadcast(self) -> None:
        """A PC without an address (0.0.0.0) that broadcasts still gets a broadcast answer."""
        proto, udp, _ = responder()
        out = ask(proto, udp, SEARCH, VIA_BROADCAST, ("0.0.0.0", 4000))
        self.assertEqual((out.host, out.port), ("255.255.255.255", 4000))  # type: ignore[union-attr]

    def test_accessible_ip_list(self) -> None:
        """With an active accessible IP list only listed hosts get answers."""
        config = attrs.evolve(CONFIG, accessible_ip=AccessibleIPSettings(
            (AccessibleIP("10.0.0.0", "255.0.0.0"),)))
        proto, udp, _ = responder(config)
        self.assertIsNone(ask(proto, udp, SEARCH))
        self.assertIsNotNone(ask(proto, udp, SEARCH, peer=("10.1.2.3", 4000)))
        self.assertEqual(proto.stats.dropped_acl, 1)

    def test_drops_logged_at_debug_with_a_limit(self) -> None:
        """Drops are logged at debug level, and a flood does not flood the log."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        proto, udp, _ = responder()
        for _ in range(100):
            ask(proto, udp, b"junk")
        self.assertEqual(proto.stats.dropped_invalid, 100)
        logged = [e for e in events if "dropped" in e.get("log_format", "")]
        self.assertEqual({e["log_level"].name for e in logged}, {"debug"})
        self.assertLessEqual(len(logged), 20)


class CodeTests(SynchronousTestCase):
    def test_ping(self) -> None:
        """0x02 gets the 20-byte header + device ID reply."""
        proto, udp, _ = responder()
        out = ask(proto, udp, request(dsci.OP_PING))
        self.assertEqual(out.data, dsci.encode_devid_only_reply(2, 0x01020304, DEVID))  # type: ignore[union-attr]
        self.assertEqual(len(out.data), 20)  # type: ignore[union-attr]

    def test_name_zero_padded(self) -> None:
        """0x10 gets 60 bytes: the name, then zeros (never garbage after the NUL)."""
        config = attrs.evolve(CONFIG, basic=BasicSettings(server_name="Xcom-LAN"))
        proto, udp, _ = responder(config)
        out = ask(proto, udp, h("10 00 00 14 00 00 00 00") + DEVID.to_bytes())
        assert out is not None
        self.assertEqual(out.data[:4], h("90 00 00 3c"))
        self.assertEqual(out.data[20:], b"Xcom-LAN".ljust(40, b"\0"))

    def test_kernel_info(self) -> None:
        """0x96 carries firmware (real 1.1.31 = 00 31 01 01), serial and the port count in byte 35."""
        config = attrs.evolve(CONFIG.with_port_count(2, OpMode.REAL_COM),
                              identity=Identity(firmware="1.1.31", serial_number=2002))
        proto, udp, _ = responder(config)
        devid = resolve_identity(config, mac=HOST.mac).device_id  # an NPort 5232
        out = ask(proto, udp, request(dsci.OP_KERNEL_INFO, device_id=devid))
        assert out is not None
        self.assertEqual(len(out.data), 36)
        self.assertEqual(out.data[20:24], h("00 31 01 01"))
        self.assertEqual(out.data[28:30], h("d2 07"))
        self.assertEqual(out.data[35], 2)
        info = dsci.decode_kernel_info_reply(out.data)
        self.assertNotEqual(info.dsci_version, 0)  # MOXA's driver then polls with 0x1D

    def test_kernel_info_bad_firmware_text(self) -> None:
        """A firmware string the wire cannot carry is sent as 0.0 instead of failing."""
        config = attrs.evolve(CONFIG, identity=Identity(firmware="1.0-beta"))
        proto, udp, _ = responder(config)
        out = ask(proto, udp, request(dsci.OP_KERNEL_INFO))
        self.assertEqual(dsci.decode_kernel_info_reply(out.data).firmware, "0.0")  # type: ignore[union-attr]

    def test_datetime(self) -> None:
        """0x1A reports the injected clock's time in the configured time zone."""
        clock = Clock()
        clock.advance(datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC).timestamp())
        config = attrs.evolve(CONFIG, basic=BasicSettings(time_zone="Europe/Berlin"))
        proto, udp, _ = responder(config, clock=clock)
        out = ask(proto, udp, request(dsci.OP_DATETIME))
        self.assertEqual(dsci.decode_datetime_reply(out.data),  # type: ignore[union-attr]
                         datetime.datetime(2024, 5, 6, 9, 8, 9))

    def test_time_server(self) -> None:
        """0x1B reports the configured time server."""
        config = attrs.evolve(CONFIG, basic=BasicSettings(time_server="pool.ntp.org"))
        proto, udp, _ = responder(config)
        out = ask(proto, udp, request(dsci.OP_TIME_SERVER))
        self.assertEqual(dsci.decode_time_server_reply(out.data), "pool.ntp.org")  # type: ignore[union-attr]

    def test_addresses_of_the_receiving_interface(self) -> None:
        """0x21/0x22/0x23 give IP, netmask and gateway of the interface the request came in on."""
        proto, udp, _ = responder()
        on_eth0 = [ask(proto, udp, request(op)) for op in (0x21, 0x22, 0x23)]
        self.assertEqual([dsci.decode_address_reply(o.data) for o in on_eth0],  # type: ignore[union-attr]
                         [h("c0 a8 7f fe"), h("ff ff ff 00"), h("c0 a8 7f 01")])
        info = PacketInfo(3, "10.0.0.5", "10.0.0.5")
        on_eth1 = [ask(proto, udp, request(op), info, ("10.0.1.1", 4000)) for op in (0x21, 0x22, 0x23)]
        self.assertEqual([dsci.decode_address_reply(o.data) for o in on_eth1],  # type: ignore[union-attr]
                         [h("0a 00 00 05"), h("ff ff 00 00"), h("00 00 00 00")])

    def test_network_config_like_the_dsu_capture(self) -> None:
        """0x26 (DSU's 00 02 form) gives the real 40-byte 0xA6 layout: 192.168.88.250/24 gw .1."""
        routes = ROUTES.replace("017FA8C0", "0158A8C0")
        host = attrs.evolve(HOST, routes=lambda: parse_routes(routes), addresses=lambda: [
            InterfaceAddress(2, "eth0", IPv4Address("192.168.88.250"), 24)])
        proto, udp, _ = responder(host=host)
        out = ask(proto, udp, dsci.encode_network_config_request(0, DEVID),
                  PacketInfo(2, "192.168.88.250", "192.168.88.250"), ("192.168.88.10", 61000))
        assert out is not None
        self.assertEqual(out.data, h("a6 00 00 28 00 00 00 00") + DEVID.to_bytes()
                         + h("01 00 00 00 00 00 01 00 c0 a8 58 fa ff ff ff 00 c0 a8 58 01"))

    def test_auto_report_settings(self) -> None:
        """0x25 reports the Auto IP Report host, port and period."""
        config = attrs.evolve(CONFIG, network=NetworkSettings(auto_report_host="192.168.127.1",
                                                              auto_report_port=4002,
                                                              auto_report_period=30))
        proto, udp, _ = responder(config)
        out = ask(proto, udp, request(dsci.OP_AUTO_REPORT))
        self.assertEqual(dsci.decode_auto_report_settings_reply(out.data),  # type: ignore[union-attr]
                         dsci.AutoReportSettings("192.168.127.1", 4002, 30))

    def test_dns(self) -> None:
        """0x27 reports the host's first two DNS servers, else the configured ones."""
        proto, udp, _ = responder()
        out = ask(proto, udp, request(dsci.OP_DNS))
        self.assertEqual(dsci.decode_dns_reply(out.data),  # type: ignore[union-attr]
                         (h("c0 a8 7f 35"), h("09 09 09 09")))
        config = attrs.evolve(CONFIG, network=NetworkSettings(dns1="1.1.1.1"))
        proto, udp, _ = responder(config, host=attrs.evolve(HOST, dns=list))
        out = ask(proto, udp, request(dsci.OP_DNS))
        self.assertEqual(dsci.decode_dns_reply(out.data), (h("01 01 01 01"), bytes(4)))  # type: ignore[union-attr]

    def test_unsupported_codes(self) -> None:
        """Unknown codes (and 0x79 on this IPv4 build) get the 8-byte header with status 0x04."""
        proto, udp, _ = responder()
        for op in (0x03, 0x31, 0x47, 0x79, 0x7F):
            out = ask(proto, udp, request(op, txid=op))
            self.assertEqual(out.data, bytes([op | 0x80, 0x04, 0, 8, 0, 0, 0, op]))  # type: ignore[union-attr]
        self.assertEqual(proto.stats.unsupported, 5)

    def test_credential_codes_leak_nothing(self) -> None:
        """0x1E, 0x28, 0x29 and 0x2C answer status 0x04 with no payload, whatever the secrets."""
        config = attrs.evolve(
            CONFIG, network=NetworkSettings(snmp_community="s3cretcomm"),
            auto_warning=AutoWarningSettings(mail_password="m4ilpass"),
            password=PasswordSettings.from_password("adm1npass", salt=b"0" * 16))
        proto, udp, _ = responder(config)
        ask(proto, udp, request(dsci.OP_KERNEL_INFO))  # Metasploit's "unlock1" first
        for op in (0x1E, 0x28, 0x29, 0x2C):
            out = ask(proto, udp, request(op, b"\0" * 4))
            assert out is not None
            self.assertEqual(out.data, dsci.encode_status_reply(op, 0x01020304))
            for secret in (b"s3cretcomm", b"m4ilpass", b"adm1npass", b"scrypt"):
                self.assertNotIn(secret, out.data)


class RateLimitTests(SynchronousTestCase):
    def test_per_source_bucket(self) -> None:
        """One source gets its burst of 40 replies, then 20 a second; others are unaffected."""
        proto, udp, clock = responder()
        answered = [ask(proto, udp, SEARCH) is not None for _ in range(50)]
        self.assertEqual(answered.count(True), 40)
        self.assertEqual(proto.stats.dropped_rate, 10)
        self.assertIsNotNone(ask(proto, udp, SEARCH, peer=("192.168.127.2", 50000)))
        clock.advance(0.5)
        answered = [ask(proto, udp, SEARCH) is not None for _ in range(20)]
        self.assertEqual(answered.count(True), 10)

    def test_overall_bucket(self) -> None:
        """Many sources together are held to the overall rate."""
        proto, udp, _ = responder(overall=RateLimiter(10.0, 5.0, 1))
        answered = [ask(proto, udp, SEARCH, peer=(f"192.168.127.{i}", 4000)) for i in range(1, 9)]
        self.assertEqual(sum(o is not None for o in answered), 5)

    def test_table_bounded(self) -> None:
        """The limiter keeps at most max_keys sources, forgetting the least recently used."""
        limiter = RateLimiter(1.0, 1.0, max_keys=3)
        for key in "abcd":
            self.assertTrue(limiter.allow(key, 0.0))
        self.assertEqual(len(limiter), 3)
        self.assertFalse(limiter.allow("d", 0.0))
        self.assertTrue(limiter.allow("a", 0.0))  # forgotten, so full again

    def test_invalid_parameters(self) -> None:
        """A limiter needs a positive rate and a burst of at least one."""
        self.assertRaises(ValueError, RateLimiter, 0.0, 1.0)
        self.assertRaises(ValueError, RateLimiter, 1.0, 0.5)


class BroadcastDetectionTests(SynchronousTestCase):
    def test_cases(self) -> None:
        """Limited and directed broadcasts count as broadcast; our address and multicast do not."""
        addrs = [ETH0, ETH1]
        cases = {
            "255.255.255.255": True, "192.168.127.255": True, "10.0.255.255": True,
            "192.168.127.254": False, "224.0.0.1": False,
        }
        for dst, expected in cases.items():
            info = PacketInfo(2, "192.168.127.254", dst)
            self.assertEqual(arrived_by_broadcast(info, addrs), expected, dst)
        # Unknown addresses: a destination other than the matched local one is a broadcast.
        self.assertTrue(arrived_by_broadcast(PacketInfo(7, "172.16.0.1", "172.16.255.255"), []))

    def test_pktinfo_round_trip(self) -> None:
        """in_pktinfo packs the interface and source, and unpacks what the kernel reports."""
        raw = struct.pack("=i4s4s", 3, socket.inet_aton("10.0.0.5"), socket.inet_aton("255.255.255.255"))
        self.assertEqual(unpack_pktinfo(raw), PacketInfo(3, "10.0.0.5", "255.255.255.255"))
        self.assertEqual(pack_pktinfo(3, "10.0.0.5")[:8], raw[:8])
        self.assertEqual(pack_pktinfo(0), bytes(12))


# --- netstat ----------------------------------------------------------------------------


def _table() -> NetTable:
    net = NetTable()
    for info in (ListenerInfo("tcp", 950, 0), ListenerInfo("udp", 4800, None),
                 ListenerInfo("tcp", 966, 0), ListenerInfo("tcp", 4900, None)):
        net.add_listener(info)
    net.connections.append(ConnectionInfo("192.168.127.254", 950, "192.168.127.1", 40001, 0))
    net.connections.append(ConnectionInfo("::ffff:192.168.127.254", 966, "::ffff:192.168.127.1", 40002, 0))
    net.connections.append(ConnectionInfo("2001:db8::1", 966, "2001:db8::2", 40003, 0))
    return net


class NetstatTests(SynchronousTestCase):
    def test_entries(self) -> None:
        """Device services first, then each listener followed by its connections (LISTEN 1, CONNECTED 4)."""
        entries = [e for g in netstat_groups(_table()) for e in g]
        any_ip, dev, pc = bytes(4), h("c0 a8 7f fe"), h("c0 a8 7f 01")
        self.assertEqual(entries, [
            dsci.NetstatEntry(any_ip, any_ip, 0, 4800, dsci.SOCK_UDP, 0, 0),
            dsci.NetstatEntry(any_ip, any_ip, 0, 4900, dsci.SOCK_TCP, dsci.TCP_LISTEN, 0),
            dsci.NetstatEntry(any_ip, any_ip, 0, 950, dsci.SOCK_TCP, dsci.TCP_LISTEN, 1),
            dsci.NetstatEntry(pc, dev, 40001, 950, dsci.SOCK_TCP, dsci.TCP_CONNECTED, 1),
            dsci.NetstatEntry(any_ip, any_ip, 0, 966, dsci.SOCK_TCP, dsci.TCP_LISTEN, 1),
            dsci.NetstatEntry(pc, dev, 40002, 966, dsci.SOCK_TCP, dsci.TCP_CONNECTED, 1),
        ])

    def test_little_endian_ports_like_the_6250(self) -> None:
        """Ports are little-endian on the wire: UDP 4800 = c0 12, TCP 4900 = 24 13 (real NPort 6250)."""
        proto, udp, _ = responder(net=_table())
        out = ask(proto, udp, dsci.encode_netstat_request(7, DEVID))
        assert out is not None
        self.assertEqual(out.data[:4], h("94 00 00 78"))
        self.assertEqual(out.data[20:24], h("06 00 00 00"))
        self.assertEqual(out.data[24 + 10:24 + 14], h("c0 12 00 00"))
        self.assertEqual(out.data[40 + 10:40 + 14], h("24 13 01 01"))

    def test_netstat_max_entries(self) -> None:
        """0x14 lists no more entries than the client asked for."""
        proto, udp, _ = responder(net=_table())
        out = ask(proto, udp, dsci.encode_netstat_request(7, DEVID, max_entries=2))
        self.assertEqual(dsci.decode_netstat_reply(out.data).count, 2)  # type: ignore[union-attr]

    def test_paging_walks_everything_once(self) -> None:
        """0x1D pages (MOXA's driver's 00 FF form) cover every entry exactly once, then next = 0."""
        net = NetTable()
        for port in range(2000, 2150):
            net.add_listener(ListenerInfo("tcp", port, None))
        proto, udp, _ = responder(net=net)
        seen, start, pages = [], 0, 0
        while True:
            out = ask(proto, udp, dsci.encode_netstat_paged_request(1, DEVID, start))
            page = dsci.decode_netstat_reply(out.data)  # type: ignore[union-attr]
            self.assertLessEqual(page.count, dsci.NETSTAT_PAGE_SIZE)
            seen += [e.local_port for e in page.entries]
            pages += 1
            if page.next_index == 0:
                break
            start = page.next_index
        self.assertEqual(seen, list(range(2000, 2150)))
        self.assertEqual(pages, 3)

    def test_paging_keeps_a_listener_with_its_connections(self) -> None:
        """A page ends before a listener whose connections would spill onto the next page."""
        net = NetTable()
        for port in range(3000, 3062):
            net.add_listener(ListenerInfo("tcp", port, None))
        net.add_listener(ListenerInfo("tcp", 950, 0))
        for n in range(3):
            net.connections.append(ConnectionInfo("10.0.0.5", 950, "10.0.0.9", 41000 + n, 0))
        proto, udp, _ = responder(net=net)
        first = dsci.decode_netstat_reply(ask(proto, udp, dsci.encode_netstat_paged_request(  # type: ignore[union-attr]
            1, DEVID, 0)).data)
        self.assertEqual((first.count, first.next_index), (62, 62))
        second = dsci.decode_netstat_reply(ask(proto, udp, dsci.encode_netstat_paged_request(  # type: ignore[union-attr]
            1, DEVID, 62)).data)
        self.assertEqual([e.state for e in second.entries], [1, 4, 4, 4])
        self.assertEqual(second.next_index, 0)


    def test_paging_keeps_a_ports_data_and_command_groups_together(self) -> None:
        """A serial port's data and command listeners and connections share a page (npreal2d checks both there)."""
        net = NetTable()
        for port in range(3000, 3061):
            net.add_listener(ListenerInfo("tcp", port, None))
        net.add_listener(ListenerInfo("tcp", 950, 0))
        net.add_listener(ListenerInfo("tcp", 966, 0))
        net.connections.append(ConnectionInfo("10.0.0.5", 950, "10.0.0.9", 41000, 0))
        net.connections.append(ConnectionInfo("10.0.0.5", 966, "10.0.0.9", 41001, 0))
        proto, udp, _ = responder(net=net)
        first = dsci.decode_netstat_reply(ask(proto, udp, dsci.encode_netstat_paged_request(  # type: ignore[union-attr]
            1, DEVID, 0)).data)
        self.assertEqual((first.count, first.next_index), (61, 61))
        second = dsci.decode_netstat_reply(ask(proto, udp, dsci.encode_netstat_paged_request(  # type: ignore[union-attr]
            1, DEVID, 61)).data)
        self.assertEqual([(e.local_port, e.state) for e in second.entries],
                         [(950, 1), (950, 4), (966, 1), (966, 4)])


class _Devices:
    """One FakeSerialDevice per path, as an opener."""

    def __init__(self) -> None:
        self.devices: dict[str, FakeSerialDevice] = {}

    def opener(self, protocol: Any, device: str, settings: Any) -> Any:
        fake = self.devices.setdefault(device, FakeSerialDevice(device, lines=None))
        return fake.opener(protocol, device, settings)


def _fake_listen(reactor: Any, port: int, interface: str, protocol: DsciProtocol) -> Any:
    """A DsciService listen function that opens no socket."""
    udp = FakeUDP()
    protocol.makeConnection(udp)
    udp.port = port  # type: ignore[attr-defined]
    udp.stopListening = lambda: defer.succeed(None)  # type: ignore[attr-defined]
    return udp


class RealComNetstatTests(SynchronousTestCase):
    def _server(self) -> tuple[NPortService, MemoryReactorClock, DsciService]:
        reactor_ = MemoryReactorClock()
        config = DeviceConfig().with_port_count(2, OpMode.REAL_COM)
        server = NPortService(reactor_, ["/dev/fake0", "/dev/fake1"], config, SettingsStore(None),
                              _Devices().opener, port_offset=10000, interface="127.0.0.1")
        dsci_service = DsciService(server, HOST, listen=_fake_listen)
        dsci_service.setServiceParent(server)
        capture_service(server).setServiceParent(server)
        server.startService()
        self.addCleanup(server.stopService)
        return server, reactor_, dsci_service

    def test_lists_realcom_listeners_and_connection(self) -> None:
        """Netstat shows UDP 4800, TCP 4900 and the Real COM listeners, and a driver's connections."""
        server, reactor_, service = self._server()
        factories = {port: factory for port, factory, _, _ in reactor_.tcpServers}
        transports = []
        for port, remote in ((10950, 40001), (10966, 40002)):
            proto = factories[port].buildProtocol(None)
            transport = StringTransport(hostAddress=TCPAddress("TCP", "127.0.0.1", port),
                                        peerAddress=TCPAddress("TCP", "127.0.0.1", remote))
            proto.makeConnection(transport)
            transports.append(transport)
        assert service.protocol is not None
        proto, udp = service.protocol, service.port
        devid = resolve_identity(server.config, mac=HOST.mac).device_id
        out = ask(proto, udp, dsci.encode_netstat_paged_request(5, devid), peer=("127.0.0.1", 5000))
        page = dsci.decode_netstat_reply(out.data)  # type: ignore[union-attr]
        rows = [(e.sock_type, e.local_port, e.state, e.remote_port, e.serial_port) for e in page.entries]
        self.assertEqual(rows, [
            (0, 14800, 0, 0, 0), (1, 14900, 1, 0, 0),
            (1, 10950, 1, 0, 1), (1, 10950, 4, 40001, 1), (1, 10966, 1, 0, 1), (1, 10966, 4, 40002, 1),
            (1, 10951, 1, 0, 2), (1, 10967, 1, 0, 2),
        ])

    def test_stop_removes_the_udp_listener(self) -> None:
        """Stopping the responder removes UDP 4800 from the table and fires its Deferred."""
        server, _, service = self._server()
        self.assertIn(ListenerInfo("udp", 14800, None), server.net.listeners)
        d = service.stopService()
        self.successResultOf(d)
        self.assertNotIn(ListenerInfo("udp", 14800, None), server.net.listeners)


@attrs.define
class FakeServer:
    """The parts of an IDeviceContext the device services read."""

    reactor: Any
    config: DeviceConfig = CONFIG
    net: NetTable = attrs.Factory(NetTable)
    port_offset: int = 0
    interface: str = "127.0.0.1"
    store: Any = attrs.Factory(lambda: SettingsStore(None))
    dsci_port: int | None = None

    @property
    def state_dir(self) -> str | None:
        return self.store.state_dir  # type: ignore[no-any-return]

    def endpoint(self, proto: str, port: int) -> str:
        return f"{proto}:{port + self.port_offset}:interface={self.interface}"


class DsciServiceTests(TestCase):
    def test_ipv6_interface_not_started(self) -> None:
        """With an IPv6-only --interface the responder does not start and says why."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        service = DsciService(FakeServer(MemoryReactorClock(), interface="::1"), HOST)
        service.startService()
        self.assertIsNone(service.port)
        self.assertTrue(any("IPv4 only" in e.get("log_format", "") for e in events))
        self.successResultOf(service.stopService())

    def test_port_in_use(self) -> None:
        """A taken UDP port fails start-up with a ListenError naming it."""
        from nport_twisted.net.listener import ListenError
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        offset = taken.getsockname()[1] - 4800
        service = DsciService(FakeServer(reactor, port_offset=offset), HOST)
        error = self.assertRaises(ListenError, service.startService)
        self.assertIn(str(offset + 4800), str(error))
        self.flushLoggedErrors()

    def test_dsci_port_overrides_offset(self) -> None:
        """--dsci-port is used as it is, whatever the port offset (the drivers only ask on 4800)."""
        from nport_twisted.net.listener import ListenError
        taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        number = taken.getsockname()[1]
        service = DsciService(FakeServer(reactor, port_offset=20000, dsci_port=number), HOST)
        error = self.assertRaises(ListenError, service.startService)
        self.assertIn(str(number), str(error))
        self.flushLoggedErrors()

    def test_real_socket_round_trip(self) -> None:
        """On a real loopback socket the reply comes from the listening port with our device ID."""
        udp_port = PktInfoUDPPort(reactor, 0, "127.0.0.1", DsciProtocol(lambda: CONFIG, NetTable(),
                                                                        reactor, HOST))
        udp_port.startListening()
        self.addCleanup(udp_port.stopListening)
        port = udp_port.getHost().port  # type: ignore[attr-defined]
        got: defer.Deferred[tuple[bytes, Any]] = defer.Deferred()

        class Client(DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:
                if not got.called:
                    got.callback((data, addr))

        client = reactor.listenUDP(0, Client(), interface="127.0.0.1")
        self.addCleanup(client.stopListening)
        client.write(SEARCH, ("127.0.0.1", port))

        def check(result: tuple[bytes, Any]) -> None:
            data, addr = result
            self.assertEqual(addr, ("127.0.0.1", port))
            reply = dsci.decode_search_reply(data)
            self.assertEqual((reply.device_id, reply.ipv4), (DEVID, h("7f 00 00 01")))

        return got.addCallback(check)


# --- device_services -------------------------------------------------------------------


class DeviceServicesTests(TestCase):
    def test_three_services_start_and_stop(self) -> None:
        """device_services gives the responder, the 4900 capture and the auto report; all stop cleanly."""
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.bind(("127.0.0.1", 0))
        offset = probe.getsockname()[1] - 4800
        probe.close()
        server = FakeServer(MemoryReactorClock(), port_offset=offset)
        services = device_services(server, HOST)
        self.assertEqual([s.name for s in services], ["dsci", "tcp4900-capture", "auto-ip-report"])
        for s in services:
            s.startService()
        self.assertEqual(sorted((i.proto, i.port) for i in server.net.listeners),
                         [("tcp", 4900 + offset), ("udp", 4800 + offset)])
        self.assertEqual(server.reactor.tcpServers[0][0], 4900 + offset)
        ds = [s.stopService() for s in services]
        for d in ds:
            self.assertIsNone(self.successResultOf(d))
        self.assertEqual(server.net.listeners, [])
        self.assertEqual(server.reactor.getDelayedCalls(), [])


# --- Auto IP Report --------------------------------------------------------------------


class FakeDatagramPort:
    """What listenUDP returns, recording writes."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.stopped = False

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))

    def stopListening(self) -> None:
        self.stopped = True


def _report_service(network: NetworkSettings, resolve: Any = None) -> tuple[AutoReportService, FakeServer, FakeDatagramPort, Clock]:
    clock = Clock()
    server = FakeServer(clock, config=attrs.evolve(CONFIG, network=network))
    port = FakeDatagramPort()
    service = AutoReportService(server, HOST, listen_udp=lambda proto: port, resolve=resolve)
    return service, server, port, clock


class AutoReportTests(SynchronousTestCase):
    def test_content_and_period(self) -> None:
        """With a host set, the MOXA datagram goes there at start and every period seconds."""
        service, _, port, clock = _report_service(NetworkSettings(
            auto_report_host="192.168.127.1", auto_report_port=4002, auto_report_period=10))
        service.startService()
        self.assertEqual(len(port.written), 1)
        clock.advance(9.9)
        self.assertEqual(len(port.written), 1)
        clock.advance(0.1)
        self.assertEqual(len(port.written), 2)
        data, addr = port.written[0]
        self.assertEqual(addr, ("192.168.127.1", 4002))
        self.assertTrue(data.startswith(b"MOXA"))
        self.assertEqual(dsci.decode_auto_report(data), dsci.AutoReport(
            name=f"NP5110_{0x3456}", hw_id=0x5110, mac=MAC, serial_number=0x3456,
            ip=h("c0 a8 7f fe"), netmask=h("ff ff ff 00"), gateway=h("c0 a8 7f 01"),
            firmware="1.0", ap_id=0x80005110))
        service.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertTrue(port.stopped)

    def test_disabled_until_configured(self) -> None:
        """Without a host nothing is sent; setting one at run time starts the reports."""
        service, server, port, clock = _report_service(NetworkSettings(auto_report_period=5))
        service.startService()
        clock.advance(20)
        self.assertEqual(port.written, [])
        server.config = attrs.evolve(CONFIG, network=NetworkSettings(
            auto_report_host="192.168.127.1", auto_report_period=5))
        clock.advance(5)
        self.assertEqual(len(port.written), 1)
        service.stopService()

    def test_broadcast_hosts_refused(self) -> None:
        """A limited, directed broadcast or multicast report host sends nothing."""
        for host in ("255.255.255.255", "192.168.127.255", "239.1.2.3"):
            service, _, port, clock = _report_service(NetworkSettings(auto_report_host=host))
            service.startService()
            clock.advance(30)
            self.assertEqual(port.written, [], host)
            service.stopService()

    def test_host_name_resolved(self) -> None:
        """A host name is resolved through the injected resolver before sending."""
        asked = []

        def resolve(name: str) -> defer.Deferred[str]:
            asked.append(name)
            return defer.succeed("192.168.127.1")

        service, _, port, _ = _report_service(NetworkSettings(auto_report_host="pc.lan"), resolve)
        service.startService()
        self.assertEqual((asked, [a for _, a in port.written]), (["pc.lan"], [("192.168.127.1", 4002)]))
        service.stopService()


# --- TCP 4900 capture ------------------------------------------------------------------


class CaptureTests(SynchronousTestCase):
    def _connect(self, factory: CaptureFactory, peer: str = "192.0.2.7") -> tuple[Any, StringTransport]:
        proto = factory.buildProtocol(None)
        transport = StringTransport(hostAddress=TCPAddress("TCP", "192.0.2.1", 4900),
                                    peerAddress=TCPAddress("TCP", peer, 5555))
        proto.makeConnection(transport)
        return proto, transport

    def _factory(self, **kw: Any) -> tuple[CaptureFactory, str, Clock]:
        clock = Clock()
        clock.advance(10)
        path = os.path.join(self.mktemp(), CAPTURE_FILE)
        os.makedirs(os.path.dirname(path))
        return CaptureFactory(clock, CaptureLog(path), **kw), path, clock

    def _read(self, path: str) -> str:
        with open(path) as f:
            return f.read()

    def test_records_and_answers_nothing(self) -> None:
        """Every byte lands in the capture file as a hex dump with peer and time; nothing is sent."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        net = NetTable()
        factory, path, _ = self._factory(net=net)
        proto, transport = self._connect(factory)
        self.assertEqual(len(net.connections), 1)
        proto.dataReceived(b"\x00\x01ABC")
        proto.dataReceived(b"\xff" * 20)
        proto.connectionLost(None)
        self.assertEqual(transport.value(), b"")
        text = self._read(path)
        self.assertIn("1970-01-01T00:00:10.000+00:00 192.0.2.7:5555 connected", text)
        self.assertIn("received 5 bytes at offset 0\n00000000  00 01 41 42 43", text)
        self.assertIn("|..ABC|", text)
        self.assertIn("received 20 bytes at offset 5\n00000005  ff ff", text)
        self.assertIn("closed after 25 bytes", text)
        self.assertEqual(net.connections, [])
        self.assertTrue(any("00 01 41 42 43" in e.get("dump", "") for e in events))

    def test_per_connection_limit(self) -> None:
        """Past the per-connection limit bytes are counted but no longer recorded."""
        factory, path, _ = self._factory(per_connection_limit=8)
        proto, _ = self._connect(factory)
        proto.dataReceived(b"A" * 6)
        proto.dataReceived(b"B" * 6)
        proto.dataReceived(b"C" * 6)
        proto.connectionLost(None)
        text = self._read(path)
        self.assertIn("received 2 bytes at offset 6", text)
        self.assertNotIn("43 43", text)
        self.assertEqual(text.count("capture limit of 8 bytes reached"), 1)
        self.assertIn("closed after 18 bytes", text)

    def test_refusals(self) -> None:
        """Hosts outside the accessible IP list and connections over the maximum are dropped at once."""
        acl = AccessibleIPSettings((AccessibleIP("10.0.0.0", "255.0.0.0"),))
        factory, _path, _ = self._factory(accessible=lambda: acl, max_connections=1)
        _, refused = self._connect(factory, "192.0.2.7")
        self.assertTrue(refused.disconnecting)
        _, first = self._connect(factory, "10.0.0.1")
        _, second = self._connect(factory, "10.0.0.2")
        self.assertFalse(first.disconnecting)
        self.assertTrue(second.disconnecting)

    def test_idle_timeout(self) -> None:
        """A silent connection is closed after the idle timeout on the injected clock."""
        factory, _path, clock = self._factory(idle_timeout=60)
        proto, transport = self._connect(factory)
        clock.advance(59)
        proto.dataReceived(b"x")
        clock.advance(59)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(None)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_file_cap_and_no_state_dir(self) -> None:
        """The capture file stops growing at its cap; without a state directory nothing is written."""
        path = os.path.join(self.mktemp())
        log = CaptureLog(path, max_bytes=10)
        self.assertTrue(log.append("12345\n"))
        self.assertFalse(log.append("67890\n"))
        self.assertEqual(self._read(path), "12345\n")
        self.assertFalse(CaptureLog(None).append("x"))

    def test_unwritable_file_warned_once(self) -> None:
        """A capture file that cannot be opened is one warning until a record is written again."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        blocked = os.path.abspath(self.mktemp())
        os.makedirs(blocked)  # a directory where the file should be: open fails, even as root
        log = CaptureLog(blocked)
        for _ in range(3):
            self.assertFalse(log.append("x\n"))
        warnings = [e for e in observer if "capture file" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        os.rmdir(blocked)
        self.assertTrue(log.append("y\n"))
        os.remove(blocked)
        os.makedirs(blocked)
        self.assertFalse(log.append("z\n"))
        warnings = [e for e in observer if "capture file" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 2)

    def test_service_uses_state_dir(self) -> None:
        """capture_service listens on 4900 + offset and writes tcp4900-capture.log in the state directory."""
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        server = FakeServer(MemoryReactorClock(), port_offset=100,
                            store=SettingsStore(os.path.join(state, "nport.ini")))
        listener = capture_service(server)
        listener.startService()
        self.addCleanup(listener.stopService)
        port, factory, _, interface = server.reactor.tcpServers[0]
        self.assertEqual((port, interface), (5000, "127.0.0.1"))
        self.assertEqual(factory.capture.path, os.path.join(state, CAPTURE_FILE))

    def test_service_says_when_it_cannot_record(self) -> None:
        """At start, a capture file that cannot be written is a warning, not "recording to"."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        state = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(state, CAPTURE_FILE))  # a directory in its place
        server = FakeServer(MemoryReactorClock(), port_offset=100,
                            store=SettingsStore(os.path.join(state, "nport.ini")))
        listener = capture_service(server)
        listener.startService()
        self.addCleanup(listener.stopService)
        said = [e["log_format"] for e in observer if "TCP 4900 capture" in e.get("log_format", "")]
        self.assertEqual(len(said), 1)
        self.assertIn("cannot be written", said[0])

    def test_hexdump(self) -> None:
        """Hex dump lines show offset, two groups of eight bytes and printable text."""
        self.assertEqual(hexdump(bytes(range(0x41, 0x53)), 16),
                         "00000010  41 42 43 44 45 46 47 48  49 4a 4b 4c 4d 4e 4f 50  |ABCDEFGHIJKLMNOP|\n"
                         "00000020  51 52                                             |QR|")


class IdentityTypeTests(SynchronousTestCase):
    def test_identity_mac_text(self) -> None:
        """The identity shows its MAC the way NPort menus do."""
        identity = resolve_identity(CONFIG, mac=lambda: (MAC, "fixture"))
        self.assertIsInstance(identity, DeviceIdentity)
        self.assertEqual(identity.mac_text, "00:90:E8:12:34:56")


class NoDiscoveryIdsTests(SynchronousTestCase):
    """A model without known discovery IDs (the 32-port ones) has no DSCI face."""

    def test_only_the_capture_service(self) -> None:
        """device_services gives only TCP 4900 for an NPort 6650-32, and says why in the log."""
        from nport_twisted.config.settings import DeviceConfig, Identity, OpMode
        from nport_twisted.services.discovery import device_services

        config = attrs.evolve(DeviceConfig(), identity=Identity(model="NPort 6650-32")
                              ).with_port_count(17, OpMode.REAL_COM)

        class Server:
            pass

        server: Any = Server()
        server.config = config
        server.reactor = MemoryReactorClock()
        server.net = NetTable()
        server.interface, server.port_offset, server.dsci_port = "127.0.0.1", 20000, None
        server.endpoint = lambda proto, port: f"{proto}:{port + 20000}:interface=127.0.0.1"
        server.state_dir = None
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        services = device_services(server, HOST)
        self.assertEqual([s.name for s in services], ["tcp4900-capture"])  # type: ignore[attr-defined]
        self.assertTrue(any("no known discovery IDs" in str(e.get("log_format")) for e in events))


class CaptureFloodTests(SynchronousTestCase):
    """Issue 10 item 3: a TCP 4900 flood cannot fill the service log or the disk."""

    def _factory(self, **kw: Any) -> tuple[CaptureFactory, str, Clock]:
        clock = Clock()
        path = os.path.join(self.mktemp(), CAPTURE_FILE)
        os.makedirs(os.path.dirname(path))
        return CaptureFactory(clock, CaptureLog(path, **kw), max_connections=1000), path, clock

    def _connect(self, factory: CaptureFactory, peer: str) -> Any:
        proto = factory.buildProtocol(None)
        proto.makeConnection(StringTransport(hostAddress=TCPAddress("TCP", "192.0.2.1", 4900),
                                             peerAddress=TCPAddress("TCP", peer, 5555)))
        return proto

    def test_one_connection_flood(self) -> None:
        """10 MiB on one connection: 256 bytes hex-dumped in the log, 64 KiB in the file."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory, path, _ = self._factory()
        proto = self._connect(factory, "192.0.2.7")
        for _ in range(160):
            proto.dataReceived(os.urandom(65536))
        proto.connectionLost(None)
        dumped = sum(e.get("dump", "").count("\n") + 1 for e in events if "dump" in e)
        self.assertEqual(dumped, 256 // 16)
        self.assertLess(os.path.getsize(path), 5 * 64 * 1024)  # hex text of 64 KiB + the record lines

    def test_reconnect_flood(self) -> None:
        """1,000 connections of 4 KiB each from one host: log lines bounded, the file stops at its cap."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        factory, path, clock = self._factory(max_bytes=1 << 20)
        for i in range(1000):
            proto = self._connect(factory, "192.0.2.7")
            proto.dataReceived(b"\xa5" * 4096)
            proto.connectionLost(None)
            clock.advance(0.001)
        lines = [e for e in events if e["log_format"].startswith("TCP 4900")]
        self.assertLess(len(lines), 50)
        self.assertLessEqual(os.path.getsize(path), 1 << 20)
