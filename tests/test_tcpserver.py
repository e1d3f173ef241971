"""
Tests for TCP Server mode (nport_twisted.modes.tcpserver) over in-memory transports.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from nport_twisted.device.channel import IChannelSession
from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings, OpMode
from nport_twisted.modes.tcpserver import TcpServerFactory, TcpServerProtocol, tcp_server_frontend
from nport_twisted.testing import FakePort, FakeTcpTransport


class Harness(FakePort):
    def __init__(self, test: SynchronousTestCase, **operating: Any) -> None:
        super().__init__(OpMode.TCP_SERVER, **operating)
        test.addCleanup(self.stop)
        self.factory = TcpServerFactory(self.ctx)

    def connect(self, peer: str = "10.0.0.1") -> tuple[TcpServerProtocol, FakeTcpTransport]:
        proto = self.factory.buildProtocol(None)
        return proto, self.accept(proto, peer)


class TcpServerTests(SynchronousTestCase):
    def test_session_interface(self) -> None:
        """A TCP Server connection implements IChannelSession."""
        h = Harness(self)
        proto, _ = h.connect()
        self.assertTrue(verifyObject(IChannelSession, proto))

    def test_relay_both_ways(self) -> None:
        """Host bytes go to the device; device bytes come back to the host, unchanged."""
        h = Harness(self)
        proto, transport = h.connect()
        proto.dataReceived(b"\x00\xff hello")
        self.assertEqual(h.device.written, b"\x00\xff hello")
        h.device.receive(b"\x11world\x13")
        self.assertEqual(transport.value(), b"\x11world\x13")
        self.assertEqual((h.channel.stats.serial_tx_bytes, h.channel.stats.serial_rx_bytes), (8, 7))

    def test_fan_out_and_fifo(self) -> None:
        """With max connection 4, device data reaches all four hosts; host writes queue FIFO."""
        h = Harness(self, max_connection=4)
        conns = [h.connect(f"10.0.0.{i}") for i in range(1, 5)]
        h.device.receive(b"broadcast")
        self.assertEqual([t.value() for _, t in conns], [b"broadcast"] * 4)
        for i, (proto, _) in enumerate(conns):
            proto.dataReceived(b"%d" % i)
        self.assertEqual(h.device.written, b"0123")

    def test_fifth_client_refused(self) -> None:
        """A host beyond max connection is closed at once and gets no serial data."""
        h = Harness(self, max_connection=4)
        for i in range(4):
            h.connect(f"10.0.0.{i}")
        _, fifth = h.connect("10.0.0.9")
        self.assertTrue(fifth.disconnecting)
        h.device.receive(b"x")
        self.assertEqual(fifth.value(), b"")
        self.assertEqual(h.channel.stats.connections_active, 4)

    def test_slot_freed_on_disconnect(self) -> None:
        """When a host leaves, its slot is free for the next one."""
        h = Harness(self)
        first, t1 = h.connect()
        first.connectionLost()
        second, t2 = h.connect("10.0.0.2")
        self.assertFalse(t2.disconnecting)
        h.device.receive(b"y")
        self.assertEqual((t1.value(), t2.value()), (b"", b"y"))

    def test_inactivity_time(self) -> None:
        """With inactivity time set, a connection idle that long is closed; traffic resets the timer."""
        h = Harness(self, inactivity_ms=500)
        proto, transport = h.connect()
        h.clock.advance(0.4)
        proto.dataReceived(b"a")
        h.clock.advance(0.4)
        h.device.receive(b"b")
        h.clock.advance(0.4)
        self.assertFalse(transport.disconnecting)
        h.clock.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_no_inactivity_timer_by_default(self) -> None:
        """Inactivity time 0 (the default) schedules nothing."""
        h = Harness(self)
        h.connect()
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_alive_check_enables_keepalive(self) -> None:
        """TCP alive check time > 0 turns TCP keep-alive on; 0 leaves it off."""
        h = Harness(self)
        _, transport = h.connect()
        self.assertTrue(transport.keepalive)
        h0 = Harness(self, tcp_alive_check_min=0)
        _, transport0 = h0.connect()
        self.assertFalse(transport0.keepalive)

    def test_accessible_ip_list(self) -> None:
        """With an active accessible IP entry, other hosts are cut off without any data."""
        h = Harness(self)
        h.acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        _, bad = h.connect("10.0.0.1")
        _, good = h.connect("192.168.1.7")
        self.assertTrue(bad.aborted)
        self.assertFalse(good.disconnecting)

    def test_jammed_client_pauses_reader(self) -> None:
        """Without ignore-jammed, a full client transport pauses the serial reader until it drains."""
        h = Harness(self, max_connection=2)
        _, t1 = h.connect()
        h.connect("10.0.0.2")
        t1.producer.pauseProducing()
        self.assertEqual(h.device.transport.producerState, "paused")
        t1.producer.resumeProducing()
        self.assertEqual(h.device.transport.producerState, "producing")

    def test_jammed_client_skipped(self) -> None:
        """With ignore-jammed, a full client is skipped (bytes counted) and the others still get data."""
        h = Harness(self, max_connection=2, ignore_jammed=True)
        _, t1 = h.connect()
        _, t2 = h.connect("10.0.0.2")
        t1.producer.pauseProducing()
        h.device.receive(b"data")
        self.assertEqual((t1.value(), t2.value()), (b"", b"data"))
        self.assertEqual(h.device.transport.producerState, "producing")
        self.assertEqual(h.channel.stats.serial_rx_dropped, 4)

    def test_device_backpressure_pauses_hosts(self) -> None:
        """When the device's write buffer is full every host's input is paused, then resumed."""
        h = Harness(self, max_connection=2)
        _, t1 = h.connect()
        _, t2 = h.connect("10.0.0.2")
        producer = h.device.transport.producer
        producer.pauseProducing()
        self.assertEqual((t1.producerState, t2.producerState), ("paused", "paused"))
        _, t3 = h.connect("10.0.0.3")  # over the limit of 2: closed, not paused
        producer.resumeProducing()
        self.assertEqual((t1.producerState, t2.producerState), ("producing", "producing"))

    def test_device_vanish_keeps_connection(self) -> None:
        """When the device vanishes the host stays connected; its bytes are dropped and counted."""
        h = Harness(self)
        proto, transport = h.connect()
        h.device.vanish()
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"lost")
        self.assertEqual(h.channel.stats.serial_tx_dropped, 4)
        h.device.present = True
        h.clock.advance(1)
        self.assertTrue(h.channel.is_open)
        h.device.receive(b"back")
        self.assertEqual(transport.value(), b"back")
        self.flushLoggedErrors()

    def test_session_error_isolated(self) -> None:
        """A host whose write raises is dropped; the device and other hosts keep working."""
        h = Harness(self, max_connection=2)
        bad, tbad = h.connect()
        _, tgood = h.connect("10.0.0.2")

        def boom(data: bytes) -> None:
            raise RuntimeError("client failure")
        tbad.write = boom  # type: ignore[method-assign]
        h.device.receive(b"z")
        self.assertEqual(tgood.value(), b"z")
        self.assertTrue(tbad.aborted)
        self.assertTrue(h.channel.is_open)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_net_table(self) -> None:
        """Connections are listed in the net table while open (for DSCI netstat)."""
        h = Harness(self)
        proto, _ = h.connect("10.0.0.5")
        self.assertEqual([c.remote_host for c in h.net.connections], ["10.0.0.5"])
        proto.connectionLost()
        self.assertEqual(h.net.connections, [])

    def test_frontend_listens_on_4001_plus_index(self) -> None:
        """The front-end of port 3 listens on 4003 unless a local TCP port is configured."""
        h = Harness(self)
        ctx = attrs.evolve(h.ctx, index=2)
        front = tcp_server_frontend(ctx)
        self.assertEqual([s.description for s in front], ["tcp:4003", "tcp:968"])  # type: ignore[attr-defined]
        ctx2 = attrs.evolve(h.ctx, operating=attrs.evolve(h.ctx.operating, local_tcp_port=5000,
                                                           command_port=6000))
        self.assertEqual([s.description for s in tcp_server_frontend(ctx2)],  # type: ignore[attr-defined]
                         ["tcp:5000", "tcp:6000"])


class CommandPortTests(SynchronousTestCase):
    """TCP Server mode's command port speaks ASPP on the same channel."""

    def _command(self, h: Harness) -> tuple[Any, FakeTcpTransport]:
        from nport_twisted.modes.tcpserver import CommandProtocol, TcpServerCommandPort
        port = TcpServerCommandPort(h.ctx)
        proto = CommandProtocol(port)
        transport = FakeTcpTransport("10.0.0.1")
        proto.makeConnection(transport)
        return proto, transport

    def test_port_init_applies_to_open_device(self) -> None:
        """PORT_INIT on the command port sets 9600 7E1 on the device and answers 5 bytes at once."""
        h = Harness(self)
        proto, transport = self._command(h)
        proto.dataReceived(bytes.fromhex("2C 08 06 0A 01 01 00 00 00 00"))
        self.assertEqual(transport.value(), bytes.fromhex("2C 03 01 01 01"))
        assert h.device.control is not None
        applied = h.device.control.applied[-1]
        self.assertEqual((applied.baudrate, applied.bytesize, applied.parity.value), (9600, 7, "E"))

    def test_data_still_flows_on_tcp_port(self) -> None:
        """With a command connection attached, serial data goes to the TCP Server host, not the command port."""
        h = Harness(self)
        _, cmd_transport = self._command(h)
        proto, data_transport = h.connect("10.0.0.2")
        h.device.receive(b"payload")
        self.assertEqual((data_transport.value(), cmd_transport.value()), (b"payload", b""))
        proto.dataReceived(b"up")
        self.assertEqual(h.device.written, b"up")

    def test_wait_oqueue_answered(self) -> None:
        """WAIT_OQUEUE on the command port answers the device's queue (0 when empty)."""
        h = Harness(self)
        proto, transport = self._command(h)
        proto.dataReceived(bytes.fromhex("2F 04 E8 03 00 00"))
        self.assertEqual(transport.value(), bytes.fromhex("2F 02 00 00"))

    def test_host_settings_end_with_command_connection(self) -> None:
        """When the last command connection closes, the configured serial settings return."""
        h = Harness(self)
        proto, _ = self._command(h)
        proto.dataReceived(bytes.fromhex("2C 08 06 03 01 01 00 00 00 00"))
        self.assertEqual(h.device.in_force.baudrate, 9600)
        proto.connectionLost()
        self.assertEqual(h.device.in_force.baudrate, 115200)

    def test_command_lost_detaches(self) -> None:
        """Closing the command connection detaches it from the channel; the device stays open."""
        h = Harness(self)
        proto, _ = self._command(h)
        self.assertEqual(len(h.channel.sessions), 1)
        proto.connectionLost()
        self.assertEqual(h.channel.sessions, ())
        self.assertTrue(h.channel.is_open)


