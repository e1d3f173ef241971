# -*- test-case-name: tests.test_startup -*-
"""
The start-up summary: once every other service started, one line per
serial port (what it serves, where, and the state of its device) and one
per device-wide service, with the port offset applied, e.g.::

    port1 /dev/ttyUSB0: Real COM on tcp:950 (data) / tcp:966 (command); device missing — waiting for it
    web console on tcp:80: http://gateway-7:80/

plus what the command line asked for that the settings file overrode, and
a settings directory that cannot be written.  This replaces Twisted's
C{SessionFactory starting on 950} lines, which the runners filter
(L{nport_twisted.logs}).
"""

from __future__ import annotations

import getpass
import os
import socket
from typing import Any, Callable, Sequence

from twisted.application import service
from twisted.logger import Logger

from nport_twisted import __version__
from nport_twisted.config.linespec import describe_line
from nport_twisted.config.portmap import operating_ports
from nport_twisted.config.settings import OperatingSettings, OpMode
from nport_twisted.net.listener import ListenerInfo

__all__ = ["MODE_LABELS", "StartupReport", "describe_port", "describe_service"]

MODE_LABELS: dict[OpMode, str] = {
    OpMode.REAL_COM: "Real COM",
    OpMode.RFC2217: "RFC 2217",
    OpMode.TCP_SERVER: "TCP Server",
    OpMode.TCP_CLIENT: "TCP Client",
    OpMode.UDP: "UDP",
    OpMode.PAIR_MASTER: "Pair Connection (master)",
    OpMode.PAIR_SLAVE: "Pair Connection (slave)",
    OpMode.REVERSE_TELNET: "Reverse Telnet",
    OpMode.ETHERNET_MODEM: "Ethernet Modem",
    OpMode.DISABLED: "Disabled",
}

_ROLES = {
    "data_port": "data",
    "command_port": "command",
    "local_tcp_port": "data",
    "udp_local_port": "data",
    "designated_local_ports": "local port",
}

#: Listener service names -> what the summary calls them.
_SERVICES = {
    "web-http": "web console",
    "web-https": "web console (HTTPS)",
    "dsci": "discovery (DSCI)",
    "tcp4900-capture": "TCP 4900 (recorded, never answered)",
    "telnet-console": "telnet console",
}


def describe_port(index: int, device: str, operating: OperatingSettings, offset: int,
                  device_state: str) -> str:
    """One port's summary line (pure)."""
    mode = operating.mode
    label = MODE_LABELS.get(mode, mode.value)
    uses = operating_ports(operating, index)
    if mode is OpMode.TCP_CLIENT:
        where = "to " + (", ".join(operating.destinations) or "no destination yet (settings file)")
        if uses:
            where += " from " + " / ".join(f"tcp:{u.port + offset}" for u in uses)
    elif uses:
        where = "on " + " / ".join(f"{u.proto}:{u.port + offset} ({_ROLES.get(u.setting, u.setting)})"
                                   for u in uses)
        if mode is OpMode.UDP:
            dests = [f"{d.begin}-{d.end}:{d.port}" if d.end and d.end != d.begin
                     else f"{d.begin}:{d.port}" for d in operating.udp_destinations]
            where += "; sends to " + (", ".join(dests) or "no destination yet (settings file)")
    else:
        where = ""
    head = f"port{index + 1} {device}: {label}"
    return f"{head} {where}; {device_state}" if where else f"{head}; {device_state}"


def _url_host(interface: str) -> str:
    if interface in ("", "0.0.0.0", "::"):
        return socket.gethostname() or "localhost"
    return f"[{interface}]" if ":" in interface else interface


