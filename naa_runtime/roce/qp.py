"""The RC queue pair: requester (SEND / RDMA WRITE / WRITE_WITH_IMM packetisation, 24-bit
PSNs, cumulative ACKs, go-back-N on PSN-sequence-error NAKs and on the retransmit timer, RNR
back-off, fatal NAKs) and responder (expected PSN, duplicate and out-of-order detection,
strictly checked writes into registered memory, receive queue, coalesced ACKs, NAKs).

A QP never touches a socket: it hands packets to the `transmit` callable of its endpoint
(`naa_runtime.roce.endpoint`), which adds the ICRC and sends them, and it reports work
completions to `on_completion`. Called by the endpoint's receive thread (packets, timers)
and by the connection owners (posting work requests).
"""

from __future__ import annotations

import operator
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, Protocol

from naa_runtime.roce._fastpath import ack_step, rx_burst
from naa_runtime.roce.memory import MemoryTable, RemoteAccessError
from naa_runtime.roce.packets import (
    BTH_LEN,
    ICRC_LEN,
    IMM_LEN,
    PSN_MASK,
    RETH_LEN,
    RNR_TIMER_MS,
    Opcode,
    Syndrome,
    psn_add,
    psn_diff,
    syndrome_name,
)

_BTH = struct.Struct("!BBHII")
_RETH = struct.Struct("!QII")
_IMM = struct.Struct("!I")
_ACK = struct.Struct("!BBHIII")
_REQ = struct.Struct("!BBHIIQIII")
"""BTH + RETH + ImmDt: a one-packet RDMA_WRITE_ONLY_WITH_IMMEDIATE."""
MIN_WINDOW = 8.0
LOSS_WINDOW = 256.0
"""A loss caps the window here (1 MiB): with go-back-N every packet behind a loss is resent."""
MIN_RTO = 0.004
"""Floor of the adaptive retransmit timeout in seconds (`TransportConfig.min_rto`'s default)."""
_CONTINUATIONS = frozenset(
    {Opcode.RDMA_WRITE_MIDDLE, Opcode.RDMA_WRITE_LAST, Opcode.SEND_MIDDLE, Opcode.SEND_LAST}
)


class WcOpcode(IntEnum):
    SEND = 0
    RDMA_WRITE = 1
    RECV = 128
    RECV_RDMA_WITH_IMM = 129


