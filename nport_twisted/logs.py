# -*- test-case-name: tests.test_logs -*-
"""
Log output for the runners: readable text by default (also when stdout is
not a terminal, as under journald or ``docker logs``), JSON when asked.

C{twist} picks JSON whenever stdout is not a terminal and shows Twisted's
per-listener chatter (C{SessionFactory starting on 950}, C{(TCP Port 950
Closed)}), which says nothing an operator can use: the service logs its own
start-up summary instead (L{nport_twisted.services.startup}).  So under
twist (and C{python -m nport_twisted}, which runs twist) the plugin's
C{--log-format} chooses the observer, unless twist's own C{--log-format}
was given, and that chatter is filtered out.

Under twistd, C{--log-format json} sets twistd's C{--logger} to
L{json_stdout}; text stays twistd's own observer (its C{--logfile} and
rotation untouched).
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any, Callable, Sequence

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogEvent,
    PredicateResult,
    formatEvent,
    jsonFileLogObserver,
    textFileLogObserver,
)
from zope.interface import provider

__all__ = ["configure_runner_logging", "json_stdout", "quiet_twisted", "text_stdout"]

_NOISE = re.compile(r"^(\S+ starting on \d+|\((TCP|UDP) Port \d+ Closed\)|"
                    r"(Starting|Stopping) (factory|protocol) .*|\S+ starting on '?[^ ]+'?)$", re.DOTALL)


def quiet_twisted(event: LogEvent) -> PredicateResult:
    """Drop Twisted's own listener start/stop lines (legacy log.msg events)."""
    if event.get("log_namespace") == "log_legacy" and not event.get("isError"):
        text = event.get("log_text")
        if text is None:
            text = " ".join(str(m) for m in event.get("message", ()))
        if _NOISE.match(str(text)):
            return PredicateResult.no  # type: ignore[no-any-return]  # constantly has no types
    return PredicateResult.maybe  # type: ignore[no-any-return]


def _filtered(make: Callable[[IO[Any]], ILogObserver]) -> Callable[[IO[Any]], ILogObserver]:
    def factory(out: IO[Any]) -> ILogObserver:
        return FilteringLogObserver(make(out), [quiet_twisted])  # type: ignore[list-item]
    return factory


def json_lines_observer(out: IO[Any]) -> ILogObserver:
    """
    One JSON object per line, with the rendered message in C{text}.

    Twisted's own JSON observer starts every record with an RS character
    (RFC 7464 JSON text sequences), which line-oriented shippers (jq without
    C{--seq}, Vector, Fluent Bit, Promtail) reject, and leaves the message
    as C{log_format} plus fields for the reader to render.
    """
    inner = jsonFileLogObserver(out, recordSeparator="")

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        rendered = dict(event)
        rendered["text"] = formatEvent(event)
        inner(rendered)

    observer: ILogObserver = observe  # provider() is untyped
    return observer


text_observer = _filtered(textFileLogObserver)
json_observer = _filtered(json_lines_observer)


def text_stdout() -> ILogObserver:
    """A C{twistd --logger}: text on stdout, without Twisted's listener chatter."""
    return text_observer(sys.stdout)


def json_stdout() -> ILogObserver:
    """A C{twistd --logger}: one JSON object per line on stdout (L{json_lines_observer})."""
    return json_observer(sys.stdout)


def _twist_format_given(argv: Sequence[str], tapname: str = "nport") -> bool:
    """
    Whether twist's own C{--log-format} came before the plugin name on the
    command line (twist keeps no record of an explicit choice: its default
    sets the same keys).
    """
    for arg in argv[1:]:
        if arg == tapname:
            return False
        if arg == "--log-format" or arg.startswith("--log-format="):
            return True
    return False


def configure_runner_logging(options: Any, log_format: str, argv: Sequence[str] | None = None) -> None:
    """
    Make the runner that parsed C{options} (the plugin's options; their
    C{parent} is the runner's) log in C{log_format}.  No runner (tests,
    library use): nothing to do.
    """
    parent = getattr(options, "parent", None)
    if parent is None:
        return
    argv = sys.argv if argv is None else argv
    if "fileLogObserverFactory" in parent:  # twist (also under python -m nport_twisted)
        if _twist_format_given(argv) and getattr(options, "prog", None) is None:
            chosen = jsonFileLogObserver if parent.get("logFormat") == "json" else textFileLogObserver
            parent["fileLogObserverFactory"] = _filtered(chosen)
        else:
            parent["fileLogObserverFactory"] = json_observer if log_format == "json" else text_observer
            parent["logFormat"] = log_format
    elif "logger" in parent and log_format == "json" and parent.get("logger") is None:
        parent["logger"] = "nport_twisted.logs.json_stdout"  # twistd resolves it after us
