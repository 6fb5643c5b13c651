"""The embedded control plane itself: the fake node is Ready, the repo's CRDs are Established,
RBAC is enforced, webhook configurations are cleaned up, and `naaice cluster up … down` leaves
no processes or files behind."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from naaice_cluster import controlplane as cp
from naaice_cluster._procs import alive
from naaice_cluster.paths import crds_dir
from tests.support.pods import apply, container_pid, pod_manifest, wait_for_phase, wait_until

pytestmark = pytest.mark.cluster


def test_kubectl_get_nodes_shows_the_fake_node_ready(cluster: cp.Cluster) -> None:
    res = cluster.kubectl("get", "nodes", "--no-headers")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines()]
    assert ["naa-node-0", "Ready"] in [row[:2] for row in rows]
    node = json.loads(cluster.kubectl("get", "node", "naa-node-0", "-o", "json").stdout)
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"} in node["spec"][
        "taints"
    ]


def test_the_apiserver_is_the_pinned_kubernetes_release(cluster: cp.Cluster) -> None:
    if cluster.external:
        pytest.skip("an external cluster runs whatever version it runs")
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.35.4"


def test_every_crd_in_the_repo_is_installed_and_established(cluster: cp.Cluster) -> None:
    expected = cp.crd_names(crds_dir())
    if not expected:
        pytest.skip("crds/ holds no CustomResourceDefinitions yet")
    assert sorted(cluster.crds) == sorted(expected)
    for name in expected:
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", name


def test_service_account_token_without_rights_is_refused_creating_a_configmap(
    cluster: cp.Cluster, namespace: str
) -> None:
    assert cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace).returncode == 0
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    assert token
    as_nobody = ["--token", token, "-n", namespace]
    denied = cluster.kubectl("create", "configmap", "x", "--from-literal=a=b", *as_nobody)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr
    assert f"system:serviceaccount:{namespace}:nobody" in denied.stderr
    # The same request with the admin credentials goes through: it was RBAC that refused.
    allowed = cluster.kubectl("create", "configmap", "x", "--from-literal=a=b", "-n", namespace)
    assert allowed.returncode == 0, allowed.stderr


def test_removing_webhook_configurations_deletes_kopfs_stale_webhooks(
    cluster: cp.Cluster, namespace: str
) -> None:
    # What Kopf leaves when an operator dies: a webhook to a dead port with failurePolicy=Fail,
    # limited here to this test's namespace so that it cannot disturb other tests.
    hook = {
        "name": "stale.naaice.io",
        "clientConfig": {"url": "https://127.0.0.1:1/stale"},
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["configmaps"],
            }
        ],
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
    }
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        obj = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": cp.KOPF_WEBHOOK_NAME},
            "webhooks": [hook],
        }
        res = cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        assert res.returncode == 0, res.stderr
    blocked = cluster.kubectl("create", "configmap", "c", "-n", namespace)
    assert blocked.returncode != 0
    assert "failed calling webhook" in blocked.stderr

    cp.remove_webhook_configurations(cluster)

    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        res = cluster.kubectl("get", kind, cp.KOPF_WEBHOOK_NAME)
        assert "NotFound" in res.stderr
    assert cluster.kubectl("create", "configmap", "c", "-n", namespace).returncode == 0


def _naaice(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "naaice"
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_cluster_cli_up_logs_down_leaves_no_processes_or_files(tmp_path: Path) -> None:
    if os.environ.get("NAAICE_USE_CURRENT_CONTEXT"):
        pytest.skip("starts an embedded cluster of its own")
    name = f"pytest-cli-{secrets.token_hex(3)}"
    up = _naaice("cluster", "up", "--name", name, "--crds", str(tmp_path))
    assert up.returncode == 0, up.stderr
    assert "no CRDs found" in up.stderr
    cluster = cp.Cluster.load(cp.run_dir_for(name))
    try:
        status = json.loads(_naaice("cluster", "status", "--name", name, "--json").stdout)
        assert status["ready"]
        assert all(p["alive"] for p in status["processes"].values())
        apply(cluster, "default", pod_manifest("talker", ["sh", "-c", "echo said-something"]))
        # A mount point that does not exist on the host: created for the bind mount, and
        # removed again by the teardown.
        mount_root = Path(f"/tmp/naaice-mnt-{secrets.token_hex(4)}")
        sleeper = pod_manifest(
            "sleeper",
            ["sleep", "600"],
            volumeMounts=[{"name": "conf", "mountPath": f"{mount_root}/conf"}],
        )
        sleeper["spec"]["volumes"] = [{"name": "conf", "emptyDir": {}}]
        apply(cluster, "default", sleeper)
        wait_for_phase(cluster, "default", "talker", ("Succeeded",))
        sleeper_pid = container_pid(wait_for_phase(cluster, "default", "sleeper", ("Running",)))
        wait_until((mount_root / "conf").is_dir, what="the mount point on the host")
        printed = _naaice("logs", "talker", "-n", "default", "--name", name)
        assert printed.stdout == "said-something\n"
        missing = _naaice("logs", "nope", "--name", name)
        assert missing.returncode == 1
        assert "no pod default/nope" in missing.stderr
        pids = [p.pid for p in cluster.processes]
        assert all(alive(pid) for pid in pids)
    finally:
        down = _naaice("cluster", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not any(alive(pid) for pid in [*pids, sleeper_pid])
    assert not cluster.run_dir.exists()
    assert not mount_root.exists()
    gone = _naaice("cluster", "status", "--name", name)
    assert gone.returncode == 1
    assert "naaice cluster up" in gone.stderr


def test_api_client_talks_to_the_cluster_with_the_admin_credentials(cluster: cp.Cluster) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        nodes = client.CoreV1Api(api).list_node()
    assert "naa-node-0" in [n.metadata.name for n in nodes.items]


def test_webhook_cert_from_the_cluster_is_trusted_by_the_apiserver(
    cluster: cp.Cluster, namespace: str, tmp_path: Path
) -> None:
    import http.server
    import ssl
    import threading

    certs = cluster.issue_webhook_cert(tmp_path)
    seen: list[str] = []

    class Deny(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(review["request"]["name"])
            answer = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {
                    "uid": review["request"]["uid"],
                    "allowed": False,
                    "status": {"message": "denied by the test webhook"},
                },
            }
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.cert, certs.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    name = f"test-{namespace}"
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "deny.naaice.io",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/validate",
                    "caBundle": base64.b64encode(certs.ca.read_bytes()).decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["configmaps"],
                    }
                ],
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            }
        ],
    }
    try:
        assert cluster.kubectl("apply", "-f", "-", input=json.dumps(config)).returncode == 0
        res = cluster.kubectl("create", "configmap", "probe", "-n", namespace)
        assert res.returncode != 0
        assert "denied by the test webhook" in res.stderr
        assert seen == ["probe"]
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")
        server.shutdown()
        server.server_close()


def test_use_current_context_attaches_without_starting_or_stopping_anything(
    cluster: cp.Cluster, tmp_path: Path
) -> None:
    name = f"pytest-ext-{secrets.token_hex(3)}"
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}

    def naaice(*args: str) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).parent / "naaice"
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, timeout=120, check=False, env=env
        )

    up = naaice("cluster", "up", "--use-current-context", "--name", name, "--crds", str(tmp_path))
    assert up.returncode == 0, up.stderr
    status = json.loads(naaice("cluster", "status", "--name", name, "--json").stdout)
    assert status["external"]
    assert status["ready"]
    assert status["server"] == cluster.server
    assert status["processes"] == {}
    assert naaice("cluster", "down", "--name", name).returncode == 0
    # The cluster it attached to is still serving.
    assert cluster.kubectl("get", "--raw=/readyz").stdout == "ok"
    assert not cp.run_dir_for(name).exists()
