"""
Tests for the command line (nport_twisted.tap) and the twistd plugin.
"""

from __future__ import annotations

import errno
import os
import pty
import signal
import socket
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.net.listener import ListenError, ListenerService, privileged_port_hint
from nport_twisted.config.settings import OpMode
from nport_twisted.tap import Options, _reload_on_sighup, check_devices, makeService


def _pty(test: SynchronousTestCase) -> str:
    master, slave = pty.openpty()
    test.addCleanup(os.close, master)
    test.addCleanup(os.close, slave)
    return os.ttyname(slave)


def _parse(test: SynchronousTestCase, *args: str) -> Options:
    options = Options()
    options.parseOptions(list(args))
    return options


class PluginTests(SynchronousTestCase):
    def test_plugin_found(self) -> None:
        """twistd's plugin scan finds the "nport" ServiceMaker pointing at our tap module."""
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("nport", makers)
        self.assertEqual(makers["nport"].module, "nport_twisted.tap")

    def test_wheel_ships_plugin_package(self) -> None:
        """setup.cfg packages the twisted.plugins namespace (plain find: silently drops the plugin)."""
        import configparser
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        cfg = configparser.ConfigParser()
        cfg.read(os.path.join(root, "setup.cfg"))
        self.assertEqual(cfg["options"]["packages"].strip(), "find_namespace:")
        self.assertIn("twisted.plugins", cfg["options.packages.find"]["include"].split())

    def test_no_init_in_plugins_dir(self) -> None:
        """The project ships no __init__.py in twisted/ or twisted/plugins/ (it would break Twisted)."""
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.assertFalse(os.path.exists(os.path.join(root, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(root, "twisted", "plugins", "__init__.py")))


class DeviceCheckTests(SynchronousTestCase):
    def test_missing_device_allowed(self) -> None:
        """A device that does not exist yet is accepted (it is opened when it appears)."""
        self.assertEqual(check_devices("/dev/does-not-exist-42"), ["/dev/does-not-exist-42"])

    def test_regular_file_rejected(self) -> None:
        """A path that exists but is not a character device is a usage error naming it."""
        path = self.mktemp()
        open(path, "w").close()
        e = self.assertRaises(usage.UsageError, check_devices, path)
        self.assertIn(path, str(e))
        self.assertIn("not a tty", str(e))

    def test_non_tty_char_device_rejected(self) -> None:
        """/dev/null is a character device but not a tty: a usage error."""
        e = self.assertRaises(usage.UsageError, check_devices, "/dev/null")
        self.assertIn("not a tty", str(e))

    def test_duplicate_rejected(self) -> None:
        """The same device twice, even through a symlink, is a usage error."""
        name = _pty(self)
        link = self.mktemp()
        os.symlink(name, link)
        e = self.assertRaises(usage.UsageError, check_devices, f"{name},{link}")
        self.assertIn("same device", str(e))

    def test_pty_accepted(self) -> None:
        """A pty slave is a tty and is accepted, order kept."""
        a, b = _pty(self), _pty(self)
        self.assertEqual(check_devices(f"{a}, {b}"), [a, b])


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Without options: one port, Real COM (NPort factory default), NPort 5110, no offset."""
        options = _parse(self, "--ports", "/dev/nonexistent0")
        config = options["device_config"]
        self.assertEqual(len(config.ports), 1)
        self.assertEqual(config.ports[0].operating.mode, OpMode.REAL_COM)
        self.assertEqual(options["model_info"].name, "NPort 5110")
        self.assertEqual(options["port-offset"], 0)

    def test_model_by_port_count(self) -> None:
        """The default model follows the port count (2 ports: NPort 5232; 5 ports: NPort 5650-8)."""
        two = _parse(self, "--ports", "/dev/nx0,/dev/nx1")
        self.assertEqual(two["model_info"].name, "NPort 5232")
        five = _parse(self, "--ports", ",".join(f"/dev/nx{i}" for i in range(5)))
        self.assertEqual(five["model_info"].name, "NPort 5650-8")

    def test_explicit_model(self) -> None:
        """--model accepts a loose name and is stored in the identity."""
        options = _parse(self, "--ports", "/dev/nx0", "--model", "5450")
        self.assertEqual(options["model_info"].name, "NPort 5450")
        self.assertEqual(options["device_config"].identity.model, "NPort 5450")

    def test_unknown_model(self) -> None:
        """An unknown --model is a usage error listing the known ones."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--model", "9999")
        self.assertIn("NPort 5232", str(e))

    def test_too_many_ports_for_model(self) -> None:
        """More ports than the chosen model has is a clear error."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0,/dev/nx1",
                              "--model", "5110")
        self.assertIn("NPort 5110 has 1", str(e))

    def test_more_ports_than_the_model(self) -> None:
        """
        17 ports on a 16-port model, or more than the 32 of MOXA's largest
        model (issue 14 raised the limit from 16), is a clear error.
        """
        devices = ",".join(f"/dev/nx{i}" for i in range(17))
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", devices, "--model", "5650-16")
        self.assertIn("17 serial ports", str(e))
        devices = ",".join(f"/dev/nx{i}" for i in range(33))
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", devices)
        self.assertIn("33 serial ports", str(e))

    def test_mode(self) -> None:
        """--mode sets the mode of ports without saved settings."""
        options = _parse(self, "--ports", "/dev/nx0", "--mode", "tcp-server")
        self.assertEqual(options["device_config"].ports[0].operating.mode, OpMode.TCP_SERVER)

    def test_unknown_mode(self) -> None:
        """An unknown --mode is a usage error listing the mode names."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--mode", "fast")
        self.assertIn("tcp-server", str(e))

    def test_unimplemented_mode(self) -> None:
        """A mode not implemented (here: taken out of the table) is a clear error, not a silent no-op."""
        from nport_twisted import server

        self.patch(server, "_FRONTENDS", {m: p for m, p in server._FRONTENDS.items()
                                          if m is not OpMode.ETHERNET_MODEM})
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--mode", "ethernet-modem")
        self.assertIn("not implemented", str(e))

    def test_bad_config_file(self) -> None:
        """A bad settings file is a usage error naming the section, key and value."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.operating]\nmax_connection = 9\n")
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--config", path)
        self.assertIn("[port1.operating]", str(e))
        self.assertIn("max_connection", str(e))
        self.assertIn("'9'", str(e))

    def test_saved_mode_wins(self) -> None:
        """A saved operating mode is used; --mode only fills ports that have none."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.operating]\nmode = tcp-server\n")
        options = _parse(self, "--ports", "/dev/nx0,/dev/nx1", "--config", path, "--mode", "disabled")
        modes = [p.operating.mode for p in options["device_config"].ports]
        self.assertEqual(modes, [OpMode.TCP_SERVER, OpMode.DISABLED])

    def test_mode_fills_port_without_operating_section(self) -> None:
        """A port with only a [portN.serial] section gets --mode, not the factory default."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.serial]\nbaudrate = 9600\n")
        options = _parse(self, "--ports", "/dev/nx0", "--config", path, "--mode", "tcp-server")
        port = options["device_config"].ports[0]
        self.assertEqual((port.operating.mode, port.serial.baudrate), (OpMode.TCP_SERVER, 9600))

    def test_dsci_port(self) -> None:
        """--dsci-port reaches the service; out of range is a usage error."""
        options = _parse(self, "--ports", "/dev/nx0", "--port-offset", "10000", "--dsci-port", "4800")
        self.assertEqual(makeService(options).dsci_port, 4800)  # type: ignore[attr-defined]
        self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--dsci-port", "0")

    def test_port_offset_range(self) -> None:
        """A port offset outside 0-65535 is a usage error."""
        self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", "--port-offset", "70000")


class MakeServiceTests(SynchronousTestCase):
    def test_builds_multiservice(self) -> None:
        """makeService returns one service holding a child per serial port."""
        options = _parse(self, "--ports", "/dev/nx0,/dev/nx1", "--port-offset", "10000")
        svc = makeService(options)
        self.assertEqual(len(svc.ports), 2)  # type: ignore[attr-defined]
        self.assertEqual(svc.endpoint("tcp", 950), "tcp:10950")  # type: ignore[attr-defined]

    def test_reactor_injected(self) -> None:
        """makeService builds the service on the reactor it is given: its listeners go there."""
        reactor = MemoryReactorClock()
        options = _parse(self, "--ports", "/dev/nx0", "--port-offset", "10000")
        svc = makeService(options, reactor=reactor)
        self.assertIs(svc.reactor, reactor)
        port = svc.ports[0]
        port.startService()
        self.addCleanup(port.stopService)
        self.assertEqual(sorted(number for number, *_ in reactor.tcpServers), [10950, 10966])


class SighupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        signal.signal(signal.SIGHUP, signal.SIG_DFL)

    def test_handler_installed_by_make_service(self) -> None:
        """With --config, makeService itself installs the SIGHUP handler (no start-up window)."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("")
        makeService(_parse(self, "--ports", "/dev/nx0", "--config", path))
        self.assertNotIn(signal.getsignal(signal.SIGHUP), (signal.SIG_DFL, signal.SIG_IGN, None))

    def test_handler_reloads_in_the_reactor_thread(self) -> None:
        """The handler hands svc.reload to the reactor (callFromThread), never calls it in the signal."""
        calls: list[object] = []

        class Reactor:
            def callFromThread(self, f: object) -> None:
                calls.append(f)

        class Svc:
            def reload(self) -> None:
                raise AssertionError("reload must not run inside the signal handler")

        svc = Svc()
        _reload_on_sighup(Reactor(), svc)
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        handler(signal.SIGHUP, None)
        self.assertEqual(calls, [svc.reload])

    def test_no_handler_without_config(self) -> None:
        """Without --config there is nothing to reload: SIGHUP keeps its default."""
        makeService(_parse(self, "--ports", "/dev/nx0"))
        self.assertEqual(signal.getsignal(signal.SIGHUP), signal.SIG_DFL)


