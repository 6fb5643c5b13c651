"""Attribution of a device's energy to the jobs bound to it, and the operator's window function."""

from __future__ import annotations

import math

import numpy as np
import pytest

from naaice.energy import (
    NS_PER_S,
    BindingError,
    DeviceEnergy,
    EnergyError,
    IntegratorConfig,
    JobKey,
    Method,
    Sample,
    energy_over_window,
    split_segment,
)

T0 = 1_700_000_000 * NS_PER_S
A = JobKey(namespace="ns", name="a", uid="u-a")
B = JobKey(namespace="ns", name="b", uid="u-b")


def _s(t_s: float, p: float, e_uj: int | None = None) -> Sample:
    return Sample(t_ns=T0 + round(t_s * NS_PER_S), power_w=p, energy_uj=e_uj)


def _ns(t_s: float) -> int:
    return T0 + round(t_s * NS_PER_S)


def test_bind_and_unbind_inside_one_segment_split_it_by_linear_interpolation() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=10.0))
    ledger.bind(job=A, at_ns=_ns(2.0))
    ledger.unbind(job=A, at_ns=_ns(6.0))
    ledger.add_sample(_s(0.0, 0.0))
    ledger.add_sample(_s(10.0, 100.0))  # P(t) = 10·t between the samples
    ledger.commit(until_ns=_ns(10.0))
    job = ledger.job(A)
    assert job is not None
    assert job.joules == pytest.approx(5.0 * (36 - 4), rel=1e-12)  # ∫₂⁶ 10t dt
    assert ledger.totals.unbound_j == pytest.approx(500.0 - 160.0, rel=1e-12)
    assert job.coverage(until_ns=_ns(10.0)) == pytest.approx(1.0)
    assert job.method is Method.INTEGRATED


def test_device_energy_equals_the_jobs_plus_unbound_to_1e_9() -> None:
    rng = np.random.default_rng(11)
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    t = 0.0
    jobs = [JobKey(namespace="ns", name=f"j{i}", uid=str(i)) for i in range(20)]
    edges = np.sort(rng.uniform(0.0, 60.0, 2 * len(jobs)))
    for i, job in enumerate(jobs):
        ledger.bind(job=job, at_ns=_ns(edges[2 * i]))
        ledger.unbind(job=job, at_ns=_ns(edges[2 * i + 1]))
    while t <= 60.0:
        ledger.add_sample(_s(t, 80 + 40 * math.sin(t) + rng.uniform(0, 5)))
        if rng.random() < 0.1:
            ledger.commit(until_ns=_ns(t - rng.uniform(0, 0.5)))
        t += 0.1 + rng.uniform(-0.02, 0.02)
    ledger.commit(until_ns=_ns(61.0))
    total = ledger.totals.integrated_j
    parts = sum(j.joules for j in ledger.jobs()) + ledger.totals.unbound_j
    assert abs(total - parts) <= 1e-9 * total
    assert ledger.totals.attributed_j == pytest.approx(total, rel=1e-12)


def test_two_devices_bound_to_one_job_add_up() -> None:
    totals = []
    for power in (40.0, 60.0):
        ledger = DeviceEnergy(device=f"d{power}", config=IntegratorConfig(nominal_period_s=0.1))
        ledger.bind(job=A, at_ns=_ns(1.05))
        ledger.unbind(job=A, at_ns=_ns(3.05))
        for i in range(50):
            ledger.add_sample(_s(i * 0.1, power))
        ledger.commit(until_ns=_ns(5.0))
        job = ledger.job(A)
        assert job is not None
        totals.append(job.joules)
    assert sum(totals) == pytest.approx(100.0 * 2.0, rel=1e-9)


