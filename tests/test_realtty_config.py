"""
Tests for L{nport_twisted.tools.realtty.config}: MOXA's npreal2d.cf as its
tools write it and its daemon reads it, our INI file, and the command-line
port addresses.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from nport_twisted._exceptions import ConfigError
from nport_twisted.tools.realtty.config import (
    OnClose,
    PortConfig,
    TermiosWatch,
    WhileDisconnected,
    load_config,
    parse_config_text,
    parse_format,
    parse_ini,
    parse_npreal2d_cf,
    parse_target,
    port_numbers,
)

# MOXA's shipped file (v5.1 tarball), then two servers added by its mxaddsvr.c:
# sprintf("%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\t\n", minor, ip, data, cmd,
#         fifo, ssl, ttyName, coutName, scope_id, mode) -- 10 words, a trailing tab.
MOXA_CF = (
    "#=========================================================#\n"
    "#   This configuration file is created by Moxa NPort      #\n"
    "#   Administrator Program automatically, please do not    #\n"
    "#   modify this file by yourself.                         #\n"
    "#=========================================================#\n"
    "ttymajor=33\n"
    "calloutmajor=38\n"
    "#[Minor] [ServerIP]\t[data]\t[cmd]\t[FIFO]\t[SSL]\t[ttyName] [coutName] [interface][mode][BackIP]\n"
    "0\t192.168.127.254\t950\t966\t1\t0\tttyr00\tcur00\t0\t0\t\n"
    "1\t192.168.127.254\t951\t967\t1\t0\tttyr01\tcur01\t0\t0\t\n"
    "2\tnport-b.example\t950\t966\t0\t1\tttyr02\tcur02\t0\t0\t\n"
    "3\tfe80::290:e8ff:fe50:1601\t950\t966\t1\t0\tttyr03\tcur03\teth0\t0\t\n"
)


class Npreal2dCfTests(SynchronousTestCase):
    """MOXA's file, read the way npreal2d reads it."""

    def test_moxa_file(self) -> None:
        """Every port line of an mxaddsvr-made file becomes a port; headers are not ports."""
        lines, warnings = parse_npreal2d_cf(MOXA_CF)
        self.assertEqual(warnings, [])
        self.assertEqual([line.tty_name for line in lines], ["ttyr00", "ttyr01", "ttyr02", "ttyr03"])
        first = lines[0]
        self.assertEqual((first.minor, first.server, first.data_port, first.command_port),
                         ("0", "192.168.127.254", 950, 966))
        self.assertEqual((first.fifo, first.ssl, first.callout_name, first.interface),
                         (True, False, "cur00", None))

    def test_fifo_and_ssl_columns(self) -> None:
        """FIFO 1 enables the FIFO, anything else disables it; SSL non-zero is TLS."""
        lines, _ = parse_npreal2d_cf(
            "0 h 950 966 0 1 ttyr00 cur00 0 0\n1 h 951 967 2 0 ttyr01 cur01 0 0\n")
        self.assertEqual([(line.fifo, line.ssl) for line in lines], [(False, True), (False, False)])

    def test_interface_column(self) -> None:
        """The interface column names the scope of a link-local server; 0 means none."""
        lines, _ = parse_npreal2d_cf(MOXA_CF)
        self.assertEqual(lines[3].interface, "eth0")
        self.assertEqual(lines[3].server, "fe80::290:e8ff:fe50:1601")

    def test_casper_vector_file(self) -> None:
        """The printf layout of CasperVector's mxaddsvr (backup column empty) reads the same."""
        text = ("#\tminor\tserver\tdata\tcmd\tfifo\tssl\ttty\tcallout\tiface\tmode\tbackup\n"
                "0\t10.0.0.5\t950\t966\t1\t0\tttyr00\tcur00\t0\t0\t\n")
        lines, warnings = parse_npreal2d_cf(text)
        self.assertEqual(warnings, [])
        self.assertEqual(lines[0].server, "10.0.0.5")

    def test_ports_17_to_32(self) -> None:
        """mxaddsvr numbers ports 17-32 from 982 (data) and 998 (command)."""
        lines, _ = parse_npreal2d_cf("16 h 982 998 1 0 ttyr10 cur10 0 0\n")
        self.assertEqual((lines[0].data_port, lines[0].command_port), (982, 998))

    def test_older_layouts(self) -> None:
        """Lines of older daemons (no SSL column, no mode column) are accepted."""
        lines, warnings = parse_npreal2d_cf(
            "0 h 950 966 1 ttyr00 cur00\n"
            "1 h 951 967 1 ttyr01 cur01 eth1\n"
            "2 h 952 968 1 1 ttyr02 cur02\n"
            "3 h 953 969 1 0 ttyr03 cur03 0\n")
        self.assertEqual(warnings, [])
        self.assertEqual([(line.tty_name, line.ssl, line.interface) for line in lines],
                         [("ttyr00", False, None), ("ttyr01", False, "eth1"),
                          ("ttyr02", True, None), ("ttyr03", False, None)])

    def test_backup_column(self) -> None:
        """An 11th word (the backup IP of redundant mode) is read; mode 0 is plain Real COM."""
        lines, _ = parse_npreal2d_cf("0 h 950 966 1 0 ttyr00 cur00 0 0 10.0.0.9\n")
        self.assertEqual(lines[0].backup, "10.0.0.9")

    def test_redundant_mode_skipped(self) -> None:
        """Mode 1 (Redundant COM, two LANs) is not supported: skipped with a warning."""
        lines, warnings = parse_npreal2d_cf("0 a 950 966 1 0 ttyr00 cur00 0 1 b\n")
        self.assertEqual(lines, [])
        self.assertIn("line 1", warnings[0])
        self.assertIn("Redundant", warnings[0])

    def test_bad_lines_named(self) -> None:
        """A line that is not a port names its line number; the good lines still count."""
        lines, warnings = parse_npreal2d_cf(
            "0 h 950 966 1 0 ttyr00 cur00 0 0\n"
            "1 h x 967 1 0 ttyr01 cur01 0 0\n"
            "garbage\n"
            "# 2 h 952 968 1 0 ttyr02 cur02 0 0\n")
        self.assertEqual(len(lines), 1)
        self.assertEqual(len(warnings), 2)
        self.assertIn("line 2", warnings[0])
        self.assertIn("line 3", warnings[1])

    def test_ports_to_links(self) -> None:
        """A cf file makes links link_dir/ttyName and link_dir/coutName with the file's values."""
        config = parse_config_text(MOXA_CF, "npreal2d.cf", link_dir="/dev")
        port = config.ports[2]
        self.assertEqual((port.link, port.callout), ("/dev/ttyr02", "/dev/cur02"))
        self.assertEqual((port.host, port.tls, port.fifo, port.fifo_value),
                         ("nport-b.example", True, False, 1))
        self.assertEqual(config.ports[0].fifo_value, 16)
        self.assertEqual(port.source, "npreal2d.cf line 11")

    def test_empty_file(self) -> None:
        """MOXA's shipped file has no port: an error, as npreal2d's 'Not any tty defined'."""
        header = MOXA_CF.split("0\t192")[0]
        with self.assertRaises(ConfigError) as e:
            parse_config_text(header, "npreal2d.cf")
        self.assertIn("no tty defined", str(e.exception))


