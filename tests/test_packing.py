"""
Tests for L{nport_twisted.wire.packing}.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire.packing import DelimiterProcess, Packer, PackingConfig

P = DelimiterProcess


def packer(**kwargs: Any) -> Packer:
    """
    A packer for a L{PackingConfig} built from C{kwargs}.
    """
    return Packer(PackingConfig(**kwargs))


def reference(config: PackingConfig, data: bytes) -> tuple[list[bytes], bytes]:
    """
    A byte-at-a-time model of the packing rules, without timers.

    @return: the chunks emitted and what is left pending.
    """
    if config.passthrough:
        return ([data] if data else []), b""
    limit = config.buffer_size
    if config.packing_length:
        limit = min(limit, config.packing_length)
    d1 = config.delimiter1
    d2 = config.delimiter2 if d1 is not None else None
    extra = {P.PLUS_1: 1, P.PLUS_2: 2}.get(config.delimiter_process, 0)
    strip = config.delimiter_process is P.STRIP
    out: list[bytes] = []
    buf = bytearray()
    seen_d1 = False
    wait = 0

    def emit() -> None:
        nonlocal seen_d1, wait
        if buf:
            out.append(bytes(buf))
        buf.clear()
        seen_d1 = False
        wait = 0

    for byte in data:
        buf.append(byte)
        if wait:
            wait -= 1
            if not wait or len(buf) == limit:
                emit()
            continue
        matched = False
        if d1 is not None:
            if d2 is None:
                matched = byte == d1
            elif seen_d1 and byte == d2:
                matched = True
            else:
                seen_d1 = byte == d1
        if matched:
            seen_d1 = False
            if extra and len(buf) < limit:
                wait = extra
                continue
            if strip:
                del buf[-(1 if d2 is None else 2) :]
            emit()
        elif len(buf) == limit:
            emit()
    return out, bytes(buf)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Cut C{data} at the given offsets (taken modulo its length, plus one).
    """
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


_small_byte = st.integers(0, 3)
configs = st.builds(
    PackingConfig,
    packing_length=st.sampled_from([0, 0, 1, 2, 3, 5, 8, 1024]),
    delimiter1=st.none() | _small_byte,
    delimiter2=st.none() | _small_byte,
    delimiter_process=st.sampled_from(list(DelimiterProcess)),
    force_transmit_ms=st.sampled_from([0, 10]),
    buffer_size=st.sampled_from([1, 2, 3, 7, 16, 1024]),
)
streams = st.binary(max_size=200) | st.lists(_small_byte, max_size=200).map(bytes)
cut_lists = st.lists(st.integers(0, 1000), max_size=20)


class PassthroughTests(SynchronousTestCase):
    """
    Tests for a packer with no rule enabled.
    """

    def test_feed(self) -> None:
        """
        Data comes back at once as the same object, with nothing pending.
        """
        p = packer()
        data = b"hello"
        [out] = p.feed(data, 1.0)
        self.assertIs(out, data)
        self.assertEqual((p.pending, p.next_deadline()), (0, None))

    def test_empty(self) -> None:
        """
        Feeding nothing emits nothing.
        """
        self.assertEqual(packer().feed(b"", 1.0), [])

    def test_delimiter2_alone(self) -> None:
        """
        Delimiter 2 without delimiter 1 is not used and leaves passthrough on.
        """
        self.assertTrue(PackingConfig(delimiter2=0x0A).passthrough)
        self.assertEqual(packer(delimiter2=0x0A).feed(b"a\nb", 0.0), [b"a\nb"])

    def test_not_passthrough(self) -> None:
        """
        Any of packing length, delimiter 1 or force transmit turns passthrough off.
        """
        enabling: list[dict[str, Any]] = [
            {"packing_length": 1},
            {"delimiter1": 0},
            {"force_transmit_ms": 1},
        ]
        for kwargs in enabling:
            self.assertFalse(PackingConfig(**kwargs).passthrough)


