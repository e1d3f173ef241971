#!/usr/bin/env python3
"""
Figures behind the TLS choice of the box's TLS faces (config/tls.py,
docs/performance.md "TLS"): TLS 1.2 versus TLS 1.3 without session
tickets, against MOXA's SSL driver's way of reading.

Servers compared:
  tls13-tickets  Twisted's CertificateOptions as shipped before issue 15
                 (TLS 1.3, OpenSSL sends session tickets after the handshake)
  tls12          nport_twisted.config.tls.server_tls (our choice)
  tls13-notick   TLS 1.3 with num_tickets = 0: Python's ssl module, because
                 pyOpenSSL (the TLS stack under Twisted) cannot set it

Per server: the npreal2d-style probe over loopback (does the first read
after the handshake yield data?); handshakes in memory (no sockets): round
trips before the client may send, bytes each way, bytes the server sends
after its handshake with no application data, CPU per handshake; bulk
encrypt+decrypt throughput; and the connect latency that follows at a LAN
and a WAN round-trip time.

    python benchmarks/tls_choice.py [--handshakes 200] [--bulk-mib 64]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from OpenSSL import SSL  # noqa: E402

from nport_twisted.config.tls import generate_pem, server_tls  # noqa: E402
from nport_twisted.testing import moxa_tls_probe  # noqa: E402


def npreal2d_client_context() -> SSL.Context:
    """The client side as MOXA's daemon sets it up (ssl_init)."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_options(SSL.OP_ALL)
    ctx.set_cipher_list(b"ALL:@STRENGTH")
    ctx.set_mode(0x4)  # SSL_MODE_AUTO_RETRY
    return ctx


class Side:
    """One end of an in-memory TLS connection (pyOpenSSL or Python's SSLObject)."""

    def __init__(self, obj: Any, stdlib: bool) -> None:
        self.obj = obj
        self.stdlib = stdlib
        self.incoming = ssl.MemoryBIO() if stdlib else None
        self.outgoing = ssl.MemoryBIO() if stdlib else None
        self.done = False
        self.cpu = 0.0

    def handshake(self) -> None:
        start = time.process_time()
        try:
            self.obj.do_handshake()
            self.done = True
        except (SSL.WantReadError, ssl.SSLWantReadError):
            pass
        finally:
            self.cpu += time.process_time() - start

    def take(self) -> bytes:
        if self.stdlib:
            assert self.outgoing is not None
            return self.outgoing.read()
        out = b""
        while True:
            try:
                out += self.obj.bio_read(65536)
            except SSL.WantReadError:
                return out

    def give(self, data: bytes) -> None:
        if not data:
            return
        if self.stdlib:
            assert self.incoming is not None
            self.incoming.write(data)
        else:
            self.obj.bio_write(data)

    def read_app(self) -> bytes:
        try:
            return bytes(self.obj.read(65536) if self.stdlib else self.obj.recv(65536))
        except (SSL.WantReadError, ssl.SSLWantReadError):
            return b""

    def write_app(self, data: bytes) -> None:
        if self.stdlib:
            self.obj.write(data)
        else:
            self.obj.send(data)


def pyopenssl_server(context: SSL.Context) -> Side:
    conn = SSL.Connection(context, None)
    conn.set_accept_state()
    return Side(conn, False)


def stdlib_server(context: ssl.SSLContext) -> Side:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    side = Side(context.wrap_bio(incoming, outgoing, server_side=True), True)
    side.incoming, side.outgoing = incoming, outgoing
    return side


def client() -> Side:
    conn = SSL.Connection(npreal2d_client_context(), None)
    conn.set_connect_state()
    return Side(conn, False)


def one_handshake(make_server: Callable[[], Side]) -> dict[str, float]:
    """Run one handshake in memory; count flights, bytes and CPU."""
    server, cli = make_server(), client()
    to_server = to_client = 0
    client_flights = 0  # server -> client flights the client needed before it may send
    cli.handshake()
    data = cli.take()
    while True:
        to_server += len(data)
        server.give(data)
        server.handshake()
        back = server.take()
        to_client += len(back)
        client_flights += 1
        cli.give(back)
        cli.handshake()
        data = cli.take()
        if cli.done:
            break
    rtts = client_flights
    # The client's last flight (its Finished): the server completes and may send more.
    to_server += len(data)
    server.give(data)
    server.handshake()
    server.read_app()  # TLS 1.3 servers write their tickets once they read the Finished
    after = server.take()
    return {"rtts": rtts, "to_server": to_server, "to_client": to_client + len(after),
            "after_handshake": len(after), "cpu_ms": (server.cpu + cli.cpu) * 1000,
            "server_cpu_ms": server.cpu * 1000}


