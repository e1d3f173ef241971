"""
Tests for `nport_twisted.wire.aspp`, the ASPP (Real COM command port) codec.

Byte sequences are the ones of the Real COM specification (realcom.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire import aspp
from nport_twisted.wire.aspp import (
    Alive,
    AsppError,
    BreakCountQuery,
    BreakCountReply,
    DataStatusQuery,
    DataStatusReply,
    DsrSensitivity,
    FlowControl,
    Flush,
    FlushStart,
    FlushStartReply,
    FlushStop,
    HostName,
    InputQueueQuery,
    Ioctl,
    Ipv6Check,
    LineControl,
    LineMode,
    LineStatusQuery,
    LineStatusReply,
    MalformedRequest,
    NaReply,
    NotifyMessage,
    OkReply,
    OutputQueueQuery,
    PollingMessage,
    PortInit,
    PortReset,
    QueueCountReply,
    Reply,
    ReplyParser,
    Request,
    RequestParser,
    SetBaud,
    SetXoff,
    SetXon,
    StartBreak,
    StartNotify,
    StopBreak,
    StopNotify,
    TimedBreak,
    TxFifo,
    UnknownReply,
    UnknownRequest,
    WaitOutputQueue,
    XonXoffChars,
)

FIRST_OPEN = bytes.fromhex("2C 08 06 03 01 01 00 00 01 00")
RAW_115200 = bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00")
RECOVERY = bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00 30 01 10 12 02 01 01")
NOTIFY_TAIL = bytes.fromhex("2C 03 01 01 01 26 20 B1 80")
MODE_8N1 = LineMode(8, "N", 1)
PARITIES: tuple[aspp.Parity, ...] = ("N", "E", "O", "M", "S")

EMPTY_REQUESTS: list[Request] = [
    LineStatusQuery(),
    InputQueueQuery(),
    OutputQueueQuery(),
    StartBreak(),
    StopBreak(),
    StartNotify(),
    StopNotify(),
    SetXon(),
    SetXoff(),
    FlushStop(),
    BreakCountQuery(),
    DataStatusQuery(),
]

# (wire bytes, request) for the requests with a payload.
REQUEST_EXAMPLES: list[tuple[str, Request]] = [
    ("10 02 06 0A", Ioctl(6, LineMode(7, "E", 1))),
    ("11 04 01 01 00 01", FlowControl(True, True, False, True)),
    ("12 02 00 01", LineControl(False, True)),
    ("28 01 07", Alive(7)),
    ("30 01 01", TxFifo(1)),
    ("32 01 09", DsrSensitivity(9)),
    ("35 05 02 E8 03 00 00", FlushStart(2, 1000)),
    ("2B 03 61 62 63", HostName(b"abc")),
]

# (wire bytes, reply) for every kind of reply.
REPLY_EXAMPLES: list[tuple[str, Reply]] = [
    ("12 4F 4B", OkReply(0x12)),
    ("17 4E 41", NaReply(0x17)),
    ("15 02 34 12", QueueCountReply(0x15, 0x1234)),
    ("27 01 09", PollingMessage(9)),
    ("35 04 02 01 00 00", FlushStartReply(0x102)),
    ("37 02 01 02", BreakCountReply(0x102)),
    ("38 01 05", DataStatusReply(5)),
    ("2C 03 FF FF FF", LineStatusReply(0x2C, 0xFF, 0xFF, 0xFF)),
]

BAUDS = (
    300, 600, 1200, 2400, 4800, 7200, 9600, 19200, 38400, 57600,
    115200, 230400, 460800, 921600, 150, 134, 110, 75, 50,
)  # fmt: skip
LINUX_3_BYTE_CODES = bytes.fromhex("10 11 12 14 17 18 21 22 24 25 2B 30 33 34 27")

# Requests whose payload length is fixed, with that length.
FIXED_LENGTHS = {
    0x10: 2,
    0x11: 4,
    0x12: 2,
    0x13: 0,
    0x14: 1,
    0x15: 0,
    0x16: 0,
    0x17: 4,
    0x18: 2,
    0x20: 3,
    0x21: 0,
    0x22: 0,
    0x23: 2,
    0x24: 0,
    0x25: 0,
    0x28: 1,
    0x2F: 4,
    0x30: 1,
    0x32: 1,
    0x33: 0,
    0x34: 0,
    0x35: 5,
    0x36: 0,
    0x37: 0,
    0x38: 0,
}


def _parse(data: bytes, ipv6_check: bool = False) -> list[Request | Ipv6Check]:
    return RequestParser(ipv6_check=ipv6_check).feed(data)


def _feed_chunks(feed: Callable[[bytes], Sequence[object]], chunks: list[bytes]) -> list[object]:
    events: list[object] = []
    for chunk in chunks:
        events.extend(feed(chunk))
    return events


def _every_split(data: bytes) -> list[list[bytes]]:
    """All two-way splits of ``data``, plus byte-by-byte."""
    splits = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    return splits + [[data[i : i + 1] for i in range(len(data))]]


def _all_encoded_replies() -> list[bytes]:
    """One output of every reply encoder, OK for every code that has an OK reply."""
    oks = [c for c, size in aspp.CLIENT_REPLY_LENGTHS.items() if size == 3]
    replies = [aspp.encode_ok(c) for c in oks if c not in (0x27, 0x38)]
    replies += [aspp.encode_line_status(c, True, True, True) for c in (0x13, 0x2C)]
    replies += [aspp.encode_queue_count(c, 1) for c in (0x15, 0x16, 0x2F)]
    return replies + [
        aspp.encode_na(0x17),
        aspp.encode_baud_rejected(),
        aspp.encode_notify(0, 0, 0),
        aspp.encode_polling(1),
        aspp.encode_flush_start_done(1),
        aspp.encode_break_count(1),
        aspp.encode_data_status(1),
    ]


class RequestParserSpecSequenceTests(SynchronousTestCase):
    """
    The request byte sequences quoted by the specification.
    """

    def test_first_open(self) -> None:
        """The first PORT_INIT after module load is 9600 8N1 with DTR, RTS and IXON."""
        expected = PortInit(6, MODE_8N1, True, True, False, False, True, False)
        [event] = _parse(FIRST_OPEN)
        self.assertEqual(event, expected)
        assert isinstance(event, PortInit)
        self.assertEqual(event.baud, 9600)
        self.assertEqual(event.flow, FlowControl(False, False, True, False))

    def test_raw_115200(self) -> None:
        """A typical tcsetattr PORT_INIT is 115200 8N1 without flow control."""
        [event] = _parse(RAW_115200)
        self.assertEqual(event, PortInit(10, MODE_8N1, True, True, False, False, False, False))
        assert isinstance(event, PortInit)
        self.assertEqual(event.baud, 115200)

    def test_recovery_batch(self) -> None:
        """The reconnect-recovery batch in one segment gives its three requests in order."""
        self.assertEqual(
            _parse(RECOVERY),
            [
                PortInit(10, MODE_8N1, True, True, False, False, False, False),
                TxFifo(16),
                LineControl(True, True),
            ],
        )

    def test_port_init_long_payload(self) -> None:
        """PORT_INIT accepts 8 to 63 payload bytes and ignores the extra ones."""
        head = RAW_115200[2:]
        [long] = _parse(bytes((0x2C, 63)) + head + bytes(55))
        self.assertEqual(long, _parse(RAW_115200)[0])
        for size in (7, 64):
            payload = (head + bytes(64))[:size]
            self.assertEqual(
                _parse(bytes((0x2C, size)) + payload), [MalformedRequest(0x2C, payload)]
            )

    def test_setbaud_little_endian(self) -> None:
        """SETBAUD carries the baud rate as LE32."""
        self.assertEqual(_parse(bytes.fromhex("17 04 40 42 0F 00")), [SetBaud(1_000_000)])
        self.assertEqual(_parse(bytes.fromhex("17 04 C8 00 00 00")), [SetBaud(200)])

    def test_xonxoff(self) -> None:
        """The default XONXOFF request carries DC1 and DC3."""
        self.assertEqual(_parse(bytes.fromhex("18 02 11 13")), [XonXoffChars(0x11, 0x13)])

    def test_wait_oqueue_timeout(self) -> None:
        """WAIT_OQUEUE carries an LE32 timeout read as milliseconds."""
        [event] = _parse(bytes.fromhex("2F 04 10 27 00 00"))
        self.assertEqual(event, WaitOutputQueue(10000))
        assert isinstance(event, WaitOutputQueue)
        self.assertEqual(event.timeout_ms, 10000)

    def test_wait_oqueue_zero(self) -> None:
        """A WAIT_OQUEUE timeout of 0 means 1 ms."""
        [event] = _parse(bytes.fromhex("2F 04 00 00 00 00"))
        assert isinstance(event, WaitOutputQueue)
        self.assertEqual((event.timeout, event.timeout_ms), (0, 1))

    def test_flush_modes(self) -> None:
        """FLUSH carries its mode: 0 RX, 1 TX, 2 both."""
        data = bytes.fromhex("14 01 00 14 01 01 14 01 02")
        self.assertEqual(
            _parse(data), [Flush(aspp.FLUSH_RX), Flush(aspp.FLUSH_TX), Flush(aspp.FLUSH_BOTH)]
        )
        self.assertEqual((aspp.FLUSH_RX, aspp.FLUSH_TX, aspp.FLUSH_BOTH), (0, 1, 2))

    def test_timed_break_big_endian(self) -> None:
        """BREAK_SEND carries its duration as BE16, acknowledged only in 10..1000 ms."""
        [event] = _parse(bytes.fromhex("23 02 01 F4"))
        self.assertEqual(event, TimedBreak(500))
        assert isinstance(event, TimedBreak)
        self.assertTrue(event.in_range)
        self.assertEqual(
            [TimedBreak(ms).in_range for ms in (9, 10, 1000, 1001)], [False, True, True, False]
        )

    def test_port_reset(self) -> None:
        """PORT_RESET is valid only with the payload "16a"."""
        self.assertEqual(_parse(bytes.fromhex("20 03 31 36 61")), [PortReset(True)])
        self.assertEqual(_parse(bytes.fromhex("20 03 31 36 62")), [PortReset(False)])
        self.assertEqual(_parse(b"\x20\x02\x31\x36"), [MalformedRequest(0x20, b"16")])


class RequestParserTests(SynchronousTestCase):
    """
    Decoding of every request and framing of the command stream.
    """

    def test_payload_requests(self) -> None:
        """Requests with a payload decode their fields and encode back to the same bytes."""
        for wire, event in REQUEST_EXAMPLES:
            data = bytes.fromhex(wire)
            self.assertEqual(_parse(data), [event])
            self.assertEqual(aspp.encode_request(event), data)
        # Flags are tested for non-zero, as the device does.
        self.assertEqual(_parse(bytes.fromhex("12 02 05 00")), [LineControl(True, False)])

    def test_empty_requests(self) -> None:
        """Requests without payload decode to their event."""
        data = b"".join(bytes((event.code, 0)) for event in EMPTY_REQUESTS)
        self.assertEqual(_parse(data), EMPTY_REQUESTS)

    def test_host_name_any_length(self) -> None:
        """HOST keeps its payload raw, whatever its length."""
        self.assertEqual(_parse(b"\x2b\x03abc\x2b\x00"), [HostName(b"abc"), HostName(b"")])

    def test_unknown_codes(self) -> None:
        """Codes without a request definition become UnknownRequest."""
        for code in (0x29, 0x2A, 0x2E, 0x31, 0x39, 0x26, 0x27, 0x2D, 0x00, 0xFF):
            self.assertEqual(_parse(bytes((code, 2, 1, 2))), [UnknownRequest(code, b"\x01\x02")])

    def test_wrong_length(self) -> None:
        """A wrong len gives MalformedRequest and the next request still parses."""
        for code, size in FIXED_LENGTHS.items():
            for wrong in {0, size + 1} - {size}:
                payload = bytes(range(1, wrong + 1))
                data = bytes((code, wrong)) + payload + b"\x21\x00"
                self.assertEqual(_parse(data), [MalformedRequest(code, payload), StartBreak()])

    def test_split_everywhere(self) -> None:
        """Splitting a stream at any byte boundary gives the same events."""
        streams = [
            FIRST_OPEN,
            RECOVERY,
            bytes.fromhex("2C 08 FF 03 01 01 00 00 01 01 17 04 C8 00 00 00"),
            bytes.fromhex("18 02 11 13 30 01 10 2F 04 00 00 00 00 14 01 02 12 01 00 2B 02 68 69"),
            bytes.fromhex("29 00 23 02 00 64 20 03 31 36 61 28 01 05 2C 00"),
        ]
        for stream in streams:
            expected = _parse(stream)
            for chunks in _every_split(stream):
                self.assertEqual(_feed_chunks(RequestParser().feed, chunks), expected)

    def test_partial_tail_kept(self) -> None:
        """An incomplete frame is kept until the rest arrives."""
        parser = RequestParser()
        self.assertEqual(parser.feed(RECOVERY[:12]), [_parse(RAW_115200)[0]])
        self.assertEqual(parser.buffered, 2)
        self.assertEqual(parser.feed(RECOVERY[12:]), [TxFifo(16), LineControl(True, True)])
        self.assertEqual(parser.buffered, 0)

    def test_partial_bounded(self) -> None:
        """The kept partial frame never exceeds 2 + 254 bytes."""
        parser = RequestParser()
        self.assertEqual(parser.feed(b"\x2b\xff" + bytes(254)), [])
        self.assertEqual(parser.buffered, 256)
        self.assertEqual(parser.feed(b"\x00\x13"), [HostName(bytes(255))])
        self.assertEqual(parser.buffered, 1)

    def test_ipv6_check(self) -> None:
        """With ipv6_check the first 16 bytes are the IPv6 check, even when split."""
        check = bytes(range(0x21, 0x31))
        stream = check + FIRST_OPEN
        expected = [Ipv6Check(check), _parse(FIRST_OPEN)[0]]
        for chunks in _every_split(stream):
            self.assertEqual(_feed_chunks(RequestParser(ipv6_check=True).feed, chunks), expected)

    def test_ipv6_check_once(self) -> None:
        """Only the first 16 bytes are the IPv6 check; the default parser has none."""
        parser = RequestParser(ipv6_check=True)
        self.assertEqual(parser.feed(bytes(16)), [Ipv6Check(bytes(16))])
        self.assertEqual(parser.feed(bytes(16)), [UnknownRequest(0, b"")] * 8)
        self.assertEqual(_parse(bytes(4)), [UnknownRequest(0, b"")] * 2)


class EncodeRequestTests(SynchronousTestCase):
    """
    The client-side request encoder.
    """

    def test_spec_sequences(self) -> None:
        """Encoding the decoded spec sequences gives the original bytes back."""
        for stream in (FIRST_OPEN, RECOVERY, bytes.fromhex("17 04 C8 00 00 00 18 02 11 13")):
            events = [e for e in _parse(stream) if not isinstance(e, Ipv6Check)]
            self.assertEqual(b"".join(aspp.encode_request(e) for e in events), stream)

    def test_fixed_encodings(self) -> None:
        """Byte order and magic payloads are encoded as on the wire."""
        self.assertEqual(aspp.encode_request(TimedBreak(500)), bytes.fromhex("23 02 01 F4"))
        self.assertEqual(aspp.encode_request(PortReset(True)), b"\x20\x0316a")
        self.assertEqual(aspp.encode_request(StartBreak()), b"\x21\x00")
        self.assertEqual(
            aspp.encode_request(FlushStart(2, 1000)), bytes.fromhex("35 05 02 E8 03 00 00")
        )

    def test_out_of_range(self) -> None:
        """Values that do not fit their field raise AsppError."""
        for event in (
            SetBaud(-1),
            SetBaud(1 << 32),
            TimedBreak(0x10000),
            Alive(256),
            HostName(bytes(256)),
            UnknownRequest(0x100, b""),
            Ioctl(0x100, MODE_8N1),
        ):
            self.assertRaises(AsppError, aspp.encode_request, event)


class ReplyEncoderTests(SynchronousTestCase):
    """
    Device reply encoders: exact bytes and the lengths of the Linux splitter.
    """

    def test_ok_na(self) -> None:
        """OK and NA are the code followed by ASCII "OK" / "NA"."""
        self.assertEqual(aspp.encode_ok(0x12), bytes.fromhex("12 4F 4B"))
        self.assertEqual(aspp.encode_na(0x17), bytes.fromhex("17 4E 41"))

    def test_line_status(self) -> None:
        """LSTATUS and PORT_INIT replies are 5 bytes; other codes are refused."""
        self.assertEqual(
            aspp.encode_line_status(0x2C, True, False, True), bytes.fromhex("2C 03 01 00 01")
        )
        self.assertEqual(
            aspp.encode_line_status(0x13, False, True, False), bytes.fromhex("13 03 00 01 00")
        )
        self.assertEqual(aspp.encode_baud_rejected(), bytes.fromhex("2C 03 FF FF FF"))
        self.assertRaises(AsppError, aspp.encode_line_status, 0x12, True, True, True)

    def test_queue_count(self) -> None:
        """Queue counts are LE16 and saturate at 0xFFFF."""
        self.assertEqual(aspp.encode_queue_count(0x2F, 0x1234), bytes.fromhex("2F 02 34 12"))
        self.assertEqual(aspp.encode_queue_count(0x15, 70000), bytes.fromhex("15 02 FF FF"))
        self.assertEqual(aspp.encode_queue_count(0x16, -5), bytes.fromhex("16 02 00 00"))
        self.assertRaises(AsppError, aspp.encode_queue_count, 0x14, 0)

    def test_notify(self) -> None:
        """NOTIFY always carries the 0x80 marker in the hold byte."""
        self.assertEqual(aspp.encode_notify(0x20, 0xB1, 0), bytes.fromhex("26 20 B1 80"))
        self.assertEqual(aspp.encode_notify(0, 0, aspp.HOLD_XOFF), bytes.fromhex("26 00 00 88"))
        self.assertRaises(AsppError, aspp.encode_notify, 0x100, 0, 0)

    def test_other_replies(self) -> None:
        """POLLING, FLUSH_START, BREAK_COUNT (big-endian) and DATA_STATUS replies."""
        self.assertEqual(aspp.encode_polling(7), bytes.fromhex("27 01 07"))
        self.assertEqual(aspp.encode_flush_start_done(0x102), bytes.fromhex("35 04 02 01 00 00"))
        self.assertEqual(aspp.encode_break_count(0x102), bytes.fromhex("37 02 01 02"))
        self.assertEqual(aspp.encode_break_count(1 << 20), bytes.fromhex("37 02 FF FF"))
        self.assertEqual(aspp.encode_data_status(0xF3), bytes.fromhex("38 01 03"))

    def test_ipv6_echo(self) -> None:
        """The IPv6 echo is the 16 bytes unchanged; any other size is refused."""
        self.assertEqual(aspp.encode_ipv6_echo(bytes(range(16))), bytes(range(16)))
        self.assertRaises(AsppError, aspp.encode_ipv6_echo, bytes(15))

    def test_linux_table(self) -> None:
        """REPLY_LENGTHS is the Linux daemon's table; 0x2D/0x35/0x37/0x38 are not safe."""
        expected = dict.fromkeys((0x26, 0x2F, 0x16, 0x15), 4) | dict.fromkeys((0x13, 0x2C), 5)
        expected |= dict.fromkeys(LINUX_3_BYTE_CODES, 3)
        self.assertEqual(aspp.REPLY_LENGTHS, expected)
        self.assertEqual(aspp.LINUX_SAFE_REPLY_CODES, frozenset(expected))
        self.assertFalse({0x2D, 0x35, 0x37, 0x38} & aspp.LINUX_SAFE_REPLY_CODES)

    def test_lengths_match_table(self) -> None:
        """Every encoder produces exactly the length the splitter expects for its code."""
        for reply in _all_encoded_replies():
            self.assertEqual(len(reply), aspp.CLIENT_REPLY_LENGTHS[reply[0]], reply.hex())
        self.assertEqual(len(_all_encoded_replies()), 30)


