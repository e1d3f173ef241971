"""
Tests for the NPort telnet console (nport_twisted.console): the pure
terminal codec and menu, the session protocol on a StringTransport with the
service on a MemoryReactorClock, and end to end over loopback with Debian's
real C{telnet} client (in a pty) and an C{nc}-style line client.
"""

from __future__ import annotations

import os
import re
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from nport_twisted.config.identity import resolve_identity
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    BasicSettings,
    DeviceConfig,
    OperatingSettings,
    OpMode,
    PasswordSettings,
    PortConfig,
    SerialSettings,
)
from nport_twisted.config.store import SettingsStore
from nport_twisted.console import telnet_services
from nport_twisted.console.menu import Outcome, banner, format_uptime, valid_ping_host
from nport_twisted.console.telnet import PingRunner, TelnetConsoleFactory
from nport_twisted.console.terminal import GREETING, MAX_LINE, Line, Terminal, to_wire
from nport_twisted.server import NPortService
from nport_twisted.testing import FakeSerialDevice, FakeTcpTransport
from nport_twisted.web import WebConsole, forms
from nport_twisted.web.console import run_now
from nport_twisted.web.html import texts_for
from nport_twisted.wire.telnet import DO, DONT, ECHO, IAC, IP, WILL, WONT

PASSWORD = "correct horse battery"
_HASH = PasswordSettings.from_password(PASSWORD)  # once: scrypt is slow on purpose
MAC = bytes.fromhex("0090E8123456")
OFFSET = 10000
EOL = b"\r\x00\n"


# -- the terminal codec ---------------------------------------------------------------------------


class TerminalTests(SynchronousTestCase):
    def test_greeting_exact(self) -> None:
        """On connect: IAC WILL ECHO, WILL SGA, WILL BINARY, DO ECHO, DO BINARY, nothing else."""
        self.assertEqual(Terminal().greeting(), bytes.fromhex("fffb01fffb03fffb00fffd01fffd00"))
        self.assertEqual(GREETING, bytes.fromhex("fffb01fffb03fffb00fffd01fffd00"))

    def test_line_client_gets_no_echo(self) -> None:
        """A client that never answers the negotiation (nc) is not echoed to."""
        t = Terminal()
        t.greeting()
        self.assertEqual(t.feed(b"hello\n"), ([Line("hello")], b""))

    def test_echo_once_client_agrees(self) -> None:
        """A telnet client that says DO ECHO is echoed to, except what a password prompt reads."""
        t = Terminal()
        t.greeting()
        self.assertEqual(t.feed(bytes((IAC, DO, ECHO, IAC, WONT, ECHO))), ([], b""))
        self.assertEqual(t.feed(b"ab"), ([], b"ab"))
        self.assertEqual(t.feed(b"\r\n"), ([Line("ab")], b"\r\n"))
        t.secret = True
        self.assertEqual(t.feed(b"pw\r\x00"), ([Line("pw")], b"\r\n"))

    def test_line_ends(self) -> None:
        """CR LF, CR NUL, bare CR and bare LF each end one line, also split across reads."""
        t = Terminal()
        lines, _ = t.feed(b"a\r\nb\r\x00c\rd\ne\r")
        more, _ = t.feed(b"\nf\n")
        self.assertEqual([l.text for l in lines + more], ["a", "b", "c", "d", "e", "f"])

    def test_editing(self) -> None:
        """Backspace and DEL erase, cursor-key sequences and other controls are dropped."""
        t = Terminal()
        lines, _ = t.feed(b"abx\x08c\x1b[Ad\x7fe\x1bOPf\t\r")
        self.assertEqual(lines, [Line("abcef")])
        lines, _ = t.feed("gr\xfc\xdf".encode() + b"\x08\x08e\r")
        self.assertEqual(lines, [Line("gre")])

    def test_cancel(self) -> None:
        """^C and IAC IP drop the line typed so far and say so."""
        t = Terminal()
        self.assertEqual(t.feed(b"abc\x03")[0], [Line("", cancelled=True)])
        self.assertEqual(t.feed(b"x" + bytes((IAC, IP)))[0], [Line("", cancelled=True)])

    def test_unknown_options_refused(self) -> None:
        """Options the console does not support are refused; refusals are not answered."""
        t = Terminal()
        t.greeting()
        self.assertEqual(t.feed(bytes((IAC, WILL, 31)))[1], bytes((IAC, DONT, 31)))
        self.assertEqual(t.feed(bytes((IAC, DO, 24)))[1], bytes((IAC, WONT, 24)))
        self.assertEqual(t.feed(bytes((IAC, WONT, 24)))[1], b"")
        self.assertEqual(t.feed(bytes((IAC, DO, ECHO)))[1], b"")
        self.assertEqual(t.feed(bytes((IAC, DONT, ECHO)))[1], bytes((IAC, WONT, ECHO)))
        self.assertFalse(t.echoing)

    def test_long_line_bounded(self) -> None:
        """A line longer than MAX_LINE keeps its first MAX_LINE bytes and rings once."""
        t = Terminal()
        lines, reply = t.feed(b"x" * (MAX_LINE + 100) + b"y" * 10 + b"\n")
        self.assertEqual(len(lines[0].text), MAX_LINE)
        self.assertEqual(reply, b"\x07")

    def test_to_wire(self) -> None:
        """Output lines end with CR NUL LF; IAC is doubled."""
        self.assertEqual(to_wire("a\nb\r\n"), b"a\r\x00\nb\r\x00\n")
        self.assertEqual(to_wire("\xff"), "\xff".encode())  # UTF-8 c3 bf: no IAC byte
        self.assertNotIn(b"\xff", to_wire("\u00ff"))


