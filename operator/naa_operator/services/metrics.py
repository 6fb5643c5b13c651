"""The operator's Prometheus metrics, in a registry of its own (so tests and several operators
in one process never collide). Updated by `services.controller`; served by the CLI."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class OperatorMetrics:
    """Placement latency, jobs by condition, flash durations, pending jobs, Lease conflicts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.placement_seconds = Histogram(
            "naaice_operator_placement_seconds",
            "Time of one pure first-fit pass over all pending jobs.",
            buckets=_FAST,
            registry=self.registry,
        )
        self.jobs = Gauge(
            "naaice_operator_jobs",
            "NAAJobs by their most advanced condition that is True (or Pending).",
            ["condition"],
            registry=self.registry,
        )
        self.pending_jobs = Gauge(
            "naaice_operator_pending_jobs",
            "NAAJobs waiting for NAAs after the last scheduling pass.",
            registry=self.registry,
        )
        self.flash_seconds = Histogram(
            "naaice_operator_flash_seconds",
            "Time from flash request to the NAA reporting the digest loaded.",
            ["result"],
            buckets=_SLOW,
            registry=self.registry,
        )
        self.lease_conflicts = Counter(
            "naaice_operator_lease_conflicts_total",
            "Lease creations refused because the NAA was already leased (HTTP 409).",
            registry=self.registry,
        )
        self.leases_reclaimed = Counter(
            "naaice_operator_leases_reclaimed_total",
            "Allocation Leases deleted because their holder NAAJob no longer exists.",
            registry=self.registry,
        )
        self.apply_to_pods_seconds = Histogram(
            "naaice_operator_apply_to_pods_seconds",
            "From NAAJob creation to all of its pods created (first attempt).",
            buckets=_SLOW,
            registry=self.registry,
        )
        self.is_leader = Gauge(
            "naaice_operator_leader",
            "1 while this replica holds the operator's leader Lease.",
            registry=self.registry,
        )