def describe_service(info: ListenerInfo, interface: str) -> str:
    """One device-wide listener's summary line (pure but for the host name)."""
    name = _SERVICES.get(info.name, info.name or "service")
    line = f"{name} on {info.proto}:{info.port}"
    if info.name == "web-http":
        line += f": http://{_url_host(interface)}:{info.port}/"
    elif info.name == "web-https":
        line += f": https://{_url_host(interface)}:{info.port}/"
    return line


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (a container's arbitrary uid)
        return f"uid {os.getuid()}"


class StartupReport(service.Service):
    """
    Logs the summary when started.  Add it as the server's last child, so
    every port and listener has started (or failed start-up) before.

    @param server: the L{nport_twisted.server.NPortService}.
    @param notes: warnings gathered while parsing the options (which of
        the command line and the settings file won).
    @param device_present: whether a device path exists now (for Real COM,
        which opens its device only when a host connects).
    @param off: device-wide services turned off by options, as summary text.
    """

    _log = Logger()
    name = "startup-report"

    def __init__(self, server: Any, notes: Sequence[str] = (),
                 device_present: Callable[[str], bool] | None = None,
                 off: Sequence[str] = ()) -> None:
        self.server = server
        self.notes = list(notes)
        self.off = list(off)
        if device_present is None:
            from nport_twisted.device.adapter import device_present as present
            device_present = present
        self._present = device_present

    def startService(self) -> None:
        super().startService()
        try:
            self.report()
        except Exception:  # a summary must never stop the service
            self._log.failure("start-up summary failed")

    def device_state(self, port: Any) -> tuple[str, bool]:
        """(text, healthy) for one port's device."""
        channel = port.channel
        mode = port.config.operating.mode
        if mode is OpMode.DISABLED:
            return "device not used", True
        if channel.is_open and channel.actual_settings is not None:
            return f"device open at {describe_line(channel.actual_settings)}", True
        if channel.keep_open:
            why = getattr(channel, "last_error", None)
            if getattr(channel, "device_busy", False):
                return f"device busy ({why}) — retrying until it is free", False
            return (f"device missing{f' ({why})' if why else ''} — waiting for it", False)
        if self._present(channel.device):
            return (f"device present, opened when a host connects "
                    f"(line {describe_line(channel.settings)} until the host sets its own)", True)
        return "device missing — waiting for it; hosts are refused until it appears", False

    def report(self) -> None:
        server = self.server
        where = f"on {server.interface}" if server.interface else "on every address"
        offset = f", --port-offset {server.port_offset}" if server.port_offset else ""
        self._log.info("nport-twisted {version}: {model}, {count} serial port(s), listening "
                       "{where}{offset}", version=__version__,
                       model=server.config.identity.model_info(len(server.ports)).name,
                       count=len(server.ports),
                       where=where, offset=offset)
        for port in server.ports:
            state, healthy = self.device_state(port)
            line = describe_port(port.index, port.channel.device, port.config.operating,
                                 server.port_offset, state)
            if healthy:
                self._log.info("{summary}", summary=line)
            else:
                self._log.warn("{summary}", summary=line)
        for info in sorted((i for i in server.net.listeners if i.port_index is None),
                           key=lambda i: (i.proto, i.port)):
            self._log.info("{summary}", summary=describe_service(info, server.interface))
        network = server.config.network
        if network.auto_report_host:
            self._log.info("Auto IP Report to {host}:{port} every {period} s",
                           host=network.auto_report_host, port=network.auto_report_port,
                           period=network.auto_report_period)
        for text in self.off:
            self._log.info("{summary}", summary=text)
        for note in self.notes:
            self._log.warn("{note}", note=note)
        store = getattr(server, "store", None)
        problem = store.write_problem() if store is not None else None
        if problem and store is not None:
            self._log.warn(
                "{problem} for {user}: changes made in the web console or JSON API are put in "
                "force but cannot be saved (they answer save_failed). Fix: make it writable "
                "(chown {user} {dir}; systemd: StateDirectory=; containers: a writable volume "
                "there, e.g. -v nport-data:/data)", problem=problem, user=_user(),
                dir=store.state_dir)
        elif server.settings_path is None:
            self._log.info("no --config: settings changes are not saved across restarts")
