"""The emulated power model, activity accounting and the energy counter (no threads)."""

from __future__ import annotations

import pytest

from naa_runtime.sensors import (
    ActivityAccumulator,
    PowerModel,
    SensorSampler,
    next_temperature,
    power_watts,
)

MODEL = PowerModel()


def test_an_idle_board_draws_idle_power() -> None:
    assert power_watts(model=MODEL, busy=0, flashing=0, bits_per_second=0) == MODEL.idle_watts


def test_a_fully_busy_board_draws_active_power() -> None:
    assert power_watts(model=MODEL, busy=1, flashing=0, bits_per_second=0) == MODEL.active_watts


def test_the_default_training_duty_cycle_averages_the_naaice_89_watts() -> None:
    # 90 % kernel time, 10 % transferring at line rate (docs/runtime.md).
    kernel = power_watts(model=MODEL, busy=1, flashing=0, bits_per_second=0)
    transfer = power_watts(model=MODEL, busy=0, flashing=0, bits_per_second=100e9)
    assert 0.9 * kernel + 0.1 * transfer == pytest.approx(89.0)


def test_transfer_power_scales_with_bandwidth_and_saturates_at_line_rate() -> None:
    half = power_watts(model=MODEL, busy=0, flashing=0, bits_per_second=50e9)
    full = power_watts(model=MODEL, busy=0, flashing=0, bits_per_second=100e9)
    over = power_watts(model=MODEL, busy=0, flashing=0, bits_per_second=400e9)
    assert half - MODEL.idle_watts == pytest.approx(MODEL.transfer_watts / 2)
    assert full == over == MODEL.idle_watts + MODEL.transfer_watts


def test_flashing_draws_flash_power() -> None:
    assert power_watts(model=MODEL, busy=0, flashing=1, bits_per_second=0) == MODEL.flash_watts


def test_fractions_outside_0_to_1_are_clamped() -> None:
    assert power_watts(model=MODEL, busy=3, flashing=0, bits_per_second=0) == MODEL.active_watts
    assert power_watts(model=MODEL, busy=-1, flashing=0, bits_per_second=-5) == MODEL.idle_watts


def test_a_model_where_active_is_below_idle_is_refused() -> None:
    with pytest.raises(ValueError, match="active_watts"):
        PowerModel(idle_watts=50, active_watts=40)


def test_temperature_approaches_the_steady_state_of_the_power() -> None:
    hot = next_temperature(model=MODEL, celsius=25.0, watts=89.0, seconds=1e6)
    assert hot == pytest.approx(25.0 + 0.35 * 89.0)
    step = next_temperature(model=MODEL, celsius=25.0, watts=89.0, seconds=1.0)
    assert 25.0 < step < hot


def test_busy_time_is_the_union_of_overlapping_kernels() -> None:
    acc = ActivityAccumulator(now=0.0)
    acc.kernel_started(now=1.0)
    acc.kernel_started(now=2.0)
    acc.kernel_ended(now=3.0)
    acc.kernel_ended(now=4.0)
    window = acc.take(now=10.0)
    assert window.seconds == 10.0
    assert window.busy_seconds == pytest.approx(3.0)


def test_a_kernel_spanning_two_windows_is_split_between_them() -> None:
    acc = ActivityAccumulator(now=0.0)
    acc.kernel_started(now=0.5)
    first = acc.take(now=1.0)
    acc.kernel_ended(now=1.25)
    second = acc.take(now=2.0)
    assert first.busy_seconds == pytest.approx(0.5)
    assert second.busy_seconds == pytest.approx(0.25)


def test_flashing_time_and_bytes_are_accumulated_per_window() -> None:
    acc = ActivityAccumulator(now=0.0)
    acc.set_flashing(True, now=0.2)
    acc.add_bytes(1000)
    acc.set_flashing(False, now=0.7)
    window = acc.take(now=1.0)
    assert window.flashing_seconds == pytest.approx(0.5)
    assert window.bytes == 1000
    assert acc.take(now=2.0).bytes == 0


def _sampler(*, hz: float = 100.0) -> tuple[ActivityAccumulator, SensorSampler]:
    acc = ActivityAccumulator(now=0.0)
    return acc, SensorSampler(model=MODEL, activity=acc, sample_hz=hz, now=0.0, realtime_ns=1000)


def test_the_energy_counter_integrates_idle_power_in_microjoules() -> None:
    _, sampler = _sampler()
    for i in range(1, 101):
        sample = sampler.sample(now=i / 100, realtime_ns=1000 + i)
    assert sample.energy_microjoules == pytest.approx(27_000_000, abs=2)


def test_a_busy_second_adds_active_energy_exactly_even_if_ticks_are_late() -> None:
    acc, sampler = _sampler()
    acc.kernel_started(now=0.0)
    sampler.sample(now=0.37, realtime_ns=2000)
    acc.kernel_ended(now=1.0)
    sample = sampler.sample(now=1.0, realtime_ns=3000)
    assert sample.energy_microjoules == pytest.approx(95_000_000, abs=2)
    assert sample.busy == pytest.approx(1.0)
    assert sample.power_watts == pytest.approx(95.0)


def test_the_counter_never_decreases_and_timestamps_strictly_increase() -> None:
    acc, sampler = _sampler()
    last_energy, last_ns = -1, 0
    # The wall clock steps back (NTP) half-way; the sensor timestamps must not.
    clocks = [5000, 6000, 7000, 4000, 4001, 8000]
    for i, realtime in enumerate(clocks, start=1):
        if i % 2:
            acc.kernel_started(now=i * 0.01)
        else:
            acc.kernel_ended(now=i * 0.01)
        sample = sampler.sample(now=i * 0.01 + 0.005, realtime_ns=realtime)
        assert sample.energy_microjoules >= last_energy
        assert sample.timestamp_ns > last_ns
        last_energy, last_ns = sample.energy_microjoules, sample.timestamp_ns


def test_sample_rates_outside_1_to_10000_hz_are_refused() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        _sampler(hz=0.5)


def test_the_counter_keeps_microjoule_resolution_however_large_it_grows() -> None:
    # 123 kW for 2^20 s is 1.3e11 J, where a float of joules resolves only ~15 µJ; the times
    # are exact binary fractions so that only the counter's own arithmetic is tested.
    watts = 123_456.789
    model = PowerModel(idle_watts=watts, active_watts=watts)
    sampler = SensorSampler(
        model=model, activity=ActivityAccumulator(now=0.0), now=0.0, realtime_ns=1000
    )
    before = sampler.sample(now=2.0**20, realtime_ns=2000).energy_microjoules
    after = sampler.sample(now=2.0**20 + 2.0**-7, realtime_ns=3000).energy_microjoules
    assert after - before == pytest.approx(watts * 2.0**-7 * 1e6, abs=1)