class ReplyParserTests(SynchronousTestCase):
    """
    The client-side reply splitter.
    """

    def test_notify_tail(self) -> None:
        """A PORT_INIT reply followed by a NOTIFY splits into both."""
        [status, notify] = ReplyParser().feed(NOTIFY_TAIL)
        self.assertEqual(status, LineStatusReply(0x2C, 1, 1, 1))
        self.assertEqual(notify, NotifyMessage(0x20, 0xB1, 0x80))
        assert isinstance(notify, NotifyMessage)
        self.assertEqual(
            (notify.cts, notify.dsr, notify.ri, notify.dcd), (True, True, False, True)
        )
        deltas = (notify.delta_cts, notify.delta_dsr, notify.delta_ri, notify.delta_dcd)
        self.assertEqual(deltas, (True, False, False, False))

    def test_split_everywhere(self) -> None:
        """Splitting a reply stream at any byte boundary gives the same replies."""
        stream = (
            NOTIFY_TAIL
            + bytes.fromhex("30 4F 4B 12 4F 4B 2F 02 00 00 27 01 05")
            + bytes.fromhex("35 04 01 00 00 00 37 02 00 03 38 01 01 17 4E 41")
        )
        expected = ReplyParser().feed(stream)
        self.assertEqual(len(expected), 10)
        for chunks in _every_split(stream):
            self.assertEqual(_feed_chunks(ReplyParser().feed, chunks), expected)

    def test_decoded_values(self) -> None:
        """Each reply kind decodes its value with the right byte order."""
        for wire, reply in REPLY_EXAMPLES:
            self.assertEqual(ReplyParser().feed(bytes.fromhex(wire)), [reply])
        self.assertTrue(LineStatusReply(0x2C, 0xFF, 0xFF, 0xFF).baud_rejected)
        self.assertFalse(LineStatusReply(0x2C, 1, 1, 1).baud_rejected)

    def test_encoders_decode(self) -> None:
        """Every reply encoder's output decodes to one reply with its code."""
        for data in _all_encoded_replies():
            [reply] = ReplyParser().feed(data)
            self.assertEqual(reply.code, data[0])
            self.assertNotIsInstance(reply, UnknownReply)

    def test_unknown_first_byte(self) -> None:
        """An unknown first byte takes the rest of the buffer as one reply."""
        parser = ReplyParser()
        self.assertEqual(
            parser.feed(bytes.fromhex("12 4F 4B 2D 01 02 12 4F")),
            [OkReply(0x12), UnknownReply(bytes.fromhex("2D 01 02 12 4F"))],
        )
        self.assertEqual(parser.feed(bytes.fromhex("12 4F 4B")), [OkReply(0x12)])
        self.assertEqual(UnknownReply(b"\x2d").code, 0x2D)

    def test_not_ok_na(self) -> None:
        """A 3-byte reply that is neither OK nor NA is kept as UnknownReply."""
        self.assertEqual(
            ReplyParser().feed(b"\x30XY\x30OK"), [UnknownReply(b"\x30XY"), OkReply(0x30)]
        )


