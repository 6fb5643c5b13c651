"""The compiled round trip of a small RPC (`_fastpath.rpc_round_trip`) over real loopback
UDP sockets, against the pure-Python codec (naa_runtime.roce.packets, the reference): the
request datagrams it sends are byte for byte the reference packets, it reports RT_OK only for
the request's ACK plus the expected reply (in either order, each header and ICRC checked),
and every unusual datagram, a silence and a failed send end it with the fallback status and
the datagrams received, untouched, for the per-packet path."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from naa_runtime.roce import _fastpath
from naa_runtime.roce.endpoint import Endpoint
from naa_runtime.roce.memory import MemoryTable
from naa_runtime.roce.packets import (
    AETH,
    BTH,
    RETH,
    ROCE_UDP_PORT,
    Opcode,
    Syndrome,
    compute_icrc,
    encode_aeth,
    encode_bth,
    encode_imm,
    encode_reth,
    prefix_state,
)
from naa_runtime.roce.qp import QueuePair
from tests.support.roce import next_loopback

QPN = 0x00ABCD
REQ_PSN = 0x123456
EPSN = 0xFFFFFF  # the 24-bit wrap is the next PSN's business, not this one's
REPLY_LEN = 12 + 16 + 4 + 1 + 3 + 4
MS = 1_000_000


def _wire(body: bytes, *, src: str, dst: str, ip_id: int = 0) -> bytes:
    icrc = compute_icrc(
        body=body,
        src=socket.inet_aton(src),
        dst=socket.inet_aton(dst),
        sport=ROCE_UDP_PORT,
        dport=ROCE_UDP_PORT,
        ip_id=ip_id,
    )
    return body + icrc


def _ack(psn: int = REQ_PSN, syndrome: int = Syndrome.ACK_UNLIMITED, qpn: int = QPN) -> bytes:
    return encode_bth(BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=qpn, psn=psn)) + encode_aeth(
        AETH(syndrome=syndrome, msn=7)
    )


def _reply(psn: int = EPSN, opcode: int = Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE) -> bytes:
    return (
        encode_bth(BTH(opcode=opcode, dest_qp=QPN, psn=psn, solicited=True, ack_req=True, pad=3))
        + encode_reth(RETH(va=0x1000, rkey=0xBEEF, dma_len=1))
        + encode_imm(0x00000100)
        + b"\x5a\0\0\0"
    )


class Pair:
    """The host's socket (an Endpoint's, for its CRC-state helpers) and the NAA's."""

    def __init__(self) -> None:
        self.ep = Endpoint(address=next_loopback())
        self.host = self.ep.address
        self.naa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.naa.bind((next_loopback(), ROCE_UDP_PORT))
        self.naa.settimeout(5)
        self.naa_ip = self.naa.getsockname()[0]
        self.rxbuf = bytearray(4 * 65600)

    def state(self, length: int) -> int:
        return prefix_state(
            src=socket.inet_aton(self.naa_ip),
            dst=socket.inet_aton(self.host),
            sport=ROCE_UDP_PORT,
            dport=ROCE_UDP_PORT,
            udp_payload_len=length,
        )

    def to_host(self, *bodies: bytes) -> None:
        for b in bodies:
            self.naa.sendto(_wire(b, src=self.naa_ip, dst=self.host), (self.host, ROCE_UDP_PORT))

    def call(
        self, out: list[bytes], *, gso: int = 0, timeout_ms: int = 2000, spin_ns: int = 0
    ) -> tuple[int, int, tuple[tuple[int, int, int, bytes, int], ...], int]:
        return _fastpath.rpc_round_trip(
            self.ep._sock.fileno(),
            socket.inet_aton(self.naa_ip),
            list(out),
            gso,
            QPN,
            REQ_PSN,
            EPSN,
            self.state(20),
            self.state(REPLY_LEN),
            REPLY_LEN,
            spin_ns,
            timeout_ms * MS,
            self.rxbuf,
        )

    def close(self) -> None:
        self.naa.close()
        self.ep.stop()

    def qp(self) -> QueuePair:
        """A fresh host QP towards the NAA socket (peer QPN 0x42, PSNs REQ_PSN / EPSN)."""
        qp: QueuePair = self.ep.create_qp(
            peer_ip=self.naa_ip,
            peer_qpn=0x42,
            send_psn=REQ_PSN,
            expect_psn=EPSN,
            memory=MemoryTable(),
            on_completion=lambda c: None,
        )
        return qp


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    try:
        yield p
    finally:
        p.close()


