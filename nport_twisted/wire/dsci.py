# -*- test-case-name: tests.test_dsci -*-
"""
Sans-IO codec for MOXA's UDP 4800 "DSCI" protocol and the Auto IP Report.

DSCI is the search / information protocol that NPort Administrator, the
Device Search Utility and MOXA's Real COM/TTY drivers speak to an NPort on
UDP port 4800 (specification: C{dsci.md}).  This module only turns bytes into
typed values and back: it owns no socket, reactor, clock or logger.  The
datagram protocol that answers requests lives elsewhere and decides policy
(which opcodes to answer, rate limits, whether the device ID matches).

Server side: L{parse_request} plus the C{encode_*_reply} functions.
Client side (the C{nport-search} tool, tests): the C{encode_*_request}
functions plus L{parse_reply} and the C{decode_*_reply} functions.
Auto IP Report (device -> PC): L{encode_auto_report}, L{parse_auto_report}
and L{decode_auto_report}.

Anything malformed on the wire raises L{DsciError}; bad arguments given to
an encoder raise C{ValueError}.
"""

# Wire format (dsci.md §1-§7; labels there: verified / reported / inferred).
#
#   Header, 8 bytes, every datagram:
#     0  u8     opcode       request 0x01-0x7F; reply = opcode | 0x80
#     1  u8     status       0 in requests; reply 0 = OK, 4 = unsupported
#     2  u16 BE length       total datagram length, header included, >= 8
#     4  u32    txid         opaque, echoed unchanged in the reply
#
#   Device ID, 12 bytes at 8-19, in every datagram except the 8-byte search:
#     8  u32 LE AP ID        12  u16 LE HW ID        14  6 bytes MAC
#
#   Requests understood here (payload = bytes after offset 20):
#     0x01 search        8 bytes (broadcast) or 20 bytes (targeted)
#     0x14 netstat       + u16 LE max entries (driver: 80 00)
#     0x1D netstat paged + 00 FF (max entries, byte order unknown)
#                        + u16 LE start index (driver: <u8 start> 00)
#     0x26 net config    + 00 02 (meaning unknown)
#     all others         devid only
#
#   Replies (total length):
#     0x81 search 24      ipv4
#     0x82        20      nothing
#     0x90 name   60      40-byte NUL-terminated ASCII field
#     0x94/0x9D   24+16n  u16 LE count, u16 LE next index (0x94: 0), entries
#                         {remote ip 4, local ip 4, remote port u16 LE,
#                          local port u16 LE, type u8, state u8,
#                          serial port u8, reserved u8}
#     0x96 kernel 36      firmware u32 LE, 4 unknown, serial u16 LE, 00 00,
#                         2 unknown, 1 unknown, port count u8
#     0x9A date   36      year-1900 u16 LE, month-1, ?, day, h, m, s, pad
#     0x9B tsrv   60      40-byte string
#     0xA1-A3     24      ipv4
#     0xA5        64      40-byte string, port u16 LE, period u16 LE
#     0xA6        40      8 unknown bytes, ip, netmask, gateway
#     0xA7        28      dns1, dns2
#     status != 0  8      header only (our choice; real length unknown)
#
#   Auto IP Report (device -> PC): b"MOXA" + items {id u8, len u8, data}.

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs
from attrs import field, frozen

__all__ = [
    "AR_AP_ID",
    "AR_FIRMWARE",
    "AR_GATEWAY",
    "AR_HW_ID",
    "AR_IP",
    "AR_MAC",
    "AR_NAME",
    "AR_NETMASK",
    "AR_SERIAL_NUMBER",
    "AUTO_REPORT_MAGIC",
    "DEVICE_ID_LEN",
    "DSCI_PORT",
    "HEADER_LEN",
    "NAME_FIELD_LEN",
    "NETSTAT_DEFAULT_MAX_ENTRIES",
    "NETSTAT_ENTRY_LEN",
    "NETSTAT_MAX_ENTRIES",
    "NETSTAT_PAGE_SIZE",
    "OP_AUTO_REPORT",
    "OP_DATETIME",
    "OP_DNS",
    "OP_GATEWAY",
    "OP_IP",
    "OP_KERNEL_INFO",
    "OP_NAME",
    "OP_NETMASK",
    "OP_NETSTAT",
    "OP_NETSTAT_PAGED",
    "OP_NETWORK_CONFIG",
    "OP_PING",
    "OP_SEARCH",
    "OP_TIME_SERVER",
    "REPLY_BIT",
    "SOCK_TCP",
    "SOCK_UDP",
    "STATUS_OK",
    "STATUS_UNSUPPORTED",
    "TCP_CONNECTED",
    "TCP_LISTEN",
    "AutoReport",
    "AutoReportSettings",
    "DeviceId",
    "DsciError",
    "DsciStatusError",
    "Header",
    "KernelInfo",
    "NetstatEntry",
    "NetstatPagedRequest",
    "NetstatReply",
    "NetstatRequest",
    "NetworkConfig",
    "Reply",
    "Request",
    "SearchReply",
    "decode_address_reply",
    "decode_auto_report",
    "decode_auto_report_settings_reply",
    "decode_datetime_reply",
    "decode_dns_reply",
    "decode_firmware_version",
    "decode_kernel_info_reply",
    "decode_name_reply",
    "decode_netstat_reply",
    "decode_network_config_reply",
    "decode_search_reply",
    "decode_time_server_reply",
    "encode_address_reply",
    "encode_auto_report",
    "encode_auto_report_settings_reply",
    "encode_datetime_reply",
    "encode_devid_only_reply",
    "encode_dns_reply",
    "encode_firmware_version",
    "encode_kernel_info_reply",
    "encode_name_reply",
    "encode_netstat_paged_reply",
    "encode_netstat_paged_request",
    "encode_netstat_reply",
    "encode_netstat_request",
    "encode_network_config_reply",
    "encode_network_config_request",
    "encode_reply",
    "encode_request",
    "encode_search_reply",
    "encode_search_request",
    "encode_status_reply",
    "encode_time_server_reply",
    "parse_auto_report",
    "parse_reply",
    "parse_request",
]

