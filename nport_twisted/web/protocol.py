# -*- test-case-name: tests.test_web.HttpFaceTests -*-
"""
The HTTP layer of the web console: the request and channel classes that
make it answer like an NPort's MoxaHttp server and never with Twisted's
stock pages.

  - The status line is always C{HTTP/1.1}, whatever version the client
    spoke (MOXA's firmware does so, and scanners such as nmap match
    C{^HTTP/1\\.1 200 … Server: MoxaHttp/…}).  An HTTP/1.0 request still
    gets HTTP/1.0 framing: no chunked body, and C{Connection: close}.
  - Errors get the console's own page (JSON under C{/api/}): unknown
    paths, methods a page does not take, failures while rendering
    (logged, no traceback in the reply) and requests the channel refuses
    before they reach a resource: an over-long request line is answered
    C{414}, over-long or too many header lines C{431}, a malformed request
    C{400} — each as a complete response, then the connection is closed.
  - Status codes Twisted has no reason phrase for (429, 431) get theirs.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import tags

from nport_twisted.web import html

SERVER_NAME = b"MoxaHttp/2.2"

#: Reason phrases Twisted lacks or words otherwise (RFC 9110, RFC 6585).
REASONS: dict[int, bytes] = {
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}

CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

#: Headers every answer carries (the pages add cache rules and cookies).
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"server", SERVER_NAME),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CSP),
)

_TEXTS: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "The request could not be understood."),
    403: ("Forbidden", "This request is not allowed."),
    404: ("Not Found", "There is no such page on this console."),
    405: ("Method Not Allowed", "This page does not take that request method."),
    408: ("Request Timeout", "The request did not arrive in time."),
    411: ("Length Required", "Send the request body with a Content-Length."),
    413: ("Content Too Large", "The request body is too large."),
    414: ("URI Too Long", "The requested address is too long."),
    431: ("Request Header Fields Too Large", "The request headers are too large."),
    500: ("Internal Error", "The request failed; the service log has the details."),
    501: ("Not Implemented", "This console does not know that request method."),
}

#: Methods HTTP defines: a page that does not take one answers 405, anything else 501.
HTTP_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE", b"CONNECT")
)

_log = Logger()


def reason(code: int) -> bytes:
    return REASONS.get(code) or http.RESPONSES.get(code) or b"Error"


def error_body(code: int, path: bytes = b"", message: str = "") -> tuple[bytes, bytes]:
    """(content type, body) of the console's error answer: JSON under C{/api/}, else a page."""
    title, text = _TEXTS.get(code, (reason(code).decode("latin-1"), ""))
    message = message or text
    if path.startswith(b"/api/"):
        error = title.lower().replace(" ", "_")
        body = json.dumps({"error": error, "message": message}, indent=1).encode() + b"\n"
        return b"application/json; charset=utf-8", body
    page = html.bare_page(
        title, tags.p(message), tags.p(tags.a(href="/")("Go to the console"))
    )
    return b"text/html; charset=utf-8", page


def error_page(request: Any, code: int, message: str = "") -> bytes:
    """Set C{request}'s code and content type; the body of the console's error answer."""
    request.setResponseCode(code)
    ctype, body = error_body(code, getattr(request, "path", b"") or b"", message)
    request.setHeader(b"content-type", ctype)
    request.setHeader(b"cache-control", b"no-store")
    return body


class _Fixed(Resource):
    """A body already rendered, handed back to Twisted's render for framing."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render(self, request: Any) -> bytes:
        return self.body


class ErrorResource(Resource):
    """Answers every request with the console's error page C{code}."""

    isLeaf = True

    def __init__(self, code: int = 404, message: str = "") -> None:
        super().__init__()
        self.code = code
        self.message = message

    def render(self, request: Any) -> bytes:
        return error_page(request, self.code, self.message)

    def getChild(self, path: bytes, request: Any) -> Resource:
        return self


