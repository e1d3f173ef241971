"""
Tests for L{nport_twisted.tools.realtty.liveness}: UDP 4800 polling as
npreal2d -t does it (realcom.md §7), against replies built with our DSCI
codec, on a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.tools.realtty.liveness import LivenessPoller, ServerPoll, poll_interval
from nport_twisted.wire import dsci

DEVICE = dsci.DeviceId(ap_id=0x80005110, hw_id=0x5110, mac=b"\x00\x90\xe8\x01\x02\x03")
IP = bytes([127, 0, 0, 1])


def _search_reply() -> bytes:
    return dsci.encode_search_reply(0, DEVICE, IP)


def _kernel_reply(version_ports: int) -> bytes:
    return dsci.encode_kernel_info_reply(0, DEVICE, "1.0", 1, version_ports)


def _netstat(txid: int, entries: list[dsci.NetstatEntry], device: dsci.DeviceId = DEVICE,
             paged: bool = False, start: int = 0) -> bytes:
    if paged:
        return dsci.encode_netstat_paged_reply(txid, device, entries, start)
    return dsci.encode_netstat_reply(txid, device, entries)


def _entry(local: int, remote: int, state: int) -> dsci.NetstatEntry:
    return dsci.NetstatEntry(IP, IP, remote, local, dsci.SOCK_TCP, state)


def _txid(request: bytes) -> int:
    return dsci.Header.from_bytes(request).txid


class ServerPollTests(SynchronousTestCase):
    """The request sequence and the judgement of a listing."""

    def test_interval(self) -> None:
        """-t 1: T = 60, P = 10."""
        self.assertEqual(poll_interval(60), 10)
        self.assertEqual(poll_interval(120), 25)

    def test_sequence_netstat(self) -> None:
        """Search every 5 s until answered, kernel info, then 0x14 netstat every P s (version 0)."""
        poll = ServerPoll(60, 10)
        poll.start(100.0)
        self.assertEqual(poll.request(100.0), bytes.fromhex("01 00 00 08 00 00 00 00"))
        self.assertIsNone(poll.request(104.0))
        self.assertEqual(poll.request(105.0)[:1], b"\x01")  # type: ignore[index]
        poll.reply(105.5, _search_reply())
        kernel = poll.request(110.0)
        self.assertEqual(kernel, dsci.encode_request(dsci.OP_KERNEL_INFO, 0, DEVICE))
        poll.reply(110.5, _kernel_reply(0))
        self.assertEqual(poll.dsci_version, 0)
        netstat = poll.request(110.5)
        assert netstat is not None
        self.assertEqual(netstat[0], dsci.OP_NETSTAT)
        self.assertEqual(len(netstat), 22)
        self.assertEqual(_txid(netstat), 110)
        self.assertIsNone(poll.request(115.0))
        self.assertEqual(poll.reply(112.0, _netstat(110, [])), [])
        self.assertEqual(poll.last_alive, 112.0)

    def test_paged_netstat(self) -> None:
        """DSCI version != 0: 0x1D pages, followed to the last one."""
        poll = ServerPoll(60, 10, device_id=DEVICE, dsci_version=1)
        poll.start(0.0)
        first = poll.request(0.0)
        assert first is not None
        self.assertEqual((first[0], len(first), first[22]), (dsci.OP_NETSTAT_PAGED, 24, 0))
        entries = [_entry(950 + i, 40000 + i, dsci.TCP_CONNECTED) for i in range(70)]
        self.assertIsNone(poll.reply(0.5, _netstat(0, entries, paged=True, start=0)))
        second = poll.request(1.0)
        assert second is not None
        self.assertEqual(second[22], 64)
        listing = poll.reply(1.5, _netstat(_txid(second), entries, paged=True, start=64))
        self.assertEqual(len(listing or []), 70)

    def test_foreign_replies_ignored(self) -> None:
        """A reply with an id we did not send, or from another device, does not count."""
        poll = ServerPoll(60, 10, device_id=DEVICE, dsci_version=0)
        poll.start(0.0)
        request = poll.request(5.0)
        assert request is not None
        self.assertIsNone(poll.reply(6.0, _netstat(1234, [])))
        other = dsci.DeviceId(1, 2, b"\x00" * 6)
        self.assertIsNone(poll.reply(6.0, _netstat(5, [], device=other)))
        self.assertIsNone(poll.device_id)  # search again
        self.assertEqual(poll.last_alive, 0.0)

    def test_expiry(self) -> None:
        """Nothing for more than T: expired; data activity counts as alive."""
        poll = ServerPoll(60, 10)
        poll.start(0.0)
        poll.activity(30.0)
        self.assertFalse(poll.expired(90.0))
        self.assertTrue(poll.expired(90.5))

    def test_judge(self) -> None:
        """LISTEN without our connections twice in a row: reset; our CONNECTED entries: fine."""
        poll = ServerPoll(60, 10)
        ours = (950, 966, 41000, 41001)
        listening = [_entry(950, 0, dsci.TCP_LISTEN), _entry(966, 0, dsci.TCP_LISTEN)]
        connected = listening + [_entry(950, 41000, dsci.TCP_CONNECTED),
                                 _entry(966, 41001, dsci.TCP_CONNECTED)]
        self.assertFalse(poll.judge(connected, ours, 1))
        self.assertFalse(poll.judge(listening, ours, 1))
        self.assertFalse(poll.judge(connected, ours, 1))  # the count starts over
        self.assertFalse(poll.judge(listening, ours, 1))
        self.assertTrue(poll.judge(listening, ours, 1))
        self.assertFalse(poll.judge([_entry(4001, 0, dsci.TCP_LISTEN)], ours, 1))


class _Port:
    def __init__(self) -> None:
        self.polled_connected = True
        self.resets: list[str] = []
        self.numbers = (950, 966, 41000, 41001)

    def polled_ports(self) -> tuple[int, int, int, int]:
        return self.numbers

    def reset_connection(self, reason: str) -> None:
        self.resets.append(reason)


class _Udp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def write(self, datagram: bytes, addr: Any) -> None:
        self.sent.append((datagram, addr))


class PollerTests(SynchronousTestCase):
    """The UDP protocol and its timer."""

    def poller(self, timeout: float = 60.0) -> tuple[Clock, LivenessPoller, _Port, _Udp]:
        clock = Clock()
        clock.advance(1000)
        poller = LivenessPoller(clock, timeout, dsci_port=24800)
        port = _Port()
        poller.add("127.0.0.1", port)
        udp = _Udp()
        poller.transport = udp  # type: ignore[assignment]
        poller.startProtocol()
        self.addCleanup(poller.stopProtocol)
        return clock, poller, port, udp

    def test_silent_server_reset(self) -> None:
        """No data and no reply for T seconds: the connected port is reset (once per T)."""
        clock, poller, port, udp = self.poller(timeout=20)
        clock.pump([1.0] * 22)
        self.assertEqual(len(port.resets), 1)
        self.assertEqual(udp.sent[0], (bytes.fromhex("01 00 00 08 00 00 00 00"),
                                       ("127.0.0.1", 24800)))
        self.assertEqual(poller.status("127.0.0.1")["resets"], 1)  # type: ignore[index]

    def test_answering_server_alive(self) -> None:
        """A server that answers (from its DSCI port) keeps an idle port connected."""
        clock, poller, port, udp = self.poller(timeout=20)
        for _ in range(60):
            clock.advance(1.0)
            for datagram, addr in udp.sent:
                op = datagram[0]
                if op == dsci.OP_SEARCH:
                    reply = _search_reply()
                elif op == dsci.OP_KERNEL_INFO:
                    reply = _kernel_reply(0)
                else:
                    reply = _netstat(_txid(datagram), [
                        _entry(950, 41000, dsci.TCP_CONNECTED),
                        _entry(966, 41001, dsci.TCP_CONNECTED)])
                poller.datagramReceived(reply, ("127.0.0.1", 24800))
            udp.sent.clear()
        self.assertEqual(port.resets, [])
        self.assertGreater(poller.status("127.0.0.1")["replies"], 5)  # type: ignore[index]

    def test_wrong_source_port(self) -> None:
        """Replies must come from the DSCI port."""
        clock, poller, port, udp = self.poller(timeout=20)
        clock.advance(1.0)
        poller.datagramReceived(_search_reply(), ("127.0.0.1", 5555))
        self.assertEqual(poller.status("127.0.0.1")["replies"], 0)  # type: ignore[index]

    def test_no_connected_port_no_polling(self) -> None:
        """No connected port: nothing is sent and nothing expires."""
        clock, poller, port, udp = self.poller(timeout=20)
        port.polled_connected = False
        clock.pump([1.0] * 60)
        self.assertEqual((udp.sent, port.resets), ([], []))

    def test_listen_reset(self) -> None:
        """A listing that shows the port listening without our connections, twice: reset."""
        clock, poller, port, udp = self.poller()
        poll = poller._polls["127.0.0.1"]
        poll.device_id, poll.dsci_version = DEVICE, 0
        for _ in range(2):
            clock.advance(11.0)
            request = udp.sent[-1][0]
            poller.datagramReceived(_netstat(_txid(request), [_entry(950, 0, dsci.TCP_LISTEN)]),
                                    ("127.0.0.1", 24800))
        self.assertEqual(len(port.resets), 1)
        self.assertIn("listens again", port.resets[0])
