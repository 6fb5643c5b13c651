"""Resilience: an operator SIGKILLed at random points of the lifecycle, and two operator
replicas at once. Exclusivity is checked on what really ran: each pod's heartbeats on its NAAs."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.integration.operator.lab import Lab, heartbeat_command, overlapping_holders


def test_an_operator_killed_at_random_points_still_finishes_every_job_without_leaks(
    lab: Lab, tmp_path: Path
) -> None:
    rng = random.Random(20261124)
    lab.add_naas(3)
    lab.add_bitstream()
    beats = tmp_path / "beats"
    names = [f"chaos-{i}" for i in range(10)]
    for name in names:
        lab.create_job(
            name, command=heartbeat_command(beats, rng.uniform(0.3, 1.2)), backoff_limit=20
        )
    kills = 0
    while kills < 20:
        op = lab.start_operator(identity=f"op-{kills}")
        time.sleep(rng.uniform(0.8, 3.0))
        op.kill()
        kills += 1
    lab.start_operator(identity="op-final")
    for name in names:
        job = lab.wait_terminal(name, timeout=90)
        assert lab.terminal(job) == "Succeeded", job["status"]
    lab.wait("every Lease released", lambda: not lab.leases(), timeout=15)
    assert len(list(beats.glob("*"))) >= len(names)
    assert overlapping_holders(beats) == []
    assert all(p["status"]["phase"] in ("Succeeded", "Failed") for p in lab.pods())


def test_two_operator_replicas_never_give_one_naa_to_two_jobs(lab: Lab, tmp_path: Path) -> None:
    lab.add_naas(4)
    lab.add_bitstream()
    beats = tmp_path / "beats"
    lab.start_operator(identity="replica-a", peering=True)
    lab.start_operator(identity="replica-b", peering=True)
    names = [f"pair-{i}" for i in range(30)]
    for name in names:
        lab.create_job(name, command=heartbeat_command(beats, 0.2), backoff_limit=3)
    for name in names:
        job = lab.wait_terminal(name, timeout=120)
        assert lab.terminal(job) == "Succeeded", job["status"]
    lab.wait("every Lease released", lambda: not lab.leases(), timeout=15)
    assert len(list(beats.glob("*"))) >= len(names)
    assert overlapping_holders(beats) == []
    leader = lab.coord.read_namespaced_lease("naaice-operator-leader", lab.namespace)
    assert leader.spec.holder_identity in ("replica-a", "replica-b")