# -- the menu and the session ----------------------------------------------------------------------


class _Devices:
    def __init__(self) -> None:
        self.devices: dict[str, FakeSerialDevice] = {}

    def opener(self, protocol: Any, device: str, settings: SerialSettings) -> Any:
        fake = self.devices.setdefault(device, FakeSerialDevice(device))
        return fake.opener(protocol, device, settings)


class _FakePing:
    """A ping runner that answers from the test."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.stopped = 0

    def run(self, host: str, write: Any) -> tuple[Deferred[Outcome], Any]:
        self.hosts.append(host)
        write(to_wire(f"PING {host}: 4 packets transmitted, 4 received\n"))
        return succeed(Outcome(True)), self

    def stop(self) -> None:
        self.stopped += 1


class ConsoleTestCase(SynchronousTestCase):
    """A two-port service (port 1 Real COM, port 2 TCP Server) with the shared console state."""

    password: PasswordSettings | None = _HASH
    path: str | None = None

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.devices = _Devices()
        config = DeviceConfig(password=self.password or PasswordSettings()).with_port_count(
            2, OpMode.REAL_COM
        )
        config = config.replace_port(1, PortConfig(operating=OperatingSettings(mode=OpMode.TCP_SERVER)))
        self.server = NPortService(
            self.reactor, ["/dev/fake0", "/dev/fake1"], config, SettingsStore(self.path),
            self.devices.opener, port_offset=OFFSET, interface="127.0.0.1",
        )
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.console = WebConsole(
            self.server, run_blocking=run_now,
            identity=lambda c, n: resolve_identity(c, n, mac=lambda: (MAC, "test")),
        )
        self.console.telnet_served = True
        self.ping = _FakePing()
        self.factory = TelnetConsoleFactory(self.server, self.console, self.ping)  # type: ignore[arg-type]

    def connect(self, peer: str = "127.0.0.1") -> _Client:
        return _Client(self.factory, peer)

    def logged_in(self) -> _Client:
        client = self.connect()
        client.read()
        self.assertIn("Key in your selection:", client.send(PASSWORD))
        return client


class _Client:
    def __init__(self, factory: TelnetConsoleFactory, peer: str) -> None:
        self.transport = FakeTcpTransport(peer, 40000, local="127.0.0.1", local_port=OFFSET + 23)
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def raw(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def read(self) -> str:
        return self.raw().replace(EOL, b"\n").decode("utf-8", "replace")

    def send(self, *lines: str) -> str:
        """Type C{lines} (each ended by CR LF, all in one read); what the console answered."""
        self.protocol.dataReceived("".join(line + "\r\n" for line in lines).encode())
        return self.read()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)


class BannerTests(ConsoleTestCase):
    def test_banner_bytes_exact(self) -> None:
        """The negotiation, the NPort banner with CR NUL LF line ends, then the password prompt."""
        client = self.connect()
        expected = (
            bytes.fromhex("fffb01fffb03fffb00fffd01fffd00")
            + EOL + EOL + b"-" * 77 + EOL
            + b"Model name       : NPort 5232" + EOL
            + b"MAC address      : 00:90:E8:12:34:56" + EOL
            + b"Serial No.       : 13398" + EOL
            + b"Firmware version : 1.0.0" + EOL
            + b"System uptime    : 0 days, 00h:00m:00s" + EOL
            + b"-" * 77 + EOL
            + b"Please keyin your password: "
        )
        self.assertEqual(client.raw(), expected)

    def test_nmap_fingerprint_matches(self) -> None:
        """Both of nmap's Moxa telnet patterns (nmap-service-probes) match what we send."""
        self.reactor.advance(21 * 86400 + 15 * 3600 + 58 * 60 + 7)
        data = self.connect().raw()
        nport = re.compile(
            rb"^\xff\xfb\x01\xff\xfb\x03\xff\xfb\0\xff\xfd\x01\xff\xfd\0(?:\r\0\n\r\0\n(?:\r\0\n)?"
            rb"-{77}\r\0\n)?Model name {7}: (NPort [\w._-]+)\r\0\nMAC address {6}: ([0-9A-F:]+)\r\0\n"
            rb"Serial No\. {7}: (\d+)\r\0\nFirmware version : ([^\r]+)\r\0\nSystem uptime    : "
            rb"([^\r]+)\r\0\n"
        )
        m = nport.match(data)
        assert m is not None
        self.assertEqual(m.groups(), (b"NPort 5232", b"00:90:E8:12:34:56", b"13398", b"1.0.0",
                                      b"21 days, 15h:58m:07s"))
        softmatch = re.compile(rb"^\xff\xfb\x01\xff\xfb\x03\xff\xfb\x00\xff\xfd\x01\xff\xfd\x00(?!\xff)")
        self.assertIsNotNone(softmatch.match(data))

    def test_uptime_format(self) -> None:
        """Uptime reads as MOXA writes it."""
        self.assertEqual(format_uptime(21 * 86400 + 15 * 3600 + 58 * 60 + 7), "21 days, 15h:58m:07s")
        ident = resolve_identity(self.server.config, 2, mac=lambda: (MAC, "test"))
        self.assertTrue(banner(ident, 5).startswith("\n\n" + "-" * 77 + "\nModel name       : "))


