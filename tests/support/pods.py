"""Helpers for tests that run pods on the embedded cluster's fake node: build a pod manifest
that tolerates the fake-node taint, apply objects, and wait for a pod's phase. Used by
tests/integration/cluster and by later integration tests that run workloads."""

from __future__ import annotations

import json
import time
from typing import Any

from naaice_cluster.config import FAKE_NODE_TOLERATION
from naaice_cluster.controlplane import Cluster

JSON = dict[str, Any]


def pod_manifest(
    name: str,
    command: list[str],
    *,
    restart_policy: str = "Never",
    node: str | None = "naa-node-0",
    **container: Any,
) -> JSON:
    """A one-container pod running `command`; `node=None` leaves placement to the scheduler."""
    spec: JSON = {
        "restartPolicy": restart_policy,
        "tolerations": [FAKE_NODE_TOLERATION],
        "terminationGracePeriodSeconds": 5,
        "containers": [
            {"name": "main", "image": "ignored.invalid/none", "command": command, **container}
        ],
    }
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def apply(cluster: Cluster, namespace: str, *objects: JSON) -> None:
    for obj in objects:
        res = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))
        assert res.returncode == 0, res.stderr


def get_pod(cluster: Cluster, namespace: str, name: str) -> JSON:
    res = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    assert res.returncode == 0, res.stderr
    pod: JSON = json.loads(res.stdout)
    return pod


def wait_for_phase(
    cluster: Cluster, namespace: str, name: str, phases: tuple[str, ...], *, timeout: float = 60
) -> JSON:
    """Poll until the pod's phase is one of `phases`; return the pod."""
    deadline = time.monotonic() + timeout
    pod: JSON = {}
    while time.monotonic() < deadline:
        pod = get_pod(cluster, namespace, name)
        if pod.get("status", {}).get("phase") in phases:
            return pod
        time.sleep(0.2)
    raise AssertionError(f"pod {namespace}/{name} never reached {phases}: {pod.get('status')}")


def wait_until(predicate: Any, *, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def logs(cluster: Cluster, namespace: str, name: str, container: str = "main") -> str:
    pod_dir = cluster.pod_dir(namespace, name)
    assert pod_dir is not None, f"the pod runner never ran {namespace}/{name}"
    return (pod_dir / f"{container}.log").read_text()


def container_pid(pod: JSON) -> int:
    """The local pid of the pod's first container (the runner reports `naaice://<pid>`)."""
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    assert cid.startswith("naaice://"), cid
    return int(cid.removeprefix("naaice://"))
