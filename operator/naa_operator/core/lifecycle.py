"""The NAAJob state machine as one pure decision: given what the API says now, what next?

Called by `services.jobs` on every reconcile of a job. The decision depends only on the
observed state (conditions, Leases held, pods), never on memory of earlier runs, so an operator
that was SIGKILLed anywhere picks up exactly where the cluster is. Placement itself is decided
by `core.placement` in the scheduler's pass; this module decides everything around it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from naa_operator.core import conditions as cond
from naa_operator.core.conditions import Condition

POD_SUCCEEDED = "Succeeded"
POD_FAILED = "Failed"


class Step(enum.Enum):
    """What the job needs next."""

    RELEASE_AND_FORGET = "release-and-forget"  # being deleted: pods, Leases, finalizer
    RELEASE = "release"  # finished but still holds Leases
    DELETE_JOB = "delete-job"  # ttlSecondsAfterFinished passed
    WAIT_TTL = "wait-ttl"
    SUSPEND = "suspend"  # spec.suspend: drop pods and NAAs, keep the job
    SCHEDULE = "schedule"  # waits for the scheduler's pass
    ROLLBACK = "rollback"  # holds Leases or pods its status does not account for
    LOST_LEASES = "lost-leases"  # status says scheduled, but a Lease is gone or not ours
    FLASH = "flash"
    CREATE_PODS = "create-pods"
    CLEAN_OLD_PODS = "clean-old-pods"
    ATTEMPT_FAILED = "attempt-failed"
    SUCCEED = "succeed"
    MARK_READY = "mark-ready"
    WATCH = "watch"  # pods are running; nothing to do until they change
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class PodView:
    """A pod of the job, as the decision needs it."""

    name: str
    attempt: int
    phase: str
    ready: bool = False
    deleting: bool = False
    message: str = ""


@dataclass(frozen=True, slots=True)
class JobState:
    """Everything the decision reads about one NAAJob."""

    generation: int
    conditions: tuple[Condition, ...]
    deleting: bool = False
    suspended: bool = False
    replicas: int = 1
    backoff_limit: int = 2
    ttl_seconds: int | None = None
    #: NAA names in `status.assignedNAAs`.
    assigned: frozenset[str] = frozenset()
    #: NAA names whose Lease names this job as holder.
    held: frozenset[str] = frozenset()
    failed_attempts: int = 0
    completion_time: float | None = None
    pods: tuple[PodView, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Decision:
    step: Step
    #: For WAIT_TTL: seconds until the job may be deleted.
    after: float = 0.0
    message: str = ""


def _live(pods: Sequence[PodView]) -> bool:
    """Pods whose processes may still run (deleting ones included): while any exists, the
    job's NAAs must not be released, or a new holder could share them with a leftover pod."""
    return any(p.phase not in (POD_SUCCEEDED, POD_FAILED) for p in pods)


def decide(*, state: JobState, now: float) -> Decision:
    """The next step for a job; `now` is wall-clock seconds (only TTL uses it)."""
    if state.deleting:
        return Decision(Step.RELEASE_AND_FORGET)
    if cond.is_terminal(state.conditions):
        if state.held or _live(state.pods):
            return Decision(Step.RELEASE)
        if state.ttl_seconds is not None and state.completion_time is not None:
            left = state.completion_time + state.ttl_seconds - now
            if left <= 0:
                return Decision(Step.DELETE_JOB)
            return Decision(Step.WAIT_TTL, after=left)
        return Decision(Step.NOTHING)
    if state.suspended:
        if state.held or state.assigned or _live(state.pods):
            return Decision(Step.SUSPEND)
        scheduled = cond.get(state.conditions, cond.SCHEDULED)
        if scheduled is None or scheduled.reason != "Suspended":
            return Decision(Step.SUSPEND)  # only to say so in the Scheduled condition
        return Decision(Step.NOTHING)
    if not state.assigned:
        if state.held or _live(state.pods):
            # Leases acquired by a pass that died before writing status, or an attempt that
            # failed: drain pods, then give the NAAs back, then wait for placement.
            return Decision(Step.ROLLBACK)
        return Decision(Step.SCHEDULE)
    if state.held != state.assigned:
        missing = sorted(state.assigned - state.held)
        return Decision(Step.LOST_LEASES, message=f"Leases of {missing} are no longer held")
    if not cond.is_true(state.conditions, cond.FLASHED):
        return Decision(Step.FLASH)
    attempt = state.failed_attempts
    old = [p for p in state.pods if p.attempt != attempt and not p.deleting]
    if old:
        return Decision(Step.CLEAN_OLD_PODS)
    current = [p for p in state.pods if p.attempt == attempt and not p.deleting]
    failed = [p for p in current if p.phase == POD_FAILED]
    if failed:
        return Decision(
            Step.ATTEMPT_FAILED,
            message="; ".join(f"pod {p.name} failed: {p.message or 'no message'}" for p in failed),
        )
    if len(current) < state.replicas:
        return Decision(Step.CREATE_PODS)
    if all(p.phase == POD_SUCCEEDED for p in current):
        return Decision(Step.SUCCEED)
    if all(p.ready or p.phase == POD_SUCCEEDED for p in current) and not cond.is_true(
        state.conditions, cond.READY
    ):
        return Decision(Step.MARK_READY)
    return Decision(Step.WATCH)


def attempts_exhausted(*, failed_attempts: int, backoff_limit: int) -> bool:
    """Like a batch Job: `backoffLimit` retries are allowed after the first attempt."""
    return failed_attempts > backoff_limit


def pod_name(job: str, attempt: int, replica: int) -> str:
    """Deterministic pod names make creation idempotent: a second operator (or the same one
    after a crash) that creates the same pod gets a 409 instead of a duplicate."""
    return f"{job}-a{attempt}-{replica}"


def expected_pods(*, job: str, attempt: int, replicas: int) -> Sequence[str]:
    return [pod_name(job, attempt, r) for r in range(replicas)]
