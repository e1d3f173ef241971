"""
Tests for L{nport_twisted.config.settings}, L{nport_twisted.config.models} and
L{nport_twisted.config.store}.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from typing import Any, NoReturn

import attrs
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted._exceptions import ConfigError
from nport_twisted.config.store import SettingsStore, atomic_write, dumps, import_config, loads
from nport_twisted.config.models import MAX_PORTS, default_model, find_model
from nport_twisted.wire.packing import DelimiterProcess
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    AutoWarningSettings,
    BasicSettings,
    ConnectionControl,
    DeviceConfig,
    FlowControl,
    Identity,
    IPConfig,
    NetworkSettings,
    OperatingSettings,
    OpMode,
    Parity,
    PasswordSettings,
    PortConfig,
    SerialInterface,
    SerialSettings,
    UdpDestination,
    realcom_command_port,
    realcom_data_port,
    tcp_server_port,
)

#: The password hashed by L{hashed}; scrypt is slow, so it is hashed once.
PASSWORD = "correct horse"


@functools.cache
def hashed() -> PasswordSettings:
    """
    L{PASSWORD} hashed once for the whole module (about 50 ms of scrypt).
    """
    return PasswordSettings.from_password(PASSWORD)


def full_config() -> DeviceConfig:
    """
    A two-port configuration in which every section differs from the defaults.
    """
    return DeviceConfig(
        identity=Identity(model="NPort 5232", mac="00:90:E8:12:34:56", serial_number=4660,
                          firmware="3.9 Build 20031211"),
        basic=BasicSettings(server_name="line-7", server_location="Hall B, rack 3",
                            time_zone="Europe/Berlin", time_server="pool.ntp.org",
                            web_console=False, telnet_console=False, reset_button_protect=True),
        network=NetworkSettings(ip_config=IPConfig.DHCP, ip="10.1.2.3", netmask="255.255.0.0",
                                gateway="10.1.0.1", dns1="10.1.0.2", dns2="10.1.0.3", snmp=True,
                                snmp_community="plant", snmp_contact="ops", snmp_location="B3",
                                auto_report_host="10.1.0.9", auto_report_port=4100,
                                auto_report_period=30),
        ports=(
            PortConfig(
                serial=SerialSettings(alias="scale", baudrate=9600, bytesize=7, stopbits=2,
                                      parity=Parity.EVEN, flow_control=FlowControl.XON_XOFF,
                                      fifo=False, interface=SerialInterface.RS485_2WIRE),
                operating=OperatingSettings(
                    mode=OpMode.TCP_CLIENT, tcp_alive_check_min=3, inactivity_ms=500,
                    max_connection=2, ignore_jammed=True, allow_driver_control=True,
                    packing_length=64, delimiter1=0x0D, delimiter2=0x0A,
                    delimiter_process=DelimiterProcess.STRIP, force_transmit_ms=100,
                    destinations=("10.1.0.20:4001", "host.example:5000"),
                    designated_local_ports=(5011, 5012),
                    connection_control=ConnectionControl.DSR_ON_DSR_OFF),
            ),
            PortConfig(
                serial=SerialSettings(baudrate=921600, stopbits=1.5, bytesize=5,
                                      parity=Parity.SPACE),
                operating=OperatingSettings(
                    mode=OpMode.UDP, udp_local_port=4002,
                    udp_destinations=(UdpDestination("10.1.0.30", "10.1.0.39", 4003),
                                      UdpDestination("10.2.0.1", "10.2.0.1", 4004))),
            ),
        ),
        accessible_ip=AccessibleIPSettings(entries=(
            AccessibleIP("10.1.0.0", "255.255.0.0"),
            AccessibleIP("192.168.5.7", active=False),
        )),
        auto_warning=AutoWarningSettings(
            mail_server="smtp.example", mail_user="nport", mail_password="mail-secret",
            mail_from="nport@example", mail_to=("a@example", "b@example"), trap_server="10.1.0.8",
            mail_cold_start=True, mail_warm_start=True, mail_auth_failure=True,
            mail_ip_changed=True, mail_password_changed=True, trap_cold_start=True,
            trap_warm_start=True, trap_auth_failure=True),
        password=hashed(),
    )


class DefaultsTests(SynchronousTestCase):
    """
    Factory defaults match settings.md where it states one.
    """

    def test_operating_defaults(self) -> None:
        """
        A port starts with max connection 1, alive check 7 min and inactivity,
        packing length and force transmit all 0.
        """
        op = OperatingSettings()
        self.assertEqual(
            (op.max_connection, op.tcp_alive_check_min, op.inactivity_ms, op.packing_length,
             op.force_transmit_ms),
            (1, 7, 0, 0, 0),
        )

    def test_delimiters_off(self) -> None:
        """
        Both delimiters are off by default and the delimiter process is Do Nothing.
        """
        op = OperatingSettings()
        self.assertEqual((op.delimiter1, op.delimiter2, op.delimiter_process),
                         (None, None, DelimiterProcess.DO_NOTHING))

    def test_network_addresses_empty(self) -> None:
        """
        IP, netmask, gateway and DNS default to empty because the OS owns them.
        """
        net = NetworkSettings()
        self.assertEqual((net.ip, net.netmask, net.gateway, net.dns1, net.dns2),
                         ("", "", "", "", ""))

    def test_no_default_password(self) -> None:
        """
        A fresh configuration has no password set (CVE-2016-1529).
        """
        password = DeviceConfig().password
        self.assertFalse(password.is_set)
        self.assertEqual(password.hash, "")

    def test_default_port_numbers(self) -> None:
        """
        Port n listens on Real COM 950+n-1/966+n-1 and TCP Server 4001+n-1.
        """
        self.assertEqual([realcom_data_port(i) for i in (0, 1, 15)], [950, 951, 965])
        self.assertEqual([realcom_command_port(i) for i in (0, 1, 15)], [966, 967, 981])
        self.assertEqual([tcp_server_port(i) for i in (0, 1)], [4001, 4002])


class ValidatorTests(SynchronousTestCase):
    """
    Settings values refuse out-of-range fields when they are built.
    """

    def assert_rejected(self, cls: type[Any], needle: str, **kwargs: Any) -> None:
        """
        Building C{cls(**kwargs)} raises a ValueError mentioning C{needle}.
        """
        e = self.assertRaises(ValueError, cls, **kwargs)
        self.assertIn(needle, str(e.args[0]))

    def test_baudrate(self) -> None:
        """
        Baud 49 is refused and 50, the lowest NPort rate, is accepted.
        """
        self.assert_rejected(SerialSettings, "baudrate", baudrate=49)
        self.assertEqual(SerialSettings(baudrate=50).baudrate, 50)

    def test_bytesize_and_stopbits(self) -> None:
        """
        Data bits other than 5-8 and stop bits other than 1, 1.5, 2 are refused with a plain message.
        """
        self.assert_rejected(SerialSettings, "bytesize must be one of 5, 6, 7, 8", bytesize=9)
        self.assert_rejected(SerialSettings, "stopbits must be one of 1, 1.5, 2", stopbits=3)

    def test_max_connection(self) -> None:
        """
        Max connection must be 1-4.
        """
        self.assert_rejected(OperatingSettings, "max_connection", max_connection=0)
        self.assert_rejected(OperatingSettings, "max_connection", max_connection=5)
        self.assertEqual(OperatingSettings(max_connection=4).max_connection, 4)

    def test_alive_check(self) -> None:
        """
        TCP alive check is 0-99 minutes.
        """
        self.assert_rejected(OperatingSettings, "tcp_alive_check_min", tcp_alive_check_min=100)
        self.assertEqual(OperatingSettings(tcp_alive_check_min=99).tcp_alive_check_min, 99)

    def test_packing_length(self) -> None:
        """
        Packing length is 0-1024.
        """
        self.assert_rejected(OperatingSettings, "packing_length", packing_length=1025)
        self.assertEqual(OperatingSettings(packing_length=1024).packing_length, 1024)

    def test_delimiter_byte(self) -> None:
        """
        A delimiter is one byte: 256 is refused, 255 accepted.
        """
        self.assert_rejected(OperatingSettings, "delimiter1", delimiter1=256)
        self.assert_rejected(OperatingSettings, "delimiter2", delimiter1=1, delimiter2=256)
        self.assertEqual(OperatingSettings(delimiter1=255).delimiter1, 255)

    def test_force_transmit(self) -> None:
        """
        Force transmit is 0-65535 ms.
        """
        self.assert_rejected(OperatingSettings, "force_transmit_ms", force_transmit_ms=65536)
        self.assertEqual(OperatingSettings(force_transmit_ms=65535).force_transmit_ms, 65535)

    def test_at_most_four_tcp_destinations(self) -> None:
        """
        TCP Client mode takes four destinations, not five.
        """
        five = tuple(f"10.0.0.{n}:4001" for n in range(1, 6))
        self.assert_rejected(OperatingSettings, "destinations", destinations=five)
        self.assertEqual(len(OperatingSettings(destinations=five[:4]).destinations), 4)

    def test_bad_tcp_destination(self) -> None:
        """
        A TCP Client destination must be HOST:PORT with a port of 1-65535 and no spaces.
        """
        for bad in ("10.0.0.1", "10.0.0.1:0", "10.0.0.1:65536", ":4001", "a b:4001"):
            self.assert_rejected(OperatingSettings, "destinations", destinations=(bad,))

    def test_at_most_four_udp_destinations(self) -> None:
        """
        UDP mode takes four destination ranges, not five.
        """
        five = tuple(UdpDestination(f"10.0.0.{n}", "") for n in range(1, 6))
        self.assert_rejected(OperatingSettings, "udp_destinations", udp_destinations=five)

    def test_at_most_sixteen_accessible_ips(self) -> None:
        """
        The accessible IP list holds 16 entries, not 17.
        """
        entries = tuple(AccessibleIP(f"10.0.0.{n}") for n in range(1, 18))
        self.assert_rejected(AccessibleIPSettings, "16", entries=entries)
        self.assertEqual(len(AccessibleIPSettings(entries=entries[:16]).entries), 16)

    def test_bad_ipv4(self) -> None:
        """
        Addresses that are not dotted IPv4 (or not text at all) are refused.
        """
        for bad in ("192.168.127.256", "1.2.3", "::1", "host.example", 3232235777):
            self.assert_rejected(NetworkSettings, "ip must be an IPv4 address", ip=bad)
        self.assert_rejected(AccessibleIP, "ip", ip="10.0.0")

    def test_bad_netmask(self) -> None:
        """
        An accessible IP netmask must be contiguous, so that matching cannot fail later.
        """
        self.assert_rejected(AccessibleIP, "255.0.255.0", ip="10.0.0.0", netmask="255.0.255.0")

    def test_delimiter2_needs_delimiter1(self) -> None:
        """
        Delimiter 2 alone is refused, as it does not work on an NPort.
        """
        self.assert_rejected(OperatingSettings, "delimiter2 needs delimiter1", delimiter2=0x0A)

    def test_inactivity_above_force_transmit(self) -> None:
        """
        A set inactivity time must exceed a set force transmit time.
        """
        self.assert_rejected(OperatingSettings, "inactivity_ms must be greater",
                             inactivity_ms=100, force_transmit_ms=100)
        self.assertEqual(OperatingSettings(inactivity_ms=101, force_transmit_ms=100).inactivity_ms,
                         101)
        self.assertEqual(OperatingSettings(inactivity_ms=0, force_transmit_ms=100).inactivity_ms, 0)

    def test_unknown_model(self) -> None:
        """
        An identity naming a model we do not know is refused and lists the known ones.
        """
        self.assert_rejected(Identity, "known models: NPort 5110", model="NPort 9999")

    def test_bad_mac(self) -> None:
        """
        A MAC address must have six bytes.
        """
        self.assert_rejected(Identity, "mac", mac="00:90:E8:12:34")

    def test_too_many_mail_recipients(self) -> None:
        """
        Auto warning mails go to at most 4 recipients.
        """
        self.assert_rejected(AutoWarningSettings, "mail_to",
                             mail_to=tuple(f"{n}@example" for n in range(5)))


class TextValidatorTests(SynchronousTestCase):
    """
    Text settings refuse what the file, HTML or the wire cannot carry
    (issue 10 item 7), so nothing accepted can break a later save or page.
    """

    def test_lone_surrogate_refused(self) -> None:
        """A lone surrogate in server_name, an alias, a TCP Client host or mail_to is refused."""
        for cls, kwargs in ((BasicSettings, {"server_name": "box\ud800"}),
                            (SerialSettings, {"alias": "\udfff"}),
                            (OperatingSettings, {"destinations": ("h\ud800st:4001",)}),
                            (AutoWarningSettings, {"mail_to": ("a\ud800@b",)}),
                            (NetworkSettings, {"snmp_location": "x\udc80"})):
            e = self.assertRaises(ValueError, cls, **kwargs)
            self.assertIn(next(iter(kwargs)), str(e.args[0]))

    def test_controls_and_separators_refused(self) -> None:
        """C0, DEL and C1 controls (NEL) and line/paragraph separators are refused."""
        for text in ("a\x00b", "a\x7fb", "a\x85b", "a\u2028b", "a\u2029b"):
            self.assertRaises(ValueError, BasicSettings, server_name=text)

    def test_edge_whitespace_refused(self) -> None:
        """Leading or trailing whitespace (the file strips it) is refused, inner spaces are kept."""
        for text in (" box", "box ", "box\xa0", "\u3000box", " "):
            e = self.assertRaises(ValueError, BasicSettings, server_name=text)
            self.assertIn("begin or end with a space", str(e.args[0]))
        self.assertEqual(BasicSettings(server_name="Halle 3 Prüfstand").server_name, "Halle 3 Prüfstand")

    def test_non_ascii_port_digits_refused(self) -> None:
        """A TCP Client destination's port must be ASCII digits ("host:٤٠٠١" is refused)."""
        self.assertRaises(ValueError, OperatingSettings, destinations=("host:\u0664\u0660\u0660\u0661",))

    def test_accepted_text_round_trips(self) -> None:
        """Any text the validators accept survives dumps -> loads and encodes as UTF-8."""
        from hypothesis import given, strategies as st

        @given(st.text(max_size=39), st.text(max_size=15))
        def check(name: str, alias: str) -> None:
            try:
                config = DeviceConfig(basic=BasicSettings(server_name=name),
                                      ports=(PortConfig(serial=SerialSettings(alias=alias)),))
            except ValueError:
                return
            text = dumps(config)
            text.encode("utf-8")
            self.assertEqual(loads(text), config)

        check()

    def test_unencodable_password_never_matches(self) -> None:
        """verify() of a password with a lone surrogate is False, not a UnicodeEncodeError."""
        self.assertFalse(hashed().verify("x\ud800"))


