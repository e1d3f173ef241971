# -*- test-case-name: tests.test_portmap -*-
"""
Which local ports a configuration uses, and which of them collide.

Pure: a L{DeviceConfig}, the port offset and the device services' own
ports in, field-named conflicts out.  The consoles check a change with it
before they accept it, and L{nport_twisted.server.NPortService.apply_config}
refuses a configuration with a conflict before it touches a running port
(the operating system may still refuse a port at apply time; the service
then rolls back, see there).

Port settings left at 0 mean the NPort default of serial port n (1-based):
Real COM data 950+n-1 and command 966+n-1, TCP Server/RFC 2217 and the
other listening modes 4001+n-1, UDP 4001+n-1 (settings.md §5.2, §5.5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from nport_twisted.config.settings import (
    DeviceConfig,
    OperatingSettings,
    OpMode,
    realcom_command_port,
    realcom_data_port,
    tcp_server_port,
)

#: The local port settings each operating mode listens on (or, for TCP
#: Client's designated local ports, binds its connections to).
MODE_PORTS: dict[OpMode, tuple[str, ...]] = {
    OpMode.REAL_COM: ("data_port", "command_port"),
    OpMode.TCP_SERVER: ("local_tcp_port", "command_port"),
    OpMode.RFC2217: ("local_tcp_port",),
    OpMode.TCP_CLIENT: ("designated_local_ports",),
    OpMode.UDP: ("udp_local_port",),
    OpMode.PAIR_MASTER: (),
    OpMode.PAIR_SLAVE: ("local_tcp_port",),
    OpMode.REVERSE_TELNET: ("local_tcp_port",),
    OpMode.ETHERNET_MODEM: ("local_tcp_port",),
    OpMode.DISABLED: (),
}

#: setting -> (protocol, default port of serial port index i, what it is called).
_SETTINGS: dict[str, tuple[str, Callable[[int], int], str]] = {
    "data_port": ("tcp", realcom_data_port, "data port"),
    "command_port": ("tcp", realcom_command_port, "command port"),
    "local_tcp_port": ("tcp", tcp_server_port, "local TCP port"),
    "udp_local_port": ("udp", tcp_server_port, "local UDP port"),
    "designated_local_ports": ("tcp", lambda i: 0, "designated local port"),
}


@attrs.frozen
class PortUse:
    """One local port a serial port's mode uses."""

    proto: str  # "tcp" or "udp"
    port: int  # as configured (0 resolved to the NPort default), before --port-offset
    port_index: int  # 0-based serial port
    setting: str  # the OperatingSettings field

    @property
    def path(self) -> str:
        """The field as the JSON API names it (C{ports[0].operating.local_tcp_port})."""
        return f"ports[{self.port_index}].operating.{self.setting}"

    def describe(self) -> str:
        return f"port {self.port_index + 1}'s {_SETTINGS[self.setting][2]}"


@attrs.frozen
class ServicePort:
    """A port one of the box's own services holds (web, telnet, DSCI, TCP 4900)."""

    proto: str
    port: int  # the real port number (after --port-offset)
    name: str  # "the web console (HTTP)"


def operating_ports(operating: OperatingSettings, index: int) -> list[PortUse]:
    """The local ports serial port C{index} uses with C{operating}."""
    uses: list[PortUse] = []
    for setting in MODE_PORTS.get(operating.mode, ()):
        if (setting == "command_port" and operating.mode is OpMode.TCP_SERVER
                and not operating.command_port_enabled):
            continue  # TCP Server with its command port off: a plain relay
        proto, default, _ = _SETTINGS[setting]
        value = getattr(operating, setting)
        if isinstance(value, tuple):  # designated local ports: 0 = any
            uses.extend(PortUse(proto, p, index, setting) for p in value if p)
        else:
            uses.append(PortUse(proto, value or default(index), index, setting))
    return uses


def port_uses(config: DeviceConfig) -> list[PortUse]:
    """Every local port the serial ports of C{config} use."""
    uses: list[PortUse] = []
    for index, port in enumerate(config.ports):
        uses.extend(operating_ports(port.operating, index))
    return uses


def port_conflicts(
    config: DeviceConfig, offset: int = 0, services: Iterable[ServicePort] = ()
) -> dict[str, str]:
    """
    The port settings of C{config} that cannot work, by field path
    (L{PortUse.path}) with the reason: outside 1-65535 after C{offset},
    the port of one of the box's C{services}, or the same port as another
    setting (both are named, each pointing at the other).
    """
    errors: dict[str, str] = {}
    held = {(s.proto, s.port): s.name for s in services}
    seen: dict[tuple[str, int], PortUse] = {}
    for use in port_uses(config):
        actual = use.port + offset
        shown = _shown(use, offset)
        if not 0 < actual < 65536:
            errors.setdefault(use.path, f"{shown} is outside 1-65535")
            continue
        key = (use.proto, actual)
        if key in held:
            errors.setdefault(use.path, f"{shown} is already used by {held[key]}")
            continue
        other = seen.get(key)
        if other is None:
            seen[key] = use
            continue
        if other.path == use.path:  # the same port twice in one list
            errors.setdefault(use.path, f"{shown} is given twice")
            continue
        errors.setdefault(use.path, f"{shown} is also {other.describe()}")
        errors.setdefault(other.path, f"{_shown(other, offset)} is also {use.describe()}")
    return errors


def _shown(use: PortUse, offset: int) -> str:
    proto = use.proto.upper()
    if offset:
        return f"{proto} port {use.port} ({use.port + offset} with --port-offset {offset})"
    return f"{proto} port {use.port}"


__all__ = [
    "MODE_PORTS",
    "PortUse",
    "ServicePort",
    "operating_ports",
    "port_conflicts",
    "port_uses",
]
