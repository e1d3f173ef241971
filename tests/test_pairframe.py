"""
Tests for L{nport_twisted.wire.pairframe}, our Pair Connection format.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire.pairframe import (
    MAX_PAYLOAD,
    Break,
    Data,
    Hello,
    Lines,
    PairDecoder,
    PairFrameError,
    Role,
    encode_break,
    encode_data,
    encode_hello,
    encode_lines,
)


def started() -> PairDecoder:
    """A decoder that has seen the master's HELLO."""
    decoder = PairDecoder()
    decoder.feed(encode_hello(Role.MASTER))
    return decoder


class PairFrameTests(SynchronousTestCase):
    """Encoding and decoding of each frame, and malformed streams."""

    def test_hello_bytes(self) -> None:
        """HELLO: type 1, length 6, magic, version 1, role."""
        self.assertEqual(encode_hello(Role.SLAVE), b"\x01\x00\x06NPPC\x01\x02")
        self.assertEqual(PairDecoder().feed(encode_hello(Role.SLAVE)), [Hello(Role.SLAVE)])

    def test_data_round_trip(self) -> None:
        """DATA carries any bytes, 0xFF and NUL included."""
        payload = bytes(range(256))
        self.assertEqual(encode_data(payload)[:3], b"\x02\x01\x00")
        self.assertEqual(started().feed(encode_data(payload)), [Data(payload)])

    def test_long_data_split(self) -> None:
        """More than 65535 bytes become several frames."""
        payload = b"x" * (MAX_PAYLOAD + 10)
        events = started().feed(encode_data(payload))
        self.assertEqual([len(e.data) for e in events if isinstance(e, Data)], [MAX_PAYLOAD, 10])

    def test_nothing_for_nothing(self) -> None:
        """encode_data(b'') is no frame at all."""
        self.assertEqual(encode_data(b""), b"")

    def test_lines(self) -> None:
        """LINES: the four bits, and 0x80 for a device without modem lines."""
        lines = Lines(cts=True, dsr=False, dcd=True, ri=False)
        self.assertEqual(encode_lines(lines), b"\x03\x00\x01\x05")
        self.assertEqual(started().feed(encode_lines(lines)), [lines])
        self.assertEqual(started().feed(encode_lines(Lines(present=False))),
                         [Lines(present=False)])

    def test_break(self) -> None:
        """BREAK carries a duration in milliseconds."""
        self.assertEqual(started().feed(encode_break(250)), [Break(250)])

    def test_split_anywhere(self) -> None:
        """Frames split byte by byte decode the same."""
        stream = encode_hello(Role.MASTER) + encode_data(b"abc") + encode_lines(Lines(dsr=True))
        decoder = PairDecoder()
        events = [e for i in range(len(stream)) for e in decoder.feed(stream[i:i + 1])]
        self.assertEqual(events, [Hello(Role.MASTER), Data(b"abc"), Lines(dsr=True)])

    def test_unknown_type_skipped(self) -> None:
        """A frame type of a later version is skipped and counted."""
        decoder = started()
        self.assertEqual(decoder.feed(b"\x7f\x00\x02zz" + encode_data(b"a")), [Data(b"a")])
        self.assertEqual(decoder.skipped, 1)

    def test_no_hello(self) -> None:
        """A stream that does not start with HELLO is refused (e.g. a telnet client)."""
        self.assertRaises(PairFrameError, PairDecoder().feed, b"hello there\r\n")

    def test_wrong_version(self) -> None:
        """A HELLO of another version is refused."""
        self.assertRaises(PairFrameError, PairDecoder().feed, b"\x01\x00\x06NPPC\x02\x01")

    def test_bad_role(self) -> None:
        """A HELLO with an unknown role is refused."""
        self.assertRaises(PairFrameError, PairDecoder().feed, b"\x01\x00\x06NPPC\x01\x09")

    def test_malformed_frames(self) -> None:
        """Empty DATA, wrong LINES/BREAK lengths and a second HELLO are refused."""
        for bad in (b"\x02\x00\x00", b"\x03\x00\x02ab", b"\x04\x00\x01a",
                    encode_hello(Role.MASTER)):
            self.assertRaises(PairFrameError, started().feed, bad)

    @given(st.lists(st.one_of(
        st.binary(min_size=1, max_size=300).map(Data),
        st.builds(Lines, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        st.integers(0, 65535).map(Break)), max_size=20), st.integers(1, 50))
    def test_round_trip(self, events: list[Data | Lines | Break], chunk: int) -> None:
        """Any sequence of frames, cut in chunks of any size, decodes to itself."""
        stream = encode_hello(Role.SLAVE) + b"".join(
            encode_data(e.data) if isinstance(e, Data)
            else encode_lines(e) if isinstance(e, Lines) else encode_break(e.ms)
            for e in events)
        decoder = PairDecoder()
        out = [e for i in range(0, len(stream), chunk) for e in decoder.feed(stream[i:i + chunk])]
        self.assertEqual(out, [Hello(Role.SLAVE), *events])

    @given(st.binary(max_size=200))
    def test_garbage_raises_only_frame_errors(self, data: bytes) -> None:
        """Random bytes give events or PairFrameError, nothing else."""
        try:
            started().feed(data)
        except PairFrameError:
            pass
