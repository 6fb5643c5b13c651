"""The compiled bulk paths (naa_runtime.roce._fastpath) against the pure-Python codec
(naa_runtime.roce.packets), the reference: the CRC-32 and ICRC on random data, the MIDDLE-run
sender's datagrams as they arrive on a real UDP socket, and the GRO-batch receiver's checks and
placement on random, corrupted and truncated batches."""

from __future__ import annotations

import random
import socket
import struct
import zlib

import pytest

from naa_runtime.roce import _fastpath
from naa_runtime.roce.packets import (
    BTH,
    ICRC_LEN,
    Opcode,
    compute_icrc,
    decode_bth,
    encode_bth,
    icrc_of,
    prefix_state,
    psn_add,
)
from tests.support.roce import next_loopback

SOL_UDP = 17
UDP_GRO = 104


def _states(*, src: str, dst: str, sport: int, dport: int, seg: int) -> list[int]:
    return [
        prefix_state(
            src=socket.inet_aton(src),
            dst=socket.inet_aton(dst),
            sport=sport,
            dport=dport,
            udp_payload_len=seg,
            ip_id=i,
        )
        for i in range(_fastpath.MAX_SEGS)
    ]


def _table(states: list[int]) -> bytes:
    return struct.pack(f"={len(states)}I", *states)


def _reference_packet(
    *,
    op: int,
    dest_qp: int,
    psn: int,
    ack_req: bool,
    payload: bytes,
    src: str,
    dst: str,
    sport: int,
    dport: int,
    ip_id: int,
) -> bytes:
    body = encode_bth(BTH(opcode=op, dest_qp=dest_qp, psn=psn, ack_req=ack_req)) + payload
    icrc = compute_icrc(
        body=body,
        src=socket.inet_aton(src),
        dst=socket.inet_aton(dst),
        sport=sport,
        dport=dport,
        ip_id=ip_id,
    )
    return body + icrc


# ------------------------------------------------------------------------------ CRC, ICRC


def test_crc32_equals_zlib_on_random_data_and_chains_like_it() -> None:
    rng = random.Random(1)
    for n in [0, 1, 3, 4, 5, 15, 16, 63, 64, 65, 255, 4096, 4112, 65536, 100_003]:
        data = rng.randbytes(n)
        init = rng.getrandbits(32)
        assert _fastpath.crc32(data) == zlib.crc32(data)
        assert _fastpath.crc32(data, init) == zlib.crc32(data, init)
        cut = n // 3
        assert _fastpath.crc32(data[cut:], _fastpath.crc32(data[:cut])) == zlib.crc32(data)
    assert _fastpath.crc32(memoryview(bytearray(b"123456789"))) == 0xCBF43926


def test_icrc_equals_the_reference_codec_on_random_packets() -> None:
    rng = random.Random(2)
    for _ in range(200):
        body = rng.randbytes(rng.randrange(5, 5000))
        state = prefix_state(
            src=rng.randbytes(4),
            dst=rng.randbytes(4),
            sport=rng.randrange(65536),
            dport=4791,
            udp_payload_len=len(body) + ICRC_LEN,
            ip_id=rng.randrange(64),
        )
        assert _fastpath.icrc(state, body) == icrc_of(state, body)


def test_crc_functions_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        _fastpath.crc32(b"x", 1 << 32)
    with pytest.raises(ValueError, match="BTH"):
        _fastpath.icrc(0, b"1234")
    with pytest.raises(ValueError, match="32 bits"):
        _fastpath.icrc(-1, b"12345")


# ---------------------------------------------------------------------------------- sender


def _sockets() -> tuple[socket.socket, socket.socket]:
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind((next_loopback(), 0))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    rx.bind((next_loopback(), 0))
    rx.settimeout(5)
    return tx, rx


