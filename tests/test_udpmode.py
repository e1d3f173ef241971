"""
Tests for UDP mode (nport_twisted.modes.udp): a recording datagram transport
for everything that involves addresses other than loopback (no packet is
sent), then real sockets on 127.0.0.0/8 only, and the real service in a
subprocess.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from nport_twisted.device.channel import IChannelSession, SerialChannel
from nport_twisted.net.listener import ListenerInfo, ListenError, NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    OperatingSettings,
    OpMode,
    SerialSettings,
    UdpDestination,
)
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.modes.udp import (
    MAX_DATAGRAM,
    MAX_DESTINATIONS,
    UdpModeProtocol,
    UdpModeService,
    expand_destinations,
    udp_frontend,
)
from tests.e2e_util import (
    LOOPBACK,
    SERVICE_UDP_PORTS,
    Collector,
    Pty,
    Service,
    free_port_offset,
    have_ptys,
    poll_until,
)

LOOPBACK_TIMEOUT = 10.0


def dest(begin: str, end: str = "", port: int = 4001) -> UdpDestination:
    return UdpDestination(begin=begin, end=end or begin, port=port)


class FakeDatagramTransport:
    """Records datagrams instead of sending them; can refuse some destinations."""

    def __init__(self, host: Any = None) -> None:
        self.host = host or IPv4Address("UDP", "0.0.0.0", 4001)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.refuse: dict[str, Exception] = {}  # destination host -> error raised
        self.broadcast = False
        self.paused = False
        self.stopped = 0

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        error = self.refuse.get(addr[0])
        if error is not None:
            raise error
        self.sent.append((datagram, addr))

    def getHost(self) -> Any:
        return self.host

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast = enabled

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopListening(self) -> Deferred[None]:
        self.stopped += 1
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class Harness:
    """A channel on a fake device and the context a UDP mode front-end gets."""

    def __init__(self, test: SynchronousTestCase, port_offset: int = 0, **operating: Any) -> None:
        self.clock = Clock()
        self.device = FakeSerialDevice(lines=None)
        self.operating = OperatingSettings(mode=OpMode.UDP, **operating)
        self.channel = SerialChannel(0, "/dev/fake0", SerialSettings(), self.clock,
                                     self.device.opener, packing=self.operating.packing())
        self.channel.startService()
        test.addCleanup(self._stop)
        self.net = NetTable()
        self.acl = AccessibleIPSettings()
        self.ctx = PortContext(
            index=0, channel=self.channel, operating=self.operating, reactor=self.clock,
            endpoint=lambda proto, port: f"{proto}:{port + port_offset}:interface=127.0.0.1",
            net=self.net, accessible=lambda: self.acl)

    def _stop(self) -> None:
        self.channel.stopService()
        self.device.close_complete()

    def protocol(self, transport: FakeDatagramTransport | None = None
                 ) -> tuple[UdpModeProtocol, FakeDatagramTransport]:
        proto = UdpModeProtocol(self.ctx, expand_destinations(self.operating.udp_destinations))
        transport = transport or FakeDatagramTransport()
        proto.makeConnection(transport)  # type: ignore[arg-type]
        return proto, transport


class ExpandDestinationsTests(SynchronousTestCase):
    def test_ranges_in_order_with_their_ports(self) -> None:
        """Every address of every range is listed in range order, each with its range's port."""
        got = expand_destinations([dest("10.0.0.1", "10.0.0.3", 5000), dest("192.168.1.7", port=6000)])
        self.assertEqual(got.addresses, (("10.0.0.1", 5000), ("10.0.0.2", 5000),
                                         ("10.0.0.3", 5000), ("192.168.1.7", 6000)))

    def test_network_and_broadcast_skipped_in_ranges(self) -> None:
        """A whole /24 as a range gives its 254 host addresses; .0 and .255 are counted as skipped."""
        got = expand_destinations([dest("192.168.1.0", "192.168.1.255")])
        self.assertEqual(len(got.addresses), 254)
        self.assertEqual((got.addresses[0][0], got.addresses[-1][0], got.skipped),
                         ("192.168.1.1", "192.168.1.254", 2))
        self.assertFalse(got.needs_broadcast)

    def test_single_broadcast_address_kept(self) -> None:
        """A single .255 or .0 address is used as given, and a .255 asks for broadcast."""
        got = expand_destinations([dest("192.168.1.255"), dest("10.0.0.0")])
        self.assertEqual(got.addresses, (("192.168.1.255", 4001), ("10.0.0.0", 4001)))
        self.assertTrue(got.needs_broadcast)

    def test_cap(self) -> None:
        """A /16 range is cut at MAX_DESTINATIONS addresses and the rest is counted as ignored."""
        got = expand_destinations([dest("10.1.0.0", "10.1.255.255"), dest("10.9.9.9")])
        self.assertEqual(len(got.addresses), MAX_DESTINATIONS)
        self.assertEqual(got.addresses[-1], ("10.1.1.2", 4001))  # .0.0, .0.255 and .1.0 skipped
        self.assertEqual(got.ignored, (65536 - 259) + 1)  # the rest of the /16, then 10.9.9.9

    def test_whole_address_space_is_cheap(self) -> None:
        """0.0.0.0-255.255.255.255 expands in bounded work to the cap."""
        got = expand_destinations([dest("0.0.0.0", "255.255.255.255")] * 4)
        self.assertEqual(len(got.addresses), MAX_DESTINATIONS)
        self.assertEqual(got.ignored, 4 * 2**32 - 259)  # 259 addresses looked at, 3 of them skipped

    def test_duplicates_and_reversed_ranges(self) -> None:
        """Overlapping ranges send once per address and port; a reversed range is swapped."""
        got = expand_destinations([dest("10.0.0.3", "10.0.0.1"), dest("10.0.0.2"),
                                   dest("10.0.0.2", port=4002)])
        self.assertEqual([f"{h}:{p}" for h, p in got.addresses],
                         ["10.0.0.1:4001", "10.0.0.2:4001", "10.0.0.3:4001", "10.0.0.2:4002"])
        self.assertEqual(got.reversed_ranges, 1)


