"""
Tests for port buffering: the stores (L{nport_twisted.device.portbuffer})
and the channel keeping serial input while no session takes data, then
handing it to the next one in order, nothing lost or duplicated.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from nport_twisted.config.settings import DeviceConfig, OperatingSettings, OpMode, SerialSettings
from nport_twisted.config.store import SettingsStore
from nport_twisted.device.channel import IChannelSession, SerialChannel
from nport_twisted.device.portbuffer import BufferSpec, FileBuffer, MemoryBuffer, buffer_spec
from nport_twisted.modes.tcpserver import TcpServerFactory
from nport_twisted.server import NPortService
from nport_twisted.testing import FakePort, FakeSerialDevice
from nport_twisted.web import forms


@implementer(IChannelSession)
class Recorder:
    """A channel session that records the serial data it gets."""

    takes_serial_data = True

    def __init__(self) -> None:
        self.data = bytearray()

    def serial_data(self, data: bytes) -> None:
        self.data += data

    def modem_lines_changed(self, old: Any, new: Any) -> None: ...
    def line_errors(self, events: Any) -> None: ...
    def device_state_changed(self, available: bool) -> None: ...
    def pause_input(self) -> None: ...
    def resume_input(self) -> None: ...
    def abort(self) -> None: ...


class StoreTests(SynchronousTestCase):
    """The two stores: bounded, oldest first."""

    def check_store(self, store: Any) -> None:
        self.assertEqual(store.append(b"hello"), 5)
        self.assertEqual(store.append(b" world!"), 5)  # capacity 10: the rest refused
        self.assertEqual(store.size, 10)
        self.assertEqual(store.peek(3), b"hel")
        store.consume(3)
        self.assertEqual(store.peek(100), b"lo worl")
        store.consume(7)
        self.assertEqual((store.size, store.peek(5)), (0, b""))
        self.assertEqual(store.append(b"again"), 5)
        self.assertEqual(store.peek(10), b"again")

    def test_memory(self) -> None:
        """MemoryBuffer keeps up to its capacity and gives the oldest bytes first."""
        self.check_store(MemoryBuffer(10))

    def test_file(self) -> None:
        """FileBuffer does the same in a file."""
        store = FileBuffer(os.path.abspath(self.mktemp()), 10)
        self.addCleanup(store.close)
        self.check_store(store)

    def test_file_survives_reopen(self) -> None:
        """What a file holds and what was delivered survive a restart (no duplicates)."""
        path = os.path.abspath(self.mktemp())
        store = FileBuffer(path, 100)
        store.append(b"0123456789")
        store.consume(4)
        store.close()
        again = FileBuffer(path, 100)
        self.addCleanup(again.close)
        self.assertEqual((again.size, again.peek(100)), (6, b"456789"))

    def test_file_shrinks_when_delivered(self) -> None:
        """Fully delivered, the file is back to its 8-byte header."""
        path = os.path.abspath(self.mktemp())
        store = FileBuffer(path, 100)
        self.addCleanup(store.close)
        store.append(b"x" * 50)
        store.consume(50)
        self.assertEqual(os.path.getsize(path), 8)

    def test_damaged_header(self) -> None:
        """A header that points past the data starts the buffer over."""
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write((1000).to_bytes(8, "little") + b"abc")
        store = FileBuffer(path, 100)
        self.addCleanup(store.close)
        self.assertEqual(store.size, 0)

    def test_spec(self) -> None:
        """Settings to a spec: off, memory, state directory, memory without --config."""
        self.assertIsNone(buffer_spec(0, "memory", "/s", "port1"))
        self.assertEqual(buffer_spec(4, "memory", "/s", "port1"), BufferSpec(4096))
        self.assertEqual(buffer_spec(4, "state-dir", "/s", "port2"),
                         BufferSpec(4096, "/s/port2.buffer"))
        self.assertEqual(buffer_spec(4, "state-dir", None, "port1"), BufferSpec(4096))


class ChannelBufferingTests(SynchronousTestCase):
    """The channel with port buffering on (a fake device, a clock)."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.device = FakeSerialDevice(lines=None)
        self.channel = SerialChannel(0, self.device.path, SerialSettings(), self.clock,
                                     self.device.opener)
        self.channel.startService()
        self.addCleanup(self.channel.stopService)
        self.channel.set_port_buffer(BufferSpec(1000))

    def test_kept_and_delivered_in_order(self) -> None:
        """Input without a session is kept; the next session gets it first, then live data."""
        self.device.receive(b"abc")
        self.device.receive(b"def")
        self.assertEqual(self.channel.buffered_bytes, 6)
        first = Recorder()
        self.channel.attach(first)
        self.device.receive(b"ghi")
        self.assertEqual(bytes(first.data), b"abcdefghi")
        self.assertEqual(self.channel.buffered_bytes, 0)
        second = Recorder()
        self.channel.attach(second)  # nothing buffered: only live data, no duplicate
        self.device.receive(b"j")
        self.assertEqual((bytes(first.data), bytes(second.data)), (b"abcdefghij", b"j"))

    def test_full_drops_newest_and_counts(self) -> None:
        """Beyond the capacity newer bytes are dropped and counted; the kept ones arrive whole."""
        self.channel.set_port_buffer(BufferSpec(5))
        self.device.receive(b"12345678")
        self.assertEqual((self.channel.buffered_bytes, self.channel.stats.serial_rx_dropped), (5, 3))
        session = Recorder()
        self.channel.attach(session)
        self.assertEqual(bytes(session.data), b"12345")

    def test_jam_pauses_the_drain(self) -> None:
        """A session that fills its socket gets the rest when it drains; live data waits behind."""
        self.device.receive(b"a" * 600)
        session = Recorder()
        original = session.serial_data

        def jam_after_first(data: bytes) -> None:
            original(data)
            self.channel.set_jammed(session, True)
        session.serial_data = jam_after_first  # type: ignore[method-assign]
        self.channel._DRAIN_PIECE = 100  # type: ignore[misc]
        self.channel.attach(session)
        self.assertEqual(len(session.data), 100)
        session.serial_data = original  # type: ignore[method-assign]
        self.device.receive(b"LIVE")  # behind the buffered bytes
        self.assertEqual(len(session.data), 100)
        self.channel.set_jammed(session, False)
        self.clock.advance(0)
        self.assertEqual(bytes(session.data), b"a" * 600 + b"LIVE")

    def test_bounded_work_per_turn(self) -> None:
        """A large buffer goes out in turns of DRAIN_PER_TURN bytes."""
        self.channel.set_port_buffer(BufferSpec(1 << 20))
        self.device.receive(b"z" * 600_000)
        session = Recorder()
        self.channel.attach(session)
        self.assertEqual(len(session.data), SerialChannel.DRAIN_PER_TURN)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(session.data), 600_000)

    def test_session_leaves_during_drain(self) -> None:
        """A session that leaves mid-drain leaves the rest for the next one: nothing lost."""
        self.device.receive(b"x" * 300)
        session = Recorder()
        self.channel._DRAIN_PIECE = 100  # type: ignore[misc]
        self.channel.DRAIN_PER_TURN = 100  # type: ignore[misc]
        self.channel.attach(session)
        self.channel.detach(session)
        self.clock.advance(0)
        nxt = Recorder()
        self.channel.attach(nxt)
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(len(session.data) + len(nxt.data), 300)

    def test_command_only_session_takes_nothing(self) -> None:
        """A session that takes no serial data (a command-only ASPP connection) leaves it buffered."""
        command = Recorder()
        command.takes_serial_data = False
        self.channel.attach(command)
        self.device.receive(b"kept")
        self.assertEqual((bytes(command.data), self.channel.buffered_bytes), (b"", 4))

    def test_fast_reader_keeps_the_buffer_rules(self) -> None:
        """
        The reactor's fast reader (FastEPollReactor, the default) follows
        the same rules: a lone command-only session leaves input buffered,
        and live input waits behind a drain that takes several turns.
        """
        command = Recorder()
        command.takes_serial_data = False
        self.channel.attach(command)
        self.channel._fast_serial(b"kept")
        self.assertEqual((bytes(command.data), self.channel.buffered_bytes), (b"", 4))
        self.channel.detach(command)
        self.channel._DRAIN_PIECE = 2  # type: ignore[misc]
        self.channel.DRAIN_PER_TURN = 2  # type: ignore[misc]
        session = Recorder()
        self.channel.attach(session)
        self.assertEqual(bytes(session.data), b"ke")
        self.channel._fast_serial(b"LIVE")  # behind the two bytes still buffered
        self.clock.advance(0)
        self.clock.advance(0)
        self.assertEqual(bytes(session.data), b"keptLIVE")

    def test_off_drops_as_before(self) -> None:
        """Without buffering, input without a session is dropped and counted (unchanged)."""
        self.channel.set_port_buffer(None)
        self.device.receive(b"gone")
        self.assertEqual((self.channel.buffered_bytes, self.channel.stats.serial_rx_dropped), (0, 4))


