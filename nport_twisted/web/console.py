# -*- test-case-name: tests.test_web -*-
"""
The web console's state and actions, shared by the HTML pages, the JSON
API and the classic C{Set.htm} handler: the pending configuration, the
password, sessions, rate limiting and the live status of the ports.

Settings changes made in the console go to a I{pending} configuration, as
on an NPort, where a setting takes effect after Save/Restart.
L{WebConsole.save_restart} applies the pending configuration to the running
ports (live, no process restart: serial settings are set on the open
device, a changed operating mode restarts only that port's listeners) and
writes the settings file.  The password is the exception: a new password
takes effect and is saved at once.
"""

from __future__ import annotations

import os

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from nport_twisted.config.identity import DeviceIdentity, resolve_identity, uptime
from nport_twisted.config.settings import DeviceConfig, OpMode, PasswordSettings
from nport_twisted.net.context import IDeviceContext
from nport_twisted.events import AuthFailure, PasswordChanged
from nport_twisted.services.history import History
from nport_twisted.web.auth import LoginLimiter, SessionStore, new_token, same_token
from nport_twisted.web.forms import (
    Field,
    FieldErrors,
    check_modes,
    refused_notes,
    refused_settings,
    to_json,
)
from nport_twisted.web.forms import field_help as forms_field_help

#: Password length limits of this console (ours: MOXA allowed 1-16 characters).
MIN_PASSWORD = 8
MAX_PASSWORD = 128


def check_new_password(
    password: str, again: str | None = None, field: str = "new_password"
) -> None:
    """@raise FieldErrors: when C{password} is too short/long or the two entries differ."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise FieldErrors({field: f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"})
    if any(ord(c) < 0x20 or c == "\x7f" for c in password):
        raise FieldErrors({field: "must not contain control characters"})
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise FieldErrors({field: "must not contain lone surrogates (not valid Unicode text)"}) from None
    if again is not None and again != password:
        raise FieldErrors({"new_password2": "the two passwords differ"})


class SaveError(Exception):
    """
    The settings file could not be written (the message says what is in
    force: Save/Restart's settings are, a new password is not).  Every save path (Save/Restart, factory default, import, password,
    first-start password) raises this one error; the pages, 09Set.htm and
    the JSON API all answer it the same way: HTTP 507 and, in the API,
    C{"error": "save_failed"} (never a 500: nothing broke, the disk said no).
    """

    status = 507  # Insufficient Storage: the server cannot store what is needed
    code = "save_failed"


class HashGate:
    """
    The scrypt work of the console, bounded: at most C{max_running} hashes
    at once (each takes 16 MiB and a thread) and at most C{max_pending}
    running or queued; L{full} tells callers to refuse further attempts
    instead of queueing them without limit.
    """

    def __init__(self, run: Callable[[Callable[[], Any]], Deferred[Any]], max_running: int = 2,
                 max_pending: int = 8) -> None:
        from twisted.internet.defer import DeferredSemaphore

        self._run = run
        self._sem = DeferredSemaphore(max_running)
        self.max_running = max_running
        self.max_pending = max_pending

    @property
    def pending(self) -> int:
        """Hashes running or waiting for a slot."""
        return self.max_running - self._sem.tokens + len(self._sem.waiting)

    @property
    def full(self) -> bool:
        return self.pending >= self.max_pending

    def run(self, f: Callable[[], Any]) -> Deferred[Any]:
        return self._sem.run(self._run, f)


def save_error(lead: str, path: str | None, error: OSError) -> SaveError:
    """The one message of a failed save: what happened, the file, the cause and the fix."""
    reason = error.strerror or str(error)
    directory = os.path.dirname(os.path.abspath(path)) if path else "the settings directory"
    return SaveError(
        f"{lead}: the settings file could not be written ({path}: {reason}). "
        f"Fix: make {directory} writable by the service's user (systemd: StateDirectory=; "
        f"containers: a writable volume there), then save again")


#: What a Save/Restart (or factory default) says; only "saved" when the file was written.
SAVED = "Save/Restart OK: the settings are in force and saved."
NOT_SAVED = "Applied, not saved: no --config (the settings are in force until the service stops)."


PASSWORD_NOT_SAVED = "Not saved: no --config, so it is lost when the service stops."


def applied_text(saved: bool, what: str = "") -> str:
    """The truthful outcome of an apply-and-save: C{what} ("Factory defaults loaded") first."""
    if what:
        return f"{what}, in force and saved." if saved else f"{what}: {NOT_SAVED[0].lower()}{NOT_SAVED[1:]}"
    return SAVED if saved else NOT_SAVED


def run_in_thread(reactor: Any) -> Callable[[Callable[[], Any]], Deferred[Any]]:
    """A runner for the slow password hashing: the reactor's thread pool."""
    from twisted.internet.threads import deferToThreadPool

    def run(f: Callable[[], Any]) -> Deferred[Any]:
        return deferToThreadPool(reactor, reactor.getThreadPool(), f)

    return run


