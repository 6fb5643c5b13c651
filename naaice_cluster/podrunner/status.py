"""Pure computation of a pod's status (phase, conditions, container statuses) from the pod
runner's record of its containers, following kubelet's rules for phases. Called by the worker
whenever a container changes state; the result is written to the pod's status subresource."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


def now() -> str:
    """RFC 3339 UTC time with second precision, as Kubernetes writes it."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Terminated:
    exit_code: int
    started_at: str
    finished_at: str
    signal: int | None = None
    container_id: str = ""

    @property
    def reason(self) -> str:
        return "Completed" if self.exit_code == 0 else "Error"

    def to_json(self) -> JSON:
        out: JSON = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.signal is not None:
            out["signal"] = self.signal
        return out


@dataclass
class ContainerRecord:
    """What the runner knows about one container of a pod."""

    name: str
    image: str
    restart_count: int = 0
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str = ""
    running_since: str | None = None
    pid: int | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    history: list[int] = field(default_factory=list)

    @property
    def container_id(self) -> str:
        return f"naaice://{self.pid}" if self.pid else ""

    def state_json(self) -> JSON:
        if self.running_since is not None:
            return {"running": {"startedAt": self.running_since}}
        if self.terminated is not None:
            return {"terminated": self.terminated.to_json()}
        waiting: JSON = {"reason": self.waiting_reason or "ContainerCreating"}
        if self.waiting_message:
            waiting["message"] = self.waiting_message
        return {"waiting": waiting}

    def to_json(self) -> JSON:
        out: JSON = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": self.container_id,
            "ready": self.running_since is not None,
            "started": self.running_since is not None,
            "restartCount": self.restart_count,
            "state": self.state_json(),
            "lastState": {"terminated": self.last_terminated.to_json()}
            if self.last_terminated
            else {},
        }
        return out


def pod_phase(
    *, restart_policy: str, init: list[ContainerRecord], containers: list[ContainerRecord]
) -> str:
    """Kubelet's phase rules for a pod whose containers are in the given states."""
    for c in init:
        if c.terminated is None or c.terminated.exit_code != 0:
            if c.terminated is not None and restart_policy == "Never":
                return "Failed"
            return "Pending"
    if any(c.running_since for c in containers):
        return "Running"
    if all(c.terminated is not None for c in containers):
        codes = [c.terminated.exit_code for c in containers if c.terminated is not None]
        if restart_policy == "Always":
            return "Running"
        if all(code == 0 for code in codes):
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    # Some container waits: before its first start the pod is Pending, while it waits to be
    # restarted (back-off) the pod keeps running.
    if any(c.terminated is None and c.last_terminated is None for c in containers):
        return "Pending"
    return "Running"


def _condition(kind: str, ok: bool, since: str, reason: str = "") -> JSON:
    cond: JSON = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": since}
    if reason and not ok:
        cond["reason"] = reason
    return cond


def pod_status(
    *,
    restart_policy: str,
    init: list[ContainerRecord],
    containers: list[ContainerRecord],
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    transition_time: str,
    message: str = "",
) -> JSON:
    """The `status` the runner writes for a pod (it replaces lists wholesale)."""
    phase = pod_phase(restart_policy=restart_policy, init=init, containers=containers)
    initialized = all(c.terminated is not None and c.terminated.exit_code == 0 for c in init)
    ready = phase == "Running" and all(c.running_since for c in containers)
    done = phase in ("Succeeded", "Failed")
    not_ready_reason = "PodCompleted" if done else "ContainersNotReady"
    status: JSON = {
        "phase": phase,
        "conditions": [
            _condition("PodReadyToStartContainers", sandbox_ready and not done, transition_time),
            _condition("Initialized", initialized, transition_time, "ContainersNotInitialized"),
            _condition("Ready", ready, transition_time, not_ready_reason),
            _condition("ContainersReady", ready, transition_time, not_ready_reason),
            _condition("PodScheduled", True, transition_time),
        ],
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [c.to_json() for c in containers],
        "initContainerStatuses": [c.to_json() for c in init],
        "message": message or None,
        "reason": None,
    }
    return status