class ConsoleOptionTests(SynchronousTestCase):
    def test_telnet_and_web_share_one_console(self) -> None:
        """--telnet-port listens on 23 + offset by default; both consoles share one state."""
        from nport_twisted.console.telnet import TelnetConsoleFactory
        from nport_twisted.web.resources import ConsoleSite

        reactor = MemoryReactorClock()
        svc = makeService(_parse(self, "--ports", "/dev/nx0", "--port-offset", "10000"),
                          reactor=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        factories = {number: factory for number, factory, *_ in reactor.tcpServers}
        telnet, web = factories[10023], factories[10080]
        self.assertIsInstance(telnet, TelnetConsoleFactory)
        self.assertIsInstance(web, ConsoleSite)
        self.assertIs(telnet.console, web.console)
        self.assertTrue(telnet.console.telnet_served and telnet.console.web_served)

    def test_telnet_port_off_and_range(self) -> None:
        """--telnet-port 0 turns it off; a port outside 1-65535 after the offset is refused."""
        reactor = MemoryReactorClock()
        svc = makeService(_parse(self, "--ports", "/dev/nx0", "--port-offset", "10000",
                                 "--telnet-port", "0"), reactor=reactor)
        svc.startService()
        self.addCleanup(svc.stopService)
        self.assertNotIn(10023, [number for number, *_ in reactor.tcpServers])
        self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0",
                          "--port-offset", "60000", "--telnet-port", "6000")


