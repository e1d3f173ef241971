"""
Tests for L{nport_twisted.wire.hayes}: the AT command parser and the +++
escape detector, with the time passed in.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire.hayes import (
    LINE_MAX,
    Answer,
    CallState,
    Dial,
    DialError,
    Escape,
    GoOnline,
    Hangup,
    HayesModem,
    NetworkData,
    Output,
    Result,
    join_output,
    parse_dial,
)

OK = b"\r\nOK\r\n"
ERROR = b"\r\nERROR\r\n"
NO_CARRIER = b"\r\nNO CARRIER\r\n"


def command(modem: HayesModem, line: bytes, now: float = 0.0) -> bytes:
    """Type C{line} and CR; what the modem wrote back (echo included)."""
    return join_output(modem.feed(line + b"\r", now))


def quiet_echo() -> HayesModem:
    """A modem with echo off, so tests see only results."""
    modem = HayesModem()
    modem.feed(b"ATE0\r", 0.0)
    return modem


def online(baud: int = 9600, now: float = 0.0) -> HayesModem:
    """A modem in data mode on a dialed call, echo off."""
    modem = quiet_echo()
    modem.feed(b"ATD127.0.0.1:7\r", now)
    modem.dialed(baud, now)
    return modem


class CommandModeTests(SynchronousTestCase):
    """Command lines, echo, result code formats, registers."""

    def test_at_echoed_and_ok(self) -> None:
        """AT is echoed character by character (E1, the factory setting) and answered OK."""
        self.assertEqual(command(HayesModem(), b"AT"), b"AT\r" + OK)

    def test_echo_off(self) -> None:
        """ATE0 stops the echo, from the next line on."""
        modem = HayesModem()
        self.assertEqual(command(modem, b"ATE0"), b"ATE0\r" + OK)
        self.assertEqual(command(modem, b"AT"), OK)

    def test_numeric_results(self) -> None:
        """ATV0: results are the number and CR; an unknown command is 4."""
        modem = quiet_echo()
        self.assertEqual(command(modem, b"ATV0"), b"0\r")
        self.assertEqual(command(modem, b"ATY"), b"4\r")

    def test_quiet(self) -> None:
        """ATQ1 suppresses result codes but not information text."""
        modem = quiet_echo()
        self.assertEqual(command(modem, b"ATQ1"), b"")
        self.assertEqual(command(modem, b"ATS12?"), b"\r\n050\r\n")

    def test_several_commands_lowercase_spaces(self) -> None:
        """Several commands in one line, any case, spaces ignored."""
        modem = HayesModem()
        self.assertEqual(join_output(modem.feed(b"at e0 v0 s0=2\r", 0)), b"at e0 v0 s0=2\r0\r")
        self.assertEqual(modem.registers[0], 2)
        self.assertFalse(modem.profile.echo)

    def test_errors(self) -> None:
        """Unknown commands, bad values, unknown registers and AT&W (nothing is stored) are ERROR."""
        modem = quiet_echo()
        for line in (b"ATY", b"ATE2", b"ATS40=1", b"ATS2=300", b"AT&W", b"ATS", b"AT&"):
            self.assertEqual(command(modem, line), ERROR, line)

    def test_not_a_command_ignored(self) -> None:
        """A line without AT is ignored: no result."""
        self.assertEqual(command(quiet_echo(), b"hello"), b"")

    def test_line_too_long(self) -> None:
        """A line longer than the buffer is answered ERROR and none of it is executed."""
        modem = quiet_echo()
        out = command(modem, b"ATS0=5" + b" " * LINE_MAX)
        self.assertEqual(out, ERROR)
        self.assertEqual(modem.registers[0], 0)
        self.assertEqual(command(modem, b"AT"), OK)  # the next line works again

    def test_backspace(self) -> None:
        """Backspace (S5) and DEL remove the last character; the echo erases it."""
        modem = HayesModem()
        out = join_output(modem.feed(b"ATX\x08E0\x7f1\r", 0))
        self.assertEqual(out, b"ATX\x08 \x08E0\x08 \x081\r" + OK)
        self.assertTrue(modem.profile.echo)

    def test_line_split_across_chunks(self) -> None:
        """A command line may arrive in pieces; CR LF line ends are fine."""
        modem = quiet_echo()
        self.assertEqual(join_output(modem.feed(b"AT", 0) + modem.feed(b"S7=9\r\n", 0)), OK)
        self.assertEqual(modem.registers[7], 9)

    def test_register_query(self) -> None:
        """Sn? answers the value as three digits, then OK."""
        modem = quiet_echo()
        self.assertEqual(command(modem, b"ATS2?"), b"\r\n043\r\n" + OK)

    def test_settings_view(self) -> None:
        """AT&V shows the flags and registers."""
        out = command(quiet_echo(), b"AT&V")
        self.assertIn(b"E0 Q0 V1 X4 &C1 &D2", out)
        self.assertIn(b"S02:043 S03:013 S04:010 S05:008 S07:050 S12:050", out)
        self.assertTrue(out.endswith(OK))

    def test_information(self) -> None:
        """ATI shows the identity, ATI3 the version."""
        modem = HayesModem(identity="NPort test", version="9.9")
        modem.feed(b"ATE0\r", 0)
        self.assertEqual(command(modem, b"ATI"), b"\r\nNPort test\r\n" + OK)
        self.assertEqual(command(modem, b"ATI3"), b"\r\n9.9\r\n" + OK)

    def test_reset_and_factory(self) -> None:
        """ATZ and AT&F restore the factory profile."""
        modem = quiet_echo()
        command(modem, b"ATS12=10V0")
        # Typed without echo, answered as the restored profile says (verbose).
        self.assertEqual(command(modem, b"ATZ"), OK)
        self.assertEqual(command(modem, b"AT"), b"AT\r" + OK)  # echo is back on
        self.assertEqual(modem.registers[12], 50)
        command(modem, b"ATE0S0=3")
        command(modem, b"AT&F")
        self.assertEqual(modem.registers[0], 0)

    def test_repeat_last_line(self) -> None:
        """A/ repeats the last command line at once, without CR."""
        modem = quiet_echo()
        command(modem, b"ATS2?")
        self.assertEqual(join_output(modem.feed(b"A/", 0)), b"\r\n043\r\n" + OK)

    def test_dcd_follows_calls(self) -> None:
        """&C1 (factory): carrier only during a call; &C0: always."""
        modem = quiet_echo()
        self.assertFalse(modem.dcd)
        command(modem, b"AT&C0")
        self.assertTrue(modem.dcd)
        self.assertTrue(online().dcd)


class DialStringTests(SynchronousTestCase):
    """L{parse_dial}: the forms of ATD."""

    def test_forms(self) -> None:
        """Dotted, 12-digit, T/P prefixes, IPv6, names; a missing port is 4001."""
        cases = {
            "192.168.1.1:4001": ("192.168.1.1", 4001),
            " 192.168.1.1:4001": ("192.168.1.1", 4001),
            "T192.168.1.1:23": ("192.168.1.1", 23),
            "P192168001001:4002": ("192.168.1.1", 4002),
            "T1921680010014003": ("192.168.1.1", 4003),
            "T192-168-001-001": ("192.168.1.1", 4001),
            "[fe80::1]:65500": ("fe80::1", 65500),
            "Tbbs.example.com:23": ("bbs.example.com", 23),
            "localhost": ("localhost", 4001),
        }
        for text, expected in cases.items():
            self.assertEqual(parse_dial(text), expected, text)

    def test_bad(self) -> None:
        """Strings that are no address raise DialError."""
        for text in ("", "T", "1234", "192.168.1.1:0", "192.168.1.1:99999", "300300300300",
                     "192.168.1.300:23", "a b:23", "[fe80::1", "[nope]:1", "host:"):
            self.assertRaises(DialError, parse_dial, text)


class CallTests(SynchronousTestCase):
    """Dialing, answering, hanging up."""

    def test_dial(self) -> None:
        """ATD asks for a connection with S7 as its timeout; no result until it is made."""
        modem = quiet_echo()
        command(modem, b"ATS7=5")
        actions = modem.feed(b"ATDT127.0.0.1:4001\r", 0)
        self.assertEqual(actions, [Dial("127.0.0.1", 4001, 5.0)])
        self.assertIs(modem.state, CallState.DIALING)
        actions = modem.dialed(115200, 1.0)
        self.assertEqual(actions, [GoOnline(), Output(b"\r\nCONNECT 115200\r\n")])
        self.assertIs(modem.state, CallState.ONLINE)

    def test_connect_numeric(self) -> None:
        """With ATV0 CONNECT is code 1."""
        modem = quiet_echo()
        modem.feed(b"ATV0D127.0.0.1:1\r", 0)
        self.assertEqual(join_output(modem.dialed(9600, 0)), b"1\r")

    def test_bad_dial_string(self) -> None:
        """A dial string that is no address is ERROR, no dial."""
        self.assertEqual(quiet_echo().feed(b"ATD1234\r", 0), [Output(ERROR)])

    def test_dial_refused_busy(self) -> None:
        """A failed dial answers its result (BUSY for a refusal) and returns to command mode."""
        modem = quiet_echo()
        modem.feed(b"ATD127.0.0.1:1\r", 0)
        self.assertEqual(join_output(modem.dial_failed(Result.BUSY)), b"\r\nBUSY\r\n")
        self.assertIs(modem.state, CallState.IDLE)

    def test_keypress_aborts_dial(self) -> None:
        """While dialing, a character (not the LF of the line end) aborts: NO CARRIER."""
        modem = quiet_echo()
        modem.feed(b"ATD127.0.0.1:1\r\n", 0)
        self.assertIs(modem.state, CallState.DIALING)
        self.assertEqual(modem.feed(b"x", 1), [Hangup(), Output(NO_CARRIER)])
        self.assertEqual(modem.dialed(9600, 2), [Hangup()])  # the late connection is dropped

    def test_dial_while_online_refused(self) -> None:
        """ATD with a call up (after +++) is ERROR."""
        modem = online()
        modem.feed(b"+++", 5)
        modem.poll(6)
        self.assertEqual(command(modem, b"ATD127.0.0.1:2", 7), ERROR)

    def test_ring_and_answer(self) -> None:
        """S0=0: an incoming call rings; ATA answers with CONNECT; S1 counts the rings."""
        modem = quiet_echo()
        self.assertEqual(join_output(modem.incoming(19200, 0)), b"\r\nRING\r\n")
        self.assertEqual(join_output(modem.ring()), b"\r\nRING\r\n")
        self.assertEqual(modem.registers[1], 2)
        actions = modem.feed(b"ATA\r", 1)
        self.assertEqual(actions, [Answer(), GoOnline(), Output(b"\r\nCONNECT 19200\r\n")])

    def test_auto_answer(self) -> None:
        """S0=n: the call rings and is answered on the n-th ring (Hayes)."""
        modem = quiet_echo()
        command(modem, b"ATS0=1")
        self.assertEqual(modem.incoming(9600, 0),
                         [Output(b"\r\nRING\r\n"), Answer(), GoOnline(),
                          Output(b"\r\nCONNECT 9600\r\n")])
        modem = quiet_echo()
        command(modem, b"ATS0=3")
        self.assertEqual(join_output(modem.incoming(9600, 0) + modem.ring(6)),
                         b"\r\nRING\r\n" * 2)
        self.assertIs(modem.state, CallState.RINGING)
        self.assertEqual(modem.ring(12)[1:3], [Answer(), GoOnline()])
        self.assertIs(modem.state, CallState.ONLINE)
        self.assertTrue(modem.dcd)

    def test_busy_modem_refuses_calls(self) -> None:
        """A call while not idle is hung up at once."""
        self.assertEqual(online().incoming(9600, 0), [Hangup()])

    def test_data_after_ata_in_same_chunk(self) -> None:
        """Bytes after the ATA line in the same chunk are data for the call."""
        modem = quiet_echo()
        modem.incoming(9600, 0)
        actions = modem.feed(b"ATA\rhello", 1)
        self.assertEqual(actions[-1], NetworkData(b"hello"))

    def test_answer_without_call(self) -> None:
        """ATA with nothing ringing: NO CARRIER."""
        self.assertEqual(command(quiet_echo(), b"ATA"), NO_CARRIER)

    def test_remote_hangup(self) -> None:
        """The remote closing: NO CARRIER, command mode, carrier off."""
        modem = online()
        self.assertEqual(join_output(modem.remote_hangup()), NO_CARRIER)
        self.assertIs(modem.state, CallState.IDLE)
        self.assertFalse(modem.dcd)

    def test_hangup(self) -> None:
        """ATH with a call: Hangup and NO CARRIER (no OK); without one: OK."""
        modem = online()
        modem.feed(b"+++", 2)
        modem.poll(3)
        self.assertEqual(modem.feed(b"ATH\r", 4), [Hangup(), Output(NO_CARRIER)])
        self.assertEqual(command(modem, b"ATH"), OK)

    def test_reset_hangs_up(self) -> None:
        """ATZ during a call hangs up."""
        modem = online()
        modem.feed(b"+++", 2)
        modem.poll(3)
        self.assertIn(Hangup(), modem.feed(b"ATZ\r", 4))
        self.assertIs(modem.state, CallState.IDLE)

    def test_terminal_dtr(self) -> None:
        """&D2: the terminal dropping DTR hangs up; &D0: ignored."""
        self.assertEqual(online().terminal_dtr_dropped(), [Hangup(), Output(NO_CARRIER)])
        modem = quiet_echo()
        command(modem, b"AT&D0")
        modem.feed(b"ATD127.0.0.1:1\r", 0)
        modem.dialed(9600, 0)
        self.assertEqual(modem.terminal_dtr_dropped(), [])


class EscapeTests(SynchronousTestCase):
    """+++ with the S12 guard time (1 s by default), time passed in."""

    def test_escape(self) -> None:
        """Silence, +++, silence: OK and command mode; the + are not sent."""
        modem = online(now=0.0)
        self.assertEqual(modem.feed(b"data", 1.0), [NetworkData(b"data")])
        self.assertEqual(modem.feed(b"+++", 2.5), [])
        self.assertEqual(modem.next_deadline(), 3.5)
        self.assertEqual(modem.poll(3.4), [])
        self.assertEqual(modem.poll(3.5), [Escape(), Output(OK)])
        self.assertIs(modem.state, CallState.ONLINE_COMMAND)

    def test_plus_split_over_chunks(self) -> None:
        """The three + may arrive separately, within the guard time of each other."""
        modem = online()
        for i, t in enumerate((2.0, 2.3, 2.6)):
            self.assertEqual(modem.feed(b"+", t), [], i)
        self.assertEqual(modem.poll(3.6), [Escape(), Output(OK)])

    def test_no_guard_before(self) -> None:
        """+++ right after data is data."""
        modem = online()
        self.assertEqual(modem.feed(b"x+++", 2.0), [NetworkData(b"x+++")])
        self.assertIsNone(modem.next_deadline())

    def test_data_within_guard_after(self) -> None:
        """A byte after +++ within the guard time: the + and the byte are data."""
        modem = online()
        self.assertEqual(modem.feed(b"+++", 2.0), [])
        self.assertEqual(modem.feed(b"y", 2.5), [NetworkData(b"+++y")])
        self.assertIs(modem.state, CallState.ONLINE)

    def test_incomplete_sequence_released(self) -> None:
        """Two + and then silence: they are sent as data when the guard time passes."""
        modem = online()
        modem.feed(b"++", 2.0)
        self.assertEqual(modem.poll(3.0), [NetworkData(b"++")])
        self.assertIs(modem.state, CallState.ONLINE)

    def test_four_plus(self) -> None:
        """++++ is not the escape: all four are data."""
        modem = online()
        self.assertEqual(modem.feed(b"++++", 2.0), [NetworkData(b"++++")])

    def test_other_escape_character_and_guard(self) -> None:
        """S2 changes the character, S12 the guard time."""
        modem = quiet_echo()
        command(modem, b"ATS2=42S12=10")
        modem.feed(b"ATD127.0.0.1:1\r", 0)
        modem.dialed(9600, 0)
        self.assertEqual(modem.feed(b"+++", 0.3), [NetworkData(b"+++")])
        self.assertEqual(modem.feed(b"***", 0.6), [])
        self.assertEqual(modem.poll(0.8), [Escape(), Output(OK)])

    def test_escape_disabled(self) -> None:
        """S2 above 127: no escape at all."""
        modem = quiet_echo()
        command(modem, b"ATS2=200")
        modem.feed(b"ATD127.0.0.1:1\r", 0)
        modem.dialed(9600, 0)
        self.assertEqual(modem.feed(b"\xc8\xc8\xc8", 5.0), [NetworkData(b"\xc8\xc8\xc8")])
        self.assertIsNone(modem.next_deadline())

    def test_no_guard_time(self) -> None:
        """S12=0: +++ escapes at once, whatever the timing."""
        modem = quiet_echo()
        command(modem, b"ATS12=0")
        modem.feed(b"ATD127.0.0.1:1\r", 0)
        modem.dialed(9600, 0)
        self.assertEqual(modem.feed(b"ab+++", 0.0), [NetworkData(b"ab"), Escape(), Output(OK)])

    def test_back_online(self) -> None:
        """ATO returns to data mode with CONNECT; ATO without a call is NO CARRIER."""
        modem = online(baud=4800)
        modem.feed(b"+++", 2)
        modem.poll(3)
        self.assertEqual(modem.feed(b"ATO\r", 4), [GoOnline(), Output(b"\r\nCONNECT 4800\r\n")])
        self.assertEqual(modem.feed(b"+++", 4.5), [NetworkData(b"+++")])  # guard counts from ATO
        self.assertEqual(command(quiet_echo(), b"ATO"), NO_CARRIER)


class RobustnessTests(SynchronousTestCase):
    """Any input, in any chunks, at any time: no exception."""

    @given(st.lists(st.tuples(st.binary(max_size=40), st.floats(0, 5)), max_size=30),
           st.sampled_from(["idle", "online", "ringing"]))
    def test_never_raises(self, chunks: list[tuple[bytes, float]], start: str) -> None:
        """Random bytes never raise, and the line buffer stays bounded."""
        modem = online() if start == "online" else quiet_echo()
        if start == "ringing":
            modem.incoming(9600, 0)
        now = 0.0
        for data, step in chunks:
            now += step
            modem.feed(data, now)
            modem.poll(now)
            self.assertLessEqual(len(modem._line), LINE_MAX)
