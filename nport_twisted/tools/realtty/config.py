# -*- test-case-name: tests.test_realtty_config -*-
"""
What nport-realtty serves: one L{PortConfig} per remote Real COM port, read
from the command line, from our INI file, or from MOXA's own
C{npreal2d.cf} unchanged.  Pure: text in, frozen values out (no files are
opened here except by L{load_config}, no groups are looked up).

MOXA's C{npreal2d.cf} (written by C{mxaddsvr}, read by C{npreal2d} with
C{sscanf("%s%s%s%s%d%d%s%s%s%d%s")}; realcom.md §11)::

    ttymajor=33
    calloutmajor=38
    #[Minor] [ServerIP] [data] [cmd] [FIFO] [SSL] [ttyName] [coutName] [interface] [mode] [BackIP]
    0   192.168.127.254   950   966   1   0   ttyr00   cur00   0   0

  - a line whose first word starts with C{#}, blank lines and the
    C{ttymajor=} / C{calloutmajor=} lines are not ports;
  - FIFO C{1} enables the UART FIFO (TX_FIFO 16), any other value disables
    it (TX_FIFO 1), exactly as npreal2d reads it;
  - SSL non-zero: Secure Real COM (TLS on the data connection);
  - ttyName / coutName: the device names MOXA's loader creates under
    C{/dev} (C{ttyr00}, C{cur00}); we create symlinks with those names;
  - interface: the scope of an IPv6 link-local server address (C{0}: none);
  - mode C{1} is Redundant COM (two LANs, C{npreal2d_redund}), not
    supported here: such lines are reported and skipped.

  MOXA's current daemon takes only lines of 10 or 11 words; older files
  have 7-9 (without SSL, interface or mode) and are accepted too.  Data and
  command ports above 9999, which MOXA's daemon refuses, are accepted.

Our INI file (docs/realtty.md)::

    [realtty]
    npreal2d_cf = /usr/lib/npreal2/driver/npreal2d.cf   ; optional
    link_dir = /dev
    group = dialout
    format = 8N1                ; any port key here is a default for every port

    [ttyNP0]                    ; a link name (under link_dir) or a path
    server = 192.168.127.254
    port = 1                    ; or data_port = 950 / command_port = 966
"""

from __future__ import annotations

import configparser
import enum
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from nport_twisted._exceptions import ConfigError

__all__ = [
    "DEFAULT_LINK_DIR",
    "Npreal2Line",
    "OnClose",
    "PortConfig",
    "RealTtyConfig",
    "TermiosWatch",
    "WhileDisconnected",
    "load_config",
    "parse_config_text",
    "parse_format",
    "parse_ini",
    "parse_npreal2d_cf",
    "parse_target",
    "port_numbers",
]

#: Where MOXA's loader puts ttyrNN / curNN, and where cf links go by default.
DEFAULT_LINK_DIR = "/dev"


class OnClose(str, enum.Enum):
    """What the last close of the tty does to the connection (after the drain and FLUSH)."""

    DISCONNECT = "disconnect"  # MOXA's driver: close both connections
    KEEP = "keep"  # keep them for the next open (no reconnect delay)


class WhileDisconnected(str, enum.Enum):
    """What the application's writes do while the server is unreachable."""

    BLOCK = "block"  # they wait (the tty's buffer fills, then write() blocks)
    FAIL = "fail"  # the tty is hung up: read() gives EOF, write() EIO; reopen the link


class TermiosWatch(str, enum.Enum):
    """How termios changes of the application are seen on the pty master."""

    EXTPROC = "extproc"  # packet mode + EXTPROC: one TIOCPKT_IOCTL event per change
    POLL = "poll"  # read the termios every poll_interval (keeps canonical input)


def port_numbers(n: int) -> tuple[int, int]:
    """
    (data port, command port) of NPort serial port C{n} (1-based):
    950+n-1 / 966+n-1 for ports 1-16, 982+n-17 / 998+n-17 for 17-32
    (realcom.md §0).
    """
    if not 1 <= n <= 32:
        raise ConfigError(f"serial port number must be 1-32, not {n}")
    if n <= 16:
        return 950 + n - 1, 966 + n - 1
    return 982 + n - 17, 998 + n - 17


_FORMAT = re.compile(r"^([5-8])([NEOMS])(1|1\.5|2)?$", re.IGNORECASE)