class EndpointTests(SynchronousTestCase):
    def test_parse(self) -> None:
        """Port and interface come out of the endpoint strings NPortService builds."""
        from nport_twisted.net.listener import split_endpoint
        self.assertEqual(split_endpoint("udp:14001"), ("udp", 14001, ""))
        self.assertEqual(split_endpoint("udp:4002:interface=127.0.0.1"), ("udp", 4002, "127.0.0.1"))
        self.assertEqual(split_endpoint("udp:4001:interface=\\:\\:1"), ("udp", 4001, "::1"))
        self.assertRaises(ValueError, split_endpoint, "tcp:any")


class UdpModeProtocolTests(SynchronousTestCase):
    def test_session_interface(self) -> None:
        """The UDP mode protocol implements IChannelSession and attaches itself to the channel."""
        h = Harness(self)
        proto, _ = h.protocol()
        self.assertTrue(verifyObject(IChannelSession, proto))
        self.assertEqual(h.channel.sessions, (proto,))

    def test_each_frame_to_every_destination(self) -> None:
        """Each packed frame is one datagram to every address of every range, with its port."""
        h = Harness(self, delimiter1=0x0A, udp_destinations=[
            dest("10.0.0.1", "10.0.0.2", 5000), dest("192.168.5.9", port=6001)])
        proto, t = h.protocol()
        h.device.receive(b"one\ntw")
        h.device.receive(b"o\n")
        self.assertEqual(t.sent, [
            (b"one\n", ("10.0.0.1", 5000)), (b"one\n", ("10.0.0.2", 5000)),
            (b"one\n", ("192.168.5.9", 6001)),
            (b"two\n", ("10.0.0.1", 5000)), (b"two\n", ("10.0.0.2", 5000)),
            (b"two\n", ("192.168.5.9", 6001))])
        self.assertEqual(proto.stats.datagrams_sent, 6)

    def test_cap_limits_sends(self) -> None:
        """A frame with a /16 range configured goes to MAX_DESTINATIONS addresses, not 65536."""
        h = Harness(self, udp_destinations=[dest("10.2.0.0", "10.2.255.255", 7000)])
        _, t = h.protocol()
        h.device.receive(b"x")
        self.assertEqual(len(t.sent), MAX_DESTINATIONS)
        self.assertEqual(t.sent[0], (b"x", ("10.2.0.1", 7000)))

    def test_large_chunk_split(self) -> None:
        """A chunk longer than MAX_DATAGRAM goes out as consecutive datagrams of at most that size."""
        h = Harness(self, udp_destinations=[dest("10.0.0.1", "10.0.0.2")])
        _, t = h.protocol()
        data = os.urandom(2 * MAX_DATAGRAM + 100)
        h.device.receive(data)
        self.assertEqual([len(d) for d, _ in t.sent], [MAX_DATAGRAM] * 4 + [100] * 2)
        self.assertEqual([a[0] for _, a in t.sent], ["10.0.0.1", "10.0.0.2"] * 3)
        self.assertEqual(b"".join(d for d, a in t.sent if a[0] == "10.0.0.2"), data)

    def test_no_destinations(self) -> None:
        """Without destinations serial data is counted as dropped and nothing is sent."""
        h = Harness(self)
        _, t = h.protocol()
        h.device.receive(b"lost")
        self.assertEqual((t.sent, h.channel.stats.serial_rx_dropped), ([], 4))

    def test_broadcast_only_for_explicit_address(self) -> None:
        """SO_BROADCAST is turned on for a single .255 destination, not for a range."""
        h = Harness(self, udp_destinations=[dest("10.0.0.1", "10.0.0.255")])
        self.assertFalse(h.protocol()[1].broadcast)
        h2 = Harness(self, udp_destinations=[dest("10.0.0.255")])
        self.assertTrue(h2.protocol()[1].broadcast)

    def test_ipv6_socket_maps_destinations(self) -> None:
        """On a dual-stack IPv6 socket IPv4 destinations are written as ::ffff:a.b.c.d."""
        h = Harness(self, udp_destinations=[dest("10.0.0.1")])
        _, t = h.protocol(FakeDatagramTransport(IPv6Address("UDP", "::", 4001)))
        h.device.receive(b"v6")
        self.assertEqual(t.sent, [(b"v6", ("::ffff:10.0.0.1", 4001))])

    def test_send_errors_are_drops(self) -> None:
        """A refused send is counted and logged once per kind; other destinations and the serial side go on."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self, udp_destinations=[dest("10.0.0.1", "10.0.0.2")])
        proto, t = h.protocol()
        t.refuse["10.0.0.1"] = OSError(errno.ENOBUFS, "No buffer space available")
        for _ in range(3):
            h.device.receive(b"z")
        self.assertEqual(t.sent, [(b"z", ("10.0.0.2", 4001))] * 3)
        self.assertEqual((proto.stats.send_errors, proto.stats.datagrams_sent), (3, 3))
        self.assertEqual(h.channel.sessions, (proto,))
        warned = [e for e in observer if e["log_level"] == LogLevel.warn and "cannot send" in e["log_format"]]
        self.assertEqual(len(warned), 1)

    def test_datagram_to_serial(self) -> None:
        """A datagram's payload is written to the device unchanged, in arrival order."""
        h = Harness(self)
        proto, _ = h.protocol()
        proto.datagramReceived(b"\x00\xffabc", ("10.0.0.7", 3333))
        proto.datagramReceived(b"def", ("10.0.0.8", 3333))
        proto.datagramReceived(b"", ("10.0.0.8", 3333))
        self.assertEqual(h.device.written, b"\x00\xffabcdef")
        self.assertEqual(proto.stats.datagrams_received, 3)

    def test_acl_drop(self) -> None:
        """Datagrams from a source outside the accessible IP list are dropped, counted and logged once."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = Harness(self)
        h.acl = AccessibleIPSettings((AccessibleIP(ip="10.0.0.0", netmask="255.0.0.0"),))
        proto, _ = h.protocol()
        proto.datagramReceived(b"no", ("192.168.1.5", 1))
        proto.datagramReceived(b"no", ("192.168.1.5", 1))
        proto.datagramReceived(b"yes", ("10.1.2.3", 1))
        self.assertEqual(h.device.written, b"yes")
        self.assertEqual((proto.stats.acl_dropped, proto.stats.datagrams_received), (2, 1))
        self.assertEqual(len([e for e in observer if "accessible" in e["log_format"]]), 1)

    def test_device_absent_drop(self) -> None:
        """Datagrams arriving while the device is gone are dropped and counted."""
        h = Harness(self)
        proto, _ = h.protocol()
        h.device.vanish()
        proto.datagramReceived(b"gone", ("10.0.0.7", 3333))
        self.assertEqual((proto.stats.device_dropped, h.channel.stats.serial_tx_dropped), (1, 4))
        self.assertEqual(h.channel.sessions, (proto,))

    def test_device_backpressure_pauses_reading(self) -> None:
        """When the device's buffer fills, the socket stops being read until it drains."""
        h = Harness(self)
        _, t = h.protocol()
        assert h.device.transport is not None
        h.device.transport.producer.pauseProducing()
        self.assertTrue(t.paused)
        h.device.transport.producer.resumeProducing()
        self.assertFalse(t.paused)

    def test_stop_detaches(self) -> None:
        """When the socket closes the protocol leaves the channel."""
        h = Harness(self)
        proto, _ = h.protocol()
        proto.doStop()
        self.assertEqual(h.channel.sessions, ())


