"""
Tests for the device service (nport_twisted.server): wiring of ports to
listeners and live reconfiguration.
"""

from __future__ import annotations

import socket
from typing import Any

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.config.store import SettingsStore
from nport_twisted.server import NPortService
from nport_twisted.config.settings import DeviceConfig, OpMode, Parity
from nport_twisted.testing import FakeSerialDevice


class _Devices:
    """One FakeSerialDevice per path, as an opener."""

    def __init__(self) -> None:
        self.devices: dict[str, FakeSerialDevice] = {}

    def opener(self, protocol, device, settings):  # type: ignore[no-untyped-def]
        fake = self.devices.setdefault(device, FakeSerialDevice(device, lines=None))
        return fake.opener(protocol, device, settings)


def _service(test: SynchronousTestCase, modes: list[OpMode], offset: int = 10000,
             path: str | None = None) -> tuple[NPortService, MemoryReactorClock, _Devices]:
    reactor = MemoryReactorClock()
    devices = _Devices()
    config = DeviceConfig().with_port_count(len(modes), OpMode.REAL_COM)
    for i, mode in enumerate(modes):
        port = config.ports[i]
        config = config.replace_port(i, attrs.evolve(port, operating=attrs.evolve(port.operating, mode=mode)))
    svc = NPortService(reactor, [f"/dev/fake{i}" for i in range(len(modes))], config,
                       SettingsStore(path), devices.opener, port_offset=offset, interface="127.0.0.1",
                       default_mode=modes[0])
    svc.startService()
    test.addCleanup(svc.stopService)
    return svc, reactor, devices


def _listening(reactor: MemoryReactorClock) -> list[int]:
    return sorted(port for port, _, _, _ in reactor.tcpServers)


