"""Energy over a bind–unbind window, condition merging, and the lifecycle decision."""

from __future__ import annotations

import math

import pytest
from naa_operator.core import conditions as c
from naa_operator.core.energy import CounterSample, integrate_window
from naa_operator.core.lifecycle import JobState, PodView, Step, decide, pod_name

S = 1_000_000_000


def counter(watts: float, t0: int, times: list[int]) -> list[CounterSample]:
    return [CounterSample(t_ns=t, energy_uj=round(watts * (t - t0) / 1e3)) for t in times]


def test_constant_power_is_integrated_exactly_between_edges_inside_samples() -> None:
    samples = counter(89.0, 0, [0, 3 * S, 7 * S, 11 * S])
    got = integrate_window(samples=samples, start_ns=S + S // 3, end_ns=9 * S)
    assert math.isclose(got.joules, 89.0 * (9 - 1 - 1 / 3), rel_tol=1e-9)
    assert got.coverage == 1.0


def test_back_to_back_windows_on_one_naa_add_up_to_the_counter_delta() -> None:
    samples = [
        CounterSample(0, 0),
        CounterSample(2 * S, 50_000_000),
        CounterSample(5 * S, 80_000_000),
    ]
    a = integrate_window(samples=samples, start_ns=0, end_ns=S + 123)
    b = integrate_window(samples=samples, start_ns=S + 123, end_ns=5 * S)
    assert math.isclose(a.joules + b.joules, 80.0, rel_tol=1e-12)


def test_parts_of_the_window_outside_the_samples_are_uncovered() -> None:
    samples = counter(10.0, 0, [2 * S, 4 * S])
    got = integrate_window(samples=samples, start_ns=0, end_ns=8 * S)
    assert math.isclose(got.joules, 20.0, rel_tol=1e-9)
    assert math.isclose(got.coverage, 0.25)


def test_a_counter_reset_loses_only_its_interval_and_never_goes_negative() -> None:
    samples = [
        CounterSample(0, 1_000_000),
        CounterSample(S, 2_000_000),
        CounterSample(2 * S, 500_000),  # the NAA restarted
        CounterSample(3 * S, 1_500_000),
    ]
    got = integrate_window(samples=samples, start_ns=0, end_ns=3 * S)
    assert math.isclose(got.joules, 2.0)
    assert math.isclose(got.coverage, 2 / 3)


def test_duplicate_and_out_of_order_samples_do_not_change_the_result() -> None:
    base = counter(5.0, 0, [0, S, 2 * S, 3 * S])
    noisy = [base[2], base[0], base[1], base[1], base[3], base[0]]
    assert integrate_window(samples=noisy, start_ns=0, end_ns=3 * S) == integrate_window(
        samples=base, start_ns=0, end_ns=3 * S
    )


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    one = c.set_condition(
        (),
        type=c.SCHEDULED,
        status="False",
        reason="NoFreeNAA",
        message="a",
        generation=1,
        now="t1",
    )
    two = c.set_condition(
        one,
        type=c.SCHEDULED,
        status="False",
        reason="NoFreeNAA",
        message="b",
        generation=2,
        now="t2",
    )
    three = c.set_condition(
        two, type=c.SCHEDULED, status="True", reason="Placed", message="c", generation=2, now="t3"
    )
    assert two[0].last_transition_time == "t1"
    assert two[0].message == "b"
    assert two[0].observed_generation == 2
    assert three[0].last_transition_time == "t3"
    assert c.Condition.from_dict(three[0].to_dict()) == three[0]


def conds(*true: str) -> tuple[c.Condition, ...]:
    out: tuple[c.Condition, ...] = ()
    for t in true:
        out = c.set_condition(
            out, type=t, status="True", reason="x", message="", generation=1, now="t"
        )
    return out


def state(**kw: object) -> JobState:
    base: dict[str, object] = {"generation": 1, "conditions": ()}
    base.update(kw)
    return JobState(**base)  # type: ignore[arg-type]


A = frozenset({"naa-a"})


@pytest.mark.parametrize(
    ("st", "step"),
    [
        (state(deleting=True, held=A), Step.RELEASE_AND_FORGET),
        (state(), Step.SCHEDULE),
        (state(held=A), Step.ROLLBACK),
        (state(pods=(PodView("j-a0-0", 0, "Running", deleting=True),)), Step.ROLLBACK),
        (state(pods=(PodView("j-a0-0", 0, "Failed"),)), Step.SCHEDULE),
        (state(assigned=A, held=frozenset()), Step.LOST_LEASES),
        (state(assigned=A, held=A), Step.FLASH),
        (state(assigned=A, held=A, conditions=conds(c.FLASHED)), Step.CREATE_PODS),
        (
            state(
                assigned=A,
                held=A,
                conditions=conds(c.FLASHED),
                pods=(PodView("j-a0-0", 0, "Running", ready=True),),
            ),
            Step.MARK_READY,
        ),
        (
            state(
                assigned=A,
                held=A,
                conditions=conds(c.FLASHED, c.READY),
                pods=(PodView("j-a0-0", 0, "Running", ready=True),),
            ),
            Step.WATCH,
        ),
        (
            state(
                assigned=A,
                held=A,
                conditions=conds(c.FLASHED),
                pods=(PodView("j-a0-0", 0, "Failed"),),
            ),
            Step.ATTEMPT_FAILED,
        ),
        (
            state(
                assigned=A,
                held=A,
                conditions=conds(c.FLASHED),
                failed_attempts=1,
                pods=(PodView("j-a0-0", 0, "Failed"),),
            ),
            Step.CLEAN_OLD_PODS,
        ),
        (
            state(
                assigned=A,
                held=A,
                conditions=conds(c.FLASHED),
                pods=(PodView("j-a0-0", 0, "Succeeded"),),
            ),
            Step.SUCCEED,
        ),
        (state(conditions=conds(c.SUCCEEDED), held=A), Step.RELEASE),
        (state(conditions=conds(c.FAILED)), Step.NOTHING),
        (
            state(conditions=conds(c.FAILED), pods=(PodView("j-a0-0", 0, "Running"),)),
            Step.RELEASE,
        ),
        (state(suspended=True, assigned=A, held=A), Step.SUSPEND),
        (state(suspended=True), Step.SUSPEND),
        (
            state(
                suspended=True,
                conditions=c.set_condition(
                    (),
                    type=c.SCHEDULED,
                    status="False",
                    reason="Suspended",
                    message="",
                    generation=1,
                    now="t",
                ),
            ),
            Step.NOTHING,
        ),
    ],
)
def test_each_observed_state_leads_to_one_next_step(st: JobState, step: Step) -> None:
    assert decide(state=st, now=0.0).step is step


def test_finished_jobs_are_deleted_after_their_ttl() -> None:
    st = state(conditions=conds(c.SUCCEEDED), ttl_seconds=30, completion_time=100.0)
    assert decide(state=st, now=110.0).step is Step.WAIT_TTL
    assert decide(state=st, now=110.0).after == pytest.approx(20.0)
    assert decide(state=st, now=131.0).step is Step.DELETE_JOB


def test_pod_names_are_deterministic_per_attempt_and_replica() -> None:
    assert pod_name("train", 2, 0) == "train-a2-0"
