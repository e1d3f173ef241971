"""
The benchmark's Twisted client, run by run.py as a subprocess.

``kind`` "realcom": each port is opened with our Real COM client
(nport_twisted.tools.realcom_client.connect: command then data connection,
PORT_INIT at 921600 8N1, TX_FIFO) and its data connection carries the
bytes.  ``kind`` "raw": a plain Twisted protocol on a raw TCP port
(ser2net).  Both run the same measurements on the same reactor, so the
client's own cost is the same on both sides.  ``kind`` "socket": a plain
blocking socket outside the reactor (round trips only), the reference the
Real COM client is compared with.  The reactor is nport-twisted's
FastEPollReactor where it can be installed (as the nport-realcom tool and
the server use it), for every kind alike:

  rtt   1-byte writes on port 1, each waiting for its echo;
  tp    4 KiB writes on port 1, at most 256 KiB in flight, for tp_seconds;
  load  every port paced at 92,160 B/s in 10 ms chunks for load_seconds.

With several targets, the rtt and tp tests take turns (round-robin
batches of round trips, slices of throughput), so a busy machine slows all
targets alike; load runs one target after the other.

Argument: one JSON object: host, targets (name, kind, data_ports,
command_ports, hosts), tests, rtt_count, rtt_batch, tp_seconds, tp_rounds,
load_seconds, rotate (the first target's place in the rotation).  Output on stdout, one line each: ``BEGIN <target> <test>``
and ``END <target> <test>`` around every timed segment (run.py sums the
server's CPU between them), ``RESULT <target> <test> <json>`` at the end of
a test.  Exit status 0 when every test completed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:  # before anything imports the global reactor
    from nport_twisted._reactor import install_default

    install_default()
except ImportError:
    pass

import socket  # noqa: E402

from common import (  # noqa: E402
    DRAIN_IDLE,
    DRAIN_MAX,
    LOAD_RATE,
    LOAD_TICK,
    TP_WINDOW,
    TP_WRITE,
    PortLoad,
    pattern,
    percentile,
    summarize_load,
)
from twisted.internet.defer import Deferred, ensureDeferred, succeed  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol  # noqa: E402
from twisted.internet.task import LoopingCall, react  # noqa: E402

clock = time.perf_counter_ns


class Port:
    """One port as the tests see it: write() and a settable on_data."""

    def __init__(self) -> None:
        self.on_data: Callable[[bytes], None] = lambda data: None
        self.write: Callable[[bytes], None] = lambda data: None
        self.close: Callable[[], Any] = lambda: None
        self.sock: socket.socket | None = None  # kind "socket": a blocking socket

    def got(self, data: bytes) -> None:
        self.on_data(data)


class _Raw(Protocol):
    def __init__(self, port: Port) -> None:
        self.port = port

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
        from twisted.internet import reactor

        from nport_twisted._txinternals import fast_io

        fast_io(reactor, self.transport)  # as the Real COM client's connections do

    def dataReceived(self, data: bytes) -> None:
        self.port.got(data)


async def open_port(reactor: Any, host: str, spec: dict[str, Any], i: int) -> Port:
    port = Port()
    host = spec.get("hosts", [host] * (i + 1))[i]
    if spec["kind"] == "socket":
        port.sock = socket_connect(host, spec["data_ports"][i])
        port.close = port.sock.close
        return port
    if spec["kind"] == "raw":
        proto = await connectProtocol(
            TCP4ClientEndpoint(reactor, host, spec["data_ports"][i], timeout=10), _Raw(port))
        port.write = proto.transport.write  # type: ignore[union-attr]
        port.close = proto.transport.abortConnection  # type: ignore[union-attr]
    else:
        from nport_twisted.tools.realcom_client import connect

        client = await connect(reactor, host, spec["data_ports"][i], spec["command_ports"][i],
                               baudrate=921600, on_data=port.got, command_timeout=10)
        port.write = client.write
        port.close = client.abort
    await probe(reactor, port)
    return port


async def probe(reactor: Any, port: Port, timeout: float = 15.0) -> None:
    """One byte echoed end to end (resent every 0.5 s until the device is open), then quiet."""
    deadline = reactor.seconds() + timeout
    got: list[bytes] = []
    port.on_data = got.append
    while not got:
        if reactor.seconds() > deadline:
            raise RuntimeError("no echo from the device")
        port.write(b"P")
        await sleep(reactor, 0.5, lambda: bool(got))
    # wait until nothing more arrives for 0.1 s
    n = -1
    while n != len(got):
        n = len(got)
        await sleep(reactor, 0.1)
    port.on_data = lambda data: None


def sleep(reactor: Any, seconds: float, until: Callable[[], bool] | None = None) -> Deferred[None]:
    """Wait C{seconds}, or less once C{until}() is true (checked every 10 ms)."""
    d: Deferred[None] = Deferred()
    end = reactor.seconds() + seconds

    def check() -> None:
        if (until is not None and until()) or reactor.seconds() >= end:
            d.callback(None)
        else:
            reactor.callLater(0.01 if until is not None else end - reactor.seconds(), check)

    reactor.callLater(0.01 if until is not None else seconds, check)
    return d


def say(*words: object) -> None:
    print(*words, flush=True)


def socket_connect(host: str, port: int, timeout: float = 15.0) -> socket.socket:
    """A blocking socket with one byte echoed end to end, then nothing pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection((host, port), timeout=2)
        except OSError:
            time.sleep(0.1)
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(0.5)
        try:
            while time.monotonic() < deadline:
                s.sendall(b"P")
                try:
                    if s.recv(64):
                        break
                except TimeoutError:
                    continue
            s.settimeout(0.1)
            while True:
                try:
                    if not s.recv(65536):
                        break
                except TimeoutError:
                    break
            s.settimeout(5)
            return s
        except OSError:
            s.close()
            time.sleep(0.1)
    raise RuntimeError(f"no echo from {host}:{port}")


