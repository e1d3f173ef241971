"""
Reverse Telnet mode (nport_twisted.modes.reverse_telnet): the telnet
server on fake transports and a fake clock, the "Map <CR-LF>" codec, then
the real service with a pty behind it and two real clients on loopback:
Debian's ``telnet`` (under a pty of its own, as a user runs it) and
Twisted's conch telnet client.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import termios
from typing import Any

from twisted.conch import telnet as conch
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from nport_twisted.config.settings import AccessibleIP, AccessibleIPSettings, OpMode
from nport_twisted.device.lines import ModemLines
from nport_twisted.modes import reverse_telnet as rt
from nport_twisted.server import frontend_builders
from nport_twisted.testing import FakePort, FakeTcpTransport
from nport_twisted.wire import telnet as t
from tests.e2e_util import (
    LOOPBACK,
    Collector,
    Pty,
    PtyMaster,
    Service,
    free_port_offset,
    have_ptys,
    poll_until,
)

IAC = b"\xff"
#: Option bytes as conch names them (it has no BINARY constant).
C_BINARY, C_ECHO, C_SGA = bytes((t.BINARY,)), bytes((t.ECHO,)), bytes((t.SGA,))
GREETING = bytes((t.IAC, t.WILL, t.ECHO, t.IAC, t.WILL, t.SGA, t.IAC, t.DO, t.SGA,
                  t.IAC, t.WILL, t.BINARY, t.IAC, t.DO, t.BINARY))


class EnterMapperTests(SynchronousTestCase):
    def test_every_enter_form(self) -> None:
        """CR LF, CR NUL and a bare CR all become the chosen Enter; a bare LF passes."""
        for name, enter in t.ENTER_MAPS.items():
            m = t.EnterMapper(enter)
            self.assertEqual(m.map(b"a\r\nb\r\x00c\rd\ne"),
                             b"a" + enter + b"b" + enter + b"c" + enter + b"d\ne", name)

    def test_split_across_chunks(self) -> None:
        """A CR ending a chunk is mapped at once; the LF/NUL opening the next is dropped."""
        m = t.EnterMapper(b"\r")
        self.assertEqual(m.map(b"ls\r"), b"ls\r")
        self.assertEqual(m.map(b"\n"), b"")
        self.assertEqual(m.map(b"x\r"), b"x\r")
        self.assertEqual(m.map(b"\x00y"), b"y")
        self.assertEqual(m.map(b"\r"), b"\r")
        self.assertEqual(m.map(b"z"), b"z")  # not after a CR any more: nothing dropped
        self.assertEqual(m.map(b"\n"), b"\n")


class _Port:
    def __init__(self, test: SynchronousTestCase, **operating: Any) -> None:
        self.port = FakePort(OpMode.REVERSE_TELNET, lines=ModemLines(), **operating)
        test.addCleanup(self.port.stop)
        self.front = frontend_builders()[OpMode.REVERSE_TELNET](self.port.ctx)
        self.factory: rt.ReverseTelnetFactory = self.front.factory

    def connect(self, peer: str = "10.0.0.2") -> tuple[rt.ReverseTelnetProtocol, FakeTcpTransport]:
        proto = self.factory.buildProtocol(None)
        transport = FakeTcpTransport(peer)
        proto.makeConnection(transport)
        return proto, transport

    @property
    def device(self) -> Any:
        return self.port.device


class ProtocolTests(SynchronousTestCase):
    def test_registered(self) -> None:
        self.assertIn(OpMode.REVERSE_TELNET, frontend_builders())

    def test_greeting(self) -> None:
        """On connect: WILL ECHO, WILL SGA, DO SGA, WILL BINARY, DO BINARY."""
        p = _Port(self)
        _, transport = p.connect()
        self.assertEqual(transport.value(), GREETING)

    def test_negotiation_answers(self) -> None:
        """Agreement to our requests is not answered; other options are refused once."""
        p = _Port(self)
        proto, transport = p.connect()
        transport.clear()
        proto.dataReceived(bytes((t.IAC, t.DO, t.ECHO, t.IAC, t.DO, t.SGA, t.IAC, t.WILL, t.SGA,
                                  t.IAC, t.DO, t.BINARY, t.IAC, t.WILL, t.BINARY)))
        self.assertEqual(transport.value(), b"")
        proto.dataReceived(bytes((t.IAC, t.WILL, 31, t.IAC, t.DO, 6, t.IAC, t.WONT, 24)))
        self.assertEqual(transport.value(), bytes((t.IAC, t.DONT, 31, t.IAC, t.WONT, 6)))
        self.assertEqual(p.device.written, b"")

    def test_iac_escaped_both_ways(self) -> None:
        """IAC IAC from the client is one 0xFF on the line; 0xFF from the line is doubled."""
        p = _Port(self)
        proto, transport = p.connect()
        transport.clear()
        proto.dataReceived(b"a\xff\xffb" + IAC)
        proto.dataReceived(IAC + b"c")
        self.assertEqual(p.device.written, b"a\xffb\xffc")
        p.device.receive(b"x\xffy")
        self.assertEqual(transport.value(), b"x\xff\xffy")

    def test_map_crlf_options(self) -> None:
        """telnet_map_cr decides what the client's Enter is on the line."""
        for choice, enter in (("crlf", b"\r\n"), ("cr", b"\r"), ("lf", b"\n")):
            p = _Port(self, telnet_map_cr=choice)
            proto, _ = p.connect()
            proto.dataReceived(b"show\r\x00")
            proto.dataReceived(b"run\r")
            proto.dataReceived(b"\n")
            self.assertEqual(p.device.written, b"show" + enter + b"run" + enter, choice)

    def test_serial_cr_nul_when_client_refuses_binary(self) -> None:
        """A client refusing our BINARY gets a bare CR as CR NUL (NVT); CR LF stays."""
        p = _Port(self)
        proto, transport = p.connect()
        proto.dataReceived(bytes((t.IAC, t.DONT, t.BINARY)))
        transport.clear()
        p.device.receive(b"a\rb\r\n")
        self.assertEqual(transport.value(), b"a\r\x00b\r\n")

    def test_break_and_ayt(self) -> None:
        """IAC BRK: a 250 ms break on the line; IAC AYT: a short answer."""
        p = _Port(self)
        proto, transport = p.connect()
        transport.clear()
        proto.dataReceived(bytes((t.IAC, t.BRK)))
        self.assertTrue(p.device.control.break_on)
        p.port.clock.advance(rt.BREAK_SECONDS)
        self.assertFalse(p.device.control.break_on)
        proto.dataReceived(bytes((t.IAC, t.AYT, t.IAC, t.NOP, t.IAC, t.GA)))
        self.assertEqual(transport.value(), rt.AYT_REPLY)
        self.assertEqual(p.device.written, b"")

    def test_malformed_telnet_is_logged_not_raised(self) -> None:
        """A broken-off subnegotiation and an unknown command: logged/ignored, data continues."""
        p = _Port(self)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        proto, transport = p.connect()
        proto.dataReceived(bytes((t.IAC, t.SB, 24, 1, 2, t.IAC, t.NOP)) + b"ok")
        proto.dataReceived(bytes((t.IAC, t.SB, 31, 0, 80, 0, 24, t.IAC, t.SE)) + b"!")
        proto.dataReceived(bytes((t.IAC, 0x10)) + b"?")
        self.assertEqual(p.device.written, b"ok!?")
        self.assertFalse(transport.disconnecting)
        formats = [ev.get("log_format", "") for ev in logged]
        self.assertTrue(any("malformed telnet subnegotiation" in f for f in formats), formats)
        self.assertTrue(any("ignoring a subnegotiation" in f for f in formats), formats)

    def test_max_connection(self) -> None:
        """Max connection 1 refuses a second client; with 2 both get the serial data."""
        p = _Port(self)
        p.connect("10.0.0.2")
        _, second = p.connect("10.0.0.3")
        self.assertTrue(second.disconnecting)
        p2 = _Port(self, max_connection=2)
        _, a = p2.connect("10.0.0.2")
        _, b = p2.connect("10.0.0.3")
        a.clear()
        b.clear()
        p2.device.receive(b"both")
        self.assertEqual((a.value(), b.value()), (b"both", b"both"))

    def test_accessible_ip(self) -> None:
        p = _Port(self)
        p.port.acl = AccessibleIPSettings(entries=(AccessibleIP("10.0.0.9"),))
        _, refused = p.connect("10.0.0.2")
        self.assertTrue(refused.aborted)
        _, allowed = p.connect("10.0.0.9")
        self.assertFalse(allowed.disconnecting)

    def test_inactivity_time(self) -> None:
        """inactivity_ms closes a client after that long without data either way."""
        p = _Port(self, inactivity_ms=5000)
        proto, transport = p.connect()
        p.port.clock.advance(4)
        proto.dataReceived(b"k")
        p.port.clock.advance(4)
        self.assertFalse(transport.disconnecting)
        p.port.clock.advance(1.5)
        self.assertTrue(transport.disconnecting)

    def test_flooding_client_that_does_not_read(self) -> None:
        """Negotiation replies are bounded: a client not reading them stops being read."""
        p = _Port(self)
        proto, transport = p.connect()
        transport.producer.pauseProducing()  # its socket buffer is full
        self.assertTrue(proto.read_holds)