@pytest.mark.parametrize(
    "case",
    [
        # mtu, count, first_psn, first_index, ack_every, per_batch, op
        (4096, 37, 0xFFFFF0, 1, 64, 15, Opcode.RDMA_WRITE_MIDDLE),  # PSN wraps mid-run
        (1024, 70, 12345, 60, 8, 60, Opcode.SEND_MIDDLE),
        (256, 1, 7, 0, 1, 15, Opcode.RDMA_WRITE_MIDDLE),  # one packet: no GSO
        (4096, 16, 0, 63, 64, 1, Opcode.RDMA_WRITE_MIDDLE),  # per-packet sendmsg
    ],
)
def test_sent_datagrams_equal_the_reference_encoding(
    case: tuple[int, int, int, int, int, int, int],
) -> None:
    mtu, count, first_psn, first_index, ack_every, per_batch, op = case
    tx, rx = _sockets()
    try:
        src, sport = tx.getsockname()
        dst, dport = rx.getsockname()
        seg = 12 + mtu + ICRC_LEN
        rng = random.Random(mtu + count)
        local = rng.randbytes(mtu * count + 100)
        offset = 50
        dropped, err = _fastpath.send_middle_run(
            tx.fileno(),
            socket.inet_aton(dst),
            dport,
            op,
            0xABCDEF,
            first_psn,
            first_index,
            count,
            memoryview(local)[offset:],
            mtu,
            ack_every,
            _table(_states(src=src, dst=dst, sport=sport, dport=dport, seg=seg)),
            per_batch,
        )
        assert (dropped, err) == (0, 0)
        for i in range(count):
            got, peer = rx.recvfrom(70000)
            k = first_index + i
            want = _reference_packet(
                op=op,
                dest_qp=0xABCDEF,
                psn=psn_add(first_psn, i),
                ack_req=k % ack_every == ack_every - 1,
                payload=local[offset + i * mtu : offset + (i + 1) * mtu],
                src=src,
                dst=dst,
                sport=sport,
                dport=dport,
                ip_id=i % per_batch,
            )
            assert peer == (src, sport)
            assert got == want, f"packet {i}"
    finally:
        tx.close()
        rx.close()


def test_sender_rejects_short_payloads_and_bad_tables() -> None:
    tx, rx = _sockets()
    try:
        dst, dport = rx.getsockname()
        table = bytes(4 * _fastpath.MAX_SEGS)
        args = (tx.fileno(), socket.inet_aton(dst), dport, 7, 1, 0, 0)
        with pytest.raises(ValueError, match="payload shorter"):
            _fastpath.send_middle_run(*args, 3, bytes(3 * 4096 - 1), 4096, 64, table, 15)
        with pytest.raises(ValueError, match="states"):
            _fastpath.send_middle_run(*args, 1, bytes(4096), 4096, 64, table[:-1], 15)
        with pytest.raises(ValueError, match="fit in one UDP datagram"):
            _fastpath.send_middle_run(*args, 16, bytes(16 * 4096), 4096, 64, table, 16)
        with pytest.raises(ValueError, match="per_batch"):
            _fastpath.send_middle_run(*args, 1, bytes(4096), 4096, 0, table, 15)
        # nothing was sent by any of them
        rx.settimeout(0.05)
        with pytest.raises(TimeoutError):
            rx.recvfrom(70000)
    finally:
        tx.close()
        rx.close()


def test_a_send_error_is_counted_not_raised() -> None:
    tx, rx = _sockets()
    dst, dport = rx.getsockname()
    rx.close()
    tx.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        fd = s.fileno()
        s.close()  # a closed descriptor: every sendmsg fails with EBADF
        dropped, err = _fastpath.send_middle_run(
            fd,
            socket.inet_aton(dst),
            dport,
            7,
            1,
            0,
            0,
            20,
            bytes(20 * 256),
            256,
            64,
            bytes(4 * _fastpath.MAX_SEGS),
            15,
        )
        assert (dropped, err) == (20, 9)
    finally:
        s.close()


# -------------------------------------------------------------------------------- receiver

_SRC, _DST, _SPORT, _DPORT = "10.1.2.3", "10.4.5.6", 4791, 4791


def _rx_states(seg: int, first4: bytes) -> bytes:
    """What the endpoint hands the receiver: prefix states continued over BTH bytes 0..4."""
    states = _states(src=_SRC, dst=_DST, sport=_SPORT, dport=_DPORT, seg=seg)
    return _table([zlib.crc32(b"\xff", zlib.crc32(first4, st)) for st in states])


