"""
Tests for the termios -> ASPP mapping of nport-realtty: the pure part
(L{termios_map}) and the same mapping driven by a real pty in packet mode
(L{pty.PtyPair}): what an application does to its tty comes out of the
master as status bytes and termios values, and those become the requests
MOXA's driver sends (realcom.md §3.2, §3.6, §4).
"""

from __future__ import annotations

import errno
import os
import select
import stat
import termios

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from nport_twisted.tools.realtty.pty import LinkError, PtyPair
from nport_twisted.tools.realtty.termios_map import (
    CRTSCTS,
    EXTPROC,
    TIOCPKT_IOCTL,
    PacketEvents,
    TermiosState,
    decode_status,
    requests_for,
    split_packet,
)
from nport_twisted.wire import aspp
from tests.e2e_util import have_ptys


def _state(cflag: int = termios.CS8 | termios.CREAD, iflag: int = 0, speed: int = 9600,
           cc: bytes | None = None) -> TermiosState:
    chars = bytearray(19)
    chars[termios.VSTART], chars[termios.VSTOP] = 0x11, 0x13
    code = {9600: termios.B9600, 115200: termios.B115200, 0: termios.B0}.get(speed, 0o10000)
    return TermiosState(iflag, 0, cflag | code, 0, bytes(cc or chars), speed, speed)


def _bytes(state: TermiosState, dtr: bool = True, rts: bool = True, **fmt: object) -> bytes:
    settings = state.line_settings(**fmt)  # type: ignore[arg-type]
    return b"".join(aspp.encode_request(r) for r in settings.requests(dtr, rts))