class TcpServerBufferingTests(SynchronousTestCase):
    """TCP Server mode: the next host that connects gets what came meanwhile."""

    def test_next_host_gets_the_buffer(self) -> None:
        """Serial input between two hosts reaches the second host before live data."""
        port = FakePort(OpMode.TCP_SERVER)
        self.addCleanup(port.stop)
        port.channel.set_port_buffer(BufferSpec(4096))
        factory = TcpServerFactory(port.ctx)
        first = factory.buildProtocol(None)
        t1 = port.accept(first)
        port.device.receive(b"one")
        t1.loseConnection()
        first.connectionLost(None)  # type: ignore[arg-type]
        port.device.receive(b"two")
        t2 = port.accept(factory.buildProtocol(None))
        port.device.receive(b"three")
        self.assertEqual((t1.value(), t2.value()), (b"one", b"twothree"))


class ServiceTests(SynchronousTestCase):
    """The settings wire port buffering in; the monitor shows the count."""

    def service(self, mode: OpMode, **operating: Any) -> tuple[NPortService, FakeSerialDevice]:
        devices: dict[str, FakeSerialDevice] = {}

        def opener(protocol: Any, path: str, settings: Any) -> Any:
            fake = devices.setdefault(path, FakeSerialDevice(path, lines=None))
            return fake.opener(protocol, path, settings)
        config = DeviceConfig().with_port_count(1, mode)
        config = config.replace_port(0, attrs.evolve(
            config.ports[0], operating=OperatingSettings(mode=mode, **operating)))
        svc = NPortService(MemoryReactorClock(), ["/dev/fake0"], config, SettingsStore(None),
                           opener, port_offset=10000, interface="127.0.0.1")
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc, devices.get("/dev/fake0")  # type: ignore[return-value]

    def test_realcom_keeps_device_open(self) -> None:
        """Real COM with port buffering opens the device at start and keeps what it reads."""
        svc, device = self.service(OpMode.REAL_COM, port_buffer_kib=4)
        self.assertTrue(svc.ports[0].channel.is_open)
        device.receive(b"early")
        self.assertEqual(svc.ports[0].channel.buffered_bytes, 5)

    def test_realcom_without_buffering_stays_closed(self) -> None:
        """Without it Real COM keeps the device closed until a host connects (unchanged)."""
        svc, device = self.service(OpMode.REAL_COM)
        self.assertFalse(svc.ports[0].channel.is_open)

    def test_last_host_settings_forgotten(self) -> None:
        """Kept open, the last Real COM host leaving ends its settings as a close would."""
        svc, _ = self.service(OpMode.REAL_COM, port_buffer_kib=4)
        channel = svc.ports[0].channel
        channel.hold()
        channel.override_settings(SerialSettings(baudrate=9600))
        channel.set_dtr(False)
        channel.release()
        self.assertEqual((channel.effective_settings.baudrate, channel.dtr, channel.is_open),
                         (115200, True, True))

    def test_monitor_shows_buffered(self) -> None:
        """The monitor's Buffered cell (web and telnet console) is the channel's count."""
        from nport_twisted.web.console import WebConsole

        svc, device = self.service(OpMode.TCP_SERVER, port_buffer_kib=4)
        device.receive(b"12345678")
        status = WebConsole(svc).port_status(0)
        self.assertEqual(status["buffered"], 8)
        self.assertEqual(forms.monitor_display(status)["buffered"], "8")

    def test_other_modes_not_buffered(self) -> None:
        """Port buffering is a TCP Server / Real COM feature: other modes ignore the setting."""
        svc, _ = self.service(OpMode.RFC2217, port_buffer_kib=4)
        self.assertIsNone(svc.ports[0].channel._buffer)


class NewestBytesTests(SynchronousTestCase):
    """The offline buffer of TCP Client and Pair Connection keeps the newest bytes."""

    def test_keeps_newest_and_reports_drops_once_per_outage(self) -> None:
        from nport_twisted.device.portbuffer import NewestBytes

        buf = NewestBytes(8)
        self.assertEqual(buf.add(b"abcdef"), (0, False))
        self.assertEqual(buf.add(b"ghij"), (2, True))
        self.assertEqual(buf.add(b"k"), (1, False))  # the same outage: not a new overflow
        self.assertEqual(len(buf), 8)
        self.assertEqual(buf.take(), b"defghijk")
        self.assertEqual(len(buf), 0)
        self.assertEqual(buf.add(b"0123456789"), (2, True))  # a new outage after take()
        self.assertEqual(buf.take(), b"23456789")
