# -*- test-case-name: tests.test_warning -*-
"""
Auto Warning e-mail (docs/monitoring.md, "Auto Warning"): a bounded queue
of messages sent one at a time through the configured SMTP server with
Twisted's ESMTP client.

  - STARTTLS whenever the server offers it; with C{mail_tls_verify} (the
    default) the certificate must match the server name, otherwise any
    certificate is taken (a plant relay with a self-signed one).
  - AUTH (CRAM-MD5, LOGIN or PLAIN) when C{mail_user} is set, and then only
    inside TLS: a password is never sent in the clear.
  - At most L{Mailer.max_queue} messages wait (the oldest is dropped and
    counted); a message that cannot be sent is retried with a backoff from
    30 s up to 15 min and given up after L{Mailer.max_age} seconds; a failed
    send is logged once per outage, and once when mail works again.
  - Nothing blocks: the connection is the reactor's (connect and idle
    timeouts), the host name is resolved by the reactor's resolver.

twisted.mail.smtp is imported on the first send: it imports the global
reactor, which must not happen before twistd has installed its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from io import BytesIO
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from nport_twisted.config.settings import AutoWarningSettings

__all__ = ["Mail", "Mailer"]

_BACKOFF_START = 30.0
_BACKOFF_MAX = 900.0


@attrs.frozen
class Mail:
    """One warning: subject and body text, and when it was made (POSIX time)."""

    subject: str
    body: str
    created: float


def render(mail: Mail, settings: AutoWarningSettings, domain: str = "nport") -> bytes:
    """The RFC 5322 message (UTF-8, quoted-printable where needed)."""
    # The email package is imported here, on the first message: it is about 1.5 MiB of
    # an idle process that sends no mail (docs/performance.md, "Memory").
    import email.utils
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = settings.mail_from
    msg["To"] = ", ".join(settings.mail_to)
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.formatdate(mail.created, usegmt=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to this
    msg.set_content(mail.body)
    return msg.as_bytes()


def _connect_tcp(reactor: Any, host: str, port: int, factory: Any, timeout: float) -> Any:
    return reactor.connectTCP(host, port, factory, timeout=timeout)


class Mailer:
    """
    Sends queued L{Mail}s with the settings C{settings()} gives at send time.

    @param connect: C{(host, port, factory, timeout)} -> connector (tests
        inject a fake; default the reactor's connectTCP).
    """

    _log = Logger()
    max_queue = 100
    max_age = 24 * 3600.0
    connect_timeout = 30.0
    idle_timeout = 60.0

    def __init__(self, reactor: Any, settings: Callable[[], AutoWarningSettings],
                 connect: Callable[[str, int, Any, float], Any] | None = None,
                 domain: str = "nport") -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self._settings = settings
        self._connect = connect if connect is not None else (
            lambda h, p, f, t: _connect_tcp(reactor, h, p, f, t))
        self.domain = domain
        self.queue: deque[Mail] = deque()
        self._sending: Deferred[Any] | None = None
        self._retry: Any = None
        self._backoff = _BACKOFF_START
        self._failing = False
        self.sent = 0
        self.dropped = 0
        self.failures = 0
        self.stopped = False

    def configured(self, settings: AutoWarningSettings | None = None) -> bool:
        s = settings if settings is not None else self._settings()
        return bool(s.mail_server and s.mail_from and s.mail_to)

    def submit(self, subject: str, body: str) -> bool:
        """Queue a message; False when mail is not configured (nothing queued)."""
        if self.stopped or not self.configured():
            return False
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                self._log.warn("auto warning mail: queue full ({size}); dropped the oldest "
                               "message ({dropped} so far)", size=self.max_queue,
                               dropped=self.dropped)
        self.queue.append(Mail(subject, body, self.clock.seconds()))
        self._pump()
        return True

    def stop(self) -> None:
        """Send nothing more; a running transaction is left to time out."""
        self.stopped = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    @property
    def busy(self) -> bool:
        return self._sending is not None

    def _pump(self) -> None:
        if self.stopped or self._sending is not None or self._retry is not None:
            return
        now = self.clock.seconds()
        while self.queue and now - self.queue[0].created > self.max_age:
            self.queue.popleft()
            self.dropped += 1
        if not self.queue:
            return
        settings = self._settings()
        if not self.configured(settings):
            self.queue.clear()  # mail was turned off: what waits would go nowhere
            return
        mail = self.queue[0]
        d = self._send(mail, settings)
        self._sending = d
        d.addCallbacks(self._sent, self._failed, callbackArgs=(settings,),
                       errbackArgs=(settings,))

    def _send(self, mail: Mail, s: AutoWarningSettings) -> Deferred[Any]:
        from twisted.internet import ssl
        from twisted.mail.smtp import ESMTPSenderFactory

        if s.mail_tls_verify:
            context = ssl.optionsForClientTLS(s.mail_server)
        else:
            context = ssl.CertificateOptions(verify=False)
        done: Deferred[Any] = Deferred()
        user = s.mail_user.encode("utf-8") if s.mail_user else None
        factory = ESMTPSenderFactory(
            user, s.mail_password.encode("utf-8") if user else None,
            s.mail_from, list(s.mail_to), BytesIO(render(mail, s, self.domain)), done,
            retries=0, timeout=self.idle_timeout, contextFactory=context,
            heloFallback=user is None, requireAuthentication=user is not None,
            requireTransportSecurity=user is not None)
        factory.domain = self.domain.encode("ascii", "replace")
        factory.noisy = False
        self._connect(s.mail_server, s.mail_port, factory, self.connect_timeout)
        return done

    def _sent(self, result: Any, settings: AutoWarningSettings) -> None:
        self._sending = None
        if self.queue:
            self.queue.popleft()
        self.sent += 1
        self._backoff = _BACKOFF_START
        if self._failing:
            self._failing = False
            self._log.info("auto warning mail: {server} accepts mail again",
                           server=settings.mail_server)
        self._pump()

    def _failed(self, f: Failure, settings: AutoWarningSettings) -> None:
        self._sending = None
        self.failures += 1
        if not self._failing:
            self._failing = True
            self._log.warn("auto warning mail: cannot send through {server}:{port}: {error}; "
                           "retrying (logged once until it works again)",
                           server=settings.mail_server, port=settings.mail_port,
                           error=f.getErrorMessage())
        if not self.stopped:
            self._retry = self.clock.callLater(self._backoff, self._retry_now)
            self._backoff = min(_BACKOFF_MAX, self._backoff * 2)

    def _retry_now(self) -> None:
        self._retry = None
        self._pump()
