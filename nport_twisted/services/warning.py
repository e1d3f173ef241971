# -*- test-case-name: tests.test_warning -*-
"""
Auto Warning (settings.md §7; docs/monitoring.md): the device events the
settings select, by e-mail (L{nport_twisted.services.mail.Mailer}) and as
SNMP traps (L{nport_twisted.services.snmp.TrapSender}).

  event                     mail setting             trap setting            trap
  cold start                mail_cold_start          trap_cold_start         coldStart
  warm start                mail_warm_start          trap_warm_start         warmStart
  authentication failure    mail_auth_failure        trap_auth_failure       authenticationFailure
  (web, API, telnet, SNMP)
  IP address changed        mail_ip_changed          trap_ip_changed         nptIpChanged
  password changed          mail_password_changed    trap_password_changed   nptPasswordChanged
  link down / up            mail_link_down           trap_link_down          linkDown / linkUp
  DCD changed on port n     n in mail_dcd_change     n in trap_dcd_change    nptModemLineChanged
  DSR changed on port n     n in mail_dsr_change     n in trap_dsr_change    nptModemLineChanged

The standard traps are SNMPv2-MIB's and IF-MIB's; MOXA's published MIBs
define no notifications for the others, so those are ours
(L{nport_twisted.services.snmp_mib.NPT_NOTIFICATIONS}).  Every trap also
carries nptEventText (the event in words).

The decisions are pure functions (L{wants_mail}, L{trap_for}); the
service only routes events to the senders.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from twisted.application import service
from twisted.logger import Logger

from nport_twisted.config.identity import resolve_identity
from nport_twisted.config.settings import AutoWarningSettings
from nport_twisted.events import (
    AuthFailure,
    ColdStart,
    Event,
    IPChanged,
    LinkChanged,
    ModemLineChanged,
    PasswordChanged,
    WarmStart,
    summary,
)
from nport_twisted.net.context import IDeviceContext
from nport_twisted.services.hostif import HostInterface, read_interfaces
from nport_twisted.services.mail import Mailer
from nport_twisted.services.snmp import TrapSender
from nport_twisted.wire.mib import OID, Value

__all__ = ["AutoWarningService", "trap_for", "wants_mail"]

# The notification OIDs (kept here too so that this module does not import
# the MIB builder; tests check they agree).
_STD: OID = (1, 3, 6, 1, 6, 3, 1, 1, 5)
_NPT: OID = (1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 1)
COLD_START: OID = _STD + (1,)
WARM_START: OID = _STD + (2,)
LINK_DOWN: OID = _STD + (3,)
LINK_UP: OID = _STD + (4,)
AUTH_FAILURE: OID = _STD + (5,)
NPT_IP_CHANGED: OID = _NPT + (2, 0, 1)
NPT_PASSWORD_CHANGED: OID = _NPT + (2, 0, 2)
NPT_MODEM_LINE_CHANGED: OID = _NPT + (2, 0, 3)
NPT_EVENT_TEXT = _NPT + (3, 1, 0)
NPT_EVENT_PORT = _NPT + (3, 2, 0)
NPT_EVENT_LINE = _NPT + (3, 3, 0)
NPT_EVENT_LINE_ON = _NPT + (3, 4, 0)
NPT_EVENT_INTERFACE = _NPT + (3, 5, 0)
NPT_EVENT_PEER = _NPT + (3, 6, 0)
IF_INDEX = (1, 3, 6, 1, 2, 1, 2, 2, 1, 1)
IF_ADMIN_STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 7)
IF_OPER_STATUS = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)


def wants_mail(event: Event, aw: AutoWarningSettings) -> bool:
    """Whether the settings ask for a mail about C{event}."""
    if isinstance(event, ColdStart):
        return aw.mail_cold_start
    if isinstance(event, WarmStart):
        return aw.mail_warm_start
    if isinstance(event, AuthFailure):
        return aw.mail_auth_failure
    if isinstance(event, IPChanged):
        return aw.mail_ip_changed
    if isinstance(event, PasswordChanged):
        return aw.mail_password_changed
    if isinstance(event, LinkChanged):
        return aw.mail_link_down and not event.up
    if isinstance(event, ModemLineChanged):
        ports = {"dcd": aw.mail_dcd_change, "dsr": aw.mail_dsr_change}.get(event.line, ())
        return event.port in ports
    return False


def trap_for(event: Event, aw: AutoWarningSettings,
             if_index: Callable[[str], HostInterface | None] = lambda name: None,
             ) -> tuple[OID, list[tuple[OID, Value]]] | None:
    """The trap (OID and variables) the settings ask for on C{event}, or None."""
    text: list[tuple[OID, Value]] = [(NPT_EVENT_TEXT, Value.octets(summary(event)))]
    if isinstance(event, ColdStart):
        return (COLD_START, text) if aw.trap_cold_start else None
    if isinstance(event, WarmStart):
        return (WARM_START, text) if aw.trap_warm_start else None
    if isinstance(event, AuthFailure):
        if not aw.trap_auth_failure:
            return None
        return AUTH_FAILURE, text + [(NPT_EVENT_PEER, Value.octets(event.peer))]
    if isinstance(event, IPChanged):
        if not aw.trap_ip_changed:
            return None
        return NPT_IP_CHANGED, text + [(NPT_EVENT_INTERFACE, Value.octets(event.interface))]
    if isinstance(event, PasswordChanged):
        return (NPT_PASSWORD_CHANGED, text) if aw.trap_password_changed else None
    if isinstance(event, LinkChanged):
        if not aw.trap_link_down:
            return None
        iface = if_index(event.interface)
        binds: list[tuple[OID, Value]] = []
        if iface is not None:  # IF-MIB linkDown/linkUp OBJECTS { ifIndex, ifAdminStatus, ifOperStatus }
            binds = [(IF_INDEX + (iface.index,), Value.integer(iface.index)),
                     (IF_ADMIN_STATUS + (iface.index,), Value.integer(1 if iface.admin_up else 2)),
                     (IF_OPER_STATUS + (iface.index,), Value.integer(1 if event.up else 2))]
        return (LINK_UP if event.up else LINK_DOWN), binds + text + [
            (NPT_EVENT_INTERFACE, Value.octets(event.interface))]
    if isinstance(event, ModemLineChanged):
        ports = {"dcd": aw.trap_dcd_change, "dsr": aw.trap_dsr_change}.get(event.line, ())
        if event.port not in ports:
            return None
        return NPT_MODEM_LINE_CHANGED, text + [
            (NPT_EVENT_PORT, Value.integer(event.port)),
            (NPT_EVENT_LINE, Value.octets(event.line)),
            (NPT_EVENT_LINE_ON, Value.integer(1 if event.on else 0))]
    return None


class AutoWarningService(service.Service):
    """Routes the device's events to mail and traps as the settings say."""

    _log = Logger()
    name = "auto-warning"

    def __init__(self, ctx: IDeviceContext, mailer: Mailer | None = None,
                 traps: TrapSender | None = None,
                 interfaces: Callable[[], list[HostInterface]] = read_interfaces) -> None:
        self.ctx = ctx
        self.mailer = mailer if mailer is not None else Mailer(
            ctx.reactor, lambda: ctx.config.auto_warning)
        self.traps = traps if traps is not None else TrapSender(ctx)
        self._interfaces = interfaces
        self._unsubscribe: Callable[[], None] | None = None

    def startService(self) -> None:
        super().startService()
        self.mailer.stopped = False
        self._unsubscribe = self.ctx.events.subscribe(self.event)

    def stopService(self) -> object:
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.mailer.stop()
        return self.traps.close()

    def _iface(self, name: str) -> HostInterface | None:
        for i in self._interfaces():
            if i.name == name:
                return i
        return None

    def event(self, when: float, event: Event) -> None:
        aw = self.ctx.config.auto_warning
        if wants_mail(event, aw):
            subject, body = self.message(when, event)
            self.mailer.submit(subject, body)
        trap = trap_for(event, aw, self._iface)
        if trap is not None:
            self.traps.send(*trap)

    def message(self, when: float, event: Event) -> tuple[str, str]:
        """Subject and body of the mail about C{event}."""
        ident = resolve_identity(self.ctx.config, len(self.ctx.ports))
        stamp = datetime.datetime.fromtimestamp(when, tz=datetime.timezone.utc)
        text = summary(event)
        location = self.ctx.config.basic.server_location or self.ctx.config.network.snmp_location
        lines = [
            "NPort Auto Warning",
            "",
            f"Event:     {text}",
            f"Time:      {stamp:%Y-%m-%d %H:%M:%S} UTC",
            f"Device:    {ident.server_name} ({ident.model.name}, serial number "
            f"{ident.serial_number}, MAC {ident.mac_text})",
        ]
        if location:
            lines.append(f"Location:  {location}")
        lines += ["", "Sent by nport-twisted because the Auto Warning settings ask for "
                  f"mail on this event ({event.kind})."]
        return f"[{ident.server_name}] {text}", "\n".join(lines) + "\n"
