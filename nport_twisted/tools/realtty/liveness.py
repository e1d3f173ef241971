# -*- test-case-name: tests.test_realtty_liveness -*-
"""
UDP 4800 liveness polling of the servers, as MOXA's daemon does it with
C{npreal2d -t N} (realcom.md §7; timeout T = 60·N s, interval P = (T-20)/4).

For a server with at least one connected port:

  1. DSCI search C{01 00 00 08 ...} every 5 s until answered (device ID);
  2. kernel info C{16 ...} with the device ID every 5 s until answered; the
     u16 at bytes 34-35 is the "DSCI version": 0 -> 0x14, else 0x1D;
  3. netstat (0x14, or the paged 0x1D) every P s, the request id being the
     time; a reply counts if it echoes one of our ids and the device ID
     still matches (a changed one means the device was replaced: search
     again).

Every byte moved on a data connection also counts as "alive".  When T
seconds pass with nothing, every connected port of that server is reset
(both connections closed and reconnected with the recovery batch).  When a
netstat listing shows a port's data or command TCP port LISTENing while our
connections to it are not listed as CONNECTED, twice in a row, the port is
reset too ("Ports reset" in npreal2d: the device rebooted and forgot us).
Ports are compared in the entries' byte order, little-endian (dsci.md).

L{ServerPoll} is the pure state (time passed in); L{LivenessPoller} is the
UDP protocol and the one-second timer on the injected clock.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, Protocol as TypingProtocol

import attrs
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from nport_twisted.wire import dsci

__all__ = ["LivenessPoller", "PolledPort", "ServerPoll", "poll_interval"]

#: Search and kernel-info requests are repeated this often until answered.
SETUP_INTERVAL = 5.0
#: A LISTEN entry must be seen this many times in a row before a reset.
LISTEN_STRIKES = 2
#: Pages of a 0x1D listing we follow at most (MOXA's driver has no limit).
MAX_PAGES = 16


def poll_interval(timeout: float) -> float:
    """npreal2d's P for a timeout T: (T - 20) / 4 when T >= 60, else T / 4."""
    return (timeout - 20) / 4 if timeout >= 60 else max(timeout / 4, 0.25)


class PolledPort(TypingProtocol):
    """What the poller needs of a relay."""

    @property
    def polled_connected(self) -> bool:
        "Both connections are up."

    def polled_ports(self) -> tuple[int, int, int, int] | None:
        "(device data port, device command port, our local data port, our local command port)."

    def reset_connection(self, reason: str) -> None:
        "Close both connections and reconnect with the recovery batch."


@attrs.define
class ServerPoll:
    """The polling state of one server (one IP address)."""

    timeout: float
    interval: float
    device_id: dsci.DeviceId | None = None
    dsci_version: int | None = None
    last_alive: float = 0.0
    next_send: float = 0.0
    running: bool = False
    start_item: int = 0
    outstanding: list[int] = attrs.Factory(list)
    entries: list[dsci.NetstatEntry] = attrs.Factory(list)
    pages: int = 0
    strikes: dict[int, int] = attrs.Factory(dict)
    replies: int = 0  # valid replies (any opcode) since the start
    resets: int = 0

    def status(self) -> dict[str, Any]:
        """For C{nport-realtty status}."""
        return {"polling": self.running, "replies": self.replies, "resets": self.resets,
                "dsci_version": self.dsci_version, "last_alive": self.last_alive}

    def start(self, now: float) -> None:
        """The first port connected: the timeout counts from now."""
        if not self.running:
            self.running = True
            self.last_alive = now
            self.next_send = now

    def stop(self) -> None:
        """No port connected any more: stop sending."""
        self.running = False
        self.outstanding.clear()
        self.strikes.clear()

    def activity(self, now: float) -> None:
        """Data moved on a connection to this server."""
        self.last_alive = max(self.last_alive, now)

    def expired(self, now: float) -> bool:
        """Nothing heard for longer than the timeout."""
        return self.running and now - self.last_alive > self.timeout

    def request(self, now: float) -> bytes | None:
        """The datagram to send now, if one is due."""
        if not self.running or now < self.next_send:
            return None
        setup = min(SETUP_INTERVAL, self.interval)  # a short T must not expire during set-up
        if self.device_id is None:
            self.next_send = now + setup
            return dsci.encode_search_request()
        if self.dsci_version is None:
            self.next_send = now + setup
            return dsci.encode_request(dsci.OP_KERNEL_INFO, 0, self.device_id)
        self.next_send = now + self.interval
        txid = int(now) & 0xFFFFFFFF  # npreal2d: the host's uptime in seconds
        self.outstanding = [*self.outstanding[-7:], txid]
        if self.dsci_version == 0:
            return dsci.encode_netstat_request(txid, self.device_id)
        return dsci.encode_netstat_paged_request(txid, self.device_id, self.start_item)

    def reply(self, now: float, datagram: bytes) -> list[dsci.NetstatEntry] | None:
        """
        Take a datagram from the server's DSCI port.  Returns the entries of
        a complete netstat listing (after its last page), else None.
        """
        try:
            reply = dsci.parse_reply(datagram)
        except dsci.DsciError:
            return None
        op = reply.request_opcode
        if op == dsci.OP_SEARCH:
            self.replies += 1
            self.device_id = reply.device_id
            self.dsci_version = None
            self.activity(now)
            self.next_send = now  # kernel info at once (npreal2d waits out the 5 s)
            return None
        if op == dsci.OP_KERNEL_INFO and self.device_id is not None:
            try:
                self.dsci_version = dsci.decode_kernel_info_reply(reply).dsci_version
            except dsci.DsciError:
                return None
            self.replies += 1
            self.activity(now)
            self.next_send = now
            return None
        if op not in (dsci.OP_NETSTAT, dsci.OP_NETSTAT_PAGED) or reply.txid not in self.outstanding:
            return None
        if reply.device_id != self.device_id:
            # Another device answers at this address: start over with a search.
            self.device_id = self.dsci_version = None
            self.next_send = now
            return None
        try:
            listing = dsci.decode_netstat_reply(reply)
        except dsci.DsciError:
            return None
        self.outstanding.remove(reply.txid)
        self.replies += 1
        self.activity(now)
        self.entries.extend(listing.entries)
        self.pages += 1
        if op == dsci.OP_NETSTAT_PAGED and listing.next_index and self.pages < MAX_PAGES:
            self.start_item = listing.next_index
            self.next_send = now  # fetch the next page at once
            return None
        entries, self.entries, self.pages, self.start_item = self.entries, [], 0, 0
        return entries

    def judge(self, entries: Iterable[dsci.NetstatEntry], port: tuple[int, int, int, int],
              key: int) -> bool:
        """
        Whether the port whose numbers are C{port} (device data, device
        command, local data, local command) must be reset: its listener is
        listed but our connections are not, for the second time in a row.
        """
        data, command, local_data, local_command = port
        listening = connected_data = connected_command = False
        for e in entries:
            if e.local_port not in (data, command):
                continue
            if e.state == dsci.TCP_LISTEN:
                listening = True
            elif e.state == dsci.TCP_CONNECTED and e.remote_port == local_data:
                connected_data = True
            elif e.state == dsci.TCP_CONNECTED and e.remote_port == local_command:
                connected_command = True
        if listening and not (connected_data and connected_command):
            self.strikes[key] = self.strikes.get(key, 0) + 1
            if self.strikes[key] >= LISTEN_STRIKES:
                self.strikes[key] = 0
                return True
            return False
        self.strikes[key] = 0
        return False


