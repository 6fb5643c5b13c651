"""Energy of one NAA over one bind–unbind window, from its cumulative energy counter.

Called by `services.jobs` when a job releases its NAAs. The samples are the NAA's
`/v1/sensors` readings (sensor timestamps, cumulative µJ) that the operator took around the
bind edge, while the job ran, and around the unbind edge. ENERGY.md §6: sensor timestamps,
duplicates and out-of-order samples rejected, a counter decrease is a reset (the NAA restarted),
and each edge is cut exactly by linear interpolation between the samples around it, so two jobs
bound one after the other on the same NAA share its energy without overlap or gap."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

METHOD = "hw-counter-interpolated"


@dataclass(frozen=True, slots=True)
class CounterSample:
    """One `/v1/sensors` reading: CLOCK_REALTIME ns of the sample and cumulative µJ."""

    t_ns: int
    energy_uj: int


@dataclass(frozen=True, slots=True)
class WindowEnergy:
    """Energy attributed to a window, and which part of the window the samples covered."""

    joules: float
    covered_s: float
    window_s: float
    method: str = METHOD

    @property
    def coverage(self) -> float:
        if self.window_s <= 0:
            return 1.0
        return max(0.0, min(1.0, self.covered_s / self.window_s))


def _monotonic(samples: Sequence[CounterSample]) -> list[tuple[int, float, bool]]:
    """Sorted, de-duplicated samples as (t_ns, µJ on a never-decreasing scale, reset_before).

    A reading lower than its predecessor means the counter restarted from zero: the new
    reading is added on top of the previous total, and the interval before it is marked as a
    reset (its energy is unknown and it does not count as covered)."""
    out: list[tuple[int, float, bool]] = []
    offset = 0.0
    last_raw: int | None = None
    for sample in sorted(samples, key=lambda s: s.t_ns):
        if out and sample.t_ns <= out[-1][0]:
            continue
        reset = last_raw is not None and sample.energy_uj < last_raw
        if reset:
            offset = out[-1][1]
        out.append((sample.t_ns, offset + sample.energy_uj, reset))
        last_raw = sample.energy_uj
    return out


def integrate_window(
    *, samples: Sequence[CounterSample], start_ns: int, end_ns: int
) -> WindowEnergy:
    """Joules the NAA used between `start_ns` (bind) and `end_ns` (unbind).

    Inside the span of the samples the counter is interpolated linearly at both edges; parts of
    the window before the first or after the last sample, and intervals that contain a counter
    reset, are not covered and contribute no energy (reported through `covered_s`)."""
    window_s = max(0, end_ns - start_ns) / 1e9
    series = _monotonic(samples)
    if end_ns <= start_ns or len(series) < 2:
        return WindowEnergy(joules=0.0, covered_s=0.0, window_s=window_s)
    joules = 0.0
    covered_ns = 0
    for (t0, e0, _), (t1, e1, reset) in itertools.pairwise(series):
        lo, hi = max(t0, start_ns), min(t1, end_ns)
        if hi <= lo or reset:
            continue
        slope = (e1 - e0) / (t1 - t0)
        joules += slope * (hi - lo) / 1e6
        covered_ns += hi - lo
    return WindowEnergy(joules=joules, covered_s=covered_ns / 1e9, window_s=window_s)