class NPortServiceTests(SynchronousTestCase):
    def test_realcom_and_tcp_server_ports(self) -> None:
        """Port 1 in Real COM listens on 950/966, port 2 in TCP Server on 4002 (+ command 967), all shifted."""
        svc, reactor, _ = _service(self, [OpMode.REAL_COM, OpMode.TCP_SERVER])
        self.assertEqual(_listening(reactor), [10950, 10966, 10967, 14002])
        self.assertEqual(sorted(l.port for l in svc.net.listeners), [10950, 10966, 10967, 14002])

    def test_realcom_device_closed_until_connection(self) -> None:
        """A Real COM port does not open its device before a data connection; TCP Server does."""
        svc, _, devices = _service(self, [OpMode.REAL_COM, OpMode.TCP_SERVER])
        self.assertFalse(svc.ports[0].channel.is_open)
        self.assertTrue(svc.ports[1].channel.is_open)

    def test_tcp_server_command_port_off(self) -> None:
        """TCP Server with command_port_enabled off listens on its data port only (a relay)."""
        svc, reactor, _ = _service(self, [OpMode.TCP_SERVER])
        svc.update_port(0, command_port_enabled=False)
        self.assertEqual(_listening(reactor)[-1:], [14001])
        self.assertEqual(sorted(l.port for l in svc.net.listeners), [14001])
        svc.update_port(0, command_port_enabled=True)
        self.assertEqual(sorted(l.port for l in svc.net.listeners), [10966, 14001])

    def test_disabled_has_no_listener(self) -> None:
        """A disabled port neither listens nor opens its device."""
        svc, reactor, _ = _service(self, [OpMode.DISABLED])
        self.assertEqual(_listening(reactor), [])
        self.assertFalse(svc.ports[0].channel.is_open)

    def test_serial_change_applied_live(self) -> None:
        """Changing a port's serial settings applies them to the open device without a restart."""
        svc, reactor, devices = _service(self, [OpMode.TCP_SERVER])
        svc.update_port(0, baudrate=9600, parity=Parity.EVEN)
        device = devices.devices["/dev/fake0"]
        self.assertEqual(device.in_force.baudrate, 9600)
        self.assertEqual(device.in_force.parity, Parity.EVEN)
        self.assertEqual(device.opens, 1)

    def test_changes_logged_old_to_new(self) -> None:
        """Every serial or operating change is logged with each changed field, old -> new."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import formatEvent, globalLogPublisher
        svc, _, _ = _service(self, [OpMode.TCP_SERVER])
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        svc.update_port(0, baudrate=9600, parity=Parity.EVEN)
        svc.update_port(0, mode=OpMode.REAL_COM, max_connection=2)
        texts = [formatEvent(e) for e in events if e.get("channel") == "port1"]
        self.assertIn("port1: serial settings changed: baudrate 115200 -> 9600, parity N -> E", texts)
        self.assertIn("port1: operating settings changed: mode tcp-server -> realcom, "
                      "max_connection 1 -> 2; restarting its listeners", texts)

    def test_mode_change_restarts_listeners(self) -> None:
        """Switching port 1 from TCP Server to Real COM replaces its listeners only."""
        svc, reactor, _ = _service(self, [OpMode.TCP_SERVER, OpMode.TCP_SERVER])
        svc.update_port(0, mode=OpMode.REAL_COM)
        self.assertEqual(sorted(l.port for l in svc.net.listeners), [10950, 10966, 10967, 14002])
        self.assertEqual(svc.ports[0].frontend.running, 1)  # type: ignore[union-attr]

    def test_mode_change_closes_old_connections(self) -> None:
        """Switching mode closes the hosts connected under the old mode and detaches them."""
        from twisted.internet.testing import StringTransport
        svc, _, _ = _service(self, [OpMode.TCP_SERVER])
        factory = svc.ports[0].frontend.factory  # type: ignore[union-attr]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertEqual(len(svc.ports[0].channel.sessions), 1)
        svc.update_port(0, mode=OpMode.REAL_COM)
        self.assertEqual(svc.ports[0].channel.sessions, ())
        self.assertTrue(transport.disconnecting)

    def test_unimplemented_mode_rejected(self) -> None:
        """apply_config refuses a mode that has no front-end and keeps the running config."""
        from nport_twisted import server

        self.patch(server, "_FRONTENDS", {m: p for m, p in server._FRONTENDS.items()
                                          if m is not OpMode.ETHERNET_MODEM})
        svc, _, _ = _service(self, [OpMode.TCP_SERVER])
        before = svc.config
        self.assertRaises(ValueError, svc.update_port, 0, mode=OpMode.ETHERNET_MODEM)
        self.assertIs(svc.config, before)

    def test_save(self) -> None:
        """save() writes the running configuration to the settings file."""
        path = self.mktemp()
        svc, _, _ = _service(self, [OpMode.TCP_SERVER], path=path)
        svc.update_port(0, max_connection=3)
        svc.save()
        loaded = SettingsStore(path).load()
        self.assertEqual(loaded.ports[0].operating.max_connection, 3)
        self.assertEqual(loaded.ports[0].operating.mode, OpMode.TCP_SERVER)

    def test_endpoint_out_of_range(self) -> None:
        """A port pushed past 65535 by the offset is an error, not a wrapped port."""
        svc, _, _ = _service(self, [OpMode.DISABLED], offset=65000)
        self.assertRaises(ValueError, svc.endpoint, "tcp", 4001)

    def test_reload_applies_file(self) -> None:
        """reload() applies a changed settings file to the running ports."""
        path = self.mktemp()
        svc, _, devices = _service(self, [OpMode.TCP_SERVER], path=path)
        svc.save()
        text = open(path).read().replace("baudrate = 115200", "baudrate = 19200")
        with open(path, "w") as f:
            f.write(text)
        svc.reload()
        self.assertEqual(devices.devices["/dev/fake0"].in_force.baudrate, 19200)

    def test_reload_bad_file_keeps_running_config(self) -> None:
        """A bad file on reload is logged with the key at fault and changes nothing."""
        from twisted.logger import globalLogPublisher
        from twisted.internet.testing import EventLoggingObserver
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = self.mktemp()
        svc, _, _ = _service(self, [OpMode.TCP_SERVER], path=path)
        before = svc.config
        with open(path, "w") as f:
            f.write("[port1.serial]\nbaudrate = fast\n")
        svc.reload()
        self.assertIs(svc.config, before)
        errors = [e for e in observer if e.get("log_level").name == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn("baudrate", str(errors[0]["error"]))

    def test_reload_uses_default_mode(self) -> None:
        """On reload, a port the file does not mention keeps the service's --mode."""
        path = self.mktemp()
        svc, _, _ = _service(self, [OpMode.TCP_SERVER], path=path)
        with open(path, "w") as f:
            f.write("[basic]\nserver_name = box\n")
        svc.reload()
        self.assertEqual(svc.config.ports[0].operating.mode, OpMode.TCP_SERVER)
        self.assertEqual(svc.config.basic.server_name, "box")


