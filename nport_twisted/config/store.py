# -*- test-case-name: tests.test_settings -*-
"""
Reading and writing the settings file (format: docs/configuration.md).

The file is INI, close to what MOXA's NPort 6000 exports: one section per
settings group (``[basic]``, ``[network]``, ``[port1.serial]``,
``[port1.operating]`` …), one ``key = value`` per field, keys named as the
fields of L{nport_twisted.config.settings}.  Unknown sections and keys are errors
(they are usually typos); missing keys take their defaults.

Every error names the file, section, key and value.  Writes are atomic
(temporary file, fsync, rename, fsync of the directory), so a crash or a
full disk leaves the previous file intact.
"""

from __future__ import annotations

import configparser
import enum
import os
import re
import tempfile
import typing
from typing import Any, Callable

import attrs

from nport_twisted._exceptions import ConfigError
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    AutoWarningSettings,
    MonitoringSettings,
    BasicSettings,
    DeviceConfig,
    Identity,
    NetworkSettings,
    OperatingSettings,
    OpMode,
    PasswordSettings,
    PortConfig,
    SerialSettings,
    UdpDestination,
)

_TRUE = {"yes", "on", "true", "1", "enable", "enabled"}
_FALSE = {"no", "off", "false", "0", "disable", "disabled"}

#: Fields written in hex because NPort menus show them so.
_HEX_FIELDS = {"delimiter1", "delimiter2"}

#: (section, field) pairs that hold secrets: left out of exports unless asked.
_SECRETS = {("password", "hash"), ("auto_warning", "mail_password"),
            ("auto_warning", "trap_community"), ("network", "snmp_community"),
            ("monitoring", "metrics_token"), ("network", "snmp_v3_auth_password"),
            ("network", "snmp_v3_priv_password")}

_SECTIONS: list[tuple[str, type[Any]]] = [
    ("identity", Identity),
    ("basic", BasicSettings),
    ("network", NetworkSettings),
    ("auto_warning", AutoWarningSettings),
    ("password", PasswordSettings),
    ("monitoring", MonitoringSettings),
]

_PORT_SECTION = re.compile(r"^port(\d+)\.(serial|operating)$")


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected yes or no")


def _parse_int(text: str) -> int:
    text = text.strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return int(text, 10)  # "07": leading zeros, which base 0 refuses
    except ValueError:
        raise ValueError("expected a whole number (or 0x.. hex)") from None


def _reason(e: Exception) -> str:
    """The message of a validation error (attrs validators may add extra args)."""
    return e.args[0] if len(e.args) >= 1 and isinstance(e.args[0], str) else str(e)


def _new_parser() -> configparser.ConfigParser:
    # No [DEFAULT] magic: its keys would silently appear in every section.
    parser = configparser.ConfigParser(interpolation=None, default_section="nport-twisted:no-default")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    return parser


def _udp_dest_to_text(d: UdpDestination) -> str:
    return f"{d.begin}-{d.end or d.begin}:{d.port}"


def _udp_dest_from_text(text: str) -> UdpDestination:
    rng, sep, port = text.strip().rpartition(":")
    if not sep:
        raise ValueError("expected BEGIN-END:PORT")
    begin, _, end = rng.partition("-")
    return UdpDestination(begin=begin, end=end or begin, port=_parse_int(port))


def _acl_to_text(e: AccessibleIP) -> str:
    return f"{e.ip}/{e.netmask} {'on' if e.active else 'off'}"


def _acl_from_text(text: str) -> AccessibleIP:
    words = text.split()
    if not words or len(words) > 2:
        raise ValueError("expected IP/NETMASK [on|off]")
    ip, _, mask = words[0].partition("/")
    active = _parse_bool(words[1]) if len(words) == 2 else True
    return AccessibleIP(ip=ip, netmask=mask or "255.255.255.255", active=active)


