# -*- test-case-name: tests.test_realcom -*-
"""
TLS for every face of the box: Secure Real COM's data port, Secure TCP
Server and RFC 2217 data ports, and the web console's HTTPS.

Certificates: MOXA's driver is a TLS client that verifies nothing
(realcom.md §6.3), so a self-signed certificate is enough; it is generated
on first use (RSA 2048, SHA-256, which modern OpenSSL clients accept) and
stored beside the settings file so the box keeps one identity.  A
configured certificate (``realcom.pem`` with key and certificate) in the
state directory is used as it is.

Protocol (L{server_tls}): **TLS 1.2 only, no post-handshake message.**
MOXA's Real TTY daemon (npreal2d, SSL build) reads its data socket
non-blocking with C{SSL_read} and takes any read that yields no
application data as a closed connection.  A TLS 1.3 server sends its
session tickets (NewSessionTicket) right after the handshake: exactly such
a read, so the daemon dropped every session after PORT_INIT (issue 15).
With TLS 1.2 every handshake message, a session ticket included, comes
before the server's Finished; nothing follows it.  TLS 1.3 without tickets
would need C{SSL_CTX_set_num_tickets(0)}, which pyOpenSSL (26.4, the TLS
stack Twisted uses) does not expose: C{OP_NO_TICKET} and a disabled session
cache still send one ticket (benchmarks/tls_choice.py shows it, with the
figures that made the choice: one more round trip per connection, the same
CPU and throughput, docs/performance.md).  Renegotiation is refused too.
Optional client-certificate verification against a CA file (Secure TCP
Server, RFC 2217: C{tls_ca_file}).
"""

from __future__ import annotations

import datetime
import os
import stat
import tempfile
from typing import Any, Callable

from twisted.logger import Logger

from nport_twisted.config.store import atomic_write

_log = Logger()

CERT_FILE = "realcom.pem"


def generate_pem(common_name: str = "nport-twisted") -> bytes:
    """A new self-signed key + certificate in one PEM blob."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ) + cert.public_bytes(serialization.Encoding.PEM)


def certificate_path(state_dir: str | None) -> str:
    """
    The PEM file to serve, created if missing.  Without a state directory
    (no --config) it lives in a temporary directory for this run only.
    """
    if state_dir is None:
        state_dir = _private_temp_dir()
        _log.warn("no --config: the Secure Real COM certificate in {dir} is not kept with settings",
                  dir=state_dir)
    path = os.path.join(state_dir, CERT_FILE)
    if not os.path.exists(path):
        _log.info("generating a self-signed certificate (Secure Real COM, HTTPS) in {path}", path=path)
        atomic_write(path, generate_pem(), mode=0o600)
    return path


def _private_temp_dir() -> str:
    """
    C{$TMPDIR/nport-twisted-<uid>}, created private (0700).  The directory
    holds a private key, so one that another user could have planted or can
    write to (wrong owner, group/world access, a symlink) is not used: this
    run then gets a fresh private directory from C{mkdtemp}.
    """
    path = os.path.join(tempfile.gettempdir(), f"nport-twisted-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    try:
        st = os.lstat(path)
        safe = (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                and not st.st_mode & (stat.S_IRWXG | stat.S_IRWXO))
    except OSError:
        safe = False
    if not safe:
        _log.warn("{path} is not a private directory of this user; using a new one for this run",
                  path=path)
        path = tempfile.mkdtemp(prefix="nport-twisted-")
    return path


def tls_endpoint_options(state_dir: str | None) -> str:
    """
    The ``:privateKey=…:certKey=…`` suffix of an ``ssl:`` endpoint string.
    Every TLS listener is built through here, so this is where the TLS stack
    is loaded (L{nport_twisted._txinternals.enable_tls}).
    """
    from nport_twisted._txinternals import enable_tls

    enable_tls()
    # Escaped as twisted.internet.endpoints.quoteStringArgument does.
    path = certificate_path(state_dir).replace("\\", "\\\\").replace(":", "\\:")
    return f":privateKey={path}:certKey={path}"


def server_tls(state_dir: str | None, cert_file: str | None = None,
               ca_file: str | None = None) -> Any:
    """
    The server TLS settings of every listener of the box (a Twisted
    C{CertificateOptions}): TLS 1.2 only, no session tickets, no
    renegotiation (the module docstring says why), the key and certificate
    of C{cert_file} (a PEM holding both) or the box's own
    (L{certificate_path}).  With C{ca_file} (PEM, one or more CA
    certificates) a client must present a certificate those CAs signed.

    Loads the TLS stack (L{nport_twisted._txinternals.enable_tls}).

    @raise ValueError: naming the file, when a file cannot be read or holds
        no key, certificate or CA certificate.
    """
    from nport_twisted._txinternals import enable_tls

    enable_tls()
    from OpenSSL import SSL, crypto
    from twisted.internet import ssl as tssl

    path = cert_file if cert_file else certificate_path(state_dir)
    try:
        with open(path, "rb") as f:
            pem = f.read()
        own = tssl.PrivateCertificate.loadPEM(pem)
    except (OSError, crypto.Error, ValueError) as e:
        raise ValueError(f"TLS certificate {path}: cannot use it ({_why(e)}); it must be a PEM "
                         "file with the private key and the certificate") from None
    ca_certs = _load_ca(ca_file) if ca_file else None
    options = tssl.CertificateOptions(
        privateKey=own.privateKey.original, certificate=own.original,
        raiseMinimumTo=tssl.TLSVersion.TLSv1_2, lowerMaximumSecurityTo=tssl.TLSVersion.TLSv1_2,
        enableSessionTickets=False, verify=ca_certs is not None, caCerts=ca_certs,
        requireCertificate=True)
    # The context is built once and kept by the options: refuse renegotiation
    # (a server-side post-handshake exchange, and a CPU sink) on it.
    options.getContext().set_options(SSL.OP_NO_RENEGOTIATION)
    return options


def _load_ca(path: str) -> list[Any]:
    from cryptography import x509
    from OpenSSL import crypto

    try:
        with open(path, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError) as e:
        raise ValueError(f"tls_ca_file {path}: cannot read CA certificates ({_why(e)})") from None
    return [crypto.X509.from_cryptography(c) for c in certs]


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def tls_for(state_dir: str | None, ca_file: str = "") -> Callable[[], Any]:
    """L{server_tls} as a callable for L{nport_twisted.net.listener.ListenerService}'s C{tls}."""
    return lambda: server_tls(state_dir, ca_file=ca_file or None)