class LivenessPoller(DatagramProtocol):
    """
    Polls every server that has a connected port, from one UDP socket.
    C{add(host, relay)} registers a port; C{activity(host)} is called for
    every byte moved on one of its data connections.
    """

    _log = Logger()

    def __init__(self, clock: Any, timeout: float = 60.0, dsci_port: int = dsci.DSCI_PORT,
                 resolve: Callable[[str], Any] | None = None) -> None:
        self._clock = clock
        self.timeout = timeout
        self.interval = poll_interval(timeout)
        self.dsci_port = dsci_port
        self._resolve = resolve
        self._hosts: dict[str, list[PolledPort]] = {}
        self._address: dict[str, str] = {}  # host -> IPv4 address
        self._polls: dict[str, ServerPoll] = {}  # by IPv4 address
        self._loop: LoopingCall | None = None

    def add(self, host: str, port: PolledPort) -> None:
        self._hosts.setdefault(host, []).append(port)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if self._resolve is not None:
                self._resolve(host).addCallbacks(
                    lambda address: self._resolved(host, address),
                    lambda f: self._log.warn("cannot resolve {host} for UDP polling: {error}",
                                             host=host, error=f.getErrorMessage()))
            return
        if ip.version == 6:
            self._log.info("{host}: UDP liveness polling of IPv6 servers is not done", host=host)
            return
        self._resolved(host, str(ip))

    def _resolved(self, host: str, address: str) -> None:
        self._address[host] = address
        self._polls.setdefault(address, ServerPoll(self.timeout, self.interval))

    def activity(self, host: str) -> None:
        address = self._address.get(host)
        if address is not None and address in self._polls:
            self._polls[address].activity(self._clock.seconds())

    def status(self, host: str) -> dict[str, Any] | None:
        """The polling state of C{host}'s server, or None when it is not polled."""
        address = self._address.get(host)
        poll = self._polls.get(address) if address is not None else None
        return None if poll is None else {"address": address, **poll.status()}

    def startProtocol(self) -> None:
        self._loop = LoopingCall(self.tick)
        self._loop.clock = self._clock
        self._loop.start(1.0, now=False)

    def stopProtocol(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _ports_of(self, address: str) -> list[tuple[str, PolledPort]]:
        return [(h, p) for h, ports in self._hosts.items() if self._address.get(h) == address
                for p in ports]

    def tick(self) -> None:
        """Once a second: start/stop, send what is due, reset expired servers."""
        now = self._clock.seconds()
        for address, poll in self._polls.items():
            connected = [p for _, p in self._ports_of(address) if p.polled_connected]
            if not connected:
                poll.stop()
                continue
            poll.start(now)
            if poll.expired(now):
                self._log.warn(
                    "{address}: no data and no UDP reply for {s:.0f} s; resetting its ports",
                    address=address, s=now - poll.last_alive)
                poll.last_alive = now
                poll.resets += 1
                for p in connected:
                    p.reset_connection(f"server silent for {self.timeout:.0f} s")
                continue
            datagram = poll.request(now)
            if datagram is not None and self.transport is not None:
                try:
                    self.transport.write(datagram, (address, self.dsci_port))
                except OSError as e:
                    self._log.debug("{address}: UDP send failed: {error}", address=address,
                                    error=e)

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        address, port = addr[0], addr[1]
        poll = self._polls.get(address)
        if poll is None or port != self.dsci_port or not poll.running:
            return
        entries = poll.reply(self._clock.seconds(), datagram)
        if entries is None:
            return
        for _, relay in self._ports_of(address):
            numbers = relay.polled_ports() if relay.polled_connected else None
            if numbers is not None and poll.judge(entries, numbers, id(relay)):
                poll.resets += 1
                self._log.warn("{address}: port {port} listens again but does not list our "
                               "connections; resetting", address=address, port=numbers[0])
                relay.reset_connection("the server listens again (Ports reset)")
