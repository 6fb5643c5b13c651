"""Prometheus exposition of the energy book with the metric names of ENERGY.md §5.

A custom collector builds const metric families from one `EnergyBook.snapshot()` per scrape:
no global instrumented objects, no timestamps (Prometheus stamps at scrape), counters carry
`_created`, label names never clash with target labels (`naajob_namespace`, not `namespace`;
UIDs only in `naa_job_info`). Called by `device_plugin.agent` (served on `--metrics-port`),
by the Prometheus integration test and by `bench/energy.py`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from device_plugin.book import EnergyBook, Snapshot
from naaice.energy import RejectReason

__all__ = ["METRIC_NAMES", "EnergyCollector", "families"]

VERSION = "0.1.0"
STATES = ("Idle", "Flashing", "Ready", "Error", "Unknown")

METRIC_NAMES = (
    "naa_device_power_watts",
    "naa_device_energy_joules_total",
    "naa_device_unbound_energy_joules_total",
    "naa_device_idle_power_watts",
    "naa_device_last_sample_timestamp_seconds",
    "naa_device_samples_total",
    "naa_device_samples_rejected_total",
    "naa_device_uncovered_seconds_total",
    "naa_device_counter_resets_total",
    "naa_device_flash_failures_total",
    "naa_device_healthy",
    "naa_device_reachable",
    "naa_device_info",
    "naa_device_state",
    "naa_job_energy_joules_total",
    "naa_job_power_watts",
    "naa_job_energy_coverage_ratio",
    "naa_job_bound_seconds_total",
    "naa_job_work_units_total",
    "naa_job_energy_budget_joules",
    "naa_job_info",
    "naa_exporter_sensor_up",
    "naa_exporter_mqtt_up",
    "naa_exporter_mqtt_messages_total",
    "naa_exporter_build_info",
)


def _counter(name: str, doc: str, labels: list[str], unit: str = "") -> CounterMetricFamily:
    # prometheus_client appends `_total` itself; METRIC_NAMES lists the exposed names.
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels, unit=unit)


def families(snap: Snapshot) -> list[Metric]:
    """All metric families for one snapshot (pure, so tests can check them without HTTP)."""
    dev_l = ["device", "sbc"]
    power = GaugeMetricFamily(
        "naa_device_power_watts",
        "Latest sensor power of the board (rail=board is the board total).",
        labels=[*dev_l, "rail"],
        unit="watts",
    )
    energy = _counter(
        "naa_device_energy_joules_total",
        "Energy since the agent started: source=hw_counter is the board's energy counter "
        "(wraps unwrapped, resets bridged by the integrated power), source=integrated the "
        "trapezoid of the sensor power at sensor timestamps. Do not sum across source.",
        [*dev_l, "rail", "source"],
        unit="joules",
    )
    unbound = _counter(
        "naa_device_unbound_energy_joules_total",
        "Energy attributed to no NAAJob (device = sum of naa_job_energy_joules_total + this).",
        ["device"],
        unit="joules",
    )
    idle = GaugeMetricFamily(
        "naa_device_idle_power_watts",
        "Estimated idle baseline: 10th percentile of recent unbound power (an estimate).",
        labels=["device"],
        unit="watts",
    )
    last = GaugeMetricFamily(
        "naa_device_last_sample_timestamp_seconds",
        "Sensor time of the newest accepted sample, seconds since the epoch.",
        labels=dev_l,
        unit="seconds",
    )
    samples = _counter("naa_device_samples_total", "Accepted sensor samples.", ["device"])
    rejected = _counter(
        "naa_device_samples_rejected_total",
        "Rejected sensor samples by reason (duplicate, out_of_order, invalid, clock_skew).",
        ["device", "reason"],
    )
    uncovered = _counter(
        "naa_device_uncovered_seconds_total",
        "Time not integrated because the gap between samples exceeded the maximum gap.",
        ["device"],
        unit="seconds",
    )
    resets = _counter(
        "naa_device_counter_resets_total",
        "Hardware energy counter decreases or jumps that were not a plausible wrap.",
        ["device"],
    )
    flash_failures = _counter(
        "naa_device_flash_failures_total",
        "Flashes that ended with the runtime in state Error, as seen by the health probe.",
        ["device"],
    )
    healthy = GaugeMetricFamily(
        "naa_device_healthy", "1 when the runtime reports itself healthy.", labels=["device"]
    )
    reachable = GaugeMetricFamily(
        "naa_device_reachable", "1 when the management endpoint answers.", labels=["device"]
    )
    info = GaugeMetricFamily(
        "naa_device_info",
        "Inventory of the device; join on device.",
        labels=["device", "sbc", "board_model", "fpga_part", "serial"],
    )
    state = GaugeMetricFamily(
        "naa_device_state",
        "1 for the runtime state the last probe saw, 0 for the others.",
        labels=["device", "state"],
    )
    sensor_up = GaugeMetricFamily(
        "naa_exporter_sensor_up",
        "1 when the last sensor read of the device succeeded.",
        labels=["device"],
    )
    for d in snap.devices:
        created = d.created_s
        if d.power_w is not None:
            power.add_metric([d.device, d.info.sbc, "board"], d.power_w)
        energy.add_metric(
            [d.device, d.info.sbc, "board", "integrated"], d.integrated_j, created=created
        )
        if d.hw_counter_j is not None:
            energy.add_metric(
                [d.device, d.info.sbc, "board", "hw_counter"], d.hw_counter_j, created=created
            )
        unbound.add_metric([d.device], d.unbound_j, created=created)
        if d.idle_power_w is not None:
            idle.add_metric([d.device], d.idle_power_w)
        if d.last_sample_s is not None:
            last.add_metric([d.device, d.info.sbc], d.last_sample_s)
        samples.add_metric([d.device], d.samples, created=created)
        for reason in RejectReason:
            rejected.add_metric([d.device, reason.value], d.rejected.get(reason.value, 0))
        uncovered.add_metric([d.device], d.uncovered_s, created=created)
        resets.add_metric([d.device], d.counter_resets, created=created)
        flash_failures.add_metric([d.device], d.flash_failures, created=created)
        healthy.add_metric([d.device], 1.0 if d.healthy else 0.0)
        reachable.add_metric([d.device], 1.0 if d.reachable else 0.0)
        info.add_metric(
            [d.device, d.info.sbc, d.info.board_model, d.info.fpga_part, d.info.serial], 1.0
        )
        for name in STATES:
            state.add_metric([d.device, name], 1.0 if d.state == name else 0.0)
        sensor_up.add_metric([d.device], 1.0 if d.sensor_up else 0.0)

    job_l = ["naajob_namespace", "naajob", "device"]
    job_energy = _counter(
        "naa_job_energy_joules_total",
        "Energy of the device while bound to the NAAJob; 0 at bind, the last value is the total.",
        job_l,
        unit="joules",
    )
    job_power = GaugeMetricFamily(
        "naa_job_power_watts", "Current power of a device bound to the NAAJob.", labels=job_l
    )
    coverage = GaugeMetricFamily(
        "naa_job_energy_coverage_ratio",
        "Fraction of the NAAJob's bound time with valid samples (0-1).",
        labels=["naajob_namespace", "naajob"],
    )
    bound = _counter(
        "naa_job_bound_seconds_total",
        "Time the device has been bound to the NAAJob (attributed so far).",
        job_l,
        unit="seconds",
    )
    work = _counter(
        "naa_job_work_units_total",
        "Work the bound NAA reported while bound (unit=kernel_run: successful kernel runs; "
        "unit=epoch: training epochs, when the runtime reports them). Divide energy by it.",
        [*job_l, "unit"],
    )
    budget = GaugeMetricFamily(
        "naa_job_energy_budget_joules",
        "spec.energyBudgetJoules of the NAAJob, when it sets one.",
        labels=["naajob_namespace", "naajob"],
        unit="joules",
    )
    job_info = GaugeMetricFamily(
        "naa_job_info",
        "NAAJob metadata; the UID lives only here.",
        labels=["naajob_namespace", "naajob", "uid", "accelerator_type", "bitstream"],
    )
    measured: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    seen_info: set[tuple[str, str, str]] = set()
    for j in snap.jobs:
        key = (j.job.namespace, j.job.name)
        job_energy.add_metric([*key, j.device], j.joules)
        bound.add_metric([*key, j.device], j.bound_ns / 1e9)
        for unit, n in sorted(j.work.items()):
            work.add_metric([*key, j.device, unit], n)
        if j.power_w is not None:
            job_power.add_metric([*key, j.device], j.power_w)
        measured[key][0] += j.measured_ns
        measured[key][1] += j.bound_ns
        if (*key, j.job.uid) not in seen_info:
            seen_info.add((*key, j.job.uid))
            if j.budget_j is not None:
                budget.add_metric(list(key), j.budget_j)
            job_info.add_metric([*key, j.job.uid, j.accelerator_type, j.bitstream], 1.0)
    for key, (m, b) in sorted(measured.items()):
        coverage.add_metric(list(key), min(1.0, m / b) if b > 0 else 1.0)
    mqtt: list[Metric] = []
    if snap.mqtt_up is not None:
        up = GaugeMetricFamily(
            "naa_exporter_mqtt_up",
            "1 while the MQTT sensor ingest is connected.",
            value=1.0 if snap.mqtt_up else 0.0,
        )
        messages = _counter(
            "naa_exporter_mqtt_messages_total",
            "Sensor messages received, by result (accepted, rejected: duplicate/out of order/"
            "invalid, malformed, ignored: an NAA this agent does not manage).",
            ["result"],
        )
        for result in ("accepted", "rejected", "malformed", "ignored"):
            messages.add_metric([result], snap.mqtt_messages.get(result, 0))
        mqtt = [up, messages]
    build = GaugeMetricFamily(
        "naa_exporter_build_info", "Agent build information.", labels=["version"]
    )
    build.add_metric([VERSION], 1.0)
    return [
        power,
        energy,
        unbound,
        idle,
        last,
        samples,
        rejected,
        uncovered,
        resets,
        flash_failures,
        healthy,
        reachable,
        info,
        state,
        sensor_up,
        job_energy,
        job_power,
        coverage,
        bound,
        work,
        budget,
        job_info,
        *mqtt,
        build,
    ]


class EnergyCollector(Collector):
    """Register on a `CollectorRegistry`; each scrape reads one consistent snapshot."""

    def __init__(self, book: EnergyBook) -> None:
        self._book = book

    def collect(self) -> Iterator[Metric]:
        yield from families(self._book.snapshot())
