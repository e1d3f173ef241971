"""
End-to-end tests of plant monitoring (issue 17, docs/monitoring.md) against
the real service (``twistd -n nport`` in a subprocess, a real pty as the
serial device) and real receivers on loopback:

  - net-snmp's C{snmpwalk -v2c} walks the whole tree, C{snmpbulkwalk} and
    C{snmpwalk -v3} (authPriv, SHA-256/AES) the same, and C{snmpget} sees
    the counters move while bytes flow;
  - a cold start and a wrong web password each make a mail in Twisted's
    own ESMTP server and a trap in net-snmp's C{snmptrapd}.

Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase

from nport_twisted.config.settings import (
    AutoWarningSettings,
    DeviceConfig,
    MonitoringSettings,
    NetworkSettings,
    OperatingSettings,
    OpMode,
    PasswordSettings,
    PortConfig,
)
from nport_twisted.config.store import dumps
from tests.e2e_util import (
    LOOPBACK,
    SERVICE_UDP_PORTS,
    Pty,
    Service,
    free_port_offset,
    have_ptys,
    poll_until,
    tcp_connect,
)

COMMUNITY = "plant-ro"
TRAP_COMMUNITY = "plant-traps"
PASSWORD = "plant floor 42"
METRICS_TOKEN = "scrape-token-for-the-test"
#: The SNMP agent's port before the offset.
SNMP = 161
NET_SNMP_TOOLS = ("snmpget", "snmpwalk", "snmpbulkwalk", "snmptrapd")


def _tool(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK)
                                  else None)


def _missing() -> str | None:
    for name in NET_SNMP_TOOLS:
        if _tool(name) is None:
            return f"{name} not installed (Debian packages snmp, snmptrapd)"
    if not have_ptys():
        return "this machine cannot allocate pseudo-terminals"
    return None


def free_udp_port() -> int:
    """A UDP port on loopback that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class TrapDaemon:
    """net-snmp's snmptrapd on 127.0.0.1, logging numeric OIDs to a file."""

    def __init__(self, directory: str, community: str) -> None:
        self.port = free_udp_port()
        self.log = os.path.join(directory, "snmptrapd.log")
        conf = os.path.join(directory, "snmptrapd.conf")
        with open(conf, "w", encoding="ascii") as f:
            f.write(f"authCommunity log {community}\n")
        persistent = os.path.join(directory, "snmp-state")
        os.makedirs(persistent, exist_ok=True)
        env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent", SNMP_PERSISTENT_DIR=persistent)
        self.process = subprocess.Popen(
            [_tool("snmptrapd") or "snmptrapd", "-f", "-C", "-c", conf, "-On", "-n",
             "-Lf", self.log, f"udp:{LOOPBACK}:{self.port}"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def text(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def ready(self) -> Deferred[None]:
        """Fires once snmptrapd logged its start (it has bound its port by then)."""
        def started() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"snmptrapd exited: {self.text()}")
            return "NET-SNMP version" in self.text()
        return poll_until(started, 15, what="snmptrapd to start")

    def traps(self) -> list[str]:
        """The logged traps, one line of variables each."""
        return [line for line in self.text().splitlines() if "snmpTrapOID" in line
                or ".1.3.6.1.6.3.1.1.4.1.0" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class MonitoringEndToEndTests(TestCase):
    """The real service with SNMP, Auto Warning and the web console on."""

    timeout = 120

    def setUp(self) -> None:
        why = _missing()
        if why:
            raise SkipTest(why)
        from twisted.internet import reactor

        from tests.test_warning import SmtpServer

        self.reactor: Any = reactor
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.pty = Pty()
        self.addCleanup(self.pty.close)
        self.smtp = SmtpServer()
        self.addCleanup(self.smtp.stop)
        self.traps = TrapDaemon(self.dir, TRAP_COMMUNITY)
        self.addCleanup(self.traps.stop)
        config = DeviceConfig(
            network=NetworkSettings(snmp_community=COMMUNITY, snmp_contact="ops",
                                    snmp_v3_user="plant-v3", snmp_v3_auth_password="auth pass 123",
                                    snmp_v3_priv_password="priv pass 456"),
            password=PasswordSettings.from_password(PASSWORD),
            monitoring=MonitoringSettings(metrics_token=METRICS_TOKEN),
            auto_warning=AutoWarningSettings(
                mail_server=LOOPBACK, mail_port=self.smtp.number,
                mail_from="nport@plant.example", mail_to=("ops@plant.example",),
                mail_cold_start=True, mail_auth_failure=True,
                trap_server=LOOPBACK, trap_port=self.traps.port,
                trap_community=TRAP_COMMUNITY, trap_cold_start=True, trap_auth_failure=True),
        ).with_port_count(1, OpMode.TCP_SERVER)
        config = config.replace_port(0, PortConfig(
            operating=OperatingSettings(mode=OpMode.TCP_SERVER)))
        self.config = os.path.join(self.dir, "nport.ini")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(dumps(config))
        # The boot id the service remembers differs from the kernel's: this
        # start is the first since the host booted, a cold start.
        with open(os.path.join(self.dir, ".boot_id"), "w", encoding="ascii") as f:
            f.write("00000000-0000-0000-0000-000000000000\n")
        self.offset = free_port_offset(udp=(*SERVICE_UDP_PORTS, SNMP))
        self.service = Service(self.dir, [
            "--interface", LOOPBACK, "--port-offset", str(self.offset),
            "--config", self.config, "--ports", self.pty.path, "--telnet-port", "0"])

    def _stop(self) -> None:
        self.service.stop()
        problems = self.service.problems()
        if problems:
            self.fail("the service logged errors:\n" + self.service.log())

    def snmp(self, name: str, *args: str) -> Deferred[tuple[bytes, bytes, int]]:
        """net-snmp's C{name} against the agent; the last argument is the OID."""
        env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")
        argv = ["-On", "-t", "2", "-r", "1", *args[:-1],
                f"{LOOPBACK}:{SNMP + self.offset}", args[-1]]
        return getProcessOutputAndValue(_tool(name) or name, argv, env=env,
                                        reactor=self.reactor)

    def test_walk_counters_mail_and_traps(self) -> Deferred[None]:
        return ensureDeferred(self._walk_counters_mail_and_traps())

    async def _walk_counters_mail_and_traps(self) -> None:
        await self.traps.ready()
        self.service.start()
        self.addCleanup(self._stop)
        await self.service.wait_listening([80 + self.offset, 4001 + self.offset])

        # Cold start: one mail, one coldStart trap.
        await self.smtp.delivery.arrived(1)
        self.assertIn("cold start", self.smtp.delivery.messages[0]["Subject"])
        await poll_until(lambda: len(self.traps.traps()) >= 1, 15, what="the coldStart trap")
        self.assertIn("= OID: .1.3.6.1.6.3.1.1.5.1", self.traps.traps()[0])

        # The agent listens from its start (before the web console does).
        async def walk(tool: str) -> list[str]:
            out, err, code = await self.snmp(tool, "-v2c", "-c", COMMUNITY, "1.3.6.1")
            self.assertEqual(code, 0, err)
            text = out.decode()
            self.assertNotIn("Error", text + err.decode())
            self.assertNotIn("No Such", text)
            return [line for line in text.splitlines() if " = " in line]
        first = await walk("snmpwalk")
        names = [line.split(" = ")[0] for line in first]
        self.assertEqual(names, sorted(names, key=lambda o: [int(x) for x in o.strip(".").split(".")]))
        self.assertIn(".1.3.6.1.2.1.1.5.0", names)  # sysName
        self.assertIn(".1.3.6.1.2.1.2.1.0", names)  # ifNumber
        self.assertIn(".1.3.6.1.4.1.8072.9999.9999.1.1.1.6.1", names)  # nptPortRxBytes.1
        # The interface rows are the host's: another program (a test's network
        # namespace, a container) may add or remove an interface between two walks.
        def not_host_interfaces(oids: list[str]) -> list[str]:
            host_rows = (".1.3.6.1.2.1.2.2.", ".1.3.6.1.2.1.31.1.1.")  # ifTable, ifXTable
            return [o for o in oids if not o.startswith(host_rows)]
        bulk = await walk("snmpbulkwalk")
        self.assertEqual(not_host_interfaces([line.split(" = ")[0] for line in bulk]),
                         not_host_interfaces(names))
        state = os.path.join(self.dir, "net-snmp")
        os.makedirs(state, exist_ok=True)
        os.environ["SNMP_PERSISTENT_DIR"] = state  # where net-snmp keeps v3 state
        self.addCleanup(os.environ.pop, "SNMP_PERSISTENT_DIR", None)
        out, err, code = await self.snmp(
            "snmpwalk", "-v3", "-l", "authPriv", "-u", "plant-v3", "-a", "SHA-256", "-A",
            "auth pass 123", "-x", "AES", "-X", "priv pass 456", "1.3.6.1")
        self.assertEqual(code, 0, err)
        v3_names = [line.split(" = ")[0] for line in out.decode().splitlines() if " = " in line]
        self.assertEqual(not_host_interfaces(v3_names), not_host_interfaces(names))

        # Bytes from the device: the port's rx counters move.
        rx = ".1.3.6.1.4.1.8072.9999.9999.1.1.1.6.1"
        out, err, code = await self.snmp("snmpget", "-v2c", "-c", COMMUNITY, rx)
        self.assertEqual(out.decode().strip(), f"{rx} = Counter64: 0")
        await self.service.wait_device_open(self.pty.path)
        client = await tcp_connect(self.reactor, 4001 + self.offset)
        self.addCleanup(client.transport.loseConnection)
        master = self.pty.attach(self.reactor)
        master.write(b"x" * 5000)
        await client.wait_bytes(5000, self.reactor, 15)
        out, err, code = await self.snmp("snmpget", "-v2c", "-c", COMMUNITY, rx)
        self.assertEqual(out.decode().strip(), f"{rx} = Counter64: 5000")
        moxa_rx = ".1.3.6.1.4.1.8691.2.7.1.6.2.1.1.4.1"  # monitorRxCount.1
        out, err, code = await self.snmp("snmpget", "-v2c", "-c", COMMUNITY, moxa_rx)
        self.assertEqual(out.decode().strip(), f"{moxa_rx} = INTEGER: 5000")

        # /metrics with the metrics token: prometheus_client's parser reads it, same counters.
        from tests.test_metrics import parse

        from twisted.web.client import Agent, readBody
        from twisted.web.http_headers import Headers

        agent = Agent(self.reactor)
        response = await agent.request(
            b"GET", f"http://{LOOPBACK}:{80 + self.offset}/metrics".encode(),
            Headers({b"authorization": [f"Bearer {METRICS_TOKEN}".encode()]}))
        metrics = parse((await readBody(response)).decode())
        self.assertEqual(response.code, 200)
        self.assertEqual(metrics["nport_port_rx_bytes_total"][(("port", "1"),)], 5000)
        self.assertEqual(metrics["nport_port_connections"][(("port", "1"),)], 1)
        self.assertGreater(metrics["process_resident_memory_bytes"][()], 0)

        # A wrong password on the web login page: a mail and an authenticationFailure trap.
        from io import BytesIO

        from twisted.web.client import FileBodyProducer

        response = await agent.request(
            b"POST", f"http://{LOOPBACK}:{80 + self.offset}/login".encode(),
            Headers({b"content-type": [b"application/x-www-form-urlencoded"]}),
            FileBodyProducer(BytesIO(b"password=not+the+password")))
        await readBody(response)
        self.assertEqual(response.code, 401)
        await self.smtp.delivery.arrived(2)
        subject = self.smtp.delivery.messages[1]["Subject"]
        self.assertIn("authentication failure", subject)
        self.assertNotIn("not the password", self.smtp.delivery.messages[1].get_content())
        await poll_until(lambda: len(self.traps.traps()) >= 2, 15,
                         what="the authenticationFailure trap")
        trap = self.traps.traps()[1]
        self.assertIn("= OID: .1.3.6.1.6.3.1.1.5.5", trap)
        self.assertIn('"127.0.0.1"', trap)
