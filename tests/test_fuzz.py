# -*- test-case-name: tests.test_fuzz -*-
"""
Property and fuzz tests for every codec and for the servers that use them
(issue 6 part 2, fast part; docs/reliability.md).

The codecs' own test modules (test_aspp, test_dsci, test_packing,
test_settings) hold the round trips and chunking properties; this module
adds what they lack:

* stateful consistency: RuleBasedStateMachines for the ASPP request and
  reply parsers (several parsers fed interleaved streams stay equal to a
  one-shot parse, their buffers stay bounded, no byte is lost) and for the
  packer (pending below the buffer size, deadlines monotonic, nothing lost);
* canonical forms: every ASPP request decoded from arbitrary bytes encodes
  and decodes back to itself;
* server-level fuzz: arbitrary bytes on the Real COM command and data
  connections, the TCP Server mode connection and the DSCI responder, over
  in-memory transports and a L{FakeSerialDevice}: no exception escapes (no
  logged failure), a client's garbage never closes the device or the
  connection, the command connection's output is always well-framed ASPP,
  and the DSCI responder never answers a reply;
* the settings file: arbitrary, structured and mutated text gives a
  L{ConfigError} or a valid L{DeviceConfig} that survives a save and load.

For RFC 2217 (C{nport_twisted/wire/telnet.py}, C{nport_twisted/modes/rfc2217.py}):
any chunking of any byte stream gives the same telnet events, COM-PORT-OPTION
messages have one canonical form, option negotiation between our table and
any peer ends and agrees, and the server fed arbitrary telnet stays up and
answers only well-formed server messages.

Every property is a plain function registered in L{PROPERTIES} (and every
state machine in L{MACHINES}) so that C{stress/run.py} runs the same checks
100,000 times per codec; here each runs with the test profile's example
count as a smoke test.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import os
import string
import tempfile
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire import aspp

from nport_twisted.wire import dsci
from nport_twisted.wire import telnet as t
from nport_twisted._exceptions import ConfigError
from nport_twisted.device.channel import SerialChannel
from nport_twisted.config.store import SettingsStore, dumps, import_config, loads
from nport_twisted.net.ratelimit import RateLimiter
from nport_twisted.services.dsci_responder import DsciProtocol, Outgoing
from nport_twisted.wire.pktinfo import PacketInfo
from nport_twisted.net.listener import ConnectionInfo, ListenerInfo, NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.config.identity import HostNetwork, InterfaceAddress, parse_routes, resolve_identity
from nport_twisted.wire.packing import DelimiterProcess, Packer, PackingConfig
from nport_twisted.modes.aspp_command import CommandProtocol, RealComOptions
from nport_twisted.modes.realcom import DataProtocol, RealComPort
from nport_twisted.modes.tcpserver import TcpServerCommandPort
from nport_twisted.device.adapter import LineCounters, ModemLines
from nport_twisted.config.settings import (
    MAX_BAUDRATE,
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
)
from nport_twisted.modes.tcpserver import TcpServerFactory
from nport_twisted.testing import FakeSerialDevice
from tests.test_aspp import _requests as aspp_requests
from tests.test_packing import configs as packing_configs

# --- the registry -------------------------------------------------------------------------


@attrs.frozen
class Property:
    """One check over drawn values: C{check(*drawn)} for C{drawn} from C{strategy}."""

    codec: str
    name: str
    strategy: st.SearchStrategy[tuple[Any, ...]]
    check: Callable[..., None]


PROPERTIES: list[Property] = []
MACHINES: list[tuple[str, str, type[RuleBasedStateMachine]]] = []


def prop(codec: str, *strategies: st.SearchStrategy[Any]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register C{check} as a property of C{codec} over C{strategies}."""

    def register(check: Callable[..., None]) -> Callable[..., None]:
        PROPERTIES.append(Property(codec, check.__name__, st.tuples(*strategies), check))
        return check

    return register


def machine(codec: str) -> Callable[[type[RuleBasedStateMachine]], type[RuleBasedStateMachine]]:
    """Register a state machine of C{codec}."""

    def register(cls: type[RuleBasedStateMachine]) -> type[RuleBasedStateMachine]:
        MACHINES.append((codec, cls.__name__, cls))
        return cls

    return register


@contextmanager
def no_logged_errors() -> Iterator[list[dict[str, Any]]]:
    """Fail if anything logs a failure or an error (what "an exception escaped" looks like)."""
    seen: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event or event.get("log_level") in (LogLevel.error, LogLevel.critical):
            seen.append(event)

    observer = typing.cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observer)
    if seen:
        from twisted.logger import formatEvent

        failure = seen[0].get("log_failure")
        detail = failure.getTraceback() if failure is not None else ""
        raise AssertionError(f"{len(seen)} error(s) logged: {formatEvent(seen[0])}\n{detail}")