def _request(p: Pair) -> bytes:
    body = (
        encode_bth(
            BTH(
                opcode=Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                dest_qp=0x42,
                psn=REQ_PSN,
                solicited=True,
                ack_req=True,
                pad=3,
            )
        )
        + encode_reth(RETH(va=0, rkey=0x77, dma_len=1))
        + encode_imm(0x83)
        + b"\x01\0\0\0"
    )
    return _wire(body, src=p.host, dst=p.naa_ip)


def test_ack_and_reply_in_either_order_give_ok_and_are_kept_for_the_qp(pair: Pair) -> None:
    for first, second in ((_ack(), _reply()), (_reply(), _ack())):
        pair.to_host(first, second)
        status, err, dgrams, imm = pair.call([_request(pair)])
        assert (status, err, imm) == (_fastpath.RT_OK, 0, 0x00000100)  # the reply's ImmDt
        assert pair.naa.recv(100) == _request(pair)
        got = [bytes(pair.rxbuf[off : off + n]) for off, n, _seg, _ip, _port in dgrams]
        assert got == [
            _wire(first, src=pair.naa_ip, dst=pair.host),
            _wire(second, src=pair.naa_ip, dst=pair.host),
        ]
        assert all(
            (seg, ip, port) == (n, socket.inet_aton(pair.naa_ip), ROCE_UDP_PORT)
            for _off, n, seg, ip, port in dgrams
        )


@pytest.mark.parametrize(
    "unusual",
    [
        pytest.param(_ack(psn=REQ_PSN - 1), id="ack-of-an-older-psn"),
        pytest.param(_ack(syndrome=Syndrome.NAK_PSN_SEQUENCE_ERROR), id="nak-sequence"),
        pytest.param(_ack(syndrome=Syndrome.RNR_NAK | 14), id="rnr-nak"),
        pytest.param(_ack(syndrome=Syndrome.NAK_REMOTE_ACCESS_ERROR), id="nak-access"),
        pytest.param(_ack(qpn=QPN + 1), id="another-qp"),
        pytest.param(_reply(psn=EPSN - 1), id="duplicate-reply"),
        pytest.param(_reply(psn=0x000001), id="reply-ahead-psn-gap"),
        pytest.param(_reply(opcode=Opcode.RDMA_WRITE_ONLY), id="write-without-imm"),
        pytest.param(_reply()[:-4], id="other-length"),
    ],
)
def test_an_unusual_datagram_falls_back_with_everything_received(
    pair: Pair, unusual: bytes
) -> None:
    pair.to_host(_ack(), unusual, _reply())
    status, _err, dgrams, imm = pair.call([_request(pair)])
    assert (status, imm) == (_fastpath.RT_FALLBACK, -1)
    assert [bytes(pair.rxbuf[o : o + n]) for o, n, *_ in dgrams] == [
        _wire(_ack(), src=pair.naa_ip, dst=pair.host),
        _wire(unusual, src=pair.naa_ip, dst=pair.host),
    ]


def test_a_second_ack_a_bad_icrc_or_a_stranger_falls_back(pair: Pair) -> None:
    pair.to_host(_ack(), _ack())
    assert pair.call([_request(pair)])[0] == _fastpath.RT_FALLBACK
    bad = bytearray(_wire(_ack(), src=pair.naa_ip, dst=pair.host))
    bad[-1] ^= 1
    pair.naa.sendto(bytes(bad), (pair.host, ROCE_UDP_PORT))
    status, _err, dgrams, _imm = pair.call([_request(pair)])
    assert status == _fastpath.RT_FALLBACK
    assert len(dgrams) == 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((pair.naa_ip, 0))  # the NAA's address, another port
        stranger.sendto(_wire(_ack(), src=pair.naa_ip, dst=pair.host), (pair.host, 4791))
        status, _err, dgrams, _imm = pair.call([_request(pair)])
    assert status == _fastpath.RT_FALLBACK
    assert dgrams[0][4] != ROCE_UDP_PORT


