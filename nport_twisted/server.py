# -*- test-case-name: tests.test_server -*-
"""
The whole device: one L{PortService} per serial port (channel + the
front-end of its operating mode) under one L{NPortService}, which owns the
configuration, applies changes to the running ports and saves them.

Changing serial settings applies them to the live device; changing a port's
operating settings restarts only that port's front-end (its listeners and
connections), never the process or the other ports.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import attrs
from twisted.application import service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from nport_twisted._txinternals import chained
from nport_twisted.config.changes import describe_changes
from nport_twisted.config.settings import DeviceConfig, OpMode, OperatingSettings, PortConfig
from nport_twisted.config.store import SettingsStore
from nport_twisted.config.portmap import ServicePort, operating_ports, port_conflicts
from nport_twisted.device.adapter import Opener
from nport_twisted.device.channel import SerialChannel
from nport_twisted.events import EventPublisher
from nport_twisted.device.portbuffer import buffer_spec
from nport_twisted.net.context import IDeviceContext, IPortState
from nport_twisted.net.listener import ListenError, NetTable
from nport_twisted.net.session import PortContext

FrontendBuilder = Callable[[PortContext], service.IService]

#: The modes with port buffering (NPort 6000: TCP Server and Real COM).
BUFFERED_MODES = frozenset((OpMode.REAL_COM, OpMode.TCP_SERVER))


def disabled_frontend(ctx: PortContext) -> service.IService:
    """Disabled mode: no listener, the device is left closed."""
    return service.MultiService()


#: Operating mode -> "module:function" building its front-end services.  Imported
#: lazily so that twistd's plugin scan and --help stay cheap.
_FRONTENDS: dict[OpMode, str] = {
    OpMode.REAL_COM: "nport_twisted.modes.realcom:realcom_frontend",
    OpMode.TCP_SERVER: "nport_twisted.modes.tcpserver:tcp_server_frontend",
    OpMode.DISABLED: "nport_twisted.server:disabled_frontend",
    OpMode.RFC2217: "nport_twisted.modes.rfc2217:rfc2217_frontend",
    OpMode.TCP_CLIENT: "nport_twisted.modes.tcpclient:tcp_client_frontend",
    OpMode.UDP: "nport_twisted.modes.udp:udp_frontend",
    OpMode.PAIR_MASTER: "nport_twisted.modes.pair:pair_master_frontend",
    OpMode.PAIR_SLAVE: "nport_twisted.modes.pair:pair_slave_frontend",
    OpMode.ETHERNET_MODEM: "nport_twisted.modes.ethernet_modem:ethernet_modem_frontend",
    OpMode.REVERSE_TELNET: "nport_twisted.modes.reverse_telnet:reverse_telnet_frontend",
}


class FrontendBuilders(Mapping[OpMode, FrontendBuilder]):
    """
    The implemented operating modes (its keys, known without importing
    anything) and their front-end builders, each module imported the first
    time its mode is used: a process runs only the code of the modes it
    serves (docs/performance.md, "Memory").
    """

    def __init__(self, paths: Mapping[OpMode, str]) -> None:
        self._paths = dict(paths)
        self._loaded: dict[OpMode, FrontendBuilder] = {}

    def __getitem__(self, mode: OpMode) -> FrontendBuilder:
        builder = self._loaded.get(mode)
        if builder is None:
            module, _, name = self._paths[mode].partition(":")
            builder = self._loaded[mode] = getattr(importlib.import_module(module), name)
        return builder

    def __iter__(self) -> Iterator[OpMode]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, mode: object) -> bool:
        return mode in self._paths


def frontend_builders() -> FrontendBuilders:
    """The operating modes implemented so far and their front-end builders (imported on use)."""
    return FrontendBuilders(_FRONTENDS)


@implementer(IPortState)
class PortService(service.MultiService):
    """One serial port: its channel and the front-end of its operating mode."""

    _log = Logger()

    def __init__(self, ctx_factory: Callable[[SerialChannel, OperatingSettings], PortContext],
                 channel: SerialChannel, config: PortConfig,
                 builders: Mapping[OpMode, FrontendBuilder]) -> None:
        super().__init__()
        self.channel = channel
        self.config = config
        self._ctx_factory = ctx_factory
        self._builders = builders
        channel.setServiceParent(self)
        self.frontend: service.IService | None = None
        self._install_frontend(config.operating)

    @property
    def index(self) -> int:
        return self.channel.index

    def _install_frontend(self, operating: OperatingSettings) -> None:
        # Real COM opens the device per connection (unless port buffering keeps
        # it reading between hosts); Disabled leaves it alone.
        self.ctx = self._ctx_factory(self.channel, operating)
        buffering = (buffer_spec(operating.port_buffer_kib, operating.port_buffer_location,
                                 self.ctx.state_dir, f"port{self.channel.index + 1}")
                     if operating.mode in BUFFERED_MODES else None)
        self.channel.set_port_buffer(buffering)
        realcom_closed = operating.mode is OpMode.REAL_COM and buffering is None
        self.channel.set_keep_open(operating.mode is not OpMode.DISABLED and not realcom_closed)
        self.channel.set_presence_watch(realcom_closed)
        self.channel.ignore_jammed = operating.ignore_jammed
        self.channel.set_packing(operating.packing())
        builder = self._builders[operating.mode]
        self.frontend = builder(self.ctx)
        self.frontend.setServiceParent(self)

    def stop_frontend(self) -> Deferred[None]:
        """Stop the front-end (its listeners, then the connections it left attached)."""
        front, self.frontend = self.frontend, None
        d: Deferred[Any] = succeed(None)
        if front is not None:
            d = service.IService(front).disownServiceParent() or succeed(None)

        def stopped(_: object) -> None:
            # Stopping a listener keeps its accepted connections: close what
            # the old mode left attached, so no host keeps the old behaviour.
            self.channel.close_sessions()
        return d.addCallback(stopped)

    def start_frontend(self, operating: OperatingSettings) -> None:
        """
        Install and (if the port runs) start the front-end of C{operating}.
        Raises what a listener raised (L{ListenError}: the OS refused a
        port); the front-end then stays installed, for L{stop_frontend}.
        """
        self._install_frontend(operating)


class StartupFailed(SystemExit):
    """Start-up cannot go on; the reason was logged (critical) just before."""


class ApplyError(ValueError):
    """
    A configuration was not put in force; C{errors} maps each field at
    fault (as the JSON API names it, C{ports[0].operating.local_tcp_port})
    to the reason.
    """

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


#: Listener service names -> what a port conflict message calls them.
SERVICE_NAMES = {
    "web-http": "the web console (HTTP)",
    "web-https": "the web console (HTTPS)",
    "telnet-console": "the telnet console",
    "dsci": "the discovery service (DSCI)",
    "tcp4900-capture": "the TCP 4900 service",
}


@implementer(IDeviceContext)
class NPortService(service.MultiService):
    """The device: configuration, ports, and the shared network table (an L{IDeviceContext})."""

    _log = Logger()

    def __init__(self, reactor: Any, devices: list[str], config: DeviceConfig, store: SettingsStore,
                 opener: Opener, port_offset: int = 0, interface: str = "",
                 builders: Mapping[OpMode, FrontendBuilder] | None = None,
                 default_mode: OpMode = OpMode.REAL_COM, dsci_port: int | None = None,
                 run_blocking: Callable[[Callable[[], Any]], Deferred[Any]] | None = None,
                 events: EventPublisher | None = None) -> None:
        super().__init__()
        # The device's events (docs/monitoring.md): every layer publishes here.
        self.events = events if events is not None else EventPublisher(reactor)
        #: Runs slow file work (reading and parsing the settings file on
        #: SIGHUP) off the reactor thread; default: at once (tests).
        self.run_blocking = run_blocking if run_blocking is not None else maybeDeferred
        self._reloading: Deferred[None] | None = None
        self._reload_again = False
        self.default_mode = default_mode
        self.dsci_port = dsci_port  # None: 4800 + port offset
        self.reactor = reactor
        self.devices = devices
        self.config = config
        self.store = store
        self.port_offset = port_offset
        self.interface = interface
        self.net = NetTable(self.events)
        self.builders = builders if builders is not None else frontend_builders()
        self.ports: list[PortService] = []
        self.started_at = reactor.seconds()
        for index, (device, port) in enumerate(zip(devices, config.ports)):
            channel = SerialChannel(index, device, port.serial, reactor, opener,
                                    packing=port.operating.packing(), events=self.events)
            ps = PortService(self._context_factory(index), channel, port, self.builders)
            ps.setServiceParent(self)
            self.ports.append(ps)

    def startService(self) -> None:
        """
        Start every port and service.  A port the OS refuses at start-up
        ends the process with one critical line (the listener logged it,
        naming the port, the cause and the fix) and exit status 1, not a
        traceback; later refusals (a settings change) roll back instead.
        """
        try:
            super().startService()
        except ListenError:
            raise StartupFailed(1) from None

    @property
    def state_dir(self) -> str | None:
        return self.store.state_dir

    @property
    def settings_path(self) -> str | None:
        return self.store.path

    @property
    def implemented_modes(self) -> frozenset[OpMode]:
        return frozenset(self.builders)

    def endpoint(self, proto: str, port: int) -> str:
        """The endpoint string for one of our NPort ports, shifted by the port offset."""
        actual = port + self.port_offset
        if not 0 < actual < 65536:
            raise ValueError(f"port {port} + offset {self.port_offset} is outside 1-65535")
        desc = f"{proto}:{actual}"
        if self.interface:
            desc += ":interface=" + self.interface.replace(":", "\\:")
        return desc

    def _context_factory(self, index: int) -> Callable[[SerialChannel, OperatingSettings], PortContext]:
        def make(channel: SerialChannel, operating: OperatingSettings) -> PortContext:
            return PortContext(index=index, channel=channel, operating=operating,
                               reactor=self.reactor, endpoint=self.endpoint, net=self.net,
                               accessible=lambda: self.config.accessible_ip,
                               state_dir=self.store.state_dir)
        return make

    def service_ports(self) -> list[ServicePort]:
        """The ports the box's own services (web, telnet, DSCI, TCP 4900) listen on now."""
        return [ServicePort(l.proto, l.port, SERVICE_NAMES.get(l.name, l.name or "a service of this box"))
                for l in self.net.listeners if l.port_index is None]

    def port_conflicts(self, config: DeviceConfig) -> dict[str, str]:
        """The port settings of C{config} that collide (L{port_conflicts}), by field."""
        return port_conflicts(config, self.port_offset, self.service_ports())

    def apply_config(self, new: DeviceConfig) -> Deferred[None]:
        """
        Make C{new} the running configuration: per-port changes are applied
        live.  The port count is fixed by --ports.

        Nothing is touched when C{new} has a port conflict (L{ApplyError},
        raised at once).  When the operating system refuses a port while
        the changed front-ends start, every port goes back to its previous
        settings and the Deferred fails with L{ApplyError} naming the field.
        Changed front-ends are all stopped before any new one starts, so
        ports may trade numbers in one change.
        """
        if len(new.ports) != len(self.ports):
            raise ValueError(f"the configuration has {len(new.ports)} ports; this box runs "
                             f"{len(self.ports)} (--ports)")
        unsupported = [p.operating.mode for p in new.ports if p.operating.mode not in self.builders]
        if unsupported:
            raise ValueError(f"operating mode {unsupported[0].value} is not implemented yet")
        conflicts = self.port_conflicts(new)
        if conflicts:
            raise ApplyError(conflicts)
        old, self.config = self.config, new
        return self._put_in_force(old, new)

    def _put_in_force(self, old: DeviceConfig, new: DeviceConfig) -> Deferred[None]:
        if new.accessible_ip != old.accessible_ip:
            self.enforce_accessible()
        changed = [i for i, (a, b) in enumerate(zip(old.ports, new.ports)) if a.operating != b.operating]
        for ps, port in zip(self.ports, new.ports):
            if port.serial != ps.config.serial:
                self._log.info("{channel}: serial settings changed: {changes}",
                               channel=ps.channel.name,
                               changes=describe_changes(ps.config.serial, port.serial))
                ps.channel.apply_settings(port.serial)
            ps.config = port
        for i in changed:
            self._log.info("{channel}: operating settings changed: {changes}; restarting its "
                           "listeners", channel=self.ports[i].channel.name,
                           changes=describe_changes(old.ports[i].operating, new.ports[i].operating))

        def start(_: object) -> Deferred[None] | None:
            errors = self._start_frontends(new, changed)
            if not errors:
                return None
            return self._roll_back(old, changed, errors)

        return self._stop_frontends(changed).addCallback(start)

    def enforce_accessible(self) -> int:
        """
        Apply the running accessible IP list to open connections: every
        gate (serial ports, TCP 4900, consoles) closes, and logs, those no
        longer allowed.  Returns how many were closed.
        """
        closed = 0
        for gate in list(self.net.gates):
            closed += gate.enforce_accessible()
        return closed

    def _stop_frontends(self, indexes: list[int]) -> Deferred[Any]:
        return DeferredList([self.ports[i].stop_frontend() for i in indexes], consumeErrors=True)

    def _start_frontends(self, config: DeviceConfig, indexes: list[int]) -> dict[str, str]:
        errors: dict[str, str] = {}
        for i in indexes:
            operating = config.ports[i].operating
            try:
                self.ports[i].start_frontend(operating)
            except Exception as e:  # ListenError (the OS refused a port), or a bug: roll back
                if not isinstance(e, ListenError):
                    self._log.failure("port{n}: starting its front-end failed", n=i + 1)
                errors[self._refused_field(i, operating, e)] = f"port {i + 1}: {e}"
        return errors

    def _refused_field(self, index: int, operating: OperatingSettings, error: Exception) -> str:
        """The setting of the port the OS refused (by its number), else the port's mode."""
        refused = getattr(error, "port", None)
        for use in operating_ports(operating, index):
            if use.port + self.port_offset == refused:
                return use.path
        return f"ports[{index}].operating.mode"

    def _roll_back(self, old: DeviceConfig, changed: list[int], errors: dict[str, str]) -> Deferred[None]:
        self._log.error("settings not put in force, restoring the previous ones: {errors}",
                        errors="; ".join(errors.values()))
        self.config = old
        for ps, port in zip(self.ports, old.ports):
            if port.serial != ps.config.serial:
                ps.channel.apply_settings(port.serial)
            ps.config = port

        def restart(_: object) -> None:
            failed = self._start_frontends(old, changed)
            if not failed:
                raise ApplyError({k: f"{v}; the previous settings are back in force"
                                  for k, v in errors.items()})
            # Someone took an old port meanwhile: say so, loudly.
            self._log.critical("the previous settings could not be restored either: {errors}",
                               errors="; ".join(failed.values()))
            raise ApplyError({**errors, **{k: f"{v} (the previous settings could not be "
                                             "restored either)" for k, v in failed.items()}})
        return self._stop_frontends(changed).addCallback(restart)

    def reload(self) -> Deferred[None]:
        """
        Re-read the settings file (SIGHUP) and apply it.  A bad file is
        logged with the key at fault and the running configuration is kept.
        The file is read and parsed with L{run_blocking} (a thread in the
        service), so a large file never stalls the ports; one larger than
        the store's limit is refused unread.  A file without C{[password]
        hash} keeps the running password.  A SIGHUP during a reload
        reloads once more after it.
        """
        if self._reloading is not None:
            self._reload_again = True
            return chained(self._reloading)
        keep = self.config.password

        def load() -> DeviceConfig:
            return self.store.load(self.default_mode, keep_password=keep)

        def loaded(config: DeviceConfig) -> Deferred[None] | None:
            if config.password == keep:  # not changed by the file: the password in force now
                config = attrs.evolve(config, password=self.config.password)
            return self._loaded(config)

        d: Deferred[None] = self.run_blocking(load).addCallbacks(loaded, self._not_loaded)
        self._reloading = d

        def done(result: object) -> object:
            self._reloading = None
            if self._reload_again:
                self._reload_again = False
                self.reload()
            return result

        d.addBoth(done)
        return chained(d)

    def _not_loaded(self, f: Failure) -> None:
        from nport_twisted._exceptions import ConfigError
        f.trap(ConfigError)
        self._log.error("settings not reloaded, keeping the running ones: {error}", error=f.value)

    def _loaded(self, loaded: DeviceConfig) -> Deferred[None] | None:
        new = attrs.evolve(loaded, identity=self.config.identity).with_port_count(
            len(self.ports), self.default_mode)
        if not new.password.is_set and self.config.password.is_set:
            self._log.warn("settings file {path} sets no password ([password] hash is empty): "
                           "the console password is removed", path=self.store.path)
        try:
            d = self.apply_config(new)
        except ValueError as e:
            self._log.error("settings not reloaded, keeping the running ones: {error}", error=e)
            return None

        def done(_: object) -> None:
            self._log.info("settings reloaded from {path}", path=self.store.path)

        def refused(f: Failure) -> None:
            f.trap(ApplyError)
            self._log.error("settings not reloaded, keeping the running ones: {error}",
                            error=f.value)
        return d.addCallbacks(done, refused)

    def save(self, config: DeviceConfig | None = None) -> None:
        """Write C{config} (default: the running configuration) to the settings file (atomic)."""
        self.store.save(self.config if config is None else config)

    def update_port(self, index: int, **changes: Any) -> Deferred[None]:
        """Convenience for consoles: change some fields of one port's settings."""
        port = self.config.ports[index]
        serial = {k: v for k, v in changes.items() if hasattr(port.serial, k)}
        operating = {k: v for k, v in changes.items() if k not in serial}
        new_port = attrs.evolve(port, serial=attrs.evolve(port.serial, **serial),
                                operating=attrs.evolve(port.operating, **operating))
        return self.apply_config(self.config.replace_port(index, new_port))
