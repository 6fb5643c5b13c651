"""Corked sends over real UDP: packets a thread queues between `Endpoint.cork` and `uncork`
(the host's RPC request and the deferred ACK behind it) leave in one GSO send, in order, each
with a valid ICRC; another thread's packets are not held back by that cork (each thread
corks its own)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from naa_runtime.roce.endpoint import SOL_UDP, UDP_GRO, Endpoint
from naa_runtime.roce.packets import ROCE_UDP_PORT, icrc_of, prefix_state
from tests.support.roce import next_loopback


def _packet(opcode: int, length: int) -> tuple[bytearray, bytes, int]:
    """A BTH (byte 4 = 0xFF, the ICRC mask the endpoint clears) and `length - 16` bytes."""
    header = bytearray(struct.pack("!BBHII", opcode, 0, 0xFFFF, 0xFF000042, 7))
    return header, bytes(range(length - 16)), 0


@pytest.fixture
def pair() -> Iterator[tuple[Endpoint, socket.socket]]:
    ep = Endpoint(address=next_loopback())
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.setsockopt(SOL_UDP, UDP_GRO, 1)
    peer.bind((next_loopback(), ROCE_UDP_PORT))
    peer.settimeout(5)
    try:
        yield ep, peer
    finally:
        peer.close()
        ep.stop()


def _segments(peer: socket.socket) -> list[bytes]:
    data, anc, _flags, _src = peer.recvmsg(65536, socket.CMSG_SPACE(4))
    seg = len(data)
    for level, kind, value in anc:
        if level == SOL_UDP and kind == UDP_GRO:
            seg = struct.unpack("=i", value[:4])[0]
    return [data[i : i + seg] for i in range(0, len(data), seg)]


def test_corked_packets_leave_in_one_gso_send_in_order_with_valid_icrcs(
    pair: tuple[Endpoint, socket.socket],
) -> None:
    ep, peer = pair
    peer_ip = peer.getsockname()[0]
    ep.cork()
    ep.transmit(peer_ip, [_packet(0x0B, 40)])  # the request first ...
    ep.transmit(peer_ip, [_packet(0x11, 20)])  # ... then the shorter ACK behind it
    ep.uncork()

    segments = _segments(peer)

    assert [len(s) for s in segments] == [40, 20]
    assert [s[0] for s in segments] == [0x0B, 0x11]
    for position, s in enumerate(segments):
        state = prefix_state(
            src=ipaddress.IPv4Address(ep.address).packed,
            dst=ipaddress.IPv4Address(peer_ip).packed,
            sport=ROCE_UDP_PORT,
            dport=ROCE_UDP_PORT,
            udp_payload_len=len(s),
            ip_id=position,
        )
        assert struct.pack("<I", icrc_of(state, s[:-4])) == s[-4:]
    assert ep.stats.packets_tx == 2


def test_a_cork_holds_back_only_the_corking_threads_packets(
    pair: tuple[Endpoint, socket.socket],
) -> None:
    ep, peer = pair
    peer_ip = peer.getsockname()[0]
    ep.cork()
    ep.transmit(peer_ip, [_packet(0x0B, 40)])
    other = threading.Thread(target=ep.transmit, args=(peer_ip, [_packet(0x11, 20)]))
    other.start()
    other.join()

    first = _segments(peer)  # the other thread's ACK is on the wire while we are corked
    ep.uncork()
    second = _segments(peer)

    assert [s[0] for s in first] == [0x11]
    assert [s[0] for s in second] == [0x0B]


def test_two_threads_cork_at_once_and_each_sends_its_own_packets(
    pair: tuple[Endpoint, socket.socket],
) -> None:
    """Two host connections on one endpoint may post RPCs from two threads at once: a
    second thread's cork neither takes nor drops the first one's queued packets."""
    ep, peer = pair
    peer_ip = peer.getsockname()[0]
    ep.cork()
    ep.transmit(peer_ip, [_packet(0x0B, 40)])

    def other() -> None:
        ep.cork()
        ep.transmit(peer_ip, [_packet(0x11, 20)])
        ep.uncork()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    first = _segments(peer)
    ep.uncork()
    second = _segments(peer)

    assert [s[0] for s in first] == [0x11]
    assert [s[0] for s in second] == [0x0B]