def _codec(name: str, tp: Any) -> tuple[Callable[[Any], str], Callable[[str], Any]]:
    """(to_text, from_text) for a field of type C{tp}."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is bool:
        return (lambda v: "yes" if v else "no"), _parse_bool
    if tp is int:
        return str, _parse_int
    if tp is float:
        return (lambda v: f"{v:g}"), (lambda s: float(s.strip()))
    if tp is str:
        return str, (lambda s: s.strip())
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enum_type = tp

        def parse_enum(s: str) -> Any:
            s = s.strip().lower()
            for member in enum_type:
                if s in (str(member.value).lower(), member.name.lower()):
                    return member
            raise ValueError("expected one of " + ", ".join(str(m.value) for m in enum_type))
        return (lambda v: str(v.value)), parse_enum
    if args and type(None) in args:  # Optional[int]
        fmt = (lambda v: f"0x{v:02X}") if name in _HEX_FIELDS else str
        return (lambda v: "" if v is None else fmt(v)), (lambda s: None if not s.strip() else _parse_int(s))
    if origin is tuple:
        item = args[0]
        item_to: Callable[[Any], str]
        item_from: Callable[[str], Any]
        if item is UdpDestination:
            item_to, item_from = _udp_dest_to_text, _udp_dest_from_text
        elif item is AccessibleIP:
            item_to, item_from = _acl_to_text, _acl_from_text
        else:
            item_to, item_from = _codec(name, item)
        return (lambda v: ", ".join(item_to(x) for x in v)), (
            lambda s: tuple(item_from(x) for x in s.split(",") if x.strip()))
    raise TypeError(f"no file codec for {name}: {tp!r}")


def _fields(cls: type[Any]) -> list[tuple[str, Callable[[Any], str], Callable[[str], Any]]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, *_codec(f.name, hints[f.name])) for f in attrs.fields(cls)]


def section_to_dict(value: Any, section: str, secrets: bool = True) -> dict[str, str]:
    """The text form of one settings group, as written to the file."""
    return {
        name: to_text(getattr(value, name))
        for name, to_text, _ in _fields(type(value))
        if secrets or (section, name) not in _SECRETS
    }


def section_from_dict(cls: type[Any], items: dict[str, str], section: str, where: str,
                      base: Any = None) -> Any:
    """
    Build C{cls} from text values, starting from C{base} (or defaults).

    @raise ConfigError: naming the section, key and value at fault.
    """
    codecs = {name: from_text for name, _, from_text in _fields(cls)}
    values: dict[str, Any] = {}
    problems: list[str] = []  # every bad key at once, not only the first
    for key, raw in items.items():
        if key not in codecs:
            problems.append(f"{where}: [{section}] unknown key {key!r} (= {raw!r}); "
                            "known keys: " + ", ".join(codecs))
            continue
        try:
            values[key] = codecs[key](raw)
        except (ValueError, TypeError) as e:
            problems.append(f"{where}: [{section}] {key} = {raw!r}: {_reason(e)}")
    if problems:
        raise ConfigError.of(problems)
    try:
        return attrs.evolve(base, **values) if base is not None else cls(**values)
    except (ValueError, TypeError) as e:
        reason = _reason(e)
        # Name every key of this section that the message mentions (a
        # cross-field rule involves two), else every key that was set.
        bad = [k for k in values if re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", reason)]
        shown = ", ".join(f"{k} = {items[k]!r}" for k in (bad or list(values)))
        raise ConfigError(f"{where}: [{section}] {shown}: {reason}") from None


def dumps(config: DeviceConfig, secrets: bool = True, network: bool = True) -> str:
    """Serialise C{config}; C{secrets=False} leaves out the password hash and mail password."""
    parser = _new_parser()
    for section, _cls in _SECTIONS:
        if section == "network" and not network:
            continue
        items = section_to_dict(getattr(config, section), section, secrets)
        if items:
            parser[section] = items
    parser["accessible_ip"] = {"entries": ", ".join(_acl_to_text(e) for e in config.accessible_ip.entries)}
    for n, port in enumerate(config.ports, 1):
        parser[f"port{n}.serial"] = section_to_dict(port.serial, "serial")
        parser[f"port{n}.operating"] = section_to_dict(port.operating, "operating")
    lines = ["# nport-twisted settings; format: docs/configuration.md\n"]
    from io import StringIO
    buf = StringIO()
    parser.write(buf)
    return "".join(lines) + buf.getvalue()


def loads(text: str, where: str = "<settings>", base: DeviceConfig | None = None,
          default_mode: OpMode = OpMode.REAL_COM) -> DeviceConfig:
    """
    Parse settings text.  Sections missing from C{text} keep C{base}'s
    values (an import of a file without network settings keeps them).

    @raise ConfigError: for any syntax error, unknown name or invalid value.
    """
    parser = _new_parser()
    try:
        parser.read_string(text, source=where)
    except configparser.Error as e:
        raise ConfigError(f"{where}: {e}".replace("\n", " ")) from None
    base = base if base is not None else DeviceConfig()
    known = {name for name, _ in _SECTIONS} | {"accessible_ip"}
    groups: dict[str, Any] = {}
    ports: dict[int, dict[str, Any]] = {}
    problems: list[str] = []  # every bad section at once, not only the first
    for section in parser.sections():
        try:
            _load_section(parser, section, where, base, default_mode, known, groups, ports)
        except ConfigError as e:
            problems.extend(e.problems)
    if problems:
        raise ConfigError.of(problems)
    port_list = list(base.ports)
    if ports:
        highest = max(ports)
        missing = [n for n in range(1, highest + 1) if n not in ports and n > len(port_list)]
        if missing:
            raise ConfigError(f"{where}: port{highest} is configured but port{missing[0]} is not")
        while len(port_list) < highest:
            port_list.append(_new_port(default_mode))
        for n, kinds in ports.items():
            port_list[n - 1] = attrs.evolve(port_list[n - 1], **kinds)
    return attrs.evolve(base, ports=tuple(port_list), **groups)


def _load_section(parser: configparser.ConfigParser, section: str, where: str,
                  base: DeviceConfig, default_mode: OpMode, known: set[str],
                  groups: dict[str, Any], ports: dict[int, dict[str, Any]]) -> None:
    """Parse one section of a settings file into C{groups} or C{ports}."""
    items = dict(parser[section])
    m = _PORT_SECTION.match(section)
    if m:
        index, kind = int(m.group(1)), m.group(2)
        if not 1 <= index <= 32:
            raise ConfigError(f"{where}: [{section}] port numbers go from 1 to 32")
        old = base.ports[index - 1] if index <= len(base.ports) else _new_port(default_mode)
        cls = SerialSettings if kind == "serial" else OperatingSettings
        ports.setdefault(index, {})[kind] = section_from_dict(
            cls, items, section, where, getattr(old, kind))
    elif section == "accessible_ip":
        groups[section] = section_from_dict(AccessibleIPSettings, items, section, where)
    elif section in known:
        cls = dict(_SECTIONS)[section]
        groups[section] = section_from_dict(cls, items, section, where, getattr(base, section))
    else:
        raise ConfigError(f"{where}: unknown section [{section}]; known: "
                          + ", ".join(sorted(known)) + ", port<N>.serial, port<N>.operating")


def _new_port(mode: OpMode) -> PortConfig:
    """A port the file mentions without its operating mode: factory settings in C{mode}."""
    return PortConfig(operating=OperatingSettings(mode=mode))


def atomic_write(path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{path} with C{data} atomically: a reader (or a crash) sees the
    old file or the new one, never a mix.  The temporary file is removed on
    failure (disk full), leaving the old file untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


#: Largest settings file we read.  A full 32-port file is about 40 KB; a
#: 50 MB file took seconds to parse, so anything this big is refused unread.
MAX_FILE_BYTES = 1024 * 1024


class SettingsStore:
    """
    The settings file on disk.  A missing file means the defaults (factory
    settings, or C{defaults}: what the command line gives); it is created on
    the first L{save}.  Values in the file win over C{defaults} key by key.

    An empty file is refused like any other bad file, unless nothing was
    ever saved there (a first start: the administrator created the path
    with C{touch}, or a volume holds an empty file).  Whether something was
    saved is kept in a marker file beside it (C{.nport.ini.saved}), because
    an empty settings file is also what a truncation leaves: starting on
    factory settings then would overwrite the real ones on the next save.
    """

    def __init__(self, path: str | None, max_bytes: int = MAX_FILE_BYTES,
                 defaults: DeviceConfig | None = None) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.defaults = defaults if defaults is not None else DeviceConfig()
        self.first_start = False  # the last load found an empty, never-saved file

    @property
    def marker_path(self) -> str | None:
        """The file that records that settings were saved to C{path} at least once."""
        if self.path is None:
            return None
        directory, name = os.path.split(os.path.abspath(self.path))
        return os.path.join(directory, f".{name}.saved")

    def load(self, default_mode: OpMode = OpMode.REAL_COM,
             keep_password: PasswordSettings | None = None) -> DeviceConfig:
        """
        Read and parse the file.  With C{keep_password} (a reload), a file
        that does not set C{[password] hash} keeps that password: only an
        explicit C{hash =} removes it.

        @raise ConfigError: when the file exists but is not valid, is empty
            after something was saved there, or is larger than C{max_bytes}
            (refused without reading it).
        """
        self.first_start = False
        base = self.defaults if keep_password is None else attrs.evolve(self.defaults,
                                                                        password=keep_password)
        if self.path is None:
            return base
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                raw = f.read(self.max_bytes + 1) if size <= self.max_bytes else b""
        except FileNotFoundError:
            return base
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot read: {e}") from None
        if size > self.max_bytes or len(raw) > self.max_bytes:
            raise ConfigError(f"{self.path}: {max(size, len(raw))} bytes is too large for a "
                              f"settings file (at most {self.max_bytes} bytes); not read")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{self.path}: cannot read: {e}") from None
        if not text.strip():
            marker = self.marker_path
            if marker is not None and os.path.exists(marker):
                raise ConfigError(
                    f"{self.path}: the file is empty, but settings were saved there before (it "
                    f"was truncated or replaced); restore it from a backup, or delete it (and "
                    f"{marker}) to start from factory settings")
            self.first_start = True
            return base
        return loads(text, self.path, base=base, default_mode=default_mode)

    def save(self, config: DeviceConfig) -> None:
        """Write C{config} atomically (no-op without a path)."""
        if self.path is not None:
            atomic_write(self.path, dumps(config).encode("utf-8"))
            marker = self.marker_path
            if marker is not None and not os.path.exists(marker):
                try:
                    with open(marker, "w") as f:
                        f.write("nport-twisted saved settings beside this file "
                                "(an empty settings file is then refused)\n")
                except OSError:
                    pass  # the settings are saved; only the empty-file check is weaker

    @property
    def state_dir(self) -> str | None:
        """Where files that belong with the settings (certificates, captures) go."""
        return os.path.dirname(os.path.abspath(self.path)) if self.path else None

    def write_problem(self, access: Callable[[str, int], bool] = os.access) -> str | None:
        """
        Why a save would fail (the settings directory is missing and cannot
        be created, or is not writable), else None.  Checked at start-up so
        the operator learns it before a console user does.
        """
        directory = self.state_dir
        if directory is None:
            return None
        probe = directory
        while not os.path.lexists(probe):  # atomic_write creates missing directories
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe):
            return f"settings directory {directory} cannot be created: {probe} is not a directory"
        if access(probe, os.W_OK | os.X_OK):
            return None
        what = "is not writable" if probe == directory else f"does not exist and {probe} is not writable"
        return f"settings directory {directory} {what}"


def import_config(text: str, current: DeviceConfig, network: bool = True,
                  where: str = "<import>") -> DeviceConfig:
    """
    Apply an exported file to C{current}.  The password is never taken from
    an import; with C{network=False} the network section is ignored.
    """
    new = loads(text, where, base=current)
    keep: dict[str, Any] = {"password": current.password, "identity": current.identity}
    if not network:
        keep["network"] = current.network
    return attrs.evolve(new, **keep)