def weighted(*items: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """C{one_of} with weights (C{one_of} drops repeated identical branches, so each copy is a new map)."""
    return st.one_of(*[strategy.map(lambda x: x) for weight, strategy in items for _ in range(weight)])


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --- ASPP ---------------------------------------------------------------------------------

_REPLY_CODES = sorted(aspp.CLIENT_REPLY_LENGTHS)
_MAX_REPLY = max(aspp.CLIENT_REPLY_LENGTHS.values())

#: One command frame: a valid request, or a frame with a random code and payload (wrong lengths too).
command_frames = weighted(
    (3, aspp_requests.map(aspp.encode_request)),
    (1, st.builds(lambda code, payload: bytes((code, len(payload))) + payload, st.integers(0, 255),
                  st.binary(max_size=12))),
)
#: A host's command stream: frames, cut into segments anywhere (what TCP delivers).
command_segments = st.builds(
    lambda frames, cuts: _chunks(b"".join(frames), cuts),
    st.lists(command_frames, min_size=1, max_size=8),
    st.lists(st.integers(0, 4096), max_size=4),
)
#: Host -> device command bytes for a parser: frames, glued frames, or unframed garbage.
command_bytes = st.one_of(
    command_frames,
    st.lists(command_frames, min_size=1, max_size=4).map(b"".join),
    st.binary(max_size=64),
)

#: Device -> host reply bytes: garbage or frames of the right length for a known code.
reply_bytes = st.one_of(
    st.binary(max_size=24),
    st.lists(
        st.tuples(st.sampled_from(_REPLY_CODES), st.binary(min_size=_MAX_REPLY, max_size=_MAX_REPLY)),
        min_size=1, max_size=4,
    ).map(lambda frames: b"".join(bytes((c,)) + rest[: aspp.CLIENT_REPLY_LENGTHS[c] - 1]
                                  for c, rest in frames)),
)


def _reply_size(reply: aspp.Reply) -> int:
    if isinstance(reply, aspp.UnknownReply):
        return len(reply.data)
    return aspp.CLIENT_REPLY_LENGTHS[reply.code]


def _known_prefix(replies: list[aspp.Reply]) -> list[aspp.Reply]:
    out: list[aspp.Reply] = []
    for reply in replies:
        if isinstance(reply, aspp.UnknownReply):
            break
        out.append(reply)
    return out


@prop("aspp", st.binary(max_size=600), st.booleans())
def check_request_canonical(data: bytes, ipv6: bool) -> None:
    """Every request decoded from arbitrary bytes encodes (no AsppError) and decodes back to itself."""
    for event in aspp.RequestParser(ipv6_check=ipv6).feed(data):
        if isinstance(event, aspp.Ipv6Check):
            assert aspp.encode_ipv6_echo(event.data) == event.data
            continue
        frame = aspp.encode_request(event)
        assert frame[1] == len(frame) - 2, frame
        again = aspp.RequestParser().feed(frame)
        assert again == [event], (event, frame, again)


@prop("aspp", st.binary(max_size=300) | reply_bytes, st.lists(st.integers(0, 300), max_size=8))
def check_reply_parser_accounting(data: bytes, cuts: list[int]) -> None:
    """
    The reply parser never raises, loses no byte (frames + tail = input), keeps
    less than one frame, and splits like a one-shot parse up to the first
    unsplittable byte.
    """
    parser = aspp.ReplyParser()
    replies: list[aspp.Reply] = []
    for piece in _chunks(data, cuts):
        replies.extend(parser.feed(piece))
    tail = parser._buffer
    assert sum(map(_reply_size, replies)) + len(tail) == len(data)
    assert len(tail) < _MAX_REPLY
    assert not tail or tail[0] in aspp.CLIENT_REPLY_LENGTHS
    once = aspp.ReplyParser().feed(data)
    assert _known_prefix(replies) == _known_prefix(once)


@machine("aspp")
class AsppParsersMachine(RuleBasedStateMachine):
    """
    Three parsers (requests with and without the IPv6 check, replies) fed
    interleaved streams: each stays equal to a one-shot parse of everything it
    got, and its buffer stays bounded.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests = {v6: aspp.RequestParser(ipv6_check=v6) for v6 in (False, True)}
        self.request_streams = {v6: bytearray() for v6 in (False, True)}
        self.request_events: dict[bool, list[Any]] = {False: [], True: []}
        self.replies = aspp.ReplyParser()
        self.reply_stream = bytearray()
        self.reply_events: list[aspp.Reply] = []

    @rule(v6=st.booleans(), chunk=command_bytes)
    def feed_request(self, v6: bool, chunk: bytes) -> None:
        self.request_streams[v6] += chunk
        self.request_events[v6] += self.requests[v6].feed(chunk)

    @rule(chunk=reply_bytes)
    def feed_reply(self, chunk: bytes) -> None:
        self.reply_stream += chunk
        self.reply_events += self.replies.feed(chunk)

    @invariant()
    def requests_consistent(self) -> None:
        for v6, parser in self.requests.items():
            reference = aspp.RequestParser(ipv6_check=v6)
            assert reference.feed(bytes(self.request_streams[v6])) == self.request_events[v6]
            assert parser.buffered == reference.buffered
            assert parser.buffered <= 256
            if v6 and len(self.request_streams[v6]) < 16:
                assert parser.buffered == len(self.request_streams[v6])

    @invariant()
    def replies_consistent(self) -> None:
        tail = self.replies._buffer
        assert sum(map(_reply_size, self.reply_events)) + len(tail) == len(self.reply_stream)
        assert len(tail) < _MAX_REPLY


# --- packing ------------------------------------------------------------------------------

_dt = st.sampled_from([0.0, 0.001, 0.004, 0.01, 0.02, 0.5])


@machine("packing")
class PackerMachine(RuleBasedStateMachine):
    """
    A packer fed, polled and flushed at increasing times: pending stays below
    the buffer size, chunks are never empty or too big, the deadline is
    C{last byte + force transmit} and never moves back, polling before it
    releases nothing and at it releases everything, and (without Strip)
    what came out plus what is pending is exactly what went in.
    """

    @initialize(config=packing_configs)
    def start(self, config: PackingConfig) -> None:
        self.config = config
        self.packer = Packer(config)
        self.now = 0.0
        self.last_feed: float | None = None
        self.fed = bytearray()
        self.out = bytearray()
        self.latest_deadline = float("-inf")

    def _take(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            assert chunk, "empty chunk"
            if not self.config.passthrough:
                assert len(chunk) <= self.config.buffer_size, (len(chunk), self.config)
            self.out += chunk

    @rule(data=st.binary(max_size=40) | st.lists(st.integers(0, 3), max_size=40).map(bytes), dt=_dt)
    def feed(self, data: bytes, dt: float) -> None:
        self.now += dt
        self.fed += data
        if data:
            self.last_feed = self.now
        self._take(self.packer.feed(data, self.now))

    @rule(dt=_dt)
    def poll(self, dt: float) -> None:
        self.now += dt
        deadline = self.packer.next_deadline()
        chunks = self.packer.poll(self.now)
        if deadline is None or self.now < deadline:
            assert chunks == []
        else:
            assert len(chunks) == 1 and self.packer.pending == 0
        self._take(chunks)

    @rule()
    def poll_at_deadline(self) -> None:
        deadline = self.packer.next_deadline()
        if deadline is None:
            return
        early = deadline - 0.0005
        if early >= self.now:
            assert self.packer.poll(early) == []
        self.now = max(self.now, deadline)
        pending = self.packer.pending
        chunks = self.packer.poll(self.now)
        assert [len(c) for c in chunks] == [pending]
        self._take(chunks)

    @rule()
    def flush(self) -> None:
        rest = self.packer.flush()
        assert self.packer.pending == 0 and self.packer.next_deadline() is None
        if rest:
            self.out += rest

    @invariant()
    def bounded(self) -> None:
        if self.config.passthrough:
            assert self.packer.pending == 0
        else:
            assert self.packer.pending < self.config.buffer_size

    @invariant()
    def deadline(self) -> None:
        deadline = self.packer.next_deadline()
        if self.packer.pending == 0 or not self.config.force_transmit_ms:
            assert deadline is None
            return
        assert self.last_feed is not None
        assert deadline == self.last_feed + self.config.force_transmit_ms / 1000.0
        assert deadline >= self.latest_deadline
        self.latest_deadline = deadline

    @invariant()
    def nothing_lost(self) -> None:
        pending = self.packer.pending
        if self.config.delimiter_process is DelimiterProcess.STRIP and not self.config.passthrough:
            assert len(self.out) + pending <= len(self.fed)
        else:
            assert len(self.out) + pending == len(self.fed)
            assert self.out == self.fed[: len(self.out)]


# --- DSCI ---------------------------------------------------------------------------------

_MAC = bytes.fromhex("0090e8123456")
_ETH0 = InterfaceAddress(2, "eth0", ipaddress.IPv4Address("192.168.127.254"), 24)
_HOST = HostNetwork(
    addresses=lambda: [_ETH0],
    routes=lambda: parse_routes("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU"
                                "\tWindow\tIRTT\neth0\t00000000\t017FA8C0\t0003\t0\t0\t100\t00000000"
                                "\t0\t0\t0\n"),
    dns=list,
    mac=lambda: (_MAC, "fixture"),
    source_for=lambda host: "192.168.127.254",
)
_DSCI_CONFIG = DeviceConfig().with_port_count(2, OpMode.REAL_COM)
_DEVID = resolve_identity(_DSCI_CONFIG, mac=_HOST.mac).device_id
_INFOS = st.sampled_from([
    None,
    PacketInfo(ifindex=2, local="192.168.127.254", destination="192.168.127.254"),
    PacketInfo(ifindex=2, local="192.168.127.254", destination="255.255.255.255"),
])
_PEERS = st.sampled_from([("192.168.127.1", 50000), ("10.0.0.9", 4000), ("127.0.0.1", 1),
                          ("0.0.0.0", 68), ("192.168.127.1", 0), ("::1", 4800)])


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: overwrite, insert, delete, truncate."""
    buf = bytearray(data)
    for kind, pos, value in edits:
        at = pos % (len(buf) + 1)
        if kind == 0 and at < len(buf):
            buf[at] = value
        elif kind == 1:
            buf.insert(at, value)
        elif kind == 2 and at < len(buf):
            del buf[at]
        elif kind == 3:
            del buf[at:]
    return bytes(buf)


_edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), max_size=4)


