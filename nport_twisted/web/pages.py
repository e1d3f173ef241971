# -*- test-case-name: tests.test_web -*-
"""
The HTML pages of the web console: login, first-start setup and the NPort
menu (Overview … Save/Restart), each a thin twisted.web resource over the
codecs in L{nport_twisted.web.forms} and the actions of
L{nport_twisted.web.console}.
"""

from __future__ import annotations

import re

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request
from twisted.web.template import Tag, tags

from nport_twisted.config.settings import OpMode
from nport_twisted.web import forms, html
from nport_twisted.web.auth import Session, same_token
from nport_twisted.web.base import (
    COOKIE,
    MAX_IMPORT,
    STORED,
    ConsoleResource,
    check_not_locked_out,
    clear_session_cookie,
    client_host,
    export_response,
    form_of,
    import_settings,
    later,
    monitor_display,
    query_of,
    redirect,
    session_of,
    set_session_cookie,
    wait_text,
)
from nport_twisted.web.console import (
    PASSWORD_NOT_SAVED,
    SaveError,
    WebConsole,
    applied_text,
    check_new_password,
)
from nport_twisted.web.forms import FieldErrors

_log = Logger()


class HtmlPage(ConsoleResource):
    """
    A page of the logged-in console.  GET shows it (L{show}); POST checks
    the CSRF token and calls L{submit}, which returns the response or
    raises L{FieldErrors} to show the page again with the errors.
    """

    title = ""
    path = ""

    def current(self, request: Any) -> str:
        return self.path

    def frame(self, request: Any, session: Session) -> html.Frame:
        ident = self.console.identity()
        banner = (
            ("Model", ident.model.name),
            ("Name", ident.server_name),
            ("IP", str(getattr(request.getHost(), "host", ""))),
            ("Serial No.", str(ident.serial_number)),
        )
        return html.Frame(
            port_count=len(self.console.server.ports),
            csrf=session.csrf,
            banner=banner,
            pending=self.console.has_pending,
            current=self.current(request),
        )

    def page(
        self,
        request: Any,
        session: Session,
        *content: Any,
        message: str = "",
        error: str = "",
        title: str = "",
    ) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return html.page(
            self.frame(request, session),
            title or self.title,
            *content,
            message=message,
            error=error,
        )

    def login_gate(self, request: Any) -> Session | bytes:
        if not self.console.password_set:
            return redirect(request, "/setup")
        session = session_of(self.console, request)
        if session is None:
            return redirect(request, "/login")
        return session

    def render_GET(self, request: Request) -> bytes | int:
        session = self.login_gate(request)
        if isinstance(session, bytes):
            return session
        return self.show(request, session, None, {})

    def render_POST(self, request: Request) -> bytes | int:
        session = self.login_gate(request)
        if isinstance(session, bytes):
            return session
        form = form_of(request)
        if not same_token(form.get("csrf_token"), session.csrf):
            request.setResponseCode(403)
            return self.page(
                request,
                session,
                error="The form was out of date or not sent by this "
                "console (CSRF token). Reload the page and try again.",
                title="Request refused",
            )
        try:
            return self.submit(request, session, form)
        except FieldErrors as e:
            request.setResponseCode(400)
            return self.show(request, session, form, e.errors)

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        raise NotImplementedError

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes | int:
        raise NotImplementedError

    def after(self, request: Any, session: Session, d: Deferred[bool], what: str = "") -> int:
        """
        Answer with this page once the apply-and-save C{d} fires: what was
        done (only "saved" when the file was written, L{applied_text}), the
        refusal (400, nothing changed) or the save error (507, L{SaveError}).
        """

        def failed(f: Failure) -> bytes:
            if isinstance(f.value, FieldErrors):
                request.setResponseCode(400)
                text = "Not put in force: " + forms.errors_text(f.value.errors)
            else:
                f.trap(SaveError)
                request.setResponseCode(SaveError.status)
                text = str(f.value)
            return self.show(request, session, None, {"_form": text})

        return later(
            request,
            d.addCallbacks(
                lambda saved: self.show(
                    request, session, None, {}, message=applied_text(saved, what)
                ),
                failed,
            ),
        )

    def pend(self, config: Any, index: int | None = None, part: str = "operating") -> None:
        """Make C{config} pending; refusals named as this page names its fields."""
        try:
            self.console.set_pending(config)
        except FieldErrors as e:
            raise FieldErrors(forms.localized(e.errors, index, part)) from None

    def error_summary(self, errors: Mapping[str, str]) -> str:
        if not errors:
            return ""
        return "Not saved: correct the fields marked below." if set(errors) != {"_form"} else ""


