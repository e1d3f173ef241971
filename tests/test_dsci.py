# -*- test-case-name: tests.test_dsci -*-
"""
Tests for L{nport_twisted.wire.dsci}, the UDP 4800 DSCI and Auto IP Report codec.

Fixtures marked "real" are datagrams quoted in dsci.md §4-§5.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire import dsci
from nport_twisted.wire.dsci import (
    DeviceId,
    DsciError,
    DsciStatusError,
    Header,
    NetstatEntry,
    NetstatPagedRequest,
    NetstatRequest,
    Request,
)


def h(text: str) -> bytes:
    """Bytes from spaced hex."""
    return bytes.fromhex(text)


# Real 0x81 replies (dsci.md §4.1).
REAL_SEARCH_REPLIES = {
    "NPort 5232": h("81 00 00 18 00 00 00 00 12 03 00 80 32 03 00 90 e8 26 4a ab c0 a8 7f fe"),
    "NPort 5110A": h("81 00 00 18 00 00 00 00 00 51 01 80 1a 51 00 90 e8 3c f8 7e c0 a8 58 fa"),
    "NPort 6250": h("81 00 00 18 00 00 00 00 00 60 00 80 50 62 00 90 e8 15 1c 22 c0 a8 7f fe"),
    "NPort 5450": h("81 00 00 18 00 00 00 00 00 54 00 80 04 54 00 90 e8 58 b5 97 c0 a8 be c8"),
    "NPort W2250A": h("81 00 00 18 00 00 00 00 50 24 00 80 52 24 40 2c f4 fd 49 33 c0 a8 02 d2"),
}

DEVID_5110A = DeviceId(ap_id=0x80015100, hw_id=0x511A, mac=h("00 90 e8 3c f8 7e"))
DEVID_5110A_BYTES = h("00 51 01 80 1a 51 00 90 e8 3c f8 7e")
DEVID_W2250A = DeviceId(ap_id=0x80002450, hw_id=0x2452, mac=h("40 2c f4 fd 49 33"))

# Real 0x96 reply of an NPort W2250A (firmware 2.2, serial 9645, 2 ports).
REAL_KERNEL_INFO_W2250A = h(
    "96 00 00 24 00 00 00 00 50 24 00 80 52 24 40 2c f4 fd 49 33"
    "00 00 02 02 00 00 03 01 ad 25 00 00 18 00 00 02"
)

IP_ANY = h("00 00 00 00")
IP_DEV = h("c0 a8 7f fe")
IP_PC = h("c0 a8 7f 01")


def entry(local_port: int, sock_type: int = dsci.SOCK_TCP, state: int = 1) -> NetstatEntry:
    """A netstat entry with only the local port varying."""
    return NetstatEntry(
        remote_ip=IP_ANY,
        local_ip=IP_DEV,
        remote_port=0,
        local_port=local_port,
        sock_type=sock_type,
        state=state,
    )


ips = st.binary(min_size=4, max_size=4)
device_ids = st.builds(
    DeviceId,
    ap_id=st.integers(0, 2**32 - 1),
    hw_id=st.integers(0, 2**16 - 1),
    mac=st.binary(min_size=6, max_size=6),
)
netstat_entries = st.builds(
    NetstatEntry,
    remote_ip=ips,
    local_ip=ips,
    remote_port=st.integers(0, 0xFFFF),
    local_port=st.integers(0, 0xFFFF),
    sock_type=st.integers(0, 255),
    state=st.integers(0, 255),
    serial_port=st.integers(0, 255),
)
txids = st.integers(0, 2**32 - 1)


class HeaderAndDeviceIdTests(SynchronousTestCase):
    """Tests for L{Header} and L{DeviceId}."""

    def test_device_id_layout(self) -> None:
        """AP ID and HW ID are little-endian, the MAC is in wire order."""
        devid = DeviceId(ap_id=0x80000312, hw_id=0x0332, mac=h("00 90 e8 26 4a ab"))
        self.assertEqual(devid.to_bytes(), h("12 03 00 80 32 03 00 90 e8 26 4a ab"))

    def test_device_id_from_bytes(self) -> None:
        """A 12-byte block decodes into the same fields it was built from."""
        self.assertEqual(DeviceId.from_bytes(DEVID_5110A_BYTES), DEVID_5110A)

    def test_device_id_wrong_length(self) -> None:
        """A block that is not 12 bytes raises L{DsciError}."""
        self.assertRaises(DsciError, DeviceId.from_bytes, DEVID_5110A_BYTES[:11])

    def test_device_id_rejects_bad_values(self) -> None:
        """Out-of-range IDs and a short MAC are refused at construction."""
        self.assertRaises(ValueError, DeviceId, 2**32, 0, b"\x00" * 6)
        self.assertRaises(ValueError, DeviceId, 0, 2**16, b"\x00" * 6)
        self.assertRaises(ValueError, DeviceId, 0, 0, b"\x00" * 5)

    def test_header_round_trip(self) -> None:
        """The length is big-endian and the header decodes to what was encoded."""
        header = Header(opcode=0x14, status=0, length=22, txid=0x01020304)
        self.assertEqual(header.to_bytes(), h("14 00 00 16 01 02 03 04"))
        self.assertEqual(Header.from_bytes(header.to_bytes()), header)
        self.assertFalse(header.is_reply)

    def test_header_short(self) -> None:
        """Fewer than 8 bytes raise L{DsciError}."""
        self.assertRaises(DsciError, Header.from_bytes, b"\x01\x00\x00")


class ParseRequestTests(SynchronousTestCase):
    """Tests for L{dsci.parse_request}."""

    def test_broadcast_search(self) -> None:
        """The 8-byte search parses with no device ID."""
        request = dsci.parse_request(h("01 00 00 08 00 00 00 00"))
        self.assertEqual(request, Request(opcode=dsci.OP_SEARCH, txid=0, device_id=None))

    def test_targeted_search(self) -> None:
        """The 20-byte search DSU re-broadcasts carries the device ID."""
        request = dsci.parse_request(h("01 00 00 14 00 00 00 00") + DEVID_5110A_BYTES)
        self.assertEqual(request.device_id, DEVID_5110A)
        self.assertEqual(request.payload, b"")

    def test_dsu_network_config(self) -> None:
        """The real DSU 0x26 request parses with its two extra bytes as payload."""
        request = dsci.parse_request(h("26 00 00 16 00 00 00 00") + DEVID_5110A_BYTES + h("00 02"))
        self.assertEqual(request.opcode, dsci.OP_NETWORK_CONFIG)
        self.assertEqual(request.device_id, DEVID_5110A)
        self.assertEqual(request.payload, h("00 02"))

    def test_dsu_name(self) -> None:
        """The real DSU 0x10 request parses."""
        request = dsci.parse_request(h("10 00 00 14 00 00 00 00") + DEVID_5110A_BYTES)
        self.assertEqual(request, Request(dsci.OP_NAME, 0, DEVID_5110A, b""))

    def test_kernel_info_keeps_txid(self) -> None:
        """The transaction ID is read as opaque big-endian u32."""
        request = dsci.parse_request(h("16 00 00 14 de ad be ef") + DEVID_5110A_BYTES)
        self.assertEqual((request.opcode, request.txid), (dsci.OP_KERNEL_INFO, 0xDEADBEEF))

    def test_unknown_opcode(self) -> None:
        """An unknown opcode with a device ID still parses, for a status reply."""
        request = dsci.parse_request(h("2c 00 00 14 00 00 00 00") + DEVID_5110A_BYTES)
        self.assertEqual(type(request), Request)
        self.assertEqual(request.opcode, 0x2C)

    def test_netstat(self) -> None:
        """The driver's 0x14 request gives a L{NetstatRequest} for 128 entries."""
        request = dsci.parse_request(h("14 00 00 16 00 00 00 05") + DEVID_5110A_BYTES + h("80 00"))
        self.assertIsInstance(request, NetstatRequest)
        assert isinstance(request, NetstatRequest)
        self.assertEqual((request.max_entries, request.txid), (128, 5))

    def test_netstat_missing_max_entries(self) -> None:
        """A 0x14 without the max-entries field defaults to 128."""
        request = dsci.parse_request(h("14 00 00 14 00 00 00 00") + DEVID_5110A_BYTES)
        assert isinstance(request, NetstatRequest)
        self.assertEqual(request.max_entries, 128)

    def test_netstat_paged(self) -> None:
        """The driver's 0x1D request keeps the raw C{00 FF} and the start index."""
        request = dsci.parse_request(
            h("1d 00 00 18 00 00 00 00") + DEVID_5110A_BYTES + h("00 ff 05 00")
        )
        assert isinstance(request, NetstatPagedRequest)
        self.assertEqual(request.max_entries_raw, h("00 ff"))
        self.assertEqual((request.max_entries, request.start_index), (255, 5))

    def test_netstat_paged_missing_fields(self) -> None:
        """A 0x1D without paging fields starts at index 0."""
        request = dsci.parse_request(h("1d 00 00 14 00 00 00 00") + DEVID_5110A_BYTES)
        assert isinstance(request, NetstatPagedRequest)
        self.assertEqual((request.max_entries_raw, request.start_index), (b"", 0))

    def test_netstat_paged_start_byte_only(self) -> None:
        """A 0x1D cut after the start byte uses that byte."""
        request = dsci.parse_request(
            h("1d 00 00 17 00 00 00 00") + DEVID_5110A_BYTES + h("00 ff 07")
        )
        assert isinstance(request, NetstatPagedRequest)
        self.assertEqual(request.start_index, 7)

    def test_too_short(self) -> None:
        """Datagrams shorter than the header raise L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_request, b"")
        self.assertRaises(DsciError, dsci.parse_request, h("01 00 00 08 00 00 00"))

    def test_length_field_too_small(self) -> None:
        """A datagram longer than its length field (oversized) raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_request, h("01 00 00 08 00 00 00 00 00"))

    def test_length_field_too_large(self) -> None:
        """A datagram shorter than its length field raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_request, h("01 00 00 14 00 00 00 00"))

    def test_reply_bit(self) -> None:
        """A reply is never parsed as a request, so we never answer one."""
        for datagram in REAL_SEARCH_REPLIES.values():
            self.assertRaises(DsciError, dsci.parse_request, datagram)

    def test_non_search_without_device_id(self) -> None:
        """Only the search may omit the device ID."""
        self.assertRaises(DsciError, dsci.parse_request, h("10 00 00 08 00 00 00 00"))

    def test_partial_device_id(self) -> None:
        """A search with a cut device ID raises L{DsciError}."""
        datagram = h("01 00 00 0c 00 00 00 00 00 51 01 80")
        self.assertRaises(DsciError, dsci.parse_request, datagram)

    def test_is_addressed_to(self) -> None:
        """The broadcast search is for everyone, other requests only for their device."""
        search = dsci.parse_request(dsci.encode_search_request())
        name = dsci.parse_request(dsci.encode_request(dsci.OP_NAME, 0, DEVID_5110A))
        self.assertTrue(search.is_addressed_to(DEVID_W2250A))
        self.assertTrue(name.is_addressed_to(DEVID_5110A))
        self.assertFalse(name.is_addressed_to(DEVID_W2250A))


class SearchAndNameReplyTests(SynchronousTestCase):
    """Tests for the 0x81, 0x82 and 0x90 encoders and decoders."""

    def test_real_search_replies_round_trip(self) -> None:
        """Every real 0x81 reply decodes and re-encodes byte-identically."""
        for model, datagram in REAL_SEARCH_REPLIES.items():
            found = dsci.decode_search_reply(datagram)
            again = dsci.encode_search_reply(found.txid, found.device_id, found.ipv4)
            self.assertEqual(again, datagram, model)

    def test_search_reply_fields(self) -> None:
        """The 5232 reply carries its documented AP ID, HW ID and IP."""
        found = dsci.decode_search_reply(REAL_SEARCH_REPLIES["NPort 5232"])
        self.assertEqual((found.device_id.ap_id, found.device_id.hw_id), (0x80000312, 0x0332))
        self.assertEqual(found.ipv4, h("c0 a8 7f fe"))

    def test_search_reply_40_bytes(self) -> None:
        """The 40-byte 0x81 variant decodes its IPv4 from bytes 20-23."""
        datagram = dsci.encode_reply(dsci.OP_SEARCH, 0, DEVID_5110A, IP_DEV + b"\x00" * 16)
        self.assertEqual(len(datagram), 40)
        self.assertEqual(dsci.decode_search_reply(datagram).ipv4, IP_DEV)

    def test_search_reply_bad_ip(self) -> None:
        """An address that is not 4 bytes is refused."""
        self.assertRaises(ValueError, dsci.encode_search_reply, 0, DEVID_5110A, b"\x01")

    def test_devid_only_reply(self) -> None:
        """0x02 is answered by 0x82 with header and device ID, 20 bytes."""
        datagram = dsci.encode_devid_only_reply(dsci.OP_PING, 7, DEVID_5110A)
        self.assertEqual(datagram, h("82 00 00 14 00 00 00 07") + DEVID_5110A_BYTES)

    def test_name_reply_layout(self) -> None:
        """The 0x90 reply is 60 bytes with the name NUL-terminated and zero-padded."""
        datagram = dsci.encode_name_reply(0, DEVID_5110A, "Xcom-LAN")
        self.assertEqual(datagram[:20], h("90 00 00 3c 00 00 00 00") + DEVID_5110A_BYTES)
        self.assertEqual(datagram[20:], b"Xcom-LAN".ljust(40, b"\x00"))

    def test_name_truncated(self) -> None:
        """A long name is cut to 39 bytes so the NUL always fits."""
        datagram = dsci.encode_name_reply(0, DEVID_5110A, "x" * 50)
        self.assertEqual(len(datagram), 60)
        self.assertEqual(datagram[20:], b"x" * 39 + b"\x00")

    def test_name_non_ascii(self) -> None:
        """Non-ASCII characters are replaced by a question mark."""
        datagram = dsci.encode_name_reply(0, DEVID_5110A, "Kühler")
        self.assertEqual(dsci.decode_name_reply(datagram), "K?hler")

    def test_decode_name_ignores_garbage(self) -> None:
        """The name ends at the first NUL; real devices leave garbage after it."""
        body = b"NP6250_5896\x00" + b"\xaa" * 28
        datagram = dsci.encode_reply(dsci.OP_NAME, 0, DEVID_5110A, body)
        self.assertEqual(dsci.decode_name_reply(datagram), "NP6250_5896")


class FirmwareVersionTests(SynchronousTestCase):
    """Tests for L{dsci.encode_firmware_version} and its inverse."""

    def test_encode_examples(self) -> None:
        """The real 0x96 firmware fields encode from their version strings."""
        self.assertEqual(dsci.encode_firmware_version("1.1.31"), h("00 31 01 01"))
        self.assertEqual(dsci.encode_firmware_version("2.10"), h("00 00 10 02"))
        self.assertEqual(dsci.encode_firmware_version("2.2"), h("00 00 02 02"))
        self.assertEqual(dsci.encode_firmware_version("1.6"), struct.pack("<I", 0x01060000))

    def test_decode_examples(self) -> None:
        """The real 0x96 firmware fields decode to their version strings."""
        self.assertEqual(dsci.decode_firmware_version(h("00 31 01 01")), "1.1.31")
        self.assertEqual(dsci.decode_firmware_version(h("00 00 10 02")), "2.10")
        self.assertEqual(dsci.decode_firmware_version(h("00 00 02 02")), "2.2")

    def test_auto_report_example(self) -> None:
        """The Auto IP Report example 4.3.1 = 0x04030100 uses the same layout."""
        self.assertEqual(dsci.encode_firmware_version("4.3.1"), struct.pack("<I", 0x04030100))

    def test_fourth_number(self) -> None:
        """A non-zero low byte is kept as a fourth number."""
        self.assertEqual(dsci.decode_firmware_version(h("05 00 01 01")), "1.1.0.5")
        self.assertEqual(dsci.encode_firmware_version("1.1.0.5"), h("05 00 01 01"))

    def test_bad_strings(self) -> None:
        """Empty, over-long, non-hex or too many numbers are refused."""
        for bad in ["", "1..2", "1.100", "1.x", "1.2.3.4.5", "v1.2"]:
            self.assertRaises(ValueError, dsci.encode_firmware_version, bad)

    def test_decode_wrong_length(self) -> None:
        """Only 4 bytes decode."""
        self.assertRaises(ValueError, dsci.decode_firmware_version, b"\x01\x02")

    @given(st.binary(min_size=4, max_size=4))
    def test_bytes_round_trip(self, raw: bytes) -> None:
        """Any 4 bytes survive decode then encode."""
        self.assertEqual(dsci.encode_firmware_version(dsci.decode_firmware_version(raw)), raw)


class KernelInfoTests(SynchronousTestCase):
    """Tests for the 0x96 encoder and decoder."""

    def test_real_w2250a_reencodes(self) -> None:
        """The real W2250A reply is reproduced byte for byte."""
        datagram = dsci.encode_kernel_info_reply(
            0,
            DEVID_W2250A,
            "2.2",
            9645,
            2,
            unknown24=h("00 00 03 01"),
            unknown32=h("18 00"),
            unknown34=0,
        )
        self.assertEqual(datagram, REAL_KERNEL_INFO_W2250A)

    def test_decode_real_w2250a(self) -> None:
        """The real W2250A reply decodes to firmware 2.2, serial 9645, 2 ports."""
        info = dsci.decode_kernel_info_reply(REAL_KERNEL_INFO_W2250A)
        self.assertEqual(info, dsci.KernelInfo("2.2", 9645, 2, 0x0200))

    def test_layout_5110a(self) -> None:
        """The default layout matches the 5110A sample: firmware, unknown, serial, count."""
        datagram = dsci.encode_kernel_info_reply(0, DEVID_5110A, "1.1.31", 2002, 1)
        self.assertEqual(datagram[:4], h("96 00 00 24"))
        self.assertEqual(datagram[20:], h("00 31 01 01 01 00 02 00 d2 07 00 00 00 00 00 01"))

    def test_dsci_version(self) -> None:
        """Bytes 34-35 read as u16 LE give the driver's DSCI version."""
        datagram = dsci.encode_kernel_info_reply(0, DEVID_5110A, "1.1", 1, 4, unknown34=3)
        self.assertEqual(dsci.decode_kernel_info_reply(datagram).dsci_version, 0x0403)

    def test_serial_too_large(self) -> None:
        """A serial number beyond u16 is refused."""
        self.assertRaises(
            ValueError, dsci.encode_kernel_info_reply, 0, DEVID_5110A, "1.0", 2**16, 1
        )


