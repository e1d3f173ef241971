# -*- test-case-name: tests.test_web.ApiTests -*-
"""
The JSON API under C{/api/v1} (docs/web-console.md): sessions and bearer
tokens, settings per section and port, status and counters, save,
export/import, password and factory default.  Errors are JSON objects
with a code, a message and the fields at fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from nport_twisted.web import forms
from nport_twisted.web.auth import Session, same_token
from nport_twisted.web.base import (
    MAX_IMPORT,
    ConsoleResource,
    check_not_locked_out,
    clear_session_cookie,
    client_host,
    export_response,
    import_settings,
    later,
    monitor_display,
    query_of,
    session_of,
    wait_text,
)
from nport_twisted.web.console import SaveError, check_new_password
from nport_twisted.web.forms import FieldErrors

_log = Logger()


class ApiError(Exception):
    def __init__(
        self, code: int, error: str, message: str, errors: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.error = error
        self.message = message
        self.errors = dict(errors or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.errors:
            out["errors"] = [{"field": k, "reason": v} for k, v in self.errors.items()]
        return out


def _save_failed(request: Any, f: Failure) -> bytes:
    """Every save path's answer when the file cannot be written: 507 C{save_failed}."""
    f.trap(SaveError)
    return _json(request, ApiError(SaveError.status, SaveError.code, str(f.value)).body(),
                 SaveError.status)