class ModeAndBaudTests(SynchronousTestCase):
    """
    The mode byte and baud index encodings.
    """

    def test_mode_examples(self) -> None:
        """8N1 is 0x03, 7E1 is 0x0A and 8O2 is 0x17."""
        examples = {
            0x03: LineMode(8, "N", 1),
            0x0A: LineMode(7, "E", 1),
            0x17: LineMode(8, "O", 2),
        }
        for byte, mode in examples.items():
            self.assertEqual(aspp.encode_mode(mode), byte)
            self.assertEqual(aspp.decode_mode(byte), mode)

    def test_mode_round_trip(self) -> None:
        """All parity, data bit and stop bit combinations round-trip."""
        modes = {
            LineMode(size, parity, (1.5 if size == 5 else 2) if extra else 1)
            for size in (5, 6, 7, 8)
            for parity in PARITIES
            for extra in (0, 1)
        }
        self.assertEqual(len(modes), 40)
        for mode in modes:
            self.assertEqual(aspp.decode_mode(aspp.encode_mode(mode)), mode)

    def test_mode_decode_details(self) -> None:
        """Parity values are not flags, unknown ones mean none, and 5 bits get 1.5 stop bits."""
        self.assertEqual(aspp.decode_mode(0x18 | 0x02), LineMode(7, "M", 1))
        self.assertEqual(aspp.decode_mode(0x20 | 0x04 | 0x01), LineMode(6, "S", 2))
        self.assertEqual(aspp.decode_mode(0x28 | 0x03), MODE_8N1)
        self.assertEqual(aspp.decode_mode(0xC0 | 0x04), LineMode(5, "N", 1.5))

    def test_mode_lossy_stop_bits(self) -> None:
        """Stop bits above 1 share one flag, so impossible combinations come back changed."""
        self.assertEqual(aspp.decode_mode(aspp.encode_mode(LineMode(5, "N", 2))).stopbits, 1.5)
        self.assertEqual(aspp.decode_mode(aspp.encode_mode(LineMode(8, "N", 1.5))).stopbits, 2)
        self.assertRaises(ValueError, LineMode, 9, "N", 1)
        self.assertRaises(ValueError, LineMode, 8, "X", 1)
        self.assertRaises(ValueError, LineMode, 8, "N", 3)

    def test_baud_table(self) -> None:
        """The baud index table of the wire, 0xFF meaning "not in the table"."""
        self.assertEqual(aspp.BAUD_TABLE, BAUDS)
        for index, baud in enumerate(BAUDS):
            self.assertEqual(aspp.baud_from_index(index), baud)
            self.assertEqual(aspp.index_from_baud(baud), index)
        self.assertEqual([aspp.index_from_baud(b) for b in (200, 1800, 0, 1_000_000)], [0xFF] * 4)
        self.assertEqual([aspp.baud_from_index(i) for i in (19, 0xFF)], [None, None])
        self.assertEqual(Ioctl(0xFF, MODE_8N1).baud, None)


