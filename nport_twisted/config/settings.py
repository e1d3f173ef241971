# -*- test-case-name: tests.test_settings -*-
"""
The NPort settings catalogue as frozen attrs values (settings.md).

Every value validates itself on construction, so a L{DeviceConfig} that
exists is a valid configuration.  Changes are made with L{attrs.evolve}; the
running service diffs old and new values and applies them to the live ports.

Defaults follow MOXA's manuals where settings.md calls them verified or
unverified-but-documented; where a default is our own choice the field's
comment says so.
"""

from __future__ import annotations

import base64
import enum
import ipaddress
import re
import os
import unicodedata
from typing import Any, Callable, Iterable, TypeVar

import attrs

from nport_twisted.config.models import Model, find_model
from nport_twisted.wire.packing import DelimiterProcess, PackingConfig


class OpMode(enum.Enum):
    """Operating modes of an NPort serial port (settings.md §5.1)."""

    REAL_COM = "realcom"
    RFC2217 = "rfc2217"
    TCP_SERVER = "tcp-server"
    TCP_CLIENT = "tcp-client"
    UDP = "udp"
    PAIR_MASTER = "pair-master"
    PAIR_SLAVE = "pair-slave"
    REVERSE_TELNET = "reverse-telnet"
    ETHERNET_MODEM = "ethernet-modem"
    DISABLED = "disabled"


class Parity(enum.Enum):
    """Serial parity; the value is pyserial's PARITY_* letter."""

    NONE = "N"
    ODD = "O"
    EVEN = "E"
    MARK = "M"
    SPACE = "S"


class FlowControl(enum.Enum):
    """Serial flow control (hardware flow only on RS-232)."""

    NONE = "none"
    RTS_CTS = "rts-cts"
    XON_XOFF = "xon-xoff"
    DTR_DSR = "dtr-dsr"


class SerialInterface(enum.Enum):
    """Electrical interface; on Linux only RS-485 changes what we do."""

    RS232 = "rs-232"
    RS422 = "rs-422"
    RS485_2WIRE = "rs-485-2wire"
    RS485_4WIRE = "rs-485-4wire"


class IPConfig(enum.Enum):
    """How the box gets its address; on Linux the OS owns this (docs/configuration.md)."""

    STATIC = "static"
    DHCP = "dhcp"
    DHCP_BOOTP = "dhcp-bootp"
    BOOTP = "bootp"


class ConnectionControl(enum.Enum):
    """TCP Client mode connect/disconnect triggers (settings.md §5.5)."""

    STARTUP_NONE = "startup/none"
    ANY_CHARACTER_NONE = "any-character/none"
    ANY_CHARACTER_INACTIVITY = "any-character/inactivity-time"
    DSR_ON_DSR_OFF = "dsr-on/dsr-off"
    DSR_ON_NONE = "dsr-on/none"
    DCD_ON_DCD_OFF = "dcd-on/dcd-off"
    DCD_ON_NONE = "dcd-on/none"


#: Standard NPort baud rates (settings.md §4); any other rate is still
#: accepted if the device can do it (Real COM SETBAUD), so this is a menu.
STANDARD_BAUDRATES = (
    50, 75, 110, 134, 150, 300, 600, 1200, 1800, 2400, 4800, 7200, 9600, 19200,
    38400, 57600, 115200, 230400, 460800, 921600,
)

MAX_BAUDRATE = 4_000_000

#: Port buffering limits (ours; MOXA's NPort 6000 keeps up to 20 MB on an SD card).
MAX_MEMORY_BUFFER_KIB = 64 * 1024
MAX_PORT_BUFFER_KIB = 1024 * 1024


# -- converters and validators -----------------------------------------------

_T = TypeVar("_T")


def _as_tuple(value: Iterable[_T]) -> tuple[_T, ...]:
    """attrs converter: any iterable to a tuple (typed, unlike converter=tuple)."""
    return tuple(value)


def _port_tuple(value: Iterable[PortConfig]) -> tuple[PortConfig, ...]:
    return tuple(value)


#: What a validator allows, for input hints in the consoles (maxlength, ranges):
#: validator -> {"low": …, "high": …} or {"max_length": …}.  See L{input_limits}.
_LIMITS: dict[Any, dict[str, int]] = {}


