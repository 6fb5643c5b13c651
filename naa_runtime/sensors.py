"""Emulated board sensors of a software NAA: a power model driven by real activity, a
cumulative energy counter and a thermal model.

The RPC server reports what it does through `ActivityObserver` (bytes, kernel start/end);
`naa_runtime.naa` forwards those reports to an `ActivityAccumulator` and tells it when the
NAA is flashing. A `SensorSampler` thread turns the accumulated activity into power at a fixed
rate (default 100 Hz), integrates it into a µJ counter and timestamps each sample with
CLOCK_REALTIME; the management plane's `/v1/sensors` reads `SensorSampler.latest()`.

Calibration (docs/runtime.md): an Alveo-class board idles at about 27 W; NAAICE measured 89 W
on average for FPGA training. With the defaults, a training duty cycle of 90 % kernel time
and 10 % transfer time at line rate averages 27 + 0.9·(95 − 27) + 0.1·8 = 89.0 W.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class PowerModel:
    """The knobs of the emulated board. Watts are board totals."""

    idle_watts: float = 27.0
    active_watts: float = 95.0
    transfer_watts: float = 8.0
    line_rate_bits_per_second: float = 100e9
    flash_watts: float = 45.0
    ambient_celsius: float = 25.0
    thermal_resistance_celsius_per_watt: float = 0.35
    thermal_time_constant_seconds: float = 20.0

    def __post_init__(self) -> None:
        for name in ("idle_watts", "active_watts", "transfer_watts", "flash_watts"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value}")
        if self.active_watts < self.idle_watts:
            raise ValueError(
                f"active_watts ({self.active_watts}) must be at least idle_watts "
                f"({self.idle_watts}): a busy board never draws less than an idle one"
            )
        if self.line_rate_bits_per_second <= 0 or self.thermal_time_constant_seconds <= 0:
            raise ValueError("line rate and thermal time constant must be positive")


def power_watts(
    *, model: PowerModel, busy: float, flashing: float, bits_per_second: float
) -> float:
    """Average board power over a window in which kernels ran for the fraction `busy`, the
    board was being flashed for the fraction `flashing`, and the data plane moved
    `bits_per_second` (both directions). Fractions are clamped to 0..1."""
    busy = min(max(busy, 0.0), 1.0)
    flashing = min(max(flashing, 0.0), 1.0)
    link = min(max(bits_per_second, 0.0) / model.line_rate_bits_per_second, 1.0)
    watts = (
        model.idle_watts
        + (model.active_watts - model.idle_watts) * busy
        + (model.flash_watts - model.idle_watts) * flashing
        + model.transfer_watts * link
    )
    return max(watts, 0.0)


def next_temperature(*, model: PowerModel, celsius: float, watts: float, seconds: float) -> float:
    """First-order thermal response: the die approaches ambient + R·P with time constant τ."""
    steady = model.ambient_celsius + model.thermal_resistance_celsius_per_watt * watts
    alpha = 1.0 - math.exp(-max(seconds, 0.0) / model.thermal_time_constant_seconds)
    return celsius + (steady - celsius) * alpha


@dataclass(frozen=True)
class WindowActivity:
    """What happened since the previous sample."""

    seconds: float
    busy_seconds: float
    flashing_seconds: float
    bytes: int


class ActivityAccumulator:
    """Collects activity reports from any thread; `take` hands out and resets one window.

    Busy time is the union of the intervals in which at least one kernel ran, so concurrent
    kernels on several slots do not count twice.
    """

    def __init__(self, *, now: float | None = None) -> None:
        self._lock = threading.Lock()
        start = time.monotonic() if now is None else now
        self._window_start = start
        self._running = 0
        self._busy_since = start
        self._busy = 0.0
        self._flashing = False
        self._flashing_since = start
        self._flash = 0.0
        self._bytes = 0

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self._bytes += max(count, 0)

    def kernel_started(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._running == 0:
                self._busy_since = now
            self._running += 1

    def kernel_ended(self, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._running == 0:
                return
            self._running -= 1
            if self._running == 0:
                self._busy += max(now - max(self._busy_since, self._window_start), 0.0)

    def set_flashing(self, flashing: bool, *, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            if flashing == self._flashing:
                return
            if flashing:
                self._flashing_since = now
            else:
                self._flash += max(now - max(self._flashing_since, self._window_start), 0.0)
            self._flashing = flashing

    def take(self, *, now: float | None = None) -> WindowActivity:
        now = time.monotonic() if now is None else now
        with self._lock:
            busy = self._busy
            if self._running:
                busy += max(now - max(self._busy_since, self._window_start), 0.0)
            flash = self._flash
            if self._flashing:
                flash += max(now - max(self._flashing_since, self._window_start), 0.0)
            window = WindowActivity(
                seconds=max(now - self._window_start, 0.0),
                busy_seconds=busy,
                flashing_seconds=flash,
                bytes=self._bytes,
            )
            self._window_start = now
            self._busy = 0.0
            self._flash = 0.0
            self._bytes = 0
            return window


@dataclass(frozen=True)
class Sample:
    """One sensor reading as `/v1/sensors` reports it."""

    timestamp_ns: int
    power_watts: float
    energy_microjoules: int
    temperature_celsius: float
    busy: float


class SensorSampler:
    """Samples the power model at a fixed rate and integrates it into the energy counter.

    Each sample integrates exactly the elapsed monotonic time since the previous one, so a late
    tick loses no energy. `power_watts` and `busy` in a `Sample` are averages over the trailing
    `average_seconds` (a 10 ms window alone would flicker between idle and active); the energy
    counter is exact.
    """

    def __init__(
        self,
        *,
        model: PowerModel,
        activity: ActivityAccumulator,
        sample_hz: float = 100.0,
        average_seconds: float = 1.0,
        now: float | None = None,
        realtime_ns: int | None = None,
    ) -> None:
        if not 1.0 <= sample_hz <= 10_000.0:
            raise ValueError(f"sample rate must be within 1..10000 Hz, got {sample_hz}")
        self.model = model
        self.sample_hz = sample_hz
        self._activity = activity
        self._lock = threading.Lock()
        # Whole µJ as an int (exact for any run length) plus the fraction not yet counted.
        self._energy_uj = 0
        self._energy_fraction_uj = 0.0
        self._celsius = next_temperature(
            model=model, celsius=model.ambient_celsius, watts=model.idle_watts, seconds=math.inf
        )
        self._recent: collections.deque[tuple[float, float, float]] = collections.deque(
            maxlen=max(int(average_seconds * sample_hz), 1)
        )
        self._last_ns = time.time_ns() if realtime_ns is None else realtime_ns
        start = time.monotonic() if now is None else now
        activity.take(now=start)
        self._latest = Sample(self._last_ns, model.idle_watts, 0, self._celsius, 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self, *, now: float | None = None, realtime_ns: int | None = None) -> Sample:
        """Take one sample now (the thread calls this; tests call it directly)."""
        window = self._activity.take(now=now)
        realtime = time.time_ns() if realtime_ns is None else realtime_ns
        with self._lock:
            seconds = window.seconds
            if seconds > 0:
                watts = power_watts(
                    model=self.model,
                    busy=window.busy_seconds / seconds,
                    flashing=window.flashing_seconds / seconds,
                    bits_per_second=window.bytes * 8 / seconds,
                )
                self._energy_fraction_uj += watts * seconds * 1e6
                whole = int(self._energy_fraction_uj)
                self._energy_uj += whole
                self._energy_fraction_uj -= whole
                self._celsius = next_temperature(
                    model=self.model, celsius=self._celsius, watts=watts, seconds=seconds
                )
                self._recent.append((seconds, watts * seconds, window.busy_seconds))
            # CLOCK_REALTIME can step back (NTP); the sensor's timestamps never do.
            self._last_ns = max(realtime, self._last_ns + 1)
            total = sum(s for s, _, _ in self._recent)
            self._latest = Sample(
                timestamp_ns=self._last_ns,
                power_watts=(
                    sum(j for _, j, _ in self._recent) / total if total else self.model.idle_watts
                ),
                energy_microjoules=self._energy_uj,
                temperature_celsius=self._celsius,
                busy=min(sum(b for _, _, b in self._recent) / total, 1.0) if total else 0.0,
            )
            return self._latest

    def latest(self) -> Sample:
        with self._lock:
            return self._latest

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="naa-sensors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def _run(self) -> None:
        period = 1.0 / self.sample_hz
        next_tick = time.monotonic() + period
        while not self._stop.wait(max(next_tick - time.monotonic(), 0.0)):
            self.sample()
            next_tick += period
            # After a long stall, resume the fixed schedule instead of bursting to catch up.
            next_tick = max(next_tick, time.monotonic())
