# -*- test-case-name: tests.test_events -*-
"""
Tests for L{nport_twisted.events}: the publisher, the event texts, and the
events the serial channel publishes (modem lines, device present).
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.settings import SerialSettings
from nport_twisted.device.lines import ModemLines
from nport_twisted.device.channel import SerialChannel
from nport_twisted.events import (
    EVENT_TYPES,
    AuthFailure,
    ColdStart,
    ConnectionClosed,
    ConnectionOpened,
    DeviceStateChanged,
    Event,
    EventPublisher,
    IPChanged,
    LinkChanged,
    ModemLineChanged,
    PasswordChanged,
    WarmStart,
    summary,
)
from nport_twisted.testing import FakeSerialDevice


class PublisherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(100)
        self.events = EventPublisher(self.clock)
        self.got: list[tuple[float, Event]] = []

    def test_delivers_with_the_clock_time(self) -> None:
        """Every subscriber gets the event with the publisher's clock time."""
        other: list[tuple[float, Event]] = []
        self.events.subscribe(lambda when, e: self.got.append((when, e)))
        self.events.subscribe(lambda when, e: other.append((when, e)))
        self.events.publish(ColdStart())
        self.assertEqual(self.got, [(100.0, ColdStart())])
        self.assertEqual(other, self.got)
        self.assertEqual(self.events.published, 1)

    def test_unsubscribe(self) -> None:
        """After unsubscribing, a subscriber gets nothing more."""
        stop = self.events.subscribe(lambda when, e: self.got.append((when, e)))
        stop()
        stop()  # twice is harmless
        self.events.publish(WarmStart())
        self.assertEqual(self.got, [])
        self.assertEqual(self.events.subscribers, 0)

    def test_failing_subscriber_is_logged_and_others_still_get_it(self) -> None:
        """A subscriber that raises does not reach the publisher or the others."""
        def broken(when: float, event: Event) -> None:
            raise RuntimeError("bug")
        self.events.subscribe(broken)
        self.events.subscribe(lambda when, e: self.got.append((when, e)))
        self.events.publish(ColdStart())
        self.assertEqual(len(self.got), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_reentrant_publish_is_delivered_in_order(self) -> None:
        """An event published by a subscriber arrives after the current one, for everyone."""
        second: list[Event] = []

        def chain(when: float, event: Event) -> None:
            if isinstance(event, ColdStart):
                self.events.publish(WarmStart("chained"))
        self.events.subscribe(chain)
        self.events.subscribe(lambda when, e: second.append(e))
        self.events.publish(ColdStart())
        self.assertEqual(second, [ColdStart(), WarmStart("chained")])

    def test_runaway_subscriber_loop_is_bounded(self) -> None:
        """A subscriber that publishes for every event cannot grow the queue without bound."""
        events = EventPublisher(self.clock, max_pending=10)
        events.subscribe(lambda when, e: events.publish(ColdStart()))
        for _ in range(3):
            events.subscribe(lambda when, e: events.publish(ColdStart()))
        events.publish(ColdStart())
        self.assertEqual(events.published, 10)
        self.assertGreater(events.dropped, 0)
        events.publish(WarmStart())  # the next outside call gets its own budget
        self.assertEqual(events.published, 20)

    def test_kinds(self) -> None:
        """Every event type has a distinct kind name."""
        self.assertEqual(len(EVENT_TYPES), 10)
        self.assertIs(EVENT_TYPES["auth_failure"], AuthFailure)


class SummaryTests(SynchronousTestCase):
    def test_texts(self) -> None:
        """Each event has a one-line text naming what happened and where."""
        cases: list[tuple[Event, str]] = [
            (ColdStart(), "cold start"),
            (WarmStart("service restarted"), "warm start (service restarted)"),
            (AuthFailure("web", "10.0.0.9", reason="wrong password"),
             "authentication failure on web from 10.0.0.9: wrong password"),
            (AuthFailure("snmp", "10.0.0.9", user="bob"),
             "authentication failure on snmp from 10.0.0.9 user 'bob'"),
            (PasswordChanged("telnet", "10.0.0.1"), "password changed on telnet from 10.0.0.1"),
            (IPChanged("eth0", ("10.0.0.2/24",), ()),
             "IP address of eth0 changed from 10.0.0.2/24 to none"),
            (LinkChanged("eth0", False), "link down on eth0"),
            (ModemLineChanged(2, "dcd", True), "port 2: DCD on"),
            (DeviceStateChanged(1, "/dev/ttyUSB0", False), "port 1: device /dev/ttyUSB0 gone"),
            (ConnectionOpened(1, "10.0.0.5", 50000, 4001, "tcp-server"),
             "port 1: connection from 10.0.0.5:50000 to local port 4001 (tcp-server)"),
            (ConnectionClosed(None, "10.0.0.5", 50000, 23),
             "device: connection from 10.0.0.5:50000 to local port 23 closed"),
        ]
        for event, text in cases:
            self.assertEqual(summary(event), text)


class ChannelEventTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.device = FakeSerialDevice(lines=ModemLines())
        self.events = EventPublisher(self.clock)
        self.got: list[Event] = []
        self.events.subscribe(lambda when, e: self.got.append(e))
        self.channel = SerialChannel(1, "/dev/fake0", SerialSettings(), self.clock,
                                     self.device.opener, events=self.events)
        self.channel.startService()

    def tearDown(self) -> None:
        self.channel.stopService()
        self.device.close_complete()

    def test_device_present_and_gone(self) -> None:
        """Opening and losing the device publish its state, with the 1-based port number."""
        self.device.vanish()
        self.assertEqual(self.got, [DeviceStateChanged(2, "/dev/fake0", True),
                                    DeviceStateChanged(2, "/dev/fake0", False)])

    def test_modem_line_changes(self) -> None:
        """Each input line that changes between two polls is one event."""
        self.got.clear()
        self.device.lines = ModemLines(dcd=True, dsr=True)
        self.clock.advance(0.1)
        self.device.lines = ModemLines(dsr=True)
        self.clock.advance(0.1)
        self.clock.advance(0.1)  # no change: nothing
        self.assertEqual(self.got, [ModemLineChanged(2, "dcd", True),
                                    ModemLineChanged(2, "dsr", True),
                                    ModemLineChanged(2, "dcd", False)])

    def test_default_publisher(self) -> None:
        """A channel built without a publisher has its own, so nothing needs a None check."""
        channel = SerialChannel(0, "/dev/x", SerialSettings(), self.clock, self.device.opener)
        self.assertIsInstance(channel.events, EventPublisher)


class LoggingTests(SynchronousTestCase):
    def test_failure_log_names_the_event(self) -> None:
        """The log line of a failing subscriber names the event."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        events = EventPublisher(Clock())

        def broken(when: float, event: Event) -> None:
            raise ValueError("x")
        events.subscribe(broken)
        events.publish(LinkChanged("eth0", False))
        self.flushLoggedErrors(ValueError)
        self.assertEqual(len(observer), 1)
        self.assertEqual(observer[0]["event"], LinkChanged("eth0", False))
