"""The pydantic models of the custom resources: every example round-trips, defaults match the
CRDs, and bad bodies are refused with camelCase field paths."""

from __future__ import annotations

import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from naaice import api
from naaice.api import (
    Bitstream,
    Condition,
    ConditionStatus,
    InvalidObjectError,
    NAAJob,
    NAAJobConditionType,
    NetworkAttachedAccelerator,
    find_condition,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MODELS: dict[str, type[api.CustomObject]] = {
    "NAAJob": NAAJob,
    "NetworkAttachedAccelerator": NetworkAttachedAccelerator,
    "Bitstream": Bitstream,
}


def example_bodies() -> list[dict[str, Any]]:
    bodies = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        bodies.extend(b for b in yaml.safe_load_all(path.read_text()) if b)
    return bodies


def example(kind: str, name: str) -> dict[str, Any]:
    return next(b for b in example_bodies() if b["kind"] == kind and b["metadata"]["name"] == name)


@pytest.mark.parametrize(
    "body", example_bodies(), ids=lambda b: f"{b['kind']}/{b['metadata']['name']}"
)
def test_every_example_round_trips_unchanged(body: dict[str, Any]) -> None:
    model = MODELS[body["kind"]].from_body(body)
    assert model.to_body() == body


def test_examples_cover_every_kind() -> None:
    kinds = [b["kind"] for b in example_bodies()]
    assert kinds.count("NetworkAttachedAccelerator") == 4
    assert kinds.count("Bitstream") == 2
    assert kinds.count("NAAJob") == 1


def test_omitted_fields_read_as_the_crd_defaults() -> None:
    body = example("NAAJob", "poet-surrogate")
    spec = body["spec"]
    for key in ("replicas", "backoffLimit", "placementPolicy", "scrubOnRelease"):
        spec.pop(key, None)
    spec["naas"][0].pop("count")
    spec["template"]["spec"].pop("restartPolicy")
    job = NAAJob.from_body(body)
    assert job.spec.replicas == 1
    assert job.spec.backoff_limit == 2
    assert job.spec.suspend is False
    assert job.spec.placement_policy == api.PlacementPolicy.FIRST_FIT
    assert job.spec.scrub_on_release is False
    assert job.spec.naas[0].count == 1
    assert job.spec.template.spec.restart_policy == "Never"
    naa_body = example("NetworkAttachedAccelerator", "naa-0")
    naa_body["spec"].pop("port")
    naa_body["spec"].pop("cmPort")
    naa_body["spec"]["management"]["tokenSecretRef"].pop("key")
    naa = NetworkAttachedAccelerator.from_body(naa_body)
    assert (naa.spec.port, naa.spec.cm_port) == (4791, 12345)
    assert naa.spec.management.token_secret_ref.key == "token"


def test_unset_defaults_are_left_to_the_api_server_when_writing() -> None:
    body = example("NAAJob", "poet-surrogate")
    body["spec"].pop("replicas")
    assert "replicas" not in NAAJob.from_body(body).to_body()["spec"]


def test_pod_template_fields_naaice_does_not_model_pass_through() -> None:
    body = example("NAAJob", "poet-surrogate")
    body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    body["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    assert NAAJob.from_body(body).to_body() == body


def test_a_server_body_with_metadata_and_status_round_trips() -> None:
    body = example("NAAJob", "poet-surrogate")
    body["metadata"].update(
        namespace="team-a",
        uid="6b1e1b8c-0c1a-4a8e-9a57-0d5f3c2b1a00",
        generation=1,
        resourceVersion="4711",
        creationTimestamp="2026-11-24T23:00:00Z",
        managedFields=[{"manager": "kubectl", "operation": "Apply"}],
    )
    body["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Scheduled",
                "status": "True",
                "reason": "Placed",
                "message": "naa-0 leased",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-11-24T23:00:01Z",
            }
        ],
        "assignedNAAs": [
            {
                "request": "trainer",
                "naa": "naa-0",
                "address": "127.0.0.10",
                "port": 12345,
                "fnCode": 16,
                "paramCount": 3,
                "bitstream": "poet-surrogate",
                "digest": "sha256:" + "0" * 64,
            }
        ],
        "naaSpec": "127.0.0.10:12345:16:3",
        "energy": {
            "perNAA": [{"naa": "naa-0", "joules": 12.5}],
            "totalJoules": 12.5,
            "coverage": 1.0,
            "method": "trapezoid",
            "windowStart": "2026-11-24T23:00:01.250000Z",
            "windowEnd": "2026-11-24T23:00:11Z",
        },
        "startTime": "2026-11-24T23:00:02Z",
        "failedAttempts": 0,
    }
    job = NAAJob.from_body(body)
    assert job.to_body() == body
    assert job.status is not None
    assert job.status.assigned_naas is not None
    assert job.status.assigned_naas[0].fn_code == 16


