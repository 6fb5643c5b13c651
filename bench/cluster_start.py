"""Benchmark of the embedded control plane: cold build time, warm start-to-ready time (p50 over
several runs, broken down by phase), teardown time, and peak RSS of each control-plane process
under a small pod workload.

Baselines measured in the same run: etcd alone (spawn → /health) and the apiserver alone
(spawn → /readyz); the ratio whole-cluster-ready / apiserver-ready says what the rest of the
cluster (KCM, scheduler, KWOK, node Ready, pod runner, CRDs) costs on top.

The cold build is measured only when the binary cache is empty (run `rm -rf
$NAAICE_CACHE/bin` and, for a truly cold build, `go clean -cache`); otherwise the figure a
previous cold build recorded is printed, labelled as such.

Usage: .venv/bin/python bench/cluster_start.py [--runs 5] [--pods 10]"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naaice_cluster import build, controlplane
from naaice_cluster.paths import bin_dir, cache_dir, repo_root

console = Console()


def cold_build() -> dict[str, Any]:
    """Build if the cache is empty (measured now); else the figure an earlier build recorded
    when it started from an empty GOCACHE (`build.COLD_RECORD`), if any."""
    if build.cached_binaries_current():
        record_path = cache_dir() / build.COLD_RECORD
        if record_path.is_file():
            return {"measured": False, **json.loads(record_path.read_text())}
        return {"measured": False}
    with Progress(console=console) as progress:
        task = progress.add_task("cold build", total=len(build.ALL_BINARIES) + 1)
        record = build.build(
            progress=lambda name, i, _n: progress.update(task, completed=i, description=name)
        )
    return {"measured": True, **record}


def _peak_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _run_pods(cluster: controlplane.Cluster, count: int) -> float:
    docs = []
    for i in range(count):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"bench-{i}"},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeName": "naa-node-0",
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists"}],
                    "containers": [
                        {"name": "c", "image": "none", "command": ["sh", "-c", "sleep 0.2"]}
                    ],
                },
            }
        )
    t0 = time.monotonic()
    manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    cluster.kubectl("apply", "-f", "-", input=manifest, check=True)
    res = cluster.kubectl(
        "wait", "--for=jsonpath={.status.phase}=Succeeded", "pod", "--all", "--timeout=120s"
    )
    if res.returncode != 0:
        raise RuntimeError(f"bench pods did not succeed: {res.stderr}")
    return time.monotonic() - t0


def one_start(workdir: Path, index: int, pods: int) -> dict[str, Any]:
    marks: list[tuple[str, float]] = []
    t0 = time.monotonic()
    cluster = controlplane.start_embedded(
        name=f"bench-{index}",
        run_dir=workdir / f"run-{index}",
        on_step=lambda s: marks.append((s, time.monotonic() - t0)),
    )
    ready = time.monotonic() - t0
    at = dict(marks)
    pods_s = _run_pods(cluster, pods) if pods else 0.0
    rss = {p.name: _peak_rss_kib(p.pid) for p in cluster.processes}
    t1 = time.monotonic()
    controlplane.stop(cluster)
    return {
        "ready": ready,
        "etcd": at["kube-apiserver"] - at["etcd"],
        "apiserver": at["controller manager, scheduler, KWOK, pod runner"] - at["kube-apiserver"],
        "rest": at["CRDs"] - at["controller manager, scheduler, KWOK, pod runner"],
        "crds": ready - at["CRDs"],
        "pods": pods_s,
        "stop": time.monotonic() - t1,
        "rss_kib": rss,
        "leftover": controlplane.leftover_pids(cluster),
    }


def _p50(values: list[float]) -> float:
    return statistics.median(values)


def plot(runs: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = {
        "etcd": "etcd",
        "apiserver": "kube-apiserver",
        "rest": "KCM, scheduler, KWOK node, pod runner",
        "crds": "CRDs",
    }
    fig, ax = plt.subplots(figsize=(8, 4))
    left = [0.0] * len(runs)
    for phase, label in phases.items():
        vals = [r[phase] for r in runs]
        ax.barh(range(len(runs)), vals, left=left, label=label)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_yticks(range(len(runs)), [f"run {i + 1}" for i in range(len(runs))])
    ax.set_xlabel("seconds from start to ready")
    ax.set_title("Embedded control plane: warm start, by phase")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pods", type=int, default=10)
    args = parser.parse_args()

    cold = cold_build()
    label = "measured now" if cold.get("measured") else "recorded by an earlier cold build"
    if "totalSeconds" in cold:
        gc = "empty" if cold.get("goCacheWasEmpty") else "warm"
        console.print(
            f"cold build ({label}, {cold.get('date')}; GOCACHE was {gc}): "
            f"{cold['totalSeconds']:.0f} s on {cold.get('cpus')} CPUs, per binary "
            f"{cold.get('seconds')}"
        )
        if cold.get("note"):
            console.print(f"  conditions: {cold['note']}")
    else:
        console.print(
            f"cold build: not measured (binaries were cached in {bin_dir()} before this "
            "benchmark ever built them; empty the cache to measure)"
        )

    runs: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="naaice-bench-"))
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("warm starts", total=args.runs)
            for i in range(args.runs):
                runs.append(one_start(workdir, i, args.pods))
                progress.advance(task)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"warm start-to-ready over {args.runs} runs (seconds)")
    for col in ("phase", "p50", "min", "max"):
        table.add_column(col)
    for key, title in (
        ("etcd", "etcd alone (baseline 1)"),
        ("apiserver", "kube-apiserver alone (baseline 2)"),
        ("rest", "KCM+scheduler+KWOK+node Ready+runner"),
        ("crds", "CRDs Established"),
        ("ready", "whole cluster ready"),
        ("pods", f"{args.pods} pods run to Succeeded"),
        ("stop", "teardown"),
    ):
        vals = [r[key] for r in runs]
        table.add_row(title, f"{_p50(vals):.2f}", f"{min(vals):.2f}", f"{max(vals):.2f}")
    console.print(table)
    ready50 = _p50([r["ready"] for r in runs])
    api50 = _p50([r["apiserver"] for r in runs])
    etcd50 = _p50([r["etcd"] for r in runs])
    console.print(
        f"ratio whole-cluster-ready / apiserver-ready: {ready50 / api50:.2f}x; "
        f"whole-cluster-ready / etcd-ready: {ready50 / etcd50:.1f}x"
    )

    rss = Table(title="peak RSS (VmHWM) per process, last run, MiB")
    rss.add_column("process")
    rss.add_column("MiB")
    last = runs[-1]["rss_kib"]
    for name, kib in last.items():
        rss.add_row(name, f"{kib / 1024:.0f}")
    total = sum(last.values()) / 1024
    rss.add_row("sum of peaks", f"{total:.0f}")
    console.print(rss)
    api_share = last.get("kube-apiserver", 0) / 1024 / total if total else 0
    console.print(f"ratio apiserver / whole control plane RSS: {api_share:.2f}")
    leftovers = [r["leftover"] for r in runs if r["leftover"]]
    console.print(f"runs leaving processes behind: {len(leftovers)} of {len(runs)}")
    out = repo_root() / "out" / "cluster_start.png"
    plot(runs, out)
    console.print(f"plot: {out}")
    return 1 if leftovers else 0


if __name__ == "__main__":
    raise SystemExit(main())
