# -*- test-case-name: tests.test_reactor -*-
"""
The event loop nport-twisted installs when nothing else chose one: Twisted's
epoll reactor with a cheaper per-event dispatch (docs/performance.md).

Twisted's C{EPollReactor.doPoll} hands every ready descriptor to
C{log.callWithLogger}, which asks the descriptor for its log prefix, pushes
a legacy logging context and pops it again around C{_doReadOrWrite}: about
2 us per event, which is close to half of what a one-byte relay round trip
costs in Python.  L{FastEPollReactor} calls C{_doReadOrWrite} directly.
Everything else is the epoll reactor unchanged: C{_doReadOrWrite} still
turns an exception from C{doRead}/C{doWrite} into a logged error and a
disconnect, and anything that escapes it is logged here, so a failing
connection never stops the loop.  The one difference: messages that
Twisted's legacy C{twisted.python.log} calls write while handling an event
carry no C{system} prefix of the connection (they show C{-}).  Code logging
through C{twisted.logger} (all of ours) is not affected.

How it gets installed (L{install_default}): C{twistd nport} and C{twist
nport} parse our options before they import the global reactor, so
L{nport_twisted.tap.Options} installs this one then, unless a reactor is
already installed (C{twistd --reactor NAME} wins, and so does anything that
imported C{twisted.internet.reactor} first), the user asked for Twisted's
own (C{--twisted-reactor}) or epoll is not available (then Twisted picks
its default as usual).  Library code never imports the global reactor; this
module only defines and installs one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from twisted.python import log

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # no epoll (not Linux): Twisted's default reactor is used
    EPollReactor = None  # type: ignore[assignment,misc]

__all__ = ["FastEPollReactor", "install", "install_default"]


if EPollReactor is not None:
    import select as _select

    _EPOLLIN = _select.EPOLLIN

    class FastEPollReactor(EPollReactor):
        """
        Twisted's epoll reactor, dispatching ready descriptors without
        C{callWithLogger}, and with a shortcut for plain reads: a descriptor
        registered with L{add_fast_reader} (by
        L{nport_twisted._txinternals.fast_io}) has its C{doRead} replaced,
        for an event that is only "readable", by a function doing the same
        with fewer layers.  What it returns is handled as C{doRead}'s result
        (a reason disconnects), an exception as in C{_doReadOrWrite} (logged,
        the descriptor disconnected).
        """

        def __init__(self) -> None:
            self._fast: dict[int, tuple[object, Callable[[], object]]] = {}
            super().__init__()

        def add_fast_reader(self, selectable: Any, read: Callable[[], object]) -> None:
            """Use C{read} instead of C{selectable.doRead} for plain readable events."""
            self._fast[selectable.fileno()] = (selectable, read)

        def remove_fast_reader(self, selectable: Any) -> None:
            """Forget C{selectable}'s fast reader."""
            for fd, (owner, _) in list(self._fast.items()):
                if owner is selectable:
                    del self._fast[fd]

        def doPoll(self, timeout: float | None) -> None:
            """
            Wait for events and dispatch them.  While every event of a poll
            went to a fast reader (the relay's steady state) and nothing
            else needs the main loop (no timed call due or added, no call
            from a thread, no stop), poll again at once instead of going
            back through C{runUntilCurrent} and C{timeout}: the main loop's
            own cost per event is then paid once per burst, not per byte.
            """
            poll = self._poller.poll
            selectables = self._selectables
            deadline = -1.0 if timeout is None else self.seconds() + timeout
            wait = -1.0 if timeout is None else timeout
            while True:
                try:
                    events = poll(wait, len(selectables))
                except InterruptedError:
                    return
                if not self._dispatch(events) or self.threadCallQueue or self._newTimedCalls \
                        or self._stopped:
                    return
                pending = self._pendingTimedCalls
                if pending and (deadline < 0 or pending[0].time < deadline):
                    deadline = pending[0].time  # an earlier call (a timer moved sooner)
                if deadline >= 0:
                    wait = deadline - self.seconds()
                    if wait <= 0:
                        return

        def _dispatch(self, events: list[tuple[int, int]]) -> bool:
            """Handle C{events}; whether there were some and all went to fast readers."""
            selectables = self._selectables
            fast = self._fast
            all_fast = bool(events)
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if event == _EPOLLIN and fast:
                    entry = fast.get(fd)
                    if entry is not None:
                        if entry[0] is selectable:
                            try:
                                why = entry[1]()
                            except BaseException:
                                why = sys.exc_info()[1]
                                log.err()
                            if why:
                                all_fast = False
                                self._disconnectSelectable(selectable, why, True)
                            continue
                        del fast[fd]  # a closed descriptor's number, now someone else's
                all_fast = False
                try:
                    self._doReadOrWrite(selectable, fd, event)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    # _doReadOrWrite already logs and disconnects for errors in
                    # doRead/doWrite; this only catches errors in the
                    # disconnect itself (callWithLogger's last resort).
                    log.err(None, "error while dispatching an event")
            return all_fast

        doIteration = doPoll
else:  # pragma: no cover - not Linux
    FastEPollReactor = None  # type: ignore[assignment,misc]


def install() -> Any:
    """
    Install L{FastEPollReactor} as the global reactor and return it.

    @raise ImportError: epoll is not available here.
    @raise twisted.internet.error.ReactorAlreadyInstalledError: a reactor is installed.
    """
    if FastEPollReactor is None:
        raise ImportError("epoll is not available on this platform")
    from twisted.internet.main import installReactor

    reactor = FastEPollReactor()
    installReactor(reactor)
    return reactor


def install_default() -> bool:
    """
    Install L{FastEPollReactor} unless a reactor is installed already or
    epoll is missing; True when it was installed.  Never raises: whatever
    goes wrong leaves the choice to Twisted, as without this module.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    try:
        install()
    except Exception:  # ImportError (no epoll), ReactorAlreadyInstalledError (a race)
        return False
    return True
