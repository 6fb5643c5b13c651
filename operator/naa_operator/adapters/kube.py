"""The Kubernetes API as the operator uses it: a small async facade over the official
synchronous `kubernetes` client, whose calls run in a bounded thread pool.

Called by `services`. Bodies come back as plain JSON (`_preload_content=False`), which is both
faster than the client's model classes and what `naaice.api`/the views parse. Conflicts that the
lifecycle relies on (a Lease that exists = taken, a pod that exists = already created) are
returned as values, not raised; every other API failure becomes a `KubeError`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from naa_operator.adapters.informer import Informer
from naaice.api import ANNOTATION_BOUND_AT, ANNOTATION_BOUND_ENERGY, ANNOTATION_UNBOUND_AT

T = TypeVar("T")
Body = dict[str, Any]

GROUP = "naaice.io"
VERSION = "v1alpha1"
NAAJOBS = "naajobs"
NAAS = "networkattachedaccelerators"
BITSTREAMS = "bitstreams"


class KubeError(Exception):
    """A Kubernetes API call failed for a reason the caller cannot fix by retrying blindly."""

    def __init__(self, what: str, exc: ApiException | Exception) -> None:
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", "") or str(exc)
        body = getattr(exc, "body", "") or ""
        try:
            message = json.loads(body).get("message", "") if body else ""
        except (ValueError, AttributeError):
            message = ""
        super().__init__(f"{what}: HTTP {status} {reason} {message}".strip())
        self.status = status


class NotFound(KubeError):
    """The object does not exist (HTTP 404)."""


class Conflict(KubeError):
    """The object changed or exists already (HTTP 409)."""


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """An allocation Lease as the operator reads it."""

    name: str
    naa: str
    holder: str
    uid: str
    bound_at: str
    unbound_at: str = ""
    """`naaice.io/unbound-at` when a release already closed this binding's energy window."""
    bound_energy: str = ""
    """`naaice.io/bound-energy`: the NAA's sensor reading just before the bind, when recorded."""


def lease_info(item: Mapping[str, Any]) -> LeaseInfo:
    """An allocation Lease's body as the operator reads it."""
    meta = item.get("metadata") or {}
    notes = meta.get("annotations") or {}
    return LeaseInfo(
        name=meta.get("name", ""),
        naa=(meta.get("labels") or {}).get(f"{GROUP}/naa", ""),
        holder=(item.get("spec") or {}).get("holderIdentity") or "",
        uid=meta.get("uid", ""),
        bound_at=notes.get(ANNOTATION_BOUND_AT, ""),
        unbound_at=notes.get(ANNOTATION_UNBOUND_AT, ""),
        bound_energy=notes.get(ANNOTATION_BOUND_ENERGY, ""),
    )


