"""The pod runner against the real apiserver: pods bound to the fake node run their command as
local processes with the pod's env and volumes, and their status, restarts and deletion behave
as kubelet's would."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from naaice_cluster._procs import alive
from naaice_cluster.controlplane import Cluster
from tests.support.pods import (
    apply,
    container_pid,
    get_pod,
    logs,
    pod_manifest,
    wait_for_phase,
    wait_until,
)

pytestmark = pytest.mark.cluster


def test_scheduled_pod_runs_its_command_and_succeeds(
    embedded_cluster: Cluster, namespace: str
) -> None:
    apply(
        embedded_cluster,
        namespace,
        pod_manifest("ok", ["sh", "-c", "echo hello from $HOSTNAME; exit 0"], node=None),
    )
    pod = wait_for_phase(embedded_cluster, namespace, "ok", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["nodeName"] == "naa-node-0"  # placed by the real scheduler
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    assert state["startedAt"] <= state["finishedAt"]
    assert logs(embedded_cluster, namespace, "ok") == "hello from ok\n"


def test_failing_command_makes_the_pod_failed_with_its_exit_code(
    embedded_cluster: Cluster, namespace: str
) -> None:
    apply(embedded_cluster, namespace, pod_manifest("bad", ["sh", "-c", "echo oops >&2; exit 7"]))
    pod = wait_for_phase(embedded_cluster, namespace, "bad", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (7, "Error")
    assert logs(embedded_cluster, namespace, "bad") == "oops\n"


def test_env_from_configmap_secret_and_field_refs_reaches_the_process(
    embedded_cluster: Cluster, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings"},
        "data": {"mode": "fast", "level": "3"},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"token": base64.b64encode(b"s3cr3t").decode()},
    }
    env = [
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "GREETING", "value": "mode=$(MODE)"},
    ]
    pod = pod_manifest(
        "envy",
        ["python", "-c", "import json, os; print(json.dumps(dict(os.environ)))"],
        env=env,
        envFrom=[{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
    )
    pod["metadata"]["labels"] = {"team": "naaice"}
    apply(embedded_cluster, namespace, config_map, secret, pod)
    done = wait_for_phase(embedded_cluster, namespace, "envy", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", logs(embedded_cluster, namespace, "envy")
    seen = json.loads(logs(embedded_cluster, namespace, "envy"))
    assert seen["MODE"] == "fast"
    assert seen["TOKEN"] == "s3cr3t"
    assert seen["POD_NAME"] == "envy"
    assert seen["POD_NS"] == namespace
    assert seen["POD_UID"] == done["metadata"]["uid"]
    assert seen["NODE"] == "naa-node-0"
    assert seen["TEAM"] == "naaice"
    assert seen["GREETING"] == "mode=fast"
    assert (seen["CFG_mode"], seen["CFG_level"]) == ("fast", "3")


def test_mounted_configmap_and_secret_files_are_seen_at_their_mount_paths(
    embedded_cluster: Cluster, namespace: str
) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "spec"},
        "data": {"naa-spec.json": '{"naas": []}'},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "key"},
        "stringData": {"token": "abc"},
    }
    pod = pod_manifest(
        "mounts",
        [
            "sh",
            "-c",
            "cat /etc/naaice/naa-spec.json; echo; cat /var/run/naaice-key/token; echo; pwd",
        ],
        volumeMounts=[
            {"name": "spec", "mountPath": "/etc/naaice", "readOnly": True},
            {"name": "key", "mountPath": "/var/run/naaice-key"},
        ],
        workingDir="/tmp",
    )
    pod["spec"]["volumes"] = [
        {"name": "spec", "configMap": {"name": "spec"}},
        {"name": "key", "secret": {"secretName": "key"}},
    ]
    apply(embedded_cluster, namespace, config_map, secret, pod)
    done = wait_for_phase(embedded_cluster, namespace, "mounts", ("Succeeded", "Failed"))
    out = logs(embedded_cluster, namespace, "mounts")
    assert done["status"]["phase"] == "Succeeded", out
    assert out.splitlines() == ['{"naas": []}', "abc", "/tmp"]
    # The mounts lived in the container's private mount namespace, not on the host.
    assert not Path("/etc/naaice/naa-spec.json").exists()


def test_service_account_token_is_mounted_and_authenticates_in_cluster(
    embedded_cluster: Cluster, namespace: str
) -> None:
    # The default ServiceAccount has no rights: 403 (authenticated, refused), not 401.
    script = (
        "import os, ssl, urllib.request, urllib.error\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token = open(d + '/token').read()\n"
        "ns = open(d + '/namespace').read()\n"
        "env = os.environ\n"
        "host = env['KUBERNETES_SERVICE_HOST'] + ':' + env['KUBERNETES_SERVICE_PORT']\n"
        "ctx = ssl.create_default_context(cafile=d + '/ca.crt')\n"
        "req = urllib.request.Request(f'https://{host}/api/v1/namespaces/{ns}/pods',\n"
        "                             headers={'Authorization': 'Bearer ' + token})\n"
        "try:\n"
        "    urllib.request.urlopen(req, context=ctx)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code, ns)\n"
    )
    apply(embedded_cluster, namespace, pod_manifest("incluster", ["python", "-c", script]))
    done = wait_for_phase(embedded_cluster, namespace, "incluster", ("Succeeded", "Failed"))
    out = logs(embedded_cluster, namespace, "incluster")
    assert done["status"]["phase"] == "Succeeded", out
    assert out.strip() == f"403 {namespace}"


def test_deleting_a_running_pod_kills_its_process_and_removes_the_pod(
    embedded_cluster: Cluster, namespace: str
) -> None:
    apply(embedded_cluster, namespace, pod_manifest("sleeper", ["sleep", "300"]))
    pod = wait_for_phase(embedded_cluster, namespace, "sleeper", ("Running",))
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    pid = container_pid(pod)
    assert alive(pid)
    res = embedded_cluster.kubectl("delete", "pod", "sleeper", "-n", namespace, "--timeout=60s")
    assert res.returncode == 0, res.stderr
    assert not alive(pid)
    gone = embedded_cluster.kubectl("get", "pod", "sleeper", "-n", namespace)
    assert "NotFound" in gone.stderr


def test_on_failure_restarts_the_container_until_it_succeeds(
    embedded_cluster: Cluster, namespace: str
) -> None:
    # First run fails and leaves a marker in the pod's emptyDir; the restart then succeeds.
    script = "if [ -e /scratch/ran ]; then echo second; exit 0; fi; touch /scratch/ran; exit 3"
    pod = pod_manifest(
        "retry",
        ["sh", "-c", script],
        restart_policy="OnFailure",
        volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    )
    pod["spec"]["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    apply(embedded_cluster, namespace, pod)
    done = wait_for_phase(embedded_cluster, namespace, "retry", ("Succeeded", "Failed"))
    status = done["status"]["containerStatuses"][0]
    assert done["status"]["phase"] == "Succeeded"
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3


def test_missing_configmap_holds_the_pod_until_it_is_created(
    embedded_cluster: Cluster, namespace: str
) -> None:
    env = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "x"}}}]
    apply(embedded_cluster, namespace, pod_manifest("waits", ["sh", "-c", "echo $X"], env=env))

    def waiting_reason() -> str:
        statuses = get_pod(embedded_cluster, namespace, "waits")["status"].get(
            "containerStatuses", []
        )
        return str(statuses[0]["state"].get("waiting", {}).get("reason")) if statuses else ""

    wait_until(lambda: waiting_reason() == "CreateContainerConfigError", what="config error")
    assert get_pod(embedded_cluster, namespace, "waits")["status"]["phase"] == "Pending"
    late = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}
    apply(embedded_cluster, namespace, {**late, "data": {"x": "arrived"}})
    done = wait_for_phase(embedded_cluster, namespace, "waits", ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded"
    assert logs(embedded_cluster, namespace, "waits") == "arrived\n"