class NetstatTests(SynchronousTestCase):
    """Tests for netstat entries and the 0x94 / 0x9D replies."""

    def test_entry_ports_little_endian(self) -> None:
        """The NPort 6250 ports encode as in its real reply."""
        udp = entry(4800, dsci.SOCK_UDP, 0)
        self.assertEqual(udp.to_bytes()[8:14], h("00 00 c0 12 00 00"))
        self.assertEqual(entry(4900).to_bytes()[10:14], h("24 13 01 01"))
        self.assertEqual(entry(23).to_bytes()[10:12], h("17 00"))

    def test_entry_layout(self) -> None:
        """An entry is 16 bytes: IPs, ports, type, state, serial port, zero."""
        connected = NetstatEntry(IP_PC, IP_DEV, 0x1234, 950, dsci.SOCK_TCP, 4, 0xFF)
        self.assertEqual(connected.to_bytes(), IP_PC + IP_DEV + h("34 12 b6 03 01 04 ff 00"))
        self.assertEqual(NetstatEntry.from_bytes(connected.to_bytes()), connected)

    def test_netstat_reply_layout(self) -> None:
        """0x94 carries the count LE16, two zero bytes, then the entries."""
        entries = [entry(950), entry(966)]
        datagram = dsci.encode_netstat_reply(9, DEVID_5110A, entries, 128)
        self.assertEqual(datagram[:8], h("94 00 00 38 00 00 00 09"))
        self.assertEqual(datagram[20:24], h("02 00 00 00"))
        self.assertEqual(datagram[24:], entries[0].to_bytes() + entries[1].to_bytes())

    def test_netstat_reply_empty(self) -> None:
        """An empty table is a 24-byte reply, enough to keep the driver alive."""
        datagram = dsci.encode_netstat_reply(0, DEVID_5110A, [])
        self.assertEqual(datagram, h("94 00 00 18 00 00 00 00") + DEVID_5110A_BYTES + bytes(4))

    def test_netstat_reply_truncated(self) -> None:
        """The reply holds at most the requested number of entries."""
        entries = [entry(port) for port in range(10)]
        reply = dsci.decode_netstat_reply(dsci.encode_netstat_reply(0, DEVID_5110A, entries, 3))
        self.assertEqual(reply.entries, tuple(entries[:3]))

    def test_netstat_reply_capped(self) -> None:
        """Never more than 128 entries, what MOXA's driver can read."""
        entries = [entry(port) for port in range(200)]
        datagram = dsci.encode_netstat_reply(0, DEVID_5110A, entries, 0xFFFF)
        self.assertEqual(len(datagram), 24 + 16 * dsci.NETSTAT_MAX_ENTRIES)

    def test_paged_first_page(self) -> None:
        """A first page is one page size long and points at the next index."""
        entries = [entry(port) for port in range(100)]
        datagram = dsci.encode_netstat_paged_reply(0, DEVID_5110A, entries, 0, 255)
        self.assertEqual(datagram[:4], h("9d 00 04 18"))
        self.assertEqual(datagram[20:24], h("40 00 40 00"))

    def test_paged_last_page(self) -> None:
        """The last page has next index 0."""
        entries = [entry(port) for port in range(100)]
        reply = dsci.decode_netstat_reply(
            dsci.encode_netstat_paged_reply(0, DEVID_5110A, entries, 64, 255)
        )
        self.assertEqual((reply.count, reply.next_index), (36, 0))
        self.assertEqual(reply.entries, tuple(entries[64:]))

    def test_paged_middle_page(self) -> None:
        """A smaller client maximum shortens the page and moves the next index."""
        entries = [entry(port) for port in range(10)]
        reply = dsci.decode_netstat_reply(
            dsci.encode_netstat_paged_reply(0, DEVID_5110A, entries, 2, 3)
        )
        self.assertEqual((reply.count, reply.next_index), (3, 5))
        self.assertEqual(reply.entries, tuple(entries[2:5]))

    def test_paged_start_past_end(self) -> None:
        """A start index past the table gives an empty last page."""
        datagram = dsci.encode_netstat_paged_reply(0, DEVID_5110A, [entry(1)], 9, 255)
        self.assertEqual(datagram[20:], h("00 00 00 00"))

    def test_paged_zero_max(self) -> None:
        """A maximum of 0 still returns a page, so paging makes progress."""
        entries = [entry(port) for port in range(3)]
        reply = dsci.decode_netstat_reply(
            dsci.encode_netstat_paged_reply(0, DEVID_5110A, entries, 0, 0)
        )
        self.assertEqual((reply.count, reply.next_index), (3, 0))

    def test_decode_count_too_large(self) -> None:
        """A count that does not fit the datagram raises L{DsciError}."""
        datagram = dsci.encode_reply(dsci.OP_NETSTAT, 0, DEVID_5110A, h("02 00 00 00") + bytes(16))
        self.assertRaises(DsciError, dsci.decode_netstat_reply, datagram)

    @given(st.lists(netstat_entries, max_size=140), st.integers(0, 0xFFFF), txids)
    def test_netstat_round_trip(
        self, entries: list[NetstatEntry], max_entries: int, txid: int
    ) -> None:
        """Encoded 0x94 replies decode to the first min(n, max, 128) entries."""
        reply = dsci.parse_reply(
            dsci.encode_netstat_reply(txid, DEVID_5110A, entries, max_entries)
        )
        decoded = dsci.decode_netstat_reply(reply)
        expected = tuple(entries[: min(max_entries, dsci.NETSTAT_MAX_ENTRIES)])
        self.assertEqual((reply.txid, decoded.entries, decoded.next_index), (txid, expected, 0))

    @given(st.lists(netstat_entries, max_size=300), st.integers(0, 300))
    def test_paging_walk(self, entries: list[NetstatEntry], max_entries: int) -> None:
        """Following next_index from 0 until 0 yields every entry once, in order."""
        seen: list[NetstatEntry] = []
        start = 0
        while True:
            datagram = dsci.encode_netstat_paged_reply(0, DEVID_5110A, entries, start, max_entries)
            self.assertLessEqual(len(datagram), 24 + 16 * dsci.NETSTAT_PAGE_SIZE)
            reply = dsci.decode_netstat_reply(datagram)
            seen.extend(reply.entries)
            if reply.next_index == 0:
                break
            start = reply.next_index
        self.assertEqual(seen, entries)


