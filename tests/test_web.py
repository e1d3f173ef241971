"""
Tests for the web console (nport_twisted.web): the pure codecs (forms,
JSON, classic Set.htm encodings), sessions and rate limiting, and every
resource through twisted.web's real HTTP stack (a L{Site} protocol on a
L{StringTransport}, the service on a L{MemoryReactorClock}).
"""

from __future__ import annotations

import json
import os
import re
from http.cookies import SimpleCookie
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from nport_twisted.config.store import SettingsStore
from nport_twisted.config.identity import resolve_identity
from nport_twisted.wire.packing import DelimiterProcess
from nport_twisted.server import NPortService, frontend_builders
from nport_twisted.config.settings import (
    AccessibleIP,
    AccessibleIPSettings,
    AutoWarningSettings,
    BasicSettings,
    DeviceConfig,
    FlowControl,
    NetworkSettings,
    OperatingSettings,
    OpMode,
    Parity,
    PasswordSettings,
    SerialInterface,
    SerialSettings,
)
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.web import WebConsole, forms, web_services
from nport_twisted.web.auth import LoginLimiter, SessionStore, same_token
from nport_twisted.web.console import run_now
from nport_twisted.web.html import texts_for
from nport_twisted.web.resources import ConsoleSite

PASSWORD = "correct horse battery"
_HASH = PasswordSettings.from_password(PASSWORD)  # once: scrypt is slow on purpose
OFFSET = 10000
MAC = bytes.fromhex("0090E8123456")


# -- pure codecs --------------------------------------------------------------------------------


class FormsTests(SynchronousTestCase):
    def test_serial_round_trip(self) -> None:
        """A serial settings value shown in the form parses back to itself."""
        value = SerialSettings(
            alias="PLC",
            baudrate=9600,
            bytesize=7,
            stopbits=2,
            parity=Parity.EVEN,
            flow_control=FlowControl.XON_XOFF,
            fifo=False,
            interface=SerialInterface.RS485_2WIRE,
        )
        texts = {k: v for k, v in texts_for(forms.SERIAL_FIELDS, value).items() if v}
        self.assertEqual(forms.parse_serial_form(texts, SerialSettings()), value)

    def test_serial_errors_per_field(self) -> None:
        """Bad values are reported on their own field, without the field name repeated."""
        form = {
            "baudrate": "fast",
            "bytesize": "9",
            "stopbits": "1",
            "parity": "N",
            "flow_control": "none",
            "interface": "rs-232",
        }
        e = self.assertRaises(forms.FieldErrors, forms.parse_serial_form, form, SerialSettings())
        self.assertEqual(e.errors["baudrate"], "must be a whole number")
        self.assertIn("must be one of 5, 6, 7, 8", e.errors["bytesize"])
        form.update(baudrate="10", bytesize="8")
        e = self.assertRaises(forms.FieldErrors, forms.parse_serial_form, form, SerialSettings())
        self.assertEqual(e.errors, {"baudrate": "must be an integer from 50 to 4000000"})

    def test_operating_form_uses_mode_fields(self) -> None:
        """Only the chosen mode's fields are read; other modes' settings keep their values."""
        base = OperatingSettings(data_port=1950)
        form = {
            "mode": "tcp-server",
            "tcp_alive_check_min": "3",
            "inactivity_ms": "0",
            "max_connection": "2",
            "packing_length": "0",
            "delimiter1": "0d",
            "delimiter2": "",
            "delimiter_process": "strip",
            "force_transmit_ms": "0",
            "local_tcp_port": "5001",
            "command_port": "0",
        }
        new = forms.parse_operating_form(form, base, {OpMode.TCP_SERVER})
        self.assertEqual(
            (
                new.mode,
                new.local_tcp_port,
                new.max_connection,
                new.delimiter1,
                new.delimiter_process,
                new.data_port,
                new.ignore_jammed,
            ),
            (OpMode.TCP_SERVER, 5001, 2, 0x0D, DelimiterProcess.STRIP, 1950, False),
        )

    def test_operating_unimplemented_mode(self) -> None:
        """A mode this version lacks is refused on the mode field."""
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_operating_form,
            {"mode": "udp"},
            OperatingSettings(),
            {OpMode.REAL_COM},
        )
        self.assertEqual(e.errors, {"mode": "UDP is not implemented in this version"})

    def test_operating_cross_field_rules(self) -> None:
        """Cross-field rules land on the field they name first."""
        form = dict(
            texts_for(forms.operating_fields(OpMode.TCP_SERVER), OperatingSettings()),
            mode="tcp-server",
            inactivity_ms="10",
            force_transmit_ms="20",
            delimiter2="0A",
        )
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_operating_form,
            form,
            OperatingSettings(),
            {OpMode.TCP_SERVER},
        )
        self.assertEqual(list(e.errors), ["delimiter2"])
        form["delimiter2"] = ""
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_operating_form,
            form,
            OperatingSettings(),
            {OpMode.TCP_SERVER},
        )
        self.assertEqual(e.errors, {"inactivity_ms": "must be greater than force_transmit_ms"})
        form["delimiter1"] = "zz"
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_operating_form,
            form,
            OperatingSettings(),
            {OpMode.TCP_SERVER},
        )
        self.assertEqual(e.errors["delimiter1"], "must be a hex byte from 00 to FF")

    def test_udp_rows(self) -> None:
        """UDP destination rows parse, empty rows are skipped, errors name the cell."""
        rows = forms.parse_udp_rows(
            {
                "udp.1.begin": "10.0.0.1",
                "udp.1.end": "10.0.0.9",
                "udp.1.port": "5000",
                "udp.3.begin": "10.0.1.1",
            }
        )
        self.assertEqual(
            [(d.begin, d.end, d.port) for d in rows],
            [("10.0.0.1", "10.0.0.9", 5000), ("10.0.1.1", "10.0.1.1", 4001)],
        )
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_udp_rows,
            {"udp.2.begin": "nope", "udp.4.begin": "10.0.0.1", "udp.4.port": "0"},
        )
        self.assertEqual(set(e.errors), {"udp.2.begin", "udp.4.port"})

    def test_accessible_form(self) -> None:
        """Accessible IP rows: active flag, default netmask, errors per cell."""
        acl = forms.parse_accessible_form(
            {
                "acl.1.active": "on",
                "acl.1.ip": "192.168.1.0",
                "acl.1.netmask": "255.255.255.0",
                "acl.2.ip": "10.0.0.5",
            }
        )
        self.assertEqual(
            acl.entries,
            (
                AccessibleIP("192.168.1.0", "255.255.255.0", True),
                AccessibleIP("10.0.0.5", "255.255.255.255", False),
            ),
        )
        e = self.assertRaises(
            forms.FieldErrors,
            forms.parse_accessible_form,
            {
                "acl.1.ip": "300.1.1.1",
                "acl.2.ip": "10.0.0.1",
                "acl.2.netmask": "255.0.255.0",
                "acl.3.active": "on",
            },
        )
        self.assertEqual(set(e.errors), {"acl.1.ip", "acl.2.netmask", "acl.3.ip"})

    def test_json_round_trip(self) -> None:
        """Every section survives to_json -> section_from_json."""
        config = DeviceConfig(
            basic=BasicSettings(server_name="box", web_console=False),
            network=NetworkSettings(ip="10.0.0.2", snmp=True),
            accessible_ip=AccessibleIPSettings(entries=(AccessibleIP("10.0.0.0", "255.0.0.0"),)),
            auto_warning=AutoWarningSettings(mail_to=("a@b", "c@d")),
        ).with_port_count(1, OpMode.TCP_SERVER)
        data = json.loads(json.dumps(forms.config_to_json(config)))
        for name, cls in forms.SECTIONS.items():
            self.assertEqual(
                forms.section_from_json(cls, data[name], cls()), getattr(config, name)
            )
        port = config.ports[0]
        self.assertEqual(
            forms.section_from_json(SerialSettings, data["ports"][0]["serial"], SerialSettings()),
            port.serial,
        )
        self.assertEqual(
            forms.section_from_json(
                OperatingSettings, data["ports"][0]["operating"], OperatingSettings()
            ),
            port.operating,
        )

    def test_json_never_writes_secrets(self) -> None:
        """The mail password is write-only."""
        warn = AutoWarningSettings(mail_password="hunter22")
        self.assertNotIn("mail_password", forms.to_json(warn))
        new = forms.section_from_json(AutoWarningSettings, {"mail_password": "x"}, warn)
        self.assertEqual(new.mail_password, "x")

    def test_json_errors(self) -> None:
        """Wrong types, unknown fields, bad enum values and range errors name their field."""
        e = self.assertRaises(
            forms.FieldErrors,
            forms.section_from_json,
            SerialSettings,
            {"baudrate": "9600", "fifo": 1, "parity": "X", "speed": 1},
            SerialSettings(),
        )
        self.assertEqual(e.errors["baudrate"], "must be a whole number")
        self.assertEqual(e.errors["fifo"], "must be true or false")
        self.assertIn('"E"', e.errors["parity"])
        self.assertEqual(e.errors["speed"], "unknown field")
        e = self.assertRaises(
            forms.FieldErrors,
            forms.section_from_json,
            SerialSettings,
            {"baudrate": 10},
            SerialSettings(),
        )
        self.assertEqual(e.errors, {"baudrate": "must be an integer from 50 to 4000000"})
        e = self.assertRaises(
            forms.FieldErrors,
            forms.section_from_json,
            AccessibleIPSettings,
            {"entries": [{"ip": "1.2.3.4"}, {"ip": "x"}, {"ip": "1.1.1.1", "bad": 1}]},
            AccessibleIPSettings(),
        )
        self.assertEqual(set(e.errors), {"entries[1].ip", "entries[2].bad"})
        e = self.assertRaises(
            forms.FieldErrors, forms.section_from_json, SerialSettings, [], SerialSettings()
        )
        self.assertEqual(list(e.errors), ["_body"])

    def test_json_enum_by_name_and_float(self) -> None:
        """Enums accept their value or name in any case; stop bits accept 1.5."""
        new = forms.section_from_json(
            SerialSettings, {"parity": "even", "stopbits": 1.5, "bytesize": 5}, SerialSettings()
        )
        self.assertEqual((new.parity, new.stopbits), (Parity.EVEN, 1.5))

    def test_classic_serial_encodings(self) -> None:
        """Set.htm serial fields use the web encodings of settings.md §4."""
        config = DeviceConfig().with_port_count(2, OpMode.REAL_COM)
        new, reply = forms.classic_apply(
            config,
            {
                "Port": "2",
                "BaudRate": "12",
                "DataBits": "2",
                "StopBits": "4",
                "Parity": "24",
                "FlowCtrl": "1",
                "FIFO": "0",
                "IfType": "2",
                "PortAlias": "scale",
                "Submit": "Submit",
                "setfunc": "Serial",
            },
            {OpMode.REAL_COM},
        )
        self.assertEqual(reply, "Serial Settings OK!")
        self.assertEqual(
            new.ports[1].serial,
            SerialSettings(
                alias="scale",
                baudrate=9600,
                bytesize=7,
                stopbits=2,
                parity=Parity.EVEN,
                flow_control=FlowControl.RTS_CTS,
                fifo=False,
                interface=SerialInterface.RS485_2WIRE,
            ),
        )
        self.assertEqual(new.ports[0], config.ports[0])
        for index, baud in ((7, 1200), (16, 115200), (18, 460800), (19, 921600)):
            new, _ = forms.classic_apply(
                config, {"BaudRate": str(index), "setfunc": "Serial"}, set()
            )
            self.assertEqual(new.ports[0].serial.baudrate, baud)
        for lcr, parity in forms.CLASSIC_PARITY.items():
            new, _ = forms.classic_apply(config, {"Parity": str(lcr), "setfunc": "Serial"}, set())
            self.assertEqual(new.ports[0].serial.parity, parity)
        new, _ = forms.classic_apply(
            config, {"StopBits": "3", "DataBits": "0", "setfunc": "Serial"}, set()
        )
        self.assertEqual((new.ports[0].serial.stopbits, new.ports[0].serial.bytesize), (1.5, 5))

    def test_classic_apply_all(self) -> None:
        """ApplyAll=ON (5110A "Communication Parameters") sets every port but keeps aliases."""
        config = DeviceConfig().with_port_count(2, OpMode.REAL_COM)
        new, reply = forms.classic_apply(
            config,
            {
                "BaudRate": "13",
                "PortAlias": "a",
                "ApplyAll": "ON",
                "setfunc": "Communication Parameters",
            },
            set(),
        )
        self.assertEqual(reply, "Serial Settings OK!")
        self.assertEqual([p.serial.baudrate for p in new.ports], [19200, 19200])
        self.assertEqual([p.serial.alias for p in new.ports], ["a", ""])

    def test_classic_opmode(self) -> None:
        """OPMode: mode codes, ports, hex delimiters; unimplemented modes refused."""
        config = DeviceConfig().with_port_count(1, OpMode.REAL_COM)
        new, reply = forms.classic_apply(
            config,
            {
                "OpMode": "10",
                "PortNo": "4101",
                "MaxConnect": "2",
                "TCPAliveCheck": "5",
                "packlen": "16",
                "DelimiterChar1": "0d",
                "delimprocess": "3",
                "ForceTxTime": "20",
                "ignorejam": "1",
                "setfunc": "OPMode",
            },
            {OpMode.TCP_SERVER},
        )
        self.assertEqual(reply, "Operating Settings OK!")
        op = new.ports[0].operating
        self.assertEqual(
            (
                op.mode,
                op.local_tcp_port,
                op.max_connection,
                op.tcp_alive_check_min,
                op.packing_length,
                op.delimiter1,
                op.delimiter_process,
                op.force_transmit_ms,
                op.ignore_jammed,
            ),
            (OpMode.TCP_SERVER, 4101, 2, 5, 16, 0x0D, DelimiterProcess.STRIP, 20, True),
        )
        new, _ = forms.classic_apply(
            config, {"OpMode": "02", "setfunc": "OPMode"}, {OpMode.REAL_COM}
        )
        self.assertEqual(new.ports[0].operating.mode, OpMode.REAL_COM)
        e = self.assertRaises(
            forms.FieldErrors,
            forms.classic_apply,
            config,
            {"OpMode": "514", "setfunc": "OPMode"},
            {OpMode.REAL_COM},
        )
        self.assertEqual(e.errors, {"OpMode": "UDP is not implemented in this version"})

    def test_classic_errors(self) -> None:
        """Bad classic values and groups are reported by classic field name."""
        config = DeviceConfig().with_port_count(1, OpMode.REAL_COM)
        e = self.assertRaises(
            forms.FieldErrors,
            forms.classic_apply,
            config,
            {"BaudRate": "20", "Parity": "7", "setfunc": "Serial"},
            set(),
        )
        self.assertEqual(set(e.errors), {"BaudRate", "Parity"})
        e = self.assertRaises(
            forms.FieldErrors,
            forms.classic_apply,
            config,
            {"Port": "2", "setfunc": "Serial"},
            set(),
        )
        self.assertEqual(e.errors, {"Port": "must be a port number from 1 to 1"})
        e = self.assertRaises(
            forms.FieldErrors, forms.classic_apply, config, {"setfunc": "Firmware"}, set()
        )
        self.assertEqual(list(e.errors), ["setfunc"])
        e = self.assertRaises(
            forms.FieldErrors,
            forms.classic_apply,
            config,
            {"MaxConnect": "9", "setfunc": "OPMode"},
            set(),
        )
        self.assertEqual(e.errors, {"MaxConnect": "must be an integer from 1 to 4"})

    def test_classic_basic_and_network(self) -> None:
        """Basic and Network groups; clock fields are accepted and ignored."""
        config = DeviceConfig().with_port_count(1, OpMode.REAL_COM)
        new, reply = forms.classic_apply(
            config,
            {
                "ServerName": "line-7",
                "WebDisable": "0",
                "ConDisable": "1",
                "TimeZone": "23",
                "Year": "2024",
                "setfunc": "Basic",
            },
            set(),
        )
        self.assertEqual(reply, "Basic Settings OK!")
        self.assertEqual(
            (new.basic.server_name, new.basic.web_console, new.basic.telnet_console),
            ("line-7", True, False),
        )
        new, reply = forms.classic_apply(
            config,
            {
                "IPConfig": "1",
                "IP": "10.1.2.3",
                "Netmask": "255.255.0.0",
                "SnmpMode": "1",
                "IPLocationPort": "4003",
                "setfunc": "Network",
            },
            set(),
        )
        self.assertEqual(reply, "Network Settings OK!")
        self.assertEqual(
            (
                new.network.ip_config.value,
                new.network.ip,
                new.network.snmp,
                new.network.auto_report_port,
            ),
            ("dhcp", "10.1.2.3", True, 4003),
        )
        e = self.assertRaises(
            forms.FieldErrors,
            forms.classic_apply,
            config,
            {"IP": "10.1.2", "setfunc": "Network"},
            set(),
        )
        self.assertEqual(list(e.errors), ["IP"])


