# -*- test-case-name: tests.test_realtty_cli -*-
"""
The ``nport-realtty`` console script.

    nport-realtty HOST[:N] --link /dev/ttyNP0 [options]     serve one port
    nport-realtty --config /etc/npreal2d.cf [options]       serve a file's ports
    nport-realtty status [--json] [--control PATH]          what a running instance does
    nport-realtty set LINK dtr|rts on|off [...]             drive DTR/RTS
    nport-realtty break LINK [MS]                           send a break (default 250 ms)

Serving runs the Twisted reactor in the foreground, logging to stderr
(systemd's journal takes it as is); SIGTERM/SIGINT close every port the
way an application's close would (drain, FLUSH, disconnect) and remove the
links.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from twisted.python import usage

__all__ = ["format_status", "main", "sd_notify"]

_COMMANDS = ("status", "set", "break")


class _ControlOptions(usage.Options):
    optParameters = [["control", None, None, "Control socket of the running nport-realtty."]]
    optFlags = [["json", None, "Print the reply as JSON."]]

    def parseOptions(self, options: list[str] | None = None) -> None:
        from nport_twisted.tools.realtty.options import gnu_order

        super().parseOptions(gnu_order(self, list(options or [])))

    def parseArgs(self, *args: str) -> None:
        self["args"] = list(args)


def _yes_no(word: str) -> bool:
    value = word.lower()
    if value in ("on", "1", "yes", "true", "high"):
        return True
    if value in ("off", "0", "no", "false", "low"):
        return False
    raise usage.UsageError(f"{word!r}: expected on or off")


def _control_request(command: str, args: list[str]) -> dict[str, Any]:
    if command == "status":
        if args:
            raise usage.UsageError("status takes no arguments")
        return {"command": "status"}
    if command == "set":
        if len(args) < 3 or len(args) % 2 != 1:
            raise usage.UsageError("usage: nport-realtty set LINK dtr|rts on|off [dtr|rts on|off]")
        req: dict[str, Any] = {"command": "set", "link": args[0]}
        for name, value in zip(args[1::2], args[2::2]):
            if name.lower() not in ("dtr", "rts"):
                raise usage.UsageError(f"{name!r}: only dtr and rts can be set")
            req[name.lower()] = _yes_no(value)
        return req
    if not 1 <= len(args) <= 2:
        raise usage.UsageError("usage: nport-realtty break LINK [MS]")
    ms = 250
    if len(args) == 2:
        if not args[1].isdigit():
            raise usage.UsageError(f"{args[1]!r}: milliseconds expected")
        ms = int(args[1])
    return {"command": "break", "link": args[0], "ms": ms}


def _lines(on: object) -> str:
    return "on " if on else "off"


def format_status(reply: dict[str, Any], now: float | None = None) -> str:
    """The human-readable table of C{nport-realtty status}."""
    now = time.time() if now is None else now
    ports = reply.get("ports", [])
    if not ports:
        return "no ports"
    out = []
    for p in ports:
        since = max(0, int(now - p.get("since", now)))
        tls = " TLS" if p.get("tls") else ""
        out.append(
            f"{p['link']} -> {p['pty']}  {p['server']}:{p['data_port']}/{p['command_port']}{tls}\n"
            f"  state {p['state']} for {since} s, tty {'open' if p['tty_open'] else 'closed'}, "
            f"{p['baudrate']} {p['format']}"
            f"{' rtscts' if p['rtscts'] else ''}{' ixon' if p['ixon'] else ''}"
            f"{' ixoff' if p['ixoff'] else ''}\n"
            f"  out: DTR {_lines(p['dtr'])} RTS {_lines(p['rts'])}   "
            f"in: CTS {_lines(p['cts'])} DSR {_lines(p['dsr'])} DCD {_lines(p['dcd'])} "
            f"RI {_lines(p['ri'])}\n"
            f"  bytes to server {p['to_remote']}, from server {p['from_remote']}; "
            f"reconnects {p['reconnects']}, discarded {p['discarded']}; errors parity "
            f"{p['parity_errors']} framing {p['framing_errors']} overrun {p['overruns']} "
            f"break {p['breaks']}"
            + (f"\n  last error: {p['last_error']}" if p.get("last_error") else ""))
    return "\n".join(out)


def _control_main(argv: list[str]) -> int:
    from nport_twisted.tools.realtty.control import default_control_path, request

    command, rest = argv[0], argv[1:]
    options = _ControlOptions()
    try:
        options.parseOptions(rest)
        req = _control_request(command, options["args"])
    except usage.UsageError as e:
        print(f"nport-realtty {command}: {e}", file=sys.stderr)
        return 2
    path = options["control"] or default_control_path()
    try:
        reply = request(path, req)
    except OSError as e:
        print(f"nport-realtty {command}: cannot reach {path}: {e.strerror or e} "
              "(is nport-realtty running? --control PATH)", file=sys.stderr)
        return 1
    except (ValueError, ConnectionError) as e:
        print(f"nport-realtty {command}: {path}: {e}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"nport-realtty {command}: {reply.get('error', 'failed')}", file=sys.stderr)
        return 1
    if options["json"]:
        print(json.dumps(reply, indent=1, sort_keys=True))
    elif command == "status" or command in ("set", "break"):
        print(format_status(reply))
    return 0


def sd_notify(state: str) -> bool:
    """
    Tell systemd (C{Type=notify}) about our state: one datagram to
    C{$NOTIFY_SOCKET} (a path, or an abstract socket starting with @).
    Returns whether it was sent; without systemd it does nothing.
    """
    import os
    import socket

    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), address)
    except OSError:
        return False
    return True


def _serve(argv: list[str]) -> int:
    from nport_twisted.tools.realtty.options import RealTtyOptions, make_service

    options = RealTtyOptions()
    options.synopsis = "Usage: nport-realtty " + RealTtyOptions.synopsis
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"{options}\nnport-realtty: {e}", file=sys.stderr)
        return 2
    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    level = LogLevel.debug if options["debug"] else LogLevel.info
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr), [LogLevelFilterPredicate(level)])])
    service = make_service(options, reactor)
    failed: list[BaseException] = []

    def start() -> None:
        try:
            service.startService()
        except Exception as e:  # noqa: BLE001 - report and stop
            print(f"nport-realtty: {e}", file=sys.stderr)
            failed.append(e)
            reactor.stop()
            return
        sd_notify("READY=1")  # Type=notify: the links exist now

    def stop() -> Any:
        if service.running:
            sd_notify("STOPPING=1")
            return service.stopService()
        return None

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``nport-realtty`` console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:
        from nport_twisted import __version__
        print(f"nport-realtty (nport-twisted) {__version__}")
        raise SystemExit(0)
    if args and args[0] in _COMMANDS:
        raise SystemExit(_control_main(args))
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        from nport_twisted.tools.realtty.options import RealTtyOptions
        options = RealTtyOptions()
        options.synopsis = "Usage: nport-realtty " + RealTtyOptions.synopsis
        print(options)
        raise SystemExit(0)
    raise SystemExit(_serve(args))


if __name__ == "__main__":
    main()
