"""`helm install` of charts/naaice into the embedded cluster with the real Helm: the apiserver
admits every object (NAA and Bitstream objects against the CRD schemas and CEL rules), the pod
runner runs the chart's operator, agent and runtime pods as the image would, the agent (with the
chart's RBAC and token Secret) reports the chart's NAA healthy, a NAAJob runs add1 on it through
the chart's operator, the chart's mutating webhook gives a pod another controller creates its
NAAJob's NAA Spec and refuses a foreign one, and `helm uninstall` removes it all but the CRDs."""

from __future__ import annotations

import base64
import ipaddress
import json
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from naaice_cluster import controlplane as cp
from naaice_cluster.config import FAKE_NODE_TAINT
from tests.support.helm import CHART, REPO, helm

JSON = dict[str, Any]
CRDS = (
    "naajobs.naaice.io",
    "networkattachedaccelerators.naaice.io",
    "bitstreams.naaice.io",
)


def _free_loopback_address() -> str:
    """A 127.0.1.x address of its own for the runtime (the software_naa fixture uses
    127.0.0.x, so the two never meet), where it can serve RoCEv2 on the standard UDP 4791 —
    the port hosts send to, since NAA_SPEC carries none."""
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


def _pod_network_address() -> str | None:
    """A global IPv4 address of this host, or None. The pod runner reports podIP 127.0.0.1,
    which an EndpointSlice may not hold (the apiserver refuses loopback endpoints), so the
    webhook Service's endpoint is published at this address of the same host instead."""
    res = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "scope", "global"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    for line in res.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = ipaddress.ip_interface(fields[fields.index("inet") + 1]).ip
            if not (address.is_loopback or address.is_link_local):
                return str(address)
    return None


def _publish_webhook_endpoint(
    cluster: cp.Cluster, namespace: str, service: str, address: str, port: int
) -> None:
    """The one step pod networking does on a real cluster: the operator pod's address in an
    EndpointSlice of the chart's Service (KCM's controller would write 127.0.0.1, which is
    refused). The apiserver, run with --enable-aggregator-routing, calls the webhook there with
    the Service's name as TLS server name, so the chart's certificate, CA bundle, Service,
    port name and path are all what is tested."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-host",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "naaice-tests",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "webhook", "port": port, "protocol": "TCP"}],
    }
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    assert res.returncode == 0, res.stderr


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


def _test_kernels_spec() -> JSON:
    spec: JSON = yaml.safe_load((CHART / "values.yaml").read_text())["bitstreams"][0]["spec"]
    artifact = REPO / "examples" / "bitstreams" / "test-kernels.yaml"
    spec["artifact"] = {"uri": artifact.as_uri()}
    return spec


#: The NAAJob's host program: fn 1 (add1) over NAA_SPEC on the NAA the operator assigned.
_ADD_ONE = """
import numpy as np
from naa_runtime.client import Naa
data = np.arange(64, dtype=np.uint8)
with Naa(1, inputs=[data], outputs=[data]) as naa:
    rc = naa()
