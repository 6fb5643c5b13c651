"""The informer's reader of a watch response: one JSON event per line, whatever the chunks the
body arrives in (a line split across chunks, several lines in one chunk, blank keep-alives)."""

from __future__ import annotations

import json

from naa_operator.adapters.informer import lines


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
