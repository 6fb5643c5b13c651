"""The NAAJob controller: a work queue of job keys, a scheduling pass, leader election and the
per-job reconcile that carries out `core.lifecycle`'s decisions.

Called by `handlers` (which trigger a pass when Kopf sees an NAA or Bitstream change) and run
by the CLI next to Kopf. Level-triggered: every reconcile reads the job, its Leases and its
pods and acts on what it finds, so a crash anywhere is repaired by the next run.
Order of writes that makes that true:
- a terminal condition (with the job's energy) is written *before* its Leases are deleted;
- Leases are created before `status.assignedNAAs` names them; a job holding Leases that its
  status does not name is rolled back by the next pass;
- pod names are deterministic per attempt, so creating a pod twice is a 409, not a duplicate.

The reads come from informer caches (`services.cache`, fed by watches of NAAJobs, the jobs'
pods and the allocation Leases, and by this process's own writes), not from the API. A cache
may lag behind the cluster, so a stale read may cost a retry but never a double allocation:
- every write to an NAAJob carries the resourceVersion of the body it was decided on (a 409
  refreshes the job from the API and reconciles again);
- Lease creation is the lock (a 409 means taken), whatever the cache said;
- the steps that destroy or start something on the strength of a read (roll back, lost Leases,
  clean old pods, create pods, flash) re-read the job, its Leases and its pods from the API
  and decide again first (not right after this process's own bind, which goes on with what
  its writes returned);
- a job's Leases are deleted only once the pod cache is known complete (`_drain_then_release`)
  and shows none of its pods alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from naa_operator.adapters.informer import Informer
from naa_operator.adapters.kube import (
    Body,
    Conflict,
    Kube,
    KubeError,
    LeaseInfo,
    NotFound,
    lease_info,
)
from naa_operator.adapters.management import Management, ManagementError, Rejected, Unreachable
from naa_operator.core import conditions as cond
from naa_operator.core import injection
from naa_operator.core.lifecycle import (
    Decision,
    JobState,
    PodView,
    Step,
    attempts_exhausted,
    decide,
    expected_pods,
)
from naa_operator.core.model import Assignment, BitstreamView, JobView, NAAView
from naa_operator.core.placement import first_fit
from naa_operator.services import views
from naa_operator.services.cache import Store
from naa_operator.services.metrics import OperatorMetrics
from naaice.api import (
    ANNOTATION_BOUND_AT,
    ANNOTATION_BOUND_ENERGY,
    ANNOTATION_UNBOUND_AT,
    InvalidNameError,
    parse_bound_energy,
    render_bound_energy,
)
from naaice.energy import IntegratorConfig, Sample, energy_over_window

log = logging.getLogger("naaice.operator")

API_VERSION = "naaice.io/v1alpha1"
KIND = "NAAJob"
FINALIZER = "naaice.io/release"
LABEL_NAA = "naaice.io/naa"
LABEL_HOLDER_UID = "naaice.io/holder-uid"
LEADER_LEASE = "naaice-operator-leader"

# Steps decided on a cached read that are re-decided on a fresh read from the API before they
# are carried out: each destroys or starts something whose safety depends on that read.
_CONFIRM = frozenset(
    {Step.ROLLBACK, Step.LOST_LEASES, Step.CLEAN_OLD_PODS, Step.CREATE_PODS, Step.FLASH}
)


def _pod_job(body: Mapping[str, Any]) -> str | None:
    meta = body.get("metadata") or {}
    job = (meta.get("labels") or {}).get(injection.LABEL_JOB)
    return f"{meta.get('namespace')}/{job}" if job else None


def _lease_holder_uid(body: Mapping[str, Any]) -> str | None:
    labels = (body.get("metadata") or {}).get("labels") or {}
    uid = labels.get(LABEL_HOLDER_UID)
    return str(uid) if uid else None


def _live(pod: Body) -> bool:
    return views.pod_view(pod).phase not in ("Succeeded", "Failed")


@dataclass(frozen=True)
class OperatorConfig:
    """Knobs of one operator process (flags and env of `naaice operator run`)."""

    namespace: str | None
    lease_namespace: str
    identity: str
    workers: int = 16
    resync_seconds: float = 10.0
    sample_seconds: float = 1.0
    flash_timeout: float = 120.0
    flash_retries: int = 3
    exclude_seconds: float = 30.0
    leader_election: bool = True
    leader_lease_seconds: float = 8.0
    lost_after_seconds: float = 5.0
    pending_grace_seconds: float = 1.0
    """How long a job that does not fit waits before its `Scheduled=False` verdict (and the
    Warning event with the trace) is written."""
    normal_events: bool = True
    """Post the Normal events of the happy path (Scheduled with the decision trace, Flashed,
    Completed with the energy) besides the Warning ones; they are posted in the background,
    off the job's path, but each is one more write for the apiserver."""


def _now_ns() -> int:
    return time.time_ns()


def _window_end(leases: Iterable[LeaseInfo]) -> int | None:
    """The energy window's end an earlier release already wrote onto these Leases (the
    earliest, should they differ), or None when none carries a readable one."""
    ends = [views.rfc3339_ns_to_ns(ls.unbound_at) for ls in leases if ls.unbound_at]
    return min((e for e in ends if e is not None), default=None)


def _rfc3339(t: float | None = None) -> str:
    return views.ns_to_rfc3339_ns(int((t if t is not None else time.time()) * 1e9))[:19] + "Z"


class _Queue:
    """A de-duplicating work queue (client-go style): a key is processed by one worker at a
    time; a key enqueued while it is processed runs again afterwards."""

    def __init__(self) -> None:
        self._q: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()

    def add(self, key: str) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._q.put_nowait(key)

    async def get(self) -> str:
        key = await self._q.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)


def _bind_annotations(bound_at: str, before: Sample | None) -> dict[str, str]:
    """A new Lease's annotations: the bind instant and, when the sample taken just before it
    carried the hardware counter, that sample (`naaice.io/bound-energy`)."""
    notes = {ANNOTATION_BOUND_AT: bound_at}
    if before is not None and before.energy_uj is not None:
        with contextlib.suppress(InvalidNameError):
            notes[ANNOTATION_BOUND_ENERGY] = render_bound_energy(
                timestamp_ns=before.t_ns, energy_uj=before.energy_uj, power_w=before.power_w
            )
    return notes


def _recorded_bind_sample(lease: LeaseInfo) -> Sample | None:
    """The sample `naaice.io/bound-energy` on `lease` records, or None (absent or unreadable:
    the window then starts at the first sample this process holds)."""
    if not lease.bound_energy:
        return None
    try:
        rec = parse_bound_energy(lease.bound_energy)
    except InvalidNameError as exc:
        log.warning("ignoring Lease %s's bind-time reading: %s", lease.name, exc)
        return None
    return Sample(t_ns=rec.timestamp_ns, power_w=rec.power_mw / 1000.0, energy_uj=rec.energy_uj)


@dataclass
class _Sampler:
    """Sensor samples of one bound NAA, kept while a job holds it (for its energy)."""

    naa: str
    holder: str
    samples: list[Sample] = field(default_factory=list)
    failures_since: float | None = None


