# -*- test-case-name: tests.test_web_hardening -*-
"""
Hostile clients of the web console and JSON API (issue 10): concurrent
password guesses, text that cannot be encoded, failure paths that must
tell the truth, non-ASCII digits in paths.  Through twisted.web's real
HTTP stack, as tests/test_web.py does.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from nport_twisted.config.store import SettingsStore
from nport_twisted.web.console import WebConsole
from nport_twisted.web.limits import ConnectionLimits
from nport_twisted.web.resources import ConsoleSite
from tests.test_web import MAC, PASSWORD, WebTestCase, _parse_response

from nport_twisted.config.identity import resolve_identity


class HeldRunner:
    """A run_blocking that keeps every job until the test releases it (scrypt in flight)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, Deferred[Any]]] = []
        self.started = 0

    def __call__(self, f: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.jobs.append((f, d))
        self.started += 1
        return d

    def release_all(self) -> None:
        while self.jobs:
            f, d = self.jobs.pop(0)
            d.callback(f())


def open_request(site: ConsoleSite, raw: bytes, host: str = "127.0.0.1") -> StringTransport:
    """Send C{raw} (a whole HTTP request) on a new connection; the answer may come later."""
    addr = IPv4Address("TCP", host, 40000)
    protocol = site.buildProtocol(addr)
    transport = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 10080))
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    transport.protocol = protocol  # type: ignore[attr-defined]
    return transport


def json_post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: nport.test\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def form_post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: nport.test\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class ConcurrentLoginTests(WebTestCase):
    """Item 4: attempts in flight count; the scrypt queue is bounded."""

    def setUp(self) -> None:
        super().setUp()
        self.runner = HeldRunner()
        self.console = WebConsole(self.server, run_blocking=self.runner,
                                  identity=lambda c, n: resolve_identity(c, n, mac=lambda: (MAC, "test")))
        # Many connections from one address on purpose: the connection caps are tested below.
        self.site = ConsoleSite(self.console, reactor=self.reactor,
                                limits=ConnectionLimits(max_connections=1000, max_per_host=1000))

    def test_hundred_simultaneous_wrong_passwords(self) -> None:
        """100 wrong API logins at once from one address: 5 are checked, 95 get 429 at once."""
        transports = [open_request(self.site, json_post("/api/v1/session", b'{"password": "guess"}'))
                      for _ in range(100)]
        refused = [t for t in transports if t.value()]
        self.assertEqual(len(refused), 95)
        self.assertEqual({_parse_response(t.value()).code for t in refused}, {429})
        self.assertLessEqual(self.runner.started, 2)  # two scrypt at a time …
        self.assertEqual(self.console.hashing.pending, 5)  # … five accepted in all
        self.runner.release_all()
        codes = [_parse_response(t.value()).code for t in transports if t not in refused]
        self.assertEqual(codes, [401] * 5)
        self.assertGreater(self.console.limiter.wait_time("127.0.0.1"), 0)
        self.assertEqual(self.console.limiter.in_flight("127.0.0.1"), 0)

    def test_login_page_counts_in_flight_attempts(self) -> None:
        """The HTML login form follows the same rule as the API."""
        transports = [open_request(self.site, form_post("/login", b"password=guess")) for _ in range(20)]
        self.assertEqual(sum(1 for t in transports if t.value()), 15)
        self.runner.release_all()
        self.assertEqual(self.console.limiter.in_flight("127.0.0.1"), 0)

    def test_hash_queue_bounded_across_addresses(self) -> None:
        """From many addresses at once, at most max_pending hashes wait; the others get 429."""
        transports = [open_request(self.site, json_post("/api/v1/session", b'{"password": "guess"}'),
                                   host=f"127.0.1.{i}") for i in range(1, 41)]
        waiting = [t for t in transports if not t.value()]
        self.assertEqual(len(waiting), self.console.hashing.max_pending)
        self.assertEqual({_parse_response(t.value()).code for t in transports if t.value()}, {429})
        self.runner.release_all()
        self.assertEqual(self.console.hashing.pending, 0)
        self.assertEqual({_parse_response(t.value()).code for t in waiting}, {401})

    def test_right_password_still_works_after_flood(self) -> None:
        """Once the checks are over and the delay passed, the right password logs in."""
        for _ in range(10):
            open_request(self.site, json_post("/api/v1/session", b'{"password": "guess"}'))
        self.runner.release_all()
        self.reactor.advance(self.console.limiter.wait_time("127.0.0.1") + 0.1)
        t = open_request(self.site, json_post("/api/v1/session", f'{{"password": "{PASSWORD}"}}'.encode()))
        self.runner.release_all()
        self.assertEqual(_parse_response(t.value()).code, 200)


