"""The informer's reader of a watch response: one JSON event per line, whatever the chunks the
body arrives in (a line split across chunks, several lines in one chunk, blank keep-alives); and
its reflector loop: a resourceVersion that is gone (410, as a watch ERROR event or as the watch
request's status) means a fresh LIST and a watch from that LIST's version."""

from __future__ import annotations

import asyncio
import json
import threading

from kubernetes.client.exceptions import ApiException
from naa_operator.adapters.informer import Informer, lines


def test_events_split_across_chunks_come_out_whole_and_in_order() -> None:
    events = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "1"}}},
        {"type": "MODIFIED", "object": {"metadata": {"name": "a", "resourceVersion": "2"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "3"}}},
    ]
    raw = b"".join(json.dumps(e).encode() + b"\n" for e in events) + b"\n"
    chunks = [raw[:7], raw[7:60], raw[60:61], raw[61:]]
    assert [json.loads(line) for line in lines(chunks)] == events
    # A last event without its newline yet is not handed out half-read.
    assert list(lines([raw[:50]])) == []


class _Response:
    """What the official client returns with `_preload_content=False`: a body read at once
    (`data`) or streamed (`stream`)."""

    def __init__(self, body: bytes) -> None:
        self.data = body

    def stream(self, amt: object = None, decode_content: object = None) -> list[bytes]:
        return [self.data]

    def release_conn(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def _obj(name: str, rv: str) -> dict[str, object]:
    return {"metadata": {"name": name, "resourceVersion": rv}}


class _Server:
    """A scripted apiserver for one kind: LIST number i answers `states[i]` (items, version;
    the last one repeats), watch number i plays `watches[i]`: events, or an HTTP status to
    refuse the watch with; once the script is played, watches end empty."""

    def __init__(
        self,
        states: list[tuple[list[dict[str, object]], str]],
        watches: list[list[dict[str, object]] | int],
    ) -> None:
        self.states, self.watches = states, watches
        self.calls: list[str] = []
        self.lists = 0

    def __call__(self, **kwargs: object) -> _Response:
        if not kwargs.get("watch"):
            self.calls.append("list")
            items, version = self.states[min(self.lists, len(self.states) - 1)]
            self.lists += 1
            body = {"metadata": {"resourceVersion": version}, "items": items}
            return _Response(json.dumps(body).encode())
        self.calls.append(f"watch@{kwargs['resource_version']}")
        if not self.watches:
            threading.Event().wait(0.05)
            return _Response(b"")
        step = self.watches.pop(0)
        if isinstance(step, int):
            raise ApiException(status=step, reason="Expired")
        return _Response(b"".join(json.dumps(e).encode() + b"\n" for e in step))


Listed = list[tuple[list[str], str]]


def _run_informer(server: _Server, lists_wanted: int) -> tuple[Listed, list[str]]:
    """Run an informer against `server` until it has listed `lists_wanted` times."""
    lists: Listed = []
    events: list[str] = []

    async def main() -> None:
        informer = Informer(name="test", list_fn=server)
        informer.start(
            on_list=lambda items, v: lists.append(([str(i["metadata"]["name"]) for i in items], v)),
            on_event=lambda kind, body: events.append(f"{kind} {body['metadata']['name']}"),
        )
        for _ in range(500):
            if len(lists) >= lists_wanted:
                break
            await asyncio.sleep(0.01)
        informer.stop()

    asyncio.run(main())
    return lists, events


def test_a_watch_error_410_lists_again_and_watches_from_the_new_version() -> None:
    gone: dict[str, object] = {
        "type": "ERROR",
        "object": {"kind": "Status", "code": 410, "message": "too old"},
    }
    server = _Server(
        states=[([_obj("a", "5")], "5"), ([_obj("a", "5"), _obj("c", "9")], "9")],
        watches=[[{"type": "ADDED", "object": _obj("b", "7")}, gone]],
    )
    lists, events = _run_informer(server, lists_wanted=2)
    assert lists[:2] == [(["a"], "5"), (["a", "c"], "9")]
    assert events[:1] == ["ADDED b"]
    assert server.calls[:4] == ["list", "watch@5", "list", "watch@9"]


def test_a_watch_refused_with_http_410_lists_again() -> None:
    server = _Server(states=[([_obj("a", "5")], "5"), ([_obj("a", "6")], "6")], watches=[410])
    lists, _ = _run_informer(server, lists_wanted=2)
    assert lists[:2] == [(["a"], "5"), (["a"], "6")]
    assert server.calls[:4] == ["list", "watch@5", "list", "watch@6"]
