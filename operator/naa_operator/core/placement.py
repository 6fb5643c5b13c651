"""First-fit placement of NAAJobs onto free NAAs: pure, deterministic, and fast.

Called by `services.scheduler` once per scheduling pass with every job that waits for NAAs (in
arrival order) and the current NAAs, Bitstreams and Leases. An NAA is a candidate for a request
when it is Ready, Healthy and Reachable, not leased, not excluded by the operator's own probes,
and its board is in the `compatibleBoards` of a Bitstream providing the requested function
(the explicit `bitstream` of the request, when given). Jobs are placed all-or-nothing, in order;
a job that does not fit does not block later ones (like Slurm's backfill without reservations).

Speed: candidates are indexed once per (function, bitstream, policy) key, each key keeps a
cursor past NAAs that earlier jobs took and a free count that fails hopeless requests in O(1), so
a pass costs O(NAAs + jobs + assignments) instead of the naive O(jobs × NAAs). Traces ("why
pending": one line per rejected NAA) are computed only for jobs that do not fit, once per
distinct request per pass."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from naa_operator.core.model import (
    WARM_FIRST,
    Assignment,
    BitstreamView,
    JobView,
    NAAView,
    Placement,
    PlacementRound,
    RequestView,
)

#: At most this many per-NAA lines go into a trace; the rest are summarised by reason.
TRACE_LINES = 32

REASON_NO_FREE = "NoFreeNAA"
REASON_UNSATISFIABLE = "Unschedulable"
REASON_PLACED = "Placed"

_FREE, _COMMITTED, _TENTATIVE = 0, 1, 2


@dataclass(slots=True)
class _Candidates:
    """The NAAs that can serve one (function, bitstream, policy) key, in preference order."""

    naa_idx: list[int]
    bitstream: list[BitstreamView]
    cursor: int = 0
    free: int = 0


class _Pass:
    """The mutable state of one scheduling pass (private to `first_fit`)."""

    def __init__(
        self,
        *,
        naas: Sequence[NAAView],
        bitstreams: Iterable[BitstreamView],
        leased: Mapping[str, str],
        excluded: Mapping[str, str],
    ) -> None:
        self.naas = sorted(naas, key=lambda n: n.name)
        self.bitstreams = sorted(bitstreams, key=lambda b: b.name)
        self.bs_by_name = {b.name: b for b in self.bitstreams}
        self.leased = leased
        self.excluded = excluded
        self.state = bytearray(len(self.naas))
        self.taken_by: dict[int, str] = {}
        self.by_board: dict[str, list[int]] = {}
        for i, naa in enumerate(self.naas):
            if self._eligible(naa):
                self.by_board.setdefault(naa.board_model, []).append(i)
            else:
                self.state[i] = _COMMITTED
        self.lists: dict[tuple[str, str | None, bool], _Candidates] = {}
        self.membership: dict[int, list[_Candidates]] = {}
        self.traces: dict[tuple[str, str | None, int], tuple[tuple[str, ...], bool]] = {}

    def _eligible(self, naa: NAAView) -> bool:
        return (
            naa.ready
            and naa.healthy
            and naa.reachable
            and naa.name not in self.leased
            and naa.name not in self.excluded
        )

    def providers(self, request: RequestView) -> list[BitstreamView]:
        """Bitstreams that provide the request's function, honouring an explicit bitstream."""
        if request.bitstream is not None:
            bs = self.bs_by_name.get(request.bitstream)
            return [bs] if bs is not None and bs.function(request.function) else []
        return [b for b in self.bitstreams if b.function(request.function) is not None]

    def candidates(self, request: RequestView, warm_first: bool) -> _Candidates:
        key = (request.function, request.bitstream, warm_first)
        found = self.lists.get(key)
        if found is not None:
            return found
        providers = self.providers(request)
        boards: dict[str, list[BitstreamView]] = {}
        for bs in providers:
            for board in bs.compatible_boards:
                boards.setdefault(board, []).append(bs)
        chosen: list[tuple[int, BitstreamView, bool]] = []
        for board, bss in boards.items():
            for i in self.by_board.get(board, ()):
                loaded = self.naas[i].loaded_digest
                pick = next((b for b in bss if b.digest == loaded), bss[0])
                chosen.append((i, pick, pick.digest == loaded))
        if warm_first:
            chosen.sort(key=lambda c: (not c[2], c[0]))
        else:
            chosen.sort(key=lambda c: c[0])
        cands = _Candidates(naa_idx=[c[0] for c in chosen], bitstream=[c[1] for c in chosen])
        cands.free = sum(1 for i in cands.naa_idx if self.state[i] == _FREE)
        for i in cands.naa_idx:
            self.membership.setdefault(i, []).append(cands)
        self.lists[key] = cands
        return cands

    def _mark(self, i: int, state: int) -> None:
        old = self.state[i]
        self.state[i] = state
        if (old == _FREE) != (state == _FREE):
            delta = 1 if state == _FREE else -1
            for cands in self.membership.get(i, ()):
                cands.free += delta

    def place(self, job: JobView) -> Placement:
        warm = job.policy == WARM_FIRST
        picks: list[tuple[RequestView, int, BitstreamView]] = []
        for request in job.requests:
            cands = self.candidates(request, warm)
            if cands.free < request.count:
                return self._pending(job, request, picks)
            while (
                cands.cursor < len(cands.naa_idx)
                and self.state[cands.naa_idx[cands.cursor]] == _COMMITTED
            ):
                cands.cursor += 1
            got = 0
            j = cands.cursor
            while got < request.count and j < len(cands.naa_idx):
                i = cands.naa_idx[j]
                if self.state[i] == _FREE:
                    self._mark(i, _TENTATIVE)
                    picks.append((request, i, cands.bitstream[j]))
                    got += 1
                j += 1
            if got < request.count:
                return self._pending(job, request, picks)
        assignments: list[Assignment] = []
        for request, i, bs in picks:
            self._mark(i, _COMMITTED)
            self.taken_by[i] = job.key
            naa = self.naas[i]
            fn = bs.function(request.function)
            assert fn is not None  # providers() only returns bitstreams with the function
            assignments.append(
                Assignment(
                    request=request.name,
                    naa=naa.name,
                    address=naa.address,
                    port=naa.cm_port,
                    fn_code=fn.fn_code,
                    param_count=fn.input_params,
                    bitstream=bs.name,
                    digest=bs.digest,
                    artifact=bs.artifact,
                    warm=naa.loaded_digest == bs.digest,
                )
            )
        names = ", ".join(f"{a.request}→{a.naa}" for a in assignments)
        return Placement(
            job=job.key,
            assignments=tuple(assignments),
            trace=(f"placed {names}",),
            reason=REASON_PLACED,
        )

    def _pending(
        self,
        job: JobView,
        failed: RequestView,
        picks: list[tuple[RequestView, int, BitstreamView]],
    ) -> Placement:
        for _, i, _ in picks:
            self._mark(i, _FREE)
        trace, unsatisfiable = self.trace(failed)
        return Placement(
            job=job.key,
            trace=trace,
            unsatisfiable=unsatisfiable,
            reason=REASON_UNSATISFIABLE if unsatisfiable else REASON_NO_FREE,
        )

    def trace(self, request: RequestView) -> tuple[tuple[str, ...], bool]:
        """Why `request` cannot be served now: one line per NAA, plus a headline."""
        key = (request.function, request.bitstream, request.count)
        cached = self.traces.get(key)
        if cached is not None:
            return cached
        providers = self.providers(request)
        what = f"function {request.function!r}" + (
            f" from bitstream {request.bitstream!r}" if request.bitstream else ""
        )
        if not providers:
            if request.bitstream and request.bitstream not in self.bs_by_name:
                head = f"request {request.name!r}: Bitstream {request.bitstream!r} does not exist"
            elif request.bitstream:
                head = (
                    f"request {request.name!r}: Bitstream {request.bitstream!r} does not provide "
                    f"function {request.function!r}"
                )
            else:
                head = f"request {request.name!r}: no Bitstream provides {what}"
            result: tuple[tuple[str, ...], bool] = ((head + "; create one or fix spec.naas",), True)
            self.traces[key] = result
            return result
        boards = {board for bs in providers for board in bs.compatible_boards}
        compatible = [n for n in self.naas if n.board_model in boards]
        lines: list[str] = []
        counts: dict[str, int] = {}
        for idx, naa in enumerate(self.naas):
            why = self._why(idx, naa, boards, request)
            counts[why.split(":", 1)[0]] = counts.get(why.split(":", 1)[0], 0) + 1
            if len(lines) < TRACE_LINES:
                lines.append(f"{naa.name}: {why}")
        unsatisfiable = len(compatible) < request.count
        head = (
            f"request {request.name!r} needs {request.count} NAA(s) with {what} "
            f"(boards {sorted(boards)}): {len(compatible)} compatible NAA(s) exist, none "
            "enough free"
        )
        if unsatisfiable:
            head += "; more compatible NAAs are needed, waiting will not help"
        if len(self.naas) > TRACE_LINES:
            summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            lines.append(f"... {len(self.naas) - TRACE_LINES} more NAAs; all: {summary}")
        if not self.naas:
            lines.append("no NetworkAttachedAccelerator objects exist")
        result = ((head, *lines), unsatisfiable)
        self.traces[key] = result
        return result

    def _why(self, idx: int, naa: NAAView, boards: set[str], request: RequestView) -> str:
        if naa.board_model not in boards:
            return f"incompatible: board {naa.board_model!r} not in compatibleBoards"
        if not naa.ready:
            return "not Ready" + (f": {naa.not_ready_reason}" if naa.not_ready_reason else "")
        if not naa.healthy:
            return "not Healthy" + (f": {naa.not_ready_reason}" if naa.not_ready_reason else "")
        if not naa.reachable:
            return "not Reachable" + (f": {naa.not_ready_reason}" if naa.not_ready_reason else "")
        if naa.name in self.leased:
            return f"leased: held by {self.leased[naa.name]}"
        if naa.name in self.excluded:
            return f"excluded: {self.excluded[naa.name]}"
        if idx in self.taken_by:
            return f"taken: placed for {self.taken_by[idx]} earlier in this pass"
        if self.state[idx] == _TENTATIVE:
            return "taken: chosen for another request of this job"
        return "free"


