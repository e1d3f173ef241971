"""
Tests for the control socket, the status file and the control commands of
nport-realtty (L{control}, L{cli}).
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.tools.realcom_client import RealComError
from nport_twisted.tools.realtty import cli
from nport_twisted.tools.realtty.config import PortConfig
from nport_twisted.tools.realtty.control import ControlProtocol, StatusFile


@attrs.define
class _Pty:
    slave_path: str


class _Relay:
    """What the control protocol uses of a relay."""

    def __init__(self, link: str, pty: str) -> None:
        self.config = PortConfig(link=link, host="h", data_port=950, command_port=966)
        self.pty = _Pty(pty)
        self.lines: list[dict[str, bool]] = []
        self.breaks: list[int] = []
        self.pending: Deferred[None] | None = None

    def status(self) -> dict[str, Any]:
        return {"link": self.config.link, "lines": self.lines}

    def set_lines(self, **lines: bool) -> Deferred[None]:
        self.lines.append(lines)
        return succeed(None)

    def send_break(self, ms: int) -> Deferred[None]:
        if ms == 13:
            raise RealComError("not open")
        self.breaks.append(ms)
        self.pending = Deferred()
        return self.pending


class ControlProtocolTests(SynchronousTestCase):
    """One JSON request per line, one JSON reply per line."""

    def setUp(self) -> None:
        self.relays = [_Relay("/dev/ttyNP0", "/dev/pts/7"), _Relay("/dev/ttyNP1", "/dev/pts/8")]
        self.proto = ControlProtocol(lambda: self.relays)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def ask(self, request: object) -> dict[str, Any]:
        self.transport.clear()
        self.proto.dataReceived(json.dumps(request).encode() + b"\n")
        return json.loads(self.transport.value())  # type: ignore[no-any-return]

    def test_status(self) -> None:
        """status lists every port."""
        reply = self.ask({"command": "status"})
        self.assertEqual([p["link"] for p in reply["ports"]], ["/dev/ttyNP0", "/dev/ttyNP1"])

    def test_set(self) -> None:
        """set drives the named port's lines; a port is named by its link or its pty."""
        reply = self.ask({"command": "set", "link": "/dev/pts/8", "dtr": False})
        self.assertTrue(reply["ok"])
        self.assertEqual(self.relays[1].lines, [{"dtr": False}])
        self.ask({"command": "set", "link": "/dev/ttyNP0", "dtr": True, "rts": False})
        self.assertEqual(self.relays[0].lines, [{"dtr": True, "rts": False}])

    def test_break_waits(self) -> None:
        """break replies once the break is over."""
        self.transport.clear()
        self.proto.dataReceived(b'{"command": "break", "link": "/dev/ttyNP0", "ms": 100}\n')
        self.assertEqual(self.transport.value(), b"")
        assert self.relays[0].pending is not None
        self.relays[0].pending.callback(None)
        self.assertTrue(json.loads(self.transport.value())["ok"])

    def test_errors(self) -> None:
        """Bad requests get ok: false and a reason; nothing is changed."""
        cases = [
            ({"command": "set", "link": "/dev/nope", "dtr": True}, "no port"),
            ({"command": "set", "link": "/dev/ttyNP0"}, "dtr and/or rts"),
            ({"command": "set", "link": "/dev/ttyNP0", "dtr": "off"}, "true/false"),
            ({"command": "break", "link": "/dev/ttyNP0", "ms": 0}, "'ms'"),
            ({"command": "break", "link": "/dev/ttyNP0", "ms": 13}, "not open"),
            ({"command": "reboot"}, "unknown command"),
            ([1, 2], "JSON object"),
        ]
        for request, message in cases:
            reply = self.ask(request)
            self.assertFalse(reply["ok"], request)
            self.assertIn(message, reply["error"], request)
        self.assertEqual(self.relays[0].lines, [])
        self.transport.clear()
        self.proto.dataReceived(b"not json\n")
        self.assertFalse(json.loads(self.transport.value())["ok"])

    def test_long_line(self) -> None:
        """An over-long request is refused and the connection closed."""
        self.proto.dataReceived(b"x" * 5000)
        self.assertTrue(self.transport.disconnecting)