# --- property tests ------------------------------------------------------------

_u8 = st.integers(0, 0xFF)
_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_bool = st.booleans()
_modes = st.integers(0, 0x3F).map(aspp.decode_mode)
_known = set(FIXED_LENGTHS) | {0x2B, 0x2C}

_requests: st.SearchStrategy[Request] = st.one_of(
    st.builds(Ioctl, _u8, _modes),
    st.builds(FlowControl, _bool, _bool, _bool, _bool),
    st.builds(LineControl, _bool, _bool),
    st.sampled_from(EMPTY_REQUESTS),
    st.builds(Flush, _u8),
    st.builds(SetBaud, _u32),
    st.builds(XonXoffChars, _u8, _u8),
    st.builds(PortReset, _bool),
    st.builds(TimedBreak, _u16),
    st.builds(Alive, _u8),
    st.builds(HostName, st.binary(max_size=255)),
    st.builds(PortInit, _u8, _modes, _bool, _bool, _bool, _bool, _bool, _bool),
    st.builds(WaitOutputQueue, _u32),
    st.builds(TxFifo, _u8),
    st.builds(DsrSensitivity, _u8),
    st.builds(FlushStart, _u8, _u32),
    st.builds(UnknownRequest, _u8.filter(lambda c: c not in _known), st.binary(max_size=255)),
)


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


