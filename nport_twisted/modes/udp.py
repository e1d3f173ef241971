# -*- test-case-name: tests.test_udpmode -*-
"""
UDP mode (settings.md §5.5): serial data as UDP datagrams, both ways.

One UDP socket per serial port, bound to the local listen port
(C{udp_local_port}, 0 = 4001+n-1, shifted by --port-offset like every local
port).  Serial data goes out of that socket to every address of up to four
destination ranges; datagrams arriving on it go to the serial device
(docs/modes/udp.md).
"""

# Wire (kept in sync with docs/modes/udp.md):
#
#   serial -> network: each packed frame (one serial_data() call; packing,
#     settings.md §5.4, decides the boundaries) is sent as one datagram to
#     every destination, in range order, from the local listen port.  A frame
#     longer than MAX_DATAGRAM (1472 bytes: an Ethernet MTU minus IPv4 and UDP
#     headers) is sent as consecutive datagrams of at most that size, each to
#     every destination before the next.  The destination port is the remote
#     host's port and is never shifted by --port-offset.
#   destinations: ranges {begin, end, port}; inside a range of two or more
#     addresses the .0 and .255 addresses (network/broadcast of a /24) are
#     skipped; a single address (begin == end) is used as given, and a
#     single x.x.x.255 or 255.255.255.255 turns SO_BROADCAST on.  Duplicate
#     (address, port) pairs are sent to once.  At most MAX_DESTINATIONS (256)
#     addresses per serial port: the rest are ignored and logged at start.
#   network -> serial: the payload of every datagram from a source the
#     accessible IP list allows is written to the serial device, unchanged,
#     in arrival order; datagrams of up to 65535 bytes are read whole.
#     Refused sources and datagrams arriving while the device is absent are
#     dropped and counted.  Empty datagrams are counted and ignored.
#   errors: UDP has no backpressure; a datagram the kernel refuses (EAGAIN,
#     ENOBUFS, unreachable, ...) is dropped and counted; the first error of
#     each kind is logged.  Nothing reaches the serial side.

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any

import attrs
from twisted.application import service
from twisted.internet.address import IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from nport_twisted.device.channel import IChannelSession, LineEvents, ModemLines
from nport_twisted.net.listener import ListenerInfo, ListenError, listen_failure
from nport_twisted.net.session import PortContext
from nport_twisted.config.settings import UdpDestination

__all__ = [
    "MAX_DATAGRAM",
    "MAX_DESTINATIONS",
    "Destinations",
    "UdpModeProtocol",
    "UdpModeService",
    "UdpStats",
    "expand_destinations",
    "udp_frontend",
    "udp_local_port",
]

#: Destination addresses per serial port at most: a mis-typed range (a /16
#: is 65536 sends per frame) must not turn the box into a flood source.
MAX_DESTINATIONS = 256

#: Largest datagram sent: 1500 (Ethernet MTU) - 20 (IPv4) - 8 (UDP) bytes,
#: so that no datagram is fragmented on a plain Ethernet path.
MAX_DATAGRAM = 1472

#: Largest datagram read whole (Twisted's default, 8192, truncates silently).
RECEIVE_SIZE = 65535

#: How many refused source addresses are remembered so each is logged once.
_LOGGED_SOURCES = 64


def udp_local_port(index: int) -> int:
    """Default UDP mode local listen port of port C{index} (0-based): 4001+n-1."""
    return 4001 + index


@attrs.frozen
class Destinations:
    """The expanded destination list of one serial port."""

    addresses: tuple[tuple[str, int], ...] = ()
    skipped: int = 0  # .0/.255 addresses left out of multi-address ranges
    ignored: int = 0  # addresses beyond MAX_DESTINATIONS
    reversed_ranges: int = 0  # ranges whose end was below their begin (swapped)

    @property
    def needs_broadcast(self) -> bool:
        """Whether an explicitly configured broadcast address is among them."""
        return any(host.endswith(".255") for host, _ in self.addresses)


def expand_destinations(ranges: Sequence[UdpDestination],
                        limit: int = MAX_DESTINATIONS) -> Destinations:
    """
    Every (address, port) the frames of a port go to, in range order,
    without duplicates, at most C{limit}.  Work is bounded by C{limit}, not
    by the size of the ranges (0.0.0.0-255.255.255.255 is fine).
    """
    seen: set[tuple[str, int]] = set()
    out: list[tuple[str, int]] = []
    skipped = ignored = reversed_ranges = 0
    for r in ranges:
        first, last = int(IPv4Address(r.begin)), int(IPv4Address(r.end or r.begin))
        if last < first:
            first, last = last, first
            reversed_ranges += 1
        single = first == last
        n = first
        while n <= last:
            if len(out) >= limit:
                ignored += last - n + 1
                break
            if not single and (n & 0xFF) in (0, 255):
                skipped += 1
            else:
                dest = (str(IPv4Address(n)), r.port)
                if dest not in seen:
                    seen.add(dest)
                    out.append(dest)
            n += 1
    return Destinations(tuple(out), skipped, ignored, reversed_ranges)