class ConsoleRequest(server.Request):
    """A request whose errors are the console's pages, with every reason phrase."""

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        super().setResponseCode(code, message if message is not None else reason(code))

    def render(self, resrc: Any) -> None:
        try:
            body = resrc.render(self)
        except UnsupportedMethod as e:
            allowed: list[bytes] = list(e.allowedMethods)
            if self.method == b"HEAD" and b"GET" in allowed:
                # Twisted answers HEAD from GET; the resource raised before doing anything.
                server.Request.render(self, resrc)
                return
            if self.method in HTTP_METHODS:
                self.setHeader(b"allow", b", ".join(allowed))
                body = error_page(self, 405)
            else:
                body = error_page(self, 501)
        if body is NOT_DONE_YET:
            return
        if not isinstance(body, bytes):
            _log.error("web console: {resource!r} rendered {kind}, not bytes",
                       resource=resrc, kind=type(body).__name__)
            body = error_page(self, 500)
        server.Request.render(self, _Fixed(body))

    def processingFailed(self, reason: Failure) -> None:
        _log.failure(
            "web console: {method} {path} failed",
            reason,
            method=(self.method or b"").decode("latin-1"),
            path=(self.path or b"")[:200].decode("latin-1"),
        )
        if self.startedWriting:
            # Too late for an error page: end the response where it is.
            if not self.finished:
                self.finish()
            return
        body = error_page(self, 500)
        self.setHeader(b"content-length", b"%d" % len(body))
        self.write(body)
        self.finish()


class ConsoleChannel(http.HTTPChannel):
    """
    The console's HTTP connection: HTTP/1.1 status lines, and complete
    error answers for requests refused before they reach a resource.

    Limits (ours): request line L{max_request_line} bytes, headers
    L{max_header_bytes} in total and L{max_header_lines} lines.
    """

    max_request_line = 8192
    max_header_bytes = 16384
    max_header_lines = 100
    # Twisted's own limits stay above ours, so ours answer first (414/431, not a bare 400).
    MAX_LENGTH = max_request_line + max_header_bytes
    totalHeadersSize = 2 * (max_request_line + max_header_bytes)
    maxHeaders = 2 * max_header_lines

    _in_headers = False
    _header_bytes = 0
    _header_lines = 0
    _refused = False

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if not self._in_headers:
            if line:  # a request line (an empty line between requests is skipped by Twisted)
                if len(line) > self.max_request_line:
                    self._refuse(414)
                    return
                self._in_headers = True
                self._header_bytes = 0
                self._header_lines = 0
        elif not line:
            self._in_headers = False  # end of the headers
        else:
            self._header_bytes += len(line) + 2
            self._header_lines += 1
            if (
                self._header_bytes > self.max_header_bytes
                or self._header_lines > self.max_header_lines
            ):
                self._refuse(431)
                return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(431 if self._in_headers else 414)

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._refuse(400)

    def _refuse(self, code: int) -> None:
        """A complete error answer (no request object exists yet), then close."""
        if self._refused:
            return
        self._refused = True
        ctype, body = error_body(code)
        head = [b"HTTP/1.1 %d %s\r\n" % (code, reason(code))]
        headers = [
            *SECURITY_HEADERS,
            (b"content-type", ctype),
            (b"content-length", b"%d" % len(body)),
            (b"cache-control", b"no-store"),
            (b"connection", b"close"),
        ]
        head += [http_header(name) + b": " + value + b"\r\n" for name, value in headers]
        if self.transport is not None:
            self.transport.write(b"".join(head) + b"\r\n" + body)
        self.loseConnection()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        # MOXA's server (and what scanners expect of it) always says HTTP/1.1.  A 1.0
        # request is never kept alive by Twisted: say so in 1.1 terms.
        if version != b"HTTP/1.1" and not headers.hasHeader(b"connection"):
            headers.setRawHeaders(b"connection", [b"close"])
        super().writeHeaders(b"HTTP/1.1", code, reason, headers)


def http_header(name: bytes) -> bytes:
    """C{content-type} -> C{Content-Type} (as Twisted writes header names)."""
    return b"-".join(part.capitalize() for part in name.split(b"-"))


__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "SERVER_NAME",
    "ConsoleChannel",
    "ConsoleRequest",
    "ErrorResource",
    "error_body",
    "error_page",
]
