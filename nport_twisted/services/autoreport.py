# -*- test-case-name: tests.test_discovery -*-
"""
Auto IP Report (dsci.md §7): the "MOXA" datagram an NPort sends to a
configured host every period, so the host learns the box's address.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.config.identity import (
    ZERO_IP,
    HostNetwork,
    InterfaceAddress,
    address_by_ip,
    address_for_peer,
    ipv4_bind_address,
    is_ipv4_literal,
    resolve_identity,
)
from nport_twisted.config.settings import DeviceConfig
from nport_twisted.net.context import IDeviceContext
from nport_twisted.wire import dsci
from nport_twisted.wire.pktinfo import LIMITED_BROADCAST

__all__ = ["AutoReportService"]


def _unicast_problem(ip: IPv4Address, addresses: Sequence[InterfaceAddress]) -> str | None:
    if ip == ZERO_IP:
        return "is unspecified"
    if str(ip) == LIMITED_BROADCAST or any(a.broadcast == ip for a in addresses):
        return "is a broadcast address"
    if ip.is_multicast:
        return "is a multicast address"
    return None


class AutoReportService(service.Service):
    """
    Auto IP Report: while a report host is configured
    (C{[network] auto_report_host}), send the "MOXA" datagram (dsci.md §7)
    to C{auto_report_host:auto_report_port} every C{auto_report_period}
    seconds on the injected clock, the first one at start.  The settings
    are read at each tick, so changes apply without a restart.  Unicast
    only: a broadcast or multicast host is refused (logged once).

    The report carries the identity and the address, netmask and gateway of
    the interface the kernel routes to the report host through.
    """

    _log = Logger()
    name = "auto-ip-report"

    def __init__(self, server: IDeviceContext, host: HostNetwork | None = None,
                 listen_udp: Callable[[DatagramProtocol], Any] | None = None,
                 resolve: Callable[[str], Deferred[str]] | None = None) -> None:
        self._server = server
        self._clock: IReactorTime = server.reactor
        self._host = host if host is not None else HostNetwork()
        bind = ipv4_bind_address(server.interface) or ""
        self._listen_udp = listen_udp if listen_udp is not None else (
            lambda proto: server.reactor.listenUDP(0, proto, interface=bind))
        self._resolve = resolve if resolve is not None else (lambda name: server.reactor.resolve(name))
        self._call: Any = None
        self._port: Any = None
        self._proto: DatagramProtocol | None = None
        self._warned: set[str] = set()
        self._announced: tuple[str, int, int] | None = None
        self.sent = 0

    def startService(self) -> None:
        super().startService()
        self._tick()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
        port, self._port = self._port, None
        if port is not None:
            d = port.stopListening()
            if isinstance(d, Deferred):
                return d
        return succeed(None)

    def _tick(self) -> None:
        self._call = None
        network = self._server.config.network
        if network.auto_report_host:
            self._report(network.auto_report_host, network.auto_report_port, network.auto_report_period)
        else:
            self._announced = None
        if self.running:
            self._call = self._clock.callLater(network.auto_report_period, self._tick)

    def _warn_once(self, key: str, message: str, **kw: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warn(message, **kw)

    def _report(self, host: str, port: int, period: int) -> None:
        if self._announced != (host, port, period):
            self._announced = (host, port, period)
            self._log.info("Auto IP Report to {host}:{port} every {period} s", host=host, port=port,
                           period=period)
        if is_ipv4_literal(host):
            self._send_to(host, port)
            return
        if ":" in host:
            self._warn_once(host, "Auto IP Report: {host} is not IPv4; nothing sent", host=host)
            return

        def resolved(ip: str) -> None:
            self._send_to(ip, port)

        def failed(f: Failure) -> None:
            self._warn_once(host, "Auto IP Report: cannot resolve {host}: {error}", host=host,
                            error=f.getErrorMessage())

        self._resolve(host).addCallbacks(resolved, failed)

    def build_report(self, ip: str) -> bytes:
        """The report datagram for the report host C{ip}."""
        config: DeviceConfig = self._server.config
        identity = resolve_identity(config, mac=self._host.mac)
        addresses = self._host.addresses()
        source = self._host.source_for(ip)
        local = address_by_ip(addresses, source) if source else None
        local = local if local is not None else address_for_peer(addresses, ip)
        firmware = identity.firmware
        try:
            dsci.encode_firmware_version(firmware)
        except ValueError:
            firmware = "0.0"
        return dsci.encode_auto_report(
            name=identity.server_name, hw_id=identity.model.ids[1], mac=identity.mac,
            serial_number=identity.serial_number,
            ip=local.address.packed if local is not None else ZERO_IP.packed,
            netmask=local.netmask.packed if local is not None else ZERO_IP.packed,
            gateway=self._host.gateway_for(local).packed,
            firmware=firmware, ap_id=identity.model.ids[0])

    def _send_to(self, ip: str, port: int) -> None:
        problem = _unicast_problem(IPv4Address(ip), self._host.addresses())
        if problem is not None:
            self._warn_once(ip, "Auto IP Report: {ip} {problem}; the report is unicast only, "
                            "nothing sent", ip=ip, problem=problem)
            return
        if not self.running:
            return
        try:
            if self._port is None:
                self._proto = DatagramProtocol()
                self._port = self._listen_udp(self._proto)
            self._port.write(self.build_report(ip), (ip, port))
            self.sent += 1
        except OSError as e:
            self._warn_once(f"send {ip}", "Auto IP Report to {ip}:{port} failed: {error}", ip=ip,
                            port=port, error=e)