def _fix_length(data: bytes) -> bytes:
    """Make the header's length field match (so a mutant gets past the first check)."""
    if len(data) < dsci.HEADER_LEN:
        return data
    return data[:2] + len(data).to_bytes(2, "big") + data[4:]


_valid_requests = st.builds(
    lambda op, txid, payload, targeted: dsci.encode_request(op, txid, _DEVID if targeted else None, payload),
    st.integers(0, 0x7F) | st.sampled_from([0x01, 0x02, 0x10, 0x14, 0x16, 0x1A, 0x1B, 0x1D, 0x21, 0x22,
                                            0x23, 0x25, 0x26, 0x27]),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=8),
    st.booleans() | st.just(True),
)
_mutated_requests = st.builds(lambda d, e, fix: _fix_length(_mutate(d, e)) if fix else _mutate(d, e),
                              _valid_requests, _edits, st.booleans())
datagrams = weighted(
    (1, st.binary(max_size=600)),
    (3, _valid_requests),
    (3, _mutated_requests),
    (1, st.builds(lambda op, rest: bytes((op | 0x80,)) + rest, st.integers(0, 0x7F),
                  st.binary(max_size=40)).map(_fix_length)),
)

_DECODERS: dict[int, Callable[[dsci.Reply], Any]] = {
    dsci.OP_SEARCH: dsci.decode_search_reply,
    dsci.OP_NAME: dsci.decode_name_reply,
    dsci.OP_NETSTAT: dsci.decode_netstat_reply,
    dsci.OP_NETSTAT_PAGED: dsci.decode_netstat_reply,
    dsci.OP_KERNEL_INFO: dsci.decode_kernel_info_reply,
    dsci.OP_DATETIME: dsci.decode_datetime_reply,
    dsci.OP_TIME_SERVER: dsci.decode_time_server_reply,
    dsci.OP_IP: dsci.decode_address_reply,
    dsci.OP_NETMASK: dsci.decode_address_reply,
    dsci.OP_GATEWAY: dsci.decode_address_reply,
    dsci.OP_AUTO_REPORT: dsci.decode_auto_report_settings_reply,
    dsci.OP_NETWORK_CONFIG: dsci.decode_network_config_reply,
    dsci.OP_DNS: dsci.decode_dns_reply,
}


class _FakeUDP:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def send_reply(self, data: bytes, addr: tuple[str, int], ifindex: int = 0, source: str = "") -> bool:
        self.sent.append(Outgoing(data, addr[0], addr[1], ifindex, source))
        return True


@prop("dsci", st.lists(st.tuples(datagrams, _PEERS, _INFOS), min_size=1, max_size=12))
def check_dsci_responder(traffic: list[tuple[bytes, tuple[str, int], PacketInfo | None]]) -> None:
    """
    The DSCI responder fed arbitrary and mutated datagrams never raises, never
    answers a reply, and every answer is a well-formed reply to the request:
    reply bit set on the request's opcode, same txid, a length field that
    matches, and (status OK) a payload its decoder accepts.
    """
    clock = Clock()
    clock.advance(1_000_000)
    net = NetTable()
    for index, port in enumerate((950, 966, 951, 967)):
        net.add_listener(ListenerInfo("tcp", port, index % 2))
    net.connections += [ConnectionInfo("127.0.0.1", 950 + n % 2, "192.168.127.1", 40000 + n, n % 2)
                        for n in range(150)]
    proto = DsciProtocol(lambda: _DSCI_CONFIG, net, clock, _HOST,
                         per_source=RateLimiter(1e9, 1e9), overall=RateLimiter(1e9, 1e9))
    udp = _FakeUDP()
    proto.makeConnection(udp)
    with no_logged_errors():
        for datagram, peer, info in traffic:
            before = len(udp.sent)
            proto.datagramReceived(datagram, peer, info)
            clock.advance(0.01)
            if len(udp.sent) == before:
                continue
            assert len(udp.sent) == before + 1
            assert not datagram[0] & dsci.REPLY_BIT, f"answered a reply: {datagram.hex()}"
            reply = udp.sent[-1].data
            header = dsci.Header.from_bytes(reply)
            request = dsci.Header.from_bytes(datagram)
            assert header.opcode == request.opcode | dsci.REPLY_BIT
            assert header.txid == request.txid and header.length == len(reply)
            if header.status != dsci.STATUS_OK:
                assert header.status == dsci.STATUS_UNSUPPORTED and len(reply) == dsci.HEADER_LEN
                continue
            parsed = dsci.parse_reply(reply)
            assert parsed.device_id == _DEVID
            decoder = _DECODERS.get(request.opcode)
            if decoder is not None:
                decoder(parsed)
    stats = proto.stats
    assert stats.received == len(traffic)