class MappingTests(SynchronousTestCase):
    """termios values -> PORT_INIT / SETBAUD / XONXOFF bytes."""

    def test_first_open(self) -> None:
        """9600 8N1 with IXON is MOXA's first open: PORT_INIT 06 03 ... IXON, then XONXOFF 11 13."""
        self.assertEqual(_bytes(_state(iflag=termios.IXON)),
                         bytes.fromhex("2C 08 06 03 01 01 00 00 01 00 18 02 11 13"))

    def test_raw_115200(self) -> None:
        """115200 raw: index 0x0A, no XONXOFF."""
        self.assertEqual(_bytes(_state(speed=115200)),
                         bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00"))

    def test_custom_speed(self) -> None:
        """A rate without index: 0xFF, then SETBAUD LE32."""
        self.assertEqual(_bytes(_state(speed=250000)),
                         bytes.fromhex("2C 08 FF 03 01 01 00 00 00 00 17 04 90 D0 03 00"))

    def test_b0(self) -> None:
        """B0: index 0xFF and no SETBAUD (realcom.md §4.1)."""
        self.assertEqual(_bytes(_state(speed=0)),
                         bytes.fromhex("2C 08 FF 03 01 01 00 00 00 00"))

    def test_flow_and_chars(self) -> None:
        """CRTSCTS sets both hardware bytes; IXOFF the RX byte; VSTART/VSTOP go in XONXOFF."""
        chars = bytearray(19)
        chars[termios.VSTART], chars[termios.VSTOP] = 0x01, 0x02
        state = _state(cflag=termios.CS8 | CRTSCTS, iflag=termios.IXOFF, cc=bytes(chars))
        self.assertEqual(_bytes(state, dtr=False),
                         bytes.fromhex("2C 08 06 03 00 01 01 01 00 01 18 02 01 02"))

    def test_format_from_configuration(self) -> None:
        """Data bits and parity come from the configuration; stop bits from CSTOPB."""
        self.assertEqual(_bytes(_state(), bytesize=7, parity="E")[:4], bytes.fromhex("2C 08 06 0A"))
        two = _state(cflag=termios.CS8 | termios.CSTOPB)
        self.assertEqual(_bytes(two)[3], 0x07)
        self.assertEqual(_bytes(two, stopbits=1.0)[3], 0x03)  # fixed by the configuration
        self.assertEqual(two.line_settings(bytesize=5).stopbits, 1.5)

    def test_termios2_round_trip(self) -> None:
        """struct termios2 encodes and decodes; with_speed picks a Bxxx code or BOTHER."""
        state = _state(iflag=termios.IXON)
        self.assertEqual(TermiosState.from_termios2(state.to_termios2()), state)
        fast = state.with_speed(115200)
        self.assertEqual((fast.cflag & 0o10017, fast.ospeed), (termios.B115200, 115200))
        odd = state.with_speed(250000)
        self.assertEqual((odd.cflag & 0o10017, odd.ospeed), (0o10000, 250000))


class StatusTests(SynchronousTestCase):
    """Packet-mode status bytes -> FLUSH / SETXOFF / SETXON."""

    def test_flush(self) -> None:
        """FLUSHREAD -> FLUSH 0, FLUSHWRITE -> FLUSH 1, both -> FLUSH 2."""
        self.assertEqual(requests_for(decode_status(0x01)), [aspp.Flush(aspp.FLUSH_RX)])
        self.assertEqual(requests_for(decode_status(0x02)), [aspp.Flush(aspp.FLUSH_TX)])
        self.assertEqual(requests_for(decode_status(0x03)), [aspp.Flush(aspp.FLUSH_BOTH)])

    def test_flow(self) -> None:
        """STOP -> SETXOFF, START -> SETXON; termios events carry no request."""
        self.assertEqual(requests_for(decode_status(0x04)), [aspp.SetXoff()])
        self.assertEqual(requests_for(decode_status(0x08)), [aspp.SetXon()])
        for bits in (0x10, 0x20, 0x40):
            self.assertEqual(decode_status(bits), PacketEvents(termios_changed=True))
            self.assertEqual(requests_for(decode_status(bits)), [])

    def test_split(self) -> None:
        """00 + data is data; any other first byte is one status byte."""
        self.assertEqual(split_packet(b"\x00abc"), (None, b"abc"))
        self.assertEqual(split_packet(b"\x40"), (TIOCPKT_IOCTL, b""))
        self.assertEqual(split_packet(b""), (None, b""))


class PtyTests(SynchronousTestCase):
    """The same mapping on a real pty in packet mode with EXTPROC."""

    def setUp(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.link = os.path.join(self.dir, "ttyNP0")
        self.pty = PtyPair((self.link, os.path.join(self.dir, "cur00")), mode=0o640)
        self.pty.open()
        self.addCleanup(self.pty.close)
        self.fds: list[int] = []

    def tearDown(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def app_open(self) -> int:
        fd = os.open(self.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.fds.append(fd)
        return fd

    def packets(self) -> list[bytes]:
        """Everything the master has to read now, packet by packet."""
        assert self.pty.master is not None
        out = []
        while select.select([self.pty.master], [], [], 0)[0]:
            try:
                out.append(os.read(self.pty.master, 65536))
            except OSError as e:
                if e.errno == errno.EIO:
                    out.append(b"EIO")
                break
        return out

    def events(self) -> PacketEvents:
        bits = 0
        for chunk in self.packets():
            status, _ = split_packet(chunk)
            bits |= status or 0
        return decode_status(bits)

    def test_links_and_first_termios(self) -> None:
        """Both links point at the slave, its mode is set, and it starts as MOXA's ttys: 9600, HUPCL, CLOCAL, EXTPROC."""
        self.assertEqual(os.readlink(self.link), self.pty.slave_path)
        self.assertEqual(os.readlink(os.path.join(self.dir, "cur00")), self.pty.slave_path)
        self.assertEqual(stat.S_IMODE(os.stat(self.pty.slave_path).st_mode), 0o640)
        state = self.pty.read_termios()
        self.assertEqual(state.ospeed, 9600)
        self.assertTrue(state.extproc and state.hupcl and state.cflag & termios.CLOCAL)
        self.assertEqual(_bytes(state), bytes.fromhex("2C 08 06 03 01 01 00 00 01 00 18 02 11 13"))

    def test_open_and_close_seen(self) -> None:
        """No slave open: hang-up; open: none; after the last close the data, then EIO."""
        self.packets()
        self.assertTrue(self.pty.hung_up())
        fd = self.app_open()
        self.assertFalse(self.pty.hung_up())
        os.write(fd, b"bye")
        self.assertEqual(self.pty.pending(), 3)
        self.fds.remove(fd)
        os.close(fd)
        self.assertTrue(self.pty.hung_up())
        self.assertEqual(self.packets(), [b"\x00bye", b"EIO"])

    def test_tcsetattr_event(self) -> None:
        """Each tcsetattr gives TIOCPKT_IOCTL; the new termios maps to PORT_INIT at 115200."""
        fd = self.app_open()
        self.packets()
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~termios.IXON
        attrs[4] = attrs[5] = termios.B115200
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.assertTrue(self.events().termios_changed)
        self.assertEqual(_bytes(self.pty.read_termios()),
                         bytes.fromhex("2C 08 0A 03 01 01 00 00 00 00"))

    def test_custom_rate_by_pyserial(self) -> None:
        """pyserial's 250000 (BOTHER) is read exactly and becomes SETBAUD."""
        import serial

        port = serial.Serial(self.link, 250000)
        self.addCleanup(port.close)
        self.assertTrue(self.events().termios_changed)
        settings = self.pty.read_termios().line_settings()
        self.assertEqual(settings.baudrate, 250000)
        self.assertIn(aspp.SetBaud(250000), settings.requests(True, True))

    def test_parity_dropped_stop_bits_kept(self) -> None:
        """The pty drops PARENB and CSIZE but keeps CSTOPB and CRTSCTS."""
        fd = self.app_open()
        attrs = termios.tcgetattr(fd)
        attrs[2] |= termios.CSTOPB | CRTSCTS
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        attrs[2] |= termios.PARENB
        try:
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error:
            pass  # some C libraries check the result and report EINVAL
        state = self.pty.read_termios()
        self.assertFalse(state.cflag & termios.PARENB)
        settings = state.line_settings(7, "E")
        self.assertEqual((settings.stopbits, settings.rtscts, settings.mode.parity),
                         (2.0, True, "E"))

    def test_tcflush(self) -> None:
        """tcflush(TCIFLUSH) -> FLUSH 0, TCOFLUSH -> FLUSH 1, TCIOFLUSH -> FLUSH 2."""
        fd = self.app_open()
        self.packets()
        for queue, mode in ((termios.TCIFLUSH, 0), (termios.TCOFLUSH, 1), (termios.TCIOFLUSH, 2)):
            termios.tcflush(fd, queue)
            self.assertEqual(requests_for(self.events()), [aspp.Flush(mode)], queue)

    def test_tcflow(self) -> None:
        """tcflow(TCOOFF) -> SETXOFF, TCOON -> SETXON."""
        fd = self.app_open()
        self.packets()
        termios.tcflow(fd, termios.TCOOFF)
        self.assertEqual(requests_for(self.events()), [aspp.SetXoff()])
        termios.tcflow(fd, termios.TCOON)
        self.assertEqual(requests_for(self.events()), [aspp.SetXon()])

    def test_extproc_cleared_still_reported(self) -> None:
        """Clearing EXTPROC (stty sane does) is itself reported; set_extproc puts it back."""
        fd = self.app_open()
        self.packets()
        attrs = termios.tcgetattr(fd)
        attrs[3] &= ~EXTPROC
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.assertTrue(self.events().termios_changed)
        self.assertFalse(self.pty.read_termios().extproc)
        self.pty.set_extproc(True)
        self.assertTrue(self.pty.read_termios().extproc)

    def test_restore_refused_speed(self) -> None:
        """write_termios puts a speed back into the application's termios (a refused rate)."""
        fd = self.app_open()
        self.pty.write_termios(self.pty.read_termios().with_speed(19200))
        self.assertEqual(termios.tcgetattr(fd)[5], termios.B19200)

    def test_renew_hangs_up(self) -> None:
        """renew: the old tty is hung up (EOF/EIO) and the links point at a new one."""
        fd = self.app_open()
        old = self.pty.slave_path
        self.pty.renew()
        self.assertNotEqual(self.pty.slave_path, old)
        self.assertEqual(os.readlink(self.link), self.pty.slave_path)
        with self.assertRaises(OSError) as e:
            os.write(fd, b"x")
        self.assertEqual(e.exception.errno, errno.EIO)

    def test_close_removes_links(self) -> None:
        """close removes the links that still point at this pty."""
        self.pty.close()
        self.assertFalse(os.path.lexists(self.link))

    def test_link_refused(self) -> None:
        """A link path that is a file (e.g. MOXA's old device node) or in no directory is refused."""
        path = os.path.join(self.dir, "ttyr00")
        with open(path, "w"):
            pass
        with self.assertRaises(LinkError) as e:
            PtyPair((path,)).open()
        self.assertIn("rm " + path, str(e.exception))
        self.assertRaises(LinkError, PtyPair((os.path.join(self.dir, "no", "x"),)).open)
