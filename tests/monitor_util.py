"""
Shared helpers of the monitoring tests (SNMP, Auto Warning, syslog, metrics):
a two-port NPortService over fake serial devices.  Imports nothing heavy
(no pysnmp), so a subprocess can use it to check what a box loads.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from nport_twisted.config.settings import (
    DeviceConfig,
    NetworkSettings,
    OpMode,
    OperatingSettings,
    PortConfig,
)
from nport_twisted.config.store import SettingsStore
from nport_twisted.device.lines import ModemLines
from nport_twisted.server import NPortService
from nport_twisted.testing import FakeSerialDevice


def make_server(test: Any, reactor: Any, network: NetworkSettings | None = None,
                devices: dict[str, FakeSerialDevice] | None = None, port_offset: int | None = None,
                **config: Any) -> tuple[NPortService, dict[str, FakeSerialDevice]]:
    """
    A two-port NPortService over fake devices (both ports in TCP Server
    mode).  On the real reactor the ports (4001, 4002 and their command
    ports 966, 967) are shifted by a free offset, so that tests running at
    once never clash.
    """
    if port_offset is None:
        from twisted.internet import reactor as real_reactor
        port_offset = 0
        if reactor is real_reactor:
            from tests.e2e_util import free_port_offset
            port_offset = free_port_offset(tcp=(4001, 4002, 966, 967), udp=())
    devices = devices if devices is not None else {
        "/dev/fake0": FakeSerialDevice("/dev/fake0", lines=ModemLines(dsr=True, dcd=True)),
        "/dev/fake1": FakeSerialDevice("/dev/fake1", lines=None)}

    def opener(protocol: Any, device: str, settings: Any) -> Any:
        return devices[device].opener(protocol, device, settings)
    cfg = DeviceConfig(network=network or NetworkSettings(snmp_community="plant-ro",
                                                          snmp_contact="ops"),
                       **config).with_port_count(2, OpMode.TCP_SERVER)
    cfg = cfg.replace_port(0, PortConfig(operating=OperatingSettings(mode=OpMode.TCP_SERVER)))
    server = NPortService(reactor, list(devices), cfg, SettingsStore(None), opener,
                          interface="127.0.0.1", port_offset=port_offset)
    return server, devices




def stop_server(server: NPortService, devices: dict[str, FakeSerialDevice]) -> Deferred[None]:
    """Stop C{server} and finish its fake devices' close (what a SerialPort would do)."""
    d: Deferred[None] = server.stopService()
    for device in devices.values():
        device.close_complete()
    return d
