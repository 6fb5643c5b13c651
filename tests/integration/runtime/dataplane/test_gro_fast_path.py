"""The compiled receive path of a live endpoint under faults a GSO sender can cause: a peer
socket on <address>:4791 writes one RDMA WRITE message to a real `Endpoint` in UDP GSO batches
(received with GRO) and loses a whole batch, corrupts one segment of a batch and repeats an
old batch. The endpoint must NAK each gap once, never write a corrupt payload, acknowledge
duplicates, send every ACK with a valid ICRC, and end up with the exact message."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

import pytest

from naa_runtime.roce.endpoint import Endpoint
from naa_runtime.roce.memory import MemoryTable
from naa_runtime.roce.packets import (
    BTH,
    ICRC_LEN,
    RETH,
    Opcode,
    Packet,
    compute_icrc,
    encode_packet,
    psn_add,
)
from naa_runtime.roce.qp import Completion
from tests.support.roce import next_loopback

SOL_UDP, UDP_SEGMENT = 17, 103
IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2
MTU = 4096
PACKETS = 100
PEER_QPN = 0x654321
VA = 0x10000


class _Peer:
    """One requester QP (peer QPN `peer_qpn`) writing one message to the endpoint's QP `qpn`;
    peers given the same `sock` share one source address and port."""

    def __init__(
        self,
        naa: Endpoint,
        qpn: int,
        psn: int,
        rkey: int,
        *,
        sock: socket.socket | None = None,
        peer_qpn: int = PEER_QPN,
    ) -> None:
        self.naa, self.qpn, self.psn, self.rkey, self.peer_qpn = naa, qpn, psn, rkey, peer_qpn
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            sock.bind((next_loopback(), 4791))
            sock.settimeout(10)
        self.sock = sock
        self.address = self.sock.getsockname()[0]
        rng = random.Random(peer_qpn)
        self.message = rng.randbytes(PACKETS * MTU)
        self.va = VA

    def packet(self, k: int, ip_id: int, *, ack_req: bool = False, corrupt: bool = False) -> bytes:
        payload = self.message[k * MTU : (k + 1) * MTU]
        reth = None
        if k == 0:
            op, reth = (
                Opcode.RDMA_WRITE_FIRST,
                RETH(va=self.va, rkey=self.rkey, dma_len=len(self.message)),
            )
        elif k == PACKETS - 1:
            op = Opcode.RDMA_WRITE_LAST
        else:
            op = Opcode.RDMA_WRITE_MIDDLE
        bth = BTH(opcode=op, dest_qp=self.qpn, psn=psn_add(self.psn, k), ack_req=ack_req)
        body = encode_packet(Packet(bth=bth, reth=reth, payload=payload))
        icrc = compute_icrc(
            body=body,
            src=socket.inet_aton(self.address),
            dst=socket.inet_aton(self.naa.address),
            sport=4791,
            ip_id=ip_id,
        )
        if corrupt:
            body = body[:200] + bytes([body[200] ^ 0x10]) + body[201:]
        return body + icrc

    def send(self, first: int, n: int, *, ack_at: int = -1, corrupt_at: int = -1) -> None:
        """Packets first .. first+n-1 as one GSO batch (IPv4 IDs 0, 1, …)."""
        pkts = [
            self.packet(first + i, i, ack_req=first + i == ack_at, corrupt=first + i == corrupt_at)
            for i in range(n)
        ]
        anc = [(SOL_UDP, UDP_SEGMENT, struct.pack("=H", len(pkts[0])))] if n > 1 else []
        self.sock.sendmsg([b"".join(pkts)], anc, 0, (self.naa.address, 4791))

    def expect(self, syndrome: int, k: int) -> None:
        """Read ACKs/NAKs until one with `syndrome` for packet k; each must carry a valid ICRC
        and acknowledge no more than that."""
        want = psn_add(self.psn, k)
        while True:
            dgram = self.sock.recv(100)
            assert len(dgram) == 20, dgram.hex()
            body = dgram[:-ICRC_LEN]
            assert dgram[-ICRC_LEN:] == compute_icrc(
                body=body,
                src=socket.inet_aton(self.naa.address),
                dst=socket.inet_aton(self.address),
                sport=4791,
            )
            op, _b1, _pkey, dqp, psn, aeth = struct.unpack("!BBHIII", body)
            assert op == Opcode.ACKNOWLEDGE
            if dqp != self.peer_qpn:  # another peer's on a shared socket
                continue
            if (aeth >> 24, psn) == (syndrome, want):
                return
            assert aeth >> 24 in (0x1F, 0x60), f"unexpected syndrome {aeth >> 24:#x}"


@pytest.fixture
def link() -> Iterator[tuple[_Peer, bytearray, Endpoint]]:
    naa = Endpoint(address=next_loopback())
    memory = MemoryTable()
    region = bytearray(PACKETS * MTU)
    mr = memory.register(region, va=VA)
    done: list[Completion] = []
    psn = 0xFFFFC0  # the message's PSNs wrap
    peer = _Peer(naa, naa.reserve_qpn(), psn, mr.rkey)
    naa.create_qp(
        peer_ip=peer.address,
        peer_qpn=PEER_QPN,
        send_psn=1,
        expect_psn=psn,
        memory=memory,
        on_completion=done.append,
        qpn=peer.qpn,
    )
    naa.start()
    try:
        yield peer, region, naa
    finally:
        naa.stop()
        peer.sock.close()


def test_lost_corrupt_and_repeated_gso_batches_end_in_the_exact_message(
    link: tuple[_Peer, bytearray, Endpoint],
) -> None:
    peer, region, naa = link
    peer.send(0, 1)  # FIRST
    peer.send(1, 15, ack_at=15)
    peer.expect(0x1F, 15)
    # a lost batch (16..30): the next one is out of sequence, NAKed at 16
    peer.send(31, 15)
    peer.expect(0x60, 16)
    # the resent batch with a corrupt payload in 20: 16..19 placed, 20 dropped, NAK at 20
    peer.send(16, 15, corrupt_at=20)
    peer.expect(0x60, 20)
    assert region[20 * MTU : 21 * MTU] == bytes(MTU), "a corrupt payload was written"
    assert region[: 20 * MTU] == peer.message[: 20 * MTU]
    # an old batch again: dropped as duplicates and acknowledged up to 19
    peer.send(1, 15)
    peer.expect(0x1F, 19)
    for first in range(20, PACKETS - 1, 15):
        n = min(15, PACKETS - 1 - first)
        peer.send(first, n, ack_at=PACKETS - 2)
    peer.expect(0x1F, PACKETS - 2)
    peer.send(PACKETS - 1, 1, ack_at=PACKETS - 1)  # LAST
    peer.expect(0x1F, PACKETS - 1)
    assert region == peer.message
    dropped = naa.stats.dropped
    assert dropped["bad_icrc"] == 1
    assert dropped["duplicate_psn"] == 15
    assert dropped["out_of_sequence_psn"] >= 15 + 10
    assert naa.stats.naks_sent["psn_sequence_error"] == 2


def test_interleaved_runs_of_two_qps_from_one_socket_both_arrive_exactly() -> None:
    naa = Endpoint(address=next_loopback())
    try:
        memory = MemoryTable()
        regions = [bytearray(PACKETS * MTU) for _ in range(2)]
        peers: list[_Peer] = []
        sock = None
        for i, region in enumerate(regions):
            mr = memory.register(region, va=VA + i * len(region))
            peer = _Peer(naa, naa.reserve_qpn(), 100 * i, mr.rkey, sock=sock, peer_qpn=PEER_QPN + i)
            sock = peer.sock
            naa.create_qp(
                peer_ip=peer.address,
                peer_qpn=peer.peer_qpn,
                send_psn=1,
                expect_psn=peer.psn,
                memory=memory,
                on_completion=lambda _c: None,
                qpn=peer.qpn,
            )
            peers.append(peer)
        # the second region's RETH must point at its own VA
        peers[1].va = VA + len(regions[0])
        naa.start()
        for p in peers:
            p.send(0, 1)
        # batches of the two messages alternate on the wire, queued faster than read
        for first in range(1, PACKETS - 1, 15):
            for p in peers:
                p.send(first, min(15, PACKETS - 1 - first))
        for p in peers:
            p.send(PACKETS - 1, 1, ack_at=PACKETS - 1)
        for p in peers:
            p.expect(0x1F, PACKETS - 1)
        for p, region in zip(peers, regions, strict=True):
            assert region == p.message
        assert not naa.stats.dropped, naa.stats.dropped
    finally:
        naa.stop()
        if sock is not None:
            sock.close()
