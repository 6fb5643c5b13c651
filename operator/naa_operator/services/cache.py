"""An in-memory copy of one kind of object, fed by an informer's LIST and watch events and by
the operator's own writes (controller-runtime's cache, minus the generality).

Called by `services.controller`, in the event loop only (no locks). The copy may lag behind
the apiserver, never run ahead of it: every body in it was returned by the apiserver. What the
controller does with a stale copy is its business (writes carry the resourceVersion they were
decided on; destructive steps re-read the API first); the store only makes sure that an older
body never replaces a newer one, whichever path each arrived on.

Ordering relies on resourceVersions being etcd revisions (integers that grow with every write,
across all kinds), which is what every apiserver backed by etcd hands out. A version that is
not an integer is treated as newer than anything, i.e. the store then simply follows the order
bodies arrive in."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Body = dict[str, Any]


def version(body: Body) -> int | None:
    raw = (body.get("metadata") or {}).get("resourceVersion")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def object_key(body: Body) -> str:
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


class Store:
    """Bodies by `namespace/name`, with an optional secondary index (one value per body)."""

    def __init__(self, index: Callable[[Body], str | None] | None = None) -> None:
        self._items: dict[str, Body] = {}
        self._index_fn = index
        self._index: dict[str, set[str]] = {}
        # Objects this process deleted: the last version it knew, so a late event from before
        # the deletion does not bring them back (cleared by their DELETED event).
        self._tombstones: dict[str, int] = {}
        self.synced = False
        self.version = 0
        """The newest resourceVersion this store has seen (LIST, event or own write)."""
        self.streamed = 0
        """The newest resourceVersion its LIST or watch delivered: the stream is complete up
        to there (a watch delivers a kind's changes in resourceVersion order), so every
        object of this kind written before that version is in the store."""

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Body | None:
        return self._items.get(key)

    def items(self) -> list[Body]:
        return list(self._items.values())

    def indexed(self, value: str) -> list[Body]:
        return [self._items[k] for k in sorted(self._index.get(value, ()))]

    # ------------------------------------------------------------------------------ updates

    def _seen(self, rv: int | None, *, streamed: bool = False) -> None:
        if rv is not None and rv > self.version:
            self.version = rv
        if streamed and rv is not None and rv > self.streamed:
            self.streamed = rv

    def _newer(self, key: str, body: Body) -> bool:
        rv = version(body)
        if rv is None:
            return True
        dead = self._tombstones.get(key)
        if dead is not None and rv <= dead:
            return False
        have = self._items.get(key)
        held = version(have) if have is not None else None
        return held is None or rv >= held

    def _put(self, key: str, body: Body) -> None:
        old = self._items.get(key)
        if self._index_fn is not None and old is not None:
            value = self._index_fn(old)
            if value is not None:
                self._index.get(value, set()).discard(key)
        self._items[key] = body
        if self._index_fn is not None:
            value = self._index_fn(body)
            if value is not None:
                self._index.setdefault(value, set()).add(key)

    def _drop(self, key: str) -> Body | None:
        old = self._items.pop(key, None)
        if old is not None and self._index_fn is not None:
            value = self._index_fn(old)
            if value is not None:
                keys = self._index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._index[value]
        return old

    def observe(self, event_type: str, body: Body) -> bool:
        """Apply a watch event; False when it is older than what the store holds (the event
        then reports nothing new and needs no reaction)."""
        key = object_key(body)
        self._seen(version(body), streamed=True)
        if event_type == "DELETED":
            self._tombstones.pop(key, None)
            have = self._items.get(key)
            if have is not None and have.get("metadata", {}).get("uid") != body.get(
                "metadata", {}
            ).get("uid"):
                return False  # a recreated object of that name is already here
            self._drop(key)
            return True
        if not self._newer(key, body):
            return False
        self._tombstones.pop(key, None)
        self._put(key, body)
        return True

    def replace(self, bodies: Iterable[Body], list_version: str) -> list[tuple[str, Body]]:
        """Apply a full LIST taken at `list_version`; returns the (type, body) events the
        difference amounts to. A body this process wrote after the LIST is kept."""
        try:
            at: int | None = int(list_version)
        except ValueError:
            at = None
        self._seen(at, streamed=True)
        events: list[tuple[str, Body]] = []
        listed: set[str] = set()
        for body in bodies:
            key = object_key(body)
            listed.add(key)
            existed = key in self._items
            if self._newer(key, body):
                self._put(key, body)
                events.append(("MODIFIED" if existed else "ADDED", body))
        for key in [k for k in self._items if k not in listed]:
            rv = version(self._items[key])
            if at is not None and rv is not None and rv > at:
                continue  # written by this process after the LIST was taken
            old = self._drop(key)
            if old is not None:
                events.append(("DELETED", old))
        self._tombstones = {
            k: v for k, v in self._tombstones.items() if at is None or v > at or k in listed
        }
        self.synced = True
        return events

    def wrote(self, body: Body) -> None:
        """A body the apiserver returned for this process's own write."""
        key = object_key(body)
        self._seen(version(body))
        if self._newer(key, body):
            self._put(key, body)

    def deleted(self, key: str, uid: str | None = None) -> None:
        """This process deleted the object (the one with `uid`, when given): drop it now, and
        ignore any older event of it."""
        have = self._items.get(key)
        if have is None or (uid is not None and (have.get("metadata") or {}).get("uid") != uid):
            return
        self._drop(key)
        rv = version(have)
        if rv is not None:
            self._tombstones[key] = rv
