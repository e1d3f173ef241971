# -*- test-case-name: tests.test_fuzz_faces -*-
"""
Property and fault tests of the faces tests/test_fuzz.py does not cover
(issue 10 item 11): the web console's forms and JSON API (hypothesis over
bodies, paths, methods and fields, with and without a session), UDP mode
fed malformed and hostile datagrams, and TCP Client mode against
destinations that refuse, time out, never read, reset and come back.

The checks are plain functions registered with their strategies in
L{PROPERTIES} (the L{tests.test_fuzz.Property} record), so stress/run.py
runs exactly these, only longer (C{fuzz-web}, C{fuzz-udp},
C{fuzz-tcpclient}).  "No exception escapes" is checked on the log, as in
tests/test_fuzz.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import (
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    NoRouteError,
    TimeoutError,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.test_fuzz import Property, no_logged_errors

PROPERTIES: list[Property] = []


def prop(codec: str, *strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(check: Callable[..., None]) -> Callable[..., None]:
        PROPERTIES.append(Property(codec, check.__name__, st.tuples(*strategies), check))
        return check
    return register


class _Cleanups:
    """Stands in for a test case's addCleanup where the harnesses want one (properties run bare)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def addCleanup(self, f: Callable[..., Any], *args: Any) -> None:
        self.calls.append((f, args))

    def run(self) -> None:
        while self.calls:
            f, args = self.calls.pop()
            f(*args)


# --- web console and JSON API ---------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                      max_size=4),
    max_leaves=12)

_FIELD_NAMES = ["server_name", "server_location", "alias", "baudrate", "bytesize", "stopbits", "parity",
                "flow_control", "fifo", "interface", "mode", "max_connection", "tcp_alive_check_min",
                "inactivity_ms", "local_tcp_port", "command_port", "data_port", "destinations",
                "udp_destinations", "entries", "ip", "netmask", "active", "password", "new_password",
                "old_password", "setup_token", "keep_network", "web_console", "telnet_console",
                "command_requires_data", "delimiter1", "delimiter2", "mail_to", "snmp_community"]

_HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "box\udfff", " lead", "trail ", "\x00", "\x85", "\u2028", "\u0661",
                     "\uff11", "1e9", "-1", "0x10", "99999999999999999999", "[" * 40, "{}", "null",
                     "<script>alert(1)</script>", "../../etc/passwd", "%00", "\r\nSet-Cookie: x=1"]))

_API_PATHS = st.one_of(
    st.sampled_from(["/api/v1/session", "/api/v1/setup", "/api/v1/device", "/api/v1/status",
                     "/api/v1/settings", "/api/v1/settings/basic", "/api/v1/settings/network",
                     "/api/v1/settings/accessible_ip", "/api/v1/settings/auto_warning",
                     "/api/v1/settings/ports/1/serial", "/api/v1/settings/ports/2/operating",
                     "/api/v1/settings/ports/%D9%A1/serial", "/api/v1/ports/1/status",
                     "/api/v1/ports/%EF%BC%91/status", "/api/v1/ports/0/status", "/api/v1/pending",
                     "/api/v1/save", "/api/v1/export", "/api/v1/import", "/api/v1/password",
                     "/api/v1/factory-default", "/api/v1/", "/api/v1/nothing"]),
    st.text(alphabet="/abcdefgiklmnoprstuvy0123456789%._-", min_size=1, max_size=40).map(
        lambda p: "/api/v1/" + p))

_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "BREW"])


def _json_body(value: Any) -> bytes:
    try:
        return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):
        return b"null"


_BODIES = st.one_of(
    _JSON.map(_json_body),
    st.dictionaries(st.sampled_from(_FIELD_NAMES), st.one_of(_HOSTILE_TEXT, st.integers(-70000, 70000),
                                                            st.booleans(), st.none()),
                    max_size=6).map(_json_body),
    st.binary(max_size=200),
    st.sampled_from([b"[" * 5000, b"{" * 200 + b"}" * 200, b'{"password": "\\ud800"}',
                     b'{"server_name": "\\ud800"}', b"\xff\xfe", b""]))

