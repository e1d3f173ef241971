# -*- test-case-name: tests.test_warning -*-
"""
Tests for Auto Warning: which events make mails and traps
(L{nport_twisted.services.warning}), the mailer against Twisted's own ESMTP
server on 127.0.0.1 (STARTTLS, AUTH only inside TLS, retries, one log line
per outage, the bounded queue), start events and the host network watch.
"""

from __future__ import annotations

import email
import os
from ipaddress import IPv4Address
from email import policy
from typing import Any

import attrs
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.mail import imap4, smtp
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from nport_twisted.config.identity import InterfaceAddress
from nport_twisted.config.settings import AutoWarningSettings
from nport_twisted.config.tls import generate_pem
from nport_twisted.events import (
    AuthFailure,
    ColdStart,
    ConnectionOpened,
    Event,
    IPChanged,
    LinkChanged,
    ModemLineChanged,
    PasswordChanged,
    WarmStart,
)
from nport_twisted.services.hostif import HostInterface, IfCounters
from nport_twisted.services.mail import Mailer
from nport_twisted.services.netwatch import NetWatch, StartEvents, start_kind
from nport_twisted.services.warning import (
    AUTH_FAILURE,
    COLD_START,
    LINK_DOWN,
    NPT_MODEM_LINE_CHANGED,
    AutoWarningService,
    trap_for,
    wants_mail,
)
from tests.monitor_util import make_server

ALL_MAIL = AutoWarningSettings(
    mail_cold_start=True, mail_warm_start=True, mail_auth_failure=True, mail_ip_changed=True,
    mail_password_changed=True, mail_link_down=True, mail_dcd_change=(1,), mail_dsr_change=(2,))
ALL_TRAPS = AutoWarningSettings(
    trap_cold_start=True, trap_warm_start=True, trap_auth_failure=True, trap_ip_changed=True,
    trap_password_changed=True, trap_link_down=True, trap_dcd_change=(1,), trap_dsr_change=(2,))


class DecisionTests(SynchronousTestCase):
    EVENTS: list[Event] = [
        ColdStart(), WarmStart(), AuthFailure("web", "10.0.0.1"), IPChanged("eth0", (), ("a",)),
        PasswordChanged("web"), LinkChanged("eth0", False), ModemLineChanged(1, "dcd", True),
        ModemLineChanged(2, "dsr", False)]

    def test_nothing_by_default(self) -> None:
        """Factory settings send no mail and no trap."""
        for event in self.EVENTS:
            self.assertFalse(wants_mail(event, AutoWarningSettings()))
            self.assertIsNone(trap_for(event, AutoWarningSettings()))

    def test_each_setting(self) -> None:
        """Each mail/trap setting selects its event; per-port lists select by port and line."""
        for event in self.EVENTS:
            self.assertTrue(wants_mail(event, ALL_MAIL), event)
            self.assertIsNotNone(trap_for(event, ALL_TRAPS), event)
        for other in (ModemLineChanged(2, "dcd", True), ModemLineChanged(1, "dsr", True),
                      ModemLineChanged(1, "cts", True), LinkChanged("eth0", True),
                      ConnectionOpened(1, "h", 1, 2)):
            self.assertFalse(wants_mail(other, ALL_MAIL), other)

    def test_trap_oids_and_variables(self) -> None:
        """Standard traps for standard events; linkDown carries IF-MIB's objects."""
        trap = trap_for(ColdStart(), ALL_TRAPS)
        assert trap is not None
        self.assertEqual(trap[0], COLD_START)
        trap = trap_for(AuthFailure("snmp", "10.9.9.9"), ALL_TRAPS)
        assert trap is not None
        self.assertEqual(trap[0], AUTH_FAILURE)
        iface = HostInterface(3, "eth0", 1500, 100, b"", True, False, False, IfCounters())
        trap = trap_for(LinkChanged("eth0", False), ALL_TRAPS, lambda name: iface)
        assert trap is not None
        self.assertEqual(trap[0], LINK_DOWN)
        self.assertEqual(trap[1][0][0], (1, 3, 6, 1, 2, 1, 2, 2, 1, 1, 3))
        trap = trap_for(ModemLineChanged(1, "dcd", False), ALL_TRAPS)
        assert trap is not None
        self.assertEqual(trap[0], NPT_MODEM_LINE_CHANGED)


