# -*- test-case-name: tests.test_web -*-
"""
The twisted.web resource tree of the web console: the site, the root with
the rules every request passes, and where the HTML pages
(L{nport_twisted.web.pages}), the classic C{Set.htm}/C{09Set.htm}
handlers (L{nport_twisted.web.classic}) and the JSON API under C{/api/v1}
(L{nport_twisted.web.api}) hang.

They stay thin: parsing and validation live in L{nport_twisted.web.forms},
state and actions in L{nport_twisted.web.console}, HTML in
L{nport_twisted.web.html}.  Security rules applied here (docs/web-console.md):

  - every request: the accessible IP list, security headers (CSP without
    inline code, no framing, no caching of pages), C{Server: MoxaHttp/2.2};
    errors are the console's own pages and the status line is always
    HTTP/1.1 (L{nport_twisted.web.protocol});
  - no password yet: only the set-password page (it needs the setup token
    from the log);
  - pages and the API need a session: the C{nport_session} cookie
    (HttpOnly, SameSite=Strict, Secure under HTTPS) or C{Authorization:
    Bearer <token>} from C{POST /api/v1/session};
  - state changes: HTML forms carry the session's CSRF token; cookie
    requests to the API send it as C{X-CSRF-Token}; bearer requests need
    none (browsers never add that header by themselves); classic
    C{Set.htm} takes it as C{token_text} when given, and otherwise refuses
    requests that a browser marks as cross-site;
  - login and setup attempts are rate limited per client address.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from nport_twisted.net.loglimit import LogLimiter
from nport_twisted.web.api import ApiV1
from nport_twisted.web.base import (
    STATIC_DIR,
    client_host,
)
from nport_twisted.web.classic import ClassicSaveRestart, ClassicSet
from nport_twisted.web.console import WebConsole
from nport_twisted.web.metrics import MetricsResource
from nport_twisted.web.pages import (
    AccessiblePage,
    BasicPage,
    ConfigPage,
    ExportResource,
    FactoryPage,
    LoginPage,
    LogoutPage,
    MainPage,
    MonitorPage,
    MonitoringPage,
    NetworkPage,
    OperatingPage,
    OverviewPage,
    PasswordPage,
    RootPage,
    SaveRestartPage,
    SerialPage,
    SetupPage,
    WarningPage,
)

from nport_twisted.web.limits import ConnectionLimits, LimitedConsoleChannel, LimitedConsoleRequest
from nport_twisted.web.protocol import (
    SECURITY_HEADERS,
    ErrorResource,
)


_TYPES = {
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
}


class StaticFile(Resource):
    """One small file of the console, read once and served from memory."""

    isLeaf = True

    def __init__(self, data: bytes, content_type: bytes) -> None:
        super().__init__()
        self.data = data
        self.content_type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"max-age=3600")
        return self.data


class StaticFiles(Resource):
    """The console's CSS and script (public: the login page needs them)."""

    def __init__(self, directory: str = STATIC_DIR) -> None:
        super().__init__()
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            kind = _TYPES.get(os.path.splitext(name)[1])
            if os.path.isfile(path) and kind is not None:
                with open(path, "rb") as f:
                    self.putChild(name.encode(), StaticFile(f.read(), kind))

    def getChild(self, path: bytes, request: Any) -> IResource:
        return ErrorResource(404)


