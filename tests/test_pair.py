"""
Pair Connection mode (nport_twisted.modes.pair): the two ends' protocol on
fake transports and a fake clock, then two services on loopback -- in
process with fake serial devices (modem lines, reconnect) and as real
``twistd`` processes on ptys (bytes both ways, slave restart).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from nport_twisted.config.settings import DeviceConfig, OperatingSettings, OpMode, PortConfig
from nport_twisted.device.lines import LineCounters, ModemLines
from nport_twisted.modes import pair
from nport_twisted.server import frontend_builders
from nport_twisted.testing import FakePort, FakeTcpTransport
from nport_twisted.wire import pairframe as pf
from tests.e2e_util import (
    LOOPBACK,
    Pty,
    Service,
    free_port_offset,
    have_ptys,
    poll_until,
)


def _frames(data: bytes) -> list[pf.PairEvent]:
    return pf.PairDecoder().feed(data)


class _End:
    """One end on a fake port: its PairEnd started, links made on fake transports."""

    def __init__(self, test: SynchronousTestCase, mode: OpMode, **operating: Any) -> None:
        self.port = FakePort(mode, lines=ModemLines(), counters=LineCounters(), **operating)
        test.addCleanup(self.port.stop)
        builder = frontend_builders()[mode]
        self.front = builder(self.port.ctx)
        self.end: pair.PairEnd = self.front.end
        self.end.startService()
        test.addCleanup(self.end.stopService)

    def connect(self, peer: str = "10.0.0.2") -> tuple[pair.PairLink, FakeTcpTransport]:
        link = pair.PairLink(self.end)
        transport = FakeTcpTransport(peer)
        link.makeConnection(transport)
        return link, transport

    @property
    def control(self) -> Any:
        return self.port.device.control


class RegistrationTests(SynchronousTestCase):
    def test_modes_implemented(self) -> None:
        """Both pair modes are implemented modes (so --mode, the web and the API accept them)."""
        builders = frontend_builders()
        self.assertIn(OpMode.PAIR_MASTER, builders)
        self.assertIn(OpMode.PAIR_SLAVE, builders)


class SlaveProtocolTests(SynchronousTestCase):
    def test_hello_and_lines_on_connect(self) -> None:
        """The slave introduces itself and reports its input lines at once."""
        e = _End(self, OpMode.PAIR_SLAVE)
        e.port.device.lines = ModemLines(dsr=True)
        e.port.clock.advance(1)  # the channel samples the lines
        _, transport = e.connect()
        self.assertEqual(_frames(transport.value()),
                         [pf.Hello(pf.Role.SLAVE), pf.Lines(dsr=True)])

    def test_data_both_ways_after_hello(self) -> None:
        """Serial bytes wait for the master's HELLO, then go as DATA; DATA reaches the device."""
        e = _End(self, OpMode.PAIR_SLAVE)
        link, transport = e.connect()
        transport.clear()
        e.port.device.receive(b"early")
        self.assertEqual(transport.value(), b"")
        self.assertEqual(e.end.buffered, 5)
        link.dataReceived(pf.encode_hello(pf.Role.MASTER))
        self.assertEqual(_frames(pf.encode_hello(pf.Role.SLAVE) + transport.value())[1:],
                         [pf.Data(b"early")])
        transport.clear()
        e.port.device.receive(b"\xff\x00more")
        self.assertEqual(transport.value(), pf.encode_data(b"\xff\x00more"))
        link.dataReceived(pf.encode_data(b"down") + pf.encode_data(b" the line")[:4])
        link.dataReceived(pf.encode_data(b" the line")[4:])
        self.assertEqual(e.port.device.written, b"down the line")
        self.assertTrue(e.end.linked)

    def test_peer_lines_drive_dtr_rts(self) -> None:
        """Peer DSR -> our DTR, peer CTS -> our RTS; unknown lines leave them on; no link: off."""
        e = _End(self, OpMode.PAIR_SLAVE)
        self.assertEqual((e.control.dtr, e.control.rts), (False, False))
        link, _ = e.connect()
        link.dataReceived(pf.encode_hello(pf.Role.MASTER) + pf.encode_lines(pf.Lines(dsr=True)))
        self.assertEqual((e.control.dtr, e.control.rts), (True, False))
        link.dataReceived(pf.encode_lines(pf.Lines(cts=True, dcd=True)))
        self.assertEqual((e.control.dtr, e.control.rts), (False, True))
        link.dataReceived(pf.encode_lines(pf.Lines(present=False)))
        self.assertEqual((e.control.dtr, e.control.rts), (True, True))
        link.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((e.control.dtr, e.control.rts), (False, False))
        self.assertFalse(e.end.linked)

    def test_local_line_change_sent(self) -> None:
        """A change of our input lines goes to the peer as LINES."""
        e = _End(self, OpMode.PAIR_SLAVE)
        link, transport = e.connect()
        link.dataReceived(pf.encode_hello(pf.Role.MASTER))
        transport.clear()
        e.port.device.lines = ModemLines(cts=True, ri=True)
        e.port.clock.advance(1)
        self.assertEqual(_frames(pf.encode_hello(pf.Role.SLAVE) + transport.value())[1:],
                         [pf.Lines(cts=True, ri=True)])

    def test_breaks_both_ways(self) -> None:
        """A break on our line goes as BREAK; the peer's BREAK is a break of that length here."""
        e = _End(self, OpMode.PAIR_SLAVE)
        link, transport = e.connect()
        link.dataReceived(pf.encode_hello(pf.Role.MASTER))
        transport.clear()
        e.port.device.counters = LineCounters(brk=1)
        e.port.clock.advance(1)
        self.assertEqual(transport.value(), pf.encode_break(pair.BREAK_MS))
        link.dataReceived(pf.encode_break(500))
        self.assertTrue(e.control.break_on)
        e.port.clock.advance(0.4)
        self.assertTrue(e.control.break_on)
        e.port.clock.advance(0.2)
        self.assertFalse(e.control.break_on)

    def test_malformed_stream_closes_link_only(self) -> None:
        """Garbage instead of HELLO: one log line, the link is aborted, nothing reaches the line."""
        e = _End(self, OpMode.PAIR_SLAVE)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        link, transport = e.connect()
        link.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(transport.aborted)
        self.assertEqual(e.port.device.written, b"")
        self.assertEqual(e.end.stats.bad_streams, 1)
        self.assertTrue(any("not an nport-twisted Pair Connection" in str(ev.get("why"))
                            for ev in logged))
        link.connectionLost(Failure(ConnectionDone()))
        self.assertIsNone(e.end.link)

    def test_wrong_role_closes_link(self) -> None:
        """A slave talking to a slave closes the link, naming why."""
        e = _End(self, OpMode.PAIR_SLAVE)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        link, transport = e.connect()
        link.dataReceived(pf.encode_hello(pf.Role.SLAVE) + pf.encode_data(b"x"))
        self.assertTrue(transport.aborted)
        self.assertEqual(e.port.device.written, b"")
        self.assertTrue(any("slave too" in str(ev.get("why")) for ev in logged))

    def test_second_master_refused(self) -> None:
        """One master at a time: a second connection is refused while one is linked."""
        e = _End(self, OpMode.PAIR_SLAVE)
        first, _ = e.connect("10.0.0.2")
        first.dataReceived(pf.encode_hello(pf.Role.MASTER))
        second, transport = e.connect("10.0.0.3")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(second.is_admitted)
        self.assertIs(e.end.link, first)

    def test_accessible_ip_applies_to_the_slave(self) -> None:
        """The accessible IP list decides which masters may connect."""
        from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings

        e = _End(self, OpMode.PAIR_SLAVE)
        e.port.acl = AccessibleIPSettings(entries=(AccessibleIP("10.0.0.9"),))
        link, transport = e.connect("10.0.0.2")
        self.assertTrue(transport.aborted)
        self.assertIsNone(e.end.link)

    def test_jammed_peer_pauses_serial_reader(self) -> None:
        """A peer that does not read holds the serial reader (nothing lost)."""
        e = _End(self, OpMode.PAIR_SLAVE)
        link, transport = e.connect()
        link.dataReceived(pf.encode_hello(pf.Role.MASTER))
        transport.producer.pauseProducing()  # the transport's buffer is full
        self.assertIn(e.end, e.port.channel._jammed)
        transport.producer.resumeProducing()
        self.assertNotIn(e.end, e.port.channel._jammed)

    def test_offline_buffer_bounded(self) -> None:
        """Serial data without a peer is kept up to BUFFER_SIZE, oldest dropped and counted."""
        e = _End(self, OpMode.PAIR_SLAVE)
        e.port.device.receive(b"a" * pair.BUFFER_SIZE)
        e.port.device.receive(b"b" * 10)
        self.assertEqual(e.end.buffered, pair.BUFFER_SIZE)
        self.assertEqual(e.end.stats.buffer_dropped, 10)

    def test_stop_restores_lines(self) -> None:
        """Leaving the mode puts DTR/RTS back on."""
        e = _End(self, OpMode.PAIR_SLAVE)
        self.assertFalse(e.control.dtr)
        e.end.stopService()
        self.assertEqual((e.control.dtr, e.control.rts), (True, True))


