"""NAA Spec rendering and injection into pod specs, and parsing of Kubernetes bodies."""

from __future__ import annotations

import pytest
from naa_operator.core import conditions as cond
from naa_operator.core import injection
from naa_operator.core.model import Assignment
from naa_operator.services import views

from naaice.spec import NaaSpecDocument

A = [
    Assignment("main", "naa-0", "127.0.0.10", 12345, 1, 1, "tk", "sha256:" + "a" * 64, "", False),
    Assignment(
        "aux", "naa-1", "fpga1.example", 12345, 16, 3, "poet", "sha256:" + "b" * 64, "", True
    ),
]


def test_naa_spec_is_rendered_in_the_original_naaice_format() -> None:
    assert injection.render_original(A) == "127.0.0.10:12345:1:1,fpga1.example:12345:16:3"


def test_the_json_form_is_naaice_specs_document_in_the_same_order() -> None:
    job = {
        "metadata": {"namespace": "ns", "name": "j", "uid": "u1"},
        "spec": {
            "naas": [
                {"name": "main", "function": "add1"},
                {"name": "aux", "function": "poet-train"},
            ]
        },
    }
    doc = NaaSpecDocument.from_json(injection.render_json_for_job(job, A))
    assert doc.render_original() == injection.render_original(A)
    assert doc.naajob is not None
    assert doc.naajob.uid == "u1"
    assert [(e.naa, e.request, e.function, e.bitstream) for e in doc.entries] == [
        ("naa-0", "main", "add1", "tk"),
        ("naa-1", "aux", "poet-train", "poet"),
    ]


def test_injection_replaces_stale_values_and_mounts_the_spec_file_in_every_container() -> None:
    spec = {
        "initContainers": [{"name": "init", "image": "x"}],
        "containers": [
            {
                "name": "a",
                "image": "x",
                "env": [{"name": "NAA_SPEC", "value": "old"}, {"name": "KEEP", "value": "1"}],
            },
            {"name": "b", "image": "x", "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
    }
    out = injection.inject(spec, original="O", as_json="{}")
    for c in [*out["initContainers"], *out["containers"]]:
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["NAA_SPEC"] == "O"
        assert env["NAAICE_NAA_SPEC_JSON"] == "{}"
        assert {"name": "naaice-naa-spec", "mountPath": "/etc/naaice", "readOnly": True} in c[
            "volumeMounts"
        ]
    assert out["containers"][0]["env"][0] == {"name": "KEEP", "value": "1"}
    assert {
        "name": "naaice-naa-spec",
        "downwardAPI": {
            "items": [
                {
                    "path": "naa-spec.json",
                    "fieldRef": {"fieldPath": "metadata.annotations['naaice.io/naa-spec']"},
                }
            ]
        },
    } in out["volumes"]
    assert injection.inject(out, original="O", as_json="{}") == out
    assert spec["containers"][0]["env"][0]["value"] == "old"  # the input is not mutated


def test_a_job_pod_is_owned_by_its_naajob_and_never_restarted_in_place() -> None:
    pod = injection.job_pod(
        job_name="j",
        job_uid="u1",
        namespace="ns",
        template={
            "metadata": {"labels": {"app": "x"}},
            "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c"}]},
        },
        pod_name="j-a1-0",
        attempt=1,
        original="O",
        as_json="{}",
        api_version="naaice.io/v1alpha1",
        kind="NAAJob",
    )
    assert pod["metadata"]["labels"] == {
        "app": "x",
        "naaice.io/naajob": "j",
        "naaice.io/attempt": "1",
    }
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    assert pod["spec"]["restartPolicy"] == "Never"
    # The spec file's volume projects this annotation: the JSON form, as in the env var.
    assert pod["metadata"]["annotations"] == {"naaice.io/naa-spec": "{}"}


def test_declared_specs_finds_literal_naa_spec_values() -> None:
    spec = {
        "containers": [
            {"env": [{"name": "NAA_SPEC", "value": "x:1:1:1"}]},
            {"env": [{"name": "NAA_SPEC", "valueFrom": {}}]},
        ]
    }
    assert injection.declared_specs(spec) == {"x:1:1:1"}


def test_an_naa_without_conditions_is_not_ready_and_says_why() -> None:
    naa = views.naa_view(
        {"metadata": {"name": "n"}, "spec": {"board": {"model": "b"}, "address": "1.2.3.4"}}
    )
    assert not naa.ready
    assert "is the naaice agent running" in naa.not_ready_reason


def test_bound_at_round_trips_with_nanoseconds() -> None:
    t = 1_764_000_000_123_456_789
    text = views.ns_to_rfc3339_ns(t)
    assert text.endswith(".123456789Z")
    assert views.rfc3339_ns_to_ns(text) == t


@pytest.mark.parametrize(
    "conditions",
    [
        None,
        [],
        [{"type": "Scheduled", "status": "True"}],
        [{"type": "Succeeded", "status": "True"}],
        [{"type": "Succeeded", "status": "False"}, {"type": "Failed", "status": "Unknown"}],
        [{"type": "Scheduled", "status": "True"}, {"type": "Failed", "status": "True"}],
        ["not a condition", {"type": "Ready", "status": "True"}],
    ],
)
def test_job_finished_agrees_with_the_parsed_conditions(conditions: list[object] | None) -> None:
    body: dict[str, object] = {"metadata": {"name": "j"}, "status": {"conditions": conditions}}
    assert views.job_finished(body) == cond.is_terminal(views.job_conditions(body))