class PasswordTests(SynchronousTestCase):
    """
    The console password is only kept as a salted scrypt hash.
    """

    def test_verify(self) -> None:
        """
        The hash verifies its own password and refuses another.
        """
        self.assertTrue(hashed().verify(PASSWORD))
        self.assertFalse(hashed().verify(PASSWORD + "!"))

    def test_fresh_salt(self) -> None:
        """
        Two hashes of the same password differ in salt and digest.
        """
        other = PasswordSettings.from_password(PASSWORD)
        self.assertNotEqual(other.hash.split("$")[4], hashed().hash.split("$")[4])
        self.assertNotEqual(other.hash, hashed().hash)

    def test_empty_password_refused(self) -> None:
        """
        An empty password cannot be set.
        """
        self.assertRaises(ValueError, PasswordSettings.from_password, "")

    def test_hash_hides_password(self) -> None:
        """
        Neither the hash string nor the repr of the configuration contains the password.
        """
        self.assertNotIn(PASSWORD, hashed().hash)
        self.assertNotIn(PASSWORD.encode().hex(), hashed().hash)
        self.assertNotIn(hashed().hash, repr(DeviceConfig(password=hashed())))

    def test_unset_verifies_nothing(self) -> None:
        """
        With no password set, no password (not even the empty one) verifies.
        """
        for attempt in ("", "admin", "moxa"):
            self.assertFalse(PasswordSettings().verify(attempt))

    def test_malformed_hash_refused(self) -> None:
        """
        A hash that verify() could not use is refused when it is built.
        """
        good = hashed().hash.split("$")
        for bad in ("plain", "scrypt$a$b$c$d$e", "scrypt$16384$8$1$$" + good[5],
                    "scrypt$3$8$1$" + "$".join(good[4:]),
                    "scrypt$1073741824$8$1$" + "$".join(good[4:]),
                    "$".join(good[:5]) + "$not*base64"):
            self.assertRaises(ValueError, PasswordSettings, bad)


