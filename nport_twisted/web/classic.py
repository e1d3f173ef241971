# -*- test-case-name: tests.test_web.ClassicTests -*-
"""
The classic NPort 5x00 URLs: C{GET /Set.htm?<fields>&Submit=Submit&setfunc=<Group>}
and C{GET /09Set.htm} (settings.md §11), behind the console's sessions.

CSRF: these change state by GET, as the old firmware did.  A
C{token_text} argument, when given, must be the session's CSRF token;
without one, requests a browser marks as cross-site are refused (the
session cookie is SameSite=Strict as well).  Bearer-token requests need
neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.template import tags

from nport_twisted.web import forms, html
from nport_twisted.web.auth import Session, same_token
from nport_twisted.web.base import (
    ConsoleResource,
    cross_site,
    form_of,
    later,
    query_of,
    session_of,
)
from nport_twisted.web.console import NOT_SAVED, SaveError
from nport_twisted.web.forms import FieldErrors


class ClassicResource(ConsoleResource):
    """Base of the classic handlers: session, then the CSRF rule of the classic URLs."""

    def _gate(self, request: Any) -> Session | bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        session = session_of(self.console, request)
        if session is None:
            request.setResponseCode(401)
            return html.bare_page(
                "Login required",
                tags.p(
                    "Log in first (POST /login with the password, keeping the cookie), or send "
                    "Authorization: Bearer with a token from POST /api/v1/session."
                ),
            )
        if session.bearer:
            return session
        token = query_of(request).get("token_text")
        if token is not None:
            ok = same_token(token, session.csrf)
        else:
            ok = not cross_site(request)
        if not ok:
            request.setResponseCode(403)
            return html.bare_page(
                "Request refused",
                tags.p("Wrong token_text, or the request came from another site."),
            )
        return session

    def render_POST(self, request: Request) -> bytes | int:
        return self.render_GET(request)

    def render_GET(self, request: Request) -> bytes | int:
        raise NotImplementedError


def classic_page(title: str, message: str, errors: Mapping[str, str] | None = None) -> bytes:
    items = [tags.li(tags.strong(k), ": ", v) for k, v in (errors or {}).items()]
    return html.bare_page(
        title, tags.h2(class_="classic-reply")(message), tags.ul(*items) if items else ""
    )


class ClassicSet(ClassicResource):
    """C{GET /Set.htm?<fields>&Submit=Submit&setfunc=<Group>} (settings.md §11)."""

    def render_GET(self, request: Request) -> bytes | int:
        gate = self._gate(request)
        if isinstance(gate, bytes):
            return gate
        query = form_of(request)
        try:
            new, reply = forms.classic_apply(self.console.pending, query, self.console.implemented)
            try:
                self.console.set_pending(new)
            except FieldErrors as e:
                raise FieldErrors(
                    forms.localized(e.errors, forms.classic_port_index(query), "operating",
                                    forms.CLASSIC_NAMES)
                ) from None
        except FieldErrors as e:
            request.setResponseCode(400)
            group = forms.CLASSIC_GROUPS.get(query.get("setfunc", "").lower(), "")
            return classic_page("Settings error", f"{group} Settings Error!".strip(), e.errors)
        return classic_page(reply, reply)


class ClassicSaveRestart(ClassicResource):
    """C{GET /09Set.htm}: Save/Restart."""

    def render_GET(self, request: Request) -> bytes | int:
        gate = self._gate(request)
        if isinstance(gate, bytes):
            return gate
        try:
            d = self.console.save_restart()
        except FieldErrors as e:
            request.setResponseCode(400)
            return classic_page("Save/Restart error", "Save/Restart Error!", e.errors)

        def failed(f: Failure) -> bytes:
            if isinstance(f.value, FieldErrors):
                request.setResponseCode(400)
                return classic_page("Save/Restart error", "Save/Restart Error!", f.value.errors)
            f.trap(SaveError)
            request.setResponseCode(SaveError.status)
            return classic_page(
                "Save/Restart error", "Save/Restart Error!", {"file": str(f.value)}
            )

        def done(saved: bool) -> bytes:
            # MOXA's reply only when it is true: without --config nothing was saved.
            if saved:
                return classic_page("Save/Restart", "Now Save/Restart OK!")
            return classic_page("Save/Restart", NOT_SAVED)

        return later(request, d.addCallbacks(done, failed))
