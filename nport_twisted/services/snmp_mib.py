# -*- test-case-name: tests.test_snmp -*-
"""
The objects the SNMP agent serves (docs/monitoring.md, "SNMP"), built over
the device context: read when a request needs them, never cached between
requests.

  MIB-II (RFC 1213 / RFC 3418 / RFC 2863)
    system        1.3.6.1.2.1.1       sysDescr … sysServices
    interfaces    1.3.6.1.2.1.2       ifNumber, ifTable (the host's interfaces)
    ifXTable      1.3.6.1.2.1.31.1.1  ifName, 64-bit octet/packet counters, ifHighSpeed
    snmp          1.3.6.1.2.1.11      the agent's own counters, snmpEnableAuthenTraps

  MOXA NPort MIB layout, under 1.3.6.1.4.1.8691.2.<product>.1 (swMgmt):
    overview(1)                      modelName, serialNumber, firmwareVersion,
                                     macAddress, upTime
    portSetting(4).opModeSetting(1).opMode(1).opModePortTable(1)
                                     portIndex, portApplication, portMode
    sysStatus(6)                     monitorRemoteIpTable(1.1), monitorSerialPortStatusTable
                                     (2.1), monitorSerialPortErrorCountTable(3.1),
                                     monitorSerialPortSettingsTable(4.1)
    The object layout is MOXA's published MOXA-NP6000-MIB (NPort 6000,
    product arc 8); the same layout appears in MOXA's CN2600 (11), NPS8000
    (12) and W2x50A (13) MIBs.  No NPort 5000 MIB was found: for the 5000
    family we use product arc 7, which is the sysObjectID LibreNMS and an
    inventory tool report for an NPort 5210 (reported), and the common
    layout there (inferred).  Settings are served read-only.

  Ours, under NPT_ROOT (an unregistered placeholder arc, see below): one
    row per serial port with what MOXA's tables lack — device present,
    connection counts, 64-bit byte counters, dropped bytes, open counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from nport_twisted import __version__
from nport_twisted.config.identity import DeviceIdentity, resolve_identity
from nport_twisted.config.models import Model
from nport_twisted.config.settings import FlowControl, OpMode, Parity, SerialInterface
from nport_twisted.events import DeviceStateChanged, Event, LinkChanged
from nport_twisted.net.context import IDeviceContext
from nport_twisted.services.hostif import HostInterface
from nport_twisted.wire.mib import OID, Mib, SnmpStats, Subtree, Value, scalars, table

MIB2 = (1, 3, 6, 1, 2, 1)
SYSTEM = MIB2 + (1,)
INTERFACES = MIB2 + (2,)
IFX_TABLE = MIB2 + (31, 1, 1)
SNMP_GROUP = MIB2 + (11,)
SNMP_ENGINE: OID = (1, 3, 6, 1, 6, 3, 10, 2, 1)  # SNMP-FRAMEWORK-MIB snmpEngine
USM_STATS: OID = (1, 3, 6, 1, 6, 3, 15, 1, 1)  # SNMP-USER-BASED-SM-MIB usmStats
MOXA = (1, 3, 6, 1, 4, 1, 8691)
NPORT = MOXA + (2,)

#: Our own objects.  1.3.6.1.4.1.8072.9999.9999 is Net-SNMP's "playpen" arc
#: for unregistered, local MIB modules: a placeholder until the project has a
#: Private Enterprise Number from IANA.  It cannot collide with MOXA's tree
#: and every tool can walk it; nothing outside this module hard-codes it.
NPT_ROOT = (1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 1)
NPT_PORT_ENTRY = NPT_ROOT + (1, 1)
NPT_NOTIFICATIONS = NPT_ROOT + (2, 0)
NPT_OBJECTS = NPT_ROOT + (3,)  # accessible-for-notify: only in notifications

# Standard notifications (SNMPv2-MIB, IF-MIB).
COLD_START = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
WARM_START = (1, 3, 6, 1, 6, 3, 1, 1, 5, 2)
LINK_DOWN = (1, 3, 6, 1, 6, 3, 1, 1, 5, 3)
LINK_UP = (1, 3, 6, 1, 6, 3, 1, 1, 5, 4)
AUTHENTICATION_FAILURE = (1, 3, 6, 1, 6, 3, 1, 1, 5, 5)
# Ours (MOXA's published MIBs define no notifications for these events).
NPT_IP_CHANGED = NPT_NOTIFICATIONS + (1,)
NPT_PASSWORD_CHANGED = NPT_NOTIFICATIONS + (2,)
NPT_MODEM_LINE_CHANGED = NPT_NOTIFICATIONS + (3,)
NPT_EVENT_TEXT = NPT_OBJECTS + (1, 0)
NPT_EVENT_PORT = NPT_OBJECTS + (2, 0)
NPT_EVENT_LINE = NPT_OBJECTS + (3, 0)
NPT_EVENT_LINE_ON = NPT_OBJECTS + (4, 0)
NPT_EVENT_INTERFACE = NPT_OBJECTS + (5, 0)
NPT_EVENT_PEER = NPT_OBJECTS + (6, 0)
IF_INDEX = MIB2 + (2, 2, 1, 1)
IF_ADMIN_STATUS = MIB2 + (2, 2, 1, 7)
IF_OPER_STATUS = MIB2 + (2, 2, 1, 8)

# sysServices: application (layer 7) and end-to-end (layer 4) services: 2**6 + 2**3.
SYS_SERVICES = 72


def product_arc(model: Model) -> int:
    """MOXA's product arc under 1.3.6.1.4.1.8691.2 for C{model} (module docstring)."""
    name = model.name
    if name.startswith("NPort 6"):
        return 8  # MOXA-NP6000-MIB np6000 ::= { nport 8 } (verified)
    if name.startswith("NPort W2"):
        return 13  # MOXA-W2x50A-MIB ::= { nport 13 } (verified)
    return 7  # NPort 5000 family (reported sysObjectID of an NPort 5210)


