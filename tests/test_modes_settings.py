"""
The settings of Pair Connection and Reverse Telnet (settings.md §5) on every
face: the JSON API (applied to the running port), the web console's
operating page, the telnet console's mode menu and the settings file.
"""

from __future__ import annotations

import os

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.identity import resolve_identity
from nport_twisted.config.settings import DeviceConfig, OpMode, PasswordSettings
from nport_twisted.config.store import SettingsStore
from nport_twisted.modes.pair import PairMaster, PairSlave
from nport_twisted.modes.reverse_telnet import ReverseTelnetService
from nport_twisted.server import NPortService, frontend_builders
from nport_twisted.web import WebConsole, forms
from nport_twisted.web.console import run_now
from nport_twisted.web.resources import ConsoleSite
from tests.test_telnet_console import ConsoleTestCase
from tests.test_web import MAC, PASSWORD, Client, _Devices

_HASH = PasswordSettings.from_password(PASSWORD)
OFFSET = 10000


class ModeSettingsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.devices = _Devices()
        self.path = os.path.abspath(self.mktemp())
        config = DeviceConfig(password=_HASH).with_port_count(1, OpMode.TCP_SERVER)
        self.server = NPortService(self.reactor, ["/dev/fake0"], config, SettingsStore(self.path),
                                   self.devices.opener, port_offset=OFFSET,
                                   interface="127.0.0.1", builders=frontend_builders())
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.console = WebConsole(self.server, run_blocking=run_now,
                                  identity=lambda c, n: resolve_identity(c, n,
                                                                         mac=lambda: (MAC, "t")))
        self.client = Client(ConsoleSite(self.console, reactor=self.reactor))
        token = self.client.post("/api/v1/session", json_body={"password": PASSWORD}).json()
        self.auth = {"Authorization": f"Bearer {token['token']}"}

    def put_operating(self, body: dict[str, object]) -> None:
        response = self.client.request("PUT", "/api/v1/settings/ports/1/operating",
                                       headers=self.auth, json_body=body)
        self.assertEqual(response.code, 200, response.text)
        self.assertEqual(self.client.post("/api/v1/save", headers=self.auth).json(),
                         {"applied": True, "saved": True})

    def test_api_pair_master_and_slave(self) -> None:
        """The API switches a port to pair master (pair_remote) and slave (local port)."""
        self.put_operating({"mode": "pair-master", "pair_remote": "127.0.0.1:4801"})
        front = self.server.ports[0].frontend
        self.assertIsInstance(front.end, PairMaster)  # type: ignore[union-attr]
        self.assertEqual(self.reactor.tcpClients[-1][:2], ("127.0.0.1", 4801))
        self.put_operating({"mode": "pair-slave", "local_tcp_port": 4101})
        self.assertIsInstance(self.server.ports[0].frontend.end, PairSlave)  # type: ignore
        self.assertIn(OFFSET + 4101, [p for p, *_ in self.reactor.tcpServers])
        saved = SettingsStore(self.path).load(OpMode.REAL_COM)
        self.assertEqual(saved.ports[0].operating.mode, OpMode.PAIR_SLAVE)
        self.assertEqual(saved.ports[0].operating.pair_remote, "127.0.0.1:4801")

    def test_api_reverse_telnet(self) -> None:
        """The API sets Reverse Telnet with Map <CR-LF>; the settings file keeps it."""
        self.put_operating({"mode": "reverse-telnet", "telnet_map_cr": "lf",
                            "max_connection": 2})
        front = self.server.ports[0].frontend
        self.assertIsInstance(front, ReverseTelnetService)
        self.assertEqual(front.factory.gate.limit, 2)  # type: ignore[union-attr]
        self.assertIn(OFFSET + 4001, [p for p, *_ in self.reactor.tcpServers])
        saved = SettingsStore(self.path).load(OpMode.REAL_COM).ports[0].operating
        self.assertEqual((saved.mode, saved.telnet_map_cr), (OpMode.REVERSE_TELNET, "lf"))
        response = self.client.request("PATCH", "/api/v1/settings/ports/1/operating",
                                       headers=self.auth, json_body={"telnet_map_cr": "crcr"})
        self.assertEqual(response.code, 400)
        self.assertEqual([e["field"] for e in response.json()["errors"]], ["telnet_map_cr"])

    def test_web_page_offers_the_modes_and_fields(self) -> None:
        """The operating page lists the modes as selectable and shows each mode's fields."""
        self.client.post("/login", form={"password": PASSWORD})
        page = self.client.get("/operating?port=1").text
        for mode in (OpMode.PAIR_MASTER, OpMode.PAIR_SLAVE, OpMode.REVERSE_TELNET):
            self.assertIn(forms.MODE_LABELS[mode], page)
            self.assertNotIn(forms.MODE_LABELS[mode] + " (not implemented)", page)
        telnet = self.client.get("/operating?port=1&mode=reverse-telnet").text
        self.assertIn("Map &lt;CR-LF&gt;", telnet)
        self.assertIn('name="telnet_map_cr"', telnet)
        self.assertIn('name="max_connection"', telnet)
        master = self.client.get("/operating?port=1&mode=pair-master").text
        self.assertIn('name="pair_remote"', master)
        self.assertNotIn('name="local_tcp_port"', master)
        slave = self.client.get("/operating?port=1&mode=pair-slave").text
        self.assertIn('name="local_tcp_port"', slave)


class AllModesTests(SynchronousTestCase):
    def test_every_nport_mode_is_implemented(self) -> None:
        """--mode, the web console, the telnet console and the API accept every NPort mode."""
        self.assertEqual(set(frontend_builders()), set(OpMode))

    def test_mode_flag_accepts_every_mode(self) -> None:
        """--mode MODE parses for all of them (no 'not implemented' refusal left)."""
        from nport_twisted.tap import Options

        for mode in OpMode:
            options = Options()
            options.parseOptions(["--ports", "/dev/nx0", "--mode", mode.value])
            self.assertEqual(options["boxes"][0].default_mode, mode, mode)


class TelnetConsoleModeTests(ConsoleTestCase):
    """The telnet console's operating menu (the same forms as the web console)."""

    def test_reverse_telnet_and_pair_from_the_menu(self) -> None:
        client = self.logged_in()
        client.send("m", "4", "1", "1", "reverse-telnet")
        self.assertEqual(self.console.pending.ports[0].operating.mode, OpMode.REVERSE_TELNET)
        answer = client.send("")
        self.assertIn("Map <CR-LF>", answer)
        self.assertNotIn("Destination IP:port", answer)
        client.send("m", "4", "1", "1", "pair-master")
        self.assertEqual(self.console.pending.ports[0].operating.mode, OpMode.PAIR_MASTER)
        answer = client.send("")
        self.assertIn("Destination IP:port", answer)
        self.assertNotIn("Map <CR-LF>", answer)
