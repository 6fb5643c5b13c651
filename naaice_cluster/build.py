"""Builds the pinned control-plane binaries (kube-apiserver, kube-controller-manager,
kube-scheduler, kubectl, etcd from hack/k8s; kwok from hack/kwok) from the Go module proxy into
the cache, and assembles KWOK's node stages. Called by `naaice cluster build` (the Makefile's
`binaries` target), by `controlplane` before a start, and by the test fixture.

A build is skipped when every cached binary already reports the pinned version."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from naaice_cluster.errors import BuildError
from naaice_cluster.paths import (
    ETCD_VERSION,
    K8S_PACKAGES,
    KUBE_VERSION,
    KWOK_PACKAGE,
    KWOK_VERSION,
    bin_dir,
    cache_dir,
    repo_root,
)

#: KWOK's node stages, copied from the kwok module in GOMODCACHE. Only node stages: the pod
#: runner, not KWOK, owns the status of pods on our fake nodes (see docs/cluster.md).
KWOK_NODE_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
)
STAGES_FILE = "kwok-stages.yaml"
BUILD_RECORD = "build-record.json"
#: Kept in $NAAICE_CACHE (not the per-version bin dir) by a build that started with an empty
#: GOCACHE, so benchmarks can report the cold figure later.
COLD_RECORD = "cold-build.json"
_EMPTY_GOCACHE_BYTES = 50_000_000
ALL_BINARIES: tuple[str, ...] = (*(name for name, _ in K8S_PACKAGES), KWOK_PACKAGE[0])


@dataclass(frozen=True)
class BuildStep:
    """One `go build` invocation: a binary from a Go package in a module directory."""

    name: str
    package: str
    module_dir: Path
    ldflags: str


def version_ldflags(*, kube_version: str, build_date: str) -> str:
    """The `-ldflags` that stamp Kubernetes binaries like an upstream release build does.

    Unstamped builds report v0.0.0-master, which kubectl's skew check and kwok dislike."""
    major, minor = kube_version.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    parts = [
        "-s",
        "-w",
        f"-X {pkg}.gitVersion={kube_version}",
        f"-X {pkg}.gitMajor={major}",
        f"-X {pkg}.gitMinor={minor}",
        f"-X {pkg}.gitTreeState=clean",
        f"-X {pkg}.buildDate={build_date}",
    ]
    return " ".join(parts)


def plan(*, hack_dir: Path, build_date: str) -> list[BuildStep]:
    """The build steps, in order, for the modules under `hack_dir`."""
    k8s_flags = version_ldflags(kube_version=KUBE_VERSION, build_date=build_date)
    steps = [
        BuildStep(name, pkg, hack_dir / "k8s", "-s -w" if name == "etcd" else k8s_flags)
        for name, pkg in K8S_PACKAGES
    ]
    kwok_flags = f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}"
    steps.append(BuildStep(KWOK_PACKAGE[0], KWOK_PACKAGE[1], hack_dir / "kwok", kwok_flags))
    return steps


def expected_version_marker(name: str) -> str:
    """The text the binary's version output must contain for the cache to count as current."""
    if name == "etcd":
        return f"etcd Version: {ETCD_VERSION}"
    if name == "kwok":
        return KWOK_VERSION.lstrip("v")
    return KUBE_VERSION


def _version_output(path: Path) -> str:
    args = (
        [str(path), "version", "--client"] if path.name == "kubectl" else [str(path), "--version"]
    )
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def cached_binaries_current(directory: Path | None = None) -> bool:
    """True when every pinned binary and the KWOK stages exist and report the pinned version."""
    directory = directory or bin_dir()
    if not (directory / STAGES_FILE).is_file():
        return False
    for name in ALL_BINARIES:
        path = directory / name
        if not os.access(path, os.X_OK):
            return False
        if expected_version_marker(name) not in _version_output(path):
            return False
    return True