class AccessibleIPTests(SynchronousTestCase):
    """
    L{AccessibleIPSettings.allows} filters clients by the active entries.
    """

    def test_no_active_entry_allows_all(self) -> None:
        """
        With no entry, or only inactive ones, every address is allowed.
        """
        inactive = AccessibleIPSettings(entries=(AccessibleIP("10.0.0.1", active=False),))
        for acl in (AccessibleIPSettings(), inactive):
            self.assertTrue(acl.allows("192.0.2.1"))
            self.assertTrue(acl.allows("2001:db8::1"))

    def test_active_entry_allows_its_network_only(self) -> None:
        """
        An active entry allows its network and nothing else.
        """
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        self.assertTrue(acl.allows("192.168.1.77"))
        self.assertFalse(acl.allows("192.168.2.1"))
        self.assertFalse(acl.allows("2001:db8::1"))
        self.assertFalse(acl.allows("not an address"))

    def test_single_host_entry(self) -> None:
        """
        An entry without a netmask matches exactly one host.
        """
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.5"),))
        self.assertTrue(acl.allows("192.168.1.5"))
        self.assertFalse(acl.allows("192.168.1.6"))

    def test_ipv4_mapped_ipv6(self) -> None:
        """
        An IPv4-mapped IPv6 peer is matched by its IPv4 address.
        """
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        self.assertTrue(acl.allows("::ffff:192.168.1.9"))
        self.assertFalse(acl.allows("::ffff:10.0.0.1"))

    def test_loopback_always_allowed(self) -> None:
        """
        Loopback clients are allowed even when no entry matches them.
        """
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        for address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"):
            self.assertTrue(acl.allows(address), address)