_auto_reports = st.builds(
    lambda name, sn, fw, order: dsci.encode_auto_report(
        name, 0x5110, _MAC, sn, b"\xc0\xa8\x7f\xfe", b"\xff\xff\xff\x00", b"\xc0\xa8\x7f\x01", fw,
        0x80005110, ip_byte_order=order),
    st.text(max_size=40),
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from(["1.0.0", "4.3.1", "ff.ff.ff.ff", "0"]),
    st.sampled_from(["network", "little"]),
)


@prop("dsci", st.binary(max_size=120) | _auto_reports | st.builds(_mutate, _auto_reports, _edits))
def check_auto_report_decode(data: bytes) -> None:
    """An Auto IP Report decoder given anything returns a report or raises DsciError, nothing else."""
    try:
        report = dsci.decode_auto_report(data)
    except dsci.DsciError:
        return
    assert len(report.mac) == 6 and len(report.ip) == 4


# --- RFC 2217 (telnet) ---------------------------------------------------------------------------

_telnet_bytes = st.sampled_from([t.IAC, t.SB, t.SE, t.WILL, t.WONT, t.DO, t.DONT, t.NOP, t.COM_PORT_OPTION,
                                 t.BINARY, 0, 13, 10])
_com_port_messages = st.builds(
    t.ComPortMessage,
    st.sampled_from(list(t.ComPortCommand)),
    st.none() | st.integers(0, 255),
    st.booleans(),
).filter(lambda m: m.value is None or m.command is not t.ComPortCommand.SIGNATURE) | st.builds(
    t.ComPortMessage, st.just(t.ComPortCommand.SIGNATURE), st.binary(max_size=20), st.booleans())
_baud_messages = st.builds(t.ComPortMessage, st.just(t.ComPortCommand.SET_BAUDRATE),
                           st.integers(0, 0xFFFFFFFF), st.booleans())
#: One telnet element: escaped data, a negotiation, a command, an RFC 2217 message or a raw subnegotiation.
telnet_pieces = weighted(
    (2, st.binary(max_size=24).map(t.escape_iac)),
    (2, st.builds(t.encode_negotiation, st.sampled_from([t.WILL, t.WONT, t.DO, t.DONT]),
                  st.sampled_from([t.BINARY, t.ECHO, t.SGA, t.COM_PORT_OPTION, 24, 255]))),
    (1, st.sampled_from([t.NOP, t.BRK, t.AYT, t.GA, t.DM, 0, 200]).map(t.encode_command)),
    (3, (_com_port_messages | _baud_messages).map(t.encode_com_port)),
    (1, st.builds(t.encode_subnegotiation, st.integers(0, 255), st.binary(max_size=40))),
    (1, st.lists(_telnet_bytes, max_size=6).map(bytes)),  # broken sequences
    (1, st.binary(max_size=24)),  # raw bytes, unescaped
)
telnet_streams = st.lists(telnet_pieces, max_size=20).map(b"".join)


def _merged(events: list[t.TelnetEvent]) -> list[t.TelnetEvent]:
    """Adjacent Data events merged (chunking may only change where data is split)."""
    out: list[t.TelnetEvent] = []
    for event in events:
        assert not isinstance(event, t.Data) or event.data, "empty Data event"
        if isinstance(event, t.Data) and out and isinstance(out[-1], t.Data):
            out[-1] = t.Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


@prop("rfc2217", telnet_streams | st.binary(max_size=300), st.lists(st.integers(0, 400), max_size=10),
      st.sampled_from([t.MAX_SUBNEGOTIATION, 3, 16]))
def check_telnet_chunking(stream: bytes, cuts: list[int], max_sb: int) -> None:
    """The telnet parser never raises, and any chunking gives the same events (data merged) and drops."""
    whole = t.TelnetParser(max_sb)
    expected = _merged(whole.feed(stream))
    parser = t.TelnetParser(max_sb)
    events: list[t.TelnetEvent] = []
    for piece in _chunks(stream, cuts):
        events += parser.feed(piece)
        assert len(parser._sb) <= max_sb
    assert _merged(events) == expected
    assert parser.dropped_subnegotiations == whole.dropped_subnegotiations
    for event in expected:
        if isinstance(event, t.Subnegotiation):
            assert len(event.payload) < max_sb


@prop("rfc2217", st.binary(max_size=12) | (_com_port_messages | _baud_messages).map(
    lambda m: t.encode_com_port(m)[3:-2].replace(b"\xff\xff", b"\xff")))
def check_com_port_canonical(payload: bytes) -> None:
    """
    A COM-PORT-OPTION payload decodes to a message or raises TelnetError,
    and a decoded message encodes to a subnegotiation that parses and decodes
    back to itself.
    """
    try:
        message = t.decode_com_port(payload)
    except t.TelnetError:
        return
    frame = t.encode_com_port(message)
    events = t.TelnetParser().feed(frame)
    assert events == [t.Subnegotiation(t.COM_PORT_OPTION, events[0].payload)], events  # type: ignore[union-attr]
    assert t.decode_com_port(events[0].payload) == message  # type: ignore[union-attr]


_OPTIONS = [t.BINARY, t.ECHO, t.SGA, t.COM_PORT_OPTION, 24]


@prop("rfc2217", st.sets(st.sampled_from(_OPTIONS)), st.sets(st.sampled_from(_OPTIONS)),
      st.sets(st.tuples(st.sampled_from(_OPTIONS), st.booleans())),
      st.lists(st.tuples(st.booleans(), st.sampled_from(_OPTIONS), st.booleans()), max_size=8),
      st.lists(st.booleans(), max_size=200))
