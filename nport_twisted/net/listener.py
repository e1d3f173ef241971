# -*- test-case-name: tests.test_tap -*-
"""
Listening sockets: the listener service (endpoint strings, a clear error for
privileged ports) and the table of listeners and connections of the whole
box that DSCI netstat, the monitor and SNMP read.

What happens to a connection once accepted is L{nport_twisted.net.session}.
"""

from __future__ import annotations

import errno
import re
import weakref
from typing import Any, Callable

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorCore
from twisted.logger import Logger

from nport_twisted.events import ConnectionClosed, ConnectionOpened, EventPublisher


@attrs.frozen
class ListenerInfo:
    """One listening socket, for netstat (DSCI 0x14/0x1D) and the monitor."""

    proto: str  # "tcp" or "udp"
    port: int
    port_index: int | None  # serial port (0-based) it serves, None for device services
    # The listener service's name ("web-http", "dsci"), for messages; not part of its identity.
    name: str = attrs.field(default="", eq=False)


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

    def __init__(self, events: EventPublisher | None = None) -> None:
        self.listeners: list[ListenerInfo] = []
        self.connections: list[ConnectionInfo] = []
        #: Connection open/close events (syslog, the monitor's timeline).
        self.events = events
        #: The admission gates of the running front-ends (net.session.Gate),
        #: so a changed accessible IP list reaches open connections.  Weak:
        #: a stopped front-end's gate goes with it.
        self.gates: weakref.WeakSet[Any] = weakref.WeakSet()

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
        if self.events is not None:
            self.events.publish(ConnectionOpened(
                None if port_index is None else port_index + 1, info.remote_host,
                info.remote_port, info.local_port, self._service_of(info)))
        return info

    def remove_connection(self, info: ConnectionInfo | None) -> None:
        if info is not None and info in self.connections:
            self.connections.remove(info)
            if self.events is not None:
                self.events.publish(ConnectionClosed(
                    None if info.port_index is None else info.port_index + 1, info.remote_host,
                    info.remote_port, info.local_port, self._service_of(info)))

    def _service_of(self, info: ConnectionInfo) -> str:
        """The name of the listener that accepted C{info} ("" for outgoing connections)."""
        for listener in self.listeners:
            if listener.proto == "tcp" and listener.port == info.local_port:
                return listener.name
        return ""


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


def privileged_port_hint(port: int) -> str:
    return (f"cannot listen on port {port}: permission denied. Ports below 1024 need "
            f"CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE; docker/"
            f"podman: --cap-add NET_BIND_SERVICE, or --sysctl "
            f"net.ipv4.ip_unprivileged_port_start=0 with its own network), or root; or shift "
            f"every port with --port-offset N (e.g. --port-offset 10000)")


