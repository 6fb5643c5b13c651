"""Benchmark of the energy path: integration error against analytic truth, and the exporter's
scrape latency with 64 devices.

1. Integration error at 1, 5 and 10 Hz on analytic profiles (random-phase 20→89 W step over a
   130 s window as in ENERGY.md §6, an 89 ± 40 W sine with a 7 s period, a ramp, and the step
   with ±20 % timestamp jitter), each over many random phases: worst and mean relative error of
   `naaice.energy.DeviceEnergy` (trapezoid at sensor timestamps) against the baseline measured
   in the same run — the naive left-rectangle rule (hold the last reading), and the Slurm-style
   trapezoid on integer watts. The ratio is baseline worst error / our worst error.
2. Scrape latency of the agent's `/metrics` with 64 devices, each bound to a job (≈ 1 500
   series), through the real HTTP server, against a baseline in the same run: the same series
   as global instrumented prometheus_client metrics (the approach ENERGY.md §4 advises against).

Writes a plot of error vs rate to out/bench/energy-error.png.
Usage: .venv/bin/python bench/energy.py [--phases 200] [--scrapes 200]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from device_plugin.book import DeviceInfo, EnergyBook
from device_plugin.exporter import EnergyCollector
from naaice.energy import NS_PER_S, DeviceEnergy, IntegratorConfig, JobKey, Sample

OUT = Path(__file__).resolve().parents[1] / "out" / "bench"
T0 = 1_800_000_000 * NS_PER_S
RATES = (1.0, 5.0, 10.0)

Profile = tuple[Callable[[float], float], float, float]  # power(t), duration, exact joules


def step_profile(phase: float, off_phase: float = 0.0) -> Profile:
    """20 W, 89 W from 10 s + phase for 100.3 s (+ off_phase: the two edges fall at
    independent phases of the sampling grid), 20 W again; 130 s window."""
    length = 100.3 + off_phase
    on, off = 10.0 + phase, 10.0 + phase + length
    return (lambda t: 89.0 if on <= t < off else 20.0), 130.0, 20.0 * 130.0 + 69.0 * length


def sine_profile(phase: float) -> Profile:
    w = 2 * math.pi / 7.0
    exact = 89.0 * 130.0 + 40.0 / w * (math.cos(w * phase) - math.cos(w * (130.0 + phase)))
    return (lambda t: 89.0 + 40.0 * math.sin(w * (t + phase))), 130.0, exact


def ramp_profile(phase: float) -> Profile:
    a = 20.0 + phase
    return (lambda t: a + 0.5 * t), 130.0, a * 130.0 + 0.25 * 130.0**2


def sample_times(
    duration: float, hz: float, rng: np.random.Generator, jitter: float
) -> list[float]:
    dt = 1.0 / hz
    n = round(duration * hz)
    return [
        i * dt + (rng.uniform(-jitter, jitter) * dt if 0 < i < n else 0.0) for i in range(n + 1)
    ]


def errors_for(profile: Profile, hz: float, ts: list[float]) -> tuple[float, float, float]:
    power, _duration, exact = profile
    ledger = DeviceEnergy(device="b", config=IntegratorConfig(nominal_period_s=1.0 / hz))
    pts = [(t, power(t)) for t in ts]
    for t, p in pts:
        ledger.add_sample(Sample(t_ns=T0 + round(t * NS_PER_S), power_w=p))
    ours = ledger.totals.integrated_j
    rect = sum(p0 * (t1 - t0) for (t0, p0), (t1, _p1) in itertools.pairwise(pts))
    # Slurm's GPU/IPMI plugins: trapezoid on integer watts and integer seconds.
    ints = [(math.floor(t), int(p)) for t, p in pts]
    slurm = sum((p0 + p1) / 2 * (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(ints))
    return (
        abs(ours - exact) / exact,
        abs(rect - exact) / exact,
        abs(slurm - exact) / exact,
    )


def accuracy(
    console: Console, phases: int
) -> dict[str, dict[float, list[tuple[float, float, float]]]]:
    rng = np.random.default_rng(2026)
    cases: dict[str, tuple[Callable[[float], Profile], float]] = {
        "step 20→89 W": (step_profile, 0.0),
        "step, ±20 % jitter": (step_profile, 0.2),
        "sine 89±40 W, 7 s": (sine_profile, 0.0),
        "ramp": (ramp_profile, 0.0),
    }
    results: dict[str, dict[float, list[tuple[float, float, float]]]] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("integration error", total=len(cases) * len(RATES) * phases)
        for name, (make, jitter) in cases.items():
            results[name] = {}
            for hz in RATES:
                errs = []
                for _ in range(phases):
                    if name.startswith("step"):
                        profile = step_profile(rng.uniform(0, 1 / hz), rng.uniform(0, 1 / hz))
                    else:
                        profile = make(rng.uniform(0, 7))
                    errs.append(errors_for(profile, hz, sample_times(profile[1], hz, rng, jitter)))
                    progress.advance(task)
                results[name][hz] = errs
    table = Table(title=f"Integration error vs analytic truth ({phases} random phases each)")
    for col in (
        "profile",
        "rate",
        "ours worst",
        "ours mean",
        "rectangle worst",
        "rectangle mean",
        "int-W·s worst",
        "ratio rect/ours (worst, mean)",
    ):
        table.add_column(col, justify="right")
    for name, by_rate in results.items():
        for hz, errs in by_rate.items():
            ours = [e[0] for e in errs]
            rect = [e[1] for e in errs]
            slurm = [e[2] for e in errs]
            if max(ours) < 1e-9:
                ratio = "ours exact"
            else:
                mean_ratio = statistics.fmean(rect) / statistics.fmean(ours)
                ratio = f"{max(rect) / max(ours):.1f}×, {mean_ratio:.1f}×"
            table.add_row(
                name,
                f"{hz:g} Hz",
                f"{100 * max(ours):.4f} %",
                f"{100 * statistics.fmean(ours):.4f} %",
                f"{100 * max(rect):.4f} %",
                f"{100 * statistics.fmean(rect):.4f} %",
                f"{100 * max(slurm):.4f} %",
                ratio,
            )
    console.print(table)
    return results


def _book(devices: int) -> EnergyBook:
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1), sbc="node-a")
    for d in range(devices):
        name = f"naa-{d}"
        book.ensure_device(name, info=DeviceInfo(board_model="alveo-u55c", serial=f"S{d}"))
        book.bind(name, job=JobKey("ml", f"job-{d}", f"uid-{d}"), at_ns=T0)
        for i in range(50):
            t = T0 + i * NS_PER_S // 10
            book.add_sample(
                name, Sample(t_ns=t, power_w=80.0 + d, energy_uj=i * 8_000_000), now_ns=t
            )
        book.set_work(name, "kernel_run", 3)
    book.commit(until_ns=T0 + 5 * NS_PER_S)
    return book


def _baseline_registry(book: EnergyBook) -> CollectorRegistry:
    """The same series as global instrumented metrics, set from the same snapshot."""
    registry = CollectorRegistry(auto_describe=True)
    collector = EnergyCollector(book)
    instruments: dict[str, Gauge | Counter] = {}
    for fam in collector.collect():
        labels = sorted({k for s in fam.samples for k in s.labels})
        kind = Counter if fam.type == "counter" else Gauge
        metric = kind(fam.name, fam.documentation, labels, registry=registry)
        instruments[fam.name] = metric
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            child = metric.labels(**s.labels) if labels else metric
            if isinstance(child, Counter):
                child.inc(s.value)
            else:
                child.set(s.value)
    return registry


def _scrape_latency(
    url: str, scrapes: int, progress: Progress, label: str
) -> tuple[list[float], int]:
    task = progress.add_task(label, total=scrapes)
    times = []
    size = 0
    for _ in range(scrapes):
        start = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as r:
            size = len(r.read())
        times.append(time.perf_counter() - start)
        progress.advance(task)
    return times, size


def scrape(console: Console, scrapes: int, devices: int = 64) -> None:
    book = _book(devices)
    ours = CollectorRegistry(auto_describe=False)
    ours.register(EnergyCollector(book))
    base = _baseline_registry(book)
    servers = [start_http_server(0, addr="127.0.0.1", registry=r) for r in (ours, base)]
    try:
        with Progress(console=console, transient=True) as progress:
            results = [
                _scrape_latency(f"http://127.0.0.1:{s.server_port}/metrics", scrapes, progress, n)
                for (s, _t), n in zip(
                    servers, ("custom collector", "instrumented baseline"), strict=True
                )
            ]
    finally:
        for s, t in servers:
            s.shutdown()
            s.server_close()
            t.join()
    table = Table(
        title=f"/metrics scrape latency, {devices} devices bound to jobs ({scrapes} scrapes)"
    )
    for col in ("exporter", "p50", "p99", "bytes", "ratio p50 vs baseline"):
        table.add_column(col, justify="right")
    base_p50 = statistics.median(results[1][0])
    for name, (times, size) in zip(
        ("custom collector (ours)", "instrumented globals"), results, strict=True
    ):
        p50 = statistics.median(times)
        p99 = sorted(times)[int(0.99 * (len(times) - 1))]
        table.add_row(
            name, f"{p50 * 1e3:.2f} ms", f"{p99 * 1e3:.2f} ms", str(size), f"{p50 / base_p50:.2f}×"
        )
    console.print(table)


def plot(results: dict[str, dict[float, list[tuple[float, float, float]]]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, by_rate in results.items():
        rates = list(by_rate)
        ax.plot(
            rates,
            [100 * max(e[0] for e in by_rate[r]) for r in rates],
            "o-",
            label=f"{name} (ours)",
        )
        ax.plot(
            rates,
            [100 * max(e[1] for e in by_rate[r]) for r in rates],
            "x--",
            label=f"{name} (rectangle)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sample rate (Hz)")
    ax.set_ylabel("worst relative error (%)")
    ax.set_title("Energy integration error vs analytic truth")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    path = OUT / "energy-error.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, default=200)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    console = Console(width=150)
    results = accuracy(console, args.phases)
    scrape(console, args.scrapes)
    console.print(f"plot: {plot(results)}")


if __name__ == "__main__":
    main()