class DeviceContextTests(SynchronousTestCase):
    def test_server_provides_the_device_context(self) -> None:
        """NPortService provides IDeviceContext and its ports IPortState, with the declared attributes."""
        from zope.interface.verify import verifyObject

        from nport_twisted.net.context import IDeviceContext, IPortState

        svc, reactor, _ = _service(self, [OpMode.REAL_COM, OpMode.TCP_SERVER])
        self.assertTrue(verifyObject(IDeviceContext, svc))
        for name in ("reactor", "config", "net", "ports", "interface", "port_offset", "dsci_port",
                     "default_mode", "started_at", "state_dir", "settings_path", "implemented_modes"):
            getattr(svc, name)
        self.assertIs(svc.reactor, reactor)
        self.assertEqual((svc.state_dir, svc.settings_path), (None, None))
        self.assertIn(OpMode.TCP_SERVER, svc.implemented_modes)
        for i, port in enumerate(svc.ports):
            self.assertTrue(verifyObject(IPortState, port))
            self.assertEqual((port.index, port.channel.index), (i, i))


class _RefusingReactor(MemoryReactorClock):
    """A memory reactor on which some TCP ports are taken by another program."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: set[int] = set()

    def listenTCP(self, port, factory, backlog=50, interface=""):  # type: ignore[no-untyped-def]
        if port in self.taken:
            from twisted.internet.error import CannotListenError
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        return super().listenTCP(port, factory, backlog, interface)


class ApplyTruthTests(SynchronousTestCase):
    """apply_config never leaves a port without its listener while saying it worked."""

    def service(self, modes: list[OpMode]) -> tuple[NPortService, _RefusingReactor]:
        reactor = _RefusingReactor()
        devices = _Devices()
        config = DeviceConfig().with_port_count(len(modes), OpMode.REAL_COM)
        for i, mode in enumerate(modes):
            port = config.ports[i]
            config = config.replace_port(
                i, attrs.evolve(port, operating=attrs.evolve(port.operating, mode=mode)))
        svc = NPortService(reactor, [f"/dev/fake{i}" for i in range(len(modes))], config,
                           SettingsStore(None), devices.opener, port_offset=10000,
                           interface="127.0.0.1", default_mode=modes[0])
        svc.startService()
        self.addCleanup(svc.stopService)
        return svc, reactor

    def listening(self, svc: NPortService) -> list[int]:
        return sorted(l.port for l in svc.net.listeners)

    def test_conflict_refused_before_anything(self) -> None:
        """A port equal to another port's is refused at once, naming both fields."""
        from nport_twisted.server import ApplyError
        svc, _ = self.service([OpMode.TCP_SERVER, OpMode.TCP_SERVER])
        before = svc.config
        new = before.replace_port(0, attrs.evolve(
            before.ports[0], operating=attrs.evolve(before.ports[0].operating, local_tcp_port=4002)))
        e = self.assertRaises(ApplyError, svc.apply_config, new)
        self.assertEqual(set(e.errors), {"ports[0].operating.local_tcp_port",
                                         "ports[1].operating.local_tcp_port"})
        self.assertIs(svc.config, before)
        self.assertEqual(self.listening(svc), [10966, 10967, 14001, 14002])

    def test_os_refusal_rolls_back(self) -> None:
        """A port the OS refuses at apply time: every port goes back, the field is named."""
        from nport_twisted.server import ApplyError
        svc, reactor = self.service([OpMode.TCP_SERVER, OpMode.REAL_COM])
        before = svc.config
        reactor.taken.add(15001)
        port1 = attrs.evolve(before.ports[0].operating, local_tcp_port=5001)
        port2 = attrs.evolve(before.ports[1].operating, mode=OpMode.TCP_SERVER)
        new = before.replace_port(0, attrs.evolve(before.ports[0], operating=port1))
        new = new.replace_port(1, attrs.evolve(new.ports[1], operating=port2))
        failure = self.failureResultOf(svc.apply_config(new), ApplyError)
        self.assertEqual(list(failure.value.errors), ["ports[0].operating.local_tcp_port"])
        self.assertIn("Address already in use", failure.value.errors["ports[0].operating.local_tcp_port"])
        self.assertIn("previous settings are back in force",
                      failure.value.errors["ports[0].operating.local_tcp_port"])
        self.assertIs(svc.config, before)
        self.assertEqual([p.config for p in svc.ports], list(before.ports))
        self.assertEqual(self.listening(svc), [10951, 10966, 10967, 14001])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_ports_trade_numbers(self) -> None:
        """Two ports may swap their local TCP ports in one change."""
        svc, _ = self.service([OpMode.TCP_SERVER, OpMode.TCP_SERVER])
        before = svc.config
        new = before
        for i, number in ((0, 4002), (1, 4001)):
            new = new.replace_port(i, attrs.evolve(new.ports[i], operating=attrs.evolve(
                new.ports[i].operating, local_tcp_port=number)))
        self.successResultOf(svc.apply_config(new))
        self.assertEqual(self.listening(svc), [10966, 10967, 14001, 14002])
        self.assertEqual([p.config.operating.local_tcp_port for p in svc.ports], [4002, 4001])

    def test_service_port_conflict(self) -> None:
        """The box's own listeners (web, telnet, DSCI, 4900) are in the conflict check."""
        from nport_twisted.net.listener import ListenerInfo
        from nport_twisted.server import ApplyError
        svc, _ = self.service([OpMode.TCP_SERVER])
        svc.net.add_listener(ListenerInfo("tcp", 10080, None, "web-http"))
        new = svc.config.replace_port(0, attrs.evolve(svc.config.ports[0], operating=attrs.evolve(
            svc.config.ports[0].operating, local_tcp_port=80)))
        e = self.assertRaises(ApplyError, svc.apply_config, new)
        self.assertEqual(e.errors, {"ports[0].operating.local_tcp_port": "TCP port 80 (10080 with "
                                    "--port-offset 10000) is already used by the web console (HTTP)"})


