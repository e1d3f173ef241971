# -*- test-case-name: tests.test_web_hardening -*-
"""
What one HTTP client may cost the box (issue 10 items 2 and 3): the web
console's connection caps, request deadlines and body limits.

  - Connections: at most L{ConnectionLimits.max_connections} at once, at
    most L{ConnectionLimits.max_per_host} from one address, and none while
    the process is within L{ConnectionLimits.fd_reserve} descriptors of its
    limit, so idle web clients can never take the descriptors the serial
    ports' listeners need (1,000 idle connections once used up a 1,024-fd
    limit).  Refused connections are closed at once (logged, rate limited).
  - Deadlines: a request's line and headers must be complete within
    L{LimitedConsoleChannel.header_timeout} seconds of the connection (or
    of the previous answer: an idle keep-alive connection ends then too),
    its body within L{LimitedConsoleChannel.body_timeout}; late clients get
    408 (a slow-header or slow-body client cannot hold a connection by
    trickling bytes, which reset Twisted's own idle timer).
  - Bodies: refused before a byte of them is read (Twisted would spool any
    size to a temporary file first): a chunked body is 411 (our clients
    send a length), a length over L{max_body_anonymous} without a session
    or over L{max_body} with one is 413.
  - Answers never read (the bounded-reply rule of net/session.py): Twisted
    stops reading a client whose socket buffer is full, but still answers
    every pipelined request it had already read (one 64 KiB read held
    1,800 GETs: 16 MB of pages queued in 2 s, 34 MB in 8 s).  A request
    that completes while more than L{LimitedConsoleChannel.max_unsent}
    bytes of answers wait for the client drops it (logged, rate limited),
    and an idle connection whose answers are still not taken at its
    deadline is aborted, not closed (a close would wait for the client to
    read them, forever).
"""

from __future__ import annotations

import os
import resource
from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from nport_twisted._txinternals import unsent_bytes
from nport_twisted.web.protocol import ConsoleChannel, ConsoleRequest

#: Body bytes a request may carry: the largest is a settings import
#: (web.base.MAX_IMPORT, 256 KiB) in a multipart form.
MAX_BODY = 320 * 1024
#: Without a session only login and setup forms (and their JSON) are
#: possible: small.  Twisted spools bodies of 100,000 bytes and more to a
#: temporary file; ours are held in memory (LimitedConsoleRequest), bounded.
MAX_BODY_ANONYMOUS = 100_000


def open_fds() -> int:
    """Descriptors this process has open now (Linux /proc; 0 when unknown)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def fd_limit() -> int:
    """The process's soft RLIMIT_NOFILE (a large number when unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


@attrs.define
class ConnectionLimits:
    """
    The web console's connection caps (shared by its HTTP and HTTPS
    listeners).  C{fd_reserve} descriptors are left for everything else;
    L{web_services} sets it from the port count (the serial ports' data and
    command connections, listeners, devices).
    """

    max_connections: int = 32
    max_per_host: int = 8
    fd_reserve: int = 64
    count_fds: Callable[[], int] = open_fds
    limit_fds: Callable[[], int] = fd_limit

    def refusal(self, host: str, open_by_host: int, open_total: int) -> str | None:
        """Why a new connection from C{host} is refused, or None."""
        if open_total >= self.max_connections:
            return f"{open_total} web connections open (at most {self.max_connections})"
        if open_by_host >= self.max_per_host:
            return f"{open_by_host} web connections from this address (at most {self.max_per_host})"
        headroom = self.limit_fds() - self.count_fds()
        if headroom < self.fd_reserve:
            return (f"only {headroom} file descriptors left; {self.fd_reserve} are kept for the "
                    "serial ports")
        return None


class LimitedConsoleRequest(ConsoleRequest):
    """A console request whose body is kept in memory: the channel has bounded its size."""

    def gotLength(self, length: int | None) -> None:
        import io

        self.content = io.BytesIO()