class _FailingEndpoint:
    def __init__(self, err: Exception) -> None:
        self.err = err

    def listen(self, factory: object) -> object:
        from twisted.internet.defer import fail
        return fail(self.err)


class PrivilegedPortTests(SynchronousTestCase):
    def test_hint_names_fixes(self) -> None:
        """The privileged-port message names --port-offset and CAP_NET_BIND_SERVICE."""
        text = privileged_port_hint(950)
        self.assertIn("--port-offset", text)
        self.assertIn("CAP_NET_BIND_SERVICE", text)
        self.assertIn("950", text)

    def test_eacces_fails_startup_with_hint(self) -> None:
        """EACCES while binding fails start-up with the hint instead of a bare socket error."""
        err = CannotListenError("", 950, socket.error(errno.EACCES, "Permission denied"))
        svc = ListenerService(MemoryReactorClock(), "tcp:950", object())  # type: ignore[arg-type]
        self.patch(__import__("nport_twisted.net.listener", fromlist=["x"]), "serverFromString",
                   lambda reactor, desc: _FailingEndpoint(err))
        e = self.assertRaises(ListenError, svc.startService)
        self.assertIn("CAP_NET_BIND_SERVICE", str(e))
        self.assertIn("--port-offset", str(e))
        self.flushLoggedErrors()

    def test_listens_on_memory_reactor(self) -> None:
        """A ListenerService records its listener on the (memory) reactor at start."""
        reactor = MemoryReactorClock()
        svc = ListenerService(reactor, "tcp:10950:interface=127.0.0.1", object())  # type: ignore[arg-type]
        svc.startService()
        self.assertEqual([(p, h) for p, _, _, h in reactor.tcpServers], [(10950, "127.0.0.1")])