class ModelTests(SynchronousTestCase):
    """
    The model table and the default model by port count.
    """

    def test_find_model_loose_names(self) -> None:
        """
        Models are found with or without the NPort prefix, spaces or case.
        """
        self.assertEqual(find_model("5232").name, "NPort 5232")
        self.assertEqual(find_model("NPort 5232").name, "NPort 5232")
        self.assertEqual(find_model("nport5650-8").name, "NPort 5650-8")
        self.assertEqual(find_model("w2250a").name, "NPort W2250A")

    def test_unknown_model_lists_known(self) -> None:
        """
        An unknown name raises KeyError naming it and listing the known models.
        """
        e = self.assertRaises(KeyError, find_model, "5999")
        self.assertIn("'5999'", e.args[0])
        self.assertIn("NPort 5110, NPort 5110A", e.args[0])

    def test_default_model_by_port_count(self) -> None:
        """
        1 port is a 5110, 2 a 5232, 3-4 a 5450, 5-8 a 5650-8 and 9-16 a 5650-16.
        """
        expected = {1: "NPort 5110", 2: "NPort 5232", 3: "NPort 5450", 4: "NPort 5450"}
        expected.update({n: "NPort 5650-8" for n in range(5, 9)})
        expected.update({n: "NPort 5650-16" for n in range(9, 17)})
        self.assertEqual({n: default_model(n).name for n in range(1, 17)}, expected)

    def test_default_model_limits(self) -> None:
        """
        No model is picked for 0 or more than 32 ports (issue 14: MOXA's
        largest models have 32); 17-32 ports present an NPort 6650-32.
        """
        self.assertEqual(MAX_PORTS, 32)
        self.assertRaises(ValueError, default_model, 0)
        self.assertEqual({default_model(n).name for n in range(17, 33)}, {"NPort 6650-32"})
        e = self.assertRaises(ValueError, default_model, 33)
        self.assertIn("33 serial ports", str(e))

    def test_32_port_models_have_no_invented_ids(self) -> None:
        """
        The 32-port models carry no discovery IDs (none is known, dsci.md
        section 8): asking for them is an error, never a made-up pair.
        """
        for name in ("6650-32", "6610-32"):
            model = find_model(name)
            self.assertEqual((model.port_count, model.discoverable), (32, False))
            self.assertRaises(ValueError, lambda: model.ids)
        self.assertEqual(find_model("5232").ids, (0x80000312, 0x0332))

    def test_discovery_ids(self) -> None:
        """
        The 5232 and 5110 use the AP ID / HW ID pairs of dsci.md section 8.
        """
        m5232, m5110 = find_model("5232"), find_model("5110")
        self.assertEqual((m5232.ap_id, m5232.hw_id, m5232.port_count), (0x80000312, 0x0332, 2))
        self.assertEqual((m5110.ap_id, m5110.hw_id, m5110.port_count), (0x80005110, 0x5110, 1))

    def test_identity_model_info(self) -> None:
        """
        An identity without a model presents the default model for the port count.
        """
        self.assertEqual(Identity().model_info(2).name, "NPort 5232")
        self.assertEqual(Identity(model="5650-8").model_info(2).short_name, "5650-8")


