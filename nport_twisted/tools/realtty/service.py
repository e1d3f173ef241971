# -*- test-case-name: tests.test_realtty_service -*-
"""
The nport-realtty service: one L{PortRelay} per configured port, the UDP
liveness poller, the control socket and the status file, as one Twisted
C{MultiService} (run by the C{nport-realtty} script, by
C{twistd nport realtty}, or beside the server with C{--realtty FILE}).
"""

from __future__ import annotations

import grp
import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from nport_twisted._exceptions import ConfigError
from nport_twisted.tools.realtty.config import PortConfig, RealTtyConfig
from nport_twisted.tools.realtty.control import ControlFactory, StatusFile, default_control_path
from nport_twisted.tools.realtty.liveness import LivenessPoller
from nport_twisted.tools.realtty.relay import PortRelay

__all__ = ["RealTtyService", "resolve_gid"]

#: The group that may open serial ports on Debian, Ubuntu, Fedora, Arch ...
DEFAULT_GROUP = "dialout"


def resolve_gid(group: str | None) -> int:
    """
    The gid for a port's C{group}: None means C{dialout} when the system has
    it, C{""} keeps the pty's group (-1); an unknown name is a L{ConfigError}.
    """
    if group == "":
        return -1
    name = DEFAULT_GROUP if group is None else group
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if group is None:
            return -1
        raise ConfigError(f"group = {group!r}: no such group") from None


def check_links(config: RealTtyConfig) -> None:
    """Refuse, before anything starts, link paths that exist and are not symlinks."""
    import stat

    for port in config.ports:
        resolve_gid(port.group)
        for link in port.links:
            try:
                st = os.lstat(link)
            except FileNotFoundError:
                parent = os.path.dirname(link) or "."
                if not os.path.isdir(parent):
                    raise ConfigError(f"{port.source or link}: {link}: directory {parent} "
                                      "does not exist") from None
                continue
            if not stat.S_ISLNK(st.st_mode):
                raise ConfigError(
                    f"{port.source or link}: {link} exists and is not a symlink (a device node "
                    f"left by MOXA's driver? remove it: rm {link})")


class RealTtyService(MultiService):
    """Everything one nport-realtty serves."""

    _log = Logger()

    def __init__(self, reactor: Any, config: RealTtyConfig, *, notifier: Any = None,
                 use_inotify: bool = True) -> None:
        super().__init__()
        self._reactor = reactor
        self.config = config
        self._use_inotify = use_inotify
        self._notifier = notifier
        self.relays: list[PortRelay] = []
        self.poller: LivenessPoller | None = None
        self.status_file: StatusFile | None = None
        self.control_path = config.control or default_control_path()
        self._listeners: list[Any] = []
        if any(p.tls for p in config.ports):
            from nport_twisted._txinternals import enable_tls
            enable_tls()  # imported without TLS under twistd nport (docs/performance.md)

    # -- start and stop ---------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        for warning in self.config.warnings:
            self._log.warn("{warning}", warning=warning)
        if self._notifier is None and self._use_inotify:
            self._notifier = self._make_notifier()
        if self.config.alive_timeout > 0:
            self.poller = LivenessPoller(self._reactor, self.config.alive_timeout,
                                         self.config.dsci_port, resolve=self._reactor.resolve)
            try:
                self._listeners.append(self._reactor.listenUDP(0, self.poller))
            except OSError as e:
                self._log.warn("no UDP liveness polling: {error}", error=e)
                self.poller = None
        if self.config.status_file:
            self.status_file = StatusFile(self._reactor, self.config.status_file, self.snapshot)
        started: list[PortRelay] = []
        try:
            for port in self.config.ports:
                relay = self._relay(port)
                relay.start()
                started.append(relay)
        except BaseException:
            for relay in started:
                relay.stop()
            raise
        self.relays = started
        self._listen_control()
        if self.status_file is not None:
            self.status_file.start()

    def _make_notifier(self) -> Any:
        try:
            from twisted.internet import inotify

            notifier = inotify.INotify(self._reactor)
            notifier.startReading()
            return notifier
        except Exception as e:  # noqa: BLE001 - no inotify: open detection polls
            self._log.info("no inotify ({error}): ttys are checked for opens every 0.1 s",
                           error=e)
            return None

    def _relay(self, port: PortConfig) -> PortRelay:
        poller = self.poller
        activity: Callable[[], None] | None = None
        if poller is not None:
            def activity(host: str = port.host, poller: LivenessPoller = poller) -> None:
                poller.activity(host)
        relay = PortRelay(
            self._reactor, port, gid=resolve_gid(port.group), notifier=self._notifier,
            on_change=self._changed, on_activity=activity,
        )
        if poller is not None:
            poller.add(port.host, relay)
        return relay

    def _listen_control(self) -> None:
        path = self.control_path
        try:
            port = self._reactor.listenUNIX(path, ControlFactory(lambda: self.relays, self.snapshot),
                                            mode=0o660, wantPID=True)
        except Exception as e:  # noqa: BLE001 - serve the ttys anyway
            self._log.warn("no control socket at {path}: {error}", path=path, error=e)
            return
        self._listeners.append(port)
        gids = {resolve_gid(p.group) for p in self.config.ports} - {-1}
        if len(gids) == 1:
            try:
                os.chown(path, -1, gids.pop())
            except OSError as e:
                self._log.info("{path}: cannot set its group: {error}", path=path,
                               error=e.strerror)
        self._log.info("control socket {path}", path=path)

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self.status_file is not None:
            self.status_file.stop()
        stops = [r.stop() for r in self.relays]
        for listener in self._listeners:
            stops.append(Deferred.fromCoroutine(_stop_listening(listener)))
        self._listeners = []
        if self._notifier is not None:
            try:
                self._notifier.loseConnection()
            except Exception:  # noqa: BLE001
                pass
        return DeferredList(stops, consumeErrors=True)

    # -- status -------------------------------------------------------------------------

    def _changed(self) -> None:
        if self.status_file is not None:
            self.status_file.changed()

    def snapshot(self) -> dict[str, Any]:
        """What C{nport-realtty status} and the status file show."""
        ports = []
        for relay in self.relays:
            status = relay.status()
            if self.poller is not None:
                status["udp"] = self.poller.status(relay.config.host)
            ports.append(status)
        return {"ok": True, "ports": ports}


async def _stop_listening(listener: Any) -> None:
    result = listener.stopListening()
    if isinstance(result, Deferred):
        await result