_SECTION_FIELDS = {
    "basic": ["server_name", "server_location", "time_zone", "time_server", "web_console"],
    "network": ["snmp_community", "snmp_contact", "snmp_location", "auto_report_host", "ip"],
    "auto_warning": ["mail_server", "mail_user", "mail_from", "mail_to", "trap_server"],
    "ports/1/serial": ["alias", "baudrate", "parity", "stopbits"],
    "ports/2/operating": ["mode", "destinations", "local_tcp_port", "max_connection",
                          "command_requires_data"],
}


@st.composite
def _settings_write(draw: st.DrawFn) -> tuple[str, str, bytes, bool, str]:
    """A write a logged-in client may try: real fields of a real section, hostile values."""
    section = draw(st.sampled_from(sorted(_SECTION_FIELDS)))
    fields = draw(st.lists(st.sampled_from(_SECTION_FIELDS[section]), min_size=1, max_size=3,
                           unique=True))
    value = st.one_of(_HOSTILE_TEXT, st.integers(-70000, 70000), st.booleans(),
                      st.lists(_HOSTILE_TEXT, max_size=3))
    body = {name: draw(value) for name in fields}
    method = draw(st.sampled_from(["PATCH", "PUT"]))
    return method, f"/api/v1/settings/{section}", _json_body(body), True, "application/json"


_REQUESTS = st.lists(st.one_of(
    _settings_write(),
    st.tuples(_METHODS, _API_PATHS, _BODIES, st.booleans(),
              st.sampled_from(["application/json", "text/plain", ""]))),
    min_size=1, max_size=8)


def _web_harness() -> tuple[Any, _Cleanups]:
    """A logged-out client of a two-port service with its console (tests.test_web's harness)."""
    from tests.test_web import WebTestCase

    cleanups = _Cleanups()
    case = WebTestCase()
    case.addCleanup = cleanups.addCleanup  # type: ignore[method-assign]
    case.mktemp = lambda: __import__("tempfile").mktemp(prefix="nport-fuzz-web-")  # type: ignore[method-assign]
    case.setUp()
    return case, cleanups


_OK_CODES = {200, 204, 303, 400, 401, 403, 404, 405, 409, 411, 413, 415, 429, 501}


def _still_consistent(case: Any) -> None:
    """Whatever the console took can be saved, exported and shown (nothing unencodable got in)."""
    from nport_twisted.config.store import dumps, loads
    for config in (case.console.running, case.console.pending):
        text = dumps(config)
        text.encode("utf-8")
        assert loads(text).basic == config.basic
    for page in ("/overview", "/serial?port=1", "/operating?port=2", "/basic", "/accessible"):
        response = case.client.get(page)
        assert response.code in (200, 303), (page, response.code)


@prop("web", _REQUESTS)
def check_web_api(requests: list[tuple[str, str, bytes, bool, str]]) -> None:
    """
    Any sequence of JSON API requests (any method, path, body, content type,
    with a bearer token or not): no 500 and nothing logged as an error, every
    answer under /api/ is JSON with an error code or a result, and the console
    stays consistent (its settings save, export and render).
    """
    case, cleanups = _web_harness()
    try:
        with no_logged_errors():
            token = case.api_token()
            for method, path, body, bearer, ctype in requests:
                headers = {"Authorization": f"Bearer {token}"} if bearer else {}
                if ctype:
                    headers["Content-Type"] = ctype
                response = case.client.request(method, path, body=body, headers=headers)
                assert response.code in _OK_CODES, (method, path, body[:60], response.code, response.body[:200])
                if method != "HEAD" and response.body and response.code != 303:
                    decoded = json.loads(response.body) if "json" in (response.header("content-type") or "") \
                        else None
                    if response.code >= 400:
                        assert decoded is not None and "error" in decoded, (path, response.body[:200])
                if path.endswith("/password") and response.code == 200:
                    token = case.api_token_for(body) if hasattr(case, "api_token_for") else token
            _still_consistent(case)
    finally:
        cleanups.run()