class FileFormatTests(SynchronousTestCase):
    """
    L{dumps} and L{loads} write and read the settings file.
    """

    def assert_error(self, text: str, *needles: str) -> None:
        """
        L{loads} of C{text} raises a ConfigError whose message contains every needle.
        """
        e = self.assertRaises(ConfigError, loads, text, "nport.ini")
        message = str(e)
        self.assertTrue(message.startswith("nport.ini: "), message)
        for needle in needles:
            self.assertIn(needle, message)

    def test_round_trip(self) -> None:
        """
        A configuration with every section changed survives dumps then loads.
        """
        config = full_config()
        self.assertEqual(loads(dumps(config)), config)

    def test_dumps_text(self) -> None:
        """
        The file has one section per group and port, delimiters in hex and lists comma-separated.
        """
        text = dumps(full_config())
        for line in ("[identity]", "[port2.operating]", "delimiter1 = 0x0D",
                     "udp_destinations = 10.1.0.30-10.1.0.39:4003, 10.2.0.1-10.2.0.1:4004",
                     "entries = 10.1.0.0/255.255.0.0 on, 192.168.5.7/255.255.255.255 off",
                     "mode = tcp-client", "stopbits = 1.5"):
            self.assertIn(line + "\n", text)

    def test_empty_text_is_defaults(self) -> None:
        """
        An empty file gives the factory defaults.
        """
        self.assertEqual(loads(""), DeviceConfig())

    def test_missing_key_keeps_default(self) -> None:
        """
        Keys left out of a section keep their default values.
        """
        config = loads("[port1.operating]\nmax_connection = 3\n")
        self.assertEqual(config.ports[0].operating,
                         attrs.evolve(OperatingSettings(), max_connection=3))
        self.assertEqual(config.ports[0].serial, SerialSettings())

    def test_lenient_values(self) -> None:
        """
        Enums accept names or values in any case, ints accept hex and leading zeros, bools yes/on/true.
        """
        config = loads("[port1.operating]\nmode = TCP_SERVER\ntcp_alive_check_min = 07\n"
                       "delimiter1 = 13\nignore_jammed = On\n")
        op = config.ports[0].operating
        self.assertEqual((op.mode, op.tcp_alive_check_min, op.delimiter1, op.ignore_jammed),
                         (OpMode.TCP_SERVER, 7, 13, True))

    def test_unknown_key(self) -> None:
        """
        An unknown key is named with its section, its value and the known keys.
        """
        self.assert_error("[basic]\nserver_nmae = x\n",
                          "[basic] unknown key 'server_nmae' (= 'x')", "known keys: server_name")

    def test_unknown_section(self) -> None:
        """
        An unknown section is named and the known ones listed.
        """
        self.assert_error("[serial]\nbaudrate = 9600\n",
                          "unknown section [serial]", "port<N>.serial")

    def test_default_section_refused(self) -> None:
        """
        A [DEFAULT] section is an unknown section, not keys copied into every section.
        """
        self.assert_error("[DEFAULT]\nbaudrate = 9600\n", "unknown section [DEFAULT]")

    def test_bad_int(self) -> None:
        """
        A value that is not a number is named with its section and key.
        """
        self.assert_error("[port1.serial]\nbaudrate = fast\n",
                          "[port1.serial] baudrate = 'fast': expected a whole number")

    def test_out_of_range_int(self) -> None:
        """
        A number out of range is named with its section and key.
        """
        self.assert_error("[port2.operating]\nmax_connection = 9\n",
                          "[port2.operating] max_connection = '9'", "from 1 to 4")

    def test_bad_enum(self) -> None:
        """
        An unknown enum value is named and the allowed values listed.
        """
        self.assert_error("[port1.serial]\nparity = purple\n",
                          "[port1.serial] parity = 'purple': expected one of N, O, E, M, S")

    def test_bad_bool(self) -> None:
        """
        A boolean that is not yes/no is named with its section and key.
        """
        self.assert_error("[basic]\nweb_console = maybe\n",
                          "[basic] web_console = 'maybe': expected yes or no")

    def test_bad_list_item(self) -> None:
        """
        A bad entry inside a list value names the whole key and the reason.
        """
        self.assert_error("[accessible_ip]\nentries = 10.0.0.0/255.0.0.0, 10.0.0/255.0.0.0 on\n",
                          "[accessible_ip] entries = ", "ip must be an IPv4 address")

    def test_cross_field_error(self) -> None:
        """
        A rule across two keys names both keys and their values.
        """
        self.assert_error(
            "[port1.operating]\nforce_transmit_ms = 200\ninactivity_ms = 100\n",
            "[port1.operating] force_transmit_ms = '200', inactivity_ms = '100'",
            "inactivity_ms must be greater than force_transmit_ms")

    def test_cross_field_error_with_base(self) -> None:
        """
        A rule broken against a kept value names the key that was set.
        """
        base = loads("[port1.operating]\ninactivity_ms = 100\n")
        e = self.assertRaises(ConfigError, loads, "[port1.operating]\nforce_transmit_ms = 100\n",
                              "x.ini", base)
        self.assertIn("[port1.operating] force_transmit_ms = '100': inactivity_ms", str(e))

    def test_delimiter2_alone_error(self) -> None:
        """
        Delimiter 2 without delimiter 1 is an error naming delimiter2.
        """
        self.assert_error("[port1.operating]\ndelimiter2 = 0x0A\n",
                          "[port1.operating] delimiter2 = '0x0A': delimiter2 needs delimiter1")

    def test_syntax_error(self) -> None:
        """
        A key before any section is a ConfigError naming the file.
        """
        self.assert_error("baudrate = 9600\n", "nport.ini")

    def test_duplicate_key(self) -> None:
        """
        A key given twice in one section is an error.
        """
        self.assert_error("[basic]\nserver_name = a\nserver_name = b\n", "server_name")

    def test_port_gap(self) -> None:
        """
        port3 without port2 on a one-port base is an error naming both.
        """
        base = DeviceConfig().with_port_count(1, OpMode.REAL_COM)
        e = self.assertRaises(ConfigError, loads, "[port3.serial]\nbaudrate = 9600\n", "x.ini", base)
        self.assertIn("port3 is configured but port2 is not", str(e))

    def test_port_number_range(self) -> None:
        """
        Port sections are numbered from 1.
        """
        self.assert_error("[port0.serial]\nbaudrate = 9600\n", "[port0.serial]")

    def test_sections_extend_base(self) -> None:
        """
        A port section changes only that port of the base; others are kept.
        """
        base = full_config()
        config = loads("[port2.serial]\nbaudrate = 300\n", base=base)
        self.assertEqual(config.ports[0], base.ports[0])
        self.assertEqual(config.ports[1].serial, attrs.evolve(base.ports[1].serial, baudrate=300))
        self.assertEqual(config.network, base.network)

    def test_dumps_without_secrets(self) -> None:
        """
        secrets=False leaves out the password hash and the mail password, nothing else.
        """
        config = full_config()
        text = dumps(config, secrets=False)
        self.assertNotIn(config.password.hash, text)
        self.assertNotIn("mail-secret", text)
        self.assertNotIn("[password]", text)
        self.assertIn("mail_user = nport\n", text)
        self.assertIn(config.password.hash, dumps(config))

    def test_dumps_without_network(self) -> None:
        """
        network=False leaves out the network section.
        """
        text = dumps(full_config(), network=False)
        self.assertNotIn("[network]", text)
        self.assertNotIn("10.1.2.3", text)


