# -*- test-case-name: tests.test_tap -*-
"""
Command line of ``twistd nport`` / ``twist nport`` / ``python -m
nport_twisted`` and the service it builds.

All checks that can fail because of the user's input (devices, model,
modes, the settings file) run in L{Options.postOptions}, so they end as a
usage error naming the problem rather than a traceback.  Run under a
runner (twistd, twist, C{python -m nport_twisted}), a usage error prints
one line and a hint to C{--help} (exit status 64, EX_USAGE), not the whole
option list.

Where the command line and the settings file both say something, the file
wins key by key: C{--mode} and the line settings and TCP ports of
C{--ports} are the defaults of what the file leaves unset, and every
conflict is logged at start-up.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import sys
from typing import TYPE_CHECKING, Any, Callable


import attrs
from twisted.python import usage

from nport_twisted import __version__
from nport_twisted._exceptions import ConfigError
from nport_twisted.config.linespec import PORT_FIELDS, PortSpec, describe_line, parse_port_specs
from nport_twisted.config.store import SettingsStore
from nport_twisted.config.models import Model, find_model
from nport_twisted.config.settings import DeviceConfig, OpMode, PortConfig


if TYPE_CHECKING:  # the server is imported by makeService: plugin scans stay cheap
    from nport_twisted.server import NPortService
    from nport_twisted.tools.realtty.service import RealTtyService

_MODE_NAMES = ", ".join(m.value for m in OpMode)


def _tty_majors() -> list[tuple[int, int, int]] | None:
    """(major, first minor, last minor) of every tty driver, from /proc/tty/drivers."""
    try:
        with open("/proc/tty/drivers") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    ranges = []
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or not parts[-3].isdigit():
            continue
        major, minors = int(parts[-3]), parts[-2]
        low, _, high = minors.partition("-")
        if low.isdigit():
            ranges.append((major, int(low), int(high) if high.isdigit() else int(low)))
    return ranges


def port_specs(text: str) -> list[PortSpec]:
    """
    Parse and check C{--ports} (L{nport_twisted.config.linespec}).  A device
    that does not exist yet is fine (it is opened when it appears); one that
    exists but is not a tty, or the same device twice (also through a
    symlink), is a usage error.
    """
    try:
        specs = parse_port_specs(text)
    except ValueError as e:
        raise usage.UsageError(f"--ports: {e}") from None
    if not specs:
        raise usage.UsageError("--ports needs at least one serial device, e.g. /dev/ttyUSB0")
    seen: dict[str, str] = {}
    ttys = _tty_majors()
    for spec in specs:
        dev = spec.device
        real = os.path.realpath(dev)
        if real in seen:
            raise usage.UsageError(f"--ports: {dev} is the same device as {seen[real]}")
        seen[real] = dev
        try:
            st = os.stat(dev)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise usage.UsageError(f"--ports: cannot use {dev}: {e.strerror}") from None
        if not stat.S_ISCHR(st.st_mode):
            raise usage.UsageError(f"--ports: {dev} is not a serial device (not a tty)")
        if ttys is not None:
            major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
            if not any(m == major and lo <= minor <= hi for m, lo, hi in ttys):
                raise usage.UsageError(f"--ports: {dev} is a character device but not a tty")
    return specs


def check_devices(text: str) -> list[str]:
    """The devices of C{--ports}, checked as L{port_specs} does."""
    return [spec.device for spec in port_specs(text)]


def _parse_mode(text: str | None) -> OpMode:
    if text is None:
        return OpMode.REAL_COM  # an NPort's factory default
    try:
        return OpMode(text.strip().lower())
    except ValueError:
        raise usage.UsageError(f"--mode: unknown mode {text!r}; modes: {_MODE_NAMES}") from None


#: Exit status of a usage or settings-file error (sysexits.h EX_USAGE, as twist uses).
EX_USAGE = 64

def docs_location() -> str:
    """
    Where to read the documentation: the copy pip installs
    (C{<prefix>/share/doc/nport-twisted}, setup.cfg data_files), else the
    checkout's C{docs/} (editable installs and running from the source).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(sys.prefix, "share", "doc", "nport-twisted"),
                      os.path.join(os.path.dirname(here), "docs")):
        if os.path.isfile(os.path.join(candidate, "user-guide.md")):
            return candidate
    return "docs/ in the nport-twisted source tree"