class UnencodableTextTests(WebTestCase):
    """Item 7 through the console: refused with a field error, never a later 500."""

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token()}"}

    def test_api_refuses_lone_surrogate(self) -> None:
        """PUT server_name "\\ud800" is a 400 naming the field; export and save keep working."""
        h = self.auth()
        response = self.client.request("PATCH", "/api/v1/settings/basic", headers=h,
                                       json_body={"server_name": "box\ud800"})
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json()["errors"][0]["field"], "server_name")
        self.assertEqual(self.client.request("PATCH", "/api/v1/settings/ports/1/serial", headers=h,
                                             json_body={"alias": "\udfff"}).code, 400)
        self.assertEqual(self.client.get("/api/v1/export", headers=h).code, 200)
        self.assertEqual(self.client.post("/api/v1/save", headers=h).code, 200)

    def test_form_keeps_or_refuses_whitespace(self) -> None:
        """A trailing space typed in a form is refused next to the field, not silently dropped."""
        from nport_twisted.config.settings import BasicSettings
        from nport_twisted.web import forms
        from nport_twisted.web.html import texts_for
        csrf = self.login()
        form = {k: v for k, v in texts_for(forms.BASIC_FIELDS, BasicSettings()).items() if v != ""}
        form.update(csrf_token=csrf, server_name="line-7 ")
        response = self.client.post("/basic", form=form)
        self.assertIn('id="server_name-error"', response.text)
        self.assertEqual(self.console.pending.basic.server_name, "")

    def test_surrogate_password_login_is_401(self) -> None:
        """A JSON password with a lone surrogate is a wrong password (401), not a 500."""
        response = self.client.post("/api/v1/session", json_body={"password": "\ud800guess"})
        self.assertEqual(response.code, 401)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_surrogate_new_password_refused(self) -> None:
        """A new password with a lone surrogate is a 400 field error."""
        response = self.client.post("/api/v1/password", headers=self.auth(),
                                    json_body={"old_password": PASSWORD, "new_password": "long\ud800pass"})
        self.assertEqual(response.code, 400)
        self.assertEqual(self.flushLoggedErrors(), [])


class NonAsciiDigitTests(WebTestCase):
    """Item 8: "/ports/١/" is not port 1."""

    def test_api_port_digits(self) -> None:
        """Arabic-Indic, fullwidth and superscript digits in API paths are 404."""
        h = {"Authorization": f"Bearer {self.api_token()}"}
        for text in ("\u0661", "\uff11", "\u00b9", "\u0967"):
            path = "/api/v1/ports/" + text.encode("utf-8").hex("%").join(("%", "")) + "/status"
            self.assertEqual(self.client.get(path, headers=h).code, 404, repr(text))
            path = ("/api/v1/settings/ports/" + text.encode("utf-8").hex("%").join(("%", ""))
                    + "/serial")
            self.assertEqual(self.client.get(path, headers=h).code, 404, repr(text))
        self.assertEqual(self.client.get("/api/v1/ports/1/status", headers=h).code, 200)

    def test_form_numbers_ascii_only(self) -> None:
        """A form number in Arabic-Indic digits ("٩٦٠٠") is a field error, not 9600."""
        from nport_twisted.config.settings import SerialSettings
        from nport_twisted.web import forms
        e = self.assertRaises(forms.FieldErrors, forms.parse_fields, forms.SERIAL_FIELDS,
                              {"baudrate": "\u0669\u0666\u0660\u0660"}, SerialSettings())
        self.assertIn("baudrate", e.errors)


