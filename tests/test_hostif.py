# -*- test-case-name: tests.test_hostif -*-
"""Tests for L{nport_twisted.services.hostif}: /proc/net/dev parsing and the sysfs reader."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.services.hostif import IfCounters, parse_proc_net_dev, read_interfaces

PROC = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000000  4000    1    2    0     0          0        30   700000    900    3    4    0     0       0          0
 broken: 1 2 3
"""

SYS = {
    "/sys/class/net/lo/ifindex": "1", "/sys/class/net/lo/flags": "0x9",
    "/sys/class/net/lo/operstate": "unknown", "/sys/class/net/lo/carrier": "1", "/sys/class/net/lo/type": "772",
    "/sys/class/net/lo/mtu": "65536", "/sys/class/net/lo/address": "00:00:00:00:00:00",
    "/sys/class/net/eth0/ifindex": "2", "/sys/class/net/eth0/flags": "0x1003",
    "/sys/class/net/eth0/operstate": "down", "/sys/class/net/eth0/type": "1",
    "/sys/class/net/eth0/mtu": "1500", "/sys/class/net/eth0/address": "00:90:e8:01:02:03",
    "/sys/class/net/eth0/speed": "100",
}


class ParseTests(SynchronousTestCase):
    def test_proc_net_dev(self) -> None:
        """Counters per interface; header and malformed lines are skipped."""
        parsed = parse_proc_net_dev(PROC)
        self.assertEqual(sorted(parsed), ["eth0", "lo"])
        self.assertEqual(parsed["eth0"], IfCounters(
            rx_bytes=5000000, rx_packets=4000, rx_errors=1, rx_dropped=2, rx_multicast=30,
            tx_bytes=700000, tx_packets=900, tx_errors=3, tx_dropped=4))

    def test_read_interfaces(self) -> None:
        """Index, flags, carrier, MAC and speed from sysfs; loopback recognised; sorted by index."""
        files = dict(SYS, **{"/proc/net/dev": PROC})
        ifaces = read_interfaces(read=files.get)
        self.assertEqual([i.name for i in ifaces], ["lo", "eth0"])
        lo, eth0 = ifaces
        self.assertTrue(lo.loopback and lo.oper_up and lo.mac == b"")
        self.assertTrue(eth0.admin_up)
        self.assertFalse(eth0.oper_up)  # admin up, no carrier
        self.assertEqual((eth0.mac.hex(), eth0.speed_mbps, eth0.mtu), ("0090e8010203", 100, 1500))

    def test_this_host(self) -> None:
        """On this machine at least loopback is found (Linux /proc and /sys)."""
        self.assertIn("lo", [i.name for i in read_interfaces()])