def socket_rtt(sock: socket.socket, count: int) -> list[float]:
    """As L{rtt} on a blocking socket (the reactor waits meanwhile: it is this target's turn)."""
    samples = []
    for _ in range(count):
        t0 = clock()
        sock.sendall(b"x")
        if not sock.recv(64):
            raise RuntimeError("connection closed during the round-trip test")
        samples.append((clock() - t0) / 1e3)
    return samples


def rtt(reactor: Any, port: Port, count: int) -> Deferred[list[float]]:
    """C{count} 1-byte writes, each sent when the previous echo arrived (us)."""
    if port.sock is not None:
        return succeed(socket_rtt(port.sock, count))
    done: Deferred[list[float]] = Deferred()
    samples: list[float] = []
    state = {"t0": 0}

    def send() -> None:
        state["t0"] = clock()
        port.write(b"x")

    def on_data(data: bytes) -> None:
        samples.append((clock() - state["t0"]) / 1e3)
        if len(samples) < count:
            send()
        else:
            port.on_data = lambda data: None
            done.callback(samples)

    port.on_data = on_data
    send()
    return done


def throughput(reactor: Any, port: Port, seconds: float) -> Deferred[dict[str, Any]]:
    """4 KiB writes, at most TP_WINDOW bytes in flight, for C{seconds}; then drain."""
    done: Deferred[dict[str, Any]] = Deferred()
    t0 = clock()
    load = PortLoad(float("inf"), t0)
    stop_at = t0 + int(seconds * 1e9)
    state = {"last": t0, "sending": True}

    def fill() -> None:
        while state["sending"] and load.outstanding + TP_WRITE <= TP_WINDOW:
            port.write(bytes(pattern(load.sent, TP_WRITE)))
            load.on_sent(TP_WRITE, clock())

    def finish() -> None:
        port.on_data = lambda data: None
        done.callback({"seconds": (state["last"] - t0) / 1e9, "bytes_sent": load.sent,
                       "bytes_received": load.received, "bytes_corrupt": load.corrupt})

    def on_data(data: bytes) -> None:
        now = state["last"] = clock()
        load.on_received(data, now)
        if state["sending"] and now >= stop_at:
            state["sending"] = False
        if state["sending"]:
            fill()
        elif load.received >= load.sent and not done.called:
            timeout.cancel()
            finish()

    def give_up() -> None:
        if not done.called:
            finish()

    port.on_data = on_data
    timeout = reactor.callLater(seconds + 15, give_up)
    fill()
    return done


