"""The NAA's compiled request path (`_fastpath.naa_receive`) and the compiled single-packet
send (`_fastpath.send_small`) over real loopback UDP sockets, against the pure-Python codec
(naa_runtime.roce.packets) and the per-packet path (the references): a request of the common
case is placed, committed and acknowledged with the ACK the reference builds, byte for byte;
every unusual one (gap, duplicate, bad ICRC, out-of-region write, wrong rkey, multi-packet,
no receive posted, a QP in error, no AckReq, a stranger) leaves the QP and memory untouched,
sends nothing and is then refused and counted by the per-packet path exactly as before."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from naa_runtime.roce import _fastpath
from naa_runtime.roce.endpoint import Endpoint
from naa_runtime.roce.memory import Access, MemoryTable
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
from naa_runtime.roce.qp import Completion, QueuePair, WcOpcode, WcStatus
from tests.support.roce import next_loopback

HOST_QPN = 0x000055
EPSN = 0xFFFFFF  # the next one wraps to 0
REGION_VA = 0x10000


def _wire(body: bytes, *, src: str, dst: str, sport: int = ROCE_UDP_PORT) -> bytes:
    icrc = compute_icrc(
        body=body,
        src=socket.inet_aton(src),
        dst=socket.inet_aton(dst),
        sport=sport,
        dport=ROCE_UDP_PORT,
    )
    return body + icrc


class Naa:
    """An NAA endpoint (its receive thread not started: the test drives it) with one QP whose
    peer is `host`, a plain UDP socket on the host's RoCEv2 port."""

    def __init__(self) -> None:
        self.ep = Endpoint(address=next_loopback())
        self.host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.host.bind((next_loopback(), ROCE_UDP_PORT))
        self.host.settimeout(2)
        self.host_ip = self.host.getsockname()[0]
        self.region = bytearray(8)
        self.memory = MemoryTable()
        self.mr = self.memory.register(
            self.region, va=REGION_VA, access=Access.LOCAL_WRITE | Access.REMOTE_WRITE
        )
        self.completions: list[Completion] = []
        self.qp: QueuePair = self.ep.create_qp(
            peer_ip=self.host_ip,
            peer_qpn=HOST_QPN,
            send_psn=0x000100,
            expect_psn=EPSN,
            memory=self.memory,
            on_completion=self.completions.append,
        )
        self.qp.post_recv(wr_id=2)

    def request(
        self,
        payload: bytes = b"\x07",
        *,
        psn: int = EPSN,
        opcode: int = Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
        va: int = REGION_VA,
        rkey: int | None = None,
        dma_len: int | None = None,
        ack_req: bool = True,
        qpn: int | None = None,
    ) -> bytes:
        pad = -len(payload) & 3
        body = (
            encode_bth(
                BTH(
                    opcode=opcode,
                    dest_qp=self.qp.qpn if qpn is None else qpn,
                    psn=psn,
                    solicited=True,
                    ack_req=ack_req,
                    pad=pad,
                )
            )
            + encode_reth(
                RETH(
                    va=va,
                    rkey=self.mr.rkey if rkey is None else rkey,
                    dma_len=len(payload) if dma_len is None else dma_len,
                )
            )
            + encode_imm(0x00002A83)
            + payload
            + b"\0" * pad
        )
        return _wire(body, src=self.host_ip, dst=self.ep.address)

    def ack(self, psn: int, msn: int, syndrome: int = Syndrome.ACK_UNLIMITED) -> bytes:
        body = encode_bth(BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=HOST_QPN, psn=psn))
        return _wire(
            body + encode_aeth(AETH(syndrome=syndrome, msn=msn)),
            src=self.ep.address,
            dst=self.host_ip,
        )

    def send(self, dgram: bytes, sender: socket.socket | None = None) -> None:
        (sender or self.host).sendto(dgram, (self.ep.address, ROCE_UDP_PORT))

    def receive(
        self, timeout_ms: int = 2000, *, reply: bool = False
    ) -> tuple[int, int, int, bytes, int, int, object]:
        ep = self.ep
        return _fastpath.naa_receive(
            ep._sock.fileno(),
            ep._wake_r.fileno(),
            timeout_ms,
            0,
            ep._rx_buf,
            ep._qps,
            ep._src,
            ep.port,
            reply,
        )

    def state(self) -> dict[str, object]:
        qp = self.qp
        return {
            "epsn": qp._epsn,
            "msn": qp._msn,
            "rq": len(qp._rq),
            "cur_view": qp._cur_view is None,
            "cur": (qp._cur_pos, qp._cur_len, qp._cur_is_send),
            "ack_pending": qp._ack_pending,
            "nak_sent": qp._nak_sent,
            "fatal": qp._fatal,
            "region": bytes(self.region),
        }

    def nothing_sent(self) -> bool:
        self.host.settimeout(0.05)
        try:
            self.host.recv(100)
        except TimeoutError:
            return True
        finally:
            self.host.settimeout(2)
        return False

    def close(self) -> None:
        self.host.close()
        self.ep.stop()