def _box_file(test: SynchronousTestCase, mac: str | None) -> str:
    path = test.mktemp()
    with open(path, "w") as f:
        f.write(f"[identity]\nmac = {mac}\n" if mac else "")
    return path


class BoxTests(SynchronousTestCase):
    """Several NPort identities in one process (--box), each on its own address."""

    def test_two_identities_listen_on_their_own_addresses(self) -> None:
        """Each identity gets its ports on its own interface; the first is the service returned."""
        a, b = _box_file(self, "00:90:E8:00:00:01"), _box_file(self, "00:90:E8:00:00:02")
        options = _parse(self, "--ports", "/dev/nx0,/dev/nx1", "--config", a, "--mode", "tcp-server",
                         "--interface", "127.0.0.1", "--port-offset", "20000", "--http-port", "0",
                         "--telnet-port", "0",
                         "--box", f"ports=/dev/nx2;interface=127.0.0.2;config={b};mode=realcom")
        reactor = MemoryReactorClock()
        svc = makeService(options, reactor=reactor)
        boxes = [svc] + [c for c in svc if type(c) is type(svc)]  # type: ignore[attr-defined]
        self.assertEqual([len(x.ports) for x in boxes], [2, 1])  # type: ignore[attr-defined]
        for port in boxes[0].ports + boxes[1].ports:  # type: ignore[attr-defined]
            port.startService()
            self.addCleanup(port.stopService)
        self.assertEqual(sorted((h, n) for n, _, _, h in reactor.tcpServers),
                         [("127.0.0.1", 20966), ("127.0.0.1", 20967), ("127.0.0.1", 24001),
                          ("127.0.0.1", 24002), ("127.0.0.2", 20950), ("127.0.0.2", 20966)])

    def test_single_identity_unchanged(self) -> None:
        """Without --box there is one identity, as before, and no MAC or address is required."""
        options = _parse(self, "--ports", "/dev/nx0")
        self.assertEqual(len(options["boxes"]), 1)
        self.assertEqual(options["boxes"][0].interface, "")

    def test_identities_must_be_told_apart(self) -> None:
        """Same address, no MAC, the same MAC, the same file or a missing key: usage errors."""
        a, b = _box_file(self, "00:90:E8:00:00:01"), _box_file(self, "00:90:E8:00:00:02")
        same_mac, no_mac = _box_file(self, "00:90:E8:00:00:01"), _box_file(self, None)
        base = ["--ports", "/dev/nx0", "--config", a, "--interface", "127.0.0.1"]
        cases = {
            f"ports=/dev/nx1;interface=127.0.0.1;config={b}": "already used",
            f"ports=/dev/nx1;interface=127.0.0.2;config={no_mac}": "[identity] mac",
            f"ports=/dev/nx1;interface=127.0.0.2;config={same_mac}": "already the MAC",
            f"ports=/dev/nx1;interface=127.0.0.2;config={a}": "already the settings file",
            f"ports=/dev/nx0;interface=127.0.0.2;config={b}": "already served",
            f"ports=/dev/nx1;config={b}": "interface=... is required",
            f"ports=/dev/nx1;interface=127.0.0.2;config={b};colour=red": "not one of",
        }
        for spec, message in cases.items():
            e = self.assertRaises(usage.UsageError, Options().parseOptions, [*base, "--box", spec])
            self.assertIn(message, str(e), spec)
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--ports", "/dev/nx0", "--config", a,
                               "--box", f"ports=/dev/nx1;interface=127.0.0.2;config={b}"])
        self.assertIn("own address", str(e))

    def test_32_ports_in_one_identity(self) -> None:
        """32 ports are one NPort 6650-32: Real COM ports 17-32 use 982+ and 998+."""
        devices = ",".join(f"/dev/nx{i}" for i in range(32))
        options = _parse(self, "--ports", devices, "--port-offset", "20000")
        self.assertEqual(options["model_info"].name, "NPort 6650-32")
        reactor = MemoryReactorClock()
        svc = makeService(options, reactor=reactor)
        for port in svc.ports[15:17]:
            port.startService()
            self.addCleanup(port.stopService)
        self.assertEqual(sorted(n for n, *_ in reactor.tcpServers), [20965, 20981, 20982, 20998])
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--ports", devices + ",/dev/nx32"])
        self.assertIn("33 serial ports", str(e))