def parse_format(text: str) -> tuple[int, str, float | None]:
    """
    C{"8N1"}, C{"7E2"}, C{"8N"} -> (data bits, parity, stop bits); stop bits
    None (C{"8N"}) means: from the tty (ptys keep CSTOPB).
    """
    m = _FORMAT.match(text.strip())
    if m is None:
        raise ConfigError(
            f"format = {text!r}: expected data bits 5-8, parity N/E/O/M/S and optional "
            "stop bits 1/1.5/2, e.g. 8N1 or 7E1"
        )
    stop = float(m.group(3)) if m.group(3) else None
    return int(m.group(1)), m.group(2).upper(), stop


def _check_port(value: int) -> int:
    if not 0 < value < 65536:
        raise ValueError(f"TCP port must be 1-65535, not {value}")
    return value


@attrs.frozen
class PortConfig:
    """
    One remote Real COM port served as a local tty.

    C{link} is the stable path applications open (a symlink to the pty
    slave); C{callout} an optional second one (MOXA's C{curNN}).
    C{stopbits} None: the tty's CSTOPB decides.  C{group} None: C{dialout}
    when the system has that group; C{""}: keep the pty's group.
    """

    link: str
    host: str
    data_port: int = attrs.field(validator=lambda i, a, v: _check_port(v))
    command_port: int = attrs.field(validator=lambda i, a, v: _check_port(v))
    callout: str | None = None
    tls: bool = False
    fifo: bool = True
    interface: str | None = None
    bytesize: int = attrs.field(default=8, validator=attrs.validators.in_((5, 6, 7, 8)))
    parity: str = attrs.field(default="N", validator=attrs.validators.in_(tuple("NEOMS")))
    stopbits: float | None = attrs.field(
        default=None, validator=attrs.validators.in_((None, 1.0, 1.5, 2.0))
    )
    dtr: bool = True
    rts: bool = True
    mode: int = attrs.field(default=0o660, validator=attrs.validators.in_(range(0o1000)))
    group: str | None = None
    on_close: OnClose = OnClose.DISCONNECT
    while_disconnected: WhileDisconnected = WhileDisconnected.BLOCK
    closing_wait: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    connect_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    command_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    reconnect_max: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    termios_watch: TermiosWatch = TermiosWatch.EXTPROC
    poll_interval: float = attrs.field(default=0.05, validator=attrs.validators.gt(0))
    source: str = ""

    @property
    def fifo_value(self) -> int:
        """The TX_FIFO byte: 16 when the FIFO is on, 1 when off (realcom.md §3.2 step 8)."""
        return 16 if self.fifo else 1

    @property
    def server(self) -> str:
        """C{host:data/command} for messages."""
        return f"{self.host}:{self.data_port}/{self.command_port}"

    @property
    def links(self) -> tuple[str, ...]:
        """Every path that points at this port's tty."""
        return (self.link,) if not self.callout else (self.link, self.callout)


@attrs.frozen
class RealTtyConfig:
    """Everything one nport-realtty process serves."""

    ports: tuple[PortConfig, ...]
    control: str | None = None  # control/status socket path (None: the default)
    status_file: str | None = None
    alive_timeout: float = 60.0  # npreal2d -t 1; 0 turns UDP liveness polling off
    dsci_port: int = 4800
    warnings: tuple[str, ...] = ()


# --- values --------------------------------------------------------------------