class Controller:
    """Owns the queue, the scheduler pass, the energy samplers and leader election."""

    def __init__(
        self,
        *,
        kube: Kube,
        management: Management,
        config: OperatorConfig,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.kube = kube
        self.mgmt = management
        self.config = config
        self.metrics = metrics or OperatorMetrics()
        self.queue = _Queue()
        self._schedule = asyncio.Event()
        self._leader = not config.leader_election
        self._excluded: dict[str, tuple[float, str]] = {}
        self._secrets: dict[tuple[str, str], tuple[float, asyncio.Future[dict[str, bytes]]]] = {}
        """Token Secrets by (namespace, name): expiry and the (possibly ongoing) read."""
        self._access: dict[str, views.NAAAccess] = {}
        self._samplers: dict[str, _Sampler] = {}
        self._lost: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._delayed: dict[str, asyncio.TimerHandle] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._naa_cache: dict[str, Body] = {}
        self._bs_cache: dict[str, Body] = {}
        self._cache_primed = False
        self._last_sample: dict[str, Sample] = {}
        # Binds the passes started and that have not finished: their jobs are not placed
        # again and their NAAs are not offered to another job meanwhile.
        self._binding_jobs: set[str] = set()
        self._binding_naas: set[str] = set()
        # resourceVersion of the job as our own last write left it, for the writes whose
        # follow-up the writer carries out itself: their watch events need no reconcile.
        self._written: dict[str, str] = {}
        # Per pod ("namespace/name"): the last view (what the decision reads of a pod) that
        # enqueued its job, or the view of a pod this controller just created.
        self._pod_views: dict[str, PodView] = {}
        # Informer caches: NAAJobs, their pods (indexed by "namespace/job"), allocation Leases
        # (indexed by holder UID). Nothing acts before all three have listed once.
        self.jobs = Store()
        self.pods = Store(index=_pod_job)
        self.leases = Store(index=_lease_holder_uid)
        self._listed = asyncio.Event()  # every informer has listed once
        self._synced = asyncio.Event()  # … and the NAAs and Bitstreams are known too
        self._informers: list[Informer] = []
        # Jobs that the last passes could not place: when that was first seen (monotonic).
        self._pending_since: dict[str, float] = {}
        self._pass_timer: asyncio.TimerHandle | None = None
        # (resourceVersion, future) of releases waiting for the pod watch to get that far.
        self._pod_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -------------------------------------------------- entry points for handlers and informers

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def trigger_schedule(self) -> None:
        self._schedule.set()

    def job_event(self, event_type: str | None, body: Body) -> None:
        """A watch event of an NAAJob: reconcile it (and run a pass when it waits for NAAs),
        unless the event only reports a write of ours whose follow-up is already under way
        (the writer went on with the body the write returned, or enqueued the key itself)."""
        meta = body.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if event_type == "DELETED":
            self._written.pop(key, None)
            self._pending_since.pop(key, None)
        elif meta.get("resourceVersion") and self._written.get(key) == meta["resourceVersion"]:
            return
        self.enqueue(key)
        if not (body.get("status") or {}).get("assignedNAAs"):
            self.trigger_schedule()

    def pod_event(self, event_type: str | None, body: Body) -> None:
        """A watch event of a job's pod: reconcile the job when what the decision reads of
        the pod (`views.pod_view`) changed, or the pod went away; a pod's other updates
        (binding to a node, container status details) change no decision."""
        meta = body.get("metadata") or {}
        job = (meta.get("labels") or {}).get(injection.LABEL_JOB)
        if not job:
            return
        pod = f"{meta.get('namespace')}/{meta.get('name')}"
        view = views.pod_view(body)
        if event_type == "DELETED":
            self._pod_views.pop(pod, None)
        elif self._pod_views.get(pod) == view:
            return
        else:
            self._pod_views[pod] = view
        self.enqueue(f"{meta.get('namespace')}/{job}")

    def _wrote(self, key: str, body: Body) -> None:
        rv = (body.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._written[key] = str(rv)

    def _pods_progressed(self) -> None:
        waiting = []
        for version, fut in self._pod_waiters:
            if version <= self.pods.streamed:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((version, fut))
        self._pod_waiters = waiting

    async def _pods_streamed_to(self, version: int, *, timeout: float) -> bool:
        """Whether the pod watch has delivered everything up to `version` (within
        `timeout`): then every pod created before it is in the cache."""
        if self.pods.streamed >= version:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pod_waiters.append((version, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    def lease_event(self, event_type: str | None, body: Body) -> None:
        """A watch event of an allocation Lease: a deleted one frees its NAA for a pass."""
        if event_type == "DELETED":
            self.trigger_schedule()

    @property
    def leader(self) -> bool:
        return self._leader

    def _start_informers(self) -> None:
        """Watch NAAJobs, their pods and the allocation Leases into the caches; each event
        that brings news goes to the matching reaction (`job_event`, …)."""
        feeds: list[tuple[Informer, Store, Callable[[str | None, Body], None]]] = [
            (self.kube.naajob_informer(self.config.namespace), self.jobs, self.job_event),
            (
                self.kube.pod_informer(self.config.namespace, injection.LABEL_JOB),
                self.pods,
                self.pod_event,
            ),
            (
                self.kube.lease_informer(self.config.lease_namespace, LABEL_NAA),
                self.leases,
                self.lease_event,
            ),
        ]
        stores = [store for _, store, _ in feeds]

        def listed(
            store: Store, react: Callable[[str | None, Body], None]
        ) -> Callable[[list[Body], str], None]:
            def on_list(items: list[Body], version: str) -> None:
                for kind, body in store.replace(items, version):
                    react(kind, dict(body))
                if all(s.synced for s in stores) and not self._listed.is_set():
                    log.info(
                        "caches synced: %d NAAJobs, %d pods, %d Leases",
                        len(self.jobs),
                        len(self.pods),
                        len(self.leases),
                    )
                    self._listed.set()

            return on_list

        def watched(
            store: Store, react: Callable[[str | None, Body], None]
        ) -> Callable[[str, Body], None]:
            def on_event(kind: str, body: Body) -> None:
                if store.observe(kind, body):
                    react(kind, body)
                if store is self.pods and self._pod_waiters:
                    self._pods_progressed()

            return on_event

        for informer, store, react in feeds:
            informer.start(on_list=listed(store, react), on_event=watched(store, react))
            self._informers.append(informer)

    async def _sync(self) -> None:
        """Nothing acts before the caches have listed and the NAAs (their management
        endpoints: a release samples their sensors) and Bitstreams are known."""
        await self._listed.wait()
        await self._naas_and_bitstreams()
        self._synced.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Run workers, the scheduler, samplers and leader election until `stop` is set."""
        self._start_informers()
        loops: list[Callable[[], Awaitable[None]]] = [
            self._sync,
            self._scheduler_loop,
            self._resync_loop,
            self._sampler_loop,
        ]
        if self.config.leader_election:
            loops.append(self._leader_loop)
        self._tasks = [asyncio.create_task(self._guard(f)) for f in loops]
        self._tasks += [
            asyncio.create_task(self._guard(self._worker)) for _ in range(self.config.workers)
        ]
        await stop.wait()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for informer in self._informers:
            informer.stop()
        if self.config.leader_election and self._leader:
            await self._resign()

    async def _guard(self, fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("controller loop %s crashed; restarting in 1 s", fn.__name__)
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------------------------- loops

    async def _worker(self) -> None:
        await self._synced.wait()
        while True:
            key = await self.queue.get()
            try:
                if self._leader:
                    await self.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Conflict as exc:
                # Decided on a cached job that has changed since: `_patch_status` refreshed
                # the cache, so decide again at once.
                log.info("reconcile of %s raced a change, again: %s", key, exc)
                self.queue.add(key)
            except (KubeError, ManagementError) as exc:
                log.warning("reconcile of %s failed, retrying: %s", key, exc)
                self._requeue_after(key, 1.0 + random.random())
            except Exception:
                log.exception("reconcile of %s crashed, retrying", key)
                self._requeue_after(key, 2.0)
            finally:
                self.queue.done(key)

    def _requeue_after(self, key: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        old = self._delayed.pop(key, None)
        if old is not None:
            old.cancel()
        self._delayed[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._delayed.pop(key, None)
        self.queue.add(key)

    async def _scheduler_loop(self) -> None:
        await self._synced.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._schedule.wait(), timeout=self.config.resync_seconds)
            self._schedule.clear()
            if not self._leader:
                continue
            try:
                started = time.perf_counter()
                placed, waiting = await self.schedule_pass()
                log.info(
                    "scheduling pass: %d placed, %d waiting, %.0f ms (%d binds under way)",
                    placed,
                    waiting,
                    1e3 * (time.perf_counter() - started),
                    len(self._binding_jobs),
                )
            except (KubeError, ManagementError) as exc:
                log.warning("scheduling pass failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                self._schedule.set()

    async def _resync_loop(self) -> None:
        await self._synced.wait()
        logged_calls: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            if not self._leader:
                continue
            jobs = self.jobs.items()
            counts = dict.fromkeys((*cond.ALL_TYPES, "Pending"), 0)
            for body in jobs:
                conds = views.job_conditions(body)
                # Finished jobs need nothing unless a TTL runs (their Leases, if any are left,
                # bring them back through the scheduling pass).
                if (
                    not cond.is_terminal(conds)
                    or body["metadata"].get("deletionTimestamp")
                    or (body.get("spec") or {}).get("ttlSecondsAfterFinished") is not None
                ):
                    self.enqueue(views.job_key(body))
                best = next(
                    (t for t in reversed(cond.ALL_TYPES) if cond.is_true(conds, t)), "Pending"
                )
                counts[best] += 1
            for name, value in counts.items():
                self.metrics.jobs.labels(condition=name).set(value)
            self._schedule.set()
            calls = dict(sorted(self.kube.calls.items()))
            if calls != logged_calls:
                log.info(
                    "API calls so far (%d jobs Succeeded, %d Failed): %s",
                    counts[cond.SUCCEEDED],
                    counts[cond.FAILED],
                    ", ".join(f"{k} {v}" for k, v in calls.items()),
                )
                logged_calls = calls

    # ---------------------------------------------------------------------- leader election

    async def _leader_loop(self) -> None:
        ns, cfg = self.config.lease_namespace, self.config
        while True:
            was = self._leader
            try:
                self._leader = await self._try_lead()
            except KubeError as exc:
                log.warning("leader election: %s", exc)
                self._leader = False
            self.metrics.is_leader.set(1 if self._leader else 0)
            if self._leader and not was:
                log.info("%s became the leader (Lease %s/%s)", cfg.identity, ns, LEADER_LEASE)
                # Before the caches are synced their first LIST enqueues every job anyway.
                for body in self.jobs.items():
                    self.enqueue(views.job_key(body))
                self._schedule.set()
            elif was and not self._leader:
                log.warning("%s lost the leader Lease", cfg.identity)
            await asyncio.sleep(cfg.leader_lease_seconds / 3)

    async def _try_lead(self) -> bool:
        ns, cfg = self.config.lease_namespace, self.config
        now = time.time()
        micro = views.ns_to_rfc3339_ns(int(now * 1e9))[:26] + "Z"
        lease = await self.kube.get_lease(ns, LEADER_LEASE)
        spec = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": max(1, round(cfg.leader_lease_seconds)),
            "renewTime": micro,
        }
        if lease is None:
            created = await self.kube.create_lease(
                ns,
                {
                    "metadata": {"name": LEADER_LEASE, "namespace": ns},
                    "spec": {**spec, "acquireTime": micro},
                },
            )
            return created is not None
        held = (lease.get("spec") or {}).get("holderIdentity")
        renew = views.timestamp((lease.get("spec") or {}).get("renewTime"))
        duration = float((lease.get("spec") or {}).get("leaseDurationSeconds") or 0)
        if held not in (cfg.identity, None, "") and renew is not None and renew + duration > now:
            return False
        body = dict(lease)
        body["spec"] = {**(lease.get("spec") or {}), **spec}
        if held != cfg.identity:
            body["spec"]["acquireTime"] = micro
        try:
            await self.kube.replace_lease(ns, LEADER_LEASE, body)
        except Conflict:
            return False
        return True

    async def _resign(self) -> None:
        ns = self.config.lease_namespace
        lease = await self.kube.get_lease(ns, LEADER_LEASE)
        if lease and (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
            await self.kube.delete_lease(ns, LEADER_LEASE, uid=lease["metadata"]["uid"])

    # ---------------------------------------------------------------------- cluster state

    def observe(self, kind: str, event_type: str | None, body: Body) -> None:
        """Keep the NAA and Bitstream caches current from Kopf's watch events (handlers call
        this). Placement reads the caches; Leases, not the cache, guarantee exclusivity."""
        cache = self._naa_cache if kind == "naa" else self._bs_cache
        name = str((body.get("metadata") or {}).get("name", ""))
        if event_type == "DELETED":
            cache.pop(name, None)
        elif name:
            cache[name] = body

    async def _naas_and_bitstreams(self) -> tuple[list[NAAView], list[BitstreamView]]:
        if not self._cache_primed:
            raw_naas, raw_bs = await asyncio.gather(
                self.kube.list_cluster_objects("networkattachedaccelerators"),
                self.kube.list_cluster_objects("bitstreams"),
            )
            for body in raw_naas:
                self._naa_cache.setdefault(body["metadata"]["name"], body)
            for body in raw_bs:
                self._bs_cache.setdefault(body["metadata"]["name"], body)
            self._cache_primed = True
        naas = []
        for body in list(self._naa_cache.values()):
            naas.append(views.naa_view(body))
            access = views.naa_access(body)
            self._access[access.name] = access
        return naas, [views.bitstream_view(b) for b in list(self._bs_cache.values())]

    def exclude(self, naa: str, why: str) -> None:
        self._excluded[naa] = (time.monotonic() + self.config.exclude_seconds, why)

    def _current_exclusions(self) -> dict[str, str]:
        now = time.monotonic()
        self._excluded = {k: v for k, v in self._excluded.items() if v[0] > now}
        return {k: v[1] for k, v in self._excluded.items()}

    async def token(self, naa: str) -> str:
        access = self._access.get(naa)
        if access is None:
            await self._naas_and_bitstreams()
            access = self._access.get(naa)
        if access is None or access.token is None:
            return ""
        ref = access.token
        secret = (ref.namespace, ref.name)
        cached = self._secrets.get(secret)
        if cached is None or cached[0] <= time.monotonic():
            # One read per Secret, shared by every NAA whose token it holds and by every
            # caller that asks meanwhile (a burst of binds on fresh NAAs read it 32 times).
            read = asyncio.ensure_future(self.kube.read_secret(ref.namespace, ref.name))
            cached = (time.monotonic() + 60.0, read)
            self._secrets[secret] = cached
        try:
            data = await asyncio.shield(cached[1])
        except BaseException:
            if self._secrets.get(secret) is cached:
                del self._secrets[secret]  # a failed read is not cached
            raise
        if ref.key not in data:
            raise KubeError(
                f"Secret {ref.namespace}/{ref.name} has no key {ref.key!r}",
                ValueError("fix management.tokenSecretRef.key of the NAA"),
            )
        return data[ref.key].decode().strip()

    def endpoint(self, naa: str) -> str:
        access = self._access.get(naa)
        return access.endpoint if access else ""

    # ---------------------------------------------------------------------- scheduling pass

    async def schedule_pass(self) -> tuple[int, int]:
        """Place every job that waits for NAAs, acquire their Leases and record the result;
        returns (placed, still waiting).

        The binds (Leases, finalizer, status) run in the background: a pass takes
        milliseconds, so an NAA that frees up is offered at once rather than after the binds
        of the pass under way. Their jobs and NAAs count as taken until they finish; a Lease
        create is the lock in any case, and a bind checks its job again under the job's lock."""
        naas, bitstreams = await self._naas_and_bitstreams()
        jobs = self.jobs.items()
        # A Lease the cache lacks can only make a placement collide: its create is then a 409.
        leases = [lease_info(b) for b in self.leases.items()]
        by_uid = {b["metadata"]["uid"]: b for b in jobs}
        leased: dict[str, str] = {}
        pending: list[Body] = []
        for naa in self._binding_naas:
            leased[naa] = "a bind under way"
        for body in jobs:
            if views.job_key(body) in self._binding_jobs:
                continue
            if self._waits_for_naas(body, uid=body["metadata"]["uid"]):
                pending.append(body)
        pending_uids = {b["metadata"]["uid"] for b in pending}
        rollbacks: list[Awaitable[bool]] = []
        draining: set[str] = set()
        for lease in leases:
            uid = lease.holder.rsplit("/", 1)[-1] if lease.holder else ""
            if uid in by_uid and views.job_key(by_uid[uid]) in self._binding_jobs:
                leased[lease.naa] = lease.holder  # its bind is under way
                continue
            if uid in pending_uids:
                # Acquired by a pass that died before writing status, or left by a failed
                # attempt: the job's reconcile drains its pods and then releases it.
                leased[lease.naa] = lease.holder
                draining.add(uid)
                self.enqueue(views.job_key(by_uid[uid]))
                continue
            if uid not in by_uid and await self._orphaned(lease):
                self.metrics.leases_reclaimed.inc()
                log.info("reclaiming Lease %s of vanished holder %s", lease.name, lease.holder)
                rollbacks.append(self._delete_lease(lease.name, lease.uid))
                continue
            leased[lease.naa] = lease.holder
            holder_job = by_uid.get(uid)
            if holder_job is not None and views.job_finished(holder_job):
                self.enqueue(views.job_key(holder_job))  # finished but not yet released
        await asyncio.gather(*rollbacks)
        pending = [b for b in pending if b["metadata"]["uid"] not in draining]
        pending.sort(key=lambda b: (b["metadata"].get("creationTimestamp", ""), views.job_key(b)))
        job_views = [views.job_view(b) for b in pending]
        started = time.perf_counter()
        result = first_fit(
            jobs=job_views,
            naas=naas,
            bitstreams=bitstreams,
            leased=leased,
            excluded=self._current_exclusions(),
        )
        self.metrics.placement_seconds.observe(time.perf_counter() - started)
        self.metrics.pending_jobs.set(len(result.pending()))
        work = []
        now = time.monotonic()
        grace = self.config.pending_grace_seconds
        for body, view, placement in zip(pending, job_views, result.placements, strict=True):
            if placement.placed:
                self._pending_since.pop(view.key, None)
                self._start_bind(body, view, placement.assignments, placement.trace)
                continue
            # Most jobs that find no free NAA get one within a pass or two (a release is on
            # its way): the verdict is written once a job has waited `grace`, not per pass.
            since = self._pending_since.setdefault(view.key, now)
            if now - since < grace:
                self._schedule_later(since + grace - now)
            else:
                work.append(self._still_pending(body, placement.reason, placement.trace))
        await asyncio.gather(*work)
        return len(result.placed()), len(result.pending())

    def _schedule_later(self, delay: float) -> None:
        """Run a pass in `delay` seconds (one timer at a time: the earliest asked for)."""
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        if self._pass_timer is not None and self._pass_timer.when() <= at:
            return
        if self._pass_timer is not None:
            self._pass_timer.cancel()
        self._pass_timer = loop.call_at(at + 0.01, self._timed_pass)

    def _timed_pass(self) -> None:
        self._pass_timer = None
        self.trigger_schedule()

    async def _orphaned(self, lease: LeaseInfo) -> bool:
        """A Lease is orphaned when the NAAJob its holder names is gone (or was recreated)."""
        parts = lease.holder.split("/")
        if len(parts) != 3:
            return True
        namespace, name, uid = parts
        body = await self.kube.get_naajob(namespace, name)
        return body is None or body["metadata"]["uid"] != uid

    def _start_bind(
        self,
        body: Body,
        view: JobView,
        assignments: Sequence[Assignment],
        trace: Sequence[str],
    ) -> None:
        naas = {a.naa for a in assignments}
        self._binding_jobs.add(view.key)
        self._binding_naas |= naas

        async def bind() -> None:
            try:
                await self._bind_locked(body, view, assignments, trace)
            except (KubeError, ManagementError) as exc:
                log.warning("binding %s failed, placing it again: %s", view.key, exc)
                self.trigger_schedule()
            finally:
                self._binding_jobs.discard(view.key)
                self._binding_naas -= naas

        self._spawn(bind())

    async def _bind_locked(
        self,
        body: Body,
        view: JobView,
        assignments: Sequence[Assignment],
        trace: Sequence[str],
    ) -> None:
        async with self._lock(view.key):
            # The job as it is now: a reconcile that held the lock may have written it (the
            # finalizer) since the pass read it. A job no longer waiting is left alone.
            now = self.jobs.get(view.key)
            if now is None or not self._waits_for_naas(now, uid=view.uid):
                return
            if int(now["metadata"].get("generation", 1)) != int(
                body["metadata"].get("generation", 1)
            ):
                self.trigger_schedule()  # its spec changed: place it again
                return
            await self._bind(now, view, assignments, trace)

    @staticmethod
    def _waits_for_naas(body: Body, *, uid: str) -> bool:
        meta, status = body["metadata"], body.get("status") or {}
        return (
            meta.get("uid") == uid
            and not meta.get("deletionTimestamp")
            and not status.get("assignedNAAs")
            and not (body.get("spec") or {}).get("suspend")
            and not views.job_finished(body)
        )

    async def _bind(
        self,
        body: Body,
        view: JobView,
        assignments: Sequence[Assignment],
        trace: Sequence[str],
    ) -> None:
        ns = self.config.lease_namespace
        # The edge sample before the bind: the newest periodic one (NAAs are sampled once a
        # second while idle too); fetched now only when there is none recent.
        now_ns = _now_ns()
        before: list[Sample | None] = []
        for a in assignments:
            last = self._last_sample.get(a.naa)
            if last is None or now_ns - last.t_ns > 3 * self.config.sample_seconds * 1e9:
                last = await self._sample(a.naa)
            before.append(last)
        bound_ns = _now_ns()
        bound_at = views.ns_to_rfc3339_ns(bound_ns)
        # That sample is also written on the Lease (`naaice.io/bound-energy`), in the same
        # create, so an operator restarted mid-job can still start the window's counter delta.
        annotations = [_bind_annotations(bound_at, first) for first in before]
        # Three things at once: the finalizer (so no pod ever runs on a job that could vanish
        # without releasing its NAAs), the Leases, and asking the NAAs whether they already
        # hold the digest (a read; the answer is only used once the Leases are ours).
        t0 = time.perf_counter()
        finalizing = asyncio.ensure_future(self._ensure_finalizer(body))
        probing = asyncio.ensure_future(self._already_flashed(assignments))
        created = await asyncio.gather(
            *(
                self.kube.create_lease(
                    ns,
                    {
                        "metadata": {
                            "name": f"naa-{a.naa}",
                            "namespace": ns,
                            "labels": {LABEL_NAA: a.naa, LABEL_HOLDER_UID: view.uid},
                            "annotations": notes,
                        },
                        "spec": {
                            "holderIdentity": view.holder,
                            "acquireTime": bound_at[:26] + "Z",
                        },
                    },
                )
                for a, notes in zip(assignments, annotations, strict=True)
            ),
            return_exceptions=True,
        )
        for c in created:
            if isinstance(c, dict):
                self.leases.wrote(c)
        vanished = False
        try:
            body = await finalizing
        except (NotFound, Conflict):
            vanished = True  # gone or changed since the pass read it
        flashed = await probing
        if vanished or not all(isinstance(c, dict) for c in created):
            self.metrics.lease_conflicts.inc(sum(1 for c in created if c is None))
            await self._give_back(created)
            self.trigger_schedule()
            return
        # The sample just after the bind instant closes the bracket around the window's edge;
        # it is taken in the background so the pass does not wait for the NAAs.
        for a, first in zip(assignments, before, strict=True):
            sampler = _Sampler(naa=a.naa, holder=view.holder)
            if first is not None:
                sampler.samples.append(first)
            self._samplers[a.naa] = sampler
            self._spawn(self._edge_sample(sampler, bound_ns))
        # The NAAs already holding the digest (the common case with a warm pool, and every
        # NAA after a job of the same bitstream) are Flashed in the same status write.
        spec_original = injection.render_original(assignments)
        gen = int(body["metadata"].get("generation", 1))
        conds = cond.set_condition(
            views.job_conditions(body),
            type=cond.SCHEDULED,
            status="True",
            reason="Placed",
            message="; ".join(trace),
            generation=gen,
            now=_rfc3339(),
        )
        if flashed is not None:
            conds = cond.set_condition(
                conds,
                type=cond.FLASHED,
                status="True",
                reason="Flashed",
                message="digest loaded: "
                + ", ".join(f"{a.naa} {flashed:.2f}s" for a in assignments),
                generation=gen,
                now=_rfc3339(),
            )
        status: dict[str, Any] = {
            "assignedNAAs": [views.assignment_dict(a) for a in assignments],
            "naaSpec": spec_original,
            "conditions": [c.to_dict() for c in conds],
            "observedGeneration": gen,
        }
        if not (body.get("status") or {}).get("startTime"):
            status["startTime"] = _rfc3339()
        t1 = time.perf_counter()
        try:
            patched = await self._patch_status(body, status, quiet=True)
        except (NotFound, Conflict):
            # Gone, or changed since it was read: give the NAAs back, place it again.
            for a in assignments:
                if (s := self._samplers.get(a.naa)) is not None and s.holder == view.holder:
                    del self._samplers[a.naa]
            await self._give_back(created)
            self.trigger_schedule()
            return
        log.info(
            "%s: bind: Leases, finalizer and digest check %.0f ms, status %.0f ms",
            view.key,
            1e3 * (t1 - t0),
            1e3 * (time.perf_counter() - t1),
        )
        if flashed is not None:
            for _ in assignments:
                self.metrics.flash_seconds.labels(result="ok").observe(flashed)
        # The trace is in the Scheduled condition's message too; the Event is the record
        # `kubectl describe` shows, posted in the background (not on the job's path).
        if self.config.normal_events:
            loaded = " (digest already loaded)" if flashed is not None else ""
            self._event(
                involved=patched,
                reason="Scheduled",
                message=f"NAA Spec {spec_original}{loaded}: " + "; ".join(trace),
            )
        held = {
            a.naa: LeaseInfo(
                name=c["metadata"]["name"],
                naa=a.naa,
                holder=view.holder,
                uid=c["metadata"]["uid"],
                bound_at=bound_at,
                bound_energy=notes.get(ANNOTATION_BOUND_ENERGY, ""),
            )
            for a, c, notes in zip(assignments, created, annotations, strict=True)
            if isinstance(c, dict)
        }
        # Still under the job's lock (a reconcile of the job waits for this), in the bind's
        # own task: straight on to flashing and the pods.
        await self._continue_after_bind(view.key, patched, held)

    async def _give_back(self, created: Sequence[Body | BaseException | None]) -> None:
        """Delete the Leases a bind created before it had to give up."""
        await asyncio.gather(
            *(
                self._delete_lease(c["metadata"]["name"], c["metadata"]["uid"])
                for c in created
                if isinstance(c, dict)
            )
        )

    async def _already_flashed(self, assignments: Sequence[Assignment]) -> float | None:
        """The seconds it took to find every assigned NAA Ready with its digest (one health
        call each, in parallel), or None when one is not (the flash step does the work)."""
        started = time.monotonic()

        async def loaded(a: Assignment) -> bool:
            endpoint = self.endpoint(a.naa)
            if not endpoint:
                return False
            try:
                health = await self.mgmt.health(endpoint, await self.token(a.naa))
            except (ManagementError, KubeError):
                return False
            return health.state == "Ready" and health.digest == a.digest

        results = await asyncio.gather(*(loaded(a) for a in assignments))
        return time.monotonic() - started if all(results) else None

    async def _patch_status(self, body: Body, status: Body, *, quiet: bool = False) -> Body:
        """Merge-patch the job's status, only if the job is still at the resourceVersion of
        `body` (the read the caller decided on); the new body goes into the cache. `quiet`:
        the caller carries out the follow-up itself, the write's watch event needs no
        reconcile. A 409 refreshes the cached job from the API before it is raised."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        try:
            patched = await self.kube.patch_naajob_status(
                namespace, name, status, resource_version=meta.get("resourceVersion")
            )
        except Conflict:
            await self._refresh_job(namespace, name)
            raise
        self.jobs.wrote(patched)
        if quiet:
            self._wrote(f"{namespace}/{name}", patched)
        return patched

    async def _delete_lease(self, name: str, uid: str) -> bool:
        ns = self.config.lease_namespace
        gone = await self.kube.delete_lease(ns, name, uid=uid)
        self.leases.deleted(f"{ns}/{name}", uid)
        return gone

    async def _still_pending(self, body: Body, reason: str, trace: Sequence[str]) -> None:
        message = "\n".join(trace)
        conds = views.job_conditions(body)
        current = cond.get(conds, cond.SCHEDULED)
        generation = int(body["metadata"].get("generation", 1))
        if (
            current is not None
            and current.status == "False"
            and current.reason == reason
            and current.message == message
        ):
            return
        new = cond.set_condition(
            conds,
            type=cond.SCHEDULED,
            status="False",
            reason=reason,
            message=message,
            generation=generation,
            now=_rfc3339(),
        )
        try:
            # Nothing follows this write but the next pass: its watch event needs no reconcile.
            await self._patch_status(
                body,
                {"conditions": [c.to_dict() for c in new], "observedGeneration": generation},
                quiet=True,
            )
        except (NotFound, Conflict):
            return  # gone or changed: the next pass looks again
        self._event(involved=body, reason=reason, message=message, type="Warning")

    # ---------------------------------------------------------------------- energy samplers

    async def _sample(self, naa: str) -> Sample | None:
        endpoint = self.endpoint(naa)
        if not endpoint:
            return None
        try:
            return await self.mgmt.sensors(endpoint, await self.token(naa))
        except (ManagementError, KubeError):
            return None

    async def _sample_after(self, naa: str, t_ns: int, *, timeout: float = 1.0) -> Sample | None:
        """A sample whose sensor time is at or after `t_ns`: the NAA reports its newest
        internal sample, which can be slightly older than the request."""
        deadline = time.monotonic() + timeout
        while True:
            sample = await self._sample(naa)
            if sample is None or sample.t_ns >= t_ns or time.monotonic() > deadline:
                return sample
            await asyncio.sleep(0.01)

    async def _sampler_loop(self) -> None:
        """Sample every known NAA once a period: bound NAAs feed their job's energy (and a
        sensor that stops answering marks the NAA lost), idle ones provide the sample just
        before the next bind."""
        while True:
            await asyncio.sleep(self.config.sample_seconds)
            if not self._leader:
                continue
            names = sorted(set(self._access) | set(self._samplers))
            results = await asyncio.gather(*(self._sample(n) for n in names))
            now = time.monotonic()
            for naa, sample in zip(names, results, strict=True):
                if sample is not None:
                    self._last_sample[naa] = sample
                sampler = self._samplers.get(naa)
                if sampler is None:
                    continue
                if sample is not None:
                    sampler.samples.append(sample)
                    sampler.failures_since = None
                    if len(sampler.samples) > 100_000:
                        del sampler.samples[1:50_000]
                    continue
                if sampler.failures_since is None:
                    sampler.failures_since = now
                elif (
                    now - sampler.failures_since > self.config.lost_after_seconds
                    and sampler.naa not in self._lost
                ):
                    self._lost.add(sampler.naa)
                    ns, name, _ = ([*sampler.holder.split("/"), "", "", ""])[:3]
                    self.enqueue(f"{ns}/{name}")

    # ---------------------------------------------------------------------- per-job reconcile

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def reconcile(self, key: str) -> None:
        """Carry out the next step(s) of one job; serialised with the scheduler's binding of
        the same job, so neither acts on a half-written binding of the other."""
        async with self._lock(key):
            await self._reconcile(key)

    async def _reconcile(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        body = self.jobs.get(key)
        if body is None:
            return
        held, own_pods = self._cached_holdings(body)
        state, _ = self._state(body, held, own_pods)
        if state.held or state.assigned or state.pods:
            # A job waiting for NAAs needs no finalizer yet: the bind adds it with the Leases.
            body = await self._ensure_finalizer(body)
        if decide(state=state, now=time.time()).step in _CONFIRM:
            fresh = await self._read_fresh(namespace, name)
            if fresh is None:
                return
            body, held, own_pods = fresh
        await self._decide_and_act(key, body, held, own_pods)

    async def _ensure_finalizer(self, body: Body) -> Body:
        """`body` with the finalizer `naaice.io/release` (added, with the resourceVersion as
        precondition, when missing and the job is not being deleted)."""
        meta = body["metadata"]
        if meta.get("deletionTimestamp") or FINALIZER in (meta.get("finalizers") or []):
            return body
        namespace, name = meta["namespace"], meta["name"]
        try:
            patched = await self.kube.patch_naajob(
                namespace,
                name,
                {
                    "metadata": {
                        "finalizers": [*(meta.get("finalizers") or []), FINALIZER],
                        "resourceVersion": meta["resourceVersion"],
                    }
                },
            )
        except Conflict:
            await self._refresh_job(namespace, name)
            raise
        self.jobs.wrote(patched)
        self._wrote(f"{namespace}/{name}", patched)
        return patched

    def _holder(self, body: Body) -> str:
        meta = body["metadata"]
        return f"{meta['namespace']}/{meta['name']}/{meta['uid']}"

    def _cached_holdings(self, body: Body) -> tuple[dict[str, LeaseInfo], list[Body]]:
        """The job's Leases and pods as the caches have them."""
        holder = self._holder(body)
        leases = [lease_info(b) for b in self.leases.indexed(body["metadata"]["uid"])]
        return {ls.naa: ls for ls in leases if ls.holder == holder}, self._own_pods(body)

    async def _refresh_job(self, namespace: str, name: str) -> Body | None:
        body = await self.kube.get_naajob(namespace, name)
        if body is not None:
            self.jobs.wrote(body)
        return body

    async def _read_fresh(
        self, namespace: str, name: str
    ) -> tuple[Body, dict[str, LeaseInfo], list[Body]] | None:
        """The job, its Leases and its pods from the API (and into the caches)."""
        body = await self._refresh_job(namespace, name)
        if body is None:
            return None
        uid = body["metadata"]["uid"]
        leases, pods = await asyncio.gather(
            self.kube.list_lease_bodies(self.config.lease_namespace, f"{LABEL_HOLDER_UID}={uid}"),
            self.kube.list_pods(namespace, f"{injection.LABEL_JOB}={name}"),
        )
        for item in leases:
            self.leases.wrote(item)
        for item in pods:
            self.pods.wrote(item)
        holder = self._holder(body)
        held = {ls.naa: ls for ls in map(lease_info, leases) if ls.holder == holder}
        return body, held, [p for p in pods if views.owned_by(p, uid)]

    async def _continue_after_bind(self, key: str, body: Body, held: dict[str, LeaseInfo]) -> None:
        """Go straight from a fresh binding to flashing and the pods, with what the bind just
        wrote (the patched job, the Leases it created), under the lock the bind holds: a first
        attempt has no pods yet, so nothing needs reading back. Any doubt (a retry) goes
        through the full reconcile."""
        try:
            if int((body.get("status") or {}).get("failedAttempts", 0)) == 0:
                await self._decide_and_act(key, body, held, [])
                return
        except (KubeError, ManagementError) as exc:
            log.warning("continuing %s after binding failed, retrying: %s", key, exc)
        self.enqueue(key)

    @staticmethod
    def _state(
        body: Body, held: Mapping[str, LeaseInfo], own_pods: Sequence[Body]
    ) -> tuple[JobState, tuple[Assignment, ...]]:
        meta = body["metadata"]
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        pods = tuple(views.pod_view(p) for p in own_pods)
        assigned = views.assignments(body)
        conds = views.job_conditions(body)
        state = JobState(
            generation=int(meta.get("generation", 1)),
            conditions=conds,
            deleting=bool(meta.get("deletionTimestamp")),
            suspended=bool(spec.get("suspend", False)),
            replicas=int(spec.get("replicas", 1)),
            backoff_limit=int(spec.get("backoffLimit", 2)),
            ttl_seconds=spec.get("ttlSecondsAfterFinished"),
            assigned=frozenset(a.naa for a in assigned),
            held=frozenset(held),
            failed_attempts=int(status.get("failedAttempts", 0)),
            completion_time=views.timestamp(status.get("completionTime")),
            pods=pods,
        )
        return state, assigned

    async def _decide_and_act(
        self, key: str, body: Body, held: dict[str, LeaseInfo], own_pods: list[Body]
    ) -> None:
        state, assigned = self._state(body, held, own_pods)
        decision = decide(state=state, now=time.time())
        lost = sorted(n for n in state.assigned if n in self._lost)
        if decision.step in (Step.WATCH, Step.MARK_READY, Step.CREATE_PODS) and lost:
            await self._attempt_failed(
                body, state, assigned, held, f"NAA(s) {lost} stopped answering", lost=lost
            )
            return
        step = decision.step
        started = time.perf_counter()
        try:
            await self._act(
                key,
                body,
                state=state,
                decision=decision,
                held=held,
                own_pods=own_pods,
                assigned=assigned,
            )
        finally:
            if step not in (Step.WATCH, Step.NOTHING, Step.SCHEDULE):
                log.info("%s: %s (%.0f ms)", key, step.value, 1e3 * (time.perf_counter() - started))

    async def _act(
        self,
        key: str,
        body: Body,
        *,
        state: JobState,
        decision: Decision,
        held: Mapping[str, LeaseInfo],
        own_pods: Sequence[Body],
        assigned: Sequence[Assignment],
    ) -> None:
        namespace, name = key.split("/", 1)
        meta = body["metadata"]
        uid = meta["uid"]
        conds = state.conditions
        step = decision.step
        if step is Step.RELEASE_AND_FORGET:
            if not await self._drain_then_release(body, own_pods, held):
                return
            finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            with contextlib.suppress(NotFound):
                try:
                    patched = await self.kube.patch_naajob(
                        namespace,
                        name,
                        {
                            "metadata": {
                                "finalizers": finalizers,
                                "resourceVersion": meta["resourceVersion"],
                            }
                        },
                    )
                except Conflict:
                    await self._refresh_job(namespace, name)
                    raise
                self.jobs.wrote(patched)
        elif step is Step.RELEASE:
            # Finished, Leases still held (an operator died in `_finish`): the release instant
            # is the status's window end, on every Lease that lacks it, before any goes.
            recorded = (body.get("status") or {}).get("energy") or {}
            end_ns = views.rfc3339_ns_to_ns(str(recorded.get("windowEnd") or ""))
            if held and end_ns is not None and recorded:
                await self._mark_unbound(held, end_ns)
            await self._drain_then_release(body, own_pods, held, scrub=True)
        elif step is Step.ROLLBACK:
            await self._drain_then_release(body, own_pods, held)
        elif step is Step.DELETE_JOB:
            await self.kube.delete_naajob(namespace, name, uid)
        elif step is Step.WAIT_TTL:
            self._requeue_after(key, decision.after + 0.1)
        elif step is Step.SUSPEND and not state.assigned:
            current = cond.get(conds, cond.SCHEDULED)
            if current is None or current.reason != "Suspended":
                new = cond.set_condition(
                    conds,
                    type=cond.SCHEDULED,
                    status="False",
                    reason="Suspended",
                    message="spec.suspend is true: no NAAs are held and no pods run",
                    generation=state.generation,
                    now=_rfc3339(),
                )
                body = await self._patch_status(body, {"conditions": [c.to_dict() for c in new]})
            await self._drain_then_release(body, own_pods, held)
        elif step is Step.SUSPEND:
            energy = await self._window_energy(body, held)
            gen = state.generation
            new = conds
            for ctype, message in (
                (cond.SCHEDULED, "spec.suspend is true"),
                (cond.FLASHED, ""),
                (cond.READY, ""),
            ):
                new = cond.set_condition(
                    new,
                    type=ctype,
                    status="False",
                    reason="Suspended",
                    message=message,
                    generation=gen,
                    now=_rfc3339(),
                )
            body = await self._patch_status(
                body,
                {
                    "assignedNAAs": None,
                    "naaSpec": None,
                    "energy": energy,
                    "conditions": [c.to_dict() for c in new],
                    "observedGeneration": gen,
                },
            )
            await self._drain_then_release(body, own_pods, held)
        elif step is Step.SCHEDULE:
            self.trigger_schedule()
        elif step is Step.LOST_LEASES:
            gen = state.generation
            new = cond.set_condition(
                conds,
                type=cond.SCHEDULED,
                status="False",
                reason="LeaseLost",
                message=decision.message,
                generation=gen,
                now=_rfc3339(),
            )
            new = cond.set_condition(
                new,
                type=cond.FLASHED,
                status="False",
                reason="LeaseLost",
                message="",
                generation=gen,
                now=_rfc3339(),
            )
            await self._delete_pods(namespace, own_pods)
            body = await self._patch_status(
                body,
                {"assignedNAAs": None, "naaSpec": None, "conditions": [c.to_dict() for c in new]},
            )
            await self._drain_then_release(body, own_pods, held)
            self._event(involved=body, reason="LeaseLost", message=decision.message, type="Warning")
            self.trigger_schedule()
        elif step is Step.FLASH:
            flashed = await self._flash(body, state, assigned, held)
            if flashed is not None and not any(not p.deleting for p in state.pods):
                # Straight on to the pods: saves a full read of the job on the hot path.
                await self._create_pods(body, replace(state, conditions=flashed), assigned)
            elif flashed is not None:
                self.enqueue(key)
        elif step is Step.CLEAN_OLD_PODS:
            await self._delete_pods(
                namespace,
                [p for p in own_pods if views.pod_view(p).attempt != state.failed_attempts],
            )
            self.enqueue(key)
        elif step is Step.CREATE_PODS:
            await self._create_pods(body, state, assigned)
        elif step is Step.ATTEMPT_FAILED:
            await self._attempt_failed(body, state, assigned, held, decision.message)
        elif step is Step.SUCCEED:
            await self._finish(
                body,
                state,
                held,
                succeeded=True,
                reason="Completed",
                message=f"all {state.replicas} pod(s) succeeded",
                pods=own_pods,
                settled=True,
            )
        elif step is Step.MARK_READY:
            new = cond.set_condition(
                conds,
                type=cond.READY,
                status="True",
                reason="PodsReady",
                message=f"{state.replicas} pod(s) running",
                generation=state.generation,
                now=_rfc3339(),
            )
            # Nothing follows until a pod changes.
            await self._patch_status(body, {"conditions": [c.to_dict() for c in new]}, quiet=True)

    def _own_pods(self, body: Body) -> list[Body]:
        """The job's pods as the cache has them (a release checks the API itself)."""
        meta = body["metadata"]
        pods = self.pods.indexed(f"{meta['namespace']}/{meta['name']}")
        return [p for p in pods if views.owned_by(p, meta["uid"])]

    async def _drain_then_release(
        self,
        body: Body,
        pods: Sequence[Body],
        held: Mapping[str, LeaseInfo],
        *,
        scrub: bool = False,
        settled: bool = False,
    ) -> bool:
        """Delete the job's live pods; once none is left, release its Leases (scrubbing the
        NAAs first when `scrub` and the job asks for it). False while pods are still going
        away: the key comes back shortly. A new holder therefore never shares an NAA with a
        leftover pod: before any Lease goes, the pod cache must have caught up with the newest
        revision this process knows (or the pods are listed from the API), so a pod another
        operator process created before then is not missed.

        `settled`: `pods` are all of the current attempt's pods, every one finished, as the
        pod watch delivered them. Then no wait is needed: the watch delivers in revision
        order, so any older pod of the job (an earlier attempt's) was delivered before them,
        and no newer one can exist (pod names are per attempt and replica, and the attempt
        counter only moves through writes guarded by the job's resourceVersion, as the
        terminal write just was)."""
        meta = body["metadata"]
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        live = [p for p in pods if _live(p)]
        if not live and held and not settled:
            # Every pod created before the newest write this process knows of is in the
            # cache once the pod watch has delivered up to that version (usually within
            # milliseconds while pods change; else the API is asked).
            newest = max(self.jobs.version, self.pods.version, self.leases.version)
            if await self._pods_streamed_to(newest, timeout=0.25):
                live = [p for p in self._own_pods(body) if _live(p)]
            else:
                listed = await self.kube.list_pods(namespace, f"{injection.LABEL_JOB}={name}")
                for p in listed:
                    self.pods.wrote(p)
                live = [p for p in listed if views.owned_by(p, uid) and _live(p)]
        if live:
            await self._delete_pods(namespace, live)
            self._requeue_after(f"{namespace}/{name}", 0.3)
            return False
        if scrub:
            await self._scrub_and_release(body, held)
        else:
            await self._release(held)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _event(self, **kwargs: Any) -> None:
        """Post an Event without waiting for it: events are a record, not state."""
        self._spawn(self.kube.event(**kwargs))

    async def _edge_sample(self, sampler: _Sampler, t_ns: int) -> None:
        sample = await self._sample_after(sampler.naa, t_ns)
        if sample is not None:
            sampler.samples.append(sample)

    async def _delete_pods(self, namespace: str, pods: Sequence[Body]) -> None:
        await asyncio.gather(
            *(
                self.kube.delete_pod(namespace, p["metadata"]["name"], grace=0)
                for p in pods
                if not p["metadata"].get("deletionTimestamp")
            )
        )

    async def _release(self, held: Mapping[str, LeaseInfo]) -> None:
        await asyncio.gather(*(self._delete_lease(ls.name, ls.uid) for ls in held.values()))
        for naa in held:
            self._samplers.pop(naa, None)
            self._lost.discard(naa)
        if held:
            self.trigger_schedule()

    async def _scrub_and_release(self, body: Body, held: Mapping[str, LeaseInfo]) -> None:
        if (body.get("spec") or {}).get("scrubOnRelease"):

            async def scrub(naa: str) -> None:
                with contextlib.suppress(ManagementError):
                    await self.mgmt.scrub(self.endpoint(naa), await self.token(naa))

            await asyncio.gather(*(scrub(n) for n in held))
        await self._release(held)

    async def _window_energy(
        self, body: Body, held: Mapping[str, LeaseInfo], *, mark: bool = True
    ) -> dict[str, Any] | None:
        """Energy of this binding (bind → now) per held NAA, merged into what status has from
        earlier attempts.

        With `mark`, the window's end is written onto every held Lease as
        `naaice.io/unbound-at` before this returns (so before the status carrying the figure,
        and before the Leases are deleted): the node agent ends its per-job attribution at
        that same instant rather than when the deletion reaches it. Without, the caller does
        it (`_finish`: alongside the terminal status; a restarted operator that finds a
        finished job still holding unmarked Leases marks them with the status's `windowEnd`
        before deleting them). A Lease that already carries one (this process, or one that
        died, closed the window but did not record the status) keeps its instant: the window
        is closed once, at one end."""
        if not held:
            return (body.get("status") or {}).get("energy")
        # As at bind: one sample just before and one just after the unbind instant.
        before = await asyncio.gather(*(self._sample(n) for n in held))
        end_ns = _window_end(held.values()) or _now_ns()
        sampling = asyncio.gather(*(self._sample_after(n, end_ns) for n in held))
        if mark:
            after, _ = await asyncio.gather(sampling, self._mark_unbound(held, end_ns))
        else:
            after = await sampling
        cfg = IntegratorConfig(
            nominal_period_s=self.config.sample_seconds,
            max_gap_s=max(3 * self.config.sample_seconds, self.config.sample_seconds + 2.0),
        )
        previous = (body.get("status") or {}).get("energy") or {}
        per: dict[str, float] = {
            str(e["naa"]): float(e["joules"]) for e in previous.get("perNAA") or []
        }
        coverages = [float(previous["coverage"])] if "coverage" in previous else []
        methods: set[str] = {str(previous["method"])} if previous.get("method") else set()
        starts = [previous["windowStart"]] if previous.get("windowStart") else []
        bound = 0.0
        error = float(previous.get("errorBoundJoules", 0.0))
        peak = float(previous.get("peakWatts", 0.0))
        for (naa, lease), last_in, last in zip(held.items(), before, after, strict=True):
            start_ns = views.rfc3339_ns_to_ns(lease.bound_at) or end_ns
            sampler = self._samplers.get(naa)
            samples = list(sampler.samples) if sampler and sampler.holder == lease.holder else []
            # The bind-time reading recorded on the Lease: the same sample the in-memory list
            # starts with (then dropped as a duplicate), or, after a restart, the only one
            # before the bind, so the counter delta still spans the whole window.
            seed = _recorded_bind_sample(lease)
            samples.extend(s for s in (seed, last_in, last) if s is not None)
            window = energy_over_window(
                samples=samples, start_ns=start_ns, end_ns=end_ns, config=cfg
            )
            per[naa] = per.get(naa, 0.0) + window.joules
            error += window.error_bound_j
            peak = max(peak, window.peak_power_w)
            bound = max(bound, (end_ns - start_ns) / 1e9)
            coverages.append(window.coverage)
            methods.add(str(window.method))
            starts.append(lease.bound_at)
        method = methods.pop() if len(methods) == 1 else "mixed"
        return {
            "perNAA": [{"naa": k, "joules": round(v, 6)} for k, v in sorted(per.items())],
            "totalJoules": round(sum(per.values()), 6),
            "coverage": round(min(coverages), 6) if coverages else 0.0,
            "method": method,
            "windowStart": min(starts),
            "windowEnd": views.ns_to_rfc3339_ns(end_ns),
            "errorBoundJoules": round(error, 6),
            "peakWatts": round(peak, 3),
            **(
                {"averageWatts": round(sum(per.values()) / bound, 3)}
                if bound > 0 and not previous
                else {}
            ),
        }

    async def _mark_unbound(self, held: Mapping[str, LeaseInfo], end_ns: int) -> None:
        """Annotate each held Lease that lacks it with `naaice.io/unbound-at` = `end_ns`.
        A failure is logged, not raised: the agent then ends the job at the Lease's deletion,
        a few tens of milliseconds later, which is worse but not wrong."""
        ns, stamp = self.config.lease_namespace, views.ns_to_rfc3339_ns(end_ns)
        todo = [ls for ls in held.values() if not ls.unbound_at]
        results = await asyncio.gather(
            *(
                self.kube.annotate_lease(ns, ls.name, {ANNOTATION_UNBOUND_AT: stamp}, uid=ls.uid)
                for ls in todo
            ),
            return_exceptions=True,
        )
        for ls, result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, KubeError):
                    raise result
                log.warning("could not record the release instant on Lease %s: %s", ls.name, result)
            elif result is not None:
                self.leases.wrote(result)

    async def _finish(
        self,
        body: Body,
        state: JobState,
        held: Mapping[str, LeaseInfo],
        *,
        succeeded: bool,
        reason: str,
        message: str,
        pods: Sequence[Body] | None = None,
        settled: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Write the terminal condition (with the energy and `extra` status fields), then
        drain the pods and release the Leases (`settled`: see `_drain_then_release`)."""
        t0 = time.perf_counter()
        energy = await self._window_energy(body, held, mark=False)
        end_ns = views.rfc3339_ns_to_ns(str((energy or {}).get("windowEnd", "")))
        t1 = time.perf_counter()
        gen = state.generation
        now = _rfc3339()
        kind = cond.SUCCEEDED if succeeded else cond.FAILED
        new = cond.set_condition(
            state.conditions,
            type=kind,
            status="True",
            reason=reason,
            message=message,
            generation=gen,
            now=now,
        )
        new = cond.set_condition(
            new, type=cond.READY, status="False", reason=reason, message="", generation=gen, now=now
        )
        status: dict[str, Any] = {
            "conditions": [c.to_dict() for c in new],
            "completionTime": now,
            "observedGeneration": gen,
        }
        if energy is not None:
            status["energy"] = energy
        status.update(extra or {})
        # What follows is below, or comes back through the queue. The release instant goes
        # onto the Leases at the same time (both before any Lease is deleted).
        body, _ = await asyncio.gather(
            self._patch_status(body, status, quiet=True),
            self._mark_unbound(held, end_ns) if end_ns is not None else asyncio.sleep(0),
        )
        t2 = time.perf_counter()
        key = views.job_key(body)
        if not succeeded or self.config.normal_events:
            total = (energy or {}).get("totalJoules", 0.0)
            self._event(
                involved=body,
                reason=reason,
                message=f"{message}; energy {total} J",
                type="Normal" if succeeded else "Warning",
            )
        # The terminal condition is durable now; only then drain the pods and free the NAAs.
        if pods is None:
            pods = self._own_pods(body)
        await self._drain_then_release(body, pods, held, scrub=True, settled=settled)
        log.info(
            "%s: finish: energy window %.0f ms, status %.0f ms, release %.0f ms",
            key,
            1e3 * (t1 - t0),
            1e3 * (t2 - t1),
            1e3 * (time.perf_counter() - t2),
        )
        if (body.get("spec") or {}).get("ttlSecondsAfterFinished") is not None:
            self.enqueue(key)  # its TTL starts now

    async def _attempt_failed(
        self,
        body: Body,
        state: JobState,
        assigned: Sequence[Assignment],
        held: Mapping[str, LeaseInfo],
        message: str,
        *,
        lost: Sequence[str] = (),
        reason: str = "PodFailed",
    ) -> None:
        failed = state.failed_attempts + 1
        for naa in lost:
            self.exclude(naa, "management API stopped answering during a job")
        # Probe the NAAs: one that is down must not be chosen again right away.
        probes = await asyncio.gather(*(self._probe(a.naa) for a in assigned))
        for a, problem in zip(assigned, probes, strict=True):
            if problem:
                self.exclude(a.naa, problem)
        if attempts_exhausted(failed_attempts=failed, backoff_limit=state.backoff_limit):
            await self._finish(
                body,
                state,
                held,
                succeeded=False,
                reason="BackoffLimitExceeded",
                message=f"attempt {failed} failed ({message}); backoffLimit "
                f"{state.backoff_limit} reached",
                extra={"failedAttempts": failed},
            )
            return
        energy = await self._window_energy(body, held)
        gen = state.generation
        now = _rfc3339()
        new = cond.set_condition(
            state.conditions,
            type=cond.SCHEDULED,
            status="False",
            reason="Retrying",
            message=f"attempt {failed} failed: {message}",
            generation=gen,
            now=now,
        )
        flash_failed = reason == "FlashFailed"
        new = cond.set_condition(
            new,
            type=cond.FLASHED,
            status="False",
            reason="FlashFailed" if flash_failed else "Retrying",
            message=message if flash_failed else "",
            generation=gen,
            now=now,
        )
        new = cond.set_condition(
            new,
            type=cond.READY,
            status="False",
            reason=reason,
            message=message,
            generation=gen,
            now=now,
        )
        body = await self._patch_status(
            body,
            {
                "failedAttempts": failed,
                "assignedNAAs": None,
                "naaSpec": None,
                "energy": energy,
                "conditions": [c.to_dict() for c in new],
            },
        )
        self._event(
            involved=body,
            reason="AttemptFailed",
            message=f"attempt {failed} failed: {message}; retrying",
            type="Warning",
        )
        await self._drain_then_release(body, self._own_pods(body), held)

    async def _probe(self, naa: str) -> str:
        endpoint = self.endpoint(naa)
        if not endpoint:
            return ""
        try:
            health = await self.mgmt.health(endpoint, await self.token(naa))
        except Unreachable as exc:
            return f"management API unreachable: {exc}"
        except (ManagementError, KubeError) as exc:
            return f"health check failed: {exc}"
        if not health.healthy or health.state == "Error":
            return f"unhealthy ({health.state}): {health.reason}"
        return ""

    async def _flash_one(self, a: Assignment, artifact: str, timeout: float) -> float:
        """Flash one NAA (idempotent by digest); returns the seconds it took."""
        endpoint, token = self.endpoint(a.naa), await self.token(a.naa)
        if not endpoint:
            raise ManagementError(f"NAA {a.naa} has no spec.management.endpoint")
        started = time.monotonic()
        delay = 0.2
        for attempt in range(self.config.flash_retries):
            try:
                health = await self.mgmt.health(endpoint, token)
                if health.digest == a.digest and health.state == "Ready":
                    return time.monotonic() - started
                if health.state != "Flashing":
                    already = await self.mgmt.flash(
                        endpoint,
                        token,
                        name=a.bitstream,
                        digest=a.digest,
                        artifact=artifact,
                        force=True,
                    )
                    if already:
                        return time.monotonic() - started
                while time.monotonic() - started < timeout:
                    await asyncio.sleep(0.05)
                    health = await self.mgmt.health(endpoint, token)
                    if health.state == "Ready" and health.digest == a.digest:
                        return time.monotonic() - started
                    if health.state == "Error":
                        raise Rejected(endpoint, 500, "FlashError", health.reason)
                raise ManagementError(f"NAA {a.naa} did not finish flashing within {timeout} s")
            except Unreachable:
                if attempt + 1 == self.config.flash_retries:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
        raise ManagementError(f"NAA {a.naa}: flashing gave up")  # pragma: no cover

    async def _flash(
        self,
        body: Body,
        state: JobState,
        assigned: Sequence[Assignment],
        held: Mapping[str, LeaseInfo],
    ) -> tuple[cond.Condition, ...] | None:
        """Flash every assigned NAA in parallel; the new conditions on success, else None
        (the attempt has failed and was handled)."""
        _, bitstreams = await self._naas_and_bitstreams()
        by_name = {b.name: b for b in bitstreams}
        jobs = []
        for a in assigned:
            bs = by_name.get(a.bitstream)
            artifact = bs.artifact if bs else ""
            timeout = min(self.config.flash_timeout, 10.0 + 3 * (bs.flash_seconds if bs else 0))
            jobs.append(self._flash_one(a, artifact, timeout))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        errors = []
        for a, r in zip(assigned, results, strict=True):
            if isinstance(r, BaseException):
                self.metrics.flash_seconds.labels(result="error").observe(0)
                self.exclude(a.naa, f"flash failed: {r}")
                errors.append(f"{a.naa}: {r}")
            else:
                self.metrics.flash_seconds.labels(result="ok").observe(float(r))
        gen = state.generation
        if errors:
            # One status write: `Flashed=False` (FlashFailed, with this message) and the retry.
            message = "flash failed on " + "; ".join(errors)
            await self._attempt_failed(body, state, assigned, held, message, reason="FlashFailed")
            return None
        took = ", ".join(
            f"{a.naa} {r:.2f}s"
            for a, r in zip(assigned, results, strict=True)
            if isinstance(r, float)
        )
        new = cond.set_condition(
            state.conditions,
            type=cond.FLASHED,
            status="True",
            reason="Flashed",
            message=f"digest loaded: {took}",
            generation=gen,
            now=_rfc3339(),
        )
        # The caller goes on to the pods (or enqueues the key) itself.
        await self._patch_status(body, {"conditions": [c.to_dict() for c in new]}, quiet=True)
        if self.config.normal_events:
            self._event(involved=body, reason="Flashed", message=f"digest loaded: {took}")
        return new

    async def _create_pods(
        self, body: Body, state: JobState, assigned: Sequence[Assignment]
    ) -> None:
        meta, spec = body["metadata"], body.get("spec") or {}
        namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
        original = injection.render_original(assigned)
        as_json = injection.render_json_for_job(body, assigned)
        existing = {p.name for p in state.pods}
        wanted = [
            n
            for n in expected_pods(job=name, attempt=state.failed_attempts, replicas=state.replicas)
            if n not in existing
        ]
        bodies = [
            injection.job_pod(
                job_name=name,
                job_uid=uid,
                namespace=namespace,
                template=spec.get("template") or {},
                pod_name=pod,
                attempt=state.failed_attempts,
                original=original,
                as_json=as_json,
                api_version=API_VERSION,
                kind=KIND,
            )
            for pod in wanted
        ]
        fresh = await asyncio.gather(*(self.kube.create_pod(namespace, b) for b in bodies))
        for pod, new in zip(wanted, fresh, strict=True):
            if new is not None:  # its ADDED event (a pending pod) changes no decision
                self.pods.wrote(new)
                self._pod_views.setdefault(f"{namespace}/{pod}", views.pod_view(new))
        if state.failed_attempts == 0 and wanted:
            created = views.timestamp(meta.get("creationTimestamp"))
            if created is not None:
                self.metrics.apply_to_pods_seconds.observe(max(0.0, time.time() - created))