def go_env() -> dict[str, str]:
    """The environment for `go`: the local toolchain only, module mode, static binaries."""
    env = dict(os.environ)
    env.update({"GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return env


def _require_go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "the Go toolchain (`go`, 1.26 or newer) is not on PATH: install it from "
            "https://go.dev/dl/ (or Debian's golang-1.26) and run `naaice cluster build` again"
        )
    return go


def _dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def _go_env_path(go: str, var: str, module_dir: Path) -> Path:
    out = subprocess.run(
        [go, "env", var], cwd=module_dir, env=go_env(), capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def assemble_kwok_stages(*, module_root: Path, out: Path) -> None:
    """Concatenate KWOK's node stages from the kwok module source into one multi-doc file."""
    docs = []
    for rel in KWOK_NODE_STAGES:
        src = module_root / rel
        if not src.is_file():
            raise BuildError(
                f"KWOK stage {src} is missing from the Go module cache: re-run the build"
            )
        docs.append(src.read_text().strip() + "\n")
    out.write_text("---\n".join(docs))


def _run_step(go: str, step: BuildStep, out_dir: Path, log: Path) -> None:
    cmd = [go, "build", "-trimpath", "-ldflags", step.ldflags, "-o", str(out_dir / step.name)]
    cmd.append(step.package)
    with log.open("ab") as fh:
        fh.write(f"$ (cd {step.module_dir} && {' '.join(cmd)})\n".encode())
        fh.flush()
        rc = subprocess.run(
            cmd, cwd=step.module_dir, env=go_env(), stdout=fh, stderr=subprocess.STDOUT, check=False
        ).returncode
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(
            f"`go build {step.package}` failed (exit {rc}); the last lines of {log}:\n"
            + "\n".join(tail)
        )


Progress = Callable[[str, int, int], None]


def build(
    *,
    force: bool = False,
    out_dir: Path | None = None,
    hack_dir: Path | None = None,
    progress: Progress | None = None,
) -> Mapping[str, object]:
    """Build every pinned binary into `out_dir` unless the cache is already current.

    Returns the build record (also written as build-record.json): per-binary seconds, total
    seconds, whether it was skipped. `progress(name, index, total)` is called before each step."""
    out_dir = out_dir or bin_dir()
    hack_dir = hack_dir or repo_root() / "hack"
    if not force and cached_binaries_current(out_dir):
        record_path = out_dir / BUILD_RECORD
        record: dict[str, object] = {"skipped": True}
        if record_path.is_file():
            record["previous"] = json.loads(record_path.read_text())
        return record
    for mod in ("k8s", "kwok"):
        if not (hack_dir / mod / "go.mod").is_file():
            raise BuildError(
                f"{hack_dir / mod / 'go.mod'} not found: build from a naaice source checkout"
            )
    go = _require_go()
    gocache = _go_env_path(go, "GOCACHE", hack_dir / "k8s")
    gocache_before = _dir_bytes(gocache) if gocache.is_dir() else 0
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "build.log"
    log.write_text("")
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    steps = plan(hack_dir=hack_dir, build_date=date)
    seconds: dict[str, float] = {}
    start = time.monotonic()
    for i, step in enumerate(steps):
        if progress:
            progress(step.name, i, len(steps))
        t0 = time.monotonic()
        _run_step(go, step, out_dir, log)
        seconds[step.name] = round(time.monotonic() - t0, 1)
    if progress:
        progress("kwok stages", len(steps), len(steps))
    modcache = _go_env_path(go, "GOMODCACHE", hack_dir / "kwok")
    assemble_kwok_stages(
        module_root=modcache / f"sigs.k8s.io/kwok@{KWOK_VERSION}", out=out_dir / STAGES_FILE
    )
    record = {
        "skipped": False,
        "kubeVersion": KUBE_VERSION,
        "etcdVersion": ETCD_VERSION,
        "kwokVersion": KWOK_VERSION,
        "date": date,
        "seconds": seconds,
        "totalSeconds": round(time.monotonic() - start, 1),
        "cpus": os.cpu_count(),
        "goCacheBytesBefore": gocache_before,
        "goCacheWasEmpty": gocache_before < _EMPTY_GOCACHE_BYTES,
    }
    (out_dir / BUILD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if record["goCacheWasEmpty"]:
        (cache_dir() / COLD_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if not cached_binaries_current(out_dir):
        raise BuildError(
            f"the build finished but the binaries in {out_dir} do not report the pinned versions "
            f"({KUBE_VERSION}, etcd {ETCD_VERSION}, kwok {KWOK_VERSION}); see {log}"
        )
    return record


def ensure_built(*, progress: Progress | None = None) -> Path:
    """Build if needed and return the binary directory."""
    build(progress=progress)
    return bin_dir()
