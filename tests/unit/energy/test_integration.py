"""The integrator against analytic power profiles and hostile input (ENERGY.md §6 and §7)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from naaice.energy import (
    NS_PER_S,
    DeviceEnergy,
    EnergyConfigError,
    IntegratorConfig,
    RejectReason,
    Sample,
    rectangle_energy,
    trapezoid_energy,
)

T0 = 1_700_000_000 * NS_PER_S  # a realistic CLOCK_REALTIME origin: ns arithmetic must stay exact


def _grid(duration_s: float, dt_s: float) -> list[int]:
    n = round(duration_s / dt_s)
    return [T0 + round(i * dt_s * NS_PER_S) for i in range(n + 1)]


def _feed(ledger: DeviceEnergy, samples: list[Sample]) -> None:
    for s in samples:
        ledger.add_sample(s)


def _integrated(profile, times: list[int], config: IntegratorConfig | None = None) -> DeviceEnergy:
    ledger = DeviceEnergy(device="d", config=config or IntegratorConfig(nominal_period_s=1.0))
    _feed(ledger, [Sample(t_ns=t, power_w=profile((t - T0) / NS_PER_S)) for t in times])
    return ledger


def test_constant_power_integrates_exactly() -> None:
    ledger = _integrated(lambda t: 89.0, _grid(100.0, 0.1))
    assert ledger.totals.integrated_j == pytest.approx(8900.0, rel=1e-9)
    assert ledger.totals.uncovered_ns == 0


def test_linear_ramp_integrates_exactly() -> None:
    ledger = _integrated(lambda t: 20.0 + 0.69 * t, _grid(100.0, 0.1))
    exact = 20.0 * 100.0 + 0.69 * 100.0**2 / 2.0
    assert ledger.totals.integrated_j == pytest.approx(exact, rel=1e-9)


def test_piecewise_linear_profile_sampled_at_its_breakpoints_is_exact() -> None:
    breakpoints = [(0.0, 10.0), (1.3, 80.0), (2.0, 80.0), (7.25, 30.0), (9.0, 0.0), (12.0, 55.5)]
    times = [T0 + round(t * NS_PER_S) for t, _ in breakpoints]
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=2.0))
    _feed(ledger, [Sample(t_ns=t, power_w=p) for t, (_, p) in zip(times, breakpoints, strict=True)])
    exact = sum((p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(breakpoints))
    assert ledger.totals.integrated_j == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("dt_s", [1.0, 5.0, 15.0])
def test_random_phase_step_error_stays_within_half_a_step_per_edge(dt_s: float) -> None:
    rng = np.random.default_rng(7)
    low, high, dp = 20.0, 89.0, 69.0
    for _ in range(200):
        phase = rng.uniform(0.0, dt_s)
        on, off = 10.0 + phase, 10.0 + phase + 100.3
        profile = lambda t, on=on, off=off: high if on <= t < off else low  # noqa: E731
        times = _grid(130.0, dt_s)
        ledger = _integrated(profile, times, IntegratorConfig(nominal_period_s=dt_s))
        exact = low * 130.0 + dp * 100.3
        bound = 2 * dp * dt_s / 2 + 1e-9 * exact
        assert abs(ledger.totals.integrated_j - exact) <= bound


@pytest.mark.parametrize("dt_s", [0.1, 1.0])
def test_sine_error_stays_within_the_smooth_trapezoid_bound(dt_s: float) -> None:
    amp, mean, period, duration = 40.0, 89.0, 7.0, 70.0
    omega = 2 * math.pi / period
    ledger = _integrated(lambda t: mean + amp * math.sin(omega * t), _grid(duration, dt_s))
    exact = mean * duration + amp / omega * (1 - math.cos(omega * duration))
    bound = duration * dt_s**2 * amp * omega**2 / 12
    assert abs(ledger.totals.integrated_j - exact) <= bound + 1e-9 * exact


def test_trapezoid_beats_the_rectangle_rule_on_a_ramp() -> None:
    pts = [(t, 20.0 + t) for t in np.arange(0.0, 10.01, 1.0)]
    exact = 20.0 * 10 + 10.0**2 / 2
    assert trapezoid_energy(pts) == pytest.approx(exact, rel=1e-12)
    assert abs(rectangle_energy(pts) - exact) == pytest.approx(5.0)


def test_replaying_every_sample_twice_leaves_the_energy_unchanged() -> None:
    times = _grid(20.0, 0.1)
    once = _integrated(lambda t: 50.0 + 10 * math.sin(t), times)
    twice = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    for t in times:
        s = Sample(t_ns=t, power_w=50.0 + 10 * math.sin((t - T0) / NS_PER_S))
        assert twice.add_sample(s) is None
        assert twice.add_sample(s) is RejectReason.DUPLICATE
    assert twice.totals.integrated_j == once.totals.integrated_j
    assert twice.totals.rejected[RejectReason.DUPLICATE] == len(times)


def test_a_late_redelivery_is_a_duplicate_and_a_never_seen_old_sample_is_out_of_order() -> None:
    ledger = DeviceEnergy(device="d")
    for i in range(5):
        ledger.add_sample(Sample(t_ns=T0 + i * 100_000_000, power_w=10.0))
    assert ledger.add_sample(Sample(t_ns=T0 + 100_000_000, power_w=10.0)) == "duplicate"
    assert ledger.add_sample(Sample(t_ns=T0 + 150_000_000, power_w=10.0)) == "out_of_order"
    assert ledger.totals.rejected[RejectReason.OUT_OF_ORDER] == 1
    assert ledger.totals.integrated_j == pytest.approx(4.0, rel=1e-12)


def test_a_gap_longer_than_max_gap_is_counted_uncovered_and_not_bridged() -> None:
    cfg = IntegratorConfig(nominal_period_s=0.1)
    times = [t for t in _grid(10.0, 0.1) if not (T0 + 3 * NS_PER_S < t < T0 + 5 * NS_PER_S)]
    ledger = DeviceEnergy(device="d", config=cfg)
    _feed(ledger, [Sample(t_ns=t, power_w=100.0) for t in times])
    assert ledger.totals.uncovered_ns == 2 * NS_PER_S
    assert ledger.totals.integrated_j == pytest.approx(100.0 * 8.0, rel=1e-9)
    assert ledger.totals.covered_ns == 8 * NS_PER_S


def test_a_gap_within_max_gap_is_bridged() -> None:
    cfg = IntegratorConfig(nominal_period_s=0.1)  # max gap 0.3 s
    ledger = DeviceEnergy(device="d", config=cfg)
    _feed(ledger, [Sample(t_ns=T0, power_w=10.0), Sample(t_ns=T0 + 300_000_000, power_w=10.0)])
    assert ledger.totals.uncovered_ns == 0
    assert ledger.totals.integrated_j == pytest.approx(3.0)


@pytest.mark.parametrize(
    "power", [float("nan"), float("inf"), -1.0, 1e9], ids=["nan", "inf", "negative", "absurd"]
)
def test_invalid_power_is_rejected_and_changes_nothing(power: float) -> None:
    ledger = DeviceEnergy(device="d")
    ledger.add_sample(Sample(t_ns=T0, power_w=10.0))
    assert ledger.add_sample(Sample(t_ns=T0 + 100_000_000, power_w=power)) == "invalid"
    assert ledger.totals.integrated_j == 0.0
    ledger.add_sample(Sample(t_ns=T0 + 200_000_000, power_w=10.0))
    assert ledger.totals.integrated_j == pytest.approx(2.0)


def test_a_sample_from_the_future_is_rejected_as_clock_skew() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(max_future_skew_s=5.0))
    now = T0
    assert ledger.add_sample(Sample(t_ns=now + 6 * NS_PER_S, power_w=1.0), now_ns=now) == (
        "clock_skew"
    )
    assert ledger.add_sample(Sample(t_ns=now + 4 * NS_PER_S, power_w=1.0), now_ns=now) is None


def _counter_run(modulus: int | None, start_uj: int, n: int = 200) -> tuple[DeviceEnergy, float]:
    """Constant 50 W at 10 Hz with a counter starting at `start_uj` (mod `modulus`)."""
    cfg = IntegratorConfig(nominal_period_s=0.1, counter_modulus_uj=modulus)
    ledger = DeviceEnergy(device="d", config=cfg)
    raw = start_uj
    outputs = []
    for i in range(n):
        counter = raw % modulus if modulus else raw
        ledger.add_sample(Sample(t_ns=T0 + i * 100_000_000, power_w=50.0, energy_uj=counter))
        outputs.append(ledger.totals.hw_counter_j)
        raw += 5_000_000  # 50 W × 0.1 s
    assert all(b >= a for a, b in itertools.pairwise(outputs))
    return ledger, 50.0 * (n - 1) * 0.1


def test_the_hardware_counter_is_passed_through_and_agrees_with_the_integral() -> None:
    ledger, exact = _counter_run(None, 123)
    assert ledger.totals.hw_counter_j == pytest.approx(exact, rel=1e-12)
    assert ledger.totals.integrated_j == pytest.approx(exact, rel=1e-9)


def test_a_wrapping_hardware_counter_gives_a_monotonic_exact_total() -> None:
    modulus = 2**26  # wraps every ~67 J, i.e. about every 1.3 s at 50 W
    ledger, exact = _counter_run(modulus, modulus - 7_000_000)
    assert ledger.totals.counter_wraps >= 10
    assert ledger.totals.counter_resets == 0
    assert ledger.totals.hw_counter_j == pytest.approx(exact, rel=1e-12)


def test_a_counter_reset_falls_back_to_the_integrated_power_and_never_goes_backwards() -> None:
    ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=0.1))
    values = [10_000_000, 15_000_000, 20_000_000, 1_000, 5_001_000, 10_001_000]
    for i, v in enumerate(values):
        ledger.add_sample(Sample(t_ns=T0 + i * 100_000_000, power_w=50.0, energy_uj=v))
    assert ledger.totals.counter_resets == 1
    assert ledger.totals.hw_counter_j == pytest.approx(25.0, rel=1e-12)


def test_a_counter_jump_beyond_what_the_board_can_draw_is_not_taken_as_energy() -> None:
    cfg = IntegratorConfig(nominal_period_s=0.1, max_power_w=500.0)
    ledger = DeviceEnergy(device="d", config=cfg)
    for i, v in enumerate([0, 5_000_000, 10**12, 10**12 + 5_000_000]):
        ledger.add_sample(Sample(t_ns=T0 + i * 100_000_000, power_w=50.0, energy_uj=v))
    assert ledger.totals.hw_counter_j == pytest.approx(15.0)


def test_random_profiles_rates_and_jitter_stay_within_the_step_bound() -> None:
    """Property: for power monotone between samples the error is at most Σ|ΔP|·Δt/2."""
    rng = np.random.default_rng(2024)
    for _ in range(100):
        hz = rng.choice([1.0, 5.0, 10.0, 20.0])
        n = int(rng.integers(20, 300))
        dt = 1.0 / hz
        jitter = rng.uniform(-0.3, 0.3, n) * dt
        t = np.cumsum(np.full(n, dt) + jitter)
        # Piecewise-constant truth with steps at random instants between samples.
        levels = rng.uniform(0.0, 300.0, n)
        ledger = DeviceEnergy(device="d", config=IntegratorConfig(nominal_period_s=dt))
        exact = 0.0
        bound = 0.0
        for i in range(n):
            ledger.add_sample(Sample(t_ns=T0 + round(t[i] * NS_PER_S), power_w=levels[i]))
            if i:
                seg = (round(t[i] * NS_PER_S) - round(t[i - 1] * NS_PER_S)) / NS_PER_S
                step_at = rng.uniform(0.0, seg)
                exact += levels[i - 1] * step_at + levels[i] * (seg - step_at)
                bound += abs(levels[i] - levels[i - 1]) * seg / 2
        assert abs(ledger.totals.integrated_j - exact) <= bound + 1e-9 * max(exact, 1.0)


def test_a_config_with_a_gap_below_the_period_says_what_to_use_instead() -> None:
    with pytest.raises(EnergyConfigError, match="max_gap_s must be at least"):
        IntegratorConfig(nominal_period_s=0.1, max_gap_s=0.05)
    with pytest.raises(EnergyConfigError, match="1/sample_hz"):
        IntegratorConfig(nominal_period_s=0.0)