class ImportTests(SynchronousTestCase):
    """
    L{import_config} applies an exported file to the running configuration.
    """

    def exported(self) -> tuple[DeviceConfig, str]:
        """
        A configuration and the export of a different one with every secret included.
        """
        other = attrs.evolve(
            full_config(),
            identity=Identity(model="5110", serial_number=7),
            password=PasswordSettings(hashed().hash.replace("$1$", "$2$", 1)),
            network=NetworkSettings(ip="172.16.0.5"),
        )
        return full_config(), dumps(other)

    def test_keeps_password_and_identity(self) -> None:
        """
        The password and identity of the running box are never imported.
        """
        current, text = self.exported()
        new = import_config(text, current)
        self.assertEqual(new.password, current.password)
        self.assertEqual(new.identity, current.identity)
        self.assertEqual(new.network.ip, "172.16.0.5")

    def test_network_false_keeps_network(self) -> None:
        """
        With network=False the imported network section is ignored.
        """
        current, text = self.exported()
        self.assertEqual(import_config(text, current, network=False).network, current.network)

    def test_secretless_export_keeps_mail_password(self) -> None:
        """
        Importing an export made without secrets keeps the current mail password.
        """
        current = full_config()
        changed = attrs.evolve(current, basic=BasicSettings(server_name="renamed"))
        new = import_config(dumps(changed, secrets=False), current)
        self.assertEqual(new.auto_warning.mail_password, "mail-secret")
        self.assertEqual(new.basic.server_name, "renamed")


