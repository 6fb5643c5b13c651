"""The CRDs in crds/ and the pydantic models in naaice.api describe the same objects: same
field names, required fields, defaults and bounds. A field added to one and not the other fails
here, not in the operator at run time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from naaice import api

CRDS = Path(__file__).resolve().parents[3] / "crds"
CHECKED = (
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "enum",
    "default",
)


def crd(plural: str) -> dict[str, Any]:
    return yaml.safe_load((CRDS / f"naaice.io_{plural}.yaml").read_text())


def root_schema(plural: str) -> dict[str, Any]:
    (version,) = crd(plural)["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref and drop the `null` branch pydantic writes for optional fields."""
    while True:
        if "$ref" in node:
            extra = {k: v for k, v in node.items() if k != "$ref"}
            node = {**defs[node["$ref"].split("/")[-1]], **extra}
        elif "anyOf" in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            assert len(branches) == 1, node
            extra = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**branches[0], **extra}
        elif "const" in node:
            node = {**node, "enum": [node["const"]]}
            del node["const"]
        else:
            return node


def crd_keywords(node: dict[str, Any]) -> dict[str, Any]:
    found = {k: node[k] for k in CHECKED if k in node}
    if found.get("exclusiveMinimum") is True:
        found["exclusiveMinimum"] = found.pop("minimum")
    return found


def model_keywords(node: dict[str, Any]) -> dict[str, Any]:
    found = {k: node[k] for k in CHECKED if k in node and node[k] is not None}
    if "default" in node and node["default"] is None:
        found.pop("default", None)
    return found


def compare(
    crd_node: dict[str, Any], model_node: dict[str, Any], defs: dict[str, Any], path: str
) -> list[str]:
    model_node = resolve(model_node, defs)
    problems = []
    if crd_keywords(crd_node) != model_keywords(model_node):
        problems.append(
            f"{path}: CRD {crd_keywords(crd_node)} != model {model_keywords(model_node)}"
        )
    kind = crd_node.get("type")
    if kind == "object" and "properties" in crd_node:
        crd_props = crd_node["properties"]
        model_props = model_node.get("properties", {})
        open_model = model_node.get("additionalProperties") is True
        missing = set(crd_props) - set(model_props)
        extra = set() if open_model else set(model_props) - set(crd_props)
        if missing or extra:
            problems.append(f"{path}: only in CRD {sorted(missing)}, only in model {sorted(extra)}")
        crd_required = set(crd_node.get("required", []))
        model_required = set(model_node.get("required", []))
        if crd_required != model_required:
            problems.append(
                f"{path}: required CRD {sorted(crd_required)} != model {sorted(model_required)}"
            )
        for name in sorted(set(crd_props) & set(model_props)):
            problems += compare(crd_props[name], model_props[name], defs, f"{path}.{name}")
    if kind == "array":
        problems += compare(crd_node["items"], model_node["items"], defs, f"{path}[]")
    return problems


@pytest.mark.parametrize(
    ("plural", "model"),
    [
        ("naajobs", api.NAAJob),
        ("networkattachedaccelerators", api.NetworkAttachedAccelerator),
        ("bitstreams", api.Bitstream),
    ],
)
def test_crd_schema_and_model_agree_on_every_field(
    plural: str, model: type[api.CustomObject]
) -> None:
    model_schema = model.model_json_schema(by_alias=True)
    defs = model_schema.get("$defs", {})
    crd_root = root_schema(plural)
    problems = []
    for part in ("spec", "status"):
        if part in crd_root["properties"] or part in model_schema["properties"]:
            assert part in crd_root["properties"], f"{part} only in the model"
            assert part in model_schema["properties"], f"{part} only in the CRD"
            problems += compare(
                crd_root["properties"][part], model_schema["properties"][part], defs, part
            )
    assert problems == []


@pytest.mark.parametrize(
    ("plural", "kind", "scope", "short"),
    [
        (api.PLURAL_NAAJOBS, api.KIND_NAAJOB, "Namespaced", ["naajob"]),
        (api.PLURAL_NAAS, api.KIND_NAA, "Cluster", ["naa"]),
        (api.PLURAL_BITSTREAMS, api.KIND_BITSTREAM, "Cluster", ["bs"]),
    ],
)
def test_crd_names_match_the_constants(
    plural: str, kind: str, scope: str, short: list[str]
) -> None:
    definition = crd(plural)
    assert definition["metadata"]["name"] == f"{plural}.{api.GROUP}"
    spec = definition["spec"]
    assert spec["group"] == api.GROUP
    assert spec["scope"] == scope
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == [api.CATEGORY]
    assert [v["name"] for v in spec["versions"]] == [api.VERSION]


def test_every_string_and_list_the_cel_rules_see_is_bounded() -> None:
    """The API server estimates CEL cost from maxLength/maxItems; unbounded ones make it
    refuse the CRD (the integration tests install them for real)."""

    def walk(node: dict[str, Any], path: str) -> list[str]:
        unbounded = []
        kind = node.get("type")
        if (
            kind == "string"
            and "maxLength" not in node
            and "enum" not in node
            and "format" not in node
        ):
            unbounded.append(path)
        if kind == "array":
            if "maxItems" not in node:
                unbounded.append(path)
            unbounded += walk(node["items"], f"{path}[]")
        for name, child in node.get("properties", {}).items():
            if path == "" and name in ("apiVersion", "kind"):
                continue
            unbounded += walk(child, f"{path}.{name}")
        if isinstance(node.get("additionalProperties"), dict):
            unbounded += walk(node["additionalProperties"], f"{path}.*")
        return unbounded

    for plural in ("naajobs", "networkattachedaccelerators", "bitstreams"):
        assert walk(root_schema(plural), "") == [], plural
