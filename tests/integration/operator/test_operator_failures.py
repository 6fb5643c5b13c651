"""Failure paths on the embedded control plane: a bitstream that cannot be flashed, an NAA that
dies while its job runs, and an NAAJob deleted mid-run."""

from __future__ import annotations

import signal

from tests.integration.operator.lab import Lab, sleep_command


def test_a_flash_failure_retries_within_backoff_limit_then_fails_and_frees_the_naas(
    lab: Lab,
) -> None:
    lab.add_naas(2)
    lab.add_bitstream(digest="sha256:" + "0" * 64)  # not the artifact's digest
    lab.start_operator()
    lab.create_job("badflash", command=sleep_command(0), backoff_limit=1)
    job = lab.wait_terminal("badflash", timeout=60)
    assert lab.terminal(job) == "Failed"
    failed = lab.condition(job, "Failed")
    assert failed is not None
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "flash failed" in failed["message"]
    assert job["status"]["failedAttempts"] == 2
    lab.wait("Leases released", lambda: not lab.leases(), timeout=10)
    assert not lab.pods("badflash")
    reasons = {e["reason"] for e in lab.events("badflash")}
    assert {"AttemptFailed", "BackoffLimitExceeded"} <= reasons


def test_an_naa_that_dies_mid_job_is_replaced_and_the_job_succeeds_on_another(lab: Lab) -> None:
    lab.add_naas(2)
    lab.add_bitstream()
    lab.start_operator()
    lab.create_job("survivor", command=sleep_command(8), backoff_limit=2)
    first = lab.wait(
        "the first attempt to run",
        lambda: lab.is_true("survivor", "Ready") and lab.job("survivor"),
        timeout=30,
    )
    (victim,) = [a["naa"] for a in first["status"]["assignedNAAs"]]
    lab.naas[victim].process.send_signal(signal.SIGKILL)
    job = lab.wait_terminal("survivor", timeout=60)
    assert lab.terminal(job) == "Succeeded"
    assert job["status"]["failedAttempts"] == 1
    (final,) = [a["naa"] for a in job["status"]["assignedNAAs"]]
    assert final != victim
    lab.wait("Leases released", lambda: not lab.leases(), timeout=10)


def test_deleting_a_running_job_removes_its_pods_and_frees_its_naas(lab: Lab) -> None:
    lab.add_naas(1)
    lab.add_bitstream()
    lab.start_operator()
    lab.create_job("doomed", command=sleep_command(60))
    lab.wait("the job to run", lambda: lab.is_true("doomed", "Ready"), timeout=30)
    assert lab.leases()
    lab.delete_job("doomed")
    lab.wait("the job to be gone", lambda: lab.job("doomed") is None, timeout=30)
    lab.wait("its pods to be gone", lambda: not lab.pods("doomed"), timeout=30)
    assert not lab.leases()