class StoreTests(SynchronousTestCase):
    """
    L{SettingsStore} and L{atomic_write} keep the file on disk.
    """

    def path(self) -> str:
        """
        A settings file path in a fresh temporary directory.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        return os.path.join(directory, "nport.ini")

    def test_missing_file_is_defaults(self) -> None:
        """
        Loading a file that does not exist gives the factory defaults.
        """
        self.assertEqual(SettingsStore(self.path()).load(), DeviceConfig())
        self.assertEqual(SettingsStore(None).load(), DeviceConfig())

    def test_save_load_round_trip(self) -> None:
        """
        A saved configuration loads back equal, in a file only the owner can read.
        """
        store = SettingsStore(self.path())
        store.save(full_config())
        self.assertEqual(SettingsStore(store.path).load(), full_config())
        assert store.path is not None
        self.assertEqual(stat.S_IMODE(os.stat(store.path).st_mode), 0o600)
        self.assertEqual(store.state_dir, os.path.dirname(os.path.abspath(store.path)))

    def test_bad_file_names_path(self) -> None:
        """
        A file with an invalid value or invalid UTF-8 raises ConfigError naming the path.
        """
        path = self.path()
        for data in (b"[basic]\nweb_console = maybe\n", b"[basic]\nserver_name = \xff\n"):
            with open(path, "wb") as f:
                f.write(data)
            e = self.assertRaises(ConfigError, SettingsStore(path).load)
            self.assertTrue(str(e).startswith(path + ": "), str(e))

    def test_atomic_write_replaces(self) -> None:
        """
        atomic_write replaces the content, sets mode 0600 and leaves no temporary file.
        """
        path = self.path()
        with open(path, "wb") as f:
            f.write(b"old")
        os.chmod(path, 0o644)
        atomic_write(path, b"new")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"new")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["nport.ini"])

    def test_atomic_write_mode(self) -> None:
        """
        atomic_write gives the new file the requested mode.
        """
        path = self.path()
        atomic_write(path, b"cert", mode=0o644)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

    def assert_failed_write_harmless(self, name: str) -> None:
        """
        With C{os.<name>} failing on a full disk, the old file survives and no temporary file is left.
        """
        path = self.path()
        with open(path, "wb") as f:
            f.write(b"old")

        def full(*args: object) -> NoReturn:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.patch(os, name, full)
        e = self.assertRaises(OSError, atomic_write, path, b"new")
        self.assertEqual(e.errno, errno.ENOSPC)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"old")
        self.assertEqual(os.listdir(os.path.dirname(path)), ["nport.ini"])

    def test_failed_fsync_keeps_old_file(self) -> None:
        """
        A failing fsync leaves the old file and removes the temporary one.
        """
        self.assert_failed_write_harmless("fsync")

    def test_failed_replace_keeps_old_file(self) -> None:
        """
        A failing rename leaves the old file and removes the temporary one.
        """
        self.assert_failed_write_harmless("replace")


class AddressValidatorTests(SynchronousTestCase):
    """Auto Warning's addresses (issue 11) and the limits the consoles show as input hints."""

    def test_hosts_and_emails(self) -> None:
        """Hosts are IPv4 addresses or DNS names; e-mail addresses local@host."""
        from nport_twisted.config.settings import is_email, is_host

        for good in ("10.0.0.30", "mail", "smtp.plant.example", "a-b.c."):
            self.assertTrue(is_host(good), good)
        for bad in ("", "10.0.0.300", "1.2.3", "-x", "a b", "x..y", "ü.example"):
            self.assertFalse(is_host(bad), bad)
        self.assertTrue(is_email("ops@plant.example"))
        for bad in ("ops", "@plant", "ops@", "o ps@plant", "a@b@c", "ops@bad host"):
            self.assertFalse(is_email(bad), bad)

    def test_auto_warning_refuses_bad_addresses(self) -> None:
        """A bad sender, recipient or server is refused, naming the field."""
        from nport_twisted.config.settings import AutoWarningSettings

        for field, value in (("mail_from", "ops"), ("mail_to", ("x@",)),
                             ("trap_server", "bad host"), ("mail_server", "1.2.3.4.5")):
            e = self.assertRaises(ValueError, AutoWarningSettings, **{field: value})
            self.assertIn(field, str(e))

    def test_input_limits(self) -> None:
        """The consoles read maxlength and ranges off the validators."""
        from nport_twisted.config.settings import (
            AutoWarningSettings,
            OperatingSettings,
            SerialSettings,
            input_limits,
        )

        self.assertEqual(input_limits(SerialSettings, "alias"), {"max_length": 15})
        self.assertEqual(input_limits(OperatingSettings, "tcp_alive_check_min"),
                         {"low": 0, "high": 99})
        self.assertEqual(input_limits(AutoWarningSettings, "mail_from"), {"max_length": 63})
        self.assertEqual(input_limits(SerialSettings, "parity"), {})

    def test_every_bad_key_reported(self) -> None:
        """A settings file with several bad values names every one."""
        from nport_twisted._exceptions import ConfigError
        from nport_twisted.config.store import loads

        e = self.assertRaises(ConfigError, loads,
                              "[basic]\nweb_console = maybe\nnope = 1\n[port1.serial]\nbaudrate = x\n")
        self.assertEqual(len(e.problems), 3)
        for key in ("web_console", "nope", "baudrate"):
            self.assertIn(key, str(e))
