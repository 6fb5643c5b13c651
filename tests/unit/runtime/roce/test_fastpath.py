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
    compute_icrc,
    encode_bth,
    icrc_of,
    prefix_state,
)

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
