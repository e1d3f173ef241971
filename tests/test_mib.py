# -*- test-case-name: tests.test_mib -*-
"""
Tests for L{nport_twisted.wire.mib}: OID order, GET/GETNEXT/GETBULK over
registered subtrees, the exception values, SMI value limits.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from nport_twisted.wire.mib import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    Mib,
    Subtree,
    Syntax,
    Value,
    oid,
    oid_text,
    scalars,
    table,
)

SYSTEM = oid("1.3.6.1.2.1.1")
ROWS = [((1,), "a"), ((2,), "b"), ((10,), "c")]


def sample() -> Mib:
    """A system-like scalar group and a two-column table with rows 1, 2, 10."""
    return Mib([
        scalars(SYSTEM, {1: lambda: Value.octets("descr"), 3: lambda: Value.timeticks(1.5),
                         5: lambda: None}),
        table(oid("1.3.6.1.4.1.99.1.1"), {1: lambda r: Value.integer(ord(r)),
                                          2: lambda r: Value.octets(r)}, lambda: ROWS),
    ])


class OrderTests(SynchronousTestCase):
    def test_tuple_order_is_snmp_order(self) -> None:
        """Python tuple order is SNMP's lexicographic order (a prefix sorts first)."""
        names = ["1.3.6.1.2", "1.3.6.1", "1.3.6.1.10", "1.3.6.1.2.1", "1.3.6.2", "1.3.6.1.9"]
        ordered = sorted(names, key=oid)
        self.assertEqual(ordered, ["1.3.6.1", "1.3.6.1.2", "1.3.6.1.2.1", "1.3.6.1.9",
                                   "1.3.6.1.10", "1.3.6.2"])

    def test_oid_text(self) -> None:
        """OIDs parse with or without a leading dot and print back."""
        self.assertEqual(oid(".1.3.6.1"), (1, 3, 6, 1))
        self.assertEqual(oid_text((1, 3, 6, 1)), "1.3.6.1")

    def test_overlapping_subtrees_refused(self) -> None:
        """One owner per OID: a subtree inside another is refused."""
        mib = sample()
        with self.assertRaises(ValueError):
            mib.add(scalars(SYSTEM + (2,), {}))


class GetTests(SynchronousTestCase):
    def test_scalar(self) -> None:
        """GET of a scalar instance answers its value."""
        self.assertEqual(sample().view().get(SYSTEM + (1, 0)), Value.octets("descr"))

    def test_no_such_object_and_instance(self) -> None:
        """Unknown object: noSuchObject; known object, unknown instance: noSuchInstance."""
        view = sample().view()
        self.assertIs(view.get(SYSTEM + (2, 0)), NO_SUCH_OBJECT)
        self.assertIs(view.get(SYSTEM + (1, 1)), NO_SUCH_INSTANCE)
        self.assertIs(view.get(SYSTEM + (1,)), NO_SUCH_OBJECT)  # the object itself, no instance
        self.assertIs(view.get(oid("1.3.6.1.4.1.99.1.1.2.3")), NO_SUCH_INSTANCE)
        self.assertIs(view.get(oid("1.3.6.1.4.1.99.1.1.3.1")), NO_SUCH_OBJECT)
        self.assertIs(view.get(oid("1.3.6.1.3")), NO_SUCH_OBJECT)

    def test_value_left_out(self) -> None:
        """A scalar function answering None is absent for this request (noSuchInstance)."""
        self.assertIs(sample().view().get(SYSTEM + (5, 0)), NO_SUCH_INSTANCE)


