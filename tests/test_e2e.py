"""
End-to-end tests: the real service (``twistd -n nport``) in a subprocess,
real ptys as serial devices, TCP clients and the Real COM client over
loopback on a free --port-offset.  Every wait is bounded.
"""

from __future__ import annotations

import os
import termios
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from nport_twisted.tools.realcom_client import RealComClient, connect
from tests.e2e_util import (
    LOOPBACK,
    Pty,
    Service,
    TcpCollector,
    free_port_offset,
    has_open_file,
    have_ptys,
    poll_until,
    tcp_connect,
)

DATA_TIMEOUT = 15.0
SIZE = 64 * 1024


class _ServiceTestCase(TestCase):
    """Starts the service and cleans up processes, ptys and connections."""

    timeout = 60

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.offset = 0

    def need_ptys(self) -> None:
        if not have_ptys():
            raise SkipTest("this machine cannot allocate pseudo-terminals")

    def make_pty(self) -> Pty:
        pty = Pty()
        self.addCleanup(pty.close)
        return pty

    def write_config(self, text: str) -> str:
        path = os.path.join(self.dir, "nport.ini")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    async def start_service(self, *args: str, ports: tuple[int, ...]) -> Service:
        """Run the service on a free offset; fire once C{ports} (unshifted) listen."""
        self.offset = free_port_offset()
        service = Service(
            self.dir, ["--interface", LOOPBACK, "--port-offset", str(self.offset), *args]
        )
        service.start()
        self.addCleanup(self._check_and_stop, service)
        await service.wait_listening(p + self.offset for p in ports)
        return service

    def _check_and_stop(self, service: Service) -> None:
        service.stop()
        problems = service.problems()  # including any from the shutdown
        if problems:
            self.fail("the service logged errors:\n" + service.log())

    async def tcp(self, port: int) -> TcpCollector:
        """A TCP client on C{port} (unshifted), closed at cleanup."""
        client = await tcp_connect(self.reactor, port + self.offset)

        def close() -> Deferred[Any]:
            if not client.closed.called:
                client.transport.loseConnection()
            return client.closed

        self.addCleanup(close)
        return client

    async def realcom(self, **kw: Any) -> RealComClient:
        client = await connect(self.reactor, LOOPBACK, 950 + self.offset, 966 + self.offset, **kw)

        def drop() -> Deferred[None] | None:
            if client.connected:
                return client.abort()
            return None

        self.addCleanup(drop)
        return client

    def within(self, d: Any, seconds: float = DATA_TIMEOUT) -> Deferred[Any]:
        """C{d} (a Deferred or coroutine), failing with TimeoutError after C{seconds}."""
        return ensureDeferred(d).addTimeout(seconds, self.reactor)


class TcpServerTests(_ServiceTestCase):
    """TCP Server mode through the real service."""

    async def test_relay_64k_both_ways(self) -> None:
        """64 KiB of random bytes go from a TCP client to the pty and 64 KiB back, exactly."""
        self.need_ptys()
        pty = self.make_pty()
        service = await self.start_service(
            "--mode", "tcp-server", "--ports", pty.path, ports=(4001,)
        )
        await service.wait_device_open(pty.path)
        master = pty.attach(self.reactor)
        client = await self.tcp(4001)
        up, down = os.urandom(SIZE), os.urandom(SIZE)
        client.transport.write(up)
        # Arrival also proves the service attached the client before it sends serial data to it.
        self.assertEqual(await master.wait_bytes(SIZE, self.reactor, DATA_TIMEOUT), up)
        master.write(down)
        self.assertEqual(await client.wait_bytes(SIZE, self.reactor, DATA_TIMEOUT), down)
        self.assertFalse(client.closed.called)

    async def test_four_clients_share_a_port(self) -> None:
        """
        With max connection 4, serial bytes reach all four clients, each
        client's bytes reach the pty in order, and a fifth client is closed.
        """
        self.need_ptys()
        pty = self.make_pty()
        config = self.write_config("[port1.operating]\nmode = tcp-server\nmax_connection = 4\n")
        service = await self.start_service("--config", config, "--ports", pty.path, ports=(4001,))
        await service.wait_device_open(pty.path)
        master = pty.attach(self.reactor)
        clients = [await self.tcp(4001) for _ in range(4)]
        per_client = 4096
        # Client i sends only bytes congruent to i mod 4: its stream can be picked out of the mix.
        streams = [bytes((4 * k + i) % 256 for k in range(per_client)) for i in range(4)]
        for client, stream in zip(clients, streams):
            for n in range(0, per_client, 512):
                client.transport.write(stream[n : n + 512])
        got = await master.wait_bytes(4 * per_client, self.reactor, DATA_TIMEOUT)
        self.assertEqual(len(got), 4 * per_client)
        for i, stream in enumerate(streams):
            self.assertEqual(bytes(b for b in got if b % 4 == i), stream, f"client {i}")
        down = os.urandom(16 * 1024)
        master.write(down)
        results = await DeferredList(
            [c.wait_bytes(len(down), self.reactor, DATA_TIMEOUT) for c in clients],
            fireOnOneErrback=True,
            consumeErrors=True,
        )
        for i, (_, data) in enumerate(results):
            self.assertEqual(data, down, f"client {i}")
        fifth = await self.tcp(4001)
        await self.within(fifth.closed, 5)
        self.assertEqual(bytes(fifth.data), b"")
        self.assertFalse(any(c.closed.called for c in clients))

    async def test_device_reappears(self) -> None:
        """A device path that vanishes and comes back (another pty) is reopened; clients stay."""
        self.need_ptys()
        link = os.path.join(self.dir, "ttyNP0")
        a = self.make_pty()
        os.symlink(a.path, link)
        service = await self.start_service("--mode", "tcp-server", "--ports", link, ports=(4001,))
        await service.wait_device_open(a.path)
        master_a = a.attach(self.reactor)
        client = await self.tcp(4001)
        client.transport.write(b"before")
        self.assertEqual(await master_a.wait_bytes(6, self.reactor, DATA_TIMEOUT), b"before")
        # The device vanishes, and another one appears under the same path.
        a.close()
        os.unlink(link)
        b = self.make_pty()
        os.symlink(b.path, link)
        await service.wait_device_open(
            b.path, timeout=15
        )  # the channel retries with backoff <= 5 s
        master_b = b.attach(self.reactor)
        # Host -> device first: once it arrives the service has finished opening (and flushing) b.
        client.transport.write(b"after")
        self.assertEqual(await master_b.wait_bytes(5, self.reactor, DATA_TIMEOUT), b"after")
        master_b.write(b"from b")
        self.assertEqual(await client.wait_bytes(6, self.reactor, DATA_TIMEOUT), b"from b")
        self.assertFalse(client.closed.called)