def load_api_client(*, kubeconfig: str | None = None, pool: int = 32) -> k8s.ApiClient:
    """An ApiClient from `kubeconfig`, `$KUBECONFIG` or the in-cluster service account."""
    configuration = k8s.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        loader: Any = k8s_config.load_kube_config
        loader(config_file=path, client_configuration=configuration)
    else:
        incluster: Any = k8s_config.load_incluster_config
        incluster(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool
    return k8s.ApiClient(configuration)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """Async access to the objects the operator reads and writes."""

    def __init__(self, api: k8s.ApiClient, *, threads: int = 16) -> None:
        self._api = api
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        # Bodies are plain dicts (the client accepts them); its model-typed stubs would not.
        self._custom: Any = k8s.CustomObjectsApi(api)
        self._core: Any = k8s.CoreV1Api(api)
        self._coord: Any = k8s.CoordinationV1Api(api)
        self.calls: Counter[str] = Counter()
        """API calls made so far, by verb and kind ("create Lease", "patch status", …)."""

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        api: Any = self._api
        api.close()

    async def _run(self, what: str, fn: Callable[[], T]) -> T:
        self.calls[" ".join(what.split()[:2])] += 1
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except ApiException as exc:
            if exc.status == 404:
                raise NotFound(what, exc) from exc
            if exc.status == 409:
                raise Conflict(what, exc) from exc
            raise KubeError(what, exc) from exc

    @staticmethod
    def _json(resp: Any) -> Body:
        data = resp.data
        return json.loads(data) if data else {}

    @staticmethod
    def _drained(resp: Any) -> None:
        """Read a response we do not need to its end: with `_preload_content=False` only a
        fully read response goes back to the connection pool; an unread one is dropped, and
        the next call pays a new TLS handshake (on both ends) for it."""
        resp.data  # noqa: B018 - reading `.data` consumes the body and releases the connection

    # Informers (list + watch, each in its own thread) ----------------------------------------

    def naajob_informer(self, namespace: str | None) -> Informer:
        if namespace is None:
            fn = partial(self._custom.list_cluster_custom_object, GROUP, VERSION, NAAJOBS)
        else:
            fn = partial(
                self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, NAAJOBS
            )
        return Informer(name="naajobs", list_fn=fn)

    def pod_informer(self, namespace: str | None, selector: str) -> Informer:
        if namespace is None:
            fn = partial(self._core.list_pod_for_all_namespaces)
        else:
            fn = partial(self._core.list_namespaced_pod, namespace)
        return Informer(name="pods", list_fn=fn, label_selector=selector)

    def lease_informer(self, namespace: str, selector: str) -> Informer:
        fn = partial(self._coord.list_namespaced_lease, namespace)
        return Informer(name="leases", list_fn=fn, label_selector=selector)

    # NAAJobs ------------------------------------------------------------------------------

    async def get_naajob(self, namespace: str, name: str) -> Body | None:
        try:
            return await self._run(
                f"get NAAJob {namespace}/{name}",
                lambda: self._json(
                    self._custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, NAAJOBS, name, _preload_content=False
                    )
                ),
            )
        except NotFound:
            return None

    async def patch_naajob_status(
        self, namespace: str, name: str, status: Body, *, resource_version: str | None = None
    ) -> Body:
        """Merge-patch `status` (the status subresource); with `resource_version`, only if
        the job is still at that version (else `Conflict`): optimistic concurrency for
        writes decided on a cached read."""
        patch: Body = {"status": status}
        if resource_version:
            patch["metadata"] = {"resourceVersion": resource_version}
        return await self._run(
            f"patch status of NAAJob {namespace}/{name}",
            lambda: self._json(
                self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, NAAJOBS, name, patch, _preload_content=False
                )
            ),
        )

    async def patch_naajob(self, namespace: str, name: str, patch: Body) -> Body:
        return await self._run(
            f"patch NAAJob {namespace}/{name}",
            lambda: self._json(
                self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, NAAJOBS, name, patch, _preload_content=False
                )
            ),
        )

    async def delete_naajob(self, namespace: str, name: str, uid: str) -> None:
        body = {"preconditions": {"uid": uid}, "propagationPolicy": "Background"}
        with contextlib.suppress(NotFound, Conflict):
            await self._run(
                f"delete NAAJob {namespace}/{name}",
                lambda: self._drained(
                    self._custom.delete_namespaced_custom_object(
                        GROUP, VERSION, namespace, NAAJOBS, name, body=body, _preload_content=False
                    )
                ),
            )

    # NAAs and Bitstreams ---------------------------------------------------------------------

    async def list_cluster_objects(self, plural: str) -> list[Body]:
        items: list[Body] = (
            await self._run(
                f"list {plural}",
                lambda: self._json(
                    self._custom.list_cluster_custom_object(
                        GROUP, VERSION, plural, _preload_content=False
                    )
                ),
            )
        ).get("items", [])
        return items

    # Leases -----------------------------------------------------------------------------------

    async def list_lease_bodies(self, namespace: str, selector: str) -> list[Body]:
        raw = await self._run(
            f"list Leases in {namespace}",
            lambda: self._json(
                self._coord.list_namespaced_lease(
                    namespace, label_selector=selector, _preload_content=False
                )
            ),
        )
        items: list[Body] = raw.get("items", [])
        return items

    async def get_lease(self, namespace: str, name: str) -> Body | None:
        try:
            return await self._run(
                f"get Lease {namespace}/{name}",
                lambda: self._json(
                    self._coord.read_namespaced_lease(name, namespace, _preload_content=False)
                ),
            )
        except NotFound:
            return None

    async def create_lease(self, namespace: str, body: Body) -> Body | None:
        """Create a Lease; None when one of that name exists (the NAA is taken)."""
        try:
            return await self._run(
                f"create Lease {namespace}/{body['metadata']['name']}",
                lambda: self._json(
                    self._coord.create_namespaced_lease(namespace, body, _preload_content=False)
                ),
            )
        except Conflict:
            return None

    async def replace_lease(self, namespace: str, name: str, body: Body) -> Body:
        """Replace a Lease (optimistic concurrency: a stale resourceVersion is a Conflict)."""
        return await self._run(
            f"replace Lease {namespace}/{name}",
            lambda: self._json(
                self._coord.replace_namespaced_lease(name, namespace, body, _preload_content=False)
            ),
        )

    async def annotate_lease(
        self, namespace: str, name: str, annotations: Mapping[str, str], *, uid: str
    ) -> Body | None:
        """Merge `annotations` into the Lease with `uid` (a JSON merge patch whose
        `metadata.uid` is a precondition); the new body, or None when it is gone or was
        recreated."""
        patch: Body = {"metadata": {"uid": uid, "annotations": dict(annotations)}}
        try:
            return await self._run(
                f"annotate Lease {namespace}/{name}",
                lambda: self._json(
                    self._coord.patch_namespaced_lease(
                        name,
                        namespace,
                        patch,
                        _content_type="application/merge-patch+json",
                        _preload_content=False,
                    )
                ),
            )
        except (NotFound, Conflict):
            return None

    async def delete_lease(self, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete a Lease (only the one with `uid`, when given); False if it was not there."""
        body: Body = {"preconditions": {"uid": uid}} if uid else {}
        try:
            await self._run(
                f"delete Lease {namespace}/{name}",
                lambda: self._drained(
                    self._coord.delete_namespaced_lease(
                        name, namespace, body=body, _preload_content=False
                    )
                ),
            )
        except (NotFound, Conflict):
            return False
        return True

    # Pods, Secrets, Events -----------------------------------------------------------

    async def list_pods(self, namespace: str, selector: str) -> list[Body]:
        items: list[Body] = (
            await self._run(
                f"list pods in {namespace}",
                lambda: self._json(
                    self._core.list_namespaced_pod(
                        namespace, label_selector=selector, _preload_content=False
                    )
                ),
            )
        ).get("items", [])
        return items

    async def create_pod(self, namespace: str, body: Body) -> Body | None:
        """Create a pod; the created body, or None when a pod of that name exists already."""
        try:
            return await self._run(
                f"create pod {namespace}/{body['metadata']['name']}",
                lambda: self._json(
                    self._core.create_namespaced_pod(namespace, body, _preload_content=False)
                ),
            )
        except Conflict:
            return None

    async def delete_pod(self, namespace: str, name: str, *, grace: int | None = None) -> None:
        with contextlib.suppress(NotFound):
            await self._run(
                f"delete pod {namespace}/{name}",
                lambda: self._drained(
                    self._core.delete_namespaced_pod(
                        name, namespace, grace_period_seconds=grace, _preload_content=False
                    )
                ),
            )

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's data, decoded."""
        import base64

        body = await self._run(
            f"read Secret {namespace}/{name}",
            lambda: self._json(
                self._core.read_namespaced_secret(name, namespace, _preload_content=False)
            ),
        )
        data: Mapping[str, str] = body.get("data") or {}
        return {k: base64.b64decode(v) for k, v in data.items()}

    async def event(
        self,
        *,
        involved: Body,
        reason: str,
        message: str,
        type: str = "Normal",
        component: str = "naaice-operator",
    ) -> None:
        """Record a core/v1 Event about `involved` (best effort: events are not state)."""
        meta = involved.get("metadata", {})
        namespace = meta.get("namespace") or "default"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body: Body = {
            "metadata": {"generateName": f"{meta.get('name', 'naaice')}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", ""),
                "kind": involved.get("kind", ""),
                "name": meta.get("name", ""),
                "namespace": namespace,
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message[:1000],
            "type": type,
            "source": {"component": component},
            "firstTimestamp": now_rfc3339(),
            "lastTimestamp": now_rfc3339(),
            "eventTime": now,
            "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", component),
            "action": reason,
            "count": 1,
        }
        with contextlib.suppress(KubeError):
            await self._run(
                "create Event",
                lambda: self._drained(
                    self._core.create_namespaced_event(namespace, body, _preload_content=False)
                ),
            )
