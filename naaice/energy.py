"""Power→energy integration and per-job attribution for one device (ENERGY.md §6), pure.

Owns the integrator state machine (`DeviceEnergy`), the window function the operator uses to
compute a job's energy over its bind–unbind window (`energy_over_window`), and the analytic-error
helpers. Called by the node agent (`device_plugin.sampling`, one `DeviceEnergy` per NAA, fed at
sensor rate), by the operator (`energy_over_window` on the NAA's counter samples) and by
`bench/energy.py`. No I/O, no clocks: every time is a sensor timestamp in integer nanoseconds
passed in by the caller.

Rules implemented (numbers refer to ENERGY.md §6):

1. Sensor timestamps only. A sample with ``t <= t_last`` is rejected as ``duplicate`` (its
   timestamp was seen recently, e.g. an MQTT QoS-1 redelivery or the same sensor reading polled
   twice) or ``out_of_order``; it never changes any total.
2. Trapezoid rule in float joules over exact integer-nanosecond spacings.
3. Spacing above ``max_gap`` is not bridged by power: the interval counts as uncovered and the
   integration restarts at the newer sample. A valid hardware counter delta across the gap is
   still a measurement and is kept (``source="hw_counter"``).
4. Attribution splits a segment at bind/unbind edges by linear interpolation of power; each
   piece goes to whoever held the device at that instant, or to ``unbound``.
5. The hardware counter (µJ) is preferred: wraps are unwrapped at ``counter_modulus_uj``; a
   decrease that is not a plausible wrap is a reset, and that segment falls back to the
   integrated power. Both totals are kept so a drift between them can be alerted on.
6. Totals only ever increase: every increment is checked to be finite and non-negative.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "NS_PER_S",
    "BindingError",
    "DeviceEnergy",
    "EnergyConfigError",
    "EnergyError",
    "IntegratorConfig",
    "JobEnergy",
    "JobKey",
    "Method",
    "RejectReason",
    "Sample",
    "Segment",
    "WindowEnergy",
    "energy_over_window",
    "rectangle_energy",
    "split_segment",
    "trapezoid_energy",
]

NS_PER_S = 1_000_000_000
_UJ_PER_J = 1_000_000.0
# How many recent timestamps are remembered to tell a redelivered sample from a late one.
_RECENT_TIMESTAMPS = 256
# Unbound power samples kept for the idle-baseline estimate (about a minute at 10 Hz).
_IDLE_WINDOW = 600


class EnergyError(Exception):
    """Base class of the errors raised by naaice.energy."""


class EnergyConfigError(EnergyError, ValueError):
    """An `IntegratorConfig` value is out of range; the message names the field and the fix."""


class BindingError(EnergyError, ValueError):
    """A bind/unbind call contradicts the device's binding history (e.g. unbinding a job that
    never held the device)."""


class RejectReason(StrEnum):
    """Why a sample was not integrated; the values are the exporter's `reason` label."""

    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    INVALID = "invalid"
    CLOCK_SKEW = "clock_skew"


class Method(StrEnum):
    """Where a job's or window's joules came from."""

    HW_COUNTER = "hw_counter"
    INTEGRATED = "integrated"
    MIXED = "mixed"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Sample:
    """One sensor reading: sensor time (ns since the epoch), board power, optional cumulative
    hardware energy counter in µJ (as `GET /v1/sensors` reports it)."""

    t_ns: int
    power_w: float
    energy_uj: int | None = None


@dataclass(frozen=True, slots=True)
class JobKey:
    """The NAAJob holding a device, as named in the Lease holder identity."""

    namespace: str
    name: str
    uid: str = ""

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"


