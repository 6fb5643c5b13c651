"""How the pod runner resolves a container's environment and command line from a Pod (pure)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from naaice_cluster.podrunner.envresolve import (
    ContainerConfigError,
    command_line,
    expand,
    field_value,
    resolve_env,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "p",
        "namespace": "ns",
        "uid": "u-1",
        "labels": {"app": "a", "tier": "t"},
        "annotations": {"note": "n"},
    },
    "spec": {"nodeName": "naa-node-0", "serviceAccountName": "sa"},
    "status": {"podIP": "127.0.0.1", "hostIP": "127.0.0.1"},
}
OBJECTS: dict[tuple[str, str, str], dict[str, Any]] = {
    ("ConfigMap", "ns", "cm"): {"data": {"mode": "fast", "n": "1"}},
    ("Secret", "ns", "sec"): {"data": {"token": base64.b64encode(b"s3").decode()}},
}


def lookup(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, namespace, name))


def test_later_env_entries_override_envfrom_and_base() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}}],
        "env": [{"name": "mode", "value": "slow"}, {"name": "PATH", "value": "/x:$(PATH)"}],
    }
    env = resolve_env(pod=POD, container=container, lookup=lookup, base={"PATH": "/bin"})
    assert env["mode"] == "slow"
    assert env["n"] == "1"
    assert env["PATH"] == "/x:/bin"


def test_envfrom_prefix_and_secret_values_are_decoded() -> None:
    container = {"envFrom": [{"secretRef": {"name": "sec"}, "prefix": "S_"}]}
    assert resolve_env(pod=POD, container=container, lookup=lookup) == {"S_token": "s3"}


def test_value_from_config_map_secret_and_fields() -> None:
    container = {
        "env": [
            {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "mode"}}},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "E", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ]
    }
    env = resolve_env(pod=POD, container=container, lookup=lookup)
    assert env == {"A": "fast", "B": "s3", "C": "a", "D": "naa-node-0", "E": "127.0.0.1"}


def test_missing_config_map_is_a_config_error_unless_optional() -> None:
    ref = {"name": "nope", "key": "k"}
    container = {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": ref}}]}
    with pytest.raises(ContainerConfigError, match='configmap "nope" not found'):
        resolve_env(pod=POD, container=container, lookup=lookup)
    optional = {"env": [{"name": "A", "valueFrom": {"configMapKeyRef": {**ref, "optional": True}}}]}
    assert resolve_env(pod=POD, container=optional, lookup=lookup) == {}


def test_missing_key_names_the_key_and_the_object() -> None:
    container = {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "x"}}}]}
    with pytest.raises(ContainerConfigError, match="key x in Secret ns/sec"):
        resolve_env(pod=POD, container=container, lookup=lookup)


def test_unsupported_value_source_says_what_is_supported() -> None:
    ref = {"resourceFieldRef": {"resource": "limits.cpu"}}
    container = {"env": [{"name": "A", "valueFrom": ref}]}
    with pytest.raises(ContainerConfigError, match="supported: configMapKeyRef"):
        resolve_env(pod=POD, container=container, lookup=lookup)


def test_expansion_keeps_unknown_references_and_unescapes_double_dollar() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_all_labels_render_as_downward_api_lines() -> None:
    assert field_value(pod=POD, path="metadata.labels") == 'app="a"\ntier="t"'
    assert field_value(pod=POD, path="metadata.annotations['note']") == "n"
    with pytest.raises(ContainerConfigError):
        field_value(pod=POD, path="spec.bogus")


def test_command_and_args_are_expanded_against_the_env() -> None:
    container = {"command": ["run", "$(MODE)"], "args": ["--n=$(N)"]}
    assert command_line(container=container, env={"MODE": "x", "N": "2"}) == ["run", "x", "--n=2"]


def test_container_without_command_is_refused_because_images_are_not_run() -> None:
    with pytest.raises(ContainerConfigError, match="does not run images"):
        command_line(container={"name": "c", "args": ["x"]}, env={})
