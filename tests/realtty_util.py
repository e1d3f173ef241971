"""
Helpers for the nport-realtty tests: our own Real COM front-end in memory
(a FakeSerialDevice behind it, every command chunk recorded), a
L{PortRelay} on a real pty whose links live in a temporary directory, and
a pump that moves bytes between them on a MemoryReactorClock — the pty
master is read and written by calling its descriptor, so nothing waits on
real time.
"""

from __future__ import annotations

import os
import termios
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump

from nport_twisted.config.settings import AccessibleIPSettings, OperatingSettings, SerialSettings
from nport_twisted.device.adapter import LineCounters, ModemLines, SerialHandle
from nport_twisted.device.channel import SerialChannel
from nport_twisted.modes.realcom import CommandProtocol, DataProtocol, RealComPort
from nport_twisted.net.listener import NetTable
from nport_twisted.net.session import PortContext
from nport_twisted.testing import FakeSerialDevice
from nport_twisted.tools.realtty.config import PortConfig
from nport_twisted.tools.realtty.relay import PortRelay
from nport_twisted.wire import aspp

DATA_PORT = 950
COMMAND_PORT = 966
ALL_ON = ModemLines(cts=True, dsr=True, dcd=True)


class RecordingDevice(FakeSerialDevice):
    """A fake device that also keeps everything ever written (FLUSH and reopen clear C{written})."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.log = bytearray()

    def opener(self, protocol: Protocol, device: str, settings: SerialSettings) -> SerialHandle:
        handle = super().opener(protocol, device, settings)
        transport = self.transport
        assert transport is not None
        write = transport.write

        def recording(data: bytes) -> None:
            self.log += data
            write(data)

        transport.write = recording  # type: ignore[method-assign]
        return handle


class _RecordingCommand(CommandProtocol):
    def __init__(self, port: RealComPort, log: list[bytes]) -> None:
        super().__init__(port)
        self._record = log

    def dataReceived(self, data: bytes) -> None:
        self._record.append(data)
        super().dataReceived(data)


class _Factory(Factory):
    def __init__(self, build: Any) -> None:
        self._build = build

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._build()


def frames(*requests: aspp.Request) -> bytes:
    """The bytes of requests as the host sends them."""
    return b"".join(aspp.encode_request(r) for r in requests)


class Harness:
    """
    A Real COM server in memory and one relay on a real pty.

    C{link_dir} is a temporary directory (the test's C{mktemp()}); the
    relay's link is C{link_dir/ttyNP0}.  C{app_open()} opens it like an
    application; C{run(d)} pumps until C{d} fired.
    """

    def __init__(self, link_dir: str, lines: ModemLines | None = ALL_ON,
                 counters: LineCounters | None = None, **port: Any) -> None:
        os.makedirs(link_dir, exist_ok=True)
        self.reactor = MemoryReactorClock()
        self.device = RecordingDevice(lines=lines, counters=counters)
        self.channel = SerialChannel(0, self.device.path, SerialSettings(), self.reactor,
                                     self.device.opener, keep_open=False)
        self.channel.startService()
        ctx = PortContext(
            index=0, channel=self.channel, operating=OperatingSettings(),
            reactor=self.reactor, endpoint=lambda proto, p: f"{proto}:{p}", net=NetTable(),
            accessible=AccessibleIPSettings)
        self.port = RealComPort(ctx)
        self.commands: list[list[bytes]] = []
        self.listening = True
        self.hold = False  # True: connection attempts stay pending
        self._listen()
        self._completer = ConnectionCompleter(self.reactor)
        self.pumps: list[IOPump] = []
        self.link = os.path.join(link_dir, "ttyNP0")
        self.config = PortConfig(link=self.link, host="127.0.0.1", data_port=DATA_PORT,
                                 command_port=COMMAND_PORT, group="", **port)
        self.relay = PortRelay(self.reactor, self.config)
        self.app_fds: list[int] = []

    def _listen(self) -> None:
        self.reactor.listenTCP(DATA_PORT, _Factory(lambda: DataProtocol(self.port)))
        self.reactor.listenTCP(COMMAND_PORT, _Factory(self._command))

    def _command(self) -> CommandProtocol:
        log: list[bytes] = []
        self.commands.append(log)
        return _RecordingCommand(self.port, log)

    def sent(self, connection: int = -1) -> bytes:
        """Every command byte the relay sent on one command connection."""
        return b"".join(self.commands[connection])

    def chunks(self, connection: int = -1) -> list[bytes]:
        """The command bytes of one connection, chunk by chunk as they arrived."""
        return list(self.commands[connection])

    # -- the application -------------------------------------------------------------

    def app_open(self) -> int:
        """Open the link as an application does (non-blocking, no controlling tty)."""
        fd = os.open(self.link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.app_fds.append(fd)
        return fd

    def app_close(self, fd: int) -> None:
        self.app_fds.remove(fd)
        os.close(fd)

    def app_read(self, fd: int) -> bytes:
        """What the application can read now."""
        out = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return out
            except OSError:
                return out
            if not chunk:
                return out
            out += chunk

    @staticmethod
    def app_speed(fd: int, speed: int) -> None:
        attrs_ = termios.tcgetattr(fd)
        attrs_[4] = attrs_[5] = speed
        termios.tcsetattr(fd, termios.TCSANOW, attrs_)

    @staticmethod
    def app_raw(fd: int) -> None:
        import tty
        tty.setraw(fd)

    # -- moving bytes --------------------------------------------------------------------

    def flush(self) -> None:
        """Complete connects, move TCP bytes and pty bytes until nothing moves."""
        for _ in range(10000):
            moved = False
            if self.hold:
                pass
            elif self.listening:
                pump = self._completer.succeedOnce()
                if pump is not None:
                    self.pumps.append(pump)
                    moved = True
            else:
                moved = self._refuse() or moved
            for p in self.pumps:
                moved = p.flush() or moved
            master = self.relay.master
            if master in self.reactor.getReaders() and self._readable():
                master.doRead()  # data, a status byte, or EIO (the application closed it)
                moved = True
            if master in self.reactor.getWriters():
                before = master.buffered
                master.doWrite()
                moved = moved or master.buffered != before
            if not moved:
                return

    def _readable(self) -> bool:
        import select

        fd = self.relay.pty.master
        if fd is None:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))

    def _refuse(self) -> bool:
        from twisted.internet.error import ConnectionRefusedError
        from twisted.python.failure import Failure

        if not self.reactor.tcpClients:
            return False
        host, port, factory, timeout, bind = self.reactor.tcpClients.pop(0)
        connector = self.reactor.connectors.pop(0)
        factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError()))
        return True

    def advance(self, seconds: float, step: float = 0.01) -> None:
        """Let C{seconds} pass in steps, pumping after each."""
        waited = 0.0
        self.flush()
        while waited < seconds - 1e-9:
            self.reactor.advance(step)
            waited += step
            self.flush()

    def run(self, d: Deferred[Any] | None = None, limit: float = 60.0,
            step: float = 0.01) -> Any:
        """Pump and advance the clock until C{d} fired (or C{limit} s)."""
        fired: list[Any] = []
        if d is not None:
            d.addBoth(lambda r: (fired.append(r), r)[1])
        waited = 0.0
        self.flush()
        while (d is None or not fired) and waited < limit:
            self.reactor.advance(step)
            waited += step
            self.flush()
            if d is None:
                break
        return fired[0] if fired else None

    def until(self, predicate: Any, limit: float = 60.0, step: float = 0.01) -> None:
        """Pump and advance the clock until C{predicate()} (fail after C{limit} s)."""
        waited = 0.0
        self.flush()
        while not predicate():
            if waited >= limit:
                raise AssertionError(f"not reached within {limit} s (fake clock)")
            self.reactor.advance(step)
            waited += step
            self.flush()

    # -- server control --------------------------------------------------------------------

    def drop_connections(self) -> None:
        """The server goes away: every open connection is closed (from the server side)."""
        for p in self.pumps:
            if not p.server.transport.disconnecting:  # type: ignore[union-attr]
                p.server.transport.loseConnection()  # type: ignore[union-attr]
        self.flush()

    def in_force(self) -> SerialSettings:
        """The settings the fake serial device has."""
        return self.device.in_force

    def close(self) -> None:
        for fd in list(self.app_fds):
            self.app_close(fd)
        self.relay.watcher.stop()
        self.relay.master.stop()
        self.relay.pty.close()
        self.channel.stopService()
        self.device.close_complete()


def default_open_bytes(fifo: int = 16) -> bytes:
    """What MOXA's driver sends at the first open after loading: 9600 8N1 IXON (realcom.md §3.2)."""
    return (bytes.fromhex("2C 08 06 03 01 01 00 00 01 00")
            + bytes.fromhex("18 02 11 13") + bytes((0x30, 1, fifo)))


def evolve_settings(s: SerialSettings, **kw: Any) -> SerialSettings:
    return attrs.evolve(s, **kw)