class AddressReplyTests(SynchronousTestCase):
    """Tests for the address, DNS, time and report-settings replies."""

    def test_address_replies(self) -> None:
        """0x21, 0x22 and 0x23 are answered with 24-byte 0xA1, 0xA2, 0xA3."""
        for opcode in (dsci.OP_IP, dsci.OP_NETMASK, dsci.OP_GATEWAY):
            datagram = dsci.encode_address_reply(opcode, 1, DEVID_5110A, IP_DEV)
            self.assertEqual(datagram[:8], bytes([opcode | 0x80]) + h("00 00 18 00 00 00 01"))
            self.assertEqual(dsci.decode_address_reply(datagram), IP_DEV)

    def test_address_reply_wrong_opcode(self) -> None:
        """Other opcodes are refused by the address encoder."""
        self.assertRaises(ValueError, dsci.encode_address_reply, 0x24, 0, DEVID_5110A, IP_DEV)

    def test_network_config_reply(self) -> None:
        """0xA6 is 40 bytes: 8 unknown bytes then IP, netmask, gateway (5110A values)."""
        ip, mask, gw = h("c0 a8 58 fa"), h("ff ff ff 00"), h("c0 a8 58 01")
        datagram = dsci.encode_network_config_reply(0, DEVID_5110A, ip, mask, gw)
        self.assertEqual(datagram[:4], h("a6 00 00 28"))
        self.assertEqual(datagram[20:], h("01 00 00 00 00 00 01 00") + ip + mask + gw)
        self.assertEqual(
            dsci.decode_network_config_reply(datagram), dsci.NetworkConfig(ip, mask, gw)
        )

    def test_dns_reply(self) -> None:
        """0xA7 is 28 bytes with two DNS servers."""
        datagram = dsci.encode_dns_reply(0, DEVID_5110A, IP_PC, IP_ANY)
        self.assertEqual(datagram[:4], h("a7 00 00 1c"))
        self.assertEqual(dsci.decode_dns_reply(datagram), (IP_PC, IP_ANY))

    def test_datetime_reply(self) -> None:
        """0x9A is 36 bytes: year-1900 LE16, month-1, 0, day, h, m, s, zeros."""
        when = datetime.datetime(2024, 3, 9, 13, 45, 30)
        datagram = dsci.encode_datetime_reply(0, DEVID_5110A, when)
        self.assertEqual(datagram[:4], h("9a 00 00 24"))
        self.assertEqual(datagram[20:], h("7c 00 02 00 09 0d 2d 1e") + bytes(8))
        self.assertEqual(dsci.decode_datetime_reply(datagram), when)

    def test_datetime_reply_invalid(self) -> None:
        """A 0x9A with an impossible date raises L{DsciError}."""
        datagram = dsci.encode_reply(dsci.OP_DATETIME, 0, DEVID_5110A, h("7c 00 0c") + bytes(13))
        self.assertRaises(DsciError, dsci.decode_datetime_reply, datagram)

    def test_time_server_reply(self) -> None:
        """0x9B is 60 bytes with a 40-byte string."""
        datagram = dsci.encode_time_server_reply(0, DEVID_5110A, "pool.ntp.org")
        self.assertEqual(datagram[:4], h("9b 00 00 3c"))
        self.assertEqual(dsci.decode_time_server_reply(datagram), "pool.ntp.org")

    def test_auto_report_settings_reply(self) -> None:
        """0xA5 is 64 bytes: 40-byte host, port LE16, period LE16."""
        datagram = dsci.encode_auto_report_settings_reply(0, DEVID_5110A, "10.0.0.1", 4002, 10)
        self.assertEqual(datagram[:4], h("a5 00 00 40"))
        self.assertEqual(datagram[60:], h("a2 0f 0a 00"))
        self.assertEqual(
            dsci.decode_auto_report_settings_reply(datagram),
            dsci.AutoReportSettings("10.0.0.1", 4002, 10),
        )


