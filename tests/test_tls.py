"""
Tests for L{nport_twisted.config.tls}: the box's TLS faces give MOXA's SSL
driver nothing to read after the handshake (TLS 1.2, no tickets), and
Secure TCP Server / RFC 2217 may ask for client certificates.

The client of these tests is L{nport_twisted.testing.moxa_tls_probe}, which
connects and reads like MOXA's Real TTY daemon in secure mode (npreal2d),
run in a thread beside the reactor serving the port.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
from typing import Any

from OpenSSL import SSL
from twisted.application import service
from twisted.internet import defer, threads
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings, OpMode, SerialSettings
from nport_twisted.config.tls import generate_pem, server_tls
from nport_twisted.device.channel import SerialChannel
from nport_twisted.net.listener import ListenError, ListenerService, NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.testing import FakeSerialDevice, TlsProbe, moxa_tls_probe
from tests.e2e_util import poll_until

TLS12_CIPHER = "ECDHE-RSA-AES256-GCM-SHA384"


class _Echo(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def make_ca(directory: str) -> tuple[str, Any]:
    """A CA certificate file in C{directory} and a function issuing client PEMs (key + cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_path = _write(os.path.join(directory, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))

    def issue(name: str) -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .sign(ca_key, hashes.SHA256()))
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        return _write(os.path.join(directory, f"{name}.pem"),
                      pem + cert.public_bytes(serialization.Encoding.PEM))
    return ca_path, issue


class _ReactorTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.state_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.state_dir)

    def listen(self, factory: Any, tls: Any) -> int:
        """Listen on a free loopback port with C{tls}; return the port."""
        listener = ListenerService(self.reactor, "tcp:0:interface=127.0.0.1", factory, tls=tls)
        listener.startService()
        self.addCleanup(listener.stopService)
        assert listener.port is not None
        return int(listener.port.getHost().port)

    def probe(self, port: int, **kwargs: Any) -> defer.Deferred[TlsProbe]:
        return threads.deferToThread(moxa_tls_probe, "127.0.0.1", port, **kwargs)


class ServerTlsTests(_ReactorTestCase):
    """What L{server_tls} negotiates, and that the probe notices the ticket problem."""

    @defer.inlineCallbacks
    def test_probe_notices_tls13_tickets(self) -> Any:
        """A plain Twisted TLS listener (TLS 1.3, tickets) fails MOXA's read: the probe can fail."""
        from twisted.internet import endpoints

        pem = _write(os.path.join(self.state_dir, "k.pem"), generate_pem())
        port = yield endpoints.serverFromString(
            self.reactor, f"ssl:0:interface=127.0.0.1:privateKey={pem}:certKey={pem}"
        ).listen(Factory.forProtocol(_Echo))
        self.addCleanup(port.stopListening)
        result = yield self.probe(port.getHost().port)
        self.assertEqual(result.version, "TLSv1.3")
        self.assertIn("no data", result.failure or "")

    @defer.inlineCallbacks
    def test_tls12_nothing_after_handshake(self) -> Any:
        """server_tls: TLS 1.2, an ECDHE AES-GCM suite, nothing after the handshake, data flows."""
        port = self.listen(Factory.forProtocol(_Echo), lambda: server_tls(self.state_dir))
        result = yield self.probe(port, send=b"ping", expect=4)
        self.assertEqual((result.version, result.cipher, result.failure, result.data),
                         ("TLSv1.2", TLS12_CIPHER, None, b"ping"))

    @defer.inlineCallbacks
    def test_tls13_only_client_refused(self) -> Any:
        """A client that insists on TLS 1.3 cannot connect (the server offers 1.2 only)."""
        port = self.listen(Factory.forProtocol(_Echo), lambda: server_tls(self.state_dir))

        def connect() -> str:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    return str(tls.version())
        yield self.assertFailure(threads.deferToThread(connect), ssl.SSLError)

    @defer.inlineCallbacks
    def test_python_client_gets_tls12(self) -> Any:
        """Python's default client (which prefers 1.3) settles on TLS 1.2 and relays data."""
        port = self.listen(Factory.forProtocol(_Echo), lambda: server_tls(self.state_dir))

        def connect() -> tuple[str, bytes]:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"abc")
                    return str(tls.version()), tls.recv(3)
        self.assertEqual((yield threads.deferToThread(connect)), ("TLSv1.2", b"abc"))


