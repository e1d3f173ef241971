"""
Tests for SNMPv3 USM (L{nport_twisted.wire.snmpv3} and the agent's use of
it): net-snmp's snmpget/snmpwalk/snmpbulkwalk -v3 authPriv with SHA-256
and AES against the agent on 127.0.0.1, a wrong password, an unknown user
and the lower security levels refused, snmpEngineBoots kept across starts,
and fuzzed v3 datagrams never raising.
"""

from __future__ import annotations

import os
import random
import shutil
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.config.settings import NetworkSettings
from nport_twisted.events import AuthFailure
from nport_twisted.services.snmp import SnmpAgentService
from tests.monitor_util import make_server, stop_server

USER, AUTH, PRIV = "plant-v3", "auth pass 123", "priv pass 456"
V3_ONLY = NetworkSettings(snmp_v3_user=USER, snmp_v3_auth_password=AUTH,
                          snmp_v3_priv_password=PRIV)


def _missing() -> str | None:
    for tool in ("snmpget", "snmpwalk", "snmpbulkwalk"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package snmp)"
    return None


class NetSnmpV3Tests(TestCase):
    """net-snmp's tools, v3 authPriv, against the agent (real reactor, loopback)."""

    skip = _missing()

    def setUp(self) -> None:
        self.server, self.devices = make_server(self, reactor, network=V3_ONLY)
        self.server.startService()
        self.addCleanup(stop_server, self.server, self.devices)
        self.bound: list[int] = []

        def listen(port: int, proto: Any, iface: str) -> Any:
            p = reactor.listenUDP(0, proto, interface="127.0.0.1")
            self.bound.append(p.getHost().port)
            return p
        self.agent = SnmpAgentService(self.server, 161, listen_udp=listen)
        self.agent.startService()
        self.addCleanup(self.agent.stopService)
        self.persistent = os.path.abspath(self.mktemp())
        os.makedirs(self.persistent)
        self.failures: list[AuthFailure] = []
        self.addCleanup(self.server.events.subscribe(
            lambda when, e: self.failures.append(e) if isinstance(e, AuthFailure) else None))

    def tool(self, name: str, *args: str, user: str = USER, auth: str = AUTH, priv: str = PRIV,
             level: str = "authPriv") -> Deferred[tuple[bytes, bytes, int]]:
        env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent",
                   SNMP_PERSISTENT_DIR=self.persistent, SNMPCONFPATH=self.persistent)
        argv = ["-On", "-t", "2", "-r", "0", "-v3", "-l", level, "-u", user]
        if level != "noAuthNoPriv":
            argv += ["-a", "SHA-256", "-A", auth]
        if level == "authPriv":
            argv += ["-x", "AES", "-X", priv]
        argv += [*args[:-1], f"127.0.0.1:{self.bound[0]}", args[-1]]
        return getProcessOutputAndValue(shutil.which(name) or name, argv, env=env,
                                        reactor=reactor)

    @inlineCallbacks
    def test_walk_get_bulkwalk(self) -> Any:
        """snmpwalk/snmpbulkwalk -v3 authPriv walk the whole tree; snmpget reads live counters."""
        out, err, code = yield self.tool("snmpwalk", "1.3.6.1")
        self.assertEqual(code, 0, err)
        text = out.decode()
        self.assertIn(".1.3.6.1.2.1.1.1.0 = STRING:", text)
        self.assertNotIn("Error", text + err.decode())
        walked = [line.split(" = ")[0] for line in text.splitlines() if " = " in line]
        self.assertGreater(len(walked), 100)
        engine_id = self.agent.v3.engine_id.hex()  # type: ignore[union-attr]
        self.assertIn(".1.3.6.1.6.3.10.2.1.1.0 = Hex-STRING: " + " ".join(
            engine_id[i:i + 2].upper() for i in range(0, len(engine_id), 2)), text)
        self.assertIn(".1.3.6.1.6.3.10.2.1.2.0 = INTEGER: 1", text)  # snmpEngineBoots
        self.assertIn(".1.3.6.1.6.3.15.1.1.4.0 = Counter32: ", text)  # usmStatsUnknownEngineIDs
        out, err, code = yield self.tool("snmpbulkwalk", "1.3.6.1")
        self.assertEqual(code, 0, err)
        self.assertEqual([line.split(" = ")[0] for line in out.decode().splitlines()
                          if " = " in line], walked)
        rx = ".1.3.6.1.4.1.8072.9999.9999.1.1.1.6.1"
        self.devices["/dev/fake0"].receive(b"v" * 333)
        out, err, code = yield self.tool("snmpget", rx)
        self.assertEqual(out.decode().strip(), f"{rx} = Counter64: 333")
        self.assertEqual(self.agent.v3.usm.wrong_digests, 0)  # type: ignore[union-attr]

    @inlineCallbacks
    def test_refused(self) -> Any:
        """A wrong password, an unknown user, authNoPriv and v2c without a community: no data."""
        oid = "1.3.6.1.2.1.1.5.0"
        out, err, code = yield self.tool("snmpget", oid, auth="not the password")
        self.assertNotEqual(code, 0)
        self.assertIn("Authentication failure", (out + err).decode())
        self.assertNotIn("STRING", out.decode())
        out, err, code = yield self.tool("snmpget", oid, user="intruder")
        self.assertNotEqual(code, 0)
        self.assertIn("Unknown user name", (out + err).decode())
        out, err, code = yield self.tool("snmpget", oid, level="authNoPriv")
        self.assertNotEqual(code, 0)
        self.assertIn("Unsupported security level", (out + err).decode())
        usm = self.agent.v3.usm  # type: ignore[union-attr]
        self.assertGreaterEqual(usm.wrong_digests, 1)
        self.assertEqual(usm.unknown_user_names, 1)
        self.assertEqual(usm.unsupported_sec_levels, 1)
        self.assertEqual([f.reason for f in self.failures][:1], ["SNMPv3 wrong digest"])
        out, err, code = yield self.tool("snmpget", "1.3.6.1.6.3.15.1.1.3.0")
        self.assertEqual(out.decode().strip(), ".1.3.6.1.6.3.15.1.1.3.0 = Counter32: 1")
        env = dict(os.environ, MIBS="", MIBDIRS="/nonexistent")
        out, err, code = yield getProcessOutputAndValue(
            shutil.which("snmpget") or "snmpget",
            ["-v2c", "-c", "", "-t", "0.5", "-r", "0", f"127.0.0.1:{self.bound[0]}", oid],
            env=env, reactor=reactor)
        self.assertIn("Timeout", (out + err).decode())