class StatusAndGenericReplyTests(SynchronousTestCase):
    """Tests for L{dsci.encode_status_reply} and L{dsci.encode_reply}."""

    def test_status_reply_header_only(self) -> None:
        """An unsupported opcode gets an 8-byte header with status 0x04."""
        datagram = dsci.encode_status_reply(0x29, 0x11, DEVID_5110A)
        self.assertEqual(datagram, h("a9 04 00 08 00 00 00 11"))

    def test_status_reply_with_device_id(self) -> None:
        """On request the status reply carries the device ID, 20 bytes."""
        datagram = dsci.encode_status_reply(0x29, 0, DEVID_5110A, include_device_id=True)
        self.assertEqual(datagram, h("a9 04 00 14 00 00 00 00") + DEVID_5110A_BYTES)

    def test_status_reply_needs_status(self) -> None:
        """Status 0 is not an error status."""
        self.assertRaises(ValueError, dsci.encode_status_reply, 0x29, 0, None, dsci.STATUS_OK)

    def test_encode_reply_sets_reply_bit(self) -> None:
        """The request opcode or the reply opcode give the same reply."""
        self.assertEqual(
            dsci.encode_reply(0x16, 0, DEVID_5110A, b"x"),
            dsci.encode_reply(0x96, 0, DEVID_5110A, b"x"),
        )

    def test_encode_reply_too_long(self) -> None:
        """A body that overflows the u16 length field is refused."""
        self.assertRaises(ValueError, dsci.encode_reply, 0x10, 0, DEVID_5110A, bytes(0xFFF0))


