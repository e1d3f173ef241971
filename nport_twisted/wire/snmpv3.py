# -*- test-case-name: tests.test_snmpv3 -*-
"""
SNMPv3 with the User-based Security Model for a read-only agent, one user,
authPriv only: HMAC-SHA-256 (usmHMAC192SHA256AuthProtocol, RFC 7860) and
AES-128 in CFB mode (usmAesCfb128Protocol, RFC 3826).  Sans-IO: a request
datagram and the engine's time in, the reply datagram (or nothing) out.

The message structures are pysnmp's ASN.1 definitions (SNMPv3Message,
HeaderData, ScopedPDU, UsmSecurityParameters) and its RFC 3414 key
localisation; the PDUs are answered by the v2c L{Responder} (the same
tree, the same GET/GETNEXT/GETBULK rules).  What this module adds is the
USM procedure (RFC 3414 §3.2) around them:

  - engine discovery: a request to another (or an empty) engine ID gets a
    Report of usmStatsUnknownEngineIDs with our engine ID, boots and time;
  - an unknown user, a security level other than authPriv, a wrong digest,
    a message outside the 150 s time window, undecryptable data: the
    matching usmStats counter and, when the request is reportable, its
    Report (notInTimeWindows authenticated, so the manager can resync);
  - a reply is encrypted with a fresh salt and authenticated.

Anything that does not decode is counted (snmpInASNParseErrs) and dropped;
no exception leaves L{V3Responder.respond}.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Any

import attrs
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import api, rfc1902, rfc1905
from pysnmp.proto.mpmod.rfc3412 import ScopedPDU, SNMPv3Message
from pysnmp.proto.secmod.rfc3414.localkey import password_to_key
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from nport_twisted.wire.mib import OID, SnmpStats
from nport_twisted.wire.snmp import V2C, Outcome, Responder

__all__ = ["UsmStats", "UsmUser", "V3Responder", "engine_id_for"]

USM = 3  # msgSecurityModel
FLAG_AUTH, FLAG_PRIV, FLAG_REPORTABLE = 0x01, 0x02, 0x04
MAC_LEN = 24  # HMAC-SHA-256 truncated to 192 bits (RFC 7860 §4.2.1)
TIME_WINDOW = 150  # seconds (RFC 3414 §2.2.3)
MAX_ENGINE_TIME = 2**31 - 1

_USM_STATS: OID = (1, 3, 6, 1, 6, 3, 15, 1, 1)
UNSUPPORTED_SEC_LEVELS = _USM_STATS + (1, 0)
NOT_IN_TIME_WINDOWS = _USM_STATS + (2, 0)
UNKNOWN_USER_NAMES = _USM_STATS + (3, 0)
UNKNOWN_ENGINE_IDS = _USM_STATS + (4, 0)
WRONG_DIGESTS = _USM_STATS + (5, 0)
DECRYPTION_ERRORS = _USM_STATS + (6, 0)


def engine_id_for(mac: bytes) -> bytes:
    """
    Our snmpEngineID (RFC 3411 §5, format 3 = a MAC address) under
    Net-SNMP's enterprise 8072, the arc our own MIB objects use.
    """
    return bytes([0x80, 0x00, 0x1F, 0x88, 0x03]) + mac


@attrs.frozen
class UsmUser:
    """The configured user and its keys localised to our engine ID."""

    name: bytes
    auth_key: bytes = attrs.field(repr=False)
    priv_key: bytes = attrs.field(repr=False)  # the AES-128 key: 16 bytes

    @classmethod
    def from_passwords(cls, name: str, auth_password: str, priv_password: str,
                       engine_id: bytes) -> UsmUser:
        """RFC 3414 A.2 key localisation with SHA-256 (RFC 7860 §4.1)."""
        eid = univ.OctetString(engine_id)
        auth = bytes(password_to_key(auth_password.encode("utf-8"), eid, hashlib.sha256))
        priv = bytes(password_to_key(priv_password.encode("utf-8"), eid, hashlib.sha256))
        return cls(name.encode("utf-8"), auth, priv[:16])


@attrs.define
class UsmStats:
    """The usmStats counters (SNMP-USER-BASED-SM-MIB)."""

    unsupported_sec_levels: int = 0
    not_in_time_windows: int = 0
    unknown_user_names: int = 0
    unknown_engine_ids: int = 0
    wrong_digests: int = 0
    decryption_errors: int = 0


def _aes_cfb(key: bytes, iv: bytes, data: bytes, encrypt: bool) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # cryptography before 43
        from cryptography.hazmat.primitives.ciphers.modes import CFB
    cipher = Cipher(algorithms.AES(key), CFB(iv))
    op = cipher.encryptor() if encrypt else cipher.decryptor()
    return op.update(data) + op.finalize()


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()[:MAC_LEN]


class _Reject(Exception):
    """A USM failure: which counter, and whether the Report is authenticated."""

    def __init__(self, counter: str, oid: OID, authenticated: bool = False) -> None:
        super().__init__(counter)
        self.counter = counter
        self.oid = oid
        self.authenticated = authenticated


class V3Responder:
    """
    Answers SNMPv3 USM authPriv requests of one user, read-only.

    @param user: the user (None: v3 is off and every v3 message is dropped).
    @param engine_id: our snmpEngineID.
    @param boots: snmpEngineBoots (kept across restarts by the caller).
    @param engine_time: seconds since the engine (re)started, now.
    @param inner: the v2c responder whose tree and rules answer the PDUs.
    """

    def __init__(self, user: Callable[[], UsmUser | None], engine_id: bytes, boots: int,
                 engine_time: Callable[[], int], inner: Responder,
                 stats: SnmpStats | None = None, salt: int | None = None) -> None:
        self._user = user
        self.engine_id = engine_id
        self.boots = boots
        self._engine_time = engine_time
        self._inner = inner
        self.stats = stats if stats is not None else inner.stats
        self.usm = UsmStats()
        self._salt = salt if salt is not None else int.from_bytes(os.urandom(8), "big")
        self.max_size = inner.max_size

    # -- helpers -----------------------------------------------------------------------

    def engine_time(self) -> int:
        """snmpEngineTime: seconds since the engine started (0 … 2^31-1)."""
        return max(0, min(MAX_ENGINE_TIME, int(self._engine_time())))

    def _next_salt(self) -> bytes:
        self._salt = (self._salt + 1) % 2**64
        return self._salt.to_bytes(8, "big")

    # -- in --------------------------------------------------------------------------

    def respond(self, data: bytes) -> Outcome:
        """The reply to one v3 datagram (the caller counted snmpInPkts)."""
        try:
            msg, rest = decoder.decode(data, asn1Spec=SNMPv3Message())
            if rest:
                raise ValueError("trailing bytes")
            header = msg["msgGlobalData"]
            msg_id = int(header["msgID"])
            flags = bytes(header["msgFlags"])[:1]
            flag = flags[0] if flags else 0
            if int(header["msgSecurityModel"]) != USM:
                raise ValueError("not USM")
            usm, rest = decoder.decode(bytes(msg["msgSecurityParameters"]),
                                       asn1Spec=UsmSecurityParameters())
            if rest:
                raise ValueError("trailing bytes in the security parameters")
        except Exception:
            self.stats.in_asn_parse_errs += 1
            return Outcome(None, version=3, dropped="malformed v3 message")
        reportable = bool(flag & FLAG_REPORTABLE)
        try:
            return self._process(data, msg, msg_id, flag, usm)
        except _Reject as r:
            setattr(self.usm, r.counter, getattr(self.usm, r.counter) + 1)
            failure = {"unknown_user_names": "SNMPv3 unknown user",
                       "wrong_digests": "SNMPv3 wrong digest"}.get(r.counter, "")
            report = None
            if reportable:
                report = self._report(msg_id, r.oid, getattr(self.usm, r.counter),
                                      self._request_id(msg), usm, r.authenticated)
            if report is None:
                return Outcome(None, version=3, dropped=f"usm: {r.counter}", auth_failure=failure)
            self.stats.out_pkts += 1
            return Outcome(report, version=3, auth_failure=failure)

    @staticmethod
    def _request_id(msg: Any) -> int:
        """The request-id when the scoped PDU is in plain text, else 0."""
        try:
            plain = msg["msgData"]["plaintext"]
            if plain.isValue:
                pdu = plain["data"].getComponent()
                return int(pdu["request-id"])
        except Exception:  # pyasn1 raises several kinds for an absent choice
            pass
        return 0

    def _process(self, data: bytes, msg: Any, msg_id: int, flag: int, usm: Any) -> Outcome:
        engine = bytes(usm["msgAuthoritativeEngineId"])
        if engine != self.engine_id:
            raise _Reject("unknown_engine_ids", UNKNOWN_ENGINE_IDS)
        user = self._user()
        if user is None or bytes(usm["msgUserName"]) != user.name:
            raise _Reject("unknown_user_names", UNKNOWN_USER_NAMES)
        if flag & (FLAG_AUTH | FLAG_PRIV) != FLAG_AUTH | FLAG_PRIV:
            raise _Reject("unsupported_sec_levels", UNSUPPORTED_SEC_LEVELS)
        digest = bytes(usm["msgAuthenticationParameters"])
        if len(digest) != MAC_LEN or data.count(digest) != 1:
            raise _Reject("wrong_digests", WRONG_DIGESTS)
        if not hmac.compare_digest(_mac(user.auth_key, data.replace(digest, bytes(MAC_LEN))),
                                   digest):
            raise _Reject("wrong_digests", WRONG_DIGESTS)
        boots, when = int(usm["msgAuthoritativeEngineBoots"]), int(usm["msgAuthoritativeEngineTime"])
        if boots != self.boots or abs(when - self.engine_time()) > TIME_WINDOW:
            raise _Reject("not_in_time_windows", NOT_IN_TIME_WINDOWS, authenticated=True)
        salt = bytes(usm["msgPrivacyParameters"])
        try:
            encrypted = bytes(msg["msgData"]["encryptedPDU"])
            if len(salt) != 8:
                raise ValueError("salt")
            plain = _aes_cfb(user.priv_key, struct.pack(">II", boots, when) + salt, encrypted,
                             encrypt=False)
            scoped, _ = decoder.decode(plain, asn1Spec=ScopedPDU())  # CFB: no padding, but
            pdu = scoped["data"].getComponent()                      # tolerate trailing bytes
        except Exception:
            raise _Reject("decryption_errors", DECRYPTION_ERRORS) from None
        response = self._answer(pdu)
        if response is None:
            return Outcome(None, version=3, dropped="not a request")
        reply = self._encode(msg_id, bytes(scoped["contextName"]), response, user, usm,
                             priv=True)
        self.stats.out_pkts += 1
        return Outcome(reply, version=3)

    def _answer(self, pdu: Any) -> Any | None:
        """The response PDU, by the v2c responder (same tree, same limits)."""
        mod = api.PROTOCOL_MODULES[V2C]
        inner_msg = mod.Message()
        mod.apiMessage.set_defaults(inner_msg)
        mod.apiMessage.set_community(inner_msg, b"")
        mod.apiMessage.set_pdu(inner_msg, pdu)
        reply = self._inner._answer(V2C, mod, inner_msg, pdu)
        if reply is None:
            return None
        decoded, _ = decoder.decode(reply, asn1Spec=mod.Message())
        return mod.apiMessage.get_pdu(decoded)

    # -- out -------------------------------------------------------------------------

    def _report(self, msg_id: int, oid: OID, count: int, request_id: int, usm: Any,
                authenticated: bool) -> bytes | None:
        pdu = rfc1905.ReportPDU()
        mod = api.PROTOCOL_MODULES[V2C]
        mod.apiPDU.set_defaults(pdu)
        mod.apiPDU.set_request_id(pdu, request_id)
        mod.apiPDU.set_varbinds(pdu, [(oid, rfc1902.Counter32(count % 2**32))])
        user = self._user() if authenticated else None
        return self._encode(msg_id, b"", pdu, user, usm, priv=False)

    def _encode(self, msg_id: int, context: bytes, pdu: Any, user: UsmUser | None, usm_in: Any,
                priv: bool) -> bytes | None:
        scoped = ScopedPDU()
        scoped["contextEngineId"] = self.engine_id
        scoped["contextName"] = context
        scoped["data"].setComponentByType(pdu.tagSet, pdu)
        now = self.engine_time()
        usm = UsmSecurityParameters()
        usm["msgAuthoritativeEngineId"] = self.engine_id
        usm["msgAuthoritativeEngineBoots"] = self.boots
        usm["msgAuthoritativeEngineTime"] = now
        usm["msgUserName"] = user.name if user is not None else bytes(usm_in["msgUserName"])
        usm["msgAuthenticationParameters"] = bytes(MAC_LEN) if user is not None else b""
        msg = SNMPv3Message()
        msg["msgVersion"] = 3
        header = msg["msgGlobalData"]
        header["msgID"] = msg_id
        header["msgMaxSize"] = 65507
        flags = 0
        if user is not None:
            flags |= FLAG_AUTH
        if priv and user is not None:
            flags |= FLAG_PRIV
            salt = self._next_salt()
            usm["msgPrivacyParameters"] = salt
            encrypted = _aes_cfb(user.priv_key, struct.pack(">II", self.boots, now) + salt,
                                 encoder.encode(scoped), encrypt=True)
            msg["msgData"]["encryptedPDU"] = encrypted
        else:
            usm["msgPrivacyParameters"] = b""
            msg["msgData"]["plaintext"] = scoped
        header["msgFlags"] = bytes([flags])
        header["msgSecurityModel"] = USM
        msg["msgSecurityParameters"] = encoder.encode(usm)
        whole: bytes = encoder.encode(msg)
        if user is not None:
            marker = b"\x04" + bytes([MAC_LEN]) + bytes(MAC_LEN)
            at = whole.find(marker)
            if at < 0:  # cannot happen: the parameters were encoded just above
                return None
            at += 2
            whole = whole[:at] + _mac(user.auth_key, whole) + whole[at + MAC_LEN:]
        if len(whole) > self.max_size:
            self.stats.silent_drops += 1
            return None
        return whole