class PropertyTests(SynchronousTestCase):
    """
    Generated round trips and robustness.
    """

    @given(st.lists(_requests, max_size=8), st.lists(st.integers(0, 5000), max_size=6))
    def test_request_round_trip(self, events: list[Request], cuts: list[int]) -> None:
        """Encoded requests parse back to the same events, however the stream is chunked."""
        stream = b"".join(aspp.encode_request(event) for event in events)
        self.assertEqual(_feed_chunks(RequestParser().feed, _chunked(stream, cuts)), events)

    @given(st.binary(max_size=700), st.lists(st.integers(0, 700), max_size=8), st.booleans())
    def test_arbitrary_bytes(self, data: bytes, cuts: list[int], ipv6: bool) -> None:
        """Arbitrary bytes never raise, chunking changes no event, and the tail stays small."""
        parser = RequestParser(ipv6_check=ipv6)
        events = _feed_chunks(parser.feed, _chunked(data, cuts))
        self.assertEqual(events, _parse(data, ipv6_check=ipv6))
        self.assertLessEqual(parser.buffered, 256)

    @given(
        st.lists(st.sampled_from(sorted(aspp.CLIENT_REPLY_LENGTHS)), max_size=10),
        st.lists(st.integers(0, 100), max_size=6),
    )
    def test_reply_chunking(self, codes: list[int], cuts: list[int]) -> None:
        """A stream of well-known replies splits the same way however it is chunked."""
        stream = b"".join(bytes((c,)) + bytes(aspp.CLIENT_REPLY_LENGTHS[c] - 1) for c in codes)
        replies = _feed_chunks(ReplyParser().feed, _chunked(stream, cuts))
        self.assertEqual(replies, ReplyParser().feed(stream))
        self.assertEqual([reply.code for reply in replies], codes)  # type: ignore[attr-defined]