def test_job_energy_uses_the_hardware_counter_when_the_device_has_one() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    ledger.bind(job=A, at_ns=_ns(0.0))
    ledger.unbind(job=A, at_ns=_ns(1.0))
    for i in range(11):
        # The power reads 50 W but the counter says 60 W: the counter wins.
        ledger.add_sample(_s(i * 0.1, 50.0, e_uj=i * 6_000_000))
    ledger.commit(until_ns=_ns(1.0))
    job = ledger.job(A)
    assert job is not None
    assert job.joules == pytest.approx(60.0, rel=1e-12)
    assert job.method is Method.HW_COUNTER
    assert ledger.totals.integrated_j == pytest.approx(50.0, rel=1e-12)


def test_a_binding_learned_after_commit_is_counted_late_and_lowers_coverage() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    for i in range(31):
        ledger.add_sample(_s(i * 0.1, 10.0))
    ledger.commit(until_ns=_ns(2.0))
    ledger.bind(job=A, at_ns=_ns(1.0))  # the watch event came in after 2.0 was committed
    ledger.commit(until_ns=_ns(3.0))
    job = ledger.job(A)
    assert job is not None
    assert job.late_ns == NS_PER_S
    assert job.joules == pytest.approx(10.0, rel=1e-9)
    assert job.coverage(until_ns=_ns(3.0)) == pytest.approx(0.5)
    assert ledger.totals.unbound_j == pytest.approx(20.0, rel=1e-9)


def test_energy_waits_for_the_watermark_so_a_slightly_late_bind_is_still_exact() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    for i in range(31):
        ledger.add_sample(_s(i * 0.1, 10.0))
    ledger.bind(job=A, at_ns=_ns(1.23))
    ledger.commit(until_ns=_ns(3.0))
    job = ledger.job(A)
    assert job is not None
    assert job.late_ns == 0
    assert job.joules == pytest.approx(10.0 * 1.77, rel=1e-9)


def test_job_coverage_counts_gaps_as_unmeasured_time() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    ledger.bind(job=A, at_ns=_ns(0.0))
    for t in [0.0, 0.1, 0.2, 2.2, 2.3, 2.4]:
        ledger.add_sample(_s(t, 10.0))
    ledger.unbind(job=A, at_ns=_ns(2.4))
    ledger.commit(until_ns=_ns(2.4))
    job = ledger.job(A)
    assert job is not None
    assert job.coverage(until_ns=_ns(2.4)) == pytest.approx(0.4 / 2.4)
    assert job.joules == pytest.approx(4.0, rel=1e-9)


def test_binding_a_new_job_closes_the_previous_binding() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    ledger.bind(job=A, at_ns=_ns(0.0))
    ledger.bind(job=B, at_ns=_ns(0.5))
    for i in range(11):
        ledger.add_sample(_s(i * 0.1, 10.0))
    ledger.commit(until_ns=_ns(1.0))
    a, b = ledger.job(A), ledger.job(B)
    assert a is not None
    assert b is not None
    assert a.finished
    assert (a.joules, b.joules) == (pytest.approx(5.0), pytest.approx(5.0))
    assert ledger.holder() == B


def test_unbinding_a_job_that_never_held_the_device_is_an_error() -> None:
    ledger = DeviceEnergy(device="d")
    with pytest.raises(BindingError, match="never held device d"):
        ledger.unbind(job=A, at_ns=T0)


def test_split_halves_add_up_to_the_whole_segment_exactly() -> None:
    rng = np.random.default_rng(3)
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=1.0))
    ledger.add_sample(_s(0.0, 12.5, e_uj=0))
    ledger.add_sample(_s(1.0, 97.0, e_uj=60_000_000))
    (seg,) = list(ledger._pending)
    for _ in range(100):
        at = seg.t0_ns + int(rng.integers(1, seg.t1_ns - seg.t0_ns))
        left, right = split_segment(seg, at_ns=at)
        assert left.integrated_j + right.integrated_j == pytest.approx(seg.integrated_j, 1e-15)
        assert left.counter_j is not None
        assert right.counter_j is not None
        assert left.counter_j + right.counter_j == pytest.approx(seg.counter_j, rel=1e-15)


