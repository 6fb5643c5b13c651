"""Operator benchmark, in one run on the embedded control plane with real software NAAs:

1. lifecycle: 200 NAAJobs on 32 NAAs (zero flash time), 32 in flight at a time; jobs/s from
   first apply to last terminal condition, p50/p99 apply→pods-created latency. Baseline in the
   same run: the same number of bare pods (same command, same pod runner) at the same
   concurrency, i.e. what the platform costs without the operator.
2. placement: pure first-fit of 10 000 jobs onto 10 000 NAAs vs the naive O(J·N) first-fit.

Floors (issue 5): p99 < 2 s at 32 concurrent, ≥ 10 jobs/s, first-fit 10k×10k < 1 s.
Run: `.venv/bin/python bench/operator.py [--jobs 200 --naas 32]`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from naa_operator.core.model import (  # noqa: E402
    BitstreamView,
    FunctionView,
    JobView,
    NAAView,
    RequestView,
)
from naa_operator.core.placement import first_fit, naive_first_fit  # noqa: E402

console = Console()


def bench_placement(n_jobs: int = 10_000, n_naas: int = 10_000) -> dict[str, float]:
    boards = ("alveo-u55c", "alveo-u280", "xupvvh", "vck5000")
    bitstreams = [
        BitstreamView(
            name=f"bs-{b}",
            digest="sha256:" + f"{i}" * 64,
            compatible_boards=(b,),
            functions=(FunctionView("add1", 1, 1), FunctionView("train", 16, 3)),
        )
        for i, b in enumerate(boards)
    ]
    naas = [
        NAAView(name=f"naa-{i:05}", board_model=boards[i % 4], address=f"10.{i // 250}.{i % 250}.1")
        for i in range(n_naas)
    ]
    jobs = [
        JobView(
            key=f"ns/j{i:05}",
            uid=str(i),
            requests=(RequestView("r", "add1" if i % 3 else "train", 1),),
        )
        for i in range(n_jobs)
    ]
    t0 = time.perf_counter()
    fast = first_fit(jobs=jobs, naas=naas, bitstreams=bitstreams, leased={})
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = naive_first_fit(jobs=jobs, naas=naas, bitstreams=bitstreams, leased={})
    t_slow = time.perf_counter() - t0
    assert [[a.naa for a in p.assignments] for p in fast.placements] == slow
    return {"fast_s": t_fast, "naive_s": t_slow, "placed": float(len(fast.placed()))}


def request_census(cluster) -> Counter[str]:  # type: ignore[no-untyped-def]
    """The apiserver's own count of the requests it served (`apiserver_request_total`), by
    verb and resource[/subresource]: the difference across a phase is what that phase cost."""
    text = cluster.kubectl("get", "--raw", "/metrics", check=True).stdout
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        what = labels.get("resource", "")
        if labels.get("subresource"):
            what += "/" + labels["subresource"]
        counts[f"{labels.get('verb', '?')} {what}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def census_summary(before: Counter[str], after: Counter[str], per: int) -> str:
    """'N requests per item (top kinds)' for the difference `after - before`."""
    diff = after - before
    total = sum(diff.values())
    top = ", ".join(f"{k} {v / per:.1f}" for k, v in diff.most_common(8))
    return f"{total / per:.1f} per item ({top})"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def bench_lifecycle(n_jobs: int, n_naas: int, concurrency: int) -> dict[str, float]:
    from naa_operator.adapters.informer import lines

    from naaice_cluster import controlplane as cp
    from tests.integration.operator.lab import Lab
    from tests.support.naa import SoftwareNAAFactory

    workdir = Path(tempfile.mkdtemp(prefix="naaice-bench-operator-"))
    with contextlib.ExitStack() as stack:
        if not os.environ.get("BENCH_KEEP"):
            stack.callback(shutil.rmtree, workdir, True)
        console.print("starting the embedded control plane …")
        cluster = cp.start_embedded(name=f"bench-op-{int(time.time())}", run_dir=workdir / "run")
        stack.callback(cp.stop, cluster)
        namespace = "bench-operator"
        cluster.kubectl("create", "namespace", namespace, check=True)
        while cluster.kubectl("get", "sa", "default", "-n", namespace).returncode != 0:
            time.sleep(0.2)
        factory = SoftwareNAAFactory(workdir=workdir)
        stack.callback(factory.close)
        lab = Lab(cluster=cluster, namespace=namespace, naa_factory=factory, workdir=workdir)
        stack.callback(lab.close)
        console.print(f"starting {n_naas} software NAAs …")
        # 10 Hz sensors (default 100 Hz): 32 emulated boards share two cores with everything.
        lab.add_naas(n_naas, flash_seconds=0.0, extra_args=("--sample-hz", "10"))
        lab.add_bitstream(flash_seconds=0.0)
        command = ["/bin/true"]

        # Pod creation times (the client's clock, like the apply times), finished pods and
        # finished jobs, all from watches: the closed loop must not spend its time polling
        # every object in flight. One watch of pods serves both the creation times and the
        # finished bare pods, so the bench's own load is the same in both halves.
        first_pod: dict[str, float] = {}
        finished: set[str] = set()
        stop = threading.Event()

        def raw_watch(list_fn, on_object) -> None:  # type: ignore[no-untyped-def]
            # Plain JSON lines, not the client's model objects: deserialising every event into
            # V1Pod cost the bench as much CPU as the pod runner, on the same two cores.
            version = ""
            while not stop.is_set():
                resp = list_fn(
                    watch=True,
                    timeout_seconds=2,
                    resource_version=version or None,
                    allow_watch_bookmarks=True,
                    _preload_content=False,
                )
                try:
                    for line in lines(resp.stream(65536)):
                        event = json.loads(line)
                        obj = event["object"]
                        if event["type"] == "ERROR":
                            version = ""
                            break
                        version = obj["metadata"].get("resourceVersion", version)
                        if event["type"] != "BOOKMARK":
                            on_object(obj)
                finally:
                    resp.release_conn()

        def on_pod(pod: dict) -> None:  # type: ignore[type-arg]
            labels = pod["metadata"].get("labels") or {}
            key = labels.get("naaice.io/naajob") or labels.get("bench/pod")
            if key and key not in first_pod:
                first_pod[key] = time.time()
            bare = labels.get("bench/pod")
            if bare and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                finished.add(bare)

        def on_job(job: dict) -> None:  # type: ignore[type-arg]
            if lab.terminal(job):
                finished.add(job["metadata"]["name"])

        def watch_pods() -> None:
            raw_watch(partial(lab.core.list_namespaced_pod, namespace), on_pod)

        def watch_jobs() -> None:
            raw_watch(
                partial(
                    lab.custom.list_namespaced_custom_object,
                    "naaice.io",
                    "v1alpha1",
                    namespace,
                    "naajobs",
                ),
                on_job,
            )

        for target in (watch_pods, watch_jobs):
            threading.Thread(target=target, daemon=True).start()
        stack.callback(stop.set)

        def closed_loop(what: str, submit, done) -> tuple[float, dict[str, float]]:  # type: ignore[no-untyped-def]
            applied: dict[str, float] = {}
            in_flight: list[str] = []
            finished = 0
            t0 = time.time()
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(what, total=n_jobs)
                nxt = 0
                while finished < n_jobs:
                    while len(in_flight) < concurrency and nxt < n_jobs:
                        name = f"{what}-{nxt}"
                        applied[name] = time.time()
                        submit(name)
                        in_flight.append(name)
                        nxt += 1
                    still = []
                    for name in in_flight:
                        if name in first_pod and done(name):
                            finished += 1
                            progress.advance(task)
                        else:
                            still.append(name)
                    in_flight = still
                    time.sleep(0.02)
            return time.time() - t0, applied

        # Baseline: bare pods through the same scheduler and pod runner.
        def submit_pod(name: str) -> None:
            body = lab.job_body(name, command=command)["spec"]["template"]
            lab.core.create_namespaced_pod(
                namespace,
                {"metadata": {"name": name, "labels": {"bench/pod": name}}, "spec": body["spec"]},
            )

        def pod_done(name: str) -> bool:
            return name in finished

        census0 = request_census(cluster)
        pods_wall, pods_applied = closed_loop("pod", submit_pod, pod_done)
        census1 = request_census(cluster)
        pod_lat = [first_pod[n] - t for n, t in pods_applied.items()]

        op = lab.start_operator(
            identity="bench",
            extra=("--workers", "32"),
            verbose=bool(os.environ.get("BENCH_VERBOSE")),
        )
        # Apply→pods is the operator's latency, not its start-up (2–3 s of imports on this
        # machine): the jobs go in once its caches are synced.
        deadline = time.monotonic() + 120
        while b"caches synced" not in op.log.read_bytes():
            if op.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the operator did not start; see {op.log} (BENCH_KEEP=1)")
            time.sleep(0.1)

        def submit_job(name: str) -> None:
            lab.create_job(name, command=command)

        def job_done(name: str) -> bool:
            return name in finished

        census2 = request_census(cluster)
        jobs_wall, jobs_applied = closed_loop("job", submit_job, job_done)
        census3 = request_census(cluster)
        console.print(f"API requests, bare pods: {census_summary(census0, census1, n_jobs)}")
        console.print(f"API requests, NAAJobs: {census_summary(census2, census3, n_jobs)}")
        job_lat = [first_pod[n] - t for n, t in jobs_applied.items()]
        finished_jobs = lab.jobs()
        failed = [j["metadata"]["name"] for j in finished_jobs if lab.terminal(j) != "Succeeded"]
        sizes = [len(json.dumps(j)) for j in finished_jobs]
        managed = [len(json.dumps(j["metadata"].get("managedFields") or [])) for j in finished_jobs]
        console.print(
            f"a finished NAAJob: {statistics.mean(sizes):.0f} bytes of JSON "
            f"({statistics.mean(managed):.0f} of them managedFields)"
        )
        if os.environ.get("BENCH_VERBOSE"):
            console.print_json(json.dumps(finished_jobs[-1]))
            slowest = sorted(jobs_applied, key=lambda n: first_pod[n] - jobs_applied[n])[-8:]
            console.print(
                "slowest apply→pods: "
                + ", ".join(f"{n} {first_pod[n] - jobs_applied[n]:.2f}s" for n in slowest)
            )
        # A job's terminal condition is written before its Leases are deleted (crash safety),
        # so the last few may still be releasing: a leak is a Lease still there 10 s later.
        deadline = time.monotonic() + 10.0
        while (leaked := lab.leases()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return {
            "jobs_per_s": n_jobs / jobs_wall,
            "pods_per_s": n_jobs / pods_wall,
            "job_p50": statistics.median(job_lat),
            "job_p99": percentile(job_lat, 0.99),
            "pod_p50": statistics.median(pod_lat),
            "pod_p99": percentile(pod_lat, 0.99),
            "failed": float(len(failed)),
            "leaked": float(len(leaked)),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--naas", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--skip-lifecycle", action="store_true")
    args = parser.parse_args()

    place = bench_placement()
    table = Table(title="first-fit placement, 10 000 jobs × 10 000 NAAs")
    table.add_column("implementation")
    table.add_column("seconds", justify="right")
    table.add_row("naaice indexed first-fit", f"{place['fast_s']:.3f}")
    table.add_row("naive O(J·N) first-fit (baseline)", f"{place['naive_s']:.3f}")
    table.add_row("speed-up", f"{place['naive_s'] / place['fast_s']:.1f}×")
    console.print(table)
    ok = place["fast_s"] < 1.0
    if not args.skip_lifecycle:
        life = bench_lifecycle(args.jobs, args.naas, args.concurrency)
        table = Table(
            title=f"lifecycle, {args.jobs} jobs on {args.naas} NAAs, "
            f"{args.concurrency} in flight, zero flash time"
        )
        table.add_column("")
        table.add_column("NAAJobs (operator)", justify="right")
        table.add_column("bare pods (baseline)", justify="right")
        table.add_row("throughput (/s)", f"{life['jobs_per_s']:.1f}", f"{life['pods_per_s']:.1f}")
        table.add_row(
            "apply→pods created p50 (s)", f"{life['job_p50']:.3f}", f"{life['pod_p50']:.3f}"
        )
        table.add_row(
            "apply→pods created p99 (s)", f"{life['job_p99']:.3f}", f"{life['pod_p99']:.3f}"
        )
        table.add_row(
            "ratio operator/baseline throughput",
            f"{life['jobs_per_s'] / life['pods_per_s']:.2f}",
            "",
        )
        table.add_row(
            "jobs not Succeeded / Leases leaked", f"{life['failed']:.0f} / {life['leaked']:.0f}", ""
        )
        console.print(table)
        ok = ok and life["job_p99"] < 2.0 and life["jobs_per_s"] >= 10 and not life["failed"]
    load = os.getloadavg()
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / "
        f"{load[2]:.1f} (1/5/15 min) — latencies on a shared, loaded machine are upper bounds"
    )
    console.print("floors met" if ok else "[red]floors NOT met[/red]")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