def local_port_range(path: str = "/proc/sys/net/ipv4/ip_local_port_range") -> tuple[int, int] | None:
    """The host's ephemeral port range (outgoing connections' local ports), if it can be read."""
    try:
        with open(path) as f:
            low, high = (int(n) for n in f.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def listen_failure(proto: str, port: int, interface: str, error: BaseException,
                   what: str = "", ephemeral: tuple[int, int] | None | bool = True) -> str:
    """
    One line for a port the OS refused: which port (and what it is for),
    why, and how to fix it.  C{error} is the socket error (or Twisted's
    CannotListenError around one).  C{ephemeral}: the host's ephemeral
    port range (C{True}: read it, L{local_port_range}).
    """
    socket_error = getattr(error, "socketError", error)
    code = getattr(socket_error, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        text = privileged_port_hint(port)
        return f"{text} ({what})" if what else text
    where = f"{proto.upper()} {port}" + (f" on {interface}" if interface else "")
    purpose = f" ({what})" if what else ""
    reason = getattr(socket_error, "strerror", None) or str(socket_error)
    if code == errno.EADDRINUSE:
        fix = (f"another program (or another nport-twisted) holds it: find it with "
               f"`ss -lnp 'sport = :{port}'`, stop it, give this port another number in the "
               f"settings, or shift every port with --port-offset N")
        span = local_port_range() if ephemeral is True else ephemeral or None
        if proto == "tcp" and span and span[0] <= port <= span[1]:
            # A connection this host opened may have the port as its local end (also in
            # TIME-WAIT after it closed): `ss -l` does not show it, and it goes away by itself.
            fix += (f"; {port} is in this host's ephemeral range {span[0]}-{span[1]} "
                    f"(net.ipv4.ip_local_port_range), so an outgoing connection may be using it "
                    f"(`ss -tan 'sport = :{port}'`): prefer ports below {span[0]}")
        return f"cannot listen on {where}{purpose}: {reason}; {fix}"
    if code == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {where}{purpose}: {reason}: {interface or 'the address'} is "
                f"not an address of this host (`ip -brief address` lists them); fix --interface, "
                f"or start after the network is up (systemd: After=network-online.target)")
    return f"cannot listen on {where}{purpose}: {reason}"


class ListenerService(service.Service):
    """
    Listens on one endpoint while running.  A privileged port without
    permission fails start-up with an error that names the fixes.

    With C{tls} (a callable returning the server TLS settings, see
    L{nport_twisted.config.tls.server_tls}) the C{tcp:} endpoint serves TLS;
    it is called at start, so a bad certificate or CA file fails the start
    like a refused port, with one line naming the file.
    """

    _log = Logger()

    def __init__(self, reactor: IReactorCore, description: str, factory: IProtocolFactory,
                 net: NetTable | None = None, port_index: int | None = None,
                 tls: Callable[[], Any] | None = None) -> None:
        self._reactor = reactor
        self.tls = tls
        self.description = description
        self.factory = factory
        self._net = net
        self._port_index = port_index
        self._info: ListenerInfo | None = None
        self._port: IListeningPort | None = None
        self._listening: Deferred[Any] | None = None

    def startService(self) -> None:
        super().startService()
        endpoint = self._endpoint()
        d = endpoint.listen(self.factory)
        failure: list[Any] = []

        def listening(port: IListeningPort) -> IListeningPort:
            self._port = port
            if self._net is not None:
                host = port.getHost()
                proto = str(getattr(host, "type", "TCP")).lower()
                self._info = ListenerInfo(proto, int(getattr(host, "port", 0)), self._port_index,
                                          self.name or "")
                self._net.add_listener(self._info)
            return port

        def failed(f: Any) -> None:
            err = f.value
            proto, port, interface = self._where()
            if isinstance(err, CannotListenError):
                what = self.name or (f"serial port {self._port_index + 1}"
                                     if self._port_index is not None else "")
                message = listen_failure(proto, err.port or port, interface, err, what)
            else:
                message = f"cannot listen on {self.description}: {err}"
            self._log.critical("{message}", message=message)
            failure.append(ListenError(message, port=getattr(err, "port", None)))

        d.addCallbacks(listening, failed)
        self._listening = d
        if failure:  # endpoints listen synchronously on a real reactor: fail start-up now
            raise failure[0]

    def _where(self) -> tuple[str, int, str]:
        """(protocol, port, interface) of the endpoint, for messages."""
        try:
            kind, port, interface = split_endpoint(self.description)
        except ValueError:
            return self.description, 0, ""
        return ("tcp" if kind in ("tcp", "ssl", "tcp6") else kind), port, interface

    def _endpoint(self) -> Any:
        if self.tls is None:
            return serverFromString(self._reactor, self.description)
        from twisted.internet.endpoints import SSL4ServerEndpoint

        try:
            options = self.tls()
        except (ValueError, OSError) as e:
            message = f"cannot listen on {self.description} with TLS: {e}"
            self._log.critical("{message}", message=message)
            raise ListenError(message) from None
        _, port, interface = split_endpoint(self.description)
        return SSL4ServerEndpoint(self._reactor, port, options, interface=interface)

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
    """
    A listener could not be started; the message says how to fix it.

    @ivar port: the port number that was refused, when known.
    """

    def __init__(self, message: str, port: int | None = None) -> None:
        super().__init__(message)
        self.port = port
