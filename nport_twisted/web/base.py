# -*- test-case-name: tests.test_web -*-
"""
What every resource of the web console shares: request and cookie helpers,
sessions from a request, the cross-site test for the classic URLs, and the
few actions both the pages and the API answer (import, export, monitor
texts, the accessible-IP self-lockout check).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from nport_twisted._exceptions import ConfigError
from nport_twisted.config.store import dumps, import_config
from nport_twisted.config.settings import DeviceConfig
from nport_twisted.web import forms
from nport_twisted.web.auth import Session
from nport_twisted.web.console import WebConsole
from nport_twisted.web.forms import FieldErrors, check_not_locked_out, monitor_display

__all__ = ["check_not_locked_out", "monitor_display"]  # re-exported: they live in forms

_log = Logger()

COOKIE = b"nport_session"
MAX_IMPORT = 256 * 1024
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

STORED = "Settings stored. Use Save/Restart to put them in force."


# -- request helpers ----------------------------------------------------------------------------


def form_of(request: Any) -> dict[str, str]:
    """The first value of every argument (query and form body), as text."""
    out: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        if values:
            out[key.decode("utf-8", "replace")] = values[0].decode("utf-8", "replace")
    return out


def query_of(request: Any) -> dict[str, str]:
    """Only the query-string arguments."""
    from urllib.parse import parse_qsl

    query = request.uri.split(b"?", 1)[1] if b"?" in request.uri else b""
    out: dict[str, str] = {}
    for k, v in parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True):
        out.setdefault(k, v)
    return out


def client_host(request: Any) -> str:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", ""))


def redirect(request: Any, location: str) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"location", location.encode())
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    return b""


def later(request: Any, d: Deferred[bytes]) -> int:
    """Finish C{request} with the bytes C{d} gives (nothing is written if the client left)."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def done(body: bytes) -> None:
        if not gone:
            request.write(body)
            request.finish()

    def failed(f: Failure) -> None:
        _log.failure("web console: request failed", f)
        if not gone:
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(b"internal error; see the service log\n")
            request.finish()

    d.addCallbacks(done, failed)
    return NOT_DONE_YET


def _bearer(request: Any) -> str | None:
    auth = request.getHeader("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return str(auth[7:].strip())
    return None


def session_of(console: WebConsole, request: Any) -> Session | None:
    """The session of a request: a bearer token if one is sent, else the cookie."""
    token = _bearer(request)
    if token is not None:
        return console.sessions.get(token, bearer=True)
    cookie = request.getCookie(COOKIE)
    return console.sessions.get(cookie.decode("ascii", "replace") if cookie else None)


def set_session_cookie(request: Any, session: Session) -> None:
    request.addCookie(
        COOKIE,
        session.sid.encode(),
        path=b"/",
        httpOnly=True,
        sameSite="strict",
        secure=bool(request.isSecure()),
    )


def clear_session_cookie(request: Any) -> None:
    request.addCookie(
        COOKIE,
        b"",
        path=b"/",
        httpOnly=True,
        sameSite="strict",
        secure=bool(request.isSecure()),
        max_age=b"0",
        expires=b"Thu, 01 Jan 1970 00:00:00 GMT",
    )


def cross_site(request: Any) -> bool:
    """
    Whether a browser marked C{request} as coming from another site
    (Sec-Fetch-Site, Origin, Referer); scripts send none of these.
    """
    fetch_site = (request.getHeader("sec-fetch-site") or "").lower()
    if fetch_site in ("cross-site", "same-site"):
        return True
    host = (request.getHeader("host") or "").lower()
    for header in ("origin", "referer"):
        value = request.getHeader(header)
        if value:
            if value == "null":
                return True
            if urlsplit(value).netloc.lower() != host:
                return True
    return False


def wait_text(seconds: float) -> str:
    return f"too many failed attempts from your address; try again in {int(seconds) + 1} s"


# -- base classes -------------------------------------------------------------------------------


class ConsoleResource(Resource):
    isLeaf = True

    def __init__(self, console: WebConsole) -> None:
        super().__init__()
        self.console = console


def import_settings(console: WebConsole, raw: bytes, network: bool, field: str) -> DeviceConfig:
    """The pending configuration with the settings file C{raw} applied; FieldErrors on C{field}."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FieldErrors({field: "the file is not UTF-8 text"}) from None
    try:
        new = import_config(text, console.pending, network=network, where="imported file")
    except ConfigError as e:
        # Every problem at once, one per line (the page lists them).
        raise FieldErrors({field: "\n".join(e.problems)}) from None
    new = new.with_port_count(len(console.server.ports), console.server.default_mode)
    forms.check_modes(new, console.implemented, field)
    return new


def export_response(console: WebConsole, request: Any, network: bool) -> bytes:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", console.identity().server_name) or "nport"
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-disposition", f'attachment; filename="{name}.ini"'.encode())
    return dumps(console.running, secrets=False, network=network).encode("utf-8")
