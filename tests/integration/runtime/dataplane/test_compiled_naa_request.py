"""The NAA's compiled request path (`_fastpath.naa_receive` in the receive loop) over real UDP
sockets: the same RPCs against an NAA with it and one without it give the same results,
return codes, NAA queue-pair state and NAA counters; it is really taken; and an impaired host
(lost, duplicated, reordered requests) makes the NAA fall back to the per-packet path without
a wrong byte."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from naa_runtime.roce import _fastpath
from naa_runtime.roce import endpoint as endpoint_module
from naa_runtime.roce.endpoint import Impairment
from naa_runtime.roce.packets import AETH_LEN, BTH_LEN, ICRC_LEN
from naa_runtime.roce.qp import QueuePair, TransportConfig
from naa_runtime.rpc import RpcServer
from tests.support.roce import ServerFactory, call_random, connect_regions

_ACK_BYTES = BTH_LEN + AETH_LEN + ICRC_LEN
"""An ACK datagram as the endpoint counts it (BTH, AETH, ICRC)."""


@pytest.fixture
def statuses(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How the compiled receive steps of this test ended (NR_REQUEST, NR_DGRAM, ...)."""
    seen: Counter[int] = Counter()
    real = _fastpath.naa_receive

    def counting(*args: object) -> tuple[int, int, int, bytes, int, int, object]:
        r = real(*args)  # type: ignore[arg-type]
        seen[r[0]] += 1
        return r  # type: ignore[return-value]

    monkeypatch.setattr(endpoint_module._fastpath, "naa_receive", counting)
    return seen


def _naa_state(srv: RpcServer, host_qp: QueuePair) -> dict[str, object]:
    """The NAA's queue pair once the host's last ACK arrived, relative to its starting PSNs
    (random per connection)."""
    conn = next(iter(srv._conns.values()))
    qp = conn.qp
    end = time.monotonic() + 5
    while qp._sq and time.monotonic() < end:  # the host defers the reply's ACK a little
        time.sleep(0.005)
    return {
        "epsn_is_hosts_next": qp._epsn == host_qp.next_send_psn,
        "sent": (qp.next_send_psn - qp._una, qp._next_psn - qp._una),
        "msn": qp._msn,
        "sq": len(qp._sq),
        "rq": len(qp._rq),
        "cur": (qp._cur_view is None, qp._cur_pos, qp._cur_len, qp._cur_is_send),
        "ack_pending": qp._ack_pending,
        "nak_sent": qp._nak_sent,
        "fatal": qp._fatal,
    }


def _run(
    naa_server: ServerFactory,
    *,
    fast: bool,
    calls: int,
    size: int,
    fn: int,
    aliased: bool = False,
    impairment: Impairment | None = None,
) -> tuple[list[tuple[int, bytes]], dict[str, object], dict[str, object], Counter[tuple[int, str]]]:
    """`calls` RPCs of kernel `fn` with fresh random input each time against a new NAA with
    the compiled request path on (`fast`) or off: what each returned, the NAA's QP state, its
    transport counters and its RPC counters."""
    srv = naa_server(config=TransportConfig(fast_request=fast))
    h, src, dst = connect_regions(srv.address, size, aliased=aliased, impairment=impairment)
    try:
        results = call_random(h, src, dst, fn=fn, calls=calls, seed=size, aliased=aliased)
        assert h.qp is not None
        assert h._device is not None
        state = _naa_state(srv, h.qp)
        stats = srv.stats.transport.snapshot()
        # a resend by either side (a stall of the loaded machine past the retransmit timeout)
        stats["host_retransmits"] = h._device.endpoint.stats.retransmits
        return results, state, stats, Counter(srv.stats.rpcs)
    finally:
        h.disconnect()


@pytest.mark.parametrize(
    ("size", "fn", "aliased"),
    [(1, 3, True), (1, 20, False), (5, 20, False), (4096, 20, False), (3, 21, False)],
)
def test_with_and_without_the_naas_compiled_request_path_rpcs_end_the_same(
    naa_server: ServerFactory, statuses: Counter[int], size: int, fn: int, aliased: bool
) -> None:
    fast, fast_state, fast_stats, fast_rpcs = _run(
        naa_server, fast=True, calls=40, size=size, fn=fn, aliased=aliased
    )
    # the NAA took most requests in C: a datagram that raced the QP's lock (a worker thread
    # still finishing the previous reply when a preempted machine lets the host's next request
    # in) or a retransmission after a stall takes the per-packet path
    assert statuses[_fastpath.NR_REQUEST] >= 10
    taken = statuses[_fastpath.NR_REQUEST]
    slow, slow_state, slow_stats, slow_rpcs = _run(
        naa_server, fast=False, calls=40, size=size, fn=fn, aliased=aliased
    )
    assert statuses[_fastpath.NR_REQUEST] == taken  # the per-packet NAA never took it
    assert fast == slow
    if fn == 21:
        assert [rc for rc, _ in fast] == list(range(40))  # kernel 21 returns its user bits
    assert fast_rpcs == slow_rpcs
    assert fast_state == slow_state
    if not any(d[k] for d in (fast_stats, slow_stats) for k in ("retransmits", "host_retransmits")):
        # (a stall past a retransmit timeout adds packets and duplicates; the rest must agree)
        for key in ("dropped", "naks_sent"):
            assert fast_stats[key] == slow_stats[key], key
        # The same data packets both ways; only the number of ACKs may differ (how many
        # messages one cumulative ACK covers depends on when they arrive): every packet more
        # or less is an ACK's worth of bytes.
        for way in ("tx", "rx"):
            extra = int(fast_stats[f"packets_{way}"]) - int(slow_stats[f"packets_{way}"])
            more = int(fast_stats[f"bytes_{way}"]) - int(slow_stats[f"bytes_{way}"])
            assert more == extra * _ACK_BYTES, (way, extra, more)


def test_an_impaired_host_makes_the_naa_fall_back_without_a_wrong_byte(
    naa_server: ServerFactory, statuses: Counter[int]
) -> None:
    imp = Impairment(loss=0.1, duplicate=0.1, reorder=0.1, seed=11)
    fast, fast_state, fast_stats, _ = _run(
        naa_server, fast=True, calls=60, size=8, fn=20, impairment=imp
    )
    assert statuses[_fastpath.NR_REQUEST] > 0
    assert statuses[_fastpath.NR_DGRAM] > 0  # duplicates and gaps: the per-packet path's
    slow, _slow_state, _slow_stats, _ = _run(
        naa_server, fast=False, calls=60, size=8, fn=20, impairment=imp
    )
    assert fast == slow
    assert fast_state["fatal"] is False
    assert fast_state["epsn_is_hosts_next"] is True
    assert fast_stats["dropped"]  # duplicates / out-of-sequence requests were counted
