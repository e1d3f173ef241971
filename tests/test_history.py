"""
Tests for the Monitor's history (L{nport_twisted.services.history}): byte
rate buckets on the injected clock, bounded; the event timeline, bounded
and expiring; C{GET /api/v1/history}; the Monitor page's graph frames.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.settings import PasswordSettings
from nport_twisted.events import ConnectionOpened, LinkChanged, ModemLineChanged
from nport_twisted.services.history import History
from tests.monitor_util import make_server, stop_server


class HistoryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.server, self.devices = make_server(self, self.clock)
        self.server.startService()
        self.addCleanup(stop_server, self.server, self.devices)
        self.history = History(self.server, bucket=10, buckets=90, max_events=50)
        self.history.startService()
        self.addCleanup(self.history.stopService)

    def test_rates_per_bucket(self) -> None:
        """Each 10 s bucket holds the bytes of its 10 s; the filling one is reported last."""
        self.devices["/dev/fake0"].receive(b"x" * 1000)  # in the first bucket (0-10 s)
        self.clock.advance(10)
        self.devices["/dev/fake0"].receive(b"x" * 500)
        self.clock.advance(4)
        port = self.history.port_json(0)
        self.assertEqual([(s["rx"], s["tx"]) for s in port["samples"]], [(1000, 0), (500, 0)])
        self.assertEqual(port["samples"][-1]["partial"], True)
        self.assertEqual(port["samples"][-1]["rx_bps"], 125.0)
        self.clock.advance(6)
        port = self.history.port_json(0)
        self.assertEqual(port["samples"][1], {"t": 10.0, "s": 10.0, "tx_bps": 0.0,
                                              "rx_bps": 50.0, "tx": 0, "rx": 500})

    def test_bounded_to_the_window(self) -> None:
        """After an hour, 90 buckets (15 minutes) per port remain, plus the filling one."""
        for _ in range(360):
            self.devices["/dev/fake1"].receive(b"y" * 10)
            self.clock.advance(10)
        self.devices["/dev/fake1"].receive(b"y" * 7)
        self.clock.advance(5)
        samples = self.history.to_json()["ports"][1]["samples"]
        self.assertEqual(len(samples), 91)
        self.assertEqual(samples[0]["t"], 3600 - 900)
        self.assertEqual({s["rx"] for s in samples[:-1]}, {10})
        self.assertEqual((samples[-1]["rx"], samples[-1]["partial"]), (7, True))

    def test_counter_reset(self) -> None:
        """A counter that went down (a new channel) counts from its new value, never negative."""
        self.devices["/dev/fake0"].receive(b"x" * 1000)
        self.clock.advance(10)
        self.server.ports[0].channel.stats.serial_rx_bytes = 30
        self.clock.advance(10)
        self.assertEqual([s["rx"] for s in self.history.port_json(0)["samples"]], [1000, 30])

    def test_timeline_bounded_and_expiring(self) -> None:
        """Line and connection events are kept (others not), at most 50, none older than 15 min."""
        events = self.server.events
        events.publish(ModemLineChanged(1, "dcd", False))
        events.publish(LinkChanged("eth0", False))  # not a port's event
        events.publish(ConnectionOpened(1, "10.0.0.5", 50000, 4001, "tcp-server"))
        port = self.history.port_json(0)
        self.assertEqual([(e["kind"], e["on"]) for e in port["events"]],
                         [("dcd", False), ("connect", True)])
        self.assertEqual(port["events"][0]["text"], "port 1: DCD off")
        for n in range(200):
            events.publish(ModemLineChanged(2, "dsr", n % 2 == 0))
        self.assertEqual(len(self.history.events), 50)
        self.clock.advance(901)
        self.assertEqual(self.history.to_json()["ports"][1]["events"], [])

    def test_stops(self) -> None:
        """Stopped: no timer left, no more events taken."""
        self.history.stopService()
        self.assertFalse([c for c in self.clock.getDelayedCalls()
                          if "History" in repr(c) or "tick" in repr(c)])
        self.server.events.publish(ModemLineChanged(1, "dcd", True))
        self.assertEqual(len(self.history.events), 0)


class ApiAndPageTests(SynchronousTestCase):
    """C{/api/v1/history} and the Monitor page over the console's site."""

    def setUp(self) -> None:
        from nport_twisted.web import WebConsole
        from nport_twisted.web.console import run_now
        from nport_twisted.web.resources import ConsoleSite
        from tests.test_web import Client

        self.clock = MemoryReactorClock()
        self.server, self.devices = make_server(
            self, self.clock, password=PasswordSettings.from_password("history test 1"))
        self.server.startService()
        self.addCleanup(stop_server, self.server, self.devices)
        self.console = WebConsole(self.server, run_blocking=run_now)
        self.console.history = History(self.server)
        self.console.history.startService()
        self.addCleanup(self.console.history.stopService)
        self.client = Client(ConsoleSite(self.console, reactor=self.clock))

    def token(self) -> str:
        response = self.client.post("/api/v1/session", json_body={"password": "history test 1"})
        self.assertEqual(response.code, 200)
        return str(response.json()["token"])

    def test_api(self) -> None:
        """GET /api/v1/history: login needed, then every port's samples and events."""
        self.assertEqual(self.client.get("/api/v1/history").code, 401)
        auth = {"Authorization": f"Bearer {self.token()}"}
        self.devices["/dev/fake0"].receive(b"z" * 200)
        self.clock.advance(10)
        response = self.client.get("/api/v1/history", headers=auth)
        self.assertEqual(response.code, 200)
        body: dict[str, Any] = json.loads(response.body)
        self.assertEqual((body["bucket_s"], body["window_s"]), (10.0, 900.0))
        self.assertEqual([p["port"] for p in body["ports"]], [1, 2])
        self.assertEqual(body["ports"][0]["samples"][0]["rx"], 200)
        self.assertEqual(self.client.request("POST", "/api/v1/history", headers=auth).code, 405)

    def test_monitor_page_frames(self) -> None:
        """The Monitor page has one graph frame per port, and nothing inline for the CSP."""
        response = self.client.post("/login", form={"password": "history test 1"})
        self.assertEqual(response.code, 303)
        page = self.client.get("/monitor")
        self.assertEqual(page.code, 200)
        self.assertIn('id="graphs"', page.text)
        self.assertIn('<figure class="graph" data-port="2">', page.text)
        self.assertIn("last 15 minutes", page.text)
        self.assertNotIn("<script>", page.text)
        self.assertNotIn("style=", page.text)
        self.assertIn("script-src 'self'", page.header("content-security-policy") or "")

    def test_monitoring_settings_page(self) -> None:
        """Monitoring Settings (menu entry) edits [monitoring]; the token is write-only."""
        from tests.test_web import csrf_of

        self.assertEqual(self.client.post("/login", form={"password": "history test 1"}).code, 303)
        page = self.client.get("/monitoring")
        self.assertEqual(page.code, 200)
        self.assertIn('href="/monitoring"', page.text)
        self.assertIn('name="syslog_server"', page.text)
        response = self.client.post("/monitoring", form={
            "csrf_token": csrf_of(page), "syslog_server": "logs.plant.example", "syslog_port": "514",
            "syslog_facility": "3", "syslog_connections": "on", "metrics_public": "on",
            "metrics_token": "s3cret-token-123"})
        self.assertEqual(response.code, 303, response.text)
        pending = self.console.pending.monitoring
        self.assertEqual((pending.syslog_server, pending.metrics_public, pending.metrics_token),
                         ("logs.plant.example", True, "s3cret-token-123"))
        self.assertNotIn("s3cret-token-123", self.client.get("/monitoring").text)