def _port_arg(console: WebConsole, request: Any) -> int:
    """0-based port from C{?port=N} (1-based); 1 when missing or invalid."""
    text = query_of(request).get("port", "1")
    n = int(text) if re.fullmatch(r"[0-9]{1,3}", text) else 1  # ASCII only: "١" is not 1
    return min(max(n, 1), len(console.server.ports)) - 1


# -- pages before login -------------------------------------------------------------------------


class LoginPage(ConsoleResource):
    def _form(self, error: str = "", code: int = 200, request: Any = None) -> bytes:
        if request is not None:
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return html.bare_page(
            "Login",
            tags.form(method="post", action="/login", class_="login")(
                tags.p(
                    tags.label(for_="password")("Password"),
                    " ",
                    tags.input(
                        type="password",
                        name="password",
                        id="password",
                        autocomplete="current-password",
                        autofocus="autofocus",
                    ),
                ),
                tags.p(tags.button(type="submit", id="login")("Login")),
            ),
            error=error,
        )

    def render_GET(self, request: Request) -> bytes:
        if not self.console.password_set:
            return redirect(request, "/setup")
        if session_of(self.console, request) is not None:
            return redirect(request, "/overview")
        return self._form(request=request)

    def render_POST(self, request: Request) -> bytes | int:
        if not self.console.password_set:
            return redirect(request, "/setup")
        peer = client_host(request)
        wait = self.console.login_wait(peer)
        if wait > 0:
            request.setHeader(b"retry-after", str(int(wait) + 1).encode())
            return self._form(wait_text(wait), 429, request)
        password = form_of(request).get("password", "")

        def checked(ok: bool) -> bytes:
            if not ok:
                self.console.login_failed(peer, "web")
                _log.warn("web console: failed login from {peer}", peer=peer)
                return self._form("Wrong password.", 401, request)
            self.console.limiter.succeeded(peer)
            old = request.getCookie(COOKIE)
            if old:
                self.console.sessions.drop(old.decode("ascii", "replace"))
            session = self.console.sessions.create(peer)
            set_session_cookie(request, session)
            _log.info("web console: login from {peer}", peer=peer)
            return redirect(request, "/overview")

        return later(request, self.console.check_password(password, peer).addCallback(checked))


class LogoutPage(ConsoleResource):
    def render_POST(self, request: Request) -> bytes:
        session = session_of(self.console, request)
        if session is not None and same_token(form_of(request).get("csrf_token"), session.csrf):
            self.console.sessions.drop(session.sid)
            clear_session_cookie(request)
        return redirect(request, "/login")


def setup_errors(form: Mapping[str, str]) -> dict[str, str]:
    """Everything wrong with a set-password form, before the token is tried."""
    errors: dict[str, str] = {}
    password = form.get("new_password", "")
    try:
        check_new_password(password)
    except FieldErrors as e:
        errors.update(e.errors)
    if form.get("new_password2", "") != password:
        errors["new_password2"] = "the two passwords differ"
    if not form.get("setup_token", "").strip():
        errors["setup_token"] = "enter the setup token printed in the service log at start-up"
    return errors