def check_negotiation_terminates(peer_local: set[int], peer_remote: set[int], peer_refuses: set[tuple[int, bool]],
                                 requests: list[tuple[bool, int, bool]], order: list[bool]) -> None:
    """
    Our option table (as the RFC 2217 server uses it) against a peer with
    any supported options (some of them refused outright), both requesting
    options in any order, messages delivered in any interleaving: the
    exchange ends (no negotiation loop, RFC 1143) and both sides agree on
    every option.
    """
    ours = t.OptionTable(local=(t.BINARY, t.SGA, t.COM_PORT_OPTION), remote=(t.BINARY, t.SGA, t.COM_PORT_OPTION))
    peer = t.OptionTable(local=tuple(peer_local), remote=tuple(peer_remote))
    for option, local in peer_refuses:
        refused = peer.get(option, local)
        if refused is not None:
            refused.state = t.OptionState.REALLY_INACTIVE
    tables = {True: ours, False: peer}
    queues: dict[bool, list[bytes]] = {True: [], False: []}  # bytes in flight *to* that side
    for by_us, option, local in requests:
        table = tables[by_us]
        if table.get(option, local) is not None:
            queues[not by_us].append(table.request(option, local))
    delivered = 0
    choices = iter(order)
    while queues[True] or queues[False]:
        delivered += 1
        assert delivered <= 4 * len(_OPTIONS) * 2 + len(requests) * 2, "negotiation loop"
        side = next(choices, True)
        if not queues[side]:
            side = not side
        message = queues[side].pop(0)
        for event in t.TelnetParser().feed(message):
            assert isinstance(event, t.Negotiation)
            reply = tables[side].receive(event)
            if reply:
                queues[not side].append(reply)
    for option in _OPTIONS:
        assert ours.enabled(option, local=True) == peer.enabled(option, local=False), option
        assert ours.enabled(option, local=False) == peer.enabled(option, local=True), option


_rfc2217_ops = st.lists(
    weighted(
        (4, st.tuples(st.just("client"), st.builds(_chunks, telnet_streams, st.lists(st.integers(0, 500),
                                                                                     max_size=3)))),
        (1, st.tuples(st.just("serial"), st.binary(max_size=32))),
        (1, st.tuples(st.just("lines"), st.builds(ModemLines, *[st.booleans()] * 4))),
        (1, st.tuples(st.just("advance"), st.sampled_from([0.0, 0.1, 1.0]))),
    ),
    min_size=1, max_size=30,
)


@prop("server", _rfc2217_ops, st.sampled_from([1, 2]))
def check_rfc2217_fuzz(ops: list[tuple[str, Any]], clients: int) -> None:
    """
    RFC 2217 clients sending arbitrary telnet (negotiations, COM-PORT-OPTION
    messages valid or not, broken sequences) with serial data and modem line
    changes: nothing is logged as an error, the device stays open, no
    connection is closed, the server's output is well-formed telnet whose
    COM-PORT-OPTION messages are all server messages (code + 100), and the
    client's data reaches the device in order.
    """
    from nport_twisted.modes.rfc2217 import Rfc2217Factory

    clock = Clock()
    device = FakeSerialDevice(lines=ModemLines())
    channel = SerialChannel(0, device.path, SerialSettings(), clock, device.opener)
    channel.startService()
    ctx = PortContext(index=0, channel=channel, operating=OperatingSettings(mode=OpMode.RFC2217,
                                                                            max_connection=2),
                      reactor=clock, endpoint=lambda proto, port: f"{proto}:{port}", net=NetTable(),
                      accessible=AccessibleIPSettings)
    factory = Rfc2217Factory(ctx)
    with no_logged_errors():
        conns = []
        for n in range(clients):
            proto = factory.buildProtocol(None)
            transport = _transport(4001, 40001 + n)
            proto.makeConnection(transport)
            conns.append((proto, transport))
        sent = bytearray()
        plain = True  # no refusal, suspend or purge: the data paths must be exact
        reference = t.TelnetParser()
        for op, arg in ops:
            if op == "client":
                for segment in arg:
                    conns[0][0].dataReceived(segment)
                    for event in reference.feed(segment):
                        if isinstance(event, t.Data):
                            sent += event.data
                        elif isinstance(event, t.Negotiation) and event.verb in (t.WONT, t.DONT):
                            plain = False
                        elif isinstance(event, t.Subnegotiation):
                            plain = plain and not event.payload[:1] in (b"\x08", b"\x0c")
            elif op == "serial":
                device.receive(arg)
            elif op == "lines":
                device.lines = arg
                clock.advance(0.1)
            else:
                clock.advance(arg)
            assert channel.is_open, f"device closed after {op}"
            for _, transport in conns:
                assert not transport.disconnecting, f"client closed after {op} {arg!r}"
        if plain:
            assert device.written == bytes(sent), "client data did not reach the device unchanged"
        for _, transport in conns:
            parser = t.TelnetParser()
            for event in parser.feed(transport.value()):
                if isinstance(event, t.Subnegotiation):
                    assert event.option == t.COM_PORT_OPTION
                    assert t.decode_com_port(event.payload).server
            assert parser._state == 0, "output ends inside a telnet sequence"
        for proto, _ in conns:
            proto.connectionLost()
        assert factory.active == [] and channel.sessions == ()


# --- server-level fuzz: Real COM ---------------------------------------------------------------

_bools = st.booleans()
_lines = st.builds(ModemLines, _bools, _bools, _bools, _bools)
_advance = st.sampled_from([0.0, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0])
realcom_ops = st.lists(
    weighted(
        (4, st.tuples(st.just("cmd"), command_segments)),
        (1, st.tuples(st.just("cmd"), st.binary(max_size=24).map(lambda b: [b]))),  # may desynchronise
        (1, st.tuples(st.just("data"), st.binary(max_size=32))),
        (1, st.tuples(st.just("serial"), st.binary(max_size=32))),
        (1, st.tuples(st.just("lines"), _lines)),
        (1, st.tuples(st.just("errors"), st.integers(0, 4))),
        (1, st.tuples(st.just("advance"), _advance)),
    ),
    min_size=1,
    max_size=40,
)
realcom_setups = st.fixed_dictionaries({
    "max_connection": st.sampled_from([1, 1, 2, 4]),
    "allow_driver_control": _bools,
    "answer_host_name": _bools,
    "tcp_server_command_port": _bools,
    "modem": _bools,
})


def _transport(local_port: int, peer_port: int) -> StringTransport:
    return StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", local_port),
                           peerAddress=IPv4Address("TCP", "127.0.0.1", peer_port))


