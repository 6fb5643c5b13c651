"""Status conditions of an NAAJob (Kubernetes API conventions): pure merge helpers.

Called by `services.jobs` and `services.scheduler` to compute the next `status.conditions`;
`lastTransitionTime` moves only when a condition's status changes, so writing the same
decision twice changes nothing (handlers may run twice after a crash)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

SCHEDULED = "Scheduled"
FLASHED = "Flashed"
READY = "Ready"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
ALL_TYPES = (SCHEDULED, FLASHED, READY, SUCCEEDED, FAILED)

Status = Literal["True", "False", "Unknown"]

#: Kubernetes caps condition messages at 32 KiB; stay well below.
MAX_MESSAGE = 4000


@dataclass(frozen=True, slots=True)
class Condition:
    """One entry of `status.conditions`."""

    type: str
    status: Status
    reason: str
    message: str
    observed_generation: int
    last_transition_time: str

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "observedGeneration": self.observed_generation,
            "lastTransitionTime": self.last_transition_time,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, object]) -> Condition:
        status = str(raw.get("status", "Unknown"))
        return cls(
            type=str(raw.get("type", "")),
            status=status if status in ("True", "False") else "Unknown",  # type: ignore[arg-type]
            reason=str(raw.get("reason", "")),
            message=str(raw.get("message", "")),
            observed_generation=int(str(raw.get("observedGeneration", 0) or 0)),
            last_transition_time=str(raw.get("lastTransitionTime", "")),
        )


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,
    status: Status,
    reason: str,
    message: str,
    generation: int,
    now: str,
) -> tuple[Condition, ...]:
    """Return `conditions` with `type` set; order is kept, a new type is appended."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    out: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type:
            out.append(cond)
            continue
        found = True
        moved = cond.status != status
        out.append(
            replace(
                cond,
                status=status,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=now if moved else cond.last_transition_time,
            )
        )
    if not found:
        out.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message,
                observed_generation=generation,
                last_transition_time=now,
            )
        )
    return tuple(out)


def get(conditions: Sequence[Condition], type: str) -> Condition | None:
    for cond in conditions:
        if cond.type == type:
            return cond
    return None


def is_true(conditions: Sequence[Condition], type: str) -> bool:
    cond = get(conditions, type)
    return cond is not None and cond.status == "True"


def is_terminal(conditions: Sequence[Condition]) -> bool:
    """A job is finished once `Succeeded` or `Failed` is True; nothing undoes that."""
    return is_true(conditions, SUCCEEDED) or is_true(conditions, FAILED)
