# -*- test-case-name: tests.test_search -*-
"""
C{nport-search}: a Device Search Utility for Linux.

Finds MOXA NPorts (real ones and nport-twisted) with the UDP 4800 DSCI
search, asks each one found for its firmware (0x16), server name (0x10) and
network settings (0x26), and prints a table or JSON::

    nport-search                      # broadcast on every IPv4 interface
    nport-search --interface eth1     # broadcast on one interface
    nport-search --host 192.168.127.254
    nport-search --host 127.0.0.1 --port 14800 --json

Exit status: 0 when at least one device answered, 1 when none did, 2 for a
usage error.

The broadcast search goes to 255.255.255.255 out of each interface (as
MOXA's utility does), which also reaches a device whose address is in
another subnet; follow-up requests are unicast to the address the answer
came from.  Plain sockets: the tool is a short-lived blocking loop, and
tests drive it in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address
from typing import Any, TextIO

import attrs

from nport_twisted.wire import dsci
from nport_twisted.wire.pktinfo import IP_PKTINFO, LIMITED_BROADCAST, pack_pktinfo, unpack_pktinfo
from nport_twisted.config.identity import InterfaceAddress, ipv4_addresses
from nport_twisted.config.models import MODELS
from nport_twisted.config.settings import format_mac

__all__ = ["Device", "Searcher", "Target", "broadcast_targets", "format_table", "main", "model_name"]

_MODELS_BY_ID = {(m.ap_id, m.hw_id): m.name for m in MODELS.values() if m.discoverable}

#: Follow-up requests sent to every device found, and the replies' opcodes.
_FOLLOW_UPS = (dsci.OP_KERNEL_INFO, dsci.OP_NAME, dsci.OP_NETWORK_CONFIG)


def model_name(ap_id: int, hw_id: int) -> str:
    """The model of a device ID pair, or the hex IDs when the pair is not in our table."""
    return _MODELS_BY_ID.get((ap_id, hw_id), f"AP 0x{ap_id:08X} HW 0x{hw_id:04X}")


@attrs.define
class Device:
    """What one device told us."""

    device_id: dsci.DeviceId
    ip: str  # the address in its 0x81 reply
    source: tuple[str, int]  # where its replies come from
    reply_destination: str | None = None  # destination address of its 0x81 (IP_PKTINFO)
    name: str | None = None
    firmware: str | None = None
    serial_number: int | None = None
    port_count: int | None = None
    netmask: str | None = None
    gateway: str | None = None
    pending: set[int] = attrs.field(factory=lambda: set(_FOLLOW_UPS))
    sends: int = 0
    last_send: float = 0.0

    @property
    def model(self) -> str:
        return model_name(self.device_id.ap_id, self.device_id.hw_id)

    @property
    def mac(self) -> str:
        return format_mac(self.device_id.mac)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ap_id": f"0x{self.device_id.ap_id:08X}",
            "hw_id": f"0x{self.device_id.hw_id:04X}",
            "mac": self.mac,
            "ip": self.ip,
            "netmask": self.netmask,
            "gateway": self.gateway,
            "name": self.name,
            "firmware": self.firmware,
            "serial_number": self.serial_number,
            "port_count": self.port_count,
            "source": f"{self.source[0]}:{self.source[1]}",
            "reply_destination": self.reply_destination,
            "broadcast_reply": self.reply_destination == LIMITED_BROADCAST,
        }


@attrs.frozen
class Target:
    """Where the search goes: an address, and the interface for a broadcast."""

    host: str
    port: int
    ifindex: int = 0
    source: str = ""


def broadcast_targets(port: int, addresses: Sequence[InterfaceAddress],
                      interface: str | None = None) -> list[Target]:
    """
    One limited broadcast per interface with an IPv4 address (loopback
    excluded), sent from that interface's first address; a plain
    255.255.255.255 when the interfaces are unknown.
    """
    targets: list[Target] = []
    seen: set[int] = set()
    for a in addresses:
        if a.address.is_loopback or a.index in seen:
            continue
        if interface is not None and a.ifname != interface and a.name != interface:
            continue
        seen.add(a.index)
        targets.append(Target(LIMITED_BROADCAST, port, a.index, str(a.address)))
    if not targets and interface is None:
        targets.append(Target(LIMITED_BROADCAST, port))
    return targets


class Searcher:
    """
    The search loop on one UDP socket.  C{clock} and C{wait} (a select-like
    callable) are injectable.
    """

    retry_interval = 0.5
    max_sends = 3

    def __init__(self, sock: socket.socket, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[..., Any] = select.select) -> None:
        self.sock = sock
        self.clock = clock
        self.wait = wait
        self.devices: dict[bytes, Device] = {}
        self._txid = 0

    def _send(self, data: bytes, target: Target) -> None:
        anc = ([(socket.IPPROTO_IP, IP_PKTINFO, pack_pktinfo(target.ifindex, target.source))]
               if target.ifindex else [])
        try:
            self.sock.sendmsg([data], anc, 0, (target.host, target.port))
        except OSError as e:
            print(f"nport-search: cannot send to {target.host}:{target.port}: {e.strerror or e}",
                  file=sys.stderr)

    def _follow_up(self, device: Device, now: float) -> None:
        device.sends += 1
        device.last_send = now
        target = Target(device.source[0], device.source[1])
        for op in sorted(device.pending):
            self._txid = (self._txid + 1) & 0xFFFFFFFF
            if op == dsci.OP_NETWORK_CONFIG:
                data = dsci.encode_network_config_request(self._txid, device.device_id)
            else:
                data = dsci.encode_request(op, self._txid, device.device_id)
            self._send(data, target)

    def _receive(self) -> tuple[bytes, tuple[str, int], str | None] | None:
        try:
            data, ancdata, _flags, addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except (BlockingIOError, InterruptedError, ConnectionRefusedError):
            return None
        destination = None
        for level, kind, cdata in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                destination = unpack_pktinfo(cdata).destination
        return data, (addr[0], addr[1]), destination

    def handle(self, data: bytes, source: tuple[str, int], destination: str | None, now: float) -> None:
        """Process one received datagram."""
        try:
            reply = dsci.parse_reply(data)
        except dsci.DsciStatusError as e:
            for device in self.devices.values():
                if device.source[0] == source[0]:
                    device.pending.discard(e.opcode & ~dsci.REPLY_BIT)
            return
        except dsci.DsciError:
            return
        key = reply.device_id.to_bytes()
        op = reply.request_opcode
        try:
            if op == dsci.OP_SEARCH:
                found = dsci.decode_search_reply(reply)
                if key not in self.devices:
                    device = Device(found.device_id, str(IPv4Address(found.ipv4)), source, destination)
                    self.devices[key] = device
                    self._follow_up(device, now)
                return
            known = self.devices.get(key)
            if known is None or known.source[0] != source[0]:
                return
            device = known
            if op == dsci.OP_KERNEL_INFO:
                info = dsci.decode_kernel_info_reply(reply)
                device.firmware, device.serial_number = info.firmware, info.serial_number
                device.port_count = info.port_count
            elif op == dsci.OP_NAME:
                device.name = dsci.decode_name_reply(reply)
            elif op == dsci.OP_NETWORK_CONFIG:
                net = dsci.decode_network_config_reply(reply)
                device.netmask = str(IPv4Address(net.netmask))
                device.gateway = str(IPv4Address(net.gateway))
            else:
                return
            device.pending.discard(op)
        except dsci.DsciError:
            return

    def run(self, targets: Sequence[Target], timeout: float, stop_early: bool = False) -> list[Device]:
        """
        Send the search to C{targets} and collect answers for C{timeout}
        seconds (with C{stop_early}, as soon as every device found has
        answered its follow-ups).
        """
        start = self.clock()
        deadline = start + timeout
        search = dsci.encode_search_request(0)
        searches, last_search = 0, start
        while True:
            now = self.clock()
            if now >= deadline:
                break
            if stop_early and self.devices and all(
                    not d.pending or (d.sends >= self.max_sends
                                      and now - d.last_send >= self.retry_interval)
                    for d in self.devices.values()):
                break
            if searches == 0 or (searches < self.max_sends and not self.devices
                                 and now - last_search >= 2 * self.retry_interval):
                # Repeated while nobody answered, in case a datagram was lost.
                searches, last_search = searches + 1, now
                for target in targets:
                    self._send(search, target)
            for device in self.devices.values():
                if (device.pending and device.sends < self.max_sends
                        and now - device.last_send >= self.retry_interval):
                    self._follow_up(device, now)
            remaining = min(deadline - now, self.retry_interval)
            readable, _, _ = self.wait([self.sock], [], [], max(remaining, 0.0))
            if not readable:
                continue
            got = self._receive()
            if got is not None:
                self.handle(got[0], got[1], got[2], self.clock())
        return sorted(self.devices.values(), key=lambda d: (IPv4Address(d.ip), d.mac))


def format_table(devices: Sequence[Device]) -> str:
    """The devices as an aligned text table."""
    headers = ("Model", "Name", "MAC", "IP", "Netmask", "Firmware")
    rows = [(d.model, d.name or "?", d.mac, d.ip, d.netmask or "?", d.firmware or "?")
            for d in devices]
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
             for row in [headers, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nport-search",
        description="Find MOXA NPort serial device servers (and nport-twisted) on the network "
                    "with MOXA's UDP 4800 search, like MOXA's Device Search Utility.")
    p.add_argument("--host", help="ask this address only (unicast) instead of broadcasting")
    p.add_argument("--port", type=int, default=dsci.DSCI_PORT,
                   help="device UDP port (default 4800; nport-twisted: 4800 + --port-offset)")
    p.add_argument("--timeout", type=float, default=3.0,
                   help="seconds to wait for answers (default 3)")
    p.add_argument("--interface", help="broadcast on this interface only (e.g. eth0)")
    p.add_argument("--bind", default="0.0.0.0", help="local address to send from (default any)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    from nport_twisted import __version__
    p.add_argument("--version", action="version", version=f"nport-search (nport-twisted) {__version__}")
    return p


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run C{nport-search}; returns the exit status."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    parser = _parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed
        return int(e.code or 0)
    if not 0 < args.port < 65536 or args.timeout <= 0:
        print("nport-search: --port must be 1-65535 and --timeout positive", file=err)
        return 2
    if args.host:
        try:
            host = socket.gethostbyname(args.host)
        except OSError as e:
            print(f"nport-search: cannot resolve {args.host}: {e}", file=err)
            return 2
        targets = [Target(host, args.port)]
        where = f"{host}:{args.port}"
    else:
        targets = broadcast_targets(args.port, ipv4_addresses(), args.interface)
        if not targets:
            print(f"nport-search: interface {args.interface} has no IPv4 address", file=err)
            return 2
        where = f"broadcast UDP {args.port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        try:
            sock.bind((args.bind, 0))
        except OSError as e:
            print(f"nport-search: cannot bind to {args.bind}: {e.strerror or e}", file=err)
            return 2
        sock.setblocking(False)
        devices = Searcher(sock).run(targets, args.timeout, stop_early=bool(args.host))
    if not devices:
        print(f"nport-search: no NPort answered ({where}, {args.timeout:g} s). Check the address, "
              "that UDP 4800 is not filtered, and for nport-twisted the --port-offset.", file=err)
        return 1
    if args.json:
        print(json.dumps([d.to_json() for d in devices], indent=2), file=out)
    else:
        print(format_table(devices), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
