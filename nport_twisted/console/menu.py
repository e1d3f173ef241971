# -*- test-case-name: tests.test_telnet_console.MenuTests -*-
"""
The NPort telnet console's menus, sans-IO: input lines in, text out; the
slow or outside actions (checking a password, Save/Restart, ping) are
returned as L{Effect}s for the protocol to run, whose L{Outcome} comes
back through L{ConsoleMenu.result}.

The screens follow MOXA's NPort 5x00 console (settings.md §10): the banner
(its field widths are fixed: scanners identify an NPort by them), "Please
keyin your password:", then

    << Main menu >>
      (1) Basic settings … (q) Quit
    Key in your selection:

The menus are generated from the web console's field catalogue
(L{nport_twisted.web.forms}): every setting a web page has is in the
matching menu, edited as form text and parsed by the same functions, so
the validation messages are the web's word for word, and a setting (or an
operating mode's fields) added to the catalogue appears in both consoles.

Conventions of ours (MOXA's sub-menus are not documented): sub-menus list
the settings with their pending values, numbered; C{m} goes back to the
main menu, C{q} quits.  Editing a setting asks for the new value: Enter
keeps the current one, a single C{-} empties a text.  Choices are picked
by number or name.  As on an NPort, changes are pending until Save/Restart
(C{s}), which asks C{(y/n)}; so do Change password and Load factory
default.  After a Save/Restart the console closes, as an NPort does when
it restarts (scripts wait for that).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from nport_twisted.config.identity import DeviceIdentity
from nport_twisted.config.settings import STANDARD_BAUDRATES, DeviceConfig, OpMode
from nport_twisted.web import forms
from nport_twisted.web.console import check_new_password
from nport_twisted.web.forms import Field, FieldErrors

DASHES = "-" * 77
PROMPT = "Key in your selection: "
PASSWORD_PROMPT = "Please keyin your password: "
MAX_ATTEMPTS = 3
MAX_QUEUED = 64

# -- effects: what the protocol runs for the menu -----------------------------------------


@attrs.frozen
class Login:
    """Check the console password."""

    password: str


@attrs.frozen
class Setup:
    """First start: spend the setup token and set the first password."""

    token: str
    password: str


@attrs.frozen
class ChangePassword:
    old: str
    new: str


@attrs.frozen
class SaveRestart:
    """Put the pending settings in force and save them."""


@attrs.frozen
class FactoryDefault:
    keep_network: bool


@attrs.frozen
class Ping:
    """Ping C{host} (validated: an IPv4 address or a host name); its output goes to the client."""

    host: str


Effect = Login | Setup | ChangePassword | SaveRestart | FactoryDefault | Ping


@attrs.frozen
class Outcome:
    """How an effect ended: C{message} for the user; C{close} ends the session."""

    ok: bool
    message: str = ""
    close: bool = False


@attrs.frozen
class Output:
    """
    What to do after one step: send C{text}; if C{effect}, run it and call
    L{ConsoleMenu.result}; C{secret}: do not echo the next line; C{close}:
    close the connection after sending.
    """

    text: str = ""
    effect: Effect | None = None
    secret: bool = False
    close: bool = False


class MenuModel(Protocol):
    """What the menu reads and changes (the console state, L{nport_twisted.web.WebConsole})."""

    @property
    def pending(self) -> DeviceConfig: ...

    @property
    def has_pending(self) -> bool: ...

    @property
    def implemented(self) -> frozenset[OpMode]: ...

    @property
    def password_set(self) -> bool: ...

    def set_pending(self, config: DeviceConfig) -> None: ...

    def identity(self) -> DeviceIdentity: ...

    def uptime(self) -> float: ...

    def port_status(self, index: int) -> dict[str, Any]: ...

    def serial_notes(self, index: int) -> dict[str, str]: ...

    def field_help(self, field: Field, index: int | None) -> str: ...


# -- texts ---------------------------------------------------------------------------------


def format_uptime(seconds: float) -> str:
    """MOXA's form: C{21 days, 15h:58m:07s}."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days} days, {hours:02d}h:{minutes:02d}m:{s:02d}s"


