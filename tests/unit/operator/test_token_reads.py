"""NAA management tokens: one Secret read serves every NAA whose token it holds and every caller
that asks meanwhile; a failed read is not remembered; a missing key names the field to fix."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from naa_operator.adapters.kube import Kube, KubeError
from naa_operator.adapters.management import Management
from naa_operator.services import views
from naa_operator.services.controller import Controller, OperatorConfig


class CountingKube(Kube):
    """The real facade with its Secret read answered locally (no apiserver in unit tests)."""

    def __init__(self) -> None:
        super().__init__(k8s.ApiClient(k8s.Configuration()), threads=1)
        self.reads: list[tuple[str, str]] = []
        self.fail_next = False

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        self.reads.append((namespace, name))
        await asyncio.sleep(0.01)  # concurrent callers arrive while this read is under way
        if self.fail_next:
            self.fail_next = False
            raise KubeError("read Secret", RuntimeError("apiserver unavailable"))
        return {f"naa-{i}": f"token-{i}\n".encode() for i in range(4)}


@pytest.fixture
def setup() -> Iterator[tuple[Controller, CountingKube]]:
    kube = CountingKube()
    ctl = Controller(
        kube=kube,
        management=Management(),
        config=OperatorConfig(namespace="ns", lease_namespace="ns", identity="t"),
    )
    for i in range(5):
        key = f"naa-{i}" if i < 4 else "absent"
        ref = views.SecretRef(namespace="ns", name="naa-tokens", key=key)
        ctl._access[f"naa-{i}"] = views.NAAAccess(name=f"naa-{i}", endpoint="https://x", token=ref)
    yield ctl, kube
    kube.close()


def test_one_read_serves_all_naas_and_concurrent_callers(
    setup: tuple[Controller, CountingKube],
) -> None:
    ctl, kube = setup

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(ctl.token(f"naa-{i % 4}") for i in range(32))))

    tokens = asyncio.run(burst())
    assert tokens == [f"token-{i % 4}" for i in range(32)]
    assert kube.reads == [("ns", "naa-tokens")]


def test_a_failed_read_is_retried_by_the_next_caller(
    setup: tuple[Controller, CountingKube],
) -> None:
    ctl, kube = setup
    kube.fail_next = True

    async def twice() -> str:
        with pytest.raises(KubeError):
            await ctl.token("naa-1")
        return await ctl.token("naa-1")

    assert asyncio.run(twice()) == "token-1"
    assert len(kube.reads) == 2


def test_a_missing_key_names_the_field_to_fix(setup: tuple[Controller, CountingKube]) -> None:
    ctl, _ = setup
    with pytest.raises(KubeError, match=r"tokenSecretRef\.key"):
        asyncio.run(ctl.token("naa-4"))
