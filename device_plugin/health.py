"""Pure: turn one health probe of an NAA into its `NetworkAttachedAccelerator` status
(Ready / Healthy / Reachable conditions with reasons, loaded bitstream, heartbeat, power).

Called by `device_plugin.inventory` after every probe round; tested without a cluster.
Conditions keep their `lastTransitionTime` while their status does not change, as the API
conventions require, so writing the same probe result twice changes nothing.
"""

from __future__ import annotations

import re
from datetime import datetime

from device_plugin.management import HealthReport, ProbeFailure
from naaice.api import (
    Condition,
    ConditionStatus,
    LoadedBitstream,
    NAAConditionType,
    NAAStatus,
    find_condition,
)

__all__ = ["card_health", "status_from_probe"]

_REASON_OK = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def _reason(word: str, fallback: str) -> str:
    camel = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", word))
    return camel if camel and _REASON_OK.match(camel) else fallback


def _condition(
    *,
    previous: NAAStatus | None,
    type_: NAAConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> Condition:
    old = find_condition(previous.conditions if previous else None, type_.value)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(
        type=type_.value,
        status=status,
        reason=reason,
        message=message[:32768],
        last_transition_time=since,
        observed_generation=generation,
    )


def status_from_probe(
    *,
    previous: NAAStatus | None,
    probe: HealthReport | ProbeFailure,
    power_watts: float | None,
    energy_microjoules: int | None,
    now: datetime,
    generation: int | None,
) -> NAAStatus:
    """The NAA status after `probe`.

    Reachable: the management endpoint answered (True even for 401: it is there, the token is
    wrong). Healthy: the runtime says so; Unknown when we could not ask. Ready: reachable,
    healthy and not flashing — what placement requires."""
    true, false, unknown = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN
    if isinstance(probe, ProbeFailure):
        reachable = (true, "ManagementAnswered", probe.message) if probe.reachable else None
        if reachable is None:
            reachable = (false, probe.reason, probe.message)
        healthy = (unknown, probe.reason, f"health unknown: {probe.message}")
        ready = (false, probe.reason if probe.reachable else "Unreachable", probe.message)
        loaded = previous.loaded_bitstream if previous else None
        heartbeat = now if probe.reachable else (previous.last_heartbeat if previous else None)
    else:
        reachable = (true, "ManagementAnswered", "the management endpoint answered /v1/health")
        state_reason = _reason(probe.state, "UnknownState")
        detail = f"runtime state {probe.state}" + (f": {probe.reason}" if probe.reason else "")
        if probe.healthy:
            healthy = (true, "RuntimeHealthy", detail)
        else:
            healthy = (false, "Runtime" + state_reason, detail)
        if probe.healthy and probe.state == "Ready":
            ready = (true, "BitstreamLoaded", f"{probe.bitstream_name} loaded and serving")
        elif probe.healthy and probe.state == "Idle":
            ready = (true, "Idle", "no bitstream loaded; ready to be flashed")
        else:
            ready = (false, state_reason, detail)
        loaded = (
            LoadedBitstream(name=probe.bitstream_name, digest=probe.bitstream_digest)
            if probe.bitstream_name and probe.bitstream_digest
            else None
        )
        heartbeat = now
    conditions = [
        _condition(
            previous=previous,
            type_=t,
            status=s,
            reason=r,
            message=m,
            now=now,
            generation=generation,
        )
        for t, (s, r, m) in (
            (NAAConditionType.READY, ready),
            (NAAConditionType.HEALTHY, healthy),
            (NAAConditionType.REACHABLE, reachable),
        )
    ]
    return NAAStatus(
        conditions=conditions,
        observed_generation=generation,
        loaded_bitstream=loaded,
        last_heartbeat=heartbeat,
        power_watts=power_watts if power_watts is not None and power_watts >= 0 else None,
        energy_microjoules=energy_microjoules,
    )


def card_health(status: NAAStatus) -> tuple[bool, str]:
    """The card's device-plugin health and why: healthy while the NAA is reachable and its
    runtime is healthy or busy flashing (a flash is part of a job's start, not a fault)."""
    reachable = find_condition(status.conditions, NAAConditionType.REACHABLE.value)
    healthy = find_condition(status.conditions, NAAConditionType.HEALTHY.value)
    if reachable is None or reachable.status != ConditionStatus.TRUE:
        return False, reachable.message if reachable else "not probed yet"
    if healthy is None:
        return False, "not probed yet"
    if healthy.status == ConditionStatus.TRUE or healthy.reason == "RuntimeFlashing":
        return True, healthy.message
    return False, healthy.message
