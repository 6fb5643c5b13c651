"""The pinned Helm build (naaice_cluster.helm): stamped like Helm's own release build, the
Kubernetes version it targets kept in step with hack/helm/go.mod, and the cache counted as
current only when the binary reports the pinned version."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from naaice_cluster import helm
from naaice_cluster.errors import BuildError
from tests.support.helm import REPO, helm_binary


def test_the_ldflags_stamp_the_helm_version_and_the_kubernetes_version_it_targets() -> None:
    flags = helm.helm_ldflags()
    assert f"-X helm.sh/helm/v3/internal/version.version={helm.HELM_VERSION}" in flags
    for pkg in ("pkg/lint/rules", "pkg/chartutil"):
        assert f"-X helm.sh/helm/v3/{pkg}.k8sVersionMinor={helm.HELM_K8S_MINOR}" in flags


def test_the_targeted_kubernetes_minor_is_the_client_go_minor_of_hack_helm() -> None:
    gomod = (REPO / "hack" / "helm" / "go.mod").read_text()
    assert re.search(rf"^\s*helm\.sh/helm/v3 {re.escape(helm.HELM_VERSION)}\b", gomod, re.M)
    match = re.search(r"^\s*k8s\.io/client-go v0\.(\d+)\.\d+", gomod, re.M)
    assert match, "k8s.io/client-go is not in hack/helm/go.mod"
    assert match.group(1) == helm.HELM_K8S_MINOR


def test_a_missing_or_other_version_binary_is_not_current(tmp_path: Path) -> None:
    assert not helm.helm_current(tmp_path / "helm")
    other = tmp_path / "other"
    other.write_text("#!/bin/sh\necho 'version.BuildInfo{Version:\"v3.9.0\"}'\n")
    other.chmod(other.stat().st_mode | stat.S_IXUSR)
    assert not helm.helm_current(other)


def test_the_built_helm_reports_the_pinned_version() -> None:
    path = helm_binary()
    assert path == helm.helm_path()
    assert helm.helm_current(path)
    assert helm.build_helm() == {"skipped": True, "helmVersion": helm.HELM_VERSION}


def test_a_checkout_without_hack_helm_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAAICE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BuildError, match=r"hack/helm/go\.mod not found"):
        helm.build_helm(hack_dir=tmp_path / "hack")