class UdpModeServiceTests(SynchronousTestCase):
    def _service(self, h: Harness) -> tuple[UdpModeService, list[tuple[int, str]],
                                            FakeDatagramTransport]:
        calls: list[tuple[int, str]] = []
        transport = FakeDatagramTransport()

        def listen(port: int, protocol: DatagramProtocol, interface: str) -> FakeDatagramTransport:
            calls.append((port, interface))
            transport.host = IPv4Address("UDP", interface, port)
            protocol.makeConnection(transport)  # type: ignore[arg-type]
            return transport

        return UdpModeService(h.ctx, listen), calls, transport

    def test_local_port_shifted_destination_port_not(self) -> None:
        """The local port (4001+n-1) is shifted by the port offset; destination ports are not."""
        h = Harness(self, port_offset=10000, udp_destinations=[dest("10.0.0.1", port=4001)])
        svc, calls, t = self._service(h)
        svc.startService()
        self.assertEqual(calls, [(14001, "127.0.0.1")])
        self.assertEqual(h.net.listeners, [ListenerInfo("udp", 14001, 0)])
        h.device.receive(b"q")
        self.assertEqual(t.sent, [(b"q", ("10.0.0.1", 4001))])

    def test_configured_local_port(self) -> None:
        """udp_local_port overrides the default listen port."""
        h = Harness(self, udp_local_port=5555)
        svc, calls, _ = self._service(h)
        svc.startService()
        self.assertEqual(calls, [(5555, "127.0.0.1")])

    def test_stop(self) -> None:
        """Stopping closes the socket, leaves the channel and the netstat table, and fires."""
        h = Harness(self)
        svc, _, t = self._service(h)
        svc.startService()
        self.assertEqual(self.successResultOf(svc.stopService()), None)
        self.assertEqual((t.stopped, h.net.listeners, h.channel.sessions), (1, [], ()))

    def test_privileged_port(self) -> None:
        """A port refused with EACCES fails start-up with the hint about privileges and offsets."""
        h = Harness(self, udp_local_port=401)

        def listen(port: int, protocol: DatagramProtocol, interface: str) -> None:
            raise CannotListenError(interface, port, OSError(errno.EACCES, "Permission denied"))

        svc = UdpModeService(h.ctx, listen)
        error = self.assertRaises(ListenError, svc.startService)
        self.assertIn("--port-offset", str(error))
        self.assertEqual((h.net.listeners, h.channel.sessions), ([], ()))
        self.flushLoggedErrors()

    def test_frontend_registered(self) -> None:
        """The server builds UDP mode ports with udp_frontend."""
        from nport_twisted.server import frontend_builders

        self.assertIs(frontend_builders()[OpMode.UDP], udp_frontend)