_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def _bool(key: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{key} = {text!r}: expected on/off (yes/no, 1/0)")


def _int(key: str, text: str, low: int, high: int, base: int = 10) -> int:
    try:
        value = int(text.strip(), base)
    except ValueError:
        raise ConfigError(f"{key} = {text!r}: not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{key} = {text!r}: must be {low}-{high}")
    return value


def _seconds(key: str, text: str, allow_zero: bool = True) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ConfigError(f"{key} = {text!r}: not a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero) or value != value or value == float("inf"):
        raise ConfigError(f"{key} = {text!r}: out of range")
    return value


def _enum(key: str, text: str, cls: type[enum.Enum]) -> Any:
    try:
        return cls(text.strip().lower())
    except ValueError:
        names = ", ".join(str(m.value) for m in cls)
        raise ConfigError(f"{key} = {text!r}: expected one of {names}") from None


def parse_target(text: str) -> tuple[str, int, int]:
    """
    C{HOST:N} (NPort serial port N), C{HOST} (port 1), C{[v6]:N} or
    C{HOST:DATA/COMMAND} -> (host, data port, command port).
    """
    text = text.strip()
    if not text:
        raise ConfigError("empty server address")
    host, sep, rest = text, "", ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ConfigError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{text!r}: expected ':' after ']'")
        sep, rest = (":", rest[1:]) if rest else ("", "")
    elif text.count(":") == 1:
        host, sep, rest = text.partition(":")
    if not host:
        raise ConfigError(f"{text!r}: no host")
    if not sep:
        return (host, *port_numbers(1))
    if "/" in rest:
        data, _, command = rest.partition("/")
        return (
            host,
            _int(f"{text}: data port", data, 1, 65535),
            _int(f"{text}: command port", command, 1, 65535),
        )
    return (host, *port_numbers(_int(f"{text}: serial port", rest, 1, 32)))


def _link_path(name: str, link_dir: str) -> str:
    return name if os.path.isabs(name) else os.path.join(link_dir, name)


# --- port keys (shared by the command line, [realtty] and port sections) ----------

#: Keys that set PortConfig fields directly, with their parsers.
PORT_KEYS = (
    "server", "port", "data_port", "command_port", "ssl", "fifo", "callout", "interface",
    "format", "dtr", "rts", "mode", "group", "on_close", "while_disconnected",
    "closing_wait", "connect_timeout", "command_timeout", "reconnect_max",
    "termios_watch", "poll_interval",
)  # fmt: skip


def port_fields(values: Mapping[str, str], where: str, link_dir: str) -> dict[str, Any]:
    """
    Turn port keys (as text) into PortConfig field values; C{where} names
    the section for messages.  C{server} may carry the port (C{HOST:N}).
    """
    out: dict[str, Any] = {}
    for key, text in values.items():
        name = f"{where}: {key}"
        if key == "server":
            host, data, command = parse_target(text)
            out["host"] = host
            if ":" in text.strip().lstrip("[").split("]")[-1]:
                out["data_port"], out["command_port"] = data, command
        elif key == "port":
            out["data_port"], out["command_port"] = port_numbers(_int(name, text, 1, 32))
        elif key in ("data_port", "command_port"):
            out[key] = _int(name, text, 1, 65535)
        elif key == "ssl":
            out["tls"] = _bool(name, text)
        elif key in ("fifo", "dtr", "rts"):
            out[key] = _bool(name, text)
        elif key == "callout":
            out["callout"] = _link_path(text.strip(), link_dir) if text.strip() else None
        elif key == "interface":
            out["interface"] = text.strip() or None
        elif key == "format":
            try:
                out["bytesize"], out["parity"], out["stopbits"] = parse_format(text)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        elif key == "mode":
            out["mode"] = _int(name, text, 0, 0o777, base=8)
        elif key == "group":
            out["group"] = text.strip()
        elif key == "on_close":
            out["on_close"] = _enum(name, text, OnClose)
        elif key == "while_disconnected":
            out["while_disconnected"] = _enum(name, text, WhileDisconnected)
        elif key == "termios_watch":
            out["termios_watch"] = _enum(name, text, TermiosWatch)
        elif key in ("closing_wait",):
            out[key] = _seconds(name, text)
        elif key in ("connect_timeout", "command_timeout", "reconnect_max", "poll_interval"):
            out[key] = _seconds(name, text, allow_zero=False)
        else:
            raise ConfigError(f"{where}: unknown key {key!r}")
    return out


def _make_port(fields: Mapping[str, Any], where: str) -> PortConfig:
    if "host" in fields and "data_port" not in fields and "command_port" not in fields:
        fields = {**fields, **dict(zip(("data_port", "command_port"), port_numbers(1)))}
    missing = [k for k in ("link", "host", "data_port", "command_port") if k not in fields]
    if missing:
        need = "server" if "host" in missing else missing[0]
        raise ConfigError(f"{where}: missing {need}")
    try:
        return PortConfig(**fields)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


# --- npreal2d.cf -------------------------------------------------------------------


@attrs.frozen
class Npreal2Line:
    """One port line of npreal2d.cf, as MOXA's daemon reads it."""

    number: int
    minor: str
    server: str
    data_port: int
    command_port: int
    fifo: bool
    ssl: bool
    tty_name: str
    callout_name: str
    interface: str | None
    mode: int
    backup: str | None


def _is_int(word: str) -> bool:
    return bool(re.fullmatch(r"[+-]?\d+", word))


def _split_cf_line(words: list[str]) -> dict[str, str] | None:
    """Name the words of one line (7-11 of them), or None when it has no valid layout."""
    n = len(words)
    head = dict(zip(("minor", "server", "data", "cmd", "fifo"), words))
    names: tuple[str, ...]
    if n > 11:
        return None
    if n >= 10 or n == 9 or (n == 8 and _is_int(words[5])):
        # Current layout: ... FIFO SSL ttyName coutName [interface [mode [backup]]]
        names = ("ssl", "tty", "callout", "interface", "mode", "backup")
    elif n in (7, 8):
        # Old layout without the SSL column: ... FIFO ttyName coutName [interface]
        names = ("tty", "callout", "interface")
    else:
        return None
    return {**head, **dict(zip(names, words[5:]))}


def parse_npreal2d_cf(text: str, source: str = "npreal2d.cf") -> tuple[list[Npreal2Line], list[str]]:
    """
    The port lines of an npreal2d.cf and, for every line that is not a
    port and not a comment, a warning naming the line (MOXA's daemon skips
    those silently).
    """
    lines: list[Npreal2Line] = []
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        first = words[0].lower()
        if first.startswith(("ttymajor", "calloutmajor")):
            continue
        where = f"{source} line {number}"
        named = _split_cf_line(words)
        if named is None:
            warnings.append(f"{where}: {len(words)} columns, expected 10 "
                            "(minor server data cmd FIFO SSL ttyName coutName interface mode); "
                            "skipped")
            continue
        bad = [k for k in ("data", "cmd", "fifo", "ssl", "mode") if k in named
               and not _is_int(named[k])]
        if bad:
            warnings.append(f"{where}: {bad[0]} = {named[bad[0]]!r} is not a number; skipped")
            continue
        data, cmd = int(named["data"]), int(named["cmd"])
        if not (0 < data < 65536 and 0 < cmd < 65536):
            warnings.append(f"{where}: data/cmd port {data}/{cmd} outside 1-65535; skipped")
            continue
        mode = int(named.get("mode", "0"))
        if mode != 0:
            warnings.append(
                f"{where}: mode {mode} (Redundant COM, MOXA's npreal2d_redund) is not "
                "supported; skipped")
            continue
        iface = named.get("interface")
        lines.append(Npreal2Line(
            number=number,
            minor=named["minor"],
            server=named["server"],
            data_port=data,
            command_port=cmd,
            fifo=int(named["fifo"]) == 1,  # npreal2d: 1 enables, anything else disables
            ssl=int(named.get("ssl", "0")) != 0,
            tty_name=named["tty"],
            callout_name=named["callout"],
            interface=None if iface in (None, "0") else iface,
            mode=mode,
            backup=named.get("backup"),
        ))
    return lines, warnings


def ports_from_cf(
    lines: Iterable[Npreal2Line], link_dir: str, defaults: Mapping[str, Any], source: str
) -> list[PortConfig]:
    """PortConfigs for cf lines: links C{link_dir/ttyName} and C{link_dir/coutName}."""
    ports = []
    for line in lines:
        fields = {
            **defaults,
            "link": _link_path(line.tty_name, link_dir),
            "callout": _link_path(line.callout_name, link_dir),
            "host": line.server,
            "data_port": line.data_port,
            "command_port": line.command_port,
            "tls": line.ssl,
            "fifo": line.fifo,
            "interface": line.interface,
            "source": f"{source} line {line.number}",
        }
        ports.append(_make_port(fields, fields["source"]))
    return ports


# --- INI ---------------------------------------------------------------------------

GLOBAL_SECTION = "realtty"
GLOBAL_KEYS = ("npreal2d_cf", "link_dir", "control", "status_file", "alive_timeout", "dsci_port")


def parse_ini(
    text: str,
    source: str = "realtty.ini",
    defaults: Mapping[str, Any] | None = None,
    read_file: Any = None,
) -> RealTtyConfig:
    """
    Parse our INI file.  C{defaults}: PortConfig fields from the command
    line (the file overrides them).  C{read_file(path) -> str} reads the
    C{npreal2d_cf} the file names (relative to the file's directory).
    """
    parser = configparser.ConfigParser(
        interpolation=None, inline_comment_prefixes=(";", "#"), default_section="\0none"
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source)
    except configparser.Error as e:
        raise ConfigError(f"{source}: {e}") from None
    base: dict[str, Any] = dict(defaults or {})
    glob: dict[str, str] = dict(parser[GLOBAL_SECTION]) if parser.has_section(GLOBAL_SECTION) else {}
    link_dir = glob.pop("link_dir", "").strip() or DEFAULT_LINK_DIR
    where = f"{source} [{GLOBAL_SECTION}]"
    settings: dict[str, Any] = {}
    for key in list(glob):
        if key in GLOBAL_KEYS:
            settings[key] = glob.pop(key).strip()
    bad = [k for k in glob if k not in PORT_KEYS or k in ("server", "port", "data_port",
                                                          "command_port", "callout")]
    if bad:
        raise ConfigError(f"{where}: unknown key {bad[0]!r}")
    base.update(port_fields(glob, where, link_dir))
    warnings: list[str] = []
    ports: dict[str, PortConfig] = {}
    cf = settings.get("npreal2d_cf")
    if cf:
        if read_file is None:
            raise ConfigError(f"{where}: npreal2d_cf cannot be read here")
        path = cf if os.path.isabs(cf) else os.path.join(os.path.dirname(source), cf)
        try:
            cf_text = read_file(path)
        except OSError as e:
            raise ConfigError(f"{where}: npreal2d_cf = {cf!r}: {e.strerror}") from None
        cf_lines, cf_warnings = parse_npreal2d_cf(cf_text, path)
        warnings += cf_warnings
        for port in ports_from_cf(cf_lines, link_dir, base, path):
            ports[port.link] = port
    for section in parser.sections():
        if section == GLOBAL_SECTION:
            continue
        where = f"{source} [{section}]"
        link = _link_path(section.strip(), link_dir)
        values = dict(parser[section])
        fields = port_fields(values, where, link_dir)
        if link in ports:  # a port of the npreal2d.cf: this section overrides keys
            try:
                ports[link] = attrs.evolve(ports[link], **fields, source=where)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: {e}") from None
            continue
        ports[link] = _make_port({**base, **fields, "link": link, "source": where}, where)
    return _finish(list(ports.values()), source, settings, warnings)


def _finish(
    ports: list[PortConfig], source: str, settings: Mapping[str, str], warnings: list[str]
) -> RealTtyConfig:
    if not ports:
        raise ConfigError(f"{source}: no port defined")
    seen: dict[str, str] = {}
    for port in ports:
        for link in port.links:
            if link in seen:
                raise ConfigError(f"{port.source}: {link} is also used by {seen[link]}")
            seen[link] = port.source or port.link
    where = f"{source} [{GLOBAL_SECTION}]"
    alive = settings.get("alive_timeout")
    dsci = settings.get("dsci_port")
    return RealTtyConfig(
        ports=tuple(ports),
        control=settings.get("control") or None,
        status_file=settings.get("status_file") or None,
        alive_timeout=_seconds(f"{where}: alive_timeout", alive) if alive else 60.0,
        dsci_port=_int(f"{where}: dsci_port", dsci, 1, 65535) if dsci else 4800,
        warnings=tuple(warnings),
    )


def _looks_like_ini(text: str) -> bool:
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        return line.startswith("[")
    return False


def parse_config_text(
    text: str,
    source: str,
    *,
    link_dir: str = DEFAULT_LINK_DIR,
    defaults: Mapping[str, Any] | None = None,
    read_file: Any = None,
) -> RealTtyConfig:
    """Our INI file or an npreal2d.cf, told apart by the first line that is not a comment."""
    if _looks_like_ini(text):
        return parse_ini(text, source, defaults, read_file)
    lines, warnings = parse_npreal2d_cf(text, source)
    if not lines:
        raise ConfigError(f"{source}: no tty defined (no valid port line; MOXA's npreal2d "
                          "also refuses to start)" + "".join(f"; {w}" for w in warnings))
    ports = ports_from_cf(lines, link_dir, dict(defaults or {}), source)
    return _finish(ports, source, {}, warnings)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def load_config(
    path: str, *, link_dir: str = DEFAULT_LINK_DIR, defaults: Mapping[str, Any] | None = None
) -> RealTtyConfig:
    """Read C{path} (INI or npreal2d.cf); L{ConfigError} names the file and the problem."""
    try:
        text = _read(path)
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    return parse_config_text(text, path, link_dir=link_dir, defaults=defaults, read_file=_read)