class EngineTests(SynchronousTestCase):
    def make_agent(self, state_dir: str | None) -> SnmpAgentService:
        clock = Clock()
        server, _ = make_server(self, clock, network=V3_ONLY)
        from nport_twisted.config.store import SettingsStore

        server.store = SettingsStore(os.path.join(state_dir, "nport.ini") if state_dir else None)
        class Port:
            def stopListening(self) -> None:
                pass
        agent = SnmpAgentService(server, 161, listen_udp=lambda p, proto, iface: Port())
        agent.startService()
        self.addCleanup(agent.stopService)
        return agent

    def test_boots_kept_across_starts(self) -> None:
        """snmpEngineBoots goes up by one per start when there is a state directory."""
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        self.assertEqual(self.make_agent(state).v3.boots, 1)  # type: ignore[union-attr]
        self.assertEqual(self.make_agent(state).v3.boots, 2)  # type: ignore[union-attr]
        self.assertEqual(self.make_agent(None).v3.boots, 1)  # type: ignore[union-attr]

    def test_engine_id_from_the_mac(self) -> None:
        """Format 3 (MAC) under enterprise 8072, the MAC of the box's identity."""
        from nport_twisted.config.identity import resolve_identity

        agent = self.make_agent(None)
        mac = resolve_identity(agent.ctx.config, 2).mac
        self.assertEqual(agent.v3.engine_id, bytes.fromhex("80001f8803") + mac)  # type: ignore[union-attr]

    def test_fuzzed_datagrams(self) -> None:
        """Random bytes and mutated v3 messages: counted or reported, never an exception."""
        from pyasn1.codec.ber import encoder
        from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
        from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

        agent = self.make_agent(None)
        v3 = agent.v3
        assert v3 is not None
        usm = UsmSecurityParameters()
        usm["msgAuthoritativeEngineId"] = v3.engine_id
        usm["msgAuthoritativeEngineBoots"] = v3.boots
        usm["msgAuthoritativeEngineTime"] = 0
        usm["msgUserName"] = USER.encode()
        usm["msgAuthenticationParameters"] = bytes(24)
        usm["msgPrivacyParameters"] = bytes(8)
        msg = SNMPv3Message()
        msg["msgVersion"] = 3
        msg["msgGlobalData"]["msgID"] = 7
        msg["msgGlobalData"]["msgMaxSize"] = 1500
        msg["msgGlobalData"]["msgFlags"] = b"\x07"
        msg["msgGlobalData"]["msgSecurityModel"] = 3
        msg["msgSecurityParameters"] = encoder.encode(usm)
        msg["msgData"]["encryptedPDU"] = bytes(40)
        valid = encoder.encode(msg)
        outcome = v3.respond(valid)  # a zero digest: wrong, and reported
        self.assertIsNotNone(outcome.reply)
        self.assertEqual(v3.usm.wrong_digests, 1)
        rng = random.Random(17)
        for _ in range(3000):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data))]
            reply = v3.respond(bytes(data)).reply
            self.assertTrue(reply is None or len(reply) <= v3.max_size)
        for _ in range(500):
            v3.respond(bytes(rng.randrange(256) for _ in range(rng.randint(0, 80))))
        self.assertGreater(agent.stats.in_asn_parse_errs, 0)
