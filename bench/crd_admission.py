"""Benchmark of what naaice's CRD validation costs at admission: create, update and refusal
latency of NAAJobs and NetworkAttachedAccelerators under the real CRDs (OpenAPI + CEL rules)
against a baseline measured in the same run on the same API server — twin CRDs in the group
`bench.naaice.io` with the same structural schema and every `x-kubernetes-validations` rule
removed. The ratio real/twin is the price of the CEL rules; both sides pay TLS, etcd and
defaulting alike (one kept-alive connection each, requests interleaved).

Usage: .venv/bin/python bench/crd_admission.py [--requests 300]"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import ssl
import statistics
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from naaice_cluster import controlplane
from naaice_cluster.kube import Credentials
from naaice_cluster.paths import repo_root

console = Console()
REPO = repo_root()
TWIN_GROUP = "bench.naaice.io"


def strip_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [strip_cel(v) for v in node]
    return node


def twin_crd(path: Path) -> dict[str, Any]:
    crd = strip_cel(yaml.safe_load(path.read_text()))
    crd["spec"]["group"] = TWIN_GROUP
    crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{TWIN_GROUP}"
    crd["spec"]["names"].pop("shortNames", None)
    crd["spec"]["names"].pop("categories", None)
    return crd


class Client:
    """One kept-alive HTTPS connection, so the figures are the API server's work and not TLS."""

    def __init__(self, creds: Credentials) -> None:
        ctx = ssl.create_default_context(cafile=str(creds.ca_file) if creds.ca_file else None)
        self.conn = http.client.HTTPSConnection(creds.host, creds.port, context=ctx, timeout=30)
        self.headers = {"Authorization": f"Bearer {creds.token}", "Accept": "application/json"}

    def call(self, method: str, path: str, body: Any, content_type: str) -> tuple[int, float]:
        data = json.dumps(body).encode()
        start = time.perf_counter()
        self.conn.request(
            method, path, body=data, headers={**self.headers, "Content-Type": content_type}
        )
        response = self.conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - start


def examples() -> tuple[dict[str, Any], dict[str, Any]]:
    job = yaml.safe_load((REPO / "examples" / "naajob.yaml").read_text())
    naa = next(yaml.safe_load_all((REPO / "examples" / "naas.yaml").read_text()))
    return job, naa


def measure(cluster: controlplane.Cluster, requests: int) -> dict[str, dict[str, list[float]]]:
    creds = Credentials.from_kubeconfig(cluster.kubeconfig)
    client = Client(creds)
    job, naa = examples()
    namespace = "bench-crd"
    cluster.kubectl("create", "namespace", namespace, check=True)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        cluster.kubectl(
            "apply", "--server-side", "-f", "-", input=json.dumps(twin_crd(path)), check=True
        )
    cluster.kubectl(
        "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s", check=True
    )
    groups = {"real": "naaice.io", "twin": TWIN_GROUP}
    samples: dict[str, dict[str, list[float]]] = {g: {} for g in groups}

    def record(group: str, op: str, status: int, seconds: float, expect: int) -> None:
        assert status == expect, f"{group} {op}: HTTP {status}, expected {expect}"
        samples[group].setdefault(op, []).append(seconds)

    with Progress(console=console) as progress:
        task = progress.add_task("admission requests", total=requests * len(groups))
        for i in range(requests):
            for group, api_group in groups.items():
                base = f"/apis/{api_group}/v1alpha1"
                body = copy.deepcopy(job)
                body["apiVersion"] = f"{api_group}/v1alpha1"
                body["metadata"]["name"] = f"job-{i}"
                jobs = f"{base}/namespaces/{namespace}/naajobs"
                status, s = client.call("POST", jobs, body, "application/json")
                record(group, "create NAAJob", status, s, 201)
                status, s = client.call(
                    "PATCH", f"{jobs}/job-{i}", {"spec": {"suspend": True}},
                    "application/merge-patch+json",
                )  # fmt: skip
                record(group, "update NAAJob (suspend)", status, s, 200)
                accel = copy.deepcopy(naa)
                accel["apiVersion"] = f"{api_group}/v1alpha1"
                accel["metadata"]["name"] = f"naa-{i}"
                status, s = client.call(
                    "POST", f"{base}/networkattachedaccelerators", accel, "application/json"
                )
                record(group, "create NAA", status, s, 201)
                bad = copy.deepcopy(body)
                bad["metadata"]["name"] = f"bad-{i}"
                bad["spec"]["naas"][0]["count"] = 0
                status, s = client.call("POST", jobs, bad, "application/json")
                record(group, "refuse NAAJob (count 0)", status, s, 422)
                progress.advance(task)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with controlplane.running(name="bench-crd-admission") as cluster:
        samples = measure(cluster, args.requests)
    table = Table(title=f"CRD admission latency, {args.requests} requests per cell (ms)")
    for column in (
        "operation",
        "real p50",
        "real p99",
        "twin p50",
        "twin p99",
        "ratio p50 real/twin",
    ):
        table.add_column(column, justify="right" if column != "operation" else "left")
    for op in samples["real"]:
        real, twin = sorted(samples["real"][op]), sorted(samples["twin"][op])

        def pct(values: list[float], q: float) -> float:
            return values[min(len(values) - 1, int(q * len(values)))] * 1000

        table.add_row(
            op,
            f"{pct(real, 0.5):.2f}",
            f"{pct(real, 0.99):.2f}",
            f"{pct(twin, 0.5):.2f}",
            f"{pct(twin, 0.99):.2f}",
            f"{statistics.median(real) / statistics.median(twin):.2f}",
        )
    console.print(table)
    console.print(
        "real = crds/ as shipped (OpenAPI + CEL); twin = same schema without CEL rules "
        f"(group {TWIN_GROUP}), same API server, interleaved."
    )


if __name__ == "__main__":
    main()