class ClientTests(SynchronousTestCase):
    """Tests for the client-side request encoders and L{dsci.parse_reply}."""

    def test_search_requests(self) -> None:
        """The broadcast search is 8 bytes, the targeted one 20."""
        self.assertEqual(dsci.encode_search_request(), h("01 00 00 08 00 00 00 00"))
        self.assertEqual(
            dsci.encode_search_request(0, DEVID_5110A),
            h("01 00 00 14 00 00 00 00") + DEVID_5110A_BYTES,
        )

    def test_netstat_request(self) -> None:
        """0x14 is 22 bytes ending in the driver's C{80 00}."""
        self.assertEqual(
            dsci.encode_netstat_request(0x0A0B0C0D, DEVID_5110A),
            h("14 00 00 16 0a 0b 0c 0d") + DEVID_5110A_BYTES + h("80 00"),
        )

    def test_netstat_paged_request(self) -> None:
        """0x1D is 24 bytes ending in C{00 FF <start> 00} and parses back."""
        datagram = dsci.encode_netstat_paged_request(0, DEVID_5110A, 64)
        self.assertEqual(
            datagram, h("1d 00 00 18 00 00 00 00") + DEVID_5110A_BYTES + h("00 ff 40 00")
        )
        request = dsci.parse_request(datagram)
        assert isinstance(request, NetstatPagedRequest)
        self.assertEqual(request.start_index, 64)

    def test_network_config_request(self) -> None:
        """0x26 is the 22 bytes DSU sends."""
        self.assertEqual(
            dsci.encode_network_config_request(0, DEVID_5110A),
            h("26 00 00 16 00 00 00 00") + DEVID_5110A_BYTES + h("00 02"),
        )

    def test_parse_reply(self) -> None:
        """A reply parses into opcode, txid, device ID and payload."""
        reply = dsci.parse_reply(REAL_SEARCH_REPLIES["NPort 5110A"])
        self.assertEqual((reply.opcode, reply.request_opcode), (0x81, 0x01))
        self.assertEqual((reply.device_id, reply.payload), (DEVID_5110A, h("c0 a8 58 fa")))

    def test_parse_reply_status(self) -> None:
        """A non-zero status raises L{DsciStatusError} carrying the status."""
        error = self.assertRaises(
            DsciStatusError, dsci.parse_reply, dsci.encode_status_reply(0x2C, 0)
        )
        self.assertEqual((error.opcode, error.status), (0xAC, dsci.STATUS_UNSUPPORTED))

    def test_parse_reply_rejects_request(self) -> None:
        """A request is not a reply."""
        self.assertRaises(DsciError, dsci.parse_reply, dsci.encode_search_request())

    def test_parse_reply_bad_length(self) -> None:
        """A reply whose length field disagrees with its size raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_reply, REAL_SEARCH_REPLIES["NPort 5232"][:-1])
        self.assertRaises(DsciError, dsci.parse_reply, REAL_SEARCH_REPLIES["NPort 5232"] + b"\0")

    def test_parse_reply_without_device_id(self) -> None:
        """An OK reply without a device ID raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_reply, h("81 00 00 08 00 00 00 00"))

    def test_decoder_wrong_opcode(self) -> None:
        """A decoder refuses the reply to another request."""
        self.assertRaises(DsciError, dsci.decode_name_reply, REAL_SEARCH_REPLIES["NPort 5232"])

    def test_decoder_short_payload(self) -> None:
        """A decoder refuses a payload shorter than its layout."""
        datagram = dsci.encode_reply(dsci.OP_KERNEL_INFO, 0, DEVID_5110A, bytes(15))
        self.assertRaises(DsciError, dsci.decode_kernel_info_reply, datagram)

    @given(txids, device_ids, st.binary(min_size=4, max_size=4))
    def test_search_reply_round_trip(self, txid: int, devid: DeviceId, ipv4: bytes) -> None:
        """Any search reply decodes to what it was encoded from."""
        datagram = dsci.encode_search_reply(txid, devid, ipv4)
        self.assertEqual(len(datagram), 24)
        self.assertEqual(dsci.decode_search_reply(datagram), dsci.SearchReply(txid, devid, ipv4))