_FORM_PAGES = st.sampled_from(["/basic", "/network", "/serial?port=1", "/serial?port=2", "/operating?port=1",
                               "/operating?port=2", "/accessible", "/warning", "/Set.htm", "/password",
                               "/login", "/setup", "/saverestart", "/config"])
_FORMS = st.dictionaries(
    st.one_of(st.sampled_from(_FIELD_NAMES + ["csrf_token", "setfunc", "port", "confirm", "apply_all",
                                              "acl.1.ip", "acl.1.netmask", "acl.1.active", "udp.1.begin",
                                              "udp.1.end", "udp.1.port", "destinations.1", "mail_to.1"]),
              st.text(max_size=10)),
    st.one_of(_HOSTILE_TEXT, st.integers(-70000, 70000).map(str)), max_size=10)


@prop("web", st.lists(st.tuples(_FORM_PAGES, _FORMS, st.booleans()), min_size=1, max_size=6))
def check_web_forms(posts: list[tuple[str, dict[str, str], bool]]) -> None:
    """
    Any form posted to any console page (hostile text, out-of-range numbers,
    unknown fields, with the right CSRF token or without): no 500, nothing
    logged as an error, the console stays consistent.
    """
    from tests.test_web import csrf_of

    case, cleanups = _web_harness()
    try:
        with no_logged_errors():
            csrf = case.login()
            for page, form, with_csrf in posts:
                if with_csrf:
                    form = dict(form, csrf_token=csrf)
                # Raw bytes as a hostile client sends them (a lone surrogate becomes invalid UTF-8).
                body = urlencode(form, encoding="utf-8", errors="surrogatepass").encode("ascii")
                response = case.client.post(page, body=body, headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
                assert response.code in _OK_CODES, (page, form, response.code, response.body[:300])
                if page == "/password" and response.code == 200 and "Password changed" in response.text:
                    return  # the session rules changed under us: enough for this example
                if response.code == 200 and 'name="csrf_token"' in response.text:
                    csrf = csrf_of(response)
            _still_consistent(case)
    finally:
        cleanups.run()


# --- UDP mode -------------------------------------------------------------------------------

_UDP_SOURCES = st.sampled_from(["10.0.0.1", "10.0.0.2", "192.168.9.9", "127.0.0.1", "::ffff:10.0.0.1",
                                "::1", "fe80::1%eth0", "0.0.0.0", "255.255.255.255", "224.0.0.1", "",
                                "not-an-address", "10.0.0.1\x00"])
_UDP_OPS = st.lists(st.one_of(
    st.tuples(st.just("datagram"), st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 1500,
                                                                                    b"\xff" * 9000])),
              _UDP_SOURCES, st.integers(0, 65535)),
    st.tuples(st.just("serial"), st.binary(min_size=1, max_size=3000)),
    st.tuples(st.just("refuse"), st.sampled_from(["10.0.0.7", "10.0.0.8"]),
              st.sampled_from(["EAGAIN", "ENOBUFS", "EHOSTUNREACH", "EMSGSIZE", "INVAL"])),
    st.tuples(st.just("accept"), st.sampled_from(["10.0.0.7", "10.0.0.8"])),
    st.tuples(st.just("vanish")), st.tuples(st.just("return")),
    st.tuples(st.just("pause")), st.tuples(st.just("resume")),
    st.tuples(st.just("acl"), st.booleans())), max_size=40)


