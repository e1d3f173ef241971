"""
Tests for the admitted-session base (nport_twisted.net.session): the gate,
the session hooks, and the channel session, without any front-end.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings, SerialSettings
from nport_twisted.device.channel import IChannelSession, SerialChannel
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import (
    AdmittedSession,
    ChannelSession,
    Gate,
    ReadHold,
)
from nport_twisted.testing import FakeSerialDevice, FakeTcpTransport


class Recorder(AdmittedSession):
    """A session that is no serial port's: it records its hooks (like a console would)."""

    def __init__(self, gate: Gate, claim: str | None = None, fail: bool = False) -> None:
        super().__init__(gate)
        self._claim = claim
        self._fail = fail
        self.events: list[Any] = []

    def claim(self) -> str | None:
        self.events.append("claim")
        return self._claim

    def admitted(self) -> None:
        self.events.append("admitted")

    def received(self, data: bytes) -> None:
        if self._fail:
            raise ValueError("handler bug")
        self.events.append(data)
        self.touch()

    def closed(self, reason: Failure) -> None:
        self.events.append("closed")

    def write_buffer_changed(self) -> None:
        self.events.append(("full", self.write_full))


def connect(session: AdmittedSession, peer: str = "10.0.0.1") -> FakeTcpTransport:
    transport = FakeTcpTransport(peer, local_port=23)
    session.makeConnection(transport)
    return transport


class GateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.net = NetTable()
        self.acl = AccessibleIPSettings()
        self.gate = Gate("console", self.clock, lambda: self.acl, net=self.net, limit=2,
                         idle_timeout=30, kind="console connection")

    def test_admits_and_cleans_up(self) -> None:
        """An admitted connection is counted and in the net table until it is lost; hooks run in order."""
        s = Recorder(self.gate)
        connect(s)
        self.assertEqual((self.gate.active, len(self.net.connections)), ([s], 1))
        self.assertEqual(self.net.connections[0].port_index, None)
        s.dataReceived(b"hi")
        s.connectionLost(Failure(ConnectionError()))
        self.assertEqual(s.events, ["claim", "admitted", b"hi", "closed"])
        self.assertEqual((self.gate.active, self.net.connections), ([], []))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_accessible_ip_refused_with_abort(self) -> None:
        """A host outside the accessible IP list is aborted before any hook, asked at each connection."""
        self.acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        s = Recorder(self.gate)
        transport = connect(s)
        self.assertTrue(transport.aborted)
        s.dataReceived(b"ignored")
        s.connectionLost(Failure(ConnectionError()))
        self.assertEqual(s.events, [])
        self.assertEqual(self.gate.stats.refused_accessible_ip, 1)
        self.assertEqual(self.net.connections, [])

    def test_limit_refused_with_close(self) -> None:
        """Over the limit a host is closed cleanly (or aborted when the gate says so)."""
        connect(Recorder(self.gate))
        connect(Recorder(self.gate), "10.0.0.2")
        third = connect(Recorder(self.gate), "10.0.0.3")
        self.assertEqual((third.disconnecting, third.aborted), (True, False))
        self.gate.abort_over_limit = True
        fourth = connect(Recorder(self.gate), "10.0.0.4")
        self.assertTrue(fourth.aborted)
        self.assertEqual((self.gate.stats.admitted, self.gate.stats.refused_limit), (2, 2))

    def test_claim_refusal(self) -> None:
        """A session's own claim (a slot, a pairing) refusing closes the connection, uncounted."""
        s = Recorder(self.gate, claim="no free slot")
        transport = connect(s)
        self.assertTrue(transport.disconnecting)
        self.assertEqual((s.events, self.gate.active), (["claim"], []))
        self.assertEqual(self.gate.stats.refused_claim, 1)

    def test_idle_timeout_on_injected_clock(self) -> None:
        """Silence for the idle timeout closes the connection; what the session counts as traffic resets it."""
        s = Recorder(self.gate)
        transport = connect(s)
        self.clock.advance(29)
        s.dataReceived(b"x")
        self.clock.advance(29)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_no_timer_without_idle_timeout(self) -> None:
        """Idle timeout 0 schedules nothing."""
        connect(Recorder(Gate("x", self.clock)))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_handler_exception_aborts_only_this_connection(self) -> None:
        """An exception from the handler is logged and aborts that connection alone."""
        bad, good = Recorder(self.gate, fail=True), Recorder(self.gate)
        t_bad, t_good = connect(bad), connect(good, "10.0.0.2")
        bad.dataReceived(b"boom")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertTrue(t_bad.aborted)
        self.assertFalse(t_good.disconnecting)

    def test_write_buffer_watched(self) -> None:
        """The transport's producer calls tell the session its write buffer filled and drained."""
        s = Recorder(self.gate)
        transport = connect(s)
        transport.producer.pauseProducing()
        transport.producer.pauseProducing()
        transport.producer.resumeProducing()
        self.assertEqual(s.events[2:], [("full", True), ("full", False)])

    def test_read_holds(self) -> None:
        """Reading stays paused until every reason given is withdrawn."""
        s = Recorder(self.gate)
        transport = connect(s)
        s.pause_reading(ReadHold.SERIAL_BUSY)
        self.assertEqual(transport.producerState, "paused")
        s.resume_reading(ReadHold.SERIAL_BUSY)
        s.resume_reading(ReadHold.SERIAL_BUSY)
        self.assertEqual(transport.producerState, "producing")


class ChannelSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.device = FakeSerialDevice(lines=None)
        self.channel = SerialChannel(0, "/dev/fake0", SerialSettings(), self.clock, self.device.opener)
        self.channel.startService()
        self.gate = Gate("port1", self.clock, limit=4)

    def tearDown(self) -> None:
        self.channel.stopService()
        self.device.close_complete()

    def test_relay_attach_detach(self) -> None:
        """A channel session relays both ways while admitted and is detached when lost."""
        s = ChannelSession(self.gate, self.channel)
        self.assertTrue(verifyObject(IChannelSession, s))
        transport = connect(s)
        self.assertEqual(self.channel.sessions, (s,))
        s.dataReceived(b"up")
        self.device.receive(b"down")
        self.assertEqual((self.device.written, transport.value()), (b"up", b"down"))
        s.connectionLost(Failure(ConnectionError()))
        self.assertEqual(self.channel.sessions, ())

    def test_full_buffer_jams(self) -> None:
        """A full write buffer jams the session: the serial reader waits until it drains."""
        s = ChannelSession(self.gate, self.channel)
        transport = connect(s)
        transport.producer.pauseProducing()
        self.assertEqual(self.device.transport.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(self.device.transport.producerState, "producing")

    def test_close_sessions_aborts(self) -> None:
        """The channel closing its sessions (mode change) aborts the connection through IChannelSession.abort."""
        s = ChannelSession(self.gate, self.channel)
        transport = connect(s)
        self.channel.close_sessions()
        self.assertTrue(transport.aborted)