class PackingLengthTests(SynchronousTestCase):
    """
    Tests for the packing length rule.
    """

    def test_exact_chunks(self) -> None:
        """
        Data goes out in chunks of exactly the packing length; the remainder waits.
        """
        p = packer(packing_length=4)
        self.assertEqual(p.feed(b"abcdefghij", 0.0), [b"abcd", b"efgh"])
        self.assertEqual(p.pending, 2)
        self.assertEqual(p.next_deadline(), None)

    def test_across_feeds(self) -> None:
        """
        Bytes from several feeds fill one chunk.
        """
        p = packer(packing_length=4)
        self.assertEqual(p.feed(b"ab", 0.0), [])
        self.assertEqual(p.feed(b"cdef", 0.0), [b"abcd"])
        self.assertEqual(p.flush(), b"ef")


class DelimiterTests(SynchronousTestCase):
    """
    Tests for delimiter 1 and the delimiter pair.
    """

    def test_delimiter1(self) -> None:
        """
        Delimiter 1 sends the buffer up to and including it.
        """
        p = packer(delimiter1=0x0D)
        self.assertEqual(p.feed(b"ab", 0.0), [])
        self.assertEqual(p.feed(b"c\rde", 0.0), [b"abc\r"])
        self.assertEqual(p.pending, 2)

    def test_several_in_one_feed(self) -> None:
        """
        Several delimiters in one feed give several chunks, in order.
        """
        p = packer(delimiter1=0x3B)
        self.assertEqual(p.feed(b"a;;bc;d", 0.0), [b"a;", b";", b"bc;"])
        self.assertEqual(p.flush(), b"d")

    def test_pair(self) -> None:
        """
        With both delimiters, only delimiter 1 directly followed by delimiter 2 sends.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A)
        self.assertEqual(p.feed(b"a\rb\nc\r\nd", 0.0), [b"a\rb\nc\r\n"])
        self.assertEqual(p.flush(), b"d")

    def test_d1_then_other_byte(self) -> None:
        """
        Delimiter 1 followed by another byte sends nothing.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A)
        self.assertEqual(p.feed(b"a\r", 0.0), [])
        self.assertEqual(p.feed(b"x\n", 0.0), [])
        self.assertEqual(p.pending, 4)

    def test_pair_split(self) -> None:
        """
        A pair split across two feeds is still recognised.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A)
        self.assertEqual(p.feed(b"ab\r", 0.0), [])
        self.assertEqual(p.feed(b"\ncd", 0.0), [b"ab\r\n"])

    def test_repeated_d1(self) -> None:
        """
        In C{d1 d1 d2} the pair is the second delimiter 1 with delimiter 2.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A, delimiter_process=P.STRIP)
        self.assertEqual(p.feed(b"a\r\r\nb", 0.0), [b"a\r"])

    def test_equal_delimiters(self) -> None:
        """
        With delimiter 1 equal to delimiter 2, the bytes pair up two by two.
        """
        p = packer(delimiter1=0x7E, delimiter2=0x7E)
        self.assertEqual(p.feed(b"a~~~b~", 0.0), [b"a~~"])
        self.assertEqual(p.feed(b"~", 0.0), [b"~b~~"])