@attrs.define
class UdpStats:
    """Datagram counters of one UDP mode port (bytes are in the channel's stats)."""

    datagrams_sent: int = 0
    send_errors: int = 0  # datagrams the kernel refused: dropped
    datagrams_received: int = 0  # accepted from an allowed source
    acl_dropped: int = 0  # from a source the accessible IP list refuses
    device_dropped: int = 0  # accepted while the serial device was absent


def _error_kind(error: Exception) -> str:
    code = getattr(error, "errno", None)
    if isinstance(code, int):
        return errno.errorcode.get(code, str(code))
    return type(error).__name__


@implementer(IChannelSession)
class UdpModeProtocol(DatagramProtocol):
    """The UDP socket of one port, attached to its channel as its only session."""

    transport: Any  # IUDPTransport (+ pauseProducing/resumeProducing on Twisted's port)

    _log = Logger()

    def __init__(self, ctx: PortContext, destinations: Destinations) -> None:
        self.ctx = ctx
        self.destinations = destinations
        self.stats = UdpStats()
        self._attached = False
        self._map_v4 = False  # an IPv6 (dual-stack) socket sends to ::ffff:a.b.c.d
        self._send_errors_logged: set[str] = set()
        self._refused_logged: set[str] = set()

    def __repr__(self) -> str:
        return f"<UDP mode {self.ctx.channel.name}>"

    def startProtocol(self) -> None:
        self._map_v4 = isinstance(self.transport.getHost(), IPv6Address)
        if self.destinations.needs_broadcast:
            try:
                self.transport.setBroadcastAllowed(True)
            except (AttributeError, OSError) as e:
                self._log.warn("{channel}: cannot allow broadcast destinations ({error})",
                               channel=self.ctx.channel.name, error=e)
        self._attached = True
        self.ctx.channel.attach(self)

    def stopProtocol(self) -> None:
        self.detach()

    def detach(self) -> None:
        """Stop receiving serial data (idempotent)."""
        if self._attached:
            self._attached = False
            self.ctx.channel.detach(self)

    # -- network -> serial -----------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            self._received(datagram, str(addr[0]))
        except Exception:  # noqa: BLE001 - logged with the traceback; the socket stays up
            self._log.failure("{channel}: error handling a datagram from {peer}",
                              channel=self.ctx.channel.name, peer=addr)

    def _received(self, datagram: bytes, host: str) -> None:
        if not self.ctx.accessible().allows(host):
            self.stats.acl_dropped += 1
            if host not in self._refused_logged and len(self._refused_logged) < _LOGGED_SOURCES:
                self._refused_logged.add(host)
                self._log.warn("{channel}: dropping datagrams from {peer}: not in the accessible "
                               "IP list (logged once per source)",
                               channel=self.ctx.channel.name, peer=host)
            return
        self.stats.datagrams_received += 1
        if datagram and not self.ctx.channel.write(datagram):
            self.stats.device_dropped += 1  # the channel counts the bytes (serial_tx_dropped)

    # -- serial -> network (IChannelSession) -------------------------------------------

    def serial_data(self, data: bytes) -> None:
        targets = self.destinations.addresses
        if not targets:
            self.ctx.channel.stats.serial_rx_dropped += len(data)
            return
        for start in range(0, len(data), MAX_DATAGRAM):
            datagram = data[start:start + MAX_DATAGRAM]
            for host, port in targets:
                self._send(datagram, host, port)

    def _send(self, datagram: bytes, host: str, port: int) -> None:
        target = "::ffff:" + host if self._map_v4 else host
        try:
            self.transport.write(datagram, (target, port))
        except Exception as e:  # noqa: BLE001 - OSError, MessageLengthError, InvalidAddressError: drops
            self.stats.send_errors += 1
            kind = _error_kind(e)
            if kind not in self._send_errors_logged:
                self._send_errors_logged.add(kind)
                self._log.warn("{channel}: cannot send to {host}:{port} ({error}); dropping such "
                               "datagrams (counted, logged once per kind of error)",
                               channel=self.ctx.channel.name, host=host, port=port, error=e)
            return
        self.stats.datagrams_sent += 1

    def modem_lines_changed(self, old: ModemLines, new: ModemLines) -> None:
        pass  # UDP mode has no way to tell

    def line_errors(self, events: LineEvents) -> None:
        pass

    def device_state_changed(self, available: bool) -> None:
        pass  # the socket stays; datagrams for an absent device are dropped and counted

    def pause_input(self) -> None:
        # The device is not keeping up: stop reading; the kernel's socket
        # buffer holds what it can and drops the rest (no memory grows here).
        pause = getattr(self.transport, "pauseProducing", None)
        if callable(pause):
            pause()

    def resume_input(self) -> None:
        resume = getattr(self.transport, "resumeProducing", None)
        if callable(resume):
            resume()

    def abort(self) -> None:
        # A UDP socket has no connection to drop: detached, it only stops
        # hearing the device; the service closes the socket with the mode.
        self.detach()


