"""The agent next to the real operator: a real NAAJob runs on a real software NAA, and the
agent's per-job counter agrees with the NAAJob status up to the release latency.

The operator closes its energy window when it finishes the job and deletes the Lease a few
tens of milliseconds later; the agent learns the release from the Lease's DELETED event. The
difference is exactly that interval's energy (≈ 0.5 % here for a 13 s idle job). With the
proposed `naaice.io/unbound-at` annotation written before the delete, both would cut at the
same nanosecond (unit-tested in tests/unit/device_plugin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.device_plugin.agent_support import running_agent
from tests.integration.operator.lab import Lab, rfc3339_ns, sleep_command


def _job(agent: Any, name: str) -> Any:
    jobs = [j for j in agent.book.snapshot().jobs if j.job.name == name]
    return jobs[0] if len(jobs) == 1 and jobs[0].finished else None


def test_the_agents_job_counter_matches_the_naajob_status_up_to_the_release_latency(
    embedded_cluster: Any, namespace: str, software_naa: Any, tmp_path: Path
) -> None:
    lab = Lab(
        cluster=embedded_cluster, namespace=namespace, naa_factory=software_naa, workdir=tmp_path
    )
    try:
        lab.add_naas(1)
        lab.add_bitstream()
        with running_agent(
            kubeconfig=embedded_cluster.kubeconfig,
            node="agent-with-operator",
            lease_namespace=namespace,
            claim_unassigned=True,
            device_plugin=False,
        ) as agent:
            lab.start_operator()
            lab.create_job("measured", command=sleep_command(8))
            job = lab.wait_terminal("measured", timeout=120)
            assert lab.terminal(job) == "Succeeded", json.dumps(job["status"], indent=1)
            energy = job["status"]["energy"]
            lab.wait("Leases released", lambda: not lab.leases(), timeout=20)
            lab.wait("the agent's job to finish", lambda: _job(agent, "measured"))
            # Final once the attribution watermark passed the release: stable across reads.
            seen: list[float] = []

            def settled() -> bool:
                seen.append(_job(agent, "measured").joules)
                return len(seen) >= 2 and seen[-1] == seen[-2]

            lab.wait("the release to be attributed", settled, interval=1.5)
            ours = _job(agent, "measured")
    finally:
        lab.close()
    window_s = (rfc3339_ns(energy["windowEnd"]) - rfc3339_ns(energy["windowStart"])) / 1e9
    latency_s = ours.bound_ns / 1e9 - window_s
    # Same bind instant (the Lease's bound-at); the agent's window ends at the deletion.
    assert 0.0 <= latency_s < 1.0, (ours.bound_ns, energy)
    assert energy["method"] == "hw_counter"
    status = energy["totalJoules"]
    explained = energy["peakWatts"] * latency_s + 1e-3 * status
    assert ours.joules >= status - 1e-3 * status
    assert ours.joules - status <= explained, (ours.joules, status, latency_s)
