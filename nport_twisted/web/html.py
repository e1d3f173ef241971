# -*- test-case-name: tests.test_web -*-
"""
HTML of the web console: the page frame (banner, NPort menu, main area)
and form widgets, built with L{twisted.web.template} tags so every value is
escaped.  No inline script or style: the Content-Security-Policy allows
only C{/static/nport.css} and C{/static/nport.js}.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.python.failure import Failure
from twisted.web.template import Tag, flattenString, tags


def _main(**attributes: str) -> Tag:
    """A C{<main>} tag (twisted.web.template's tag factory predates it)."""
    return Tag("main")(**attributes)


from nport_twisted.config.settings import STANDARD_BAUDRATES
from nport_twisted.web.forms import Field, field_text, list_texts

TITLE = "NPort Web Console"


def flatten(root: Any) -> bytes:
    """Tags to bytes, synchronously (nothing in our pages is asynchronous)."""
    out: list[Any] = []
    flattenString(None, root).addBoth(out.append)
    result = out[0]
    if isinstance(result, Failure):
        result.raiseException()
    return b"<!DOCTYPE html>\n" + result  # type: ignore[no-any-return]


def classic_title(body: bytes) -> bytes:
    """
    C{body} with its title tag in capitals, as MOXA's firmware writes it
    (C{<TITLE>NPort Web Console</TITLE>}); scanners such as nmap match that
    case exactly.  HTML does not care.
    """
    return body.replace(f"<title>{TITLE}</title>".encode(), f"<TITLE>{TITLE}</TITLE>".encode(), 1)


@attrs.frozen
class Frame:
    """What the frame around a logged-in page shows."""

    port_count: int
    csrf: str
    banner: tuple[tuple[str, str], ...] = ()  # (label, value) in the top bar
    pending: bool = False
    current: str = ""  # menu entry of this page, e.g. "/serial?port=1"


def _menu(frame: Frame) -> Tag:
    def item(href: str, label: str) -> Tag:
        link = tags.a(href=href)(label)
        if href == frame.current:
            link(class_="current", **{"aria-current": "page"})
        return tags.li(link)

    def port_group(label: str, base: str) -> Tag:
        return tags.li(
            tags.span(class_="group")(label),
            tags.ul(
                *[item(f"{base}?port={n}", f"Port {n}") for n in range(1, frame.port_count + 1)]
            ),
        )

    return tags.nav(class_="menu", **{"aria-label": "Main Menu"})(
        tags.div(class_="menu-title")("Main Menu"),
        tags.ul(
            item("/overview", "Overview"),
            item("/basic", "Basic Settings"),
            item("/network", "Network Settings"),
            port_group("Serial Settings", "/serial"),
            port_group("Operating Settings", "/operating"),
            item("/accessible", "Accessible IP Settings"),
            item("/warning", "Auto Warning Settings"),
            item("/monitoring", "Monitoring Settings"),
            item("/monitor", "Monitor"),
            item("/password", "Change Password"),
            item("/factory", "Load Factory Default"),
            item("/config", "Export/Import"),
            item("/saverestart", "Save/Restart"),
        ),
        tags.form(method="post", action="/logout", class_="logout")(
            csrf_input(frame.csrf), tags.button(type="submit")("Logout")
        ),
    )


def _head(csrf: str | None) -> Tag:
    head = tags.head(
        tags.meta(charset="utf-8"),
        tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
        tags.title(TITLE),
        tags.link(rel="stylesheet", href="/static/nport.css"),
        tags.script(src="/static/nport.js", defer="defer"),
    )
    if csrf:
        head(tags.meta(name="csrf-token", content=csrf))
    return head


def _banner(items: Iterable[tuple[str, str]]) -> Tag:
    return tags.header(class_="top")(
        tags.div(class_="logo")(tags.span(class_="brand")("NPort"), " ", tags.span("Web Console")),
        tags.dl(class_="ident")(*[[tags.dt(k), tags.dd(v)] for k, v in items]),
    )


def page(frame: Frame, title: str, *content: Any, message: str = "", error: str = "") -> bytes:
    """A page of the logged-in console."""
    notices: list[Tag] = []
    if message:
        notices.append(tags.p(class_="ok", role="status")(message))
    if error:
        notices.append(tags.p(class_="error-box", role="alert")(error))
    if frame.pending and frame.current != "/saverestart":
        notices.append(
            tags.form(method="post", action="/saverestart", class_="pending")(
                csrf_input(frame.csrf),
                "Settings were changed but are not in force yet. ",
                tags.button(type="submit")("Save/Restart"),
                " to apply them.",
            )
        )
    return flatten(
        tags.html(lang="en")(
            _head(frame.csrf),
            tags.body(
                _banner(frame.banner),
                tags.div(class_="frame")(
                    _menu(frame),
                    _main()(tags.h1(title), *notices, *content),
                ),
            ),
        )
    )


def bare_page(title: str, *content: Any, error: str = "", status: str = "") -> bytes:
    """A page shown before login: no menu and nothing about the device."""
    body: list[Any] = [tags.h1(title)]
    if status:
        body.append(tags.p(class_="ok", role="status")(status))
    if error:
        body.append(tags.p(class_="error-box", role="alert")(error))
    return flatten(
        tags.html(lang="en")(
            _head(None),
            tags.body(class_="bare")(_banner(()), _main(class_="login")(*body, *content)),
        )
    )


def csrf_input(token: str) -> Tag:
    return tags.input(type="hidden", name="csrf_token", value=token)


def _error(errors: Mapping[str, str], name: str) -> list[Tag]:
    if name in errors:
        return [tags.span(class_="error", id=f"{name}-error")(errors[name])]
    return []


def _input(
    name: str,
    value: str,
    errors: Mapping[str, str],
    size: int = 24,
    kind: str = "text",
    label: str = "",
) -> Tag:
    tag = tags.input(type=kind, name=name, id=name, value=value, size=str(size))
    if label:
        tag(**{"aria-label": label})
    if name in errors:
        tag(**{"aria-invalid": "true", "aria-describedby": f"{name}-error"})
    return tag


def widget(
    field: Field,
    texts: Mapping[str, str],
    errors: Mapping[str, str],
    disabled: Collection[str] = (),
    note: str = "",
    help: str | None = None,
) -> list[Any]:
    """
    The input(s) of C{field} showing C{texts}, with its error after it and
    C{note} (e.g. "requested 7, in force 8") after that, then C{help}
    (default: the field's own).
    """
    name = field.name
    text = texts.get(name, "")
    out: list[Any] = []
    if field.kind == "bool":
        box = tags.input(type="checkbox", name=name, id=name, value="on")
        if text:
            box(checked="checked")
        out.append(box)
    elif field.kind in ("choice", "baud"):
        options: list[tuple[str, str]]
        if field.kind == "baud":
            options = [(str(b), str(b)) for b in STANDARD_BAUDRATES]
            if text and text not in {k for k, _ in options}:
                options.append((text, text))
        else:
            options = [(c.key, c.label) for c in field.choices]
        select = tags.select(name=name, id=name)
        for key, label in options:
            option = tags.option(value=key)(label)
            if key == text:
                option(selected="selected")
            if key in disabled:
                option(disabled="disabled")
            select(option)
        out.append(select)
    elif field.kind == "list":
        for i in range(1, field.count + 1):
            sub = f"{name}.{i}"
            out.append(
                _hints(
                    _input(sub, texts.get(sub, ""), errors, field.size, label=f"{field.label} {i}"),
                    field, field.item,
                )
            )
            out.extend(_error(errors, sub))
            out.append(" ")
    elif field.kind == "secret":
        out.append(_input(name, "", errors, field.size, kind="password"))
    else:
        out.append(_hints(_input(name, text, errors, field.size), field, field.kind))
    if name in errors:
        tag = out[0]
        if isinstance(tag, Tag) and tag.tagName in ("select", "input") and field.kind != "list":
            tag(**{"aria-invalid": "true", "aria-describedby": f"{name}-error"})
    out.extend(_error(errors, name))
    if note:
        out.append(tags.span(class_="refused", id=f"{name}-refused")(note))
    shown_help = field.help if help is None else help
    if shown_help:
        out.append(tags.span(class_="help")(shown_help))
    return out


def _hints(tag: Tag, field: Field, kind: str) -> Tag:
    """Input hints matching the validator: maxlength for text, a numeric keyboard for numbers."""
    if kind == "int":
        tag(inputmode="numeric")
        if field.high is not None:
            digits = len(str(field.high)) + (1 if (field.low or 0) < 0 else 0)
            tag(maxlength=str(digits))
    elif field.max_length is not None:
        tag(maxlength=str(field.max_length))
    return tag


def form_rows(
    fields: Iterable[Field],
    texts: Mapping[str, str],
    errors: Mapping[str, str],
    disabled: Mapping[str, Collection[str]] | None = None,
    notes: Mapping[str, str] | None = None,
    helps: Mapping[str, str] | None = None,
) -> list[Tag]:
    rows = []
    for f in fields:
        label_for = f"{f.name}.1" if f.kind == "list" else f.name
        rows.append(
            tags.tr(
                class_="invalid"
                if any(k == f.name or k.startswith(f.name + ".") for k in errors)
                else ""
            )(
                tags.th(tags.label(for_=label_for)(f.label)),
                tags.td(
                    *widget(
                        f, texts, errors, (disabled or {}).get(f.name, ()),
                        (notes or {}).get(f.name, ""), (helps or {}).get(f.name),
                    )
                ),
            )
        )
    return rows


def settings_form(
    action: str,
    csrf: str,
    rows: Sequence[Any],
    errors: Mapping[str, str],
    extra: Sequence[Any] = (),
    submit: str = "Submit",
    enctype: str = "",
) -> Tag:
    form = tags.form(method="post", action=action, class_="settings")
    if enctype:
        form(enctype=enctype)
    general = errors.get("_form")
    return form(
        csrf_input(csrf),
        tags.p(class_="error-box", role="alert")(general) if general else "",
        tags.table(class_="form")(*rows),
        *extra,
        tags.p(class_="buttons")(
            tags.button(type="submit", name="Submit", value="Submit")(submit)
        ),
    )


def texts_for(fields: Iterable[Field], value: Any) -> dict[str, str]:
    """The form texts showing the settings C{value}."""
    texts: dict[str, str] = {}
    for f in fields:
        current = getattr(value, f.name)
        if f.kind == "list":
            for i, t in enumerate(list_texts(f, current), 1):
                texts[f"{f.name}.{i}"] = t
        else:
            texts[f.name] = field_text(f, current)
    return texts


def info_table(rows: Iterable[tuple[str, Any]], id_prefix: str = "") -> Tag:
    return tags.table(class_="info")(
        *[
            tags.tr(
                tags.th(k),
                tags.td(id=f"{id_prefix}{k.lower().replace(' ', '-').replace('.', '')}")(v),
            )
            for k, v in rows
        ]
    )