class StatusFileTests(SynchronousTestCase):
    """The status file."""

    def test_written_atomically_on_change(self) -> None:
        """Written at start, shortly after a change, and removed at stop."""
        clock = Clock()
        path = os.path.abspath(self.mktemp())
        state = {"n": 0}
        status = StatusFile(clock, path, lambda: {"ok": True, "n": state["n"]})
        status.start()
        with open(path) as f:
            self.assertEqual(json.load(f)["n"], 0)
        state["n"] = 1
        status.changed()
        status.changed()
        clock.advance(0.3)
        with open(path) as f:
            self.assertEqual(json.load(f)["n"], 1)
        self.assertEqual([n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")], [])
        status.stop()
        self.assertFalse(os.path.exists(path))


class CommandTests(SynchronousTestCase):
    """nport-realtty status / set / break."""

    def test_requests(self) -> None:
        """The command words become requests."""
        self.assertEqual(cli._control_request("status", []), {"command": "status"})
        self.assertEqual(cli._control_request("set", ["/dev/ttyNP0", "dtr", "off"]),
                         {"command": "set", "link": "/dev/ttyNP0", "dtr": False})
        self.assertEqual(cli._control_request("set", ["x", "RTS", "on", "dtr", "0"]),
                         {"command": "set", "link": "x", "rts": True, "dtr": False})
        self.assertEqual(cli._control_request("break", ["x", "500"]),
                         {"command": "break", "link": "x", "ms": 500})
        for command, args in (("set", ["x", "cts", "on"]), ("set", ["x", "dtr"]),
                              ("set", ["x", "dtr", "maybe"]), ("break", ["x", "y"]),
                              ("status", ["x"])):
            self.assertRaises(usage.UsageError, cli._control_request, command, args)

    def test_format(self) -> None:
        """The status table shows the link, the state, the lines both ways and the counters."""
        port = {"link": "/dev/ttyNP0", "pty": "/dev/pts/3", "server": "10.0.0.1",
                "data_port": 950, "command_port": 966, "tls": True, "state": "open",
                "since": 90.0, "tty_open": True, "baudrate": 115200, "format": "8N1",
                "rtscts": True, "ixon": False, "ixoff": False, "dtr": True, "rts": False,
                "cts": True, "dsr": False, "dcd": True, "ri": False, "to_remote": 5,
                "from_remote": 7, "reconnects": 1, "discarded": 0, "parity_errors": 0,
                "framing_errors": 2, "overruns": 0, "breaks": 0, "last_error": "x"}
        text = cli.format_status({"ports": [port]}, now=100.0)
        self.assertIn("/dev/ttyNP0 -> /dev/pts/3  10.0.0.1:950/966 TLS", text)
        self.assertIn("state open for 10 s, tty open, 115200 8N1 rtscts", text)
        self.assertIn("DTR on  RTS off", text)
        self.assertIn("CTS on  DSR off DCD on  RI off", text)
        self.assertIn("framing 2", text)
        self.assertIn("last error: x", text)

    def test_sd_notify(self) -> None:
        """READY=1 goes to $NOTIFY_SOCKET as one datagram; without it nothing is sent."""
        import shutil
        import socket
        import tempfile

        directory = tempfile.mkdtemp(prefix="nprt-")  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(path)
            self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": path})
            self.assertTrue(cli.sd_notify("READY=1"))
            self.assertEqual(s.recv(100), b"READY=1")
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
        self.assertFalse(cli.sd_notify("READY=1"))

    def test_unreachable(self) -> None:
        """A command with nothing listening says so and exits 1."""
        path = os.path.abspath(self.mktemp())
        self.assertEqual(cli._control_main(["status", "--control", path]), 1)
