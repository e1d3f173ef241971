# -*- test-case-name: tests.test_web.FormsTests -*-
"""
The web console's codecs, free of I/O and of twisted.web: HTML form fields,
JSON and the classic NPort ``Set.htm`` encodings, each to and from the
settings values of L{nport_twisted.config.settings}, with errors per field.

Three encodings of the same settings (settings.md §2-§5, §11):

  - HTML forms: one L{Field} per setting, text in and out; the field
    tables (L{BASIC_FIELDS} …) also drive the page rendering.
  - JSON (``/api/v1``): the settings' own field names; JSON booleans,
    numbers, strings (enum values such as ``"tcp-server"``), lists and
    objects.  Secrets are never written out (the mail password is
    write-only; the password hash is not part of any section).
  - Classic ``Set.htm?…&setfunc=<Group>``: MOXA's field names and the web
    encodings, which differ from the wire ones (BaudRate is the index in
    L{STANDARD_BAUDRATES}, Parity a UART LCR value …).

Every parser raises L{FieldErrors}: a mapping of field name to a reason
that can be shown next to that field.
"""

from __future__ import annotations

import enum
import json
import re
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from nport_twisted.wire.packing import DelimiterProcess
from nport_twisted.config.settings import (
    STANDARD_BAUDRATES,
    AccessibleIP,
    AccessibleIPSettings,
    AutoWarningSettings,
    MonitoringSettings,
    BasicSettings,
    ConnectionControl,
    DeviceConfig,
    FlowControl,
    IPConfig,
    NetworkSettings,
    OperatingSettings,
    OpMode,
    Parity,
    PortConfig,
    SerialInterface,
    SerialSettings,
    UdpDestination,
    input_limits,
    realcom_command_port,
    realcom_data_port,
    tcp_server_port,
)

_T = TypeVar("_T")