class ConfigurationErrorTests(SynchronousTestCase):
    """A certificate or CA file that cannot be used fails the listener's start, naming the file."""

    def test_bad_certificate(self) -> None:
        """A garbage certificate file: ListenError naming it."""
        path = _write(os.path.abspath(self.mktemp()), b"not a pem")
        listener = ListenerService(None, "tcp:0", Factory(),  # type: ignore[arg-type]
                                   tls=lambda: server_tls(None, cert_file=path))
        e = self.assertRaises(ListenError, listener.startService)
        self.assertIn(path, str(e))

    def test_missing_ca_file(self) -> None:
        """A CA file that does not exist: the error names it and the setting."""
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        e = self.assertRaises(ValueError, server_tls, state, ca_file="/nonexistent/ca.pem")
        self.assertIn("tls_ca_file /nonexistent/ca.pem", str(e))

    def test_ca_file_without_certificates(self) -> None:
        """A CA file holding no certificate is refused."""
        state = os.path.abspath(self.mktemp())
        os.makedirs(state)
        ca = _write(os.path.join(state, "ca.pem"), b"-----BEGIN NOTHING-----\n")
        self.assertRaises(ValueError, server_tls, state, ca_file=ca)


class _PortTestCase(_ReactorTestCase):
    """A serial mode's front-end on the real reactor, with a fake device."""

    def start(self, mode: OpMode, **operating: Any) -> tuple[FakeSerialDevice, list[int]]:
        device = FakeSerialDevice(lines=None)
        channel = SerialChannel(0, device.path, SerialSettings(), self.reactor, device.opener,
                                keep_open=mode is not OpMode.REAL_COM)
        channel.startService()
        self.addCleanup(lambda: (channel.stopService(), device.close_complete()))
        ctx = PortContext(index=0, channel=channel,
                          operating=OperatingSettings(mode=mode, **operating),
                          reactor=self.reactor,
                          endpoint=lambda proto, port: f"{proto}:0:interface=127.0.0.1",
                          net=NetTable(), accessible=AccessibleIPSettings,
                          state_dir=self.state_dir)
        from nport_twisted.server import frontend_builders

        front = frontend_builders()[mode](ctx)
        front.startService()
        self.addCleanup(front.stopService)
        ports = [s.port.getHost().port for s in service.IServiceCollection(front)
                 if isinstance(s, ListenerService) and s.port is not None]
        return device, ports

    @defer.inlineCallbacks
    def exchange(self, device: FakeSerialDevice, port: int, **kwargs: Any) -> Any:
        """Probe C{port}: send 'ping' to the device, which answers 'pong'."""
        probe = self.probe(port, send=b"ping", expect=4, **kwargs)
        yield poll_until(lambda: device.written.endswith(b"ping") or probe.called, 10,
                         what="the device to receive ping")
        if not probe.called:
            device.receive(b"pong")
        result = yield probe
        return result


class FaceTests(_PortTestCase):
    """Every TLS data port passes MOXA's read (the HTTPS console: tests.test_e2e)."""

    @defer.inlineCallbacks
    def test_secure_realcom(self) -> Any:
        """Secure Real COM's data port: TLS 1.2, nothing before the device's data."""
        device, (data_port, _command) = self.start(OpMode.REAL_COM, secure=True)
        result = yield self.exchange(device, data_port)
        self.assertEqual((result.version, result.failure, result.data), ("TLSv1.2", None, b"pong"))

    @defer.inlineCallbacks
    def test_secure_tcp_server(self) -> Any:
        """Secure TCP Server's data port (its command port stays plain)."""
        device, (data_port, command_port) = self.start(OpMode.TCP_SERVER, secure=True)
        result = yield self.exchange(device, data_port)
        self.assertEqual((result.version, result.failure, result.data), ("TLSv1.2", None, b"pong"))
        with socket.create_connection(("127.0.0.1", command_port), timeout=5) as plain:
            self.assertTrue(plain.fileno() >= 0)  # a plain TCP listener

    @defer.inlineCallbacks
    def test_secure_rfc2217(self) -> Any:
        """Secure RFC 2217: the telnet negotiation is the first data; no TLS message precedes it."""
        _device, (port,) = self.start(OpMode.RFC2217, secure=True)
        result = yield self.probe(port, expect=3)
        self.assertEqual((result.version, result.failure), ("TLSv1.2", None))
        self.assertEqual(result.data[:2], b"\xff\xfb")  # IAC WILL …


