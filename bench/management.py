"""Benchmark of the software NAA's management plane and power model.

Prints, in one run:
1. `/v1/health` and `/v1/sensors` requests per second over real HTTP against a running
   `SoftwareNAA` (with bearer-token auth), and the ratio to a bare aiohttp handler in the same
   process (baseline: the cost of HTTP alone).
2. The energy counter's error over a synthetic 90 % duty cycle run in real time (kernel
   start/end events as the RPC server reports them), against the exact model energy, and the
   ratio to a 1 Hz trapezoid integration of the reported power (what a slow poller gets).
3. Power under real RoCEv2 RPC load: a host loop of 45 ms `test.busy` RPCs against a
   SoftwareNAA with its RPC server, power from the µJ counter, against idle (baseline) and
   against the model's prediction from the kernel time the NAA measured.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naa_runtime.bitstream import digest_of
from naa_runtime.kernels import default_registry
from naa_runtime.management import create_app, naa_registry
from naa_runtime.naa import NAAConfig, NAAState, SoftwareNAA
from naa_runtime.sensors import ActivityAccumulator, PowerModel, SensorSampler, power_watts
from naa_runtime.serve import ServeOptions, rpc_data_plane

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


BUSY_DOC = b"kind: SoftwareBitstream\nfunctions: [{name: busy, fnCode: 20, kernel: test.busy}]\n"
LOAD_SECONDS = 5.0


async def bench_rpc_load(progress: Progress, workdir: Path) -> dict[str, float]:
    import numpy as np

    from naa_runtime.client import Naa, reset_naa_spec

    naa_address, host_address = "127.0.0.201", "127.1.250.1"
    config = NAAConfig(name="bench-load", address=naa_address, flash_seconds=0)
    naa = SoftwareNAA(
        config=config,
        registry=default_registry(),
        data_plane=rpc_data_plane(
            config=config, options=ServeOptions(mgmt_address="", mgmt_port=0, token=None)
        ),
    )
    await naa.start()
    try:
        artifact = workdir / "busy.yaml"
        artifact.write_bytes(BUSY_DOC)
        await naa.flash(
            name="busy", digest=digest_of(BUSY_DOC), artifact=artifact.as_uri(), force=False
        )
        while naa.state is not NAAState.READY:
            await asyncio.sleep(0.01)

        async def power_over(seconds: float) -> float:
            before = naa.sensor_sample()
            await asyncio.sleep(seconds)
            after = naa.sensor_sample()
            joules = (after.energy_microjoules - before.energy_microjoules) / 1e6
            return joules / ((after.timestamp_ns - before.timestamp_ns) / 1e9)

        idle = await power_over(2.0)
        os.environ["NAA_SPEC"] = f"{naa_address}::20:1"
        reset_naa_spec()
        task = progress.add_task("45 ms RPCs", total=LOAD_SECONDS)

        def load() -> int:
            calls = 0
            with Naa(20, inputs=[np.zeros(4096, np.uint8)], local_address=host_address) as rpc:
                t0 = time.monotonic()
                while (elapsed := time.monotonic() - t0) < LOAD_SECONDS:
                    assert rpc(user=45) == 0
                    calls += 1
                    progress.update(task, completed=min(elapsed, LOAD_SECONDS))
            return calls

        before = naa.sensor_sample()
        kernel_before = sum(naa.stats().kernel_seconds.values())
        calls = await asyncio.to_thread(load)
        await asyncio.sleep(0.05)
        after = naa.sensor_sample()
        kernel_seconds = sum(naa.stats().kernel_seconds.values()) - kernel_before
        wall = (after.timestamp_ns - before.timestamp_ns) / 1e9
        loaded = (after.energy_microjoules - before.energy_microjoules) / 1e6 / wall
        predicted = power_watts(
            model=config.power, busy=kernel_seconds / wall, flashing=0, bits_per_second=0
        )
        return {
            "idle": idle,
            "loaded": loaded,
            "predicted": predicted,
            "busy": kernel_seconds / wall,
            "calls": calls,
        }
    finally:
        await naa.stop()


def main() -> None:
    console = Console()
    with Progress(console=console, transient=True) as progress:
        rates = asyncio.run(bench_http(progress))
        seconds, exact, counter, trapezoid = bench_energy(progress)
        with tempfile.TemporaryDirectory() as workdir:
            load = asyncio.run(bench_rpc_load(progress, Path(workdir)))
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
    rpc = Table(title=f"real RoCEv2 RPC load ({int(load['calls'])} × 45 ms test.busy RPCs)")
    rpc.add_column("")
    rpc.add_column("watts (µJ counter)", justify="right")
    rpc.add_column("ratio to idle", justify="right")
    rpc.add_row("idle (baseline)", f"{load['idle']:.2f}", "1.00")
    rpc.add_row(
        f"under load (busy {load['busy']:.1%})",
        f"{load['loaded']:.2f}",
        f"{load['loaded'] / load['idle']:.2f}",
    )
    rpc.add_row(
        "model at that busy fraction",
        f"{load['predicted']:.2f}",
        f"{load['predicted'] / load['idle']:.2f}",
    )
    console.print(rpc)


if __name__ == "__main__":
    main()
