"""The agent's energy book: one `naaice.energy.DeviceEnergy` per NAA plus what the exporter
shows about it (inventory, health, sensor liveness), and the job bindings learned from Leases.

Thread-safe: the sampler and inventory (asyncio loop), the Lease watcher (thread) and the
Prometheus collector (HTTP thread) all go through one lock. The collector reads an immutable
`Snapshot`, so a scrape never sees a half-applied sample and its values do not depend on when
or how often it scrapes (samples are integrated as they arrive, not at scrape time).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace

from naaice.energy import NS_PER_S, DeviceEnergy, IntegratorConfig, JobKey, RejectReason, Sample

__all__ = ["DeviceInfo", "DeviceView", "EnergyBook", "JobView", "Snapshot"]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Inventory labels of a device (`naa_device_info`)."""

    sbc: str = ""
    board_model: str = ""
    fpga_part: str = ""
    serial: str = ""
    bitstream: str = ""


@dataclass(frozen=True, slots=True)
class JobView:
    job: JobKey
    device: str
    joules: float
    power_w: float | None
    measured_ns: int
    bound_ns: int
    finished: bool
    accelerator_type: str
    bitstream: str
    work: dict[str, float] = field(default_factory=dict)
    budget_j: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    device: str
    info: DeviceInfo
    created_s: float
    power_w: float | None
    last_sample_s: float | None
    integrated_j: float
    hw_counter_j: float | None
    unbound_j: float
    uncovered_s: float
    samples: int
    rejected: dict[str, int]
    counter_resets: int
    idle_power_w: float | None
    sensor_up: bool
    reachable: bool
    healthy: bool
    state: str
    flash_failures: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    devices: list[DeviceView]
    jobs: list[JobView]
    mqtt_up: bool | None = None
    mqtt_messages: dict[str, int] = field(default_factory=dict)


@dataclass
class _Device:
    ledger: DeviceEnergy
    info: DeviceInfo
    created_s: float
    sensor_up: bool = False
    reachable: bool = False
    healthy: bool = False
    state: str = "Unknown"
    flash_failures: int = 0
    # Work counters relayed from the NAA (unit -> monotonic total, raw last value).
    work_total: dict[str, float] = field(default_factory=dict)
    work_raw: dict[str, float] = field(default_factory=dict)
    # Per job and unit: total at bind, and the job's final count once unbound.
    work_base: dict[tuple[JobKey, str], float] = field(default_factory=dict)
    work_final: dict[tuple[JobKey, str], float] = field(default_factory=dict)


@dataclass
class _Finished:
    device: str
    job: JobKey
    at_s: float


