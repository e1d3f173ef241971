# -*- test-case-name: tests.test_hostif -*-
"""
The host's network interfaces as MIB-II's interfaces group and the link
and address watcher need them: counters from C{/proc/net/dev}, the rest
from C{/sys/class/net/<name>/}.  The parser is pure; L{read_interfaces}
reads the files (small, in-memory kernel files: no blocking worth a thread).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

__all__ = ["HostInterface", "IfCounters", "parse_proc_net_dev", "read_interfaces"]

PROC_NET_DEV = "/proc/net/dev"
SYS_CLASS_NET = "/sys/class/net"


@attrs.frozen
class IfCounters:
    """One line of /proc/net/dev."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errors: int = 0
    rx_dropped: int = 0
    rx_multicast: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errors: int = 0
    tx_dropped: int = 0


def parse_proc_net_dev(text: str) -> dict[str, IfCounters]:
    """Counters by interface name; malformed lines are skipped."""
    out: dict[str, IfCounters] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) < 16 or not all(f.isdigit() for f in fields[:16]):
            continue
        n = [int(f) for f in fields[:16]]
        out[name.strip()] = IfCounters(
            rx_bytes=n[0], rx_packets=n[1], rx_errors=n[2], rx_dropped=n[3], rx_multicast=n[7],
            tx_bytes=n[8], tx_packets=n[9], tx_errors=n[10], tx_dropped=n[11])
    return out


@attrs.frozen
class HostInterface:
    """What MIB-II says about one interface."""

    index: int  # the kernel's ifindex (stable while the interface exists)
    name: str
    mtu: int
    speed_mbps: int  # 0 = unknown
    mac: bytes
    admin_up: bool
    oper_up: bool
    loopback: bool
    counters: IfCounters


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None  # a vanishing interface, or sysfs refusing (speed on a down link: EINVAL)


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text, 0) if text is not None else default
    except ValueError:
        return default


def read_interfaces(proc_net_dev: str = PROC_NET_DEV, sys_class_net: str = SYS_CLASS_NET,
                    read: Callable[[str], str | None] = _read) -> list[HostInterface]:
    """Every interface of this network namespace, by ifindex; [] when /proc is unreadable."""
    counters = parse_proc_net_dev(read(proc_net_dev) or "")
    out: list[HostInterface] = []
    for name, c in counters.items():
        base = os.path.join(sys_class_net, name)
        index = _int(read(os.path.join(base, "ifindex")))
        if index <= 0:
            continue
        flags = _int(read(os.path.join(base, "flags")))
        oper = read(os.path.join(base, "operstate")) or "unknown"
        mac_text = read(os.path.join(base, "address")) or ""
        try:
            mac = bytes.fromhex(mac_text.replace(":", "")) if mac_text else b""
        except ValueError:
            mac = b""
        iftype = _int(read(os.path.join(base, "type")), 1)
        loopback = iftype == 772 or bool(flags & 0x8)
        speed = max(0, _int(read(os.path.join(base, "speed"))))
        admin_up = bool(flags & 0x1)
        # "unknown" is what loopback and virtual interfaces without carrier
        # detection report while up; their carrier file then says 1.
        carrier = read(os.path.join(base, "carrier")) if oper == "unknown" else None
        oper_up = admin_up and (oper == "up" or carrier == "1")
        out.append(HostInterface(index=index, name=name, mtu=_int(read(os.path.join(base, "mtu"))),
                                 speed_mbps=speed, mac=mac if any(mac) else b"",
                                 admin_up=admin_up, oper_up=oper_up, loopback=loopback,
                                 counters=c))
    out.sort(key=lambda i: i.index)
    return out
