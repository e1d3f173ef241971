# -*- test-case-name: tests.test_syslog -*-
"""
RFC 5424 syslog messages, sans-IO: values in, bytes out (time passed in).

  <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG

  - PRI = facility * 8 + severity (RFC 5424 §6.2.1);
  - TIMESTAMP in UTC with milliseconds, C{2026-12-02T14:17:01.123Z};
  - HOSTNAME, APP-NAME, PROCID, MSGID: printable US-ASCII without spaces,
    cut to their RFC lengths (255, 48, 128, 32); empty = C{-} (NILVALUE);
  - STRUCTURED-DATA: only IANA-registered SD-IDs (C{origin}), since the
    project has no Private Enterprise Number for its own; parameter values
    escape C{"}, C{\\} and C{]};
  - MSG: UTF-8 text without a BOM (MSG-ANY), control characters replaced.

Transports: one message per UDP datagram (RFC 5426; L{for_udp} cuts to
2048 bytes) or octet-counted frames over TCP (RFC 6587 §3.4.1: C{LEN SP MSG},
L{for_tcp}).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence

import attrs

__all__ = ["Facility", "Severity", "SyslogMessage", "for_tcp", "for_udp", "format_message"]

MAX_UDP = 2048


class Severity(enum.IntEnum):
    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


class Facility(enum.IntEnum):
    KERN = 0
    USER = 1
    DAEMON = 3
    AUTH = 4
    LOCAL0 = 16
    LOCAL7 = 23


@attrs.frozen
class SyslogMessage:
    """One message; C{when} is POSIX time (the caller's clock)."""

    when: float
    severity: int
    message: str
    facility: int = Facility.DAEMON
    hostname: str = ""
    app_name: str = "nport-twisted"
    procid: str = ""
    msgid: str = ""
    structured: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.facility <= 23:
            raise ValueError("facility must be from 0 to 23")
        if not 0 <= self.severity <= 7:
            raise ValueError("severity must be from 0 to 7")


def _header_field(text: str, limit: int) -> str:
    clean = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return clean or "-"


def _sd_name(text: str) -> str:
    # SD-NAME: printable US-ASCII except '=', SP, ']', '"'; at most 32.
    clean = "".join(c for c in text if 33 <= ord(c) <= 126 and c not in '= ]"')[:32]
    return clean or "x"


def _sd_value(text: str) -> str:
    text = "".join(c if ord(c) >= 0x20 and c != "\x7f" else " " for c in text)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(when: float) -> str:
    t = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def format_message(m: SyslogMessage) -> bytes:
    """The RFC 5424 text of C{m} (no transport framing)."""
    pri = m.facility * 8 + m.severity
    if m.structured:
        sd = "".join(
            "[" + _sd_name(sd_id) + "".join(f' {_sd_name(k)}="{_sd_value(v)}"' for k, v in params)
            + "]"
            for sd_id, params in m.structured)
    else:
        sd = "-"
    header = " ".join((
        f"<{pri}>1",
        _timestamp(m.when),
        _header_field(m.hostname, 255),
        _header_field(m.app_name, 48),
        _header_field(m.procid, 128),
        _header_field(m.msgid, 32),
        sd,
    ))
    text = "".join(c if ord(c) >= 0x20 and c != "\x7f" else " " for c in m.message)
    return (header + (" " + text if text else "")).encode("utf-8")


def for_udp(m: SyslogMessage, limit: int = MAX_UDP) -> bytes:
    """One datagram, cut to C{limit} bytes without splitting a UTF-8 character."""
    data = format_message(m)
    if len(data) <= limit:
        return data
    cut = data[:limit]
    return cut.decode("utf-8", "ignore").encode("utf-8")


def for_tcp(m: SyslogMessage) -> bytes:
    """One octet-counted frame (RFC 6587 §3.4.1)."""
    data = format_message(m)
    return str(len(data)).encode() + b" " + data
