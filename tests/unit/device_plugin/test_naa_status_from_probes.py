"""Pure NAA status decisions: conditions and reasons per probe outcome, transition times,
card health, and reading allocation Leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from device_plugin.book import EnergyBook
from device_plugin.health import card_health, status_from_probe
from device_plugin.leases import ANNOTATION_UNBOUND_AT, LeaseWatcher, binding_from_lease
from device_plugin.management import HealthReport, ProbeFailure
from naaice.api import ANNOTATION_BOUND_AT, LABEL_NAA, render_bound_at
from naaice.energy import NS_PER_S, IntegratorConfig, JobKey, Sample

NOW = datetime(2026, 11, 24, 23, 0, tzinfo=UTC)


def _ready(state: str = "Ready", healthy: bool = True, reason: str = "") -> HealthReport:
    return HealthReport(
        state=state,
        healthy=healthy,
        reason=reason,
        bitstream_name="poet" if state == "Ready" else None,
        bitstream_digest="sha256:" + "a" * 64 if state == "Ready" else None,
        active_connections=0,
    )


def _conds(status) -> dict[str, tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {c.type: (c.status.value, c.reason) for c in status.conditions}


def test_a_ready_runtime_is_ready_healthy_reachable_with_its_bitstream_and_heartbeat() -> None:
    s = status_from_probe(
        previous=None,
        probe=_ready(),
        power_watts=89.0,
        energy_microjoules=5,
        now=NOW,
        generation=3,
    )
    assert _conds(s) == {
        "Ready": ("True", "BitstreamLoaded"),
        "Healthy": ("True", "RuntimeHealthy"),
        "Reachable": ("True", "ManagementAnswered"),
    }
    assert s.loaded_bitstream is not None
    assert s.loaded_bitstream.name == "poet"
    assert s.last_heartbeat == NOW
    assert s.power_watts == 89.0
    assert all(c.observed_generation == 3 for c in s.conditions or [])
    assert card_health(s)[0]


def test_a_refused_connection_makes_the_naa_unreachable_and_keeps_the_last_heartbeat() -> None:
    up = status_from_probe(
        previous=None,
        probe=_ready(),
        power_watts=1.0,
        energy_microjoules=1,
        now=NOW,
        generation=1,
    )
    down = status_from_probe(
        previous=up,
        probe=ProbeFailure(False, "ConnectionRefused", "cannot connect to http://x"),
        power_watts=None,
        energy_microjoules=None,
        now=NOW + timedelta(seconds=5),
        generation=1,
    )
    assert _conds(down) == {
        "Ready": ("False", "Unreachable"),
        "Healthy": ("Unknown", "ConnectionRefused"),
        "Reachable": ("False", "ConnectionRefused"),
    }
    assert down.last_heartbeat == NOW
    assert down.loaded_bitstream == up.loaded_bitstream
    ok, why = card_health(down)
    assert not ok
    assert "cannot connect" in why


def test_a_wrong_token_is_reachable_but_not_ready() -> None:
    s = status_from_probe(
        previous=None,
        probe=ProbeFailure(True, "Unauthorized", "refused the agent's token (401)"),
        power_watts=None,
        energy_microjoules=None,
        now=NOW,
        generation=None,
    )
    assert _conds(s)["Reachable"] == ("True", "ManagementAnswered")
    assert _conds(s)["Ready"] == ("False", "Unauthorized")
    assert not card_health(s)[0]


def test_an_error_state_is_unhealthy_and_flashing_keeps_the_card_healthy() -> None:
    err = status_from_probe(
        previous=None,
        probe=_ready("Error", False, "digest mismatch"),
        power_watts=30.0,
        energy_microjoules=1,
        now=NOW,
        generation=1,
    )
    assert _conds(err)["Healthy"] == ("False", "RuntimeError")
    assert _conds(err)["Ready"] == ("False", "Error")
    assert not card_health(err)[0]
    flashing = status_from_probe(
        previous=None,
        probe=_ready("Flashing", False),
        power_watts=30.0,
        energy_microjoules=1,
        now=NOW,
        generation=1,
    )
    assert _conds(flashing)["Ready"] == ("False", "Flashing")
    assert card_health(flashing)[0]


def test_transition_times_only_move_when_a_condition_changes_status() -> None:
    first = status_from_probe(
        previous=None,
        probe=_ready(),
        power_watts=1.0,
        energy_microjoules=1,
        now=NOW,
        generation=1,
    )
    later = NOW + timedelta(minutes=1)
    same = status_from_probe(
        previous=first,
        probe=_ready(),
        power_watts=2.0,
        energy_microjoules=2,
        now=later,
        generation=1,
    )
    assert [c.last_transition_time for c in same.conditions or []] == [NOW] * 3
    idle = status_from_probe(
        previous=first,
        probe=_ready("Idle"),
        power_watts=2.0,
        energy_microjoules=2,
        now=later,
        generation=1,
    )
    assert _conds(idle)["Ready"] == ("True", "Idle")
    assert all(c.last_transition_time == NOW for c in idle.conditions or [])


def test_an_allocation_lease_names_the_naa_the_job_and_the_bind_time() -> None:
    at = 1_795_000_000_123_456_789
    b = binding_from_lease(
        name="naa-naa-3",
        labels={LABEL_NAA: "naa-3"},
        annotations={ANNOTATION_BOUND_AT: render_bound_at(at)},
        holder="ml/poet/1c2d-uid",
        created_ns=None,
    )
    assert b is not None
    assert (b.naa, b.job, b.bound_at_ns) == ("naa-3", JobKey("ml", "poet", "1c2d-uid"), at)


def test_foreign_leases_are_ignored_and_a_missing_bind_time_falls_back_to_creation() -> None:
    assert (
        binding_from_lease(
            name="naa-x",
            labels={LABEL_NAA: "x"},
            annotations={},
            holder="kube-scheduler",
            created_ns=5,
        )
        is None
    )
    b = binding_from_lease(name="naa-x", labels={}, annotations={}, holder="ml/j/u", created_ns=42)
    assert b is not None
    assert (b.naa, b.bound_at_ns) == ("x", 42)


def _lease_binding(bound: int, unbound: int | None = None):  # type: ignore[no-untyped-def]
    annotations = {ANNOTATION_BOUND_AT: render_bound_at(bound)}
    if unbound is not None:
        annotations[ANNOTATION_UNBOUND_AT] = render_bound_at(unbound)
    return binding_from_lease(
        name="naa-d",
        labels={LABEL_NAA: "d"},
        annotations=annotations,
        holder="ml/j/u",
        created_ns=None,
    )


def test_an_unbound_at_annotation_ends_the_job_exactly_there_not_at_the_deletion() -> None:
    t0 = 1_800_000_000 * NS_PER_S
    book = EnergyBook(config=IntegratorConfig(nominal_period_s=0.1))
    watcher = LeaseWatcher(coordination_api=None, namespace="ns", book=book)
    watcher._apply("naa-d", _lease_binding(t0 + NS_PER_S))
    watcher._apply("naa-d", _lease_binding(t0 + NS_PER_S, t0 + 2_345_678_901))
    watcher._apply("naa-d", _lease_binding(t0 + NS_PER_S, t0 + 2_345_678_901), deleted=True)
    for i in range(40):
        t = t0 + i * NS_PER_S // 10
        book.add_sample("d", Sample(t_ns=t, power_w=100.0), now_ns=t)
    book.commit(until_ns=t0 + 4 * NS_PER_S)
    (job,) = book.snapshot().jobs
    assert job.finished
    assert job.joules == pytest.approx(100.0 * 1.345678901, rel=1e-9)


def test_a_deleted_lease_without_unbound_at_ends_the_job_when_the_deletion_arrives() -> None:
    book = EnergyBook()
    watcher = LeaseWatcher(coordination_api=None, namespace="ns", book=book)
    watcher._apply("naa-d", _lease_binding(1_000))
    assert book.holders() == {"d": JobKey("ml", "j", "u")}
    watcher._apply("naa-d", _lease_binding(1_000), deleted=True)
    assert book.holders() == {}