def _batch(rng: random.Random, *, n: int, mtu: int, psn: int, qp: int) -> bytearray:
    out = bytearray()
    for i in range(n):
        out += _reference_packet(
            op=Opcode.RDMA_WRITE_MIDDLE,
            dest_qp=qp,
            psn=psn_add(psn, i),
            ack_req=rng.random() < 0.1,
            payload=rng.randbytes(mtu),
            src=_SRC,
            dst=_DST,
            sport=_SPORT,
            dport=_DPORT,
            ip_id=i,
        )
    return out


def _reference_rx(
    buf: bytes,
    nbytes: int,
    seg: int,
    first8: bytes,
    *,
    verify: bool,
    room: int,
    max_run: int,
    psn: int,
) -> tuple[list[bytes], bool]:
    """The receiver's rules with the pure-Python codec: which payloads are placed."""
    placed: list[bytes] = []
    ack = False
    width = seg - 12 - ICRC_LEN
    for i in range(min(nbytes // seg, _fastpath.MAX_SEGS, max_run, room // width)):
        s = buf[i * seg : (i + 1) * seg]
        bth = decode_bth(s)
        if s[:8] != first8 or bth.psn != psn_add(psn, i):
            break
        if verify:
            icrc = compute_icrc(
                body=s[:-ICRC_LEN],
                src=socket.inet_aton(_SRC),
                dst=socket.inet_aton(_DST),
                sport=_SPORT,
                dport=_DPORT,
                ip_id=i,
            )
            if icrc != s[-ICRC_LEN:]:
                break
        placed.append(s[12:-ICRC_LEN])
        ack |= bth.ack_req
    return placed, ack


def _damage(rng: random.Random, buf: bytearray, seg: int, n: int) -> tuple[bytearray, int, str]:
    """One random fault: a flipped bit anywhere, a wrong opcode/QP/PSN/pad/version, or a
    truncated GRO buffer. Returns (buffer, nbytes, what)."""
    kind = rng.choice(["bit", "opcode", "qp", "psn", "b1", "pkey", "truncate", "none"])
    i = rng.randrange(n)
    base = i * seg
    if kind == "bit":
        pos = base + rng.randrange(seg)
        buf[pos] ^= 1 << rng.randrange(8)
    elif kind == "opcode":
        buf[base] = rng.choice([0x06, 0x08, 0x01, 0x0A, 0x11])
    elif kind == "qp":
        buf[base + 7] ^= 0x01
    elif kind == "psn":
        buf[base + 11] = (buf[base + 11] + rng.choice([1, 2, 255])) & 0xFF
    elif kind == "b1":
        buf[base + 1] = rng.choice([0x10, 0x01, 0x80])
    elif kind == "pkey":
        buf[base + 2] = 0x7F
    elif kind == "truncate":
        return buf, rng.randrange(len(buf)), f"truncate at segment {i}"
    return buf, len(buf), f"{kind} in segment {i}"


def test_receiver_places_exactly_what_the_reference_accepts_on_random_faults() -> None:
    rng = random.Random(3)
    for trial in range(300):
        mtu = rng.choice([256, 1024, 4096])
        seg = 12 + mtu + ICRC_LEN
        n = rng.randrange(1, min(64, 65535 // seg) + 1)
        psn = rng.choice([0, 0xFFFFFF - rng.randrange(n), rng.randrange(1 << 24)])
        qp = rng.randrange(1 << 24)
        clean = _batch(rng, n=n, mtu=mtu, psn=psn, qp=qp)
        first8 = bytes(clean[:8])
        buf, nbytes, what = _damage(rng, bytearray(clean), seg, n)
        verify = rng.random() < 0.8
        states = _rx_states(seg, first8[:4]) if verify else None
        pos = rng.randrange(0, 64)
        room = rng.choice([n * mtu, n * mtu - 1, rng.randrange(n * mtu + 1)])
        target = bytearray(rng.randbytes(pos + room + 32))
        before = bytes(target)
        max_run = rng.choice([n, n - 1, rng.randrange(n + 1)])
        # the QP expects the first segment's PSN (or, sometimes, another one)
        expect = psn if rng.random() < 0.9 else psn_add(psn, 1)
        run, ack = _fastpath.rx_middle_run(
            buf,
            nbytes,
            seg,
            first8,
            states,
            memoryview(target)[: pos + room],
            pos,
            max_run,
            expect,
        )
        placed, want_ack = _reference_rx(
            bytes(buf),
            nbytes,
            seg,
            first8,
            verify=verify,
            room=room,
            max_run=max_run,
            psn=expect,
        )
        ctx = f"trial {trial}: {what}, mtu {mtu}, n {n}, verify {verify}"
        assert run == len(placed), ctx
        assert ack == (want_ack if run else False), ctx
        end = pos + run * mtu
        assert target[pos:end] == b"".join(placed), ctx
        assert target[:pos] == before[:pos], ctx
        assert target[end:] == before[end:], ctx


def test_receiver_stops_before_a_corrupt_payload_is_written() -> None:
    rng = random.Random(4)
    mtu, seg = 4096, 4112
    buf = _batch(rng, n=15, mtu=mtu, psn=100, qp=42)
    buf[5 * seg + 12 + 7] ^= 0x40  # payload byte of segment 5
    target = bytearray(15 * mtu)
    run, _ack = _fastpath.rx_middle_run(
        buf, len(buf), seg, bytes(buf[:8]), _rx_states(seg, bytes(buf[:4])), target, 0, 15, 100
    )
    assert run == 5
    assert target[5 * mtu :] == bytes(10 * mtu)
    assert target[: 5 * mtu] == b"".join(
        bytes(buf[i * seg + 12 : (i + 1) * seg - 4]) for i in range(5)
    )


def test_receiver_rejects_bad_arguments() -> None:
    buf = bytes(4112 * 2)
    table = bytes(4 * _fastpath.MAX_SEGS)
    with pytest.raises(ValueError, match="first8"):
        _fastpath.rx_middle_run(buf, len(buf), 4112, b"1234567", table, bytearray(9000), 0, 2, 0)
    with pytest.raises(ValueError, match="nbytes"):
        _fastpath.rx_middle_run(buf, len(buf) + 1, 4112, bytes(8), table, bytearray(9000), 0, 2, 0)
    with pytest.raises(ValueError, match="nbytes"):
        _fastpath.rx_middle_run(buf, len(buf), 4112, bytes(8), table, bytearray(10), 11, 2, 0)
    with pytest.raises(ValueError, match="states"):
        _fastpath.rx_middle_run(buf, len(buf), 4112, bytes(8), b"", bytearray(9000), 0, 2, 0)
    with pytest.raises(TypeError):
        _fastpath.rx_middle_run(buf, len(buf), 4112, bytes(8), table, bytes(9000), 0, 2, 0)


# ------------------------------------------------------------------------ receive bursts

IP_MTU_DISCOVER, IP_PMTUDISC_DO, UDP_SEGMENT = 10, 2, 103


class _Link:
    """A peer socket on <a>:4791 sending GSO batches of MIDDLE packets to a GRO socket."""

    def __init__(self, *, mtu: int = 1024, qp: int = 0x123456, psn: int = 0xFFFFF0) -> None:
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        self.peer.bind((next_loopback(), 4791))
        self.peer.settimeout(5)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.rx.setsockopt(SOL_UDP, UDP_GRO, 1)
        self.rx.bind((next_loopback(), 0))
        self.rx.settimeout(5)
        self.mtu, self.qp, self.psn = mtu, qp, psn
        self.seg = 12 + mtu + ICRC_LEN
        self.buf = bytearray(65536 + 64)
        self.rng = random.Random(mtu)
        self.payloads: list[bytes] = []

    def close(self) -> None:
        self.peer.close()
        self.rx.close()

    def packet(self, k: int, ip_id: int, *, ack_req: bool = False, src: str = "") -> bytes:
        while len(self.payloads) <= k:
            self.payloads.append(self.rng.randbytes(self.mtu))
        a, p = self.peer.getsockname()
        return _reference_packet(
            op=Opcode.RDMA_WRITE_MIDDLE,
            dest_qp=self.qp,
            psn=psn_add(self.psn, k),
            ack_req=ack_req,
            payload=self.payloads[k],
            src=src or a,
            dst=self.rx.getsockname()[0],
            sport=p,
            dport=self.rx.getsockname()[1],
            ip_id=ip_id,
        )

    def send(self, pkts: list[bytes], sock: socket.socket | None = None) -> None:
        anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(pkts[0])))] if len(pkts) > 1 else []
        (sock or self.peer).sendmsg([b"".join(pkts)], anc, 0, self.rx.getsockname())

    def batch(self, first: int, n: int, *, ack_at: int = -1) -> list[bytes]:
        return [self.packet(first + i, i, ack_req=first + i == ack_at) for i in range(n)]

    def first(self) -> int:
        """Receive the first datagram into buf (as the endpoint's receive loop does)."""
        n, anc, _f, _src = self.rx.recvmsg_into([self.buf], 64)
        for level, typ, data in anc:
            assert (level, typ) == (SOL_UDP, UDP_GRO)
            assert struct.unpack("=i", data[:4])[0] == self.seg
        return n

    def burst(
        self,
        nbytes: int,
        target: bytearray | memoryview,
        *,
        room: int = 1 << 20,
        ack: bool = True,
        max_dgrams: int = 256,
    ) -> tuple[int, int, int, int, int, int, bytes, int, int, int]:
        a, p = self.peer.getsockname()
        me, my_port = self.rx.getsockname()
        first8 = bytes(self.buf[:8])
        rx_states = _rx_states_for(a, me, (p, my_port), self.seg, first8[:4])
        ack_state = _states(src=me, dst=a, sport=my_port, dport=4791, seg=20)[0]
        ack_hdr = struct.pack("!BBHIII", 0x11, 0, 0xFFFF, 0xFF000000 | 0x654321, 0, 0x1F << 24 | 5)
        return _fastpath.rx_burst(
            self.rx.fileno(),
            self.buf,
            nbytes,
            self.seg,
            socket.inet_aton(a),
            p,
            first8,
            rx_states,
            target,
            0,
            room,
            self.psn,
            max_dgrams,
            (socket.inet_aton(a), ack_state, ack_hdr) if ack else None,
        )

    def burst_all(
        self, target: memoryview, total: int, *, room: int = 1 << 20
    ) -> tuple[int, list[tuple[int, int, int, int, int, int, bytes, int, int, int]]]:
        """Bursts until `total` segments are placed or one ends otherwise than drained: loopback
        may not have queued every batch sent when a burst starts (it then drains early)."""
        base, placed, results = self.psn, 0, []
        try:
            while placed < total:
                n = self.first()
                self.psn = psn_add(base, placed)
                r = self.burst(n, target[placed * self.mtu :], room=room - placed)
                results.append(r)
                placed += r[0]
                if r[3] != _fastpath.BURST_DRAINED:
                    break
        finally:
            self.psn = base
        return placed, results

    def acks(self, n: int) -> list[bytes]:
        """The next n datagrams the peer receives (the ACKs), then checks nothing else came."""
        self.peer.settimeout(5)
        out = [self.peer.recv(100) for _ in range(n)]
        self.peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.peer.recv(100)
        self.peer.settimeout(5)
        return out

    def reference_ack(self, psn: int) -> bytes:
        a, _p = self.peer.getsockname()
        me, my_port = self.rx.getsockname()
        body = encode_bth(BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=0x654321, psn=psn)) + struct.pack(
            "!I", 0x1F << 24 | 5
        )
        return body + compute_icrc(
            body=body, src=socket.inet_aton(me), dst=socket.inet_aton(a), sport=my_port
        )