DSCI_PORT = 4800

HEADER_LEN = 8
DEVICE_ID_LEN = 12
_DEVID_END = HEADER_LEN + DEVICE_ID_LEN
_MAX_DATAGRAM = 0xFFFF  # the length field is a u16

OP_SEARCH = 0x01
# Answered by real devices with header + devid; purpose unknown.
OP_PING = 0x02
OP_NAME = 0x10
OP_NETSTAT = 0x14
OP_KERNEL_INFO = 0x16
OP_DATETIME = 0x1A
OP_TIME_SERVER = 0x1B
OP_NETSTAT_PAGED = 0x1D
OP_IP = 0x21
OP_NETMASK = 0x22
OP_GATEWAY = 0x23
OP_AUTO_REPORT = 0x25
OP_NETWORK_CONFIG = 0x26
OP_DNS = 0x27

REPLY_BIT = 0x80
STATUS_OK = 0x00
STATUS_UNSUPPORTED = 0x04

# Netstat entry constants, named after MOXA's driver.
SOCK_UDP = 0
SOCK_TCP = 1
TCP_LISTEN = 1
TCP_CONNECTED = 4

NETSTAT_ENTRY_LEN = 16
# What MOXA's driver asks for in 0x14 and the most it will read from any
# netstat reply (its receive buffer is 2100 bytes = 24 + 16 * 129).
NETSTAT_DEFAULT_MAX_ENTRIES = 128
NETSTAT_MAX_ENTRIES = 128
# Entries per 0x9D page: 24 + 16 * 64 = 1048 bytes, which fits the IPv6
# minimum MTU (1280 - 48 bytes of headers) and leaves room for tunnels on
# Ethernet.  Fewer, larger pages matter because the driver fetches only one
# page per poll interval.  Our choice; real devices' page size is unknown.
NETSTAT_PAGE_SIZE = 64

NAME_FIELD_LEN = 40

# Undecoded kernel-info and network-config bytes, as seen on a 5110A.
_KERNEL_UNKNOWN24 = b"\x01\x00\x02\x00"
_KERNEL_UNKNOWN32 = b"\x00\x00"
_NETCONFIG_UNKNOWN8 = b"\x01\x00\x00\x00\x00\x00\x01\x00"
# The two extra bytes DSU sends with 0x26; meaning unknown.
_NETCONFIG_REQUEST_PAYLOAD = b"\x00\x02"
# The literal max-entries bytes MOXA's driver writes in 0x1D.
_PAGED_MAX_ENTRIES_RAW = b"\x00\xff"

AUTO_REPORT_MAGIC = b"MOXA"
AR_NAME = 1
AR_HW_ID = 2
AR_MAC = 3
AR_SERIAL_NUMBER = 4
AR_IP = 5
AR_NETMASK = 6
AR_GATEWAY = 7
AR_FIRMWARE = 8
AR_AP_ID = 9


class DsciError(Exception):
    """
    A datagram that is not valid DSCI (or Auto IP Report) and must be
    dropped; the message says why.
    """


class DsciStatusError(DsciError):
    """
    A well-formed reply whose status byte is not L{STATUS_OK}.

    @ivar opcode: the reply opcode (reply bit set).
    @ivar status: the status byte, e.g. L{STATUS_UNSUPPORTED}.
    """

    def __init__(self, opcode: int, status: int) -> None:
        super().__init__(f"reply 0x{opcode:02x} has status 0x{status:02x}")
        self.opcode = opcode
        self.status = status


# --- validators ----------------------------------------------------------

_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _uint(bits: int) -> _Validator:
    limit = 1 << bits

    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{attribute.name} must be an int, not {value!r}")
        if not 0 <= value < limit:
            raise ValueError(f"{attribute.name}={value} does not fit u{bits}")

    return check


def _nbytes(size: int) -> _Validator:
    def check(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, bytes):
            raise TypeError(f"{attribute.name} must be bytes, not {value!r}")
        if len(value) != size:
            raise ValueError(f"{attribute.name} must be {size} bytes, got {len(value)}")

    return check


def _check_bytes(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {value!r}")
    return value


def _check_uint(name: str, value: int, bits: int) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value!r} does not fit u{bits}")
    return value


# --- header and device ID ------------------------------------------------


