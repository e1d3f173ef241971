# -*- test-case-name: tests.test_snmp -*-
"""
SNMPv1/v2c messages for a read-only agent: a request datagram in, the
response datagram (or nothing) out, over a L{nport_twisted.wire.mib.View}.
Sans-IO: no socket, no clock (the caller passes sysUpTime for traps).

The BER encoding and the message structure are pysnmp's (C{pysnmp.proto.api},
pyasn1 underneath); this module is what an agent adds around them
(RFC 3416, RFC 2576, RFC 1157):

  - the community is compared in constant time; a wrong one is counted
    (snmpInBadCommunityNames) and answered with nothing;
  - GET/GETNEXT/GETBULK over the view; v2c answers noSuchObject,
    noSuchInstance and endOfMibView as values, v1 turns them into a
    noSuchName error for the first failing variable; v1 GETNEXT steps over
    Counter64 values, which v1 cannot carry (RFC 2576 §4.1.2.1);
  - SET is never applied: v2c noAccess, v1 noSuchName (RFC 2576 §4.3),
    counted in snmpInBadCommunityUses;
  - responses larger than C{max_size}: GETBULK drops trailing variables;
    GET/GETNEXT answer tooBig (v2c with no variables, v1 with the
    request's); when even that does not fit the request is dropped and
    counted in snmpSilentDrops;
  - anything that does not decode as a v1/v2c request — any bytes at all —
    is counted (snmpInASNParseErrs, snmpInBadVersions) and dropped; no
    exception leaves L{Responder.respond}.

v3 messages (version 3) are not handled here: the agent hands them to the
USM engine (L{nport_twisted.wire.snmpv3}), which answers their PDUs with
this responder.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1155, rfc1902, rfc1905

from nport_twisted.wire.mib import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    OID,
    Result,
    SnmpStats,
    Syntax,
    Value,
    View,
)

__all__ = ["Outcome", "Responder", "SnmpStats", "encode_trap", "peek_version"]

V1, V2C, V3 = 0, 1, 3

# error-status values (RFC 3416 §3)
NO_ERROR, TOO_BIG, NO_SUCH_NAME, GEN_ERR, NO_ACCESS = 0, 1, 2, 5, 6

#: Largest datagram we answer with: fits an Ethernet frame without IP
#: fragmentation, as net-snmp's agent does (SNMP_MAX_MSG_SIZE 1472).
DEFAULT_MAX_SIZE = 1472


@attrs.frozen
class Outcome:
    """What one datagram did: the reply (None: answer nothing) and why."""

    reply: bytes | None
    version: int | None = None
    bad_community: bool = False
    community: bytes = attrs.field(default=b"", repr=False)
    dropped: str = ""  # why nothing was answered ("" when replied)
    auth_failure: str = ""  # v3: an unknown user or a wrong digest (published, bounded)


def peek_version(data: bytes) -> int | None:
    """The msgVersion of C{data} (0, 1, 3 …) or None when it is not an SNMP message."""
    try:
        return int(api.decodeMessageVersion(data))
    except Exception:  # pyasn1 raises many kinds on arbitrary bytes
        return None


def _v2_value(value: Value) -> Any:
    s, v = value.syntax, value.value
    if s is Syntax.INTEGER:
        return rfc1902.Integer32(v)
    if s is Syntax.OCTETS:
        return rfc1902.OctetString(v)
    if s is Syntax.OID:
        return univ.ObjectIdentifier(v)
    if s is Syntax.IPADDRESS:
        return rfc1902.IpAddress(v)
    if s is Syntax.COUNTER32:
        return rfc1902.Counter32(v)
    if s is Syntax.GAUGE32:
        return rfc1902.Gauge32(v)
    if s is Syntax.TIMETICKS:
        return rfc1902.TimeTicks(v)
    return rfc1902.Counter64(v)


def _v1_value(value: Value) -> Any:
    s, v = value.syntax, value.value
    if s is Syntax.INTEGER:
        return univ.Integer(v)
    if s is Syntax.OCTETS:
        return univ.OctetString(v)
    if s is Syntax.OID:
        return univ.ObjectIdentifier(v)
    if s is Syntax.IPADDRESS:
        return rfc1155.IpAddress(v)
    if s is Syntax.COUNTER32:
        return rfc1155.Counter(v)
    if s is Syntax.GAUGE32:
        return rfc1155.Gauge(v)
    if s is Syntax.TIMETICKS:
        return rfc1155.TimeTicks(v)
    raise ValueError("Counter64 has no SNMPv1 encoding")


_EXCEPTIONS = {
    NO_SUCH_OBJECT: rfc1905.noSuchObject,
    NO_SUCH_INSTANCE: rfc1905.noSuchInstance,
    END_OF_MIB_VIEW: rfc1905.endOfMibView,
}


class Responder:
    """
    Answers v1/v2c requests read-only over views from C{view()}.

    @param community: the configured community (bytes); "" answers nobody.
    @param view: a fresh L{View} per request (the live state, read once).
    """

    def __init__(self, community: Callable[[], bytes], view: Callable[[], View],
                 stats: SnmpStats | None = None, max_size: int = DEFAULT_MAX_SIZE,
                 max_varbinds: int = 512) -> None:
        self._community = community
        self._view = view
        self.stats = stats if stats is not None else SnmpStats()
        self.max_size = max_size
        self.max_varbinds = max_varbinds

    def respond(self, data: bytes) -> Outcome:
        """The reply to one datagram; no input makes it raise (only a bug in a value function)."""
        self.stats.in_pkts += 1
        version = peek_version(data)
        if version is None:
            self.stats.in_asn_parse_errs += 1
            return Outcome(None, dropped="not an SNMP message")
        if version not in (V1, V2C):
            self.stats.in_bad_versions += 1
            return Outcome(None, version=version, dropped=f"SNMP version {version} not served")
        mod = api.PROTOCOL_MODULES[version]
        try:
            msg, rest = decoder.decode(data, asn1Spec=mod.Message())
            if rest:
                raise ValueError("trailing bytes")
            community = bytes(mod.apiMessage.get_community(msg))
            pdu = mod.apiMessage.get_pdu(msg)
        except Exception:
            self.stats.in_asn_parse_errs += 1
            return Outcome(None, version=version, dropped="malformed message")
        expected = self._community()
        if not expected or not hmac.compare_digest(community, expected):
            self.stats.in_bad_community_names += 1
            return Outcome(None, version=version, bad_community=True, community=community,
                           dropped="unknown community")
        try:
            reply = self._answer(version, mod, msg, pdu)
        except Exception:  # a bug in a value function: counted, and the caller logs it
            self.stats.silent_drops += 1
            raise
        if reply is None:
            return Outcome(None, version=version, dropped="not a request")
        self.stats.out_pkts += 1
        return Outcome(reply, version=version)

    # -- PDUs ---------------------------------------------------------------------------

    def _answer(self, version: int, mod: Any, msg: Any, pdu: Any) -> bytes | None:
        tag = pdu.tagSet
        names: list[OID] = [tuple(o) for o, _ in mod.apiPDU.get_varbinds(pdu)]
        if tag == mod.GetRequestPDU.tagSet:
            return self._get(version, mod, msg, pdu, names)
        if tag == mod.GetNextRequestPDU.tagSet:
            return self._next(version, mod, msg, pdu, names)
        if version == V2C and tag == mod.GetBulkRequestPDU.tagSet:
            return self._bulk(mod, msg, pdu, names)
        if tag == mod.SetRequestPDU.tagSet:
            self.stats.in_bad_community_uses += 1
            return self._error(version, mod, msg, pdu,
                               NO_ACCESS if version == V2C else NO_SUCH_NAME, 1 if names else 0)
        return None  # responses, traps, reports: an agent answers none of them

    def _get(self, version: int, mod: Any, msg: Any, pdu: Any, names: list[OID]) -> bytes | None:
        view = self._view()
        results: list[tuple[OID, Result]] = [(n, view.get(n)) for n in names]
        return self._finish(version, mod, msg, pdu, results)

    def _next(self, version: int, mod: Any, msg: Any, pdu: Any, names: list[OID]) -> bytes | None:
        view = self._view()
        results = [self._next_one(view, n, version) for n in names]
        return self._finish(version, mod, msg, pdu, results)

    @staticmethod
    def _next_one(view: View, name: OID, version: int) -> tuple[OID, Result]:
        oid, value = view.next(name)
        while version == V1 and isinstance(value, Value) and value.syntax is Syntax.COUNTER64:
            oid, value = view.next(oid)
        return oid, value

    def _bulk(self, mod: Any, msg: Any, pdu: Any, names: list[OID]) -> bytes | None:
        view = self._view()
        non_rep = int(mod.apiBulkPDU.get_non_repeaters(pdu))
        max_rep = int(mod.apiBulkPDU.get_max_repetitions(pdu))
        results = view.bulk(names, non_rep, max_rep, limit=self.max_varbinds)
        # Fit the datagram: drop trailing variables (RFC 3416 §4.2.3).
        reply = self._encode(V2C, mod, msg, pdu, results)
        while len(reply) > self.max_size and results:
            excess = len(reply) - self.max_size
            drop = max(1, excess * len(results) // len(reply) + 1)
            results = results[:-drop]
            reply = self._encode(V2C, mod, msg, pdu, results)
        if len(reply) > self.max_size:
            self.stats.silent_drops += 1
            return None
        return reply

    def _finish(self, version: int, mod: Any, msg: Any, pdu: Any,
                results: list[tuple[OID, Result]]) -> bytes | None:
        if version == V1:
            for i, (_, value) in enumerate(results):
                if not isinstance(value, Value) or value.syntax is Syntax.COUNTER64:
                    return self._error(version, mod, msg, pdu, NO_SUCH_NAME, i + 1)
        reply = self._encode(version, mod, msg, pdu, results)
        if len(reply) <= self.max_size:
            return reply
        return self._error(version, mod, msg, pdu, TOO_BIG, 0, keep=version == V1)

    def _error(self, version: int, mod: Any, msg: Any, pdu: Any, status: int, index: int,
               keep: bool = True) -> bytes | None:
        """A response with C{status}; its variables are the request's (v2c tooBig: none)."""
        rsp_msg = mod.apiMessage.get_response(msg)
        rsp = mod.apiMessage.get_pdu(rsp_msg)
        mod.apiPDU.set_varbinds(rsp, mod.apiPDU.get_varbinds(pdu) if keep else [])
        mod.apiPDU.set_error_status(rsp, status)
        mod.apiPDU.set_error_index(rsp, index)
        reply: bytes = encoder.encode(rsp_msg)
        if len(reply) > self.max_size:
            self.stats.silent_drops += 1
            return None
        return reply

    @staticmethod
    def _encode(version: int, mod: Any, msg: Any, pdu: Any,
                results: Sequence[tuple[OID, Result]]) -> bytes:
        rsp_msg = mod.apiMessage.get_response(msg)
        rsp = mod.apiMessage.get_pdu(rsp_msg)
        convert = _v2_value if version == V2C else _v1_value
        varbinds = [(oid, convert(v) if isinstance(v, Value) else _EXCEPTIONS[v])
                    for oid, v in results]
        mod.apiPDU.set_varbinds(rsp, varbinds)
        return encoder.encode(rsp_msg)  # type: ignore[no-any-return]


