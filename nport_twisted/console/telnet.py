# -*- test-case-name: tests.test_telnet_console -*-
"""
The telnet console on TCP 23 (+ --port-offset; C{--telnet-port P}, 0 = off):
a thin protocol over the sans-IO terminal (L{nport_twisted.console.terminal})
and menu (L{nport_twisted.console.menu}), on the admitted-session base.

Wire behaviour (docs/telnet-console.md):

  connect  -> IAC WILL ECHO, WILL SGA, WILL BINARY, DO ECHO, DO BINARY;
              the banner (CR NUL LF line ends); "Please keyin your password:"
              (no password yet: the web console's one-time setup token flow)
  a line   -> the menu's answer; Save/Restart, password checks and ping run
              outside the reactor's way and the answer follows
  idle     -> closed after L{IDLE_TIMEOUT} s without input

Admission (L{nport_twisted.net.session.Gate}): the accessible IP list (a
refused host is disconnected before anything is sent), at most
L{MAX_SESSIONS} sessions at once; the Basic setting "Telnet console" off
answers one line and closes.  Passwords and setup tokens share the web
login's rate limiter (the same counters per client address); three wrong
answers in one session close it.  While the client does not read what we
send, we stop reading from it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.console.menu import (
    ChangePassword,
    ConsoleMenu,
    Effect,
    FactoryDefault,
    Login,
    Outcome,
    Output,
    Ping,
    SaveRestart,
    Setup,
)
from nport_twisted.console.terminal import Line, Terminal, to_wire
from nport_twisted.net.context import IDeviceContext
from nport_twisted.net.listener import ListenerService
from nport_twisted.net.session import AdmittedSession, Gate
from nport_twisted.web import forms
from nport_twisted.web.base import wait_text
from nport_twisted.web.console import PASSWORD_NOT_SAVED, SaveError, WebConsole, applied_text
from nport_twisted.web.forms import FieldErrors

TELNET_PORT = 23
IDLE_TIMEOUT = 300.0  # ours: MOXA's console timeout is not documented
MAX_SESSIONS = 4  # ours
PING_TIMEOUT = 20.0
PING_OUTPUT_LIMIT = 16 * 1024

_log = Logger()


# -- ping -------------------------------------------------------------------------------------


class _PingProcess(ProcessProtocol):
    """The system's ping; its output goes to the client as it comes, bounded."""

    def __init__(self, write: Callable[[bytes], None], done: Deferred[Outcome]) -> None:
        self._write = write
        self._done = done
        self._sent = 0

    def outReceived(self, data: bytes) -> None:
        room = PING_OUTPUT_LIMIT - self._sent
        if room > 0:
            data = data[:room]
            self._sent += len(data)
            self._write(to_wire(data.decode("utf-8", "replace")))

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        if not self._done.called:
            self._done.callback(Outcome(code == 0, "" if code in (0, 1) else "Ping failed."))

    def stop(self) -> None:
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - already gone
            pass


class PingRunner:
    """
    Runs C{ping -c 4 -w 10 HOST} (iputils and inetutils both read these),
    at most L{PING_TIMEOUT} s; says so when the system has no ping.
    """

    def __init__(self, reactor: Any, command: str | None = "ping") -> None:
        self.reactor = reactor
        self.path = shutil.which(command) if command else None

    def run(self, host: str, write: Callable[[bytes], None]) -> tuple[Deferred[Outcome], Any]:
        """(the outcome, a handle with C{stop()})."""
        done: Deferred[Outcome] = Deferred()
        if self.path is None:
            done.callback(Outcome(False, "Ping is not available on this system (no ping command)."))
            return done, None
        proto = _PingProcess(write, done)
        env = {"PATH": os.defpath, "LC_ALL": "C"}
        try:
            self.reactor.spawnProcess(proto, self.path, [self.path, "-c", "4", "-w", "10", host],
                                      env=env)
        except Exception as e:  # noqa: BLE001 - OSError, or a reactor without processes
            _log.warn("telnet console: cannot start {path}: {error}", path=self.path, error=e)
            done.callback(Outcome(False, "Ping could not be started on this system."))
            return done, None
        timer: IDelayedCall = self.reactor.callLater(PING_TIMEOUT, proto.stop)

        def ended(outcome: Outcome) -> Outcome:
            if timer.active():
                timer.cancel()
            return outcome

        return done.addCallback(ended), proto