class PasswordSaveFailureTests(WebTestCase):
    """Item 8: a password change that cannot be saved is not in force and says save_failed."""

    def setUp(self) -> None:
        super().setUp()
        os.mkdir(self.path + ".d")

    def test_api_password_change_on_unwritable_store(self) -> None:
        """API: 507 save_failed (never 500, issue 13); the old password works, the new does not."""
        token = self.api_token()
        self.server.store = SettingsStore(self.path + ".d")  # a directory: every save fails
        response = self.client.post("/api/v1/password", headers={"Authorization": f"Bearer {token}"},
                                    json_body={"old_password": PASSWORD, "new_password": "a new secret"})
        self.assertEqual((response.code, response.json()["error"]), (507, "save_failed"))
        self.assertIn("was not changed", response.json()["message"])
        self.assertTrue(self.server.config.password.verify(PASSWORD))
        self.assertFalse(self.server.config.password.verify("a new secret"))
        self.assertEqual(self.client.get("/api/v1/device",
                                         headers={"Authorization": f"Bearer {token}"}).code, 200)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_page_password_change_on_unwritable_store(self) -> None:
        """Page: the form shows the save error (507), the old password stays in force."""
        csrf = self.login()
        self.server.store = SettingsStore(self.path + ".d")
        response = self.client.post("/password", form={
            "csrf_token": csrf, "old_password": PASSWORD,
            "new_password": "a new secret", "new_password2": "a new secret", "confirm": "on"})
        self.assertEqual(response.code, 507)
        self.assertIn("was not changed", response.text)
        self.assertTrue(self.server.config.password.verify(PASSWORD))
        self.assertEqual(self.flushLoggedErrors(), [])


class FirstPasswordSaveFailureTests(WebTestCase):
    """The first password on an unwritable store: not set, token kept, save_failed."""

    password = None

    def test_setup_api(self) -> None:
        """POST /api/v1/setup on an unwritable store answers save_failed and leaves no password."""
        os.mkdir(self.path + ".d")
        self.server.store = SettingsStore(self.path + ".d")
        token = self.console.setup_token
        response = self.client.post("/api/v1/setup", json_body={"setup_token": token,
                                                                "password": "first secret"})
        self.assertEqual((response.code, response.json()["error"]), (507, "save_failed"))
        self.assertFalse(self.console.password_set)
        self.assertEqual(self.console.setup_token, token)
        self.assertEqual(self.flushLoggedErrors(), [])


def head(method: str, path: str, *lines: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: nport.test\r\n" + "".join(l + "\r\n" for l in lines)
            + "\r\n").encode()


