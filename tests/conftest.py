"""Fixtures for every test: the session-wide embedded Kubernetes cluster (`cluster`) and a fresh
namespace per test (`namespace`), both backed by `naaice_cluster` — the same code path as
`naaice cluster up`. Set NAAICE_USE_CURRENT_CONTEXT=1 to run against KUBECONFIG's cluster
instead (e.g. kind); tests that need the embedded pod runner then skip."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import pytest

from naaice_cluster import controlplane as cp


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cp.Cluster]:
    """A running cluster with the repo's CRDs installed, for the whole session.

    Builds the pinned binaries first if they are not cached (the Makefile's `binaries` target
    normally did that already)."""
    if os.environ.get("NAAICE_USE_CURRENT_CONTEXT", "").lower() in ("1", "true", "yes"):
        run_dir = tmp_path_factory.mktemp("external-cluster")
        external = cp.attach_current_context(name="pytest", run_dir=run_dir)
        yield external
        cp.stop(external)
        return
    run_dir = tmp_path_factory.mktemp("naaice-cluster") / "run"
    embedded = cp.start_embedded(name=f"pytest-{os.getpid()}", run_dir=run_dir)
    try:
        yield embedded
    finally:
        cp.stop(embedded)


@pytest.fixture
def embedded_cluster(cluster: cp.Cluster) -> cp.Cluster:
    """The session cluster, when it is the embedded one (with the pod runner); else skip."""
    if cluster.external:
        pytest.skip("needs the embedded cluster's pod runner (NAAICE_USE_CURRENT_CONTEXT is set)")
    return cluster


@pytest.fixture
def namespace(cluster: cp.Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists; deleted afterwards."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:40]
    name = f"t-{slug.strip('-')}-{secrets.token_hex(3)}"
    res = cluster.kubectl("create", "namespace", name)
    assert res.returncode == 0, res.stderr
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name).returncode != 0:
        assert time.monotonic() < deadline, f"serviceaccount default never appeared in {name}"
        time.sleep(0.2)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using the cluster fixtures are `cluster` tests (`-m "not cluster"` skips them)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if {"cluster", "namespace", "embedded_cluster"} & set(fixtures):
            item.add_marker(pytest.mark.cluster)
