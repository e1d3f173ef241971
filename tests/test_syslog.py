# -*- test-case-name: tests.test_syslog -*-
"""
Tests for syslog: the RFC 5424 formatter (L{nport_twisted.wire.syslog}) and
the service sending the device's events over UDP and TCP to receivers on
127.0.0.1 (L{nport_twisted.services.syslog}).
"""

from __future__ import annotations

import re
import socket
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.config.settings import MonitoringSettings
from nport_twisted.events import AuthFailure, ColdStart, ConnectionOpened, ModemLineChanged
from nport_twisted.services.syslog import SyslogService
from nport_twisted.wire.syslog import Severity, SyslogMessage, for_tcp, for_udp, format_message
from tests.e2e_util import poll_until
from tests.monitor_util import make_server, stop_server

WHEN = 1_796_220_000.25  # 2026-12-02T14:00:00.250Z
HEADER = re.compile(rb"^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*\])(?: (.*))?$", re.S)


class FormatTests(SynchronousTestCase):
    def test_header(self) -> None:
        """PRI, version, UTC timestamp with milliseconds, the header fields, SD and the text."""
        data = format_message(SyslogMessage(
            WHEN, Severity.WARNING, "auth failure", facility=3, hostname="NP5232_1",
            procid="42", msgid="auth_failure", structured=(("origin", (("software", "x"),)),)))
        self.assertEqual(data, b'<28>1 2026-12-02T14:00:00.250Z NP5232_1 nport-twisted 42 '
                               b'auth_failure [origin software="x"] auth failure')

    def test_nil_values_and_cleaning(self) -> None:
        """Empty fields are '-', spaces and controls never break the header, SD values escape."""
        data = format_message(SyslogMessage(
            WHEN, 6, "line\nbreak", hostname="my box", structured=(("origin", (("v", 'a"]\\'),)),)))
        self.assertIn(b" my_box nport-twisted - - ", data)
        self.assertIn(b'[origin v="a\\"\\]\\\\"]', data)
        self.assertTrue(data.endswith(b"line break"))

    def test_ranges(self) -> None:
        """Facility 0-23 and severity 0-7 only."""
        with self.assertRaises(ValueError):
            SyslogMessage(WHEN, 8, "x")
        with self.assertRaises(ValueError):
            SyslogMessage(WHEN, 1, "x", facility=24)

    def test_framing(self) -> None:
        """UDP: cut to 2048 bytes at a character boundary; TCP: octet counting."""
        m = SyslogMessage(WHEN, 6, "é" * 3000)
        udp = for_udp(m)
        self.assertLessEqual(len(udp), 2048)
        udp.decode("utf-8")
        tcp = for_tcp(SyslogMessage(WHEN, 6, "hi"))
        length, _, rest = tcp.partition(b" ")
        self.assertEqual(int(length), len(rest))

    @given(st.text(max_size=200), st.text(max_size=80), st.integers(0, 23), st.integers(0, 7))
    def test_always_parses(self, text: str, host: str, facility: int, severity: int) -> None:
        """Any text and host name give a message that matches the RFC 5424 header grammar."""
        data = format_message(SyslogMessage(WHEN, severity, text, facility=facility,
                                            hostname=host, msgid="x"))
        m = HEADER.match(data)
        assert m is not None, data
        self.assertEqual(int(m.group(1)), facility * 8 + severity)