@pytest.fixture
def naa() -> Iterator[Naa]:
    n = Naa()
    try:
        yield n
    finally:
        n.close()


def test_prefix_state_is_the_codecs() -> None:
    a, b = socket.inet_aton("127.1.2.3"), socket.inet_aton("127.200.0.9")
    for length, ip_id in ((20, 0), (37, 0), (4112, 5), (65000, 63)):
        assert _fastpath.prefix_state(a, b, 4791, 1234, length, ip_id) == prefix_state(
            src=a, dst=b, sport=4791, dport=1234, udp_payload_len=length, ip_id=ip_id
        )


def test_a_common_request_is_placed_committed_and_acknowledged_as_the_codec_builds_it(
    naa: Naa,
) -> None:
    for k, payload in enumerate((b"\x07", b"abcde", b"12345678")):
        psn = (EPSN + k) & 0xFFFFFF
        dgram = naa.request(payload, psn=psn)
        naa.send(dgram)
        status, nbytes, seg, ip, port, wake, req = naa.receive()
        assert (status, nbytes, seg, ip, port, wake) == (
            _fastpath.NR_REQUEST,
            len(dgram),
            len(dgram),
            socket.inet_aton(naa.host_ip),
            ROCE_UDP_PORT,
            0,
        )
        assert req == (
            naa.qp,
            2,
            0x00002A83,
            len(payload),
            0x80 | (-len(payload) & 3) << 4,
            0,
            -1,  # no ACK behind it
            0,
            None,  # no inline reply asked for
        )
        assert naa.region[: len(payload)] == payload
        # the ACK: what QueuePair._send_ack and the endpoint send, from packets.py
        assert naa.host.recv(100) == naa.ack(psn, msn=k + 1)
        assert naa.state() | {"region": b""} == {
            "epsn": (psn + 1) & 0xFFFFFF,
            "msn": k + 1,
            "rq": 0,
            "cur_view": True,
            "cur": (len(payload), len(payload), False),
            "ack_pending": False,
            "nak_sent": False,
            "fatal": False,
            "region": b"",
        }
        naa.qp.post_recv(wr_id=2)
    # nothing here for the completion: the endpoint's receive loop reports it
    assert naa.completions == []


def test_the_endpoint_reports_the_completion_as_the_per_packet_path(naa: Naa) -> None:
    naa.ep._running = True  # as the receive thread would run it (not started here)
    naa.send(naa.request(b"\x09"))
    assert naa.ep._receive_compiled(2000, 0) is True
    assert naa.completions == [
        Completion(
            opcode=WcOpcode.RECV_RDMA_WITH_IMM,
            status=WcStatus.SUCCESS,
            wr_id=2,
            byte_len=1,
            imm=0x00002A83,
            solicited=True,
        )
    ]
    s = naa.ep.stats
    assert (s.packets_rx, s.bytes_rx, s.packets_tx, s.bytes_tx) == (1, 40, 1, 20)
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)


def _fallback_cases(n: Naa) -> dict[str, tuple[bytes, dict[str, int], dict[str, int]]]:
    """name -> (datagram, NAKs the per-packet path sends, drops it counts)."""
    bad_icrc = bytearray(n.request())
    bad_icrc[-1] ^= 0x40
    return {
        "gap": (n.request(psn=1), {"psn_sequence_error": 1}, {"out_of_sequence_psn": 1}),
        "duplicate": (n.request(psn=EPSN - 1), {}, {"duplicate_psn": 1}),
        "bad-icrc": (bytes(bad_icrc), {}, {"bad_icrc": 1}),
        "out-of-region": (
            n.request(b"\x01\x02", va=REGION_VA + 7),
            {"remote_access_error": 1},
            {},
        ),
        "below-region": (n.request(va=REGION_VA - 1), {"remote_access_error": 1}, {}),
        "wrong-rkey": (n.request(rkey=n.mr.rkey ^ 1), {"remote_access_error": 1}, {}),
        "dma-length-mismatch": (n.request(dma_len=2), {"invalid_request": 1}, {}),
        "multi-packet-first": (
            n.request(b"\x01" * 4, opcode=Opcode.RDMA_WRITE_FIRST, dma_len=8),
            {"invalid_request": 1},  # a FIRST must carry a full MTU
            {},
        ),
        "unknown-qp": (n.request(qpn=0x999), {}, {"unknown_qp": 1}),
    }


