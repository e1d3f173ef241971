"""
Tests for the sans-IO telnet / RFC 2217 codec (nport_twisted.wire.telnet).
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire import telnet as t
from nport_twisted.wire.telnet import (
    Command,
    ComPortCommand,
    ComPortMessage,
    Data,
    Negotiation,
    OptionState,
    OptionTable,
    Subnegotiation,
    TelnetEvent,
    TelnetParser,
)

IAC, SB, SE = b"\xff", b"\xff\xfa", b"\xff\xf0"

#: A stream with every kind of sequence, IAC IAC in data and in a payload, CR NUL and CR LF.
MIXED = (b"ab\xff\xffc\r\x00\r\n" + bytes((255, t.DO, t.BINARY)) + b"d"
         + SB + b"\x2c\x01\x00\x00\xff\xff\x00" + SE + bytes((255, t.NOP)) + b"\xff\xff"
         + SB + b"\x2c\x00" + SE + b"end")
MIXED_EVENTS = [
    Data(b"ab\xffc\r\x00\r\n"), Negotiation(t.DO, t.BINARY), Data(b"d"),
    Subnegotiation(44, b"\x01\x00\x00\xff\x00"), Command(t.NOP), Data(b"\xff"),
    Subnegotiation(44, b"\x00"), Data(b"end"),
]


def merged(events: list[TelnetEvent]) -> list[TelnetEvent]:
    """C{events} with adjacent Data joined (chunking only splits data)."""
    out: list[TelnetEvent] = []
    for ev in events:
        if isinstance(ev, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


def feed_chunks(chunks: list[bytes]) -> list[TelnetEvent]:
    parser = TelnetParser()
    events: list[TelnetEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return merged(events)


class ParserTests(SynchronousTestCase):
    """TelnetParser."""

    def test_plain_data_passes_as_the_same_object(self) -> None:
        """A chunk without IAC comes back as one Data event holding the very same bytes."""
        chunk = bytes(range(255)) * 4
        [event] = TelnetParser().feed(chunk)
        self.assertIs(event.data, chunk)  # type: ignore[union-attr]

    def test_mixed_stream(self) -> None:
        """Data, negotiation, subnegotiation and commands come out in order, CR NUL untouched."""
        self.assertEqual(TelnetParser().feed(MIXED), MIXED_EVENTS)

    def test_every_split_point(self) -> None:
        """Splitting the stream in two at any byte gives the same events."""
        for i in range(len(MIXED) + 1):
            self.assertEqual(feed_chunks([MIXED[:i], MIXED[i:]]), MIXED_EVENTS, f"split at {i}")

    def test_byte_by_byte(self) -> None:
        """Feeding one byte at a time gives the same events."""
        self.assertEqual(feed_chunks([bytes((b,)) for b in MIXED]), MIXED_EVENTS)

    def test_every_pair_of_split_points(self) -> None:
        """Splitting the stream in three anywhere gives the same events."""
        n = len(MIXED)
        for i in range(n + 1):
            for j in range(i, n + 1):
                self.assertEqual(feed_chunks([MIXED[:i], MIXED[i:j], MIXED[j:]]), MIXED_EVENTS)

    def test_iac_at_chunk_end_waits(self) -> None:
        """A lone IAC at the end of a chunk produces nothing until the next byte arrives."""
        parser = TelnetParser()
        self.assertEqual(parser.feed(b"x\xff"), [Data(b"x")])
        self.assertEqual(parser.feed(b"\xff"), [Data(b"\xff")])

    def test_oversized_subnegotiation_dropped(self) -> None:
        """A payload beyond the limit is dropped whole and parsing continues after IAC SE."""
        parser = TelnetParser(max_subnegotiation=8)
        events = parser.feed(SB + b"\x2c" + b"x" * 20 + SE + b"ok")
        self.assertEqual(events, [Data(b"ok")])
        self.assertEqual(parser.dropped_subnegotiations, 1)

    def test_empty_subnegotiation_dropped(self) -> None:
        """IAC SB IAC SE has no option and is dropped."""
        parser = TelnetParser()
        self.assertEqual(parser.feed(SB + SE + b"z"), [Data(b"z")])
        self.assertEqual(parser.dropped_subnegotiations, 1)

    def test_command_breaks_off_subnegotiation(self) -> None:
        """A command inside a subnegotiation abandons it and is reported itself."""
        parser = TelnetParser()
        events = parser.feed(SB + b"\x2c\x01" + bytes((255, t.WILL, 3)) + b"q")
        self.assertEqual(events, [Negotiation(t.WILL, 3), Data(b"q")])
        self.assertEqual(parser.dropped_subnegotiations, 1)

    def test_unknown_command_is_an_event(self) -> None:
        """Any other byte after IAC (even one below 240) is a Command, never an error."""
        self.assertEqual(TelnetParser().feed(b"\xff\x07\xff\xf6"), [Command(7), Command(t.AYT)])

    @given(st.binary(max_size=300), st.lists(st.integers(0, 700), max_size=6))
    def test_escape_round_trip(self, data: bytes, cuts: list[int]) -> None:
        """Escaped data cut into arbitrary chunks decodes to the original bytes, data only."""
        wire = t.escape_iac(data)
        points = sorted(min(c, len(wire)) for c in cuts)
        parts = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)])]
        events = feed_chunks(parts)
        self.assertEqual(events, [Data(data)] if data else [])

    @given(st.binary(max_size=200), st.integers(min_value=0, max_value=200))
    def test_subnegotiation_round_trip(self, payload: bytes, cut: int) -> None:
        """An encoded subnegotiation split anywhere decodes to the same option and payload."""
        wire = t.encode_subnegotiation(44, payload)
        cut = min(cut, len(wire))
        self.assertEqual(feed_chunks([wire[:cut], wire[cut:]]), [Subnegotiation(44, payload)])


class EncoderTests(SynchronousTestCase):
    """Encoders and NVT helpers."""

    def test_escape_iac(self) -> None:
        """Every 0xFF is doubled and nothing else changes."""
        self.assertEqual(t.escape_iac(b"\x00\xff\r\n\xff\xff"), b"\x00\xff\xff\r\n\xff\xff\xff\xff")

    def test_escape_data_binary_leaves_cr(self) -> None:
        """In BINARY mode CR is sent as is."""
        self.assertEqual(t.escape_data(b"a\rb\r\n"), b"a\rb\r\n")

    def test_escape_data_nvt(self) -> None:
        """Without BINARY a bare CR goes out as CR NUL; CR LF stays."""
        self.assertEqual(t.escape_data(b"a\rb\r\n\xff", binary=False), b"a\r\x00b\r\n\xff\xff")

    def test_cr_nul_filter_across_chunks(self) -> None:
        """CR NUL becomes CR even when the NUL starts the next chunk."""
        f = t.CrNulFilter()
        self.assertEqual(f.filter(b"a\r\x00b\r"), b"a\rb\r")
        self.assertEqual(f.filter(b"\x00c\x00"), b"c\x00")

    def test_negotiation_and_command(self) -> None:
        """Negotiations and commands are IAC-prefixed triples and pairs."""
        self.assertEqual(t.encode_negotiation(t.WILL, t.BINARY), b"\xff\xfb\x00")
        self.assertEqual(t.encode_command(t.NOP), b"\xff\xf1")
        self.assertRaises(ValueError, t.encode_negotiation, t.SB, 1)

    def test_subnegotiation_doubles_iac(self) -> None:
        """IAC in a subnegotiation payload is doubled."""
        self.assertEqual(t.encode_subnegotiation(44, b"\x65\xff"), b"\xff\xfa\x2c\x65\xff\xff\xff\xf0")


class OptionTests(SynchronousTestCase):
    """Option negotiation (pyserial's four states)."""

    def setUp(self) -> None:
        self.table = OptionTable(local=(t.BINARY,), remote=(t.BINARY, t.COM_PORT_OPTION))

    def test_request_then_accept(self) -> None:
        """Our request is sent once; the peer's agreement activates it without an answer."""
        self.assertEqual(self.table.request(t.BINARY, local=True), b"\xff\xfb\x00")
        self.assertEqual(self.table.request(t.BINARY, local=True), b"")
        self.assertEqual(self.table.receive(Negotiation(t.DO, t.BINARY)), b"")
        self.assertTrue(self.table.enabled(t.BINARY, local=True))

    def test_peer_request_accepted(self) -> None:
        """A supported option the peer asks for is agreed to once."""
        self.assertEqual(self.table.receive(Negotiation(t.WILL, 44)), b"\xff\xfd\x2c")
        self.assertEqual(self.table.receive(Negotiation(t.WILL, 44)), b"")
        self.assertTrue(self.table.enabled(44, local=False))

    def test_refusal_of_request(self) -> None:
        """A refused request goes inactive without an answer."""
        self.table.request(t.BINARY, local=False)
        self.assertEqual(self.table.receive(Negotiation(t.WONT, t.BINARY)), b"")
        self.assertIs(self.table.get(t.BINARY, local=False).state, OptionState.INACTIVE)  # type: ignore[union-attr]

    def test_disable_active(self) -> None:
        """Turning off an active option is acknowledged."""
        self.table.receive(Negotiation(t.DO, t.BINARY))
        self.assertEqual(self.table.receive(Negotiation(t.DONT, t.BINARY)), b"\xff\xfc\x00")
        self.assertFalse(self.table.enabled(t.BINARY, local=True))

    def test_unknown_refused_politely(self) -> None:
        """Unknown options are refused (DO -> WONT, WILL -> DONT); refusals are not answered."""
        self.assertEqual(self.table.receive(Negotiation(t.DO, 24)), b"\xff\xfc\x18")
        self.assertEqual(self.table.receive(Negotiation(t.WILL, 31)), b"\xff\xfe\x1f")
        self.assertEqual(self.table.receive(Negotiation(t.DONT, 24)), b"")
        self.assertEqual(self.table.receive(Negotiation(t.WONT, 31)), b"")

    def test_really_inactive_refuses(self) -> None:
        """An option set REALLY_INACTIVE is refused when the peer asks."""
        self.table.get(t.BINARY, local=True).state = OptionState.REALLY_INACTIVE  # type: ignore[union-attr]
        self.assertEqual(self.table.receive(Negotiation(t.DO, t.BINARY)), b"\xff\xfc\x00")


class ComPortTests(SynchronousTestCase):
    """RFC 2217 messages."""

    #: (message, its bytes between IAC SB 44 and IAC SE) for every command.
    CASES: ClassVar[list[tuple[ComPortMessage, bytes]]] = [
        (ComPortMessage(ComPortCommand.SIGNATURE, b"box 1"), b"\x00box 1"),
        (ComPortMessage(ComPortCommand.SET_BAUDRATE, 115200), b"\x01\x00\x01\xc2\x00"),
        (ComPortMessage(ComPortCommand.SET_DATASIZE, 7), b"\x02\x07"),
        (ComPortMessage(ComPortCommand.SET_PARITY, t.PARITY_EVEN), b"\x03\x03"),
        (ComPortMessage(ComPortCommand.SET_STOPSIZE, t.STOPSIZE_1_5), b"\x04\x03"),
        (ComPortMessage(ComPortCommand.SET_CONTROL, t.CONTROL_DTR_OFF), b"\x05\x09"),
        (ComPortMessage(ComPortCommand.NOTIFY_LINESTATE, 0x60, True), b"\x6a\x60"),
        (ComPortMessage(ComPortCommand.NOTIFY_MODEMSTATE, 0xB0, True), b"\x6b\xb0"),
        (ComPortMessage(ComPortCommand.FLOWCONTROL_SUSPEND), b"\x08"),
        (ComPortMessage(ComPortCommand.FLOWCONTROL_RESUME), b"\x09"),
        (ComPortMessage(ComPortCommand.SET_LINESTATE_MASK, 0x1E), b"\x0a\x1e"),
        (ComPortMessage(ComPortCommand.SET_MODEMSTATE_MASK, 0xFF), b"\x0b\xff"),
        (ComPortMessage(ComPortCommand.PURGE_DATA, t.PURGE_BOTH, True), b"\x70\x03"),
        (ComPortMessage(ComPortCommand.SET_BAUDRATE, 0), b"\x01\x00\x00\x00\x00"),
    ]

    def test_every_command_both_ways(self) -> None:
        """Each command encodes to its wire form and decodes back to the same message."""
        for message, body in self.CASES:
            wire = t.encode_com_port(message)
            self.assertEqual(wire, b"\xff\xfa\x2c" + t.escape_iac(body) + b"\xff\xf0", message)
            [event] = TelnetParser().feed(wire)
            assert isinstance(event, Subnegotiation)
            self.assertEqual(t.decode_com_port(event.payload), message)

    def test_server_reply_adds_100(self) -> None:
        """server_reply uses the client's code + 100."""
        self.assertEqual(t.server_reply(ComPortCommand.SET_BAUDRATE, 9600),
                         b"\xff\xfa\x2c\x65\x00\x00\x25\x80\xff\xf0")

    def test_poll_without_value(self) -> None:
        """A command without its value (pyserial's modem state poll) decodes with value None."""
        self.assertEqual(t.decode_com_port(b"\x07"), ComPortMessage(ComPortCommand.NOTIFY_MODEMSTATE))

    def test_padded_baud_tolerated(self) -> None:
        """Trailing bytes after the baud rate (sredird's padding) are ignored."""
        self.assertEqual(t.decode_com_port(b"\x65\x00\x00\x25\x80\x00\x00\x00\x00").value, 9600)

    def test_malformed(self) -> None:
        """Unknown codes, empty payloads and short baud rates raise TelnetError."""
        for payload in (b"", b"\x0d", b"\x63", b"\x01\x00\x25"):
            self.assertRaises(t.TelnetError, t.decode_com_port, payload)

    def test_encoder_checks_values(self) -> None:
        """One-byte values must fit a byte and only SIGNATURE takes text."""
        self.assertRaises(ValueError, t.encode_com_port, ComPortMessage(ComPortCommand.SET_DATASIZE, 256))
        self.assertRaises(ValueError, t.encode_com_port, ComPortMessage(ComPortCommand.SET_PARITY, b"x"))

    @given(st.sampled_from(list(ComPortCommand)), st.integers(0, 255), st.booleans())
    def test_round_trip(self, command: ComPortCommand, value: int, server: bool) -> None:
        """Any command with any one-byte value survives encode, parse and decode."""
        if command is ComPortCommand.SIGNATURE:
            message = ComPortMessage(command, bytes((value,)) * 3, server)
        elif command in (ComPortCommand.FLOWCONTROL_SUSPEND, ComPortCommand.FLOWCONTROL_RESUME):
            message = ComPortMessage(command, None, server)
        else:
            message = ComPortMessage(command, value * (65537 if command == 1 else 1), server)
        [event] = TelnetParser().feed(t.encode_com_port(message))
        assert isinstance(event, Subnegotiation)
        self.assertEqual(t.decode_com_port(event.payload), message)