class FuzzTests(SynchronousTestCase):
    """Property tests: parsers fail only with L{DsciError}."""

    @given(st.binary(max_size=64))
    def test_parse_request_arbitrary(self, datagram: bytes) -> None:
        """Arbitrary bytes either parse or raise L{DsciError}."""
        try:
            dsci.parse_request(datagram)
        except DsciError:
            pass

    @given(st.integers(0, 255), st.integers(0, 255), txids, st.binary(max_size=40))
    def test_parse_request_consistent_length(
        self, opcode: int, status: int, txid: int, rest: bytes
    ) -> None:
        """Datagrams with a correct length field either parse or raise L{DsciError}."""
        datagram = struct.pack(">BBHI", opcode, status, 8 + len(rest), txid) + rest
        try:
            request = dsci.parse_request(datagram)
        except DsciError:
            return
        self.assertEqual((request.opcode, request.txid), (opcode, txid))

    @given(st.integers(0x80, 0xFF), txids, st.binary(max_size=80))
    def test_parse_reply_and_decoders(self, opcode: int, txid: int, rest: bytes) -> None:
        """Replies and every decoder either succeed or raise L{DsciError}."""
        datagram = struct.pack(">BBHI", opcode, 0, 8 + len(rest), txid) + rest
        decoders = [
            dsci.decode_search_reply,
            dsci.decode_name_reply,
            dsci.decode_kernel_info_reply,
            dsci.decode_netstat_reply,
            dsci.decode_network_config_reply,
            dsci.decode_address_reply,
            dsci.decode_dns_reply,
            dsci.decode_datetime_reply,
            dsci.decode_time_server_reply,
            dsci.decode_auto_report_settings_reply,
        ]
        for decode in decoders:
            try:
                decode(datagram)
            except DsciError:
                pass

    @given(st.binary(max_size=64))
    def test_parse_auto_report_arbitrary(self, data: bytes) -> None:
        """Arbitrary bytes after the magic either parse or raise L{DsciError}."""
        try:
            dsci.decode_auto_report(b"MOXA" + data)
        except DsciError:
            pass


