"""The compiled round trip of small RPCs (`Endpoint.round_trip`) over real UDP sockets: the
same RPCs with it and without it give the same results, return codes and queue-pair state;
it is really taken; and a lossy NAA (ACKs and replies lost, duplicated, reordered) makes it
fall back to the per-packet path without a wrong byte."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from naa_runtime.mrsp import MrFlags
from naa_runtime.roce import _fastpath
from naa_runtime.roce import endpoint as endpoint_module
from naa_runtime.roce.endpoint import Impairment
from naa_runtime.roce.packets import AETH_LEN, BTH_LEN, ICRC_LEN
from naa_runtime.roce.qp import QueuePair, TransportConfig
from naa_runtime.rpc import HostConnection, Region
from tests.support.roce import ServerFactory, call_random, connect_regions, next_loopback

_ACK_BYTES = BTH_LEN + AETH_LEN + ICRC_LEN
"""An ACK datagram as the endpoint counts it (BTH, AETH, ICRC)."""


@pytest.fixture
def statuses(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How the compiled round trips of this test ended (RT_OK, RT_FALLBACK, ...)."""
    seen: Counter[int] = Counter()
    real = _fastpath.rpc_round_trip

    def counting(*args: object) -> tuple[int, int, tuple[tuple[int, int, int, bytes, int], ...]]:
        r = real(*args)  # type: ignore[arg-type]
        seen[r[0]] += 1
        return r

    monkeypatch.setattr(endpoint_module._fastpath, "rpc_round_trip", counting)
    return seen


def _state(qp: QueuePair) -> dict[str, object]:
    """The queue pair's state relative to its starting PSNs (random per connection)."""
    return {
        "sent": (qp.next_send_psn - qp._una, qp._next_psn - qp._una),
        "msn": qp._msn,
        "sq": len(qp._sq),
        "rq": len(qp._rq),
        "cwnd": qp._cwnd,
        "retries": qp._retries,
        "deadline": qp.deadline(),
        "ack_pending": qp._ack_pending,
        "fatal": qp._fatal,
        "rtt_sampled": qp._srtt > 0,
    }


def _run(
    srv_address: str, *, fast: bool, calls: int, size: int, fn: int = 20
) -> tuple[list[tuple[int, bytes]], dict[str, object], dict[str, object]]:
    """`calls` RPCs of kernel `fn` (20 copies the input region to the output region) with
    fresh random input each time; what each returned, and the QP state and host counters."""
    h, src, dst = connect_regions(srv_address, size, config=TransportConfig(fast_round_trip=fast))
    try:
        results = call_random(h, src, dst, fn=fn, calls=calls, seed=size)
        assert h.qp is not None
        assert h._device is not None
        stats = h._device.endpoint.stats.snapshot()
        return results, _state(h.qp), stats
    finally:
        h.disconnect()


@pytest.mark.parametrize("size", [1, 5, 4096])
def test_with_and_without_the_compiled_round_trip_rpcs_end_the_same(
    naa_server: ServerFactory, statuses: Counter[int], size: int
) -> None:
    srv = naa_server()
    fast, fast_state, fast_stats = _run(srv.address, fast=True, calls=40, size=size)
    # every RPC took it; most end RT_OK (a stall of the loaded machine past the retransmit
    # timeout ends one with RT_TIMEOUT, and the per-packet path finishes it)
    assert sum(statuses.values()) == 40
    assert statuses[_fastpath.RT_OK] > 0
    slow, slow_state, slow_stats = _run(srv.address, fast=False, calls=40, size=size)
    assert sum(statuses.values()) == 40  # the per-packet run never took it
    assert fast == slow
    if fast_stats["retransmits"] or slow_stats["retransmits"]:
        # a stall of the loaded machine past the retransmit timeout: the resend shrank the
        # window and added packets; the rest of the state must still agree
        for d in (fast_state, slow_state):
            del d["cwnd"], d["retries"]
    else:
        assert fast_stats["dropped"] == slow_stats["dropped"]
        # The same data packets both ways; only the number of ACKs may differ (how many
        # replies one cumulative ACK covers depends on when they arrive): every packet more
        # or less is an ACK's worth of bytes.
        for way in ("tx", "rx"):
            extra = int(fast_stats[f"packets_{way}"]) - int(slow_stats[f"packets_{way}"])
            more = int(fast_stats[f"bytes_{way}"]) - int(slow_stats[f"bytes_{way}"])
            assert more == extra * _ACK_BYTES, (way, extra, more)
    assert fast_state == slow_state


def test_return_codes_and_the_user_bits_come_back_through_the_compiled_path(
    naa_server: ServerFactory, statuses: Counter[int]
) -> None:
    srv = naa_server()
    results, _state, _stats = _run(srv.address, fast=True, calls=5, size=3, fn=21)
    assert [rc for rc, _ in results] == [0, 1, 2, 3, 4]  # kernel 21 returns its user bits
    assert sum(statuses.values()) == 5


def test_an_impaired_naa_makes_it_fall_back_without_a_wrong_byte(
    naa_server: ServerFactory, statuses: Counter[int]
) -> None:
    srv = naa_server(impairment=Impairment(loss=0.15, duplicate=0.1, reorder=0.1, seed=5))
    results, state, stats = _run(srv.address, fast=True, calls=60, size=8)
    assert len(results) == 60
    assert statuses[_fastpath.RT_OK] > 0
    assert statuses[_fastpath.RT_TIMEOUT] + statuses[_fastpath.RT_FALLBACK] > 0
    assert stats["retransmits"] > 0
    assert state["sq"] == 0
    assert state["fatal"] is False


def test_a_multi_packet_request_or_an_impaired_host_takes_the_per_packet_path(
    naa_server: ServerFactory, statuses: Counter[int]
) -> None:
    srv = naa_server()
    _run(srv.address, fast=True, calls=3, size=5000)  # two request packets
    assert sum(statuses.values()) == 0
    a = np.zeros(4, np.uint8)
    h = HostConnection(
        naa_address=srv.address, local_address=next_loopback(), impairment=Impairment(seed=1)
    )
    h.connect()
    h.register([Region(view=memoryview(a), flags=MrFlags.INPUT | MrFlags.OUTPUT)])
    h.mrsp()
    try:
        assert h.call(1, timeout=10) == 0
        assert a.tolist() == [1, 1, 1, 1]
    finally:
        h.disconnect()
    assert sum(statuses.values()) == 0
