# -*- test-case-name: tests.test_web -*-
"""
The NPort web console and JSON API (docs/web-console.md).

L{web_services} builds the HTTP (and optional HTTPS) listeners of an
L{nport_twisted.server.NPortService}; add each returned service as a child
of the server.  The console is a twisted.web resource tree
(L{nport_twisted.web.resources}) over pure codecs
(L{nport_twisted.web.forms}), sessions (L{nport_twisted.web.auth}) and the
console state (L{nport_twisted.web.console}).
"""

from __future__ import annotations

from twisted.application import service

from nport_twisted.net.context import IDeviceContext
from nport_twisted.net.listener import ListenerService
from nport_twisted.web.console import WebConsole
from nport_twisted.web.limits import ConnectionLimits
from nport_twisted.web.resources import ConsoleSite

__all__ = ["ConsoleSite", "WebConsole", "web_services"]

HTTP_PORT = 80
HTTPS_PORT = 443


class _Announce(service.Service):
    """Logs the setup token at start while no password is set."""

    def __init__(self, console: WebConsole) -> None:
        self.console = console

    def startService(self) -> None:
        super().startService()
        self.console.announce()


def web_services(
    server: IDeviceContext,
    http_port: int | None = HTTP_PORT,
    https_port: int | None = None,
    cert: str | None = None,
    console: WebConsole | None = None,
) -> list[service.IService]:
    """
    The web console of C{server} (an L{NPortService}): HTTP on C{http_port}
    and, if given, HTTPS on C{https_port}, both shifted by the server's port
    offset and bound to its interface.  C{cert} is a PEM file holding the
    key and certificate; without one a self-signed certificate is generated
    once and kept beside the settings file (L{nport_twisted.config.tls}).
    C{http_port=None} serves HTTPS only.
    """
    console = console if console is not None else WebConsole(server)
    console.web_served = http_port is not None or https_port is not None
    # Descriptors kept for the serial ports: per port up to 4 hosts with a data
    # and a command connection, its listeners and the device, plus the box's own.
    limits = ConnectionLimits(fd_reserve=64 + 12 * len(server.ports))
    site = ConsoleSite(console, reactor=server.reactor, limits=limits)
    services: list[service.IService] = [_Announce(console)]
    if console.history is None:  # the Monitor's graphs and GET /api/v1/history
        from nport_twisted.services.history import History

        console.history = History(server)
        services.append(console.history)
    if http_port is not None:
        listener = ListenerService(
            server.reactor, server.endpoint("tcp", http_port), site, server.net, None
        )
        listener.setName("web-http")
        services.append(listener)
    if https_port is not None:
        from nport_twisted.config.tls import server_tls

        # The same TLS as the serial ports' (TLS 1.2, nothing after the
        # handshake): a MOXA tool opening the console over HTTPS is served too.
        state_dir = server.state_dir
        listener = ListenerService(
            server.reactor, server.endpoint("tcp", https_port), site, server.net, None,
            tls=lambda: server_tls(state_dir, cert_file=cert),
        )
        listener.setName("web-https")
        services.append(listener)
    return services