class LoginTests(ConsoleTestCase):
    def test_login_and_main_menu(self) -> None:
        """The console password opens MOXA's main menu; the password is not echoed."""
        client = self.connect()
        client.read()
        answer = client.send(PASSWORD)
        self.assertNotIn(PASSWORD, answer)
        for entry in ("<< Main menu >>", "(1) Basic settings", "(7) Monitor", "(8) Ping",
                      "(a) Load factory default", "(v) View settings", "(s) Save/Restart",
                      "(q) Quit", "Key in your selection: "):
            self.assertIn(entry, answer)
        self.assertEqual(client.send("q"), "Bye.\n")
        self.assertTrue(client.closed)

    def test_three_wrong_passwords_close(self) -> None:
        """Wrong passwords are refused; the third closes the session."""
        client = self.connect()
        client.read()
        self.assertIn("Password incorrect.\nPlease keyin your password: ", client.send("nope"))
        client.send("nope")
        self.assertIn("Too many failed attempts; closing.", client.send("nope"))
        self.assertTrue(client.closed)

    def test_rate_limit_shared_with_web(self) -> None:
        """Failures counted by the web login stop telnet logins from that address, and back."""
        for _ in range(5):
            self.console.limiter.failed("127.0.0.1")
        client = self.connect()
        client.read()
        answer = client.send(PASSWORD)
        self.assertIn("Too many failed attempts from your address; try again in", answer)
        self.assertNotIn("Please keyin your password", answer)
        self.assertTrue(client.closed)
        other = self.connect("127.0.0.2")  # another address is not held up
        other.read()
        self.assertIn("<< Main menu >>", other.send(PASSWORD))
        other = self.connect("127.0.0.3")
        other.send("wrong")
        self.assertGreater(self.console.limiter._clients["127.0.0.3"].failures, 0)

    def test_type_ahead_while_checking(self) -> None:
        """Lines typed while the password is being checked are kept and answered in order."""
        pending: list[Deferred[Any]] = []

        def later(f: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            d.addCallback(lambda _: f())
            return d

        self.patch(self.console.hashing, "_run", later)
        client = self.connect()
        client.read()
        self.assertEqual(client.send(PASSWORD, "1", "m"), "\n")
        pending.pop().callback(None)
        answer = client.read()
        self.assertLess(answer.index("<< Main menu >>"), answer.index("Basic settings >>"))
        self.assertTrue(answer.rstrip().endswith("Key in your selection:"))

    def test_disabled_console(self) -> None:
        """With the Basic setting "Telnet console" off the console says so and closes."""
        self.server.config = attrs.evolve(self.server.config, basic=BasicSettings(telnet_console=False))
        client = self.connect()
        self.assertIn(b"The telnet console is disabled", client.raw())
        self.assertTrue(client.closed)

    def test_accessible_ip_list(self) -> None:
        """A host outside an active accessible IP list is dropped before anything is sent."""
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        self.server.config = attrs.evolve(self.server.config, accessible_ip=acl)
        client = self.connect("10.0.0.9")
        self.assertEqual(client.raw(), b"")
        self.assertTrue(client.transport.aborted)
        self.assertNotEqual(self.connect("192.168.1.20").raw(), b"")

    def test_idle_timeout(self) -> None:
        """No input for the idle time closes the console."""
        client = self.logged_in()
        self.reactor.advance(299)
        self.assertFalse(client.closed)
        client.send("")
        self.reactor.advance(299)
        self.assertFalse(client.closed)
        self.reactor.advance(2)
        self.assertIn("No input for a while", client.read())
        self.assertTrue(client.closed)

    def test_not_reading_client_is_not_read(self) -> None:
        """While the client does not read our answers we stop reading its input."""
        client = self.logged_in()
        client.protocol._write_buffer_full(True)
        self.assertEqual(client.transport.producerState, "paused")
        client.protocol._write_buffer_full(False)
        self.assertEqual(client.transport.producerState, "producing")

    def test_line_flood_answered_a_batch_per_turn(self) -> None:
        """
        Issue 10 items 1 and 3: one read full of lines (each redraws a
        1.6 KB submenu) is answered at most max_events_per_turn lines per
        reactor turn, reading paused meanwhile, in order.  (Before: all
        32,768 lines of a 64 KiB read in one turn, 54 MB of replies.)
        """
        client = self.logged_in()
        client.send("6")
        title = "<< Main menu->Auto warning settings >>"
        budget = client.protocol.max_events_per_turn
        client.protocol.dataReceived(b"\r\n" * (3 * budget))
        self.assertEqual(client.read().count(title), budget)
        self.assertEqual(client.transport.producerState, "paused")
        self.reactor.advance(0)
        self.assertEqual(client.read().count(title), 2 * budget)
        self.assertEqual(client.transport.producerState, "producing")
        self.assertFalse(client.closed)

    def test_unread_replies_drop_the_client(self) -> None:
        """More than max_unsent bytes of replies waiting: dropped at once, nothing more answered."""
        client = self.logged_in()
        client.send("6")
        transport = client.transport
        transport.dataBuffer = b"x" * (client.protocol.max_unsent + 1)  # as a FileDescriptor holds them
        transport.offset = 0
        transport._tempDataLen = 0
        transport.clear()
        client.protocol.dataReceived(b"\r\n" * 1000)
        self.assertTrue(transport.aborted)
        self.assertEqual(len(transport.writes), 1)  # the line that found the buffer full, then nothing
        self.reactor.advance(0)
        self.assertEqual(len(transport.writes), 1)

    def test_jammed_client_dropped(self) -> None:
        """Not reading for jam_timeout while its input keeps coming: closed; an idle jam is kept."""
        import socket
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        theirs = socket.create_connection(server.getsockname())
        ours, _ = server.accept()
        server.close()
        for s in (ours, theirs):
            self.addCleanup(s.close)
        transport = FakeTcpTransport("127.0.0.1", 40000, local="127.0.0.1", local_port=OFFSET + 23,
                                     handle=ours)
        protocol = self.factory.buildProtocol(None)
        protocol.makeConnection(transport)
        protocol.dataReceived((PASSWORD + "\r\n").encode())
        transport.producer.pauseProducing()  # the socket buffer passed its high-water mark
        self.assertEqual(transport.producerState, "paused")
        self.reactor.advance(protocol.jam_timeout)
        self.assertFalse(transport.aborted)  # not reading, but not typing either
        theirs.sendall(b"\r\n" * 100)
        for _ in range(100):  # loopback delivers at once; give the kernel a bounded moment
            if len(ours.recv(1 << 16, socket.MSG_PEEK)) == 200:
                break
        self.reactor.advance(protocol.jam_timeout)
        self.assertTrue(transport.aborted)

    def test_accessible_change_closes_open_consoles(self) -> None:
        """Issue 10 item 6: a saved list without the console's host closes its open session."""
        kept = self.connect("10.1.0.5")
        removed = self.connect("10.2.0.5")
        self.server.config = attrs.evolve(self.server.config, accessible_ip=AccessibleIPSettings(
            (AccessibleIP("10.1.0.0", "255.255.0.0"), AccessibleIP("127.0.0.1", "255.255.255.255"))))
        self.assertEqual(self.server.enforce_accessible(), 1)
        self.assertTrue(removed.transport.aborted)
        self.assertFalse(kept.closed)

    def test_sessions_capped(self) -> None:
        """Issue 10 item 2: at most MAX_SESSIONS consoles at once; the next is refused (closed)."""
        from nport_twisted.console.telnet import MAX_SESSIONS
        clients = [self.connect() for _ in range(MAX_SESSIONS)]
        self.assertFalse(any(c.closed for c in clients))
        extra = self.connect()
        self.assertTrue(extra.closed)
        self.assertNotIn(b"Key in", extra.raw())
        clients[0].transport.loseConnection()
        clients[0].protocol.connectionLost(Failure(Exception("gone")))
        self.assertFalse(self.connect().closed)


class SetupTests(ConsoleTestCase):
    password = None

    def test_setup_token_flow(self) -> None:
        """No password yet: the web console's one-time setup token sets the first one."""
        client = self.connect()
        self.assertIn("No password is set yet", client.read())
        self.assertIn("Wrong setup token", client.send("bad-token", "a new password", "a new password"))
        token = self.console.setup_token
        assert token is not None
        answer = client.send(token, "short", "short")
        self.assertIn("must be 8 to 128 characters long", answer)
        self.assertEqual(self.console.setup_token, token)  # not spent by a refused password
        answer = client.send(token, "a new password", "a new password")
        self.assertIn("Password set.", answer)
        self.assertIn("<< Main menu >>", answer)
        self.assertTrue(self.server.config.password.verify("a new password"))
        self.assertIsNone(self.console.setup_token)


class MenuTests(ConsoleTestCase):
    def test_edit_then_save_restart(self) -> None:
        """An edited setting is pending until Save/Restart, which tells the truth and closes."""
        client = self.logged_in()
        answer = client.send("1", "1", "box-7")
        self.assertIn("Settings stored.", answer)
        self.assertIn("(1) Server name          : box-7", answer)
        self.assertEqual(self.console.pending.basic.server_name, "box-7")
        self.assertEqual(self.server.config.basic.server_name, "")
        answer = client.send("m")
        self.assertIn("Settings were changed: (s) Save/Restart puts them in force.", answer)
        answer = client.send("s", "y")
        self.assertIn("Applied, not saved: no --config", answer)
        self.assertNotIn("saved.", answer)
        self.assertEqual(self.server.config.basic.server_name, "box-7")
        self.assertTrue(client.closed)

    def test_same_messages_as_the_web(self) -> None:
        """A value the web refuses is refused here with the web's own words."""
        form = dict(texts_for(forms.SERIAL_FIELDS, SerialSettings()), alias="x" * 20)
        web = self.assertRaises(forms.FieldErrors, forms.parse_serial_form, form, SerialSettings())
        client = self.logged_in()
        answer = client.send("3", "1", "1", "x" * 20)
        self.assertIn(f"Not stored:\n  Port alias: {web.errors['alias']}\n", answer)
        answer = client.send("2", "fast")
        self.assertIn("Baud rate: must be a whole number", answer)
        answer = client.send("3", "9")
        self.assertIn("one of: 5, 6, 7, 8", answer)  # asked again
        client.send("7")
        self.assertEqual(self.console.pending.ports[0].serial.bytesize, 7)

    def test_choices_by_number_or_name(self) -> None:
        """A choice is picked by its number or its name; the mode brings its own fields."""
        client = self.logged_in()
        client.send("3", "2", "5", "3")
        self.assertEqual(self.console.pending.ports[1].serial.parity.value, "E")
        client.send("5", "odd")
        self.assertEqual(self.console.pending.ports[1].serial.parity.value, "O")
        client.send("m", "4", "1", "1", "rfc2217")
        op = self.console.pending.ports[0].operating
        self.assertEqual(op.mode, OpMode.RFC2217)
        answer = client.send("")
        self.assertIn("Local TCP port", answer)
        self.assertIn("0 (= 4001)", answer)
        self.assertNotIn("Data port", answer)

    def test_port_conflict_refused(self) -> None:
        """A local port equal to another port's is refused, naming both."""
        client = self.logged_in()
        answer = client.send("4", "2", "12", "966")
        self.assertIn(
            "Not stored:\n  Local TCP port: TCP port 966 (10966 with --port-offset 10000) is also "
            "port 1's command port", answer)
        self.assertFalse(self.console.has_pending)

    def test_help_has_real_ports(self) -> None:
        """Port settings' help names the real default port and the offset."""
        client = self.logged_in()
        answer = client.send("4", "2", "12")
        self.assertIn("0 = TCP 4002; --port-offset 10000 is added to the port given "
                      "(0 listens on 14002)", answer)

    def test_accessible_list_cannot_lock_out(self) -> None:
        """An accessible IP list without this client is refused."""
        client = self.logged_in()
        answer = client.send("5", "1", "1", "192.168.1.0", "255.255.255.0")
        self.assertEqual(self.console.pending.accessible_ip.entries[0].ip, "192.168.1.0")
        self.assertIn("Active 192.168.1.0 / 255.255.255.0", answer)
        self.console.discard()
        remote = self.connect("10.1.1.1")
        remote.read()
        remote.send(PASSWORD)
        answer = remote.send("5", "1", "1", "192.168.1.0", "255.255.255.0")
        self.assertIn("would lock out your own address 10.1.1.1", answer)
        self.assertFalse(self.console.has_pending)

    def test_last_console_refused(self) -> None:
        """Turning the telnet console off while the web console is off too is refused."""
        self.console.web_served = False
        client = self.logged_in()
        answer = client.send("1", "6", "0")
        self.assertIn("refused: this would leave no management console", answer)
        self.assertFalse(self.console.has_pending)

    def test_requested_and_in_force(self) -> None:
        """A setting the device refused reads "requested 7, in force 8" in the menu and Monitor."""
        self.devices.devices["/dev/fake1"].refuse = {"bytesize"}
        client = self.logged_in()
        client.send("3", "2", "3", "7", "m", "s", "y")
        self.assertEqual(self.devices.devices["/dev/fake1"].in_force.bytesize, 8)
        client = self.logged_in()
        self.assertIn("(3) Data bits    : 7  (requested 7, in force 8)", client.send("3", "2"))
        monitor = client.send("m", "7")
        for table in ("Line", "Async", "Async settings"):
            self.assertIn(f"\n{table}\n", monitor)
        self.assertIn("requested 7, in force 8", monitor)
        self.assertIn("TCP Server", monitor)
        self.assertIn("tcp/14002", monitor)

    def test_view_settings(self) -> None:
        """(v) lists every section's settings."""
        client = self.logged_in()
        answer = client.send("v")
        for title in ("Basic settings", "Serial settings->Port 2", "Operating settings->Port 1",
                      "Accessible IP settings", "Auto warning settings"):
            self.assertIn(title, answer)
        self.assertIn("(no entries: every host may connect)", answer)
        self.assertTrue(answer.endswith("Key in your selection: "))

    def test_ping(self) -> None:
        """(8) pings a valid host with the ping runner; anything else is refused."""
        client = self.logged_in()
        self.assertIn("Not an IP address or host name.", client.send("8", "-c 1 x"))
        answer = client.send("127.0.0.1")
        self.assertEqual(self.ping.hosts, ["127.0.0.1"])
        self.assertIn("4 packets transmitted", answer)
        self.assertIn("<< Main menu >>", answer)
        self.assertFalse(valid_ping_host("a;b"))
        self.assertTrue(valid_ping_host("plant-gw.example"))

    def test_change_password_as_moxa_scripts_do(self) -> None:
        """9, old, new, new, y, s, y typed ahead in one go (as scripts for NPorts do)."""
        client = self.connect()
        client.read()
        answer = client.send(PASSWORD, "9", PASSWORD, "another secret", "another secret", "y",
                             "s", "y")
        self.assertIn("Password changed", answer)
        self.assertIn("Applied, not saved: no --config", answer)
        self.assertTrue(self.server.config.password.verify("another secret"))
        self.assertTrue(client.closed)

    def test_change_password_needs_old_and_confirmation(self) -> None:
        """A wrong old password or a "n" changes nothing."""
        client = self.logged_in()
        self.assertIn("Wrong old password", client.send("9", "nope", "another secret",
                                                        "another secret", "y"))
        self.assertIn("Not changed.", client.send("9", PASSWORD, "another secret",
                                                  "another secret", "n"))
        self.assertTrue(self.server.config.password.verify(PASSWORD))

    def test_factory_default(self) -> None:
        """(a) asks twice, then resets (keeping the password)."""
        self.server.config = attrs.evolve(self.server.config, basic=BasicSettings(server_name="x"))
        client = self.logged_in()
        self.assertIn("Nothing was changed.", client.send("a", "", "n"))
        self.assertEqual(self.server.config.basic.server_name, "x")
        answer = client.send("a", "y", "y")
        self.assertIn("Factory defaults loaded", answer)
        self.assertEqual(self.server.config.basic.server_name, "")
        self.assertTrue(self.server.config.password.verify(PASSWORD))

    def test_cancel_returns_to_menu(self) -> None:
        """^C while editing goes back to the sub-menu without a change."""
        client = self.logged_in()
        client.send("1", "1")
        client.protocol.dataReceived(b"half typed\x03")
        self.assertIn("<< Main menu->Basic settings >>", client.read())
        self.assertFalse(self.console.has_pending)


class SavedTests(ConsoleTestCase):
    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        super().setUp()

    def test_saved_when_written(self) -> None:
        """With --config, Save/Restart says saved, and the file has the change."""
        client = self.logged_in()
        answer = client.send("1", "1", "box-9", "m", "s", "y")
        self.assertIn("Save/Restart OK: the settings are in force and saved.", answer)
        self.assertEqual(SettingsStore(self.path).load().basic.server_name, "box-9")


class SaveFailedTests(ConsoleTestCase):
    """A settings file that cannot be written: the console says so, the message as written."""

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        os.mkdir(self.path)  # a directory where the file should be: every save fails, even as root
        super().setUp()

    def test_password_and_save_restart(self) -> None:
        client = self.logged_in()
        answer = client.send("9", PASSWORD, "another secret", "another secret", "y")
        self.assertIn("The password was not changed: the settings file could not be written "
                      f"({self.path}: ", answer)
        self.assertIn("(systemd: StateDirectory=; containers:", answer)
        self.assertTrue(self.server.config.password.verify(PASSWORD))
        answer = client.send("1", "1", "box-9", "m", "s", "y")
        self.assertIn("The settings are in force but not saved: the settings file could not be "
                      f"written ({self.path}: ", answer)
        self.assertEqual(self.server.config.basic.server_name, "box-9")
        self.flushLoggedErrors()


class ServiceTests(ConsoleTestCase):
    def test_listener(self) -> None:
        """telnet_services listens on 23 + offset and marks the telnet console as served."""
        console = WebConsole(self.server, run_blocking=run_now)
        for svc in telnet_services(self.server, console):
            svc.startService()
            self.addCleanup(svc.stopService)
        self.assertTrue(console.telnet_served)
        self.assertIn((OFFSET + 23, "127.0.0.1"), [(p, i) for p, _, _, i in self.reactor.tcpServers])
        self.assertIn(OFFSET + 23, [l.port for l in self.server.net.listeners
                                    if l.name == "telnet-console"])

    def test_ping_runner_without_ping(self) -> None:
        """Without a ping command the console says ping is unavailable."""
        runner = PingRunner(self.reactor, command=None)
        d, handle = runner.run("127.0.0.1", lambda data: None)
        self.assertIsNone(handle)
        self.assertIn("not available", self.successResultOf(d).message)


# -- end to end ------------------------------------------------------------------------------------


class _Expect:
    """Collects output and fires Deferreds when a text has arrived."""

    def __init__(self) -> None:
        self.data = b""
        self._waits: list[tuple[bytes, Deferred[bytes]]] = []

    def got(self, data: bytes) -> None:
        self.data += data
        for item in list(self._waits):
            if item[0] in self.data:
                self._waits.remove(item)
                item[1].callback(self.data)

    def until(self, text: bytes, reactor: Any, timeout: float = 15.0) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        if text in self.data:
            d.callback(self.data)
            return d
        self._waits.append((text, d))
        timer = reactor.callLater(timeout, lambda: d.called or d.errback(
            AssertionError(f"{text!r} never arrived; got {self.data[-400:]!r}")))
        d.addBoth(lambda r: (timer.cancel() if timer.active() else None) or r)
        return d


class _TelnetProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.out = _Expect()
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.out.got(data)

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


class _LineClient(Protocol):
    """nc: bytes out as typed, whatever comes in collected; no telnet at all."""

    def __init__(self) -> None:
        self.out = _Expect()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.out.got(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.lost.callback(None)


class EndToEndTests(TestCase):
    """The console on a real listener on loopback, driven by real clients."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        from tests.e2e_util import free_port_offset

        self.reactor = reactor
        self.offset = free_port_offset(tcp=(23, 950, 951, 966, 967), udp=())
        self.devices = _Devices()
        config = DeviceConfig(password=_HASH).with_port_count(1, OpMode.REAL_COM)
        self.server = NPortService(reactor, ["/dev/fake0"], config, SettingsStore(None),
                                   self.devices.opener, port_offset=self.offset,
                                   interface="127.0.0.1")
        console = WebConsole(self.server)
        for svc in telnet_services(self.server, console):
            svc.setServiceParent(self.server)
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.port = self.offset + 23

    async def test_real_telnet_client(self) -> None:
        """Debian's telnet: banner, password, Monitor, Ping 127.0.0.1 (the system's ping), quit."""
        telnet = "/usr/bin/telnet"
        if not os.access(telnet, os.X_OK):
            raise SkipTest("Debian's telnet is not installed")
        proc = _TelnetProcess()
        self.reactor.spawnProcess(proc, telnet, [telnet, "127.0.0.1", str(self.port)],
                                  env={"TERM": "dumb", "PATH": os.defpath}, usePTY=True)
        self.addCleanup(lambda: proc.ended if proc.ended.called else (
            proc.transport.signalProcess("KILL"), proc.ended)[1])
        out = proc.out
        await out.until(b"Please keyin your password: ", self.reactor)
        self.assertIn(b"Model name       : NPort 5110", out.data)
        proc.transport.write(PASSWORD.encode() + b"\r")
        await out.until(b"Key in your selection: ", self.reactor)
        self.assertNotIn(PASSWORD.encode(), out.data)  # not echoed, by us or by telnet
        proc.transport.write(b"7\r")
        await out.until(b"Async settings", self.reactor)
        proc.transport.write(b"m\r")
        mark = len(out.data)
        proc.transport.write(b"8\r")
        await out.until(b"host name (Enter = back): ", self.reactor)
        if os.access("/usr/bin/ping", os.X_OK) or os.access("/bin/ping", os.X_OK):
            proc.transport.write(b"127.0.0.1\r")
            await out.until(b"packets transmitted", self.reactor, timeout=30)
            self.assertIn(b"127.0.0.1", out.data[mark:])
            await out.until(b"<< Main menu >>", self.reactor)
        else:
            proc.transport.write(b"\r")
        proc.transport.write(b"q\r")
        await out.until(b"Bye.", self.reactor)
        await proc.ended

    async def test_line_client(self) -> None:
        """An nc-style client (no telnet negotiation, LF line ends) gets no echo and a working menu."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        client = _LineClient()
        await connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port), client)
        out = client.out
        await out.until(b"Please keyin your password: ", self.reactor)
        self.assertTrue(out.data.startswith(GREETING + EOL + EOL + b"-" * 77 + EOL))
        client.transport.write(PASSWORD.encode() + b"\n")
        await out.until(b"Key in your selection: ", self.reactor)
        self.assertNotIn(PASSWORD.encode(), out.data)
        client.transport.write(b"1\n")
        await out.until(b"<< Main menu->Basic settings >>", self.reactor)
        client.transport.write(b"q\n")
        await out.until(b"Bye.", self.reactor)
        await client.lost