@dataclass
class EnergyBook:
    """All devices of this agent. `max_finished_jobs` / `finished_ttl_s` bound how long a
    finished job's series stay exported (the NAAJob status is the durable record)."""

    config: IntegratorConfig = field(default_factory=IntegratorConfig)
    sbc: str = ""
    max_finished_jobs: int = 100
    finished_ttl_s: float = 600.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _devices: dict[str, _Device] = field(default_factory=dict)
    _finished: deque[_Finished] = field(default_factory=deque)
    _budgets: dict[JobKey, float] = field(default_factory=dict)
    _mqtt_up: bool | None = None
    _mqtt_messages: dict[str, int] = field(default_factory=dict)

    def _device(self, name: str) -> _Device:
        dev = self._devices.get(name)
        if dev is None:
            dev = _Device(
                ledger=DeviceEnergy(device=name, config=self.config),
                info=DeviceInfo(sbc=self.sbc),
                created_s=time.time(),
            )
            self._devices[name] = dev
        return dev

    # ---- writers ------------------------------------------------------------------------

    def ensure_device(self, name: str, *, info: DeviceInfo | None = None) -> None:
        with self._lock:
            dev = self._device(name)
            if info is not None:
                dev.info = replace(info, sbc=info.sbc or self.sbc)

    def forget_device(self, name: str) -> None:
        with self._lock:
            self._devices.pop(name, None)

    def add_sample(self, name: str, sample: Sample, *, now_ns: int) -> RejectReason | None:
        with self._lock:
            dev = self._device(name)
            dev.sensor_up = True
            return dev.ledger.add_sample(sample, now_ns=now_ns)

    def has_device(self, name: str) -> bool:
        with self._lock:
            return name in self._devices

    def set_mqtt(self, *, up: bool) -> None:
        """MQTT ingest state (None until an ingest is configured)."""
        with self._lock:
            self._mqtt_up = up

    def count_mqtt_message(self, result: str) -> None:
        with self._lock:
            self._mqtt_messages[result] = self._mqtt_messages.get(result, 0) + 1

    def set_sensor_up(self, name: str, up: bool) -> None:
        with self._lock:
            self._device(name).sensor_up = up

    def set_health(self, name: str, *, reachable: bool, healthy: bool, state: str) -> None:
        """Record a probe; a Flashing → Error transition counts as a flash failure."""
        with self._lock:
            dev = self._device(name)
            if dev.state == "Flashing" and state == "Error":
                dev.flash_failures += 1
            dev.reachable, dev.healthy, dev.state = reachable, healthy, state

    def set_bitstream(self, name: str, bitstream: str) -> None:
        with self._lock:
            dev = self._device(name)
            dev.info = replace(dev.info, bitstream=bitstream)

    def set_work(self, name: str, unit: str, value: float) -> None:
        """Relay a work counter the NAA reports (e.g. kernel runs); a decrease is a runtime
        restart, after which the counter's new value is counted from zero."""
        with self._lock:
            dev = self._device(name)
            prev = dev.work_raw.get(unit)
            step = value if prev is None or value < prev else value - prev
            if prev is None:
                step = 0.0
            dev.work_raw[unit] = value
            dev.work_total[unit] = dev.work_total.get(unit, 0.0) + step
            holder = dev.ledger.holder()
            if holder is not None and (holder, unit) not in dev.work_base:
                dev.work_base[(holder, unit)] = dev.work_total[unit]

    def set_budget(self, job: JobKey, joules: float | None) -> None:
        with self._lock:
            if joules is None:
                self._budgets.pop(job, None)
            else:
                self._budgets[job] = joules

    def bind(self, name: str, *, job: JobKey, at_ns: int) -> None:
        with self._lock:
            dev = self._device(name)
            dev.ledger.bind(job=job, at_ns=at_ns)
            for unit, total in dev.work_total.items():
                final = dev.work_final.pop((job, unit), None)
                if final is not None:  # re-acquired: continue the count, skip the interval
                    dev.work_base[(job, unit)] = total - final
                else:
                    dev.work_base.setdefault((job, unit), total)

    def unbind(self, name: str, *, job: JobKey, at_ns: int) -> None:
        with self._lock:
            dev = self._devices.get(name)
            if dev is None or dev.ledger.job(job) is None:
                return
            dev.ledger.unbind(job=job, at_ns=at_ns)
            for (who, unit), base in list(dev.work_base.items()):
                if who == job:
                    dev.work_final[(who, unit)] = dev.work_total.get(unit, base) - base
            self._finished.append(_Finished(device=name, job=job, at_s=at_ns / NS_PER_S))

    def holders(self) -> dict[str, JobKey]:
        with self._lock:
            return {
                name: holder
                for name, dev in self._devices.items()
                if (holder := dev.ledger.holder()) is not None
            }

    def commit(self, *, until_ns: int) -> None:
        """Attribute every device's pending energy up to `until_ns`; expire old finished jobs."""
        with self._lock:
            for dev in self._devices.values():
                dev.ledger.commit(until_ns=until_ns)
            now_s = until_ns / NS_PER_S
            while self._finished and (
                len(self._finished) > self.max_finished_jobs
                or now_s - self._finished[0].at_s > self.finished_ttl_s
            ):
                gone = self._finished.popleft()
                owner = self._devices.get(gone.device)
                if owner is not None:
                    owner.ledger.forget_job(gone.job)
                    for key in [k for k in owner.work_base if k[0] == gone.job]:
                        owner.work_base.pop(key, None)
                        owner.work_final.pop(key, None)
                self._budgets.pop(gone.job, None)

    # ---- reader -------------------------------------------------------------------------

    def snapshot_device(self, name: str) -> tuple[float | None, int | None]:
        """Latest power (W) and raw hardware counter (µJ) of one device, for its NAA status."""
        with self._lock:
            dev = self._devices.get(name)
            last = dev.ledger.last_sample if dev is not None else None
            if last is None:
                return None, None
            return last.power_w, last.energy_uj

    def snapshot(self) -> Snapshot:
        with self._lock:
            devices: list[DeviceView] = []
            jobs: list[JobView] = []
            for name, dev in sorted(self._devices.items()):
                led = dev.ledger
                last = led.last_sample
                t = led.totals
                committed = led.committed_ns
                devices.append(
                    DeviceView(
                        device=name,
                        info=dev.info,
                        created_s=dev.created_s,
                        power_w=last.power_w if last is not None else None,
                        last_sample_s=last.t_ns / NS_PER_S if last is not None else None,
                        integrated_j=t.integrated_j,
                        hw_counter_j=t.hw_counter_j if led.has_counter else None,
                        unbound_j=t.unbound_j,
                        uncovered_s=t.uncovered_ns / NS_PER_S,
                        samples=t.accepted,
                        rejected={r.value: n for r, n in t.rejected.items()},
                        counter_resets=t.counter_resets,
                        idle_power_w=led.idle_power_w(),
                        sensor_up=dev.sensor_up,
                        reachable=dev.reachable,
                        healthy=dev.healthy,
                        state=dev.state,
                        flash_failures=dev.flash_failures,
                    )
                )
                holder = led.holder()
                for entry in led.jobs():
                    until = committed if committed is not None else entry.bound_at_ns
                    work = {
                        unit: dev.work_final.get(
                            (entry.job, unit), dev.work_total.get(unit, base) - base
                        )
                        for (who, unit), base in dev.work_base.items()
                        if who == entry.job
                    }
                    jobs.append(
                        JobView(
                            job=entry.job,
                            device=name,
                            joules=entry.joules,
                            power_w=(
                                last.power_w if holder == entry.job and last is not None else None
                            ),
                            measured_ns=entry.measured_ns,
                            bound_ns=entry.bound_ns(until_ns=until),
                            finished=entry.finished,
                            accelerator_type=dev.info.board_model,
                            bitstream=dev.info.bitstream,
                            work=work,
                            budget_j=self._budgets.get(entry.job),
                        )
                    )
            return Snapshot(
                devices=devices,
                jobs=jobs,
                mqtt_up=self._mqtt_up,
                mqtt_messages=dict(self._mqtt_messages),
            )