def _rx_states_for(src: str, dst: str, ports: tuple[int, int], seg: int, first4: bytes) -> bytes:
    states = _states(src=src, dst=dst, sport=ports[0], dport=ports[1], seg=seg)
    return _table([zlib.crc32(b"\xff", zlib.crc32(first4, st)) for st in states])


def test_a_burst_places_every_queued_batch_and_acknowledges_ackreq_cumulatively() -> None:
    link = _Link(mtu=256)
    try:
        # 20 batches of 60; AckReq on packets 20 and 1100
        for b in range(20):
            link.send(link.batch(60 * b, 60, ack_at=20 if b == 0 else 1100))
        target = bytearray(1300 * link.mtu)
        placed, rs = link.burst_all(memoryview(target), 1200)
        assert placed == 1200
        assert all(r[3] == _fastpath.BURST_DRAINED and r[9] == 0 for r in rs)
        assert (rs[-1][2], rs[-1][4], rs[-1][5], rs[-1][8]) == (0, 60 * link.seg, link.seg, 60)
        assert target[: 1200 * link.mtu] == b"".join(link.payloads[:1200])
        assert target[1200 * link.mtu :] == bytes(100 * link.mtu)
        acks = link.acks(sum(r[1] for r in rs))
        assert acks[-1] == link.reference_ack(psn_add(link.psn, 1199))  # the last burst's end
        if len(rs) == 1:  # (loopback had queued every batch before the burst started)
            # 1024 packets after the last ACK, at the end of the batch then placed
            assert acks == [
                link.reference_ack(psn_add(link.psn, 1079)),
                link.reference_ack(psn_add(link.psn, 1199)),
            ]
        for a in acks:  # each a valid ACK of a PSN placed
            psn = struct.unpack_from("!I", a, 8)[0]
            assert a == link.reference_ack(psn)
    finally:
        link.close()