# --- the real service, real clients ------------------------------------------------------


class _TelnetClient(conch.TelnetProtocol, Collector):
    """A conch telnet client that agrees to BINARY, SGA and the server's ECHO."""

    def __init__(self) -> None:
        Collector.__init__(self)
        self.closed: Deferred[None] = Deferred()

    def enableLocal(self, option: bytes) -> bool:
        return option in (C_SGA, C_BINARY)

    def enableRemote(self, option: bytes) -> bool:
        return option in (C_ECHO, C_SGA, C_BINARY)

    def disableLocal(self, option: bytes) -> None:
        pass

    def disableRemote(self, option: bytes) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        self._got(data)

    def connectionLost(self, reason: Any) -> None:
        if not self.closed.called:
            self.closed.callback(None)


class ServiceTests(TestCase):
    """``twistd nport --mode reverse-telnet`` with a pty, and real telnet clients."""

    timeout = 60

    def setUp(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        from twisted.internet import reactor

        self.reactor: Any = reactor

    async def _start(self, config: str) -> tuple[Service, PtyMaster, int]:
        pty = Pty()
        self.addCleanup(pty.close)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "nport.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        offset = free_port_offset()
        svc = Service(directory, ["--interface", LOOPBACK, "--port-offset", str(offset),
                                  "--config", path, "--ports", pty.path])
        svc.start()

        def check() -> None:
            svc.stop()
            if svc.problems():
                self.fail("the service logged errors:\n" + svc.log())
        self.addCleanup(check)
        await svc.wait_listening([4001 + offset])
        await svc.wait_device_open(pty.path)
        return svc, pty.attach(self.reactor), 4001 + offset

    async def test_conch_client(self) -> None:
        """Options negotiated, 8-bit data exact both ways with IAC escaped, Enter mapped."""
        svc, line, port = await self._start("[port1.operating]\nmode = reverse-telnet\n")
        client = _TelnetClient()
        transport = await connectProtocol(TCP4ClientEndpoint(self.reactor, LOOPBACK, port),
                                          conch.TelnetTransport(lambda: client))
        self.addCleanup(lambda: (transport.transport.loseConnection(), client.closed)[1])

        def negotiated() -> bool:
            state = transport.getOptionState
            return (state(C_ECHO).him.state == "yes" and state(C_SGA).him.state == "yes"
                    and state(C_BINARY).him.state == "yes"
                    and state(C_BINARY).us.state == "yes"
                    and state(C_SGA).us.state == "yes")
        await poll_until(negotiated, 10, what="the options")
        # Every byte but CR (a telnet Enter, mapped by design) and conch's own CR handling.
        up = bytes(b for b in os.urandom(8192) if b != 0x0D) + b"\xff\xff\xff"
        down = bytes(b for b in os.urandom(8192) if b != 0x0D) + b"\xff"
        client.transport.write(up)  # conch doubles IAC and sends every LF as CR LF (NVT)
        line.write(down)
        # CR LF is an Enter: mapped to CR LF (the default), every other byte exact.
        expected = up.replace(b"\n", b"\r\n")
        self.assertEqual(await line.wait_bytes(len(expected), self.reactor, 15), expected)
        self.assertEqual(await client.wait_bytes(len(down), self.reactor, 15), down)
        line.data.clear()
        client.transport.write(b"enter\n")  # goes as CR LF
        transport.transport.write(b"nvt\r\x00")  # CR NUL, under conch's NVT layer
        self.assertEqual(await line.wait_bytes(12, self.reactor, 10), b"enter\r\nnvt\r\n")
        self.assertIn("telnet client 127.0.0.1 connected (1/1)", svc.log())

    async def test_debian_telnet(self) -> None:
        """/usr/bin/telnet in character mode: typed text and Enter reach the line, replies show."""
        telnet = shutil.which("telnet") or "/usr/bin/telnet"
        if not os.access(telnet, os.X_OK):
            raise SkipTest("no telnet client installed")
        _svc, line, port = await self._start(
            "[port1.operating]\nmode = reverse-telnet\ntelnet_map_cr = lf\n")
        user = Pty()  # the terminal the user runs telnet in
        self.addCleanup(user.close)
        attrs = termios.tcgetattr(user.slave)  # a normal, cooked terminal to start from
        attrs[3] |= termios.ICANON | termios.ECHO
        termios.tcsetattr(user.slave, termios.TCSANOW, attrs)
        proc = subprocess.Popen([telnet, LOOPBACK, str(port)], stdin=user.slave,
                                stdout=user.slave, stderr=user.slave, start_new_session=True)

        def stop() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.addCleanup(stop)
        screen = user.attach(self.reactor)
        await poll_until(lambda: b"Escape character" in screen.data, 10, what="telnet to connect")
        # The server's WILL ECHO / SGA put telnet in character mode: it turns the
        # terminal's line editing and echo off.  Then keys go out one by one.
        await poll_until(lambda: not termios.tcgetattr(user.slave)[3] & termios.ICANON, 10,
                         what="telnet's character mode")
        screen.write(b"show ver\r")
        self.assertEqual(await line.wait_bytes(9, self.reactor, 10), b"show ver\n")
        self.assertNotIn(b"show ver", bytes(screen.data))  # no local echo: the device echoes
        line.write(b"Router> ")
        await poll_until(lambda: b"Router> " in screen.data, 10, what="the device's prompt")