class Receiver(DatagramProtocol, Collector):
    """A real UDP socket that keeps the datagrams it receives."""

    def __init__(self) -> None:
        Collector.__init__(self)
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.datagrams.append((datagram, (addr[0], addr[1])))
        self._got(datagram)


def device_receives(device: FakeSerialDevice, count: int, reactor: Any) -> Deferred[bytes]:
    """Fire with what the channel wrote to C{device} once it is C{count} bytes long."""
    transport = device.transport
    assert transport is not None
    done: Deferred[bytes] = Deferred()
    write = transport.write

    def recording_write(data: bytes) -> None:
        write(data)
        if not done.called and len(transport.value()) >= count:
            done.callback(transport.value())

    transport.write = recording_write  # type: ignore[method-assign]
    return done.addTimeout(LOOPBACK_TIMEOUT, reactor)


class LoopbackTests(TestCase):
    """The front-end on real sockets, 127.0.0.0/8 only."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.device = FakeSerialDevice(lines=None)

    def listen(self, proto: DatagramProtocol, host: str = LOOPBACK, port: int = 0) -> Any:
        p = self.reactor.listenUDP(port, proto, interface=host)
        self.addCleanup(p.stopListening)
        return p

    def start(self, destinations: list[UdpDestination]) -> tuple[UdpModeService, int]:
        operating = OperatingSettings(mode=OpMode.UDP, udp_destinations=destinations)
        channel = SerialChannel(0, "/dev/fake0", SerialSettings(), self.reactor,
                                self.device.opener, packing=operating.packing())
        channel.startService()

        def stop_channel() -> Deferred[None]:
            d = channel.stopService()
            self.device.close_complete()  # what the SerialPort does after loseConnection
            return d

        self.addCleanup(stop_channel)
        ctx = PortContext(index=0, channel=channel, operating=operating, reactor=self.reactor,
                          endpoint=lambda proto, port: f"{proto}:0:interface={LOOPBACK}",
                          net=NetTable(), accessible=AccessibleIPSettings)
        svc = udp_frontend(ctx)
        assert isinstance(svc, UdpModeService)
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc, svc.port.getHost().port

    async def test_both_ways(self) -> None:
        """Serial bytes reach a real socket as one datagram from the local port; its reply reaches the device."""
        receiver = Receiver()
        rport = self.listen(receiver).getHost().port
        _, local = self.start([dest(LOOPBACK, port=rport)])
        self.device.receive(b"serial->udp")
        await receiver.wait_bytes(11, self.reactor, LOOPBACK_TIMEOUT)
        self.assertEqual(receiver.datagrams, [(b"serial->udp", (LOOPBACK, local))])
        big = os.urandom(20000)  # more than Twisted's default 8192-byte read
        arrived = device_receives(self.device, len(big), self.reactor)
        receiver.transport.write(big, (LOOPBACK, local))
        self.assertEqual(await arrived, big)

    async def test_loopback_range(self) -> None:
        """The range 127.0.0.1-127.0.0.3 sends each frame to all three addresses."""
        receivers = [Receiver() for _ in range(3)]
        rport = self.listen(receivers[0], "127.0.0.1").getHost().port
        try:
            self.listen(receivers[1], "127.0.0.2", rport)
            self.listen(receivers[2], "127.0.0.3", rport)
        except CannotListenError as e:
            raise SkipTest(f"cannot bind 127.0.0.2/3:{rport}: {e}") from None
        self.start([dest("127.0.0.1", "127.0.0.3", rport)])
        self.device.receive(b"fan-out")
        for r in receivers:
            await r.wait_bytes(7, self.reactor, LOOPBACK_TIMEOUT)
        self.assertEqual([r.datagrams[0][0] for r in receivers], [b"fan-out"] * 3)


def write_file(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def udp_bound(port: int, host: str = LOOPBACK) -> bool:
    """Whether a UDP socket is bound to C{port}: our bind is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