def sys_object_id(model: Model) -> OID:
    return NPORT + (product_arc(model),)


# NP6000-MIB portMode values (verified in the MIB text); portApplication is inferred.
_PORT_MODE = {
    OpMode.PAIR_SLAVE: 0, OpMode.PAIR_MASTER: 1, OpMode.REAL_COM: 2, OpMode.DISABLED: 7,
    OpMode.REVERSE_TELNET: 8, OpMode.TCP_SERVER: 10, OpMode.ETHERNET_MODEM: 12,
    OpMode.TCP_CLIENT: 13, OpMode.UDP: 14, OpMode.RFC2217: 20,
}
_PORT_APPLICATION = {
    OpMode.DISABLED: 0, OpMode.REAL_COM: 4, OpMode.RFC2217: 4, OpMode.TCP_SERVER: 11,
    OpMode.TCP_CLIENT: 11, OpMode.UDP: 11, OpMode.PAIR_MASTER: 13, OpMode.PAIR_SLAVE: 13,
    OpMode.ETHERNET_MODEM: 12, OpMode.REVERSE_TELNET: 3,
}
_PARITY = {Parity.NONE: 0, Parity.ODD: 8, Parity.EVEN: 24, Parity.MARK: 40, Parity.SPACE: 56}
_INTERFACE = {SerialInterface.RS232: 0, SerialInterface.RS422: 1,
              SerialInterface.RS485_2WIRE: 2, SerialInterface.RS485_4WIRE: 3}


def _int31(n: int) -> Value:
    """MOXA's byte counts are INTEGER: they wrap at 2**31 like a counter would."""
    return Value.integer(n % 2**31)


def _onoff(v: bool | None) -> Value:
    return Value.integer(1 if v else 0)