class RealReactorApplyTests(TestCase):
    """The same promises with real sockets on loopback."""

    def setUp(self) -> None:
        from twisted.internet import reactor
        from tests.e2e_util import free_port_offset
        self.offset = free_port_offset(tcp=(966, 967, 4001, 4002, 4003), udp=())
        config = DeviceConfig().with_port_count(2, OpMode.TCP_SERVER)
        self.devices = _Devices()
        self.svc = NPortService(reactor, ["/dev/fake0", "/dev/fake1"], config, SettingsStore(None),
                                self.devices.opener, port_offset=self.offset,
                                interface="127.0.0.1", default_mode=OpMode.TCP_SERVER)
        self.svc.startService()
        self.addCleanup(self.stop)

    def stop(self) -> Any:
        stopped = self.svc.stopService()
        for device in self.devices.devices.values():
            if device.closing:
                device.close_complete()  # the fake device closes when asked
        return stopped

    def with_ports(self, numbers: tuple[int, int]) -> DeviceConfig:
        new = self.svc.config
        for i, number in enumerate(numbers):
            new = new.replace_port(i, attrs.evolve(new.ports[i], operating=attrs.evolve(
                new.ports[i].operating, local_tcp_port=number)))
        return new

    async def test_swap_then_refused_port_rolls_back(self) -> None:
        """Swapping two bound ports works; a port held by another program rolls everything back."""
        from nport_twisted.server import ApplyError
        from tests.e2e_util import tcp_listening
        o = self.offset
        await self.svc.apply_config(self.with_ports((4002, 4001)))
        self.assertTrue(tcp_listening(o + 4001) and tcp_listening(o + 4002))
        self.assertEqual([p.config.operating.local_tcp_port for p in self.svc.ports], [4002, 4001])
        blocker = socket.socket()
        self.addCleanup(blocker.close)
        blocker.bind(("127.0.0.1", o + 4003))
        blocker.listen(1)
        before = self.svc.config
        try:
            await self.svc.apply_config(self.with_ports((4003, 4001)))
        except ApplyError as e:
            self.assertEqual(list(e.errors), ["ports[0].operating.local_tcp_port"])
        else:
            self.fail("a port held by another program was accepted")
        self.assertIs(self.svc.config, before)
        self.assertTrue(tcp_listening(o + 4001) and tcp_listening(o + 4002))
        self.assertEqual(sorted(l.port for l in self.svc.net.listeners),
                         [o + 966, o + 967, o + 4001, o + 4002])


