# -*- test-case-name: tests.test_web.AuthTests -*-
"""
Sessions, CSRF tokens, the first-start setup token and login rate limiting
of the web console.  Pure: time comes from an injected clock.

  - A session is a random 256-bit id (the C{nport_session} cookie, or a
    bearer token for scripts) with its own CSRF token.  Sessions end after
    L{SessionStore.idle_timeout} without use, after L{SessionStore.max_age}
    in any case, at logout, and all at once when the password changes.
  - The setup token is printed in the log at start while no password is
    set; setting the first password needs it, so a stranger on the network
    cannot claim the box first.
  - L{LoginLimiter}: per client address, a few failed attempts are free,
    then each further attempt waits twice as long as the previous one (up
    to L{LoginLimiter.max_delay}); attempts still being checked count as
    failed until their check ends.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from typing import Protocol

import attrs


class Clock(Protocol):
    def seconds(self) -> float: ...


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token."""
    return secrets.token_urlsafe(nbytes)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time token comparison; an empty or missing token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8"))


@attrs.define
class Session:
    """One logged-in client."""

    sid: str
    csrf: str
    created: float
    last_seen: float
    peer: str
    bearer: bool = False  # a script's token (Authorization: Bearer), not a cookie


class SessionStore:
    """Logged-in sessions, bounded in number (the oldest is dropped)."""

    def __init__(
        self,
        clock: Clock,
        idle_timeout: float = 30 * 60,
        max_age: float = 12 * 3600,
        max_sessions: int = 64,
    ) -> None:
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.max_age = max_age
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, peer: str, bearer: bool = False) -> Session:
        now = self.clock.seconds()
        self._expire(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        session = Session(
            sid=new_token(), csrf=new_token(), created=now, last_seen=now, peer=peer, bearer=bearer
        )
        self._sessions[session.sid] = session
        return session

    def get(self, sid: str | None, bearer: bool = False) -> Session | None:
        """The live session C{sid} (of the right kind), refreshed; None when unknown or expired."""
        if not sid:
            return None
        now = self.clock.seconds()
        session = self._sessions.get(sid)
        if session is None or session.bearer != bearer:
            return None
        if self._expired(session, now):
            del self._sessions[sid]
            return None
        session.last_seen = now
        return session

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def drop_all(self, keep: str | None = None) -> None:
        """End every session (a password change), except C{keep}."""
        for sid in list(self._sessions):
            if sid != keep:
                del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)

    def _expired(self, session: Session, now: float) -> bool:
        return now - session.last_seen > self.idle_timeout or now - session.created > self.max_age

    def _expire(self, now: float) -> None:
        for sid, session in list(self._sessions.items()):
            if self._expired(session, now):
                del self._sessions[sid]


@attrs.define
class _Attempts:
    failures: int = 0
    last: float = 0.0
    in_flight: int = 0  # attempts being checked right now (scrypt in a thread)


class LoginLimiter:
    """
    Failed password (or setup token) attempts per client address.

    The first C{free} failures cost nothing; after that the client must wait
    C{base_delay * 2**(failures - free)} seconds (at most C{max_delay}) after
    its last failure before the next attempt is even checked.  A success
    clears the address.  At most C{max_clients} addresses are remembered.
    """

    def __init__(
        self,
        clock: Clock,
        free: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        forget_after: float = 3600.0,
        max_clients: int = 4096,
    ) -> None:
        self.clock = clock
        self.free = free
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_clients = max_clients
        self._clients: OrderedDict[str, _Attempts] = OrderedDict()

    def wait_time(self, client: str) -> float:
        """
        Seconds C{client} must still wait before an attempt is accepted (0 = go ahead).
        Attempts still being checked count as failures: a hundred wrong
        passwords sent at once must not all be checked because none has
        failed yet.
        """
        now = self.clock.seconds()
        entry = self._clients.get(client)
        if entry is None:
            return 0.0
        if now - entry.last > self.forget_after and not entry.in_flight:
            del self._clients[client]
            return 0.0
        counted = entry.failures + entry.in_flight
        if counted < self.free:
            return 0.0
        delay = min(self.max_delay, self.base_delay * 2.0 ** (counted - self.free))
        return max(0.0, entry.last + delay - now)

    def begin(self, client: str) -> None:
        """An attempt of C{client} is being checked (call L{end} when the check is over)."""
        entry = self._clients.pop(client, None) or _Attempts()
        entry.in_flight += 1
        entry.last = self.clock.seconds()
        self._clients[client] = entry
        self._bound()

    def end(self, client: str) -> None:
        """The check L{begin} announced is over (then L{failed} or L{succeeded})."""
        entry = self._clients.get(client)
        if entry is not None:
            entry.in_flight = max(0, entry.in_flight - 1)
            if not entry.in_flight and not entry.failures:
                del self._clients[client]

    def in_flight(self, client: str) -> int:
        entry = self._clients.get(client)
        return entry.in_flight if entry is not None else 0

    def _bound(self) -> None:
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def failed(self, client: str) -> None:
        entry = self._clients.pop(client, None) or _Attempts()
        entry.failures += 1
        entry.last = self.clock.seconds()
        self._clients[client] = entry
        self._bound()

    def succeeded(self, client: str) -> None:
        entry = self._clients.pop(client, None)
        if entry is not None and entry.in_flight:  # other attempts still running: keep counting them
            self._clients[client] = _Attempts(in_flight=entry.in_flight, last=entry.last)
