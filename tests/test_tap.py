"""
Tests for the command line (nport_twisted.tap) and the twistd plugin.
"""

from __future__ import annotations

import errno
import os
import pty
import signal
import socket

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
        """A mode not implemented yet is a clear error, not a silent no-op."""
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