class RealComTests(_ServiceTestCase):
    """Real COM mode through the real service, driven by RealComClient."""

    async def test_open_move_close(self) -> None:
        """Open at 9600 8N1, move 64 KiB of random bytes each way exactly, close (drain, flush)."""
        self.need_ptys()
        pty = self.make_pty()
        service = await self.start_service(
            "--mode", "realcom", "--ports", pty.path, ports=(950, 966)
        )
        master = pty.attach(self.reactor)
        client = await self.within(self.realcom(baudrate=9600))
        self.assertTrue(has_open_file(service.pid, pty.path))  # opened with the data connection
        self.assertEqual(termios.tcgetattr(pty.slave)[5], termios.B9600)  # PORT_INIT applied
        up, down = os.urandom(SIZE), os.urandom(SIZE)
        client.write(up)
        master.write(down)
        self.assertEqual(await master.wait_bytes(SIZE, self.reactor, DATA_TIMEOUT), up)
        self.assertEqual(await self.within(client.read_exactly(SIZE)), down)
        drain: list[int] = []
        wait = client.wait_output_queue

        def recording_wait(timeout_ms: int = 100) -> Deferred[int]:
            return wait(timeout_ms).addCallback(lambda n: (drain.append(n), n)[1])

        client.wait_output_queue = recording_wait  # type: ignore[method-assign]
        await self.within(client.set_line(19200))  # tcsetattr: PORT_INIT again
        self.assertEqual(termios.tcgetattr(pty.slave)[5], termios.B19200)
        await self.within(client.close(), 10)
        self.assertEqual(client.state, "closed")
        self.assertEqual(drain[-3:], [0, 0, 0])
        # The last data connection gone, the service closes the device.
        await poll_until(
            lambda: not has_open_file(service.pid, pty.path),
            10,
            what="the service to close the device",
        )

    async def test_secure_realcom(self) -> None:
        """Secure Real COM: TLS on the data connection, no certificate verification."""
        self.need_ptys()
        pty = self.make_pty()
        config = self.write_config("[port1.operating]\nmode = realcom\nsecure = yes\n")
        await self.start_service("--config", config, "--ports", pty.path, ports=(950, 966))
        master = pty.attach(self.reactor)
        client = await self.within(self.realcom(tls=True))
        up, down = os.urandom(4096), os.urandom(4096)
        client.write(up)
        master.write(down)
        self.assertEqual(await master.wait_bytes(len(up), self.reactor, DATA_TIMEOUT), up)
        self.assertEqual(await self.within(client.read_exactly(len(down))), down)
        await self.within(client.close(), 10)


class UsageTests(_ServiceTestCase):
    """Start-up errors are clear and end the process with a non-zero status."""

    def test_bad_config(self) -> None:
        """An invalid value in the settings file names the key and the value."""
        config = self.write_config("[port1.operating]\nmode = tcp-server\nmax_connection = 9\n")
        service = Service(
            self.dir, ["--config", config, "--ports", os.path.join(self.dir, "nodev")]
        )
        code, output = service.run_to_exit()
        self.assertNotEqual(code, 0)
        self.assertRegex(output, r"max_connection = '?9'?")
        self.assertIn("nport.ini", output)
