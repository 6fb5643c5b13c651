"""Where the embedded cluster keeps things: the pinned versions, the binary cache and the run
directories. Read by `build`, `controlplane`, the CLI and the benchmark; pure except for reading
the environment."""

from __future__ import annotations

import os
from pathlib import Path

#: The Kubernetes release whose control plane hack/k8s/go.mod pins.
KUBE_VERSION = "v1.35.4"
#: The etcd server that Kubernetes v1.35.4 requires (minimal version selection in hack/k8s).
ETCD_VERSION = "3.6.5"
#: The KWOK release hack/kwok/go.mod pins (its own module: it needs the 0.36 client libraries).
KWOK_VERSION = "v0.8.0"

#: Binary name → Go package, in build order (the apiserver first: it is the biggest link).
K8S_PACKAGES: tuple[tuple[str, str], ...] = (
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    ("kube-controller-manager", "k8s.io/kubernetes/cmd/kube-controller-manager"),
    ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    ("etcd", "go.etcd.io/etcd/server/v3"),
)
KWOK_PACKAGE = ("kwok", "sigs.k8s.io/kwok/cmd/kwok")


def cache_dir() -> Path:
    """`$NAAICE_CACHE`, default `~/.cache/naaice`."""
    env = os.environ.get("NAAICE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "naaice"


def bin_dir() -> Path:
    """The directory holding the pinned binaries (one per Kubernetes version)."""
    return cache_dir() / "bin" / f"k8s-{KUBE_VERSION}"


def run_root() -> Path:
    """Parent of the run directories of clusters started by `naaice cluster up`."""
    return cache_dir() / "run"


def repo_root() -> Path:
    """The source checkout this package lives in (it holds hack/k8s and hack/kwok)."""
    return Path(__file__).resolve().parent.parent


def crds_dir() -> Path:
    return repo_root() / "crds"