def _json(request: Any, obj: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    return json.dumps(obj, indent=1).encode("utf-8") + b"\n"


def _invalid(e: FieldErrors) -> ApiError:
    return ApiError(400, "invalid", "some fields are not valid", e.errors)


_UNSAFE = {b"POST", b"PUT", b"PATCH", b"DELETE"}


class ApiV1(ConsoleResource):
    """C{/api/v1/…}: see docs/web-console.md."""

    def render(self, request: Request) -> bytes | int:
        path = [p.decode("utf-8", "replace") for p in request.postpath or []]
        while path and path[-1] == "":
            path.pop()
        method = (request.method or b"GET").upper()
        if method == b"HEAD":
            method = b"GET"
        try:
            return self._route(request, method, path)
        except ApiError as e:
            if e.code == 401:
                request.setHeader(b"www-authenticate", b'Bearer realm="nport"')
            if e.code == 429:
                request.setHeader(b"retry-after", e.errors.pop("retry_after", "1").encode())
            return _json(request, e.body(), e.code)
        except FieldErrors as e:
            return _json(request, _invalid(e).body(), 400)

    # -- plumbing --------------------------------------------------------------------------------

    def _body(self, request: Any) -> Any:
        ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, "unsupported_media_type", "send the body as application/json")
        raw = request.content.read(MAX_IMPORT + 1) if request.content is not None else b""
        if len(raw) > MAX_IMPORT:
            raise ApiError(413, "too_large", "the body is too large")
        try:
            return forms.parse_json(raw)
        except forms.JsonError as e:
            raise ApiError(400, "bad_json", str(e)) from None

    def _auth(self, request: Any, method: bytes) -> Session:
        if not self.console.password_set:
            raise ApiError(
                403,
                "setup_required",
                "no password is set yet: POST /api/v1/setup "
                "with the setup token from the service log",
            )
        session = session_of(self.console, request)
        if session is None:
            raise ApiError(
                401,
                "unauthorized",
                'log in: POST /api/v1/session {"password": …}, '
                "then send Authorization: Bearer <token>",
            )
        if (
            method in _UNSAFE
            and not session.bearer
            and not same_token(request.getHeader("x-csrf-token"), session.csrf)
        ):
            raise ApiError(
                403,
                "csrf",
                "cookie sessions must send the X-CSRF-Token header (GET /api/v1/session gives it)",
            )
        return session

    def _rate_check(self, request: Any) -> str:
        peer = client_host(request)
        wait = self.console.login_wait(peer)
        if wait > 0:
            raise ApiError(
                429, "rate_limited", wait_text(wait), {"retry_after": str(int(wait) + 1)}
            )
        return peer

    def _port(self, text: str) -> int:
        count = len(self.console.server.ports)
        # ASCII digits only: str.isdecimal() and int() also take "١" (Arabic-Indic one).
        if not re.fullmatch(r"[0-9]{1,3}", text) or not 1 <= int(text) <= count:
            raise ApiError(404, "not_found", f"ports are numbered 1 to {count}")
        return int(text) - 1

    @staticmethod
    def _methods(method: bytes, *allowed: bytes) -> None:
        if method not in allowed:
            raise ApiError(
                405, "method_not_allowed", "allowed: " + ", ".join(m.decode() for m in allowed)
            )

    # -- routes ----------------------------------------------------------------------------------

    def _route(self, request: Any, method: bytes, path: list[str]) -> bytes | int:
        if path == ["setup"]:
            self._methods(method, b"POST")
            return self._setup(request)
        if path == ["session"] and method == b"POST":
            return self._login(request)
        session = self._auth(request, method)
        if path == ["session"]:
            self._methods(method, b"GET", b"DELETE")
            if method == b"DELETE":
                self.console.sessions.drop(session.sid)
                if not session.bearer:
                    clear_session_cookie(request)
                return _json(request, {"logged_out": True})
            return _json(
                request,
                {"authenticated": True, "bearer": session.bearer, "csrf_token": session.csrf},
            )
        handler = self._handlers().get(path[0] if path else "")
        if handler is None:
            raise ApiError(404, "not_found", "no such API resource; see docs/web-console.md")
        return handler(request, method, path[1:], session)

    def _handlers(self) -> dict[str, Callable[[Any, bytes, list[str], Session], bytes | int]]:
        return {
            "device": self._device,
            "status": self._status,
            "ports": self._ports,
            "history": self._history,
            "settings": self._settings,
            "pending": self._pending,
            "save": self._save,
            "export": self._export,
            "import": self._import,
            "password": self._password,
            "factory-default": self._factory,
        }

    def _login(self, request: Any) -> bytes | int:
        if not self.console.password_set:
            raise ApiError(403, "setup_required", "no password is set yet: POST /api/v1/setup")
        peer = self._rate_check(request)
        body = self._body(request)
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str):
            raise ApiError(
                400, "invalid", 'send {"password": "…"}', {"password": "must be a string"}
            )

        def checked(ok: bool) -> bytes:
            if not ok:
                self.console.login_failed(peer, "api")
                _log.warn("web console: failed API login from {peer}", peer=peer)
                request.setHeader(b"www-authenticate", b'Bearer realm="nport"')
                return _json(
                    request,
                    ApiError(
                        401, "unauthorized", "wrong password", {"password": "wrong password"}
                    ).body(),
                    401,
                )
            self.console.limiter.succeeded(peer)
            session = self.console.sessions.create(peer, bearer=True)
            return _json(
                request,
                {"token": session.sid, "idle_timeout_s": int(self.console.sessions.idle_timeout)},
            )

        return later(request, self.console.check_password(password, peer).addCallback(checked))

    def _setup(self, request: Any) -> bytes | int:
        if self.console.password_set:
            raise ApiError(409, "already_set", "the password is already set; log in")
        peer = self._rate_check(request)
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", 'send {"setup_token": …, "password": …}')
        password = body.get("password")
        if not isinstance(password, str):
            raise _invalid(FieldErrors({"password": "must be a string"}))
        check_new_password(password, field="password")
        token = body.get("setup_token")
        if not isinstance(token, str) or not self.console.claim_setup_token(token.strip()):
            self.console.login_failed(peer, "api", "wrong setup token")
            raise ApiError(
                403, "invalid", "wrong setup token", {"setup_token": "wrong setup token"}
            )
        self.console.limiter.succeeded(peer)

        def done(_: object) -> bytes:
            session = self.console.sessions.create(peer, bearer=True)
            return _json(request, {"token": session.sid})

        return later(request, self.console.first_password(password, "api", peer).addCallbacks(
            done, lambda f: _save_failed(request, f)))

    def _device(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"GET")
        if rest:
            raise ApiError(404, "not_found", "no such API resource")
        return _json(request, self.console.device_json())

    def _status(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"GET")
        if rest:
            raise ApiError(404, "not_found", "no such API resource")
        status = self.console.status_json()
        for port in status["ports"]:
            port["display"] = monitor_display(port)
        return _json(request, status)

    def _history(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"GET")
        if rest:
            raise ApiError(404, "not_found", "no such API resource")
        history = self.console.history
        if history is None:
            raise ApiError(404, "not_found", "this console keeps no history")
        return _json(request, history.to_json())

    def _ports(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        if len(rest) != 2 or rest[1] != "status":
            raise ApiError(404, "not_found", "use /api/v1/ports/<n>/status")
        self._methods(method, b"GET")
        status = self.console.port_status(self._port(rest[0]))
        status["display"] = monitor_display(status)
        return _json(request, status)

    def _settings(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        pending = self.console.pending
        if not rest:
            self._methods(method, b"GET")
            out = forms.config_to_json(pending)
            out["pending"] = self.console.has_pending
            return _json(request, out)
        self._methods(method, b"GET", b"PUT", b"PATCH")
        if rest[0] == "ports":
            if len(rest) != 3 or rest[2] not in ("serial", "operating"):
                raise ApiError(
                    404, "not_found", "use /api/v1/settings/ports/<n>/serial or …/operating"
                )
            index = self._port(rest[1])
            port = pending.ports[index]
            current = getattr(port, rest[2])
            if method == b"GET":
                return _json(request, forms.to_json(current))
            new = forms.section_from_json(type(current), self._body(request), current)
            if rest[2] == "operating" and new.mode not in self.console.implemented:
                raise FieldErrors(
                    {"mode": f"{forms.MODE_LABELS[new.mode]} is not implemented in this version"}
                )
            try:
                self.console.set_pending(
                    pending.replace_port(index, attrs.evolve(port, **{rest[2]: new}))
                )
            except FieldErrors as e:
                raise FieldErrors(forms.localized(e.errors, index, rest[2])) from None
            return _json(
                request, {"settings": forms.to_json(new), "pending": self.console.has_pending}
            )
        if len(rest) != 1 or rest[0] not in forms.SECTIONS:
            raise ApiError(
                404, "not_found", "sections: " + ", ".join(forms.SECTIONS) + ", ports/<n>/…"
            )
        section = rest[0]
        current = getattr(pending, section)
        if method == b"GET":
            return _json(request, forms.to_json(current))
        new = forms.section_from_json(forms.SECTIONS[section], self._body(request), current)
        if section == "accessible_ip":
            check_not_locked_out(new, client_host(request), "entries")
        self.console.set_pending(attrs.evolve(pending, **{section: new}))
        return _json(
            request, {"settings": forms.to_json(new), "pending": self.console.has_pending}
        )

    def _pending(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"GET", b"DELETE")
        if method == b"DELETE":
            self.console.discard()
        return _json(request, {"pending": self.console.has_pending})

    def _save(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes | int:
        self._methods(method, b"POST")
        return self._applied(request, self.console.save_restart)

    def _applied(self, request: Any, apply: Callable[[], Deferred[bool]]) -> int:
        """
        Answer once the apply-and-save C{apply} fires: C{saved} says whether
        the file was written; a refusal (nothing changed) is a 400 naming
        the fields, a file that cannot be written L{_save_failed}.
        """
        d = apply()  # FieldErrors raised here: a 400 from render

        def failed(f: Failure) -> bytes:
            if isinstance(f.value, FieldErrors):
                body = ApiError(400, "invalid", "not put in force: nothing was changed",
                                f.value.errors).body()
                return _json(request, body, 400)
            return _save_failed(request, f)

        return later(
            request,
            d.addCallbacks(
                lambda saved: _json(request, {"applied": True, "saved": bool(saved)}), failed
            ),
        )

    def _export(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"GET")
        return export_response(
            self.console, request, query_of(request).get("network", "1") not in ("", "0")
        )

    def _import(self, request: Any, method: bytes, rest: list[str], session: Session) -> bytes:
        self._methods(method, b"POST")
        raw = request.content.read(MAX_IMPORT + 1) if request.content is not None else b""
        if len(raw) > MAX_IMPORT:
            raise ApiError(413, "too_large", f"the file is larger than {MAX_IMPORT // 1024} KiB")
        network = query_of(request).get("network", "0") not in ("", "0")
        self.console.set_pending(import_settings(self.console, raw, network, "file"))
        return _json(request, {"imported": True, "pending": self.console.has_pending})

    def _password(
        self, request: Any, method: bytes, rest: list[str], session: Session
    ) -> bytes | int:
        self._methods(method, b"POST")
        peer = self._rate_check(request)
        body = self._body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", 'send {"old_password": …, "new_password": …}')
        old, new = body.get("old_password"), body.get("new_password")
        if not isinstance(old, str):
            raise FieldErrors({"old_password": "must be a string"})
        if not isinstance(new, str):
            raise FieldErrors({"new_password": "must be a string"})
        check_new_password(new)

        def checked(ok: bool) -> Deferred[bytes] | bytes:
            if not ok:
                self.console.login_failed(peer, "api", "wrong old password")
                return _json(
                    request, _invalid(FieldErrors({"old_password": "wrong password"})).body(), 400
                )
            self.console.limiter.succeeded(peer)
            return self.console.set_password(new, keep_session=session.sid, service="api", peer=peer).addCallbacks(
                lambda _: _json(request, {"changed": True}), lambda f: _save_failed(request, f)
            )

        return later(request, self.console.check_password(old, peer).addCallback(checked))

    def _factory(
        self, request: Any, method: bytes, rest: list[str], session: Session
    ) -> bytes | int:
        self._methods(method, b"POST")
        body = self._body(request)
        keep = body.get("keep_network", True) if isinstance(body, dict) else True
        if not isinstance(keep, bool):
            raise FieldErrors({"keep_network": "must be true or false"})
        return self._applied(request, lambda: self.console.factory_default(keep_network=keep))