@frozen
class DeviceId:
    """
    The 12-byte block (AP ID, HW ID, MAC) a device puts in every reply and a
    client quotes back in every request but the broadcast search.
    """

    ap_id: int = field(validator=_uint(32))
    hw_id: int = field(validator=_uint(16))
    mac: bytes = field(validator=_nbytes(6))

    def to_bytes(self) -> bytes:
        """AP ID LE32, HW ID LE16, MAC in wire order."""
        return struct.pack("<IH", self.ap_id, self.hw_id) + self.mac

    @classmethod
    def from_bytes(cls, data: bytes) -> DeviceId:
        """Decode exactly 12 bytes; raise L{DsciError} otherwise."""
        if len(data) != DEVICE_ID_LEN:
            raise DsciError(f"device ID must be 12 bytes, got {len(data)}")
        ap_id, hw_id = struct.unpack_from("<IH", data)
        return cls(ap_id=ap_id, hw_id=hw_id, mac=bytes(data[6:12]))


@frozen
class Header:
    """The 8-byte header that starts every DSCI datagram."""

    opcode: int = field(validator=_uint(8))
    status: int = field(validator=_uint(8))
    length: int = field(validator=_uint(16))
    txid: int = field(validator=_uint(32))

    @property
    def is_reply(self) -> bool:
        """Whether the opcode has the reply bit set."""
        return bool(self.opcode & REPLY_BIT)

    def to_bytes(self) -> bytes:
        """Encode; the length is big-endian unlike almost everything else."""
        return struct.pack(">BBHI", self.opcode, self.status, self.length, self.txid)

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        """Decode the first 8 bytes of C{data}; raise L{DsciError} if short."""
        if len(data) < HEADER_LEN:
            raise DsciError(f"datagram too short for a header: {len(data)} bytes")
        opcode, status, length, txid = struct.unpack_from(">BBHI", data)
        return cls(opcode=opcode, status=status, length=length, txid=txid)


def _read_header(datagram: bytes) -> Header:
    """Decode the header and check the length field against the datagram."""
    header = Header.from_bytes(datagram)
    if header.length != len(datagram):
        raise DsciError(f"length field {header.length} != datagram length {len(datagram)}")
    return header


# --- server side: requests -----------------------------------------------


@frozen
class Request:
    """
    One parsed request.

    @ivar device_id: C{None} only for the 8-byte broadcast search.
    @ivar payload: the bytes after the device ID.
    """

    opcode: int
    txid: int
    device_id: DeviceId | None
    payload: bytes = b""

    def is_addressed_to(self, device_id: DeviceId) -> bool:
        """
        Whether a device with C{device_id} should act on this request: the
        broadcast search is for everyone, anything else only for the device
        it names (reported: real devices ignore a foreign device ID).
        """
        return self.device_id is None or self.device_id == device_id


@frozen
class NetstatRequest(Request):
    """A 0x14 netstat request."""

    max_entries: int = NETSTAT_DEFAULT_MAX_ENTRIES


@frozen
class NetstatPagedRequest(Request):
    """
    A 0x1D paged netstat request.

    @ivar max_entries_raw: bytes 20-21 as sent (MOXA's driver: C{00 FF}).
    @ivar max_entries: those bytes read big-endian (C{00 FF} = 255).  The
        driver writes the two bytes literally, so the intended byte order is
        inferred; either reading is more than one page.
    @ivar start_index: bytes 22-23 little-endian; the driver puts a u8 in
        byte 22 and 0 in byte 23.
    """

    max_entries_raw: bytes = b""
    max_entries: int = NETSTAT_DEFAULT_MAX_ENTRIES
    start_index: int = 0


def parse_request(datagram: bytes) -> Request:
    """
    Parse a datagram received on UDP 4800.

    Returns a L{NetstatRequest} for 0x14, a L{NetstatPagedRequest} for 0x1D
    and a plain L{Request} otherwise.  The status byte of a request is not
    checked (clients send 0; nothing depends on it).

    @raise DsciError: for anything that must be dropped: shorter than the
        header, length field != datagram length, reply bit set, or a
        request other than the 8-byte search without a full device ID.
    """
    datagram = bytes(datagram)
    header = _read_header(datagram)
    if header.is_reply:
        raise DsciError(f"opcode 0x{header.opcode:02x} is a reply; never answer it")
    if header.opcode == OP_SEARCH and len(datagram) == HEADER_LEN:
        return Request(opcode=OP_SEARCH, txid=header.txid, device_id=None)
    if len(datagram) < _DEVID_END:
        raise DsciError(f"request 0x{header.opcode:02x} of {len(datagram)} bytes has no device ID")
    device_id = DeviceId.from_bytes(datagram[HEADER_LEN:_DEVID_END])
    payload = datagram[_DEVID_END:]
    if header.opcode == OP_NETSTAT:
        # Liberal: a missing max-entries field means the driver's 128.
        max_entries = NETSTAT_DEFAULT_MAX_ENTRIES
        if len(payload) >= 2:
            (max_entries,) = struct.unpack_from("<H", payload)
        return NetstatRequest(
            opcode=header.opcode,
            txid=header.txid,
            device_id=device_id,
            payload=payload,
            max_entries=max_entries,
        )
    if header.opcode == OP_NETSTAT_PAGED:
        raw = payload[:2]
        max_entries = struct.unpack(">H", raw)[0] if len(raw) == 2 else NETSTAT_DEFAULT_MAX_ENTRIES
        # Liberal: a missing start index means the first page.
        start = payload[2:4]
        start_index = int.from_bytes(start, "little") if start else 0
        return NetstatPagedRequest(
            opcode=header.opcode,
            txid=header.txid,
            device_id=device_id,
            payload=payload,
            max_entries_raw=raw if len(raw) == 2 else b"",
            max_entries=max_entries,
            start_index=start_index,
        )
    return Request(opcode=header.opcode, txid=header.txid, device_id=device_id, payload=payload)


