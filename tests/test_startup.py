"""
Tests for the start-up summary (nport_twisted.services.startup), the
presence watch of a device Real COM keeps closed, and the settings
store's start-up checks (empty file, unwritable directory).
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted._exceptions import ConfigError
from nport_twisted.config.settings import DeviceConfig, OpMode, PortConfig
from nport_twisted.config.store import SettingsStore
from nport_twisted.device.channel import SerialChannel
from nport_twisted.server import NPortService
from nport_twisted.services.startup import StartupReport, describe_port
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.web import web_services


def _config(modes: list[OpMode]) -> DeviceConfig:
    return DeviceConfig(ports=tuple(PortConfig(operating=attrs.evolve(PortConfig().operating, mode=m))
                                    for m in modes))


class _Box:
    """An NPortService on a memory reactor with fake devices, and its summary."""

    def __init__(self, test: SynchronousTestCase, modes: list[OpMode], present: set[str],
                 path: str | None = None, notes: list[str] | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.devices = {f"/dev/fake{i}": FakeSerialDevice(f"/dev/fake{i}", lines=None)
                        for i in range(len(modes))}
        for name, device in self.devices.items():
            device.present = name in present

        def opener(protocol: Any, device: str, settings: Any) -> Any:
            return self.devices[device].opener(protocol, device, settings)
        self.svc = NPortService(self.reactor, list(self.devices), _config(modes), SettingsStore(path),
                                opener, port_offset=10000)
        for child in web_services(self.svc, http_port=80):
            child.setServiceParent(self.svc)
        StartupReport(self.svc, notes=notes or [],
                      device_present=lambda p: self.devices[p].present).setServiceParent(self.svc)
        self.events = EventLoggingObserver.createWithCleanup(test, globalLogPublisher)
        self.svc.startService()
        test.addCleanup(self.svc.stopService)

    def lines(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self.events
                if e.get("log_namespace", "").endswith("StartupReport")
                and (level is None or e["log_level"] == level)]


class SummaryTests(SynchronousTestCase):
    def test_realcom_missing_device(self) -> None:
        """A Real COM port whose device is missing says so at start, as a warning, offset applied."""
        box = _Box(self, [OpMode.REAL_COM], present=set())
        self.assertIn("port1 /dev/fake0: Real COM on tcp:10950 (data) / tcp:10966 (command); "
                      "device missing — waiting for it; hosts are refused until it appears",
                      box.lines(LogLevel.warn))

    def test_realcom_present_device(self) -> None:
        """A present Real COM device is reported as opened when a host connects (not opened now)."""
        box = _Box(self, [OpMode.REAL_COM], present={"/dev/fake0"})
        line = [t for t in box.lines(LogLevel.info) if t.startswith("port1 ")]
        self.assertEqual(len(line), 1, box.lines())
        self.assertIn("device present, opened when a host connects (line 115200-8N1", line[0])
        self.assertEqual(box.devices["/dev/fake0"].opens, 0)

    def test_tcp_server_open_and_missing(self) -> None:
        """TCP Server ports report the device open with its line, or missing with the reason."""
        box = _Box(self, [OpMode.TCP_SERVER, OpMode.TCP_SERVER], present={"/dev/fake0"})
        info = "\n".join(box.lines(LogLevel.info))
        self.assertIn("port1 /dev/fake0: TCP Server on tcp:14001 (data) / tcp:10966 (command); "
                      "device open at 115200-8N1", info)
        warn = "\n".join(box.lines(LogLevel.warn))
        self.assertIn("port2 /dev/fake1: TCP Server on tcp:14002 (data) / tcp:10967 (command); "
                      "device missing (No such file or directory) — waiting for it", warn)

    def test_busy_device(self) -> None:
        """A device another process holds is 'busy', with the owner, not 'missing'."""
        from nport_twisted.device.locks import DeviceBusy

        reactor = MemoryReactorClock()

        def opener(protocol: Any, device: str, settings: Any) -> Any:
            raise DeviceBusy(device, "locked by pid 4242 (minicom) (/run/lock/LCK..ttyUSB0)", 4242)
        svc = NPortService(reactor, ["/dev/ttyUSB0"], _config([OpMode.TCP_SERVER]),
                           SettingsStore(None), opener, port_offset=10000)
        StartupReport(svc).setServiceParent(svc)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        svc.startService()
        self.addCleanup(svc.stopService)
        lines = [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("StartupReport")]
        self.assertIn("port1 /dev/ttyUSB0: TCP Server on tcp:14001 (data) / tcp:10966 (command); "
                      "device busy (locked by pid 4242 (minicom) (/run/lock/LCK..ttyUSB0)) — "
                      "retrying until it is free", lines)

    def test_disabled(self) -> None:
        """A disabled port says its device is not used."""
        box = _Box(self, [OpMode.DISABLED], present=set())
        self.assertIn("port1 /dev/fake0: Disabled; device not used", box.lines(LogLevel.info))

    def test_device_wide_services_and_notes(self) -> None:
        """The web console line carries its URL with the offset; notes are warnings."""
        box = _Box(self, [OpMode.REAL_COM], present=set(), notes=["port1: the file wins"])
        web = [t for t in box.lines() if t.startswith("web console on tcp:10080: http://")]
        self.assertEqual(len(web), 1, box.lines())
        self.assertIn("port1: the file wins", box.lines(LogLevel.warn))
        self.assertTrue(box.lines()[0].startswith("nport-twisted "), box.lines())

    def test_unwritable_settings_directory(self) -> None:
        """A settings directory that cannot be created is a start-up warning naming it and the fix."""
        blocker = self.mktemp()
        with open(blocker, "w"):
            pass
        path = os.path.join(blocker, "state", "nport.ini")
        box = _Box(self, [OpMode.DISABLED], present=set(), path=path)
        warn = "\n".join(box.lines(LogLevel.warn))
        self.assertIn(f"settings directory {os.path.dirname(os.path.abspath(path))}", warn)
        self.assertIn("save_failed", warn)
        self.assertIn("Fix:", warn)

    def test_describe_tcp_server_without_command_port(self) -> None:
        """A TCP Server relay (command port off) names only its data port."""
        from nport_twisted.config.settings import OperatingSettings
        relay = OperatingSettings(mode=OpMode.TCP_SERVER, command_port_enabled=False)
        self.assertEqual(describe_port(0, "/dev/x", relay, 0, "ok"),
                         "port1 /dev/x: TCP Server on tcp:4001 (data); ok")

    def test_describe_tcp_client_and_udp(self) -> None:
        """Modes without a listener of their own describe where they send."""
        from nport_twisted.config.settings import OperatingSettings, UdpDestination
        client = OperatingSettings(mode=OpMode.TCP_CLIENT, destinations=("10.0.0.5:4001",))
        self.assertEqual(describe_port(0, "/dev/x", client, 0, "device open at 9600-8N1"),
                         "port1 /dev/x: TCP Client to 10.0.0.5:4001; device open at 9600-8N1")
        udp = OperatingSettings(mode=OpMode.UDP, udp_destinations=(
            UdpDestination(begin="10.0.0.1", end="10.0.0.9", port=5000),))
        self.assertIn("UDP on udp:4002 (data); sends to 10.0.0.1-10.0.0.9:5000",
                      describe_port(1, "/dev/x", udp, 0, "ok"))


class PresenceWatchTests(SynchronousTestCase):
    """Real COM keeps its device closed: appearing and vanishing are still logged."""

    def test_transitions_logged_once(self) -> None:
        reactor = MemoryReactorClock()
        device = FakeSerialDevice()
        present = [False]
        channel = SerialChannel(0, device.path, PortConfig().serial, reactor, device.opener,
                                keep_open=False, present=lambda path: present[0],
                                presence_interval=2.0)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        channel.set_presence_watch(True)
        channel.startService()
        self.addCleanup(channel.stopService)
        reactor.advance(2)
        self.assertEqual([formatEvent(e) for e in events], [])  # the start state is the summary's
        present[0] = True
        reactor.advance(2)
        reactor.advance(2)
        texts = [formatEvent(e) for e in events]
        self.assertEqual(texts, ["port1: /dev/fake0 appeared; it is opened when a host connects"])
        present[0] = False
        reactor.advance(2)
        self.assertIn("port1: /dev/fake0 is gone; hosts are refused until it returns",
                      formatEvent(events[-1]))
        self.assertEqual(device.opens, 0)  # watching never opens the device

    def test_stops_with_the_service(self) -> None:
        """No timer is left once the channel stops (or the watch is turned off)."""
        reactor = MemoryReactorClock()
        device = FakeSerialDevice()
        channel = SerialChannel(0, device.path, PortConfig().serial, reactor, device.opener,
                                keep_open=False, present=lambda path: True)
        channel.set_presence_watch(True)
        channel.startService()
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        channel.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])


class StoreStartupTests(SynchronousTestCase):
    def test_empty_file_first_start(self) -> None:
        """An empty file where nothing was ever saved is a first start: the defaults."""
        path = self.mktemp()
        open(path, "w").close()
        store = SettingsStore(path)
        self.assertEqual(store.load(), DeviceConfig())
        self.assertTrue(store.first_start)

    def test_empty_file_after_a_save_refused(self) -> None:
        """Once settings were saved there, an empty file is refused like any bad file."""
        path = self.mktemp()
        store = SettingsStore(path)
        store.save(_config([OpMode.TCP_SERVER]))
        self.assertEqual(store.load().ports[0].operating.mode, OpMode.TCP_SERVER)
        open(path, "w").close()  # truncated
        e = self.assertRaises(ConfigError, store.load)
        self.assertIn("empty", str(e))
        self.assertIn(path, str(e))

    def test_empty_file_refused_at_start_up(self) -> None:
        """The command line turns that into a usage error, as for any bad file."""
        from twisted.python import usage

        from nport_twisted.tap import Options
        path = self.mktemp()
        SettingsStore(path).save(DeviceConfig())
        open(path, "w").close()
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--ports", "/dev/nx0", "--config", path])
        self.assertIn("bad settings file", str(e))

    def test_write_problem(self) -> None:
        """A writable directory is fine; one the user cannot write is named."""
        path = os.path.join(os.path.abspath(self.mktemp()), "nport.ini")
        store = SettingsStore(path)
        self.assertIsNone(store.write_problem())  # missing but creatable
        self.assertIn("is not writable",
                      store.write_problem(access=lambda p, mode: False) or "")
        self.assertIsNone(SettingsStore(None).write_problem())