@prop("server", realcom_setups, realcom_ops)
def check_realcom_command_fuzz(setup: dict[str, Any], ops: list[tuple[str, Any]]) -> None:
    """
    Garbage and valid ASPP interleaved with data, serial bytes, modem line and
    error changes and time: no error is logged, the device stays open, neither
    connection is closed, and everything the command connection sent back
    splits into known replies with nothing left over.
    """
    clock = MemoryReactorClock()
    device = FakeSerialDevice(lines=ModemLines(cts=True, dsr=True, dcd=True) if setup["modem"] else None,
                              counters=LineCounters() if setup["modem"] else None)
    with_data = not setup["tcp_server_command_port"]
    channel = SerialChannel(0, device.path, SerialSettings(), clock, device.opener, keep_open=not with_data)
    channel.startService()
    ctx = PortContext(index=0, channel=channel,
                      operating=OperatingSettings(max_connection=setup["max_connection"],
                                                  allow_driver_control=setup["allow_driver_control"]),
                      reactor=clock, endpoint=lambda proto, port: f"{proto}:{port}", net=NetTable(),
                      accessible=AccessibleIPSettings)
    options = RealComOptions(answer_host_name=setup["answer_host_name"])
    port = RealComPort(ctx, options) if with_data else TcpServerCommandPort(ctx, options)
    with no_logged_errors():
        cmd, ct = CommandProtocol(port), _transport(966, 40001)
        cmd.makeConnection(ct)
        data = dt = None
        if with_data:
            data, dt = DataProtocol(port), _transport(950, 40002)
            data.makeConnection(dt)
        counters = LineCounters()
        for op, arg in ops:
            if op == "cmd":
                for segment in arg:
                    cmd.dataReceived(segment)
            elif op == "data" and data is not None:
                data.dataReceived(arg)
            elif op == "serial":
                device.receive(arg)
            elif op == "lines" and setup["modem"]:
                device.lines = arg
            elif op == "errors" and setup["modem"]:
                counters = LineCounters(counters.frame + arg, counters.overrun, counters.parity + arg,
                                        counters.brk + arg % 2, counters.buf_overrun)
                device.counters = counters
            elif op == "advance":
                clock.advance(arg)
            assert channel.is_open, f"device closed after {op}"
            assert not ct.disconnecting, f"command connection closed after {op} {arg!r}"
            assert dt is None or not dt.disconnecting, f"data connection closed after {op}"
        clock.advance(1.5)  # timed breaks, deferred WAIT_OQUEUE, NOTIFY
        parser = aspp.ReplyParser()
        replies = parser.feed(ct.value())
        unknown = [r for r in replies if isinstance(r, aspp.UnknownReply)]
        assert not unknown and not parser._buffer, (ct.value().hex(), unknown)
        cmd.connectionLost()
        if data is not None:
            data.connectionLost()
        device.close_complete()
        clock.advance(10)
        assert channel.sessions == ()


@prop("server", st.lists(st.tuples(st.sampled_from(["data", "serial"]), st.binary(max_size=64)), max_size=30),
      st.sampled_from([None, "strip", "length"]))
def check_realcom_data_path(ops: list[tuple[str, bytes]], packing: str | None) -> None:
    """
    Bytes on the Real COM data connection reach the device unchanged and in
    order, and serial bytes reach the host unchanged (with packing: nothing
    lost or reordered once flushed).
    """
    clock = MemoryReactorClock()
    device = FakeSerialDevice(lines=None)
    packing_config = {
        None: None,
        "strip": PackingConfig(delimiter1=0x0A, delimiter_process=DelimiterProcess.DO_NOTHING,
                               force_transmit_ms=5),
        "length": PackingConfig(packing_length=7),
    }[packing]
    channel = SerialChannel(0, device.path, SerialSettings(), clock, device.opener, keep_open=False,
                            packing=packing_config)
    channel.startService()
    ctx = PortContext(index=0, channel=channel, operating=OperatingSettings(), reactor=clock,
                      endpoint=lambda proto, port: f"{proto}:{port}", net=NetTable(),
                      accessible=AccessibleIPSettings)
    port = RealComPort(ctx)
    with no_logged_errors():
        cmd, data = CommandProtocol(port), DataProtocol(port)
        cmd.makeConnection(_transport(966, 40001))
        dt = _transport(950, 40002)
        data.makeConnection(dt)
        to_device, to_host = bytearray(), bytearray()
        for op, chunk in ops:
            if op == "data":
                data.dataReceived(chunk)
                to_device += chunk
            else:
                device.receive(chunk)
                to_host += chunk
            clock.advance(0.001)
        assert device.written == to_device
        data.connectionLost()  # the close flushes the packer to... nobody: the host is gone
        got = dt.value()
        assert to_host.startswith(got), "reordered or changed"
        if packing is None:
            assert got == to_host
        cmd.connectionLost()
        device.close_complete()


# --- server-level fuzz: TCP Server mode --------------------------------------------------------

tcp_ops = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["client0", "client1", "serial"]), st.binary(max_size=48)),
        st.tuples(st.sampled_from(["vanish", "return", "jam0", "unjam0", "advance"]), st.just(b"")),
    ),
    max_size=40,
)


@prop("server", tcp_ops, _bools)
def check_tcp_server_fuzz(ops: list[tuple[str, bytes]], ignore_jammed: bool) -> None:
    """
    Two TCP Server clients sending garbage while the device vanishes and
    returns and one client jams: host bytes reach the device in order while it
    is present (counted as dropped otherwise), serial bytes reach every
    unjammed client, nothing is logged as an error and no connection closes.
    """
    clock = Clock()
    device = FakeSerialDevice(lines=None)
    channel = SerialChannel(0, device.path, SerialSettings(), clock, device.opener,
                            ignore_jammed=ignore_jammed)
    channel.startService()
    ctx = PortContext(index=0, channel=channel,
                      operating=OperatingSettings(mode=OpMode.TCP_SERVER, max_connection=2,
                                                  ignore_jammed=ignore_jammed),
                      reactor=clock, endpoint=lambda proto, port: f"{proto}:{port}", net=NetTable(),
                      accessible=AccessibleIPSettings)
    factory = TcpServerFactory(ctx)
    with no_logged_errors():
        clients = []
        for n in range(2):
            proto = factory.buildProtocol(None)
            transport = _transport(4001, 40001 + n)
            proto.makeConnection(transport)
            clients.append((proto, transport))
        written = bytearray()  # what the device got, across reopenings
        sent = bytearray()
        dropped = 0
        for op, chunk in ops:
            present = channel.is_open
            if op.startswith("client"):
                proto, _ = clients[int(op[-1])]
                proto.dataReceived(chunk)
                if present:
                    sent += chunk
                else:
                    dropped += len(chunk)
            elif op == "serial" and present:
                device.receive(chunk)
            elif op == "vanish" and present:
                written += device.written
                device.vanish()
            elif op == "return":
                device.present = True
                clock.advance(6)
            elif op == "jam0":
                channel.set_jammed(clients[0][0], True)
            elif op == "unjam0":
                channel.set_jammed(clients[0][0], False)
            elif op == "advance":
                clock.advance(0.5)
            for _, transport in clients:
                assert not transport.disconnecting, f"client closed after {op}"
        if channel.is_open:
            written += device.written
        assert written == sent
        assert channel.stats.serial_tx_dropped == dropped
        client1 = clients[1][1].value()
        assert channel.stats.serial_rx_bytes == len(client1)
        for proto, _ in clients:
            proto.connectionLost()
        assert factory.active == [] and channel.sessions == ()


