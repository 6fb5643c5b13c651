"""Builds the pinned Helm CLI (hack/helm) from the Go module proxy into
`$NAAICE_CACHE/bin/helm-<version>/helm`, with the same `go build` step and version-check skip
as the control-plane binaries. Called by `naaice cluster build` (the Makefile's `binaries`
target) and by the chart tests' `helm` fixture.

Helm is stamped the way its own Makefile stamps a release: its version, and the Kubernetes
version its client libraries target (what `helm template` and `helm lint` assume when no
cluster is asked)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from naaice_cluster.build import BuildStep, _require_go, _run_step
from naaice_cluster.errors import BuildError
from naaice_cluster.paths import cache_dir, repo_root

#: The Helm release hack/helm/go.mod pins.
HELM_VERSION = "v3.21.4"
HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
#: The Kubernetes minor Helm v3.21.4's client-go (v0.36.2) targets; Helm's Makefile derives
#: the same numbers from `go list -m k8s.io/client-go` (major 0 → 1, minor kept).
HELM_K8S_MAJOR, HELM_K8S_MINOR = "1", "36"
BUILD_RECORD = "build-record.json"


def helm_dir() -> Path:
    """The directory holding the pinned Helm binary (one per Helm version)."""
    return cache_dir() / "bin" / f"helm-{HELM_VERSION}"


def helm_path() -> Path:
    return helm_dir() / "helm"


def helm_ldflags() -> str:
    """Helm's release stamping: version, clean tree, and the Kubernetes version it targets."""
    flags = ["-s", "-w"]
    flags += [
        f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
    ]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor={HELM_K8S_MAJOR}"]
        flags += [f"-X {pkg}.k8sVersionMinor={HELM_K8S_MINOR}"]
    return " ".join(flags)


def helm_current(path: Path | None = None) -> bool:
    """True when the cached Helm exists and `helm version` reports the pinned version."""
    path = path or helm_path()
    if not os.access(path, os.X_OK):
        return False
    return f'Version:"{HELM_VERSION}"' in _version_output_of_helm(path)


def _version_output_of_helm(path: Path) -> str:
    try:
        out = subprocess.run(
            [str(path), "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def build_helm(*, force: bool = False, hack_dir: Path | None = None) -> Mapping[str, object]:
    """Build Helm into `helm_dir()` unless the cached one already reports HELM_VERSION.

    Returns the build record (also written as build-record.json next to the binary)."""
    out_dir = helm_dir()
    if not force and helm_current():
        return {"skipped": True, "helmVersion": HELM_VERSION}
    module_dir = (hack_dir or repo_root() / "hack") / "helm"
    if not (module_dir / "go.mod").is_file():
        raise BuildError(f"{module_dir / 'go.mod'} not found: build from a naaice source checkout")
    go = _require_go()
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "build.log"
    log.write_text("")
    start = time.monotonic()
    _run_step(go, BuildStep("helm", HELM_PACKAGE, module_dir, helm_ldflags()), out_dir, log)
    record: dict[str, object] = {
        "skipped": False,
        "helmVersion": HELM_VERSION,
        "totalSeconds": round(time.monotonic() - start, 1),
        "cpus": os.cpu_count(),
    }
    (out_dir / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if not helm_current():
        raise BuildError(
            f"the build finished but {helm_path()} does not report Helm {HELM_VERSION}; see {log}"
        )
    return record


def ensure_helm() -> Path:
    """Build Helm if needed and return the path of the binary."""
    build_helm()
    return helm_path()