@pytest.mark.parametrize(
    "case",
    [
        "gap",
        "duplicate",
        "bad-icrc",
        "out-of-region",
        "below-region",
        "wrong-rkey",
        "dma-length-mismatch",
        "multi-packet-first",
        "unknown-qp",
    ],
)
def test_an_unusual_request_is_left_to_the_per_packet_path_which_refuses_and_counts_it(
    naa: Naa, case: str
) -> None:
    dgram, naks, drops = _fallback_cases(naa)[case]
    before = naa.state()
    naa.send(dgram)
    status, nbytes, seg, ip, port, _wake, req = naa.receive()
    assert (status, req) == (_fastpath.NR_DGRAM, None)
    assert naa.state() == before  # nothing placed, nothing committed
    assert naa.nothing_sent()
    assert bytes(naa.ep._rx_buf[:nbytes]) == dgram  # left for the per-packet path
    touched: set[QueuePair] = set()
    naa.ep._on_received(nbytes, seg, (socket.inet_ntoa(ip), port), 0, touched)
    for qp in touched:
        qp.flush_ack()
    assert dict(naa.ep.stats.naks_sent) == naks
    assert {k: v for k, v in naa.ep.stats.dropped.items() if v} == drops
    assert naa.region == bytearray(8)  # an out-of-region write never lands
    assert naa.completions == []


def test_no_receive_posted_a_qp_in_error_or_no_ackreq_fall_back(naa: Naa) -> None:
    naa.qp._rq.clear()
    naa.send(naa.request())
    assert naa.receive()[0] == _fastpath.NR_DGRAM
    naa.qp.post_recv(wr_id=2)
    naa.send(naa.request(ack_req=False))
    assert naa.receive()[0] == _fastpath.NR_DGRAM
    naa.qp._fatal = True
    naa.send(naa.request())
    assert naa.receive()[0] == _fastpath.NR_DGRAM
    naa.qp._fatal = False
    assert naa.nothing_sent()
    assert naa.state()["epsn"] == EPSN


def test_a_stranger_or_a_held_qp_lock_falls_back(naa: Naa) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind((next_loopback(), ROCE_UDP_PORT))
        naa.send(naa.request(), stranger)  # its ICRC is right for the host, not for it
        assert naa.receive()[0] == _fastpath.NR_DGRAM
        src = stranger.getsockname()[0]
        body = naa.request()[:-4]
        stranger.sendto(_wire(body, src=src, dst=naa.ep.address), (naa.ep.address, ROCE_UDP_PORT))
        assert naa.receive()[0] == _fastpath.NR_DGRAM  # a valid packet from the wrong peer
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with naa.qp._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        naa.send(naa.request())
        assert naa.receive()[0] == _fastpath.NR_DGRAM
    finally:
        release.set()
        t.join()
    assert naa.state()["epsn"] == EPSN
    assert naa.nothing_sent()


def test_the_request_ahead_of_a_piggybacked_ack_is_taken_and_the_ack_left(naa: Naa) -> None:
    """The host sends a request and the ACK it owes as one GSO batch: the request is taken,
    the ACK (segment 1) stays in the buffer for the per-packet path."""
    req = naa.request(b"\x05")
    ack = _wire(
        encode_bth(BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=naa.qp.qpn, psn=0x0000FF))
        + encode_aeth(AETH(syndrome=Syndrome.ACK_UNLIMITED, msn=1)),
        src=naa.host_ip,
        dst=naa.ep.address,
    )
    naa.host.sendmsg(
        [req, ack],
        [(17, 103, len(req).to_bytes(2, "little"))],
        0,
        (naa.ep.address, ROCE_UDP_PORT),
    )
    status, nbytes, seg, _ip, _port, _wake, r = naa.receive()
    assert status == _fastpath.NR_REQUEST
    assert (nbytes, seg) == (len(req) + len(ack), len(req))
    assert bytes(naa.ep._rx_buf[seg:nbytes])[:16] == ack[:16]
    # its ICRC covers IP ID 0, not the 1 of a second GSO segment: not for ack_step
    assert r is not None
    assert r[6:8] == (-1, 0)