# --- server side: replies ------------------------------------------------


def encode_reply(
    opcode: int,
    txid: int,
    device_id: DeviceId | None,
    body: bytes = b"",
    status: int = STATUS_OK,
) -> bytes:
    """
    Encode any reply: header, device ID (unless C{None}), then C{body}.

    @param opcode: the request opcode; the reply bit is set here (passing
        the reply opcode works too).
    """
    devid = b"" if device_id is None else device_id.to_bytes()
    length = HEADER_LEN + len(devid) + len(body)
    if length > _MAX_DATAGRAM:
        raise ValueError(f"reply of {length} bytes does not fit the length field")
    header = Header(
        opcode=_check_uint("opcode", opcode, 8) | REPLY_BIT,
        status=status,
        length=length,
        txid=txid,
    )
    return header.to_bytes() + devid + body


def encode_status_reply(
    opcode: int,
    txid: int,
    device_id: DeviceId | None = None,
    status: int = STATUS_UNSUPPORTED,
    *,
    include_device_id: bool = False,
) -> bytes:
    """
    Encode an error reply such as "unsupported opcode" (status 0x04).

    The length of a real device's error reply is unknown (header only, or
    header + device ID).  We send the header only, 8 bytes (inferred: it
    leaks nothing and MOXA's driver drops any non-zero status anyway);
    C{include_device_id=True} appends the device ID instead, should a
    capture show that tools want it.
    """
    if status == STATUS_OK:
        raise ValueError("a status reply needs a non-zero status")
    return encode_reply(opcode, txid, device_id if include_device_id else None, status=status)


def encode_search_reply(txid: int, device_id: DeviceId, ipv4: bytes) -> bytes:
    """Encode the 24-byte 0x81 search reply: header, device ID, IPv4."""
    return encode_reply(OP_SEARCH, txid, device_id, _check_bytes("ipv4", ipv4, 4))


def encode_devid_only_reply(opcode: int, txid: int, device_id: DeviceId) -> bytes:
    """Encode a 20-byte reply that carries just the device ID (e.g. 0x82)."""
    return encode_reply(opcode, txid, device_id)


def _string_field(text: str, size: int = NAME_FIELD_LEN) -> bytes:
    """
    ASCII (non-ASCII replaced by C{?}), cut to C{size - 1} bytes so a NUL
    always fits, then zero-filled: real devices leak memory after the NUL.
    """
    raw = text.encode("ascii", errors="replace")[: size - 1]
    return raw.ljust(size, b"\x00")


def _read_string(data: bytes) -> str:
    """Text up to the first NUL; whatever follows may be garbage."""
    return data.split(b"\x00", 1)[0].decode("ascii", errors="replace")


def encode_name_reply(txid: int, device_id: DeviceId, name: str) -> bytes:
    """Encode the 60-byte 0x90 server-name reply."""
    return encode_reply(OP_NAME, txid, device_id, _string_field(name))


def encode_firmware_version(version: str) -> bytes:
    """
    Encode a version string as the 4 bytes of 0x96 and of the Auto IP Report.

    The value is a u32 LE with the major number in the top byte, then
    minor, then a third number, low byte 0 (0x96 byte 23 = major).  Each
    number is shown as the hex digits of its byte ("hex digits shown as
    decimal text"), so C{"1.1.31"} is C{00 31 01 01} and C{"2.10"} is
    C{00 00 10 02}.  A fourth number, if given, lands in the low byte.
    """
    parts = version.split(".")
    if not 1 <= len(parts) <= 4:
        raise ValueError(f"firmware version {version!r} needs 1 to 4 numbers")
    values = []
    for part in parts:
        if not 1 <= len(part) <= 2 or any(c not in "0123456789abcdefABCDEF" for c in part):
            raise ValueError(f"firmware version {version!r}: bad number {part!r}")
        values.append(int(part, 16))
    values += [0] * (4 - len(values))
    major, minor, third, fourth = values
    return bytes([fourth, third, minor, major])


def decode_firmware_version(data: bytes) -> str:
    """
    Decode the 4 bytes written by L{encode_firmware_version}: always
    major.minor, then the third and fourth numbers only when needed.
    """
    if len(data) != 4:
        raise ValueError(f"firmware version must be 4 bytes, got {len(data)}")
    fourth, third, minor, major = data
    parts = [major, minor]
    if third or fourth:
        parts.append(third)
    if fourth:
        parts.append(fourth)
    return ".".join(f"{p:x}" for p in parts)


