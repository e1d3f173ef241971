# -*- test-case-name: tests.test_realcom -*-
"""
Certificates for Secure Real COM (and later HTTPS).

MOXA's driver is a TLS client that verifies nothing (realcom.md §6.3), so a
self-signed certificate is enough; it is generated on first use (RSA 2048,
SHA-256, which modern OpenSSL clients accept) and stored beside the
settings file so the box keeps one identity.  A configured certificate
(``realcom.pem`` with key and certificate) in the state directory is used
as it is.
"""

from __future__ import annotations

import datetime
import os
import stat
import tempfile

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