def test_a_burst_stops_at_a_corrupt_segment_a_gap_or_another_sender() -> None:
    link = _Link()
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    other.bind((link.peer.getsockname()[0], 0))
    try:
        target = bytearray(100 * link.mtu)
        view = memoryview(target)
        # a flipped payload bit in segment 4 of the second batch
        bad = link.batch(15, 15)
        bad[4] = bad[4][:100] + bytes([bad[4][100] ^ 1]) + bad[4][101:]
        link.send(link.batch(0, 15))
        link.send(bad)
        placed, rs = link.burst_all(view, 30)
        r = rs[-1]
        assert (placed, r[3]) == (19, _fastpath.BURST_PENDING)
        assert (r[4], r[5], r[8]) == (15 * link.seg, link.seg, 4)  # batch 2, 4 placed
        assert link.buf[: r[4]] == b"".join(bad)  # the caller gets the batch as received
        assert target[19 * link.mtu :] == bytes(81 * link.mtu)
        # a gap: the next batch starts 2 PSNs late
        link.send(link.batch(21, 15))
        n = link.first()
        link.psn = psn_add(link.psn, 19)
        r = link.burst(n, target)
        assert (r[0], r[3], r[8]) == (0, _fastpath.BURST_PENDING, 0)
        # another source port: left for the caller, with its address
        link.psn = psn_add(link.psn, -19)
        link.send(link.batch(19, 15))
        link.send(link.batch(34, 15), sock=other)
        link.psn = psn_add(link.psn, 19)
        placed, rs = link.burst_all(view[19 * link.mtu :], 30)
        r = rs[-1]
        assert (placed, r[3], r[8]) == (15, _fastpath.BURST_PENDING, 0)
        assert (socket.inet_ntoa(r[6]), r[7]) == other.getsockname()
        assert r[4] == 15 * link.seg
    finally:
        other.close()
        link.close()