class AuthTests(SynchronousTestCase):
    def test_session_idle_and_max_age(self) -> None:
        """Sessions end after the idle timeout, and after the maximum age even when used."""
        clock = Clock()
        store = SessionStore(clock, idle_timeout=60, max_age=300)
        s = store.create("10.0.0.1")
        clock.advance(59)
        self.assertIs(store.get(s.sid), s)
        clock.advance(61)
        self.assertIsNone(store.get(s.sid))
        s = store.create("10.0.0.1")
        for _ in range(7):
            clock.advance(50)
            store.get(s.sid)
        self.assertIsNone(store.get(s.sid))

    def test_cookie_and_bearer_kept_apart(self) -> None:
        """A bearer token is not a cookie session and vice versa."""
        store = SessionStore(Clock())
        cookie, bearer = store.create("a"), store.create("a", bearer=True)
        self.assertIsNone(store.get(cookie.sid, bearer=True))
        self.assertIsNone(store.get(bearer.sid))
        self.assertIs(store.get(bearer.sid, bearer=True), bearer)
        self.assertNotEqual(cookie.csrf, bearer.csrf)

    def test_drop_all_and_bound(self) -> None:
        """drop_all keeps one session; the store holds at most max_sessions."""
        store = SessionStore(Clock(), max_sessions=3)
        sessions = [store.create(str(i)) for i in range(5)]
        self.assertEqual(len(store), 3)
        self.assertIsNone(store.get(sessions[0].sid))
        store.drop_all(keep=sessions[4].sid)
        self.assertEqual(len(store), 1)
        self.assertIsNotNone(store.get(sessions[4].sid))

    def test_limiter(self) -> None:
        """Five failures are free, then the wait doubles; success and time forget."""
        clock = Clock()
        limiter = LoginLimiter(clock, free=5, base_delay=1, max_delay=8, forget_after=100)
        for _ in range(5):
            self.assertEqual(limiter.wait_time("a"), 0)
            limiter.failed("a")
        self.assertEqual(limiter.wait_time("a"), 1)
        self.assertEqual(limiter.wait_time("b"), 0)
        clock.advance(1)
        limiter.failed("a")
        self.assertEqual(limiter.wait_time("a"), 2)
        for _ in range(5):
            limiter.failed("a")
        self.assertEqual(limiter.wait_time("a"), 8)
        clock.advance(101)
        self.assertEqual(limiter.wait_time("a"), 0)
        limiter.failed("b")
        limiter.succeeded("b")
        self.assertEqual(limiter.wait_time("b"), 0)

    def test_same_token(self) -> None:
        """Empty tokens never match."""
        self.assertTrue(same_token("abc", "abc"))
        self.assertFalse(same_token("", ""))
        self.assertFalse(same_token(None, "abc"))
        self.assertFalse(same_token("abd", "abc"))