def test_silence_times_out_and_keeps_what_arrived(pair: Pair) -> None:
    status, _err, dgrams, _imm = pair.call([_request(pair)], timeout_ms=20, spin_ns=1 * MS)
    assert (status, dgrams) == (_fastpath.RT_TIMEOUT, ())
    pair.to_host(_reply())
    status, _err, dgrams, _imm = pair.call([_request(pair)], timeout_ms=20)
    assert status == _fastpath.RT_TIMEOUT
    assert len(dgrams) == 1


def test_a_failed_send_is_reported_with_its_errno(pair: Pair) -> None:
    status, err, dgrams, _imm = pair.call([b"x" * 70000])
    assert (status, dgrams) == (_fastpath.RT_ERROR, ())
    assert err != 0


def test_request_and_deferred_ack_leave_as_the_reference_packets_in_one_gso_send(
    pair: Pair,
) -> None:
    """The endpoint's own buffers for a request and the ACK behind it (what
    `Endpoint.round_trip` hands the C function): on the wire, the reference packets with
    IPv4 identifications 0 and 1, as `_transmit_now` sends them."""
    request = bytearray(
        struct.pack("!BBHII", Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE, 0xB0, 0xFFFF, 0xFF000042, 5)
    )
    request += encode_reth(RETH(va=0, rkey=0x77, dma_len=1)) + encode_imm(0x83)
    ack = bytearray(_ack(psn=9, qpn=0x42))
    ack[4] = 0xFF
    small = pair.ep._small_datagram(pair.naa_ip, [(request, b"\x01", 3), (ack, b"", 0)])
    assert small is not None
    bufs, seg, total = small
    assert (seg, total) == (40, 60)
    pair.to_host(_ack(), _reply())
    assert pair.call(bufs, gso=seg)[0] == _fastpath.RT_OK
    first, second = pair.naa.recv(100), pair.naa.recv(100)
    req_body = bytes(request) + b"\x01\0\0\0"
    assert first == _wire(req_body, src=pair.host, dst=pair.naa_ip, ip_id=0)
    assert second == _wire(bytes(ack), src=pair.host, dst=pair.naa_ip, ip_id=1)


def test_bad_arguments_are_refused(pair: Pair) -> None:
    fd = pair.ep._sock.fileno()
    ip = socket.inet_aton(pair.naa_ip)
    with pytest.raises(ValueError, match="rxbuf"):
        _fastpath.rpc_round_trip(fd, ip, [b"x"], 0, QPN, 0, 0, 0, 0, REPLY_LEN, 0, MS, bytearray(9))
    with pytest.raises(ValueError, match="0 to 8"):
        _fastpath.rpc_round_trip(
            fd, ip, [b"x"] * 9, 0, QPN, 0, 0, 0, 0, REPLY_LEN, 0, MS, pair.rxbuf
        )
    with pytest.raises(ValueError, match="QP number"):
        _fastpath.rpc_round_trip(
            fd, ip, [b"x"], 0, 1 << 24, 0, 0, 0, 0, REPLY_LEN, 0, MS, pair.rxbuf
        )