class WcStatus(IntEnum):
    """Work-completion status, numbered as in libibverbs."""

    SUCCESS = 0
    LOC_LEN_ERR = 1
    WR_FLUSH_ERR = 5
    REM_INV_REQ_ERR = 9
    REM_ACCESS_ERR = 10
    REM_OP_ERR = 11
    RETRY_EXC_ERR = 12
    RNR_RETRY_EXC_ERR = 13


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more
class Completion:
    opcode: WcOpcode
    status: WcStatus
    wr_id: int
    byte_len: int = 0
    imm: int | None = None
    solicited: bool = False


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Knobs of the RC transport. Defaults are the documented decisions of
    docs/reference/protocol.md (PMTU 4096, ACK timeout code 15 ≈ 134 ms, RNR timer code 14
    ≈ 1.28 ms, retry 7, RNR retry 6, at most 16384 packets = 64 MiB unacknowledged — fewer if
    the socket's receive buffer is smaller)."""

    mtu: int = 4096
    window: int = 16384
    ack_every: int = 64
    ack_timeout: float = 4.096e-6 * (1 << 15)
    retry_count: int = 7
    min_rto: float = MIN_RTO
    """Floor of the adaptive retransmit timeout: the requester retransmits after
    SRTT + 4 RTTVAR of its measured round trips (doubling on each further timeout), at least
    this and at most `ack_timeout`. Only timeouts at the full `ack_timeout` count against
    `retry_count`, so a QP gives up no sooner than with a fixed timer."""
    rnr_retry_count: int = 6
    rnr_timer_code: int = 14
    gso: bool = True
    gro: bool = True
    verify_icrc: bool = True
    socket_buffer: int = 80 << 20
    """SO_RCVBUF/SO_SNDBUF asked for. The endpoint caps the window at what half the receive
    buffer holds in 4 KiB packets (Linux charges a queued datagram more than its bytes): 80 MiB
    holds the full window, so a 64 MiB write leaves in one burst instead of waiting for ACKs
    for its last ~1800 packets."""
    ack_before_completion: bool = True
    """Send the ACK a request asks for before reporting the completion it causes (an NAA must:
    PROTOCOL.md §3.5); a host may defer it to the end of the receive batch, off the latency
    path of the waiting caller."""
    fast_round_trip: bool = True
    """Let the host take the compiled round trip for small RPCs (`Endpoint.round_trip`:
    request out, its ACK and the one-packet reply in, without the GIL, then the same QP
    state machine); False sends and receives every RPC through the per-packet path."""
    fast_request: bool = True
    """Let the receive thread take the common case of an RPC request in compiled code
    (`_fastpath.naa_receive`: receive, check, place, commit the responder state and send the
    ACK in one call; the completion then goes to `on_completion` as the per-packet path
    reports it); False hands every datagram to the per-packet path."""
    busy_poll: float = 0.0002
    """Seconds a receiver (a caller in `Endpoint.drive`, and the receive thread) keeps polling
    the socket without blocking (yielding the CPU between tries) after the last packet, before
    it sleeps in poll(): the next packet of a round trip then finds it awake (no wake-up of a
    sleeping thread on either side). Only while the machine has a CPU to spare
    (`endpoint.cpu_to_spare`: CPU pressure below 25 %, checked once a second): on a busy
    2-CPU machine the spin took CPU from the peer (p50 round trip 299 µs with 50 µs of spin
    vs 216 µs without). 0 turns it off."""


class QpState(IntEnum):
    RTS = 3
    ERROR = 6


OutPacket = tuple[bytearray, memoryview | bytes, int]
"""(header, payload, pad): a packet for the endpoint. The header has BTH byte 4 set to 0xFF
(its ICRC mask); the endpoint computes the ICRC, then clears that byte."""


class BurstResult(NamedTuple):
    """What `QueuePair.on_middle_burst` did: segments placed, ACKs it sent, the ACK it leaves
    owed (0 none, 1 coalesced, 2 sent by the QP already), how the burst ended (a
    `_fastpath.BURST_*` status), and the datagram left in the receive buffer: its size, segment
    size, source address (4 bytes) and port, how many of its leading segments were placed, and
    the errno of a failed receive."""

    placed: int
    acks: int
    owe: int
    status: int
    nbytes: int
    seg: int
    ip: bytes
    port: int
    done: int
    errno: int


_NOTHING_PLACED = BurstResult(0, 0, 0, -1, 0, 0, b"", 0, 0, 0)
"""The QP could not take MIDDLE packets now: the caller's buffer is untouched."""

_WRITE_ONLY = (Opcode.RDMA_WRITE_ONLY, Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE)
_WRITE_LAST = (Opcode.RDMA_WRITE_LAST, Opcode.RDMA_WRITE_LAST_WITH_IMMEDIATE)


class _Wr:
    __slots__ = (
        "first_psn",
        "imm",
        "is_send",
        "length",
        "local",
        "npkts",
        "remote_va",
        "rkey",
        "solicited",
        "wr_id",
    )

    def __init__(
        self,
        *,
        wr_id: int,
        is_send: bool,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None,
        solicited: bool,
        first_psn: int,
        npkts: int,
    ) -> None:
        self.wr_id = wr_id
        self.is_send = is_send
        self.local = local
        self.length = local.nbytes
        self.remote_va = remote_va
        self.rkey = rkey
        self.imm = imm
        self.solicited = solicited
        self.first_psn = first_psn
        self.npkts = npkts


class _Recv:
    __slots__ = ("buffer", "wr_id")

    def __init__(self, wr_id: int, buffer: memoryview | None) -> None:
        self.wr_id = wr_id
        self.buffer = buffer


class QpObserver:
    """Counters a QP reports to (the endpoint's stats); the base class ignores everything."""

    def on_nak_sent(self, syndrome: int) -> None: ...

    def on_nak_received(self, syndrome: int) -> None: ...

    def on_retransmit(self, packets: int) -> None: ...

    def on_dropped(self, reason: str) -> None: ...

    def on_dropped_many(self, reason: str, count: int) -> None:
        for _ in range(count):
            self.on_dropped(reason)


Transmit = Callable[[list[OutPacket]], None]


class TransmitRun(Protocol):
    """Optional fast path of an endpoint: send `count` full-MTU middle packets of one message
    (packet index `first_index` onwards, payload from `local[offset:]`), AckReq on every
    `ack_every`-th packet index."""

    def __call__(
        self,
        *,
        op: int,
        dest_qp: int,
        first_psn: int,
        first_index: int,
        count: int,
        local: memoryview,
        offset: int,
        mtu: int,
        ack_every: int,
    ) -> None: ...


class SendWriteImm(Protocol):
    """(dqp_word, psn, local, remote_va, rkey, imm, solicited) -> sent."""

    def __call__(  # noqa: PLR0917 - positional: called on the hot path
        self,
        dqp_word: int,
        psn: int,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int,
        solicited: bool,
        /,
    ) -> bool: ...


class QueuePair:
    """One reliable-connected queue pair. Thread-safe: post_* from any thread; on_packet,
    flush_ack and on_timer from the endpoint's receive thread."""

    def __init__(
        self,
        *,
        qpn: int,
        peer_qpn: int,
        send_psn: int,
        expect_psn: int,
        memory: MemoryTable,
        transmit: Transmit,
        on_completion: Callable[[Completion], None],
        config: TransportConfig,
        observer: QpObserver | None = None,
    ) -> None:
        self.qpn = qpn
        self.peer_qpn = peer_qpn
        self.memory = memory
        self.config = config
        self._transmit = transmit
        self.transmit_run: TransmitRun | None = None
        self.send_write_imm: SendWriteImm | None = None
        """Set by the endpoint: sends a one-packet WRITE_ONLY_WITH_IMMEDIATE built in C (an
        RPC's request or reply), False if it cannot now (the caller corked the endpoint)."""
        self._on_completion = on_completion
        self.on_request: Callable[[int], bool] | None = None
        """Set by an RPC server: takes a request that `_fastpath.naa_receive` completed (its
        immediate) in full and returns True, or returns False to have its completion
        reported through `on_completion` as usual (`request_completed`)."""
        self.inline_reply: (
            Callable[[int], tuple[int, memoryview, int, int, int, int] | bool | None] | None
        ) = None
        """Set by an RPC server whose kernels may answer at once: called with the ImmDt of a
        request `_fastpath.naa_receive` placed and committed, before its ACK (which leaves
        with the reply, first, or alone if there is none to send there). It returns None to
        decline (the request is then reported as without it), True once it took the request
        whole, or (wr_id, view, va, rkey, reply_imm, recv_wr_id): the reply to post as
        `post_reply(wr_id, view, va, rkey, reply_imm)` (sent by `naa_receive` itself in the
        common case), then the receive to post for the next request."""
        self.signal_writes = True
        """Report the successful completion of each RDMA WRITE (verbs' `sq_sig_all`). An RPC
        server that has no use for its reply writes' completions turns it off (as posting
        them without IBV_SEND_SIGNALED): their ACKs then retire them without building and
        reporting a completion. SENDs, and every failed WR, are reported either way."""
        self._obs = observer or QpObserver()
        self._lock = threading.RLock()
        self.state = _QPSTATE_RTS
        # Requester.
        self._sq: deque[_Wr] = deque()
        self._assign_psn = send_psn & PSN_MASK
        self._next_psn = self._assign_psn
        self._una = self._assign_psn
        self._hint = 0
        self._deadline: float | None = None
        self._retries = config.retry_count
        # Adaptive retransmit timeout (RFC 6298 style): round trips timed on one packet at a
        # time, never on a retransmitted one (Karn); `_rto` is the interval the timer uses.
        self._srtt = 0.0
        self._rttvar = 0.0
        self._rto = config.ack_timeout  # until the first sample
        self._backoff = 0
        self._rtt_psn = -1  # the PSN being timed, -1 none
        self._rtt_t0 = 0.0
        self._high = self._assign_psn  # one past the highest PSN ever sent
        self._undo: tuple[float, float] | None = None  # window before a timeout's shrink
        self._rnr_retries = config.rnr_retry_count
        self._rnr_until: float | None = None
        self._dqp_word = 0xFF000000 | (peer_qpn & 0xFFFFFF)
        # The first burst may fill the whole window (sized to the receive buffer by the
        # endpoint): ramping up from a small window costs a scheduler round trip per doubling.
        self._cwnd = float(config.window)
        self._ssthresh = float("inf")
        # Responder.
        self._epsn = expect_psn & PSN_MASK
        self._msn = 0
        self._rq: deque[_Recv] = deque()
        self._cur_view: memoryview | None = None
        self._cur_is_send = False
        self._cur_pos = 0
        self._cur_len = 0
        self._nak_sent = False
        self._ack_pending = False
        self._fatal = False

    def idle(self) -> bool:
        """True if nothing is outstanding or queued on either side (every message sent was
        acknowledged, no partial message arriving, no receive posted, no RNR wait): the
        state `Endpoint.round_trip` starts from."""
        with self._lock:
            return self._idle()

    def _idle(self) -> bool:
        """`idle`, the lock held."""
        return (
            self.state == _QPSTATE_RTS
            and not self._fatal
            and not self._sq
            and not self._rq
            and self._cur_view is None
            and self._rnr_until is None
            and self._una == self._next_psn == self._assign_psn
        )

    @property
    def rto(self) -> float:
        """The current retransmit timeout in seconds (adaptive)."""
        return self._rto

    @property
    def expected_psn(self) -> int:
        """The PSN the responder side expects next."""
        return self._epsn

    @property
    def next_send_psn(self) -> int:
        """The PSN the next message posted starts at."""
        return self._assign_psn

    # ------------------------------------------------- compiled round trip (the host's)

    def round_trip_packets(
        self, local: memoryview, remote_va: int, rkey: int, imm: int
    ) -> tuple[int, int, list[OutPacket]] | None:
        """For `Endpoint.rpc_call`: None unless the QP is `idle`; else the PSN and the packets
        `post_write(imm=imm, solicited=True)` of `local` (at most one MTU) would send now,
        then the coalesced ACK `flush_ack` would send behind it if one is owed, as
        `_post_single` and `_send_ack` build them, and the PSN the reply must carry (the
        expected PSN). Changes nothing: `commit_round_trip_state` or `round_trip_sent`
        records them."""
        with self._lock:
            if not self._idle():
                return None
            psn = self._assign_psn
            n = local.nbytes
            pad = (-n) & 3
            hdr = bytearray(
                _REQ.pack(
                    _OPCODE_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                    0x80 | (pad << 4),
                    0xFFFF,
                    self._dqp_word,
                    0x80000000 | psn,
                    remote_va,
                    rkey,
                    n,
                    imm,
                )
            )
            pkts: list[OutPacket] = [(hdr, local, pad)]
            if self._ack_pending and not self._fatal:
                ack = _ACK.pack(
                    _OPCODE_ACKNOWLEDGE,
                    0,
                    0xFFFF,
                    self._dqp_word,
                    (self._epsn - 1) & PSN_MASK,
                    (_SYNDROME_ACK_UNLIMITED << 24) | (self._msn & 0xFFFFFF),
                )
                pkts.append((bytearray(ack), b"", 0))
            return psn, self._epsn, pkts

    def round_trip_start(self) -> tuple[int, int, int, int] | None:
        """`round_trip_packets` for `_fastpath.build_round_trip`: None unless the QP is
        `idle`; else the request's PSN, the expected PSN, and the PSN and AETH of the ACK
        owed behind it (-1 and 0 if none). Changes nothing."""
        with self._lock:
            if not self._idle():
                return None
            psn = self._assign_psn
            epsn = self._epsn
            if self._ack_pending:
                return (
                    psn,
                    epsn,
                    (epsn - 1) & PSN_MASK,
                    (_SYNDROME_ACK_UNLIMITED << 24) | (self._msn & 0xFFFFFF),
                )
            return psn, epsn, -1, 0

    @property
    def dqp_word(self) -> int:
        """BTH word 1 of this QP's packets (0xFF, the peer's QP number)."""
        return self._dqp_word

    def round_trip_sent(
        self,
        *,
        wr_id: int,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int,
        acked: bool,
        t0: float,
    ) -> None:
        """Record the packets of `round_trip_packets` as sent at `t0` when the compiled round
        trip did not finish (the per-packet path takes over): the write is outstanding as
        `_post_single` leaves it (retransmit timer, round trip timed), the ACK (`acked`) was
        flushed."""
        with self._lock:
            if acked:
                self._ack_pending = False
            self._sent_single(wr_id, False, local, remote_va, rkey, imm, True, t0)

    def commit_round_trip_state(self, reply_bytes: int, t0: float, now: float) -> None:
        """The state after the compiled round trip of `Endpoint.rpc_call` finished at `now`:
        what sending the packets of `round_trip_packets` at `t0` (`_post_single`,
        `flush_ack`), then the request's ACK (`_on_ack`) and the reply, a WRITE_ONLY_WITH_IMM
        of `reply_bytes` bytes already placed (`_on_request`), leave behind. `rpc_call` makes
        it in two steps (`round_trip_speculate`, then C's confirm at the reply's arrival);
        tests/integration/runtime/dataplane/test_compiled_round_trip.py compares the state
        with the per-packet path's."""
        self.round_trip_confirm(self.round_trip_speculate(reply_bytes, t0), now)

    def round_trip_speculate(self, reply_bytes: int, t0: float) -> tuple[tuple[object, ...], bool]:
        """`commit_round_trip_state` but for its RTT sample, made before the outcome is known:
        `Endpoint.rpc_call` calls it once the request is on its way, so that this work
        overlaps the peer's instead of following the reply. The QP's lock stays held (no
        other thread sees the state) until `round_trip_confirm` (the round trip finished as
        expected: the RTT sample at `now`) or `round_trip_abort` (it did not: the state as it
        was, for `round_trip_sent`), which take what this returns."""
        self._lock.acquire()
        try:
            return _round_trip_fields(self), self._commit_round_trip(reply_bytes, t0)
        except BaseException:
            self._lock.release()
            raise

    def round_trip_confirm(self, speculated: tuple[tuple[object, ...], bool], now: float) -> None:
        """The round trip `round_trip_speculate` committed finished at `now`: its RTT sample,
        then the QP's lock released."""
        try:
            if speculated[1]:
                self._sample_rtt(now)  # _commit_round_trip left no backoff
        finally:
            self._lock.release()

    def round_trip_abort(self, speculated: tuple[tuple[object, ...], bool]) -> None:
        """The round trip `round_trip_speculate` committed did not finish as expected: every
        field it changed back as it was, then the QP's lock released."""
        try:
            for name, value in zip(_ROUND_TRIP_FIELDS, speculated[0], strict=True):
                setattr(self, name, value)
        finally:
            self._lock.release()

    def _commit_round_trip(self, reply_bytes: int, t0: float) -> bool:
        """`commit_round_trip_state` up to its RTT sample (lock held; it changes only the
        fields of `_ROUND_TRIP_FIELDS`); True if the sample is due."""
        psn = self._assign_psn
        nxt = (psn + 1) & PSN_MASK
        # _post_single
        self._assign_psn = self._next_psn = self._high = nxt
        if self._rtt_psn < 0:
            self._rtt_psn = psn
            self._rtt_t0 = t0
        # _on_ack -> _ack_through(psn)
        self._una = nxt
        cfg = self.config
        cwnd = self._cwnd
        if cwnd < self._ssthresh:
            self._cwnd = min(cfg.window, cwnd + 1)
        else:
            self._cwnd = min(cfg.window, cwnd + 16.0 / cwnd)
        if self._hint:
            self._hint -= 1
        self._undo = None
        self._retries = cfg.retry_count
        if self._backoff:
            self._backoff = 0
            self._set_rto()
        self._deadline = None
        # _on_request(RDMA_WRITE_ONLY_WITH_IMMEDIATE) -> _finish_message
        self._msn = (self._msn + 1) & 0xFFFFFF
        self._cur_len = self._cur_pos = reply_bytes
        self._cur_is_send = False
        self._cur_view = None
        self._epsn = (self._epsn + 1) & PSN_MASK
        self._nak_sent = False
        # the reply asks for an ACK (AckReq); the host defers it (ack_before_completion
        # off), as `_on_request` does with a completion to report
        self._ack_pending = True
        rtt_psn = self._rtt_psn  # >= 0 here; the request's own PSN unless timed earlier
        return rtt_psn == psn or psn_diff(nxt, rtt_psn) > 0

    # ----------------------------------------------------------------------- posting

    def post_recv(self, *, wr_id: int, buffer: memoryview | None = None) -> None:
        with self._lock:
            self._rq.append(_Recv(wr_id, buffer))

    def post_send(self, *, wr_id: int, data: memoryview | bytes, solicited: bool = False) -> None:
        self._post(
            wr_id=wr_id,
            is_send=True,
            local=memoryview(data),
            remote_va=0,
            rkey=0,
            imm=None,
            solicited=solicited,
        )

    def post_reply(
        self, wr_id: int, local: memoryview, remote_va: int, rkey: int, imm: int
    ) -> None:
        """`post_write(wr_id=wr_id, local=local, remote_va=remote_va, rkey=rkey, imm=imm,
        solicited=True)`: an RPC's reply. The common case (one packet, nothing queued, room in
        the window, an endpoint that sends it in C) goes straight to `_post_single`'s
        bookkeeping and `send_write_imm` without the keyword layers of `post_write`; anything
        else is `post_write`."""
        send = self.send_write_imm
        if (
            send is not None
            and local.nbytes <= self.config.mtu
            and local.ndim == 1
            and local.format == "B"
            and 0 <= remote_va < 1 << 64
            and 0 <= rkey < 1 << 32
        ):
            with self._lock:
                psn = self._assign_psn
                if (
                    self.state == _QPSTATE_RTS
                    and self._next_psn == psn
                    and self._rnr_until is None
                    and psn_diff(psn, self._una) < int(self._cwnd)
                ):
                    now = time.monotonic()
                    # (the lock is held: its ACK cannot be handled before the state below)
                    if send(self._dqp_word, psn, local, remote_va, rkey, imm, True):
                        self._sent_single(wr_id, False, local, remote_va, rkey, imm, True, now)
                        return
                    # the endpoint cannot send it now (corked): the general path queues it
        self.post_write(
            wr_id=wr_id, local=local, remote_va=remote_va, rkey=rkey, imm=imm, solicited=True
        )

    def post_write(
        self,
        *,
        wr_id: int,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None = None,
        solicited: bool = False,
    ) -> None:
        self._post(
            wr_id=wr_id,
            is_send=False,
            local=local,
            remote_va=remote_va,
            rkey=rkey,
            imm=imm,
            solicited=solicited,
        )

    def _post(
        self,
        *,
        wr_id: int,
        is_send: bool,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None,
        solicited: bool,
    ) -> None:
        if local.nbytes > 0x80000000:
            raise ValueError(
                f"an RC message is at most 2 GiB, got {local.nbytes} bytes: post it as several"
                " messages (e.g. writes to consecutive remote addresses)"
            )
        if not (0 <= remote_va < 1 << 64 and 0 <= rkey < 1 << 32):
            raise ValueError(
                f"remote address {remote_va:#x} / rkey {rkey:#x} out of range: the address must"
                " fit in 64 bits and the rkey in 32 (unsigned), as the peer advertised them"
            )
        mtu = self.config.mtu
        done: list[Completion] = []
        with self._lock:
            if self.state == _QPSTATE_ERROR:
                done.append(
                    Completion(
                        opcode=_WCOPCODE_SEND if is_send else _WCOPCODE_RDMA_WRITE,
                        status=_WCSTATUS_WR_FLUSH_ERR,
                        wr_id=wr_id,
                    )
                )
            elif (
                local.nbytes <= mtu
                and self._next_psn == self._assign_psn
                and self._rnr_until is None
                and self.state == _QPSTATE_RTS
                and psn_diff(self._next_psn, self._una) < int(self._cwnd)
            ):
                self._post_single(
                    wr_id=wr_id,
                    is_send=is_send,
                    local=local,
                    remote_va=remote_va,
                    rkey=rkey,
                    imm=imm,
                    solicited=solicited,
                )
            else:
                npkts = max(1, -(-local.nbytes // mtu))
                wr = _Wr(
                    wr_id=wr_id,
                    is_send=is_send,
                    local=local.cast("B") if local.ndim != 1 or local.format != "B" else local,
                    remote_va=remote_va,
                    rkey=rkey,
                    imm=imm,
                    solicited=solicited,
                    first_psn=self._assign_psn,
                    npkts=npkts,
                )
                self._sq.append(wr)
                self._assign_psn = psn_add(self._assign_psn, npkts)
                self._pump(time.monotonic())
        for c in done:
            self._on_completion(c)

    def _post_single(
        self,
        *,
        wr_id: int,
        is_send: bool,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None,
        solicited: bool,
    ) -> None:
        """A one-packet message with nothing else waiting to be sent and room in the window
        (lock held): straight onto the wire, as `_pump` would send it (an RPC's request or
        reply; the latency path)."""
        if local.ndim != 1 or local.format != "B":
            local = local.cast("B")
        n = local.nbytes
        psn = self._assign_psn
        now = time.monotonic()
        self._sent_single(wr_id, is_send, local, remote_va, rkey, imm, solicited, now)
        send = self.send_write_imm
        if (
            send is None
            or imm is None
            or is_send
            or not send(self._dqp_word, psn, local, remote_va, rkey, imm, solicited)
        ):
            op = _OPCODE_SEND_ONLY if is_send else _WRITE_ONLY[imm is not None]
            pad = (-n) & 3
            b1 = (0x80 if solicited else 0) | (pad << 4)
            hdr = bytearray(_BTH.pack(op, b1, 0xFFFF, self._dqp_word, 0x80000000 | psn))
            if not is_send:
                hdr += _RETH.pack(remote_va, rkey, n)
            if imm is not None:
                hdr += _IMM.pack(imm)
            self._transmit([(hdr, local, pad)])

    def _sent_single(  # noqa: PLR0917 - the latency paths call it positionally
        self,
        wr_id: int,
        is_send: bool,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None,
        solicited: bool,
        now: float,
    ) -> None:
        """Record a one-packet message as sent at `now` with the next PSN (lock held): queued
        until its ACK, the PSNs advanced, the round trip timed and the retransmit timer armed
        if idle. `_post_single`, `post_reply` and `round_trip_sent` share it."""
        psn = self._assign_psn
        self._sq.append(
            _Wr(
                wr_id=wr_id,
                is_send=is_send,
                local=local,
                remote_va=remote_va,
                rkey=rkey,
                imm=imm,
                solicited=solicited,
                first_psn=psn,
                npkts=1,
            )
        )
        self._assign_psn = self._next_psn = self._high = (psn + 1) & PSN_MASK
        if self._rtt_psn < 0:
            self._rtt_psn = psn
            self._rtt_t0 = now
        if self._deadline is None:
            self._deadline = now + self._rto

    # ------------------------------------------------------------------ requester side

    def _find_wr(self, psn: int) -> _Wr:
        sq = self._sq
        h = self._hint
        if h < len(sq):
            w = sq[h]
            if 0 <= psn_diff(psn, w.first_psn) < w.npkts:
                return w
            if h + 1 < len(sq):
                w = sq[h + 1]
                if 0 <= psn_diff(psn, w.first_psn) < w.npkts:
                    self._hint = h + 1
                    return w
        for i, w in enumerate(sq):
            if 0 <= psn_diff(psn, w.first_psn) < w.npkts:
                self._hint = i
                return w
        raise LookupError(f"PSN {psn} belongs to no outstanding work request")

    def _pump(self, now: float) -> None:
        """Send packets from next_psn while the window allows (lock held). Works WR by WR;
        the middle packets of a message take a tight loop (they dominate bulk transfers)."""
        if self.state != _QPSTATE_RTS or self._rnr_until is not None:
            return
        if self._next_psn == self._assign_psn:  # nothing to send (e.g. after an RPC's ACK)
            if self._deadline is None and self._una != self._next_psn:
                self._deadline = now + self._rto
            return
        if self._rtt_psn < 0 and self._next_psn == self._high:  # time new data only
            self._rtt_psn = self._next_psn
            self._rtt_t0 = now
        start = time.monotonic()
        psn0 = self._next_psn
        budget = min(
            psn_diff(self._assign_psn, self._next_psn),
            int(self._cwnd) - psn_diff(self._next_psn, self._una),
        )
        mtu = self.config.mtu
        ack_every = self.config.ack_every
        dqp = self._dqp_word
        pack_bth = _BTH.pack
        transmit = self._transmit
        out: list[OutPacket] = []
        while budget > 0:
            psn = self._next_psn
            w = self._find_wr(psn)
            k = (psn - w.first_psn) & PSN_MASK
            n = w.npkts
            local = w.local
            # Middle packets: no extension headers, full MTU, no padding.
            if 0 < k < n - 1:
                op_mid = _OPCODE_SEND_MIDDLE if w.is_send else _OPCODE_RDMA_WRITE_MIDDLE
                stop = min(n - 1, k + budget)
                off = k * mtu
                if self.transmit_run is not None:
                    if out:
                        transmit(out)
                        out = []
                    self.transmit_run(
                        op=op_mid,
                        dest_qp=self.peer_qpn,
                        first_psn=psn,
                        first_index=k,
                        count=stop - k,
                        local=local,
                        offset=off,
                        mtu=mtu,
                        ack_every=ack_every,
                    )
                    budget -= stop - k
                    self._next_psn = psn_add(psn, stop - k)
                    continue
                for kk in range(k, stop):
                    areq = 0x80000000 if kk % ack_every == ack_every - 1 else 0
                    p = (psn + kk - k) & PSN_MASK
                    out.append(
                        (
                            bytearray(pack_bth(op_mid, 0, 0xFFFF, dqp, areq | p)),
                            local[off : off + mtu],
                            0,
                        )
                    )
                    off += mtu
                    if len(out) >= 64:
                        transmit(out)
                        out = []
                sent = stop - k
                budget -= sent
                self._next_psn = psn_add(psn, sent)
                continue
            off = k * mtu
            ln = min(mtu, w.length - off)
            last = k == n - 1
            if w.is_send:
                op = (
                    _OPCODE_SEND_ONLY
                    if n == 1
                    else _OPCODE_SEND_FIRST
                    if k == 0
                    else _OPCODE_SEND_LAST
                )
            elif n == 1:
                op = _WRITE_ONLY[w.imm is not None]
            elif k == 0:
                op = _OPCODE_RDMA_WRITE_FIRST
            else:
                op = _WRITE_LAST[w.imm is not None]
            pad = (-ln) & 3
            se = 0x80 if (last and w.solicited) else 0
            areq = 0x80000000 if (last or k % ack_every == ack_every - 1) else 0
            hdr = bytearray(pack_bth(op, se | (pad << 4), 0xFFFF, dqp, areq | psn))
            if not w.is_send and k == 0:
                hdr += _RETH.pack(w.remote_va, w.rkey, w.length)
            if last and w.imm is not None:
                hdr += _IMM.pack(w.imm)
            out.append((hdr, local[off : off + ln], pad))
            self._next_psn = psn_add(psn, 1)
            budget -= 1
            if len(out) >= 64:
                transmit(out)
                out = []
        if out:
            transmit(out)
        if psn_diff(self._next_psn, self._high) > 0:
            self._high = self._next_psn
        if self._next_psn != psn0:
            # The timer runs from the end of this send (a long burst holds the lock, so the
            # receive thread cannot take ACKs meanwhile); the caller's `now` may be a test's
            # clock, hence the elapsed time added to it.
            dl = now + (time.monotonic() - start) + self._rto
            if self._deadline is None or self._deadline < dl:
                self._deadline = dl
        elif self._deadline is None and self._una != self._next_psn:
            self._deadline = now + self._rto

    def _ack_through(self, psn: int, done: list[Completion]) -> bool:
        """Mark every PSN up to and including `psn` acknowledged; True on progress."""
        d_new = psn_diff(psn, self._una)
        if d_new < 0 or psn_diff(psn, self._assign_psn) >= 0:
            return False
        self._una = psn_add(psn, 1)
        # The go-back-N window starts full; after a loss it grows additively (_shrink_window
        # sets ssthresh); the exponential branch only serves a smaller configured start.
        acked = d_new + 1
        if self._cwnd < self._ssthresh:
            self._cwnd = min(self.config.window, self._cwnd + acked)
        else:
            self._cwnd = min(self.config.window, self._cwnd + 16.0 * acked / self._cwnd)
        sq = self._sq
        signal = self.signal_writes
        while sq and psn_diff(self._una, psn_add(sq[0].first_psn, sq[0].npkts)) >= 0:
            w = sq.popleft()
            self._hint = max(0, self._hint - 1)
            if signal or w.is_send:
                done.append(
                    Completion(
                        opcode=_WCOPCODE_SEND if w.is_send else _WCOPCODE_RDMA_WRITE,
                        status=_WCSTATUS_SUCCESS,
                        wr_id=w.wr_id,
                        byte_len=w.length,
                    )
                )
        undo = self._undo
        if undo is not None:
            if psn_diff(self._una, self._next_psn) > 0:
                # acknowledged beyond what was resent after the timeout: the receiver had the
                # originals in order, so nothing was lost (a late ACK): restore the window
                self._cwnd, self._ssthresh = max(self._cwnd, undo[0]), undo[1]
            self._undo = None
        if psn_diff(self._next_psn, self._una) < 0:
            self._next_psn = self._una
        self._retries = self.config.retry_count
        if self._backoff:
            self._backoff = 0
            self._set_rto()
        return True

    def _sample_rtt(self, now: float) -> None:
        """Fold the round trip of the timed packet (acknowledged now) into the estimate."""
        r = now - self._rtt_t0
        self._rtt_psn = -1
        if r < 0:  # a caller's clock other than time.monotonic (tests)
            return
        if self._srtt == 0.0:
            self._srtt, self._rttvar = r, r / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - r)
            self._srtt = 0.875 * self._srtt + 0.125 * r
        self._set_rto()

    def _set_rto(self) -> None:
        cfg = self.config
        if self._srtt == 0.0:
            self._rto = cfg.ack_timeout
            return
        base = max(cfg.min_rto, self._srtt + 4 * self._rttvar)
        self._rto = min(cfg.ack_timeout, base * (1 << min(self._backoff, 20)))

    def _fail(self, status: WcStatus, done: list[Completion]) -> None:
        """Complete the head WR with `status`, flush the rest, enter the error state."""
        first = True
        while self._sq:
            w = self._sq.popleft()
            done.append(
                Completion(
                    opcode=_WCOPCODE_SEND if w.is_send else _WCOPCODE_RDMA_WRITE,
                    status=status if first else _WCSTATUS_WR_FLUSH_ERR,
                    wr_id=w.wr_id,
                )
            )
            first = False
        self.state = _QPSTATE_ERROR
        self._deadline = None

    def _on_ack(self, psn: int, syndrome: int, now: float, done: list[Completion]) -> None:
        kind = syndrome & 0xE0
        if kind not in (0x00, 0x20, 0x60) or syndrome > _SYNDROME_NAK_REMOTE_OPERATIONAL_ERROR:
            self._obs.on_dropped("bad_aeth")  # reserved syndromes: not ours to act on
            return
        if kind == 0x00:
            if self._ack_through(psn, done):
                if self._rtt_psn >= 0 and psn_diff(self._una, self._rtt_psn) > 0:
                    self._sample_rtt(now)
                self._deadline = None if self._una == self._next_psn else now + self._rto
            self._pump(now)
            return
        self._obs.on_nak_received(syndrome)
        if kind == 0x20:  # RNR NAK: everything before psn is done; retry psn after the timer
            self._ack_through(psn_add(psn, -1), done)
            if self.config.rnr_retry_count != 7:
                self._rnr_retries -= 1
                if self._rnr_retries < 0:
                    self._fail(_WCSTATUS_RNR_RETRY_EXC_ERR, done)
                    return
            self._next_psn = psn if psn_diff(psn, self._una) >= 0 else self._una
            self._rnr_until = now + RNR_TIMER_MS[syndrome & 0x1F] / 1000.0
            self._deadline = self._rnr_until
            return
        self._ack_through(psn_add(psn, -1), done)
        if syndrome == _SYNDROME_NAK_PSN_SEQUENCE_ERROR:
            if psn_diff(psn, self._una) >= 0 and psn_diff(self._next_psn, psn) > 0:
                self._obs.on_retransmit(psn_diff(self._next_psn, psn))
                self._shrink_window()
                self._next_psn = psn
                self._rtt_psn = -1  # the timed packet may be resent (Karn)
            self._pump(now)
            return
        status = {
            _SYNDROME_NAK_INVALID_REQUEST: _WCSTATUS_REM_INV_REQ_ERR,
            _SYNDROME_NAK_REMOTE_ACCESS_ERROR: _WCSTATUS_REM_ACCESS_ERR,
        }.get(syndrome, _WCSTATUS_REM_OP_ERR)  # type: ignore[call-overload]
        self._fail(status, done)

    @property
    def window(self) -> int:
        """Packets the requester may have unacknowledged now (adapts to loss)."""
        return int(self._cwnd)

    def _shrink_window(self) -> None:
        """Multiplicative decrease on loss, to at most LOSS_WINDOW: every packet in flight
        behind a loss is resent (go-back-N), so under loss a smaller window wastes less; it
        grows back on ACKs."""
        self._cwnd = max(MIN_WINDOW, min(self._cwnd / 2, LOSS_WINDOW))
        self._ssthresh = self._cwnd

    def deadline(self) -> float | None:
        return self._deadline

    def on_timer(self, now: float) -> None:
        done: list[Completion] = []
        with self._lock:
            if self._deadline is None or now < self._deadline:
                return
            self._deadline = None
            if self._rnr_until is not None:
                self._rnr_until = None
            elif self._una != self._next_psn or psn_diff(self._assign_psn, self._una) > 0:
                # only a timeout at the full (negotiated) ACK timeout counts as a retry: the
                # shorter adaptive ones are probes for a lost tail packet, ACK or NAK
                if self._rto >= self.config.ack_timeout:
                    self._retries -= 1
                if self._retries < 0:
                    self._fail(_WCSTATUS_RETRY_EXC_ERR, done)
                else:
                    self._obs.on_retransmit(max(1, psn_diff(self._next_psn, self._una)))
                    if self._undo is None:
                        self._undo = (self._cwnd, self._ssthresh)
                    self._shrink_window()
                    self._next_psn = self._una
                    self._rtt_psn = -1
                    self._backoff += 1
                    self._set_rto()
            self._pump(now)
        for c in done:
            self._on_completion(c)

    # ------------------------------------------------------------------ responder side

    def _send_ack(self, syndrome: int, psn: int) -> None:
        hdr = bytearray(
            _ACK.pack(
                _OPCODE_ACKNOWLEDGE,
                0,
                0xFFFF,
                self._dqp_word,
                psn & PSN_MASK,
                ((syndrome & 0xFF) << 24) | (self._msn & 0xFFFFFF),
            )
        )
        if syndrome & 0xE0:
            self._obs.on_nak_sent(syndrome)
        self._transmit([(hdr, b"", 0)])

    def flush_ack(self) -> None:
        """Send the coalesced ACK for everything received so far, if one is owed."""
        with self._lock:
            if self._ack_pending and not self._fatal:
                self._ack_pending = False
                self._send_ack(_SYNDROME_ACK_UNLIMITED, psn_add(self._epsn, -1))

    def _nak(self, syndrome: int, psn: int, *, fatal: bool) -> None:
        self._send_ack(syndrome, psn)
        if fatal:
            self._fatal = True
            self._cur_view = None

    def on_packet(self, seg: memoryview, op: int, b1: int, w3: int, now: float) -> None:
        """Handle one RC packet (`seg` is the UDP payload without the ICRC; BTH words given)."""
        done: list[Completion] = []
        with self._lock:
            if op == _OPCODE_ACKNOWLEDGE:
                if len(seg) < BTH_LEN + 4:
                    self._obs.on_dropped("short")
                    return
                (aeth,) = _IMM.unpack_from(seg, BTH_LEN)
                self._on_ack(w3 & PSN_MASK, aeth >> 24, now, done)
            else:
                self._on_request(seg, op, b1, w3, done)
        for c in done:
            self._on_completion(c)

    def on_middle_burst(
        self,
        *,
        fd: int,
        buf: bytearray,
        nbytes: int,
        seg: int,
        src: tuple[bytes, int],
        first8: bytes,
        states: bytes | None,
        ack_to: tuple[bytes, int] | None,
        max_dgrams: int,
    ) -> BurstResult:
        """Place the leading RDMA WRITE MIDDLE packets of a GRO batch (`buf[:nbytes]`, segments
        of `seg` bytes whose first 8 bytes must equal `first8`, from `src` = (IPv4 address,
        port)), then keep receiving further batches of the run from the socket `fd` into `buf`
        while they continue it: the compiled receiver checks each segment's PSN (from the
        expected one on) and ICRC (against `states`, the endpoint's CRC state per segment
        position; None: unchecked) before it copies its payload into the message, and sends
        the ACKs AckReq asks for itself if `ack_to` = (peer address, CRC state of a 20-byte
        packet) is given. Placing nothing changes nothing (the per-packet path then handles
        duplicates, gaps and errors)."""
        width = seg - BTH_LEN - ICRC_LEN
        with self._lock:
            view = self._cur_view
            if self._fatal or view is None or self._cur_is_send or width != self.config.mtu:
                return _NOTHING_PLACED
            pos = self._cur_pos
            # a MIDDLE never completes the message: the LAST packet must still follow
            room = (self._cur_len - pos - 1) // width
            if room <= 0:
                return _NOTHING_PLACED
            ack = None
            if ack_to is not None:
                ack = (
                    ack_to[0],
                    ack_to[1],
                    _ACK.pack(
                        _OPCODE_ACKNOWLEDGE,
                        0,
                        0xFFFF,
                        self._dqp_word,
                        0,
                        (_SYNDROME_ACK_UNLIMITED << 24) | (self._msn & 0xFFFFFF),
                    ),
                )
            r = rx_burst(
                fd,
                buf,
                nbytes,
                seg,
                src[0],
                src[1],
                first8,
                states,
                view,
                pos,
                room,
                self._epsn,
                max_dgrams,
                ack,
            )
            placed, owe = r[0], r[2]
            if placed:
                self._cur_pos = pos + placed * width
                self._epsn = psn_add(self._epsn, placed)
                self._nak_sent = False
                if owe == 2:
                    self._ack_pending = False
                    self._send_ack(_SYNDROME_ACK_UNLIMITED, psn_add(self._epsn, -1))
                else:
                    self._ack_pending = owe == 1
            elif self._nak_sent and r[8] == 0 and r[4] == nbytes:
                # Nothing placed from this datagram and its gap already NAKed (go-back-N:
                # what follows a loss keeps arriving until the resend does): drop the leading
                # segments of this run that are ahead of the expected PSN at once, as the
                # per-packet path would one by one (it would NAK nothing either), instead of
                # ~5 µs of Python each. Their ICRCs go unchecked: they are discarded anyway.
                epsn = self._epsn
                k = 0
                for off in range(0, nbytes - seg + 1, seg):
                    if buf[off : off + 8] != first8:
                        break
                    d = psn_diff(int.from_bytes(buf[off + 9 : off + 12], "big"), epsn)
                    if d <= 0:
                        break
                    k += 1
                if k:
                    self._obs.on_dropped_many("out_of_sequence_psn", k)
                    return BurstResult(*r[:8], k, r[9])
        return BurstResult(*r)

    def _on_request(
        self, seg: memoryview, op: int, b1: int, w3: int, done: list[Completion]
    ) -> None:
        if self._fatal:
            self._obs.on_dropped("qp_in_error")
            return
        psn = w3 & PSN_MASK
        d = psn_diff(psn, self._epsn)
        if d < 0:
            # Duplicate: its ACK may have been lost; acknowledge what we have.
            self._ack_pending = True
            self._obs.on_dropped("duplicate_psn")
            return
        if d > 0:
            if not self._nak_sent:
                self._nak_sent = True
                self._nak(_SYNDROME_NAK_PSN_SEQUENCE_ERROR, self._epsn, fatal=False)
            self._obs.on_dropped("out_of_sequence_psn")
            return
        pad = (b1 >> 4) & 3
        mtu = self.config.mtu
        end = len(seg) - pad
        imm: int | None = None
        if op in _CONTINUATIONS:
            start = BTH_LEN
            is_send = op in (_OPCODE_SEND_MIDDLE, _OPCODE_SEND_LAST)
            view = self._cur_view
            n = end - start
            last = op in (_OPCODE_RDMA_WRITE_LAST, _OPCODE_SEND_LAST)
            if (
                view is None
                or self._cur_is_send != is_send
                or n < 0
                or (not last and (n != mtu or self._cur_pos + n >= self._cur_len))
                or (
                    last
                    and (n > mtu or n == 0 or (self._cur_pos + n != self._cur_len and not is_send))
                )
            ):
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            if is_send and self._cur_pos + n > self._cur_len:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            view[self._cur_pos : self._cur_pos + n] = seg[start:end]
            self._cur_pos += n
            if last:
                self._finish_message(is_send=is_send, imm=None, se=bool(b1 & 0x80), done=done)
        elif op == _OPCODE_RDMA_WRITE_LAST_WITH_IMMEDIATE:
            start = BTH_LEN + IMM_LEN
            n = end - start
            view = self._cur_view
            if (
                view is None
                or self._cur_is_send
                or n <= 0
                or n > mtu
                or self._cur_pos + n != self._cur_len
            ):
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            if not self._rq:
                self._nak(_SYNDROME_RNR_NAK | self.config.rnr_timer_code, psn, fatal=False)
                return
            (imm,) = _IMM.unpack_from(seg, BTH_LEN)
            view[self._cur_pos : self._cur_pos + n] = seg[start:end]
            self._cur_pos += n
            self._finish_message(is_send=False, imm=imm, se=bool(b1 & 0x80), done=done)
        elif op in (
            _OPCODE_RDMA_WRITE_FIRST,
            _OPCODE_RDMA_WRITE_ONLY,
            _OPCODE_RDMA_WRITE_ONLY_WITH_IMMEDIATE,
        ):
            if self._cur_view is not None:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            start = BTH_LEN + RETH_LEN
            with_imm = op == _OPCODE_RDMA_WRITE_ONLY_WITH_IMMEDIATE
            if with_imm:
                start += IMM_LEN
            n = end - start
            if n < 0:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            va, rkey, dma_len = _RETH.unpack_from(seg, BTH_LEN)
            if op == _OPCODE_RDMA_WRITE_FIRST:
                bad_len = n != mtu or dma_len <= mtu
            else:
                bad_len = n != dma_len or n > mtu
            if bad_len:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            if with_imm and not self._rq:
                self._nak(_SYNDROME_RNR_NAK | self.config.rnr_timer_code, psn, fatal=False)
                return
            try:
                target = (
                    self.memory.resolve(rkey=rkey, va=va, length=dma_len)
                    if dma_len
                    else memoryview(b"")
                )
            except RemoteAccessError:
                self._nak(_SYNDROME_NAK_REMOTE_ACCESS_ERROR, psn, fatal=True)
                return
            if with_imm:
                (imm,) = _IMM.unpack_from(seg, BTH_LEN + RETH_LEN)
            if n:
                target[0:n] = seg[start:end]
            if op == _OPCODE_RDMA_WRITE_FIRST:
                self._cur_view, self._cur_is_send, self._cur_pos, self._cur_len = (
                    target,
                    False,
                    n,
                    dma_len,
                )
            else:
                self._cur_len = dma_len
                self._cur_pos = n
                self._cur_is_send = False
                self._finish_message(is_send=False, imm=imm, se=bool(b1 & 0x80), done=done)
        elif op in (_OPCODE_SEND_FIRST, _OPCODE_SEND_ONLY):
            if self._cur_view is not None:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            start = BTH_LEN
            n = end - start
            if n < 0 or n > mtu or (op == _OPCODE_SEND_FIRST and n != mtu):
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            if not self._rq:
                self._nak(_SYNDROME_RNR_NAK | self.config.rnr_timer_code, psn, fatal=False)
                return
            buf = self._rq[0].buffer
            cap = buf.nbytes if buf is not None else 0
            if n > cap:
                self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
                return
            if n and buf is not None:
                buf[0:n] = seg[start:end]
            self._cur_is_send = True
            self._cur_pos = n
            self._cur_len = cap
            if op == _OPCODE_SEND_FIRST:
                assert buf is not None
                self._cur_view = buf
            else:
                self._finish_message(is_send=True, imm=None, se=bool(b1 & 0x80), done=done)
        else:
            self._nak(_SYNDROME_NAK_INVALID_REQUEST, psn, fatal=True)
            return
        self._epsn = psn_add(self._epsn, 1)
        self._nak_sent = False
        if w3 & 0x80000000 and (self.config.ack_before_completion or not done):
            self._ack_pending = False
            self._send_ack(_SYNDROME_ACK_UNLIMITED, psn)
        else:
            self._ack_pending = True

    def _finish_message(
        self, *, is_send: bool, imm: int | None, se: bool, done: list[Completion]
    ) -> None:
        self._msn = (self._msn + 1) & 0xFFFFFF
        length = self._cur_pos
        self._cur_view = None
        if is_send:
            r = self._rq.popleft()
            done.append(
                Completion(
                    opcode=_WCOPCODE_RECV,
                    status=_WCSTATUS_SUCCESS,
                    wr_id=r.wr_id,
                    byte_len=length,
                    solicited=se,
                )
            )
        elif imm is not None:
            r = self._rq.popleft()
            done.append(
                Completion(
                    opcode=_WCOPCODE_RECV_RDMA_WITH_IMM,
                    status=_WCSTATUS_SUCCESS,
                    wr_id=r.wr_id,
                    byte_len=length,
                    imm=imm,
                    solicited=se,
                )
            )

    def ack_compiled(self, psn: int, aeth: int, now: float) -> bool:
        """`on_packet` for a plain ACK of `psn` (AETH `aeth`) through `_fastpath.ack_step` (the
        ACK the host sends behind its next request, which `_fastpath.naa_receive` found and
        verified): the acknowledged WRs retired and the requester state updated as `_on_ack`
        updates it, their completions reported (a write's only while `signal_writes`). False,
        having changed nothing, where `ack_step` leaves the ACK to `on_packet` (a NAK, a
        duplicate, data still to send, a timeout backoff, ...)."""
        retired = ack_step(self, psn, aeth, now)
        if retired is None:
            return False
        signal = self.signal_writes
        for wr_id, is_send, length in retired:
            if not (signal or is_send):
                continue
            self._on_completion(
                Completion(
                    opcode=_WCOPCODE_SEND if is_send else _WCOPCODE_RDMA_WRITE,
                    status=_WCSTATUS_SUCCESS,
                    wr_id=wr_id,
                    byte_len=length,
                )
            )
        return True

    # ------------------------------------------------------------------------ teardown

    def request_completed(self, wr_id: int, length: int, imm: int, b1: int) -> None:
        """Report the completion of a request `_fastpath.naa_receive` took (its state already
        committed, its ACK sent), as `on_packet` reports it after `_on_request`, unless the
        `on_request` hook took it."""
        hook = self.on_request
        if hook is not None and hook(imm):
            return
        self._on_completion(_receive_completion(wr_id, length, imm, b1))

    def close(self) -> None:
        """Flush all outstanding work requests (as after a disconnect)."""
        done: list[Completion] = []
        with self._lock:
            if self._sq:
                self._fail(_WCSTATUS_WR_FLUSH_ERR, done)
            self.state = _QPSTATE_ERROR
            self._fatal = True
        for c in done:
            self._on_completion(c)


def round_trip_completions(
    *, wr_id: int, length: int, recv_wr_id: int, reply_bytes: int, imm: int, b1: int
) -> list[Completion]:
    """The two completions of a finished compiled round trip (`commit_round_trip_state`): the
    request's write of `length` bytes, then the reply's receive (`reply_bytes`, `imm`, its
    solicited bit from BTH byte 1 `b1`)."""
    return [
        Completion(
            opcode=_WCOPCODE_RDMA_WRITE, status=_WCSTATUS_SUCCESS, wr_id=wr_id, byte_len=length
        ),
        _receive_completion(recv_wr_id, reply_bytes, imm, b1),
    ]


def _receive_completion(wr_id: int, length: int, imm: int, b1: int) -> Completion:
    """The completion of a receive consumed by an RDMA WRITE WITH IMMEDIATE of `length`
    bytes (its solicited bit from BTH byte 1 `b1`)."""
    return Completion(
        opcode=_WCOPCODE_RECV_RDMA_WITH_IMM,
        status=_WCSTATUS_SUCCESS,
        wr_id=wr_id,
        byte_len=length,
        imm=imm,
        solicited=bool(b1 & 0x80),
    )


_ROUND_TRIP_FIELDS = (
    "_assign_psn",
    "_next_psn",
    "_high",
    "_rtt_psn",
    "_rtt_t0",
    "_una",
    "_cwnd",
    "_hint",
    "_undo",
    "_retries",
    "_backoff",
    "_rto",
    "_deadline",
    "_msn",
    "_cur_len",
    "_cur_pos",
    "_cur_is_send",
    "_cur_view",
    "_epsn",
    "_nak_sent",
    "_ack_pending",
)
"""What `QueuePair._commit_round_trip` may change (`round_trip_abort` restores them)."""
_round_trip_fields = operator.attrgetter(*_ROUND_TRIP_FIELDS)

# Enum members used on the hot paths, looked up once (an IntEnum class attribute costs
# ~0.3 µs in CPython 3.11; a module global ~20 ns).
_OPCODE_ACKNOWLEDGE = Opcode.ACKNOWLEDGE
_OPCODE_RDMA_WRITE_FIRST = Opcode.RDMA_WRITE_FIRST
_OPCODE_RDMA_WRITE_LAST = Opcode.RDMA_WRITE_LAST
_OPCODE_RDMA_WRITE_LAST_WITH_IMMEDIATE = Opcode.RDMA_WRITE_LAST_WITH_IMMEDIATE
_OPCODE_RDMA_WRITE_MIDDLE = Opcode.RDMA_WRITE_MIDDLE
_OPCODE_RDMA_WRITE_ONLY = Opcode.RDMA_WRITE_ONLY
_OPCODE_RDMA_WRITE_ONLY_WITH_IMMEDIATE = Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE
_OPCODE_SEND_FIRST = Opcode.SEND_FIRST
_OPCODE_SEND_LAST = Opcode.SEND_LAST
_OPCODE_SEND_MIDDLE = Opcode.SEND_MIDDLE
_OPCODE_SEND_ONLY = Opcode.SEND_ONLY
_QPSTATE_ERROR = QpState.ERROR
_QPSTATE_RTS = QpState.RTS
_SYNDROME_ACK_UNLIMITED = Syndrome.ACK_UNLIMITED
_SYNDROME_NAK_INVALID_REQUEST = Syndrome.NAK_INVALID_REQUEST
_SYNDROME_NAK_PSN_SEQUENCE_ERROR = Syndrome.NAK_PSN_SEQUENCE_ERROR
_SYNDROME_NAK_REMOTE_ACCESS_ERROR = Syndrome.NAK_REMOTE_ACCESS_ERROR
_SYNDROME_NAK_REMOTE_OPERATIONAL_ERROR = Syndrome.NAK_REMOTE_OPERATIONAL_ERROR
_SYNDROME_RNR_NAK = Syndrome.RNR_NAK
_WCOPCODE_RDMA_WRITE = WcOpcode.RDMA_WRITE
_WCOPCODE_RECV = WcOpcode.RECV
_WCOPCODE_RECV_RDMA_WITH_IMM = WcOpcode.RECV_RDMA_WITH_IMM
_WCOPCODE_SEND = WcOpcode.SEND
_WCSTATUS_REM_ACCESS_ERR = WcStatus.REM_ACCESS_ERR
_WCSTATUS_REM_INV_REQ_ERR = WcStatus.REM_INV_REQ_ERR
_WCSTATUS_REM_OP_ERR = WcStatus.REM_OP_ERR
_WCSTATUS_RETRY_EXC_ERR = WcStatus.RETRY_EXC_ERR
_WCSTATUS_RNR_RETRY_EXC_ERR = WcStatus.RNR_RETRY_EXC_ERR
_WCSTATUS_SUCCESS = WcStatus.SUCCESS
_WCSTATUS_WR_FLUSH_ERR = WcStatus.WR_FLUSH_ERR

__all__ = [
    "Completion",
    "OutPacket",
    "QpObserver",
    "QpState",
    "QueuePair",
    "TransportConfig",
    "WcOpcode",
    "WcStatus",
    "round_trip_completions",
    "syndrome_name",
]