Listen = Callable[[int, DatagramProtocol, str], Any]


class UdpModeService(service.Service):
    """
    UDP mode for one port while running: binds the local listen port and
    attaches L{UdpModeProtocol} to the channel.  A port that cannot be bound
    fails start-up with L{ListenError}, naming the fix for privileged ports.

    @param listen: C{(port, protocol, interface) -> listening port}; default
        the reactor's C{listenUDP} (reading datagrams of up to 65535 bytes).
    """

    _log = Logger()

    def __init__(self, ctx: PortContext, listen: Listen | None = None) -> None:
        self.ctx = ctx
        self._listen: Listen = listen if listen is not None else self._listen_udp
        self.protocol: UdpModeProtocol | None = None
        self.port: Any = None
        self._info: ListenerInfo | None = None

    def _listen_udp(self, port: int, protocol: DatagramProtocol, interface: str) -> Any:
        return self.ctx.reactor.listenUDP(port, protocol, interface=interface,
                                          maxPacketSize=RECEIVE_SIZE)

    def startService(self) -> None:
        super().startService()
        ctx = self.ctx
        name = ctx.channel.name
        local = ctx.operating.udp_local_port or udp_local_port(ctx.index)
        try:
            port, interface = ctx.local_address("udp", local)
        except ValueError as e:
            self._log.critical("{channel}: {error}", channel=name, error=e)
            raise ListenError(str(e)) from None
        destinations = expand_destinations(ctx.operating.udp_destinations)
        protocol = UdpModeProtocol(ctx, destinations)
        try:
            self.port = self._listen(port, protocol, interface)
        except (CannotListenError, InvalidAddressError, OSError) as e:
            message = listen_failure("udp", port, interface, e, f"serial port {ctx.number}")
            self._log.critical("{channel}: {message}", channel=name, message=message)
            raise ListenError(message, port=port) from None
        self.protocol = protocol
        bound = getattr(self.port.getHost(), "port", port)
        self._info = ListenerInfo("udp", int(bound), ctx.index)
        ctx.net.add_listener(self._info)
        self._log_start(interface, int(bound), destinations)

    def _log_start(self, interface: str, port: int, destinations: Destinations) -> None:
        name = self.ctx.channel.name
        shown = ", ".join(f"{h}:{p}" for h, p in destinations.addresses[:4])
        more = len(destinations.addresses) - 4
        self._log.info("{channel}: UDP mode on {interface}:{port}, sending to {count} "
                       "address(es){colon}{shown}{more}", channel=name,
                       interface=interface or "*", port=port,
                       count=len(destinations.addresses),
                       colon=": " if shown else "", shown=shown,
                       more=f" and {more} more" if more > 0 else "")
        if destinations.ignored:
            self._log.warn("{channel}: UDP destinations capped at {limit} addresses; "
                           "{ignored} more in the configured ranges are ignored",
                           channel=name, limit=MAX_DESTINATIONS, ignored=destinations.ignored)
        if destinations.skipped:
            self._log.info("{channel}: skipped {skipped} .0/.255 address(es) inside destination "
                           "ranges (configure one as a single address to send to it)",
                           channel=name, skipped=destinations.skipped)
        if destinations.reversed_ranges:
            self._log.warn("{channel}: {count} UDP destination range(s) end below their begin; "
                           "used as if swapped", channel=name,
                           count=destinations.reversed_ranges)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._info is not None:
            self.ctx.net.remove_listener(self._info)
            self._info = None
        if self.protocol is not None:
            self.protocol.detach()
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        d = port.stopListening()
        return d if isinstance(d, Deferred) else succeed(None)


def udp_frontend(ctx: PortContext) -> UdpModeService:
    """The service of UDP mode for one port."""
    return UdpModeService(ctx)