@dataclass(frozen=True, slots=True)
class IntegratorConfig:
    """Integrator knobs. `max_gap_s` defaults to three nominal periods (§6 rule 3)."""

    nominal_period_s: float = 0.1
    max_gap_s: float | None = None
    max_power_w: float = 5_000.0
    counter_modulus_uj: int | None = 2**64
    max_future_skew_s: float = 5.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.nominal_period_s) and self.nominal_period_s > 0):
            raise EnergyConfigError(
                f"nominal_period_s must be a positive number of seconds, got "
                f"{self.nominal_period_s!r}; use 1/sample_hz"
            )
        if self.max_gap_s is not None and not (
            math.isfinite(self.max_gap_s) and self.max_gap_s >= self.nominal_period_s
        ):
            raise EnergyConfigError(
                f"max_gap_s must be at least nominal_period_s ({self.nominal_period_s}), got "
                f"{self.max_gap_s!r}; leave it unset for 3 × the nominal period"
            )
        if not (math.isfinite(self.max_power_w) and self.max_power_w > 0):
            raise EnergyConfigError(
                f"max_power_w must be a positive number of watts, got {self.max_power_w!r}"
            )
        if self.counter_modulus_uj is not None and self.counter_modulus_uj <= 1:
            raise EnergyConfigError(
                f"counter_modulus_uj must be > 1 (e.g. 2**64 or 2**32) or None for a counter "
                f"that never wraps, got {self.counter_modulus_uj!r}"
            )
        if not (math.isfinite(self.max_future_skew_s) and self.max_future_skew_s >= 0):
            raise EnergyConfigError(
                f"max_future_skew_s must be ≥ 0 seconds, got {self.max_future_skew_s!r}"
            )

    @property
    def max_gap_ns(self) -> int:
        gap = self.max_gap_s if self.max_gap_s is not None else 3.0 * self.nominal_period_s
        return round(gap * NS_PER_S)


@dataclass(frozen=True, slots=True)
class Segment:
    """Energy between two consecutive accepted samples.

    `covered` is False for a gap longer than `max_gap` (power not bridged). `integrated_j` is the
    trapezoid (0 when not covered); `counter_j` the valid hardware-counter delta or None."""

    t0_ns: int
    t1_ns: int
    p0_w: float
    p1_w: float
    covered: bool
    integrated_j: float
    counter_j: float | None

    @property
    def duration_s(self) -> float:
        return (self.t1_ns - self.t0_ns) / NS_PER_S

    @property
    def preferred_j(self) -> float:
        """The counter when it is valid, else the integrated power (§6 rule 5)."""
        return self.counter_j if self.counter_j is not None else self.integrated_j

    @property
    def measured(self) -> bool:
        """True when the segment's energy is a measurement (covered power or a valid counter)."""
        return self.covered or self.counter_j is not None

    @property
    def step_error_bound_j(self) -> float:
        """Worst trapezoid error for power monotone between the two samples: |ΔP|·Δt/2."""
        if self.counter_j is not None or not self.covered:
            return 0.0
        return abs(self.p1_w - self.p0_w) * self.duration_s / 2.0


def trapezoid_energy(samples: Sequence[tuple[float, float]]) -> float:
    """Trapezoid rule over ``(t_s, power_w)`` pairs in time order; the bench's reference rule."""
    total = 0.0
    for (t0, p0), (t1, p1) in itertools.pairwise(samples):
        total += (p0 + p1) / 2.0 * (t1 - t0)
    return total


def rectangle_energy(samples: Sequence[tuple[float, float]]) -> float:
    """Left-rectangle rule (hold the last reading): the naive baseline the bench compares to."""
    total = 0.0
    for (t0, p0), (t1, _p1) in itertools.pairwise(samples):
        total += p0 * (t1 - t0)
    return total


