"""Faults over real UDP: seeded loss, duplication and reordering on the sending side of both
ends still give byte-exact results; writes with a wrong rkey or outside a region are refused
with a remote-access-error NAK and leave NAA memory untouched; 100 000 random and mutated
datagrams do not take a live NAA down."""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import numpy as np
import pytest

from naa_runtime.mrsp import MrFlags
from naa_runtime.roce.cm import Req, encode_cm, service_id
from naa_runtime.roce.endpoint import Impairment
from naa_runtime.roce.packets import compute_icrc
from naa_runtime.roce.qp import TransportConfig, WcStatus
from naa_runtime.rpc import HostConnection, Region
from tests.support.roce import ServerFactory, next_loopback

LOSSY = TransportConfig(ack_timeout=0.02, window=256, retry_count=7)


def _inout(a: np.ndarray) -> Region:
    return Region(view=memoryview(a).cast("B"), flags=MrFlags.INPUT | MrFlags.OUTPUT)


@pytest.mark.parametrize(
    "impairment",
    [
        Impairment(loss=0.01, seed=1),
        Impairment(loss=0.05, duplicate=0.02, reorder=0.02, seed=2),
        Impairment(loss=0.10, seed=3),
        Impairment(duplicate=0.2, reorder=0.2, seed=4),
    ],
    ids=["loss1%", "loss5%+dup+reorder", "loss10%", "dup20%+reorder20%"],
)
def test_rpcs_are_byte_exact_under_loss_duplication_and_reordering(
    naa_server: ServerFactory, impairment: Impairment
) -> None:
    srv = naa_server(config=LOSSY, impairment=impairment)
    rng = np.random.default_rng(impairment.seed)
    big = rng.integers(0, 256, 300_000, dtype=np.uint8)
    small = rng.integers(0, 256, 333, dtype=np.uint8)
    expected_big, expected_small = big.copy(), small.copy()
    h = HostConnection(
        naa_address=srv.address,
        local_address=next_loopback(),
        config=LOSSY,
        impairment=Impairment(
            loss=impairment.loss,
            duplicate=impairment.duplicate,
            reorder=impairment.reorder,
            seed=impairment.seed + 100,
        ),
    )
    h.connect()
    h.register([_inout(big), _inout(small)])
    h.mrsp()
    try:
        for i in range(6):
            fn = 1 if i % 2 else 2
            assert h.call(fn, timeout=60) == 0
            expected_big += np.uint8(fn)
            expected_small += np.uint8(fn)
            assert np.array_equal(big, expected_big), f"RPC {i}"
            assert np.array_equal(small, expected_small), f"RPC {i}"
    finally:
        h.disconnect()
    if impairment.loss:
        assert srv.stats.retransmits + srv.stats.transport.naks_sent["psn_sequence_error"] > 0


@pytest.mark.parametrize(
    ("offset", "rkey_delta", "length"),
    [(0, 1, 100), (4000, 0, 200), (-16, 0, 32), (0, 0, 4097)],
    ids=["wrong-rkey", "past-the-end", "before-the-start", "longer-than-region"],
)
def test_a_bad_write_is_naked_with_remote_access_error_and_naa_memory_is_untouched(
    naa_server: ServerFactory, offset: int, rkey_delta: int, length: int
) -> None:
    srv = naa_server()
    host = next_loopback()
    a = np.full(4096, 5, np.uint8)
    b = np.full(4096, 6, np.uint8)
    h = HostConnection(naa_address=srv.address, local_address=host)
    h.connect()
    h.register([_inout(a), Region(view=memoryview(b), flags=MrFlags.INPUT, requested_addr=4096)])
    h.mrsp()
    try:
        assert h.call(3, timeout=10) == 0
        before = srv.region_snapshot(host)
        target = h.naa_regions[1]  # its neighbour region 0 lies just below it
        c = h.raw_write(
            local=memoryview(b"\xaa" * length),
            remote_va=target.naa_va + offset,
            rkey=target.naa_rkey + rkey_delta,
        )
        assert c.status == WcStatus.REM_ACCESS_ERR
        assert srv.region_snapshot(host) == before
        assert srv.stats.transport.naks_sent["remote_access_error"] == 1
    finally:
        h.disconnect()


