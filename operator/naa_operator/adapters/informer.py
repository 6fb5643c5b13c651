"""List-and-watch of one kind of object, as client-go's reflector does: an initial LIST, then a
watch from its resourceVersion (bookmarks keep that version current), a re-watch from the last
version seen when a stream ends or breaks, and a fresh LIST when the version is too old for the
apiserver (410 Gone).

Each informer runs in its own thread with the official client (a watch blocks its thread for
minutes, so it must not take one of `Kube`'s pool threads) and hands everything to the asyncio
loop: `on_list(items, resourceVersion)` after every LIST, `on_event(type, body)` for every
ADDED/MODIFIED/DELETED. The store they fill is `services.cache`; this module only moves bodies."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

Body = dict[str, Any]
ListFn = Callable[..., Any]
"""A list call of the official client (`list_namespaced_pod`, …) with its positional args
bound; it is called with `label_selector`, `_preload_content=False` and, to watch, `watch=True`
and the watch parameters."""

log = logging.getLogger("naaice.operator")


_HINTS = {
    401: " (the operator's credentials were refused: check its kubeconfig or ServiceAccount token)",
    403: " (the operator's ServiceAccount may not list and watch them: apply the operator's"
    " RBAC, deploy/rbac/operator.yaml or the Helm chart's)",
    404: " (the resource is unknown to the apiserver: install the CRDs, charts/naaice/crds/)",
}
"""What to do about the errors a deployment can cause, appended to the retry warning."""


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response's body, as its chunks arrive."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while (end := buffer.find(b"\n")) != -1:
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.strip():
                yield line


class Informer:
    """One kind of object (filtered by a label selector), listed and watched in a thread."""

    def __init__(
        self,
        *,
        name: str,
        list_fn: ListFn,
        label_selector: str = "",
        watch_seconds: int = 300,
    ) -> None:
        self.name = name
        self._list_fn = list_fn
        self._selector = label_selector
        self._watch_seconds = watch_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_list: Callable[[list[Body], str], None] | None = None
        self._on_event: Callable[[str, Body], None] | None = None

    def start(
        self,
        *,
        on_list: Callable[[list[Body], str], None],
        on_event: Callable[[str, Body], None],
    ) -> None:
        """Start listing and watching; the callbacks run in the calling thread's event loop."""
        self._loop = asyncio.get_running_loop()
        self._on_list, self._on_event = on_list, on_event
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread: the open watch is shut down so its blocking read returns."""
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception as exc:  # best effort: the thread is a daemon
                log.debug("informer %s: shutting down its watch: %s", self.name, exc)

    # ----------------------------------------------------------------------- in the thread

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed() and not self._stop.is_set():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed in between
                self._stop.set()

    def _list(self) -> str:
        resp = self._list_fn(label_selector=self._selector, _preload_content=False)
        data = json.loads(resp.data)
        version = str((data.get("metadata") or {}).get("resourceVersion", ""))
        assert self._on_list is not None
        self._post(self._on_list, list(data.get("items") or []), version)
        return version

    def _watch(self, version: str) -> str:
        """Stream events from `version` until the server ends the watch; the last version."""
        resp = self._list_fn(
            label_selector=self._selector,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_seconds,
            _preload_content=False,
            _request_timeout=(10, self._watch_seconds + 30),
        )
        self._response = resp
        assert self._on_event is not None
        try:
            for line in lines(resp.stream(amt=None, decode_content=False)):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._post(self._on_event, str(kind), obj)
                if self._stop.is_set():
                    break
        finally:
            self._response = None
            resp.release_conn()
        return version

    def _run(self) -> None:
        version = ""
        delay = 0.5
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                delay = 0.5
            except Gone:
                log.info(
                    "informer %s: resourceVersion %s is gone, listing again", self.name, version
                )
                version = ""
            except ApiException as exc:
                if exc.status == 410:
                    version = ""
                    continue
                log.warning(
                    "informer %s: %s %s%s; retrying in %.1f s",
                    self.name,
                    exc.status,
                    exc.reason,
                    _HINTS.get(exc.status or 0, ""),
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except Exception as exc:  # a broken stream: watch again from `version`
                if self._stop.is_set():
                    return
                log.warning(
                    "informer %s: %s failed (%s); retrying in %.1f s",
                    self.name,
                    "watch" if version else "list",
                    exc,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
