"""
Tests for the ser2net-style --ports forms (nport_twisted.config.linespec)
and the old -> new text of settings changes (nport_twisted.config.changes).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.config.changes import describe_changes
from nport_twisted.config.linespec import PortSpec, describe_line, parse_line, parse_port_specs
from nport_twisted.config.settings import (
    FlowControl,
    OperatingSettings,
    OpMode,
    Parity,
    SerialSettings,
)


class ParseLineTests(SynchronousTestCase):
    def test_baud_only(self) -> None:
        """A bare number sets only the baud rate."""
        self.assertEqual(parse_line("9600"), {"baudrate": 9600})

    def test_full_form(self) -> None:
        """BAUD-BITS PARITY STOP sets all four, parity as a letter in any case."""
        self.assertEqual(parse_line("9600-8e1"),
                         {"baudrate": 9600, "bytesize": 8, "parity": Parity.EVEN, "stopbits": 1})

    def test_one_and_a_half_stop_bits(self) -> None:
        """1.5 stop bits are accepted."""
        self.assertEqual(parse_line("300-5N1.5")["stopbits"], 1.5)

    def test_ser2net_spelling(self) -> None:
        """ser2net's 9600n81 (parity before data bits) means 9600-8N1."""
        self.assertEqual(parse_line("9600n81"), parse_line("9600-8N1"))
        self.assertEqual(parse_line("19200E72")["parity"], Parity.EVEN)

    def test_flow_control(self) -> None:
        """A trailing flow keyword sets flow control, with or without its dash."""
        self.assertEqual(parse_line("115200-8N1-rtscts")["flow_control"], FlowControl.RTS_CTS)
        self.assertEqual(parse_line("115200-8N1-rts-cts")["flow_control"], FlowControl.RTS_CTS)
        self.assertEqual(parse_line("9600-xonxoff"),
                         {"baudrate": 9600, "flow_control": FlowControl.XON_XOFF})

    def test_bad_forms(self) -> None:
        """Garbage and out-of-range values are ValueErrors that quote the text."""
        for text in ("fast", "9600-9N1", "9600-8X1", "9600-8N3", "9600-8N1-maybe", "10"):
            e = self.assertRaises(ValueError, parse_line, text)
            self.assertIn(repr(text), str(e))

    def test_describe_round_trip(self) -> None:
        """describe_line writes the form parse_line reads."""
        settings = SerialSettings(baudrate=19200, bytesize=7, parity=Parity.ODD, stopbits=2,
                                  flow_control=FlowControl.RTS_CTS)
        self.assertEqual(describe_line(settings), "19200-7O2-rtscts")
        self.assertEqual(SerialSettings(**parse_line(describe_line(settings))), settings)


class PortSpecTests(SynchronousTestCase):
    def test_devices_lines_and_ports(self) -> None:
        """Entries split on commas; TCPPORT= and @LINE are optional per entry."""
        specs = parse_port_specs("/dev/ttyUSB0@9600-8E1, 5000=/dev/ttyUSB1,")
        self.assertEqual([s.device for s in specs], ["/dev/ttyUSB0", "/dev/ttyUSB1"])
        self.assertEqual(specs[0].line_changes["parity"], Parity.EVEN)
        self.assertEqual((specs[0].tcp_port, specs[1].tcp_port), (None, 5000))
        self.assertEqual(specs[1].line, ())

    def test_by_path_names_keep_their_colons(self) -> None:
        """udev by-path names contain colons and dots: they stay one device path."""
        name = "/dev/serial/by-path/pci-0000:00:14.0-usb-0:1:1.0-port0"
        self.assertEqual(parse_port_specs(name), [PortSpec(device=name, text=name)])

    def test_bad_tcp_port(self) -> None:
        """What comes before '=' must be a port number 1-65535."""
        for text in ("x=/dev/ttyUSB0", "0=/dev/ttyUSB0", "70000=/dev/ttyUSB0"):
            e = self.assertRaises(ValueError, parse_port_specs, text)
            self.assertIn("TCP port", str(e))

    def test_missing_device(self) -> None:
        """An entry with a port or line but no device is an error."""
        self.assertRaises(ValueError, parse_port_specs, "5000=@9600")


class ChangesTests(SynchronousTestCase):
    def test_changed_fields_old_to_new(self) -> None:
        """Only the fields that differ are named, old -> new, enum values as in the file."""
        old = SerialSettings()
        new = SerialSettings(baudrate=9600, parity=Parity.EVEN)
        self.assertEqual(describe_changes(old, new), "baudrate 115200 -> 9600, parity N -> E")

    def test_mode_change(self) -> None:
        """A mode change reads realcom -> tcp-server."""
        old = OperatingSettings()
        new = OperatingSettings(mode=OpMode.TCP_SERVER, max_connection=4)
        self.assertEqual(describe_changes(old, new),
                         "mode realcom -> tcp-server, max_connection 1 -> 4")

    def test_nothing_changed(self) -> None:
        """Equal values describe as the empty string."""
        self.assertEqual(describe_changes(SerialSettings(), SerialSettings()), "")
