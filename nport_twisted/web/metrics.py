# -*- test-case-name: tests.test_metrics -*-
"""
C{/metrics} on the web port: Prometheus metrics (docs/monitoring.md,
"Prometheus").

Who may read them:

  - anyone the accessible IP list lets in, only when C{[monitoring]
    metrics_public = yes};
  - otherwise C{Authorization: Bearer <metrics_token>}, a JSON API bearer
    token, or a logged-in console session (cookie).  A wrong token is a
    failed login: rate limited per address with the console's limiter and
    published as an authentication failure (service C{metrics}).

The answer is prometheus_client's own WSGI exposition app (text format,
OpenMetrics when asked, gzip, C{name[]} filters) run by twisted.web's
WSGIResource, which is what C{prometheus_client.twisted.MetricsResource}
is, here built on the injected reactor instead of the global one.  The
counters are read on the reactor thread (L{take_sample}); only the
encoding runs in the reactor's thread pool, so a scrape never stalls the
serial ports.  prometheus_client is imported on the first allowed scrape.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.server import Request

from nport_twisted.web.auth import same_token
from nport_twisted.web.base import ConsoleResource, _bearer, client_host, session_of, wait_text

__all__ = ["MetricsResource"]

_log = Logger()


class MetricsResource(ConsoleResource):
    """C{/metrics}: the scrape, behind the rules above."""

    def render_GET(self, request: Request) -> bytes | int:
        refusal = self._refusal(request)
        if refusal is not None:
            code, text = refusal
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            if code == 401:
                request.setHeader(b"www-authenticate", b'Bearer realm="nport-metrics"')
            return text.encode() + b"\n"
        from twisted.web.wsgi import WSGIResource

        from nport_twisted.services.metrics import registry_for, take_sample

        from prometheus_client.exposition import make_wsgi_app

        reactor = self.console.server.reactor
        app = make_wsgi_app(registry_for(take_sample(self.console.server)))
        result: bytes | int = WSGIResource(reactor, reactor.getThreadPool(), app).render(request)
        return result

    def _refusal(self, request: Request) -> tuple[int, str] | None:
        """None when C{request} may read the metrics, else (status, why)."""
        monitoring = self.console.running.monitoring
        if monitoring.metrics_public:
            return None
        token = _bearer(request)
        if token is None:
            if session_of(self.console, request) is not None:
                return None
            return 401, ("log in to the console, or send Authorization: Bearer <token> "
                         "([monitoring] metrics_token or a JSON API token)")
        peer = client_host(request)
        wait = self.console.login_wait(peer)
        if wait > 0:
            request.setHeader(b"retry-after", str(int(wait) + 1).encode())
            return 429, wait_text(wait)
        if same_token(token, monitoring.metrics_token) or session_of(
                self.console, request) is not None:
            return None
        self.console.login_failed(peer, "metrics", "wrong metrics token")
        _log.warn("metrics: wrong bearer token from {peer}", peer=peer)
        return 401, "wrong token"

    def render_HEAD(self, request: Request) -> bytes | int:
        return self.render_GET(request)