def banner(identity: DeviceIdentity, uptime_s: float) -> str:
    """
    The banner, line for line as an NPort sends it (two empty lines, 77
    dashes, the five fields with their fixed widths, 77 dashes); every
    line end becomes CR NUL LF on the wire.
    """
    return (
        "\n\n"
        f"{DASHES}\n"
        f"Model name       : {identity.model.name}\n"
        f"MAC address      : {identity.mac_text}\n"
        f"Serial No.       : {identity.serial_number}\n"
        f"Firmware version : {identity.firmware}\n"
        f"System uptime    : {format_uptime(uptime_s)}\n"
        f"{DASHES}\n"
    )


MAIN_MENU = """<< Main menu >>
  (1) Basic settings
  (2) Network settings
  (3) Serial settings
  (4) Operating settings
  (5) Accessible IP settings
  (6) Auto warning settings
  (7) Monitor
  (8) Ping
  (9) Change password
  (a) Load factory default
  (v) View settings
  (s) Save/Restart
  (q) Quit
"""

_YES = ("y", "yes")
_NO = ("n", "no")
_BOOL = {
    "1": True, "y": True, "yes": True, "on": True, "enable": True, "enabled": True, "true": True,
    "0": False, "n": False, "no": False, "off": False, "disable": False, "disabled": False,
    "false": False,
}
_HOST = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*\.?$")


def valid_ping_host(text: str) -> bool:
    """An IPv4 address or a DNS name: nothing a command line could take as an option."""
    return len(text) <= 253 and bool(_HOST.match(text))


# -- sections: one settings group, edited as form text ---------------------------------------


@attrs.frozen
class Step:
    """One question while editing an item: the form key it sets and how to read the answer."""

    key: str
    label: str
    field: Field  # the kind decides the parsing (text, int, choice, bool, secret)


@attrs.frozen
class Item:
    """One numbered entry of a sub-menu."""

    label: str
    value: str  # the pending value as shown
    steps: tuple[Step, ...]
    note: str = ""  # e.g. "requested 7, in force 8"
    help: str = ""


@attrs.frozen
class Section:
    """
    A settings group: its items, the form texts of its pending value, and
    how a changed form becomes the new pending configuration (raising
    L{FieldErrors} named as the form names its fields).
    """

    title: str
    items: tuple[Item, ...]
    texts: dict[str, str]
    parse: Callable[[dict[str, str]], DeviceConfig]
    index: int | None = None  # the serial port, for port sections
    part: str = "operating"


def _texts(fields: Sequence[Field], value: Any) -> dict[str, str]:
    """The form texts showing C{value} (as the web page's inputs would hold them)."""
    texts: dict[str, str] = {}
    for f in fields:
        current = getattr(value, f.name)
        if f.kind == "list":
            for i, t in enumerate(forms.list_texts(f, current), 1):
                texts[f"{f.name}.{i}"] = t
        else:
            texts[f.name] = forms.field_text(f, current)
    return texts


def _steps(f: Field) -> tuple[Step, ...]:
    if f.kind == "list":
        item = Field(f.name, f.label, "int" if f.item == "int" else "text")
        return tuple(Step(f"{f.name}.{i}", f"{f.label} {i}", item) for i in range(1, f.count + 1))
    return (Step(f.name, f.label, f),)


# -- the menu ---------------------------------------------------------------------------------