def encode_kernel_info_reply(
    txid: int,
    device_id: DeviceId,
    firmware: str,
    serial_number: int,
    port_count: int,
    unknown24: bytes = _KERNEL_UNKNOWN24,
    unknown32: bytes = _KERNEL_UNKNOWN32,
    unknown34: int = 0,
) -> bytes:
    """
    Encode the 36-byte 0x96 kernel-info reply.

    Bytes 34-35 form MOXA's driver's "DSCI version" (u16 LE): non-zero
    makes it poll with 0x1D, which any C{port_count} >= 1 ensures.
    """
    body = (
        encode_firmware_version(firmware)
        + _check_bytes("unknown24", unknown24, 4)
        + struct.pack("<H", _check_uint("serial_number", serial_number, 16))
        + b"\x00\x00"
        + _check_bytes("unknown32", unknown32, 2)
        + bytes([_check_uint("unknown34", unknown34, 8), _check_uint("port_count", port_count, 8)])
    )
    return encode_reply(OP_KERNEL_INFO, txid, device_id, body)


@frozen
class NetstatEntry:
    """One 16-byte socket entry of a 0x94 / 0x9D netstat reply."""

    remote_ip: bytes = field(validator=_nbytes(4))
    local_ip: bytes = field(validator=_nbytes(4))
    remote_port: int = field(validator=_uint(16))
    local_port: int = field(validator=_uint(16))
    sock_type: int = field(validator=_uint(8))
    state: int = field(validator=_uint(8))
    serial_port: int = field(default=0, validator=_uint(8))

    def to_bytes(self) -> bytes:
        """Encode; the ports are little-endian (verified on an NPort 6250)."""
        return (
            self.remote_ip
            + self.local_ip
            + struct.pack(
                "<HHBBBx",
                self.remote_port,
                self.local_port,
                self.sock_type,
                self.state,
                self.serial_port,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NetstatEntry:
        """Decode exactly 16 bytes; the reserved byte is ignored."""
        if len(data) != NETSTAT_ENTRY_LEN:
            raise DsciError(f"netstat entry must be 16 bytes, got {len(data)}")
        remote_port, local_port, sock_type, state, serial_port = struct.unpack_from(
            "<HHBBBx", data, 8
        )
        return cls(
            remote_ip=bytes(data[0:4]),
            local_ip=bytes(data[4:8]),
            remote_port=remote_port,
            local_port=local_port,
            sock_type=sock_type,
            state=state,
            serial_port=serial_port,
        )


def _netstat_body(entries: Sequence[NetstatEntry], next_index: int) -> bytes:
    return struct.pack("<HH", len(entries), next_index) + b"".join(e.to_bytes() for e in entries)


def encode_netstat_reply(
    txid: int,
    device_id: DeviceId,
    entries: Sequence[NetstatEntry],
    max_entries: int = NETSTAT_DEFAULT_MAX_ENTRIES,
) -> bytes:
    """
    Encode a 0x94 netstat reply of 24 + 16 * n bytes.

    n is the smallest of C{len(entries)}, the client's C{max_entries} and
    L{NETSTAT_MAX_ENTRIES} (what MOXA's driver can read).  Bytes 22-23 are
    0 as observed.
    """
    limit = min(max(max_entries, 0), NETSTAT_MAX_ENTRIES)
    shown = tuple(entries)[:limit]
    return encode_reply(OP_NETSTAT, txid, device_id, _netstat_body(shown, 0))


def encode_netstat_paged_reply(
    txid: int,
    device_id: DeviceId,
    entries: Sequence[NetstatEntry],
    start_index: int,
    max_entries: int = NETSTAT_PAGE_SIZE,
) -> bytes:
    """
    Encode one page of a 0x9D paged netstat reply.

    The page holds entries from C{start_index} on, at most
    L{NETSTAT_PAGE_SIZE} and at most C{max_entries} (0 is read as "no
    preference", inferred, so paging always makes progress).  Bytes 22-23
    carry the index of the next page, or 0 when this is the last one.

    MOXA's driver sends back only the low byte of the next index, so lists
    longer than 255 entries cannot be paged through by it.
    """
    all_entries = tuple(entries)
    limit = NETSTAT_PAGE_SIZE if max_entries <= 0 else min(max_entries, NETSTAT_PAGE_SIZE)
    start = max(start_index, 0)
    page = all_entries[start : start + limit]
    end = start + len(page)
    next_index = end if end < len(all_entries) else 0
    _check_uint("next index", next_index, 16)
    return encode_reply(OP_NETSTAT_PAGED, txid, device_id, _netstat_body(page, next_index))


_ADDRESS_OPCODES = frozenset({OP_IP, OP_NETMASK, OP_GATEWAY})


def encode_address_reply(opcode: int, txid: int, device_id: DeviceId, ipv4: bytes) -> bytes:
    """Encode a 24-byte 0xA1 (IP), 0xA2 (netmask) or 0xA3 (gateway) reply."""
    if opcode & ~REPLY_BIT not in _ADDRESS_OPCODES:
        raise ValueError(f"opcode 0x{opcode:02x} is not an address request")
    return encode_reply(opcode, txid, device_id, _check_bytes("ipv4", ipv4, 4))


def encode_network_config_reply(
    txid: int,
    device_id: DeviceId,
    ip: bytes,
    netmask: bytes,
    gateway: bytes,
    unknown8: bytes = _NETCONFIG_UNKNOWN8,
) -> bytes:
    """Encode the 40-byte 0xA6 reply: 8 unknown bytes, IP, netmask, gateway."""
    body = (
        _check_bytes("unknown8", unknown8, 8)
        + _check_bytes("ip", ip, 4)
        + _check_bytes("netmask", netmask, 4)
        + _check_bytes("gateway", gateway, 4)
    )
    return encode_reply(OP_NETWORK_CONFIG, txid, device_id, body)


def encode_dns_reply(txid: int, device_id: DeviceId, dns1: bytes, dns2: bytes) -> bytes:
    """Encode the 28-byte 0xA7 reply (layout reported): two DNS servers."""
    body = _check_bytes("dns1", dns1, 4) + _check_bytes("dns2", dns2, 4)
    return encode_reply(OP_DNS, txid, device_id, body)


def encode_datetime_reply(txid: int, device_id: DeviceId, datetime: _dt.datetime) -> bytes:
    """
    Encode the 36-byte 0x9A date/time reply (field layout reported, not
    verified): u16 LE year - 1900, month - 1, an unknown byte sent as 0,
    day, hour, minute, second, then zeros up to 16 bytes.
    """
    body = struct.pack(
        "<HBBBBBB8x",
        _check_uint("year - 1900", datetime.year - 1900, 16),
        datetime.month - 1,
        0,
        datetime.day,
        datetime.hour,
        datetime.minute,
        datetime.second,
    )
    return encode_reply(OP_DATETIME, txid, device_id, body)


def encode_time_server_reply(txid: int, device_id: DeviceId, name: str) -> bytes:
    """Encode the 60-byte 0x9B reply: a 40-byte time-server string."""
    return encode_reply(OP_TIME_SERVER, txid, device_id, _string_field(name))


def encode_auto_report_settings_reply(
    txid: int, device_id: DeviceId, host: str, port: int, period: int
) -> bytes:
    """
    Encode the 64-byte 0xA5 reply (layout reported): 40-byte "report to"
    string, u16 LE port, u16 LE period.
    """
    body = _string_field(host) + struct.pack(
        "<HH", _check_uint("port", port, 16), _check_uint("period", period, 16)
    )
    return encode_reply(OP_AUTO_REPORT, txid, device_id, body)


# --- client side: requests -----------------------------------------------


def encode_request(
    opcode: int, txid: int, device_id: DeviceId | None, payload: bytes = b""
) -> bytes:
    """Encode any request: header (status 0), device ID unless C{None}, payload."""
    devid = b"" if device_id is None else device_id.to_bytes()
    length = HEADER_LEN + len(devid) + len(payload)
    if length > _MAX_DATAGRAM:
        raise ValueError(f"request of {length} bytes does not fit the length field")
    header = Header(opcode=opcode, status=0, length=length, txid=txid)
    return header.to_bytes() + devid + payload


def encode_search_request(txid: int = 0, device_id: DeviceId | None = None) -> bytes:
    """Encode the 8-byte broadcast search, or the 20-byte targeted one."""
    return encode_request(OP_SEARCH, txid, device_id)


def encode_netstat_request(
    txid: int, device_id: DeviceId, max_entries: int = NETSTAT_DEFAULT_MAX_ENTRIES
) -> bytes:
    """Encode a 22-byte 0x14 netstat request (MOXA's driver: C{80 00})."""
    payload = struct.pack("<H", _check_uint("max_entries", max_entries, 16))
    return encode_request(OP_NETSTAT, txid, device_id, payload)


def encode_netstat_paged_request(txid: int, device_id: DeviceId, start_index: int = 0) -> bytes:
    """Encode a 24-byte 0x1D request as MOXA's driver does: C{00 FF <start> 00}."""
    payload = _PAGED_MAX_ENTRIES_RAW + struct.pack(
        "<H", _check_uint("start_index", start_index, 16)
    )
    return encode_request(OP_NETSTAT_PAGED, txid, device_id, payload)


def encode_network_config_request(txid: int, device_id: DeviceId) -> bytes:
    """Encode a 22-byte 0x26 request with the C{00 02} DSU sends."""
    return encode_request(OP_NETWORK_CONFIG, txid, device_id, _NETCONFIG_REQUEST_PAYLOAD)


# --- client side: replies ------------------------------------------------


@frozen
class Reply:
    """
    One parsed successful reply.

    @ivar opcode: the reply opcode (reply bit set).
    @ivar payload: the bytes after the device ID.
    """

    opcode: int
    status: int
    txid: int
    device_id: DeviceId
    payload: bytes

    @property
    def request_opcode(self) -> int:
        """The opcode of the request this answers."""
        return self.opcode & ~REPLY_BIT


def parse_reply(datagram: bytes) -> Reply:
    """
    Parse a datagram received from a device.

    @raise DsciStatusError: for a well-formed reply with a non-zero status.
    @raise DsciError: for a bad header, a request, or an OK reply without a
        device ID.
    """
    datagram = bytes(datagram)
    header = _read_header(datagram)
    if not header.is_reply:
        raise DsciError(f"opcode 0x{header.opcode:02x} is not a reply")
    if header.status != STATUS_OK:
        raise DsciStatusError(header.opcode, header.status)
    if len(datagram) < _DEVID_END:
        raise DsciError(f"reply of {len(datagram)} bytes has no device ID")
    return Reply(
        opcode=header.opcode,
        status=header.status,
        txid=header.txid,
        device_id=DeviceId.from_bytes(datagram[HEADER_LEN:_DEVID_END]),
        payload=datagram[_DEVID_END:],
    )


def _expect(reply: Reply | bytes, opcodes: frozenset[int], minimum: int) -> Reply:
    """Parse if needed, check the request opcode and a minimum payload size."""
    if not isinstance(reply, Reply):
        reply = parse_reply(reply)
    if reply.request_opcode not in opcodes:
        raise DsciError(f"unexpected reply opcode 0x{reply.opcode:02x}")
    if len(reply.payload) < minimum:
        raise DsciError(
            f"reply 0x{reply.opcode:02x} payload is {len(reply.payload)} bytes, need {minimum}"
        )
    return reply


@frozen
class SearchReply:
    """A decoded 0x81 search reply."""

    txid: int
    device_id: DeviceId
    ipv4: bytes


def decode_search_reply(reply: Reply | bytes) -> SearchReply:
    """
    Decode a 0x81 reply.  MOXA's driver also accepts a 40-byte variant
    whose extra 16 bytes are unknown; the IPv4 is taken from bytes 20-23 of
    either.
    """
    r = _expect(reply, frozenset({OP_SEARCH}), 4)
    return SearchReply(txid=r.txid, device_id=r.device_id, ipv4=r.payload[:4])


def decode_name_reply(reply: Reply | bytes) -> str:
    """Decode a 0x90 reply: the name up to the first NUL."""
    return _read_string(_expect(reply, frozenset({OP_NAME}), 0).payload)


@frozen
class KernelInfo:
    """
    A decoded 0x96 reply.

    @ivar dsci_version: the u16 LE at bytes 34-35, as MOXA's driver reads it.
    """

    firmware: str
    serial_number: int
    port_count: int
    dsci_version: int


def decode_kernel_info_reply(reply: Reply | bytes) -> KernelInfo:
    """Decode a 0x96 reply (36 bytes)."""
    p = _expect(reply, frozenset({OP_KERNEL_INFO}), 16).payload
    (serial_number,) = struct.unpack_from("<H", p, 8)
    (dsci_version,) = struct.unpack_from("<H", p, 14)
    return KernelInfo(
        firmware=decode_firmware_version(p[0:4]),
        serial_number=serial_number,
        port_count=p[15],
        dsci_version=dsci_version,
    )


@frozen
class NetstatReply:
    """A decoded 0x94 or 0x9D reply; C{next_index} is 0 on the last page."""

    count: int
    next_index: int
    entries: tuple[NetstatEntry, ...]


def decode_netstat_reply(reply: Reply | bytes) -> NetstatReply:
    """Decode a 0x94 or 0x9D reply; the count must fit the datagram."""
    p = _expect(reply, frozenset({OP_NETSTAT, OP_NETSTAT_PAGED}), 4).payload
    count, next_index = struct.unpack_from("<HH", p)
    if 4 + NETSTAT_ENTRY_LEN * count > len(p):
        raise DsciError(f"netstat count {count} does not fit {len(p)} payload bytes")
    entries = tuple(
        NetstatEntry.from_bytes(p[i : i + NETSTAT_ENTRY_LEN])
        for i in range(4, 4 + NETSTAT_ENTRY_LEN * count, NETSTAT_ENTRY_LEN)
    )
    return NetstatReply(count=count, next_index=next_index, entries=entries)


@frozen
class NetworkConfig:
    """A decoded 0xA6 reply (the 8 leading unknown bytes are skipped)."""

    ip: bytes
    netmask: bytes
    gateway: bytes


def decode_network_config_reply(reply: Reply | bytes) -> NetworkConfig:
    """Decode a 0xA6 reply (40 bytes)."""
    p = _expect(reply, frozenset({OP_NETWORK_CONFIG}), 20).payload
    return NetworkConfig(ip=p[8:12], netmask=p[12:16], gateway=p[16:20])


def decode_address_reply(reply: Reply | bytes) -> bytes:
    """Decode a 0xA1, 0xA2 or 0xA3 reply: the 4-byte address."""
    return _expect(reply, _ADDRESS_OPCODES, 4).payload[:4]


def decode_dns_reply(reply: Reply | bytes) -> tuple[bytes, bytes]:
    """Decode a 0xA7 reply: the two DNS servers."""
    p = _expect(reply, frozenset({OP_DNS}), 8).payload
    return p[0:4], p[4:8]


def decode_datetime_reply(reply: Reply | bytes) -> _dt.datetime:
    """Decode a 0x9A reply as a naive datetime (layout reported)."""
    p = _expect(reply, frozenset({OP_DATETIME}), 8).payload
    year, month, _unknown, day, hour, minute, second = struct.unpack_from("<HBBBBBB", p)
    try:
        return _dt.datetime(year + 1900, month + 1, day, hour, minute, second)
    except ValueError as e:
        raise DsciError(f"bad date/time in 0x9A reply: {e}") from e


def decode_time_server_reply(reply: Reply | bytes) -> str:
    """Decode a 0x9B reply: the time server up to the first NUL."""
    return _read_string(_expect(reply, frozenset({OP_TIME_SERVER}), 0).payload)


@frozen
class AutoReportSettings:
    """A decoded 0xA5 reply."""

    host: str
    port: int
    period: int


def decode_auto_report_settings_reply(reply: Reply | bytes) -> AutoReportSettings:
    """Decode a 0xA5 reply (64 bytes)."""
    p = _expect(reply, frozenset({OP_AUTO_REPORT}), NAME_FIELD_LEN + 4).payload
    port, period = struct.unpack_from("<HH", p, NAME_FIELD_LEN)
    return AutoReportSettings(host=_read_string(p[:NAME_FIELD_LEN]), port=port, period=period)


# --- Auto IP Report ------------------------------------------------------

IpByteOrder = Literal["network", "little"]


def _ip_order(ip: bytes, order: IpByteOrder) -> bytes:
    # The manuals say "little-endian DWORD" for items 5-7 without an
    # example; whether that means reversed bytes is unverified.
    if order == "network":
        return ip
    if order == "little":
        return ip[::-1]
    raise ValueError(f"ip_byte_order must be 'network' or 'little', not {order!r}")


@frozen
class AutoReport:
    """A decoded Auto IP Report datagram; addresses in network order."""

    name: str
    hw_id: int
    mac: bytes
    serial_number: int
    ip: bytes
    netmask: bytes
    gateway: bytes
    firmware: str
    ap_id: int


def encode_auto_report(
    name: str,
    hw_id: int,
    mac: bytes,
    serial_number: int,
    ip: bytes,
    netmask: bytes,
    gateway: bytes,
    firmware: str,
    ap_id: int,
    *,
    ip_byte_order: IpByteOrder = "network",
) -> bytes:
    """
    Encode an Auto IP Report: C{MOXA} then items 1-9 {id u8, len u8, data}.

    The firmware item uses the same bytes as 0x96 (u32 LE, major in the top
    byte: 4.3.1 = 0x04030100).  Addresses are sent in network order unless
    C{ip_byte_order="little"}.  The name is ASCII, cut to 255 bytes.
    """
    items = [
        (AR_NAME, name.encode("ascii", errors="replace")[:255]),
        (AR_HW_ID, struct.pack("<H", _check_uint("hw_id", hw_id, 16))),
        (AR_MAC, _check_bytes("mac", mac, 6)),
        (AR_SERIAL_NUMBER, struct.pack("<I", _check_uint("serial_number", serial_number, 32))),
        (AR_IP, _ip_order(_check_bytes("ip", ip, 4), ip_byte_order)),
        (AR_NETMASK, _ip_order(_check_bytes("netmask", netmask, 4), ip_byte_order)),
        (AR_GATEWAY, _ip_order(_check_bytes("gateway", gateway, 4), ip_byte_order)),
        (AR_FIRMWARE, encode_firmware_version(firmware)),
        (AR_AP_ID, struct.pack("<I", _check_uint("ap_id", ap_id, 32))),
    ]
    return AUTO_REPORT_MAGIC + b"".join(
        bytes([item_id, len(data)]) + data for item_id, data in items
    )


def parse_auto_report(data: bytes) -> dict[int, bytes]:
    """
    Split an Auto IP Report into {item id: raw data}, keeping unknown ids;
    a repeated id keeps its last value.  The magic is matched ignoring case
    (some manuals write C{Moxa}).
    """
    data = bytes(data)
    if data[:4].upper() != AUTO_REPORT_MAGIC:
        raise DsciError("auto report does not start with MOXA")
    items: dict[int, bytes] = {}
    pos = 4
    while pos < len(data):
        if pos + 2 > len(data):
            raise DsciError(f"auto report item header cut at offset {pos}")
        item_id, size = data[pos], data[pos + 1]
        pos += 2
        if pos + size > len(data):
            raise DsciError(f"auto report item {item_id} cut at offset {pos}")
        items[item_id] = data[pos : pos + size]
        pos += size
    return items


def decode_auto_report(data: bytes, *, ip_byte_order: IpByteOrder = "network") -> AutoReport:
    """Decode an Auto IP Report; every item 1-9 must be present and sized."""
    items = parse_auto_report(data)

    def item(item_id: int, size: int | None) -> bytes:
        if item_id not in items:
            raise DsciError(f"auto report lacks item {item_id}")
        value = items[item_id]
        if size is not None and len(value) != size:
            raise DsciError(f"auto report item {item_id} is {len(value)} bytes, not {size}")
        return value

    return AutoReport(
        name=item(AR_NAME, None).decode("ascii", errors="replace"),
        hw_id=struct.unpack("<H", item(AR_HW_ID, 2))[0],
        mac=item(AR_MAC, 6),
        serial_number=struct.unpack("<I", item(AR_SERIAL_NUMBER, 4))[0],
        ip=_ip_order(item(AR_IP, 4), ip_byte_order),
        netmask=_ip_order(item(AR_NETMASK, 4), ip_byte_order),
        gateway=_ip_order(item(AR_GATEWAY, 4), ip_byte_order),
        firmware=decode_firmware_version(item(AR_FIRMWARE, 4)),
        ap_id=struct.unpack("<I", item(AR_AP_ID, 4))[0],
    )
