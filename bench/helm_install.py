"""Benchmark of installing naaice with its Helm chart on the embedded cluster: `helm install
--wait` until the chart's NAA is Ready, and `helm uninstall --wait`, against a baseline measured
in the same run on the same cluster — the very manifests `helm template` renders for the same
values, applied with `kubectl apply` and waited for with `kubectl rollout status`, then removed
with `kubectl delete --wait`. The ratio helm/kubectl is what Helm's release bookkeeping (release
Secret, hooks, its own readiness wait) adds; both sides run the same pods through the same pod
runner, so the time to a Ready NAA is mostly the pods starting. Also prints how long `helm
template` takes to render the chart.

Usage: .venv/bin/python bench/helm_install.py [--rounds 3]"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naaice_cluster import controlplane
from naaice_cluster.config import FAKE_NODE_TAINT
from naaice_cluster.helm import HELM_VERSION, ensure_helm
from naaice_cluster.paths import repo_root

console = Console()
REPO = repo_root()
CHART = REPO / "charts" / "naaice"
JSON = dict[str, Any]


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def values_for(release: str, namespace: str) -> JSON:
    """The chart configured for the embedded cluster (as tests/integration/helm does)."""
    toleration = [{"operator": "Equal", **FAKE_NODE_TAINT}]
    spec = yaml.safe_load((CHART / "values.yaml").read_text())["bitstreams"][0]["spec"]
    return {
        # The webhook on a free port: the operator pods are host processes here.
        "operator": {
            "namespace": namespace,
            "tolerations": toleration,
            "webhook": {"port": _free_tcp_port()},
        },
        "agent": {
            "devicePlugin": False,
            "claimUnassigned": False,
            "metricsPort": _free_tcp_port(),
            "tolerations": toleration,
        },
        "runtime": {
            "replicas": 1,
            "address": f"127.0.2.{random.randint(2, 250)}",
            "mgmtPort": _free_tcp_port(),
            "tolerations": toleration,
        },
        "naas": {"nodes": ["naa-node-0"]},
        "bitstreams": [{"name": f"{release}-test-kernels", "spec": spec}],
    }


class Bench:
    def __init__(self, cluster: controlplane.Cluster, helm: Path, tmp: Path) -> None:
        self.cluster = cluster
        self.helm = str(helm)
        self.tmp = tmp

    def run(self, *cmd: str, input: str | None = None) -> str:
        res = subprocess.run(cmd, input=input, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed: {res.stderr.strip()}")
        return res.stdout

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return self.run(
            self.cluster.kubectl_path(), f"--kubeconfig={self.cluster.kubeconfig}", *args,
            input=input,
        )  # fmt: skip

    def wait_naa_ready(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.cluster.kubectl("get", "naa", name, "-o", "json")
            if res.returncode == 0:
                conditions = json.loads(res.stdout).get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"NAA {name} never became Ready")

    def namespace(self) -> str:
        name = f"bench-helm-{secrets.token_hex(3)}"
        self.kubectl("create", "namespace", name)
        deadline = time.monotonic() + 60
        while self.cluster.kubectl("get", "sa", "default", "-n", name).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"serviceaccount default never appeared in {name}")
            time.sleep(0.2)
        return name

    def values_file(self, release: str, namespace: str) -> Path:
        path = self.tmp / f"{release}.yaml"
        path.write_text(yaml.safe_dump(values_for(release, namespace)))
        return path

    def helm_round(self) -> tuple[float, float]:
        ns, release = self.namespace(), f"h{secrets.token_hex(3)}"
        values = self.values_file(release, ns)
        kc = f"--kubeconfig={self.cluster.kubeconfig}"
        t0 = time.monotonic()
        self.run(self.helm, "install", release, str(CHART), "-n", ns, "-f", str(values),
                 "--wait", "--timeout", "180s", kc)  # fmt: skip
        self.wait_naa_ready(f"{release}-naaice-naa-0")
        install = time.monotonic() - t0
        t0 = time.monotonic()
        self.run(self.helm, "uninstall", release, "-n", ns, "--wait", "--timeout", "120s", kc)
        uninstall = time.monotonic() - t0
        self.kubectl("delete", "namespace", ns, "--wait=false")
        return install, uninstall

    def kubectl_round(self) -> tuple[float, float]:
        ns, release = self.namespace(), f"k{secrets.token_hex(3)}"
        values = self.values_file(release, ns)
        manifests = self.run(self.helm, "template", release, str(CHART), "-n", ns,
                             "-f", str(values))  # fmt: skip
        base = f"{release}-naaice"
        t0 = time.monotonic()
        self.kubectl("apply", "-n", ns, "-f", "-", input=manifests)
        for workload in (f"deployment/{base}-operator", f"daemonset/{base}-agent",
                         f"statefulset/{base}-naa"):  # fmt: skip
            self.kubectl("rollout", "status", "-n", ns, workload, "--timeout=180s")
        self.wait_naa_ready(f"{base}-naa-0")
        install = time.monotonic() - t0
        t0 = time.monotonic()
        self.kubectl("delete", "-n", ns, "-f", "-", "--wait", "--timeout=120s", input=manifests)
        uninstall = time.monotonic() - t0
        self.kubectl("delete", "namespace", ns, "--wait=false")
        return install, uninstall

    def render_seconds(self, runs: int = 10) -> list[float]:
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            self.run(self.helm, "template", "r", str(CHART))
            times.append(time.monotonic() - t0)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    args = parser.parse_args()
    helm = ensure_helm()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[float, float]]] = {"helm": [], "kubectl": []}
    with controlplane.running(name="bench-helm") as cluster:
        bench = Bench(cluster, helm, args.out)
        render = bench.render_seconds()
        with Progress(console=console) as progress:
            task = progress.add_task("install/uninstall rounds", total=2 * args.rounds)
            for _ in range(args.rounds):
                # Interleaved, so drift in machine load hits both sides alike.
                results["helm"].append(bench.helm_round())
                progress.advance(task)
                results["kubectl"].append(bench.kubectl_round())
                progress.advance(task)
    table = Table(title=f"naaice chart on the embedded cluster, {args.rounds} rounds (s, median)")
    for column in ("step", f"helm {HELM_VERSION}", "kubectl apply/delete", "ratio helm/kubectl"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for i, step in enumerate(("install until the NAA is Ready", "uninstall --wait")):
        h = statistics.median(r[i] for r in results["helm"])
        k = statistics.median(r[i] for r in results["kubectl"])
        table.add_row(step, f"{h:.2f}", f"{k:.2f}", f"{h / k:.2f}")
    console.print(table)
    console.print(
        "Both deletes wait for the objects they delete, not for the pods the garbage collector "
        "removes after them; kubectl waits object by object, Helm for all at once."
    )
    console.print(
        f"helm template of the chart: median {statistics.median(render) * 1000:.0f} ms "
        f"over {len(render)} renders (min {min(render) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