def encode_trap(version: int, community: bytes, uptime_ticks: int, trap_oid: OID,
                varbinds: Sequence[tuple[OID, Value]], request_id: int = 0,
                agent_address: str = "0.0.0.0", enterprise: OID | None = None) -> bytes:
    """
    A trap datagram.  v2c: an SNMPv2-Trap-PDU with sysUpTime.0 and
    snmpTrapOID.0 first (RFC 3416 §4.2.6).  v1: a Trap-PDU with the generic
    trap number for the standard traps 1.3.6.1.6.3.1.1.5.{1..6}, otherwise
    enterpriseSpecific with the enterprise and specific number taken from
    C{trap_oid} (RFC 2576 §3.2).
    """
    if version == V2C:
        mod = api.PROTOCOL_MODULES[V2C]
        pdu = mod.SNMPv2TrapPDU()
        mod.apiTrapPDU.set_defaults(pdu)
        mod.apiTrapPDU.set_request_id(pdu, request_id)
        binds: list[tuple[OID, Any]] = [
            ((1, 3, 6, 1, 2, 1, 1, 3, 0), rfc1902.TimeTicks(uptime_ticks % 2**32)),
            ((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), univ.ObjectIdentifier(trap_oid)),
        ]
        binds += [(o, _v2_value(v)) for o, v in varbinds]
        mod.apiTrapPDU.set_varbinds(pdu, binds)
    else:
        mod = api.PROTOCOL_MODULES[V1]
        pdu = mod.TrapPDU()
        mod.apiTrapPDU.set_defaults(pdu)
        standard = (1, 3, 6, 1, 6, 3, 1, 1, 5)
        if trap_oid[:-1] == standard and 1 <= trap_oid[-1] <= 6:
            generic, specific = trap_oid[-1] - 1, 0
            ent = enterprise if enterprise is not None else (1, 3, 6, 1, 4, 1, 8691)
        else:
            generic, specific = 6, trap_oid[-1]
            ent = trap_oid[:-2] if len(trap_oid) > 2 and trap_oid[-2] == 0 else trap_oid[:-1]
        mod.apiTrapPDU.set_enterprise(pdu, ent)
        mod.apiTrapPDU.set_agent_address(pdu, agent_address)
        mod.apiTrapPDU.set_generic_trap(pdu, generic)
        mod.apiTrapPDU.set_specific_trap(pdu, specific)
        mod.apiTrapPDU.set_timestamp(pdu, uptime_ticks % 2**32)
        mod.apiTrapPDU.set_varbinds(pdu, [(o, _v1_value(v)) for o, v in varbinds
                                          if v.syntax is not Syntax.COUNTER64])
    msg = mod.Message()
    mod.apiMessage.set_defaults(msg)
    mod.apiMessage.set_community(msg, community)
    mod.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)  # type: ignore[no-any-return]
