"""The catalogue of malformed objects the CRDs must refuse: each entry takes an example from
examples/, breaks one thing, and names the field the API server's error must mention.

Used by test_validation.py; kept apart so the catalogue reads as a table."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

DELETE = object()
"""Mutation value that removes the field."""


def load_examples() -> dict[str, dict[str, Any]]:
    """Every object in examples/*.yaml by `<kind>/<name>`."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for body in yaml.safe_load_all(path.read_text()):
            if body:
                objects[f"{body['kind']}/{body['metadata']['name']}"] = body
    return objects


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def mutate(body: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A copy of `body` with the field at `path` (`spec.naas[0].count`) set to `value`, or
    removed when `value` is DELETE."""
    result = copy.deepcopy(body)
    steps: list[str | int] = [name if name else int(index) for name, index in _STEP.findall(path)]
    node: Any = result
    for step in steps[:-1]:
        node = node[step]
    last = steps[-1]
    if value is DELETE:
        del node[last]
    else:
        node[last] = copy.deepcopy(value)
    return result


@dataclass(frozen=True)
class Malformed:
    id: str
    example: str
    changes: dict[str, object]
    expect: tuple[str, ...]
    """Substrings the API server's error must contain: the field path, and the rule."""
    why: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, examples: dict[str, dict[str, Any]]) -> dict[str, Any]:
        body = examples[self.example]
        for path, value in self.changes.items():
            body = mutate(body, path, value)
        return body


JOB = "NAAJob/poet-surrogate"
NAA = "NetworkAttachedAccelerator/naa-0"
BS = "Bitstream/test-kernels"
DIGEST = "sha256:" + "ab" * 32

CATALOGUE: tuple[Malformed, ...] = (
    # NAAJob
    Malformed("job-no-requests", JOB, {"spec.naas": []}, ("spec.naas",)),
    Malformed("job-count-zero", JOB, {"spec.naas[0].count": 0}, ("spec.naas[0].count",)),
    Malformed(
        "job-duplicate-request-names",
        JOB,
        {
            "spec.naas": [
                {"name": "trainer", "function": "poet-train"},
                {"name": "trainer", "function": "add1"},
            ]
        },
        ("spec.naas", "duplicate", "trainer"),
    ),
    Malformed(
        "job-request-name-not-dns-label",
        JOB,
        {"spec.naas[0].name": "Trainer_1"},
        ("spec.naas[0].name",),
    ),
    Malformed("job-no-template", JOB, {"spec.template": DELETE}, ("spec.template", "Required")),
    Malformed(
        "job-template-without-containers",
        JOB,
        {"spec.template.spec.containers": DELETE},
        ("spec.template.spec.containers", "Required"),
    ),
    Malformed(
        "job-template-empty-containers",
        JOB,
        {"spec.template.spec.containers": []},
        ("spec.template.spec.containers",),
    ),
    Malformed("job-replicas-zero", JOB, {"spec.replicas": 0}, ("spec.replicas",)),
    Malformed("job-negative-backoff", JOB, {"spec.backoffLimit": -1}, ("spec.backoffLimit",)),
    Malformed(
        "job-negative-ttl",
        JOB,
        {"spec.ttlSecondsAfterFinished": -5},
        ("spec.ttlSecondsAfterFinished",),
    ),
    Malformed(
        "job-zero-energy-budget",
        JOB,
        {"spec.energyBudgetJoules": 0},
        ("spec.energyBudgetJoules",),
    ),
    Malformed(
        "job-unknown-placement-policy",
        JOB,
        {"spec.placementPolicy": "Random"},
        ("spec.placementPolicy", "Unsupported value"),
    ),
    Malformed(
        "job-restart-always",
        JOB,
        {"spec.template.spec.restartPolicy": "Always"},
        ("spec.template.spec.restartPolicy",),
    ),
    Malformed(
        "job-template-sets-job-label",
        JOB,
        {"spec.template.metadata.labels": {"naaice.io/naajob": "other"}},
        ("spec.template.metadata.labels", "set by the operator"),
    ),
    Malformed(
        "job-container-sets-naa-spec",
        JOB,
        {"spec.template.spec.containers[0].env": [{"name": "NAA_SPEC", "value": "1.2.3.4::1:1"}]},
        ("spec.template.spec.containers[0].env", "injected by the operator"),
    ),
    Malformed(
        "job-name-too-long-for-a-label",
        JOB,
        {"metadata.name": "j" * 64},
        ("metadata.name", "63"),
    ),
    Malformed(
        "job-typo-in-field-name",
        JOB,
        {"spec.backofLimit": 3},
        ("spec.backofLimit", "field not declared in schema"),
    ),
    # NetworkAttachedAccelerator
    Malformed("naa-address-not-an-ip", NAA, {"spec.address": "999.1.1.1"}, ("spec.address",)),
    Malformed("naa-address-garbage", NAA, {"spec.address": "not a host!"}, ("spec.address",)),
    Malformed("naa-port-zero", NAA, {"spec.port": 0}, ("spec.port",)),
    Malformed("naa-cm-port-too-big", NAA, {"spec.cmPort": 70000}, ("spec.cmPort",)),
    Malformed(
        "naa-endpoint-not-http",
        NAA,
        {"spec.management.endpoint": "ftp://127.0.0.10:9010"},
        ("spec.management.endpoint", "http://"),
    ),
    Malformed(
        "naa-endpoint-not-a-url",
        NAA,
        {"spec.management.endpoint": "127.0.0.10:9010"},
        ("spec.management.endpoint",),
    ),
    Malformed(
        "naa-no-token-secret",
        NAA,
        {"spec.management.tokenSecretRef": DELETE},
        ("spec.management.tokenSecretRef", "Required"),
    ),
    Malformed("naa-no-board", NAA, {"spec.board": DELETE}, ("spec.board", "Required")),
    Malformed("naa-negative-luts", NAA, {"spec.resources.lut": -1}, ("spec.resources.lut",)),
    Malformed(
        "naa-name-too-long-for-a-label",
        NAA,
        {"metadata.name": "n" * 64},
        ("metadata.name", "63"),
    ),
    # Bitstream
    Malformed(
        "bs-fn-code-zero", BS, {"spec.functions[0].fnCode": 0}, ("spec.functions[0].fnCode",)
    ),
    Malformed(
        "bs-fn-code-above-7-bits",
        BS,
        {"spec.functions[2].fnCode": 128},
        ("spec.functions[2].fnCode",),
    ),
    Malformed(
        "bs-duplicate-fn-code",
        BS,
        {"spec.functions[1].fnCode": 1},
        ("spec.functions", "fnCode values must be unique"),
    ),
    Malformed(
        "bs-duplicate-function-name",
        BS,
        {"spec.functions[1].name": "add1"},
        ("spec.functions", "duplicate", "add1"),
    ),
    Malformed(
        "bs-input-params-zero",
        BS,
        {"spec.functions[0].inputParams": 0},
        ("spec.functions[0].inputParams",),
    ),
    Malformed(
        "bs-digest-upper-case",
        BS,
        {"spec.digest": "sha256:" + "AB" * 32},
        ("spec.digest",),
    ),
    Malformed("bs-digest-not-sha256", BS, {"spec.digest": "md5:" + "ab" * 16}, ("spec.digest",)),
    Malformed("bs-digest-too-short", BS, {"spec.digest": DIGEST[:-1]}, ("spec.digest",)),
    Malformed(
        "bs-artifact-unsupported-scheme",
        BS,
        {"spec.artifact.uri": "s3://bucket/test-kernels.yaml"},
        ("spec.artifact.uri",),
    ),
    Malformed(
        "bs-artifact-relative-file",
        BS,
        {"spec.artifact.uri": "file:bitstreams/test-kernels.yaml"},
        ("spec.artifact.uri",),
    ),
    Malformed(
        "bs-no-compatible-boards",
        BS,
        {"spec.compatibleBoards": []},
        ("spec.compatibleBoards",),
    ),
)
