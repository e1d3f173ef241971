# -*- test-case-name: tests.test_search -*-
"""
IP_PKTINFO, pure: the C{in_pktinfo} ancillary data of a UDP datagram
(which interface and address it arrived on, where it was sent) and the
broadcast test built on it.  No sockets are opened here; the DSCI responder
(L{nport_twisted.services.dsci_responder}) and the blocking C{nport-search}
tool (L{nport_twisted.tools.search}) both use it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Protocol

import attrs

__all__ = ["IN_PKTINFO", "IP_PKTINFO", "LIMITED_BROADCAST", "HasAddresses", "PacketInfo",
           "arrived_by_broadcast", "pack_pktinfo", "unpack_pktinfo"]

LIMITED_BROADCAST = "255.255.255.255"

#: Linux's IP_PKTINFO (Python < 3.12 lacks the constant).
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)
#: struct in_pktinfo: ipi_ifindex, ipi_spec_dst, ipi_addr.
IN_PKTINFO = struct.Struct("=i4s4s")


class HasAddresses(Protocol):
    """One of our interface addresses, as far as the broadcast test needs it."""

    @property
    def address(self) -> IPv4Address: ...

    @property
    def broadcast(self) -> IPv4Address | None: ...


@attrs.frozen
class PacketInfo:
    """
    Where a datagram went: the interface it arrived on, the local address
    the kernel associates with it (C{ipi_spec_dst}: the address itself for
    unicast, the interface's address for a broadcast) and the destination
    address in its IP header (C{ipi_addr}).
    """

    ifindex: int
    local: str
    destination: str


def pack_pktinfo(ifindex: int, source: str = "") -> bytes:
    """An C{in_pktinfo} for sendmsg: leave by C{ifindex} (0: routing decides) from C{source}."""
    spec = socket.inet_aton(source) if source else bytes(4)
    return IN_PKTINFO.pack(ifindex, spec, bytes(4))


def unpack_pktinfo(data: bytes) -> PacketInfo:
    """Decode the C{in_pktinfo} of a received datagram."""
    ifindex, spec_dst, addr = IN_PKTINFO.unpack(data[:IN_PKTINFO.size])
    return PacketInfo(ifindex=ifindex, local=socket.inet_ntoa(spec_dst),
                      destination=socket.inet_ntoa(addr))


def arrived_by_broadcast(info: PacketInfo, addresses: Sequence[HasAddresses]) -> bool:
    """
    Whether a datagram was sent to a broadcast address: the limited
    broadcast, the directed broadcast of one of our subnets, or (when the
    address list is incomplete) any destination that is neither the local
    address the kernel matched nor one of ours.  Multicast counts as unicast.
    """
    try:
        dst = IPv4Address(info.destination)
    except ValueError:
        return False
    if str(dst) == LIMITED_BROADCAST:
        return True
    if dst.is_multicast:
        return False
    if any(a.broadcast == dst for a in addresses):
        return True
    if any(a.address == dst for a in addresses):
        return False
    return info.destination != info.local
