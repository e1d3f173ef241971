# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics of the box (docs/monitoring.md, "Prometheus").

Two halves, so that the reactor never waits for a scrape and no thread
reads the live objects:

  - L{take_sample} reads every port's counters, lines and connections on
    the reactor thread into frozen values (cheap: attribute reads);
  - L{registry_for} wraps one sample in a fresh
    C{prometheus_client.CollectorRegistry} (a custom collector, nothing in
    the global registry) together with prometheus_client's process and
    platform collectors; prometheus_client encodes it, in the web
    console's case in the reactor's thread pool
    (L{nport_twisted.web.metrics}).

This module imports nothing of prometheus_client at import time:
L{registry_for} does, on the first scrape, so an idle box never loads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs

import nport_twisted
from nport_twisted.net.context import IDeviceContext

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["MetricsSample", "PortSample", "NPortCollector", "registry_for", "take_sample"]

#: Gate refusal counters (net.session.GateStats) and their C{reason} label.
_REFUSALS = (("refused_accessible_ip", "accessible_ip"), ("refused_limit", "limit"),
             ("refused_claim", "claim"))
_ERRORS = (("parity_errors", "parity"), ("framing_errors", "framing"),
           ("overrun_errors", "overrun"), ("breaks", "break"))
_LINES = ("dcd", "dsr", "cts", "ri")


@attrs.frozen
class PortSample:
    """One serial port at one instant."""

    port: int  # NPort port number (1-based)
    device: str
    mode: str
    alias: str
    present: bool
    counters: dict[str, int]  # ChannelStats as a dict
    modem: dict[str, bool] | None  # None: the device has no modem lines (a pty)
    buffered: int
    refused: dict[str, int]  # reason label -> connections refused


@attrs.frozen
class MetricsSample:
    """The whole box at one instant."""

    server_name: str
    model: str
    uptime_s: float
    ports: tuple[PortSample, ...]


def take_sample(ctx: IDeviceContext) -> MetricsSample:
    """Read everything a scrape reports; call on the reactor thread."""
    from nport_twisted.config.identity import resolve_identity

    ident = resolve_identity(ctx.config, len(ctx.ports))
    refused: dict[int, dict[str, int]] = {}
    for gate in list(getattr(ctx.net, "gates", ())):
        index = getattr(gate, "port_index", None)
        if index is None:
            continue
        per = refused.setdefault(index, {label: 0 for _, label in _REFUSALS})
        for attr, label in _REFUSALS:
            per[label] += int(getattr(gate.stats, attr, 0))
    ports = []
    for index, port in enumerate(ctx.ports):
        channel = port.channel
        modem = channel.modem
        ports.append(PortSample(
            port=index + 1,
            device=str(channel.device),
            mode=str(port.config.operating.mode.value),
            alias=str(port.config.serial.alias),
            present=bool(channel.is_open),
            counters=attrs.asdict(channel.stats),
            modem=None if modem is None else {line: bool(getattr(modem, line)) for line in _LINES},
            buffered=int(channel.buffered_bytes),
            refused=refused.get(index, {label: 0 for _, label in _REFUSALS}),
        ))
    return MetricsSample(server_name=ident.server_name, model=ident.model.name,
                         uptime_s=max(0.0, ctx.reactor.seconds() - ctx.started_at),
                         ports=tuple(ports))


class NPortCollector:
    """A prometheus_client collector over one L{MetricsSample} (see docs/monitoring.md)."""

    def __init__(self, sample: MetricsSample) -> None:
        self.sample = sample

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            InfoMetricFamily,
        )

        s = self.sample
        info = InfoMetricFamily("nport", "The box: server name, model, software version.")
        info.add_metric([], {"server_name": s.server_name, "model": s.model,
                             "version": nport_twisted.__version__})
        yield info
        yield GaugeMetricFamily("nport_uptime_seconds", "Seconds since the service started.",
                                value=s.uptime_s)

        port_info = InfoMetricFamily("nport_port", "A serial port: device, operating mode, alias.",
                                     labels=["port"])
        for p in s.ports:
            port_info.add_metric([str(p.port)], {"device": p.device, "mode": p.mode,
                                                 "alias": p.alias})
        yield port_info

        def counter(name: str, doc: str, key: str) -> Any:
            family = CounterMetricFamily(name, doc, labels=["port"])
            for p in s.ports:
                family.add_metric([str(p.port)], p.counters.get(key, 0))
            return family

        def gauge(name: str, doc: str, value: Any) -> Any:
            family = GaugeMetricFamily(name, doc, labels=["port"])
            for p in s.ports:
                family.add_metric([str(p.port)], value(p))
            return family

        yield counter("nport_port_tx_bytes", "Bytes written to the serial device.",
                      "serial_tx_bytes")
        yield counter("nport_port_rx_bytes", "Bytes read from the serial device.",
                      "serial_rx_bytes")
        yield counter("nport_port_tx_dropped_bytes",
                      "Network bytes dropped while the device was absent.", "serial_tx_dropped")
        yield counter("nport_port_rx_dropped_bytes",
                      "Device bytes not delivered (no peer, or a jammed one).",
                      "serial_rx_dropped")
        yield counter("nport_port_frames",
                      "Frames sent to the network (each flush of the data packing buffer).",
                      "frames")
        errors = CounterMetricFamily("nport_port_errors", "Serial line errors the kernel counted.",
                                     labels=["port", "kind"])
        for p in s.ports:
            for key, kind in _ERRORS:
                errors.add_metric([str(p.port), kind], p.counters.get(key, 0))
        yield errors
        yield gauge("nport_port_connections", "Network connections now.",
                    lambda p: p.counters.get("connections_active", 0))
        yield counter("nport_port_connections", "Network connections since start.",
                      "connections_total")
        refused = CounterMetricFamily(
            "nport_port_refused_connections",
            "Connections refused, by reason (since the port's front-end last started).",
            labels=["port", "reason"])
        for p in s.ports:
            for _, reason in _REFUSALS:
                refused.add_metric([str(p.port), reason], p.refused.get(reason, 0))
        yield refused
        lines = GaugeMetricFamily("nport_port_modem_line",
                                  "Modem line state (1 on); only ports whose device has them.",
                                  labels=["port", "line"])
        for p in s.ports:
            if p.modem is not None:
                for line in _LINES:
                    lines.add_metric([str(p.port), line], 1 if p.modem[line] else 0)
        yield lines
        yield gauge("nport_port_has_modem_lines", "1 if the device has modem lines (not a pty).",
                    lambda p: 0 if p.modem is None else 1)
        yield gauge("nport_port_device_present", "1 while the serial device is open.",
                    lambda p: 1 if p.present else 0)
        yield counter("nport_port_device_opens", "Opens of the serial device (reopens included).",
                      "opens")
        yield counter("nport_port_device_open_failures", "Failed attempts to open the device.",
                      "open_failures")
        yield gauge("nport_port_buffered_bytes", "Bytes held by port buffering.",
                    lambda p: p.buffered)


_process: list[Any] = []


def registry_for(sample: MetricsSample) -> CollectorRegistry:
    """A registry of its own for one scrape: the box's metrics and the process's."""
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    if not _process:  # stateless readers of /proc/self and the interpreter: made once
        _process.extend([ProcessCollector(registry=None), PlatformCollector(registry=None)])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NPortCollector(sample))
    for collector in _process:
        registry.register(collector)
    return registry
