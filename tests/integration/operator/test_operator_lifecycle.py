"""The NAAJob lifecycle on the embedded control plane with real software NAAs: placement,
Leases, flashing, NAA Spec injection, pods, release and energy."""

from __future__ import annotations

import json
import math
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from naaice.energy import IntegratorConfig, energy_over_window
from naaice.spec import NaaSpecDocument
from tests.integration.operator.lab import (
    Lab,
    SensorRecorder,
    rfc3339_ns,
    sleep_command,
    spec_probe_command,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_job_runs_to_success_with_its_naa_spec_flashed_naas_and_energy(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_naas(2)
    lab.add_bitstream()
    metrics_port = free_port()
    lab.start_operator(extra=["--metrics-port", str(metrics_port)])
    out = tmp_path / "probe"
    with SensorRecorder(lab.naas) as recorder:
        lab.create_job("happy", command=spec_probe_command(out), count=2)
        job = lab.wait_terminal("happy")
    assert lab.terminal(job) == "Succeeded", json.dumps(job["status"], indent=1)
    status = job["status"]

    # The pod saw the NAA Spec in all three forms, matching the assignment.
    assigned = status["assignedNAAs"]
    assert sorted(a["naa"] for a in assigned) == sorted(lab.naas)
    want = ",".join(f"{a['address']}:12345:1:1" for a in assigned)
    assert status["naaSpec"] == want
    (record,) = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert record["NAA_SPEC"] == want
    document = NaaSpecDocument.from_json(record["JSON"])
    assert [e.naa for e in document.entries] == [a["naa"] for a in assigned]
    assert document.render_original() == want
    assert NaaSpecDocument.from_json(record["FILE"]) == document

    # Each NAA holds the bitstream's digest.
    digest = assigned[0]["digest"]
    for naa in lab.naas.values():
        assert naa.health()["loadedBitstream"]["digest"] == digest

    # The NAAs are free again.
    lab.wait("Leases released", lambda: not lab.leases(), timeout=10)

    # Energy: per NAA and total, over the bind–unbind window, from the NAAs' counters.
    energy = status["energy"]
    per = {e["naa"]: e["joules"] for e in energy["perNAA"]}
    assert set(per) == set(lab.naas)
    assert math.isclose(sum(per.values()), energy["totalJoules"], rel_tol=1e-6)
    assert energy["coverage"] > 0.99
    assert all(j > 0 for j in per.values())
    # Recomputed from our own 20 Hz readings of the same counters over the same window.
    start, end = rfc3339_ns(energy["windowStart"]), rfc3339_ns(energy["windowEnd"])
    for name, joules in per.items():
        ours = energy_over_window(
            samples=recorder.samples[name],
            start_ns=start,
            end_ns=end,
            config=IntegratorConfig(nominal_period_s=0.05, max_gap_s=1.0),
        )
        assert ours.coverage > 0.95
        assert math.isclose(joules, ours.joules, rel_tol=0.03, abs_tol=0.5), (name, joules, ours)
    for cond in ("Scheduled", "Flashed", "Succeeded"):
        assert lab.condition(job, cond)["status"] == "True"

    # `kubectl describe` tells the same story: the decision trace, the flash and the energy.
    def normal_events() -> dict[str, str]:
        return {e["reason"]: e["message"] for e in lab.events("happy") if e["type"] == "Normal"}

    lab.wait("Normal events", lambda: {"Scheduled", "Flashed", "Completed"} <= set(normal_events()))
    told = normal_events()
    assert told["Scheduled"].startswith(f"NAA Spec {want}"), told
    assert "digest loaded" in told["Flashed"], told
    assert f"energy {energy['totalJoules']} J" in told["Completed"], told

    # The operator's own metrics saw the placement and both flashes.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    counts = {
        s.name: s.value for f in families.values() for s in f.samples if s.name.endswith("_count")
    }
    assert counts["naaice_operator_placement_seconds_count"] >= 1
    assert counts["naaice_operator_flash_seconds_count"] == 2
    assert "naaice_operator_lease_conflicts" in families
    assert "naaice_operator_pending_jobs" in families


def test_a_job_waits_with_a_reason_per_naa_and_starts_when_one_frees(lab: Lab) -> None:
    lab.add_naas(1)
    lab.add_bitstream()
    lab.start_operator()
    lab.create_job("first", command=sleep_command(4))
    lab.wait("first to hold its NAA", lambda: lab.is_true("first", "Scheduled"))
    lab.create_job("second", command=sleep_command(0))
    (naa,) = lab.naas
    why = f"{naa}: leased: held by {lab.namespace}/first/"
    pending = lab.wait(
        "second to report why it waits",
        lambda: (
            (c := lab.condition(lab.job("second"), "Scheduled"))
            and c["status"] == "False"
            and why in c["message"]
            and c
        ),
    )
    assert pending["reason"] == "NoFreeNAA"
    lab.wait_terminal("first", timeout=30)
    second = lab.wait_terminal("second", timeout=30)
    assert lab.terminal(second) == "Succeeded"
    assert second["status"]["assignedNAAs"][0]["naa"] == naa


def test_a_suspended_job_waits_says_so_runs_when_resumed_and_goes_after_its_ttl(
    lab: Lab,
) -> None:
    lab.add_naas(1)
    lab.add_bitstream()
    lab.start_operator()
    lab.create_job("later", command=sleep_command(0), suspend=True, ttlSecondsAfterFinished=2)
    held = lab.wait(
        "the Suspended reason",
        lambda: (
            (c := lab.condition(lab.job("later"), "Scheduled")) and c["reason"] == "Suspended" and c
        ),
    )
    assert held["status"] == "False"
    assert not lab.leases()
    assert not lab.pods("later")
    lab.custom.patch_namespaced_custom_object(
        "naaice.io", "v1alpha1", lab.namespace, "naajobs", "later", {"spec": {"suspend": False}}
    )
    job = lab.wait_terminal("later", timeout=60)
    assert lab.terminal(job) == "Succeeded"
    lab.wait(
        "the finished job to be deleted after its TTL", lambda: lab.job("later") is None, timeout=30
    )