@implementer(smtp.IMessageDelivery)
class Delivery:
    """Collects delivered messages; C{arrived(n)} fires when n are there."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.tls: list[bool] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: by the test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        return origin

    def validateTo(self, user: Any) -> Any:
        return lambda: _Message(self)

    def got(self, raw: bytes) -> None:
        self.messages.append(email.message_from_bytes(raw, policy=policy.default))  # type: ignore[arg-type]
        for n, d in list(self.waiting):
            if len(self.messages) >= n:
                self.waiting.remove((n, d))
                d.callback(None)

    def arrived(self, n: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.messages) >= n:
            d.callback(None)
        else:
            self.waiting.append((n, d))
        return d.addTimeout(20, reactor)


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[None]:
        self.delivery.got(b"\n".join(self.lines) + b"\n")
        return succeed(None)

    def connectionLost(self) -> None:
        pass


@implementer(IRealm)
class _Realm:
    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        return smtp.IMessageDelivery, self.delivery, lambda: None


class _Tracked(smtp.ESMTP):
    server: SmtpServer

    def connectionLost(self, reason: Any = None) -> None:
        super().connectionLost(reason)
        self.server.open -= 1


class SmtpServer:
    """Twisted's ESMTP server on 127.0.0.1, optionally with STARTTLS and AUTH."""

    def __init__(self, tls: bool = False, users: dict[bytes, bytes] | None = None) -> None:
        self.delivery = Delivery()
        self.open = 0
        context = ssl.PrivateCertificate.loadPEM(generate_pem("mail.test")).options() if tls else None
        server = self

        class Factory(smtp.SMTPFactory):
            def buildProtocol(self, addr: Any) -> Any:
                p = _Tracked(contextFactory=context)
                p.server = server
                server.open += 1
                p.factory = self
                p.portal = self.portal
                p.host = b"mail.test"
                if users is None:
                    p.delivery = server.delivery
                    p.challengers = {}
                else:
                    p.challengers = {b"LOGIN": imap4.LOGINCredentials,
                                     b"PLAIN": imap4.PLAINCredentials}
                return p
        portal = None
        if users is not None:
            portal = Portal(_Realm(self.delivery),
                            [InMemoryUsernamePasswordDatabaseDontUse(**{
                                k.decode(): v for k, v in users.items()})])
        self.factory = Factory(portal)
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")

    @property
    def number(self) -> int:
        return int(self.port.getHost().port)

    def stop(self) -> Any:
        """Stop listening once every client has hung up (bounded)."""
        return _until(lambda: self.open == 0).addBoth(lambda _: self.port.stopListening())


def mail_settings(port: int, **more: Any) -> AutoWarningSettings:
    return AutoWarningSettings(mail_server="127.0.0.1", mail_port=port,
                               mail_from="nport@plant.example", mail_to=("ops@plant.example",),
                               **more)