# -- HTTP through the real twisted.web stack ----------------------------------------------------


@attrs.frozen
class Response:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


@implementer(ISSLTransport)
class _TLSTransport(StringTransport):
    """A transport twisted.web takes for TLS (Request.isSecure)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        pass


def _parse_response(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers.setdefault(k.strip().lower(), []).append(v.strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        out = b""
        while body:
            size_line, _, rest = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            body = rest[size + 2 :]
        body = out
    return Response(code, headers, body)


class Client:
    """An HTTP client with a cookie jar that talks to a Site through a StringTransport."""

    def __init__(self, site: ConsoleSite, host: str = "127.0.0.1", tls: bool = False) -> None:
        self.site = site
        self.host = host
        self.tls = tls
        self.cookies: dict[str, str] = {}
        self.set_cookies: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Response:
        from urllib.parse import urlencode

        headers = dict(headers or {})
        if form is not None:
            body = urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        addr = IPv4Address("TCP", self.host, 40000)
        protocol = self.site.buildProtocol(addr)
        if protocol is None:
            raise ConnectionRefusedError(self.host)
        transport_type = _TLSTransport if self.tls else StringTransport
        transport = transport_type(
            peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 10080)
        )
        protocol.makeConnection(transport)
        head = f"{method} {path} HTTP/1.1\r\nHost: nport.test\r\nConnection: close\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        protocol.dataReceived(head.encode() + body)
        response = _parse_response(transport.value())
        protocol.connectionLost(Failure(ConnectionDone()))
        for raw in response.headers.get("set-cookie", []):
            self.set_cookies.append(raw)
            cookie = SimpleCookie()
            cookie.load(raw)
            for name, morsel in cookie.items():
                if morsel.value and morsel["max-age"] != "0":
                    self.cookies[name] = morsel.value
                else:
                    self.cookies.pop(name, None)
        return response

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Response:
        return self.request("POST", path, **kw)


def csrf_of(response: Response) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert m is not None, "no CSRF token in the page"
    return m.group(1)


class _Devices:
    def __init__(self) -> None:
        self.devices: dict[str, FakeSerialDevice] = {}

    def opener(self, protocol: Any, device: str, settings: SerialSettings) -> Any:
        fake = self.devices.setdefault(device, FakeSerialDevice(device))
        return fake.opener(protocol, device, settings)


#: The modes these tests may choose; UDP stands for one this version lacks.
_BUILDERS = {
    mode: builder
    for mode, builder in frontend_builders().items()
    if mode in (OpMode.REAL_COM, OpMode.TCP_SERVER, OpMode.DISABLED)
}


class WebTestCase(SynchronousTestCase):
    """A two-port service (port 1 Real COM, port 2 TCP Server) with its console."""

    password: PasswordSettings | None = _HASH

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.devices = _Devices()
        self.path = os.path.abspath(self.mktemp())
        config = DeviceConfig(password=self.password or PasswordSettings()).with_port_count(
            2, OpMode.REAL_COM
        )
        port2 = config.ports[1]
        config = config.replace_port(
            1, attrs.evolve(port2, operating=OperatingSettings(mode=OpMode.TCP_SERVER))
        )
        self.server = NPortService(
            self.reactor,
            ["/dev/fake0", "/dev/fake1"],
            config,
            SettingsStore(self.path),
            self.devices.opener,
            port_offset=OFFSET,
            interface="127.0.0.1",
            builders=_BUILDERS,
        )
        self.server.startService()
        self.addCleanup(self.server.stopService)
        self.console = WebConsole(
            self.server,
            run_blocking=run_now,
            identity=lambda c, n: resolve_identity(c, n, mac=lambda: (MAC, "test")),
        )
        self.site = ConsoleSite(self.console, reactor=self.reactor)
        self.client = Client(self.site)

    def login(self, client: Client | None = None) -> str:
        """Log C{client} in; return the CSRF token of its session."""
        client = client or self.client
        response = client.post("/login", form={"password": PASSWORD})
        self.assertEqual((response.code, response.header("location")), (303, "/overview"))
        return csrf_of(client.get("/overview"))

    def api_token(self) -> str:
        response = self.client.post("/api/v1/session", json_body={"password": PASSWORD})
        self.assertEqual(response.code, 200)
        return str(response.json()["token"])

    def listening(self) -> list[int]:
        return sorted(
            port
            for port, _, _, _ in self.reactor.tcpServers
            if any(l.port == port for l in self.server.net.listeners)
        )


class FirstStartTests(WebTestCase):
    password = None

    def test_only_setup_page(self) -> None:
        """Without a password every page leads to the set-password page, the API says so."""
        for path in ("/overview", "/login", "/serial?port=1"):
            self.assertEqual(self.client.get(path).header("location"), "/setup", path)
        root = self.client.get("/")  # the page itself, as an NPort answers (issue 11)
        self.assertEqual((root.code, root.header("location")), (200, None))
        self.assertIn('action="/setup"', root.text)
        page = self.client.get("/setup")
        self.assertEqual(page.code, 200)
        self.assertIn("setup token", page.text)
        self.assertEqual(self.client.get("/api/v1/settings").json()["error"], "setup_required")

    def test_token_logged_at_start(self) -> None:
        """The web service logs the one-time setup token when it starts."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for svc in web_services(self.server, console=self.console):
            if not hasattr(svc, "factory"):
                svc.startService()
        token = self.console.setup_token
        assert token is not None
        self.assertTrue(any(e.get("token") == token for e in events))

    def test_setup_needs_token(self) -> None:
        """A wrong token is refused and counted; the right one sets the password and logs in."""
        form = {"setup_token": "guess", "new_password": PASSWORD, "new_password2": PASSWORD}
        response = self.client.post("/setup", form=form)
        self.assertEqual(response.code, 403)
        self.assertIn("wrong setup token", response.text)
        self.assertFalse(self.console.password_set)
        short = dict(
            form,
            setup_token=self.console.setup_token or "",
            new_password="short",
            new_password2="short",
        )
        self.assertEqual(self.client.post("/setup", form=short).code, 400)
        response = self.client.post(
            "/setup", form=dict(form, setup_token=self.console.setup_token or "")
        )
        self.assertEqual((response.code, response.header("location")), (303, "/overview"))
        self.assertTrue(self.server.config.password.verify(PASSWORD))
        self.assertIsNone(self.console.setup_token)
        with open(self.path) as f:
            saved = f.read()
        self.assertIn("scrypt$", saved)
        self.assertNotIn(PASSWORD, saved)
        self.assertEqual(self.client.get("/overview").code, 200)

    def test_setup_rate_limited(self) -> None:
        """Guessing the setup token is rate limited per address."""
        form = {"setup_token": "guess", "new_password": PASSWORD, "new_password2": PASSWORD}
        for _ in range(5):
            self.client.post("/setup", form=form)
        response = self.client.post(
            "/setup", form=dict(form, setup_token=self.console.setup_token or "")
        )
        self.assertEqual(response.code, 429)
        self.assertFalse(self.console.password_set)

    def test_setup_api(self) -> None:
        """Automation can set the first password with the token over the API."""
        response = self.client.post(
            "/api/v1/setup", json_body={"setup_token": "x", "password": PASSWORD}
        )
        self.assertEqual(
            (response.code, response.json()["errors"][0]["field"]), (403, "setup_token")
        )
        response = self.client.post(
            "/api/v1/setup",
            json_body={"setup_token": self.console.setup_token, "password": PASSWORD},
        )
        token = response.json()["token"]
        response = self.client.get("/api/v1/device", headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(response.json()["mac"], "00:90:E8:12:34:56")
        self.assertEqual(self.client.post("/api/v1/setup", json_body={}).code, 409)


class LoginTests(WebTestCase):
    def test_nothing_before_login(self) -> None:
        """Before login: a login page without device details; pages and API refuse."""
        page = self.client.get("/login")
        self.assertEqual(page.code, 200)
        self.assertIn("<title>NPort Web Console</title>", page.text)
        for secret in ("5232", "00:90:E8", "NP5232", str(int.from_bytes(MAC[4:], "big"))):
            self.assertNotIn(secret, page.text)
        self.assertEqual(self.client.get("/overview").header("location"), "/login")
        self.assertEqual(self.client.get("/export").header("location"), "/login")
        self.assertEqual(self.client.get("/api/v1/status").code, 401)
        self.assertEqual(self.client.get("/Set.htm?BaudRate=12&setfunc=Serial").code, 401)
        self.assertEqual(self.client.get("/static/nport.css").code, 200)
        self.assertEqual(self.client.get("/static/missing.js").code, 404)
        self.assertEqual(self.client.get("/main.htm").header("location"), "/login")
        self.assertEqual(self.client.get("/no/such/page").code, 404)

    def test_headers(self) -> None:
        """Every answer carries the security headers and the MOXA server name."""
        page = self.client.get("/login")
        self.assertEqual(page.header("server"), "MoxaHttp/2.2")
        self.assertEqual(page.header("x-frame-options"), "DENY")
        self.assertIn("script-src 'self'", page.header("content-security-policy") or "")
        self.assertEqual(page.header("cache-control"), "no-store")
        self.assertNotIn("<script>", page.text)

    def test_login_cookie(self) -> None:
        """Login sets an HttpOnly SameSite=Strict cookie; the overview shows the device."""
        self.login()
        cookie = self.client.set_cookies[-1]
        self.assertIn("HttpOnly", cookie)
        self.assertIn("samesite=strict", cookie.lower())
        self.assertIn("Path=/", cookie)
        self.assertNotIn("Secure", cookie)
        page = self.client.get("/overview")
        for text in (
            "NPort 5232",
            "00:90:E8:12:34:56",
            str(0x3456),
            "1.0.0",
            "System uptime",
            "Welcome to NP5232_13398",
        ):
            self.assertIn(text, page.text)

    def test_secure_cookie_under_tls(self) -> None:
        """Under HTTPS the session cookie is Secure."""
        client = Client(self.site, tls=True)
        self.login(client)
        self.assertIn("Secure", client.set_cookies[-1])

    def test_wrong_password_rate_limited(self) -> None:
        """Wrong passwords: 401, then 429 with Retry-After, even for the right password."""
        for _ in range(5):
            self.assertEqual(self.client.post("/login", form={"password": "nope"}).code, 401)
        response = self.client.post("/login", form={"password": PASSWORD})
        self.assertEqual(response.code, 429)
        self.assertEqual(response.header("retry-after"), "2")
        self.reactor.advance(2)
        self.assertEqual(self.client.post("/login", form={"password": PASSWORD}).code, 303)
        api = self.client.post("/api/v1/session", json_body={"password": "nope"})
        self.assertEqual(api.code, 401)

    def test_logout(self) -> None:
        """Logout needs the CSRF token and ends the session."""
        csrf = self.login()
        self.client.post("/logout", form={})
        self.assertEqual(self.client.get("/overview").code, 200)
        self.client.post("/logout", form={"csrf_token": csrf})
        self.assertEqual(self.client.get("/overview").header("location"), "/login")

    def test_session_fixation(self) -> None:
        """A cookie sent at login is replaced by a new session id."""
        self.client.cookies["nport_session"] = "planted"
        self.login()
        self.assertNotEqual(self.client.cookies["nport_session"], "planted")

    def test_accessible_ip_enforced(self) -> None:
        """Hosts outside an active accessible IP list cannot even connect; loopback always can."""
        acl = AccessibleIPSettings(entries=(AccessibleIP("192.168.1.0", "255.255.255.0"),))
        self.server.config = attrs.evolve(self.server.config, accessible_ip=acl)
        self.assertRaises(ConnectionRefusedError, Client(self.site, "10.0.0.9").get, "/login")
        self.assertEqual(Client(self.site, "192.168.1.20").get("/login").code, 200)
        self.assertEqual(self.client.get("/login").code, 200)

    def test_web_console_disabled(self) -> None:
        """With the web console disabled in Basic Settings every request is refused."""
        self.server.config = attrs.evolve(
            self.server.config, basic=BasicSettings(web_console=False)
        )
        self.assertEqual(self.client.get("/login").code, 403)


class PageTests(WebTestCase):
    def test_menu_and_pages(self) -> None:
        """Every menu page renders for a logged-in user."""
        self.login()
        for path in (
            "/overview",
            "/basic",
            "/network",
            "/serial?port=1",
            "/serial?port=2",
            "/operating?port=1",
            "/operating?port=2",
            "/accessible",
            "/warning",
            "/monitor",
            "/password",
            "/factory",
            "/config",
            "/saverestart",
        ):
            page = self.client.get(path)
            self.assertEqual(page.code, 200, path)
            self.assertIn("Main Menu", page.text)
            self.assertIn('href="/operating?port=2"', page.text)

    def test_csrf_required(self) -> None:
        """A form post without the session's CSRF token changes nothing."""
        self.login()
        response = self.client.post(
            "/serial?port=1",
            form={
                "baudrate": "9600",
                "bytesize": "8",
                "stopbits": "1",
                "parity": "N",
                "flow_control": "none",
                "interface": "rs-232",
            },
        )
        self.assertEqual(response.code, 403)
        self.assertFalse(self.console.has_pending)

    def test_serial_validation_error_next_to_field(self) -> None:
        """A bad value shows the page again with the error next to the field and the typed text."""
        csrf = self.login()
        form = dict(
            texts_for(forms.SERIAL_FIELDS, SerialSettings()), csrf_token=csrf, alias="x" * 20
        )
        response = self.client.post("/serial?port=1", form=form)
        self.assertEqual(response.code, 400)
        self.assertIn(
            '<span class="error" id="alias-error">is longer than 15 characters</span>',
            response.text,
        )
        self.assertIn('value="' + "x" * 20 + '"', response.text)
        self.assertFalse(self.console.has_pending)

    def test_serial_then_save_restart(self) -> None:
        """Serial settings wait for Save/Restart, which applies them to the device and saves."""
        csrf = self.login()
        form = dict(
            texts_for(forms.SERIAL_FIELDS, SerialSettings()),
            csrf_token=csrf,
            baudrate="9600",
            parity="E",
        )
        response = self.client.post("/serial?port=2", form=form)
        self.assertEqual(
            (response.code, response.header("location")), (303, "/serial?port=2&saved=1")
        )
        self.assertIn(
            "Save/Restart to put them in force", self.client.get("/serial?port=2&saved=1").text
        )
        device = self.devices.devices["/dev/fake1"]
        self.assertEqual(device.in_force.baudrate, 115200)
        self.assertTrue(self.console.has_pending)
        response = self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertIn("Save/Restart OK", response.text)
        self.assertEqual((device.in_force.baudrate, device.in_force.parity), (9600, Parity.EVEN))
        self.assertEqual(device.opens, 1)
        self.assertEqual(SettingsStore(self.path).load().ports[1].serial.baudrate, 9600)
        self.assertFalse(self.console.has_pending)

    def test_serial_apply_all(self) -> None:
        """ "Apply to all ports" copies the line settings but not the alias."""
        csrf = self.login()
        form = dict(
            texts_for(forms.SERIAL_FIELDS, SerialSettings()),
            csrf_token=csrf,
            baudrate="4800",
            alias="one",
            apply_all="on",
        )
        self.client.post("/serial?port=1", form=form)
        self.assertEqual(
            [(p.serial.baudrate, p.serial.alias) for p in self.console.pending.ports],
            [(4800, "one"), (4800, "")],
        )

    def test_operating_fields_follow_mode(self) -> None:
        """The page shows the chosen mode's fields; unimplemented modes are disabled options."""
        self.login()
        realcom = self.client.get("/operating?port=1").text
        self.assertIn('name="data_port"', realcom)
        self.assertNotIn('name="local_tcp_port"', realcom)
        tcp = self.client.get("/operating?port=1&mode=tcp-server").text
        self.assertIn('name="local_tcp_port"', tcp)
        self.assertIn('name="inactivity_ms"', tcp)
        self.assertIn('<option value="tcp-server" selected="selected">', tcp)
        self.assertIn(
            '<option value="udp" disabled="disabled">UDP (not implemented)</option>', tcp
        )
        self.assertIn('name="udp.1.begin"', self.client.get("/operating?port=1&mode=udp").text)

    def test_operating_choose_without_script(self) -> None:
        """The "Show fields" button re-renders the form for the chosen mode without saving."""
        csrf = self.login()
        page = self.client.post(
            "/operating?port=1", form={"csrf_token": csrf, "mode": "tcp-server", "choose": "1"}
        )
        self.assertEqual(page.code, 200)
        self.assertIn('name="local_tcp_port"', page.text)
        self.assertFalse(self.console.has_pending)

    def test_mode_change_applied_live(self) -> None:
        """Switching port 1 to TCP Server and Save/Restart starts its listener, no restart."""
        csrf = self.login()
        self.assertNotIn(OFFSET + 4001, self.listening())
        form = {
            "csrf_token": csrf,
            "mode": "tcp-server",
            "tcp_alive_check_min": "7",
            "inactivity_ms": "0",
            "max_connection": "1",
            "packing_length": "0",
            "delimiter1": "",
            "delimiter2": "",
            "delimiter_process": "do-nothing",
            "force_transmit_ms": "0",
            "local_tcp_port": "0",
            "command_port": "0",
        }
        self.assertEqual(self.client.post("/operating?port=1", form=form).code, 303)
        self.assertNotIn(OFFSET + 4001, self.listening())
        self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertIn(OFFSET + 4001, self.listening())
        self.assertNotIn(OFFSET + 950, self.listening())
        self.assertIn(OFFSET + 4002, self.listening())
        self.assertTrue(self.server.ports[0].channel.is_open)

    def test_operating_error(self) -> None:
        """Operating errors show next to the field; unimplemented modes are refused."""
        csrf = self.login()
        response = self.client.post(
            "/operating?port=1",
            form={
                "csrf_token": csrf,
                "mode": "tcp-server",
                "tcp_alive_check_min": "100",
                "max_connection": "1",
                "delimiter_process": "do-nothing",
            },
        )
        self.assertEqual(response.code, 400)
        self.assertIn(
            'id="tcp_alive_check_min-error">must be an integer from 0 to 99', response.text
        )
        response = self.client.post("/operating?port=1", form={"csrf_token": csrf, "mode": "udp"})
        self.assertIn("UDP is not implemented in this version", response.text)

    def test_basic_network_warning_pages(self) -> None:
        """Device-wide sections are edited through their pages."""
        csrf = self.login()
        form = dict(
            texts_for(forms.BASIC_FIELDS, BasicSettings()), csrf_token=csrf, server_name="line-7"
        )
        form = {k: v for k, v in form.items() if v != ""}
        form["server_name"] = "line-7"
        self.assertEqual(self.client.post("/basic", form=form).code, 303)
        self.assertEqual(self.console.pending.basic.server_name, "line-7")
        self.assertTrue(self.console.pending.basic.web_console)
        response = self.client.post(
            "/network",
            form={
                "csrf_token": csrf,
                "ip_config": "static",
                "ip": "1.2.3",
                "auto_report_port": "4002",
                "auto_report_period": "10",
            },
        )
        self.assertIn('id="ip-error"', response.text)
        response = self.client.post(
            "/warning",
            form={
                "csrf_token": csrf,
                "mail_server": "mail",
                "mail_password": "s3cret",
                "mail_to.2": "ops@plant",
                "mail_cold_start": "on",
            },
        )
        self.assertEqual(response.code, 303)
        warn = self.console.pending.auto_warning
        self.assertEqual(
            (warn.mail_password, warn.mail_to, warn.mail_cold_start),
            ("s3cret", ("ops@plant",), True),
        )
        self.assertNotIn("s3cret", self.client.get("/warning").text)
        self.client.post("/warning", form={"csrf_token": csrf, "mail_server": "mail"})
        self.assertEqual(self.console.pending.auto_warning.mail_password, "s3cret")

    def test_accessible_page(self) -> None:
        """The accessible IP list is edited per row and cannot lock out the editing host."""
        self.client = Client(self.site, "192.168.1.20")
        csrf = self.login()
        response = self.client.post(
            "/accessible",
            form={
                "csrf_token": csrf,
                "acl.1.active": "on",
                "acl.1.ip": "10.0.0.0",
                "acl.1.netmask": "255.0.0.0",
            },
        )
        self.assertEqual(response.code, 400)
        self.assertIn("lock out your own address 192.168.1.20", response.text)
        response = self.client.post(
            "/accessible",
            form={
                "csrf_token": csrf,
                "acl.1.active": "on",
                "acl.1.ip": "192.168.1.0",
                "acl.1.netmask": "255.255.255.0",
                "acl.2.ip": "bad",
            },
        )
        self.assertIn('id="acl.2.ip-error"', response.text)

    def test_monitor(self) -> None:
        """The monitor shows modes, peers, counters and lines; the status API the same texts."""
        self.login()
        self.server.ports[1].channel.stats.serial_tx_bytes = 1234
        page = self.client.get("/monitor").text
        self.assertIn('<td data-port="2" data-key="tx">1234</td>', page)
        self.assertIn('<td data-port="1" data-key="mode">Real COM</td>', page)
        self.assertIn('<td data-port="2" data-key="listening">tcp/10967, tcp/14002</td>', page)
        self.assertIn('<td data-port="2" data-key="cts">OFF</td>', page)
        self.assertIn('<td data-port="1" data-key="cts">-</td>', page)
        self.assertIn('src="/static/nport.js"', page)
        status = self.client.get("/api/v1/status").json()
        port2 = status["ports"][1]
        self.assertEqual(
            (port2["counters"]["serial_tx_bytes"], port2["display"]["tx"], port2["mode"]),
            (1234, "1234", "tcp-server"),
        )
        self.assertEqual(port2["modem"], {"cts": False, "dsr": False, "dcd": False, "ri": False})

    def test_change_password(self) -> None:
        """The old password is checked; a new one ends the other sessions and is saved."""
        other = Client(self.site)
        self.login(other)
        csrf = self.login()
        response = self.client.post(
            "/password",
            form={
                "csrf_token": csrf,
                "old_password": "nope",
                "new_password": "another secret",
                "new_password2": "another secret",
                "confirm": "on",
            },
        )
        self.assertIn('id="old_password-error">wrong password', response.text)
        response = self.client.post(
            "/password",
            form={
                "csrf_token": csrf,
                "old_password": PASSWORD,
                "new_password": "another secret",
                "new_password2": "different!",
            },
        )
        self.assertIn('id="new_password2-error"', response.text)
        response = self.client.post(
            "/password",
            form={
                "csrf_token": csrf,
                "old_password": PASSWORD,
                "new_password": "another secret",
                "new_password2": "another secret",
                "confirm": "on",  # the change is confirmed (issue 11)
            },
        )
        self.assertIn("Password changed", response.text)
        self.assertTrue(SettingsStore(self.path).load().password.verify("another secret"))
        self.assertEqual(self.client.get("/overview").code, 200)
        self.assertEqual(other.get("/overview").header("location"), "/login")

    def test_factory_default(self) -> None:
        """Factory defaults are applied and saved at once, keeping network, identity, password."""
        csrf = self.login()
        self.server.config = attrs.evolve(
            self.server.config,
            network=NetworkSettings(ip="10.9.9.9"),
            basic=BasicSettings(server_name="old"),
        )
        response = self.client.post(
            "/factory", form={"csrf_token": csrf, "keep_network": "on", "confirm": "on"}
        )
        self.assertIn("Factory defaults loaded", response.text)
        config = self.server.config
        self.assertEqual((config.network.ip, config.basic.server_name), ("10.9.9.9", ""))
        self.assertEqual(
            [p.operating.mode for p in config.ports], [OpMode.REAL_COM, OpMode.REAL_COM]
        )
        self.assertTrue(config.password.verify(PASSWORD))
        self.client.post("/factory", form={"csrf_token": csrf, "confirm": "on"})
        self.assertEqual(self.server.config.network.ip, "")

    def test_export_import(self) -> None:
        """Export leaves secrets out; an imported file becomes the pending configuration."""
        csrf = self.login()
        exported = self.client.get("/export?network=1")
        self.assertIn("attachment", exported.header("content-disposition") or "")
        self.assertNotIn("scrypt", exported.text)
        self.assertIn("[port2.operating]", exported.text)
        text = exported.text.replace("baudrate = 115200", "baudrate = 2400", 1)
        boundary = "----nport"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="n.ini"\r\n'
            f"Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
        ).encode()
        response = self.client.post(
            "/config",
            body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        self.assertIn("Settings imported", response.text)
        self.assertEqual(self.console.pending.ports[0].serial.baudrate, 2400)
        self.assertTrue(self.console.pending.password.verify(PASSWORD))
        bad = body.replace(b"baudrate = 2400", b"baudrate = fast")
        response = self.client.post(
            "/config",
            body=bad,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        self.assertEqual(response.code, 400)
        self.assertIn("baudrate = &#x27;fast&#x27;", response.text.replace("'", "&#x27;"))

    def test_discard(self) -> None:
        """Pending changes can be discarded from the Save/Restart page."""
        csrf = self.login()
        self.console.set_pending(
            attrs.evolve(self.console.pending, basic=BasicSettings(server_name="x"))
        )
        self.assertIn("not in force yet", self.client.get("/overview").text)
        self.client.post("/saverestart", form={"csrf_token": csrf, "discard": "1"})
        self.assertFalse(self.console.has_pending)


class SaveFailureTests(WebTestCase):
    def setUp(self) -> None:
        super().setUp()
        os.mkdir(self.path + ".d")
        self.server.store = SettingsStore(self.path + ".d")  # a directory: every save fails

    def test_save_failure_reported(self) -> None:
        """
        Settings in force but not written are reported on the page, the API
        and 09Set.htm, with 507 (never 500, issue 13) and the file named.
        """
        csrf = self.login()
        self.console.set_pending(
            attrs.evolve(self.console.pending, basic=BasicSettings(server_name="x"))
        )
        response = self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertEqual(response.code, 507)
        self.assertIn("could not be written", response.text)
        self.assertIn(self.path + ".d", response.text)
        self.assertEqual(self.server.config.basic.server_name, "x")
        self.assertEqual(self.client.get("/09Set.htm").code, 507)
        response = self.client.post(
            "/api/v1/save", headers={"Authorization": f"Bearer {self.api_token()}"}
        )
        self.assertEqual((response.code, response.json()["error"]), (507, "save_failed"))
        self.flushLoggedErrors()

    def test_password_change_save_failure(self) -> None:
        """Changing the password answers the same save_failed, page and API."""
        token = self.api_token()
        response = self.client.post(
            "/api/v1/password", headers={"Authorization": f"Bearer {token}"},
            json_body={"old_password": PASSWORD, "new_password": "another-secret-9"})
        self.assertEqual((response.code, response.json()["error"]), (507, "save_failed"))
        self.assertIn("could not be written", response.json()["message"])
        self.flushLoggedErrors()


class SetupSaveFailureTests(WebTestCase):
    """The first-start password is a save path too: same answer, never a 500."""

    password = None

    def setUp(self) -> None:
        super().setUp()
        os.mkdir(self.path + ".d")
        self.server.store = SettingsStore(self.path + ".d")

    def test_api_setup(self) -> None:
        token = self.console.setup_token
        response = self.client.post(
            "/api/v1/setup", json_body={"setup_token": token, "password": "first-secret-1"})
        self.assertEqual((response.code, response.json()["error"]), (507, "save_failed"))
        self.flushLoggedErrors()

    def test_page_setup(self) -> None:
        token = self.console.setup_token
        response = self.client.post("/setup", form={
            "setup_token": token, "new_password": "first-secret-1",
            "new_password2": "first-secret-1"})
        self.assertEqual(response.code, 507)
        self.assertIn("could not be written", response.text)
        self.flushLoggedErrors()


class ClassicTests(WebTestCase):
    def test_set_and_save_restart(self) -> None:
        """Set.htm answers "Serial Settings OK!" and 09Set.htm applies and saves."""
        self.login()
        response = self.client.get(
            "/Set.htm?Port=2&BaudRate=12&DataBits=3&StopBits=0&Parity=8"
            "&FlowCtrl=0&FIFO=1&Submit=Submit&setfunc=Serial"
        )
        self.assertEqual(response.code, 200)
        self.assertIn("Serial Settings OK!", response.text)
        device = self.devices.devices["/dev/fake1"]
        self.assertEqual(device.in_force.baudrate, 115200)
        response = self.client.get("/09Set.htm")
        self.assertIn("Now Save/Restart OK!", response.text)
        self.assertEqual((device.in_force.baudrate, device.in_force.parity), (9600, Parity.ODD))
        self.assertEqual(SettingsStore(self.path).load().ports[1].serial.parity, Parity.ODD)

    def test_opmode(self) -> None:
        """setfunc=OPMode switches a port's mode after 09Set.htm."""
        self.login()
        response = self.client.get(
            "/Set.htm?Port=1&OpMode=10&PortNo=4101&Submit=Submit&setfunc=OPMode"
        )
        self.assertIn("Operating Settings OK!", response.text)
        self.client.get("/09Set.htm")
        self.assertIn(OFFSET + 4101, self.listening())

    def test_errors(self) -> None:
        """A bad value answers an error page naming the classic field, nothing changes."""
        self.login()
        response = self.client.get("/Set.htm?BaudRate=42&setfunc=Serial")
        self.assertEqual(response.code, 400)
        self.assertIn("Serial Settings Error!", response.text)
        self.assertIn("BaudRate", response.text)
        self.assertFalse(self.console.has_pending)

    def test_csrf_rules(self) -> None:
        """token_text must match when sent; cross-site browser requests are refused."""
        csrf = self.login()
        url = "/Set.htm?BaudRate=12&Submit=Submit&setfunc=Serial"
        self.assertEqual(self.client.get(url + "&token_text=wrong").code, 403)
        self.assertEqual(self.client.get(url + f"&token_text={csrf}").code, 200)
        for headers in (
            {"Sec-Fetch-Site": "cross-site"},
            {"Origin": "http://evil.test"},
            {"Referer": "http://evil.test/page"},
        ):
            self.assertEqual(self.client.get(url, headers=headers).code, 403, headers)
        self.assertEqual(
            self.client.get(
                url,
                headers={"Sec-Fetch-Site": "same-origin", "Referer": "http://nport.test/overview"},
            ).code,
            200,
        )
        self.assertEqual(
            self.client.get("/09Set.htm", headers={"Sec-Fetch-Site": "cross-site"}).code, 403
        )

    def test_bearer(self) -> None:
        """Scripts may use a bearer token from the API instead of the cookie."""
        token = self.api_token()
        response = self.client.get(
            "/Set.htm?ServerName=abc&setfunc=Basic",
            headers={"Authorization": f"Bearer {token}", "Sec-Fetch-Site": "cross-site"},
        )
        self.assertIn("Basic Settings OK!", response.text)


class ApiTests(WebTestCase):
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token()}"}

    def test_read_sections(self) -> None:
        """Settings, device and port status are readable with a bearer token."""
        h = self.auth()
        settings = self.client.get("/api/v1/settings", headers=h).json()
        self.assertEqual(settings["ports"][1]["operating"]["mode"], "tcp-server")
        self.assertFalse(settings["pending"])
        self.assertNotIn("password", settings)
        self.assertEqual(
            self.client.get("/api/v1/settings/basic", headers=h).json()["web_console"], True
        )
        self.assertEqual(
            self.client.get("/api/v1/settings/ports/2/serial", headers=h).json()["baudrate"],
            115200,
        )
        self.assertEqual(
            self.client.get("/api/v1/device", headers=h).json()["model"], "NPort 5232"
        )
        self.assertEqual(self.client.get("/api/v1/ports/2/status", headers=h).json()["open"], True)
        self.assertEqual(self.client.get("/api/v1/ports/3/status", headers=h).code, 404)
        self.assertEqual(self.client.get("/api/v1/nothing", headers=h).code, 404)
        self.assertEqual(self.client.request("DELETE", "/api/v1/device", headers=h).code, 405)

    def test_write_and_save(self) -> None:
        """PATCH stores pending settings; POST save applies them to the running port."""
        h = self.auth()
        response = self.client.request(
            "PATCH", "/api/v1/settings/ports/1/serial", headers=h, json_body={"baudrate": 19200}
        )
        self.assertEqual(
            response.json(),
            {
                "settings": attrs.asdict(SerialSettings(baudrate=19200))
                | {"parity": "N", "flow_control": "none", "interface": "rs-232"},
                "pending": True,
            },
        )
        response = self.client.request(
            "PUT",
            "/api/v1/settings/ports/1/operating",
            headers=h,
            json_body={"mode": "tcp-server", "local_tcp_port": 4101},
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(
            self.client.post("/api/v1/save", headers=h).json(), {"applied": True, "saved": True}
        )
        self.assertIn(OFFSET + 4101, self.listening())
        self.assertEqual(self.devices.devices["/dev/fake0"].in_force.baudrate, 19200)
        self.assertEqual(self.server.ports[0].channel.settings.baudrate, 19200)

    def test_errors_are_json(self) -> None:
        """Validation errors name the field and reason; bad bodies and modes are refused."""
        h = self.auth()
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/ports/1/serial",
            headers=h,
            json_body={"baudrate": 10, "parity": 3},
        )
        self.assertEqual(response.code, 400)
        body = response.json()
        self.assertEqual(body["error"], "invalid")
        self.assertEqual({e["field"] for e in body["errors"]}, {"baudrate", "parity"})
        response = self.client.request(
            "PATCH", "/api/v1/settings/ports/1/operating", headers=h, json_body={"mode": "udp"}
        )
        self.assertEqual(
            response.json()["errors"],
            [{"field": "mode", "reason": "UDP is not implemented in this version"}],
        )
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/basic",
            body=b"{",
            headers=dict(h, **{"Content-Type": "application/json"}),
        )
        self.assertEqual(response.json()["error"], "bad_json")
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/basic",
            body=b"{}",
            headers=dict(h, **{"Content-Type": "text/plain"}),
        )
        self.assertEqual(response.code, 415)
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/accessible_ip",
            headers=h,
            json_body={"entries": [{"ip": "10.0.0.0", "netmask": "255.0.0.0"}]},
        )
        self.assertEqual(response.code, 200)  # loopback is always allowed

    def test_unauthenticated_and_bad_token(self) -> None:
        """No or a wrong token: 401 with WWW-Authenticate."""
        response = self.client.get("/api/v1/settings", headers={"Authorization": "Bearer nope"})
        self.assertEqual(
            (response.code, response.header("www-authenticate")), (401, 'Bearer realm="nport"')
        )
        response = self.client.post("/api/v1/session", json_body={"password": 5})
        self.assertEqual(response.code, 400)

    def test_cookie_session_needs_csrf_header(self) -> None:
        """The console's own scripts (cookie) must send X-CSRF-Token for changes."""
        self.login()
        csrf = self.client.get("/api/v1/session").json()["csrf_token"]
        response = self.client.request(
            "PATCH", "/api/v1/settings/basic", json_body={"server_name": "a"}
        )
        self.assertEqual((response.code, response.json()["error"]), (403, "csrf"))
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/basic",
            json_body={"server_name": "a"},
            headers={"X-CSRF-Token": csrf},
        )
        self.assertEqual(response.code, 200)

    def test_export_import_pending(self) -> None:
        """Export text can be imported; pending changes can be discarded."""
        h = self.auth()
        text = self.client.get("/api/v1/export?network=0", headers=h).text
        self.assertNotIn("[network]", text)
        response = self.client.post(
            "/api/v1/import",
            body=text.replace("server_name = ", "server_name = abc").encode(),
            headers=dict(h, **{"Content-Type": "text/plain"}),
        )
        self.assertEqual(response.json(), {"imported": True, "pending": True})
        self.assertEqual(
            self.client.get("/api/v1/settings/basic", headers=h).json()["server_name"], "abc"
        )
        response = self.client.post("/api/v1/import", body=b"[nope]\n", headers=h)
        self.assertEqual(response.json()["errors"][0]["field"], "file")
        self.assertEqual(
            self.client.request("DELETE", "/api/v1/pending", headers=h).json(), {"pending": False}
        )

    def test_password_and_factory(self) -> None:
        """Password change and factory default over the API."""
        h = self.auth()
        response = self.client.post(
            "/api/v1/password",
            headers=h,
            json_body={"old_password": "x", "new_password": "new password!"},
        )
        self.assertEqual(
            response.json()["errors"], [{"field": "old_password", "reason": "wrong password"}]
        )
        response = self.client.post(
            "/api/v1/password",
            headers=h,
            json_body={"old_password": PASSWORD, "new_password": "new password!"},
        )
        self.assertEqual(response.json(), {"changed": True})
        self.assertEqual(self.client.get("/api/v1/device", headers=h).code, 200)
        response = self.client.post(
            "/api/v1/factory-default", headers=h, json_body={"keep_network": False}
        )
        self.assertEqual(response.json(), {"applied": True, "saved": True})
        self.assertEqual(self.server.config.ports[1].operating.mode, OpMode.REAL_COM)

    def test_logout(self) -> None:
        """DELETE /api/v1/session ends a bearer token."""
        h = self.auth()
        self.assertEqual(self.client.request("DELETE", "/api/v1/session", headers=h).code, 200)
        self.assertEqual(self.client.get("/api/v1/device", headers=h).code, 401)


