"""
Tests for the Prometheus metrics (L{nport_twisted.services.metrics},
L{nport_twisted.web.metrics}): what a scrape reports, parsed with
prometheus_client's own text parser; who may scrape, over real HTTP on
127.0.0.1; and that an idle box never imports prometheus_client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from nport_twisted.config.settings import MonitoringSettings
from nport_twisted.events import AuthFailure
from nport_twisted.services.metrics import registry_for, take_sample
from tests.monitor_util import make_server, stop_server


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Samples by name, then by sorted labels, as prometheus_client's parser reads C{text}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def port(n: int, **more: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"port": str(n), **more}.items()))


class CollectorTests(SynchronousTestCase):
    def test_counters_lines_and_process(self) -> None:
        """A scrape reports the live counters, modem lines, presence and the process."""
        from prometheus_client import generate_latest

        clock = MemoryReactorClock()
        server, devices = make_server(self, clock)
        server.startService()
        self.addCleanup(stop_server, server, devices)
        devices["/dev/fake0"].receive(b"q" * 4321)
        before = parse(generate_latest(registry_for(take_sample(server))).decode())
        self.assertEqual(before["nport_port_rx_bytes_total"][port(1)], 4321)
        self.assertEqual(before["nport_port_rx_bytes_total"][port(2)], 0)
        self.assertEqual(before["nport_port_device_present"][port(1)], 1)
        self.assertEqual(before["nport_port_modem_line"][port(1, line="dsr")], 1)
        self.assertEqual(before["nport_port_modem_line"][port(1, line="cts")], 0)
        self.assertNotIn(port(2, line="dsr"), before["nport_port_modem_line"])
        self.assertEqual(before["nport_port_has_modem_lines"][port(2)], 0)
        self.assertEqual(before["nport_port_errors_total"][port(1, kind="parity")], 0)
        self.assertEqual(before["nport_port_refused_connections_total"][
            port(1, reason="limit")], 0)
        self.assertEqual(before["nport_port_device_opens_total"][port(1)], 1)
        self.assertEqual(before["nport_port_info"][port(1, device="/dev/fake0", mode="tcp-server",
                                                        alias="")], 1)
        self.assertIn("process_resident_memory_bytes", before)
        self.assertIn("python_info", before)
        clock.advance(30)
        devices["/dev/fake0"].receive(b"r" * 100)
        after = parse(generate_latest(registry_for(take_sample(server))).decode())
        self.assertEqual(after["nport_port_rx_bytes_total"][port(1)], 4421)
        self.assertEqual(after["nport_uptime_seconds"][()], 30)

    def test_documented(self) -> None:
        """Every metric a scrape reports is named in docs/monitoring.md."""
        from prometheus_client import generate_latest

        server, devices = make_server(self, Clock())
        text = generate_latest(registry_for(take_sample(server))).decode()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "docs", "monitoring.md"), encoding="utf-8") as f:
            doc = f.read()
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(text):
            if family.name.startswith("nport"):
                self.assertTrue(f"`{family.name}" in doc, f"{family.name} is not in docs/monitoring.md")

    def test_dashboard_uses_documented_metrics(self) -> None:
        """docs/grafana-dashboard.json is JSON and queries only metrics a scrape reports."""
        import json
        import re

        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families

        server, devices = make_server(self, Clock())
        text = generate_latest(registry_for(take_sample(server))).decode()
        families = list(text_string_to_metric_families(text))
        names = {f.name for f in families} | {s.name for f in families for s in f.samples}
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "docs", "grafana-dashboard.json"), encoding="utf-8") as f:
            dashboard = json.load(f)
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        used = {m for e in exprs for m in re.findall(r"\b((?:nport|process)_[a-z_]+)\b", e)}
        self.assertGreater(len(used), 8)
        self.assertEqual(used - names, set())


class ScrapeTests(TestCase):
    """C{/metrics} over real HTTP on 127.0.0.1, with the console's rules."""

    def setUp(self) -> None:
        from nport_twisted.web import WebConsole
        from nport_twisted.web.resources import ConsoleSite

        self.server, self.devices = make_server(self, reactor, monitoring=MonitoringSettings(
            metrics_token="scrape-me-0123456789"))
        self.server.startService()
        self.addCleanup(stop_server, self.server, self.devices)
        self.console = WebConsole(self.server)
        self.port = reactor.listenTCP(0, ConsoleSite(self.console, reactor=reactor),
                                      interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/metrics".encode()
        self.failures: list[Any] = []
        self.addCleanup(self.server.events.subscribe(
            lambda when, e: self.failures.append(e) if isinstance(e, AuthFailure) else None))

    @inlineCallbacks
    def get(self, headers: dict[bytes, list[bytes]] | None = None) -> Any:
        from twisted.web.client import HTTPConnectionPool

        pool = HTTPConnectionPool(reactor, persistent=False)
        response = yield Agent(reactor, pool=pool).request(b"GET", self.url, Headers(headers or {}))
        body = yield readBody(response)
        return response, body.decode()

    @inlineCallbacks
    def test_token_session_and_refusals(self) -> Any:
        """Bearer metrics token or a console session; nothing else; a wrong token is counted."""
        response, body = yield self.get()
        self.assertEqual(response.code, 401)
        self.assertEqual(response.headers.getRawHeaders(b"www-authenticate"),
                         [b'Bearer realm="nport-metrics"'])
        self.assertNotIn("nport_port", body)

        self.devices["/dev/fake0"].receive(b"z" * 77)
        response, body = yield self.get({b"authorization": [b"Bearer scrape-me-0123456789"]})
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain"))
        self.assertEqual(parse(body)["nport_port_rx_bytes_total"][port(1)], 77)

        response, body = yield self.get({b"authorization": [b"Bearer guessed"]})
        self.assertEqual(response.code, 401)
        self.assertEqual([(f.service, f.reason) for f in self.failures],
                         [("metrics", "wrong metrics token")])

        session = self.console.sessions.create("127.0.0.1")
        response, body = yield self.get({b"cookie": [b"nport_session=" + session.sid.encode()]})
        self.assertEqual(response.code, 200)
        self.assertIn("nport_port_tx_bytes_total", parse(body))

    @inlineCallbacks
    def test_public_only_when_enabled(self) -> Any:
        """metrics_public = yes: no login needed (the accessible IP list still applies)."""
        response, _ = yield self.get()
        self.assertEqual(response.code, 401)
        self.server.config = attrs.evolve(self.server.config, monitoring=attrs.evolve(
            self.server.config.monitoring, metrics_public=True))
        response, body = yield self.get()
        self.assertEqual(response.code, 200)
        self.assertEqual(parse(body)["nport_port_connections"][port(1)], 0)

    @inlineCallbacks
    def test_guessing_is_rate_limited(self) -> Any:
        """Repeated wrong tokens get 429 from the console's login limiter."""
        codes = []
        for _ in range(12):
            response, _ = yield self.get({b"authorization": [b"Bearer nope"]})
            codes.append(response.code)
        self.assertIn(429, codes)
        self.assertLess(len(self.failures), 12)


class LazyImportTests(SynchronousTestCase):
    def test_idle_box_does_not_import_prometheus_client(self) -> None:
        """A box with its web console up but never scraped has not loaded prometheus_client."""
        code = (
            "import sys\n"
            "from twisted.internet.task import Clock\n"
            "from tests.monitor_util import make_server\n"
            "from nport_twisted.web import WebConsole\n"
            "from nport_twisted.web.resources import ConsoleSite\n"
            "server, _ = make_server(None, Clock())\n"
            "ConsoleSite(WebConsole(server))\n"
            "print('prometheus_client' in sys.modules)\n")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.stdout.split()[-1:], ["False"], out.stderr)