class TargetTests(SynchronousTestCase):
    """Command-line server addresses."""

    def test_port_numbers(self) -> None:
        """Serial port n: 950+n-1/966+n-1, from 17 on 982+/998+."""
        self.assertEqual(port_numbers(1), (950, 966))
        self.assertEqual(port_numbers(16), (965, 981))
        self.assertEqual(port_numbers(17), (982, 998))
        self.assertEqual(port_numbers(32), (997, 1013))
        self.assertRaises(ConfigError, port_numbers, 33)

    def test_targets(self) -> None:
        """HOST, HOST:N, [v6]:N and HOST:DATA/COMMAND."""
        self.assertEqual(parse_target("192.168.127.254"), ("192.168.127.254", 950, 966))
        self.assertEqual(parse_target("192.168.127.254:2"), ("192.168.127.254", 951, 967))
        self.assertEqual(parse_target("[fe80::1%eth0]:3"), ("fe80::1%eth0", 952, 968))
        self.assertEqual(parse_target("fe80::1"), ("fe80::1", 950, 966))
        self.assertEqual(parse_target("box:10950/10966"), ("box", 10950, 10966))
        for bad in ("", ":1", "h:0", "h:x", "[::1", "h:1/x"):
            self.assertRaises(ConfigError, parse_target, bad)

    def test_format(self) -> None:
        """8N1, 7E2, 5O1.5; without stop bits the tty decides."""
        self.assertEqual(parse_format("8N1"), (8, "N", 1.0))
        self.assertEqual(parse_format("7e2"), (7, "E", 2.0))
        self.assertEqual(parse_format("5O1.5"), (5, "O", 1.5))
        self.assertEqual(parse_format("8N"), (8, "N", None))
        self.assertRaises(ConfigError, parse_format, "9N1")