def run_now(f: Callable[[], Any]) -> Deferred[Any]:
    """A runner that calls at once (tests)."""
    return maybeDeferred(f)


class WebConsole:
    """
    What the console shows and does, for one L{NPortService}.

    @param run_blocking: runs the scrypt hashing off the reactor thread
        (default: the reactor's thread pool).
    """

    _log = Logger()

    def __init__(
        self,
        server: IDeviceContext,
        run_blocking: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
        identity: Callable[[DeviceConfig, int], DeviceIdentity] | None = None,
    ) -> None:
        self.server = server
        self.clock = server.reactor
        self.sessions = SessionStore(self.clock)
        self.limiter = LoginLimiter(self.clock)
        self.hashing = HashGate(
            run_blocking if run_blocking is not None else run_in_thread(server.reactor)
        )
        self._identity = (
            identity
            if identity is not None
            else (lambda config, count: resolve_identity(config, count))
        )
        self._pending: DeviceConfig | None = None
        #: Which management consoles this box serves (web_services/telnet_services set
        #: them): turning off the last one that is served is refused.
        self.web_served = True
        self.telnet_served = False
        #: The Monitor's 15-minute history (web_services makes it); None: not kept.
        self.history: History | None = None
        self.setup_token: str | None = None
        self._claimed: str | None = None
        if not self.password_set:
            self.setup_token = new_token(12)

    # -- start-up -------------------------------------------------------------------------------

    def announce(self) -> None:
        """Log the setup token while no password is set (called when the web service starts)."""
        if self.password_set:
            self.setup_token = None
            return
        if self.setup_token is None:
            self.setup_token = new_token(12)
        self._log.warn(
            "web console: no password is set. Open the web (or telnet) console and set one "
            "with the one-time setup token {token} (valid until a password is set or the "
            "service restarts)",
            token=self.setup_token,
        )

    # -- configuration ---------------------------------------------------------------------------

    @property
    def implemented(self) -> frozenset[OpMode]:
        return self.server.implemented_modes

    @property
    def running(self) -> DeviceConfig:
        return self.server.config

    @property
    def pending(self) -> DeviceConfig:
        """The configuration being edited: the running one until something was changed."""
        return self._pending if self._pending is not None else self.running

    @property
    def has_pending(self) -> bool:
        return self._pending is not None and self._comparable(self._pending) != self._comparable(
            self.running
        )

    def _comparable(self, config: DeviceConfig) -> DeviceConfig:
        return attrs.evolve(config, password=self.running.password, identity=self.running.identity)

    def set_pending(self, config: DeviceConfig) -> None:
        """
        Make C{config} the pending configuration.

        @raise FieldErrors: when a port uses a mode this version lacks, when
            it would turn off the last management console, or when a port
            setting collides with another port (named as the JSON API names
            fields: C{ports[0].operating.local_tcp_port}; see L{localized}).
        """
        check_modes(config, self.implemented)
        self.check_consoles(config)
        conflicts = self.server.port_conflicts(config)
        if conflicts:
            raise FieldErrors(conflicts)
        self._pending = config

    def check_consoles(self, config: DeviceConfig) -> None:
        """@raise FieldErrors: when C{config} leaves no management console (web, telnet) on."""
        basic = config.basic
        web = basic.web_console and self.web_served
        telnet = basic.telnet_console and self.telnet_served
        if web or telnet:
            return
        before = self.pending.basic  # blame the console this change turns off
        if before.telnet_console and not basic.telnet_console and not (
            before.web_console and not basic.web_console
        ):
            field, other = "telnet_console", "the web console"
        else:
            field, other = "web_console", "the telnet console"
        served = self.telnet_served if field == "web_console" else self.web_served
        why = "is off" if served else "is not served (see --telnet-port / --http-port)"
        raise FieldErrors(
            {field: f"refused: this would leave no management console ({other} {why})"}
        )

    def discard(self) -> None:
        self._pending = None

    def save_restart(self) -> Deferred[bool]:
        """
        Apply the pending configuration to the running ports and save it
        (the password and identity are always the running ones).  Fires
        with whether the settings file was written (False without
        --config: see L{applied_text}).

        @raise FieldErrors: when the service refuses the configuration
            before touching it (a port conflict); the Deferred fails with
            FieldErrors when the OS refused a port (everything was rolled
            back, the changes stay pending) and with L{SaveError} when the
            file could not be written.
        """
        from nport_twisted.server import ApplyError

        pending = self._pending
        new = self._comparable(self.pending)
        self.check_consoles(new)
        try:
            d: Deferred[None] = self.server.apply_config(new)
        except ApplyError as e:
            raise FieldErrors(e.errors) from None
        except ValueError as e:
            raise FieldErrors({"_form": str(e)}) from None
        self._pending = None

        def refused(f: Any) -> Any:
            f.trap(ApplyError)
            if self._pending is None:
                self._pending = pending  # nothing is in force: keep the changes to correct
            raise FieldErrors(f.value.errors)

        def saved(_: object) -> bool:
            if self.server.settings_path is None:
                self._log.info("web console: settings applied; not saved (no --config)")
                return False
            try:
                self.server.save()
            except OSError as e:
                error = save_error("the settings are in force but not saved",
                                   self.server.settings_path, e)
                self._log.error("web console: {error}", error=error)
                raise error from None
            self._log.info("web console: settings applied and saved")
            return True

        return d.addCallbacks(saved, refused)

    def factory_default(self, keep_network: bool) -> Deferred[bool]:
        """
        Factory settings (ports in the service's default mode), keeping the
        identity, the password and, if asked, the network settings; applied
        and saved at once.
        """
        running = self.running
        fresh = DeviceConfig().with_port_count(len(running.ports), self.server.default_mode)
        fresh = attrs.evolve(
            fresh,
            identity=running.identity,
            password=running.password,
            network=running.network if keep_network else fresh.network,
        )
        previous, self._pending = self._pending, fresh
        try:
            return self.save_restart()
        except FieldErrors:
            self._pending = previous
            raise

    # -- password --------------------------------------------------------------------------------

    @property
    def password_set(self) -> bool:
        return bool(self.running.password.is_set)

    def login_wait(self, peer: str) -> float:
        """
        Seconds C{peer} must wait before a password attempt is checked: its
        own rate limit (attempts in flight included), or 1 s while the
        hashing queue is full (L{HashGate}).
        """
        wait = self.limiter.wait_time(peer)
        if wait <= 0 and self.hashing.full:
            return 1.0
        return wait

    def check_password(self, password: str, peer: str | None = None) -> Deferred[bool]:
        """
        Whether C{password} is the console password (scrypt, off the reactor
        thread).  With C{peer} the attempt counts against that address's
        rate limit while it is being checked.
        """
        stored: PasswordSettings = self.running.password
        if peer is None:
            return self.hashing.run(lambda: stored.verify(password))
        self.limiter.begin(peer)

        def over(result: Any) -> Any:
            self.limiter.end(peer)
            return result

        return self.hashing.run(lambda: stored.verify(password)).addBoth(over)

    def claim_setup_token(self, token: str) -> bool:
        """
        Whether C{token} is the setup token; a right one is spent at once, so
        two clients cannot both set the first password.
        """
        if (
            self.setup_token is None
            or self.password_set
            or not same_token(token, self.setup_token)
        ):
            return False
        self._claimed, self.setup_token = self.setup_token, None
        return True

    def first_password(self, password: str, service: str = "web", peer: str = "") -> Deferred[bool]:
        """Set the first password after L{claim_setup_token}; the token returns if that fails."""

        def failed(f: Any) -> Any:
            if not self.password_set:
                self.setup_token = self._claimed
            return f

        return self.set_password(password, service=service, peer=peer).addErrback(failed)

    def login_failed(self, peer: str, service: str = "web", reason: str = "wrong password",
                     user: str = "") -> None:
        """
        A failed password or setup-token attempt from C{peer} on C{service}
        ("web", "api", "telnet"): counted by the login limiter and published
        as an L{AuthFailure} (Auto Warning, syslog).
        """
        self.limiter.failed(peer)
        self.server.events.publish(AuthFailure(service, peer, user, reason))

    def set_password(self, password: str, keep_session: str | None = None,
                     service: str = "web", peer: str = "") -> Deferred[bool]:
        """
        Hash and store C{password}, in force and saved at once; every other
        session ends and the setup token is spent.  Fires with whether it
        was written to the settings file (False without --config).  A
        L{PasswordChanged} naming C{service} and C{peer} is published.
        """

        def store(hashed: PasswordSettings) -> bool:
            # Saved first, in force only once saved: a password that exists
            # only in memory would vanish at the next restart.
            new = attrs.evolve(self.server.config, password=hashed)
            if self.server.settings_path is None:
                self._log.warn("web console: no --config, so the password is lost at restart")
            try:
                self.server.save(new)
            except OSError as e:
                error = save_error("the password was not changed", self.server.settings_path, e)
                self._log.error("web console: {error}", error=error)
                raise error from None
            self.server.apply_config(new)
            self.setup_token = None
            self.sessions.drop_all(keep=keep_session)
            self._log.info("web console: password changed")
            self.server.events.publish(PasswordChanged(service, peer))
            return self.server.settings_path is not None

        d: Deferred[PasswordSettings] = self.hashing.run(
            lambda: PasswordSettings.from_password(password)
        )
        return d.addCallback(store)

    # -- status ----------------------------------------------------------------------------------

    def identity(self) -> DeviceIdentity:
        return self._identity(self.running, len(self.server.ports))

    def uptime(self) -> float:
        return uptime(self.server.started_at, self.clock.seconds())

    def device_json(self) -> dict[str, Any]:
        ident = self.identity()
        return {
            "model": ident.model.name,
            "server_name": ident.server_name,
            "server_location": self.running.basic.server_location,
            "mac": ident.mac_text,
            "serial_number": ident.serial_number,
            "firmware": ident.firmware,
            "uptime_s": int(self.uptime()),
            "port_count": len(self.server.ports),
        }

    def port_status(self, index: int) -> dict[str, Any]:
        """Live state of port C{index} (0-based): mode, peers, counters, modem lines, settings."""
        port = self.server.ports[index]
        channel = port.channel
        net = self.server.net
        modem = channel.modem
        settings = channel.actual_settings or channel.effective_settings
        return {
            "port": index + 1,
            "device": channel.device,
            "mode": port.config.operating.mode.value,
            "open": bool(channel.is_open),
            "listeners": [
                f"{proto}/{number}"
                for proto, number in sorted(
                    {(l.proto, l.port) for l in net.listeners if l.port_index == index}
                )
            ],
            "peers": [
                f"{c.remote_host}:{c.remote_port}"
                for c in net.connections
                if c.port_index == index
            ],
            "sessions": len(channel.sessions),
            "buffered": channel.buffered_bytes,  # port buffering
            "counters": attrs.asdict(channel.stats),
            "modem": None
            if modem is None
            else {"cts": modem.cts, "dsr": modem.dsr, "dcd": modem.dcd, "ri": modem.ri},
            "settings": to_json(settings),
            "settings_in_force": channel.actual_settings is not None,
            # What was asked for (the configured settings, or a Real COM host's) and
            # what the device did not take (a pty refuses parity and data bits).
            "requested": to_json(channel.effective_settings),
            "refused": refused_settings(channel.effective_settings, channel.actual_settings),
        }

    def serial_notes(self, index: int) -> dict[str, str]:
        """"requested 7, in force 8" for port C{index}'s settings the device did not take."""
        channel = self.server.ports[index].channel
        return refused_notes(channel.effective_settings, channel.actual_settings)

    def field_help(self, field: Field, index: int | None = None) -> str:
        """C{field}'s help on port C{index}, with the real port numbers (offset included)."""
        return forms_field_help(field, index, self.server.port_offset)

    def status_json(self) -> dict[str, Any]:
        return {
            "uptime_s": int(self.uptime()),
            "pending": self.has_pending,
            "ports": [self.port_status(i) for i in range(len(self.server.ports))],
        }