# -- the session ------------------------------------------------------------------------------


class TelnetConsoleSession(AdmittedSession):
    """One telnet console connection: terminal codec in, menu, effects run here."""

    # A client that does not read our answers stops being read (the base's
    # rule for request/reply faces: paused, dropped when it stays jammed).
    bounded_replies = True

    def __init__(self, factory: TelnetConsoleFactory) -> None:
        super().__init__(factory.gate)
        self.factory = factory
        self.console = factory.console
        self.terminal = Terminal()
        self.menu: ConsoleMenu | None = None
        self._closing = False
        self.ping_process: Any = None

    def admitted(self) -> None:
        self.send(self.terminal.greeting())
        if not self.console.running.basic.telnet_console:
            self.send(to_wire("\nThe telnet console is disabled (Basic settings).\n"))
            self._close()
            return
        self.menu = ConsoleMenu(self.console, self.peer)
        self._show(self.menu.start())

    def received(self, data: bytes) -> None:
        self.touch()
        lines, reply = self.terminal.feed(data)
        if reply:
            self.send(reply)
        if lines:
            # Through the base's per-turn budget: one 64 KiB read of empty
            # lines in a submenu once meant 32,768 menu redraws (54 MB of
            # replies, seconds of reactor time) before anything else ran.
            self.handle_events(lines, self._line)

    def _line(self, line: Line, out: list[bytes]) -> None:
        # A dropped client (too many unsent replies) gets no more answers.
        if self._closing or self._aborted or self.menu is None:
            return
        if line.cancelled and self.ping_process is not None:
            self.ping_process.stop()  # ^C ends a ping, as on a shell
        self._show(self.menu.line(line.text, line.cancelled))

    def closed(self, reason: Failure) -> None:
        if self.ping_process is not None:
            self.ping_process.stop()

    def timeoutConnection(self) -> None:
        self.send(to_wire("\nNo input for a while: closing the console.\n"))
        super().timeoutConnection()

    def _close(self) -> None:
        self._closing = True
        self.transport.loseConnection()

    def _show(self, out: Output) -> None:
        if out.text:
            self.send(to_wire(out.text))
        self.terminal.secret = out.secret
        if out.close:
            self._close()
        elif out.effect is not None:
            self._run(out.effect)

    def _run(self, effect: Effect) -> None:
        d = self.factory.actions.run(effect, self)

        def done(outcome: Outcome) -> None:
            self.ping_process = None
            if self.is_admitted and not self._closing and self.menu is not None:
                self._show(self.menu.result(outcome))

        def failed(f: Failure) -> None:
            _log.failure("telnet console: {effect} failed", f, effect=type(effect).__name__)
            done(Outcome(False, "The action failed; see the service log."))

        d.addCallbacks(done, failed)