class ServiceTests(TestCase):
    """UDP mode through the real service (twistd -n nport) with a pty, on loopback."""

    timeout = 60

    async def test_udp_both_ways(self) -> None:
        """Bytes from the pty arrive as datagrams from UDP 4001+offset; datagrams sent there reach the pty."""
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        from twisted.internet import reactor

        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        pty = Pty()
        self.addCleanup(pty.close)
        receiver = Receiver()
        rport_listener = reactor.listenUDP(0, receiver, interface=LOOPBACK)
        self.addCleanup(rport_listener.stopListening)
        rport = rport_listener.getHost().port
        config = write_file(os.path.join(directory, "nport.ini"),
                            f"[port1.operating]\nmode = udp\n"
                            f"udp_destinations = {LOOPBACK}-{LOOPBACK}:{rport}\n")
        offset = free_port_offset(udp=(*SERVICE_UDP_PORTS, 4001))
        service = Service(directory, ["--interface", LOOPBACK, "--port-offset", str(offset),
                                      "--config", config, "--ports", pty.path])
        service.start()

        def stop() -> None:
            service.stop()
            if service.problems():
                self.fail("the service logged errors:\n" + service.log())

        self.addCleanup(stop)
        local = 4001 + offset

        def ready() -> bool:
            if not service.alive():
                raise AssertionError(f"the service exited:\n{service.log()}")
            return udp_bound(local)

        await poll_until(ready, 15, what=f"UDP {local}")
        await service.wait_device_open(pty.path)
        master = pty.attach(reactor)
        master.write(b"from the pty")
        # The service may read the line in more than one chunk: one datagram each.
        self.assertEqual(await receiver.wait_bytes(12, reactor, LOOPBACK_TIMEOUT), b"from the pty")
        self.assertEqual({a for _, a in receiver.datagrams}, {(LOOPBACK, local)})
        receiver.transport.write(b"to the pty", (LOOPBACK, local))
        self.assertEqual(await master.wait_bytes(10, reactor, LOOPBACK_TIMEOUT), b"to the pty")


