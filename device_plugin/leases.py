"""Who holds which NAA: watches the allocation Leases (`naa-<naa>`, label `naaice.io/naa`,
holder `<namespace>/<naajob>/<uid>`, annotation `naaice.io/bound-at`) and feeds bind/unbind
edges into the energy book.

Bind time is the Lease's `naaice.io/bound-at` (set by the operator when it acquires); unbind
time is when the DELETED event arrives (a deleted Lease carries no release time). While the
watch is live, the binding history is complete up to "now", which is the attribution
watermark the sampler commits to (`known_until_ns`). Called by `device_plugin.agent`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from device_plugin.book import EnergyBook
from naaice.api import (
    ANNOTATION_BOUND_AT,
    ANNOTATION_UNBOUND_AT,
    GROUP,
    LABEL_NAA,
    PLURAL_NAAJOBS,
    VERSION,
    HolderIdentity,
    NaaiceApiError,
    naa_of_lease,
    parse_bound_at,
)
from naaice.energy import EnergyError, JobKey

__all__ = ["ANNOTATION_UNBOUND_AT", "LeaseBinding", "LeaseWatcher", "binding_from_lease"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseBinding:
    naa: str
    job: JobKey
    bound_at_ns: int
    unbound_at_ns: int | None = None


def binding_from_lease(
    *,
    name: str,
    labels: dict[str, str],
    annotations: dict[str, str],
    holder: str | None,
    created_ns: int | None,
) -> LeaseBinding | None:
    """Pure: the binding an allocation Lease states, or None for a Lease that is not one (no
    NAA label, foreign holder identity). Falls back to the creation time without bound-at.
    An optional `naaice.io/unbound-at` (same format), set by the releaser just before it
    deletes the Lease, gives the exact release time; without it the deletion's arrival is."""
    naa = labels.get(LABEL_NAA) or naa_of_lease(name)
    if not naa or not holder:
        return None
    try:
        ident = HolderIdentity.parse(holder)
    except NaaiceApiError:
        return None
    raw = annotations.get(ANNOTATION_BOUND_AT)
    if raw is not None:
        try:
            at = parse_bound_at(raw)
        except NaaiceApiError:
            at = None
    else:
        at = None
    if at is None:
        if created_ns is None:
            return None
        at = created_ns
    unbound: int | None = None
    raw_end = annotations.get(ANNOTATION_UNBOUND_AT)
    if raw_end is not None:
        try:
            unbound = max(at, parse_bound_at(raw_end))
        except NaaiceApiError:
            unbound = None
    return LeaseBinding(
        naa=naa,
        job=JobKey(namespace=ident.namespace, name=ident.name, uid=ident.uid),
        bound_at_ns=at,
        unbound_at_ns=unbound,
    )


def _binding(lease: Any) -> LeaseBinding | None:
    meta = lease.metadata
    created = meta.creation_timestamp
    return binding_from_lease(
        name=meta.name,
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        holder=lease.spec.holder_identity if lease.spec is not None else None,
        created_ns=int(created.timestamp() * 1e9) if created is not None else None,
    )


class LeaseWatcher:
    """List + watch of the allocation Leases in one namespace, in a daemon thread."""

    def __init__(
        self,
        *,
        coordination_api: Any,
        namespace: str,
        book: EnergyBook,
        custom_api: Any | None = None,
    ) -> None:
        self._api = coordination_api
        self._custom = custom_api
        self.namespace = namespace
        self._book = book
        self._stop = threading.Event()
        self._live = False
        self._known_ns = 0
        self._lock = threading.Lock()
        self._current: dict[str, LeaseBinding] = {}
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def known_until_ns(self) -> int:
        """The binding history is complete up to this time (now while the watch is live)."""
        with self._lock:
            return time.time_ns() if self._live else self._known_ns

    def _set_live(self, live: bool) -> None:
        with self._lock:
            if self._live and not live:
                self._known_ns = time.time_ns()
            self._live = live

    def _apply(self, name: str, binding: LeaseBinding | None, *, deleted: bool = False) -> None:
        """Move the book to what the Lease now says. `deleted`: the Lease is gone (its last
        state is `binding`, whose unbound-at, if any, is the release time)."""
        old = self._current.get(name)
        if old == binding and not deleted:
            return
        now = time.time_ns()
        try:
            if old is not None and (
                deleted or binding is None or (old.naa, old.job) != (binding.naa, binding.job)
            ):
                if old.unbound_at_ns is None:
                    end = binding.unbound_at_ns if deleted and binding is not None else None
                    self._book.unbind(old.naa, job=old.job, at_ns=end or now)
                del self._current[name]
                old = None
            if binding is None or deleted:
                return
            if old is None:
                self._book.bind(binding.naa, job=binding.job, at_ns=binding.bound_at_ns)
                self._book.set_budget(binding.job, self._budget(binding.job))
            if binding.unbound_at_ns is not None and (old is None or old.unbound_at_ns is None):
                self._book.unbind(binding.naa, job=binding.job, at_ns=binding.unbound_at_ns)
            self._current[name] = binding
        except EnergyError as exc:
            log.warning("lease %s/%s: %s", self.namespace, name, exc)

    def _budget(self, job: JobKey) -> float | None:
        """spec.energyBudgetJoules of the holding NAAJob (None without one, or no such job)."""
        if self._custom is None:
            return None
        try:
            obj = self._custom.get_namespaced_custom_object(
                GROUP, VERSION, job.namespace, PLURAL_NAAJOBS, job.name
            )
        except Exception:  # a Lease without its NAAJob (yet): no budget to export
            return None
        budget = (obj.get("spec") or {}).get("energyBudgetJoules")
        uid = (obj.get("metadata") or {}).get("uid")
        if uid != job.uid or not isinstance(budget, int | float):
            return None
        return float(budget)

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                listed = self._api.list_namespaced_lease(self.namespace, label_selector=LABEL_NAA)
                seen = {item.metadata.name: _binding(item) for item in listed.items}
                for name in list(self._current):
                    if name not in seen:
                        self._apply(name, None)
                for name, binding in seen.items():
                    self._apply(name, binding)
                self._set_live(True)
                w: Any = cast(Any, watch).Watch()
                for event in w.stream(
                    self._api.list_namespaced_lease,
                    self.namespace,
                    label_selector=LABEL_NAA,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=5,
                ):
                    obj = event["object"]
                    name = obj.metadata.name
                    if event["type"] == "DELETED":
                        self._apply(name, _binding(obj), deleted=True)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self._apply(name, _binding(obj))
                    if self._stop.is_set():
                        w.stop()
                self._set_live(False)
            except Exception as exc:  # the API server may restart; relist after a pause
                self._set_live(False)
                log.warning("lease watch in %s failed: %s; relisting", self.namespace, exc)
                self._stop.wait(1.0)