def test_an_idle_queue_pair_is_what_the_round_trip_starts_from(pair: Pair) -> None:
    qp = pair.qp()
    assert qp.idle()
    assert (qp.next_send_psn, qp.expected_psn) == (REQ_PSN, EPSN)
    qp.post_recv(wr_id=1)
    assert not qp.idle()


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1024])
@pytest.mark.parametrize("ack_owed", [False, True])
def test_the_compiled_request_is_the_reference_packets_byte_for_byte(
    pair: Pair, size: int, ack_owed: bool
) -> None:
    """`_fastpath.build_round_trip` from `QueuePair.round_trip_start` (what
    `Endpoint.rpc_call` sends) gives the bytes `round_trip_packets` and `_small_datagram`
    give (the Python build, checked against the reference wire above), with and without
    the ACK owed behind the request."""
    qp = pair.qp()
    if ack_owed:
        qp._ack_pending = True
        qp._msn = 0x123456
    payload = memoryview(bytes(range(256)) * 4)[:size]
    started = qp.round_trip_start()
    planned = qp.round_trip_packets(payload, 0x1122334455667788, 0xBEEF, 0x80000083)
    assert started is not None
    assert planned is not None
    psn, epsn, ack_psn, aeth = started
    assert (psn, epsn) == planned[:2] == (REQ_PSN, EPSN)
    assert (ack_psn >= 0) == ack_owed == (len(planned[2]) == 2)
    small = pair.ep._small_datagram(pair.naa_ip, planned[2])
    assert small is not None
    bufs, seg, total = small
    req_len = 32 + size + (-size & 3) + 4
    built = _fastpath.build_round_trip(
        pair.ep._tx_states(pair.naa_ip, req_len)[0],
        pair.ep._tx_states(pair.naa_ip, 20)[1],
        qp.dqp_word,
        psn,
        payload,
        0x1122334455667788,
        0xBEEF,
        0x80000083,
        ack_psn,
        aeth,
    )
    assert built == b"".join(bytes(b) for b in bufs)
    assert (len(built), seg) == (total, req_len)
    assert qp.idle()  # neither changed anything


def test_a_queue_pair_that_is_not_idle_starts_no_round_trip(pair: Pair) -> None:
    qp = pair.qp()
    qp.post_recv(wr_id=1)
    assert qp.round_trip_start() is None
    assert qp.round_trip_packets(memoryview(b"x"), 0, 1, 2) is None


@pytest.mark.parametrize(
    ("srtt", "rttvar", "t0", "now"),
    [
        (0.0, 0.0, 10.0, 10.000080),  # the first sample
        (0.000090, 0.000020, 10.0, 10.000070),  # a later one
        (0.005, 0.001, 10.0, 10.000050),  # a shorter one than the estimate
        (0.000090, 0.000020, 10.0, 9.5),  # a clock other than time.monotonic: no sample
        (0.0, 0.0, 10.0, 10.0),  # zero: the ACK timeout stays the RTO
    ],
)
def test_the_committed_round_trip_samples_the_rtt_as_the_per_packet_path(
    pair: Pair, srtt: float, rttvar: float, t0: float, now: float
) -> None:
    """`commit_round_trip_state` folds the request's round trip into the estimate inline; the
    same estimate, RTO and timing state as `_sample_rtt` (the per-packet path's `_on_ack`)."""
    qps: list[QueuePair] = [pair.qp() for _ in range(2)]
    for qp in qps:
        qp._srtt, qp._rttvar = srtt, rttvar
        qp._set_rto()
    fast, ref = qps
    fast.commit_round_trip_state(1, t0, now)
    ref._rtt_psn, ref._rtt_t0 = REQ_PSN, t0
    ref._sample_rtt(now)
    assert (fast._srtt, fast._rttvar, fast._rto, fast._rtt_psn) == (
        ref._srtt,
        ref._rttvar,
        ref._rto,
        ref._rtt_psn,
    )


def test_a_request_sent_apart_is_waited_for_by_a_round_trip_with_nothing_to_send(
    pair: Pair,
) -> None:
    """`send_round_trip` puts the request on the wire; `rpc_round_trip` with no buffers then
    only waits for the ACK and the reply (what `Endpoint.rpc_call` does, with its
    bookkeeping in between)."""
    fd = pair.ep._sock.fileno()
    ip = socket.inet_aton(pair.naa_ip)
    assert _fastpath.send_round_trip(fd, ip, _request(pair), 0) == 0
    assert pair.naa.recv(100) == _request(pair)
    pair.to_host(_ack(), _reply())
    status, err, dgrams, _imm = pair.call([])
    assert (status, err, len(dgrams)) == (_fastpath.RT_OK, 0, 2)
    status, err, dgrams, _imm = pair.call([], timeout_ms=20)
    assert (status, dgrams) == (_fastpath.RT_TIMEOUT, ())