class IniTests(SynchronousTestCase):
    """Our INI file."""

    def test_ports_and_defaults(self) -> None:
        """[realtty] keys are defaults; sections are links (names under link_dir, or paths)."""
        config = parse_ini(
            "[realtty]\nlink_dir = /run/tty\ngroup = uucp\nformat = 7E1\nalive_timeout = 0\n"
            "[ttyNP0]\nserver = 10.0.0.1\nport = 2\n"
            "[/dev/plc]\nserver = 10.0.0.2:10950/10966\nformat = 8N2\nssl = yes\n"
            "on_close = keep\nwhile_disconnected = fail\ntermios_watch = poll\n", "x.ini")
        first, second = config.ports
        self.assertEqual((first.link, first.data_port, first.command_port, first.group,
                          first.bytesize, first.parity, first.stopbits),
                         ("/run/tty/ttyNP0", 951, 967, "uucp", 7, "E", 1.0))
        self.assertEqual((second.link, second.data_port, second.tls, second.stopbits,
                          second.on_close, second.while_disconnected, second.termios_watch),
                         ("/dev/plc", 10950, True, 2.0, OnClose.KEEP, WhileDisconnected.FAIL,
                          TermiosWatch.POLL))
        self.assertEqual(config.alive_timeout, 0.0)

    def test_npreal2d_cf_with_overrides(self) -> None:
        """npreal2d_cf brings MOXA's ports; a section with the same link overrides keys."""
        config = parse_ini(
            "[realtty]\nnpreal2d_cf = npreal2d.cf\n[ttyr01]\nformat = 7E1\n",
            "/etc/nport/realtty.ini",
            read_file=lambda path: MOXA_CF if path == "/etc/nport/npreal2d.cf" else "")
        by_link = {p.link: p for p in config.ports}
        self.assertEqual(len(config.ports), 4)
        self.assertEqual((by_link["/dev/ttyr01"].bytesize, by_link["/dev/ttyr01"].data_port),
                         (7, 951))
        self.assertEqual(by_link["/dev/ttyr00"].bytesize, 8)

    def test_errors_name_key(self) -> None:
        """A bad value or unknown key names the file, section and key."""
        cases = {
            "[a]\nserver = h\nmode = 999\n": "[a]: mode",
            "[a]\nserver = h\ncolour = red\n": "'colour'",
            "[a]\nport = 1\n": "missing server",
            "[a]\nserver = h\nformat = 9Q\n": "format",
            "[a]\nserver = h\ndtr = maybe\n": "[a]: dtr",
            "[realtty]\nserver = h\n": "unknown key 'server'",
            "[a]\nserver = h\n[b]\nserver = h\ncallout = a\n": "also used",
        }
        for text, expected in cases.items():
            with self.assertRaises(ConfigError, msg=text) as e:
                parse_ini(text, "r.ini")
            self.assertIn(expected, str(e.exception), text)
            self.assertIn("r.ini", str(e.exception), text)

    def test_auto_detect(self) -> None:
        """A file whose first non-comment line is a section is ours, else npreal2d.cf."""
        ours = parse_config_text("; mine\n[ttyNP0]\nserver = h\n", "f")
        moxa = parse_config_text("# hi\n0 h 950 966 1 0 ttyr00 cur00 0 0\n", "f")
        self.assertEqual(ours.ports[0].link, "/dev/ttyNP0")
        self.assertEqual(moxa.ports[0].link, "/dev/ttyr00")

    def test_defaults_from_command_line(self) -> None:
        """Command-line defaults apply to file ports unless the file sets the key."""
        config = parse_config_text("0 h 950 966 1 0 ttyr00 cur00 0 0\n", "f",
                                   defaults={"mode": 0o600, "tls": True})
        self.assertEqual(config.ports[0].mode, 0o600)
        self.assertFalse(config.ports[0].tls)  # the SSL column says 0

    def test_load_config(self) -> None:
        """load_config reads a file; a missing one is a ConfigError naming it."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MOXA_CF)
        self.assertEqual(len(load_config(path).ports), 4)
        with self.assertRaises(ConfigError) as e:
            load_config(path + ".missing")
        self.assertIn(".missing", str(e.exception))

    def test_port_config_values(self) -> None:
        """A PortConfig refuses impossible values."""
        self.assertRaises(ValueError, PortConfig, link="/x", host="h", data_port=0,
                          command_port=966)
        port = PortConfig(link="/x", host="h", data_port=950, command_port=966,
                          callout="/y")
        self.assertEqual(port.links, ("/x", "/y"))
        self.assertEqual(port.server, "h:950/966")
        self.assertEqual(os.path.basename(port.link), "x")