def test_send_small_sends_what_the_codec_builds_and_clears_byte_4(naa: Naa) -> None:
    ep = naa.ep
    body = (
        encode_bth(
            BTH(
                opcode=Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                dest_qp=HOST_QPN,
                psn=7,
                solicited=True,
                ack_req=True,
                pad=3,
            )
        )
        + encode_reth(RETH(va=0x1000, rkey=0xBEEF, dma_len=1))
        + encode_imm(0x100)
    )
    hdr = bytearray(body)
    hdr[4] = 0xFF  # the QP hands headers over with their ICRC mask in byte 4
    ep._transmit_now(naa.host_ip, [(hdr, memoryview(b"\x5a"), 3)])
    assert naa.host.recv(100) == _wire(body + b"\x5a\0\0\0", src=ep.address, dst=naa.host_ip)
    assert hdr[4] == 0
    assert (ep.stats.packets_tx, ep.stats.bytes_tx) == (1, 40)
    # a failed send is counted as the per-packet path counts it
    assert (
        _fastpath.send_small(-1, socket.inet_aton(naa.host_ip), 4791, bytearray(12), b"", 0, 0) != 0
    )


def _write_imm_wire(n: Naa, payload: bytes, *, psn: int, va: int, rkey: int, imm: int) -> bytes:
    """An RDMA WRITE ONLY WITH IMMEDIATE from the NAA to the host's QP (SE, AckReq) as the
    codec builds it: what the NAA's reply is on the wire."""
    pad = -len(payload) & 3
    body = (
        encode_bth(
            BTH(
                opcode=Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
                dest_qp=HOST_QPN,
                psn=psn,
                solicited=True,
                ack_req=True,
                pad=pad,
            )
        )
        + encode_reth(RETH(va=va, rkey=rkey, dma_len=len(payload)))
        + encode_imm(imm)
        + payload
        + b"\0" * pad
    )
    return _wire(body, src=n.ep.address, dst=n.host_ip)


@pytest.mark.parametrize("payload", [b"", b"\x01", b"abcde", bytes(range(256)) * 16])
def test_a_one_packet_write_with_imm_leaves_in_c_as_the_python_path_builds_it(
    naa: Naa, payload: bytes
) -> None:
    """An RPC's reply (post_write of at most one MTU with an immediate): the compiled send
    (`send_write_imm`) and the Python one (header by `_post_single`, ICRC by `_transmit_now`)
    put the same bytes on the wire, the packets.py encoding."""
    qp = naa.qp
    assert qp.send_write_imm is not None
    got = []
    for compiled in (True, False):
        if not compiled:
            qp.send_write_imm = None
        psn = qp.next_send_psn
        qp.post_write(
            wr_id=5,
            local=memoryview(payload),
            remote_va=0x1234_5678_9ABC,
            rkey=0xCAFE,
            imm=0x0000_0300,
            solicited=True,
        )
        got.append(naa.host.recv(70000))
        assert got[-1] == _write_imm_wire(
            naa, payload, psn=psn, va=0x1234_5678_9ABC, rkey=0xCAFE, imm=0x300
        )
    assert naa.ep.stats.packets_tx == 2
    assert naa.ep.stats.bytes_tx == 2 * len(got[0])
    assert len(qp._sq) == 2  # both outstanding, as _post_single leaves them


def test_a_failing_compiled_step_is_counted_and_the_receive_loop_goes_on(naa: Naa) -> None:
    naa.ep._running = True
    lock = naa.qp._lock
    naa.qp._lock = None  # type: ignore[assignment]  # a bug: the C step raises
    try:
        naa.send(naa.request())
        assert naa.ep._receive_compiled(2000, 0) is False
    finally:
        naa.qp._lock = lock
    assert naa.ep.stats.dropped["internal_error"] == 1
    assert naa.state()["epsn"] == EPSN  # nothing committed; the host resends
    naa.send(naa.request())
    assert naa.ep._receive_compiled(2000, 0) is True
    assert naa.state()["epsn"] == 0


