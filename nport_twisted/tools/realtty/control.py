# -*- test-case-name: tests.test_realtty_control -*-
"""
The control and status face of nport-realtty: a Unix socket, one JSON
object per line each way, and an optional status file.

Requests (C{nport-realtty status|set|break} send them)::

    {"command": "status"}
    {"command": "set", "link": "/dev/ttyNP0", "dtr": false, "rts": true}
    {"command": "break", "link": "/dev/ttyNP0", "ms": 250}

Replies: C{{"ok": true, "ports": [...]}} or C{{"ok": false, "error": "..."}}.
A port is named by its link, its callout link, its pty, or any path that
resolves to the same pty.  Who may send these is decided by the socket's
mode (0660) and group (the ttys' group): whoever may use the ttys may drive
their DTR/RTS.  The status file is the same JSON as the status reply,
rewritten atomically when something changes (and every few seconds for the
counters).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from nport_twisted.tools.realcom_client import RealComError

__all__ = [
    "ControlFactory",
    "ControlProtocol",
    "StatusFile",
    "default_control_path",
    "request",
]

#: Longest request line accepted.
MAX_LINE = 4096
#: Longest break a request may ask for.
MAX_BREAK_MS = 10000


def default_control_path() -> str:
    """
    Where the daemon listens and the commands connect, unless told:
    C{$NPORT_REALTTY_CONTROL}, else C{/run/nport-realtty.sock} for root,
    else C{$XDG_RUNTIME_DIR/nport-realtty.sock} (or C{/tmp/nport-realtty-UID.sock}).
    """
    env = os.environ.get("NPORT_REALTTY_CONTROL")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/nport-realtty.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "nport-realtty.sock")
    return os.path.join(tempfile.gettempdir(), f"nport-realtty-{os.geteuid()}.sock")


def _same(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b)


class ControlProtocol(LineOnlyReceiver):
    """One control connection."""

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE
    _log = Logger()

    def __init__(self, relays: Callable[[], Sequence[Any]],
                 snapshot: Callable[[], dict[str, Any]] | None = None) -> None:
        self._relays = relays
        self._snapshot = snapshot or (
            lambda: {"ok": True, "ports": [r.status() for r in self._relays()]})

    def lineReceived(self, line: bytes) -> None:
        d = maybeDeferred(self._handle, line)
        d.addErrback(lambda f: {"ok": False, "error": f.getErrorMessage()})
        d.addCallback(self._reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._reply({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _reply(self, value: dict[str, Any]) -> None:
        if self.transport is not None:
            self.sendLine(json.dumps(value, sort_keys=True).encode())

    def _find(self, link: object) -> Any:
        if not isinstance(link, str) or not link:
            raise ValueError("'link' must name a port (its link or pty path)")
        for relay in self._relays():
            if any(_same(link, p) for p in (*relay.config.links, relay.pty.slave_path) if p):
                return relay
        raise ValueError(f"no port {link}")

    def _handle(self, line: bytes) -> Any:
        try:
            req = json.loads(line)
        except ValueError:
            raise ValueError("a request is one JSON object per line") from None
        if not isinstance(req, dict):
            raise ValueError("a request is one JSON object per line")
        command = req.get("command")
        if command == "status":
            return self._snapshot()
        if command == "set":
            relay = self._find(req.get("link"))
            lines = {k: req[k] for k in ("dtr", "rts") if k in req}
            if not lines or any(not isinstance(v, bool) for v in lines.values()):
                raise ValueError("'set' needs dtr and/or rts as true/false")
            self._log.info("control: {link} {lines}", link=relay.config.link, lines=lines)
            d: Deferred[Any] = relay.set_lines(**lines)
            return d.addCallback(lambda _: {"ok": True, "ports": [relay.status()]})
        if command == "break":
            relay = self._find(req.get("link"))
            ms = req.get("ms", 250)
            if not isinstance(ms, int) or isinstance(ms, bool) or not 1 <= ms <= MAX_BREAK_MS:
                raise ValueError(f"'ms' must be 1-{MAX_BREAK_MS}")
            try:
                d = relay.send_break(ms)
            except RealComError as e:
                raise ValueError(str(e)) from None
            return d.addCallback(lambda _: {"ok": True, "ports": [relay.status()]})
        raise ValueError(f"unknown command {command!r}; commands: status, set, break")


class ControlFactory(Factory):
    """Builds L{ControlProtocol}s over the service's relays."""

    noisy = False

    def __init__(self, relays: Callable[[], Sequence[Any]],
                 snapshot: Callable[[], dict[str, Any]] | None = None) -> None:
        self._relays = relays
        self._snapshot = snapshot

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        proto = ControlProtocol(self._relays, self._snapshot)
        proto.factory = self
        return proto


class StatusFile:
    """
    The status as a JSON file, written atomically (temporary file in the
    same directory, then rename) shortly after a change and every
    C{refresh} seconds.
    """

    _log = Logger()

    def __init__(self, clock: Any, path: str, snapshot: Callable[[], dict[str, Any]],
                 delay: float = 0.2, refresh: float = 5.0) -> None:
        self._clock = clock
        self.path = path
        self._snapshot = snapshot
        self._delay = delay
        self._pending: IDelayedCall | None = None
        self._loop = LoopingCall(self.write)
        self._loop.clock = clock
        self._refresh = refresh

    def start(self) -> None:
        self.write()
        self._loop.start(self._refresh, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def changed(self) -> None:
        if self._pending is None or not self._pending.active():
            self._pending = self._clock.callLater(self._delay, self.write)

    def write(self) -> None:
        data = json.dumps(self._snapshot(), indent=1, sort_keys=True).encode() + b"\n"
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            fd, tmp = tempfile.mkstemp(prefix=".status-", dir=directory)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as e:
            self._log.warn("cannot write {path}: {error}", path=self.path, error=e.strerror)


def request(path: str, req: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """Send one request to a running nport-realtty and return its reply (blocking; the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    if not buf:
        raise ConnectionError(f"{path}: no reply")
    reply = json.loads(buf)
    if not isinstance(reply, dict):
        raise ConnectionError(f"{path}: not a reply: {buf[:80]!r}")
    return reply