class MasterProtocolTests(SynchronousTestCase):
    def test_master_says_master(self) -> None:
        e = _End(self, OpMode.PAIR_MASTER, pair_remote="127.0.0.1:4001")
        link, transport = e.connect("127.0.0.1")
        self.assertEqual(_frames(transport.value())[0], pf.Hello(pf.Role.MASTER))
        link.dataReceived(pf.encode_hello(pf.Role.SLAVE) + pf.encode_data(b"hi"))
        self.assertEqual(e.port.device.written, b"hi")

    def test_master_without_destination(self) -> None:
        """No pair_remote: a warning, no connector."""
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        e = _End(self, OpMode.PAIR_MASTER)
        self.assertIsNone(e.front.connector)
        self.assertTrue(any("without a destination" in ev.get("log_format", "")
                            for ev in logged))

    def test_dial_timeout_and_backoff(self) -> None:
        """A dial that times out is one warning; retries wait 1 s, then 2 s, then 4 s."""
        import attrs
        from twisted.internet.error import TimeoutError as DialTimeout
        from twisted.internet.testing import MemoryReactorClock

        port = FakePort(OpMode.PAIR_MASTER, lines=None, pair_remote="127.0.0.1:4001")
        self.addCleanup(port.stop)
        reactor = MemoryReactorClock()
        front = pair.pair_master_frontend(attrs.evolve(port.ctx, reactor=reactor))
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        front.startService()
        self.addCleanup(front.stopService)

        def fail_last() -> None:
            connector = reactor.connectors[-1]
            reactor.tcpClients[-1][2].clientConnectionFailed(connector, Failure(DialTimeout()))

        self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 4001))
        fail_last()
        reactor.advance(0.9)
        self.assertEqual(len(reactor.tcpClients), 1)
        reactor.advance(0.2)
        self.assertEqual(len(reactor.tcpClients), 2)
        fail_last()
        reactor.advance(1.9)
        self.assertEqual(len(reactor.tcpClients), 2)
        reactor.advance(0.2)
        self.assertEqual(len(reactor.tcpClients), 3)
        fail_last()
        end = front.end
        self.assertEqual(end.stats.link_failures, 3)
        warnings = [ev for ev in logged if "cannot connect to the pair slave" in
                    ev.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertIn("timeout", str(warnings[0]["error"]).lower())
        self.assertTrue(port.channel.is_open)


# --- two services on loopback ----------------------------------------------------------


def _config(mode: OpMode, **operating: Any) -> DeviceConfig:
    config = DeviceConfig().with_port_count(1, mode)
    return config.replace_port(0, PortConfig(operating=OperatingSettings(mode=mode, **operating)))


class InProcessPairTests(TestCase):
    """A slave and a master service in this process, on the real reactor, fake devices."""

    timeout = 60

    def _service(self, config: DeviceConfig, device: Any, offset: int) -> Any:
        from twisted.internet import reactor

        from nport_twisted.config.store import SettingsStore
        from nport_twisted.server import NPortService

        mode = config.ports[0].operating.mode
        svc = NPortService(reactor, ["/dev/fake0"], config, SettingsStore(None), device.opener,
                           port_offset=offset, interface=LOOPBACK, default_mode=mode)
        svc.startService()
        stopped: list[bool] = []

        def stop() -> Deferred[None] | None:
            if stopped:
                return None
            stopped.append(True)
            d: Deferred[None] = svc.stopService()
            device.close_complete()
            return d
        self.addCleanup(stop)
        svc.stop_now = stop  # type: ignore[attr-defined]
        return svc

    async def test_lines_data_and_reconnect(self) -> None:
        """Modem lines cross both ways, data flows, and the master relinks after a slave restart."""
        from twisted.internet import reactor

        from nport_twisted.testing import FakeSerialDevice

        offset = free_port_offset(tcp=(4001,), udp=())
        slave_dev = FakeSerialDevice("/dev/fake0", lines=ModemLines())
        master_dev = FakeSerialDevice("/dev/fake0", lines=ModemLines())
        slave = self._service(_config(OpMode.PAIR_SLAVE), slave_dev, offset)
        master = self._service(
            _config(OpMode.PAIR_MASTER, pair_remote=f"{LOOPBACK}:{4001 + offset}"), master_dev, 0)
        slave_end = slave.ports[0].frontend.end
        master_end = master.ports[0].frontend.end
        await poll_until(lambda: slave_end.linked and master_end.linked, 15, what="the link")

        # The master's device raises DTR/RTS -> its NPort sees DSR/CTS -> the slave drives DTR/RTS.
        master_dev.lines = ModemLines(dsr=True)
        await poll_until(lambda: slave_dev.control.dtr is True and slave_dev.control.rts is False,
                         10, what="the slave's DTR to follow the master's DSR")
        slave_dev.lines = ModemLines(cts=True)
        await poll_until(lambda: master_dev.control.rts is True and master_dev.control.dtr is False,
                         10, what="the master's RTS to follow the slave's CTS")

        up, down = os.urandom(4096), os.urandom(4096)
        master_dev.receive(up)
        slave_dev.receive(down)
        await poll_until(lambda: len(slave_dev.written) >= len(up), 10, what="data at the slave")
        await poll_until(lambda: len(master_dev.written) >= len(down), 10, what="data at the master")
        self.assertEqual(slave_dev.written, up)
        self.assertEqual(master_dev.written, down)

        # The slave goes away: the master's DTR/RTS drop, it keeps its port and retries.
        await slave.stop_now()
        await poll_until(lambda: not master_end.linked, 10, what="the master to see the loss")
        self.assertEqual((master_dev.control.dtr, master_dev.control.rts), (False, False))
        self.assertTrue(master.ports[0].channel.is_open)
        master_dev.receive(b"while away")
        slave_dev2 = FakeSerialDevice("/dev/fake0", lines=ModemLines(cts=True))
        slave2 = self._service(_config(OpMode.PAIR_SLAVE), slave_dev2, offset)
        slave_end2 = slave2.ports[0].frontend.end
        await poll_until(lambda: slave_end2.linked and master_end.linked, 20, what="the relink")
        await poll_until(lambda: slave_dev2.written == b"while away", 10,
                         what="the buffered bytes at the new slave")
        await poll_until(lambda: master_dev.control.rts is True, 10, what="lines after relink")
        self.assertGreaterEqual(master_end.stats.links, 2)

    async def test_refused_dial_is_a_log_line(self) -> None:
        """A master whose slave is not there logs once, counts failures, keeps its port open."""
        import socket

        from nport_twisted.testing import FakeSerialDevice

        with socket.socket() as s:  # a loopback port nobody listens on
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        dev = FakeSerialDevice("/dev/fake0", lines=None)
        master = self._service(_config(OpMode.PAIR_MASTER, pair_remote=f"{LOOPBACK}:{port}"),
                               dev, 0)
        end = master.ports[0].frontend.end
        await poll_until(lambda: end.stats.link_failures >= 1, 10, what="a refused attempt")
        dev.receive(b"kept")
        self.assertEqual(end.buffered, 4)
        self.assertTrue(master.ports[0].channel.is_open)
        lines = [ev for ev in logged if "cannot connect to the pair slave" in
                 ev.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        self.assertIn("refused", str(lines[0]["error"]).lower())


class PairProcessTests(TestCase):
    """Two real services (twistd) on loopback, two ptys."""

    timeout = 180

    def setUp(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        from twisted.internet import reactor

        self.reactor: Any = reactor

    def _pty(self) -> Pty:
        p = Pty()
        self.addCleanup(p.close)
        return p

    def _service(self, name: str, offset: int, config: str, device: str) -> Service:
        directory = os.path.abspath(os.path.join(self.mktemp(), name))
        os.makedirs(directory)
        path = os.path.join(directory, "nport.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        svc = Service(directory, ["--interface", LOOPBACK, "--port-offset", str(offset),
                                  "--config", path, "--ports", device])
        svc.start()

        def check() -> None:
            svc.stop()
            problems = svc.problems()
            if problems:
                self.fail(f"the {name} logged errors:\n" + svc.log())
        self.addCleanup(check)
        return svc

    async def test_bytes_both_ways_and_slave_restart(self) -> None:
        """64 KiB each way exact between two ptys; after the slave restarts, data flows again."""
        slave_pty, master_pty = self._pty(), self._pty()
        slave_offset = free_port_offset()
        master_offset = free_port_offset()
        slave_cfg = "[port1.operating]\nmode = pair-slave\n"
        master_cfg = (f"[port1.operating]\nmode = pair-master\n"
                      f"pair_remote = {LOOPBACK}:{4001 + slave_offset}\n")
        slave = self._service("slave", slave_offset, slave_cfg, slave_pty.path)
        master = self._service("master", master_offset, master_cfg, master_pty.path)
        await slave.wait_listening([4001 + slave_offset])
        await slave.wait_device_open(slave_pty.path)
        await master.wait_device_open(master_pty.path)
        await poll_until(lambda: "linked to" in master.log(), 20, what="the master's link")
        s_io, m_io = slave_pty.attach(self.reactor), master_pty.attach(self.reactor)
        size = 64 * 1024
        up, down = os.urandom(size), os.urandom(size)
        m_io.write(up)
        s_io.write(down)
        self.assertEqual(await s_io.wait_bytes(size, self.reactor, 20), up)
        self.assertEqual(await m_io.wait_bytes(size, self.reactor, 20), down)

        slave.stop()
        await poll_until(lambda: "pair link with" in master.log(), 15, what="the master's loss")
        slave2 = self._service("slave2", slave_offset, slave_cfg, slave_pty.path)
        await slave2.wait_listening([4001 + slave_offset], timeout=30)
        await slave2.wait_device_open(slave_pty.path, timeout=30)
        # The master retries after 1, 2, 4, 8, 16, 30 s: a slave slow to start
        # (a loaded machine) may wait for the 30 s step.
        try:
            await poll_until(lambda: master.log().count("linked to") >= 2, 75, what="the relink")
        except AssertionError as e:
            self.fail(f"{e}\n--- master:\n{master.log()}\n--- slave2:\n{slave2.log()}")
        s_io.data.clear()
        m_io.data.clear()
        m_io.write(b"after the restart")
        s_io.write(b"and back")
        self.assertEqual(await s_io.wait_bytes(17, self.reactor, 20), b"after the restart")
        self.assertEqual(await m_io.wait_bytes(8, self.reactor, 20), b"and back")
