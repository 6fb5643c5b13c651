"""Which watch events make the controller reconcile a job: its own writes that it follows up
itself do not, anybody else's do; a pod's updates only when what the decision reads changed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from naa_operator.adapters.kube import Kube
from naa_operator.adapters.management import Management
from naa_operator.services.controller import Controller, OperatorConfig


@pytest.fixture
def controller() -> Iterator[Controller]:
    kube = Kube(k8s.ApiClient(k8s.Configuration()), threads=1)
    ctl = Controller(
        kube=kube,
        management=Management(),
        config=OperatorConfig(namespace="ns", lease_namespace="ns", identity="t"),
    )
    yield ctl
    kube.close()
    loop = getattr(ctl, "_test_loop", None)
    if loop is not None:
        loop.close()


def queued(ctl: Controller) -> list[str]:
    async def drain() -> list[str]:
        keys = []
        while True:
            try:
                key = await asyncio.wait_for(ctl.queue.get(), 0.01)
            except TimeoutError:
                return keys
            ctl.queue.done(key)
            keys.append(key)

    # One loop for the whole test: the queue binds to the first loop that waits on it.
    loop = getattr(ctl, "_test_loop", None)
    if loop is None:
        loop = asyncio.new_event_loop()
        setattr(ctl, "_test_loop", loop)  # noqa: B010 - test-only attribute
    return loop.run_until_complete(drain())


def job(rv: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "j", "resourceVersion": rv}, "status": status}


def pod(phase: str, **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": "j-0-0",
            "uid": "u1",
            "labels": {"naaice.io/naajob": "j"},
        },
        "status": {"phase": phase, **extra},
    }


def test_an_event_reporting_the_controllers_own_write_is_not_reconciled_again(
    controller: Controller,
) -> None:
    controller._wrote("ns/j", job("7"))
    controller.job_event("MODIFIED", job("7", assignedNAAs=[{"naa": "a"}]))
    assert queued(controller) == []


def test_a_later_write_by_someone_else_is_reconciled(controller: Controller) -> None:
    controller._wrote("ns/j", job("7"))
    controller.job_event("MODIFIED", job("8", assignedNAAs=[{"naa": "a"}]))
    assert queued(controller) == ["ns/j"]


def test_a_deleted_job_is_reconciled_even_at_the_version_the_controller_wrote(
    controller: Controller,
) -> None:
    controller._wrote("ns/j", job("7"))
    controller.job_event("DELETED", job("7"))
    assert queued(controller) == ["ns/j"]


def test_a_job_waiting_for_naas_triggers_a_scheduling_pass(controller: Controller) -> None:
    controller.job_event("ADDED", job("1"))
    assert controller._schedule.is_set()
    assert queued(controller) == ["ns/j"]


def test_a_pods_update_that_changes_nothing_the_decision_reads_is_not_reconciled(
    controller: Controller,
) -> None:
    controller.pod_event("ADDED", pod("Pending"))
    assert queued(controller) == ["ns/j"]
    bound = pod("Pending")
    bound["spec"] = {"nodeName": "n1"}
    controller.pod_event("MODIFIED", bound)
    assert queued(controller) == []
    controller.pod_event("MODIFIED", pod("Succeeded"))
    assert queued(controller) == ["ns/j"]
    controller.pod_event("DELETED", pod("Succeeded"))
    assert queued(controller) == ["ns/j"]
