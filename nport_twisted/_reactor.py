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
from typing import Any

from twisted.python import log

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # no epoll (not Linux): Twisted's default reactor is used
    EPollReactor = None  # type: ignore[assignment,misc]

__all__ = ["FastEPollReactor", "install", "install_default"]


if EPollReactor is not None:

    class FastEPollReactor(EPollReactor):
        """Twisted's epoll reactor, dispatching ready descriptors without C{callWithLogger}."""

        def doPoll(self, timeout: float | None) -> None:
            if timeout is None:
                timeout = -1  # wait indefinitely
            try:
                events = self._poller.poll(timeout, len(self._selectables))
            except InterruptedError:
                return
            selectables = self._selectables
            drdw = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                try:
                    drdw(selectable, fd, event)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    # _doReadOrWrite already logs and disconnects for errors in
                    # doRead/doWrite; this only catches errors in the
                    # disconnect itself (callWithLogger's last resort).
                    log.err(None, "error while dispatching an event")

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
