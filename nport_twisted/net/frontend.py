# -*- test-case-name: tests.test_tcpserver -*-
"""
What every network front-end shares: the port context handed to it, the
listener service (with a clear error for privileged ports), the table of
listeners and connections (DSCI netstat and the monitor read it), TCP
keep-alive tuning and the accessible IP check.
"""

from __future__ import annotations

import errno
import re
import socket
from typing import Any, Callable

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IPushProducer,
    IReactorCore,
    ISSLTransport,
)
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from zope.interface import implementer

from nport_twisted.device.channel import SerialChannel
from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings


@attrs.frozen
class ListenerInfo:
    """One listening socket, for netstat (DSCI 0x14/0x1D) and the monitor."""

    proto: str  # "tcp" or "udp"
    port: int
    port_index: int | None  # serial port (0-based) it serves, None for device services


@attrs.frozen
class ConnectionInfo:
    """One connected TCP socket."""

    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    port_index: int | None


class NetTable:
    """Listeners and connections of the whole service."""

    def __init__(self) -> None:
        self.listeners: list[ListenerInfo] = []
        self.connections: list[ConnectionInfo] = []

    def add_listener(self, info: ListenerInfo) -> None:
        self.listeners.append(info)

    def remove_listener(self, info: ListenerInfo) -> None:
        if info in self.listeners:
            self.listeners.remove(info)

    def add_connection(self, transport: Any, port_index: int | None) -> ConnectionInfo | None:
        try:
            host, peer = transport.getHost(), transport.getPeer()
            info = ConnectionInfo(host.host, host.port, peer.host, peer.port, port_index)
        except AttributeError:
            return None
        self.connections.append(info)
        return info

    def remove_connection(self, info: ConnectionInfo | None) -> None:
        if info is not None and info in self.connections:
            self.connections.remove(info)


def split_endpoint(description: str) -> tuple[str, int, str]:
    """
    (kind, port, interface) of a server endpoint string as
    L{NPortService.endpoint} builds it (C{tcp:4001},
    C{udp:4001:interface=\\:\\:1}); Twisted parses no UDP endpoints for us.
    """
    kind, *rest = re.split(r"(?<!\\):", description)
    if not rest or not rest[0].isdecimal():
        raise ValueError(f"not a server endpoint with a port: {description!r}")
    interface = ""
    for option in rest[1:]:
        key, _, value = option.partition("=")
        if key == "interface":
            interface = value.replace("\\:", ":")
    return kind, int(rest[0]), interface


@attrs.define
class PortContext:
    """Everything a front-end of one serial port needs, injected."""

    index: int
    channel: SerialChannel
    operating: OperatingSettings
    reactor: Any
    endpoint: Callable[[str, int], str]  # ("tcp"/"udp", port) -> endpoint string with offset
    net: NetTable
    accessible: Callable[[], AccessibleIPSettings]
    state_dir: str | None = None

    @property
    def number(self) -> int:
        return self.index + 1

    def local_address(self, proto: str, port: int) -> tuple[int, str]:
        """(port after --port-offset, interface) of one of this box's local ports."""
        _, actual, interface = split_endpoint(self.endpoint(proto, port))
        return actual, interface


def privileged_port_hint(port: int) -> str:
    return (f"cannot listen on port {port}: permission denied. Ports below 1024 need root or "
            f"CAP_NET_BIND_SERVICE (e.g. setcap cap_net_bind_service=+ep on the python binary, "
            f"or AmbientCapabilities=CAP_NET_BIND_SERVICE under systemd); or shift every port "
            f"with --port-offset N (e.g. --port-offset 10000)")


class ListenerService(service.Service):
    """
    Listens on one endpoint while running.  A privileged port without
    permission fails start-up with an error that names the fixes.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorCore, description: str, factory: IProtocolFactory,
                 net: NetTable | None = None, port_index: int | None = None) -> None:
        self._reactor = reactor
        self.description = description
        self.factory = factory
        self._net = net
        self._port_index = port_index
        self._info: ListenerInfo | None = None
        self._port: IListeningPort | None = None
        self._listening: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        endpoint = serverFromString(self._reactor, self.description)
        d = endpoint.listen(self.factory)
        failure: list[Any] = []

        def listening(port: IListeningPort) -> IListeningPort:
            self._port = port
            if self._net is not None:
                host = port.getHost()
                proto = str(getattr(host, "type", "TCP")).lower()
                self._info = ListenerInfo(proto, int(getattr(host, "port", 0)), self._port_index)
                self._net.add_listener(self._info)
            return port

        def failed(f: Any) -> None:
            err = f.value
            socket_error = getattr(err, "socketError", None)
            if isinstance(err, CannotListenError) and getattr(socket_error, "errno", None) in (
                    errno.EACCES, errno.EPERM):
                message = privileged_port_hint(err.port)
            else:
                message = f"cannot listen on {self.description}: {err}"
            self._log.critical("{message}", message=message)
            failure.append(ListenError(message))

        d.addCallbacks(listening, failed)
        self._listening = d
        if failure:  # endpoints listen synchronously on a real reactor: fail start-up now
            raise failure[0]

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._net is not None and self._info is not None:
            self._net.remove_listener(self._info)
            self._info = None
        port, self._port = self._port, None
        if port is None:
            return succeed(None)
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else succeed(None)

    @property
    def port(self) -> IListeningPort | None:
        return self._port


class ListenError(Exception):
    """A listener could not be started; the message says how to fix it."""


def set_keepalive(transport: Any, minutes: int) -> None:
    """
    TCP alive check: with C{minutes} > 0 a silent dead peer is detected and
    the connection closed after about that many minutes (NPort "TCP alive
    check time"); 0 leaves keep-alive off.
    """
    if minutes <= 0:
        return
    transport = _tcp_transport(transport)
    try:
        transport.setTcpKeepAlive(True)
        sock = transport.getHandle()
        total = minutes * 60
        interval, count = 10, 3
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, total - interval * count))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # also bounds unacknowledged writes
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, total * 1000)
    except (AttributeError, OSError):
        pass  # not a real TCP socket (tests, TLS wrappers): nothing to tune


def _tcp_transport(transport: Any) -> Any:
    """The TCP transport under a TLS one (whose getHandle() is the OpenSSL connection)."""
    inner = getattr(transport, "transport", None)
    if ISSLTransport.providedBy(transport) and inner is not None:
        return inner
    return transport


def set_nodelay(transport: Any) -> None:
    transport = _tcp_transport(transport)
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass


def peer_host(transport: Any) -> str:
    try:
        return str(transport.getPeer().host)
    except AttributeError:
        return ""


@implementer(IPushProducer)
class JamProducer:
    """
    Registered with a session's transport: the transport's buffer filling
    and draining marks the session jammed or not in its channel.
    """

    def __init__(self, channel: SerialChannel, session: Any) -> None:
        self._channel = channel
        self._session = session

    def pauseProducing(self) -> None:
        self._channel.set_jammed(self._session, True)

    def resumeProducing(self) -> None:
        self._channel.set_jammed(self._session, False)

    def stopProducing(self) -> None:
        self._channel.set_jammed(self._session, False)