# --- settings file ------------------------------------------------------------------------------

_word = st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=15)
_text = st.text(alphabet=string.ascii_letters + string.digits + "-_. /:@é", max_size=30).map(str.strip)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_hostport = st.builds(lambda h, p: f"{h}:{p}", st.text(alphabet=string.ascii_lowercase + ".-", min_size=1,
                                                       max_size=12), st.integers(1, 65535))
_serials = st.builds(
    SerialSettings, alias=_word, baudrate=st.integers(50, MAX_BAUDRATE), bytesize=st.sampled_from([5, 6, 7, 8]),
    stopbits=st.sampled_from([1, 1.5, 2]), parity=st.sampled_from(Parity),
    flow_control=st.sampled_from(FlowControl), fifo=_bools, interface=st.sampled_from(SerialInterface))
_operatings = st.builds(
    OperatingSettings, mode=st.sampled_from(OpMode), tcp_alive_check_min=st.integers(0, 99),
    max_connection=st.integers(1, 4), ignore_jammed=_bools, allow_driver_control=_bools,
    packing_length=st.integers(0, 1024), delimiter1=st.none() | st.integers(0, 255),
    delimiter_process=st.sampled_from(DelimiterProcess), force_transmit_ms=st.integers(0, 65535),
    local_tcp_port=st.integers(0, 65535), command_port=st.integers(0, 65535), secure=_bools,
    destinations=st.lists(_hostport, max_size=4),
    designated_local_ports=st.lists(st.integers(0, 65535), max_size=4),
    udp_destinations=st.lists(st.builds(UdpDestination, begin=_ipv4, end=_ipv4, port=st.integers(1, 65535)),
                              max_size=4),
    telnet_map_cr=st.sampled_from(["cr", "lf", "crlf"]),
)
device_configs = st.builds(
    DeviceConfig,
    basic=st.builds(BasicSettings, server_name=_text.map(lambda s: s[:39].strip()),
                    server_location=_text.map(lambda s: s[:39].strip()), web_console=_bools),
    network=st.builds(NetworkSettings, ip=_ipv4 | st.just(""), netmask=st.just("255.255.255.0"),
                      auto_report_port=st.integers(1, 65535)),
    ports=st.lists(st.builds(PortConfig, serial=_serials, operating=_operatings), min_size=1, max_size=4),
    accessible_ip=st.builds(AccessibleIPSettings, st.lists(
        st.builds(AccessibleIP, ip=_ipv4, netmask=st.sampled_from(["255.255.255.255", "255.255.0.0", "0.0.0.0"]),
                  active=_bools), max_size=16)),
)

_SECTION_CLASSES: dict[str, type[Any]] = {
    "identity": Identity, "basic": BasicSettings, "network": NetworkSettings,
    "auto_warning": AutoWarningSettings, "password": PasswordSettings, "accessible_ip": AccessibleIPSettings,
    "serial": SerialSettings, "operating": OperatingSettings,
}
_BAD_SECTIONS = ["port0.serial", "port33.operating", "port\u0661.serial", "DEFAULT", "port1.Serial",
                 "nport-twisted:no-default", "port1", "", " basic", "port99999999999999999999.serial"]
_KEYS = sorted({f.name for cls in _SECTION_CLASSES.values() for f in attrs.fields(cls)})
_ENUM_WORDS = sorted({str(m.value) for e in (OpMode, Parity, FlowControl, SerialInterface, DelimiterProcess,
                                              IPConfig, ConnectionControl) for m in e}
                     | {m.name.lower() for e in (OpMode, Parity, FlowControl) for m in e})
_VALUES = ["", "0", "1", "-1", "0x10", "0xFF", "07", "1_000", "yes", "no", "maybe", "ON", "1.5", "nan",
           "inf", "1e999", "9" * 5000, "10.0.0.1", "255.255.255.0", "10.0.0.1:4001", "h:0", "a,b,,c",
           "10.0.0.1-10.0.0.9:4001", "10.0.0.1:99999", "10.0.0.0/255.0.0.0 on", "10.0.0.0/255.0.255.0",
           "x/y off", "5110", "NPort 5650-8", "NP9999", "00:90:E8:12:34:56", "00:90:E8:12:34",
           "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44, "scrypt$3$8$1$AA==$AA==", "%(x)s", "é",
           "\x85", "[x]", "Europe/Berlin", "No/Such_Zone", "../../etc/passwd", "a@b.c, d@e.f", "x" * 70]
_values = st.one_of(st.sampled_from(_VALUES), st.sampled_from(_ENUM_WORDS), st.integers(-2, 70000).map(str),
                    _ipv4, st.text(max_size=10))