def _run(args: list[str], timeout: float = 60) -> "subprocess.CompletedProcess[str]":
    """Run a command line of ours (C{python ...}) from the checkout, bounded by C{timeout}."""
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=_ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=_ROOT, env=env, stdin=subprocess.DEVNULL)


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TWISTD = ["-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


class UsageErrorTests(SynchronousTestCase):
    """Under a runner, a usage error is one line and a hint, not the option list (issue 13)."""

    def _check_one_line(self, result: Any, option: str) -> None:
        self.assertEqual(result.returncode, 64, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 2, result.stderr)
        self.assertIn(option, lines[0])
        self.assertIn("--help", lines[1])
        self.assertNotIn("--https-cert", result.stdout + result.stderr)  # no option list

    def test_twist(self) -> None:
        """twist nport --port-offset x: the error names --port-offset, then the hint."""
        result = _run(["-m", "twisted", "nport", "--ports", "/dev/nx0", "--port-offset", "x"])
        self._check_one_line(result, "--port-offset")
        self.assertIn("twist nport --help", result.stderr)

    def test_twistd(self) -> None:
        """twistd -n nport with a bad --interface: one line naming it."""
        result = _run([*_TWISTD, "-n", "nport", "--ports", "/dev/nx0", "--interface", "nowhere"])
        self._check_one_line(result, "--interface")
        self.assertIn("twistd nport --help", result.stderr)

    def test_python_m(self) -> None:
        """python -m nport_twisted: a bad settings file is one line too."""
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("[port1.operating]\nmax_connection = 9\n")
        result = _run(["-m", "nport_twisted", "--ports", "/dev/nx0", "--config", path])
        self._check_one_line(result, "max_connection")
        self.assertIn("python -m nport_twisted --help", result.stderr)

    def test_version_and_help(self) -> None:
        """--version prints ours; --help names the documentation, which exists."""
        from nport_twisted import __version__
        version = _run(["-m", "nport_twisted", "--version"])
        self.assertEqual((version.returncode, version.stdout.strip()),
                         (0, f"nport-twisted {__version__}"))
        help_ = _run(["-m", "nport_twisted", "--help"])
        self.assertEqual(help_.returncode, 0)
        self.assertIn("Usage: python -m nport_twisted", help_.stdout)
        # A line of its own, never wrapped (wrapping broke a path at a hyphen: /tmp/ci-\nfinal).
        (docs,) = [line[len("Documentation: "):] for line in help_.stdout.splitlines()
                   if line.startswith("Documentation: ")]
        self.assertTrue(os.path.isfile(os.path.join(docs, "user-guide.md")), docs)


class TypedOptionTests(SynchronousTestCase):
    def test_errors_name_the_option(self) -> None:
        """Every numeric option's error names the option and its range."""
        for option, value in (("--port-offset", "x"), ("--port-offset", "-1"),
                              ("--http-port", "80x"), ("--https-port", "70000"),
                              ("--dsci-port", "0")):
            e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0", option, value)
            self.assertIn(option, str(e))
            self.assertNotIn("type enforcement", str(e))

    def test_interface_checked_at_option_time(self) -> None:
        """--interface must be an IP address literal; IPv4 and IPv6 pass."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0",
                              "--interface", "eth0")
        self.assertIn("--interface", str(e))
        for good in ("127.0.0.1", "::", "::1", "0.0.0.0"):
            self.assertEqual(_parse(self, "--ports", "/dev/nx0", "--interface", good)["interface"], good)

    def test_log_format(self) -> None:
        """--log-format takes text or json only."""
        self.assertEqual(_parse(self, "--ports", "/dev/nx0", "--log-format", "JSON")["log-format"], "json")
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0",
                              "--log-format", "xml")
        self.assertIn("--log-format", str(e))


class PortSpecOptionTests(SynchronousTestCase):
    """ser2net-style --ports entries: line settings and a TCP port per device."""

    def test_line_and_port(self) -> None:
        """@LINE sets the port's serial settings; PORT= the mode's data port."""
        options = _parse(self, "--ports", "/dev/nx0@9600-8E1,5000=/dev/nx1", "--mode", "tcp-server")
        one, two = options["device_config"].ports
        self.assertEqual((one.serial.baudrate, one.serial.parity.value), (9600, "E"))
        self.assertEqual(two.serial.baudrate, 115200)
        self.assertEqual(two.operating.local_tcp_port, 5000)
        self.assertEqual(options["devices"], ["/dev/nx0", "/dev/nx1"])

    def test_port_is_the_realcom_data_port(self) -> None:
        """In Real COM mode the explicit port is the data port (the command port stays 966+n-1)."""
        options = _parse(self, "--ports", "5950=/dev/nx0")
        self.assertEqual(options["device_config"].ports[0].operating.data_port, 5950)

    def test_port_needs_a_listening_mode(self) -> None:
        """An explicit port for a mode that listens on none is refused."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "5000=/dev/nx0",
                              "--mode", "disabled")
        self.assertIn("5000", str(e))

    def test_port_outside_range_with_offset(self) -> None:
        """A port that the offset pushes past 65535 is a usage error naming the setting, not a traceback."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "45000=/dev/nx0",
                              "--mode", "tcp-server", "--port-offset", "37000")
        self.assertIn("[port1.operating] local_tcp_port: TCP port 45000 (82000 with --port-offset "
                      "37000) is outside 1-65535", str(e))
        self.assertIn("--port-offset", str(e))

    def test_ports_colliding_in_the_settings_file(self) -> None:
        """Two serial ports on one TCP port: refused at start, both named, the file named."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port2.operating]\nmode = tcp-server\nlocal_tcp_port = 4001\n")
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0,/dev/nx1",
                              "--mode", "tcp-server", "--config", path)
        self.assertIn("[port2.operating] local_tcp_port: TCP port 4001 is also port 1's local "
                      "TCP port", str(e))
        self.assertIn(path, str(e))

    def test_bad_entry(self) -> None:
        """A malformed entry is a usage error naming --ports and the entry."""
        e = self.assertRaises(usage.UsageError, _parse, self, "--ports", "/dev/nx0@fast")
        self.assertIn("--ports", str(e))
        self.assertIn("'fast'", str(e))

    def test_settings_file_wins_and_says_so(self) -> None:
        """The file's mode and line win key by key; each overridden wish is a start-up note."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.operating]\nmode = tcp-server\n[port1.serial]\nbaudrate = 19200\n")
        options = _parse(self, "--ports", "/dev/nx0@9600-8E1,/dev/nx1@4800", "--config", path,
                         "--mode", "rfc2217")
        one, two = options["device_config"].ports
        self.assertEqual((one.operating.mode, one.serial.baudrate), (OpMode.TCP_SERVER, 19200))
        self.assertEqual(one.serial.parity.value, "E")  # the file leaves parity unset
        self.assertEqual((two.operating.mode, two.serial.baudrate), (OpMode.RFC2217, 4800))
        notes = options["notes"]
        self.assertEqual(len(notes), 2, notes)
        self.assertIn("port1", notes[0])
        self.assertIn("mode tcp-server, which wins over --mode rfc2217", notes[0])
        self.assertIn("19200-8E1", notes[1])

    def test_no_note_without_explicit_mode(self) -> None:
        """Without --mode, a saved mode is no conflict."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.operating]\nmode = tcp-server\n")
        self.assertEqual(_parse(self, "--ports", "/dev/nx0", "--config", path)["notes"], [])

    def test_reload_keeps_command_line_defaults(self) -> None:
        """SIGHUP's reload still uses --ports' line settings for what the file leaves unset."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[port1.operating]\nmode = tcp-server\n")
        options = _parse(self, "--ports", "/dev/nx0@9600", "--config", path)
        reloaded = options["store"].load(options["default_mode"])
        self.assertEqual(reloaded.ports[0].serial.baudrate, 9600)


class DeviceServicesOptionTests(SynchronousTestCase):
    def _names(self, *args: str) -> set[str]:
        svc = makeService(_parse(self, "--ports", "/dev/nx0", "--port-offset", "10000", *args),
                          reactor=MemoryReactorClock())
        return {child.name for child in svc if child.name}

    def test_default_is_nport_compatible(self) -> None:
        """By default discovery and TCP 4900 run, as on an NPort."""
        self.assertTrue({"dsci", "tcp4900-capture"} <= self._names())

    def test_turned_off(self) -> None:
        """--no-discovery and --no-capture leave them out."""
        names = self._names("--no-discovery", "--no-capture")
        self.assertFalse({"dsci", "tcp4900-capture"} & names)
        self.assertIn("startup-report", names)


class RunnerLoggingTests(SynchronousTestCase):
    """Which log observer twist and twistd get (nport_twisted.logs)."""

    def _options(self, parent: dict[str, Any]) -> Any:
        class Fake:
            prog = None
        fake = Fake()
        fake.parent = parent  # type: ignore[attr-defined]
        return fake

    def test_twist_text_by_default(self) -> None:
        """Under twist with stdout not a terminal, text (filtered) replaces twist's JSON default."""
        from twisted.logger import jsonFileLogObserver

        from nport_twisted.logs import configure_runner_logging, text_observer
        parent = {"fileLogObserverFactory": jsonFileLogObserver, "logFormat": "json"}
        configure_runner_logging(self._options(parent), "text", argv=["twist", "nport"])
        self.assertIs(parent["fileLogObserverFactory"], text_observer)

    def test_twist_explicit_format_kept(self) -> None:
        """twist --log-format json nport: twist's explicit choice stays JSON."""
        import io
        import json

        from twisted.logger import jsonFileLogObserver

        from nport_twisted.logs import configure_runner_logging
        parent = {"fileLogObserverFactory": jsonFileLogObserver, "logFormat": "json"}
        configure_runner_logging(self._options(parent), "text",
                                 argv=["twist", "--log-format", "json", "nport"])
        out = io.StringIO()
        observer = parent["fileLogObserverFactory"](out)
        observer({"log_format": "hello {who}", "who": "you", "log_time": 0.0,
                  "log_namespace": "x", "log_level": None})
        self.assertEqual(json.loads(out.getvalue().strip("\x1e\n"))["who"], "you")

    def test_json_one_object_per_line(self) -> None:
        """--log-format json: plain JSON lines (no RS prefix) with the rendered message in text."""
        import io
        import json

        from twisted.logger import jsonFileLogObserver

        from nport_twisted.logs import configure_runner_logging
        parent = {"fileLogObserverFactory": jsonFileLogObserver, "logFormat": "text"}
        configure_runner_logging(self._options(parent), "json", argv=["twist", "nport"])
        out = io.StringIO()
        observer = parent["fileLogObserverFactory"](out)
        for who in ("you", "me"):
            observer({"log_format": "hello {who}", "who": who, "log_time": 0.0,
                      "log_namespace": "x", "log_level": None})
        lines = out.getvalue().split("\n")
        self.assertEqual(lines[2], "")
        records = [json.loads(line) for line in lines[:2]]
        self.assertEqual([r["text"] for r in records], ["hello you", "hello me"])
        self.assertEqual(records[0]["who"], "you")

    def test_twistd_json_sets_logger(self) -> None:
        """Under twistd, --log-format json names our JSON observer as twistd's --logger."""
        from nport_twisted.logs import configure_runner_logging
        parent: dict[str, Any] = {"logger": None}
        configure_runner_logging(self._options(parent), "json")
        self.assertEqual(parent["logger"], "nport_twisted.logs.json_stdout")
        parent = {"logger": None}
        configure_runner_logging(self._options(parent), "text")
        self.assertIsNone(parent["logger"])

    def test_twisted_listener_chatter_dropped(self) -> None:
        """Twisted's "X starting on N" and "(TCP Port N Closed)" lines are filtered, others kept."""
        from twisted.logger import PredicateResult

        from nport_twisted.logs import quiet_twisted

        def legacy(text: str) -> dict[str, Any]:
            return {"log_namespace": "log_legacy", "log_text": text, "isError": 0}
        for noise in ("SessionFactory starting on 950", "(TCP Port 950 Closed)",
                      "(UDP Port 4800 Closed)", "ConsoleSite starting on 80",
                      "Starting protocol <UDP mode port1>", "Stopping protocol <UDP mode port1>"):
            self.assertEqual(quiet_twisted(legacy(noise)), PredicateResult.no, noise)
        self.assertEqual(quiet_twisted(legacy("something else")), PredicateResult.maybe)
        self.assertEqual(quiet_twisted({"log_namespace": "nport_twisted.x",
                                        "log_text": "(TCP Port 950 Closed)"}), PredicateResult.maybe)