def test_region_bounds_and_access_are_checked_as_memory_resolve_does(naa: Naa) -> None:
    """The compiled step resolves the target region itself: the last byte of a region is
    accepted, a region without remote-write access is left to the reference, which NAKs."""
    naa.send(naa.request(b"\x33", va=REGION_VA + 7))
    assert naa.receive()[0] == _fastpath.NR_REQUEST
    assert naa.region == bytearray(7) + b"\x33"
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    naa.qp.post_recv(wr_id=2)
    local = bytearray(4)
    mr = naa.memory.register(local, va=0x90000, access=Access.LOCAL_WRITE)
    dgram = naa.request(b"\x01", psn=0, va=0x90000, rkey=mr.rkey)
    naa.send(dgram)
    status, nbytes, seg, ip, port, _wake, _req = naa.receive()
    assert status == _fastpath.NR_DGRAM
    assert naa.nothing_sent()
    naa.ep._on_received(nbytes, seg, (socket.inet_ntoa(ip), port), 0, set())
    assert dict(naa.ep.stats.naks_sent) == {"remote_access_error": 1}
    assert local == bytearray(4)


def _requester_state(qp: QueuePair) -> dict[str, object]:
    return {
        "psns": (qp._assign_psn, qp._next_psn, qp._high, qp._una, qp._rtt_psn),
        "sq": [(w.wr_id, w.first_psn, w.npkts, w.imm, w.solicited, w.length) for w in qp._sq],
        "deadline": qp._deadline is not None,
    }


def test_post_reply_leaves_the_wire_and_the_qp_as_post_write(naa: Naa) -> None:
    """The server's reply (`post_reply`) skips post_write's layers: same bytes, same
    requester state; with the endpoint corked it takes post_write's path."""
    other = Naa()
    try:
        outs = []
        for n, post in ((naa, "reply"), (other, "write")):
            local = memoryview(b"\x42\x43")
            n.qp._assign_psn = n.qp._next_psn = n.qp._high = n.qp._una = 0xFFFFFF
            if post == "reply":
                n.qp.post_reply(2, local, 0x2000, 0x77, 0x0000_0500)
            else:
                n.qp.post_write(
                    wr_id=2, local=local, remote_va=0x2000, rkey=0x77, imm=0x500, solicited=True
                )
            dgram = n.host.recv(100)
            # a valid ICRC for this pair of addresses; the bodies must then be equal
            assert dgram == _wire(dgram[:-4], src=n.ep.address, dst=n.host_ip)
            outs.append((dgram[:-4], _requester_state(n.qp)))
        assert outs[0] == outs[1]
        naa.ep.cork()
        naa.qp.post_reply(3, memoryview(b"\x01"), 0x2000, 0x77, 0)
        assert naa.nothing_sent()
        naa.ep.uncork()
        assert naa.host.recv(100)[12:28] == encode_reth(RETH(va=0x2000, rkey=0x77, dma_len=1))
        assert len(naa.qp._sq) == 2
    finally:
        other.close()


# --------------------------------------------------------- the ACK behind a request (ack_step)


def _host_ack(n: Naa, psn: int, *, syndrome: int = Syndrome.ACK_UNLIMITED, ip_id: int = 1) -> bytes:
    """The ACK the host sends behind its request (GSO segment 1: IP ID 1 in its ICRC)."""
    body = encode_bth(BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=n.qp.qpn, psn=psn)) + encode_aeth(
        AETH(syndrome=syndrome, msn=1)
    )
    icrc = compute_icrc(
        body=body,
        src=socket.inet_aton(n.host_ip),
        dst=socket.inet_aton(n.ep.address),
        sport=ROCE_UDP_PORT,
        ip_id=ip_id,
    )
    return body + icrc


def _full_requester_state(qp: QueuePair) -> dict[str, object]:
    return _requester_state(qp) | {
        "deadline": qp._deadline,
        "window": (qp._cwnd, type(qp._cwnd), qp._ssthresh, qp._hint),
        "retry": (qp._retries, qp._backoff, qp._undo, qp._rnr_until, qp.state),
        "rtt": (qp._srtt, qp._rttvar, qp._rto, qp._rtt_psn, qp._rtt_t0),
    }


def _two_replies_out(n: Naa, first: int, sizes: tuple[int, ...] = (2, 3)) -> None:
    """`len(sizes)` replies sent from PSN `first` (as the server posts them), the wire drained."""
    qp = n.qp
    qp._assign_psn = qp._next_psn = qp._high = qp._una = first
    for k, size in enumerate(sizes):
        qp.post_reply(10 + k, memoryview(bytes(size)), 0x2000, 0x77, 0x500)
        n.host.recv(100)