class ServiceTests(WebTestCase):
    def test_listeners(self) -> None:
        """web_services listens on 80 and 443 plus the offset, on the server's interface."""
        pem = os.path.abspath(self.mktemp())
        from nport_twisted.config.tls import generate_pem

        with open(pem, "wb") as f:
            f.write(generate_pem())
        services = web_services(self.server, https_port=443, cert=pem, console=self.console)
        for svc in services:
            svc.startService()
            self.addCleanup(svc.stopService)
        self.assertEqual(
            [(p, i) for p, _, _, i in self.reactor.tcpServers if p == OFFSET + 80],
            [(OFFSET + 80, "127.0.0.1")],
        )
        self.assertEqual(
            [(p, i) for p, _, _, _, i in self.reactor.sslServers], [(OFFSET + 443, "127.0.0.1")]
        )
        self.assertIn(
            OFFSET + 80, [l.port for l in self.server.net.listeners if l.port_index is None]
        )


class HttpFaceTests(WebTestCase):
    """The console answers as an NPort's MoxaHttp server, never with Twisted's stock pages."""

    def raw(self, data: bytes) -> tuple[bytes, bool]:
        """Send C{data} on a fresh connection: (everything answered, connection closed)."""
        addr = IPv4Address("TCP", "127.0.0.1", 40001)
        protocol = self.site.buildProtocol(addr)
        transport = StringTransport(
            peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 10080)
        )
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        closed = transport.disconnecting
        protocol.connectionLost(Failure(ConnectionDone()))
        return transport.value(), closed

    def test_http10_root_is_nport_console(self) -> None:
        """nmap's probe (GET / HTTP/1.0) gets HTTP/1.1 200, MoxaHttp and the NPort title."""
        answer, closed = self.raw(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:40])
        head, _, body = answer.partition(b"\r\n\r\n")
        self.assertIn(b"\r\nServer: MoxaHttp/2.2\r\n", head + b"\r\n")
        self.assertIn(b"\r\nConnection: close", head)
        self.assertNotIn(b"chunked", head.lower())
        self.assertIn(b"<TITLE>NPort Web Console</TITLE>", body)
        self.assertTrue(closed)
        # The match nmap's service probes use for an NPort's web server.
        nmap = re.compile(
            rb"^HTTP/1\.1 200 (?:[^\r\n]*\r\n(?!\r\n))*?Server: MoxaHttp/([\w._-]+)\r\n"
            rb".*<TITLE>NPort Web Console</TITLE>",
            re.S,
        )
        self.assertIsNotNone(nmap.match(answer))

    def test_root_shows_login_and_overview(self) -> None:
        """C{/} is the login page before login and the overview after, never a redirect."""
        page = self.client.get("/")
        self.assertEqual((page.code, page.header("location")), (200, None))
        self.assertIn('action="/login"', page.text)
        self.assertNotIn("00:90:E8", page.text)
        self.login()
        page = self.client.get("/")
        self.assertEqual(page.code, 200)
        self.assertIn("00:90:E8:12:34:56", page.text)

    def test_http11_keeps_chunked_framing(self) -> None:
        """An HTTP/1.1 client still gets HTTP/1.1 framing (no forced close)."""
        answer, closed = self.raw(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertFalse(closed)

    def test_own_error_pages(self) -> None:
        """Unknown paths and methods get the console's pages, not Twisted's."""
        stock = (b"No Such Resource", b"Huh?", b"approached me", b"Processing Failed")
        for method, path, code in (
            ("GET", "/no/such/page", 404),
            ("GET", "/static/missing.js", 404),
            ("GET", "/api/nothing", 404),
            ("PUT", "/login", 405),
            ("BREW", "/login", 501),
        ):
            response = self.client.request(method, path)
            self.assertEqual(response.code, code, path)
            self.assertEqual(response.header("server"), "MoxaHttp/2.2")
            for text in stock:
                self.assertNotIn(text, response.body, (method, path))
        self.assertEqual(self.client.get("/api/nothing").json()["error"], "not_found")
        self.assertIn("GET", self.client.request("PUT", "/login").header("allow") or "")
        self.assertEqual(self.client.request("HEAD", "/login").code, 200)

    def test_rendering_failure_is_a_page(self) -> None:
        """A failure while rendering is logged and answered 500 with the console's page."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def boom() -> Any:
            raise RuntimeError("boom")

        self.patch(self.console, "identity", boom)
        response = self.client.post("/login", form={"password": PASSWORD})
        self.assertEqual(response.code, 303)
        response = self.client.get("/overview")
        self.assertEqual(response.code, 500)
        self.assertIn(b"Internal Error", response.body)
        self.assertNotIn(b"Traceback", response.body)
        self.assertNotIn(b"boom", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(any("failed" in e.get("log_format", "") for e in events))

    def test_long_uri_and_headers(self) -> None:
        """Over-long request lines get 414, over-long or too many headers 431; then close."""
        for request, code in (
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
            (b"GET /" + b"a" * 40000, 414),  # no end of line at all
            (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n", 431),
            (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 150 + b"\r\n", 431),
            (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        ):
            answer, closed = self.raw(request)
            status = answer.split(b"\r\n", 1)[0]
            self.assertEqual(int(status.split()[1]), code, status)
            self.assertIn(b"\r\nServer: MoxaHttp/2.2\r\n", answer)
            self.assertIn(b"\r\nContent-Length: ", answer)
            self.assertTrue(closed)
        answer, _ = self.raw(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"))

    def test_429_reason_phrase(self) -> None:
        """Rate limiting answers 429 Too Many Requests (Twisted knows no phrase for it)."""
        for _ in range(5):
            self.client.post("/login", form={"password": "nope"})
        addr = IPv4Address("TCP", "127.0.0.1", 40002)
        protocol = self.site.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        protocol.makeConnection(transport)
        body = b"password=nope"
        protocol.dataReceived(
            b"POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 429 Too Many Requests\r\n"))
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_nested_json_refused_before_parsing(self) -> None:
        """A deeply nested or malformed JSON body is a 400 JSON error, before or after login."""
        for path in ("/api/v1/session", "/api/v1/setup"):
            for body in (b"[" * 100000, b"{" * 50 + b"}" * 50, b'{"a": '):
                response = self.client.post(
                    path, body=body, headers={"Content-Type": "application/json"}
                )
                self.assertIn(response.code, (400, 409), path)
                if response.code == 400:
                    self.assertEqual(response.json()["error"], "bad_json")
        token = self.api_token()
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/basic",
            body=b'{"server_name": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        self.assertEqual((response.code, response.json()["error"]), (400, "bad_json"))
        self.assertIn("nested deeper than 32", response.json()["message"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_json_depth(self) -> None:
        """Nesting is counted outside strings only."""
        self.assertEqual(forms.json_depth(b'{"a": [1, {"b": "[[[{{"}]}'), 3)
        self.assertEqual(forms.json_depth(b'"\\"[["'), 0)
        self.assertEqual(forms.parse_json(b""), None)
        self.assertRaises(forms.JsonError, forms.parse_json, b"[" * 33 + b"]" * 33)
        self.assertEqual(forms.parse_json(b"[" * 32 + b"]" * 32), [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])


class TruthTests(WebTestCase):
    """Every "OK" the console says is true (issue 11 part 3)."""

    def operating_form(self, csrf: str, port: int, **changes: str) -> dict[str, str]:
        value = self.console.pending.ports[port - 1].operating
        form = dict(texts_for(forms.operating_fields(value.mode), value), mode=value.mode.value)
        form = {k: v for k, v in form.items() if v != ""}
        form.update(csrf_token=csrf, **changes)
        return form

    def test_conflict_refused_on_the_field(self) -> None:
        """A local port equal to another port's is refused next to the field; nothing is stored."""
        csrf = self.login()
        response = self.client.post(
            "/operating?port=2", form=self.operating_form(csrf, 2, local_tcp_port="966")
        )
        self.assertEqual(response.code, 400)
        self.assertIn(
            'id="local_tcp_port-error">TCP port 966 (10966 with --port-offset 10000) is also '
            "port 1&#x27;s command port",
            response.text.replace("'", "&#x27;"),
        )
        self.assertFalse(self.console.has_pending)

    def test_conflict_refused_in_api_and_classic(self) -> None:
        """The API names the port's own field; Set.htm the classic one."""
        token = self.api_token()
        response = self.client.request(
            "PATCH",
            "/api/v1/settings/ports/2/operating",
            json_body={"local_tcp_port": 950},
            headers={"Authorization": f"Bearer {token}"},
        )
        self.assertEqual(response.code, 400)
        self.assertEqual(
            [e["field"] for e in response.json()["errors"]], ["local_tcp_port", "_form"]
        )
        self.login()
        response = self.client.get(
            "/Set.htm?Port=2&OpMode=10&PortNo=950&Submit=Submit&setfunc=OPMode"
        )
        self.assertEqual(response.code, 400)
        self.assertIn("PortNo", response.text)
        self.assertNotIn("Settings OK!", response.text)
        self.assertFalse(self.console.has_pending)

    def test_conflict_with_web_port(self) -> None:
        """The web console's own port cannot be given to a serial port."""
        for svc in web_services(self.server, console=self.console):
            svc.startService()
            self.addCleanup(svc.stopService)
        csrf = self.login()
        response = self.client.post(
            "/operating?port=2", form=self.operating_form(csrf, 2, local_tcp_port="80")
        )
        self.assertIn("is already used by the web console (HTTP)", response.text)
        self.assertFalse(self.console.has_pending)

    def test_os_refusal_rolled_back_and_reported(self) -> None:
        """A port the OS refuses at Save/Restart: rolled back, reported, changes kept pending."""
        from twisted.internet.error import CannotListenError

        csrf = self.login()
        listen = self.reactor.listenTCP

        def refuse(port: int, *a: Any, **kw: Any) -> Any:
            if port == OFFSET + 4009:
                raise CannotListenError("127.0.0.1", port, OSError(98, "Address already in use"))
            return listen(port, *a, **kw)

        self.patch(self.reactor, "listenTCP", refuse)
        self.client.post(
            "/operating?port=2", form=self.operating_form(csrf, 2, local_tcp_port="4009")
        )
        self.assertTrue(self.console.has_pending)
        response = self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertEqual(response.code, 400)
        self.assertIn("Not put in force: Port 2 Local TCP port: port 2: cannot listen", response.text)
        self.assertNotIn("OK", response.text.split("<main")[1])
        self.assertEqual(self.server.config.ports[1].operating.local_tcp_port, 0)
        self.assertIn(OFFSET + 4002, [l.port for l in self.server.net.listeners])
        self.assertTrue(self.console.has_pending)
        api = self.client.post("/api/v1/save", headers={"Authorization": f"Bearer {self.api_token()}"})
        self.assertEqual((api.code, api.json()["errors"][0]["field"]),
                         (400, "ports[1].operating.local_tcp_port"))

    def test_saved_only_when_written(self) -> None:
        """Without --config the console says "applied, not saved: no --config", never "saved"."""
        self.server.store = SettingsStore(None)
        csrf = self.login()
        self.client.post("/basic", form={"csrf_token": csrf, "server_name": "line-7",
                                          "web_console": "on", "telnet_console": "on"})
        response = self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertEqual(response.code, 200)
        self.assertIn("Applied, not saved: no --config", response.text)
        self.assertNotIn("saved.", response.text)
        self.assertEqual(self.server.config.basic.server_name, "line-7")
        classic = self.client.get("/09Set.htm")
        self.assertIn("not saved: no --config", classic.text)
        self.assertNotIn("Save/Restart OK", classic.text)
        factory = self.client.post("/factory", form={"csrf_token": csrf, "confirm": "on"})
        self.assertIn("Factory defaults loaded: applied, not saved: no --config", factory.text)
        token = self.api_token()
        api = self.client.post("/api/v1/save", headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(api.json(), {"applied": True, "saved": False})

    def test_requested_and_in_force(self) -> None:
        """A setting the device refused shows as "requested 7, in force 8" everywhere."""
        device = self.devices.devices["/dev/fake1"]
        device.refuse = {"bytesize"}
        csrf = self.login()
        form = {k: v for k, v in texts_for(forms.SERIAL_FIELDS, SerialSettings()).items() if v}
        form.update(csrf_token=csrf, bytesize="7")
        self.client.post("/serial?port=2", form=form)
        self.client.post("/saverestart", form={"csrf_token": csrf})
        self.assertEqual(device.in_force.bytesize, 8)
        page = self.client.get("/serial?port=2")
        self.assertIn('id="bytesize-refused">requested 7, in force 8', page.text)
        self.assertNotIn("-refused", self.client.get("/serial?port=1").text)
        monitor = self.client.get("/monitor")
        self.assertIn('data-key="bytesize">requested 7, in force 8', monitor.text)
        status = self.client.get(
            "/api/v1/ports/2/status", headers={"Authorization": f"Bearer {self.api_token()}"}
        ).json()
        self.assertEqual(status["refused"], {"bytesize": {"requested": 7, "in_force": 8}})
        self.assertEqual((status["requested"]["bytesize"], status["settings"]["bytesize"]), (7, 8))
        self.assertEqual(status["display"]["bytesize"], "requested 7, in force 8")

    def test_confirmations(self) -> None:
        """Factory default, turning the web console off and a password change are confirmed."""
        csrf = self.login()
        self.server.config = attrs.evolve(self.server.config, basic=BasicSettings(server_name="x"))
        response = self.client.post("/factory", form={"csrf_token": csrf, "keep_network": "on"})
        self.assertEqual(response.code, 400)
        self.assertIn("Nothing was changed", response.text)
        self.assertEqual(self.server.config.basic.server_name, "x")

        basic = {"csrf_token": csrf, "server_name": "x", "telnet_console": "on"}
        response = self.client.post("/basic", form=basic)
        self.assertEqual(response.code, 400)
        self.assertIn('id="confirm_web_off"', response.text)
        self.assertFalse(self.console.has_pending)

        response = self.client.post(
            "/password",
            form={"csrf_token": csrf, "old_password": PASSWORD,
                  "new_password": "another secret", "new_password2": "another secret"},
        )
        self.assertIn('id="confirm-error"', response.text)
        self.assertTrue(self.server.config.password.verify(PASSWORD))

    def test_last_console_refused(self) -> None:
        """Turning off the web console while no telnet console is served is refused."""
        csrf = self.login()
        basic = {"csrf_token": csrf, "server_name": "x", "telnet_console": "on",
                 "confirm_web_off": "on"}
        response = self.client.post("/basic", form=basic)
        self.assertEqual(response.code, 400)
        self.assertIn("would leave no management console (the telnet console is not served",
                      response.text)
        self.assertFalse(self.console.has_pending)
        self.console.telnet_served = True
        self.assertEqual(self.client.post("/basic", form=basic).code, 303)
        self.assertFalse(self.console.pending.basic.web_console)
        both_off = dict(basic)
        del both_off["telnet_console"]
        response = self.client.post("/basic", form=both_off)
        self.assertIn("would leave no management console", response.text)
        token = self.api_token()
        api = self.client.request(
            "PATCH", "/api/v1/settings/basic",
            json_body={"web_console": False, "telnet_console": False},
            headers={"Authorization": f"Bearer {token}"},
        )
        self.assertEqual(api.code, 400)
        self.assertIn("telnet_console", [e["field"] for e in api.json()["errors"]])


class ModernTests(WebTestCase):
    """Hints, help, and errors all at once (issue 11 part 4)."""

    def test_input_hints_match_validators(self) -> None:
        """maxlength and numeric hints come from the settings validators."""
        self.login()

        def tag(page: str, name: str) -> str:
            m = re.search(rf'<input[^>]*name="{re.escape(name)}"[^>]*>', page)
            assert m is not None, name
            return m.group(0)

        self.assertIn('maxlength="15"', tag(self.client.get("/serial?port=1").text, "alias"))
        self.assertIn('maxlength="39"', tag(self.client.get("/basic").text, "server_name"))
        operating = self.client.get("/operating?port=2").text
        alive = tag(operating, "tcp_alive_check_min")
        self.assertIn('inputmode="numeric"', alive)
        self.assertIn('maxlength="2"', alive)
        self.assertIn('maxlength="5"', tag(operating, "local_tcp_port"))
        self.assertIn("0-99, 0 = off", operating)
        self.assertIn('maxlength="63"', tag(self.client.get("/warning").text, "mail_to.1"))

    def test_help_names_real_ports(self) -> None:
        """Port help says which port 0 means on this port, offset included."""
        self.login()
        page = self.client.get("/operating?port=2").text
        self.assertIn("0 = TCP 4002; --port-offset 10000 is added to the port given "
                      "(0 listens on 14002)", page)
        self.assertIn("0 = TCP 967;", page)
        self.assertNotIn("4001+n-1", page)

    def test_monitor_says_when_not_refreshing(self) -> None:
        """Without the script the monitor says it is a snapshot."""
        self.login()
        self.assertIn("Not refreshing: this is a snapshot", self.client.get("/monitor").text)

    def test_setup_errors_at_once(self) -> None:
        """The set-password page reports every problem at once."""
        self.server.config = attrs.evolve(self.server.config, password=PasswordSettings())
        response = self.client.post(
            "/setup", form={"setup_token": "", "new_password": "short", "new_password2": "other"}
        )
        self.assertEqual(response.code, 400)
        for name in ("setup_token", "new_password", "new_password2"):
            self.assertIn(f'id="{name}-error"', response.text)

    def test_import_errors_at_once(self) -> None:
        """An imported file with several bad values lists them all."""
        csrf = self.login()
        text = "[basic]\nserver_name = ok\nweb_console = maybe\n[port1.serial]\nbaudrate = fast\n"
        boundary = "----nport"
        body = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{csrf}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.ini\"\r\n"
            f"Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
        ).encode()
        response = self.client.post(
            "/config", body=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        self.assertEqual(response.code, 400)
        self.assertIn("the file has 2 problems", response.text)
        self.assertIn("web_console", response.text)
        self.assertIn("baudrate", response.text)
        self.assertFalse(self.console.has_pending)

    def test_auto_warning_validates_addresses(self) -> None:
        """E-mail addresses and servers are checked like the other pages' addresses."""
        csrf = self.login()
        response = self.client.post(
            "/warning",
            form={"csrf_token": csrf, "mail_server": "mail server", "mail_from": "ops",
                  "mail_to.1": "x@", "trap_server": "10.0.0.300"},
        )
        self.assertEqual(response.code, 400)
        for name in ("mail_server", "mail_from", "trap_server"):
            self.assertIn(f'id="{name}-error"', response.text)
        self.assertIn("not an e-mail address", response.text)
        ok = self.client.post(
            "/warning",
            form={"csrf_token": csrf, "mail_server": "smtp.plant.example", "mail_from": "nport@plant",
                  "mail_to.1": "ops@plant.example", "trap_server": "10.0.0.30"},
        )
        self.assertEqual(ok.code, 303)
