"""Runs the real, pinned Helm CLI (built from hack/helm by `naaice_cluster.helm`) for the chart
tests in tests/unit/helm and tests/integration/helm, and renders the chart into objects."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from naaice_cluster.helm import ensure_helm

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "naaice"
#: The Kubernetes version `helm template` renders for in the golden tests: the embedded
#: cluster's, so the goldens do not move with Helm's built-in default.
KUBE_VERSION = "1.35.4"
MONITORING_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)

JSON = dict[str, Any]


def helm_binary() -> Path:
    """The pinned Helm, built into $NAAICE_CACHE first if it is not there yet."""
    return ensure_helm()


def helm(
    *args: str, kubeconfig: Path | str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    cmd = [str(helm_binary()), *args]
    if kubeconfig is not None:
        cmd.append(f"--kubeconfig={kubeconfig}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def template(*args: str, release: str = "naaice", namespace: str = "naaice-system") -> str:
    """`helm template` of the chart; fails the test with Helm's message when it fails."""
    res = helm(
        "template", release, str(CHART), "--namespace", namespace,
        "--kube-version", KUBE_VERSION, *args,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout


def objects(rendered: str) -> list[JSON]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(docs: list[JSON], kind: str, name: str | None = None) -> list[JSON]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def container_args(docs: list[JSON], kind: str) -> list[str]:
    (workload,) = find(docs, kind)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return [*container["command"], *container["args"]]