def _valid_packets(naa: str, host: str, qpn: int, sport: int) -> list[bytes]:
    """UDP payloads (with ICRC) of the kinds a session carries, as mutation seeds."""
    src, dst = socket.inet_aton(host), socket.inet_aton(naa)
    bodies = [
        struct.pack("!BBHII", 0x64, 0, 0xFFFF, 1, 0)
        + struct.pack("!II", 0x80010000, 1)
        + encode_cm(
            Req(
                local_comm_id=7,
                service_id=service_id(12345),
                local_qpn=99,
                starting_psn=1,
                src_ip=host,
                dst_ip=naa,
            ),
            tid=1,
        ),
        struct.pack("!BBHII", 0x11, 0, 0xFFFF, qpn, 5) + struct.pack("!I", 0x1F000001),
        struct.pack("!BBHII", 0x0B, 0x80, 0xFFFF, qpn, 0x80000005)
        + struct.pack("!QII", 0, 1, 4)
        + struct.pack("!I", 0x81)
        + b"abcd",
        struct.pack("!BBHII", 0x06, 0, 0xFFFF, qpn, 5)
        + struct.pack("!QII", 0, 1, 8192)
        + bytes(4096),
        struct.pack("!BBHII", 0x04, 0x80, 0xFFFF, qpn, 5) + bytes(52),
    ]
    return [b + compute_icrc(body=b, src=src, dst=dst, sport=sport) for b in bodies]


def test_a_live_naa_survives_100k_random_and_mutated_datagrams(
    naa_server: ServerFactory,
) -> None:
    srv = naa_server(slots=8, setup_timeout=1.0)
    host = next_loopback()
    a = np.zeros(1000, np.uint8)
    h = HostConnection(naa_address=srv.address, local_address=host)
    h.connect()
    h.register([_inout(a)])
    h.mrsp()
    # A second, sacrificial connection whose QP the fuzzer aims at (from the victim's own IP,
    # so the packets reach the QP's parser); the first connection must stay unharmed.
    victim_ip = next_loopback()
    victim = HostConnection(naa_address=srv.address, local_address=victim_ip)
    victim.connect()
    victim.register([_inout(np.zeros(64, np.uint8))])
    victim.mrsp()
    assert victim.qp is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((victim_ip, 0))
    sport = sock.getsockname()[1]
    seeds = _valid_packets(srv.address, victim_ip, qpn=victim.qp.peer_qpn, sport=sport)
    rng = random.Random(1234)
    src, dst = socket.inet_aton(victim_ip), socket.inet_aton(srv.address)
    sent = 0
    dropped_before = srv.stats.packets_malformed
    try:
        for i in range(100_000):
            kind = i % 4
            if kind == 0:
                dgram = os.urandom(rng.randrange(0, 300))
            else:
                d = bytearray(rng.choice(seeds))
                for _ in range(rng.randrange(1, 4)):
                    d[rng.randrange(len(d))] = rng.randrange(256)
                if rng.random() < 0.2:
                    d = d[: rng.randrange(len(d) + 1)]
                if kind == 3:  # re-seal: headers garbage but the ICRC right → deeper parsing
                    body = bytes(d[:-4]) if len(d) >= 4 else bytes(d)
                    dgram = body + compute_icrc(body=body, src=src, dst=dst, sport=sport)
                else:
                    dgram = bytes(d)
            try:
                sock.sendto(dgram, (srv.address, 4791))
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
    finally:
        sock.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and srv.stats.packets_received < sent * 0.9:
        time.sleep(0.1)
    assert srv.stats.packets_received >= sent * 0.9, srv.stats.transport.snapshot()
    assert srv.stats.packets_malformed - dropped_before > sent * 0.5
    for reason in ("bad_icrc", "short", "unknown_qp", "bad_mad", "out_of_sequence_psn"):
        assert srv.stats.dropped.get(reason, 0) > 0, reason
    assert srv.endpoint.alive
    try:
        assert h.call(1, timeout=20) == 0
        assert np.all(a == 1)
    finally:
        h.disconnect()
        victim.disconnect()
    late = HostConnection(naa_address=srv.address, local_address=next_loopback())
    deadline = time.monotonic() + 15
    while True:  # half-open fuzz connections may hold the slots until their setup timeout
        try:
            late.connect()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    b = np.zeros(10, np.uint8)
    late.register([_inout(b)])
    late.mrsp()
    assert late.call(2, timeout=20) == 0
    late.disconnect()
    assert np.all(b == 2)
