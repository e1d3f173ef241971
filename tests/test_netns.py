# -*- test-case-name: tests.test_netns -*-
"""
Broadcast discovery between two network namespaces this test creates and
deletes: the service runs in one, C{nport-search} broadcasts in the other,
joined by a veth pair (10.77.0.1/24 and 10.77.0.2/24).  No broadcast ever
leaves those namespaces.  Needs root and C{ip netns}; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SkipTest, TestCase

from tests.test_search import Twistd, child_env, open_pty

DEVICE_IP = "10.77.0.1"
SEARCHER_IP = "10.77.0.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _netns_available() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"nptprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        return f"ip netns does not work here: {e}"
    _ip("netns", "del", probe)
    return None


class BroadcastSearchTests(TestCase):
    def setUp(self) -> None:
        reason = _netns_available()
        if reason is not None:
            raise SkipTest(reason)
        pid = os.getpid()
        self.device_ns, self.search_ns = f"nptdev{pid}", f"nptsrch{pid}"
        veth_a, veth_b = f"nptA{pid}"[:15], f"nptB{pid}"[:15]
        for ns in (self.device_ns, self.search_ns):
            _ip("netns", "add", ns)
            self.addCleanup(_ip, "netns", "del", ns)
        _ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _ip("link", "set", veth_a, "netns", self.device_ns)
        _ip("link", "set", veth_b, "netns", self.search_ns)
        for ns, dev, ip in ((self.device_ns, veth_a, DEVICE_IP), (self.search_ns, veth_b, SEARCHER_IP)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # The device namespace is our own, so the real ports (UDP 4800, TCP 950/966/4900) are free.
        self.server = Twistd(self, ["--ports", open_pty(self)],
                             prefix=["ip", "netns", "exec", self.device_ns])
        self.server.wait_for("DSCI responder listening")

    def _search(self, *args: str) -> list[dict[str, object]]:
        result = subprocess.run(
            ["ip", "netns", "exec", self.search_ns, sys.executable, "-m", "nport_twisted.tools.search",
             "--json", *args],
            capture_output=True, text=True, env=child_env(), timeout=20, check=False)
        self.assertEqual(result.returncode, 0, result.stderr)
        devices: list[dict[str, object]] = json.loads(result.stdout)
        return devices

    def test_broadcast_search_gets_a_broadcast_reply(self) -> None:
        """A broadcast search from the other namespace finds the box, whose 0x81 came to 255.255.255.255."""
        [device] = self._search("--timeout", "1.5")
        self.assertEqual((device["model"], device["ip"], device["netmask"], device["source"]),
                         ("NPort 5110", DEVICE_IP, "255.255.255.0", f"{DEVICE_IP}:4800"))
        self.assertEqual(device["reply_destination"], "255.255.255.255")
        self.assertTrue(device["broadcast_reply"])
        self.assertTrue(str(device["name"]).startswith("NP5110_"))

    def test_unicast_search_gets_a_unicast_reply(self) -> None:
        """The same box searched by address answers to the searcher's address, not by broadcast."""
        [device] = self._search("--host", DEVICE_IP, "--timeout", "5")
        self.assertEqual((device["ip"], device["reply_destination"], device["broadcast_reply"]),
                         (DEVICE_IP, SEARCHER_IP, False))
