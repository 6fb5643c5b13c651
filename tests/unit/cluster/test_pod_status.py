"""Kubelet's pod phase rules as the pod runner applies them (pure)."""

from __future__ import annotations

from naaice_cluster.podrunner.status import ContainerRecord, Terminated, pod_phase, pod_status


def running(name: str = "c") -> ContainerRecord:
    return ContainerRecord(name, "img", waiting_reason=None, running_since="t0", pid=1)


def exited(code: int, name: str = "c") -> ContainerRecord:
    rec = ContainerRecord(name, "img", waiting_reason=None)
    rec.terminated = Terminated(exit_code=code, started_at="t0", finished_at="t1")
    return rec


def test_a_pod_waiting_for_its_first_start_is_pending() -> None:
    assert pod_phase(restart_policy="Never", init=[], containers=[ContainerRecord("c", "i")]) == (
        "Pending"
    )


def test_any_running_container_makes_the_pod_running() -> None:
    assert pod_phase(restart_policy="Never", init=[], containers=[running(), exited(1, "d")]) == (
        "Running"
    )


def test_all_zero_exits_succeed_unless_restart_always() -> None:
    done = [exited(0), exited(0, "d")]
    assert pod_phase(restart_policy="Never", init=[], containers=done) == "Succeeded"
    assert pod_phase(restart_policy="OnFailure", init=[], containers=done) == "Succeeded"
    assert pod_phase(restart_policy="Always", init=[], containers=done) == "Running"


def test_a_non_zero_exit_fails_only_with_restart_never() -> None:
    failed = [exited(0), exited(2, "d")]
    assert pod_phase(restart_policy="Never", init=[], containers=failed) == "Failed"
    assert pod_phase(restart_policy="OnFailure", init=[], containers=failed) == "Running"


def test_a_failed_init_container_fails_a_never_pod_and_holds_others_pending() -> None:
    pending = [ContainerRecord("c", "i")]
    assert pod_phase(restart_policy="Never", init=[exited(1, "i")], containers=pending) == "Failed"
    assert pod_phase(restart_policy="OnFailure", init=[exited(1, "i")], containers=pending) == (
        "Pending"
    )


def test_status_reports_exit_code_signal_and_readiness() -> None:
    killed = exited(137)
    killed.terminated.signal = 9  # type: ignore[union-attr]
    status = pod_status(
        restart_policy="Never",
        init=[],
        containers=[killed],
        host_ip="127.0.0.1",
        start_time="t0",
        sandbox_ready=True,
        transition_time="t1",
    )
    assert status["phase"] == "Failed"
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["signal"], term["reason"]) == (137, 9, "Error")
    ready = {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}
    assert ready["Ready"] == ("False", "PodCompleted")
    assert ready["PodScheduled"] == ("True", None)