class ReloadTests(SynchronousTestCase):
    """SIGHUP reloads (issue 10 items 8 and 9): the password, big files, off the reactor thread."""

    def _with_password(self, path: str) -> NPortService:
        from nport_twisted.config.settings import PasswordSettings
        svc, _, _ = _service(self, [OpMode.TCP_SERVER], path=path)
        svc.config = attrs.evolve(svc.config, password=PasswordSettings.from_password("right horse"))
        return svc

    def test_file_without_password_keeps_it(self) -> None:
        """A reloaded file with no [password] section (or no hash key) keeps the running password."""
        path = self.mktemp()
        svc = self._with_password(path)
        for text in ("[basic]\nserver_name = box\n", "[password]\n"):
            with open(path, "w") as f:
                f.write(text)
            svc.reload()
            self.assertTrue(svc.config.password.verify("right horse"))
            self.assertEqual(svc.config.basic.server_name, "box" if "basic" in text else "")

    def test_explicit_empty_hash_drops_it(self) -> None:
        """Only an explicit 'hash =' removes the password, and that is logged as a warning."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = self.mktemp()
        svc = self._with_password(path)
        with open(path, "w") as f:
            f.write("[password]\nhash =\n")
        svc.reload()
        self.assertFalse(svc.config.password.is_set)
        self.assertTrue(any("sets no password" in e["log_format"] for e in observer))

    def test_oversized_file_refused_unread(self) -> None:
        """A 50 MB settings file is refused by size (named in the log); the running config stays."""
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher
        from nport_twisted.config import store as store_module
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = self.mktemp()
        svc, _, _ = _service(self, [OpMode.TCP_SERVER], path=path)
        before = svc.config
        with open(path, "w") as f:
            f.write("[basic]\nserver_name = big\n")
            f.write("# padding\n" * (5 * 1024 * 1024))
        parsed: list[str] = []
        self.patch(store_module, "loads", lambda text, *a, **k: parsed.append(text))
        svc.reload()
        self.assertIs(svc.config, before)
        self.assertEqual(parsed, [])
        [error] = [e for e in observer if e["log_level"].name == "error"]
        self.assertIn("too large for a settings file", str(error["error"]))

    def test_reload_runs_off_the_reactor_thread(self) -> None:
        """The file is read and parsed by run_blocking; a SIGHUP meanwhile reloads once more after."""
        from twisted.internet.defer import Deferred
        path = self.mktemp()
        svc, _, devices = _service(self, [OpMode.TCP_SERVER], path=path)
        jobs: list[tuple[object, Deferred[object]]] = []

        def runner(f: object) -> Deferred[object]:
            d: Deferred[object] = Deferred()
            jobs.append((f, d))
            return d

        svc.run_blocking = runner
        with open(path, "w") as f:
            f.write("[port1.serial]\nbaudrate = 19200\n")
        first = svc.reload()
        self.assertEqual(len(jobs), 1)  # handed over, not run in the caller
        self.assertEqual(svc.config.ports[0].serial.baudrate, 115200)
        second = svc.reload()  # SIGHUP while the first is being parsed
        self.assertEqual(len(jobs), 1)
        f0, d0 = jobs[0]
        d0.callback(f0())  # type: ignore[operator]
        self.assertEqual(devices.devices["/dev/fake0"].in_force.baudrate, 19200)
        self.assertEqual(len(jobs), 2)  # the reload asked for meanwhile
        f1, d1 = jobs[1]
        d1.callback(f1())  # type: ignore[operator]
        self.successResultOf(first)
        self.successResultOf(second)