def split_segment(segment: Segment, *, at_ns: int) -> tuple[Segment, Segment]:
    """Split a segment at ``t0 < at_ns < t1``; the halves' energies add up to the whole exactly.

    Power is interpolated linearly; a counter delta is shared in proportion to the trapezoid
    halves (by time when the power is zero or unknown, as inside an uncovered gap)."""
    if not segment.t0_ns < at_ns < segment.t1_ns:
        raise ValueError(
            f"split point {at_ns} ns is not strictly inside the segment "
            f"[{segment.t0_ns}, {segment.t1_ns}] ns"
        )
    frac_t = (at_ns - segment.t0_ns) / (segment.t1_ns - segment.t0_ns)
    p_at = segment.p0_w + (segment.p1_w - segment.p0_w) * frac_t
    left_trap = (segment.p0_w + p_at) / 2.0 * ((at_ns - segment.t0_ns) / NS_PER_S)
    whole_trap = (segment.p0_w + segment.p1_w) / 2.0 * segment.duration_s
    if segment.covered and whole_trap > 0.0:
        frac_e = min(1.0, max(0.0, left_trap / whole_trap))
    else:
        frac_e = frac_t
    left_int = segment.integrated_j * frac_e if segment.covered else 0.0
    left_cnt = segment.counter_j * frac_e if segment.counter_j is not None else None
    left = Segment(
        t0_ns=segment.t0_ns,
        t1_ns=at_ns,
        p0_w=segment.p0_w,
        p1_w=p_at,
        covered=segment.covered,
        integrated_j=left_int,
        counter_j=left_cnt,
    )
    right = Segment(
        t0_ns=at_ns,
        t1_ns=segment.t1_ns,
        p0_w=p_at,
        p1_w=segment.p1_w,
        covered=segment.covered,
        integrated_j=segment.integrated_j - left_int,
        counter_j=(
            segment.counter_j - left_cnt
            if segment.counter_j is not None and left_cnt is not None
            else None
        ),
    )
    return left, right


@dataclass(slots=True)
class _Binding:
    job: JobKey
    start_ns: int
    end_ns: int | None = None


@dataclass(slots=True)
class JobEnergy:
    """What one job got from one device so far (committed attribution only)."""

    job: JobKey
    bound_at_ns: int
    unbound_at_ns: int | None = None
    joules: float = 0.0
    integrated_j: float = 0.0
    counter_j: float = 0.0
    measured_ns: int = 0
    error_bound_j: float = 0.0
    peak_power_w: float = 0.0
    late_ns: int = 0
    prior_bound_ns: int = 0

    @property
    def finished(self) -> bool:
        return self.unbound_at_ns is not None

    def bound_ns(self, *, until_ns: int) -> int:
        """Bound time up to `until_ns` (or to the unbind time, whichever is earlier)."""
        end = until_ns if self.unbound_at_ns is None else min(self.unbound_at_ns, until_ns)
        return self.prior_bound_ns + max(0, end - self.bound_at_ns)

    def coverage(self, *, until_ns: int) -> float:
        """Fraction of the bound time (up to `until_ns`) whose energy was measured, 0–1."""
        bound = self.bound_ns(until_ns=until_ns)
        if bound <= 0:
            return 1.0
        return min(1.0, self.measured_ns / bound)

    @property
    def method(self) -> Method:
        if self.counter_j > 0.0 and self.integrated_j > 0.0:
            return Method.MIXED
        if self.counter_j > 0.0:
            return Method.HW_COUNTER
        if self.integrated_j > 0.0:
            return Method.INTEGRATED
        return Method.NONE


@dataclass(slots=True)
class _Totals:
    integrated_j: float = 0.0
    hw_counter_j: float = 0.0
    attributed_j: float = 0.0
    unbound_j: float = 0.0
    uncovered_ns: int = 0
    covered_ns: int = 0
    accepted: int = 0
    counter_wraps: int = 0
    counter_resets: int = 0
    rejected: dict[RejectReason, int] = field(
        default_factory=lambda: dict.fromkeys(RejectReason, 0)
    )


def _add(total: float, increment: float, what: str) -> float:
    # §6 rule 6: a counter never goes backwards, whatever the input did.
    if not math.isfinite(increment) or increment < 0.0:
        raise AssertionError(f"refusing a non-monotonic {what} increment {increment!r}")
    return total + increment


