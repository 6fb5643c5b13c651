"""Benchmark of the software NAA's management plane and power model.

Prints, in one run:
1. `/v1/health` and `/v1/sensors` requests per second over real HTTP against a running
   `SoftwareNAA` (with bearer-token auth), and the ratio to a bare aiohttp handler in the same
   process (baseline: the cost of HTTP alone).
2. The energy counter's error over a synthetic 90 % duty cycle run in real time (kernel
   start/end events as the RPC server reports them), against the exact model energy, and the
   ratio to a 1 Hz trapezoid integration of the reported power (what a slow poller gets).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naa_runtime.kernels import default_registry
from naa_runtime.management import create_app, naa_registry
from naa_runtime.naa import NAAConfig, SoftwareNAA
from naa_runtime.sensors import ActivityAccumulator, PowerModel, SensorSampler

REQUESTS = 3000
CONCURRENCY = 8
DUTY_SECONDS = 6.0


async def _hammer(url: str, headers: dict[str, str], progress: Progress, label: str) -> float:
    task = progress.add_task(label, total=REQUESTS)
    async with aiohttp.ClientSession(headers=headers) as session:
        counter = iter(range(REQUESTS))

        async def worker() -> None:
            for _ in counter:
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status
                progress.advance(task)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return REQUESTS / (time.perf_counter() - start)


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def bench_http(progress: Progress) -> dict[str, float]:
    async def hello(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    bare = web.Application()
    bare.router.add_get("/", hello)
    naa = SoftwareNAA(
        config=NAAConfig(name="bench", address="127.0.0.1"), registry=default_registry()
    )
    await naa.start()
    token = "bench-token"
    runners = [
        await _serve(bare, 19101),
        await _serve(create_app(naa=naa, token=token, metrics=naa_registry(naa)), 19102),
    ]
    auth = {"Authorization": f"Bearer {token}"}
    try:
        return {
            "bare aiohttp": await _hammer("http://127.0.0.1:19101/", {}, progress, "baseline"),
            "/v1/health": await _hammer(
                "http://127.0.0.1:19102/v1/health", auth, progress, "/v1/health"
            ),
            "/v1/sensors": await _hammer(
                "http://127.0.0.1:19102/v1/sensors", auth, progress, "/v1/sensors"
            ),
        }
    finally:
        for runner in runners:
            await runner.cleanup()
        await naa.stop()


def bench_energy(progress: Progress) -> tuple[float, float, float, float]:
    """Returns (seconds, exact J, counter J, 1 Hz trapezoid J)."""
    model = PowerModel()
    activity = ActivityAccumulator()
    sampler = SensorSampler(model=model, activity=activity, sample_hz=100)
    start_uj = sampler.latest().energy_microjoules
    sampler.start()
    polled: list[tuple[float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            sample = sampler.latest()
            polled.append((sample.timestamp_ns / 1e9, sample.power_watts))

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    task = progress.add_task("90 % duty cycle", total=DUTY_SECONDS)
    busy_total = 0.0
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < DUTY_SECONDS:
        # 45 ms kernel, 5 ms gap: a 90 % duty cycle with edges at random sample phases.
        begin = time.monotonic()
        activity.kernel_started(now=begin)
        time.sleep(0.045)
        end = time.monotonic()
        activity.kernel_ended(now=end)
        busy_total += end - begin
        time.sleep(0.005)
        progress.update(task, completed=min(elapsed, DUTY_SECONDS))
    stop.set()
    poller.join()
    sampler.stop()
    seconds = time.monotonic() - t0
    # sampler.stop() takes a final sample at its own "now", slightly after t0 + seconds.
    counter = (sampler.latest().energy_microjoules - start_uj) / 1e6
    exact = model.idle_watts * seconds + (model.active_watts - model.idle_watts) * busy_total
    trapezoid = sum((p1 + p2) / 2 * (t2 - t1) for (t1, p1), (t2, p2) in itertools.pairwise(polled))
    span = polled[-1][0] - polled[0][0] if len(polled) > 1 else 1.0
    return seconds, exact, counter, trapezoid * seconds / span


def main() -> None:
    console = Console()
    with Progress(console=console, transient=True) as progress:
        rates = asyncio.run(bench_http(progress))
        seconds, exact, counter, trapezoid = bench_energy(progress)
    table = Table(title="management plane (requests/s, concurrency 8)")
    table.add_column("endpoint")
    table.add_column("req/s", justify="right")
    table.add_column("ratio to bare aiohttp", justify="right")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / rates['bare aiohttp']:.2f}")
    console.print(table)
    energy = Table(title=f"energy over a {DUTY_SECONDS:.0f} s 90 % duty cycle")
    energy.add_column("method")
    energy.add_column("joules", justify="right")
    energy.add_column("error vs exact", justify="right")
    energy.add_row("exact (model)", f"{exact:.2f}", "—")
    energy.add_row("µJ counter (100 Hz)", f"{counter:.2f}", f"{(counter - exact) / exact:+.3%}")
    energy.add_row(
        "1 Hz trapezoid of powerWatts", f"{trapezoid:.2f}", f"{(trapezoid - exact) / exact:+.3%}"
    )
    console.print(energy)
    console.print(
        f"mean power {counter / seconds:.1f} W (calibration target 89 W for training "
        f"at 90 % duty plus transfers); counter error / 1 Hz error = "
        f"{abs(counter - exact) / max(abs(trapezoid - exact), 1e-9):.3f}"
    )


if __name__ == "__main__":
    main()