def test_an_aborted_speculation_leaves_the_queue_pair_as_it_was(pair: Pair) -> None:
    qp = pair.qp()
    qp._srtt, qp._rttvar = 0.00009, 0.00002
    qp._set_rto()
    before = dict(vars(qp))
    speculated = qp.round_trip_speculate(1, 10.0)
    assert qp.next_send_psn != REQ_PSN  # the commit was made...
    qp.round_trip_abort(speculated)
    assert vars(qp) == before  # ...and undone
    assert qp._lock.acquire(blocking=False)  # and the lock is free again
    qp._lock.release()
    assert qp.round_trip_start() is not None  # still idle: a round trip can start


@pytest.mark.parametrize("earlier", [False, True])
def test_a_confirmed_speculation_is_the_commit(pair: Pair, earlier: bool) -> None:
    """`round_trip_speculate` then `round_trip_confirm` leave what `commit_round_trip_state`
    leaves, RTT sample included (of the request, or of an earlier PSN being timed, which
    the request's ACK covers)."""
    fast, ref = pair.qp(), pair.qp()
    for qp in (fast, ref):
        qp._srtt, qp._rttvar = 0.00009, 0.00002
        qp._set_rto()
        if earlier:
            qp._rtt_psn, qp._rtt_t0 = (REQ_PSN - 1) & 0xFFFFFF, 9.0
    speculated = fast.round_trip_speculate(1, 10.0)
    assert speculated[1]  # the sample is due
    fast.round_trip_confirm(speculated, 10.00007)
    ref.commit_round_trip_state(1, 10.0, 10.00007)

    def state(qp: QueuePair) -> dict[str, object]:  # all but its own QPN, lock and callbacks
        skip = {"qpn", "_lock", "_obs", "memory", "_sq", "_ready"}
        return {k: v for k, v in vars(qp).items() if k not in skip and not callable(v)}

    assert state(fast) == state(ref)
    assert state(fast)["_rtt_psn"] == -1
    assert state(fast)["_srtt"] > (0.1 if earlier else 0.00007)
    assert fast._lock.acquire(blocking=False)
    fast._lock.release()


def _wait_held(pair: Pair, qp: QueuePair, sample: bool, timeout_ms: int = 2000) -> int:
    """`rpc_round_trip` with nothing to send, confirming `qp`'s speculation on RT_OK."""
    return _fastpath.rpc_round_trip(
        pair.ep._sock.fileno(),
        socket.inet_aton(pair.naa_ip),
        (),
        0,
        QPN,
        REQ_PSN,
        EPSN,
        pair.state(20),
        pair.state(REPLY_LEN),
        REPLY_LEN,
        0,
        timeout_ms * MS,
        pair.rxbuf,
        None,
        qp,
        sample,
    )[0]


@pytest.mark.parametrize("sample", [True, False])
def test_a_finished_round_trip_confirms_the_speculation_in_c(pair: Pair, sample: bool) -> None:
    """With `held`, RT_OK does `round_trip_confirm`'s work at the reply's arrival: the RTT
    sample (if due) on the clock of `time.monotonic`, and the QP's lock released."""
    qp = pair.qp()
    t0 = time.monotonic()
    speculated = qp.round_trip_speculate(1, t0)
    assert qp._lock._is_owned()  # type: ignore[attr-defined]
    pair.to_host(_ack(), _reply())
    assert _wait_held(pair, qp, sample) == _fastpath.RT_OK
    elapsed = time.monotonic() - t0
    assert not qp._lock._is_owned()  # type: ignore[attr-defined]
    if sample:
        assert qp._rtt_psn == -1
        assert 0 < qp._srtt <= elapsed
        assert qp._rto == max(qp.config.min_rto, qp._srtt + 4 * qp._rttvar)
    else:  # left as the speculation made it: the request's PSN still timed
        assert (qp._rtt_psn, qp._srtt) == (REQ_PSN, 0.0)
    assert speculated[1]


def test_an_unfinished_round_trip_leaves_the_speculation_to_the_caller(pair: Pair) -> None:
    qp = pair.qp()
    before = dict(vars(qp))
    speculated = qp.round_trip_speculate(1, time.monotonic())
    assert _wait_held(pair, qp, True, timeout_ms=20) == _fastpath.RT_TIMEOUT
    assert qp._lock._is_owned()  # type: ignore[attr-defined]  # still held: abort's to undo
    qp.round_trip_abort(speculated)
    assert vars(qp) == before