class MailerTests(TestCase):
    """The mailer over real TCP to Twisted's ESMTP server."""

    @inlineCallbacks
    def test_plain_delivery(self) -> Any:
        """Without TLS offered and no user, the mail goes in plain SMTP, headers intact."""
        server = SmtpServer()
        self.addCleanup(server.stop)
        mailer = Mailer(reactor, lambda: mail_settings(server.number))
        self.assertTrue(mailer.submit("[NP] cold start", "Event: cold start\n"))
        yield server.delivery.arrived(1)
        msg = server.delivery.messages[0]
        self.assertEqual(msg["Subject"], "[NP] cold start")
        self.assertEqual(msg["To"], "ops@plant.example")
        self.assertEqual(msg["Auto-Submitted"], "auto-generated")
        self.assertIn("Event: cold start", msg.get_content())
        yield _until(lambda: mailer.sent == 1 and not mailer.busy)

    @inlineCallbacks
    def test_starttls_and_auth(self) -> Any:
        """STARTTLS when offered, then AUTH with the configured user (self-signed: no verify)."""
        server = SmtpServer(tls=True, users={b"nport": b"s3cret"})
        self.addCleanup(server.stop)
        mailer = Mailer(reactor, lambda: mail_settings(
            server.number, mail_user="nport", mail_password="s3cret", mail_tls_verify=False))
        mailer.submit("subject", "body")
        yield server.delivery.arrived(1)
        self.assertEqual(server.delivery.messages[0]["Subject"], "subject")

    @inlineCallbacks
    def test_no_auth_without_tls(self) -> Any:
        """With a user set and no STARTTLS on the server, nothing is sent: no password in clear."""
        server = SmtpServer(tls=False, users={b"nport": b"s3cret"})
        self.addCleanup(server.stop)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        mailer = Mailer(reactor, lambda: mail_settings(
            server.number, mail_user="nport", mail_password="s3cret"))
        mailer.submit("subject", "body")
        yield _until(lambda: mailer.failures == 1)
        mailer.stop()
        self.assertEqual(server.delivery.messages, [])
        self.assertTrue(any("cannot send" in e.get("log_format", "") for e in observer))
        self.flushLoggedErrors()


def _until(predicate: Any, timeout: float = 20.0) -> Deferred[None]:
    from tests.e2e_util import poll_until
    return poll_until(predicate, timeout, what="the mailer")


