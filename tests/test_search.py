# -*- test-case-name: tests.test_search -*-
"""
Tests for L{nport_twisted.tools.search} (C{nport-search}), ending with the real
service: C{twistd -n nport} in a subprocess, found over loopback.
"""

from __future__ import annotations

import io
import json
import os
import pty
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.wire import dsci
from tests.e2e_util import free_port_offset
from nport_twisted.config.identity import InterfaceAddress
from nport_twisted.tools.search import (
    Device,
    Searcher,
    Target,
    broadcast_targets,
    format_table,
    main,
    model_name,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEVID = dsci.DeviceId(ap_id=0x80005110, hw_id=0x5110, mac=bytes.fromhex("0090e8abcdef"))
DEVICE = ("192.0.2.10", 4800)


def twistd_command() -> list[str]:
    """twistd next to this Python, else Twisted's twistd run by this Python."""
    exe = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(exe, os.X_OK):
        return [exe]
    return [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.exit(run())"]


def child_env() -> dict[str, str]:
    """The environment for child processes: this checkout first on the path (plugin and package)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    return env


def free_offset() -> int:
    """
    A port offset under which every port the service opens is free (its
    telnet and web consoles too: a start that loses one of them to another
    program exits, and a capture connection accepted meanwhile is reset).
    """
    return free_port_offset()


class Twistd:
    """C{twistd -n nport …} as a child process whose log the test reads."""

    def __init__(self, test: TestCase, args: Sequence[str], prefix: Sequence[str] = ()) -> None:
        self.cwd = test.mktemp()
        os.makedirs(self.cwd)
        self.output = ""
        self.proc = subprocess.Popen(
            [*prefix, *twistd_command(), "-n", "--pidfile=", "--logfile=-", "nport", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env(), cwd=self.cwd)
        test.addCleanup(self.stop)

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        """Read the log until C{text} appears; fail with the log so far if it does not."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while text not in self.output:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sel.select(remaining):
                    raise AssertionError(
                        f"{text!r} not logged in {timeout} s (for the DSCI lines: does "
                        f"tap.makeService add discovery.device_services?); log:\n{self.output}")
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"twistd exited before logging {text!r}; log:\n{self.output}")
                self.output += chunk.decode("utf-8", "replace")
        return self.output

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def open_pty(test: TestCase) -> str:
    """A pty to serve as the serial port; closed at cleanup."""
    master, slave = pty.openpty()
    test.addCleanup(os.close, master)
    test.addCleanup(os.close, slave)
    return os.ttyname(slave)


class FakeSocket:
    """Records sendmsg calls of a Searcher."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any, tuple[str, int]]] = []

    def sendmsg(self, buffers: list[bytes], anc: Any, flags: int, addr: tuple[str, int]) -> int:
        self.sent.append((b"".join(buffers), anc, addr))
        return sum(map(len, buffers))


class SearcherTests(SynchronousTestCase):
    def _found(self) -> tuple[Searcher, FakeSocket]:
        sock = FakeSocket()
        searcher = Searcher(sock)  # type: ignore[arg-type]
        searcher.handle(dsci.encode_search_reply(0, DEVID, bytes([192, 0, 2, 10])), DEVICE,
                        "255.255.255.255", 0.0)
        return searcher, sock

    def test_follow_ups_unicast_to_the_device(self) -> None:
        """A 0x81 answer makes the searcher send 0x10, 0x16 and 0x26 (00 02) to where it came from."""
        _, sock = self._found()
        self.assertEqual([(data[0], addr) for data, _, addr in sock.sent],
                         [(0x10, DEVICE), (0x16, DEVICE), (0x26, DEVICE)])
        self.assertEqual(sock.sent[2][0][20:], b"\x00\x02")
        self.assertTrue(all(data[8:20] == DEVID.to_bytes() for data, _, _ in sock.sent))

    def test_details_filled_in(self) -> None:
        """The 0x96, 0x90 and 0xA6 answers fill firmware, name and netmask."""
        searcher, _ = self._found()
        searcher.handle(dsci.encode_kernel_info_reply(1, DEVID, "2.10", 2002, 1), DEVICE, None, 0.1)
        searcher.handle(dsci.encode_name_reply(2, DEVID, "Xcom-LAN"), DEVICE, None, 0.1)
        searcher.handle(dsci.encode_network_config_reply(3, DEVID, bytes([192, 0, 2, 10]),
                                                         bytes([255, 255, 255, 0]), bytes([192, 0, 2, 1])),
                        DEVICE, None, 0.1)
        device = searcher.devices[DEVID.to_bytes()]
        self.assertEqual((device.firmware, device.serial_number, device.name, device.netmask,
                          device.gateway, device.pending),
                         ("2.10", 2002, "Xcom-LAN", "255.255.255.0", "192.0.2.1", set()))
        self.assertTrue(device.to_json()["broadcast_reply"])

    def test_unsupported_and_foreign_answers(self) -> None:
        """Status 0x04 ends a follow-up; answers from another address or garbage are ignored."""
        searcher, _ = self._found()
        searcher.handle(dsci.encode_status_reply(0x26, 0), DEVICE, None, 0.1)
        searcher.handle(dsci.encode_name_reply(2, DEVID, "evil"), ("192.0.2.66", 4800), None, 0.1)
        searcher.handle(b"\x90garbage", DEVICE, None, 0.1)
        device = searcher.devices[DEVID.to_bytes()]
        self.assertEqual((device.pending, device.name), ({0x10, 0x16}, None))


class OutputTests(SynchronousTestCase):
    def test_model_names(self) -> None:
        """Known ID pairs give the model; unknown ones the hex IDs."""
        self.assertEqual(model_name(0x80000312, 0x0332), "NPort 5232")
        self.assertEqual(model_name(0x80015100, 0x511A), "NPort 5110A")
        self.assertEqual(model_name(0x80009999, 0x1234), "AP 0x80009999 HW 0x1234")

    def test_table(self) -> None:
        """The table has the model, name, MAC, IP, netmask and firmware columns."""
        device = Device(DEVID, "192.0.2.10", DEVICE, name="NP5110_52719", firmware="1.0",
                        netmask="255.255.255.0")
        lines = format_table([device]).splitlines()
        self.assertEqual(lines[0].split(), ["Model", "Name", "MAC", "IP", "Netmask", "Firmware"])
        self.assertEqual(lines[2].split(), ["NPort", "5110", "NP5110_52719", "00:90:E8:AB:CD:EF",
                                            "192.0.2.10", "255.255.255.0", "1.0"])

    def test_broadcast_targets(self) -> None:
        """One broadcast per interface (not loopback), or only the one named; a plain one if none known."""
        addrs = [InterfaceAddress(1, "lo", IPv4Address("127.0.0.1"), 8),
                 InterfaceAddress(2, "eth0", IPv4Address("192.0.2.5"), 24),
                 InterfaceAddress(2, "eth0:1", IPv4Address("198.51.100.5"), 24),
                 InterfaceAddress(3, "eth1", IPv4Address("203.0.113.5"), 24)]
        self.assertEqual(broadcast_targets(4800, addrs),
                         [Target("255.255.255.255", 4800, 2, "192.0.2.5"),
                          Target("255.255.255.255", 4800, 3, "203.0.113.5")])
        self.assertEqual(broadcast_targets(4800, addrs, "eth1"),
                         [Target("255.255.255.255", 4800, 3, "203.0.113.5")])
        self.assertEqual(broadcast_targets(4800, addrs, "wlan0"), [])
        self.assertEqual(broadcast_targets(4800, []), [Target("255.255.255.255", 4800)])


class MainTests(SynchronousTestCase):
    def test_usage_errors(self) -> None:
        """A bad port or timeout is a usage error (exit 2)."""
        err = io.StringIO()
        self.assertEqual(main(["--host", "127.0.0.1", "--port", "0"], io.StringIO(), err), 2)
        self.assertIn("--port", err.getvalue())
        self.assertEqual(main(["--bogus"], io.StringIO(), io.StringIO()), 2)

    def test_nothing_answers(self) -> None:
        """When nothing answers, a clear message goes to stderr and the exit status is 1."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # bound, never answers
            port = silent.getsockname()[1]
            out, err = io.StringIO(), io.StringIO()
            status = main(["--host", "127.0.0.1", "--port", str(port), "--timeout", "0.3"], out, err)
            request = silent.recv(100)
        self.assertEqual(status, 1)
        self.assertEqual(out.getvalue(), "")
        self.assertIn(f"no NPort answered (127.0.0.1:{port}, 0.3 s)", err.getvalue())
        self.assertEqual(request, bytes.fromhex("0100000800000000"))

    def test_imports_no_server(self) -> None:
        """The blocking CLI loads no Twisted reactor code and none of the server's services."""
        code = ("import sys, nport_twisted.tools.search; print(sorted(m for m in sys.modules "
                "if m.startswith(('twisted.internet', 'nport_twisted.services', 'nport_twisted.net'))))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=60).stdout
        self.assertEqual(out.strip(), "[]")


class EndToEndTests(TestCase):
    def _start(self) -> tuple[Twistd, int, str]:
        offset = free_offset()
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        config = os.path.join(state, "nport.ini")
        with open(config, "w") as f:
            f.write("[identity]\nmac = 00:90:E8:AB:CD:EF\n")
        server = Twistd(self, ["--ports", open_pty(self), "--port-offset", str(offset),
                               "--interface", "127.0.0.1", "--config", config])
        server.wait_for("DSCI responder listening")
        return server, offset, state

    def test_search_finds_the_running_service(self) -> None:
        """nport-search --host 127.0.0.1 finds twistd nport and prints its model, MAC, name and address."""
        _, offset, _ = self._start()
        out, err = io.StringIO(), io.StringIO()
        status = main(["--host", "127.0.0.1", "--port", str(4800 + offset), "--timeout", "5"], out, err)
        self.assertEqual(status, 0, err.getvalue())
        row = out.getvalue().splitlines()[2].split()
        self.assertEqual(row, ["NPort", "5110", f"NP5110_{0xCDEF}", "00:90:E8:AB:CD:EF", "127.0.0.1",
                               "255.0.0.0", "1.0"])
        out = io.StringIO()
        self.assertEqual(main(["--host", "127.0.0.1", "--port", str(4800 + offset), "--json"], out), 0)
        [device] = json.loads(out.getvalue())
        self.assertEqual((device["ap_id"], device["hw_id"], device["port_count"], device["source"],
                          device["broadcast_reply"]),
                         ("0x80005110", "0x5110", 1, f"127.0.0.1:{4800 + offset}", False))

    def test_tcp_4900_capture(self) -> None:
        """Bytes sent to TCP 4900 + offset are recorded in the state directory, and nothing comes back."""
        server, offset, state = self._start()
        # The DSCI line comes first: the 4900 listener starts after it
        # (connecting on that line alone failed 3 of 8 runs under load).
        server.wait_for("TCP 4900 capture: recording to")
        with socket.create_connection(("127.0.0.1", 4900 + offset), timeout=5) as conn:
            conn.sendall(b"\x00\x01MOXA")
            conn.shutdown(socket.SHUT_WR)
            self.assertEqual(conn.recv(100), b"")  # closed by us, never answered
            server.wait_for("closed after 6 bytes")
        with open(os.path.join(state, "tcp4900-capture.log")) as f:
            text = f.read()
        self.assertIn("received 6 bytes at offset 0\n00000000  00 01 4d 4f 58 41", text)
        self.assertIn("|..MOXA|", text)
