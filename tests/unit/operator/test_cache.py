"""The informer cache never lets an older body replace a newer one, whichever way each came in
(LIST, watch event, the operator's own write), and a relist turns into the events it implies."""

from __future__ import annotations

from typing import Any

from naa_operator.services.cache import Store


def obj(name: str, rv: int, *, uid: str = "u1", **labels: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": uid,
            "resourceVersion": str(rv),
            "labels": labels,
        }
    }


def by_job(body: dict[str, Any]) -> str | None:
    return body["metadata"]["labels"].get("job")


def test_an_event_older_than_the_operators_own_write_is_ignored() -> None:
    store = Store()
    store.wrote(obj("a", 10))
    assert not store.observe("MODIFIED", obj("a", 9))
    assert store.get("ns/a") == obj("a", 10)
    assert store.observe("MODIFIED", obj("a", 11))
    assert store.get("ns/a") == obj("a", 11)


def test_an_object_the_operator_deleted_does_not_come_back_with_a_late_event() -> None:
    store = Store()
    store.observe("ADDED", obj("a", 5))
    store.deleted("ns/a", "u1")
    assert store.get("ns/a") is None
    assert not store.observe("MODIFIED", obj("a", 5))
    assert store.get("ns/a") is None
    assert store.observe("DELETED", obj("a", 7))
    # A new object of that name (a later version) is taken again.
    assert store.observe("ADDED", obj("a", 8, uid="u2"))
    assert store.get("ns/a") == obj("a", 8, uid="u2")


def test_deleting_another_uid_keeps_the_recreated_object() -> None:
    store = Store()
    store.observe("ADDED", obj("a", 8, uid="u2"))
    store.deleted("ns/a", "u1")
    assert store.get("ns/a") is not None
    assert not store.observe("DELETED", obj("a", 6, uid="u1"))
    assert store.get("ns/a") is not None


def test_a_relist_reports_what_changed_and_keeps_what_the_operator_wrote_after_it() -> None:
    store = Store(index=by_job)
    store.replace([obj("a", 3, job="j"), obj("b", 4, job="j")], "4")
    assert store.synced
    assert [b["metadata"]["name"] for b in store.indexed("j")] == ["a", "b"]
    store.wrote(obj("c", 9, job="j"))  # created by the operator after the next LIST was taken
    events = store.replace([obj("a", 6, job="k")], "7")
    assert sorted((kind, b["metadata"]["name"]) for kind, b in events) == [
        ("DELETED", "b"),
        ("MODIFIED", "a"),
    ]
    assert [b["metadata"]["name"] for b in store.indexed("j")] == ["c"]
    assert [b["metadata"]["name"] for b in store.indexed("k")] == ["a"]
    assert store.version == 9
    # Only what the LIST and the watch delivered counts as streamed, not the own write.
    assert store.streamed == 7
    store.observe("MODIFIED", obj("a", 12, job="k"))
    assert store.streamed == 12


def test_the_index_follows_a_label_change_and_a_deletion() -> None:
    store = Store(index=by_job)
    store.observe("ADDED", obj("p", 1, job="j1"))
    store.observe("MODIFIED", obj("p", 2, job="j2"))
    assert store.indexed("j1") == []
    assert [b["metadata"]["name"] for b in store.indexed("j2")] == ["p"]
    store.observe("DELETED", obj("p", 3, job="j2"))
    assert store.indexed("j2") == []
    assert len(store) == 0
