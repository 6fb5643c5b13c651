"""The pinned build: its plan, version stamping, cache check and a missing Go toolchain."""

from __future__ import annotations

from pathlib import Path

import pytest

from naaice_cluster import build
from naaice_cluster.errors import BuildError
from naaice_cluster.paths import KUBE_VERSION


def test_plan_builds_every_binary_from_its_own_module() -> None:
    steps = build.plan(hack_dir=Path("/h"), build_date="2026-01-01T00:00:00Z")
    assert [s.name for s in steps] == list(build.ALL_BINARIES)
    modules = {s.name: s.module_dir for s in steps}
    assert modules["kube-apiserver"] == Path("/h/k8s")
    assert modules["etcd"] == Path("/h/k8s")
    assert modules["kwok"] == Path("/h/kwok")


def test_kubernetes_binaries_are_stamped_with_the_pinned_version() -> None:
    flags = build.version_ldflags(kube_version="v1.35.4", build_date="d")
    assert "-X k8s.io/component-base/version.gitVersion=v1.35.4" in flags
    assert "-X k8s.io/component-base/version.gitMinor=35" in flags


def test_an_empty_cache_is_not_current(tmp_path: Path) -> None:
    assert not build.cached_binaries_current(tmp_path)


def test_a_binary_reporting_another_version_is_not_current(tmp_path: Path) -> None:
    (tmp_path / build.STAGES_FILE).write_text("")
    for name in build.ALL_BINARIES:
        fake = tmp_path / name
        fake.write_text("#!/bin/sh\necho Kubernetes v0.0.0-master\n")
        fake.chmod(0o755)
    assert build.expected_version_marker("kube-apiserver") == KUBE_VERSION
    assert not build.cached_binaries_current(tmp_path)


def test_missing_go_toolchain_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BuildError, match="Go toolchain"):
        build.build(out_dir=tmp_path / "bin", force=True)


def test_kwok_stages_are_the_node_stages_of_the_module(tmp_path: Path) -> None:
    for rel in build.KWOK_NODE_STAGES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"kind: Stage\nmetadata: {{name: {Path(rel).stem}}}\n")
    out = tmp_path / "stages.yaml"
    build.assemble_kwok_stages(module_root=tmp_path, out=out)
    assert out.read_text().count("kind: Stage") == 2
    assert "node-initialize" in out.read_text()