def _human_uptime(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 86400} days, {s % 86400 // 3600:02d}h:{s % 3600 // 60:02d}m:{s % 60:02d}s"


class PortBaselines:
    """
    Byte counts when each port's device was last opened: MOXA's
    monitorTxCount/RxCount count "since the port was initialized", the
    Total columns since start.
    """

    def __init__(self, ctx: IDeviceContext) -> None:
        self._ctx = ctx
        self.at_open: dict[int, tuple[int, int]] = {}
        self.link_changed: dict[str, float] = {}

    def __call__(self, when: float, event: Event) -> None:
        if isinstance(event, DeviceStateChanged) and event.present:
            index = event.port - 1
            if 0 <= index < len(self._ctx.ports):
                stats = self._ctx.ports[index].channel.stats
                self.at_open[index] = (stats.serial_tx_bytes, stats.serial_rx_bytes)
        elif isinstance(event, LinkChanged):
            self.link_changed[event.interface] = when


class NPortMib:
    """
    The agent's tree over C{ctx}.  C{interfaces} lists the host's network
    interfaces (L{nport_twisted.services.hostif.read_interfaces}).
    """

    def __init__(self, ctx: IDeviceContext, interfaces: Callable[[], list[HostInterface]],
                 stats: SnmpStats, auth_traps: Callable[[], bool],
                 identity: Callable[[], DeviceIdentity] | None = None,
                 usm: Callable[[], Any] | None = None) -> None:
        self.ctx = ctx
        #: The agent's SNMPv3 engine (wire.snmpv3.V3Responder) or None: the
        #: snmpEngine and usmStats scalars read it; without it they are absent.
        self._usm = usm
        self._interfaces = interfaces
        self.stats = stats
        self._auth_traps = auth_traps
        self._identity = identity if identity is not None else (
            lambda: resolve_identity(ctx.config, len(ctx.ports)))
        self.baselines = PortBaselines(ctx)
        self.mib = Mib(self._subtrees())

    # -- helpers ----------------------------------------------------------------------

    def uptime(self) -> float:
        return max(0.0, float(self.ctx.reactor.seconds()) - self.ctx.started_at)

    def model(self) -> Model:
        return self.ctx.config.identity.model_info(max(len(self.ctx.ports), 1))

    def _ports(self) -> Iterable[tuple[OID, Any]]:
        for state in self.ctx.ports:
            yield (state.index + 1,), state

    def _interfaces_rows(self) -> Iterable[tuple[OID, HostInterface]]:
        for i in self._interfaces():
            yield (i.index,), i

    # -- subtrees ---------------------------------------------------------------------

    def _subtrees(self) -> list[Subtree]:
        swmgmt = NPORT + (product_arc(self.model()), 1)
        return [
            self._system(),
            self._interfaces_group(),
            self._ifx(),
            self._snmp(),
            self._overview(swmgmt + (1,)),
            table(swmgmt + (4, 1, 1, 1, 1), {
                1: lambda s: Value.integer(s.index + 1),
                2: lambda s: Value.integer(_PORT_APPLICATION.get(s.config.operating.mode, 0)),
                3: lambda s: Value.integer(_PORT_MODE.get(s.config.operating.mode, 7)),
            }, self._ports),
            table(swmgmt + (6, 1, 1, 1), {
                1: lambda r: Value.integer(r[0]),
                2: lambda r: Value.octets(r[1]),
            }, self._remote_ips),
            table(swmgmt + (6, 2, 1, 1), self._status_columns(), self._ports),
            table(swmgmt + (6, 3, 1, 1), {
                1: lambda s: _int31(s.channel.stats.framing_errors),
                2: lambda s: _int31(s.channel.stats.parity_errors),
                3: lambda s: _int31(s.channel.stats.overrun_errors),
                4: lambda s: _int31(s.channel.stats.breaks),
            }, self._ports),
            table(swmgmt + (6, 4, 1, 1), self._settings_columns(), self._ports),
            table(NPT_PORT_ENTRY, self._npt_columns(), self._ports),
            *self._v3_groups(),
        ]

    def _v3_groups(self) -> list[Subtree]:
        """SNMP-FRAMEWORK-MIB snmpEngine and SNMP-USER-BASED-SM-MIB usmStats (RFC 3411, 3414)."""
        if self._usm is None:
            return []
        usm = self._usm

        def engine(fn: Callable[[Any], Value]) -> Callable[[], Value | None]:
            return lambda: None if usm() is None else fn(usm())

        def counter(name: str) -> Callable[[], Value | None]:
            return engine(lambda e: Value.counter32(getattr(e.usm, name)))
        return [
            scalars(SNMP_ENGINE, {
                1: engine(lambda e: Value.octets(e.engine_id)),
                2: engine(lambda e: Value.integer(e.boots)),
                3: engine(lambda e: Value.integer(e.engine_time())),
                4: engine(lambda e: Value.integer(e.max_size)),
            }),
            scalars(USM_STATS, {
                1: counter("unsupported_sec_levels"),
                2: counter("not_in_time_windows"),
                3: counter("unknown_user_names"),
                4: counter("unknown_engine_ids"),
                5: counter("wrong_digests"),
                6: counter("decryption_errors"),
            }),
        ]

    def _system(self) -> Subtree:
        def descr() -> Value:
            ident = self._identity()
            return Value.octets(f"{ident.model.name} serial device server, firmware "
                                f"{ident.firmware} (nport-twisted {__version__})")
        net = lambda: self.ctx.config.network  # noqa: E731
        return scalars(SYSTEM, {
            1: descr,
            2: lambda: Value.object_id(sys_object_id(self.model())),
            3: lambda: Value.timeticks(self.uptime()),
            4: lambda: Value.octets(net().snmp_contact),
            5: lambda: Value.octets(self._identity().server_name),
            6: lambda: Value.octets(net().snmp_location or self.ctx.config.basic.server_location),
            7: lambda: Value.integer(SYS_SERVICES),
        })

    def _interfaces_group(self) -> Subtree:
        entry = INTERFACES + (2, 1)

        def if_type(i: HostInterface) -> Value:
            return Value.integer(24 if i.loopback else (6 if len(i.mac) == 6 else 1))

        def last_change(i: HostInterface) -> Value:
            when = self.baselines.link_changed.get(i.name)
            return Value.timeticks(0.0 if when is None else when - self.ctx.started_at)

        columns: dict[int, Callable[[HostInterface], Value]] = {
            1: lambda i: Value.integer(i.index),
            2: lambda i: Value.octets(i.name),
            3: if_type,
            4: lambda i: Value.integer(i.mtu),
            5: lambda i: Value.gauge32(i.speed_mbps * 1_000_000),
            6: lambda i: Value.octets(i.mac),
            7: lambda i: Value.integer(1 if i.admin_up else 2),
            8: lambda i: Value.integer(1 if i.oper_up else 2),
            9: last_change,
            10: lambda i: Value.counter32(i.counters.rx_bytes),
            11: lambda i: Value.counter32(max(0, i.counters.rx_packets - i.counters.rx_multicast)),
            13: lambda i: Value.counter32(i.counters.rx_dropped),
            14: lambda i: Value.counter32(i.counters.rx_errors),
            15: lambda i: Value.counter32(0),
            16: lambda i: Value.counter32(i.counters.tx_bytes),
            17: lambda i: Value.counter32(i.counters.tx_packets),
            19: lambda i: Value.counter32(i.counters.tx_dropped),
            20: lambda i: Value.counter32(i.counters.tx_errors),
        }

        def entries() -> Iterable[tuple[OID, Value]]:
            rows = list(self._interfaces_rows())
            yield INTERFACES + (1, 0), Value.integer(len(rows))
            for col, fn in columns.items():
                for index, row in rows:
                    yield (*entry, col, *index), fn(row)
        objects = frozenset({INTERFACES + (1,)} | {(*entry, c) for c in columns})
        return Subtree(INTERFACES, objects, entries)

    def _ifx(self) -> Subtree:
        return table(IFX_TABLE + (1,), {
            1: lambda i: Value.octets(i.name),
            2: lambda i: Value.counter32(i.counters.rx_multicast),
            6: lambda i: Value.counter64(i.counters.rx_bytes),
            7: lambda i: Value.counter64(max(0, i.counters.rx_packets - i.counters.rx_multicast)),
            8: lambda i: Value.counter64(i.counters.rx_multicast),
            10: lambda i: Value.counter64(i.counters.tx_bytes),
            11: lambda i: Value.counter64(i.counters.tx_packets),
            15: lambda i: Value.gauge32(i.speed_mbps),
            18: lambda i: Value.octets(""),
        }, self._interfaces_rows, root=IFX_TABLE)

    def _snmp(self) -> Subtree:
        s = self.stats
        return scalars(SNMP_GROUP, {
            1: lambda: Value.counter32(s.in_pkts),
            2: lambda: Value.counter32(s.out_pkts),
            3: lambda: Value.counter32(s.in_bad_versions),
            4: lambda: Value.counter32(s.in_bad_community_names),
            5: lambda: Value.counter32(s.in_bad_community_uses),
            6: lambda: Value.counter32(s.in_asn_parse_errs),
            30: lambda: Value.integer(1 if self._auth_traps() else 2),
            31: lambda: Value.counter32(s.silent_drops),
            32: lambda: Value.counter32(0),
        })

    def _overview(self, root: OID) -> Subtree:
        return scalars(root, {
            1: lambda: Value.octets("NP" + self._identity().model.short_name),
            2: lambda: Value.integer(self._identity().serial_number),
            3: lambda: Value.octets(self._identity().firmware),
            4: lambda: Value.octets(self._identity().mac),
            7: lambda: Value.octets(_human_uptime(self.uptime())),
        })

    def _remote_ips(self) -> Iterable[tuple[OID, tuple[int, str]]]:
        by_port: dict[int, list[str]] = {}
        for c in self.ctx.net.connections:
            if c.port_index is not None:
                by_port.setdefault(c.port_index, []).append(c.remote_host)
        for index in sorted(by_port):
            for n, host in enumerate(by_port[index], 1):
                yield (index + 1, n), (n, host)

    def _status_columns(self) -> dict[int, Callable[[Any], Value]]:
        def since_open(s: Any, which: int) -> Value:
            stats = s.channel.stats
            total = stats.serial_tx_bytes if which == 0 else stats.serial_rx_bytes
            base = self.baselines.at_open.get(s.index, (0, 0))[which]
            return _int31(max(0, total - base))

        def modem(s: Any, line: str) -> Value:
            lines = s.channel.modem
            return _onoff(getattr(lines, line) if lines is not None else False)

        return {
            1: lambda s: since_open(s, 0),
            2: lambda s: since_open(s, 1),
            3: lambda s: _int31(s.channel.stats.serial_tx_bytes),
            4: lambda s: _int31(s.channel.stats.serial_rx_bytes),
            5: lambda s: modem(s, "dsr"),
            6: lambda s: _onoff(s.channel.is_open and s.channel.dtr),
            7: lambda s: _onoff(s.channel.is_open and s.channel.rts),
            8: lambda s: modem(s, "cts"),
            9: lambda s: modem(s, "dcd"),
        }

    @staticmethod
    def _settings_columns() -> dict[int, Callable[[Any], Value]]:
        def now(s: Any) -> Any:
            return s.channel.actual_settings or s.channel.effective_settings
        return {
            1: lambda s: Value.integer(now(s).baudrate),
            2: lambda s: Value.integer(now(s).bytesize - 5),
            3: lambda s: Value.octets(f"{now(s).stopbits:g}"),
            4: lambda s: Value.integer(_PARITY[now(s).parity]),
            5: lambda s: _onoff(now(s).flow_control is FlowControl.RTS_CTS),
            6: lambda s: _onoff(now(s).flow_control is FlowControl.XON_XOFF),
            7: lambda s: _onoff(now(s).flow_control is FlowControl.DTR_DSR),
            8: lambda s: _onoff(False),
            9: lambda s: Value.integer(1 if now(s).fifo else 0),
            10: lambda s: Value.integer(_INTERFACE[now(s).interface]),
        }

    @staticmethod
    def _npt_columns() -> dict[int, Callable[[Any], Value]]:
        def settings(s: Any) -> Any:
            return s.channel.actual_settings or s.channel.effective_settings

        def line(s: Any, name: str) -> Value:
            lines = s.channel.modem
            return _onoff(getattr(lines, name) if lines is not None else False)
        return {
            1: lambda s: Value.integer(s.index + 1),
            2: lambda s: Value.octets(s.channel.device),
            3: lambda s: Value.octets(s.config.operating.mode.value),
            4: lambda s: Value.integer(1 if s.channel.is_open else 0),
            5: lambda s: Value.counter64(s.channel.stats.serial_tx_bytes),
            6: lambda s: Value.counter64(s.channel.stats.serial_rx_bytes),
            7: lambda s: Value.counter64(s.channel.stats.serial_tx_dropped),
            8: lambda s: Value.counter64(s.channel.stats.serial_rx_dropped),
            9: lambda s: Value.counter64(s.channel.stats.frames),
            10: lambda s: Value.gauge32(s.channel.stats.connections_active),
            11: lambda s: Value.counter32(s.channel.stats.connections_total),
            12: lambda s: Value.counter32(s.channel.stats.opens),
            13: lambda s: Value.counter32(s.channel.stats.open_failures),
            14: lambda s: line(s, "dcd"),
            15: lambda s: line(s, "ri"),
            16: lambda s: Value.integer(1 if s.channel.modem is not None else 0),
            17: lambda s: Value.integer(settings(s).baudrate),
            18: lambda s: Value.octets(f"{settings(s).bytesize}{settings(s).parity.value}"
                                       f"{settings(s).stopbits:g}"),
            19: lambda s: Value.octets(settings(s).flow_control.value),
            20: lambda s: Value.octets(s.config.serial.alias),
        }

