# -*- test-case-name: tests.test_discovery -*-
"""
The TCP 4900 capture listener (dsci.md §9): what MOXA's utilities send to
TCP 4900 is unknown, so what arrives is recorded and nothing is ever
answered.  A device service on the admitted-session base (accessible IP
list, connection limit, idle timeout, netstat).

Bounded (issue 10 item 3; a client once wrote 252 MB of hex dump into the
service log in 31 s): the capture file takes the first
C{per_connection_limit} bytes of each connection (64 KiB) up to
C{CaptureLog.max_bytes} in all (16 MiB); the service log gets the first
C{log_bytes} (256) of a connection as a hex dump, at most 20 dumps per 10 s
in all, and the connect/close lines at most 5 per 10 s per source (then a
"suppressed" summary).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.config.settings import AccessibleIPSettings
from nport_twisted.net.context import IDeviceContext
from nport_twisted.net.listener import ListenerService, NetTable
from nport_twisted.net.loglimit import LogLimiter
from nport_twisted.net.session import AdmittedSession, Gate

__all__ = ["CAPTURE_FILE", "CAPTURE_PORT", "CaptureFactory", "CaptureLog", "CaptureProtocol",
           "capture_service", "hexdump"]

CAPTURE_PORT = 4900
CAPTURE_FILE = "tcp4900-capture.log"


def hexdump(data: bytes, offset: int = 0) -> str:
    """C{hexdump -C} style lines; offsets count from C{offset}."""
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i:i + 16]
        left = " ".join(f"{b:02x}" for b in chunk[:8])
        right = " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{offset + i:08x}  {left:<23}  {right:<23}  |{text}|")
    return "\n".join(lines)


class CaptureLog:
    """
    The capture file: every record is appended with one C{write} on a
    descriptor opened with C{O_APPEND}, so concurrent records never
    interleave and a crash loses at most the record being written.  Stops
    growing at C{max_bytes}.
    """

    _log = Logger()

    def __init__(self, path: str | None, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._full_logged = False
        # A file that cannot be opened or written is warned about once, not at every
        # record of every connection, until a record is written again.
        self._failure_logged = False

    def append(self, text: str) -> bool:
        """Append one record; False when there is no file, it is full, or writing failed."""
        if self.path is None:
            return False
        data = text.encode("utf-8", "replace")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            self._failed("cannot open the TCP 4900 capture file {path}: {error}; received bytes "
                         "are only logged until it can be written", e)
            return False
        try:
            if os.fstat(fd).st_size + len(data) > self.max_bytes:
                if not self._full_logged:
                    self._full_logged = True
                    self._log.warn("TCP 4900 capture file {path} reached {size} bytes; not recording "
                                   "more (move it away to record again)", path=self.path,
                                   size=self.max_bytes)
                return False
            os.write(fd, data)
            self._failure_logged = False
            return True
        except OSError as e:
            self._failed("cannot write the TCP 4900 capture file {path}: {error}; received bytes "
                         "are only logged until it can be written", e)
            return False
        finally:
            os.close(fd)

    def _failed(self, message: str, error: OSError) -> None:
        if not self._failure_logged:
            self._failure_logged = True
            self._log.warn(message, path=self.path, error=error)


class CaptureProtocol(AdmittedSession):
    """
    One TCP 4900 connection: every byte received is logged as a hex dump
    and appended to the capture file; nothing is ever sent (dsci.md §9: the
    protocol is unknown and a guessed reply could mislead a utility).
    """

    _log = Logger()

    def __init__(self, factory: CaptureFactory) -> None:
        super().__init__(factory.gate)
        self.factory = factory
        self.peer_address = "?"
        self.received_bytes = 0
        self._limit_noted = False

    def _stamp(self) -> str:
        now = self.factory.clock.seconds()
        return _dt.datetime.fromtimestamp(now, _dt.UTC).isoformat(timespec="milliseconds")

    def _record(self, line: str, dump: str = "") -> None:
        self.factory.capture.append(f"{self._stamp()} {self.peer_address} {line}\n"
                                    + (dump + "\n" if dump else ""))

    def admitted(self) -> None:
        try:
            peer = self.transport.getPeer()
            self.peer_address = f"{peer.host}:{peer.port}"
        except AttributeError:
            pass
        self.gate.logs.emit(self._log.info, "capture-connect", self.peer,
                            "TCP 4900: connection from {peer}; recording what it sends, "
                            "answering nothing", peer=self.peer_address)
        self._record("connected")

    def timeoutConnection(self) -> None:
        self._record(f"idle for {self.factory.idle_timeout} s; closing")
        self.transport.loseConnection()

    def received(self, data: bytes) -> None:
        f = self.factory
        start = self.received_bytes
        self.received_bytes += len(data)
        self.touch()
        room = max(0, f.per_connection_limit - start)
        kept = data[:room]
        if kept:
            dump = hexdump(kept, start)
            logged = kept[:max(0, f.log_bytes - start)]
            if logged:
                f.dump_logs.emit(self._log.info, "capture-dump", "*",
                                 "TCP 4900: {peer} sent {n} bytes (offset {offset}):\n{dump}",
                                 peer=self.peer_address, n=len(kept), offset=start,
                                 dump=hexdump(logged, start))
            self._record(f"received {len(kept)} bytes at offset {start}", dump)
        if len(kept) < len(data) and not self._limit_noted:
            self._limit_noted = True
            self.gate.logs.emit(self._log.info, "capture-limit", self.peer,
                                "TCP 4900: {peer} passed {limit} bytes; counting but not "
                                "recording more", peer=self.peer_address,
                                limit=f.per_connection_limit)
            self._record(f"capture limit of {f.per_connection_limit} bytes reached; "
                         "further bytes are counted, not recorded")

    def closed(self, reason: Failure) -> None:
        self.gate.logs.emit(self._log.info, "capture-close", self.peer,
                            "TCP 4900: {peer} closed after {n} bytes", peer=self.peer_address,
                            n=self.received_bytes)
        self._record(f"closed after {self.received_bytes} bytes")


class CaptureFactory(Factory):
    """Builds L{CaptureProtocol}s sharing one capture file and one gate."""

    noisy = False
    protocol = CaptureProtocol

    def __init__(self, clock: IReactorTime, capture: CaptureLog,
                 accessible: Callable[[], AccessibleIPSettings] = AccessibleIPSettings,
                 net: NetTable | None = None, per_connection_limit: int = 64 * 1024,
                 max_connections: int = 16, idle_timeout: float = 300.0,
                 log_bytes: int = 256) -> None:
        self.clock = clock
        self.capture = capture
        self.per_connection_limit = per_connection_limit
        self.idle_timeout = idle_timeout
        self.log_bytes = log_bytes  # of each connection, hex-dumped into the service log
        self.dump_logs = LogLimiter(clock, burst=20, window=10.0)
        # Over the limit: RST, as a capture of an unknown protocol owes nobody a clean close.
        self.gate = Gate("TCP 4900", clock, accessible, net=net, limit=max_connections,
                         idle_timeout=idle_timeout, abort_over_limit=True,
                         kind="capture connection")

    @property
    def connections(self) -> list[AdmittedSession]:
        return self.gate.active

    def buildProtocol(self, addr: Any) -> CaptureProtocol:
        return CaptureProtocol(self)


class _CaptureListener(ListenerService):
    """The TCP 4900 listener; says at start where the capture goes."""

    _log = Logger()

    def startService(self) -> None:
        super().startService()
        factory = self.factory
        assert isinstance(factory, CaptureFactory)
        if factory.capture.path is None:
            self._log.info("TCP 4900 capture: no state directory (no --config); received bytes "
                           "are only logged")
        elif not _writable(factory.capture.path):
            self._log.warn("TCP 4900 capture: {path} cannot be written (the settings directory is "
                           "not writable, see the start-up summary); received bytes are only "
                           "logged", path=factory.capture.path)
        else:
            self._log.info("TCP 4900 capture: recording to {path}", path=factory.capture.path)


def _writable(path: str) -> bool:
    """Whether this process may append to C{path} (or create it in its directory)."""
    if os.path.exists(path):
        return os.access(path, os.W_OK) and not os.path.isdir(path)
    return os.access(os.path.dirname(path) or ".", os.W_OK)


def capture_service(server: IDeviceContext) -> ListenerService:
    """The TCP 4900 (+ offset) capture listener of C{server}, listed in its netstat."""
    state_dir = server.state_dir
    path = os.path.join(state_dir, CAPTURE_FILE) if state_dir else None
    factory = CaptureFactory(server.reactor, CaptureLog(path), lambda: server.config.accessible_ip,
                             server.net)
    listener = _CaptureListener(server.reactor, server.endpoint("tcp", CAPTURE_PORT), factory,
                                server.net, None)
    listener.setName("tcp4900-capture")
    return listener
