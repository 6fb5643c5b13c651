"""First-fit placement: eligibility, all-or-nothing, WarmFirst, traces, and agreement with the
naive O(J·N) first-fit on random clusters."""

from __future__ import annotations

import random

import pytest
from naa_operator.core.model import (
    WARM_FIRST,
    BitstreamView,
    FunctionView,
    JobView,
    NAAView,
    RequestView,
)
from naa_operator.core.placement import (
    REASON_NO_FREE,
    REASON_UNSATISFIABLE,
    first_fit,
    naive_first_fit,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64

ADD = BitstreamView(
    name="add",
    digest=D1,
    compatible_boards=("alveo-u280",),
    functions=(FunctionView("add1", 1, 1), FunctionView("noop", 3, 1)),
)
POET = BitstreamView(
    name="poet",
    digest=D2,
    compatible_boards=("alveo-u280", "xupvvh"),
    functions=(FunctionView("train", 16, 4),),
)


def naa(name: str, board: str = "alveo-u280", **kw: object) -> NAAView:
    return NAAView(name=name, board_model=board, address=f"10.0.0.{len(name)}", **kw)  # type: ignore[arg-type]


def job(key: str, *reqs: tuple[str, int], policy: str = "FirstFit") -> JobView:
    return JobView(
        key=key,
        uid=f"uid-{key}",
        requests=tuple(
            RequestView(name=f"r{i}", function=f, count=c) for i, (f, c) in enumerate(reqs)
        ),
        policy=policy,
    )


def test_first_fit_takes_free_naas_in_name_order() -> None:
    naas = [naa("naa-c"), naa("naa-a"), naa("naa-b")]
    out = first_fit(jobs=[job("ns/j", ("add1", 2))], naas=naas, bitstreams=[ADD], leased={})
    (p,) = out.placements
    assert [a.naa for a in p.assignments] == ["naa-a", "naa-b"]
    assert p.assignments[0].fn_code == 1
    assert p.assignments[0].param_count == 1
    assert p.assignments[0].digest == D1


def test_leased_unready_unhealthy_unreachable_and_excluded_naas_are_skipped() -> None:
    naas = [
        naa("a", ready=False, not_ready_reason="agent says no"),
        naa("b", healthy=False),
        naa("c", reachable=False),
        naa("d"),
        naa("e"),
        naa("f"),
    ]
    out = first_fit(
        jobs=[job("ns/j", ("add1", 1))],
        naas=naas,
        bitstreams=[ADD],
        leased={"d": "ns/other/u"},
        excluded={"e": "flash failed"},
    )
    assert [a.naa for a in out.placements[0].assignments] == ["f"]


def test_a_job_that_does_not_fit_takes_nothing_and_later_jobs_still_fit() -> None:
    naas = [naa("a"), naa("b")]
    jobs = [job("ns/big", ("add1", 3)), job("ns/small", ("add1", 2))]
    out = first_fit(jobs=jobs, naas=naas, bitstreams=[ADD], leased={})
    big, small = out.placements
    assert not big.placed
    assert big.reason == REASON_UNSATISFIABLE
    assert [a.naa for a in small.assignments] == ["a", "b"]


def test_two_requests_of_one_job_never_share_an_naa() -> None:
    naas = [naa("a"), naa("b"), naa("c")]
    out = first_fit(
        jobs=[job("ns/j", ("add1", 1), ("noop", 2))], naas=naas, bitstreams=[ADD], leased={}
    )
    names = [a.naa for a in out.placements[0].assignments]
    assert sorted(names) == ["a", "b", "c"]


def test_partial_fit_of_a_multi_request_job_is_rolled_back() -> None:
    naas = [naa("a"), naa("b")]
    jobs = [job("ns/j1", ("add1", 1), ("noop", 2)), job("ns/j2", ("noop", 2))]
    out = first_fit(jobs=jobs, naas=naas, bitstreams=[ADD], leased={})
    assert not out.placements[0].placed
    assert [a.naa for a in out.placements[1].assignments] == ["a", "b"]


def test_incompatible_boards_are_not_candidates() -> None:
    naas = [naa("a", board="xupvvh"), naa("b")]
    out = first_fit(jobs=[job("ns/j", ("add1", 1))], naas=naas, bitstreams=[ADD], leased={})
    assert [a.naa for a in out.placements[0].assignments] == ["b"]


def test_warm_first_prefers_naas_that_already_hold_the_digest() -> None:
    naas = [naa("a"), naa("b", loaded_digest=D2), naa("c")]
    ff = first_fit(jobs=[job("ns/j", ("train", 1))], naas=naas, bitstreams=[POET], leased={})
    warm = first_fit(
        jobs=[job("ns/j", ("train", 1), policy=WARM_FIRST)],
        naas=naas,
        bitstreams=[POET],
        leased={},
    )
    assert ff.placements[0].assignments[0].naa == "a"
    assert not ff.placements[0].assignments[0].warm
    assert warm.placements[0].assignments[0].naa == "b"
    assert warm.placements[0].assignments[0].warm


def test_explicit_bitstream_restricts_the_choice() -> None:
    other = BitstreamView(
        name="add-other",
        digest=D2,
        compatible_boards=("xupvvh",),
        functions=(FunctionView("add1", 1, 1),),
    )
    naas = [naa("a"), naa("b", board="xupvvh")]
    request = RequestView(name="r", function="add1", count=1, bitstream="add-other")
    out = first_fit(
        jobs=[JobView(key="ns/j", uid="u", requests=(request,))],
        naas=naas,
        bitstreams=[ADD, other],
        leased={},
    )
    assert out.placements[0].assignments[0].naa == "b"
    assert out.placements[0].assignments[0].bitstream == "add-other"


def test_pending_trace_names_every_naa_and_why_it_was_rejected() -> None:
    naas = [naa("a", ready=False, not_ready_reason="heartbeat stale"), naa("b"), naa("x", "xupvvh")]
    out = first_fit(
        jobs=[job("ns/first", ("add1", 1)), job("ns/second", ("add1", 1))],
        naas=naas,
        bitstreams=[ADD],
        leased={},
    )
    pending = out.placements[1]
    assert not pending.placed
    assert pending.reason == REASON_NO_FREE
    text = "\n".join(pending.trace)
    assert "a: not Ready: heartbeat stale" in text
    assert "b: taken: placed for ns/first earlier in this pass" in text
    assert "x: incompatible: board 'xupvvh'" in text


def test_a_function_no_bitstream_provides_is_unsatisfiable_with_a_clear_message() -> None:
    out = first_fit(jobs=[job("ns/j", ("fft", 1))], naas=[naa("a")], bitstreams=[ADD], leased={})
    (p,) = out.placements
    assert p.unsatisfiable
    assert "no Bitstream provides function 'fft'" in p.trace[0]


def test_lease_holders_appear_in_the_trace() -> None:
    out = first_fit(
        jobs=[job("ns/j", ("add1", 1))], naas=[naa("a")], bitstreams=[ADD], leased={"a": "ns/x/u1"}
    )
    assert "a: leased: held by ns/x/u1" in out.placements[0].trace


def test_traces_of_large_clusters_are_summarised() -> None:
    naas = [naa(f"n{i:04}") for i in range(100)]
    out = first_fit(jobs=[job("ns/j", ("add1", 101))], naas=naas, bitstreams=[ADD], leased={})
    trace = out.placements[0].trace
    assert len(trace) < 40
    assert "68 more NAAs; all: 100 free" in trace[-1]


@pytest.mark.parametrize("seed", range(25))
def test_first_fit_agrees_with_the_naive_first_fit_on_random_clusters(seed: int) -> None:
    rng = random.Random(seed)
    boards = ["alveo-u280", "xupvvh", "vck5000"]
    bitstreams = [
        ADD,
        POET,
        BitstreamView(
            name="fft",
            digest="sha256:" + "3" * 64,
            compatible_boards=("vck5000", "xupvvh"),
            functions=(FunctionView("fft", 20, 2), FunctionView("noop", 3, 1)),
        ),
    ]
    naas = [
        naa(
            f"naa-{i:03}",
            rng.choice(boards),
            ready=rng.random() > 0.1,
            healthy=rng.random() > 0.05,
        )
        for i in range(rng.randint(0, 60))
    ]
    leased = {n.name: "x/y/z" for n in naas if rng.random() < 0.2}
    fns = ["add1", "noop", "train", "fft"]
    jobs = [
        JobView(
            key=f"ns/j{k}",
            uid=str(k),
            requests=tuple(
                RequestView(name=f"r{r}", function=rng.choice(fns), count=rng.randint(1, 3))
                for r in range(rng.randint(1, 2))
            ),
        )
        for k in range(rng.randint(1, 40))
    ]
    fast = first_fit(jobs=jobs, naas=naas, bitstreams=bitstreams, leased=leased)
    slow = naive_first_fit(jobs=jobs, naas=naas, bitstreams=bitstreams, leased=leased)
    got = [sorted(a.naa for a in p.assignments) for p in fast.placements]
    assert got == [sorted(x) for x in slow]
    held = [a.naa for p in fast.placements for a in p.assignments]
    assert len(held) == len(set(held))
    assert not set(held) & set(leased)
