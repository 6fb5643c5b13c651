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
