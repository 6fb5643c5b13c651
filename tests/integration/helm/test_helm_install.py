"""`helm install` of charts/naaice into the embedded cluster with the real Helm: the apiserver
admits every object (NAA and Bitstream objects against the CRD schemas and CEL rules), the pod
runner runs the chart's operator, agent and runtime pods as the image would, the agent (with the
chart's RBAC and token Secret) reports the chart's NAA healthy, and `helm uninstall` removes it
all but the CRDs."""

from __future__ import annotations

import json
import random
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from naaice_cluster import controlplane as cp
from naaice_cluster.config import FAKE_NODE_TAINT
from tests.support.helm import CHART, helm

JSON = dict[str, Any]
CRDS = (
    "naajobs.naaice.io",
    "networkattachedaccelerators.naaice.io",
    "bitstreams.naaice.io",
)


def _free_loopback_address() -> str:
    """A 127.0.1.x address with its UDP data-plane and TCP ports free (the software_naa
    fixture uses 127.0.0.x, so the two never meet)."""
    for _ in range(50):
        address = f"127.0.1.{random.randint(2, 250)}"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            if probe.connect_ex((address, 9010)) != 0:
                return address
    raise AssertionError("no free 127.0.1.x address")


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(cluster: cp.Cluster, *args: str) -> JSON | None:
    res = cluster.kubectl("get", *args, "-o", "json")
    return json.loads(res.stdout) if res.returncode == 0 else None


def _condition(obj: JSON, kind: str) -> str | None:
    for cond in obj.get("status", {}).get("conditions", []):
        if cond["type"] == kind:
            return str(cond["status"])
    return None


def _wait(what: str, probe: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def release(
    embedded_cluster: cp.Cluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, JSON]]:
    """Install the chart into the test namespace, configured for the embedded cluster: pods
    tolerate the fake node's taint, one runtime on a free loopback address, no kubelet (so no
    device plugin), the operator watching only this namespace. Uninstalled afterwards."""
    name = f"h{secrets.token_hex(3)}"
    toleration = [{"operator": "Equal", **FAKE_NODE_TAINT}]
    values: JSON = {
        "operator": {"namespace": namespace, "tolerations": toleration},
        "agent": {
            "devicePlugin": False,
            "claimUnassigned": False,
            "metricsPort": _free_port(socket.SOCK_STREAM),
            "priorityClassName": "",
            "tolerations": toleration,
        },
        "runtime": {
            "replicas": 1,
            "address": _free_loopback_address(),
            "port": _free_port(socket.SOCK_DGRAM),
            "mgmtPort": _free_port(socket.SOCK_STREAM),
            "tolerations": toleration,
        },
        "naas": {"nodes": ["naa-node-0"]},
        # Bitstreams are cluster-scoped: a name of this release's own, the default's spec.
        "bitstreams": [
            {
                "name": f"{name}-test-kernels",
                "spec": yaml.safe_load((CHART / "values.yaml").read_text())["bitstreams"][0][
                    "spec"
                ],
            }
        ],
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    kubeconfig = embedded_cluster.kubeconfig
    res = helm(
        "install", name, str(CHART), "--namespace", namespace, "-f", str(values_file),
        "--wait", "--timeout", "120s", kubeconfig=kubeconfig,
    )  # fmt: skip
    assert res.returncode == 0, f"helm install failed:\n{res.stderr}\n{res.stdout}"
    try:
        yield name, values
    finally:
        helm("uninstall", name, "--namespace", namespace, "--wait", kubeconfig=kubeconfig)


def test_helm_install_runs_the_chart_and_its_naa_becomes_healthy(
    embedded_cluster: cp.Cluster, namespace: str, release: tuple[str, JSON]
) -> None:
    name, values = release
    cluster = embedded_cluster
    for crd in CRDS:
        body = _get(cluster, "crd", crd)
        assert body is not None, f"CRD {crd} is missing"
        assert _condition(body, "Established") == "True", crd

    deployment = _get(cluster, "deployment", f"{name}-naaice-operator", "-n", namespace)
    assert deployment is not None
    assert deployment["status"].get("availableReplicas") == 1
    daemonset = _get(cluster, "daemonset", f"{name}-naaice-agent", "-n", namespace)
    assert daemonset is not None
    assert daemonset["status"]["numberReady"] == 1
    statefulset = _get(cluster, "statefulset", f"{name}-naaice-naa", "-n", namespace)
    assert statefulset is not None
    assert statefulset["status"].get("readyReplicas") == 1

    naa_name = f"{name}-naaice-naa-0"
    naa = _get(cluster, "naa", naa_name)
    assert naa is not None, "the chart's NetworkAttachedAccelerator was not created"
    address = values["runtime"]["address"]
    assert naa["spec"]["address"] == address
    assert naa["spec"]["management"]["endpoint"] == (
        f"http://{address}:{values['runtime']['mgmtPort']}"
    )
    bitstream = _get(cluster, "bitstream", f"{name}-test-kernels")
    assert bitstream is not None
    assert [f["fnCode"] for f in bitstream["spec"]["functions"]] == [1, 2, 3]

    # The agent pod (chart RBAC, in-cluster credentials) reads the chart's token Secret and
    # probes the runtime pod the StatefulSet runs; only then is the NAA Healthy and Reachable.
    healthy = _wait(
        f"NAA {naa_name} Healthy and Reachable",
        lambda: (
            (body := _get(cluster, "naa", naa_name)) is not None
            and _condition(body, "Reachable") == "True"
            and _condition(body, "Healthy") == "True"
            and body
        ),
    )
    assert healthy["status"]["energyMicrojoules"] >= 0
    # The operator pod (chart RBAC) took the leader Lease in the release namespace.
    lease = _wait(
        "the operator's leader Lease",
        lambda: _get(cluster, "lease", "naaice-operator-leader", "-n", namespace),
    )
    assert lease["spec"]["holderIdentity"].startswith(f"{name}-naaice-operator-")


def test_helm_uninstall_removes_everything_but_the_crds(
    embedded_cluster: cp.Cluster, namespace: str, release: tuple[str, JSON]
) -> None:
    name, _values = release
    cluster = embedded_cluster
    res = helm(
        "uninstall", name, "--namespace", namespace, "--wait", "--timeout", "60s",
        kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    gone = [
        ("deployment", f"{name}-naaice-operator", "-n", namespace),
        ("daemonset", f"{name}-naaice-agent", "-n", namespace),
        ("statefulset", f"{name}-naaice-naa", "-n", namespace),
        ("secret", f"{name}-naaice-management-token", "-n", namespace),
        ("naa", f"{name}-naaice-naa-0"),
        ("bitstream", f"{name}-test-kernels"),
        ("clusterrole", f"{name}-naaice-operator"),
        ("clusterrolebinding", f"{name}-naaice-agent"),
    ]
    for args in gone:
        assert _get(cluster, *args) is None, f"{args[0]}/{args[1]} is still there"
    _wait(
        "the release's pods to go",
        lambda: not (_get(cluster, "pods", "-n", namespace) or {"items": [1]})["items"],
        timeout=60,
    )
    # Helm never deletes CRDs it installed from crds/: deleting them would delete every NAAJob.
    for crd in CRDS:
        assert _get(cluster, "crd", crd) is not None