@prop("udp", _UDP_OPS, st.booleans())
def check_udp_mode(ops: list[tuple[Any, ...]], acl_on: bool) -> None:
    """
    UDP mode fed any datagrams (empty, oversized, from refused, odd or
    malformed sources), serial data, send errors of every kind, the device
    vanishing and returning: nothing logged as an error, the device gets
    exactly the payloads of allowed datagrams that arrived while it was
    there, in order; every datagram sent goes to a configured destination
    and is at most MAX_DATAGRAM bytes; serial bytes are sent, dropped or
    counted, never lost silently.
    """
    import errno

    from twisted.internet.error import InvalidAddressError, MessageLengthError

    from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings
    from nport_twisted.modes.udp import MAX_DATAGRAM
    from tests.test_udpmode import Harness, dest

    errors = {"EAGAIN": OSError(errno.EAGAIN, "again"), "ENOBUFS": OSError(errno.ENOBUFS, "no buffers"),
              "EHOSTUNREACH": OSError(errno.EHOSTUNREACH, "unreachable"),
              "EMSGSIZE": MessageLengthError("too long"), "INVAL": InvalidAddressError("x", "bad")}
    cleanups = _Cleanups()
    try:
        with no_logged_errors():
            h = Harness(cleanups, udp_destinations=(dest("10.0.0.7", "", 4001), dest("10.0.0.8", "", 5000)))
            if acl_on:
                h.acl = AccessibleIPSettings((AccessibleIP("10.0.0.0", "255.255.255.0"),))
            proto, transport = h.protocol()
            expected = bytearray()
            present = True
            serial_sent = 0
            for op in ops:
                kind = op[0]
                if kind == "datagram":
                    _, payload, host, port = op
                    if present and h.acl.allows(host) and payload:
                        expected += payload
                    proto.datagramReceived(payload, (host, port))
                elif kind == "serial" and present:
                    h.device.receive(op[1])
                    serial_sent += len(op[1])
                elif kind == "refuse":
                    transport.refuse[op[1]] = errors[op[2]]
                elif kind == "accept":
                    transport.refuse.pop(op[1], None)
                elif kind == "vanish" and present:
                    h.device.vanish()
                    present = False
                elif kind == "return" and not present:
                    h.device.present = True
                    h.clock.advance(10)
                    present = h.channel.is_open
                    expected = bytearray()
                elif kind == "pause":
                    proto.pause_input()
                elif kind == "resume":
                    proto.resume_input()
                elif kind == "acl":
                    h.acl = (AccessibleIPSettings((AccessibleIP("10.0.0.0", "255.255.255.0"),))
                             if op[1] else AccessibleIPSettings())
            if present:
                assert h.device.written == bytes(expected), (h.device.written[:80], bytes(expected)[:80])
            assert all(len(d) <= MAX_DATAGRAM for d, _ in transport.sent)
            assert {addr for _, addr in transport.sent} <= {("10.0.0.7", 4001), ("10.0.0.8", 5000)}
            stats = proto.stats
            sent_bytes = sum(len(d) for d, _ in transport.sent)
            assert sent_bytes + 0 <= 2 * serial_sent
            assert stats.datagrams_sent == len(transport.sent)
    finally:
        cleanups.run()


# --- TCP Client mode ------------------------------------------------------------------------

_DESTS = ("10.0.0.1:4001", "10.0.0.2:4002")
_FAILURES = {"refused": ConnectionRefusedError, "timeout": TimeoutError, "unreachable": NoRouteError}
_LOSSES = {"done": ConnectionDone, "lost": ConnectionLost}
_TCP_OPS = st.lists(st.one_of(
    st.tuples(st.just("serial"), st.one_of(
        st.sampled_from([70_000, 100_000, 5_000, 1]).map(lambda n: b"\x5a" * n),
        st.binary(min_size=1, max_size=2000))),
    st.tuples(st.just("fail"), st.sampled_from(_DESTS), st.sampled_from(sorted(_FAILURES))),
    st.tuples(st.just("accept"), st.sampled_from(_DESTS)),
    st.tuples(st.just("peer"), st.integers(0, 5), st.binary(min_size=1, max_size=200)),
    st.tuples(st.just("lose"), st.integers(0, 5), st.sampled_from(sorted(_LOSSES))),
    st.tuples(st.just("jam"), st.integers(0, 5)), st.tuples(st.just("unjam"), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.floats(0, 40)),
    st.tuples(st.just("vanish")), st.tuples(st.just("return"))), max_size=40)


def _pending_attempt(h: Any, dest: str, resolved: set[int]) -> int | None:
    """The index of C{dest}'s connection attempt still waiting for an answer, if any."""
    attempts = [i for i, a in enumerate(h.attempts()) if a == dest]
    return attempts[-1] if attempts and attempts[-1] not in resolved else None