AUTO_REPORT_ARGS: dict[str, Any] = {
    "name": "NP5110_2002",
    "hw_id": 0x5110,
    "mac": h("00 90 e8 01 02 03"),
    "serial_number": 2002,
    "ip": h("c0 a8 01 02"),
    "netmask": h("ff ff ff 00"),
    "gateway": h("c0 a8 01 01"),
    "firmware": "4.3.1",
    "ap_id": 0x80005110,
}


class AutoReportTests(SynchronousTestCase):
    """Tests for the Auto IP Report datagram."""

    def test_layout(self) -> None:
        """MOXA then items 1-9 as {id, length, data}."""
        data = dsci.encode_auto_report(**AUTO_REPORT_ARGS)
        self.assertEqual(
            data,
            b"MOXA"
            + b"\x01\x0bNP5110_2002"
            + h("02 02 10 51")
            + h("03 06 00 90 e8 01 02 03")
            + h("04 04 d2 07 00 00")
            + h("05 04 c0 a8 01 02")
            + h("06 04 ff ff ff 00")
            + h("07 04 c0 a8 01 01")
            + h("08 04 00 01 03 04")
            + h("09 04 10 51 00 80"),
        )

    def test_little_endian_ips(self) -> None:
        """With ip_byte_order="little" the address bytes are reversed."""
        data = dsci.encode_auto_report(**AUTO_REPORT_ARGS, ip_byte_order="little")
        self.assertEqual(dsci.parse_auto_report(data)[dsci.AR_IP], h("02 01 a8 c0"))
        report = dsci.decode_auto_report(data, ip_byte_order="little")
        self.assertEqual(report.ip, h("c0 a8 01 02"))

    def test_bad_byte_order(self) -> None:
        """An unknown byte order is refused."""
        self.assertRaises(
            ValueError,
            dsci.encode_auto_report,
            **AUTO_REPORT_ARGS,
            ip_byte_order="middle",
        )

    def test_decode_round_trip(self) -> None:
        """A report decodes to the values it was built from."""
        data = dsci.encode_auto_report(**AUTO_REPORT_ARGS)
        self.assertEqual(dsci.decode_auto_report(data), dsci.AutoReport(**AUTO_REPORT_ARGS))

    def test_parse_keeps_unknown_items(self) -> None:
        """Unknown item ids are kept and the magic is matched ignoring case."""
        self.assertEqual(dsci.parse_auto_report(b"Moxa\x63\x02ab\x01\x00"), {0x63: b"ab", 1: b""})

    def test_parse_bad_magic(self) -> None:
        """A datagram not starting with MOXA raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_auto_report, b"MOXB\x01\x00")

    def test_parse_truncated(self) -> None:
        """A cut item header or item data raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.parse_auto_report, b"MOXA\x01")
        self.assertRaises(DsciError, dsci.parse_auto_report, b"MOXA\x01\x05abc")

    def test_decode_missing_item(self) -> None:
        """A report without all nine items raises L{DsciError}."""
        self.assertRaises(DsciError, dsci.decode_auto_report, b"MOXA\x01\x01x")

    def test_decode_wrong_size_item(self) -> None:
        """An item of the wrong size raises L{DsciError}."""
        data = dsci.encode_auto_report(**AUTO_REPORT_ARGS)
        self.assertRaises(DsciError, dsci.decode_auto_report, data + b"\x02\x01x")