@pytest.mark.parametrize(
    ("acked", "cwnd", "ssthresh", "rtt_timed"),
    [
        (0, 16.0, 1e9, True),  # the first of two: a deadline for the second
        (1, 16.0, 1e9, True),  # both: no deadline
        (1, 5.5, 2.0, True),  # additive growth
        (1, 16383.9, 1e9, False),  # capped at the window (16384, an int), the RTT not timed
    ],
)
def test_a_plain_ack_in_c_leaves_the_qp_as_on_packet(
    acked: int, cwnd: float, ssthresh: float, rtt_timed: bool
) -> None:
    ns = (Naa(), Naa())
    try:
        outs = []
        for n, compiled in zip(ns, (False, True), strict=True):
            qp = n.qp
            qp._cwnd, qp._ssthresh, qp._hint = cwnd, ssthresh, 1
            _two_replies_out(n, 0xFFFFFE)
            qp._rtt_t0 = 100.0  # the same clock for both
            qp._deadline = 100.0 + qp._rto
            if not rtt_timed:
                qp._rtt_psn = -1
            qp._retries = 1
            n.completions.clear()
            psn = (0xFFFFFE + acked) & 0xFFFFFF
            now = 100.000_05
            if compiled:
                assert qp.ack_compiled(psn, Syndrome.ACK_UNLIMITED << 24 | 1, now) is True
            else:
                body = _host_ack(n, psn)[:-4]
                qp.on_packet(memoryview(body), Opcode.ACKNOWLEDGE, 0, psn, now)
            outs.append((_full_requester_state(qp), list(n.completions)))
        assert outs[0] == outs[1]
        assert (outs[1][0]["rtt"][0] > 0) == rtt_timed  # srtt: the round trip was sampled
        assert [c.wr_id for c in outs[1][1]] == [10, 11][: acked + 1]
        assert all(c.opcode == WcOpcode.RDMA_WRITE for c in outs[1][1])
    finally:
        for n in ns:
            n.close()


def _fallback_acks(n: Naa) -> dict[str, tuple[int, int]]:
    ack = Syndrome.ACK_UNLIMITED << 24
    return {
        "nak": (0xFFFFFE, Syndrome.NAK_PSN_SEQUENCE_ERROR << 24),
        "rnr": (0xFFFFFE, Syndrome.RNR_NAK << 24),
        "duplicate": (0xFFFFFD, ack),
        "beyond": (0x000000, ack),
    }


def test_anything_but_a_plain_ack_of_new_psns_is_left_to_on_packet(naa: Naa) -> None:
    qp = naa.qp
    _two_replies_out(naa, 0xFFFFFE)
    for name, (psn, aeth) in _fallback_acks(naa).items():
        before = _full_requester_state(qp)
        assert qp.ack_compiled(psn, aeth, qp._rtt_t0 + 0.001) is False, name
        assert _full_requester_state(qp) == before, name
    psn, aeth = 0xFFFFFE, Syndrome.ACK_UNLIMITED << 24
    for attr, value in (
        ("_backoff", 1),
        ("_undo", (8.0, 4.0)),
        ("_rnr_until", 1.0),
        ("state", 6),
        ("_next_psn", 0xFFFFFE),  # a resend pending: _pump would send
    ):
        old = getattr(qp, attr)
        setattr(qp, attr, value)
        before = _full_requester_state(qp)
        assert qp.ack_compiled(psn, aeth, qp._rtt_t0 + 0.001) is False, attr
        assert _full_requester_state(qp) == before, attr
        setattr(qp, attr, old)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with qp._lock:
            held.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    try:
        assert qp.ack_compiled(psn, aeth, qp._rtt_t0 + 0.001) is False
    finally:
        release.set()
        t.join()
    assert len(qp._sq) == 2
    assert naa.completions == []


@pytest.mark.parametrize("ip_id", [1, 0])
def test_the_ack_behind_a_request_is_taken_in_c_or_by_the_per_packet_path(
    naa: Naa, ip_id: int
) -> None:
    """A request and the host's ACK for the previous reply as one GSO batch: with a valid
    ICRC for segment 1 the ACK goes to ack_step and retires the reply; with one for IP ID 0
    both paths refuse it (bad ICRC) and the reply stays outstanding."""
    _two_replies_out(naa, 0xFFFFFE, sizes=(2,))
    naa.completions.clear()
    req = naa.request(b"\x05")
    ack = _host_ack(naa, 0xFFFFFE, ip_id=ip_id)
    naa.host.sendmsg(
        [req, ack], [(17, 103, len(req).to_bytes(2, "little"))], 0, (naa.ep.address, ROCE_UDP_PORT)
    )
    naa.ep._running = True
    assert naa.ep._receive_compiled(2000, 0) is True
    s = naa.ep.stats
    assert (s.packets_rx, s.bytes_rx) == (2, len(req) + len(ack))
    assert [(c.opcode, c.wr_id) for c in naa.completions] == [
        (WcOpcode.RECV_RDMA_WITH_IMM, 2),
        *([(WcOpcode.RDMA_WRITE, 10)] if ip_id == 1 else []),
    ]
    assert len(naa.qp._sq) == (0 if ip_id == 1 else 1)
    assert dict(s.dropped) == ({} if ip_id == 1 else {"bad_icrc": 1})


