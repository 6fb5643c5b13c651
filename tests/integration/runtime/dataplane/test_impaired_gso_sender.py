"""A loss-only impairment keeps the GSO send paths (the compiled MIDDLE-run sender and the
generic batcher) and must stay the same loss model as the per-packet path: two endpoints with
the same seed, one sending in GSO batches and one a datagram per packet, lose exactly the same
packets of the same sequence, and every packet that arrives carries its own payload."""

from __future__ import annotations

import socket
import struct

from naa_runtime.roce.endpoint import Endpoint, Impairment
from naa_runtime.roce.packets import BTH_LEN, ICRC_LEN, ROCE_UDP_PORT, Opcode
from naa_runtime.roce.qp import OutPacket, TransportConfig
from tests.support.roce import next_loopback

MTU = 256
CHUNK = 40  # packets per send call, drained before the next (a small receive buffer holds them)
CHUNKS = 10
FIRST_PSN = 0xFFFF00  # the run crosses the PSN wraparound
_BTH = struct.Struct("!BBHII")


def _receiver() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((next_loopback(), ROCE_UDP_PORT))
    s.settimeout(0.2)
    return s


def _drain(s: socket.socket, into: dict[int, bytes]) -> None:
    while True:
        try:
            d = s.recv(65536)
        except TimeoutError:
            return
        psn = _BTH.unpack_from(d, 0)[4] & 0xFFFFFF
        assert psn not in into, "a packet arrived twice"
        into[psn] = d[BTH_LEN:-ICRC_LEN]


def test_a_gso_sender_under_loss_drops_the_same_packets_as_the_per_packet_path() -> None:
    data = memoryview(bytes((i * 13 + 5) & 0xFF for i in range((CHUNK * CHUNKS + 8) * MTU)))
    received: list[dict[int, bytes]] = []
    for config in (TransportConfig(mtu=MTU), TransportConfig(mtu=MTU, gso=False)):
        rx = _receiver()
        ep = Endpoint(
            address=next_loopback(), config=config, impairment=Impairment(loss=0.1, seed=21)
        )
        got: dict[int, bytes] = {}
        try:
            for c in range(CHUNKS):
                first = 1 + c * CHUNK
                if config.gso:
                    ep.transmit_run(
                        rx.getsockname()[0],
                        op=int(Opcode.RDMA_WRITE_MIDDLE),
                        dest_qp=0x42,
                        first_psn=(FIRST_PSN + first) & 0xFFFFFF,
                        first_index=first,
                        count=CHUNK,
                        local=data,
                        offset=first * MTU,
                        mtu=MTU,
                        ack_every=64,
                    )
                else:
                    ep.transmit(rx.getsockname()[0], _packets(data, first))
                _drain(rx, got)
            # the generic batcher (pairs of packets: one GSO sendmsg each) under the same model
            for k in range(3):
                ep.transmit(rx.getsockname()[0], _packets(data, 1 + CHUNK * CHUNKS + 2 * k, n=2))
                _drain(rx, got)
        finally:
            ep.stop()
            rx.close()
        received.append(got)
    gso, per_packet = received
    sent = CHUNK * CHUNKS + 6
    assert sorted(gso) == sorted(per_packet)
    assert 0 < len(gso) < sent  # some packets were lost, most arrived
    for psn, payload in gso.items():
        k = (psn - FIRST_PSN) & 0xFFFFFF
        assert payload == data[k * MTU : (k + 1) * MTU], f"PSN {psn:#x}"
        assert per_packet[psn] == payload


def _packets(data: memoryview, first: int, n: int = CHUNK) -> list[OutPacket]:
    op = int(Opcode.RDMA_WRITE_MIDDLE)
    return [
        (
            bytearray(_BTH.pack(op, 0, 0xFFFF, 0xFF000042, (FIRST_PSN + k) & 0xFFFFFF)),
            data[k * MTU : (k + 1) * MTU],
            0,
        )
        for k in range(first, first + n)
    ]