def _typed_values(cls: type[Any], key: str) -> st.SearchStrategy[str]:
    """Values of the right type for C{key} of C{cls} (in range or not)."""
    hint = typing.get_type_hints(cls).get(key)
    if hint is bool:
        return st.sampled_from(["yes", "no", "on", "off", "1", "0", "Enable"])
    if hint is int:
        return st.one_of(st.integers(0, 100), st.integers(0, 70000)).map(str)
    if hint is float:
        return st.sampled_from(["1", "1.5", "2", "3"])
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return st.sampled_from([str(m.value) for m in hint] + [m.name for m in hint])
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        one = {UdpDestination: st.builds(lambda a, p: f"{a}-{a}:{p}", _ipv4, st.integers(1, 65535)),
               AccessibleIP: st.builds(lambda a, m: f"{a}/{m} on", _ipv4, st.sampled_from(
                   ["255.255.255.0", "255.255.255.255"])),
               int: st.integers(0, 65535).map(str)}.get(item, _hostport)
        return st.lists(one, max_size=5).map(", ".join)
    if key in ("ip", "netmask", "gateway", "dns1", "dns2"):
        return _ipv4 | st.just("")
    if typing.get_args(hint):  # int | None
        return st.none().map(lambda _: "") | st.integers(0, 300).map(str)
    return _word


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in C{n} draws (hypothesis favours 0 in integer ranges)."""
    return bool(draw(st.sampled_from(range(n))) == n // 2)


_TOP_SECTIONS = ["identity", "basic", "network", "auto_warning", "password", "accessible_ip"]


@st.composite
def settings_files(draw: st.DrawFn) -> str:
    """Mostly well-formed files: real sections with their own keys, values valid or not."""
    lines: list[str] = []
    names = draw(st.lists(st.one_of(
        st.sampled_from(_TOP_SECTIONS),
        st.builds(lambda n, k: f"port{n}.{k}", st.sampled_from([1, 1, 1, 2, 2, 3, 4]),
                  st.sampled_from(["serial", "operating"])),
        st.sampled_from(_BAD_SECTIONS) if _one_in(draw, 5) else st.nothing(),
    ), max_size=6, unique=True))
    for name in names:
        cls = _SECTION_CLASSES.get(name.rpartition(".")[2]) if name.startswith("port") else \
            _SECTION_CLASSES.get(name)
        lines.append(f"[{name}]")
        own = [f.name for f in attrs.fields(cls)] if cls is not None else _KEYS
        keys = draw(st.lists(st.sampled_from(_KEYS) if _one_in(draw, 10) else st.sampled_from(own),
                             max_size=6, unique=True))
        if keys and _one_in(draw, 50):
            keys.append(keys[0])  # a duplicate key
        for key in keys:
            typed = cls is not None and key in own and not _one_in(draw, 4)
            values = _typed_values(cls, key) if cls is not None and typed else _values
            lines.append(f"{key} = {draw(values)}")
        if _one_in(draw, 10):
            lines.append(draw(st.sampled_from(["# comment", "  continued", "=", "[", "key", "[]", "\t"])))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


_setting_lines = settings_files()

_text_edits = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 1 << 16), st.text(max_size=6)), max_size=5)


def _edit_text(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply (kind, position, text) edits: insert, delete, replace a char, truncate, drop or repeat a line."""
    for kind, pos, insert in edits:
        at = pos % (len(text) + 1)
        if kind == 0:
            text = text[:at] + insert + text[at:]
        elif kind == 1:
            text = text[:at] + text[at + 1 + len(insert):]
        elif kind == 2:
            text = text[:at] + (insert[:1] or "#") + text[at + 1:]
        elif kind == 3:
            text = text[:at]
        else:
            lines = text.split("\n")
            i = pos % len(lines)
            lines[i:i + 1] = [] if kind == 4 else [lines[i], lines[i]]
            text = "\n".join(lines)
    return text


def _load_or_error(text: str, **kw: Any) -> DeviceConfig | None:
    try:
        config = loads(text, "<fuzz>", **kw)
    except ConfigError as e:
        assert str(e).startswith("<fuzz>"), f"error does not name the file: {e}"
        return None
    assert isinstance(config, DeviceConfig)
    again = loads(dumps(config), "<again>")
    assert again == config, "a loaded configuration does not survive save and load"
    return config


@prop("settings", st.text(max_size=400) | _setting_lines)
def check_settings_text(text: str) -> None:
    """Arbitrary or structured text loads as a valid config (stable through dumps) or raises ConfigError."""
    _load_or_error(text)


@prop("settings", device_configs, _text_edits)
def check_settings_mutated(config: DeviceConfig, edits: list[tuple[int, int, str]]) -> None:
    """A valid file round-trips exactly; edited, truncated or reordered it still gives ConfigError or a config."""
    text = dumps(config)
    assert loads(text) == config
    _load_or_error(_edit_text(text, edits))
    for end in sorted({e[1] % (len(text) + 1) for e in edits} | {len(text) // 2}):
        _load_or_error(text[:end])  # truncated files (a crash mid-write without atomic_write)


@prop("settings", st.text(max_size=300) | _setting_lines, _bools)
def check_settings_import(text: str, network: bool) -> None:
    """Importing arbitrary text over a running config gives ConfigError or a config that keeps the password."""
    current = DeviceConfig().with_port_count(2, OpMode.TCP_SERVER)
    try:
        new = import_config(text, current, network=network, where="<fuzz>")
    except ConfigError:
        return
    assert new.password == current.password and new.identity == current.identity
    if not network:
        assert new.network == current.network


@prop("settings", st.binary(max_size=200) | _setting_lines.map(lambda t: t.encode("utf-8", "surrogatepass")))
def check_settings_store_bytes(raw: bytes) -> None:
    """A settings file with any bytes (bad UTF-8 included) loads or raises ConfigError naming the path."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "nport.ini")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            SettingsStore(path).load()
        except ConfigError as e:
            assert path in str(e), str(e)


# --- trial --------------------------------------------------------------------------------------


def _property_test(p: Property) -> Callable[[SynchronousTestCase], None]:
    @given(p.strategy)
    def test(self: SynchronousTestCase, drawn: tuple[Any, ...]) -> None:
        p.check(*drawn)

    test.__doc__ = (p.check.__doc__ or p.name).strip().split("\n\n")[0]
    return test


def _machine_test(cls: type[RuleBasedStateMachine]) -> Callable[[SynchronousTestCase], None]:
    def test(self: SynchronousTestCase) -> None:
        run_state_machine_as_test(cls, settings=settings(max_examples=50, stateful_step_count=30))

    test.__doc__ = (cls.__doc__ or cls.__name__).strip().split("\n\n")[0]
    return test


class CodecPropertyTests(SynchronousTestCase):
    """The registered properties and state machines, each as a short smoke run."""

    locals().update({f"test_{p.codec}_{p.name.removeprefix('check_')}": _property_test(p) for p in PROPERTIES})
    locals().update({f"test_{codec}_{name}": _machine_test(cls) for codec, name, cls in MACHINES})


class RegistryTests(SynchronousTestCase):
    def test_every_codec_covered(self) -> None:
        """The stress runner finds properties for every codec."""
        codecs = {p.codec for p in PROPERTIES} | {codec for codec, _, _ in MACHINES}
        self.assertEqual(codecs, {"aspp", "dsci", "packing", "rfc2217", "settings", "server"})
