"""The mutating webhook (NAA Spec for pods other controllers create, refusal of foreign
NAA_SPECs) and the operator running on nothing but its ClusterRole."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from naaice_cluster.config import FAKE_NODE_TOLERATION
from tests.integration.operator.lab import REPO, Lab, sleep_command, spec_probe_command


def pod(name: str, job: str, command: list[str], env: list[dict[str, str]] | None = None) -> dict:
    return {
        "metadata": {"name": name, "labels": {"naaice.io/naajob": job}},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [FAKE_NODE_TOLERATION],
            "containers": [
                {
                    "name": "main",
                    "image": "x.invalid/y",
                    "command": command,
                    "env": env or [{"name": "PROBE_NAME", "value": name}],
                }
            ],
        },
    }


def test_the_webhook_injects_the_spec_into_labelled_pods_and_refuses_foreign_specs(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_naas(1)
    lab.add_bitstream()
    lab.start_operator(extra=lab.webhook_args())
    lab.create_job("host", command=sleep_command(60))
    job = lab.wait(
        "the job to run", lambda: lab.is_true("host", "Ready") and lab.job("host"), timeout=30
    )
    want = job["status"]["naaSpec"]

    out = tmp_path / "probe"
    lab.core.create_namespaced_pod(lab.namespace, pod("sidecar", "host", spec_probe_command(out)))
    record = lab.wait(
        "the extra pod's record", (out / "sidecar.json").exists, timeout=30
    ) and json.loads((out / "sidecar.json").read_text())
    assert record["NAA_SPEC"] == want
    assert json.loads(record["FILE"]) == json.loads(record["JSON"])

    with pytest.raises(ApiException) as refused:
        lab.core.create_namespaced_pod(
            lab.namespace,
            pod(
                "thief",
                "host",
                [sys.executable, "-c", "pass"],
                env=[{"name": "NAA_SPEC", "value": "10.9.9.9:12345:1:1"}],
            ),
        )
    assert refused.value.status == 403
    assert "not the NAA Spec of its NAAJob" in refused.value.body

    with pytest.raises(ApiException) as orphan:
        lab.core.create_namespaced_pod(lab.namespace, pod("lost", "no-such-job", ["true"]))
    assert "does not exist" in orphan.value.body


def test_the_operator_runs_a_job_with_only_its_cluster_role(lab: Lab, tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "rbac" / "operator.yaml").read_text()))
    sa, role, binding = docs
    name = f"naaice-operator-{lab.tag}"
    sa["metadata"]["namespace"] = lab.namespace
    role["metadata"]["name"] = name
    binding["metadata"]["name"] = name
    binding["roleRef"]["name"] = name
    binding["subjects"][0]["namespace"] = lab.namespace
    # The operator registers its own webhook here (--webhook-managed), so it also gets the
    # registration role the Helm chart leaves out.
    reg_role, reg_binding = yaml.safe_load_all(
        (REPO / "deploy" / "rbac" / "operator-webhook-registration.yaml").read_text()
    )
    reg_name = f"naaice-operator-webhook-registration-{lab.tag}"
    reg_role["metadata"]["name"] = reg_name
    reg_binding["metadata"]["name"] = reg_name
    reg_binding["roleRef"]["name"] = reg_name
    reg_binding["subjects"][0]["namespace"] = lab.namespace
    for doc in (sa, role, binding, reg_role, reg_binding):
        res = lab.cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
        assert res.returncode == 0, res.stderr
    try:
        token = lab.cluster.kubectl(
            "create", "token", "naaice-operator", "-n", lab.namespace, "--duration=1h", check=True
        ).stdout.strip()
        kubeconfig = tmp_path / "operator.kubeconfig"
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "op",
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": lab.cluster.server,
                                "certificate-authority": str(lab.cluster.ca_file),
                            },
                        }
                    ],
                    "users": [{"name": "op", "user": {"token": token}}],
                    "contexts": [{"name": "op", "context": {"cluster": "c", "user": "op"}}],
                }
            )
        )
        who = f"system:serviceaccount:{lab.namespace}:naaice-operator"
        for verb, what in (("delete", "nodes"), ("list", "secrets"), ("update", "naajobs")):
            res = lab.cluster.kubectl("auth", "can-i", verb, what, f"--as={who}")
            assert res.stdout.strip() == "no", (verb, what)

        lab.add_naas(1)
        lab.add_bitstream()
        op = lab.start_operator(kubeconfig=kubeconfig, extra=lab.webhook_args())
        lab.create_job("least", command=sleep_command(0))
        job = lab.wait_terminal("least", timeout=60)
        assert lab.terminal(job) == "Succeeded", job["status"]
        assert "Forbidden" not in op.output()
        assert " 403 " not in op.output()
    finally:
        for role_name in (name, reg_name):
            lab.cluster.kubectl("delete", "clusterrolebinding", role_name, "--ignore-not-found")
            lab.cluster.kubectl("delete", "clusterrole", role_name, "--ignore-not-found")