def test_window_energy_from_two_counter_samples_at_bind_and_unbind_is_their_delta() -> None:
    samples = [_s(0.0, 50.0, e_uj=1_000_000), _s(100.0, 50.0, e_uj=5_001_000_000)]
    w = energy_over_window(samples=samples, start_ns=_ns(0.0), end_ns=_ns(100.0))
    assert w.joules == pytest.approx(5000.0, rel=1e-12)
    assert w.method is Method.HW_COUNTER
    assert w.coverage == pytest.approx(1.0)


def test_window_energy_from_power_samples_interpolates_at_the_edges() -> None:
    samples = [_s(t / 10, 10.0 * t / 10) for t in range(0, 101)]  # P = 10·t over 0..10 s
    samples += samples[::7]  # redeliveries are ignored
    w = energy_over_window(
        samples=reversed(samples),
        start_ns=_ns(2.05),
        end_ns=_ns(7.95),
        config=IntegratorConfig(nominal_period_s=0.1),
    )
    assert w.joules == pytest.approx(5.0 * (7.95**2 - 2.05**2), rel=1e-9)
    assert w.method is Method.INTEGRATED
    assert w.coverage == pytest.approx(1.0)
    assert w.samples_used == 59


def test_window_energy_before_the_first_sample_is_uncovered() -> None:
    samples = [_s(t / 10, 10.0) for t in range(50, 101)]
    w = energy_over_window(
        samples=samples, start_ns=_ns(0.0), end_ns=_ns(10.0), config=IntegratorConfig()
    )
    assert w.joules == pytest.approx(50.0, rel=1e-9)
    assert w.coverage == pytest.approx(0.5)
    assert w.uncovered_s == pytest.approx(5.0)


def test_a_window_that_ends_before_it_starts_says_which_order_to_pass() -> None:
    with pytest.raises(EnergyError, match="pass bind then unbind"):
        energy_over_window(samples=[], start_ns=_ns(1.0), end_ns=_ns(0.0))


def test_a_job_spanning_an_agent_restart_is_before_plus_after_minus_the_gap() -> None:
    """ENERGY.md §7: samples up to the restart, none during it, samples after."""
    before = [_s(t / 10, 50.0) for t in range(0, 31)]  # 0..3 s
    after = [_s(t / 10, 70.0) for t in range(80, 121)]  # 8..12 s
    cfg = IntegratorConfig(nominal_period_s=0.1)
    whole = energy_over_window(samples=before + after, start_ns=_ns(0), end_ns=_ns(12), config=cfg)
    assert whole.joules == pytest.approx(50.0 * 3 + 70.0 * 4, rel=1e-9)
    assert whole.uncovered_s == pytest.approx(5.0)
    assert whole.coverage == pytest.approx(7 / 12)


def test_a_job_that_re_acquires_the_device_continues_its_counter_and_bound_time() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    ledger.bind(job=A, at_ns=_ns(0.0))
    ledger.unbind(job=A, at_ns=_ns(1.0))
    ledger.bind(job=B, at_ns=_ns(1.0))
    ledger.unbind(job=B, at_ns=_ns(2.0))
    ledger.bind(job=A, at_ns=_ns(2.5))
    for i in range(31):
        ledger.add_sample(_s(i * 0.1, 10.0))
    ledger.commit(until_ns=_ns(3.0))
    a, b = ledger.job(A), ledger.job(B)
    assert a is not None
    assert b is not None
    assert a.joules == pytest.approx(15.0, rel=1e-9)
    assert a.bound_ns(until_ns=_ns(3.0)) == round(1.5 * 1e9)
    assert a.coverage(until_ns=_ns(3.0)) == pytest.approx(1.0)
    assert b.joules == pytest.approx(10.0, rel=1e-9)
    assert ledger.totals.unbound_j == pytest.approx(5.0, rel=1e-9)
    ledger.unbind(job=A, at_ns=_ns(4.0))
    with pytest.raises(BindingError, match="before its release"):
        ledger.bind(job=A, at_ns=_ns(3.5))
