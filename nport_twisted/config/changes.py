# -*- test-case-name: tests.test_linespec -*-
"""
Old -> new text of a settings change, for the log lines every change of a
port's serial or operating settings writes.  Pure.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = ["describe_changes"]

#: Fields never shown (secrets).
_HIDDEN = {"hash", "mail_password"}


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if value is None or value == "":
        return "-"
    if attrs.has(type(value)):  # a UDP destination range
        return ":".join(_text(v) for v in attrs.astuple(value, recurse=False))
    return str(value)


def describe_changes(old: Any, new: Any) -> str:
    """
    C{"baudrate 9600 -> 115200, parity N -> E"}: the fields of two values of
    the same attrs class that differ, in field order; "" when none does.
    """
    parts = []
    for field in attrs.fields(type(old)):
        if field.name in _HIDDEN:
            continue
        a, b = getattr(old, field.name), getattr(new, field.name)
        if a != b:
            parts.append(f"{field.name} {_text(a)} -> {_text(b)}")
    return ", ".join(parts)