# ----------------------------------------------------------------------- inline replies

REPLY_VA, REPLY_RKEY, REPLY_IMM = 0x7000_0000_1000, 0xBEEF, 0x00000500
NAA_PSN = 0x000100  # the NAA QP's first send PSN (Naa: send_psn)


def _reply_wire(n: Naa, payload: bytes) -> bytes:
    """The NAA's first reply (what `post_reply` sends for the plans below)."""
    return _write_imm_wire(n, payload, psn=NAA_PSN, va=REPLY_VA, rkey=REPLY_RKEY, imm=REPLY_IMM)


def _hook(
    n: Naa, answer: object, calls: list[int]
) -> tuple[int, memoryview, int, int, int, int] | None:
    def hook(imm: int) -> object:
        calls.append(imm)
        return answer

    n.qp.inline_reply = hook  # type: ignore[assignment]
    return answer if isinstance(answer, tuple) else None


def _send_state(qp: QueuePair) -> tuple[object, ...]:
    return (
        qp._assign_psn,
        qp._next_psn,
        qp._high,
        qp._rtt_psn,
        qp._deadline is None,
        [(w.wr_id, w.first_psn, w.npkts, w.imm, w.solicited, bytes(w.local)) for w in qp._sq],
    )


@pytest.mark.parametrize("payload", [b"\x2a", b"abcde", bytes(range(64))], ids=["1B", "5B", "64B"])
def test_an_inline_reply_leaves_right_behind_the_ack_as_post_reply_sends_it(
    naa: Naa, payload: bytes
) -> None:
    out = bytearray(payload)
    calls: list[int] = []
    plan = (9, memoryview(out), REPLY_VA, REPLY_RKEY, REPLY_IMM, 2)
    _hook(naa, plan, calls)
    naa.send(naa.request(b"\x05"))
    status, *_rest, req = naa.receive(reply=True)
    assert status == _fastpath.NR_REQUEST
    assert isinstance(req, tuple)
    assert req[8] == (plan, 0)  # sent here, no error
    assert calls == [0x00002A83]
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)  # the ACK first (PROTOCOL.md §3.5)
    assert naa.host.recv(200) == _reply_wire(naa, payload)
    assert naa.nothing_sent()
    # recorded as post_reply records it: queued until its ACK, PSN advanced, RTT timed
    assert _send_state(naa.qp) == (
        NAA_PSN + 1,
        NAA_PSN + 1,
        NAA_PSN + 1,
        NAA_PSN,
        False,
        [(9, NAA_PSN, 1, REPLY_IMM, True, payload)],
    )
    assert naa.qp._lock.acquire(blocking=False)  # and the QP's lock released
    naa.qp._lock.release()


@pytest.mark.parametrize("answer", [None, True])
def test_a_declined_or_wholly_taken_request_sends_only_its_ack(naa: Naa, answer: object) -> None:
    calls: list[int] = []
    _hook(naa, answer, calls)
    before = _send_state(naa.qp)
    naa.send(naa.request())
    *_rest, req = naa.receive(reply=True)
    assert isinstance(req, tuple)
    assert req[8] is answer
    assert calls == [0x00002A83]
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    assert naa.nothing_sent()
    assert _send_state(naa.qp) == before


def test_without_reply_the_hook_is_not_called(naa: Naa) -> None:
    calls: list[int] = []
    _hook(naa, (9, memoryview(bytearray(1)), REPLY_VA, REPLY_RKEY, REPLY_IMM, 2), calls)
    naa.send(naa.request())
    *_rest, req = naa.receive(reply=False)
    assert isinstance(req, tuple)
    assert (req[8], calls) == (None, [])