class DelimiterProcessTests(SynchronousTestCase):
    """
    Tests for the delimiter process settings.
    """

    def test_do_nothing(self) -> None:
        """
        Do Nothing sends the delimiter pair with the data.
        """
        p = packer(delimiter1=1, delimiter2=2, delimiter_process=P.DO_NOTHING)
        self.assertEqual(p.feed(b"x\x01\x02y", 0.0), [b"x\x01\x02"])

    def test_plus_1(self) -> None:
        """
        Delimiter+1 waits for one more byte and sends it too.
        """
        p = packer(delimiter1=0x03, delimiter_process=P.PLUS_1)
        self.assertEqual(p.feed(b"ab\x03", 0.0), [])
        self.assertEqual(p.feed(b"Kc", 0.0), [b"ab\x03K"])
        self.assertEqual(p.flush(), b"c")

    def test_plus_2(self) -> None:
        """
        Delimiter+2 waits for two more bytes, even across feeds, and sends them too.
        """
        p = packer(delimiter1=0x03, delimiter_process=P.PLUS_2)
        self.assertEqual(p.feed(b"a\x03x", 0.0), [])
        self.assertEqual(p.feed(b"yb\x03zw", 0.0), [b"a\x03xy", b"b\x03zw"])

    def test_plus_bytes_are_data(self) -> None:
        """
        The bytes awaited after the delimiter count as data even if they are delimiters.
        """
        p = packer(delimiter1=0x03, delimiter_process=P.PLUS_2)
        self.assertEqual(p.feed(b"a\x03\x03\x03b\x03", 0.0), [b"a\x03\x03\x03"])

    def test_strip(self) -> None:
        """
        Strip sends the data without the delimiter.
        """
        p = packer(delimiter1=0x0D, delimiter_process=P.STRIP)
        self.assertEqual(p.feed(b"ab\rcd\r", 0.0), [b"ab", b"cd"])

    def test_strip_pair(self) -> None:
        """
        Strip with a pair removes both delimiter bytes, also when split across feeds.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A, delimiter_process=P.STRIP)
        self.assertEqual(p.feed(b"ab\r", 0.0), [])
        self.assertEqual(p.feed(b"\n", 0.0), [b"ab"])
        self.assertEqual(p.pending, 0)

    def test_strip_leaving_empty(self) -> None:
        """
        A chunk that is only the delimiter sends nothing once stripped.
        """
        p = packer(delimiter1=0x0D, delimiter2=0x0A, delimiter_process=P.STRIP)
        self.assertEqual(p.feed(b"\r\n\r\nx\r\n", 0.0), [b"x"])
        self.assertEqual(p.pending, 0)


class ForceTransmitTests(SynchronousTestCase):
    """
    Tests for force transmit, the serial idle timer.
    """

    def test_deadline_moves(self) -> None:
        """
        The deadline is the last byte's time plus force transmit, and moves with every byte.
        """
        p = packer(force_transmit_ms=250)
        self.assertIsNone(p.next_deadline())
        self.assertEqual(p.feed(b"a", 10.0), [])
        self.assertEqual(p.next_deadline(), 10.25)
        p.feed(b"b", 10.2)
        self.assertEqual(p.next_deadline(), 10.45)
        p.feed(b"", 10.4)
        self.assertEqual(p.next_deadline(), 10.45)

    def test_poll(self) -> None:
        """
        Polling before the deadline releases nothing; at the deadline everything goes.
        """
        p = packer(force_transmit_ms=100, delimiter1=0x0D)
        p.feed(b"abc", 5.0)
        self.assertEqual(p.poll(5.05), [])
        self.assertEqual(p.poll(p.next_deadline() or 0.0), [b"abc"])
        self.assertEqual((p.pending, p.next_deadline()), (0, None))
        self.assertEqual(p.poll(9.0), [])

    def test_poll_after_deadline(self) -> None:
        """
        Polling late still releases everything pending.
        """
        p = packer(force_transmit_ms=100)
        p.feed(b"abc", 5.0)
        self.assertEqual(p.poll(60.0), [b"abc"])

    def test_releases_plus_2_wait(self) -> None:
        """
        Force transmit releases a Delimiter+2 wait that never got its bytes.
        """
        p = packer(force_transmit_ms=20, delimiter1=0x03, delimiter_process=P.PLUS_2)
        self.assertEqual(p.feed(b"ab\x03x", 1.0), [])
        self.assertEqual(p.poll(1.02), [b"ab\x03x"])
        self.assertEqual(p.feed(b"yc\x03", 2.0), [])

    def test_releases_half_pair_unstripped(self) -> None:
        """
        A delimiter 1 still waiting for delimiter 2 is plain data for force transmit.
        """
        p = packer(
            force_transmit_ms=20, delimiter1=0x0D, delimiter2=0x0A, delimiter_process=P.STRIP
        )
        p.feed(b"ab\r", 1.0)
        self.assertEqual(p.poll(2.0), [b"ab\r"])
        self.assertEqual(p.feed(b"\ncd", 3.0), [])
        self.assertEqual(p.flush(), b"\ncd")

    def test_no_timer_without_force_transmit(self) -> None:
        """
        Without force transmit, pending data has no deadline and poll releases nothing.
        """
        p = packer(delimiter1=0x0D)
        p.feed(b"abc", 1.0)
        self.assertIsNone(p.next_deadline())
        self.assertEqual(p.poll(100.0), [])


class BufferFullTests(SynchronousTestCase):
    """
    Tests for the 1 KB serial buffer.
    """

    def test_full_buffer_sent(self) -> None:
        """
        A full 1024-byte buffer is sent at once, in 1024-byte chunks.
        """
        p = packer(force_transmit_ms=1000, delimiter1=0x0D)
        out = p.feed(b"x" * 1000, 0.0) + p.feed(b"y" * 1500, 0.1)
        self.assertEqual([len(c) for c in out], [1024, 1024])
        self.assertEqual(b"".join(out), b"x" * 1000 + b"y" * 1048)
        self.assertEqual(p.pending, 452)

    def test_full_buffer_cancels_wait(self) -> None:
        """
        Reaching the buffer size during a Delimiter+2 wait sends the full buffer.
        """
        p = packer(delimiter1=0x03, delimiter_process=P.PLUS_2, buffer_size=4)
        self.assertEqual(p.feed(b"ab\x03xy", 0.0), [b"ab\x03x"])
        self.assertEqual(p.flush(), b"y")


class CombinedTests(SynchronousTestCase):
    """
    Tests for several rules at once.
    """

    def test_length_and_delimiter(self) -> None:
        """
        With packing length and a delimiter, whichever comes first sends.
        """
        p = packer(packing_length=4, delimiter1=0x3B)
        self.assertEqual(p.feed(b"ab;cdefgh;i", 0.0), [b"ab;", b"cdef", b"gh;"])
        self.assertEqual(p.flush(), b"i")

    def test_length_breaks_pair(self) -> None:
        """
        A delimiter 1 sent by the length rule does not pair with the next delimiter 2.
        """
        p = packer(packing_length=3, delimiter1=0x0D, delimiter2=0x0A)
        self.assertEqual(p.feed(b"ab\r\nc", 0.0), [b"ab\r"])
        self.assertEqual(p.flush(), b"\nc")

    def test_delimiter_at_length_is_stripped(self) -> None:
        """
        A delimiter that is also the n-th byte is still stripped.
        """
        p = packer(packing_length=3, delimiter1=0x3B, delimiter_process=P.STRIP)
        self.assertEqual(p.feed(b"ab;cde", 0.0), [b"ab", b"cde"])

    def test_length_cancels_wait(self) -> None:
        """
        The packing length still applies while Delimiter+1 waits.
        """
        p = packer(packing_length=3, delimiter1=0x3B, delimiter_process=P.PLUS_1)
        self.assertEqual(p.feed(b"ab;cd", 0.0), [b"ab;"])
        self.assertEqual(p.flush(), b"cd")

    def test_delimiter_at_length_no_wait(self) -> None:
        """
        A Delimiter+1 delimiter that is also the n-th byte is sent at once, without waiting.
        """
        p = packer(packing_length=3, delimiter1=0x3B, delimiter_process=P.PLUS_1)
        self.assertEqual(p.feed(b"ab;", 0.0), [b"ab;"])
        self.assertEqual(p.pending, 0)


class ConfigTests(SynchronousTestCase):
    """
    Tests for L{PackingConfig} validation.
    """

    def test_defaults(self) -> None:
        """
        The defaults are the NPort's: everything off, 1 KB buffer.
        """
        c = PackingConfig()
        self.assertEqual(
            (c.packing_length, c.delimiter1, c.delimiter2, c.force_transmit_ms, c.buffer_size),
            (0, None, None, 0, 1024),
        )
        self.assertIs(c.delimiter_process, P.DO_NOTHING)

    def test_limits_accepted(self) -> None:
        """
        The ends of every range are accepted.
        """
        PackingConfig(packing_length=1024, delimiter1=255, delimiter2=0, force_transmit_ms=65535)

    def test_out_of_range(self) -> None:
        """
        Values out of range or of the wrong type are rejected.
        """
        bad: list[dict[str, Any]] = [
            {"packing_length": -1},
            {"packing_length": 1025},
            {"delimiter1": -1},
            {"delimiter1": 256},
            {"delimiter2": 256},
            {"force_transmit_ms": -1},
            {"force_transmit_ms": 65536},
            {"buffer_size": 0},
            {"delimiter_process": "strip"},
            {"packing_length": 1.5},
        ]
        for kwargs in bad:
            self.assertRaises((ValueError, TypeError), PackingConfig, **kwargs)


class PropertyTests(SynchronousTestCase):
    """
    Properties that hold for every configuration and every way of chunking the input.
    """

    @settings(max_examples=500)
    @given(configs, streams, cut_lists)
    def test_matches_model(self, config: PackingConfig, data: bytes, cuts: list[int]) -> None:
        """
        Fed in any chunks, the packer emits what the byte-at-a-time model emits.
        """
        p = Packer(config)
        out: list[bytes] = []
        for piece in split(data, cuts):
            out.extend(p.feed(piece, 0.0))
        expected, left = reference(config, data)
        if config.passthrough:
            self.assertEqual(b"".join(out), data)
        else:
            self.assertEqual((out, p.flush()), (expected, left))

    @given(configs, streams, cut_lists)
    def test_nothing_lost(self, config: PackingConfig, data: bytes, cuts: list[int]) -> None:
        """
        Without Strip, everything emitted plus flush is the input, in order.
        """
        if config.delimiter_process is P.STRIP:
            config = attrs.evolve(config, delimiter_process=P.DO_NOTHING)
        p = Packer(config)
        out = b"".join(b"".join(p.feed(piece, 0.0)) for piece in split(data, cuts))
        self.assertEqual(out + p.flush(), data)

    @given(configs, streams, cut_lists, st.data())
    def test_nothing_lost_with_timer(
        self, config: PackingConfig, data: bytes, cuts: list[int], draw: st.DataObject
    ) -> None:
        """
        Without Strip, feeding and polling at random times loses and reorders nothing.
        """
        if config.delimiter_process is P.STRIP:
            config = attrs.evolve(config, delimiter_process=P.PLUS_1)
        p = Packer(config)
        out = bytearray()
        now = 0.0
        for piece in split(data, cuts):
            now += draw.draw(st.sampled_from([0.0, 0.005, 0.01, 0.02]))
            out += b"".join(p.poll(now))
            out += b"".join(p.feed(piece, now))
            deadline = p.next_deadline()
            if deadline is not None:
                self.assertEqual(p.poll(deadline - 0.001), [])
        self.assertEqual(bytes(out) + p.flush(), data)

    @given(configs, streams, cut_lists)
    def test_strip_single(self, config: PackingConfig, data: bytes, cuts: list[int]) -> None:
        """
        Strip with delimiter 1 alone removes exactly every delimiter byte sent.
        """
        config = attrs.evolve(
            config, delimiter1=config.delimiter1 or 0, delimiter2=None, delimiter_process=P.STRIP
        )
        p = Packer(config)
        out = b"".join(b"".join(p.feed(piece, 0.0)) for piece in split(data, cuts))
        self.assertEqual(out + p.flush(), data.replace(bytes([config.delimiter1 or 0]), b""))

    @given(_small_byte, _small_byte, streams, cut_lists)
    def test_strip_pair(self, d1: int, d2: int, data: bytes, cuts: list[int]) -> None:
        """
        When neither length nor buffer size cuts the input, Strip removes exactly the
        pairs found left to right without overlap (what C{bytes.replace} removes).
        """
        config = PackingConfig(
            delimiter1=d1, delimiter2=d2, delimiter_process=P.STRIP, buffer_size=len(data) + 1
        )
        p = Packer(config)
        out = b"".join(b"".join(p.feed(piece, 0.0)) for piece in split(data, cuts))
        self.assertEqual(out + p.flush(), data.replace(bytes([d1, d2]), b""))

    @given(configs, st.lists(st.binary(max_size=3000), max_size=5))
    def test_bounded(self, config: PackingConfig, pieces: list[bytes]) -> None:
        """
        Pending data never exceeds the buffer size and no chunk is empty or bigger.
        """
        p = Packer(config)
        for piece in pieces:
            for chunk in p.feed(piece, 0.0):
                self.assertTrue(0 < len(chunk))
                if not config.passthrough:
                    self.assertLessEqual(len(chunk), config.buffer_size)
            self.assertLess(p.pending, config.buffer_size)