def first_fit(
    *,
    jobs: Sequence[JobView],
    naas: Sequence[NAAView],
    bitstreams: Iterable[BitstreamView],
    leased: Mapping[str, str],
    excluded: Mapping[str, str] | None = None,
) -> PlacementRound:
    """Place `jobs` in order onto `naas`; `leased` maps NAA name → Lease holder, `excluded`
    maps NAA name → why the operator will not use it now (e.g. its management API failed)."""
    state = _Pass(naas=naas, bitstreams=bitstreams, leased=leased, excluded=excluded or {})
    return PlacementRound(placements=tuple(state.place(job) for job in jobs))


def naive_first_fit(
    *,
    jobs: Sequence[JobView],
    naas: Sequence[NAAView],
    bitstreams: Iterable[BitstreamView],
    leased: Mapping[str, str],
) -> list[list[str]]:
    """The textbook O(jobs × NAAs) first-fit, kept as the benchmark's baseline and as an oracle
    for tests: for each job, scan every NAA in name order for every request. Returns the NAA
    names given to each job ([] when it did not fit)."""
    ordered = sorted(naas, key=lambda n: n.name)
    bss = sorted(bitstreams, key=lambda b: b.name)
    taken: set[str] = set(leased)
    out: list[list[str]] = []
    for job in jobs:
        mine: list[str] = []
        ok = True
        for request in job.requests:
            got = 0
            for naa in ordered:
                if got == request.count:
                    break
                if naa.name in taken or naa.name in mine:
                    continue
                if not (naa.ready and naa.healthy and naa.reachable):
                    continue
                for bs in bss:
                    if request.bitstream is not None and bs.name != request.bitstream:
                        continue
                    if bs.function(request.function) and naa.board_model in bs.compatible_boards:
                        mine.append(naa.name)
                        got += 1
                        break
            if got < request.count:
                ok = False
                break
        if ok:
            taken.update(mine)
            out.append(mine)
        else:
            out.append([])
    return out