class SetupPage(ConsoleResource):
    """First start: set the password with the one-time setup token from the log."""

    def _form(
        self, request: Any, errors: Mapping[str, str], code: int = 200, error: str = ""
    ) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")

        def row(name: str, label: str, kind: str, auto: str) -> Tag:
            box = tags.input(type=kind, name=name, id=name, autocomplete=auto)
            err = (
                [tags.span(class_="error", id=f"{name}-error")(errors[name])]
                if name in errors
                else []
            )
            if err:
                box(**{"aria-invalid": "true", "aria-describedby": f"{name}-error"})
            return tags.tr(tags.th(tags.label(for_=name)(label)), tags.td(box, *err))

        return html.bare_page(
            "Set the console password",
            tags.p(
                "No password is set yet. Enter the one-time setup token printed in the "
                "service log at start-up, then choose the console password "
                "(8 to 128 characters)."
            ),
            tags.form(method="post", action="/setup", class_="login")(
                tags.table(class_="form")(
                    row("setup_token", "Setup token", "text", "off"),
                    row("new_password", "New password", "password", "new-password"),
                    row("new_password2", "Retype password", "password", "new-password"),
                ),
                tags.p(tags.button(type="submit", id="set-password")("Set password")),
            ),
            error=error,
        )

    def render_GET(self, request: Request) -> bytes:
        if self.console.password_set:
            return redirect(request, "/login")
        return self._form(request, {})

    def render_POST(self, request: Request) -> bytes | int:
        if self.console.password_set:
            return redirect(request, "/login")
        form = form_of(request)
        peer = client_host(request)
        wait = self.console.limiter.wait_time(peer)
        if wait > 0:
            request.setHeader(b"retry-after", str(int(wait) + 1).encode())
            return self._form(request, {}, 429, wait_text(wait))
        password = form.get("new_password", "")
        errors = setup_errors(form)
        if errors:  # every problem at once; the token is only tried with a good password
            return self._form(request, errors, 400)
        if not self.console.claim_setup_token(form.get("setup_token", "").strip()):
            self.console.login_failed(peer, "web", "wrong setup token")
            _log.warn("web console: wrong setup token from {peer}", peer=peer)
            return self._form(
                request,
                {
                    "setup_token": "wrong setup token (it is printed in the "
                    "service log at start-up)"
                },
                403,
            )
        self.console.limiter.succeeded(peer)

        def done(_: object) -> bytes:
            session = self.console.sessions.create(peer)
            set_session_cookie(request, session)
            return redirect(request, "/overview")

        def not_saved(f: Failure) -> bytes:
            f.trap(SaveError)
            return self._form(request, {}, SaveError.status, str(f.value))

        return later(request, self.console.first_password(password, "web", peer).addCallbacks(done, not_saved))


class RootPage(ConsoleResource):
    """
    C{/}: the page itself, not a redirect, as an NPort answers (200, titled
    "NPort Web Console"): the set-password page, the login page, or the
    overview once logged in.
    """

    def __init__(self, console: WebConsole, setup: SetupPage, login: LoginPage,
                 overview: OverviewPage) -> None:
        super().__init__(console)
        self._setup, self._login, self._overview = setup, login, overview

    def render_GET(self, request: Request) -> bytes | int:
        body: bytes | int
        if not self.console.password_set:
            body = self._setup.render_GET(request)
        elif session_of(self.console, request) is None:
            body = self._login.render_GET(request)
        else:
            body = self._overview.render_GET(request)
        return html.classic_title(body) if isinstance(body, bytes) else body


class MainPage(ConsoleResource):
    """C{/main.htm}, where classic bookmarks point: on to the console."""

    def render_GET(self, request: Request) -> bytes:
        if not self.console.password_set:
            return redirect(request, "/setup")
        if session_of(self.console, request) is None:
            return redirect(request, "/login")
        return redirect(request, "/overview")


# -- pages of the console -----------------------------------------------------------------------


def _fmt_uptime(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days} days {hours:02d}h:{minutes:02d}m:{s:02d}s"


class OverviewPage(HtmlPage):
    title = "Overview"
    path = "/overview"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        ident = self.console.identity()
        ports = self.console.server.ports
        rows = [
            ("Model name", ident.model.name),
            ("Server name", ident.server_name),
            ("Server location", self.console.running.basic.server_location or "-"),
            ("MAC address", ident.mac_text),
            ("Serial No.", str(ident.serial_number)),
            ("Firmware version", f"{ident.firmware} (nport-twisted)"),
            ("IP address", str(getattr(request.getHost(), "host", ""))),
            ("System uptime", _fmt_uptime(self.console.uptime())),
            (
                "Serial ports",
                ", ".join(
                    f"{i + 1}: {p.channel.device} ({forms.MODE_LABELS[p.config.operating.mode]})"
                    for i, p in enumerate(ports)
                ),
            ),
        ]
        return self.page(
            request,
            session,
            tags.p(class_="welcome")(f"Welcome to {ident.server_name}'s web console!"),
            html.info_table(rows, "ov-"),
        )


