"""
Tests for nport_twisted.config.portmap: which local ports a configuration
uses and which of them collide, by field.
"""

from __future__ import annotations

import attrs
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.portmap import PortUse, ServicePort, port_conflicts, port_uses
from nport_twisted.config.settings import DeviceConfig, OperatingSettings, OpMode, PortConfig


def _config(*operating: OperatingSettings) -> DeviceConfig:
    return DeviceConfig(ports=tuple(PortConfig(operating=op) for op in operating))


class PortMapTests(SynchronousTestCase):
    def test_defaults_per_mode(self) -> None:
        """0 means the NPort default of port n; each mode uses its own port settings."""
        config = _config(
            OperatingSettings(mode=OpMode.REAL_COM),
            OperatingSettings(mode=OpMode.TCP_SERVER),
            OperatingSettings(mode=OpMode.UDP),
            OperatingSettings(mode=OpMode.TCP_CLIENT, designated_local_ports=(5011, 0)),
            OperatingSettings(mode=OpMode.DISABLED, local_tcp_port=4001),
        )
        self.assertEqual(
            [(u.proto, u.port, u.port_index, u.setting) for u in port_uses(config)],
            [
                ("tcp", 950, 0, "data_port"),
                ("tcp", 966, 0, "command_port"),
                ("tcp", 4002, 1, "local_tcp_port"),
                ("tcp", 967, 1, "command_port"),
                ("udp", 4003, 2, "udp_local_port"),
                ("tcp", 5011, 3, "designated_local_ports"),
            ],
        )
        self.assertEqual(port_conflicts(config), {})

    def test_conflict_names_both_fields(self) -> None:
        """Two ports on one TCP port: each field is named, pointing at the other."""
        config = _config(
            OperatingSettings(mode=OpMode.TCP_SERVER, local_tcp_port=4002),
            OperatingSettings(mode=OpMode.TCP_SERVER),
        )
        self.assertEqual(
            port_conflicts(config),
            {
                "ports[0].operating.local_tcp_port": "TCP port 4002 is also port 2's local TCP port",
                "ports[1].operating.local_tcp_port": "TCP port 4002 is also port 1's local TCP port",
            },
        )

    def test_same_port_two_settings_of_one_port(self) -> None:
        """A data port equal to the same port's command port is a conflict too."""
        config = _config(OperatingSettings(mode=OpMode.REAL_COM, data_port=966))
        self.assertEqual(
            set(port_conflicts(config)),
            {"ports[0].operating.data_port", "ports[0].operating.command_port"},
        )

    def test_tcp_and_udp_do_not_collide(self) -> None:
        """TCP 4001 and UDP 4001 are different ports."""
        config = _config(
            OperatingSettings(mode=OpMode.TCP_SERVER),
            OperatingSettings(mode=OpMode.UDP, udp_local_port=4001),
        )
        self.assertEqual(port_conflicts(config), {})

    def test_service_ports_and_offset(self) -> None:
        """The box's own services count after the offset; so does the 1-65535 range."""
        config = _config(OperatingSettings(mode=OpMode.TCP_SERVER, local_tcp_port=80))
        web = ServicePort("tcp", 10080, "the web console (HTTP)")
        self.assertEqual(
            port_conflicts(config, 10000, [web]),
            {
                "ports[0].operating.local_tcp_port": "TCP port 80 (10080 with --port-offset "
                "10000) is already used by the web console (HTTP)"
            },
        )
        self.assertEqual(port_conflicts(config, 0, [web]), {})
        high = _config(OperatingSettings(mode=OpMode.TCP_SERVER, local_tcp_port=60000))
        self.assertIn("outside 1-65535", port_conflicts(high, 10000)["ports[0].operating.local_tcp_port"])

    def test_designated_ports_twice(self) -> None:
        """The same designated local port twice in one list is named once."""
        config = _config(
            OperatingSettings(mode=OpMode.TCP_CLIENT, destinations=("a:1", "b:2"),
                              designated_local_ports=(5011, 5011))
        )
        self.assertEqual(
            port_conflicts(config),
            {"ports[0].operating.designated_local_ports": "TCP port 5011 is given twice"},
        )

    def test_describe(self) -> None:
        """A use names its port (1-based) and setting."""
        use = PortUse("tcp", 967, 1, "command_port")
        self.assertEqual((use.path, use.describe()),
                         ("ports[1].operating.command_port", "port 2's command port"))
        self.assertEqual(attrs.asdict(use)["port"], 967)
