# -*- test-case-name: tests.test_warning -*-
"""
Start and host-network events for Auto Warning and syslog:

  - L{StartEvents} publishes L{ColdStart} when the service starts after the
    host booted (the kernel's boot id differs from the one it saw last, kept
    in the state directory) and L{WarmStart} when only the service restarted.
    The NPort's cold start is a power-on and its warm start a software
    restart; this is the closest a program on a host can tell (inferred).
  - L{NetWatch} polls the host's interfaces every few seconds on the
    injected clock and publishes L{LinkChanged} (MOXA's "link down") and
    L{IPChanged} (the IPv4 addresses of an interface changed); the first
    poll only learns the state.  Loopback is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from nport_twisted.config.identity import InterfaceAddress, ipv4_addresses
from nport_twisted.events import ColdStart, IPChanged, LinkChanged, WarmStart
from nport_twisted.net.context import IDeviceContext
from nport_twisted.services.hostif import HostInterface, read_interfaces

__all__ = ["NetWatch", "StartEvents", "start_kind"]

BOOT_ID = "/proc/sys/kernel/random/boot_id"
PROC_UPTIME = "/proc/uptime"
_STATE_FILE = ".boot_id"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def start_kind(boot_id: str | None, last_boot_id: str | None,
               host_uptime: float | None) -> ColdStart | WarmStart:
    """
    Cold or warm: a boot id different from the last one seen is a cold start;
    the same one a warm start.  Without a remembered id (no state directory,
    first run), a host up for less than ten minutes counts as a cold start.
    """
    if boot_id and last_boot_id:
        if boot_id != last_boot_id:
            return ColdStart("host booted")
        return WarmStart("service restarted")
    if host_uptime is not None and host_uptime < 600:
        return ColdStart("host booted")
    return WarmStart("service started")


class StartEvents(service.Service):
    """Publishes the start event once the services before it in the parent started."""

    _log = Logger()
    name = "start-events"

    def __init__(self, ctx: IDeviceContext, boot_id_path: str = BOOT_ID,
                 uptime_path: str = PROC_UPTIME) -> None:
        self.ctx = ctx
        self._boot_id_path = boot_id_path
        self._uptime_path = uptime_path
        self.published: ColdStart | WarmStart | None = None

    def startService(self) -> None:
        super().startService()
        boot_id = _read(self._boot_id_path)
        state = self.ctx.state_dir
        path = os.path.join(state, _STATE_FILE) if state else None
        last = _read(path) if path else None
        uptime_text = _read(self._uptime_path)
        try:
            host_uptime = float(uptime_text.split()[0]) if uptime_text else None
        except ValueError:
            host_uptime = None
        event = start_kind(boot_id, last, host_uptime)
        if path and boot_id and boot_id != last:
            try:
                from nport_twisted.config.store import atomic_write
                atomic_write(path, boot_id.encode() + b"\n", 0o644)
            except OSError as e:
                self._log.info("cannot remember the boot id in {path} ({error}); the next "
                               "start may be reported as cold", path=path, error=e)
        self.published = event
        self.ctx.events.publish(event)


def _addresses_by_interface(addresses: list[InterfaceAddress]) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for a in addresses:
        out.setdefault(a.ifname, []).append(f"{a.address}/{a.prefixlen}")
    return {name: tuple(sorted(v)) for name, v in out.items()}


class NetWatch(service.Service):
    """Polls the host's links and addresses; publishes the changes."""

    _log = Logger()
    name = "net-watch"

    def __init__(self, ctx: IDeviceContext, interval: float = 5.0,
                 interfaces: Callable[[], list[HostInterface]] = read_interfaces,
                 addresses: Callable[[], list[InterfaceAddress]] = ipv4_addresses) -> None:
        self.ctx = ctx
        self.interval = interval
        self._interfaces = interfaces
        self._addresses = addresses
        self._links: dict[str, bool] | None = None
        self._ips: dict[str, tuple[str, ...]] | None = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.poll)
        self._loop.clock = self.ctx.reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self._log.failure("network watch stopped", f))

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def poll(self) -> None:
        try:
            links = {i.name: i.oper_up for i in self._interfaces() if not i.loopback}
            ips = {name: v for name, v in _addresses_by_interface(self._addresses()).items()
                   if name != "lo"}
        except Exception:
            self._log.failure("reading the host's interfaces failed")
            return
        events = self.ctx.events
        if self._links is not None:
            for name, up in sorted(links.items()):
                if name in self._links and self._links[name] != up:
                    events.publish(LinkChanged(name, up))
            for name in sorted(set(self._links) - set(links)):
                if self._links[name]:
                    events.publish(LinkChanged(name, False))  # the interface went away
        if self._ips is not None:
            for name in sorted(set(ips) | set(self._ips)):
                old, new = self._ips.get(name, ()), ips.get(name, ())
                if old != new:
                    events.publish(IPChanged(name, old, new))
        self._links, self._ips = links, ips
