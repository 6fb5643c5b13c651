"""The RC queue pair state machine, driven packet by packet over an in-memory wire:
PSN wraparound, go-back-N, the retransmit timer, duplicates, RNR, the fatal NAKs with memory
left untouched, ACK coalescing, the solicited-event bit and ACK-before-completion order."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import pytest

from naa_runtime.roce.memory import MemoryTable
from naa_runtime.roce.packets import Opcode
from naa_runtime.roce.qp import (
    Completion,
    OutPacket,
    QpObserver,
    QueuePair,
    TransportConfig,
    WcOpcode,
    WcStatus,
)

CONFIG = TransportConfig(mtu=1024, window=64, ack_every=64, ack_timeout=0.01)


def _raw(p: OutPacket) -> bytes:
    header, payload, pad = p
    h = bytearray(header)
    h[4] = 0
    return bytes(h) + bytes(payload) + b"\0" * pad


class Counting(QpObserver):
    def __init__(self) -> None:
        self.naks_sent: list[int] = []
        self.retransmits = 0

    def on_nak_sent(self, syndrome: int) -> None:
        self.naks_sent.append(syndrome)

    def on_retransmit(self, packets: int) -> None:
        self.retransmits += packets


class Pair:
    """A requester `a` and a responder `b` joined by two in-memory queues."""

    def __init__(self, *, psn_a: int = 100, psn_b: int = 5000, config: TransportConfig = CONFIG):
        self.to_b: list[bytes] = []
        self.to_a: list[bytes] = []
        self.events: list[str] = []
        self.done_a: list[Completion] = []
        self.done_b: list[Completion] = []
        self.mem_b = MemoryTable()
        self.obs_a, self.obs_b = Counting(), Counting()
        self.now = 0.0

        def tx_a(pkts: list[OutPacket]) -> None:
            self.to_b.extend(_raw(p) for p in pkts)

        def tx_b(pkts: list[OutPacket]) -> None:
            for p in pkts:
                self.events.append(f"b sends {p[0][0]:#04x}")
                self.to_a.append(_raw(p))

        def done_b(c: Completion) -> None:
            self.events.append(f"b completes {c.opcode.name}")
            self.done_b.append(c)

        self.a = QueuePair(
            qpn=1,
            peer_qpn=2,
            send_psn=psn_a,
            expect_psn=psn_b,
            memory=MemoryTable(),
            transmit=tx_a,
            on_completion=self.done_a.append,
            config=config,
            observer=self.obs_a,
        )
        self.b = QueuePair(
            qpn=2,
            peer_qpn=1,
            send_psn=psn_b,
            expect_psn=psn_a,
            memory=self.mem_b,
            transmit=tx_b,
            on_completion=done_b,
            config=config,
            observer=self.obs_b,
        )

    @staticmethod
    def _deliver(qp: QueuePair, raw: bytes, now: float) -> None:
        op, b1, _pkey, _w2, w3 = struct.unpack_from("!BBHII", raw)
        qp.on_packet(memoryview(raw), op, b1, w3, now)

    def run(self, *, drop_to_b: Callable[[int, bytes], bool] = lambda i, r: False) -> None:
        """Deliver until quiet; `drop_to_b(i, raw)` drops the i-th packet sent to b."""
        sent = 0
        for _ in range(1000):
            if not self.to_b and not self.to_a:
                return
            batch, self.to_b = self.to_b, []
            for raw in batch:
                if not drop_to_b(sent, raw):
                    self._deliver(self.b, raw, self.now)
                sent += 1
            self.b.flush_ack()
            back, self.to_a = self.to_a, []
            for raw in back:
                self._deliver(self.a, raw, self.now)
        raise AssertionError("the exchange did not settle")

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.a.on_timer(self.now)
        self.b.on_timer(self.now)


def _region(pair: Pair, size: int) -> tuple[bytearray, int]:
    buf = bytearray(size)
    mr = pair.mem_b.register(buf, va=0x10000)
    return buf, mr.rkey


def _pattern(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


def test_a_write_across_the_psn_wraparound_lands_byte_exact() -> None:
    pair = Pair(psn_a=0xFFFFF8)
    buf, rkey = _region(pair, 16 * 1024)
    data = _pattern(16 * 1024)
    pair.a.post_write(wr_id=7, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    pair.run()
    assert bytes(buf) == data
    assert [(c.wr_id, c.status) for c in pair.done_a] == [(7, WcStatus.SUCCESS)]


def test_a_lost_packet_is_recovered_by_nak_and_go_back_n() -> None:
    pair = Pair()
    buf, rkey = _region(pair, 10 * 1024)
    data = _pattern(10 * 1024)
    lost = {3}
    pair.a.post_write(wr_id=1, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    pair.run(drop_to_b=lambda i, raw: i in lost)
    assert 0x60 in pair.obs_b.naks_sent
    assert pair.obs_a.retransmits > 0
    assert bytes(buf) == data
    assert pair.done_a[0].status == WcStatus.SUCCESS


def test_a_lost_last_packet_is_resent_when_the_ack_timer_fires() -> None:
    pair = Pair()
    buf, rkey = _region(pair, 3 * 1024)
    data = _pattern(3 * 1024)
    pair.a.post_write(wr_id=1, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    pair.run(drop_to_b=lambda i, raw: i == 2)
    assert not pair.done_a
    pair.tick(1.0)
    pair.run()
    assert bytes(buf) == data
    assert pair.done_a[0].status == WcStatus.SUCCESS


def test_duplicates_are_acknowledged_and_do_not_complete_twice() -> None:
    pair = Pair()
    pair.b.post_recv(wr_id=9, buffer=memoryview(bytearray(64)))
    pair.a.post_send(wr_id=1, data=b"hello", solicited=True)
    pair.to_b = pair.to_b * 2
    pair.run()
    assert [c.opcode for c in pair.done_b] == [WcOpcode.RECV]
    assert pair.done_a[0].status == WcStatus.SUCCESS


def test_a_write_with_immediate_without_a_receive_gets_rnr_and_succeeds_later() -> None:
    pair = Pair()
    buf, rkey = _region(pair, 100)
    pair.a.post_write(
        wr_id=1,
        local=memoryview(b"x" * 100),
        remote_va=0x10000,
        rkey=rkey,
        imm=0x81,
        solicited=True,
    )
    pair.run()
    assert pair.obs_b.naks_sent == [0x20 | CONFIG.rnr_timer_code]
    assert bytes(buf) == bytes(100)  # refused before touching memory
    pair.b.post_recv(wr_id=5)
    pair.tick(1.0)
    pair.run()
    assert bytes(buf) == b"x" * 100
    (c,) = pair.done_b
    assert (c.opcode, c.imm, c.solicited, c.byte_len) == (
        WcOpcode.RECV_RDMA_WITH_IMM,
        0x81,
        True,
        100,
    )


@pytest.mark.parametrize(
    ("va_offset", "rkey_delta", "length"),
    [(0, 1, 64), (4096 - 32, 0, 64), (-8, 0, 16), (0, 0, 8192)],
    ids=["wrong-rkey", "past-the-end", "before-the-start", "longer-than-region"],
)
def test_a_bad_write_gets_remote_access_error_and_memory_is_untouched(
    va_offset: int, rkey_delta: int, length: int
) -> None:
    pair = Pair()
    buf, rkey = _region(pair, 4096)
    pair.a.post_write(
        wr_id=1,
        local=memoryview(b"\xee" * length),
        remote_va=0x10000 + va_offset,
        rkey=rkey + rkey_delta,
    )
    pair.run()
    assert pair.obs_b.naks_sent == [0x62]
    assert pair.done_a[0].status == WcStatus.REM_ACCESS_ERR
    assert bytes(buf) == bytes(4096)


def test_a_middle_packet_without_a_first_is_an_invalid_request() -> None:
    pair = Pair()
    raw = struct.pack("!BBHII", Opcode.RDMA_WRITE_MIDDLE, 0, 0xFFFF, 2, 0x80000000 | 100)
    raw += bytes(1024)
    pair.to_b.append(raw)
    pair.run()
    assert pair.obs_b.naks_sent == [0x61]


def test_acks_are_coalesced_to_one_per_message_when_delivered_in_a_burst() -> None:
    pair = Pair()
    _buf, rkey = _region(pair, 32 * 1024)
    pair.a.post_write(wr_id=1, local=memoryview(_pattern(32 * 1024)), remote_va=0x10000, rkey=rkey)
    pair.run()
    acks = [e for e in pair.events if e == "b sends 0x11"]
    assert len(acks) == 1


def test_the_ack_of_a_request_is_sent_before_its_completion_is_reported() -> None:
    pair = Pair()
    pair.b.post_recv(wr_id=3, buffer=memoryview(bytearray(64)))
    pair.a.post_send(wr_id=1, data=b"AAR", solicited=True)
    pair.run()
    assert pair.events[:2] == ["b sends 0x11", "b completes RECV"]
    assert pair.done_b[0].solicited


def test_the_go_back_n_window_halves_on_loss_and_grows_back_on_acks() -> None:
    pair = Pair(config=TransportConfig(mtu=1024, window=64, ack_every=8, ack_timeout=0.01))
    buf, rkey = _region(pair, 64 * 1024)
    data = _pattern(64 * 1024)
    assert pair.a.window == 64
    pair.a.post_write(wr_id=1, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    pair.run(drop_to_b=lambda i, raw: i == 5)
    after_loss = pair.a.window
    assert after_loss < 64
    assert bytes(buf) == data
    for k in range(20):
        pair.a.post_write(wr_id=2 + k, local=memoryview(data), remote_va=0x10000, rkey=rkey)
        pair.run()
    assert pair.a.window > after_loss


def test_a_lost_last_packet_is_probed_after_the_measured_rto_without_using_a_retry() -> None:
    # The pair's clock follows time.monotonic here, so the requester measures real round trips
    # (microseconds): its timer then fires after min_rto, long before the 100 s ACK timeout, and
    # such a short timeout is a probe that does not count against retry_count (0: the first
    # timeout at the full ACK timeout would fail the QP).
    config = TransportConfig(
        mtu=1024, window=64, ack_every=64, ack_timeout=100.0, min_rto=0.01, retry_count=0
    )
    pair = Pair(config=config)
    buf, rkey = _region(pair, 8 * 1024)
    data = _pattern(4 * 1024)
    pair.now = time.monotonic()
    pair.a.post_write(wr_id=1, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    pair.now = time.monotonic()
    pair.run()  # a measured round trip
    assert pair.done_a[0].status == WcStatus.SUCCESS
    pair.a.post_write(wr_id=2, local=memoryview(data), remote_va=0x11000, rkey=rkey)
    pair.now = time.monotonic()
    pair.run(drop_to_b=lambda i, raw: i == 3)  # the last packet of the second write
    assert len(pair.done_a) == 1
    pair.tick(1.0)  # far beyond the RTO of a round trip measured in microseconds
    pair.run()
    assert [(c.wr_id, c.status) for c in pair.done_a] == [
        (1, WcStatus.SUCCESS),
        (2, WcStatus.SUCCESS),
    ]
    assert bytes(buf[0x1000:0x2000]) == data
    assert pair.obs_a.retransmits == 1


def test_a_spurious_timeout_gives_the_window_back() -> None:
    # Only the ACK is lost: the timeout resends one packet, the receiver acknowledges it as a
    # duplicate together with everything after it, and the window returns to its size.
    pair = Pair(config=TransportConfig(mtu=1024, window=64, ack_every=64, ack_timeout=0.01))
    buf, rkey = _region(pair, 64 * 1024)
    data = _pattern(64 * 1024)
    pair.now = time.monotonic()
    pair.a.post_write(wr_id=1, local=memoryview(data), remote_va=0x10000, rkey=rkey)
    batch, pair.to_b = pair.to_b, []
    for raw in batch:
        pair._deliver(pair.b, raw, pair.now)
    pair.b.flush_ack()
    pair.to_a.clear()  # the ACKs are lost
    pair.tick(1.0)
    assert pair.a.window < 64
    pair.run()
    assert pair.done_a[0].status == WcStatus.SUCCESS
    assert bytes(buf) == data
    assert pair.a.window == 64