class LimitedConsoleChannel(ConsoleChannel):
    """
    The console's HTTP connection with deadlines and body limits (see the
    module docstring).  Answers are the console's own (ConsoleChannel).
    """

    header_timeout = 10.0
    body_timeout = 30.0
    max_body = MAX_BODY
    max_body_anonymous = MAX_BODY_ANONYMOUS
    #: Bytes of answers a client may leave unread before a further request drops it.
    max_unsent = 1 << 20

    _log = Logger()
    _deadline: IDelayedCall | None = None
    _waiting_for = ""  # "request" (line and headers) or "body"

    # -- life cycle -------------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        site = getattr(self, "site", None)
        if site is not None and hasattr(site, "channel_opened"):
            site.channel_opened(self)
        self._arm("request", self.header_timeout)

    def connectionLost(self, reason: Any = None) -> None:
        self._disarm()
        site = getattr(self, "site", None)
        if site is not None and hasattr(site, "channel_closed"):
            site.channel_closed(self)
        super().connectionLost(reason)

    def allHeadersReceived(self) -> None:
        why = self._body_refusal()
        if why is not None:
            code, text = why
            self._log.info("web console: refusing a request body from {peer}: {why}",
                           peer=self._peer(), why=text)
            self._refuse(code)
            return
        if self.length:
            self._arm("body", self.body_timeout)
        else:
            self._disarm()
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self._refused:
            return
        unsent = unsent_bytes(self.transport)
        if unsent > self.max_unsent:
            # Pipelined requests read before Twisted paused the socket: answering
            # them all would queue pages without bound for a client that reads none.
            self._refused = True  # the rest of what it sent is not parsed either
            self._disarm()
            self._emit("web-unsent", "web console: {peer} leaves {n} bytes of answers unread; "
                       "closing", n=unsent)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self._disarm()  # the answer may take a while (scrypt): no deadline on us
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and not self._refused and self.transport is not None:
            self._arm("request", self.header_timeout)

    # -- limits ------------------------------------------------------------------

    def _body_refusal(self) -> tuple[int, str] | None:
        if self.length is None:  # Transfer-Encoding: chunked
            return 411, "a chunked body (send Content-Length)"
        limit = self.max_body if self._has_session() else self.max_body_anonymous
        if self.length > limit:
            return 413, f"{self.length} bytes (at most {limit} here)"
        return None

    def _has_session(self) -> bool:
        """Whether the request whose headers just arrived carries a live session."""
        site = getattr(self, "site", None)
        console = getattr(site, "console", None)
        if console is None or not self.requests:
            return False
        headers = self.requests[-1].requestHeaders
        auth = (headers.getRawHeaders(b"authorization") or [b""])[0]
        if auth[:7].lower() == b"bearer ":
            return console.sessions.get(auth[7:].strip().decode("ascii", "replace"),
                                        bearer=True) is not None
        from nport_twisted.web.base import COOKIE
        for raw in headers.getRawHeaders(b"cookie") or []:
            for part in raw.split(b";"):
                name, _, value = part.strip().partition(b"=")
                if name == COOKIE and console.sessions.get(value.decode("ascii", "replace")):
                    return True
        return False

    # -- deadlines ---------------------------------------------------------------

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        if seconds > 0:
            self._waiting_for = what
            self._deadline = self.callLater(seconds, self._late)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _late(self) -> None:
        self._deadline = None
        if self._refused or self.transport is None:
            return
        started = self._waiting_for == "body" or self._receivedHeaderSize > 0 or bool(
            getattr(self, "_buffer", b""))
        site = getattr(self, "site", None)
        logs = getattr(site, "logs", None)
        if started:
            text = ("its body" if self._waiting_for == "body" else "its request line and headers")
            if logs is not None:
                logs.emit(self._log.info, "web-slow", self._peer(),
                          "web console: {peer} did not send {what} in time; answering 408",
                          peer=self._peer(), what=text)
            self._refuse(408)
        elif unsent_bytes(self.transport) > 0:
            # Idle, but our last answers are still not taken: a close would wait for them.
            self._emit("web-unsent", "web console: {peer} has not read our answers in "
                       "{seconds:g} s; closing", seconds=self.header_timeout)
            self.transport.abortConnection()  # type: ignore[attr-defined]
        else:
            self.loseConnection()  # idle: nothing to answer

    def _emit(self, kind: str, text: str, **fields: Any) -> None:
        logs = getattr(getattr(self, "site", None), "logs", None)
        if logs is not None:
            logs.emit(self._log.info, kind, self._peer(), text, peer=self._peer(), **fields)
        else:
            self._log.info(text, peer=self._peer(), **fields)

    def _peer(self) -> str:
        try:
            return str(self.transport.getPeer().host)  # type: ignore[union-attr]
        except AttributeError:
            return "?"