class FastReceivedTests(SynchronousTestCase):
    """The raw relay's flattened receive (the reactor's fast reader) keeps the session's rules."""

    def test_relay_received_writes_counts_and_touches(self) -> None:
        """Host bytes reach the device, restart the inactivity timer; none once the host is gone."""
        from nport_twisted.testing import FakePort

        port = FakePort(OpMode.TCP_SERVER, inactivity_ms=1000)
        self.addCleanup(port.stop)
        factory = TcpServerFactory(port.ctx)
        proto = factory.buildProtocol(None)
        port.accept(proto, "10.0.0.1")
        fast = proto.fast_received
        self.assertNotEqual(fast, proto.dataReceived)
        port.clock.advance(0.9)
        fast(b"abc")
        port.clock.advance(0.9)
        self.assertEqual(port.device.written, b"abc")
        self.assertFalse(proto.transport.disconnecting)
        proto.connectionLost()
        fast(b"late")
        self.assertEqual(port.device.written, b"abc")


class DedicatedRelayTests(SynchronousTestCase):
    """
    The dedicated relay of the common case (one raw session, passthrough):
    used only while its writers say they can write at once; every other
    case takes the general path, with the same bytes, counts and timers.
    """

    def _session(self, **operating: Any) -> tuple[FakePort, TcpServerProtocol]:
        port = FakePort(OpMode.TCP_SERVER, **operating)
        self.addCleanup(port.stop)
        proto = TcpServerFactory(port.ctx).buildProtocol(None)
        port.accept(proto, "10.0.0.1")
        return port, proto

    def test_host_bytes_through_the_direct_writer(self) -> None:
        """The channel's direct writer takes host bytes: counted, the timer restarted."""
        port, proto = self._session(inactivity_ms=1000)
        channel = port.ctx.channel
        taken: list[bytes] = []
        channel.direct_write = lambda data: taken.append(data) is None
        fast = proto.fast_received
        port.clock.advance(0.9)
        fast(b"abc")
        port.clock.advance(0.9)
        self.assertEqual((taken, port.device.written), ([b"abc"], b""))
        self.assertEqual(channel.stats.serial_tx_bytes, 3)
        self.assertFalse(proto.transport.disconnecting)  # the inactivity timer was restarted

    def test_host_bytes_fall_back(self) -> None:
        """A writer that cannot write now, no writer, or a closed session: the general path."""
        port, proto = self._session()
        channel = port.ctx.channel
        fast = proto.fast_received
        channel.direct_write = lambda data: False
        fast(b"queued")
        channel.direct_write = None
        fast(b"plain")
        self.assertEqual(port.device.written, b"queuedplain")
        self.assertEqual(channel.stats.serial_tx_bytes, 11)
        channel.direct_write = lambda data: self.fail("used after close")  # type: ignore[misc]
        proto.connectionLost()
        fast(b"late")
        self.assertEqual(port.device.written, b"queuedplain")

    def test_device_bytes_through_the_direct_sender(self) -> None:
        """One session, passthrough: device bytes go to its direct sender, not serial_data."""
        port, proto = self._session()
        sent: list[bytes] = []
        proto.direct_serial_data = lambda data: sent.append(data) is None
        port.device.receive(b"xyz")
        port.ctx.channel._fast_serial(b"fast")
        self.assertEqual(proto.transport.value(), b"xyz")  # the serial protocol's own path
        self.assertEqual(sent, [b"fast"])
        self.assertEqual(port.ctx.channel.stats.serial_rx_bytes, 7)

    def test_device_bytes_fall_back(self) -> None:
        """A sender that cannot send now, two sessions or packing: serial_data as before."""
        from nport_twisted.wire.packing import PackingConfig

        port, proto = self._session(max_connection=2)
        channel = port.ctx.channel
        proto.direct_serial_data = lambda data: False
        channel._fast_serial(b"one")
        self.assertEqual(proto.transport.value(), b"one")
        proto.direct_serial_data = lambda data: self.fail("used with two sessions")  # type: ignore[misc]
        other = TcpServerFactory(port.ctx).buildProtocol(None)
        port.accept(other, "10.0.0.2")
        channel._fast_serial(b"two")
        other.connectionLost()
        channel.set_packing(PackingConfig(packing_length=4))
        proto.direct_serial_data = lambda data: self.fail("used with packing")  # type: ignore[misc]
        channel._fast_serial(b"3456")
        self.assertEqual(proto.transport.value(), b"onetwo3456")

    def test_no_direct_sender_for_fakes_tls_or_other_protocols(self) -> None:
        """Without a plain socket (fakes, TLS) or for a session with its own serial_data: none."""
        from nport_twisted.modes.rfc2217 import Rfc2217Factory

        port, proto = self._session()
        self.assertIsNone(proto.direct_serial_data)  # FakeTcpTransport: no direct writer
        rport = FakePort(OpMode.RFC2217)
        self.addCleanup(rport.stop)
        rfc = Rfc2217Factory(rport.ctx).buildProtocol(None)
        self.assertIsNone(rfc._direct_serial_writer())