class _Collect(ProcessProtocol):
    """Records a child's stdout and stderr; fires C{ended} with its exit code."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(reason.value.exitCode)


class OpenSslClientTests(_PortTestCase):
    """A third-party TLS client: OpenSSL's own s_client against Secure TCP Server."""

    skip = None if shutil.which("openssl") else "openssl not installed (Debian package openssl)"

    @defer.inlineCallbacks
    def test_s_client_both_ways(self) -> Any:
        """openssl s_client negotiates TLS 1.2 and carries bytes both ways through the device."""
        device, (data_port, _command) = self.start(OpMode.TCP_SERVER, secure=True)
        proto = _Collect()
        process = self.reactor.spawnProcess(
            proto, shutil.which("openssl"),
            ["openssl", "s_client", "-connect", f"127.0.0.1:{data_port}", "-brief"],
            env={"PATH": os.environ.get("PATH", "/usr/bin")})
        self.addCleanup(lambda: proto.ended.called or process.signalProcess("KILL"))
        process.write(b"ping\n")  # sent once the handshake is done
        yield poll_until(lambda: device.written == b"ping\n" or proto.ended.called, 20,
                         what="s_client's bytes at the device")
        self.assertEqual(device.written, b"ping\n", bytes(proto.err))
        device.receive(b"pong\n")
        yield poll_until(lambda: b"pong" in proto.out or proto.ended.called, 20,
                         what="the device's bytes at s_client")
        self.assertEqual(bytes(proto.out), b"pong\n", bytes(proto.err))
        process.closeStdin()
        yield proto.ended
        self.assertIn(b"Protocol version: TLSv1.2", bytes(proto.err))


class ClientCertificateTests(_PortTestCase):
    """Secure TCP Server with tls_ca_file: only clients with a certificate of that CA."""

    def setUp(self) -> None:
        super().setUp()
        self.ca, self.issue = make_ca(os.path.join(self.state_dir, "pki"))

    @defer.inlineCallbacks
    def test_certificate_of_the_ca(self) -> Any:
        """A client certificate the CA signed is accepted; data flows."""
        device, (port, _) = self.start(OpMode.TCP_SERVER, secure=True, tls_ca_file=self.ca)
        result = yield self.exchange(device, port, client_cert=self.issue("plc"))
        self.assertEqual((result.failure, result.data), (None, b"pong"))

    @defer.inlineCallbacks
    def test_no_certificate(self) -> Any:
        """A client without a certificate fails the handshake."""
        _device, (port, _) = self.start(OpMode.TCP_SERVER, secure=True, tls_ca_file=self.ca)
        yield self.assertFailure(self.probe(port), SSL.Error)

    @defer.inlineCallbacks
    def test_certificate_of_another_ca(self) -> Any:
        """A certificate from another CA fails the handshake."""
        _other_ca, other_issue = make_ca(os.path.join(self.state_dir, "other"))
        _device, (port, _) = self.start(OpMode.TCP_SERVER, secure=True, tls_ca_file=self.ca)
        yield self.assertFailure(self.probe(port, client_cert=other_issue("intruder")), SSL.Error)

    @defer.inlineCallbacks
    def test_realcom_never_asks(self) -> Any:
        """Real COM ignores tls_ca_file: MOXA's driver sends no certificate."""
        device, (data_port, _) = self.start(OpMode.REAL_COM, secure=True, tls_ca_file=self.ca)
        result = yield self.exchange(device, data_port)
        self.assertEqual(result.failure, None)


class ChoiceBenchmarkSmokeTests(SynchronousTestCase):
    """benchmarks/tls_choice.py in its quickest form (the figures are not judged)."""

    def test_runs(self) -> None:
        """It completes; only the TLS 1.3 server with tickets fails MOXA's read."""
        import subprocess
        import sys

        from tests.e2e_util import REPO_ROOT

        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "tls_choice.py"),
             "--handshakes", "3", "--bulk-mib", "1"],
            capture_output=True, text=True, timeout=120, check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        verdicts = {line.split()[0]: line.split()[3] for line in proc.stdout.splitlines()
                    if line.startswith("tls1")}
        self.assertEqual(verdicts, {"tls13-tickets": "FAILS", "tls12-ours": "ok", "tls13-notick": "ok"})