class Collector(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.got.append(data)


class TcpCollector(Protocol):
    def __init__(self, sink: list[bytes]) -> None:
        self.sink = sink

    def dataReceived(self, data: bytes) -> None:
        self.sink.append(data)


class ServiceTests(TestCase):
    """The service over real sockets on 127.0.0.1."""

    def setUp(self) -> None:
        self.server, self.devices = make_server(self, reactor)
        self.addCleanup(stop_server, self.server, self.devices)
        self.syslog = SyslogService(self.server, resolve=lambda name: succeed("127.0.0.1"),
                                    pid=4242)
        self.syslog.startService()
        self.addCleanup(self.syslog.stopService)

    def configure(self, **monitoring: Any) -> None:
        self.server.config = attrs.evolve(self.server.config,
                                          monitoring=MonitoringSettings(**monitoring))

    @inlineCallbacks
    def test_udp(self) -> Any:
        """Events arrive as RFC 5424 datagrams; connections only while syslog_connections is on."""
        collector = Collector()
        port = reactor.listenUDP(0, collector, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.configure(syslog_server="127.0.0.1", syslog_port=port.getHost().port)
        self.server.events.publish(ColdStart("host booted"))
        self.server.events.publish(AuthFailure("web", "10.0.0.4", reason="wrong password"))
        self.server.events.publish(ConnectionOpened(1, "10.0.0.5", 5000, 4001, "tcp-server"))
        yield poll_until(lambda: len(collector.got) == 3, 10, what="three datagrams")
        self.assertRegex(collector.got[0].decode(),
                         r"^<29>1 \S+Z NP5232_\d+ nport-twisted 4242 cold_start \[origin "
                         r'software="nport-twisted" swVersion="[^"]+"\] cold start \(host booted\)')
        self.assertIn(b"<28>1 ", collector.got[1])
        self.assertIn(b"peer=10.0.0.4", collector.got[1])
        self.assertIn(b"connection_opened", collector.got[2])
        self.configure(syslog_server="127.0.0.1", syslog_port=port.getHost().port,
                       syslog_connections=False)
        self.server.events.publish(ConnectionOpened(1, "10.0.0.5", 5001, 4001))
        self.server.events.publish(ModemLineChanged(1, "dcd", True))
        yield poll_until(lambda: len(collector.got) == 4, 10, what="the DCD datagram")
        self.assertIn(b"modem_line_changed", collector.got[3])

    @inlineCallbacks
    def test_tcp_octet_counting(self) -> Any:
        """Over TCP each message is one 'LEN SP MSG' frame."""
        sink: list[bytes] = []
        listener = reactor.listenTCP(0, Factory.forProtocol(lambda: TcpCollector(sink)),
                                     interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        self.configure(syslog_server="127.0.0.1", syslog_port=listener.getHost().port,
                       syslog_tcp=True)
        for n in range(3):
            self.server.events.publish(ModemLineChanged(1, "dsr", bool(n % 2)))
        yield poll_until(lambda: b"".join(sink).count(b"modem_line_changed") == 3, 10,
                         what="three frames")
        data = b"".join(sink)
        frames = []
        while data:
            length, _, rest = data.partition(b" ")
            frames.append(rest[:int(length)])
            data = rest[int(length):]
        self.assertEqual(len(frames), 3)
        self.assertTrue(all(f.startswith(b"<30>1 ") for f in frames))
        self.syslog._drop_tcp()  # close our connection before the listener goes
        yield poll_until(lambda: self.syslog._tcp is None, 5, what="the close")

    @inlineCallbacks
    def test_unreachable_tcp_is_bounded_and_logged_once(self) -> Any:
        """A refused TCP server: messages wait up to max_queue, one log line for the outage."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.syslog.max_queue = 10
        self.configure(syslog_server="127.0.0.1", syslog_port=closed_port, syslog_tcp=True)
        for _ in range(50):
            self.server.events.publish(ModemLineChanged(1, "dcd", True))
        yield poll_until(lambda: self.syslog._retry is not None, 10, what="a refused connect")
        self.assertEqual(len(self.syslog._queue), 10)
        self.assertEqual(self.syslog.dropped, 40)
        self.assertEqual(len([e for e in observer if "cannot send" in e.get("log_format", "")]), 1)
        self.syslog._drop_tcp()

    def test_off_by_default(self) -> None:
        """No syslog server configured: nothing is sent, no socket opened."""
        self.server.events.publish(ColdStart())
        self.assertIsNone(self.syslog._udp)
        self.assertEqual(self.syslog.sent, 0)


class DeferredNeverTests(SynchronousTestCase):
    def test_slow_resolver_does_not_block(self) -> None:
        """A resolver that never answers holds nothing but its own callback."""
        server, _ = make_server(self, reactor)
        pending: Deferred[str] = Deferred()
        svc = SyslogService(server, resolve=lambda name: pending)
        svc.startService()
        server.config = attrs.evolve(server.config, monitoring=MonitoringSettings(
            syslog_server="syslog.invalid"))
        server.events.publish(ColdStart())
        self.assertEqual(svc.sent, 0)
        svc.stopService()