class SectionPage(HtmlPage):
    """A page editing one device-wide section with a field table."""

    section = ""
    fields: tuple[forms.Field, ...] = ()
    note = ""
    #: Checkboxes shown (after the fields) only when a change needs confirming.
    confirmations: tuple[forms.Field, ...] = ()

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        value = getattr(self.console.pending, self.section)
        texts = dict(form) if form is not None else html.texts_for(self.fields, value)
        content: list[Any] = [tags.p(class_="note")(self.note)] if self.note else []
        fields = self.fields + tuple(f for f in self.confirmations if f.name in errors)
        content.append(
            html.settings_form(
                self.path, session.csrf, html.form_rows(fields, texts, errors), errors
            )
        )
        saved = "saved" in query_of(request) and form is None
        return self.page(
            request,
            session,
            *content,
            message=message or (STORED if saved else ""),
            error=self.error_summary(errors),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        pending = self.console.pending
        new = forms.parse_fields(self.fields, form, getattr(pending, self.section))
        self.pend(attrs.evolve(pending, **{self.section: new}))
        return redirect(request, self.path + "?saved=1")


class BasicPage(SectionPage):
    title = "Basic Settings"
    path = "/basic"
    section = "basic"
    fields = forms.BASIC_FIELDS
    confirmations = (forms.Field("confirm_web_off", "Yes, turn the web console off", "bool"),)

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        pending = self.console.pending
        new = forms.parse_fields(self.fields, form, pending.basic)
        if pending.basic.web_console and not new.web_console and not form.get("confirm_web_off"):
            raise FieldErrors(
                {
                    "confirm_web_off": "turning the web console off locks this console after "
                    "Save/Restart (the telnet console or the settings file can turn it on "
                    "again): tick this box and Submit again to confirm"
                }
            )
        self.pend(attrs.evolve(pending, basic=new))
        return redirect(request, self.path + "?saved=1")


class NetworkPage(SectionPage):
    title = "Network Settings"
    path = "/network"
    section = "network"
    fields = forms.NETWORK_FIELDS
    note = (
        "The host's addresses, routes and DNS belong to its operating system: the IP "
        "settings are stored and exported but not applied (docs/configuration.md)."
    )


class WarningPage(SectionPage):
    title = "Auto Warning Settings"
    path = "/warning"
    section = "auto_warning"
    fields = forms.AUTO_WARNING_FIELDS
    note = ("E-mail and SNMP traps are sent for the events ticked here (docs/monitoring.md); "
            "no trap leaves without a trap community, no mail without server, sender and "
            "recipient.")


class MonitoringPage(SectionPage):
    """Ours: syslog and who may read /metrics (docs/monitoring.md)."""

    title = "Monitoring Settings"
    path = "/monitoring"
    section = "monitoring"
    fields = forms.MONITORING_FIELDS
    note = ("Syslog (RFC 5424) of the device events and connections, and who may read the "
            "Prometheus metrics at /metrics (docs/monitoring.md). Not on a real NPort.")


class SerialPage(HtmlPage):
    title = "Serial Settings"
    path = "/serial"

    def current(self, request: Any) -> str:
        return f"/serial?port={_port_arg(self.console, request) + 1}"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        index = _port_arg(self.console, request)
        value = self.console.pending.ports[index].serial
        texts = dict(form) if form is not None else html.texts_for(forms.SERIAL_FIELDS, value)
        notes = self.console.serial_notes(index)
        extra = []
        if len(self.console.server.ports) > 1:
            box = tags.input(type="checkbox", name="apply_all", id="apply_all", value="on")
            if texts.get("apply_all"):
                box(checked="checked")
            extra.append(
                tags.p(
                    box,
                    " ",
                    tags.label(for_="apply_all")(
                        "Apply the above settings to all serial ports (except the alias)"
                    ),
                )
            )
        saved = "saved" in query_of(request) and form is None
        return self.page(
            request,
            session,
            html.settings_form(
                f"/serial?port={index + 1}",
                session.csrf,
                html.form_rows(forms.SERIAL_FIELDS, texts, errors, notes=notes),
                errors,
                extra,
            ),
            title=f"Serial Settings - Port {index + 1}",
            message=message or (STORED if saved else ""),
            error=self.error_summary(errors),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        index = _port_arg(self.console, request)
        pending = self.console.pending
        new = forms.parse_serial_form(form, pending.ports[index].serial)
        targets = range(len(pending.ports)) if form.get("apply_all") else [index]
        config = pending
        for i in targets:
            port = config.ports[i]
            serial = new if i == index else attrs.evolve(new, alias=port.serial.alias)
            config = config.replace_port(i, attrs.evolve(port, serial=serial))
        self.pend(config, index, "serial")
        return redirect(request, f"/serial?port={index + 1}&saved=1")


class OperatingPage(HtmlPage):
    title = "Operating Settings"
    path = "/operating"

    def current(self, request: Any) -> str:
        return f"/operating?port={_port_arg(self.console, request) + 1}"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        index = _port_arg(self.console, request)
        value = self.console.pending.ports[index].operating
        implemented = self.console.implemented
        wanted = (form or query_of(request)).get("mode", value.mode.value)
        try:
            mode = OpMode(wanted)
        except ValueError:
            mode = value.mode
        fields = forms.operating_fields(mode)
        texts = html.texts_for(fields, value)
        for i, dest in enumerate(value.udp_destinations, 1):
            texts.update(
                {
                    f"udp.{i}.begin": dest.begin,
                    f"udp.{i}.end": dest.end,
                    f"udp.{i}.port": str(dest.port),
                }
            )
        if form is not None and "choose" not in form:
            texts = dict(form)
        mode_field = forms.Field(
            "mode",
            "Operation mode",
            "choice",
            tuple(
                forms.Choice(
                    m.value,
                    forms.MODE_LABELS[m] + ("" if m in implemented else " (not implemented)"),
                    m,
                )
                for m in OpMode
            ),
        )
        texts["mode"] = mode.value
        disabled = {"mode": [m.value for m in OpMode if m not in implemented]}
        rows = [
            tags.tr(
                tags.th(tags.label(for_="mode")(mode_field.label)),
                tags.td(
                    *html.widget(mode_field, texts, errors, disabled["mode"]),
                    tags.button(type="submit", name="choose", value="1", class_="choose")(
                        "Show fields"
                    ),
                ),
            )
        ]
        helps = {f.name: self.console.field_help(f, index) for f in fields}
        rows.extend(html.form_rows(fields, texts, errors, helps=helps))
        extra: list[Any] = []
        if "udp_destinations" in forms.MODE_FIELDS[mode]:
            extra.append(self._udp_table(texts, errors))
        if not fields and mode is OpMode.DISABLED:
            extra.append(
                tags.p(class_="note")("A disabled port neither listens nor opens its device.")
            )
        saved = "saved" in query_of(request) and form is None
        return self.page(
            request,
            session,
            html.settings_form(f"/operating?port={index + 1}", session.csrf, rows, errors, extra),
            title=f"Operating Settings - Port {index + 1}",
            message=message or (STORED if saved else ""),
            error=self.error_summary(errors),
        )

    def _udp_table(self, texts: Mapping[str, str], errors: Mapping[str, str]) -> Tag:
        rows = [tags.tr(tags.th("#"), tags.th("Begin IP"), tags.th("End IP"), tags.th("Port"))]
        for i in range(1, forms.UDP_ROWS + 1):
            cells: list[Any] = [tags.td(str(i))]
            for part, size in (("begin", 16), ("end", 16), ("port", 6)):
                name = f"udp.{i}.{part}"
                box = html._input(
                    name, texts.get(name, ""), errors, size, label=f"Destination {i} {part}"
                )
                # Hints as the validators: an IPv4 address, a port 1-65535.
                if part == "port":
                    box(maxlength="5", inputmode="numeric")
                else:
                    box(maxlength="15")
                cell = tags.td(box)
                if name in errors:
                    cell(tags.span(class_="error", id=f"{name}-error")(errors[name]))
                cells.append(cell)
            rows.append(tags.tr(*cells))
        return tags.table(class_="grid udp")(tags.caption("UDP destinations"), *rows)

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        index = _port_arg(self.console, request)
        if "choose" in form:
            return self.show(request, session, form, {})
        pending = self.console.pending
        port = pending.ports[index]
        new = forms.parse_operating_form(form, port.operating, self.console.implemented)
        self.pend(pending.replace_port(index, attrs.evolve(port, operating=new)), index)
        return redirect(request, f"/operating?port={index + 1}&saved=1")


class AccessiblePage(HtmlPage):
    title = "Accessible IP Settings"
    path = "/accessible"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        if form is None:
            texts: dict[str, str] = {}
            for i, e in enumerate(self.console.pending.accessible_ip.entries, 1):
                texts.update(
                    {
                        f"acl.{i}.ip": e.ip,
                        f"acl.{i}.netmask": e.netmask,
                        f"acl.{i}.active": "on" if e.active else "",
                    }
                )
        else:
            texts = dict(form)
        rows = [
            tags.tr(tags.th("No."), tags.th("Active"), tags.th("IP address"), tags.th("Netmask"))
        ]
        for i in range(1, forms.ACCESSIBLE_ROWS + 1):
            box = tags.input(
                type="checkbox",
                name=f"acl.{i}.active",
                id=f"acl.{i}.active",
                value="on",
                **{"aria-label": f"Entry {i} active"},
            )
            if texts.get(f"acl.{i}.active"):
                box(checked="checked")
            cells: list[Any] = [tags.td(str(i)), tags.td(box)]
            for part in ("ip", "netmask"):
                name = f"acl.{i}.{part}"
                cell = tags.td(
                    html._input(name, texts.get(name, ""), errors, 16, label=f"Entry {i} {part}")(
                        maxlength="15"
                    )
                )
                if name in errors:
                    cell(tags.span(class_="error", id=f"{name}-error")(errors[name]))
                cells.append(cell)
            rows.append(tags.tr(*cells))
        form_tag = tags.form(method="post", action=self.path, class_="settings")(
            html.csrf_input(session.csrf),
            tags.p(class_="error-box", role="alert")(errors["_form"]) if "_form" in errors else "",
            tags.table(class_="grid")(*rows),
            tags.p(class_="buttons")(
                tags.button(type="submit", name="Submit", value="Submit")("Submit")
            ),
        )
        saved = "saved" in query_of(request) and form is None
        return self.page(
            request,
            session,
            tags.p(class_="note")(
                "With at least one active entry, only matching hosts may use "
                "this box (web console, data ports, discovery); this host "
                "itself (loopback) always may. An empty list allows everyone."
            ),
            form_tag,
            message=message or (STORED if saved else ""),
            error=self.error_summary(errors),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        acl = forms.parse_accessible_form(form)
        check_not_locked_out(acl, client_host(request))
        self.pend(attrs.evolve(self.console.pending, accessible_ip=acl))
        return redirect(request, self.path + "?saved=1")


class MonitorPage(HtmlPage):
    title = "Monitor"
    path = "/monitor"

    _TABLES = (
        (
            "Line",
            "line",
            (
                ("Mode", "mode"),
                ("Device", "device"),
                ("Listening", "listening"),
                ("Connected peers", "peers"),
                ("Buffered bytes", "buffered"),
            ),
        ),
        (
            "Async",
            "async",
            (
                ("Tx", "tx"),
                ("Rx", "rx"),
                ("DSR", "dsr"),
                ("CTS", "cts"),
                ("DCD", "dcd"),
                ("Parity err", "parity"),
                ("Framing err", "framing"),
                ("Overrun err", "overrun"),
                ("Break", "break"),
            ),
        ),
        (
            "Async Settings",
            "async-settings",
            (
                ("Baud rate", "baudrate"),
                ("Data bits", "bytesize"),
                ("Stop bits", "stopbits"),
                ("Parity", "parity_setting"),
                ("RTS/CTS", "rtscts"),
                ("XON/XOFF", "xonxoff"),
                ("DTR/DSR", "dtrdsr"),
                ("FIFO", "fifo"),
                ("Interface", "interface"),
            ),
        ),
    )

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        displays = [
            monitor_display(self.console.port_status(i))
            for i in range(len(self.console.server.ports))
        ]
        sections: list[Any] = [
            tags.p(class_="note")(
                # The script replaces this; without it the page is a snapshot and says so.
                tags.span(id="monitor-state", role="status")(
                    "Not refreshing: this is a snapshot from when the page was loaded "
                    "(JavaScript is off or blocked). Reload the page to update it."
                ),
            ),
        ]
        for title, ident, columns in self._TABLES:
            head = tags.tr(tags.th("Port"), *[tags.th(label) for label, _ in columns])
            rows = [
                tags.tr(
                    tags.td(str(n)),
                    *[
                        tags.td(**{"data-port": str(n), "data-key": key})(d[key])
                        for _, key in columns
                    ],
                )
                for n, d in enumerate(displays, 1)
            ]
            sections.append(tags.h2(id=f"{ident}-title")(title))
            sections.append(
                tags.table(
                    class_="grid monitor", id=ident, **{"aria-labelledby": f"{ident}-title"}
                )(head, *rows)
            )
        history = self.console.history
        if history is not None:
            # Filled by the script from /api/v1/history (inline SVG, nothing loaded
            # from elsewhere); without the script only the captions show.
            minutes = int(history.window // 60)
            sections.append(tags.h2(id="graphs-title")(f"Traffic and events, last {minutes} minutes"))
            sections.append(tags.p(class_="legend")(
                tags.span(class_="key tx")("Tx"), " bytes/s to the device, ",
                tags.span(class_="key rx")("Rx"), " bytes/s from the device; below: ",
                tags.span(class_="key ev-connect")("connections"), ", ",
                tags.span(class_="key ev-line")("modem lines"), ", ",
                tags.span(class_="key ev-device")("device"), " events."))
            sections.append(tags.div(
                id="graphs", **{"aria-labelledby": "graphs-title",
                                "data-window": str(int(history.window))})(*[
                tags.figure(class_="graph", **{"data-port": str(n)})(
                    tags.figcaption(f"Port {n}"),
                    tags.div(class_="plot"),
                    tags.ol(class_="timeline", **{"aria-label": f"Port {n} events"}))
                for n in range(1, len(displays) + 1)]))
        return self.page(
            request, session, tags.div(id="monitor", **{"data-interval": "1000"})(*sections)
        )


class PasswordPage(HtmlPage):
    title = "Change Password"
    path = "/password"

    _FIELDS = (
        forms.Field("old_password", "Old password", "secret"),
        forms.Field("new_password", "New password", "secret", help="8 to 128 characters"),
        forms.Field("new_password2", "Retype password", "secret"),
        forms.Field(
            "confirm", "Yes, change the password", "bool", help="every other session is logged out"
        ),
    )

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        return self.page(
            request,
            session,
            html.settings_form(
                self.path, session.csrf, html.form_rows(self._FIELDS, {}, errors), errors
            ),
            message=message,
            error=self.error_summary(errors),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes | int:
        peer = client_host(request)
        new = form.get("new_password", "")
        errors: dict[str, str] = {}
        try:
            check_new_password(new, form.get("new_password2", ""))
        except FieldErrors as e:
            errors.update(e.errors)
        if not form.get("confirm"):
            errors["confirm"] = "tick to confirm the change"
        if errors:
            raise FieldErrors(errors)
        wait = self.console.login_wait(peer)
        if wait > 0:
            request.setResponseCode(429)
            return self.show(request, session, form, {"old_password": wait_text(wait)})

        def checked(ok: bool) -> Deferred[bytes] | bytes:
            if not ok:
                self.console.login_failed(peer, "web", "wrong old password")
                request.setResponseCode(400)
                return self.show(request, session, form, {"old_password": "wrong password"})
            self.console.limiter.succeeded(peer)

            def not_saved(f: Failure) -> bytes:
                f.trap(SaveError)
                request.setResponseCode(SaveError.status)
                return self.show(request, session, None, {"_form": str(f.value)})

            return self.console.set_password(new, keep_session=session.sid, peer=peer).addCallbacks(
                lambda saved: self.show(
                    request,
                    session,
                    None,
                    {},
                    message="Password changed. Other sessions were logged out."
                    + ("" if saved else " " + PASSWORD_NOT_SAVED),
                ),
                not_saved,
            )

        return later(
            request,
            self.console.check_password(form.get("old_password", ""), peer).addCallback(checked),
        )


class FactoryPage(HtmlPage):
    title = "Load Factory Default"
    path = "/factory"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        return self.page(
            request,
            session,
            tags.p(
                "Reset every setting to its factory default and put it in force "
                "now. The password and the device identity are kept."
            ),
            tags.form(method="post", action=self.path, class_="settings")(
                html.csrf_input(session.csrf),
                tags.p(
                    tags.input(
                        type="checkbox",
                        name="keep_network",
                        id="keep_network",
                        value="on",
                        checked="checked",
                    ),
                    " ",
                    tags.label(for_="keep_network")("Keep network settings"),
                ),
                tags.p(
                    tags.input(type="checkbox", name="confirm", id="confirm", value="on"),
                    " ",
                    tags.label(for_="confirm")("Yes, reset every setting now"),
                ),
                tags.p(class_="buttons")(tags.button(type="submit")("Submit")),
            ),
            message=message,
            error=errors.get("_form", ""),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes | int:
        if not form.get("confirm"):
            raise FieldErrors(
                {"_form": "Nothing was changed: tick “Yes, reset every setting now” to confirm."}
            )
        try:
            d = self.console.factory_default(keep_network=bool(form.get("keep_network")))
        except FieldErrors as e:
            raise FieldErrors({"_form": "Not put in force: " + forms.errors_text(e.errors)}) from None
        return self.after(request, session, d, "Factory defaults loaded")


class SaveRestartPage(HtmlPage):
    title = "Save/Restart"
    path = "/saverestart"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        state = (
            "There are settings changes to put in force."
            if self.console.has_pending
            else "No settings changes are waiting."
        )
        return self.page(
            request,
            session,
            tags.p(state),
            tags.p(
                "Save/Restart puts the settings in force on the running ports and writes the "
                "settings file. Only ports whose settings changed are touched: new serial "
                "settings are applied to the open device, a new operating mode restarts that "
                "port's listeners. The service itself does not restart."
            ),
            tags.form(method="post", action=self.path, class_="settings")(
                html.csrf_input(session.csrf),
                tags.p(class_="buttons")(
                    tags.button(type="submit", id="save-restart")("Save/Restart"),
                    " ",
                    tags.button(type="submit", name="discard", value="1")("Discard changes"),
                ),
            ),
            message=message,
            error=errors.get("_form", ""),
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes | int:
        if form.get("discard"):
            self.console.discard()
            return self.show(request, session, None, {}, message="Changes discarded.")
        try:
            d = self.console.save_restart()
        except FieldErrors as e:
            raise FieldErrors({"_form": "Not put in force: " + forms.errors_text(e.errors)}) from None
        return self.after(request, session, d)


class ConfigPage(HtmlPage):
    title = "Export/Import"
    path = "/config"

    def show(
        self,
        request: Any,
        session: Session,
        form: Mapping[str, str] | None,
        errors: Mapping[str, str],
        message: str = "",
    ) -> bytes:
        err = errors.get("file", "") or errors.get("_form", "")
        problems = err.split("\n") if err else []
        listed: Any = ""
        if len(problems) > 1:
            err = f"Not imported: the file has {len(problems)} problems, all listed here."
            listed = tags.ul(class_="error-list", id="file-errors")(*[tags.li(p) for p in problems])
        return self.page(
            request,
            session,
            listed,
            tags.h2("Export"),
            tags.form(method="get", action="/export", class_="settings")(
                tags.p(
                    tags.input(
                        type="checkbox",
                        name="network",
                        id="export_network",
                        value="1",
                        checked="checked",
                    ),
                    " ",
                    tags.label(for_="export_network")("Include network settings"),
                ),
                tags.p(tags.button(type="submit")("Download settings file")),
            ),
            tags.p(class_="note")(
                "The file holds every setting except secrets (password, mail "
                "password); format: docs/configuration.md."
            ),
            tags.h2("Import"),
            tags.form(
                method="post", action=self.path, enctype="multipart/form-data", class_="settings"
            )(
                html.csrf_input(session.csrf),
                tags.p(
                    tags.label(for_="file")("Settings file "),
                    tags.input(type="file", name="file", id="file", accept=".ini,.txt,text/plain"),
                ),
                tags.p(
                    tags.input(type="checkbox", name="network", id="import_network", value="1"),
                    " ",
                    tags.label(for_="import_network")("Include network settings"),
                ),
                tags.p(tags.button(type="submit")("Import")),
            ),
            message=message,
            error=err,
        )

    def submit(self, request: Any, session: Session, form: Mapping[str, str]) -> bytes:
        raw = (request.args or {}).get(b"file", [b""])[0]
        if not raw:
            raise FieldErrors({"file": "choose a settings file to import"})
        if len(raw) > MAX_IMPORT:
            raise FieldErrors({"file": f"the file is larger than {MAX_IMPORT // 1024} KiB"})
        imported = import_settings(self.console, raw, bool(form.get("network")), "file")
        try:
            self.console.set_pending(imported)
        except FieldErrors as e:
            raise FieldErrors({"file": forms.errors_text(e.errors)}) from None
        return self.show(
            request,
            session,
            None,
            {},
            message="Settings imported. Use Save/Restart to put them in force.",
        )


class ExportResource(ConsoleResource):
    def render_GET(self, request: Request) -> bytes:
        if session_of(self.console, request) is None:
            return redirect(request, "/login")
        network = query_of(request).get("network", "1") not in ("", "0")
        return export_response(self.console, request, network)