def _busy_lock(qp: QueuePair) -> threading.Event:
    """Hold the QP's lock on another thread until the returned event is set."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with qp._lock:
            held.set()
            done.wait(5)

    threading.Thread(target=hold, daemon=True).start()
    held.wait(5)
    return done


@pytest.mark.parametrize("case", ["qp-lock-held", "not-bytes", "over-mtu", "window-full"])
def test_a_reply_outside_post_replys_common_case_is_left_to_the_caller(naa: Naa, case: str) -> None:
    view = memoryview(bytearray(8))
    if case == "not-bytes":
        view = view.cast("d")
    if case == "over-mtu":
        view = memoryview(bytearray(naa.qp.config.mtu + 4))
    if case == "window-full":
        naa.qp._cwnd = 0.5
    plan = (9, view, REPLY_VA, REPLY_RKEY, REPLY_IMM, 2)
    releases: list[threading.Event] = []

    def hook(imm: int) -> object:
        if case == "qp-lock-held":  # another thread enters the QP while the kernel runs
            releases.append(_busy_lock(naa.qp))
        return plan

    naa.qp.inline_reply = hook  # type: ignore[assignment]
    before = _send_state(naa.qp)
    naa.send(naa.request())
    try:
        *_rest, req = naa.receive(reply=True)
    finally:
        for r in releases:
            r.set()
    assert isinstance(req, tuple)
    assert req[8] == (plan, -1)
    assert len(releases) == (case == "qp-lock-held")
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    assert naa.nothing_sent()
    assert _send_state(naa.qp) == before


def test_the_endpoint_counts_an_inline_reply_and_posts_the_next_receive(naa: Naa) -> None:
    naa.ep._running = True  # as the receive thread would run it (not started here)
    plan = (9, memoryview(bytearray(b"\x33")), REPLY_VA, REPLY_RKEY, REPLY_IMM, 4)
    _hook(naa, plan, [])
    naa.send(naa.request(b"\x09"))
    assert naa.ep._receive_compiled(2000, 0) is True
    assert naa.completions == []  # the hook took the request: no completion to report
    s = naa.ep.stats
    assert (s.packets_rx, s.bytes_rx, s.packets_tx, s.bytes_tx) == (1, 40, 2, 60)
    assert [r.wr_id for r in naa.qp._rq] == [4]
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    assert naa.host.recv(100) == _reply_wire(naa, b"\x33")


def test_the_endpoint_posts_a_reply_c_left_to_it_through_post_reply(naa: Naa) -> None:
    naa.ep._running = True
    naa.qp._cwnd = 0.5  # no room here: C leaves it; post_reply queues it until room
    plan = (9, memoryview(bytearray(b"\x33")), REPLY_VA, REPLY_RKEY, REPLY_IMM, 4)
    _hook(naa, plan, [])
    naa.send(naa.request(b"\x09"))
    assert naa.ep._receive_compiled(2000, 0) is True
    assert [(w.wr_id, w.imm) for w in naa.qp._sq] == [(9, REPLY_IMM)]
    assert [r.wr_id for r in naa.qp._rq] == [4]
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    assert naa.nothing_sent()  # queued: the window has no room


def test_the_ack_leaves_even_when_the_hook_raises(naa: Naa) -> None:
    """The ACK waits for an inline reply, but the request is committed whatever the hook
    does: a hook that raises still gets the ACK out before the error comes back."""

    def hook(imm: int) -> object:
        raise RuntimeError("a bug in the server")

    naa.qp.inline_reply = hook  # type: ignore[assignment]
    naa.send(naa.request())
    with pytest.raises(RuntimeError, match="a bug in the server"):
        naa.receive(reply=True)
    assert naa.host.recv(100) == naa.ack(EPSN, msn=1)
    assert naa.nothing_sent()


def test_an_inline_reply_and_its_ack_leave_in_one_sendmmsg_ack_first(naa: Naa) -> None:
    """Both datagrams are queued at the host by the time the NAA's call returns (one
    sendmmsg), the ACK first (PROTOCOL.md §3.5)."""
    plan = (9, memoryview(bytearray(b"\x01")), REPLY_VA, REPLY_RKEY, REPLY_IMM, 2)
    _hook(naa, plan, [])
    naa.send(naa.request())
    naa.receive(reply=True)
    naa.host.setblocking(False)
    try:
        first, second = naa.host.recv(100), naa.host.recv(100)
    finally:
        naa.host.setblocking(True)
        naa.host.settimeout(2)
    assert (first, second) == (naa.ack(EPSN, msn=1), _reply_wire(naa, b"\x01"))
