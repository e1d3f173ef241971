# -*- test-case-name: tests.test_mib -*-
"""
A read-only MIB tree: object identifiers in lexicographic order, GET,
GETNEXT and GETBULK semantics (RFC 3416 §4.2), independent of any SNMP
library.  Pure: the values come from functions the caller registers, read
when a request needs them; no sockets, no clock, no BER.

  - An OID is a tuple of non-negative ints.  Python compares tuples element
    by element with a prefix first, which is exactly SNMP's lexicographic
    order (1.3.6.1 < 1.3.6.1.2 < 1.3.6.2).
  - A L{Subtree} owns every OID under its root.  Its entries are computed
    at most once per request (L{View}), so a GETBULK of 50 variables or a
    table row reads the live state once, consistently.
  - GET answers L{NO_SUCH_OBJECT} when no registered object covers the
    name, L{NO_SUCH_INSTANCE} when the object exists but not that row;
    GETNEXT/GETBULK past the last entry answer L{END_OF_MIB_VIEW}.

Values are L{Value}s with an SMI type name; the SNMP layer maps them to its
library's types.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

import attrs

OID = tuple[int, ...]

__all__ = [
    "END_OF_MIB_VIEW",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "Mib",
    "OID",
    "SnmpStats",
    "Subtree",
    "Value",
    "View",
    "oid",
    "oid_text",
    "scalars",
    "table",
]


class Syntax(str, enum.Enum):
    """The SMI types this agent serves."""

    INTEGER = "integer"
    OCTETS = "octets"
    OID = "oid"
    IPADDRESS = "ipaddress"
    COUNTER32 = "counter32"
    GAUGE32 = "gauge32"
    TIMETICKS = "timeticks"
    COUNTER64 = "counter64"


_LIMITS: dict[Syntax, tuple[int, int]] = {
    Syntax.INTEGER: (-(2**31), 2**31 - 1),
    Syntax.COUNTER32: (0, 2**32 - 1),
    Syntax.GAUGE32: (0, 2**32 - 1),
    Syntax.TIMETICKS: (0, 2**32 - 1),
    Syntax.COUNTER64: (0, 2**64 - 1),
}


@attrs.frozen
class Value:
    """One typed value.  Use the constructors below: they clamp or wrap as SMI requires."""

    syntax: Syntax
    value: Any  # int, bytes or OID

    @classmethod
    def integer(cls, v: int) -> Value:
        low, high = _LIMITS[Syntax.INTEGER]
        return cls(Syntax.INTEGER, max(low, min(high, int(v))))

    @classmethod
    def octets(cls, v: str | bytes) -> Value:
        return cls(Syntax.OCTETS, v.encode("utf-8") if isinstance(v, str) else bytes(v))

    @classmethod
    def object_id(cls, v: OID) -> Value:
        return cls(Syntax.OID, tuple(v))

    @classmethod
    def ip(cls, v: str) -> Value:
        parts = [int(p) for p in v.split(".")] if v else [0, 0, 0, 0]
        return cls(Syntax.IPADDRESS, bytes(parts))

    @classmethod
    def counter32(cls, v: int) -> Value:
        """A Counter32 wraps at 2**32 (RFC 2578 §7.1.6)."""
        return cls(Syntax.COUNTER32, int(v) % 2**32)

    @classmethod
    def counter64(cls, v: int) -> Value:
        return cls(Syntax.COUNTER64, int(v) % 2**64)

    @classmethod
    def gauge32(cls, v: int) -> Value:
        """A Gauge32 sticks at its maximum (RFC 2578 §7.1.7)."""
        return cls(Syntax.GAUGE32, max(0, min(2**32 - 1, int(v))))

    @classmethod
    def timeticks(cls, seconds: float) -> Value:
        """Hundredths of a second, wrapping at 2**32 (about 497 days)."""
        return cls(Syntax.TIMETICKS, int(max(0.0, seconds) * 100) % 2**32)


@attrs.define
class SnmpStats:
    """The SNMPv2-MIB snmp group counters (RFC 3418) this agent keeps."""

    in_pkts: int = 0
    out_pkts: int = 0
    in_bad_versions: int = 0
    in_bad_community_names: int = 0
    in_bad_community_uses: int = 0
    in_asn_parse_errs: int = 0
    silent_drops: int = 0
    rate_limited: int = 0  # ours: dropped by the per-source limit or the agent's work share


class _Exception(enum.Enum):
    """RFC 3416 exception values (v2c); v1 turns them into noSuchName."""

    NO_SUCH_OBJECT = "noSuchObject"
    NO_SUCH_INSTANCE = "noSuchInstance"
    END_OF_MIB_VIEW = "endOfMibView"


NO_SUCH_OBJECT = _Exception.NO_SUCH_OBJECT
NO_SUCH_INSTANCE = _Exception.NO_SUCH_INSTANCE
END_OF_MIB_VIEW = _Exception.END_OF_MIB_VIEW

Result = Union[Value, _Exception]
Entries = Iterable[tuple[OID, Value]]


def oid(text: str) -> OID:
    """C{"1.3.6.1.2.1.1.1.0"} (a leading dot is fine) as an OID tuple."""
    return tuple(int(p) for p in text.strip().strip(".").split(".") if p != "")


def oid_text(o: OID) -> str:
    return ".".join(str(p) for p in o)


@attrs.frozen
class Subtree:
    """
    Everything under C{root}: C{objects} are the OIDs of its scalars and
    table columns (for noSuchObject vs noSuchInstance), C{entries} computes
    the (full OID, value) pairs now, in any order.
    """

    root: OID
    objects: frozenset[OID]
    entries: Callable[[], Entries]


def scalars(root: OID, values: Mapping[int, Callable[[], Value | None]]) -> Subtree:
    """Scalars C{root.n.0}; a function returning None leaves its object out of this answer."""
    funcs = dict(values)

    def entries() -> Entries:
        for sub, fn in funcs.items():
            v = fn()
            if v is not None:
                yield (*root, sub, 0), v
    return Subtree(root, frozenset((*root, sub) for sub in funcs), entries)


def table(entry: OID, columns: Mapping[int, Callable[[Any], Value | None]],
          rows: Callable[[], Iterable[tuple[OID, Any]]], root: OID | None = None) -> Subtree:
    """
    A conceptual table: cell C{entry.column.index} is C{columns[column](row)}
    for every C{(index, row)} of C{rows()}; a column function returning
    None leaves that cell out.  C{root} (default: the table OID, C{entry}
    without its last arc) is the subtree's root.
    """
    cols = dict(columns)

    def entries() -> Entries:
        for index, row in rows():
            for col, fn in cols.items():
                v = fn(row)
                if v is not None:
                    yield (*entry, col, *index), v
    return Subtree(root if root is not None else entry[:-1],
                   frozenset((*entry, c) for c in cols), entries)


class Mib:
    """
    Registered subtrees, ordered by root.  Roots must not nest (one owner
    per OID).  Build a L{View} per request and ask it.
    """

    def __init__(self, subtrees: Sequence[Subtree] = ()) -> None:
        self._subtrees: list[Subtree] = []
        for s in subtrees:
            self.add(s)

    def add(self, subtree: Subtree) -> None:
        for other in self._subtrees:
            shorter = min(len(other.root), len(subtree.root))
            if other.root[:shorter] == subtree.root[:shorter]:
                raise ValueError(f"subtree {oid_text(subtree.root)} overlaps "
                                 f"{oid_text(other.root)}")
        self._subtrees.append(subtree)
        self._subtrees.sort(key=lambda s: s.root)

    @property
    def subtrees(self) -> tuple[Subtree, ...]:
        return tuple(self._subtrees)

    def view(self) -> View:
        return View(self._subtrees)


class View:
    """One request's look at the tree: each subtree's entries read at most once."""

    def __init__(self, subtrees: Sequence[Subtree]) -> None:
        self._subtrees = subtrees
        self._roots = [s.root for s in subtrees]
        self._cache: dict[int, tuple[list[OID], list[Value]]] = {}

    def _entries(self, i: int) -> tuple[list[OID], list[Value]]:
        cached = self._cache.get(i)
        if cached is None:
            root = self._subtrees[i].root
            pairs = sorted((o, v) for o, v in self._subtrees[i].entries()
                           if o[:len(root)] == root and len(o) > len(root))
            cached = ([o for o, _ in pairs], [v for _, v in pairs])
            self._cache[i] = cached
        return cached

    def _owner(self, name: OID) -> int | None:
        i = bisect.bisect_right(self._roots, name) - 1
        if i >= 0 and name[:len(self._roots[i])] == self._roots[i]:
            return i
        return None

    def get(self, name: OID) -> Result:
        i = self._owner(name)
        if i is None:
            return NO_SUCH_OBJECT
        oids, values = self._entries(i)
        j = bisect.bisect_left(oids, name)
        if j < len(oids) and oids[j] == name:
            return values[j]
        if any(name[:len(o)] == o and len(name) > len(o) for o in self._subtrees[i].objects):
            return NO_SUCH_INSTANCE
        return NO_SUCH_OBJECT

    def next(self, name: OID) -> tuple[OID, Result]:
        """The first entry after C{name}; (C{name}, END_OF_MIB_VIEW) past the end."""
        i = self._owner(name)
        start = i if i is not None else bisect.bisect_right(self._roots, name)
        for k in range(start, len(self._subtrees)):
            oids, values = self._entries(k)
            j = bisect.bisect_right(oids, name)
            if j < len(oids):
                return oids[j], values[j]
        return name, END_OF_MIB_VIEW

    def bulk(self, names: Sequence[OID], non_repeaters: int, max_repetitions: int,
             limit: int = 2**31) -> list[tuple[OID, Result]]:
        """
        GETBULK (RFC 3416 §4.2.3): one GETNEXT for each of the first
        C{non_repeaters} names, then up to C{max_repetitions} rounds of
        GETNEXT over the others, row by row; at most C{limit} variables.
        Rounds stop early once every repeater reached the end of the view.
        """
        non_repeaters = max(0, min(non_repeaters, len(names)))
        max_repetitions = max(0, max_repetitions)
        out = [self.next(n) for n in names[:non_repeaters]][:limit]
        current = list(names[non_repeaters:])
        for _ in range(max_repetitions if current else 0):
            if len(out) >= limit:
                break
            row = [self.next(n) for n in current]
            out.extend(row[:limit - len(out)])
            current = [o for o, _ in row]
            if all(v is END_OF_MIB_VIEW for _, v in row):
                break
        return out