@prop("tcpclient", _TCP_OPS, st.booleans())
def check_tcp_client(ops: list[tuple[Any, ...]], ignore_jammed: bool) -> None:
    """
    TCP Client mode against destinations that refuse, time out, are
    unreachable, accept and then never read (jam), reset or close, send
    garbage, while serial data flows and the device comes and goes:
    nothing logged as an error, the offline buffer never exceeds
    BUFFER_SIZE, every byte a destination sends reaches a present device in
    order, and a destination that failed is tried again within the backoff
    maximum (no destination is given up).
    """
    from nport_twisted.modes.tcpclient import BACKOFF_MAX, BUFFER_SIZE
    from tests.test_tcpclient import Harness

    cleanups = _Cleanups()
    try:
        with no_logged_errors():
            h = Harness(cleanups, destinations=_DESTS, ignore_jammed=ignore_jammed)
            expected = bytearray()
            present = True
            resolved: set[int] = set()
            for op in ops:
                kind = op[0]
                live = [c for c in h.conns if not c.lost]
                if kind == "serial" and present:
                    h.device.receive(op[1])
                elif kind in ("fail", "accept"):
                    i = _pending_attempt(h, op[1], resolved)
                    if i is None:
                        continue
                    resolved.add(i)
                    if kind == "fail":
                        h.reactor.tcpClients[i][2].clientConnectionFailed(
                            h.reactor.connectors[i], Failure(_FAILURES[op[2]]()))
                    else:
                        h.accept(op[1])
                elif kind == "peer" and live:
                    conn = live[op[1] % len(live)]
                    conn.send(op[2])
                    if present:
                        expected += op[2]
                elif kind == "lose" and live:
                    live[op[1] % len(live)].lose(_LOSSES[op[2]]())
                elif kind == "jam" and live:
                    conn = live[op[1] % len(live)]
                    if conn.transport.producer is not None:
                        conn.transport.producer.pauseProducing()
                elif kind == "unjam" and live:
                    conn = live[op[1] % len(live)]
                    if conn.transport.producer is not None:
                        conn.transport.producer.resumeProducing()
                elif kind == "advance":
                    h.reactor.advance(op[1])
                elif kind == "vanish" and present:
                    h.device.vanish()
                    present = False
                elif kind == "return" and not present:
                    h.device.present = True
                    h.reactor.advance(10)
                    present = h.channel.is_open
                    expected = bytearray()
                assert h.controller.buffered <= BUFFER_SIZE
            if present:
                assert h.device.written == bytes(expected), (len(h.device.written), len(expected))
            # Nobody is given up: a destination whose attempt is over and that has no live
            # connection is tried again within the backoff maximum.
            for dest in _DESTS:
                host = dest.split(":")[0]
                if _pending_attempt(h, dest, resolved) is not None or any(
                        c.transport.getPeer().host == host for c in h.conns if not c.lost):
                    continue
                before = h.count(dest)
                h.reactor.advance(BACKOFF_MAX + 1)
                assert h.count(dest) > before, f"{dest} was given up"
    finally:
        cleanups.run()


# --- the fast versions ------------------------------------------------------------------------


def _property_test(p: Property) -> Callable[[SynchronousTestCase], None]:
    from hypothesis import settings

    @settings(max_examples=25)
    @given(p.strategy)
    def test(self: SynchronousTestCase, drawn: tuple[Any, ...]) -> None:
        p.check(*drawn)

    test.__doc__ = (p.check.__doc__ or p.name).strip().split("\n\n")[0]
    return test


class FacePropertyTests(SynchronousTestCase):
    """Each property of this module as a short smoke run (stress/run.py runs them long)."""

    locals().update({f"test_{p.codec}_{p.name.removeprefix('check_')}": _property_test(p) for p in PROPERTIES})

    def test_registry(self) -> None:
        """Every face named in issue 10 item 11 has properties for the stress runner."""
        self.assertEqual({p.codec for p in PROPERTIES}, {"web", "udp", "tcpclient"})