class DeviceEnergy:
    """Integrator and attribution ledger of one device. Not thread-safe: the caller serialises.

    Feed samples with `add_sample`, binding edges with `bind`/`unbind`, and move the attribution
    watermark with `commit(until_ns=...)`. Segments stay pending until committed so a binding
    edge learned a little late (e.g. a Lease watch event) still splits them exactly."""

    def __init__(self, *, device: str, config: IntegratorConfig | None = None) -> None:
        self.device = device
        self.config = config if config is not None else IntegratorConfig()
        self._last: Sample | None = None
        self._last_counter_uj: int | None = None
        self._recent_ts: deque[int] = deque(maxlen=_RECENT_TIMESTAMPS)
        self._recent_set: set[int] = set()
        self._pending: deque[Segment] = deque()
        self._committed_ns: int | None = None
        self._bindings: list[_Binding] = []
        self._jobs: dict[JobKey, JobEnergy] = {}
        self._idle: deque[float] = deque(maxlen=_IDLE_WINDOW)
        self._has_counter = False
        self.totals = _Totals()

    # ---- ingest -------------------------------------------------------------------------

    def add_sample(self, sample: Sample, *, now_ns: int | None = None) -> RejectReason | None:
        """Integrate one sample; returns None when accepted, else why it was rejected."""
        reason = self._check(sample, now_ns=now_ns)
        if reason is not None:
            self.totals.rejected[reason] += 1
            return reason
        self._remember(sample.t_ns)
        self.totals.accepted += 1
        prev = self._last
        self._last = sample
        counter_j = self._counter_delta_j(prev, sample)
        if sample.energy_uj is not None:
            self._has_counter = True
        if prev is None:
            return None
        dt_ns = sample.t_ns - prev.t_ns
        covered = dt_ns <= self.config.max_gap_ns
        integrated = (prev.power_w + sample.power_w) / 2.0 * (dt_ns / NS_PER_S) if covered else 0.0
        seg = Segment(
            t0_ns=prev.t_ns,
            t1_ns=sample.t_ns,
            p0_w=prev.power_w,
            p1_w=sample.power_w,
            covered=covered,
            integrated_j=integrated,
            counter_j=counter_j,
        )
        t = self.totals
        t.integrated_j = _add(t.integrated_j, integrated, "integrated energy")
        if counter_j is not None or (self._has_counter and covered):
            # The hw_counter series: the counter's deltas, with resets bridged by the power.
            t.hw_counter_j = _add(t.hw_counter_j, seg.preferred_j, "hardware counter energy")
        if covered:
            t.covered_ns += dt_ns
        else:
            t.uncovered_ns += dt_ns
        if self._committed_ns is None:
            self._committed_ns = prev.t_ns
        self._pending.append(seg)
        return None

    def _check(self, sample: Sample, *, now_ns: int | None) -> RejectReason | None:
        p = sample.power_w
        if not math.isfinite(p) or p < 0.0 or p > self.config.max_power_w:
            return RejectReason.INVALID
        if sample.energy_uj is not None and sample.energy_uj < 0:
            return RejectReason.INVALID
        if now_ns is not None and sample.t_ns > now_ns + round(
            self.config.max_future_skew_s * NS_PER_S
        ):
            return RejectReason.CLOCK_SKEW
        if self._last is not None and sample.t_ns <= self._last.t_ns:
            if sample.t_ns in self._recent_set:
                return RejectReason.DUPLICATE
            return RejectReason.OUT_OF_ORDER
        return None

    def _remember(self, t_ns: int) -> None:
        if len(self._recent_ts) == self._recent_ts.maxlen:
            self._recent_set.discard(self._recent_ts[0])
        self._recent_ts.append(t_ns)
        self._recent_set.add(t_ns)

    def _counter_delta_j(self, prev: Sample | None, sample: Sample) -> float | None:
        raw = sample.energy_uj
        last = self._last_counter_uj
        self._last_counter_uj = raw
        if raw is None or last is None or prev is None:
            return None
        dt_s = (sample.t_ns - prev.t_ns) / NS_PER_S
        # A delta above what the board could draw at max power (plus 1 J of slack) is a jump,
        # not energy; so is a decrease that does not land there after unwrapping.
        plausible_uj = (self.config.max_power_w * dt_s + 1.0) * _UJ_PER_J
        delta = raw - last
        if delta >= 0:
            if delta <= plausible_uj:
                return delta / _UJ_PER_J
            self.totals.counter_resets += 1
            return None
        modulus = self.config.counter_modulus_uj
        if modulus is not None and 0 <= delta + modulus <= plausible_uj:
            self.totals.counter_wraps += 1
            return (delta + modulus) / _UJ_PER_J
        self.totals.counter_resets += 1
        return None

    # ---- binding ------------------------------------------------------------------------

    def bind(self, *, job: JobKey, at_ns: int) -> None:
        """Record that `job` holds the device from `at_ns` (idempotent for the same job/time).

        Binding while another job holds the device closes that binding at `at_ns` (the Lease
        for one NAA is unique, so this only happens when an unbind was missed)."""
        open_binding = self._open_binding()
        if open_binding is not None:
            if open_binding.job == job:
                return
            self.unbind(job=open_binding.job, at_ns=max(at_ns, open_binding.start_ns))
        entry = self._jobs.get(job)
        if entry is not None and entry.unbound_at_ns is not None:
            # The same NAAJob re-acquired the device (e.g. a retry after a failed attempt):
            # its counter continues, and its bound time adds up over the intervals.
            if at_ns < entry.unbound_at_ns:
                raise BindingError(
                    f"job {job} re-binds device {self.device} at {at_ns} ns, before its release "
                    f"at {entry.unbound_at_ns} ns; check the Lease's naaice.io/bound-at"
                )
            entry.prior_bound_ns += entry.unbound_at_ns - entry.bound_at_ns
            entry.bound_at_ns, entry.unbound_at_ns = at_ns, None
        else:
            entry = JobEnergy(job=job, bound_at_ns=at_ns)
        effective = at_ns
        if self._committed_ns is not None and at_ns < self._committed_ns:
            entry.late_ns += self._committed_ns - at_ns
            effective = self._committed_ns
        self._jobs[job] = entry
        self._bindings.append(_Binding(job=job, start_ns=effective))

    def unbind(self, *, job: JobKey, at_ns: int) -> None:
        """Record that `job` released the device at `at_ns` (idempotent)."""
        entry = self._jobs.get(job)
        if entry is None:
            raise BindingError(
                f"job {job} never held device {self.device}; check the Lease holder identity"
            )
        if entry.finished:
            return
        binding = self._open_binding()
        assert binding is not None
        assert binding.job == job
        end = max(at_ns, binding.start_ns)
        if self._committed_ns is not None and end < self._committed_ns:
            end = self._committed_ns
        binding.end_ns = end
        entry.unbound_at_ns = max(at_ns, entry.bound_at_ns)

    def holder(self) -> JobKey | None:
        """The job holding the device now (open binding), if any."""
        b = self._open_binding()
        return b.job if b is not None else None

    def _open_binding(self) -> _Binding | None:
        if self._bindings and self._bindings[-1].end_ns is None:
            return self._bindings[-1]
        return None

    def _holder_at(self, t_ns: int) -> JobKey | None:
        for b in reversed(self._bindings):
            if b.start_ns <= t_ns and (b.end_ns is None or t_ns < b.end_ns):
                return b.job
            if b.end_ns is not None and b.end_ns <= t_ns:
                break
        return None

    def _edges_inside(self, t0_ns: int, t1_ns: int) -> list[int]:
        edges = set()
        for b in self._bindings:
            for e in (b.start_ns, b.end_ns):
                if e is not None and t0_ns < e < t1_ns:
                    edges.add(e)
        return sorted(edges)

    # ---- attribution --------------------------------------------------------------------

    def commit(self, *, until_ns: int) -> None:
        """Attribute pending energy up to `until_ns` (the time up to which the binding history
        is known to be complete). Never moves backwards; energy after the newest sample stays
        pending until a later sample arrives."""
        while self._pending:
            seg = self._pending[0]
            if seg.t0_ns >= until_ns:
                break
            self._pending.popleft()
            if seg.t1_ns > until_ns:
                left, right = split_segment(seg, at_ns=until_ns)
                self._pending.appendleft(right)
                seg = left
            pieces = [seg]
            for edge in self._edges_inside(seg.t0_ns, seg.t1_ns):
                left, right = split_segment(pieces[-1], at_ns=edge)
                pieces[-1:] = [left, right]
            for piece in pieces:
                self._attribute(piece)
            self._committed_ns = seg.t1_ns
        self._trim_bindings()

    def _attribute(self, piece: Segment) -> None:
        t = self.totals
        energy = piece.preferred_j
        t.attributed_j = _add(t.attributed_j, energy, "attributed energy")
        holder = self._holder_at(piece.t0_ns)
        if holder is None:
            t.unbound_j = _add(t.unbound_j, energy, "unbound energy")
            if piece.covered:
                self._idle.append(piece.p0_w)
            return
        job = self._jobs[holder]
        job.joules = _add(job.joules, energy, "job energy")
        if piece.counter_j is not None:
            job.counter_j += piece.counter_j
        else:
            job.integrated_j += piece.integrated_j
        if piece.measured:
            job.measured_ns += piece.t1_ns - piece.t0_ns
        job.error_bound_j += piece.step_error_bound_j
        if piece.covered:
            job.peak_power_w = max(job.peak_power_w, piece.p0_w, piece.p1_w)

    def _trim_bindings(self) -> None:
        # Closed bindings entirely before the watermark can no longer split anything.
        if self._committed_ns is None:
            return
        keep = [b for b in self._bindings if b.end_ns is None or b.end_ns > self._committed_ns]
        if len(keep) != len(self._bindings):
            self._bindings = keep

    # ---- queries ------------------------------------------------------------------------

    @property
    def last_sample(self) -> Sample | None:
        return self._last

    @property
    def has_counter(self) -> bool:
        """True once the device reported a hardware energy counter."""
        return self._has_counter

    @property
    def committed_ns(self) -> int | None:
        return self._committed_ns

    @property
    def pending_j(self) -> float:
        """Energy integrated but not yet attributed (waiting for the binding watermark)."""
        return sum(s.preferred_j for s in self._pending)

    def jobs(self) -> list[JobEnergy]:
        return list(self._jobs.values())

    def job(self, job: JobKey) -> JobEnergy | None:
        return self._jobs.get(job)

    def forget_job(self, job: JobKey) -> None:
        """Drop a finished job's ledger (the exporter keeps a bounded number of them)."""
        entry = self._jobs.get(job)
        if entry is not None and entry.finished:
            del self._jobs[job]

    def idle_power_w(self) -> float | None:
        """Estimated idle baseline: the 10th percentile of recent unbound covered power."""
        if not self._idle:
            return None
        values = sorted(self._idle)
        return values[int(0.1 * (len(values) - 1))]


