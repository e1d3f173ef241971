"""
The IPv6 connect check of L{nport_twisted.tools.realcom_client} (realcom.md
§6.4): on an IPv6 connection MOXA's daemon writes 16 bytes on the command
connection and needs 16 back before anything else; the server expects them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.testing import FakeTcpTransport
from nport_twisted.tools.realcom_client import CommandTimeout, RealComClient


class Ipv6CheckTests(SynchronousTestCase):
    """16 bytes out, 16 back, then the open sequence."""

    def connect(self, address: type[IPv4Address] | type[IPv6Address], host: str) -> Any:
        reactor = MemoryReactorClock()
        client = RealComClient(reactor)
        d = client.open(host, 950, 966)
        transports = []
        for port in (966, 950):
            factory = reactor.tcpClients[len(transports)][2]
            proto = factory.buildProtocol(None)
            transport = FakeTcpTransport(peerAddress=address("TCP", host, port))
            proto.makeConnection(transport)
            transports.append((proto, transport))

        def finish() -> None:  # end the open still waiting (no reply comes in these tests)
            d.addErrback(lambda f: None)
            client.abort()
            for proto, transport in transports:
                if transport.disconnecting:
                    proto.connectionLost(Failure(ConnectionDone()))
            reactor.advance(11)

        self.addCleanup(finish)
        return reactor, client, d, transports

    def test_ipv6_check_first(self) -> None:
        """On IPv6 the first command bytes are the 16-byte check; PORT_INIT follows the echo."""
        reactor, client, d, [(cmd, cmd_t), _] = self.connect(IPv6Address, "::1")
        check = cmd_t.value()
        self.assertEqual(len(check), 16)
        cmd_t.clear()
        cmd.dataReceived(check[:10])
        self.assertEqual(cmd_t.value(), b"")
        cmd.dataReceived(check[10:] + b"")
        self.assertEqual(cmd_t.value()[:2], bytes.fromhex("2C 08"))
        self.assertNoResult(d)

    def test_echo_and_reply_in_one_segment(self) -> None:
        """The echo and a reply may arrive together: the reply still counts."""
        reactor, client, d, [(cmd, cmd_t), _] = self.connect(IPv6Address, "::1")
        cmd.dataReceived(bytes(16))
        self.assertEqual(cmd_t.value()[16:18], bytes.fromhex("2C 08"))
        cmd.dataReceived(bytes.fromhex("2C 03 01 01 01"))
        self.assertTrue(cmd_t.value().endswith(bytes.fromhex("30 01 10")))  # then TX_FIFO

    def test_ipv4_no_check(self) -> None:
        """On IPv4 (and IPv4-mapped IPv6) PORT_INIT is the first thing sent."""
        for address, host in ((IPv4Address, "127.0.0.1"), (IPv6Address, "::ffff:127.0.0.1")):
            reactor, client, d, [(cmd, cmd_t), _] = self.connect(address, host)
            self.assertEqual(cmd_t.value()[:2], bytes.fromhex("2C 08"), host)

    def test_no_echo(self) -> None:
        """No echo within the command timeout: the open fails."""
        reactor, client, d, transports = self.connect(IPv6Address, "::1")
        reactor.advance(10.5)
        for proto, transport in transports:  # the client closes both; they go away
            self.assertTrue(transport.disconnecting)
            proto.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, CommandTimeout)