class StartupFailureTests(SynchronousTestCase):
    """A port the OS refuses at start-up: one critical line naming it, exit 1, no traceback."""

    def test_address_in_use(self) -> None:
        """A taken Real COM data port is named with the cause and the fix."""
        holder = socket.socket()
        self.addCleanup(holder.close)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        if taken + 16 > 65535 or taken < 950:
            self.skipTest("the free port the kernel gave is unusable for this layout")
        result = _run(["-m", "twisted", "nport", "--ports", "/dev/nx0", "--interface", "127.0.0.1",
                       "--port-offset", str(taken - 950), "--http-port", "0", "--no-discovery",
                       "--no-capture"])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(f"TCP {taken}", lines[0])
        self.assertIn("serial port 1", lines[0])
        self.assertIn("Address already in use", lines[0])
        self.assertIn("--port-offset", lines[0])

    def test_address_in_use_in_the_ephemeral_range(self) -> None:
        """A TCP port in the host's ephemeral range: the hint says an outgoing connection may hold it."""
        from nport_twisted.net.listener import listen_failure

        error = OSError(errno.EADDRINUSE, "Address already in use")
        inside = listen_failure("tcp", 37080, "", error, "web-http", ephemeral=(32768, 60999))
        self.assertIn("ephemeral range 32768-60999", inside)
        self.assertIn("ss -tan 'sport = :37080'", inside)
        below = listen_failure("tcp", 4001, "", error, "serial port 1", ephemeral=(32768, 60999))
        self.assertNotIn("ephemeral", below)
        self.assertIn("ss -lnp 'sport = :4001'", below)
        self.assertNotIn("ephemeral", listen_failure("tcp", 37080, "", error, ephemeral=None))

    def test_interface_not_on_this_host(self) -> None:
        """An address this host does not have is named with the fix (TEST-NET-1, RFC 5737)."""
        result = _run(["-m", "twisted", "nport", "--ports", "/dev/nx0", "--interface", "192.0.2.77",
                       "--port-offset", "30000", "--http-port", "0", "--no-discovery"])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertNotIn("Traceback", result.stdout + result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn("192.0.2.77 is not an address of this host", lines[0])


def _free_offset(ports: list[int]) -> int:
    """An offset that puts every one of C{ports} on a free loopback TCP port now."""
    import random
    for _ in range(50):
        offset = random.randrange(20000, 60000)
        socks = []
        try:
            for port in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port + offset))
            return offset
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