class WebLimitsTests(WebTestCase):
    """Items 2 and 3: connection caps, request deadlines, bodies refused before they are read."""

    def test_slow_headers_get_408(self) -> None:
        """Headers trickled a byte at a time are cut off at header_timeout with 408 (Twisted's timer reset each byte)."""
        t = open_request(self.site, b"GET /login HTTP/1.1\r\nHo")
        for _ in range(9):
            self.reactor.advance(1)
            t.protocol.dataReceived(b"s")  # type: ignore[attr-defined]
        self.assertFalse(t.disconnecting)
        self.reactor.advance(1)
        self.assertTrue(t.disconnecting)
        self.assertEqual(_parse_response(t.value()).code, 408)

    def test_slow_body_gets_408(self) -> None:
        """A body that does not arrive within body_timeout is cut off with 408; nothing is rendered."""
        t = open_request(self.site, head("POST", "/api/v1/session", "Content-Type: application/json",
                                         "Content-Length: 1000") + b'{"pass')
        self.reactor.advance(10)
        self.assertFalse(t.disconnecting)  # the header deadline no longer applies
        self.reactor.advance(20)
        self.assertEqual(_parse_response(t.value()).code, 408)
        self.assertEqual(self.console.limiter.in_flight("127.0.0.1"), 0)

    def test_idle_keepalive_closed(self) -> None:
        """A kept-alive connection that sends no next request is closed after header_timeout, silently."""
        t = open_request(self.site, head("GET", "/login"))
        self.assertEqual(_parse_response(t.value()).code, 200)
        t.clear()
        self.reactor.advance(10)
        self.assertTrue(t.disconnecting)
        self.assertEqual(t.value(), b"")

    def _fake_tcp(self) -> tuple[Any, Any]:
        from nport_twisted.testing import FakeTcpTransport
        protocol = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = FakeTcpTransport("127.0.0.1", 40000, local="127.0.0.1", local_port=10080)
        protocol.makeConnection(transport)
        return protocol, transport

    @staticmethod
    def _unsent(transport: Any, n: int) -> None:
        transport.dataBuffer = b"x" * n  # as a FileDescriptor holds what the kernel did not take
        transport.offset = 0
        transport._tempDataLen = 0

    def test_pipelined_answers_never_read(self) -> None:
        """
        Issue 10 item 1: pipelined requests that complete while more than
        max_unsent bytes of answers wait for the client drop it; nothing
        more is answered.  (Before: Twisted answered every request it had
        read, 16 MB of pages queued in 2 s for a client that read none.)
        """
        protocol, t = self._fake_tcp()
        protocol.dataReceived(head("GET", "/login") * 3)
        self.assertEqual(t.value().count(b"HTTP/1.1 200"), 3)
        self.assertFalse(t.aborted)
        t.clear()
        self._unsent(t, getattr(protocol, "max_unsent", 1 << 20) + 1)
        protocol.dataReceived(head("GET", "/login") * 100)
        self.assertTrue(t.aborted)
        self.assertEqual(t.value(), b"")

    def test_idle_with_answers_unread_aborted(self) -> None:
        """An idle keep-alive connection whose answers are still not taken at its deadline is aborted."""
        protocol, t = self._fake_tcp()
        protocol.dataReceived(head("GET", "/login"))
        self._unsent(t, 10)
        self.reactor.advance(10)
        self.assertTrue(t.aborted)

    def test_huge_anonymous_body_refused_unread(self) -> None:
        """Content-Length 200 MiB without a session: 413 at once, the body is never read or spooled."""
        rendered: list[object] = []
        self.patch(type(self.site.resource), "getChildWithDefault",
                   lambda *a: rendered.append(a) or None)
        t = open_request(self.site, head("POST", "/api/v1/session", "Content-Type: application/json",
                                         f"Content-Length: {200 << 20}") + b"x" * 65536)
        self.assertEqual(_parse_response(t.value()).code, 413)
        self.assertTrue(t.disconnecting)
        self.assertEqual(rendered, [])

    def test_chunked_body_refused(self) -> None:
        """Transfer-Encoding: chunked is 411: an unbounded body is never read."""
        t = open_request(self.site, head("POST", "/api/v1/session", "Content-Type: application/json",
                                         "Transfer-Encoding: chunked") + b"ffff\r\n" + b"x" * 1000)
        self.assertEqual(_parse_response(t.value()).code, 411)
        self.assertTrue(t.disconnecting)

    def test_logged_in_import_size_allowed(self) -> None:
        """With a session a settings import up to the import limit still goes through the body limit."""
        token = self.api_token()
        body = b"# nothing\n" * 20_000  # 200 KB: over the anonymous limit, under MAX_IMPORT
        t = open_request(self.site, head("POST", "/api/v1/import", "Content-Type: text/plain",
                                         f"Authorization: Bearer {token}",
                                         f"Content-Length: {len(body)}") + body)
        self.assertEqual(_parse_response(t.value()).code, 200)

    def test_connection_caps(self) -> None:
        """At most 8 connections from one address and 32 in all; the serial ports' reserve of fds is kept."""
        from twisted.internet.address import IPv4Address as Addr
        accepted = 0
        for i in range(10):
            p = self.site.buildProtocol(Addr("TCP", "10.0.0.9", 1000 + i))
            if p is not None:  # the listener connects what it built at once
                p.makeConnection(StringTransport(peerAddress=Addr("TCP", "10.0.0.9", 1)))
                accepted += 1
        self.assertEqual(accepted, 8)
        many = []
        for i in range(40):
            p = self.site.buildProtocol(Addr("TCP", f"10.0.1.{i}", 1000))
            if p is not None:
                p.makeConnection(StringTransport(peerAddress=Addr("TCP", f"10.0.1.{i}", 1)))
                many.append(p)
        self.assertEqual(len(many), 32 - 8)
        for p in many:
            p.connectionLost(None)
        self.assertIsNotNone(self.site.buildProtocol(Addr("TCP", "10.0.2.1", 1)))
        self.site.limits.count_fds = lambda: self.site.limits.limit_fds() - 10
        self.assertIsNone(self.site.buildProtocol(Addr("TCP", "10.0.2.2", 1)))

    def test_accessible_change_closes_web_connections(self) -> None:
        """A saved accessible IP list closes open web connections of hosts it no longer allows."""
        import attrs
        from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings
        t = open_request(self.site, head("GET", "/login"), host="10.0.0.7")
        self.assertFalse(t.disconnecting)
        allowed = AccessibleIPSettings(entries=(AccessibleIP(ip="10.0.0.1"),))
        self.server.apply_config(attrs.evolve(self.server.config, accessible_ip=allowed))
        self.assertTrue(t.disconnecting)