def test_a_model_built_in_code_writes_api_version_and_kind() -> None:
    job = NAAJob.from_body(example("NAAJob", "poet-surrogate"))
    built = NAAJob(metadata=job.metadata, spec=job.spec)
    body = built.to_body()
    assert body["apiVersion"] == "naaice.io/v1alpha1"
    assert body["kind"] == "NAAJob"


@pytest.mark.parametrize(
    ("kind", "name", "change", "path"),
    [
        ("NAAJob", "poet-surrogate", {"naas": []}, "spec.naas"),
        ("NAAJob", "poet-surrogate", {"replicas": 0}, "spec.replicas"),
        ("NAAJob", "poet-surrogate", {"energyBudgetJoules": 0}, "spec.energyBudgetJoules"),
        ("NAAJob", "poet-surrogate", {"placementPolicy": "Random"}, "spec.placementPolicy"),
        ("NAAJob", "poet-surrogate", {"backofLimit": 1}, "spec.backofLimit"),
        ("NetworkAttachedAccelerator", "naa-0", {"cmPort": 0}, "spec.cmPort"),
        ("Bitstream", "test-kernels", {"digest": "sha256:abc"}, "spec.digest"),
    ],
)
def test_invalid_bodies_are_refused_naming_the_field(
    kind: str, name: str, change: dict[str, Any], path: str
) -> None:
    body = example(kind, name)
    body["spec"].update(change)
    with pytest.raises(InvalidObjectError) as caught:
        MODELS[kind].from_body(body)
    assert path in [p for p, _ in caught.value.problems]
    assert path in str(caught.value)


def test_nested_list_paths_are_written_like_kubectl() -> None:
    body = example("Bitstream", "test-kernels")
    body["spec"]["functions"][2]["fnCode"] = 128
    with pytest.raises(InvalidObjectError, match=r"spec\.functions\[2\]\.fnCode"):
        Bitstream.from_body(body)


def test_a_body_of_another_kind_is_refused() -> None:
    with pytest.raises(InvalidObjectError, match="expected 'NAAJob'"):
        NAAJob.from_body(example("Bitstream", "test-kernels"))


def test_timestamps_are_written_as_the_api_server_writes_them() -> None:
    condition = Condition(
        type=NAAJobConditionType.READY,
        status=ConditionStatus.TRUE,
        reason="PodsRunning",
        message="",
        last_transition_time=datetime(2026, 11, 24, 23, 0, 0, tzinfo=UTC),
    )
    assert condition.model_dump(mode="json")["lastTransitionTime"] == "2026-11-24T23:00:00Z"
    with pytest.raises(ValueError, match="timezone"):
        Condition.model_validate(
            {**condition.model_dump(), "lastTransitionTime": "2026-11-24T23:00:00"}
        )


def test_find_condition_returns_the_condition_of_that_type_or_none() -> None:
    made = [
        Condition(
            type=t,
            status=ConditionStatus.FALSE,
            reason="Pending",
            message="",
            last_transition_time=datetime(2026, 1, 1, tzinfo=UTC),
        )
        for t in ("Scheduled", "Ready")
    ]
    found = find_condition(made, NAAJobConditionType.READY)
    assert found is made[1]
    assert find_condition(made, NAAJobConditionType.FAILED) is None
    assert find_condition(None, "Ready") is None


def test_the_public_surface_is_exactly_all() -> None:
    exported = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(api.__all__) == exported