class ConsoleMenu:
    """
    One telnet session's dialogue.  C{client} is the peer's address (the
    accessible IP list must keep admitting it).
    """

    def __init__(self, model: MenuModel, client: str) -> None:
        self.model = model
        self.client = client
        self.logged_in = False
        self._out: list[str] = []
        self._handler: Callable[[str], None] = self._ignore
        self._secret = False
        self._effect: Effect | None = None  # running: input waits in the queue
        self._new_effect: Effect | None = None  # to hand to the protocol with the next output
        self._on_result: Callable[[Outcome], None] | None = None
        self._close = False
        self._queue: collections.deque[str] = collections.deque()
        self._attempts = 0
        self._back: Callable[[], None] = self._main_menu

    # -- driving ----------------------------------------------------------------------------

    def start(self) -> Output:
        """The banner and the first prompt."""
        self._say(banner(self.model.identity(), self.model.uptime()))
        self._login_prompt()
        return self._flush()

    def line(self, text: str, cancelled: bool = False) -> Output:
        """One line the user entered (C{cancelled}: ^C, back to where it makes sense)."""
        if self._close:
            return Output()
        if self._effect is not None:  # busy: keep the line for later (scripts type ahead)
            if len(self._queue) < MAX_QUEUED:
                self._queue.append("\x03" if cancelled else text)
            return Output()
        self._dispatch(text, cancelled)
        self._drain()
        return self._flush()

    def result(self, outcome: Outcome) -> Output:
        """The outcome of the effect of the last output."""
        on_result, self._on_result, self._effect = self._on_result, None, None
        if outcome.close:
            self._close = True  # before the handler, so it asks nothing more
        if on_result is not None:
            on_result(outcome)
        self._drain()
        return self._flush()

    def _dispatch(self, text: str, cancelled: bool) -> None:
        if cancelled:
            self._cancelled()
            return
        handler, self._handler = self._handler, self._ignore
        self._secret = False
        handler(text.strip())

    def _drain(self) -> None:
        while self._queue and self._effect is None and not self._close:
            text = self._queue.popleft()
            self._dispatch(text, text == "\x03")

    def _flush(self) -> Output:
        text, self._out = "".join(self._out), []
        effect, self._new_effect = self._new_effect, None
        return Output(text, effect, self._secret, self._close)

    def _say(self, text: str) -> None:
        self._out.append(text)

    def _ask(self, prompt: str, handler: Callable[[str], None], secret: bool = False) -> None:
        self._say(prompt)
        self._handler = handler
        self._secret = secret

    def _run(self, effect: Effect, on_result: Callable[[Outcome], None]) -> None:
        self._effect = self._new_effect = effect
        self._on_result = on_result

    def _quit(self, text: str = "") -> None:
        if text:
            self._say(text + "\n")
        self._close = True

    def _ignore(self, text: str) -> None:
        pass

    def _cancelled(self) -> None:
        self._secret = False
        if not self.logged_in:
            self._say("\n")
            self._login_prompt()
        else:
            self._back()

    # -- login --------------------------------------------------------------------------------

    def _login_prompt(self) -> None:
        if self.model.password_set:
            self._ask(PASSWORD_PROMPT, self._password_entered, secret=True)
            return
        self._say(
            "No password is set yet. Enter the one-time setup token printed in the service\n"
            "log at start-up, then choose the console password (8 to 128 characters).\n"
        )
        self._ask("Setup token: ", self._token_entered)

    def _password_entered(self, password: str) -> None:
        self._say("\n")
        self._run(Login(password), self._login_result)

    def _login_result(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.logged_in = True
            self._attempts = 0
            self._main_menu()
            return
        self._failed(outcome.message or "Password incorrect.")

    def _failed(self, message: str) -> None:
        self._attempts += 1
        self._say(message + "\n")
        if self._attempts >= MAX_ATTEMPTS:
            self._quit("Too many failed attempts; closing.")
        elif not self._close:
            self._login_prompt()

    def _token_entered(self, token: str) -> None:
        def password(first: str) -> None:
            self._say("\n")
            self._ask("Retype password: ", lambda again: retyped(first, again), secret=True)

        def retyped(first: str, again: str) -> None:
            self._say("\n")
            try:
                check_new_password(first, again)
            except FieldErrors as e:
                self._failed(_errors_text(e.errors))
                return
            self._run(Setup(token, first), self._setup_result)

        self._ask("New password: ", password, secret=True)

    def _setup_result(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.logged_in = True
            self._attempts = 0
            self._say((outcome.message or "Password set.") + "\n")
            self._main_menu()
            return
        self._failed(outcome.message or "Wrong setup token.")

    # -- main menu ------------------------------------------------------------------------------

    def _main_menu(self) -> None:
        self._back = self._main_menu
        self._say("\n" + MAIN_MENU)
        if self.model.has_pending:
            self._say("  Settings were changed: (s) Save/Restart puts them in force.\n")
        self._ask("\n" + PROMPT, self._main_selected)

    def _main_selected(self, key: str) -> None:
        actions: dict[str, Callable[[], None]] = {
            "1": lambda: self._show(self._basic()),
            "2": lambda: self._show(self._network()),
            "3": lambda: self._choose_port("Serial settings", self._serial),
            "4": lambda: self._choose_port("Operating settings", self._operating),
            "5": lambda: self._show(self._accessible()),
            "6": lambda: self._show(self._warning()),
            "7": self._monitor,
            "8": self._ping,
            "9": self._change_password,
            "a": self._factory,
            "v": self._view,
            "s": self._save_restart,
            "q": lambda: self._quit("Bye."),
        }
        action = actions.get(key.lower())
        if action is None:
            self._main_menu()
        else:
            action()

    # -- sub-menus ------------------------------------------------------------------------------

    def _choose_port(self, title: str, build: Callable[[int], Section]) -> None:
        count = len(self.model.pending.ports)
        if count == 1:
            self._show(build(0))
            return

        def chosen(text: str) -> None:
            if text.lower() == "m" or not text:
                self._main_menu()
            elif text.lower() == "q":
                self._quit("Bye.")
            elif text.isdecimal() and 1 <= int(text) <= count:
                self._show(build(int(text) - 1))
            else:
                self._choose_port(title, build)

        self._say(f"\n<< Main menu->{title} >>\n")
        self._ask(f"Port (1-{count}, m = back): ", chosen)

    def _show(self, section: Section) -> None:
        self._back = lambda: self._show(self._rebuild(section))
        self._say(f"\n<< Main menu->{section.title} >>\n")
        width = max((len(item.label) for item in section.items if item.steps), default=0)
        keys = len(f"({len(section.items)})")
        for n, item in enumerate(section.items, 1):
            key = f"({n})".ljust(keys)
            if not item.steps:  # an action
                self._say(f"  {key} {item.label}\n")
                continue
            note = f"  ({item.note})" if item.note else ""
            self._say(f"  {key} {item.label.ljust(width)} : {item.value}{note}\n")
        self._say("  (m) Back to main menu\n  (q) Quit\n")
        self._ask("\n" + PROMPT, lambda key: self._section_selected(section, key))

    def _rebuild(self, section: Section) -> Section:
        """The same section with today's pending values."""
        title = section.title
        if section.index is None:
            builders = {
                "Basic settings": self._basic,
                "Network settings": self._network,
                "Accessible IP settings": self._accessible,
                "Auto warning settings": self._warning,
            }
            return builders[title]()
        build = self._serial if section.part == "serial" else self._operating
        return build(section.index)

    def _section_selected(self, section: Section, key: str) -> None:
        key = key.lower()
        if key == "m":
            self._main_menu()
        elif key == "q":
            self._quit("Bye.")
        elif key.isdecimal() and 1 <= int(key) <= len(section.items):
            self._edit(section, section.items[int(key) - 1])
        else:
            self._show(self._rebuild(section))

    def _edit(self, section: Section, item: Item) -> None:
        if not item.steps:  # an action, not a setting: copy the serial settings to all ports
            self._commit(section, dict(section.texts, apply_all="on"), item)
            return
        texts = dict(section.texts)
        if item.help:
            self._say(f"  {item.help}\n")
        if any(step.field.kind in ("text", "byte") for step in item.steps):
            self._say("  Enter keeps the value; - alone empties it.\n")
        else:
            self._say("  Enter keeps the value.\n")
        self._step(section, item, texts, 0)

    def _step(self, section: Section, item: Item, texts: dict[str, str], n: int) -> None:
        if n == len(item.steps):
            self._commit(section, texts, item)
            return
        step = item.steps[n]
        f = step.field
        current = texts.get(step.key, "")

        def answered(text: str) -> None:
            if f.kind == "secret":
                self._say("\n")
            value = self._read(step, text, current)
            if value is None:
                self._say(f"  {self._choices_hint(f)}\n")
                self._step(section, item, texts, n)
                return
            texts[step.key] = value
            self._step(section, item, texts, n + 1)

        if f.kind in ("choice", "bool"):
            self._say(f"  {self._choices_hint(f)}\n")
        shown = "(hidden)" if f.kind == "secret" else self._shown(f, current)
        self._ask(f"{step.label} [{shown}]: ", answered, secret=f.kind == "secret")

    def _shown(self, f: Field, text: str) -> str:
        if f.kind == "bool":
            return "Enable" if text else "Disable"
        if f.kind == "choice":
            return next((c.label for c in f.choices if c.key == text), text)
        return text

    def _choices_hint(self, f: Field) -> str:
        if f.kind == "bool":
            return "1 = Enable, 0 = Disable"
        if f.kind == "baud":
            return "standard rates: " + " ".join(str(b) for b in STANDARD_BAUDRATES)
        if f.kind == "choice":
            if _numeric_choices(f):
                return "one of: " + ", ".join(c.label for c in f.choices)
            return "  ".join(f"({n}) {c.label}" for n, c in enumerate(f.choices, 1))
        return ""

    def _read(self, step: Step, text: str, current: str) -> str | None:
        """The form text of an answer (None: not one of the choices, ask again)."""
        f = step.field
        if text == "":
            return current
        if f.kind == "bool":
            on = _BOOL.get(text.lower())
            return None if on is None else ("on" if on else "")
        if f.kind == "choice":
            return _choice_key(f, text)
        if text == "-":
            return ""
        return text

    def _commit(self, section: Section, texts: dict[str, str], item: Item) -> None:
        try:
            config = section.parse(texts)
            self.model.set_pending(config)
        except FieldErrors as e:
            errors = forms.localized(e.errors, section.index, section.part)
            self._say("Not stored:\n")
            for key, reason in errors.items():
                label = "" if key == "_form" else self._label(section, key) + ": "
                self._say(f"  {label}{reason}\n")
        else:
            self._say("Settings stored. Use (s) Save/Restart in the main menu to put them in force.\n")
        self._show(self._rebuild(section))

    def _label(self, section: Section, key: str) -> str:
        for item in section.items:
            for step in item.steps:
                if step.key == key or step.field.name == key:
                    return step.label if len(item.steps) == 1 else f"{item.label} {step.label}"
        return forms.describe_field(key)

    # -- the sections -----------------------------------------------------------------------------

    def _items(self, fields: Sequence[Field], value: Any, index: int | None = None,
               notes: Mapping[str, str] | None = None) -> tuple[Item, ...]:
        items = []
        for f in fields:
            current = getattr(value, f.name)
            shown = forms.setting_text(f, current)
            default = forms.port_default(f.name, index)
            if default is not None and current == 0:
                shown = f"0 (= {default})"
            items.append(Item(f.label, shown, _steps(f), (notes or {}).get(f.name, ""),
                              self.model.field_help(f, index)))
        return tuple(items)

    def _device_section(self, title: str, name: str, fields: tuple[Field, ...]) -> Section:
        pending = self.model.pending
        value = getattr(pending, name)

        def parse(texts: dict[str, str]) -> DeviceConfig:
            current = self.model.pending
            new = forms.parse_fields(fields, texts, getattr(current, name))
            return attrs.evolve(current, **{name: new})

        return Section(title, self._items(fields, value), _texts(fields, value), parse)

    def _basic(self) -> Section:
        return self._device_section("Basic settings", "basic", forms.BASIC_FIELDS)

    def _network(self) -> Section:
        return self._device_section("Network settings", "network", forms.NETWORK_FIELDS)

    def _warning(self) -> Section:
        return self._device_section("Auto warning settings", "auto_warning",
                                    forms.AUTO_WARNING_FIELDS)

    def _serial(self, index: int) -> Section:
        pending = self.model.pending
        value = pending.ports[index].serial
        fields = forms.SERIAL_FIELDS
        items = self._items(fields, value, index, self.model.serial_notes(index))
        count = len(pending.ports)

        def parse(texts: dict[str, str]) -> DeviceConfig:
            current = self.model.pending
            new = forms.parse_serial_form(texts, current.ports[index].serial)
            targets = range(count) if texts.get("apply_all") else [index]
            for i in targets:
                port = current.ports[i]
                serial = new if i == index else attrs.evolve(new, alias=port.serial.alias)
                current = current.replace_port(i, attrs.evolve(port, serial=serial))
            return current

        if count > 1:
            items += (Item("Copy these settings to all ports (not the alias)", "", ()),)
        return Section(f"Serial settings->Port {index + 1}", items, _texts(fields, value), parse,
                       index, "serial")

    def _operating(self, index: int) -> Section:
        pending = self.model.pending
        value = pending.ports[index].operating
        implemented = self.model.implemented
        modes = tuple(m for m in OpMode if m in implemented)
        mode_field = Field(
            "mode",
            "Operation mode",
            "choice",
            tuple(forms.Choice(m.value, forms.MODE_LABELS[m], m) for m in modes),
        )
        fields = forms.operating_fields(value.mode)
        texts = _texts(fields, value)
        texts["mode"] = value.mode.value
        items = [Item(mode_field.label, forms.MODE_LABELS[value.mode], (Step("mode", mode_field.label, mode_field),))]
        items += self._items(fields, value, index)
        if "udp_destinations" in forms.MODE_FIELDS[value.mode]:
            for i in range(1, forms.UDP_ROWS + 1):
                dest = value.udp_destinations[i - 1] if i <= len(value.udp_destinations) else None
                for part, text in (("begin", dest.begin if dest else ""),
                                   ("end", dest.end if dest else ""),
                                   ("port", str(dest.port) if dest else "")):
                    texts[f"udp.{i}.{part}"] = text
                shown = f"{dest.begin}-{dest.end}:{dest.port}" if dest else "-"
                text_field = Field(f"udp.{i}", f"UDP destination {i}")
                items.append(Item(f"UDP destination {i}", shown, (
                    Step(f"udp.{i}.begin", "Begin IP", text_field),
                    Step(f"udp.{i}.end", "End IP", text_field),
                    Step(f"udp.{i}.port", "Port", Field(f"udp.{i}.port", "Port", "int")),
                )))

        def parse(form: dict[str, str]) -> DeviceConfig:
            current = self.model.pending
            port = current.ports[index]
            base = port.operating
            chosen = OpMode(form.get("mode", base.mode.value))
            if chosen is not base.mode:
                # A new mode shows its own fields: start from their current values.
                form = dict(_texts(forms.operating_fields(chosen), base), mode=chosen.value)
            new = forms.parse_operating_form(form, base, implemented)
            return current.replace_port(index, attrs.evolve(port, operating=new))

        return Section(f"Operating settings->Port {index + 1}", tuple(items), texts, parse, index)

    def _accessible(self) -> Section:
        entries = self.model.pending.accessible_ip.entries
        texts: dict[str, str] = {}
        items = []
        for i in range(1, forms.ACCESSIBLE_ROWS + 1):
            entry = entries[i - 1] if i <= len(entries) else None
            if entry is not None:
                texts[f"acl.{i}.ip"] = entry.ip
                texts[f"acl.{i}.netmask"] = entry.netmask
                texts[f"acl.{i}.active"] = "on" if entry.active else ""
                shown = f"{'Active' if entry.active else 'Inactive'} {entry.ip} / {entry.netmask}"
            else:
                shown = "-"
            items.append(Item(f"Entry {i}", shown, (
                Step(f"acl.{i}.active", "Active", Field(f"acl.{i}.active", "Active", "bool")),
                Step(f"acl.{i}.ip", "IP address", Field(f"acl.{i}.ip", "IP address")),
                Step(f"acl.{i}.netmask", "Netmask", Field(f"acl.{i}.netmask", "Netmask")),
            )))

        def parse(form: dict[str, str]) -> DeviceConfig:
            # The form sends a checkbox only when ticked.
            form = {k: v for k, v in form.items() if not (k.endswith(".active") and not v)}
            acl = forms.parse_accessible_form(form)
            forms.check_not_locked_out(acl, self.client)
            return attrs.evolve(self.model.pending, accessible_ip=acl)

        return Section("Accessible IP settings", tuple(items), texts, parse)

    # -- monitor, ping, view -------------------------------------------------------------------------

    _MONITOR = (
        ("Line", (("Mode", "mode"), ("Device", "device"), ("Listening", "listening"),
                  ("Connected peers", "peers"), ("Buffered", "buffered"))),
        ("Async", (("Tx", "tx"), ("Rx", "rx"), ("DSR", "dsr"), ("CTS", "cts"), ("DCD", "dcd"),
                   ("Parity err", "parity"), ("Framing err", "framing"),
                   ("Overrun err", "overrun"), ("Break", "break"))),
        ("Async settings", (("Baud rate", "baudrate"), ("Data bits", "bytesize"),
                            ("Stop bits", "stopbits"), ("Parity", "parity_setting"),
                            ("RTS/CTS", "rtscts"), ("XON/XOFF", "xonxoff"),
                            ("DTR/DSR", "dtrdsr"), ("FIFO", "fifo"),
                            ("Interface", "interface"))),
    )

    def _monitor(self) -> None:
        self._back = self._monitor
        count = len(self.model.pending.ports)
        displays = [forms.monitor_display(self.model.port_status(i)) for i in range(count)]
        self._say("\n<< Main menu->Monitor >>\n")
        for title, columns in self._MONITOR:
            self._say(f"{title}\n")
            rows = [["Port", *[label for label, _ in columns]]]
            rows += [[str(n), *[d[key] for _, key in columns]] for n, d in enumerate(displays, 1)]
            widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
            for row in rows:
                self._say("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
        self._say("  (r) Refresh (Enter)\n  (m) Back to main menu\n  (q) Quit\n")

        def selected(key: str) -> None:
            key = key.lower()
            if key == "m":
                self._main_menu()
            elif key == "q":
                self._quit("Bye.")
            else:
                self._monitor()

        self._ask("\n" + PROMPT, selected)

    def _ping(self) -> None:
        def host(text: str) -> None:
            if not text:
                self._main_menu()
            elif not valid_ping_host(text):
                self._say("  Not an IP address or host name.\n")
                self._ping()
            else:
                self._run(Ping(text), pinged)

        def pinged(outcome: Outcome) -> None:
            if outcome.message:
                self._say(outcome.message + "\n")
            self._main_menu()

        self._say("\n<< Main menu->Ping >>\n")
        self._ask("IP address or host name (Enter = back): ", host)

    def _view(self) -> None:
        self._say("\n<< Main menu->View settings >>\n")
        pending = self.model.pending
        sections = [self._basic(), self._network()]
        for i in range(len(pending.ports)):
            sections += [self._serial(i), self._operating(i)]
        sections += [self._accessible(), self._warning()]
        for section in sections:
            self._say(f"{section.title}\n")
            items = [item for item in section.items if item.steps]
            if section.title == "Accessible IP settings":
                items = [item for item in items if item.value != "-"]
                if not items:
                    self._say("  (no entries: every host may connect)\n")
            width = max((len(item.label) for item in items), default=0)
            for item in items:
                note = f"  ({item.note})" if item.note else ""
                self._say(f"  {item.label.ljust(width)} : {item.value}{note}\n")
        if self.model.has_pending:
            self._say("These are the pending settings: (s) Save/Restart puts them in force.\n")
        self._main_menu()

    # -- password, factory default, Save/Restart ------------------------------------------------------

    def _change_password(self) -> None:
        def old(text: str) -> None:
            self._say("\n")
            self._ask("New password: ", lambda new: first(text, new), secret=True)

        def first(old_pw: str, new: str) -> None:
            self._say("\n")
            self._ask("Retype password: ", lambda again: retyped(old_pw, new, again), secret=True)

        def retyped(old_pw: str, new: str, again: str) -> None:
            self._say("\n")
            try:
                check_new_password(new, again)
            except FieldErrors as e:
                self._say("Not changed: " + _errors_text(e.errors) + "\n")
                self._main_menu()
                return
            self._ask("Change the password (y/n)? ", lambda yes: confirmed(old_pw, new, yes))

        def confirmed(old_pw: str, new: str, yes: str) -> None:
            if yes.lower() not in _YES:
                self._say("Not changed.\n")
                self._main_menu()
                return
            self._run(ChangePassword(old_pw, new), done)

        def done(outcome: Outcome) -> None:
            self._say((outcome.message or ("Password changed." if outcome.ok else "Not changed.")) + "\n")
            if not self._close:
                self._main_menu()

        self._say("\n<< Main menu->Change password >>\n")
        self._ask("Old password: ", old, secret=True)

    def _factory(self) -> None:
        def keep(text: str) -> None:
            if text.lower() not in ("", *_YES, *_NO):
                self._factory()
                return
            keep_network = text.lower() not in _NO
            self._ask("Load factory default now (y/n)? ", lambda yes: confirmed(keep_network, yes))

        def confirmed(keep_network: bool, yes: str) -> None:
            if yes.lower() not in _YES:
                self._say("Nothing was changed.\n")
                self._main_menu()
                return
            self._run(FactoryDefault(keep_network), done)

        def done(outcome: Outcome) -> None:
            self._say(outcome.message + "\n")
            self._main_menu()

        self._say("\n<< Main menu->Load factory default >>\n"
                  "Every setting returns to its factory default and is put in force at once.\n"
                  "The password and the device identity are kept.\n")
        self._ask("Keep the network settings (y/n) [y]: ", keep)

    def _save_restart(self) -> None:
        def confirmed(yes: str) -> None:
            if yes.lower() not in _YES:
                self._main_menu()
                return
            self._run(SaveRestart(), done)

        def done(outcome: Outcome) -> None:
            self._say(outcome.message + "\n")
            if outcome.ok:
                # An NPort restarts here and the connection ends; scripts wait for that.
                self._quit("The console closes now, as an NPort does when it restarts.")
            else:
                self._main_menu()

        state = ("Settings were changed and are not in force yet.\n" if self.model.has_pending
                 else "No settings changes are waiting.\n")
        self._say(f"\n<< Main menu->Save/Restart >>\n{state}")
        self._ask("Save/Restart (y/n)? ", confirmed)


def _numeric_choices(f: Field) -> bool:
    return all(re.fullmatch(r"\d+(\.\d+)?", c.label) for c in f.choices)


def _choice_key(f: Field, text: str) -> str | None:
    """The choice C{text} picks: its label, key or (unless the labels are numbers) its number."""
    low = text.lower()
    for c in f.choices:
        if low in (c.label.lower(), c.key.lower()):
            return c.key
    if not _numeric_choices(f) and text.isdecimal() and 1 <= int(text) <= len(f.choices):
        return f.choices[int(text) - 1].key
    return None


def _errors_text(errors: Mapping[str, str]) -> str:
    return "; ".join(errors.values())


__all__ = [
    "MAIN_MENU",
    "PASSWORD_PROMPT",
    "PROMPT",
    "ChangePassword",
    "ConsoleMenu",
    "Effect",
    "FactoryDefault",
    "Login",
    "MenuModel",
    "Outcome",
    "Output",
    "Ping",
    "SaveRestart",
    "Setup",
    "banner",
    "format_uptime",
    "valid_ping_host",
]
