# -*- test-case-name: tests.test_realtty_cli -*-
"""
Command line of ``nport-realtty`` and of ``twistd nport realtty``: one
port from the command line (C{HOST[:N] --link PATH}), many from a file
(ours or MOXA's npreal2d.cf, unchanged).  Port options given here are
defaults for the file's ports; the file's own values win.

Nothing here starts anything or imports the reactor.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import attrs
from twisted.python import usage

from nport_twisted._exceptions import ConfigError
from nport_twisted.tools.realtty.config import (
    DEFAULT_LINK_DIR,
    RealTtyConfig,
    load_config,
    parse_target,
    port_fields,
    _finish,
    _make_port,
)

if TYPE_CHECKING:
    from nport_twisted.tools.realtty.service import RealTtyService

__all__ = ["RealTtyOptions", "gnu_order", "make_service"]

# (option, config key): port options that may also come from the file.
_PORT_OPTIONS = (
    ("ssl", "ssl"), ("no-fifo", "fifo"), ("format", "format"), ("dtr", "dtr"), ("rts", "rts"),
    ("mode", "mode"), ("group", "group"), ("on-close", "on_close"),
    ("while-disconnected", "while_disconnected"), ("closing-wait", "closing_wait"),
    ("connect-timeout", "connect_timeout"), ("command-timeout", "command_timeout"),
    ("reconnect-max", "reconnect_max"), ("termios-watch", "termios_watch"),
    ("poll-interval", "poll_interval"), ("interface", "interface"),
)  # fmt: skip


class RealTtyOptions(usage.Options):
    synopsis = "[HOST[:N] --link PATH] [--config FILE] [options]"
    longdesc = (
        "Serve ports of NPorts (MOXA's or nport-twisted) as local ttys with MOXA's Real COM "
        "protocol, without MOXA's kernel module. HOST:N is serial port N of the NPort at HOST "
        "(data TCP 950+N-1, command 966+N-1); --config reads many ports from our INI file or "
        "from MOXA's npreal2d.cf unchanged. Commands for a running instance: "
        "nport-realtty status | set LINK dtr|rts on|off | break LINK [MS]."
    )
    optParameters: list[list[Any]] = [
        ["config", "c", None, "Ports file: our INI format or MOXA's npreal2d.cf (read unchanged)."],
        ["link", "l", None, "Path applications open for the command-line port (e.g. /dev/ttyNP0)."],
        ["callout", None, None, "A second path for the same tty (MOXA's curNN)."],
        ["data-port", None, None, "Data TCP port of the command-line port (default 950+N-1).",
         int],
        ["command-port", None, None,
         "Command TCP port of the command-line port (default 966+N-1).", int],
        ["link-dir", None, DEFAULT_LINK_DIR,
         "Directory for the ttyName/coutName links of an npreal2d.cf."],
        ["format", None, None,
         "Data bits, parity, stop bits, e.g. 8N1, 7E1 (a pty cannot carry data bits and "
         "parity). Default 8N with stop bits from the tty."],
        ["dtr", None, None, "DTR at open: on or off (default on)."],
        ["rts", None, None, "RTS at open: on or off (default on)."],
        ["mode", None, None, "Permissions of the tty (octal, default 0660)."],
        ["group", None, None, "Group of the tty (default dialout when it exists)."],
        ["on-close", None, None,
         "After the last close: disconnect (MOXA's driver, default) or keep the connection."],
        ["while-disconnected", None, None,
         "While the server is unreachable the application's writes block (default) or fail "
         "(the tty is hung up)."],
        ["closing-wait", None, None, "Seconds the close waits for output to drain (default 30)."],
        ["connect-timeout", None, None, "Seconds per connect attempt (default 10)."],
        ["command-timeout", None, None, "Seconds to wait for each command reply (default 10)."],
        ["reconnect-max", None, None, "Longest delay between reconnect attempts (default 30)."],
        ["termios-watch", None, None,
         "extproc (default: packet mode + EXTPROC, input reaches the application raw) or poll "
         "(termios read every --poll-interval; canonical input works)."],
        ["poll-interval", None, None, "Seconds between termios reads with poll (default 0.05)."],
        ["interface", None, None, "Network interface of an IPv6 link-local server address."],
        ["alive-timeout", None, 60.0,
         "UDP 4800 liveness polling as npreal2d -t 1: reset a port after this many silent "
         "seconds (0: off).", float],
        ["dsci-port", None, 4800, "UDP port of the servers' DSCI (liveness polling).", int],
        ["control", None, None, "Control/status socket (default: /run/nport-realtty.sock for "
         "root, else under $XDG_RUNTIME_DIR)."],
        ["status-file", None, None, "Also write the status as JSON to this file."],
    ]
    optFlags: list[list[str | None]] = [
        ["ssl", None, "Secure Real COM: TLS on the data connection (command-line port)."],
        ["no-fifo", None, "Ask the server to turn its UART FIFO off (TX_FIFO 1)."],
        ["debug", None, "Log debug messages too (nport-realtty only; twistd has its own)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["targets"] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """As usage.Options, but options may also follow HOST[:N] (GNU style)."""
        import sys

        args = list(sys.argv[1:] if options is None else options)
        super().parseOptions(gnu_order(self, args))

    def parseArgs(self, *targets: str) -> None:
        if len(targets) > 1:
            raise usage.UsageError("one HOST[:N] on the command line; put more ports in --config")
        self["targets"] = list(targets)

    def _defaults(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for option, key in _PORT_OPTIONS:
            value = self[option]
            if option in ("ssl", "no-fifo"):
                if value:
                    values[key] = "off" if option == "no-fifo" else "on"
            elif value is not None:
                values[key] = str(value)
        return values

    def postOptions(self) -> None:
        from nport_twisted.tools.realtty.service import check_links

        if not self["targets"] and (self["link"] or self["data-port"] or self["command-port"]):
            raise usage.UsageError("--link, --data-port and --command-port need HOST[:N]")
        if not self["targets"] and not self["config"]:
            raise usage.UsageError("name a port (HOST[:N] --link PATH) or a --config file")
        if not 0 <= self["alive-timeout"] < 86400:
            raise usage.UsageError("--alive-timeout must be 0 (off) or seconds below a day")
        try:
            config = self._build()
            check_links(config)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self["realtty_config"] = config

    def _build(self) -> RealTtyConfig:
        link_dir = self["link-dir"]
        defaults = port_fields(self._defaults(), "command line", link_dir)
        ports = []
        warnings: tuple[str, ...] = ()
        file_config: RealTtyConfig | None = None
        if self["config"]:
            file_config = load_config(self["config"], link_dir=link_dir, defaults=defaults)
            ports += list(file_config.ports)
            warnings = file_config.warnings
        if self["targets"]:
            if not self["link"]:
                raise ConfigError("--link PATH is needed for the command-line port")
            host, data, command = parse_target(self["targets"][0])
            fields = {
                **defaults,
                "link": os.path.abspath(self["link"]),
                "callout": os.path.abspath(self["callout"]) if self["callout"] else None,
                "host": host,
                "data_port": self["data-port"] or data,
                "command_port": self["command-port"] or command,
                "source": "command line",
            }
            ports.append(_make_port(fields, "command line"))
        elif self["link"] or self["data-port"] or self["command-port"]:
            raise ConfigError("--link, --data-port and --command-port need HOST[:N]")
        settings = {"alive_timeout": str(self["alive-timeout"]),
                    "dsci_port": str(self["dsci-port"])}
        if file_config is not None:
            # The file's [realtty] values, unless given here.
            if file_config.control and not self["control"]:
                settings["control"] = file_config.control
            if file_config.status_file and not self["status-file"]:
                settings["status_file"] = file_config.status_file
        if self["control"]:
            settings["control"] = self["control"]
        if self["status-file"]:
            settings["status_file"] = self["status-file"]
        config = _finish(ports, self["config"] or "command line", settings, list(warnings))
        if file_config is not None and self["alive-timeout"] == 60.0:
            config = attrs.evolve(config, alive_timeout=file_config.alive_timeout)
        if file_config is not None and self["dsci-port"] == 4800:
            config = attrs.evolve(config, dsci_port=file_config.dsci_port)
        return config


def gnu_order(options: usage.Options, args: list[str]) -> list[str]:
    """
    C{args} with every option before the positional arguments: Twisted's
    usage.Options (getopt) stops at the first positional one, GNU tools do not.
    """
    takes_value = {f"--{p[0]}" for p in getattr(options, "optParameters", [])}
    takes_value |= {f"-{p[1]}" for p in getattr(options, "optParameters", []) if p[1]}
    opts: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            positional += args[i + 1:]
            break
        if arg.startswith("-") and arg != "-":
            opts.append(arg)
            if arg in takes_value and i + 1 < len(args):
                opts.append(args[i + 1])
                i += 1
        else:
            positional.append(arg)
        i += 1
    return opts + positional


def make_service(options: RealTtyOptions, reactor: Any = None) -> RealTtyService:
    """The L{RealTtyService} for parsed options (the global reactor unless one is given)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor
        reactor = default_reactor
    from nport_twisted.tools.realtty.service import RealTtyService

    return RealTtyService(reactor, options["realtty_config"])