@dataclass(frozen=True, slots=True)
class WindowEnergy:
    """A device's energy over a window: joules, measured fraction, method, error bound."""

    joules: float
    coverage: float
    method: Method
    error_bound_j: float
    uncovered_s: float
    samples_used: int
    peak_power_w: float


def energy_over_window(
    *,
    samples: Iterable[Sample],
    start_ns: int,
    end_ns: int,
    config: IntegratorConfig | None = None,
) -> WindowEnergy:
    """Energy of one device over ``[start_ns, end_ns]`` from its samples (any order, duplicates
    allowed), with the same rules as the live integrator.

    The operator calls this with the NAA's counter samples around a job's bind–unbind window;
    samples outside the window only serve to interpolate at its edges. Time in the window not
    covered by samples lowers `coverage` and adds no energy."""
    if end_ns < start_ns:
        raise EnergyError(
            f"window ends ({end_ns} ns) before it starts ({start_ns} ns); pass bind then unbind"
        )
    ledger = DeviceEnergy(device="window", config=config)
    job = JobKey(namespace="", name="window")
    ledger.bind(job=job, at_ns=start_ns)
    ledger.unbind(job=job, at_ns=end_ns)
    used = 0
    for s in sorted(samples, key=lambda s: s.t_ns):
        if ledger.add_sample(s) is None and start_ns <= s.t_ns <= end_ns:
            used += 1
    ledger.commit(until_ns=end_ns)
    entry = ledger.job(job)
    assert entry is not None
    bound_ns = max(0, end_ns - start_ns)
    return WindowEnergy(
        joules=entry.joules,
        coverage=entry.coverage(until_ns=end_ns) if bound_ns else 1.0,
        method=entry.method,
        error_bound_j=entry.error_bound_j,
        uncovered_s=(bound_ns - min(bound_ns, entry.measured_ns)) / NS_PER_S,
        samples_used=used,
        peak_power_w=entry.peak_power_w,
    )
