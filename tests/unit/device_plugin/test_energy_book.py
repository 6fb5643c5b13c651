"""The agent's energy book: work units relayed per job, runtime restarts, retention of
finished jobs, and flash-failure counting."""

from __future__ import annotations

import pytest

from device_plugin.book import EnergyBook
from naaice.energy import NS_PER_S, IntegratorConfig, JobKey, Sample

T0 = 1_800_000_000 * NS_PER_S


def _jobs(book: EnergyBook) -> dict[str, dict[str, float]]:
    return {j.job.name: j.work for j in book.snapshot().jobs}


def test_work_units_count_only_while_bound_and_survive_a_runtime_restart() -> None:
    book = EnergyBook()
    book.set_work("d", "kernel_run", 100)  # before the bind: not the job's
    book.bind("d", job=JobKey("ns", "a", "1"), at_ns=T0)
    book.set_work("d", "kernel_run", 103)
    book.set_work("d", "kernel_run", 2)  # the runtime restarted: its counter began again
    book.set_work("d", "kernel_run", 4)
    assert _jobs(book)["a"]["kernel_run"] == 7
    book.unbind("d", job=JobKey("ns", "a", "1"), at_ns=T0 + NS_PER_S)
    book.set_work("d", "kernel_run", 50)  # after the unbind: frozen
    assert _jobs(book)["a"]["kernel_run"] == 7


def test_finished_jobs_are_dropped_beyond_the_retention_count() -> None:
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=1.0), max_finished_jobs=2)
    for i in range(4):
        job = JobKey("ns", f"j{i}", str(i))
        book.bind("d", job=job, at_ns=T0 + 10 * i * NS_PER_S)
        book.unbind("d", job=job, at_ns=T0 + (10 * i + 5) * NS_PER_S)
    book.add_sample("d", Sample(t_ns=T0, power_w=10.0), now_ns=T0)
    book.add_sample("d", Sample(t_ns=T0 + 40 * NS_PER_S, power_w=10.0), now_ns=T0)
    book.commit(until_ns=T0 + 40 * NS_PER_S)
    assert sorted(_jobs(book)) == ["j2", "j3"]


def test_finished_jobs_expire_after_the_ttl() -> None:
    book = EnergyBook(finished_ttl_s=60.0)
    job = JobKey("ns", "old", "1")
    book.bind("d", job=job, at_ns=T0)
    book.unbind("d", job=job, at_ns=T0 + NS_PER_S)
    book.commit(until_ns=T0 + 30 * NS_PER_S)
    assert "old" in _jobs(book)
    book.commit(until_ns=T0 + 120 * NS_PER_S)
    assert "old" not in _jobs(book)


def test_a_flash_that_ends_in_error_is_counted_once() -> None:
    book = EnergyBook()
    for state in ("Idle", "Flashing", "Flashing", "Error", "Error", "Idle", "Flashing", "Ready"):
        book.set_health("d", reachable=True, healthy=state in ("Idle", "Ready"), state=state)
    (dev,) = book.snapshot().devices
    assert dev.flash_failures == 1
    assert dev.state == "Ready"


def test_device_energy_equals_jobs_plus_unbound_in_the_snapshot() -> None:
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1))
    book.bind("d", job=JobKey("ns", "a", "1"), at_ns=T0 + 1_234_567_891)
    book.unbind("d", job=JobKey("ns", "a", "1"), at_ns=T0 + 3_500_000_000)
    for i in range(60):
        t = T0 + i * NS_PER_S // 10
        book.add_sample("d", Sample(t_ns=t, power_w=40.0 + i, energy_uj=None), now_ns=t)
    book.commit(until_ns=T0 + 6 * NS_PER_S)
    snap = book.snapshot()
    (dev,) = snap.devices
    total = sum(j.joules for j in snap.jobs) + dev.unbound_j
    assert total == pytest.approx(dev.integrated_j, rel=1e-9)
