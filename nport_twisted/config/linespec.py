# -*- test-case-name: tests.test_linespec -*-
"""
The ser2net-style short forms of the command line, and the one-line text
forms of settings used in log lines.

C{--ports} takes, per serial port (comma separated, in NPort port order)::

    [TCPPORT=]DEVICE[@LINE]

    /dev/ttyUSB0                       NPort defaults (115200 8N1, no flow control)
    /dev/ttyUSB0@9600-8E1              9600 baud, 8 data bits, even parity, 1 stop bit
    /dev/ttyUSB0@9600n81               the same line in ser2net's spelling (parity first)
    /dev/ttyUSB0@19200-7O2-rtscts      with RTS/CTS flow control (or xonxoff, dtrdsr, none)
    5000=/dev/ttyUSB0@9600             serve it on TCP port 5000

C{LINE} is C{BAUD[-BITS PARITY STOP][-FLOW]}: parity N, E, O, M or S; stop
bits 1, 1.5 or 2.  The TCP port is the port the operating mode serves data
on (Real COM data port, TCP Server/RFC 2217 local TCP port, UDP local port).
Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from nport_twisted.config.settings import FlowControl, OpMode, Parity, SerialSettings

__all__ = ["PORT_FIELDS", "PortSpec", "describe_line", "parse_line", "parse_port_specs"]

_FLOWS = {
    "none": FlowControl.NONE,
    "rtscts": FlowControl.RTS_CTS,
    "rts-cts": FlowControl.RTS_CTS,
    "xonxoff": FlowControl.XON_XOFF,
    "xon-xoff": FlowControl.XON_XOFF,
    "dtrdsr": FlowControl.DTR_DSR,
    "dtr-dsr": FlowControl.DTR_DSR,
    "dsrdtr": FlowControl.DTR_DSR,
}
_FLOW_TEXT = {FlowControl.NONE: "", FlowControl.RTS_CTS: "-rtscts",
              FlowControl.XON_XOFF: "-xonxoff", FlowControl.DTR_DSR: "-dtrdsr"}

# 9600-8E1 (ours), 9600n81 (ser2net: baud, parity, data bits, stop bits)
_OURS = re.compile(r"^(\d+)(?:-([5-8])([NOEMS])(1\.5|1|2))?$", re.IGNORECASE)
_SER2NET = re.compile(r"^(\d+)([NOEMS])([5-8])(1|2)$", re.IGNORECASE)

#: The setting an explicit TCP port fills, by the mode the port starts in.
PORT_FIELDS: dict[OpMode, str] = {
    OpMode.REAL_COM: "data_port",
    OpMode.TCP_SERVER: "local_tcp_port",
    OpMode.RFC2217: "local_tcp_port",
    OpMode.PAIR_SLAVE: "local_tcp_port",
    OpMode.REVERSE_TELNET: "local_tcp_port",
    OpMode.ETHERNET_MODEM: "local_tcp_port",
    OpMode.UDP: "udp_local_port",
}


@attrs.frozen
class PortSpec:
    """One entry of C{--ports}."""

    device: str
    line: tuple[tuple[str, Any], ...] = ()  # SerialSettings fields given, in order
    tcp_port: int | None = None
    text: str = ""  # as typed, for messages

    @property
    def line_changes(self) -> dict[str, Any]:
        return dict(self.line)


def parse_line(text: str) -> dict[str, Any]:
    """
    The L{SerialSettings} fields C{text} (C{9600-8E1-rtscts}, C{9600n81})
    sets, checked against the settings' own rules.

    @raise ValueError: naming what is wrong.
    """
    words = text.strip().split("-")
    changes: dict[str, Any] = {}
    flow = None
    if len(words) > 1 and words[-1].lower() in _FLOWS:
        flow = _FLOWS[words.pop().lower()]
        # "9600-8N1-rts-cts": the two halves of a dashed flow name
    elif len(words) > 2 and "-".join(words[-2:]).lower() in _FLOWS:
        flow = _FLOWS["-".join(words[-2:]).lower()]
        words = words[:-2]
    core = "-".join(words)
    m = _OURS.match(core)
    if m:
        changes["baudrate"] = int(m.group(1))
        if m.group(2):
            changes["bytesize"] = int(m.group(2))
            changes["parity"] = Parity(m.group(3).upper())
            changes["stopbits"] = float(m.group(4)) if m.group(4) == "1.5" else int(m.group(4))
    else:
        m = _SER2NET.match(core)
        if not m:
            raise ValueError(f"line settings {text!r}: expected BAUD[-BITS PARITY STOP][-FLOW], "
                             "e.g. 9600-8E1, 115200-8N1-rtscts or ser2net's 9600n81")
        changes.update(baudrate=int(m.group(1)), parity=Parity(m.group(2).upper()),
                       bytesize=int(m.group(3)), stopbits=int(m.group(4)))
    if flow is not None:
        changes["flow_control"] = flow
    try:
        SerialSettings(**changes)
    except (ValueError, TypeError) as e:
        raise ValueError(f"line settings {text!r}: {e.args[0] if e.args else e}") from None
    return changes


def _parse_entry(entry: str) -> PortSpec:
    text = entry.strip()
    rest = text
    tcp_port = None
    head, sep, tail = text.partition("=")
    if sep:
        if not head.strip().isdecimal() or not 0 < int(head) < 65536:
            raise ValueError(f"{text!r}: the part before '=' is the TCP port, 1-65535")
        tcp_port, rest = int(head), tail.strip()
    device, sep, line = rest.partition("@")
    device = device.strip()
    if not device:
        raise ValueError(f"{text!r}: no serial device (e.g. /dev/ttyUSB0)")
    changes = parse_line(line) if sep else {}
    return PortSpec(device=device, line=tuple(changes.items()), tcp_port=tcp_port, text=text)


def parse_port_specs(text: str) -> list[PortSpec]:
    """
    The entries of C{--ports}; empty entries (a trailing comma) are skipped.

    @raise ValueError: naming the entry at fault.
    """
    return [_parse_entry(entry) for entry in text.split(",") if entry.strip()]


def describe_line(settings: SerialSettings) -> str:
    """The line settings in C{--ports} form: C{9600-8E1}, C{115200-8N1-rtscts}."""
    return (f"{settings.baudrate}-{settings.bytesize}{settings.parity.value}"
            f"{settings.stopbits:g}{_FLOW_TEXT.get(settings.flow_control, '')}")