class FieldErrors(ValueError):
    """Input that does not validate; C{errors} maps each bad field to the reason."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def reason_for(message: str, field: str) -> str:
    """A validator's message without the leading field name ("baudrate must …" -> "must …")."""
    for prefix in (f"{field}: ", f"{field} "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _message(e: Exception) -> str:
    return e.args[0] if e.args and isinstance(e.args[0], str) else str(e)


def _field_error(cls: type[Any], e: Exception, names: Mapping[str, str] | None) -> FieldErrors:
    """A validation error of C{cls} on the field its message names first, else on C{"_form"}."""
    message = _message(e)
    hits = []
    for f in attrs.fields(cls):
        m = re.search(rf"(?<![\w]){re.escape(f.name)}(?![\w])", message)
        if m:
            hits.append((m.start(), f.name))
    if hits:
        name = min(hits)[1]
        return FieldErrors({(names or {}).get(name, name): reason_for(message, name)})
    return FieldErrors({"_form": message})


def field_checks(
    cls: type[Any], inst: Any, values: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> dict[str, str]:
    """
    Run each field's own validator on C{values} (not the cross-field rules),
    so every range error shows at once, next to the parse errors.
    """
    errors: dict[str, str] = {}
    by_name = {f.name: f for f in attrs.fields(cls)}
    for name, value in values.items():
        f = by_name.get(name)
        if f is None or f.validator is None:
            continue
        try:
            converted = f.converter(value) if callable(f.converter) else value
            f.validator(inst, f, converted)
        except (ValueError, TypeError) as e:
            errors[(names or {}).get(name, name)] = reason_for(_message(e), name)
    return errors


def evolve_checked(
    base: _T, values: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> _T:
    """
    C{attrs.evolve(base, **values)}; a validation error is reported on the
    field its message names first (a cross-field rule names two), else on
    C{"_form"}.  C{names} renames settings fields to the caller's field names.
    """
    try:
        return attrs.evolve(base, **values)  # type: ignore[misc]
    except (ValueError, TypeError) as e:
        raise _field_error(type(base), e, names) from None


def construct_checked(
    cls: type[_T], values: Mapping[str, Any], names: Mapping[str, str] | None = None
) -> _T:
    """C{cls(**values)} with errors as L{evolve_checked}."""
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        raise _field_error(cls, e, names) from None


# -- HTML form fields ---------------------------------------------------------------------------


@attrs.frozen
class Choice:
    """One option of a select: the form text, its label and the settings value."""

    key: str
    label: str
    value: Any


@attrs.frozen
class Field:
    """
    One form field.  C{kind}:

      - C{text}, C{int}: a text input;
      - C{bool}: a checkbox (absent from a submitted form = off);
      - C{choice}: a select of C{choices};
      - C{baud}: a select of the standard rates (any other rate is kept);
      - C{byte}: a hex byte (C{0D}), empty = off;
      - C{secret}: a password input, empty = keep the stored value;
      - C{list}: C{count} text inputs C{name.1} … (empty ones are skipped),
        items parsed as C{item} (C{text} or C{int}).
    """

    name: str
    label: str
    kind: str = "text"
    choices: tuple[Choice, ...] = ()
    help: str = ""
    count: int = 0
    item: str = "text"
    size: int = 24
    # What the settings validator allows (input hints: maxlength, numeric range).
    max_length: int | None = None
    low: int | None = None
    high: int | None = None


def _hinted(cls: type[Any], fields: Iterable[Field]) -> tuple[Field, ...]:
    """
    C{fields} with the limits their settings validators state
    (L{input_limits}), so the inputs carry matching maxlength/numeric
    hints; a number without help text gets its range as help.
    """
    out = []
    for f in fields:
        limits = input_limits(cls, f.name)
        if limits:
            f = attrs.evolve(f, max_length=limits.get("max_length", f.max_length),
                             low=limits.get("low", f.low), high=limits.get("high", f.high))
        if f.kind == "int" and f.low is not None and f.high is not None and not f.help:
            f = attrs.evolve(f, help=f"{f.low}-{f.high}")
        out.append(f)
    return tuple(out)


def _enum_choices(
    enum_type: type[enum.Enum], labels: Mapping[Any, str] | None = None
) -> tuple[Choice, ...]:
    return tuple(Choice(str(m.value), (labels or {}).get(m, str(m.value)), m) for m in enum_type)


BASIC_FIELDS: tuple[Field, ...] = (
    Field("server_name", "Server name", help="empty: NP<model>_<serial number>"),
    Field("server_location", "Server location"),
    Field("time_zone", "Time zone", help="informational: the host's clock and zone are used"),
    Field("time_server", "Time server", help="informational: the host keeps the time"),
    Field(
        "web_console",
        "Web console",
        "bool",
        help="turning it off locks this console after Save/Restart",
    ),
    Field("telnet_console", "Telnet console", "bool"),
    Field("reset_button_protect", "Reset button protect", "bool"),
)

_IPCONFIG_LABELS = {
    IPConfig.STATIC: "Static",
    IPConfig.DHCP: "DHCP",
    IPConfig.DHCP_BOOTP: "DHCP/BOOTP",
    IPConfig.BOOTP: "BOOTP",
}

NETWORK_FIELDS: tuple[Field, ...] = (
    Field("ip_config", "IP configuration", "choice", _enum_choices(IPConfig, _IPCONFIG_LABELS)),
    Field(
        "ip", "IP address", help="the host's network settings are owned by the OS and not applied"
    ),
    Field("netmask", "Netmask"),
    Field("gateway", "Gateway"),
    Field("dns1", "DNS server 1"),
    Field("dns2", "DNS server 2"),
    Field("snmp", "SNMP", "bool"),
    Field("snmp_community", "Community name", "secret",
          help="empty = keep the stored one; SNMP answers nobody until one is set"),
    Field("snmp_contact", "Contact"),
    Field("snmp_location", "Location"),
    Field("snmp_v3_user", "SNMPv3 user", help="authPriv: SHA-256 and AES-128; empty = no v3"),
    Field("snmp_v3_auth_password", "SNMPv3 auth password", "secret",
          help="8 to 64 characters; empty = keep the stored one"),
    Field("snmp_v3_priv_password", "SNMPv3 privacy password", "secret",
          help="8 to 64 characters; empty = keep the stored one"),
    Field("auto_report_host", "Auto report to IP"),
    Field("auto_report_port", "Auto report to UDP port", "int", size=6),
    Field("auto_report_period", "Auto report period (s)", "int", size=6),
)

_PARITY_LABELS = {
    Parity.NONE: "None",
    Parity.ODD: "Odd",
    Parity.EVEN: "Even",
    Parity.MARK: "Mark",
    Parity.SPACE: "Space",
}
_FLOW_LABELS = {
    FlowControl.NONE: "None",
    FlowControl.RTS_CTS: "RTS/CTS",
    FlowControl.XON_XOFF: "XON/XOFF",
    FlowControl.DTR_DSR: "DTR/DSR",
}
_IF_LABELS = {
    SerialInterface.RS232: "RS-232",
    SerialInterface.RS422: "RS-422",
    SerialInterface.RS485_2WIRE: "RS-485 2-Wire",
    SerialInterface.RS485_4WIRE: "RS-485 4-Wire",
}

SERIAL_FIELDS: tuple[Field, ...] = (
    Field("alias", "Port alias", size=16),
    Field("baudrate", "Baud rate", "baud"),
    Field(
        "bytesize", "Data bits", "choice", tuple(Choice(str(b), str(b), b) for b in (5, 6, 7, 8))
    ),
    Field(
        "stopbits",
        "Stop bits",
        "choice",
        (Choice("1", "1", 1), Choice("1.5", "1.5", 1.5), Choice("2", "2", 2)),
    ),
    Field("parity", "Parity", "choice", _enum_choices(Parity, _PARITY_LABELS)),
    Field("flow_control", "Flow control", "choice", _enum_choices(FlowControl, _FLOW_LABELS)),
    Field("fifo", "FIFO", "bool"),
    Field("interface", "Interface", "choice", _enum_choices(SerialInterface, _IF_LABELS)),
)

MODE_LABELS: dict[OpMode, str] = {
    OpMode.REAL_COM: "Real COM",
    OpMode.RFC2217: "RFC2217",
    OpMode.TCP_SERVER: "TCP Server",
    OpMode.TCP_CLIENT: "TCP Client",
    OpMode.UDP: "UDP",
    OpMode.PAIR_MASTER: "Pair Connection Master",
    OpMode.PAIR_SLAVE: "Pair Connection Slave",
    OpMode.REVERSE_TELNET: "Reverse Telnet",
    OpMode.ETHERNET_MODEM: "Ethernet Modem",
    OpMode.DISABLED: "Disabled",
}

_DELIM_LABELS = {
    DelimiterProcess.DO_NOTHING: "Do Nothing",
    DelimiterProcess.PLUS_1: "Delimiter+1",
    DelimiterProcess.PLUS_2: "Delimiter+2",
    DelimiterProcess.STRIP: "Strip Delimiter",
}

OPERATING_FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field(
            "tcp_alive_check_min",
            "TCP alive check time (min)",
            "int",
            help="0-99, 0 = off",
            size=4,
        ),
        Field("inactivity_ms", "Inactivity time (ms)", "int", help="0-65535, 0 = off", size=6),
        Field(
            "max_connection",
            "Max connection",
            "choice",
            tuple(Choice(str(n), str(n), n) for n in range(1, 5)),
        ),
        Field("ignore_jammed", "Ignore jammed IP", "bool"),
        Field("allow_driver_control", "Allow driver control", "bool"),
        Field("packing_length", "Packing length", "int", help="0-1024, 0 = not used", size=5),
        Field("delimiter1", "Delimiter 1 (hex)", "byte", help="empty = off", size=3),
        Field("delimiter2", "Delimiter 2 (hex)", "byte", help="needs delimiter 1", size=3),
        Field(
            "delimiter_process",
            "Delimiter process",
            "choice",
            _enum_choices(DelimiterProcess, _DELIM_LABELS),
        ),
        Field("force_transmit_ms", "Force transmit (ms)", "int", help="0-65535, 0 = off", size=6),
        Field("local_tcp_port", "Local TCP port", "int", help="0 = 4001+n-1", size=6),
        Field("command_port", "Command port", "int", help="0 = 966+n-1", size=6),
        Field("data_port", "Data port", "int", help="0 = 950+n-1", size=6),
        Field("secure", "Secure (TLS)", "bool", help="TLS 1.2 on the data port"),
        Field(
            "tls_ca_file",
            "Client certificate CA file",
            help="PEM file on the box; empty = no client certificate asked",
            size=40,
        ),
        Field(
            "port_buffer_kib",
            "Port buffering (KiB)",
            "int",
            help="0 = off; serial data kept for the next host (memory: up to 65536)",
            size=8,
        ),
        Field(
            "port_buffer_location",
            "Port buffer kept in",
            "choice",
            (Choice("memory", "Memory", "memory"),
             Choice("state-dir", "State directory (beside the settings file)", "state-dir")),
        ),
        Field(
            "command_port_enabled",
            "Command port on",
            "bool",
            help="off: a plain relay, only the data port listens",
        ),
        Field(
            "command_requires_data",
            "Command port only for data hosts",
            "bool",
            help="only a host with a data connection may use the command port",
        ),
        Field("destinations", "Destination IP:port", "list", count=4, help="HOST:PORT"),
        Field(
            "designated_local_ports", "Designated local port", "list", count=4, item="int", size=6,
            low=0, high=65535,
        ),
        Field(
            "connection_control", "Connection control", "choice", _enum_choices(ConnectionControl)
        ),
        Field("udp_local_port", "Local listen port", "int", help="0 = 4001+n-1", size=6),
        Field("pair_remote", "Destination IP:port", help="the slave's HOST:PORT"),
        Field(
            "telnet_map_cr",
            "Map <CR-LF>",
            "choice",
            (Choice("crlf", "CR-LF", "crlf"), Choice("cr", "CR", "cr"), Choice("lf", "LF", "lf")),
            help="what the telnet client's Enter becomes on the serial line",
        ),
    )
}

_PACKING = ("packing_length", "delimiter1", "delimiter2", "delimiter_process", "force_transmit_ms")

#: The operating settings each mode uses, in page order (settings.md §5.2, §5.5).
MODE_FIELDS: dict[OpMode, tuple[str, ...]] = {
    OpMode.REAL_COM: (
        "tcp_alive_check_min",
        "max_connection",
        "ignore_jammed",
        "allow_driver_control",
        *_PACKING,
        "data_port",
        "command_port",
        "secure",
        "port_buffer_kib",
        "port_buffer_location",
    ),
    OpMode.RFC2217: (
        "tcp_alive_check_min", *_PACKING, "local_tcp_port", "secure", "tls_ca_file",
    ),
    OpMode.TCP_SERVER: (
        "tcp_alive_check_min",
        "inactivity_ms",
        "max_connection",
        "ignore_jammed",
        "allow_driver_control",
        *_PACKING,
        "local_tcp_port",
        "command_port_enabled",
        "command_port",
        "command_requires_data",
        "secure",
        "tls_ca_file",
        "port_buffer_kib",
        "port_buffer_location",
    ),
    OpMode.TCP_CLIENT: (
        "tcp_alive_check_min",
        "inactivity_ms",
        "ignore_jammed",
        *_PACKING,
        "destinations",
        "designated_local_ports",
        "connection_control",
    ),
    OpMode.UDP: (*_PACKING, "udp_destinations", "udp_local_port"),
    OpMode.PAIR_MASTER: ("tcp_alive_check_min", *_PACKING, "pair_remote"),
    OpMode.PAIR_SLAVE: ("tcp_alive_check_min", *_PACKING, "local_tcp_port"),
    OpMode.REVERSE_TELNET: (
        "tcp_alive_check_min",
        "inactivity_ms",
        "max_connection",
        "ignore_jammed",
        *_PACKING,
        "local_tcp_port",
        "telnet_map_cr",
    ),
    OpMode.ETHERNET_MODEM: ("tcp_alive_check_min", *_PACKING, "local_tcp_port"),
    OpMode.DISABLED: (),
}

UDP_ROWS = 4
ACCESSIBLE_ROWS = 16

AUTO_WARNING_FIELDS: tuple[Field, ...] = (
    Field("mail_server", "Mail server"),
    Field("mail_user", "User name"),
    Field("mail_password", "Password", "secret", help="empty = keep the stored password"),
    Field("mail_from", "From e-mail address"),
    Field("mail_to", "E-mail address", "list", count=4, max_length=63),
    Field("trap_server", "SNMP trap server"),
    Field("mail_cold_start", "Mail: cold start", "bool"),
    Field("mail_warm_start", "Mail: warm start", "bool"),
    Field("mail_auth_failure", "Mail: authentication failure", "bool"),
    Field("mail_ip_changed", "Mail: IP address changed", "bool"),
    Field("mail_password_changed", "Mail: password changed", "bool"),
    Field("trap_cold_start", "Trap: cold start", "bool"),
    Field("trap_warm_start", "Trap: warm start", "bool"),
    Field("trap_auth_failure", "Trap: authentication failure", "bool"),
    Field("mail_port", "Mail server port", "int", size=6),
    Field("mail_tls_verify", "Verify the mail server's TLS certificate", "bool"),
    Field("trap_port", "SNMP trap server port", "int", size=6),
    Field("trap_version", "SNMP trap version", "choice",
          (Choice("v1", "v1", "v1"), Choice("v2c", "v2c", "v2c"))),
    Field("trap_community", "Trap community", "secret", help="empty = keep the stored one"),
    Field("mail_link_down", "Mail: link down", "bool"),
    Field("trap_link_down", "Trap: link down", "bool"),
    Field("trap_ip_changed", "Trap: IP address changed", "bool"),
    Field("trap_password_changed", "Trap: password changed", "bool"),
    Field("mail_dcd_change", "Mail: DCD changed on ports", "list", count=8, item="int", size=4),
    Field("trap_dcd_change", "Trap: DCD changed on ports", "list", count=8, item="int", size=4),
    Field("mail_dsr_change", "Mail: DSR changed on ports", "list", count=8, item="int", size=4),
    Field("trap_dsr_change", "Trap: DSR changed on ports", "list", count=8, item="int", size=4),
)

MONITORING_FIELDS: tuple[Field, ...] = (
    Field("syslog_server", "Syslog server"),
    Field("syslog_port", "Syslog port", "int", size=6),
    Field("syslog_tcp", "Syslog over TCP", "bool"),
    Field("syslog_facility", "Syslog facility", "int", size=4, help="0-23; 3 = daemon"),
    Field("syslog_connections", "Syslog: connection open/close", "bool"),
    Field("metrics_public", "Metrics without login", "bool"),
    Field("metrics_token", "Metrics bearer token", "secret", help="empty = keep the stored one"),
)


BASIC_FIELDS = _hinted(BasicSettings, BASIC_FIELDS)
NETWORK_FIELDS = _hinted(NetworkSettings, NETWORK_FIELDS)
SERIAL_FIELDS = _hinted(SerialSettings, SERIAL_FIELDS)
OPERATING_FIELDS = {f.name: f for f in _hinted(OperatingSettings, OPERATING_FIELDS.values())}
AUTO_WARNING_FIELDS = _hinted(AutoWarningSettings, AUTO_WARNING_FIELDS)
MONITORING_FIELDS = _hinted(MonitoringSettings, MONITORING_FIELDS)


def operating_fields(mode: OpMode) -> tuple[Field, ...]:
    """The form fields shown for C{mode} (UDP destinations are rendered as their own table)."""
    return tuple(OPERATING_FIELDS[n] for n in MODE_FIELDS[mode] if n in OPERATING_FIELDS)


def field_text(field: Field, value: Any) -> str:
    """The text a form shows for C{value}."""
    if field.kind == "bool":
        return "on" if value else ""
    if field.kind == "secret":
        return ""
    if field.kind == "byte":
        return "" if value is None else f"{value:02X}"
    if field.kind == "choice":
        for c in field.choices:
            if c.value == value and type(c.value) is type(value):
                return c.key
        for c in field.choices:
            if c.value == value:
                return c.key
        return str(value)
    return str(value)


def list_texts(field: Field, value: Sequence[Any]) -> list[str]:
    """The C{field.count} input texts of a list field."""
    items = [str(v) for v in value][: field.count]
    return items + [""] * (field.count - len(items))


def _parse_int(text: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):  # ASCII digits: \d and int() also take "٩"
        raise ValueError("must be a whole number")
    return int(text)


def _parse_byte(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if text.lower().startswith("0x"):
        text = text[2:]
    if not re.fullmatch(r"[0-9A-Fa-f]{1,2}", text):
        raise ValueError("must be a hex byte from 00 to FF")
    return int(text, 16)


def parse_field(field: Field, form: Mapping[str, str]) -> Any:
    """
    The settings value of C{field} in a submitted C{form}.

    @raise ValueError: the reason, to show next to the field.
    """
    raw = form.get(field.name, "")
    if field.kind == "bool":
        return field.name in form and raw.lower() not in ("", "0", "off", "no", "false")
    if field.kind == "int":
        return _parse_int(raw)
    if field.kind == "baud":
        return _parse_int(raw)
    if field.kind == "byte":
        return _parse_byte(raw)
    if field.kind == "choice":
        for c in field.choices:
            if c.key == raw.strip():
                return c.value
        raise ValueError("must be one of " + ", ".join(c.label for c in field.choices))
    if field.kind == "list":
        items = [form.get(f"{field.name}.{i}", "").strip() for i in range(1, field.count + 1)]
        texts = [t for t in items if t]
        if field.item == "int":
            return tuple(_parse_int(t) for t in texts)
        return tuple(texts)
    # Text is taken as typed: the validators refuse leading/trailing
    # whitespace with a message instead of the form dropping it silently.
    return raw


def parse_fields(fields: Iterable[Field], form: Mapping[str, str], base: _T) -> _T:
    """
    C{base} with every field of C{fields} taken from C{form} (a number or
    choice the form does not carry at all keeps its value).

    @raise FieldErrors: naming each field that does not validate.
    """
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        if f.kind == "secret" and not form.get(f.name):
            continue  # empty = keep the stored secret
        if f.kind in ("int", "choice") and f.name not in form:
            continue  # not in the form at all (an older page or script): keep the value
        try:
            values[f.name] = parse_field(f, form)
        except ValueError as e:
            errors[f.name] = reason_for(_message(e), f.name)
    errors.update(field_checks(type(base), base, values))
    if errors:
        raise FieldErrors(errors)
    return evolve_checked(base, values)


def parse_serial_form(form: Mapping[str, str], base: SerialSettings) -> SerialSettings:
    return parse_fields(SERIAL_FIELDS, form, base)


def parse_operating_form(
    form: Mapping[str, str], base: OperatingSettings, implemented: Collection[OpMode]
) -> OperatingSettings:
    """
    The operating settings of one port from its form: the mode and the
    fields that mode shows; the other modes' fields keep their values.
    """
    try:
        mode = OpMode(form.get("mode", "").strip())
    except ValueError:
        raise FieldErrors({"mode": "unknown operating mode"}) from None
    if mode not in implemented:
        raise FieldErrors({"mode": f"{MODE_LABELS[mode]} is not implemented in this version"})
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"mode": mode}
    try:
        with_fields = parse_fields(operating_fields(mode), form, attrs.evolve(base, mode=mode))
    except FieldErrors as e:
        errors.update(e.errors)
        with_fields = base
    if "udp_destinations" in MODE_FIELDS[mode]:
        try:
            values["udp_destinations"] = parse_udp_rows(form)
        except FieldErrors as e:
            errors.update(e.errors)
    if errors:
        raise FieldErrors(errors)
    return evolve_checked(with_fields, values)


def parse_udp_rows(form: Mapping[str, str]) -> tuple[UdpDestination, ...]:
    """UDP destination rows C{udp.N.begin}, C{udp.N.end}, C{udp.N.port}; empty rows are skipped."""
    rows: list[UdpDestination] = []
    errors: dict[str, str] = {}
    for i in range(1, UDP_ROWS + 1):
        begin = form.get(f"udp.{i}.begin", "").strip()
        end = form.get(f"udp.{i}.end", "").strip()
        port_text = form.get(f"udp.{i}.port", "").strip()
        if not (begin or end):
            continue
        names = {n: f"udp.{i}.{n}" for n in ("begin", "end", "port")}
        try:
            port = _parse_int(port_text) if port_text else 4001
            rows.append(
                construct_checked(
                    UdpDestination, {"begin": begin, "end": end or begin, "port": port}, names
                )
            )
        except FieldErrors as e:
            errors.update(e.errors)
        except ValueError as e:
            errors[names["port"]] = _message(e)
    if errors:
        raise FieldErrors(errors)
    return tuple(rows)


def parse_accessible_form(form: Mapping[str, str]) -> AccessibleIPSettings:
    """Rows C{acl.N.active}, C{acl.N.ip}, C{acl.N.netmask}; rows without an IP are dropped."""
    entries: list[AccessibleIP] = []
    errors: dict[str, str] = {}
    for i in range(1, ACCESSIBLE_ROWS + 1):
        ip = form.get(f"acl.{i}.ip", "").strip()
        mask = form.get(f"acl.{i}.netmask", "").strip() or "255.255.255.255"
        active = f"acl.{i}.active" in form
        if not ip:
            if active:
                errors[f"acl.{i}.ip"] = "an active entry needs an IP address"
            continue
        try:
            entries.append(
                construct_checked(
                    AccessibleIP,
                    {"ip": ip, "netmask": mask, "active": active},
                    {n: f"acl.{i}.{n}" for n in ("ip", "netmask")},
                )
            )
        except FieldErrors as e:
            errors.update(e.errors)
    if errors:
        raise FieldErrors(errors)
    return AccessibleIPSettings(entries=tuple(entries))  # type: ignore[arg-type]  # generic converter


# -- shared by the consoles ----------------------------------------------------------------


def check_not_locked_out(acl: AccessibleIPSettings, client: str, field: str = "_form") -> None:
    """@raise FieldErrors: when C{acl} would refuse the client making the change."""
    if not acl.allows(client):
        raise FieldErrors(
            {
                field: f"this list would lock out your own address {client}: "
                "add an active entry for it first"
            }
        )


_PARITY_NAMES = {"N": "None", "O": "Odd", "E": "Even", "M": "Mark", "S": "Space"}


def _onoff(v: Any) -> str:
    return "-" if v is None else ("ON" if v else "OFF")


def _async_settings(settings: Mapping[str, Any]) -> dict[str, str]:
    """The Async Settings cells of serial settings in their JSON form."""
    flow = settings["flow_control"]
    return {
        "baudrate": str(settings["baudrate"]),
        "bytesize": str(settings["bytesize"]),
        "stopbits": f"{settings['stopbits']:g}",
        "parity_setting": _PARITY_NAMES.get(settings["parity"], settings["parity"]),
        "rtscts": _onoff(flow == "rts-cts"),
        "xonxoff": _onoff(flow == "xon-xoff"),
        "dtrdsr": _onoff(flow == "dtr-dsr"),
        "fifo": "Enable" if settings["fifo"] else "Disable",
        "interface": settings["interface"].upper(),
    }


def refused_notes(requested: SerialSettings, in_force: SerialSettings | None) -> dict[str, str]:
    """
    "requested 7, in force 8" for each serial setting the open device did
    not take (none while it is closed), by field name.
    """
    if in_force is None:
        return {}
    notes = {}
    for f in SERIAL_FIELDS:
        a, b = getattr(requested, f.name), getattr(in_force, f.name)
        if f.name != "alias" and a != b:
            notes[f.name] = refused_text(setting_text(f, a), setting_text(f, b))
    return notes


#: Port settings whose 0 means the NPort default of port n, with that default.
_PORT_DEFAULTS: dict[str, tuple[str, Callable[[int], int]]] = {
    "local_tcp_port": ("TCP", tcp_server_port),
    "udp_local_port": ("UDP", tcp_server_port),
    "command_port": ("TCP", realcom_command_port),
    "data_port": ("TCP", realcom_data_port),
}


def port_default(name: str, index: int | None) -> int | None:
    """The port a port setting C{name} left at 0 means on port C{index}; None for other settings."""
    known = _PORT_DEFAULTS.get(name)
    return None if known is None or index is None else known[1](index)


def field_help(field: Field, index: int | None = None, offset: int = 0) -> str:
    """
    The help text of C{field} on port C{index} (0-based): a port setting
    names the real default port of that port and, with --port-offset, the
    number the box really listens on.
    """
    known = _PORT_DEFAULTS.get(field.name)
    if known is None or index is None:
        return field.help
    proto, default = known
    number = default(index)
    if not offset:
        return f"0 = {proto} {number}"
    return (f"0 = {proto} {number}; --port-offset {offset} is added to the port given "
            f"(0 listens on {number + offset})")


def refused_text(requested: str, in_force: str) -> str:
    """How a setting the device did not take is shown everywhere (web, telnet, monitor)."""
    return f"requested {requested}, in force {in_force}"


def monitor_display(status: Mapping[str, Any]) -> dict[str, str]:
    """
    The monitor's cell texts of one port's status (in the HTML, via JSON
    in the script, and in the telnet console).  A setting the device did
    not take reads "requested 7, in force 8".
    """
    modem = status["modem"] or {}
    counters = status["counters"]
    out = {
        "mode": MODE_LABELS[OpMode(status["mode"])],
        "listening": ", ".join(status["listeners"]) or "-",
        "peers": ", ".join(status["peers"]) or "-",
        "buffered": str(status.get("buffered", 0)),
        "device": status["device"] + ("" if status["open"] else " (closed)"),
        "tx": str(counters["serial_tx_bytes"]),
        "rx": str(counters["serial_rx_bytes"]),
        "dsr": _onoff(modem.get("dsr")),
        "cts": _onoff(modem.get("cts")),
        "dcd": _onoff(modem.get("dcd")),
        "parity": str(counters["parity_errors"]),
        "framing": str(counters["framing_errors"]),
        "overrun": str(counters["overrun_errors"]),
        "break": str(counters["breaks"]),
    }
    in_force = _async_settings(status["settings"])
    requested = _async_settings(status.get("requested") or status["settings"])
    for key, text in in_force.items():
        out[key] = text if requested[key] == text else refused_text(requested[key], text)
    return out


def refused_settings(requested: SerialSettings, in_force: SerialSettings | None) -> dict[str, Any]:
    """The serial settings the device did not take: field -> (requested, in force) JSON values."""
    if in_force is None:
        return {}
    want, have = to_json(requested), to_json(in_force)
    return {
        name: {"requested": want[name], "in_force": have[name]}
        for name in want
        if name != "alias" and want[name] != have[name]
    }


def setting_text(field: Field, value: Any) -> str:
    """A settings value as a person reads it (choice labels, Enable/Disable, hex bytes)."""
    if field.kind == "bool":
        return "Enable" if value else "Disable"
    if field.kind == "choice":
        key = field_text(field, value)
        for c in field.choices:
            if c.key == key:
                return c.label
        return key
    if field.kind == "byte":
        return "none" if value is None else f"{value:02X}"
    if field.kind == "secret":
        return "(set)" if value else "(not set)"
    if field.kind == "list":
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


# -- field names across pages ---------------------------------------------------------------

_PATH = re.compile(r"^ports\[(\d+)\]\.(serial|operating)\.(\w+)")
_LABELS: dict[str, str] = {
    f.name: f.label
    for f in (*BASIC_FIELDS, *NETWORK_FIELDS, *SERIAL_FIELDS, *AUTO_WARNING_FIELDS,
              *MONITORING_FIELDS, *OPERATING_FIELDS.values())
}
_LABELS.update(mode="Operation mode", udp_destinations="UDP destinations")


def localized(errors: Mapping[str, str], index: int | None = None, part: str = "operating",
              names: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    C{errors} as a page of port C{index}'s C{part} names them: that port's
    fields (C{ports[0].operating.local_tcp_port} -> C{local_tcp_port}, or
    C{names[local_tcp_port]}); other ports' fields are put on C{"_form"},
    described by L{describe_field}; plain field names stay.
    """
    out: dict[str, str] = {}
    others: list[str] = []
    for key, reason in errors.items():
        m = _PATH.match(key)
        if m and int(m.group(1)) == index and m.group(2) == part:
            name = m.group(3)
            out[(names or {}).get(name, name)] = reason
        elif key == "_form":
            others.append(reason)
        elif m:
            others.append(f"{describe_field(key)}: {reason}")
        else:
            out[(names or {}).get(key, key)] = reason
    if others:
        out["_form"] = "; ".join(others)
    return out


def describe_field(key: str) -> str:
    """A field path as a user reads it: C{ports[1].operating.local_tcp_port} -> "Port 2 Local TCP port"."""
    m = _PATH.match(key)
    if m:
        return f"Port {int(m.group(1)) + 1} {_LABELS.get(m.group(3), m.group(3))}"
    name = key.rsplit(".", 1)[-1]
    return _LABELS.get(name, name)


def errors_text(errors: Mapping[str, str]) -> str:
    """Every error of C{errors} in one line, each with the field it belongs to."""
    return "; ".join(
        reason if key == "_form" else f"{describe_field(key)}: {reason}"
        for key, reason in errors.items()
    )


# -- JSON ---------------------------------------------------------------------------------------

#: Fields never written out; accepted on write where a section has them.
JSON_WRITE_ONLY = {(AutoWarningSettings, "mail_password"), (AutoWarningSettings, "trap_community"),
                   (NetworkSettings, "snmp_community"), (MonitoringSettings, "metrics_token"),
                   (NetworkSettings, "snmp_v3_auth_password"),
                   (NetworkSettings, "snmp_v3_priv_password")}

#: The sections of the JSON API and their settings classes.
SECTIONS: dict[str, type[Any]] = {
    "basic": BasicSettings,
    "network": NetworkSettings,
    "accessible_ip": AccessibleIPSettings,
    "auto_warning": AutoWarningSettings,
    "monitoring": MonitoringSettings,
}


def _json_value(tp: Any, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(None, v) for v in value]
    if attrs.has(type(value)):
        return to_json(value)
    return value


def to_json(value: Any) -> dict[str, Any]:
    """The JSON object of one settings section (write-only secrets left out)."""
    cls = type(value)
    return {
        f.name: _json_value(None, getattr(value, f.name))
        for f in attrs.fields(cls)
        if (cls, f.name) not in JSON_WRITE_ONLY
    }


def config_to_json(config: DeviceConfig) -> dict[str, Any]:
    """Every section of C{config} (no secrets)."""
    out: dict[str, Any] = {name: to_json(getattr(config, name)) for name in SECTIONS}
    out["ports"] = [
        {"serial": to_json(p.serial), "operating": to_json(p.operating)} for p in config.ports
    ]
    return out


#: Deepest nesting of arrays/objects a JSON body may have; no settings
#: body needs more than 4 levels.  Checked before parsing, so a hostile
#: body cannot drive the parser (or anything after it) into deep recursion.
MAX_JSON_DEPTH = 32

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


class JsonError(ValueError):
    """A request body that is not acceptable JSON; the message says why."""


def json_depth(raw: bytes) -> int:
    """The deepest bracket nesting in JSON text C{raw} (brackets inside strings ignored)."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """
    The value of the JSON body C{raw} (empty = C{None}).

    @raise JsonError: not UTF-8, not JSON, or nested deeper than C{max_depth}.
    """
    if json_depth(raw) > max_depth:
        raise JsonError(f"the body is nested deeper than {max_depth} levels")
    try:
        return json.loads(raw.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise JsonError(f"the body is not valid JSON: {e}") from None


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(
        tp, ""
    )


#: JSON scalars: which JSON values are one of these Python types (a JSON bool is no number).
_JSON_SCALARS: dict[Any, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
}


def _from_json_value(tp: Any, value: Any, where: str) -> Any:
    """Convert JSON C{value} to type C{tp}; raise FieldErrors({where: reason})."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    accepts = _JSON_SCALARS.get(tp)
    if accepts is not None:
        if accepts(value):
            return value
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_from_json(tp, value, where)
    elif args and type(None) in args:
        if value is None:
            return None
        inner = next(a for a in args if a is not type(None))
        return _from_json_value(inner, value, where)
    elif origin is tuple:
        return _tuple_from_json(args[0], value, where)
    elif isinstance(tp, type) and attrs.has(tp):
        if not isinstance(value, dict):
            raise FieldErrors({where: "must be an object"})
        return section_from_json(tp, value, None, prefix=f"{where}.")
    raise FieldErrors({where: f"must be {_type_name(tp) or 'a valid value'}"})


def _enum_from_json(tp: type[enum.Enum], value: Any, where: str) -> enum.Enum:
    """The member of C{tp} named by C{value} (its value or its name, any case)."""
    if isinstance(value, str):
        for m in tp:
            if value.lower() in (str(m.value).lower(), m.name.lower()):
                return m
    raise FieldErrors({where: "must be one of " + ", ".join(f'"{m.value}"' for m in tp)})


def _tuple_from_json(item_type: Any, value: Any, where: str) -> tuple[Any, ...]:
    """A tuple of C{item_type} from a JSON list; every bad item is reported by index."""
    if not isinstance(value, list):
        raise FieldErrors({where: "must be a list"})
    errors: dict[str, str] = {}
    items = []
    for i, item in enumerate(value):
        try:
            items.append(_from_json_value(item_type, item, f"{where}[{i}]"))
        except FieldErrors as e:
            errors.update(e.errors)
    if errors:
        raise FieldErrors(errors)
    return tuple(items)


def section_from_json(cls: type[_T], data: Any, base: _T | None, prefix: str = "") -> _T:
    """
    C{base} (or C{cls}'s defaults) with the fields in JSON object C{data};
    fields not given keep their values.

    @raise FieldErrors: unknown fields, wrong types and invalid values, by
        field name (C{prefix} + name; list items as C{name[i]}).
    """
    if not isinstance(data, dict):
        raise FieldErrors({prefix.rstrip(".") or "_body": "must be a JSON object"})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, raw in data.items():
        if key not in names:
            errors[prefix + key] = "unknown field"
            continue
        try:
            values[key] = _from_json_value(hints[key], raw, prefix + key)
        except FieldErrors as e:
            errors.update(e.errors)
    renames = {n: prefix + n for n in names}
    errors.update(field_checks(cls, base, values, renames))
    if errors:
        raise FieldErrors(errors)
    if base is None:
        return construct_checked(cls, values, renames)
    return evolve_checked(base, values, renames)


def check_modes(
    config: DeviceConfig, implemented: Collection[OpMode], field: str = "mode"
) -> None:
    """@raise FieldErrors: when a port of C{config} uses a mode this version does not implement."""
    for n, port in enumerate(config.ports, 1):
        if port.operating.mode not in implemented:
            raise FieldErrors(
                {
                    f"ports[{n - 1}].operating.{field}"
                    if field == "mode"
                    else field: f"port {n}: {MODE_LABELS[port.operating.mode]} is not implemented "
                    "in this version"
                }
            )


# -- classic Set.htm ----------------------------------------------------------------------------

#: Web encodings of the classic firmware (settings.md §4, §5.1).
CLASSIC_DATABITS = {0: 5, 1: 6, 2: 7, 3: 8}
CLASSIC_STOPBITS: dict[int, float] = {0: 1, 3: 1.5, 4: 2}
CLASSIC_PARITY = {
    0: Parity.NONE,
    8: Parity.ODD,
    24: Parity.EVEN,
    40: Parity.MARK,
    56: Parity.SPACE,
}
CLASSIC_FLOW = {
    0: FlowControl.NONE,
    1: FlowControl.RTS_CTS,
    2: FlowControl.XON_XOFF,
    3: FlowControl.DTR_DSR,
}
CLASSIC_IFTYPE = {
    0: SerialInterface.RS232,
    1: SerialInterface.RS422,
    2: SerialInterface.RS485_2WIRE,
    3: SerialInterface.RS485_4WIRE,
}
CLASSIC_IPCONFIG = {
    0: IPConfig.STATIC,
    1: IPConfig.DHCP,
    2: IPConfig.DHCP_BOOTP,
    3: IPConfig.BOOTP,
}
CLASSIC_DELIMPROCESS = {
    0: DelimiterProcess.DO_NOTHING,
    1: DelimiterProcess.PLUS_1,
    2: DelimiterProcess.PLUS_2,
    3: DelimiterProcess.STRIP,
}
#: OpMode codes: 5110A firmware (2, 10) and the W2250A table (0, 256 …).
CLASSIC_OPMODE = {
    2: OpMode.REAL_COM,
    10: OpMode.TCP_SERVER,
    0: OpMode.DISABLED,
    256: OpMode.REAL_COM,
    257: OpMode.RFC2217,
    512: OpMode.TCP_SERVER,
    513: OpMode.TCP_CLIENT,
    514: OpMode.UDP,
    768: OpMode.PAIR_MASTER,
    769: OpMode.PAIR_SLAVE,
    1024: OpMode.ETHERNET_MODEM,
    1536: OpMode.REVERSE_TELNET,
}

#: setfunc group -> the reply's group title ("Serial Settings OK!").
CLASSIC_GROUPS = {
    "basic": "Basic",
    "network": "Network",
    "serial": "Serial",
    "communication parameters": "Serial",
    "opmode": "Operating",
}


def _classic_int(text: str) -> int:
    return _parse_int(text)


def _classic_table(table: Mapping[int, Any]) -> Any:
    def decode(text: str) -> Any:
        code = _parse_int(text)
        if code not in table:
            raise ValueError("must be one of " + ", ".join(str(k) for k in sorted(table)))
        return table[code]

    return decode


def _classic_flag(text: str) -> bool:
    code = _parse_int(text)
    if code not in (0, 1):
        raise ValueError("must be 0 or 1")
    return code == 1


def _classic_baud(text: str) -> int:
    index = _parse_int(text)
    if not 0 <= index < len(STANDARD_BAUDRATES):
        raise ValueError(f"must be a baud rate index from 0 to {len(STANDARD_BAUDRATES) - 1}")
    return STANDARD_BAUDRATES[index]


def _text_value(text: str) -> str:
    return text


_Decoder = typing.Callable[[str], Any]

#: classic field -> (settings field, decoder); None = accepted and ignored.
CLASSIC_BASIC: dict[str, tuple[str, _Decoder] | None] = {
    "ServerName": ("server_name", _text_value),
    "ServerLocation": ("server_location", _text_value),  # ours: no classic name is known
    "TimeServerIP": ("time_server", _text_value),
    "WebDisable": ("web_console", lambda t: not _classic_flag(t)),
    "ConDisable": ("telnet_console", lambda t: not _classic_flag(t)),
    "resetprotect": ("reset_button_protect", _classic_flag),
    # The host owns the clock and zone: accepted, not applied.
    "TimeZone": None,
    "Year": None,
    "Month": None,
    "Day": None,
    "Hour": None,
    "Minutes": None,
    "Seconds": None,
    "lcmprotect": None,
}

CLASSIC_NETWORK: dict[str, tuple[str, _Decoder] | None] = {
    "IPConfig": ("ip_config", _classic_table(CLASSIC_IPCONFIG)),
    "IP": ("ip", _text_value),
    "Netmask": ("netmask", _text_value),
    "Gateway": ("gateway", _text_value),
    "DNS1": ("dns1", _text_value),
    "DNS2": ("dns2", _text_value),
    "SnmpMode": ("snmp", _classic_flag),
    "SnmpCommunity": ("snmp_community", _text_value),
    "SnmpContact": ("snmp_contact", _text_value),
    "SnmpLocation": ("snmp_location", _text_value),
    "IPLocationServer": ("auto_report_host", _text_value),
    "IPLocationPort": ("auto_report_port", _classic_int),
    "IPLocationPeriod": ("auto_report_period", _classic_int),
}

CLASSIC_SERIAL: dict[str, tuple[str, _Decoder] | None] = {
    "PortAlias": ("alias", _text_value),
    "BaudRate": ("baudrate", _classic_baud),
    "DataBits": ("bytesize", _classic_table(CLASSIC_DATABITS)),
    "StopBits": ("stopbits", _classic_table(CLASSIC_STOPBITS)),
    "Parity": ("parity", _classic_table(CLASSIC_PARITY)),
    "FlowCtrl": ("flow_control", _classic_table(CLASSIC_FLOW)),
    "FIFO": ("fifo", _classic_flag),
    "IfType": ("interface", _classic_table(CLASSIC_IFTYPE)),
}

CLASSIC_OPERATING: dict[str, tuple[str, _Decoder] | None] = {
    "OpMode": ("mode", _classic_table(CLASSIC_OPMODE)),
    "TCPAliveCheck": ("tcp_alive_check_min", _classic_int),
    "MaxConnect": ("max_connection", _classic_int),
    "ignorejam": ("ignore_jammed", _classic_flag),
    "allowdrvctrl": ("allow_driver_control", _classic_flag),
    "packlen": ("packing_length", _classic_int),
    "DelimiterChar1": ("delimiter1", _parse_byte),
    "DelimiterChar2": ("delimiter2", _parse_byte),
    "delimprocess": ("delimiter_process", _classic_table(CLASSIC_DELIMPROCESS)),
    "ForceTxTime": ("force_transmit_ms", _classic_int),
    "PortNo": ("local_tcp_port", _classic_int),
    # ours: no classic names are known for these
    "CmdPort": ("command_port", _classic_int),
    "InactivityTime": ("inactivity_ms", _classic_int),
}

#: Query arguments of every group that are not settings.
_CLASSIC_CONTROL = {"Submit", "setfunc", "Port", "ApplyAll", "token_text"}


def _classic_values(
    table: Mapping[str, tuple[str, _Decoder] | None], query: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, raw in query.items():
        if key not in table:
            continue
        entry = table[key]
        if entry is None:
            continue
        name, decode = entry
        names[name] = key
        try:
            values[name] = decode(raw)
        except ValueError as e:
            errors[key] = _message(e)
    if errors:
        raise FieldErrors(errors)
    return values, names


def _classic_port(query: Mapping[str, str], port_count: int) -> int:
    """The 0-based port of C{Port} (1-based, default 1)."""
    try:
        n = _parse_int(query.get("Port", "1") or "1")
    except ValueError:
        raise FieldErrors({"Port": "must be a whole number"}) from None
    if not 1 <= n <= port_count:
        raise FieldErrors({"Port": f"must be a port number from 1 to {port_count}"})
    return n - 1


#: settings field -> classic field name (for errors found after decoding, e.g. port conflicts).
CLASSIC_NAMES: dict[str, str] = {
    entry[0]: key
    for table in (CLASSIC_BASIC, CLASSIC_NETWORK, CLASSIC_SERIAL, CLASSIC_OPERATING)
    for key, entry in table.items()
    if entry is not None
}


def classic_port_index(query: Mapping[str, str]) -> int:
    """The 0-based port of a classic query (C{Port}, default 1; 0 when not a number)."""
    text = (query.get("Port", "1") or "1").strip()
    return int(text) - 1 if text.isdecimal() and int(text) > 0 else 0


def classic_group(setfunc: str) -> str:
    """The reply title of a C{setfunc} group ("Serial"), or raise FieldErrors."""
    group = CLASSIC_GROUPS.get(setfunc.strip().lower())
    if group is None:
        raise FieldErrors(
            {
                "setfunc": "unknown settings group; known: Basic, Network, Serial, "
                "Communication Parameters, OPMode"
            }
        )
    return group


def classic_apply(
    config: DeviceConfig, query: Mapping[str, str], implemented: Collection[OpMode]
) -> tuple[DeviceConfig, str]:
    """
    Apply one classic C{Set.htm} query to C{config}.

    @return: the new configuration and the reply ("Serial Settings OK!").
    @raise FieldErrors: by classic field name.
    """
    group = classic_group(query.get("setfunc", ""))
    if group == "Basic":
        values, names = _classic_values(CLASSIC_BASIC, query)
        new = attrs.evolve(config, basic=evolve_checked(config.basic, values, names))
    elif group == "Network":
        values, names = _classic_values(CLASSIC_NETWORK, query)
        new = attrs.evolve(config, network=evolve_checked(config.network, values, names))
    elif group == "Serial":
        index = _classic_port(query, len(config.ports))
        values, names = _classic_values(CLASSIC_SERIAL, query)
        apply_all = query.get("ApplyAll", "").upper() in ("ON", "1", "TRUE")
        targets = range(len(config.ports)) if apply_all else [index]
        new = config
        for i in targets:
            port = new.ports[i]
            # The alias stays per port when the line settings go to every port.
            vals = {k: v for k, v in values.items() if i == index or k != "alias"}
            serial = evolve_checked(port.serial, vals, names)
            new = new.replace_port(i, attrs.evolve(port, serial=serial))
    else:
        index = _classic_port(query, len(config.ports))
        values, names = _classic_values(CLASSIC_OPERATING, query)
        mode = values.get("mode")
        if mode is not None and mode not in implemented:
            raise FieldErrors(
                {"OpMode": f"{MODE_LABELS[mode]} is not implemented in this version"}
            )
        port = config.ports[index]
        operating = evolve_checked(port.operating, values, names)
        new = config.replace_port(index, PortConfig(serial=port.serial, operating=operating))
    return new, f"{group} Settings OK!"


__all__ = [
    "ACCESSIBLE_ROWS",
    "AUTO_WARNING_FIELDS",
    "MONITORING_FIELDS",
    "BASIC_FIELDS",
    "CLASSIC_OPMODE",
    "CLASSIC_PARITY",
    "CLASSIC_STOPBITS",
    "MODE_FIELDS",
    "MODE_LABELS",
    "NETWORK_FIELDS",
    "OPERATING_FIELDS",
    "SECTIONS",
    "SERIAL_FIELDS",
    "UDP_ROWS",
    "Choice",
    "Field",
    "FieldErrors",
    "JsonError",
    "check_modes",
    "check_not_locked_out",
    "classic_apply",
    "classic_group",
    "config_to_json",
    "describe_field",
    "errors_text",
    "evolve_checked",
    "field_text",
    "list_texts",
    "localized",
    "monitor_display",
    "field_help",
    "port_default",
    "refused_notes",
    "refused_settings",
    "refused_text",
    "setting_text",
    "operating_fields",
    "parse_accessible_form",
    "parse_field",
    "parse_fields",
    "parse_json",
    "parse_operating_form",
    "parse_serial_form",
    "parse_udp_rows",
    "reason_for",
    "section_from_json",
    "to_json",
]