def bulk(make_server: Callable[[], Side], mib: int) -> float:
    """MiB/s of server -> client application data (encrypt + decrypt), in memory."""
    server, cli = make_server(), client()
    cli.handshake()
    while not (cli.done and server.done):
        server.give(cli.take())
        server.handshake()
        cli.give(server.take())
        cli.handshake()
    server.give(cli.take())
    server.handshake()
    server.read_app()
    cli.give(server.take())
    cli.read_app()
    block = os.urandom(16384)
    total = mib * 1024 * 1024
    start = time.perf_counter()
    sent = 0
    while sent < total:
        server.write_app(block)
        cli.give(server.take())
        while cli.read_app():
            pass
        sent += len(block)
    return mib / (time.perf_counter() - start)


def serve_sockets(accept: Callable[[socket.socket], None]) -> tuple[int, Callable[[], None]]:
    """A loopback server thread running C{accept(sock)} per connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def loop() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=accept, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        listener.close()
    return listener.getsockname()[1], close


def pyopenssl_conn_handler(context: SSL.Context) -> Callable[[socket.socket], None]:
    def handle(sock: socket.socket) -> None:
        conn = SSL.Connection(context, sock)
        conn.set_accept_state()
        try:
            conn.do_handshake()
            select.select([sock], [], [], 2)  # until the client leaves (bounded)
        except (SSL.Error, OSError):
            pass
        finally:
            sock.close()
    return handle


def stdlib_conn_handler(context: ssl.SSLContext) -> Callable[[socket.socket], None]:
    def handle(sock: socket.socket) -> None:
        try:
            with context.wrap_socket(sock, server_side=True) as tls:
                tls.settimeout(2)
                tls.recv(1)
        except (ssl.SSLError, OSError) as e:
            print("stdlib server:", repr(e), file=sys.stderr)
    return handle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--bulk-mib", type=int, default=64)
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="tls-choice-")
    pem = os.path.join(state, "cert.pem")
    with open(pem, "wb") as f:
        f.write(generate_pem())

    from twisted.internet import ssl as tssl

    own = tssl.PrivateCertificate.loadPEM(open(pem, "rb").read())
    old = tssl.CertificateOptions(privateKey=own.privateKey.original, certificate=own.original)
    ours = server_tls(None, cert_file=pem)
    notick = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    notick.load_cert_chain(pem)
    notick.minimum_version = ssl.TLSVersion.TLSv1_3
    notick.num_tickets = 0

    servers: dict[str, tuple[Callable[[], Side], Callable[[socket.socket], None]]] = {
        "tls13-tickets": (lambda: pyopenssl_server(old.getContext()),
                          pyopenssl_conn_handler(old.getContext())),
        "tls12-ours": (lambda: pyopenssl_server(ours.getContext()),
                         pyopenssl_conn_handler(ours.getContext())),
        "tls13-notick": (lambda: stdlib_server(notick), stdlib_conn_handler(notick)),
    }
    rows = []
    for name, (make, handler) in servers.items():
        port, close = serve_sockets(handler)
        try:
            probe = moxa_tls_probe("127.0.0.1", port, quiet_for=0.5)
        finally:
            close()
        runs = [one_handshake(make) for _ in range(args.handshakes)]
        rate = bulk(make, args.bulk_mib)
        rows.append((name, probe, runs, rate))

    lan, wan = 0.0002, 0.020
    print(f"{args.handshakes} handshakes each (RSA 2048 certificate, npreal2d's client "
          f"settings), bulk {args.bulk_mib} MiB in memory; {sys.version.split()[0]}, "
          f"{SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode()} (pyOpenSSL), {ssl.OPENSSL_VERSION} "
          f"(ssl)\n")
    head = (f"{'server':15} {'version':8} {'cipher':28} {'MOXA read':10} {'RTTs':>4} "
            f"{'C->S B':>7} {'S->C B':>7} {'after HS B':>10} {'CPU ms':>7} {'srv ms':>7} "
            f"{'MiB/s':>7} {'LAN ms':>7} {'WAN ms':>7}")
    print(head)
    print("-" * len(head))
    for name, probe, runs, rate in rows:
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        verdict = "ok" if probe.failure is None else "FAILS"
        print(f"{name:15} {probe.version:8} {probe.cipher:28} {verdict:10} {med['rtts']:>4.0f} "
              f"{med['to_server']:>7.0f} {med['to_client']:>7.0f} {med['after_handshake']:>10.0f} "
              f"{med['cpu_ms']:>7.2f} {med['server_cpu_ms']:>7.2f} {rate:>7.0f} "
              f"{med['rtts'] * lan * 1000 + med['cpu_ms']:>7.2f} "
              f"{med['rtts'] * wan * 1000 + med['cpu_ms']:>7.2f}")
    print("\nRTTs: round trips before the client may send data; after HS B: bytes the server "
          "sends after the handshake\nwith no application data (what MOXA's daemon reads as "
          "'connection closed'); LAN/WAN ms: RTTs x 0.2 ms / 20 ms\nplus the CPU of both ends, "
          "per connection open (npreal2d opens one secure port at a time).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