def test_a_burst_keeps_to_its_room_and_datagram_limits_and_can_leave_acks_to_the_caller() -> None:
    link = _Link(mtu=4096)
    base = link.psn
    try:
        for b in range(4):
            link.send(link.batch(15 * b, 15, ack_at=40))
        target = bytearray(60 * link.mtu)
        view = memoryview(target)
        # room for 20: a partial second batch
        placed, rs = link.burst_all(view, 30, room=20)
        assert (placed, rs[-1][3], rs[-1][8]) == (20, _fastpath.BURST_PENDING, 5)
        # the third batch holds AckReq (40): without `ack` it ends the burst, the ACK owed
        link.psn = psn_add(base, 30)
        r = link.burst(link.first(), view[30 * link.mtu :], ack=False)
        assert (r[0], r[1], r[2], r[3]) == (15, 0, 2, _fastpath.BURST_ACK_OWED)
        # one datagram at most: the fourth batch, its ACK coalesced (owe 1)
        link.send(link.batch(60, 15))
        link.psn = psn_add(base, 45)
        r = link.burst(link.first(), view[45 * link.mtu :], max_dgrams=1)
        assert (r[0], r[1], r[2], r[3]) == (15, 0, 1, _fastpath.BURST_DRAINED)
        assert link.acks(0) == []
        assert target[: 20 * link.mtu] == b"".join(link.payloads[:20])
        assert target[20 * link.mtu : 30 * link.mtu] == bytes(10 * link.mtu)
        assert target[30 * link.mtu :] == b"".join(link.payloads[30:60])
        assert link.first() == 15 * link.seg  # the fifth batch is still queued
    finally:
        link.close()
