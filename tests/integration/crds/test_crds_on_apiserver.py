"""The CRDs on a real API server: they become Established, every example applies and reads
back through the models unchanged, the catalogue of malformed objects is refused with messages
naming the offending field, immutable fields stay immutable, RBAC guards the resources, and
`kubectl get` prints the printer columns."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from naaice import api
from naaice_cluster import controlplane as cp
from tests.integration.crds.crd_catalogue import (
    CATALOGUE,
    DELETE,
    Malformed,
    load_examples,
    mutate,
)

pytestmark = pytest.mark.cluster

MODELS: dict[str, type[api.CustomObject]] = {
    api.KIND_NAAJOB: api.NAAJob,
    api.KIND_NAA: api.NetworkAttachedAccelerator,
    api.KIND_BITSTREAM: api.Bitstream,
}
CLUSTER_SCOPED = {api.KIND_NAA, api.KIND_BITSTREAM}
RESOURCE = {
    api.KIND_NAAJOB: "naajobs.naaice.io",
    api.KIND_NAA: "networkattachedaccelerators.naaice.io",
    api.KIND_BITSTREAM: "bitstreams.naaice.io",
}


class Objects:
    """Applies objects for one test; cluster-scoped ones get a unique name suffix, so tests
    sharing the session cluster never touch each other's NAAs and Bitstreams, and are deleted
    afterwards."""

    def __init__(self, cluster: cp.Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.suffix = secrets.token_hex(3)
        self.created: list[tuple[str, str]] = []

    def unique(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["kind"] in CLUSTER_SCOPED:
            body = mutate(body, "metadata.name", f"{body['metadata']['name']}-{self.suffix}")
        return body

    def apply(self, body: dict[str, Any], *args: str) -> tuple[int, str]:
        """Server-side apply; returns (exit code, stderr)."""
        res = self.cluster.kubectl(
            "apply",
            "--server-side",
            "--field-manager=naaice-tests",
            "-n",
            self.namespace,
            *args,
            "-f",
            "-",
            input=json.dumps(body),
        )
        if res.returncode == 0 and body["kind"] in CLUSTER_SCOPED:
            self.created.append((RESOURCE[body["kind"]], body["metadata"]["name"]))
        return res.returncode, res.stderr

    def get(self, body: dict[str, Any]) -> dict[str, Any]:
        res = self.cluster.kubectl(
            "get", RESOURCE[body["kind"]], body["metadata"]["name"], "-n", self.namespace,
            "-o", "json",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        result: dict[str, Any] = json.loads(res.stdout)
        return result

    def patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> tuple[int, str]:
        res = self.cluster.kubectl(
            "patch", RESOURCE[body["kind"]], body["metadata"]["name"], "-n", self.namespace,
            "--subresource=status", "--type=merge", "-p", json.dumps({"status": status}),
        )  # fmt: skip
        return res.returncode, res.stderr

    def cleanup(self) -> None:
        for resource, name in reversed(self.created):
            self.cluster.kubectl("delete", resource, name, "--ignore-not-found", "--wait=false")


@pytest.fixture(scope="module")
def crd_namespace(cluster: cp.Cluster) -> Iterator[str]:
    """One namespace for this module: the tests here create only uniquely named objects, and a
    namespace per test would cost more than the tests themselves."""
    name = f"t-crds-{secrets.token_hex(3)}"
    assert cluster.kubectl("create", "namespace", name).returncode == 0
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def objects(cluster: cp.Cluster, crd_namespace: str) -> Iterator[Objects]:
    made = Objects(cluster, crd_namespace)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def examples() -> dict[str, dict[str, Any]]:
    return load_examples()


def test_the_three_crds_are_established_with_their_names_accepted(cluster: cp.Cluster) -> None:
    for name in (api.CRD_NAAJOBS, api.CRD_NAAS, api.CRD_BITSTREAMS):
        res = cluster.kubectl("get", "crd", name, "-o", "json")
        assert res.returncode == 0, res.stderr
        crd = json.loads(res.stdout)
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", name
        assert conditions.get("NamesAccepted") == "True", name
        assert crd["spec"]["names"]["categories"] == [api.CATEGORY]


def test_the_naaice_category_and_short_names_resolve(cluster: cp.Cluster) -> None:
    res = cluster.kubectl("api-resources", "--api-group=naaice.io", "-o", "wide")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:]}
    assert set(rows) == {"naajobs", "networkattachedaccelerators", "bitstreams"}
    assert " naajob " in rows["naajobs"]
    assert " naa " in rows["networkattachedaccelerators"]
    assert " bs " in rows["bitstreams"]
    assert cluster.kubectl("get", "naaice", "-A").returncode == 0


def test_every_example_applies_and_reads_back_through_the_models_unchanged(
    objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    assert len(examples) == 7
    for key, example in examples.items():
        body = objects.unique(example)
        code, err = objects.apply(body)
        assert code == 0, f"{key}: {err}"
        served = objects.get(body)
        model = MODELS[body["kind"]].from_body(served)
        assert model.to_body() == served, key
        # What was written is what is served (plus metadata and the CRD defaults).
        assert {k: served["spec"][k] for k in body["spec"]} == body["spec"], key


def test_the_api_server_fills_in_the_same_defaults_as_the_models(
    objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    body = examples["NAAJob/poet-surrogate"]
    for path in ("spec.replicas", "spec.backoffLimit", "spec.placementPolicy",
                 "spec.scrubOnRelease", "spec.naas[0].count",
                 "spec.template.spec.restartPolicy"):  # fmt: skip
        body = mutate(body, path, DELETE)
    code, err = objects.apply(body)
    assert code == 0, err
    served = objects.get(body)
    from_server = api.NAAJob.from_body(served).spec
    from_model = api.NAAJob.from_body(body).spec
    assert served["spec"]["replicas"] == 1
    assert served["spec"]["suspend"] is False
    assert from_server == from_model


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c: c.id)
def test_malformed_objects_are_refused_naming_the_field(
    case: Malformed, objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    body = objects.unique(case.body(examples))
    code, err = objects.apply(body)
    assert code != 0, f"{case.id} was accepted"
    for expected in case.expect:
        assert expected.lower() in err.lower(), f"{case.id}: {expected!r} not in {err!r}"


def test_the_catalogue_is_large_and_covers_every_kind() -> None:
    assert len(CATALOGUE) >= 15
    assert len({c.id for c in CATALOGUE}) == len(CATALOGUE)
    assert {c.example.split("/")[0] for c in CATALOGUE} == set(MODELS)


IMMUTABLE = [
    ("NAAJob/poet-surrogate", "spec.naas[0].count", 2, "spec.naas is immutable"),
    ("NAAJob/poet-surrogate", "spec.naas[0].function", "add1", "spec.naas is immutable"),
    (
        "NAAJob/poet-surrogate",
        "spec.template.spec.containers[0].command",
        ["sleep", "1"],
        "spec.template is immutable",
    ),
    ("NAAJob/poet-surrogate", "spec.replicas", 2, "spec.replicas is immutable"),
    ("NetworkAttachedAccelerator/naa-0", "spec.address", "127.0.0.99", "spec.address is immutable"),
    ("Bitstream/test-kernels", "spec.digest", "sha256:" + "0" * 64, "spec.digest is immutable"),
    ("Bitstream/test-kernels", "spec.functions[0].inputParams", 2, "spec.functions is immutable"),
]


@pytest.mark.parametrize("case", IMMUTABLE, ids=[f"{e}:{p}" for e, p, _, _ in IMMUTABLE])
def test_immutable_fields_cannot_change_after_creation(
    case: tuple[str, str, object, str], objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    example, path, value, message = case
    body = objects.unique(examples[example])
    code, err = objects.apply(body)
    assert code == 0, err
    code, err = objects.apply(mutate(body, path, value))
    assert code != 0, f"changing {path} was accepted"
    assert message in err


MUTABLE = [
    ("NAAJob/poet-surrogate", "spec.suspend", True),
    ("NAAJob/poet-surrogate", "spec.backoffLimit", 5),
    ("NAAJob/poet-surrogate", "spec.energyBudgetJoules", 1234.5),
    ("NetworkAttachedAccelerator/naa-0", "spec.board.vendor", "Xilinx"),
    ("NetworkAttachedAccelerator/naa-0", "spec.management.endpoint", "https://127.0.0.10:9443"),
    ("Bitstream/test-kernels", "spec.artifact.uri", "http://artifacts.example/test-kernels.yaml"),
]


@pytest.mark.parametrize(
    ("example", "path", "value"), MUTABLE, ids=[f"{e}:{p}" for e, p, _ in MUTABLE]
)
def test_mutable_fields_can_change(
    example: str,
    path: str,
    value: object,
    objects: Objects,
    examples: dict[str, dict[str, Any]],
) -> None:
    body = objects.unique(examples[example])
    assert objects.apply(body)[0] == 0
    changed = mutate(body, path, value)
    code, err = objects.apply(changed)
    assert code == 0, err
    served = objects.get(changed)
    node: Any = served
    for part in path.split("."):
        node = node[part]
    assert node == value


def test_status_is_a_subresource_and_its_conditions_are_checked(
    objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    body = objects.unique(examples["NetworkAttachedAccelerator/naa-0"])
    assert objects.apply(body)[0] == 0
    # Status written with the object itself is dropped: only the status subresource sets it.
    objects.apply({**body, "status": {"powerWatts": 5.0}})
    assert "powerWatts" not in objects.get(body).get("status", {})
    bad = {
        "conditions": [
            {
                "type": "Ready",
                "status": "Yes",
                "reason": "Probed",
                "message": "",
                "lastTransitionTime": "2026-11-24T23:00:00Z",
            }
        ]
    }
    code, err = objects.patch_status(body, bad)
    assert code != 0
    assert "status.conditions[0].status" in err
    assert 'supported values: "True", "False", "Unknown"' in err


def test_a_service_account_without_rights_cannot_create_naas_until_granted(
    cluster: cp.Cluster, objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    namespace, account = objects.namespace, f"nobody-{objects.suffix}"
    assert cluster.kubectl("create", "serviceaccount", account, "-n", namespace).returncode == 0
    token = cluster.kubectl("create", "token", account, "-n", namespace).stdout.strip()
    assert token.count(".") == 2  # a JWT from the TokenRequest API
    body = objects.unique(examples["NetworkAttachedAccelerator/naa-0"])
    as_nobody = [f"--token={token}", "--kubeconfig=/dev/null", f"--server={cluster.server}"]
    if cluster.ca_file is not None:
        as_nobody.append(f"--certificate-authority={cluster.ca_file}")
    res = cluster.kubectl(*as_nobody, "create", "-f", "-", input=json.dumps(body))
    assert res.returncode != 0
    assert "forbidden" in res.stderr
    assert f"system:serviceaccount:{namespace}:{account}" in res.stderr
    assert 'resource "networkattachedaccelerators"' in res.stderr
    role = f"naa-creator-{objects.suffix}"
    grant = [
        ("create", "clusterrole", role, "--verb=create,get",
         "--resource=networkattachedaccelerators.naaice.io"),
        ("create", "clusterrolebinding", role, f"--clusterrole={role}",
         f"--serviceaccount={namespace}:{account}"),
    ]  # fmt: skip
    try:
        for args in grant:
            assert cluster.kubectl(*args).returncode == 0
        # RBAC is eventually consistent with the authorizer's cache; retry briefly.
        for _ in range(50):
            res = cluster.kubectl(*as_nobody, "create", "-f", "-", input=json.dumps(body))
            if res.returncode == 0:
                break
        assert res.returncode == 0, res.stderr
        objects.created.append((RESOURCE[api.KIND_NAA], body["metadata"]["name"]))
    finally:
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", role, "--ignore-not-found")


def test_kubectl_get_prints_the_printer_columns_with_status_values(
    objects: Objects, examples: dict[str, dict[str, Any]]
) -> None:
    job = examples["NAAJob/poet-surrogate"]
    naa = objects.unique(examples["NetworkAttachedAccelerator/naa-0"])
    bitstream = objects.unique(examples["Bitstream/poet-surrogate"])
    for body in (job, naa, bitstream):
        assert objects.apply(body)[0] == 0
    now = "2026-11-24T23:00:00Z"
    condition = {"status": "True", "reason": "Probed", "message": "", "lastTransitionTime": now}
    code, err = objects.patch_status(
        job,
        {
            "conditions": [{**condition, "type": "Scheduled"}, {**condition, "type": "Ready"}],
            "naaSpec": "127.0.0.10:12345:16:3",
            "energy": {"totalJoules": 812.5},
        },
    )
    assert code == 0, err
    code, err = objects.patch_status(
        naa,
        {
            "conditions": [{**condition, "type": "Ready"}, {**condition, "type": "Healthy"}],
            "loadedBitstream": {"name": "poet-surrogate", "digest": bitstream["spec"]["digest"]},
            "powerWatts": 21.5,
        },
    )
    assert code == 0, err

    def table(resource: str, name: str, *extra: str) -> dict[str, str]:
        res = objects.cluster.kubectl("get", resource, name, "-n", objects.namespace, *extra)
        assert res.returncode == 0, res.stderr
        header, row = res.stdout.splitlines()
        starts = [
            i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")
        ]
        bounds = [*starts[1:], None]
        return {header[s:e].strip(): row[s:e].strip() for s, e in zip(starts, bounds, strict=True)}

    job_row = table("naajob", job["metadata"]["name"])
    assert list(job_row) == [
        "NAME",
        "SCHEDULED",
        "READY",
        "SUCCEEDED",
        "NAA_SPEC",
        "ENERGY(J)",
        "AGE",
    ]
    assert (job_row["SCHEDULED"], job_row["READY"], job_row["SUCCEEDED"]) == ("True", "True", "")
    assert job_row["NAA_SPEC"] == "127.0.0.10:12345:16:3"
    assert job_row["ENERGY(J)"] == "812.5"

    naa_row = table("naa", naa["metadata"]["name"])
    assert list(naa_row) == [
        "NAME", "ADDRESS", "BOARD", "READY", "HEALTHY", "BITSTREAM", "POWER(W)", "AGE",
    ]  # fmt: skip
    assert naa_row["ADDRESS"] == "127.0.0.10"
    assert naa_row["BOARD"] == "alveo-u55c"
    assert (naa_row["READY"], naa_row["HEALTHY"]) == ("True", "True")
    assert naa_row["BITSTREAM"] == "poet-surrogate"
    assert naa_row["POWER(W)"] == "21.5"

    bs_row = table("bs", bitstream["metadata"]["name"], "-o", "wide")
    assert json.loads(bs_row["FUNCTIONS"]) == bitstream["spec"]["functions"]
    assert json.loads(bs_row["BOARDS"]) == bitstream["spec"]["compatibleBoards"]
    assert bs_row["DIGEST"] == bitstream["spec"]["digest"]

    res = objects.cluster.kubectl("get", "naajobs,naa,bitstreams", "-n", objects.namespace)
    assert res.returncode == 0, res.stderr
    for header in ("SCHEDULED", "ADDRESS", "FUNCTIONS"):
        assert header in res.stdout
