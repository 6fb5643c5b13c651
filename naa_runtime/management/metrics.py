"""Prometheus metrics of one software NAA, collected at scrape time.

`naa_runtime.management.server` serves `render(registry)` at `/metrics`. Each NAA gets its own
`CollectorRegistry` (several NAAs may share a process in tests), holding one `NAACollector`
that reads the NAA's state, sensors, activity counters and — when a data plane is attached —
its transport statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from naa_runtime.naa import NAAState, SoftwareNAA


@dataclass(frozen=True)
class DataPlaneCounters:
    """The transport statistics the metrics need, in a shape independent of the RPC server."""

    packets_received: int = 0
    packets_sent: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    retransmits: int = 0
    naks_sent: dict[str, int] = field(default_factory=dict)
    naks_received: dict[str, int] = field(default_factory=dict)
    rpcs: dict[tuple[int, str], int] = field(default_factory=dict)
    bytes_received: int = 0
    bytes_sent: int = 0
    connections_rejected: int = 0
    mrsp_errors: dict[str, int] = field(default_factory=dict)


class NAACollector(Collector):
    def __init__(
        self,
        *,
        naa: SoftwareNAA,
        data_plane_counters: Callable[[], DataPlaneCounters | None] = lambda: None,
    ) -> None:
        self._naa = naa
        self._data_plane_counters = data_plane_counters

    def collect(self) -> Iterator[Metric]:
        naa = self._naa
        cfg = naa.config
        info = InfoMetricFamily("naa", "Identity of this software NAA.")
        info.add_metric(
            [],
            {
                "name": cfg.name,
                "serial": cfg.serial,
                "board_model": cfg.board.model,
                "version": cfg.version,
            },
        )
        yield info

        state = GaugeMetricFamily(
            "naa_state", "1 for the state the NAA is in, 0 otherwise.", labels=["state"]
        )
        for value in NAAState:
            state.add_metric([value.value], 1.0 if naa.state is value else 0.0)
        yield state

        loaded = naa.loaded
        bitstream = InfoMetricFamily("naa_bitstream", "The loaded bitstream (none when unflashed).")
        bitstream.add_metric(
            [], {"name": loaded.name if loaded else "", "digest": loaded.digest if loaded else ""}
        )
        yield bitstream

        sample = naa.sensor_sample()
        yield _gauge(
            "naa_power_watts", "Board power, averaged over the last second.", sample.power_watts
        )
        yield _counter(
            "naa_energy_joules",
            "Energy since the runtime started (emulated power model, integrated per sample).",
            sample.energy_microjoules / 1e6,
        )
        yield _gauge(
            "naa_temperature_celsius", "Emulated die temperature.", sample.temperature_celsius
        )
        yield _gauge("naa_busy_ratio", "Fraction of the last second a kernel ran.", sample.busy)
        yield _gauge(
            "naa_sensor_timestamp_seconds",
            "CLOCK_REALTIME of the newest sensor sample.",
            sample.timestamp_ns / 1e9,
        )

        stats = naa.stats()
        yield _gauge("naa_connections", "Open RPC connections.", naa.active_connections)
        yield _counter(
            "naa_connections_opened", "RPC connections accepted.", stats.connections_opened
        )
        yield _counter(
            "naa_connections_closed", "RPC connections that ended.", stats.connections_closed
        )
        yield _labelled_counter(
            "naa_kernel_runs",
            "Kernel runs by fn code and result (ok: return code 0).",
            ["fn", "result"],
            (([str(fn), result], n) for (fn, result), n in stats.kernel_runs.items()),
        )
        yield _labelled_counter(
            "naa_kernel_seconds",
            "Time spent in kernels by fn code.",
            ["fn"],
            (([str(fn)], s) for fn, s in stats.kernel_seconds.items()),
        )
        yield _labelled_counter(
            "naa_flashes",
            "Flash attempts by result (ok, or the error code).",
            ["result"],
            (([result], n) for result, n in stats.flashes.items()),
        )
        yield _counter("naa_scrubs", "Scrubs performed.", stats.scrubs)
        for unit, amount in sorted(naa.work().items()):
            yield _counter(
                f"naa_{unit}", f"Work the kernels reported in {unit} (KernelContext).", amount
            )

        yield _labelled_counter(
            "naa_rpc_payload_bytes",
            "Bytes of RPC inputs received and outputs sent (what the power model sees).",
            ["direction"],
            [(["received"], stats.bytes_received), (["sent"], stats.bytes_sent)],
        )
        counters = self._data_plane_counters()
        if counters is None:
            return
        yield _labelled_counter(
            "naa_rdma_packets",
            "RoCEv2 datagrams by direction (CM MADs included).",
            ["direction"],
            [(["received"], counters.packets_received), (["sent"], counters.packets_sent)],
        )
        yield _labelled_counter(
            "naa_rdma_bytes",
            "RoCEv2 datagram bytes by direction (headers and ICRC included).",
            ["direction"],
            [(["received"], counters.bytes_received), (["sent"], counters.bytes_sent)],
        )
        yield _labelled_counter(
            "naa_rdma_dropped_packets",
            "Datagrams dropped (malformed, bad ICRC, unknown QP, …) by reason.",
            ["reason"],
            (([reason], n) for reason, n in counters.dropped.items()),
        )
        yield _counter("naa_rdma_retransmits", "Packets retransmitted.", counters.retransmits)
        naks = [(["sent", s], n) for s, n in counters.naks_sent.items()]
        naks += [(["received", s], n) for s, n in counters.naks_received.items()]
        yield _labelled_counter(
            "naa_rdma_naks", "NAKs by direction and AETH syndrome.", ["direction", "syndrome"], naks
        )
        yield _labelled_counter(
            "naa_rpcs",
            "RPCs answered, by fn code and result.",
            ["fn", "result"],
            (([str(fn), result], n) for (fn, result), n in counters.rpcs.items()),
        )
        yield _counter(
            "naa_connections_rejected",
            "Connection requests rejected (no free slot, wrong service ID).",
            counters.connections_rejected,
        )
        yield _labelled_counter(
            "naa_mrsp_errors",
            "MRSP requests answered with an ERR message, by error.",
            ["error"],
            (([error], n) for error, n in counters.mrsp_errors.items()),
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled_counter(
    name: str,
    documentation: str,
    labels: list[str],
    values: Iterable[tuple[list[str], float]],
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def naa_registry(
    naa: SoftwareNAA,
    *,
    data_plane_counters: Callable[[], DataPlaneCounters | None] = lambda: None,
) -> CollectorRegistry:
    """A registry of its own for one NAA (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NAACollector(naa=naa, data_plane_counters=data_plane_counters))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