def input_limits(cls: type[Any], name: str) -> dict[str, int]:
    """
    The limits field C{name} of settings class C{cls} validates
    (C{low}/C{high} for numbers, C{max_length} for text); empty when its
    validator states none.
    """
    for f in attrs.fields(cls):
        if f.name == name:
            limits: dict[str, int] = {}
            # A list of validators becomes attrs' and_(): look at each.
            for v in getattr(f.validator, "_validators", (f.validator,)):
                limits.update(_LIMITS.get(v, {}))
            return limits
    return {}


def _range(low: int, high: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{attribute.name} must be an integer from {low} to {high}")
    _LIMITS[check] = {"low": low, "high": high}
    return check


def _optional_range(low: int, high: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    inner = _range(low, high)

    def check(inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is not None:
            inner(inst, attribute, value)
    _LIMITS[check] = {"low": low, "high": high}
    return check


def text_problem(text: str) -> str | None:
    """
    Why C{text} cannot be a text setting, or None.  A setting must survive
    the settings file (UTF-8, values stripped), HTML and the wire: no lone
    surrogates (they cannot be encoded at all: every save, export and page
    would fail), no control characters (C0, DEL, C1), no line or paragraph
    separators, and no leading or trailing whitespace (the file would lose
    it silently).
    """
    for c in text:
        category = unicodedata.category(c)
        if category == "Cs":
            return f"must not contain a lone surrogate (U+{ord(c):04X} is not a character)"
        if category == "Cc":
            return "must not contain control characters"
        if category in ("Zl", "Zp"):
            return "must not contain line or paragraph separators"
    if text != text.strip():
        return "must not begin or end with a space"
    return None


def _text(max_len: int, allow_empty: bool = True) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise ValueError(f"{attribute.name} must be text")
        if len(value) > max_len:
            raise ValueError(f"{attribute.name} is longer than {max_len} characters")
        if not allow_empty and not value:
            raise ValueError(f"{attribute.name} must not be empty")
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(f"{attribute.name} {problem}")
    _LIMITS[check] = {"max_length": max_len}
    return check


def _one_of(options: tuple[Any, ...]) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or value not in options:
            shown = ", ".join(f"{o:g}" if isinstance(o, float) else str(o) for o in options)
            raise ValueError(f"{attribute.name} must be one of {shown}")
    return check


def _ipv4(optional: bool = True) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value == "":
            return
        try:
            ipaddress.IPv4Address(value if isinstance(value, str) else "")
        except ValueError:
            raise ValueError(f"{attribute.name} must be an IPv4 address like 192.168.127.254") from None
    return check


_HOST_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def is_host(text: str) -> bool:
    """An IPv4 address or a DNS host name (letters, digits, hyphens; dotted labels)."""
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if not text or len(text) > 253:
        return False
    if all(label.isascii() and label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            return False
        return True
    return all(_HOST_LABEL.match(label) for label in labels)


def is_email(text: str) -> bool:
    """C{local@host}: a local part without spaces, commas or controls, and a host (L{is_host})."""
    local, at, host = text.rpartition("@")
    return (bool(at) and bool(local) and "@" not in local and _plain_word(local)
            and is_host(host))


def _host() -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value and not is_host(value):
            raise ValueError(f"{attribute.name} must be an IPv4 address or a host name")
    return check


def _email() -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value and not is_email(value):
            raise ValueError(f"{attribute.name} must be an e-mail address like ops@plant.example")
    return check


def _plain_word(text: str) -> bool:
    """No whitespace, control characters, commas (the file's list separator) or unencodable text."""
    return (bool(text) and text_problem(text) is None
            and not any(c.isspace() or c == "," for c in text))


def _host_port(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for item in value:
        host, sep, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if (not sep or not _plain_word(host) or not port.isascii() or not port.isdecimal()
                or not 1 <= int(port) <= 65535):
            raise ValueError(f"{attribute.name}: {item!r} is not HOST:PORT")


# -- sections ---------------------------------------------------------------

@attrs.frozen
class Identity:
    """Who the box says it is (read-only on a real NPort; configurable here)."""

    model: str = attrs.field(default="", validator=_text(39))  # "" = picked by port count
    mac: str = attrs.field(default="")  # "" = MAC of the default-route interface
    serial_number: int = attrs.field(default=0, validator=_range(0, 0xFFFF))  # 0 = from MAC
    firmware: str = attrs.field(default="1.0.0", validator=_text(31, allow_empty=False))

    @model.validator
    def _check_model(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value:
            try:
                find_model(value)
            except KeyError as e:
                raise ValueError(e.args[0]) from None

    @mac.validator
    def _check_mac(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value and parse_mac(value) is None:
            raise ValueError("mac must look like 00:90:E8:12:34:56")

    def model_info(self, port_count: int) -> Model:
        """The model presented for C{port_count} serial ports."""
        from nport_twisted.config.models import default_model
        return find_model(self.model) if self.model else default_model(port_count)


@attrs.frozen
class BasicSettings:
    """settings.md §2."""

    server_name: str = attrs.field(default="", validator=_text(39))  # "" = NP<model>_<serial>
    server_location: str = attrs.field(default="", validator=_text(39))
    time_zone: str = attrs.field(default="UTC", validator=_text(63))
    time_server: str = attrs.field(default="", validator=_text(63))
    web_console: bool = True
    telnet_console: bool = True
    reset_button_protect: bool = False


def _v3_password(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value and len(value) < 8:  # RFC 3414 §11.2: at least 8 characters
        raise ValueError(f"{attribute.name} must be at least 8 characters")


@attrs.frozen
class NetworkSettings:
    """
    settings.md §3.  The addresses are the OS's: shown from the live system,
    stored here only so an exported file is complete (docs/configuration.md).
    """

    ip_config: IPConfig = IPConfig.STATIC
    ip: str = attrs.field(default="", validator=_ipv4())
    netmask: str = attrs.field(default="", validator=_ipv4())
    gateway: str = attrs.field(default="", validator=_ipv4())
    dns1: str = attrs.field(default="", validator=_ipv4())
    dns2: str = attrs.field(default="", validator=_ipv4())
    # MOXA's default is "Enable" with community "public"; ours has no default
    # community, so the agent stays silent until one is set (docs/monitoring.md).
    snmp: bool = True
    snmp_community: str = attrs.field(default="", validator=_text(39))
    snmp_contact: str = attrs.field(default="", validator=_text(39))
    snmp_location: str = attrs.field(default="", validator=_text(39))
    # Ours (docs/monitoring.md): one SNMPv3 USM user, authPriv with SHA-256 and
    # AES-128; v3 answers nobody until the user and both passwords are set.
    snmp_v3_user: str = attrs.field(default="", validator=_text(32))
    snmp_v3_auth_password: str = attrs.field(default="", validator=[_text(64), _v3_password],
                                             repr=False)
    snmp_v3_priv_password: str = attrs.field(default="", validator=[_text(64), _v3_password],
                                             repr=False)
    auto_report_host: str = attrs.field(default="", validator=_text(63))
    auto_report_port: int = attrs.field(default=4002, validator=_range(1, 65535))
    auto_report_period: int = attrs.field(default=10, validator=_range(1, 65535))


@attrs.frozen
class SerialSettings:
    """settings.md §4: one serial port's line settings."""

    alias: str = attrs.field(default="", validator=_text(15))
    baudrate: int = attrs.field(default=115200, validator=_range(50, MAX_BAUDRATE))
    bytesize: int = attrs.field(default=8, validator=_one_of((5, 6, 7, 8)))
    stopbits: float = attrs.field(default=1, validator=_one_of((1, 1.5, 2)))
    parity: Parity = Parity.NONE
    flow_control: FlowControl = FlowControl.NONE  # ours: MOXA's RTS/CTS would stall a bare pty
    fifo: bool = True
    interface: SerialInterface = SerialInterface.RS232

    @property
    def rtscts(self) -> bool:
        return self.flow_control is FlowControl.RTS_CTS

    @property
    def xonxoff(self) -> bool:
        return self.flow_control is FlowControl.XON_XOFF

    @property
    def dsrdtr(self) -> bool:
        return self.flow_control is FlowControl.DTR_DSR


@attrs.frozen
class UdpDestination:
    """One UDP mode destination range."""

    begin: str = attrs.field(validator=_ipv4(optional=False))
    end: str = attrs.field(validator=_ipv4())
    port: int = attrs.field(default=4001, validator=_range(1, 65535))


def _udp_destinations(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if len(value) > 4:
        raise ValueError(f"{attribute.name}: at most 4 destination ranges")


@attrs.frozen
class OperatingSettings:
    """
    settings.md §5: one port's operating mode and every mode's parameters.

    Port numbers left at 0 mean "the NPort default for this port": Real COM
    950+n-1/966+n-1, TCP Server 4001+n-1 and command port 966+n-1.
    """

    mode: OpMode = OpMode.REAL_COM
    tcp_alive_check_min: int = attrs.field(default=7, validator=_range(0, 99))
    inactivity_ms: int = attrs.field(default=0, validator=_range(0, 65535))
    max_connection: int = attrs.field(default=1, validator=_range(1, 4))
    ignore_jammed: bool = False
    allow_driver_control: bool = False
    packing_length: int = attrs.field(default=0, validator=_range(0, 1024))
    delimiter1: int | None = attrs.field(default=None, validator=_optional_range(0, 255))
    delimiter2: int | None = attrs.field(default=None, validator=_optional_range(0, 255))
    delimiter_process: DelimiterProcess = DelimiterProcess.DO_NOTHING
    force_transmit_ms: int = attrs.field(default=0, validator=_range(0, 65535))
    local_tcp_port: int = attrs.field(default=0, validator=_range(0, 65535))
    command_port: int = attrs.field(default=0, validator=_range(0, 65535))
    data_port: int = attrs.field(default=0, validator=_range(0, 65535))  # Real COM
    # Secure Real COM / Secure TCP Server / RFC 2217: TLS on the data port
    # (TLS 1.2, config/tls.py); the command port stays plain.
    secure: bool = False
    # Secure TCP Server / RFC 2217: a PEM file of CA certificates; clients must
    # present a certificate one of them signed ("" = none asked; ours).
    tls_ca_file: str = attrs.field(default="", validator=_text(255))
    # TCP Server: the command port takes only hosts holding a data connection
    # on this port (ours, issue 10; MOXA's device takes any host).
    command_requires_data: bool = True
    # TCP Server: listen on the ASPP command port at all (ours, issue 13: off
    # for a plain relay; an NPort always listens there).
    command_port_enabled: bool = True
    # TCP Client
    destinations: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple, validator=_host_port)
    designated_local_ports: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple)
    connection_control: ConnectionControl = ConnectionControl.STARTUP_NONE
    # UDP
    udp_destinations: tuple[UdpDestination, ...] = attrs.field(
        default=(), converter=_as_tuple, validator=_udp_destinations)
    udp_local_port: int = attrs.field(default=0, validator=_range(0, 65535))
    # Pair Connection (master connects to the slave's TCP port)
    pair_remote: str = attrs.field(default="", validator=_text(63))
    # Ethernet Modem / Reverse Telnet use local_tcp_port.  Reverse Telnet's
    # "Map <CR-LF>": what the client's Enter (CR LF, CR NUL or CR) becomes on
    # the serial line (MOXA's option; its default CR-LF is unverified).
    telnet_map_cr: str = attrs.field(default="crlf", validator=_one_of(("crlf", "cr", "lf")))
    # Port buffering (NPort 6000): serial input kept while no host holds a
    # TCP Server / Real COM port and delivered to the next one; 0 = off.
    port_buffer_kib: int = attrs.field(default=0, validator=_range(0, MAX_PORT_BUFFER_KIB))
    port_buffer_location: str = attrs.field(default="memory",
                                            validator=_one_of(("memory", "state-dir")))

    @pair_remote.validator
    def _check_pair_remote(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value:
            _host_port(self, attribute, (value,))

    @destinations.validator
    def _check_destinations(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if len(value) > 4:
            raise ValueError("destinations: at most 4 HOST:PORT entries")

    @designated_local_ports.validator
    def _check_local_ports(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if len(value) > 4 or any(not 0 <= p <= 65535 for p in value):
            raise ValueError("designated_local_ports: at most 4 ports from 0 to 65535")

    def __attrs_post_init__(self) -> None:
        if self.delimiter2 is not None and self.delimiter1 is None:
            raise ValueError("delimiter2 needs delimiter1 (delimiter 2 alone does not work)")
        if self.inactivity_ms and self.force_transmit_ms and self.inactivity_ms <= self.force_transmit_ms:
            raise ValueError("inactivity_ms must be greater than force_transmit_ms")
        if self.port_buffer_location == "memory" and self.port_buffer_kib > MAX_MEMORY_BUFFER_KIB:
            raise ValueError(f"port_buffer_kib above {MAX_MEMORY_BUFFER_KIB} needs "
                             "port_buffer_location state-dir")

    def packing(self) -> PackingConfig:
        """The serial-to-network packing rules of this port."""
        return PackingConfig(
            packing_length=self.packing_length,
            delimiter1=self.delimiter1,
            delimiter2=self.delimiter2,
            delimiter_process=self.delimiter_process,
            force_transmit_ms=self.force_transmit_ms,
        )


@attrs.frozen
class PortConfig:
    """Everything about one serial port."""

    serial: SerialSettings = attrs.Factory(SerialSettings)
    operating: OperatingSettings = attrs.Factory(OperatingSettings)


@attrs.frozen
class AccessibleIP:
    """One entry of the accessible IP list."""

    ip: str = attrs.field(validator=_ipv4(optional=False))
    netmask: str = attrs.field(default="255.255.255.255", validator=_ipv4(optional=False))
    active: bool = True

    def __attrs_post_init__(self) -> None:
        try:
            self.network()
        except ValueError:
            raise ValueError(f"netmask {self.netmask} is not a valid netmask "
                             "(like 255.255.255.0)") from None

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.netmask}", strict=False)


def _accessible(_inst: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if len(value) > 16:
        raise ValueError("accessible_ip: at most 16 entries")


@attrs.frozen
class AccessibleIPSettings:
    """settings.md §6: when an entry is active only matching hosts are served."""

    entries: tuple[AccessibleIP, ...] = attrs.field(default=(), converter=_as_tuple, validator=_accessible)

    def allows(self, address: str) -> bool:
        """Whether C{address} may use the device (any address when no entry is active)."""
        active = [e for e in self.entries if e.active]
        if not active:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback:
            return True  # the box's own tools always work
        return any(isinstance(ip, ipaddress.IPv4Address) and ip in e.network() for e in active)


@attrs.frozen
class AutoWarningSettings:
    """settings.md §7."""

    mail_server: str = attrs.field(default="", validator=[_text(63), _host()])
    mail_user: str = attrs.field(default="", validator=_text(63))
    mail_password: str = attrs.field(default="", validator=_text(63), repr=False)  # never replied
    mail_from: str = attrs.field(default="", validator=[_text(63), _email()])
    mail_to: tuple[str, ...] = attrs.field(default=(), converter=_as_tuple)
    trap_server: str = attrs.field(default="", validator=[_text(63), _host()])
    mail_cold_start: bool = False
    mail_warm_start: bool = False
    mail_auth_failure: bool = False
    mail_ip_changed: bool = False
    mail_password_changed: bool = False
    trap_cold_start: bool = False
    trap_warm_start: bool = False
    trap_auth_failure: bool = False
    # Beyond the classic 5x00 menu (docs/monitoring.md): the SMTP and trap
    # ports, the trap version and community (MOXA's NPort 6000 MIB has
    # trapVersion v1/v2c), link down (NPort 5600-8-DT manual) and the per-port
    # DCD/DSR change events (MOXA's portEventSettingsTable) as port lists.
    mail_port: int = attrs.field(default=25, validator=_range(1, 65535))
    mail_tls_verify: bool = True  # STARTTLS certificate must match mail_server
    trap_port: int = attrs.field(default=162, validator=_range(1, 65535))
    trap_version: str = attrs.field(default="v2c", validator=_one_of(("v1", "v2c")))
    trap_community: str = attrs.field(default="", validator=_text(39), repr=False)
    mail_link_down: bool = False
    trap_link_down: bool = False
    trap_ip_changed: bool = False
    trap_password_changed: bool = False
    mail_dcd_change: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple)
    trap_dcd_change: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple)
    mail_dsr_change: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple)
    trap_dsr_change: tuple[int, ...] = attrs.field(default=(), converter=_as_tuple)

    @mail_dcd_change.validator
    @trap_dcd_change.validator
    @mail_dsr_change.validator
    @trap_dsr_change.validator
    def _check_ports(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if any(isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 32 for p in value):
            raise ValueError(f"{attribute.name}: serial port numbers from 1 to 32")

    @mail_to.validator
    def _check_mail_to(self, attribute: attrs.Attribute[Any], value: Any) -> None:
        if len(value) > 4 or any(not isinstance(a, str) or len(a) > 63 or not _plain_word(a)
                                 for a in value):
            raise ValueError("mail_to: at most 4 addresses of up to 63 characters, "
                             "without spaces or commas")
        for a in value:
            if not is_email(a):
                raise ValueError(f"mail_to: {a!r} is not an e-mail address like ops@plant.example")


@attrs.frozen
class MonitoringSettings:
    """
    Ours (docs/monitoring.md): syslog (RFC 5424) of the device events and
    connections, and who may read the Prometheus metrics.
    """

    syslog_server: str = attrs.field(default="", validator=[_text(63), _host()])
    syslog_port: int = attrs.field(default=514, validator=_range(1, 65535))
    syslog_tcp: bool = False  # RFC 6587 octet counting over TCP instead of UDP
    syslog_facility: int = attrs.field(default=3, validator=_range(0, 23))  # 3 = daemon
    syslog_connections: bool = True  # also log connection open/close per port
    metrics_public: bool = False  # /metrics without login (only when explicitly enabled)
    metrics_token: str = attrs.field(default="", validator=_text(128), repr=False)  # bearer


_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


@attrs.frozen
class PasswordSettings:
    """
    The console password, only ever stored as a salted scrypt hash.  There is
    no default password (CVE-2016-1529): "" means "not set yet".
    """

    hash: str = attrs.field(default="", repr=False)

    @hash.validator
    def _check(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value and _parse_hash(value) is None:
            raise ValueError("hash must be scrypt$N$r$p$salt$digest as written by nport-twisted")

    @property
    def is_set(self) -> bool:
        return bool(self.hash)

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None) -> PasswordSettings:
        """Hash C{password} with a fresh salt."""
        if not password:
            raise ValueError("password must not be empty")
        import hashlib  # here, not at the top: it loads libcrypto (idle memory)

        salt = salt if salt is not None else os.urandom(16)
        digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
        enc = base64.b64encode
        return cls(f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${enc(salt).decode()}${enc(digest).decode()}")

    def verify(self, password: str) -> bool:
        """Constant-time check of C{password}; always False when none is set."""
        parsed = _parse_hash(self.hash) if self.hash else None
        if parsed is None:
            return False
        n, r, p, salt, expected = parsed
        try:
            secret = password.encode()
        except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): never the password
            return False
        import hashlib  # here, not at the top: it loads libcrypto (idle memory)
        import hmac

        got = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(expected),
                             maxmem=128 * r * (n + p + 2) + 2**20)
        return hmac.compare_digest(got, expected)


def _parse_hash(text: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(N, r, p, salt, digest) of a stored hash, or None when it is malformed or too costly."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdecimal() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    if (n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16
            or 128 * r * n > 2**26 or not salt or not 16 <= len(digest) <= 128):
        return None
    return n, r, p, salt, digest


@attrs.frozen
class DeviceConfig:
    """The whole configuration of the box."""

    identity: Identity = attrs.Factory(Identity)
    basic: BasicSettings = attrs.Factory(BasicSettings)
    network: NetworkSettings = attrs.Factory(NetworkSettings)
    ports: tuple[PortConfig, ...] = attrs.field(default=(), converter=_port_tuple)
    accessible_ip: AccessibleIPSettings = attrs.Factory(AccessibleIPSettings)
    auto_warning: AutoWarningSettings = attrs.Factory(AutoWarningSettings)
    password: PasswordSettings = attrs.Factory(PasswordSettings)
    monitoring: MonitoringSettings = attrs.Factory(MonitoringSettings)

    def with_port_count(self, count: int, default_mode: OpMode) -> DeviceConfig:
        """
        This configuration with exactly C{count} ports: saved ports are kept,
        missing ones get factory defaults in C{default_mode}.
        """
        ports = list(self.ports[:count])
        while len(ports) < count:
            ports.append(PortConfig(operating=OperatingSettings(mode=default_mode)))
        return attrs.evolve(self, ports=tuple(ports))

    def replace_port(self, index: int, port: PortConfig) -> DeviceConfig:
        """This configuration with port C{index} (0-based) replaced."""
        ports = list(self.ports)
        ports[index] = port
        return attrs.evolve(self, ports=tuple(ports))


def parse_mac(text: str) -> bytes | None:
    """Six bytes from ``00:90:E8:12:34:56`` / ``00-90-e8-…`` / ``0090e8123456``, else None."""
    digits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        return None
    try:
        return bytes.fromhex(digits)
    except ValueError:
        return None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02X}" for b in mac)


# Port-number defaults (realcom.md §0, settings.md §5.2).

def realcom_data_port(index: int) -> int:
    """Default Real COM data port of port C{index} (0-based)."""
    return 950 + index if index < 16 else 982 + index - 16


def realcom_command_port(index: int) -> int:
    """Default Real COM command port of port C{index} (0-based)."""
    return 966 + index if index < 16 else 998 + index - 16


def tcp_server_port(index: int) -> int:
    """Default TCP Server mode data port of port C{index} (0-based)."""
    return 4001 + index
