"""Kubernetes bodies → the core's views. Called by `services.controller` at the edge, so the
decisions never touch raw dictionaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from naa_operator.core import conditions as cond
from naa_operator.core.lifecycle import PodView
from naa_operator.core.model import (
    FIRST_FIT,
    Assignment,
    BitstreamView,
    FunctionView,
    JobView,
    NAAView,
    RequestView,
)

Body = Mapping[str, Any]


def _conditions(raw: Any) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for item in raw or []:
        if isinstance(item, Mapping) and "type" in item:
            out[str(item["type"])] = item
    return out


@dataclass(frozen=True, slots=True)
class SecretRef:
    namespace: str
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class NAAAccess:
    """How the operator reaches an NAA's management plane."""

    name: str
    endpoint: str
    token: SecretRef | None


def naa_view(body: Body) -> NAAView:
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    conds = _conditions(status.get("conditions"))

    def ok(kind: str) -> tuple[bool, str]:
        c = conds.get(kind)
        if c is None:
            return False, f"no {kind} condition yet (is the naaice agent running?)"
        return c.get("status") == "True", str(c.get("message") or c.get("reason") or "")

    ready, why_r = ok("Ready")
    healthy, why_h = ok("Healthy")
    reachable, why_x = ok("Reachable")
    reason = why_r if not ready else why_h if not healthy else why_x if not reachable else ""
    loaded = status.get("loadedBitstream") or {}
    return NAAView(
        name=str(body["metadata"]["name"]),
        board_model=str((spec.get("board") or {}).get("model", "")),
        address=str(spec.get("address", "")),
        cm_port=int(spec.get("cmPort", 12345)),
        ready=ready,
        healthy=healthy,
        reachable=reachable,
        loaded_digest=loaded.get("digest") if isinstance(loaded, Mapping) else None,
        not_ready_reason=reason,
    )


def naa_access(body: Body) -> NAAAccess:
    mgmt = (body.get("spec") or {}).get("management") or {}
    ref = mgmt.get("tokenSecretRef") or None
    return NAAAccess(
        name=str(body["metadata"]["name"]),
        endpoint=str(mgmt.get("endpoint", "")),
        token=SecretRef(
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            key=str(ref.get("key", "token")),
        )
        if ref
        else None,
    )


def bitstream_view(body: Body) -> BitstreamView:
    spec = body.get("spec") or {}
    return BitstreamView(
        name=str(body["metadata"]["name"]),
        digest=str(spec.get("digest", "")),
        compatible_boards=tuple(str(b) for b in spec.get("compatibleBoards") or ()),
        functions=tuple(
            FunctionView(
                name=str(f.get("name", "")),
                fn_code=int(f.get("fnCode", 0)),
                input_params=int(f.get("inputParams", 1)),
            )
            for f in spec.get("functions") or ()
        ),
        artifact=str((spec.get("artifact") or {}).get("uri", "")),
        flash_seconds=float(spec.get("flashSeconds", 0) or 0),
    )


def job_key(body: Body) -> str:
    meta = body["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def job_view(body: Body) -> JobView:
    spec = body.get("spec") or {}
    return JobView(
        key=job_key(body),
        uid=str(body["metadata"]["uid"]),
        requests=tuple(
            RequestView(
                name=str(r.get("name", "")),
                function=str(r.get("function", "")),
                count=int(r.get("count", 1)),
                bitstream=r.get("bitstream") or None,
            )
            for r in spec.get("naas") or ()
        ),
        policy=str(spec.get("placementPolicy") or FIRST_FIT),
    )


def job_finished(body: Body) -> bool:
    """`cond.is_terminal(job_conditions(body))` read straight off the raw conditions: the
    scheduler asks it of every cached job on every pass, finished ones included, and parsing
    each job's conditions there was a fifth of the operator's CPU in bench/operator.py."""
    for c in (body.get("status") or {}).get("conditions") or ():
        if (
            isinstance(c, Mapping)
            and c.get("type") in (cond.SUCCEEDED, cond.FAILED)
            and c.get("status") == "True"
        ):
            return True
    return False


def job_conditions(body: Body) -> tuple[cond.Condition, ...]:
    raw = (body.get("status") or {}).get("conditions") or []
    return tuple(cond.Condition.from_dict(c) for c in raw if isinstance(c, Mapping))


def assignments(body: Body) -> tuple[Assignment, ...]:
    raw = (body.get("status") or {}).get("assignedNAAs") or []
    return tuple(
        Assignment(
            request=str(a.get("request", "")),
            naa=str(a.get("naa", "")),
            address=str(a.get("address", "")),
            port=int(a.get("port", 12345)),
            fn_code=int(a.get("fnCode", 0)),
            param_count=int(a.get("paramCount", 0)),
            bitstream=str(a.get("bitstream", "")),
            digest=str(a.get("digest", "")),
            artifact="",
            warm=False,
        )
        for a in raw
    )


def assignment_dict(a: Assignment) -> dict[str, Any]:
    return {
        "request": a.request,
        "naa": a.naa,
        "address": a.address,
        "port": a.port,
        "fnCode": a.fn_code,
        "paramCount": a.param_count,
        "bitstream": a.bitstream,
        "digest": a.digest,
    }


def pod_view(body: Body) -> PodView:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    message = str(status.get("message") or status.get("reason") or "")
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            message = (
                f"container {cs.get('name')} exited {term.get('exitCode')}"
                f" ({term.get('reason', '')}) {term.get('message', '')}".strip()
            )
    try:
        attempt = int((meta.get("labels") or {}).get("naaice.io/attempt", "0"))
    except ValueError:
        attempt = 0
    return PodView(
        name=str(meta.get("name", "")),
        attempt=attempt,
        phase=str(status.get("phase", "Pending")),
        ready=ready,
        deleting=meta.get("deletionTimestamp") is not None,
        message=message,
    )


def owned_by(body: Body, uid: str) -> bool:
    return any(
        o.get("uid") == uid and o.get("controller")
        for o in (body.get("metadata") or {}).get("ownerReferences") or []
    )


def timestamp(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rfc3339_ns_to_ns(value: str) -> int | None:
    """Parse `naaice.io/bound-at` (RFC 3339 with nanoseconds) to ns since the epoch."""
    if not value:
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    try:
        secs = int(datetime.fromisoformat(head + "+00:00").timestamp())
    except ValueError:
        return None
    digits = (frac + "000000000")[:9] if frac else "0"
    return secs * 1_000_000_000 + int(digits)


def ns_to_rfc3339_ns(t_ns: int) -> str:
    secs, frac = divmod(t_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"
