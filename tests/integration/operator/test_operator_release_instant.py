"""The release instant (`naaice.io/unbound-at`) an operator writes onto a job's Leases before
it records the job's energy and deletes them (docs/design/contracts.md, Allocation): it is the
status's window end, and an operator that finds one already there — left by a replica that
died between annotating and recording the status — closes the window at that instant, not at
its own `now`, so the status and the node agent (which ended the job there) still agree.

The restarted operator has none of the dead one's samples, so its figure covers only what it
saw itself (here: nothing of the window, reported as coverage 0, method none); the instant is
what this pins."""

from __future__ import annotations

import json
import time

from naaice.api import ANNOTATION_UNBOUND_AT, render_bound_at
from tests.integration.operator.lab import Lab, rfc3339_ns, sleep_command


def test_a_restarted_operator_closes_the_energy_window_at_the_release_instant_already_on_the_lease(
    lab: Lab,
) -> None:
    lab.add_naas(1)
    lab.add_bitstream()
    first = lab.start_operator(identity="op-dies")
    lab.create_job("reused", command=sleep_command(3))
    lab.wait("the job to run", lambda: lab.is_true("reused", "Ready"), timeout=60)
    first.kill()
    (lease,) = lab.leases()
    # What the dead replica had written just before it would have recorded the status.
    instant_ns = time.time_ns()
    lab.coord.patch_namespaced_lease(
        lease["metadata"]["name"],
        lab.namespace,
        {"metadata": {"annotations": {ANNOTATION_UNBOUND_AT: render_bound_at(instant_ns)}}},
    )
    lab.start_operator(identity="op-restarted")
    job = lab.wait_terminal("reused", timeout=60)
    assert lab.terminal(job) == "Succeeded", json.dumps(job["status"], indent=1)
    lab.wait("Leases released", lambda: not lab.leases(), timeout=10)
    energy = job["status"]["energy"]
    assert rfc3339_ns(energy["windowEnd"]) == instant_ns, energy
    bound_ns = rfc3339_ns(lease["metadata"]["annotations"]["naaice.io/bound-at"])
    assert rfc3339_ns(energy["windowStart"]) == bound_ns
