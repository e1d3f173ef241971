# -*- test-case-name: tests.test_server -*-
"""
The device context: what the device-level faces (web console and JSON API,
DSCI responder, TCP 4900 capture, Auto IP Report, and later the telnet
console and SNMP) may read and do on the whole box.  L{NPortService}
(nport_twisted.server) provides it; the faces receive an L{IDeviceContext},
not the server, so they are typed and testable with a small fake.

Per-port front-ends get the narrower L{nport_twisted.net.session.PortContext}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Interface

from nport_twisted.config.settings import DeviceConfig, OpMode, PortConfig
from nport_twisted.device.channel import SerialChannel
from nport_twisted.events import EventPublisher
from nport_twisted.net.listener import NetTable

__all__ = ["IDeviceContext", "IPortState"]


class IPortState(Interface):
    """One serial port as the device-level faces see it."""

    index: int  # 0-based
    channel: SerialChannel  # its live state: device, settings in force, modem lines, counters
    config: PortConfig  # the settings the port runs with


class IDeviceContext(Interface):
    """The whole device, for the faces that are not one serial port's."""

    reactor: Any  # the injected reactor (IReactorTime + IReactorTCP + IReactorUDP + …)
    config: DeviceConfig  # the running configuration
    net: NetTable  # listeners and connections of the box (netstat, monitor)
    ports: Sequence[IPortState]
    interface: str  # --interface ("" = all)
    port_offset: int  # --port-offset
    dsci_port: int | None  # --dsci-port (None: 4800 + offset)
    default_mode: OpMode  # the mode of a port the settings leave without one
    started_at: float  # reactor time the service was built (uptime)
    state_dir: str | None  # where state files live (certificate, capture); None without --config
    settings_path: str | None  # the settings file; None: changes are not saved
    implemented_modes: frozenset[OpMode]  # the operating modes this version can run
    events: EventPublisher  # device events: publish what happens, subscribe to react (events.py)

    def endpoint(proto: str, port: int) -> str:
        """The endpoint string of one of the box's ports, shifted by the port offset."""

    def apply_config(new: DeviceConfig) -> Deferred[None]:
        """
        Make C{new} the running configuration (live, per port); raise
        ValueError if it cannot be (ApplyError naming the fields for a port
        conflict); the Deferred fails with ApplyError when the OS refused a
        port (everything was rolled back).
        """

    def port_conflicts(config: DeviceConfig) -> dict[str, str]:
        """The port settings of C{config} that collide, by field (config.portmap)."""

    def save(config: DeviceConfig | None = None) -> None:
        """Write C{config} (default: the running configuration) to the settings file (atomically)."""