def load_test(reactor: Any, ports: list[Port], seconds: float,
              paced_done: Callable[[], None]) -> Deferred[dict[str, Any]]:
    """
    Every port paced at LOAD_RATE in LOAD_TICK chunks for C{seconds}
    (C{paced_done} is called then), then wait for the echoes: until all are
    back, or nothing came for DRAIN_IDLE s, or DRAIN_MAX s passed.
    """
    done: Deferred[dict[str, Any]] = Deferred()
    t0 = clock()
    loads = [PortLoad(LOAD_RATE, t0) for _ in ports]
    stop_at = t0 + int(seconds * 1e9)
    state = {"end": stop_at}

    for p, ld in zip(ports, loads):
        p.on_data = lambda data, ld=ld: ld.on_received(data, clock())

    def tick() -> None:
        now = clock()
        if now >= stop_at:
            state["end"] = now
            loop.stop()
            return
        for p, ld in zip(ports, loads):
            chunk = ld.next_chunk(now)
            if chunk is not None:
                p.write(bytes(chunk))
                ld.on_sent(len(chunk), now)

    progress = {"got": 0, "at": 0.0}

    def drained() -> bool:
        if all(ld.received >= ld.sent for ld in loads):
            return True
        got = sum(ld.received for ld in loads)
        if got != progress["got"]:
            progress["got"], progress["at"] = got, reactor.seconds()
        return bool(reactor.seconds() - progress["at"] > DRAIN_IDLE)

    async def run() -> None:
        await loop.start(LOAD_TICK, now=True)
        paced_done()
        progress["at"] = reactor.seconds()
        await sleep(reactor, DRAIN_MAX, drained)
        for p in ports:
            p.on_data = lambda data: None
        result = summarize_load(loads, (state["end"] - t0) / 1e9)
        result["drain_seconds"] = (clock() - state["end"]) / 1e9
        done.callback(result)

    loop = LoopingCall(tick)
    loop.clock = reactor
    ensureDeferred(run()).addErrback(done.errback)
    return done


def rotations(names: list[str], rounds: int, start: int = 0) -> list[list[str]]:
    """The order of the targets in each round (rotated, as run.py does)."""
    k = len(names)
    return [names[(r + start) % k:] + names[:(r + start) % k] for r in range(rounds)]


async def main(reactor: Any, spec: dict[str, Any]) -> None:
    tests = spec["tests"]
    host = spec["host"]
    targets = {t["name"]: t for t in spec["targets"]}
    names = list(targets)
    ports: dict[str, list[Port]] = {}
    try:
        for name, t in targets.items():
            count = len(t["data_ports"]) if "load" in tests else 1
            ports[name] = []
            for i in range(count):
                ports[name].append(await open_port(reactor, host, t, i))
        if "rtt" in tests:
            samples: dict[str, list[float]] = {n: [] for n in names}
            for n in names:
                await rtt(reactor, ports[n][0], 50)  # warm-up
            batch = spec["rtt_batch"]
            for order in rotations(names, -(-spec["rtt_count"] // batch), spec.get("rotate", 0)):
                for n in order:
                    samples[n] += await rtt(reactor, ports[n][0], batch)
            for n in names:
                s = samples[n]
                say("RESULT", n, "rtt", json.dumps({
                    "count": len(s), "median_us": percentile(s, 50), "p99_us": percentile(s, 99),
                    "p999_us": percentile(s, 99.9), "max_us": max(s)}))
        tp_names = [n for n in names if targets[n]["kind"] != "socket"]
        if "tp" in tests and tp_names:
            slices: dict[str, list[dict[str, Any]]] = {n: [] for n in tp_names}
            rounds = spec["tp_rounds"]
            for order in rotations(tp_names, rounds, spec.get("rotate", 0)):
                for n in order:
                    say("BEGIN", n, "tp")
                    slices[n].append(await throughput(reactor, ports[n][0],
                                                      spec["tp_seconds"] / rounds))
                    say("END", n, "tp")
            for n in tp_names:
                sl = slices[n]
                secs = sum(x["seconds"] for x in sl)
                sent = sum(x["bytes_sent"] for x in sl)
                got = sum(x["bytes_received"] for x in sl)
                say("RESULT", n, "tp", json.dumps({
                    "slices": len(sl), "seconds": secs, "bytes_sent": sent,
                    "bytes_received": got, "bytes_lost": sent - got,
                    "bytes_corrupt": sum(x["bytes_corrupt"] for x in sl),
                    "mb_per_s": got / 1e6 / secs if secs else 0.0}))
        if "load" in tests:
            for n in rotations(names, 1, spec.get("rotate", 0))[0]:
                say("BEGIN", n, "load")
                result = await load_test(reactor, ports[n], spec["load_seconds"],
                                         lambda n=n: say("END", n, "load"))
                say("RESULT", n, "load", json.dumps(result))
    finally:
        for plist in ports.values():
            for p in plist:
                try:
                    p.close()
                except Exception as e:  # noqa: BLE001 - closing at exit
                    print(f"closing a port failed: {e}", file=sys.stderr)


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    react(lambda reactor: ensureDeferred(main(reactor, spec)))