class MailerRetryTests(SynchronousTestCase):
    """Retries, the once-per-outage log and the bound, on a fake connector and clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.factories: list[Any] = []
        self.settings = mail_settings(25)
        self.mailer = Mailer(self.clock, lambda: self.settings,
                             connect=lambda h, p, f, t: self.factories.append(f))
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def refuse(self) -> None:
        factory = self.factories[-1]
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))

    def warnings(self) -> int:
        return len([e for e in self.observer if "cannot send" in e.get("log_format", "")])

    def test_retry_with_backoff_and_log_once(self) -> None:
        """A refused connection is retried after 30 s, then 60 s …; logged once for the outage."""
        self.mailer.submit("a", "b")
        self.refuse()
        self.assertEqual(len(self.factories), 1)
        self.clock.advance(29)
        self.assertEqual(len(self.factories), 1)
        self.clock.advance(1)
        self.assertEqual(len(self.factories), 2)
        self.refuse()
        self.clock.advance(59)
        self.assertEqual(len(self.factories), 2)
        self.clock.advance(1)
        self.assertEqual(len(self.factories), 3)
        self.refuse()
        self.assertEqual(self.warnings(), 1)
        self.assertEqual(len(self.mailer.queue), 1)
        self.flushLoggedErrors()

    def test_queue_bounded(self) -> None:
        """While the server is down at most max_queue messages wait; the oldest go first."""
        for i in range(self.mailer.max_queue + 50):
            self.mailer.submit(f"m{i}", "b")
        self.assertEqual(len(self.mailer.queue), self.mailer.max_queue)
        self.assertEqual(self.mailer.dropped, 50)
        self.assertEqual(self.mailer.queue[-1].subject, f"m{self.mailer.max_queue + 49}")

    def test_old_messages_given_up(self) -> None:
        """A message older than max_age is dropped instead of being retried forever."""
        self.mailer.submit("old", "b")
        for _ in range(200):
            if self.factories and not self.mailer.busy:
                break
            self.refuse()
            self.clock.advance(900)
        self.clock.advance(self.mailer.max_age)
        for _ in range(5):
            if self.mailer.busy:
                self.refuse()
            self.clock.advance(900)
        self.assertEqual(len(self.mailer.queue), 0)
        self.flushLoggedErrors()

    def test_not_configured(self) -> None:
        """Without server, sender or recipients nothing is queued."""
        self.settings = AutoWarningSettings()
        self.assertFalse(self.mailer.submit("a", "b"))
        self.assertEqual(self.factories, [])


class FakeTraps:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, oid: Any, binds: Any = ()) -> Deferred[bool]:
        self.sent.append((oid, list(binds)))
        return succeed(True)

    def close(self) -> Deferred[None]:
        return succeed(None)


class ServiceTests(SynchronousTestCase):
    def test_routes_events(self) -> None:
        """The service mails and traps exactly what the settings select."""
        clock = Clock()
        server, _ = make_server(self, clock, auto_warning=attrs.evolve(
            mail_settings(25), mail_auth_failure=True, trap_cold_start=True))
        sent: list[tuple[str, str]] = []

        class FakeMailer(Mailer):
            def submit(self, subject: str, body: str) -> bool:
                sent.append((subject, body))
                return True
        traps = FakeTraps()
        svc = AutoWarningService(server, FakeMailer(clock, lambda: server.config.auto_warning),
                                 traps)  # type: ignore[arg-type]
        svc.startService()
        server.events.publish(ColdStart("host booted"))
        server.events.publish(AuthFailure("web", "10.0.0.3", reason="wrong password"))
        server.events.publish(WarmStart())
        self.assertEqual([t[0] for t in traps.sent], [COLD_START])
        self.assertEqual(len(sent), 1)
        self.assertIn("authentication failure on web from 10.0.0.3", sent[0][0])
        self.assertIn("Device:", sent[0][1])
        svc.stopService()
        server.events.publish(ColdStart())
        self.assertEqual(len(traps.sent), 1)


class StartEventTests(SynchronousTestCase):
    def test_start_kind(self) -> None:
        """Another boot id: cold; the same: warm; unknown: cold only on a freshly booted host."""
        self.assertIsInstance(start_kind("b", "a", 99999), ColdStart)
        self.assertIsInstance(start_kind("a", "a", 5), WarmStart)
        self.assertIsInstance(start_kind("a", None, 5), ColdStart)
        self.assertIsInstance(start_kind("a", None, 9999), WarmStart)
        self.assertIsInstance(start_kind(None, None, None), WarmStart)

    def test_remembers_the_boot(self) -> None:
        """The first start after a boot is cold, the next warm (boot id kept in the state dir)."""
        state = self.mktemp()
        os.makedirs(state)
        boot = os.path.join(state, "boot_id")
        with open(boot, "w") as f:
            f.write("boot-1\n")
        with open(os.path.join(state, ".boot_id"), "w") as f:
            f.write("boot-0\n")  # what the service saw before the host rebooted
        uptime = os.path.join(state, "uptime")
        with open(uptime, "w") as f:
            f.write("99999.0 1.0\n")
        server, _ = make_server(self, Clock())
        got: list[Event] = []
        server.events.subscribe(lambda when, e: got.append(e))

        class Ctx:
            state_dir = state
            events = server.events
        for _ in range(2):
            StartEvents(Ctx(), boot, uptime).startService()  # type: ignore[arg-type]
        self.assertEqual(got, [ColdStart("host booted"), WarmStart("service restarted")])


class NetWatchTests(SynchronousTestCase):
    def test_link_and_address_changes(self) -> None:
        """The first poll learns; later polls publish link down/up and address changes."""
        clock = Clock()
        server, _ = make_server(self, clock)
        got: list[Event] = []
        server.events.subscribe(lambda when, e: got.append(e))
        up = [True]
        addrs = [[InterfaceAddress(2, "eth0", IPv4Address("10.0.0.2"), 24)]]

        def interfaces() -> list[HostInterface]:
            return [HostInterface(1, "lo", 0, 0, b"", True, True, True, IfCounters()),
                    HostInterface(2, "eth0", 1500, 0, b"", True, up[0], False, IfCounters())]
        watch = NetWatch(server, 5.0, interfaces, lambda: addrs[0])
        watch.startService()
        self.assertEqual(got, [])
        up[0] = False
        addrs[0] = []
        clock.advance(5)
        self.assertEqual(got, [LinkChanged("eth0", False), IPChanged("eth0", ("10.0.0.2/24",), ())])
        up[0] = True
        clock.advance(5)
        self.assertEqual(got[-1], LinkChanged("eth0", True))
        watch.stopService()
