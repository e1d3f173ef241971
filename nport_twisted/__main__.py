# -*- test-case-name: tests.test_runner -*-
"""
``python -m nport_twisted [options]`` and the ``nport-twisted`` console
script: run the service in the foreground, as ``twist nport [options]``
does, with the plugin's options only (``--help`` lists them) and logs on
stdout (text unless ``--log-format json``).

It runs the service with Twist's own runner
(C{twisted.application.runner._runner.Runner}, what C{twist} uses) but
without C{twist}'s option parser: that one scans every Twisted plugin when
it is imported (reactors, service makers, and through them the interfaces
of trial, cred and words), several MiB of an idle process
(docs/performance.md, "Memory").  So this also runs where twistd's plugin
cache is not writable.  C{twist nport} and C{twistd nport} still work.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run the service; C{argv} without the program name (default: sys.argv[1:])."""
    from nport_twisted._lazyimports import defer_unused_imports

    defer_unused_imports()  # before Twisted is imported: idle memory (docs/performance.md)
    from nport_twisted.tap import Options

    args = list(sys.argv[1:] if argv is None else argv)
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    Options.prog = "nport-twisted" if name == "nport-twisted" else "python -m nport_twisted"
    run(Options(), args)


def runner_settings() -> dict[str, Any]:
    """
    What C{twist}'s options hold for its runner, with C{twist}'s defaults:
    the parent of our options, which set the log observer in it
    (L{nport_twisted.logs.configure_runner_logging}).
    """
    from twisted.logger import LogLevel, textFileLogObserver

    return {"reactorName": "default", "logLevel": LogLevel.info, "logFile": sys.stdout,
            "fileLogObserverFactory": textFileLogObserver, "logFormat": "text"}


def release_free_memory() -> bool:
    """
    Hand the C heap's free pages back to the system (glibc's C{malloc_trim}),
    once, when the service is up: start-up (imports, option and settings
    parsing) leaves about 1 MiB freed but still resident.  True when it was
    done; False where there is no glibc (nothing else changes).
    """
    try:
        import ctypes  # imported already: Twisted's filepath uses it

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0) >= 0)
    except (ImportError, OSError, AttributeError):
        return False


def run(options: Any, args: Sequence[str], tapname: str = "nport") -> None:
    """
    Parse C{args} into C{options} (L{nport_twisted.tap.Options}) and run the
    service as C{Twist.main} does: make it, start it under an Application,
    stop it before the reactor shuts down, run the reactor through Twist's
    C{Runner} (log observer, log level, "Starting reactor") and, after a
    signal stopped it, exit by that signal.
    """
    parent = runner_settings()
    options.parent = parent
    options.parseOptions(list(args))  # usage errors exit 64 (Options.parseOptions)
    from twisted.application.runner._runner import Runner
    from twisted.application.service import Application, IService
    from twisted.internet import reactor  # ours, installed by Options.postOptions
    from twisted.internet.interfaces import _ISupportsExitSignalCapturing

    from nport_twisted.tap import makeService

    application = Application(tapname)
    makeService(options).setServiceParent(application)
    service = IService(application)
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.callWhenRunning(release_free_memory)
    Runner(reactor=reactor, defaultLogLevel=parent["logLevel"], logFile=parent["logFile"],
           fileLogObserverFactory=parent["fileLogObserverFactory"]).run()
    if _ISupportsExitSignalCapturing.providedBy(reactor) and reactor._exitSignal is not None:
        from twisted.application.app import _exitWithSignal  # only now: it imports pdb and more

        _exitWithSignal(reactor._exitSignal)

if __name__ == "__main__":
    main()