class ConsoleActions:
    """
    Runs the menu's effects on the console state shared with the web
    console: the same password, setup token and login rate limiter.
    """

    def __init__(self, console: WebConsole, ping: PingRunner) -> None:
        self.console = console
        self.ping = ping

    def run(self, effect: Effect, session: TelnetConsoleSession) -> Deferred[Outcome]:
        peer = session.peer
        if isinstance(effect, Ping):
            d, session.ping_process = self.ping.run(effect.host, session.send)
            return d
        if isinstance(effect, SaveRestart):
            return self._applied(self.console.save_restart, "")
        if isinstance(effect, FactoryDefault):
            return self._applied(lambda: self.console.factory_default(effect.keep_network),
                                 "Factory defaults loaded")
        wait = self.console.login_wait(peer)
        if wait > 0:
            return succeed(Outcome(False, wait_text(wait).capitalize() + ".",
                                   close=not session.menu or not session.menu.logged_in))
        if isinstance(effect, Login):
            return self.console.check_password(effect.password, peer).addCallback(self._login, peer)
        if isinstance(effect, Setup):
            return self._setup(effect, peer)
        return self._change_password(effect, peer)

    def _login(self, ok: bool, peer: str) -> Outcome:
        if not ok:
            self.console.login_failed(peer, "telnet")
            _log.warn("telnet console: failed login from {peer}", peer=peer)
            return Outcome(False, "Password incorrect.")
        self.console.limiter.succeeded(peer)
        _log.info("telnet console: login from {peer}", peer=peer)
        return Outcome(True)

    def _setup(self, effect: Setup, peer: str) -> Deferred[Outcome]:
        if not self.console.claim_setup_token(effect.token.strip()):
            self.console.login_failed(peer, "telnet", "wrong setup token")
            _log.warn("telnet console: wrong setup token from {peer}", peer=peer)
            return succeed(Outcome(False, "Wrong setup token (it is printed in the service log "
                                          "at start-up)."))
        self.console.limiter.succeeded(peer)
        _log.info("telnet console: first password set from {peer}", peer=peer)
        return self.console.first_password(effect.password, "telnet", peer).addCallbacks(
            lambda saved: Outcome(True, "Password set." + ("" if saved else " " + PASSWORD_NOT_SAVED)),
            _save_failed)

    def _change_password(self, effect: ChangePassword, peer: str) -> Deferred[Outcome]:
        def checked(ok: bool) -> Deferred[Outcome] | Outcome:
            if not ok:
                self.console.login_failed(peer, "telnet", "wrong old password")
                _log.warn("telnet console: wrong old password from {peer}", peer=peer)
                return Outcome(False, "Wrong old password: not changed.")
            self.console.limiter.succeeded(peer)
            return self.console.set_password(effect.new, service="telnet", peer=peer).addCallbacks(
                lambda saved: Outcome(True, "Password changed; web sessions were logged out."
                                      + ("" if saved else " " + PASSWORD_NOT_SAVED)),
                _save_failed)

        return self.console.check_password(effect.old, peer).addCallback(checked)

    def _applied(self, apply: Callable[[], Deferred[bool]], what: str) -> Deferred[Outcome]:
        try:
            d = apply()
        except FieldErrors as e:
            return succeed(Outcome(False, _refused(e.errors)))

        def failed(f: Failure) -> Outcome:
            if isinstance(f.value, FieldErrors):
                return Outcome(False, _refused(f.value.errors))
            f.trap(SaveError)
            return Outcome(False, _sentence(str(f.value)))

        return d.addCallbacks(lambda saved: Outcome(True, applied_text(bool(saved), what)), failed)


def _sentence(text: str) -> str:
    """C{text} as a sentence: first letter upper case, the rest as written (paths, names)."""
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _save_failed(f: Failure) -> Outcome:
    f.trap(SaveError)
    return Outcome(False, _sentence(str(f.value)))


def _refused(errors: dict[str, str]) -> str:
    lines = [f"  {forms.describe_field(k) + ': ' if k != '_form' else ''}{v}" for k, v in errors.items()]
    return "Not put in force (nothing was changed):\n" + "\n".join(lines)


class TelnetConsoleFactory(Factory):
    """Builds the sessions of one telnet console listener."""

    noisy = False

    def __init__(self, server: IDeviceContext, console: WebConsole, ping: PingRunner | None = None,
                 idle_timeout: float = IDLE_TIMEOUT, limit: int = MAX_SESSIONS) -> None:
        self.console = console
        self.gate = Gate("telnet console", server.reactor, lambda: server.config.accessible_ip,
                         net=server.net, limit=limit, idle_timeout=idle_timeout, nodelay=True,
                         kind="telnet session")
        self.actions = ConsoleActions(console, ping if ping is not None else PingRunner(server.reactor))

    def buildProtocol(self, addr: Any) -> TelnetConsoleSession:
        return TelnetConsoleSession(self)


def telnet_services(server: IDeviceContext, console: WebConsole, port: int = TELNET_PORT,
                    ping: PingRunner | None = None) -> list[service.IService]:
    """
    The telnet console of C{server} on TCP C{port} (+ the port offset, on
    its interface), sharing C{console}'s state with the web console.
    """
    console.telnet_served = True
    listener = ListenerService(server.reactor, server.endpoint("tcp", port),
                               TelnetConsoleFactory(server, console, ping), server.net, None)
    listener.setName("telnet-console")
    return [listener]


__all__ = [
    "ConsoleActions",
    "PingRunner",
    "TelnetConsoleFactory",
    "TelnetConsoleSession",
    "telnet_services",
]