class NextTests(SynchronousTestCase):
    def test_walk_whole_tree_in_order(self) -> None:
        """GETNEXT from the root visits every entry once, in order, then endOfMibView."""
        view = sample().view()
        seen = []
        name = (1, 3)
        while True:
            name, value = view.next(name)
            if value is END_OF_MIB_VIEW:
                break
            seen.append(oid_text(name))
        self.assertEqual(seen, [
            "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.3.0",
            "1.3.6.1.4.1.99.1.1.1.1", "1.3.6.1.4.1.99.1.1.1.2", "1.3.6.1.4.1.99.1.1.1.10",
            "1.3.6.1.4.1.99.1.1.2.1", "1.3.6.1.4.1.99.1.1.2.2", "1.3.6.1.4.1.99.1.1.2.10",
        ])

    def test_next_between_subtrees_and_past_end(self) -> None:
        """A name between two subtrees continues in the next; past the last, endOfMibView."""
        view = sample().view()
        self.assertEqual(view.next(oid("1.3.6.1.3"))[0], oid("1.3.6.1.4.1.99.1.1.1.1"))
        self.assertIs(view.next(oid("1.3.6.1.4.1.99.1.1.2.10"))[1], END_OF_MIB_VIEW)
        self.assertIs(view.next(oid("2"))[1], END_OF_MIB_VIEW)

    def test_entries_read_once_per_view(self) -> None:
        """A subtree's values are computed once per request, however many names it answers."""
        calls = []

        def rows() -> list[tuple[tuple[int, ...], str]]:
            calls.append(1)
            return ROWS
        view = Mib([table((1, 9, 1), {1: lambda r: Value.octets(r)}, rows)]).view()
        view.next((1,))
        view.next((1, 9, 1, 1, 1))
        view.get((1, 9, 1, 1, 2))
        self.assertEqual(len(calls), 1)


class BulkTests(SynchronousTestCase):
    def test_non_repeaters_and_repetitions(self) -> None:
        """GETBULK: one GETNEXT per non-repeater, then rows of the repeaters."""
        view = sample().view()
        out = view.bulk([SYSTEM, oid("1.3.6.1.4.1.99.1.1.1"), oid("1.3.6.1.4.1.99.1.1.2")],
                        non_repeaters=1, max_repetitions=2)
        self.assertEqual([oid_text(o) for o, _ in out], [
            "1.3.6.1.2.1.1.1.0",
            "1.3.6.1.4.1.99.1.1.1.1", "1.3.6.1.4.1.99.1.1.2.1",
            "1.3.6.1.4.1.99.1.1.1.2", "1.3.6.1.4.1.99.1.1.2.2"])

    def test_stops_at_end_of_view(self) -> None:
        """Rounds stop once every repeater is at endOfMibView."""
        out = sample().view().bulk([oid("1.3.6.1.4.1.99.1.1.2.2")], 0, 50)
        self.assertEqual(len(out), 2)
        self.assertIs(out[-1][1], END_OF_MIB_VIEW)

    def test_limit(self) -> None:
        """At most C{limit} variables; odd arguments are clamped, not refused."""
        view = sample().view()
        self.assertEqual(len(view.bulk([(1,)], 0, 1000, limit=3)), 3)
        self.assertEqual(view.bulk([(1,)], -5, -1), [])
        self.assertEqual(len(view.bulk([(1,)], 9, 9)), 1)


class ValueTests(SynchronousTestCase):
    def test_limits(self) -> None:
        """Counters wrap, gauges stick, integers clamp, timeticks are hundredths."""
        self.assertEqual(Value.counter32(2**32 + 5).value, 5)
        self.assertEqual(Value.counter64(2**64 + 1).value, 1)
        self.assertEqual(Value.gauge32(2**40).value, 2**32 - 1)
        self.assertEqual(Value.integer(2**40).value, 2**31 - 1)
        self.assertEqual(Value.timeticks(12.345).value, 1234)
        self.assertEqual(Value.ip("10.0.0.1"), Value(Syntax.IPADDRESS, b"\n\x00\x00\x01"))

    @given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), max_size=30),
           st.lists(st.integers(0, 6), min_size=1, max_size=6))
    def test_next_is_the_least_greater_entry(self, rows: list[list[int]], start: list[int]) -> None:
        """For any entries and any start name, GETNEXT answers the least entry after it."""
        entries = {(1, 1) + tuple(r): Value.integer(i) for i, r in enumerate(rows)}
        mib = Mib([Subtree((1, 1), frozenset(), lambda: entries.items())])
        name, value = mib.view().next(tuple(start))
        after = sorted(o for o in entries if o > tuple(start))
        if after:
            self.assertEqual(name, after[0])
        else:
            self.assertIs(value, END_OF_MIB_VIEW)