class PipedLogTests(SynchronousTestCase):
    """Logs stay readable text when stdout is not a terminal (journald, docker logs)."""

    def test_text_summary_and_setup_token_on_a_pipe(self) -> None:
        import select
        import signal
        import subprocess
        import sys
        import time
        offset = _free_offset([950, 966, 80, 23, 4900])
        proc = subprocess.Popen(
            [sys.executable, "-m", "nport_twisted", "--ports", "/dev/nx0", "--interface",
             "127.0.0.1", "--port-offset", str(offset), "--no-discovery"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=_ROOT,
            env=dict(os.environ, PYTHONPATH=_ROOT))
        self.addCleanup(proc.wait, 30)
        self.addCleanup(proc.send_signal, signal.SIGTERM)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        output = b""
        deadline = time.monotonic() + 60
        # Raw reads: a buffered readline would hide lines from select().
        while b"Starting reactor" not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            output += chunk
        lines = output.decode("utf-8", "replace").splitlines()
        text = "\n".join(lines)
        self.assertIn("Starting reactor", text)
        self.assertFalse(any(line.startswith("{") for line in lines), text)  # not JSON
        self.assertRegex(text, r"one-time setup token [A-Za-z0-9_-]{8,}")
        self.assertIn(f"port1 /dev/nx0: Real COM on tcp:{950 + offset} (data) / "
                      f"tcp:{966 + offset} (command); device missing", text)
        self.assertNotIn("starting on", text)


class ConsoleScriptVersionTests(SynchronousTestCase):
    def test_every_console_script_has_version(self) -> None:
        """Every console script in setup.cfg answers --version with ours (issue 13)."""
        import configparser

        from nport_twisted import __version__
        parser = configparser.ConfigParser()
        parser.read(os.path.join(_ROOT, "setup.cfg"))
        scripts = [line.split("=", 1) for line in
                   parser["options.entry_points"]["console_scripts"].strip().splitlines()]
        self.assertGreaterEqual(len(scripts), 2)
        for name, target in scripts:
            module, func = target.strip().split(":")
            code = (f"import sys; sys.argv = [{name.strip()!r}, '--version']; "
                    f"from {module} import {func}; {func}()")
            result = _run(["-c", code])
            self.assertEqual(result.returncode, 0, (name, result.stderr))
            self.assertIn(__version__, result.stdout, name)