def _int_option(name: str, low: int, high: int, zero_off: bool = False) -> Callable[[str], int]:
    """A coercer for C{--name} whose error names the option and the range."""
    extra = " (0 turns it off)" if zero_off else ""

    def coerce(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise usage.UsageError(
                f"--{name}: {text!r} is not a whole number; give {low}-{high}{extra}") from None
        if not (low <= value <= high or (zero_off and value == 0)):
            raise usage.UsageError(f"--{name}: {value} is outside {low}-{high}{extra}")
        return value

    coerce.coerceDoc = f"({low}-{high}{extra})"  # type: ignore[attr-defined]
    return coerce


def check_interface(text: str) -> str:
    """C{--interface}: empty (every address) or one IP address literal, checked now."""
    text = text.strip()
    if not text:
        return ""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise usage.UsageError(
            f"--interface: {text!r} is not an IP address; give one of this host's addresses "
            "(e.g. 192.168.1.10; `ip -brief address` lists them), 0.0.0.0 for every IPv4 "
            "address or :: for every IPv6 and IPv4 address") from None
    return text


_LOG_FORMATS = ("text", "json")


def _runner_name(options: usage.Options) -> str:
    """How the user started us, for the hint after a usage error."""
    prog = getattr(options, "prog", None)
    if prog:
        return str(prog)
    parent = options.parent
    if parent is None:
        return "nport"
    # twist's options carry its log observer choice; twistd's do not.
    return "twist nport" if "fileLogObserverFactory" in parent else "twistd nport"


class Options(usage.Options):
    synopsis = "[--ports [PORT=]DEV[@LINE][,...]] [options]"
    #: Set by our own runner (C{python -m nport_twisted}, C{nport-twisted}) to name itself.
    prog: str | None = None
    optParameters: list[list[Any]] = [
        ["ports", "p", "/dev/ttyUSB0",
         "Serial devices, comma separated, in NPort port order (port 1, port 2, ...), each "
         "[TCPPORT=]DEVICE[@LINE]: e.g. /dev/ttyUSB0@9600-8E1 (or ser2net's 9600e81), "
         "5000=/dev/ttyUSB1 (serve it on TCP 5000). Line settings and ports are the defaults "
         "of what the settings file leaves unset. A device that does not exist yet is opened "
         "when it appears."],
        ["config", "c", None,
         "Settings file (INI, docs/configuration.md). Missing: factory defaults; "
         "written on the first save. Its values win over --mode and --ports."],
        ["model", "m", None,
         "NPort model to present (e.g. 5232, 'NPort 5650-8'). Default by port count: "
         "1: 5110, 2: 5232, 3-4: 5450, 5-8: 5650-8, 9-16: 5650-16, 17-32: 6650-32 "
         "(no discovery IDs are known for it: no DSCI)."],
        ["mode", None, None,
         f"Operating mode of ports the settings file leaves without one: {_MODE_NAMES} "
         "(default realcom, as an NPort)."],
        ["interface", "i", "",
         "Address to listen on (default: every IPv4 address; '::' for IPv6 too).", check_interface],
        ["port-offset", None, 0,
         "Add N to every TCP/UDP port, to run without privileges (e.g. 10000: "
         "Real COM on 10950/10966).", _int_option("port-offset", 0, 65535)],
        ["http-port", None, 80,
         "TCP port of the web console and JSON API (plus --port-offset); 0 turns it off.",
         _int_option("http-port", 1, 65535, zero_off=True)],
        ["telnet-port", None, 23,
         "TCP port of the telnet console (plus --port-offset); 0 turns it off.",
         _int_option("telnet-port", 1, 65535, zero_off=True)],
        ["snmp-port", None, 161,
         "UDP port of the SNMP agent (plus --port-offset); 0 turns it off. It answers only "
         "while the Network setting SNMP is on and a community is set.",
         _int_option("snmp-port", 1, 65535, zero_off=True)],
        ["https-port", None, None,
         "Also serve the web console over HTTPS on this port (plus --port-offset), e.g. 443.",
         _int_option("https-port", 1, 65535, zero_off=True)],
        ["https-cert", None, None,
         "PEM file with the HTTPS private key and certificate (default: a self-signed one, "
         "generated once beside the settings file)."],
        ["dsci-port", None, None,
         "UDP port of the discovery service (default 4800 + --port-offset). MOXA's "
         "drivers and utilities only ask on 4800, which needs no privilege: use "
         "--dsci-port 4800 with --port-offset so they still find the box.",
         _int_option("dsci-port", 1, 65535)],
        ["lock-dir", None, None,
         "Directory of the UUCP lock files (LCK..ttyUSB0, as ser2net, minicom and cu use); "
         "default /run/lock, else /var/lock; 'none' takes devices with TIOCEXCL only."],
        ["log-format", None, "text",
         "Log format on stdout under twist and python -m nport_twisted: text (one readable "
         "line per event, also for journald) or json (one JSON object per line). Under "
         "twistd, json replaces twistd's log file with JSON on stdout."],
        ["realtty", None, None,
         "Also serve remote Real COM ports as local ttys, as nport-realtty --config FILE "
         "does (our INI file or MOXA's npreal2d.cf; docs/realtty.md)."],
    ]

    subCommands = [
        ["realtty", None, lambda: _realtty_options(),
         "Only serve remote Real COM ports as local ttys (nport-realtty; no serial ports "
         "served here): twistd nport realtty --config /etc/npreal2d.cf"],
    ]

    optFlags: list[list[Any]] = [
        ["no-discovery", None,
         "Do not answer UDP 4800 discovery (MOXA's NPort Administrator, Device Search "
         "Utility and the Real COM drivers' liveness polling will not see the box)."],
        ["no-capture", None, "Do not listen on TCP 4900."],
        ["no-exclusive", None,
         "Share the serial devices: no TIOCEXCL and no UUCP lock files (by default a device "
         "is taken exclusively, so minicom or ModemManager cannot use it unnoticed)."],
        ["twisted-reactor", None,
         "Run on the reactor twistd/twist would pick, not nport-twisted's epoll reactor "
         "with the cheaper event dispatch (docs/performance.md). twistd --reactor NAME "
         "also wins."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["box_specs"] = []
        self.longdesc = (
            "Serve local serial ports like a MOXA NPort serial device server: Real COM "
            "(MOXA's drivers), TCP Server and the other NPort operating modes. Port n of "
            "--ports is NPort serial port n: Real COM data TCP 950+n-1 and command 966+n-1, "
            "TCP Server 4001+n-1 (all shifted by --port-offset); web console TCP 80, "
            "telnet console TCP 23, discovery UDP 4800, TCP 4900.")

    def getUsage(self, width: int | None = None) -> str:
        # The documentation path on a line of its own after the option list: Twisted
        # re-wraps the long description and breaks a path at its hyphens (/tmp/ci-
        # final/...), so it cannot be copied from there.
        return f"{super().getUsage(width)}\nDocumentation: {docs_location()}\n"

    def getSynopsis(self) -> str:
        if self.prog:
            return f"Usage: {self.prog} {self.synopsis}"
        return str(super().getSynopsis())

    def opt_box(self, spec: str) -> None:
        """
        One more NPort identity in this process (repeatable), bound to its own
        address: 'ports=DEV[,DEV...];interface=ADDRESS;config=FILE' plus
        optional ';model=NAME', ';mode=MODE', ';port-offset=N'. Its settings
        file (its own: name, MAC, password, ports) must set [identity] mac.
        The consoles, HTTPS and DSCI port options apply to every identity.
        Needs --interface for the first identity too (docs/user-guide.md).
        """
        self["box_specs"].append(spec)

    def opt_version(self) -> None:
        """Print the version and exit."""
        print(f"nport-twisted {__version__}")
        raise SystemExit(0)

    def parseOptions(self, options: Any = None) -> None:
        """
        As usage.Options, but under a runner a usage error is one line and
        a hint on stderr (exit 64): twistd and twist would print the whole
        option list first and the error last.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None and self.prog is None:
                raise  # a library caller (and the tests) get the exception
            name = _runner_name(self)
            print(f"{name}: error: {e}\nRun '{name} --help' for the options; "
                  f"documentation: {docs_location()}", file=sys.stderr)
            raise SystemExit(EX_USAGE) from None

    def postOptions(self) -> None:
        from nport_twisted._txinternals import import_without_tls

        # The TLS stack is imported when a TLS listener is built (config.tls), not by
        # Twisted's TCP modules at import; our reactor goes in before anything
        # imports the global one (twistd/twist import it after parsing options).
        with import_without_tls():
            if not self["twisted-reactor"]:
                from nport_twisted._reactor import install_default
                install_default()
            from nport_twisted.server import frontend_builders

        log_format = str(self["log-format"]).strip().lower()
        if log_format not in _LOG_FORMATS:
            raise usage.UsageError(f"--log-format: {self['log-format']!r}: use text or json")
        self["log-format"] = log_format
        self["exclusive"] = _exclusive(self["no-exclusive"], self["lock-dir"])
        from nport_twisted.logs import configure_runner_logging
        configure_runner_logging(self, log_format)
        if self.subCommand == "realtty":
            return  # nport-realtty alone: its options were checked by RealTtyOptions
        self["realtty_config"] = _realtty_config(self["realtty"]) if self["realtty"] else None
        specs = port_specs(self["ports"])
        self["specs"] = specs
        self["devices"] = [spec.device for spec in specs]
        for name in ("http-port", "https-port", "telnet-port", "snmp-port"):
            port = self[name]
            if port and not 0 < port + self["port-offset"] < 65536:
                raise usage.UsageError(f"--{name} {port} plus --port-offset is outside 1-65535")
        if self["https-cert"] is not None:
            if not self["https-port"]:
                raise usage.UsageError("--https-cert needs --https-port")
            if not os.access(self["https-cert"], os.R_OK):
                raise usage.UsageError(f"--https-cert: cannot read {self['https-cert']}")
        implemented = frontend_builders()
        main = _load_box(specs, self["config"], self["model"], self["mode"],
                         self["interface"], self["port-offset"], implemented)
        self["store"] = main.store
        self["default_mode"] = main.default_mode
        self["device_config"] = main.config
        self["model_info"] = main.model
        self["notes"] = main.notes
        self["boxes"] = [main] + [_parse_box(spec, f"--box {n}", self, implemented)
                                  for n, spec in enumerate(self["box_specs"], 2)]
        if len(self["boxes"]) > 1:
            _check_boxes(self["boxes"])


def _exclusive(shared: bool, lock_dir: str | None) -> Any:
    """The L{Exclusive} policy of C{--no-exclusive} / C{--lock-dir}, checked now."""
    from nport_twisted.device.adapter import SHARED, Exclusive
    from nport_twisted.device.locks import default_lock_dir

    if shared:
        return SHARED
    if lock_dir is None:
        return Exclusive(lock_dir=default_lock_dir())
    if lock_dir.strip().lower() == "none":
        return Exclusive(lock_dir=None)
    if not os.path.isdir(lock_dir):
        raise usage.UsageError(f"--lock-dir: {lock_dir} is not a directory")
    return Exclusive(lock_dir=os.path.abspath(lock_dir))


def _realtty_options() -> Any:
    """
    nport-realtty's options, imported when used (the realtty sub-command or
    --realtty): with its config parser, about 0.4 MiB of a process without them.
    """
    from nport_twisted.tools.realtty.options import RealTtyOptions

    return RealTtyOptions()


def _realtty_config(path: str) -> Any:
    """--realtty FILE: the ports file, checked now (a usage error names the problem)."""
    options = _realtty_options()
    options.parseOptions(["--config", path])
    return options["realtty_config"]


@attrs.frozen
class Box:
    """One NPort identity of the process: its devices, settings file and address."""

    devices: list[str]
    store: SettingsStore
    config: DeviceConfig
    default_mode: OpMode
    model: Model
    interface: str
    port_offset: int
    label: str  # for messages: "--ports" or "--box 2"
    #: What the command line asked for that the settings file overrode (start-up log).
    notes: list[str] = attrs.field(factory=list)


def _load_box(specs: list[PortSpec], config_path: str | None, model_name: str | None,
              mode_text: str | None, interface: str, port_offset: int, implemented: Any,
              label: str = "") -> Box:
    """
    Check and load one identity's settings; usage errors name the identity
    (C{label}).  The command line (C{mode_text}, the line settings and ports
    of C{specs}) gives the defaults; the settings file wins key by key.
    """
    where = f"{label}: " if label else ""
    mode = _parse_mode(mode_text)
    if mode not in implemented:
        raise usage.UsageError(
            f"{where}--mode {mode.value} is not implemented yet; implemented: "
            + ", ".join(m.value for m in implemented))
    devices = [spec.device for spec in specs]
    defaults = command_line_defaults(specs, mode)
    store = SettingsStore(config_path, defaults=defaults)
    try:
        config = store.load(mode)
    except ConfigError as e:
        raise usage.UsageError(f"{where}bad settings file: {e}") from None
    count = len(devices)
    identity = config.identity
    if model_name:
        try:
            identity = attrs.evolve(identity, model=find_model(model_name).name)
        except KeyError as e:
            raise usage.UsageError(f"{where}--model: {e.args[0]}") from None
    try:
        model = identity.model_info(count)
    except (KeyError, ValueError) as e:
        raise usage.UsageError(where + str(e.args[0])) from None
    if count > model.port_count:
        raise usage.UsageError(
            f"{where}{count} serial ports but {model.name} has {model.port_count}; pick a larger "
            f"--model or fewer --ports")
    config = attrs.evolve(config, identity=identity).with_port_count(count, mode)
    for n, port in enumerate(config.ports, 1):
        if port.operating.mode not in implemented:
            raise usage.UsageError(
                f"{where}port {n}: saved mode {port.operating.mode.value} is not implemented yet")
    _check_port_numbers(config, port_offset, where, store.path)
    notes = precedence_notes(specs, defaults, config, mode if mode_text is not None else None,
                             store.path)
    if store.first_start:
        notes.append(f"settings file {store.path} is empty: first start, factory settings (the "
                     "file is written on the first save)")
    return Box(devices, store, config, mode, model, interface, port_offset, label or "--ports",
               notes)


def _check_port_numbers(config: DeviceConfig, port_offset: int, where: str,
                        path: str | None) -> None:
    """
    The serial ports' own TCP/UDP ports must fit 1-65535 with the offset and
    not collide with each other: a usage error naming the setting (as the
    settings file spells it) and where it came from, before anything listens.
    """
    import re

    from nport_twisted.config.portmap import port_conflicts

    conflicts = port_conflicts(config, port_offset)
    if not conflicts:
        return
    field, reason = next(iter(conflicts.items()))
    m = re.fullmatch(r"ports\[(\d+)\]\.(\w+)\.(\w+)", field)
    name = f"[port{int(m.group(1)) + 1}.{m.group(2)}] {m.group(3)}" if m else field
    source = f"the settings file {path} or " if path else ""
    shift = " or the --port-offset" if "outside" in reason else ""
    raise usage.UsageError(f"{where}{name}: {reason}; change it ({source}the TCPPORT= of its "
                           f"--ports entry){shift}")


def command_line_defaults(specs: list[PortSpec], mode: OpMode) -> DeviceConfig:
    """
    Factory settings with what the command line says: C{mode} for every
    port, the line settings and TCP port of each C{--ports} entry.

    @raise usage.UsageError: a TCP port for a mode that listens on none.
    """
    ports = []
    for n, spec in enumerate(specs, 1):
        port = PortConfig(operating=attrs.evolve(PortConfig().operating, mode=mode))
        if spec.line:
            port = attrs.evolve(port, serial=attrs.evolve(port.serial, **spec.line_changes))
        if spec.tcp_port is not None:
            field = PORT_FIELDS.get(mode)
            if field is None:
                raise usage.UsageError(
                    f"--ports {spec.text}: port {n} runs in {mode.value} mode, which listens on "
                    "no port; give the TCP port in the settings file instead")
            explicit: dict[str, Any] = {field: spec.tcp_port}
            port = attrs.evolve(port, operating=attrs.evolve(port.operating, **explicit))
        ports.append(port)
    return DeviceConfig(ports=tuple(ports))


def precedence_notes(specs: list[PortSpec], defaults: DeviceConfig, config: DeviceConfig,
                     mode: OpMode | None, path: str | None) -> list[str]:
    """
    One line per thing the command line asked for that the settings file
    overrode (the file wins), for the start-up log.
    """
    notes: list[str] = []
    where = f"the settings file {path}"
    for n, (spec, wanted, port) in enumerate(zip(specs, defaults.ports, config.ports), 1):
        if mode is not None and port.operating.mode is not mode:
            notes.append(f"port{n}: {where} sets mode {port.operating.mode.value}, which wins "
                         f"over --mode {mode.value} (--mode only fills ports the file leaves "
                         "without a mode; change it in the file or the web console)")
        if spec.line and any(getattr(port.serial, k) != v for k, v in spec.line):
            notes.append(f"port{n}: {where} sets the line to {describe_line(port.serial)}, which "
                         f"wins over --ports {spec.text}")
        if spec.tcp_port is not None:
            field = PORT_FIELDS.get(wanted.operating.mode)
            served = PORT_FIELDS.get(port.operating.mode)
            if field != served or (field and getattr(port.operating, field) != spec.tcp_port):
                notes.append(f"port{n}: {where} decides its port ({port.operating.mode.value} "
                             f"mode), not --ports' TCP port {spec.tcp_port}")
    return notes


_BOX_KEYS = frozenset(("ports", "interface", "config", "model", "mode", "port-offset"))


def _parse_box(spec: str, label: str, options: Options, implemented: Any) -> Box:
    """One C{--box} value: C{key=value} pairs separated by semicolons."""
    fields: dict[str, str] = {}
    for item in spec.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _BOX_KEYS:
            raise usage.UsageError(f"{label}: {item.strip()!r} is not one of "
                                   + ", ".join(f"{k}=..." for k in sorted(_BOX_KEYS)))
        if key in fields:
            raise usage.UsageError(f"{label}: {key} given twice")
        fields[key] = value.strip()
    for key in ("ports", "interface", "config"):
        if not fields.get(key):
            raise usage.UsageError(f"{label}: {key}=... is required (each identity has its own "
                                   "devices, address and settings file)")
    try:
        offset = int(fields.get("port-offset", options["port-offset"]))
    except ValueError:
        raise usage.UsageError(f"{label}: port-offset must be a number") from None
    if not 0 <= offset < 65536:
        raise usage.UsageError(f"{label}: port-offset must be from 0 to 65535")
    specs = port_specs(fields["ports"])
    return _load_box(specs, fields["config"], fields.get("model"),
                     fields.get("mode", options["mode"]), fields["interface"], offset,
                     implemented, label)


def _check_boxes(boxes: list[Box]) -> None:
    """Several identities in one process: each must be told apart on the wire."""
    from nport_twisted.config.settings import parse_mac

    seen_dev: dict[str, str] = {}
    seen_addr: dict[tuple[str, int], str] = {}
    seen_mac: dict[bytes, str] = {}
    seen_file: dict[str, str] = {}
    for box in boxes:
        if not box.interface:
            raise usage.UsageError(
                f"{box.label}: several NPort identities in one process each need their own "
                "address (--interface for the first, interface=... in each --box)")
        key = (box.interface, box.port_offset)
        if key in seen_addr:
            raise usage.UsageError(f"{box.label}: {box.interface} (offset {box.port_offset}) is "
                                   f"already used by {seen_addr[key]}")
        seen_addr[key] = box.label
        for dev in box.devices:
            real = os.path.realpath(dev)
            if real in seen_dev:
                raise usage.UsageError(f"{box.label}: {dev} is already served by {seen_dev[real]}")
            seen_dev[real] = box.label
        path = os.path.realpath(box.store.path) if box.store.path else None
        if path is None:
            raise usage.UsageError(f"{box.label}: give each identity its own settings file "
                                   "(--config for the first, config=... in each --box)")
        if path in seen_file:
            raise usage.UsageError(f"{box.label}: {box.store.path} is already the settings file "
                                   f"of {seen_file[path]}")
        seen_file[path] = box.label
        mac = parse_mac(box.config.identity.mac) if box.config.identity.mac else None
        if mac is None:
            raise usage.UsageError(
                f"{box.label}: {box.store.path} sets no [identity] mac; several identities in "
                "one process each need their own MAC (discovery and NPort Administrator tell "
                "boxes apart by it)")
        if mac in seen_mac:
            raise usage.UsageError(f"{box.label}: MAC {box.config.identity.mac} is already the "
                                   f"MAC of {seen_mac[mac]}")
        seen_mac[mac] = box.label


def makeService(options: Options, reactor: Any = None) -> NPortService | RealTtyService:
    """
    Build the NPort service from parsed options, on C{reactor} (twistd
    passes none: the global reactor is imported here, never at module level).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    if options.subCommand == "realtty":
        from nport_twisted.tools.realtty.options import make_service
        return make_service(options.subOptions, reactor)

    boxes: list[Box] = options["boxes"]
    services = [_build_box(box, options, reactor) for box in boxes]
    svc = services[0]
    for other in services[1:]:  # more identities: children of the first, started and stopped with it
        other.setServiceParent(svc)
    with_file = [s for s, box in zip(services, boxes) if box.store.path]
    if with_file:
        _reload_on_sighup(reactor, *with_file)
    if options["realtty_config"] is not None:  # --realtty FILE beside the server
        from nport_twisted.tools.realtty.service import RealTtyService as Realtty
        Realtty(reactor, options["realtty_config"]).setServiceParent(svc)
    return svc


def _build_box(box: Box, options: Options, reactor: Any) -> NPortService:
    """One NPort identity: its ports, device services and consoles."""
    from nport_twisted.device.adapter import open_serial_port
    from nport_twisted.server import NPortService

    svc = NPortService(
        reactor, box.devices, box.config, box.store,
        opener=open_serial_port(reactor, options["exclusive"]), port_offset=box.port_offset,
        interface=box.interface, default_mode=box.default_mode,
        dsci_port=options["dsci-port"], run_blocking=_in_thread(reactor),
    )
    # Device-wide services: UDP 4800 discovery, TCP 4900 capture, Auto IP Report.
    from nport_twisted.services.discovery import device_services
    for child in device_services(svc, discovery=not options["no-discovery"],
                                 capture=not options["no-capture"]):
        child.setServiceParent(svc)
    # SNMP agent (UDP 161 + offset): pysnmp is imported only once it listens.
    if options["snmp-port"]:
        from nport_twisted.services.snmp import SnmpAgentService
        SnmpAgentService(svc, options["snmp-port"] + box.port_offset).setServiceParent(svc)
    # Auto Warning (mail, traps), syslog and the host network watch: they
    # subscribe to the device's events and send only what the settings ask for.
    from nport_twisted.services.netwatch import NetWatch
    from nport_twisted.services.syslog import SyslogService
    from nport_twisted.services.warning import AutoWarningService
    for child in (SyslogService(svc), AutoWarningService(svc), NetWatch(svc)):
        child.setServiceParent(svc)
    # Web console and JSON API (TCP 80 + offset; optional HTTPS) and the telnet
    # console (TCP 23 + offset): one console state, so both edit the same pending
    # settings and share the password, setup token and login rate limiting.  Not
    # even imported when every console is off (docs/performance.md, "Memory").
    if options["http-port"] or options["https-port"] or options["telnet-port"]:
        from nport_twisted.web import WebConsole, web_services
        console = WebConsole(svc)
        for child in web_services(svc, http_port=options["http-port"] or None,
                                  https_port=options["https-port"] or None,
                                  cert=options["https-cert"], console=console):
            child.setServiceParent(svc)
        if options["telnet-port"]:
            from nport_twisted.console import telnet_services
            for child in telnet_services(svc, console, options["telnet-port"]):
                child.setServiceParent(svc)
    # Cold or warm start, published once every subscriber above is running.
    from nport_twisted.services.netwatch import StartEvents
    StartEvents(svc).setServiceParent(svc)
    # Last child: once everything else started, say what is served.
    from nport_twisted.services.startup import StartupReport
    off = [text for flag, text in (
        ("no-discovery", "discovery (DSCI) UDP 4800: off (--no-discovery)"),
        ("no-capture", "TCP 4900: off (--no-capture)")) if options[flag]]
    if not (options["http-port"] or options["https-port"] or options["telnet-port"]):
        off.append("web console, JSON API and telnet console: off (--http-port 0 --telnet-port 0)")
    StartupReport(svc, notes=box.notes, off=off).setServiceParent(svc)
    return svc


def _in_thread(reactor: Any) -> Any:
    """Run a blocking call in the reactor's thread pool (the settings file on SIGHUP)."""
    from twisted.internet.threads import deferToThreadPool

    def run(f: Any) -> Any:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


def _reload_on_sighup(reactor: Any, *services: Any) -> None:
    """
    SIGHUP re-reads the settings file, as ser2net users expect.

    Installed at once (from makeService), not by a start-up trigger: the
    listeners accept before "after startup" triggers run, and a SIGHUP in
    that window used to kill the process (its default action).
    """
    import signal

    def handler(signum: int, frame: object) -> None:
        for svc in services:  # every identity with a settings file re-reads its own
            reactor.callFromThread(svc.reload)

    signal.signal(signal.SIGHUP, handler)