class Root(Resource):
    """C{/}: headers and access rules for every request, then the pages."""

    def __init__(self, console: WebConsole) -> None:
        super().__init__()
        self.console = console
        setup, login, overview = SetupPage(console), LoginPage(console), OverviewPage(console)
        pages: dict[bytes, Resource] = {
            b"": RootPage(console, setup, login, overview),
            b"login": login,
            b"logout": LogoutPage(console),
            b"setup": setup,
            b"overview": overview,
            b"basic": BasicPage(console),
            b"network": NetworkPage(console),
            b"serial": SerialPage(console),
            b"operating": OperatingPage(console),
            b"accessible": AccessiblePage(console),
            b"warning": WarningPage(console),
            b"monitor": MonitorPage(console),
            b"monitoring": MonitoringPage(console),
            b"metrics": MetricsResource(console),  # Prometheus (docs/monitoring.md)
            b"password": PasswordPage(console),
            b"factory": FactoryPage(console),
            b"saverestart": SaveRestartPage(console),
            b"config": ConfigPage(console),
            b"export": ExportResource(console),
            b"Set.htm": ClassicSet(console),
            b"09Set.htm": ClassicSaveRestart(console),
            b"static": StaticFiles(),
        }
        for name, child in pages.items():
            self.putChild(name, child)
        api = _Directory()
        api.putChild(b"v1", ApiV1(console))
        self.putChild(b"api", api)
        self.putChild(b"main.htm", MainPage(console))  # where classic bookmarks point

    def getChild(self, path: bytes, request: Any) -> IResource:
        return ErrorResource(404)

    def getChildWithDefault(self, path: bytes, request: Any) -> IResource:
        for name, value in SECURITY_HEADERS:
            request.setHeader(name, value)
        if path != b"static":
            request.setHeader(b"cache-control", b"no-store")
        host = client_host(request)
        if host and not self.console.running.accessible_ip.allows(host):
            return ErrorResource(403)
        if not self.console.running.basic.web_console:
            return ErrorResource(
                403,
                "The web console is disabled (Basic Settings: web_console = no "
                "in the settings file).",
            )
        child: IResource = super().getChildWithDefault(path, request)
        return child


class _Directory(Resource):
    """A path segment with children only; anything else is the console's 404."""

    def getChild(self, path: bytes, request: Any) -> IResource:
        return ErrorResource(404)

    def render(self, request: Any) -> bytes:
        return ErrorResource(404).render(request)


class ConsoleSite(Site):
    """
    The HTTP(S) site: drops connections from hosts outside the accessible IP
    list and over the connection limits (web.limits), and closes open ones
    whose host a changed accessible IP list no longer allows.
    """

    displayTracebacks = False
    noisy = False
    # No HTTP/2: a plain HTTP/1.1 channel, with deadlines and body limits.
    protocol = LimitedConsoleChannel  # type: ignore[assignment]
    _log = Logger()

    def __init__(self, console: WebConsole, reactor: Any = None,
                 limits: ConnectionLimits | None = None) -> None:
        super().__init__(Root(console), requestFactory=LimitedConsoleRequest, reactor=reactor)
        self.console = console
        self.limits = limits if limits is not None else ConnectionLimits()
        self.channels: set[Any] = set()
        self.logs = LogLimiter(self.reactor)
        net = getattr(console.server, "net", None)
        gates = getattr(net, "gates", None)
        if gates is not None:
            gates.add(self)  # so NPortService.enforce_accessible reaches the web clients

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", None)
        if host is not None and not self.console.running.accessible_ip.allows(host):
            return None
        host = str(host or "")
        why = self.limits.refusal(host, sum(1 for c in self.channels if _host(c) == host),
                                  len(self.channels))
        if why is not None:
            self.logs.emit(self._log.warn, "web-refused", host,
                           "web console: refusing a connection from {peer}: {why}",
                           peer=host, why=why)
            return None
        return super().buildProtocol(addr)

    def channel_opened(self, channel: Any) -> None:
        self.channels.add(channel)

    def channel_closed(self, channel: Any) -> None:
        self.channels.discard(channel)

    def enforce_accessible(self) -> int:
        """Close the web connections of hosts the accessible IP list no longer allows."""
        acl = self.console.running.accessible_ip
        closed = 0
        for channel in list(self.channels):
            host = _host(channel)
            if host and not acl.allows(host):
                self._log.warn("web console: closing the connection from {peer}: no longer in "
                               "the accessible IP list", peer=host)
                if channel.transport is not None:
                    channel.transport.abortConnection()
                self.channels.discard(channel)
                closed += 1
        return closed

    def log(self, request: Any) -> None:
        """No access log: the monitor polls every second; logins are logged by the pages."""


def _host(channel: Any) -> str:
    try:
        return str(channel.transport.getPeer().host)
    except AttributeError:
        return ""