assert rc == 0, f"NAA return code {rc}"
assert (data == np.arange(1, 65, dtype=np.uint8)).all(), data
print("add1 ok")
"""


def _pod_logs(cluster: cp.Cluster, namespace: str, container: str) -> str:
    """The pod runner's logs of the job's pods, for a failure message."""
    pods = _get(cluster, "pods", "-n", namespace, "-l", "naaice.io/naajob=add-one") or {}
    out = []
    for pod in pods.get("items", []):
        pod_dir = cluster.pod_dir(namespace, pod["metadata"]["name"])
        log = pod_dir / f"{container}.log" if pod_dir else None
        text = log.read_text()[-3000:] if log and log.is_file() else "(no log)"
        out.append(f"\n--- {pod['metadata']['name']}:\n{text}")
    return "".join(out)


@pytest.fixture
def release(
    embedded_cluster: cp.Cluster, namespace: str, tmp_path: Path
) -> Iterator[tuple[str, JSON]]:
    """Install the chart into the test namespace, configured for the embedded cluster: pods
    tolerate the fake node's taint, one runtime on a free loopback address, no kubelet (so no
    device plugin), the operator watching only this namespace. Uninstalled afterwards."""
    name = f"h{secrets.token_hex(3)}"
    toleration = [{"operator": "Equal", **FAKE_NODE_TAINT}]
    address = _pod_network_address()
    webhook: JSON = (
        {"port": _free_port(socket.SOCK_STREAM)} if address is not None else {"enabled": False}
    )
    values: JSON = {
        "operator": {"namespace": namespace, "tolerations": toleration, "webhook": webhook},
        "agent": {
            "devicePlugin": False,
            "claimUnassigned": False,
            "metricsPort": _free_port(socket.SOCK_STREAM),
            "tolerations": toleration,
        },
        "runtime": {
            "replicas": 1,
            "address": _free_loopback_address(),
            "mgmtPort": _free_port(socket.SOCK_STREAM),
            "tolerations": toleration,
        },
        "naas": {"nodes": ["naa-node-0"]},
        # Bitstreams are cluster-scoped: a name of this release's own, the default's spec with
        # the artifact where this checkout has it (the same bytes, so the same digest).
        "bitstreams": [{"name": f"{name}-test-kernels", "spec": _test_kernels_spec()}],
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
        if address is not None:
            service = f"{name}-naaice-operator"
            _publish_webhook_endpoint(
                embedded_cluster, namespace, service, address, webhook["port"]
            )
        yield name, values
    finally:
        helm("uninstall", name, "--namespace", namespace, "--wait", kubeconfig=kubeconfig)


def test_helm_install_runs_the_chart_and_a_naajob_succeeds_on_its_naa(
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
            and _condition(body, "Ready") == "True"
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

    # A NAAJob end to end through the chart's pods: the operator places it on the chart's NAA,
    # flashes the chart's Bitstream through the management API (token from the chart's
    # Secret), and starts the host pod, which runs add1 over RoCEv2 against the runtime pod.
    job = {
        "apiVersion": "naaice.io/v1alpha1",
        "kind": "NAAJob",
        "metadata": {"name": "add-one", "namespace": namespace},
        "spec": {
            "naas": [{"name": "adder", "function": "add1", "bitstream": f"{name}-test-kernels"}],
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": values["runtime"]["tolerations"],
                    "containers": [
                        {
                            "name": "host",
                            "image": "naaice:0.1.0",
                            "command": [sys.executable, "-c", _ADD_ONE],
                        }
                    ],
                }
            },
        },
    }
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(job))
    assert res.returncode == 0, res.stderr
    done = _wait(
        "NAAJob add-one to finish",
        lambda: (
            (body := _get(cluster, "naajob", "add-one", "-n", namespace)) is not None
            and (_condition(body, "Succeeded") == "True" or _condition(body, "Failed") == "True")
            and body
        ),
        timeout=120,
    )
    assert _condition(done, "Succeeded") == "True", json.dumps(
        done.get("status"), indent=1
    ) + _pod_logs(cluster, namespace, "host")
    (assigned,) = done["status"]["assignedNAAs"]
    assert assigned["naa"] == naa_name
    assert assigned["address"] == address
    flashed = _get(cluster, "naa", naa_name)
    assert flashed is not None
    assert flashed["status"]["loadedBitstream"]["name"] == f"{name}-test-kernels"

    # Least-privilege RBAC that still covers everything: no component was refused anything.
    pods = _get(cluster, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")
    assert pods is not None
    for pod in pods["items"]:
        (container,) = pod["spec"]["containers"]
        pod_dir = cluster.pod_dir(namespace, pod["metadata"]["name"])
        assert pod_dir is not None
        log = (pod_dir / f"{container['name']}.log").read_text()
        for refusal in ("Forbidden", "forbidden", " 403"):
            assert refusal not in log, f"{pod['metadata']['name']} was refused:\n{log[-3000:]}"


#: A pod of another controller's: prints the NAA Spec it was given (env, JSON env, file).
_PRINT_SPEC = """
import os, pathlib
spec_file = pathlib.Path("/etc/naaice/naa-spec.json")
print("NAA_SPEC=" + str(os.environ.get("NAA_SPEC")))
print("JSON=" + str(os.environ.get("NAAICE_NAA_SPEC_JSON")))
print("FILE=" + (spec_file.read_text().replace(chr(10), " ") if spec_file.exists() else "None"))
"""


def test_the_charts_webhook_gives_another_controllers_pod_the_spec_and_refuses_a_foreign_one(
    embedded_cluster: cp.Cluster, namespace: str, release: tuple[str, JSON]
) -> None:
    name, values = release
    if values["operator"]["webhook"].get("enabled") is False:
        pytest.skip("no non-loopback IPv4 address on this host to publish the webhook at")
    cluster = embedded_cluster
    hook = _get(cluster, "mutatingwebhookconfiguration", f"{name}-naaice-operator-webhook")
    assert hook is not None, "the chart's MutatingWebhookConfiguration is missing"
    (webhook,) = hook["webhooks"]
    assert webhook["clientConfig"]["service"]["name"] == f"{name}-naaice-operator"
    secret = _get(cluster, "secret", f"{name}-naaice-operator-webhook", "-n", namespace)
    assert secret is not None
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    # The operator serves but did not register a configuration of its own.
    assert _get(cluster, "mutatingwebhookconfiguration", "auto.kopf.dev") is None

    tolerations = values["runtime"]["tolerations"]
    holder = {
        "apiVersion": "naaice.io/v1alpha1",
        "kind": "NAAJob",
        "metadata": {"name": "holder", "namespace": namespace},
        "spec": {
            "naas": [{"name": "adder", "function": "add1", "bitstream": f"{name}-test-kernels"}],
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": tolerations,
                    "containers": [
                        {
                            "name": "host",
                            "image": "naaice:0.1.0",
                            "command": [sys.executable, "-c", "import time; time.sleep(300)"],
                        }
                    ],
                }
            },
        },
    }
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(holder))
    assert res.returncode == 0, res.stderr
    job = _wait(
        "NAAJob holder to run",
        lambda: (
            (body := _get(cluster, "naajob", "holder", "-n", namespace)) is not None
            and _condition(body, "Ready") == "True"
            and body
        ),
        timeout=120,
    )
    want = job["status"]["naaSpec"]
    assert want

    # Another controller (KCM's Job controller) creates a pod labelled with the NAAJob: the
    # apiserver calls the chart's webhook through the Service, and the pod runs with the spec.
    batch_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "sidecar", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"naaice.io/naajob": "holder"}},
                "spec": {
                    "restartPolicy": "Never",
                    "tolerations": tolerations,
                    "containers": [
                        {
                            "name": "main",
                            "image": "x.invalid/other",
                            "command": [sys.executable, "-c", _PRINT_SPEC],
                        }
                    ],
                },
            },
        },
    }
    res = cluster.kubectl("apply", "-f", "-", input=json.dumps(batch_job))
    assert res.returncode == 0, res.stderr
    pod = _wait(
        "the Job's pod to finish",
        lambda: next(
            (
                p
                for p in (
                    _get(cluster, "pods", "-n", namespace, "-l", "job-name=sidecar") or {}
                ).get("items", [])
                if p.get("status", {}).get("phase") in ("Succeeded", "Failed")
            ),
            None,
        ),
        timeout=120,
    )
    pod_dir = cluster.pod_dir(namespace, pod["metadata"]["name"])
    assert pod_dir is not None
    log = (pod_dir / "main.log").read_text()
    assert pod["status"]["phase"] == "Succeeded", log
    lines = dict(line.split("=", 1) for line in log.splitlines() if "=" in line)
    assert lines["NAA_SPEC"] == want, log
    assert json.loads(lines["FILE"]) == json.loads(lines["JSON"]), log

    # A pod that sets NAA_SPEC for NAAs its job does not hold is refused, with the reason.
    thief = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "thief",
            "namespace": namespace,
            "labels": {"naaice.io/naajob": "holder"},
        },
        "spec": {
            "restartPolicy": "Never",
            "tolerations": tolerations,
            "containers": [
                {
                    "name": "main",
                    "image": "x.invalid/other",
                    "command": [sys.executable, "-c", "pass"],
                    "env": [{"name": "NAA_SPEC", "value": "10.9.9.9:12345:1:1"}],
                }
            ],
        },
    }
    res = cluster.kubectl("create", "-f", "-", input=json.dumps(thief))
    assert res.returncode != 0
    assert "naa-spec.naaice.io" in res.stderr, res.stderr
    assert "not the NAA Spec of its NAAJob" in res.stderr, res.stderr
    assert _get(cluster, "pod", "thief", "-n", namespace) is None
    cluster.kubectl("delete", "naajob", "holder", "-n", namespace, "--wait=false")


def test_helm_upgrade_keeps_the_generated_token_and_uninstall_removes_all_but_the_crds(
    embedded_cluster: cp.Cluster, namespace: str, release: tuple[str, JSON]
) -> None:
    name, values = release
    cluster = embedded_cluster
    secret = f"{name}-naaice-management-token"
    before = _get(cluster, "secret", secret, "-n", namespace)
    assert before is not None
    tls_before = _get(cluster, "secret", f"{name}-naaice-operator-webhook", "-n", namespace)
    res = helm(
        "upgrade", name, str(CHART), "--namespace", namespace, "--reuse-values",
        "--set", "agent.heartbeat=5", "--wait", "--timeout", "90s",
        kubeconfig=cluster.kubeconfig,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    after = _get(cluster, "secret", secret, "-n", namespace)
    assert after is not None
    assert after["data"]["token"] == before["data"]["token"]
    # The chart-generated webhook certificate and CA are kept too (lookup of the Secret), and
    # the configuration still trusts that CA.
    tls = f"{name}-naaice-operator-webhook"
    if values["operator"]["webhook"].get("enabled", True):
        assert tls_before is not None
        tls_after = _get(cluster, "secret", tls, "-n", namespace)
        assert tls_after is not None
        assert tls_after["data"] == tls_before["data"]
        hook = _get(cluster, "mutatingwebhookconfiguration", tls)
        assert hook is not None
        assert hook["webhooks"][0]["clientConfig"]["caBundle"] == tls_after["data"]["ca.crt"]
        ca = base64.b64decode(tls_after["data"]["ca.crt"])
        assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    agent = _get(cluster, "daemonset", f"{name}-naaice-agent", "-n", namespace)
    assert agent is not None
    assert "--heartbeat=5" in agent["spec"]["template"]["spec"]["containers"][0]["args"]

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
        ("mutatingwebhookconfiguration", f"{name}-naaice-operator-webhook"),
        ("secret", f"{name}-naaice-operator-webhook", "-n", namespace),
        ("service", f"{name}-naaice-operator", "-n", namespace),
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
