"""A RoCEv2 endpoint on a real UDP socket: one socket bound to <address>:4791, one receive
thread, the transmit path (ICRC, UDP GSO batching, optional seeded impairment), the QP table,
CM MAD demultiplexing to QP1 and the transport counters.

Used by the RPC server (`naa_runtime.rpc.server`) and the host side
(`naa_runtime.rpc.host`). Each endpoint plays the role of one RDMA device with one IP address;
QPs are told apart by their QP number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import random
import secrets
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zlib_ng import zlib_ng as zlib  # CRC-32 with PCLMULQDQ: the ICRC dominates bulk CPU

from naa_runtime.roce import _fastpath
from naa_runtime.roce.cm import CmMessage, decode_cm, encode_cm
from naa_runtime.roce.memory import MemoryTable
from naa_runtime.roce.packets import (
    BTH_LEN,
    CM_QKEY,
    DETH_LEN,
    ICRC_LEN,
    PSN_MASK,
    RC_REQUEST_OPCODES,
    RETH_LEN,
    ROCE_UDP_PORT,
    MalformedPacket,
    Opcode,
    prefix_state,
    syndrome_name,
)
from naa_runtime.roce.qp import (
    BurstResult,
    Completion,
    OutPacket,
    QpObserver,
    QueuePair,
    TransportConfig,
    round_trip_completions,
)

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
SO_NO_CHECK = 11
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2
_GSO_MAX_BYTES = 65000
_GSO_MAX_SEGS = 64
FOREGROUND_LINGER = 0.005
_RT_TIMER_PERIOD = 0.001
"""How often a completed compiled round trip (the host's) or a request taken by the compiled
receive step (the NAA's) runs the endpoint's timers (the minimum retransmit timeout is 4 ms)."""
"""Seconds the receive thread stays parked after a foreground caller stopped receiving."""
FOREGROUND_NAP = 0.02
"""While a caller receives, the parked receive thread checks back this often: rarely enough
not to contend for the GIL with the caller, often enough to send deferred ACKs well within
the ACK timeout."""

log = logging.getLogger(__name__)

_BTH = struct.Struct("!BBHII")
_CRC = struct.Struct("<I")
_SEG = struct.Struct("=H")
_ZEROS = b"\0\0\0\0"
_STATES = struct.Struct(f"={_fastpath.MAX_SEGS}I")
"""A table of CRC states, one per GSO position, as the compiled fast path reads it."""
_BURST_DATAGRAMS = 256
"""At most this many GRO batches per receive burst of the fast path (then timers run)."""


@dataclass
class TransportStats:
    """Counters of one endpoint (read by the management plane's /metrics)."""

    packets_rx: int = 0
    packets_tx: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    retransmits: int = 0
    naks_sent: Counter[str] = field(default_factory=Counter)
    naks_received: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        return {
            "packets_rx": self.packets_rx,
            "packets_tx": self.packets_tx,
            "bytes_rx": self.bytes_rx,
            "bytes_tx": self.bytes_tx,
            "retransmits": self.retransmits,
            "naks_sent": dict(self.naks_sent),
            "naks_received": dict(self.naks_received),
            "dropped": dict(self.dropped),
        }


class _StatsObserver(QpObserver):
    def __init__(self, stats: TransportStats) -> None:
        self.stats = stats

    def on_nak_sent(self, syndrome: int) -> None:
        self.stats.naks_sent[syndrome_name(syndrome)] += 1

    def on_nak_received(self, syndrome: int) -> None:
        self.stats.naks_received[syndrome_name(syndrome)] += 1

    def on_retransmit(self, packets: int) -> None:
        self.stats.retransmits += packets

    def on_dropped(self, reason: str) -> None:
        self.stats.dropped[reason] += 1

    def on_dropped_many(self, reason: str, count: int) -> None:
        self.stats.dropped[reason] += count


@dataclass(frozen=True)
class Impairment:
    """Seeded loss, duplication and reordering applied to datagrams this endpoint sends."""

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    seed: int = 0


CmHandler = Callable[[str, int, CmMessage], None]


class Endpoint:
    """One UDP socket speaking RoCEv2. `start()` launches the receive thread."""

    def __init__(
        self,
        *,
        address: str,
        port: int = ROCE_UDP_PORT,
        config: TransportConfig | None = None,
        impairment: Impairment | None = None,
        on_cm: CmHandler | None = None,
    ) -> None:
        self.address = address
        self.port = port
        self.config = config or TransportConfig()
        self.stats = TransportStats()
        self._obs = _StatsObserver(self.stats)
        self._on_cm = on_cm
        self._src = ipaddress.IPv4Address(address).packed
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((address, port))
        except OSError as e:
            self._sock.close()
            raise OSError(
                e.errno,
                f"cannot bind the RoCEv2 endpoint to {address}:{port} ({e.strerror}); "
                "pick another local address (any 127.x.y.z works on Linux) or stop the "
                "process that holds it",
            ) from e
        s = self._sock
        s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        for force, plain in (
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
        ):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, self.config.socket_buffer)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, plain, self.config.socket_buffer)
        # Never keep more packets in flight than a receive buffer like ours can hold (without
        # the privilege to raise it, Linux caps SO_RCVBUF at net.core.rmem_max).
        rcvbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        fit = max(16, rcvbuf // (2 * (self.config.mtu + 512)))
        if fit < self.config.window:
            self.config = dataclasses.replace(self.config, window=fit)
        self._gro = False
        if self.config.gro:
            try:
                s.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro = True
            except OSError:
                self._gro = False
        # A loss-only impairment keeps GSO: each batch is split around the packets it drops
        # (the same seeded decision per packet as the per-packet path). Duplication and
        # reordering act on single datagrams, so they send one datagram per packet.
        loss_only = impairment is not None and impairment.duplicate == 0 and impairment.reorder == 0
        self._gso = self.config.gso and (impairment is None or loss_only)
        self._loss = impairment.loss if impairment is not None and self._gso else 0.0
        if not self._gso:
            # RoCEv2 usually sends UDP checksum 0 (the ICRC protects the packet); the kernel
            # refuses GSO on such sockets, so GSO senders keep the (ICRC-masked) checksum.
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        self._impair = impairment
        self._rng = random.Random(impairment.seed if impairment else 0)
        self._held: tuple[bytes, str] | None = None
        self._tx_lock = threading.Lock()
        self._qps: dict[int, tuple[QueuePair, str]] = {}
        self._qp_lock = threading.Lock()
        self._prefix_tx: dict[tuple[str, int], list[int]] = {}
        self._tx_tables: dict[tuple[str, int], tuple[bytes, bytes]] = {}
        self._prefix_rx: dict[tuple[str, int, int, int], int] = {}
        self._prefix_rx5: dict[tuple[str, int, int, bytes], tuple[bytes, bytes, int]] = {}
        self._running = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._corks: dict[int, list[tuple[str, list[OutPacket]]]] = {}
        self._rx_lock = threading.Lock()
        self._rx_buf = bytearray(65536 + 64)
        self._rx_mv = memoryview(self._rx_buf)
        self._anc_size = socket.CMSG_SPACE(4)
        self._last_round_count = 0
        self._fg_lock = threading.Lock()
        self._fg = 0
        self._fg_owner = False
        self._fg_until = 0.0
        self._fg_poller: select.poll | None = None
        self._deferred: set[QueuePair] = set()
        self._spin_checked = -2.0
        self._spin_now = 0.0
        self._rt_buf = bytearray(4 * (65536 + 64))
        self._rt_mv = memoryview(self._rt_buf)
        self._rt_states: dict[tuple[str, int, int], tuple[bytes, int, int, int, int]] = {}
        self._rt_timers_at = 0.0
        self._packed: dict[str, bytes] = {}

    # ------------------------------------------------------------------------- QPs

    def create_qp(
        self,
        *,
        peer_ip: str,
        peer_qpn: int,
        send_psn: int,
        expect_psn: int,
        memory: MemoryTable,
        on_completion: Callable[[Completion], None],
        qpn: int | None = None,
    ) -> QueuePair:
        with self._qp_lock:
            if qpn is None:
                while True:
                    qpn = secrets.randbelow(0xFFFFF0) + 2
                    if qpn not in self._qps:
                        break

            def transmit(pkts: list[OutPacket], _ip: str = peer_ip) -> None:
                self.transmit(_ip, pkts)

            qp = QueuePair(
                qpn=qpn,
                peer_qpn=peer_qpn,
                send_psn=send_psn,
                expect_psn=expect_psn,
                memory=memory,
                transmit=transmit,
                on_completion=on_completion,
                config=self.config,
                observer=self._obs,
            )
            if self._gso:

                def transmit_run(_ip: str = peer_ip, **kw: Any) -> None:
                    self.transmit_run(_ip, **kw)

                qp.transmit_run = transmit_run
            if self._gso and self._impair is None:
                peer = ipaddress.IPv4Address(peer_ip).packed

                def send_write_imm(  # noqa: PLR0917 - the QP calls it positionally (hot path)
                    dqp_word: int,
                    psn: int,
                    local: memoryview,
                    remote_va: int,
                    rkey: int,
                    imm: int,
                    solicited: bool,
                    _ip: bytes = peer,
                ) -> bool:
                    if self._corks and self._corked_here():
                        return False
                    err = _fastpath.send_write_imm(
                        self._sock.fileno(),
                        _ip,
                        ROCE_UDP_PORT,
                        self._src,
                        self.port,
                        dqp_word,
                        psn,
                        local,
                        remote_va,
                        rkey,
                        imm,
                        solicited,
                    )
                    self._count_write_imm(local.nbytes, err)
                    return True

                qp.send_write_imm = send_write_imm
            self._qps[qpn] = (qp, peer_ip)
        return qp

    def reserve_qpn(self) -> int:
        """A fresh QP number (the QP itself is created once the peer's QPN is known)."""
        with self._qp_lock:
            while True:
                qpn = secrets.randbelow(0xFFFFF0) + 2
                if qpn not in self._qps:
                    return qpn

    def destroy_qp(self, qp: QueuePair) -> None:
        with self._qp_lock:
            self._qps.pop(qp.qpn, None)
        qp.close()

    # ---------------------------------------------------------------------- transmit

    def _tx_states(self, peer_ip: str, length: int) -> list[int]:
        """CRC states of the masked IP/UDP prefix for each GSO position (IP ID = position)."""
        key = (peer_ip, length)
        states = self._prefix_tx.get(key)
        if states is None:
            dst = ipaddress.IPv4Address(peer_ip).packed
            states = [
                prefix_state(
                    src=self._src,
                    dst=dst,
                    sport=self.port,
                    dport=ROCE_UDP_PORT,
                    udp_payload_len=length,
                    ip_id=i,
                )
                for i in range(_GSO_MAX_SEGS)
            ]
            self._prefix_tx[key] = states
        return states

    def cork(self) -> None:
        """Queue this thread's packets until `uncork` (other threads still send at once)."""
        self._corks[threading.get_ident()] = []

    def _corked_here(self) -> bool:
        return bool(self._corks) and threading.get_ident() in self._corks

    def uncork(self) -> None:
        """Send what `cork` queued: consecutive packets to one peer go out as one GSO batch
        (an RPC request and the ACK behind it: one syscall, one wake-up at the NAA)."""
        self._send_queued(self._corks.pop(threading.get_ident(), None))

    def _send_queued(self, queued: list[tuple[str, list[OutPacket]]] | None) -> None:
        if not queued:
            return
        peer, pkts = queued[0]
        for ip, more in queued[1:]:
            if ip == peer:
                pkts = pkts + more
            else:
                self._transmit_now(peer, pkts)
                peer, pkts = ip, more
        self._transmit_now(peer, pkts)

    def transmit(self, peer_ip: str, pkts: list[OutPacket]) -> None:
        """Add ICRCs and send (or queue them while this thread corked the endpoint)."""
        if self._corks:
            corked = self._corks.get(threading.get_ident())
            if corked is not None:
                corked.append((peer_ip, pkts))
                return
        self._transmit_now(peer_ip, pkts)

    def _lost(self) -> bool:
        """The seeded loss decision for the next packet sent with GSO under a loss-only
        impairment (tx lock held): the random draws `_send_one` makes for a packet (loss;
        then, if kept, reorder and duplication, which are 0 here), so a GSO sender drops
        exactly the packets the per-packet path would."""
        rng = self._rng
        if rng.random() < self._loss:
            return True
        rng.random()
        rng.random()
        return False

    def _small_datagram(
        self, peer_ip: str, pkts: list[OutPacket]
    ) -> tuple[list[bytes | bytearray | memoryview], int, int] | None:
        """One or two packets as the buffers of one sendmsg (ICRCs added, BTH byte 4
        cleared), its GSO segment size and its bytes: an ACK, an RPC's request or reply, a
        request with the ACK deferred behind it (a second, shorter packet ends the GSO batch).
        None if a second packet is longer than the first (the generic path sends those)."""
        h0, p0, d0 = pkts[0]
        seg = len(h0) + len(p0) + d0 + ICRC_LEN
        if len(pkts) > 1 and len(pkts[1][0]) + len(pkts[1][1]) + pkts[1][2] + ICRC_LEN > seg:
            return None
        crc32 = zlib.crc32
        bufs: list[bytes | bytearray | memoryview] = []
        total = 0
        for i, (hdr, payload, pad) in enumerate(pkts):
            ln = len(hdr) + len(payload) + pad + ICRC_LEN
            states = self._prefix_tx.get((peer_ip, ln)) or self._tx_states(peer_ip, ln)
            crc = crc32(payload, crc32(hdr, states[i]))
            if pad:
                crc = crc32(_ZEROS[:pad], crc)
            hdr[4] = 0
            bufs += (hdr, payload, _ZEROS[:pad], _CRC.pack(crc))
            total += ln
        return bufs, seg, total

    def _transmit_now(self, peer_ip: str, pkts: list[OutPacket]) -> None:
        """Add ICRCs and send; GSO-batches runs of equal-sized packets (a shorter one may end
        a batch)."""
        crc32 = zlib.crc32
        pack_crc = _CRC.pack
        addr = (peer_ip, ROCE_UDP_PORT)
        stats = self.stats
        n = len(pkts)
        if self._loss:
            with self._tx_lock:
                kept = [p for p in pkts if not self._lost()]
            if len(kept) < n:
                # counted as sent (as the per-packet path counts them), then lost on the wire
                stats.packets_tx += n - len(kept)
                stats.bytes_tx += sum(len(h) + len(p) + d + ICRC_LEN for h, p, d in pkts)
                stats.bytes_tx -= sum(len(h) + len(p) + d + ICRC_LEN for h, p, d in kept)
                pkts = kept
                n = len(pkts)
                if not n:
                    return
        if n == 1 and self._gso:
            # one packet (an ACK, an RPC's request or reply): ICRC and sendmsg in one C call
            hdr, payload, pad = pkts[0]
            ln = len(hdr) + len(payload) + pad + ICRC_LEN
            states = self._prefix_tx.get((peer_ip, ln)) or self._tx_states(peer_ip, ln)
            ip = self._packed.get(peer_ip)
            if ip is None:
                ip = self._packed[peer_ip] = ipaddress.IPv4Address(peer_ip).packed
            with self._tx_lock:
                err = _fastpath.send_small(
                    self._sock.fileno(), ip, ROCE_UDP_PORT, hdr, payload, pad, states[0]
                )
            if err:
                stats.dropped[_tx_error(err)] += 1
            stats.packets_tx += 1
            stats.bytes_tx += ln
            return
        if n <= 2 and self._gso:
            small = self._small_datagram(peer_ip, pkts)
            if small is not None:
                iov, seg, total = small
                anc = [(SOL_UDP, UDP_SEGMENT, _SEG.pack(seg))] if n > 1 else []
                with self._tx_lock:
                    try:
                        self._sock.sendmsg(iov, anc, 0, addr)
                    except BlockingIOError:
                        stats.dropped["tx_would_block"] += n
                    except OSError as e:
                        stats.dropped[f"tx_error_{e.errno}"] += n
                stats.packets_tx += n
                stats.bytes_tx += total
                return
        if not self._gso:
            for hdr, payload, pad in pkts:
                ln = len(hdr) + len(payload) + pad + ICRC_LEN
                crc = crc32(payload, crc32(hdr, self._tx_states(peer_ip, ln)[0]))
                if pad:
                    crc = crc32(_ZEROS[:pad], crc)
                hdr[4] = 0
                self._send_one(b"".join((hdr, payload, _ZEROS[:pad], pack_crc(crc))), addr)
                stats.packets_tx += 1
                stats.bytes_tx += ln
            return
        i = 0
        n = len(pkts)
        sock = self._sock
        while i < n:
            h0, p0, pad0 = pkts[i]
            seg = len(h0) + len(p0) + pad0 + ICRC_LEN
            states = self._tx_states(peer_ip, seg)
            limit = min(n, i + _GSO_MAX_SEGS, i + _GSO_MAX_BYTES // seg)
            bufs: list[bytes | bytearray | memoryview] = []
            j = i
            last_len = seg
            while j < limit:
                hdr, payload, pad = pkts[j]
                ln = len(hdr) + len(payload) + pad + ICRC_LEN
                if ln != seg:
                    if ln > seg or j == i:
                        break
                    # a shorter segment may end the batch
                    last_len = ln
                    st = self._tx_states(peer_ip, ln)[j - i]
                else:
                    st = states[j - i]
                crc = crc32(payload, crc32(hdr, st))
                hdr[4] = 0
                bufs.append(hdr)
                if payload:
                    bufs.append(payload)
                if pad:
                    crc = crc32(_ZEROS[:pad], crc)
                    bufs.append(_ZEROS[:pad])
                bufs.append(pack_crc(crc))
                j += 1
                if ln != seg:
                    break
            count = j - i
            anc = [(SOL_UDP, UDP_SEGMENT, _SEG.pack(seg))] if count > 1 else []
            with self._tx_lock:
                try:
                    sock.sendmsg(bufs, anc, 0, addr)
                except BlockingIOError:
                    stats.dropped["tx_would_block"] += count
                except OSError as e:
                    stats.dropped[f"tx_error_{e.errno}"] += count
            stats.packets_tx += count
            stats.bytes_tx += seg * (count - 1) + last_len
            i = j

    def transmit_run(
        self,
        peer_ip: str,
        *,
        op: int,
        dest_qp: int,
        first_psn: int,
        first_index: int,
        count: int,
        local: memoryview,
        offset: int,
        mtu: int,
        ack_every: int,
    ) -> None:
        """Send full-MTU middle packets of one message straight from its buffer: headers,
        ICRCs and GSO batches built in one loop (the bulk-transfer hot path)."""
        if self._corked_here():
            self.uncork()  # packets queued before these middle ones go first
            self.cork()
        seg = BTH_LEN + mtu + ICRC_LEN
        table = self._tx_tables.get((peer_ip, seg))
        if table is None:
            table = (
                ipaddress.IPv4Address(peer_ip).packed,
                _STATES.pack(*self._tx_states(peer_ip, seg)),
            )
            self._tx_tables[(peer_ip, seg)] = table
        # Headers, ICRCs and GSO sendmsg calls in C, without the GIL; the payload goes to the
        # kernel straight from `local`. No _tx_lock: one sendmsg is atomic, and an unconnected
        # socket's IPv4 IDs restart at 0 in every GSO batch (no state shared between threads).
        runs = [(0, count)]
        if self._loss:
            # send the packets the impairment keeps, in runs between the ones it drops
            with self._tx_lock:
                lost = [i for i in range(count) if self._lost()]
            runs = []
            start = 0
            for i in (*lost, count):
                if i > start:
                    runs.append((start, i))
                start = i + 1
        stats = self.stats
        for a, b in runs:
            dropped, err = _fastpath.send_middle_run(
                self._sock.fileno(),
                table[0],
                ROCE_UDP_PORT,
                op,
                dest_qp,
                (first_psn + a) & PSN_MASK,
                first_index + a,
                b - a,
                local[offset + a * mtu : offset + b * mtu],
                mtu,
                ack_every,
                table[1],
                max(1, min(_GSO_MAX_SEGS, _GSO_MAX_BYTES // seg)),
            )
            if dropped:
                stats.dropped[f"tx_error_{err}"] += dropped
        stats.packets_tx += count
        stats.bytes_tx += count * seg

    def _send_one(self, dgram: bytes, addr: tuple[str, int]) -> None:
        imp = self._impair
        with self._tx_lock:
            if imp is None:
                self._sendto(dgram, addr)
                return
            rng = self._rng
            held = self._held
            self._held = None
            if rng.random() < imp.loss:
                pass
            elif rng.random() < imp.reorder and held is None:
                self._held = (dgram, addr[0])
            else:
                self._sendto(dgram, addr)
                if rng.random() < imp.duplicate:
                    self._sendto(dgram, addr)
            if held is not None:
                self._sendto(held[0], (held[1], ROCE_UDP_PORT))

    def _sendto(self, dgram: bytes, addr: tuple[str, int]) -> None:
        try:
            self._sock.sendto(dgram, addr)
        except OSError as e:
            self.stats.dropped[f"tx_error_{e.errno}"] += 1

    def send_mad(self, peer_ip: str, msg: CmMessage, *, tid: int) -> None:
        """Send a CM MAD to the peer's QP1 (UD SEND_ONLY, DETH Q_Key 0x80010000, src QP 1)."""
        mad = encode_cm(msg, tid=tid)
        hdr = bytearray(_BTH.pack(_OPCODE_UD_SEND_ONLY, 0, 0xFFFF, 0xFF000001, 0))
        hdr += struct.pack("!II", CM_QKEY, 1)
        self.transmit(peer_ip, [(hdr, mad, 0)])

    # ----------------------------------------------------------------------- receive

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._thread = threading.Thread(
            target=self._rx_loop, name=f"roce-rx-{self.address}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._qp_lock:
            qps = [qp for qp, _ in self._qps.values()]
            self._qps.clear()
        for qp in qps:
            qp.close()
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def alive(self) -> bool:
        """True while the receive thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _is_running(self) -> bool:
        return self._running

    def _next_deadline(self) -> float | None:
        best: float | None = None
        with self._qp_lock:
            for qp, _ in self._qps.values():
                d = qp.deadline()
                if d is not None and (best is None or d < best):
                    best = d
        return best

    def _rx_loop(self) -> None:
        poller = self._new_poller()
        sock_fd = self._sock.fileno()
        active = 0.0  # when the last round received something
        cfg = self.config
        compiled = cfg.fast_request and self._impair is None and cfg.verify_icrc
        while self._running:
            now = time.monotonic()
            if self._fg or now < self._fg_until:
                # A caller receives in the foreground (drive): stay off the socket until it
                # has been idle for FOREGROUND_LINGER, so back-to-back calls never pay for
                # this thread's wake-ups.
                time.sleep(FOREGROUND_NAP if self._fg else max(0.0002, self._fg_until - now))
                continue
            with self._rx_lock:
                if self._foreground():  # a caller arrived meanwhile (a method: mypy narrows)
                    continue
                if self._deferred:
                    self._flush_deferred()
                if compiled:
                    # Busy-poll what is left of the spin window since the last packet, and
                    # only then wait, bounded by the timers (the next lap, once the window
                    # closed): between a reply and the next request this lap is the NAA's
                    # turnaround, which must stay shorter than the host's.
                    spin = self._spin(now) - (now - active)
                    if spin > 0:
                        got = self._receive_compiled(0, int(spin * 1e9))
                    else:
                        dl = self._next_deadline()
                        got = self._receive_compiled(
                            200 if dl is None else max(0, min(200, int((dl - now) * 1000) + 1)), 0
                        )
                    if got is None:
                        return
                    if got:
                        active = time.monotonic()
                    continue
                dl = self._next_deadline()
                timeout_ms = 200 if dl is None else max(0, min(200, int((dl - now) * 1000) + 1))
                if now - active < self._spin(now):
                    timeout_ms = 0  # busy-poll: the next packet of a round trip finds us awake
                    os.sched_yield()
                try:
                    events = poller.poll(timeout_ms)
                except OSError:
                    return
                if not self._is_running():
                    return
                if events:
                    if len(events) > 1 or events[0][0] != sock_fd:  # not only the socket
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    if not self._round(defer_acks=None):
                        return
                    if self._last_round_count:
                        active = time.monotonic()
                else:
                    self._run_timers()

    def _receive_compiled(self, timeout_ms: int, spin_ns: int) -> bool | None:
        """One step of the receive loop through `_fastpath.naa_receive` (rx lock held): wait
        (busy-polling `spin_ns` first) up to `timeout_ms` for a datagram; an RPC request of the
        common case comes back placed, committed and acknowledged, and its completion is
        reported here (an inline kernel replies from it), then a plain ACK behind it goes to
        `QueuePair.ack_compiled`; every other datagram, and any other segment behind such a
        request, take the per-packet path. True if something arrived,
        None once the endpoint is closed."""
        try:
            status, nbytes, seg, ip, port, wake, req = _fastpath.naa_receive(
                self._sock.fileno(),
                self._wake_r.fileno(),
                timeout_ms,
                spin_ns,
                self._rx_buf,
                self._qps,
                self._src,
                self.port,
                not (self._corks and self._corked_here()),  # an inline reply may leave now
            )
        except Exception:  # a bug must never stop the receive thread (the peer resends)
            if not self._is_running():
                return None
            log.exception("the compiled receive step failed")
            self.stats.dropped["internal_error"] += 1
            return False
        if not self._is_running():
            return None
        if wake:  # not only the socket: the wake-up byte
            with contextlib.suppress(OSError):
                self._wake_r.recv(64)
        if status in (_NR_NONE, _NR_ERROR):
            self._run_timers()
            return False
        touched: set[QueuePair] = set()
        index = 0
        if req is not None:  # the latency path: straight to the completion (and the reply)
            qp, wr_id, imm, length, b1, err, ack_psn, aeth, reply = req
            stats = self.stats
            stats.packets_rx += 1
            stats.bytes_rx += seg
            stats.packets_tx += 1
            stats.bytes_tx += 20
            if err:
                stats.dropped[_tx_error(err)] += 1
            try:
                if reply is None:
                    qp.request_completed(wr_id, length, imm, b1)
                elif reply is not True:  # the QP's inline_reply hook made a reply
                    (r_wr_id, view, va, rkey, r_imm, recv_wr_id), r_err = reply
                    if r_err < 0:  # not sent in C
                        qp.post_reply(r_wr_id, view, va, rkey, r_imm)
                    else:  # sent in C (and recorded): counted as send_write_imm counts it
                        self._count_write_imm(view.nbytes, r_err)
                    qp.post_recv(wr_id=recv_wr_id)
            except Exception:  # as _round: a bug must never stop the receive thread
                log.exception("dropping a datagram from %s:%d", socket.inet_ntoa(ip), port)
                stats.dropped["internal_error"] += 1
            touched.add(qp)
            index = 1
            # The ACK behind the request (for our previous reply), after the reply: in C
            # where it is plain (`ack_step`), else the per-packet path below takes it.
            if ack_psn >= 0:
                try:
                    taken = qp.ack_compiled(ack_psn, aeth, time.monotonic())
                except Exception:  # as _round: counted and dropped (the peer resends)
                    log.exception("dropping an ACK from %s:%d", socket.inet_ntoa(ip), port)
                    stats.dropped["internal_error"] += 1
                    taken = True
                if taken:
                    stats.packets_rx += 1
                    stats.bytes_rx += 20
                    index = 2
        if index * seg < nbytes or nbytes == 0:
            self._on_received(nbytes, seg, (socket.inet_ntoa(ip), port), index, touched)
            if req is not None:  # the per-packet path may owe ACKs (the request's went out)
                for qp in touched:
                    qp.flush_ack()
        if req is None:
            # the rest of a burst (bulk transfers) as before: drain, flush ACKs, timers
            return True if self._round(defer_acks=None, touched=touched) else None
        # Timers at most once a millisecond while requests keep coming (the minimum
        # retransmit timeout is 4 ms; an idle loop runs them when its wait times out).
        now = time.monotonic()
        if now >= self._rt_timers_at:
            self._rt_timers_at = now + _RT_TIMER_PERIOD
            self._run_timers()
        return True

    def _count_write_imm(self, n: int, err: int) -> None:
        """Count a one-packet WRITE WITH IMMEDIATE of `n` payload bytes sent in C (`err`: the
        errno of its failed send, or 0)."""
        stats = self.stats
        if err:
            stats.dropped[_tx_error(err)] += 1
        stats.packets_tx += 1
        stats.bytes_tx += _write_imm_len(n)

    def _spin(self, now: float) -> float:
        """Seconds to busy-poll after a packet: `config.busy_poll` while the machine has a
        CPU to spare (`cpu_to_spare`, looked at once a second), else 0."""
        if now >= self._spin_checked + 1.0:
            self._spin_checked = now
            self._spin_now = self.config.busy_poll if cpu_to_spare() else 0.0
        return self._spin_now

    def _foreground(self) -> bool:
        return self._fg > 0

    def _new_poller(self) -> select.poll:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        poller.register(self._wake_r.fileno(), select.POLLIN)
        return poller

    def _enter_foreground(self) -> bool:
        """Make the calling thread the endpoint's only receiver (the receive thread parks);
        False, doing nothing, if another caller already receives or the endpoint is closed.
        Pair with `_leave_foreground`."""
        with self._fg_lock:
            if self._fg_owner or not self._running:
                return False
            self._fg_owner = True
            self._fg += 1
        if not self._rx_lock.acquire(blocking=False):
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")  # the receive thread leaves poll() and parks
            self._rx_lock.acquire()
        return True

    def _leave_foreground(self) -> None:
        self._rx_lock.release()
        with self._fg_lock:
            self._fg -= 1
            self._fg_owner = False
            self._fg_until = time.monotonic() + FOREGROUND_LINGER

    def drive(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Receive and process packets on the calling thread until `done()` is true or
        `deadline` (time.monotonic()) passes: a waiting caller polls the socket itself (busy
        for `config.busy_poll` seconds after each packet while the machine is not loaded, then
        blocking), instead of sleeping until the receive thread wakes it. Returns False, doing
        nothing, if another caller is already receiving (wait for its callbacks instead) or the
        endpoint is closed."""
        if not self._enter_foreground():
            return False
        try:
            poller = self._fg_poller
            if poller is None:
                # The socket only: a wake-up byte meant for the receive thread may still sit
                # in the wake pipe and would make every poll() here return at once.
                poller = self._fg_poller = select.poll()
                poller.register(self._sock.fileno(), select.POLLIN)
            idle_since = time.monotonic()
            spin = self._spin(idle_since)
            while not done():
                if not self._is_running():  # stop() from another thread
                    return False
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    return True
                if not self._round(defer_acks=done):
                    return False
                if self._last_round_count:
                    idle_since = time.monotonic()
                    continue
                if now - idle_since < spin:
                    os.sched_yield()  # let a peer on this CPU run (it sends what we wait for)
                    continue
                dl = self._next_deadline()
                if deadline is not None and (dl is None or deadline < dl):
                    dl = deadline
                timeout_ms = 200 if dl is None else max(0, min(200, int((dl - now) * 1000) + 1))
                try:
                    poller.poll(timeout_ms)
                except OSError:
                    return False
                idle_since = time.monotonic()
            return True
        finally:
            self._leave_foreground()

    def rpc_call(  # noqa: PLR0917 - the latency path passes them by position
        self,
        qp: QueuePair,
        wr_id: int,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int,
        target: memoryview,
        target_va: int,
        target_rkey: int,
        on_completion: Callable[[Completion], None],
        done: Callable[[], bool],
        deadline: float | None,
        on_reply: Callable[[int, int], bool] | None = None,
    ) -> bool:
        """The compiled common case of a small RPC on the calling thread (the host's latency
        path): a one-packet RDMA WRITE WITH IMMEDIATE of `local` (SE, AckReq; at most one MTU)
        whose reply is one RDMA WRITE WITH IMMEDIATE of the registered region `target`. With
        this thread as the endpoint's only receiver and `qp` idle, the request (and the ACK
        the QP owes, behind it) are built as `post_write` and `flush_ack` build them and sent
        in one GSO `sendmsg` (`_fastpath.send_round_trip`); while they fly, the QP records
        the outcome the round trip is expected to have (`round_trip_speculate`, its lock
        held); `_fastpath.rpc_round_trip` then waits, without the GIL, for the request's ACK
        and the reply at the expected PSN (headers, RETH and ICRCs checked), places the reply
        and confirms the record (the RTT sample, the lock released: together
        `commit_round_trip_state`); the two completions go to `on_completion`, as the receive
        path would report them; the ACK the reply asks for is deferred
        (`flush_deferred_acks`). Anything else (another datagram, a timeout, an error) undoes
        the record (`round_trip_abort`), leaves the request outstanding as `post_write` would
        (`round_trip_sent`) and hands every datagram received to the per-packet path, the
        reference; the caller's wait finishes the RPC. The caller posted a receive `wr_id`
        for the reply only in that case (it is consumed here otherwise): `on_completion` is
        preceded by `post_recv` then. Returns False, having sent nothing, if the fast path
        does not apply. With `on_reply`, a round trip finished in C reports `on_reply(imm,
        reply_bytes)` instead of the two completions (the caller knows what they would say:
        its write completed, the reply arrived; it returns what `done()` would), and runs the
        endpoint's timers at most once a millisecond. The foreground receive is entered and
        left inline (as `_enter_foreground`/`_leave_foreground`); the arguments may be passed
        by position (the host's `call` does: 13 keywords cost ~0.4 µs)."""
        cfg = self.config
        if (
            self._impair is not None
            or not self._gso
            or not cfg.verify_icrc
            or not cfg.fast_round_trip
            or qp.config.ack_before_completion
            or local.nbytes > qp.config.mtu
            or target.nbytes > qp.config.mtu
        ):
            return False
        # _enter_foreground, inline (the latency path)
        with self._fg_lock:
            if self._fg_owner or not self._running:
                return False
            self._fg_owner = True
            self._fg += 1
        rx_lock = self._rx_lock
        if not rx_lock.acquire(blocking=False):
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")  # the receive thread leaves poll() and parks
            rx_lock.acquire()
        try:
            entry = self._qps.get(qp.qpn)
            deferred = self._deferred
            if (
                entry is None
                or entry[0] is not qp
                or (deferred and (len(deferred) > 1 or qp not in deferred))
            ):
                return False
            n = target.nbytes
            started = qp.round_trip_start()
            if started is None:  # not idle
                return False
            psn, epsn, ack_psn, aeth = started
            peer = entry[1]
            acked = ack_psn >= 0
            req_len = _write_imm_len(local.nbytes)
            reply_len = _write_imm_len(n)
            key = (peer, reply_len, req_len)
            states = self._rt_states.get(key)
            if states is None:
                states = (
                    socket.inet_aton(peer),
                    self._rx_state(peer, ROCE_UDP_PORT, 20, 0),
                    self._rx_state(peer, ROCE_UDP_PORT, reply_len, 0),
                    self._tx_states(peer, req_len)[0],
                    self._tx_states(peer, 20)[1],
                )
                self._rt_states[key] = states
            out = _fastpath.build_round_trip(
                states[3], states[4], qp.dqp_word, psn, local, remote_va, rkey, imm, ack_psn, aeth
            )
            fd = self._sock.fileno()
            t0 = time.monotonic()
            err = _fastpath.send_round_trip(fd, states[0], out, req_len if acked else 0)
            # What follows, up to the wait, overlaps the request's flight and the NAA's work
            # (off the round trip): the counters, and the QP's state as the finished round
            # trip leaves it (undone below if it does not finish so).
            deferred.discard(qp)
            stats = self.stats
            stats.packets_tx += 2 if acked else 1
            stats.bytes_tx += len(out)
            dgrams: tuple[tuple[int, int, int, bytes, int], ...] = ()
            if err:
                status = _RT_ERROR
                now = time.monotonic()
            elif not qp.memory.writable(target_rkey, target_va, n):
                # not the target of a reply placed in C: the per-packet path takes the reply
                status = _RT_FALLBACK
                now = time.monotonic()
            else:
                rto = qp.rto
                dl = t0 + rto if deadline is None else min(deadline, t0 + rto)
                speculated = qp.round_trip_speculate(n, t0)
                try:
                    status, err, dgrams, reply_imm = _fastpath.rpc_round_trip(
                        fd,
                        states[0],
                        (),
                        0,
                        qp.qpn,
                        psn,
                        epsn,
                        states[1],
                        states[2],
                        reply_len,
                        int(
                            (self._spin_now if t0 < self._spin_checked + 1.0 else self._spin(t0))
                            * 1e9
                        ),
                        int(max(0.0, dl - t0) * 1e9),
                        self._rt_buf,
                        (target, target_va, target_rkey),
                        qp,  # on RT_OK, C confirms the speculation (round_trip_confirm)
                        speculated[1],
                    )
                except BaseException:
                    qp.round_trip_abort(speculated)
                    raise
                now = time.monotonic()
                if status != _RT_OK:
                    qp.round_trip_abort(speculated)
            buf = self._rt_buf
            if status == _RT_OK:
                stats.packets_rx += 2
                stats.bytes_rx += 20 + reply_len
                if on_reply is not None:
                    if on_reply(reply_imm, n):
                        deferred.add(qp)
                    else:
                        qp.flush_ack()
                    if now >= self._rt_timers_at:
                        self._rt_timers_at = now + _RT_TIMER_PERIOD
                        self._run_timers()
                    return True
                off = next(o for o, nb, *_ in dgrams if nb == reply_len)
                done_list = round_trip_completions(
                    wr_id=wr_id,
                    length=local.nbytes,
                    recv_wr_id=wr_id,
                    reply_bytes=n,
                    imm=reply_imm,
                    b1=buf[off + 1],
                )
                for c in done_list:
                    on_completion(c)
                touched = {qp}
            else:
                qp.round_trip_sent(
                    wr_id=wr_id,
                    local=local,
                    remote_va=remote_va,
                    rkey=rkey,
                    imm=imm,
                    acked=acked,
                    t0=t0,
                )
                qp.post_recv(wr_id=wr_id)
                if status == _RT_ERROR and not dgrams:
                    stats.dropped[f"tx_error_{err}"] += 2 if acked else 1  # a timer resends
                touched = set()
                mv = self._rt_mv
                for off, nbytes, gso, ip, port in dgrams:
                    src = (socket.inet_ntoa(ip), port)
                    seg_len = gso if 0 < gso < nbytes else nbytes
                    for index, o in enumerate(range(off, off + nbytes, seg_len)):
                        ln = min(seg_len, off + nbytes - o)
                        try:
                            self._on_datagram(mv[o : o + ln], src, index, now, touched)
                        except Exception:  # as _round: a bug must not lose the caller
                            log.exception("dropping a datagram from %s:%d", *src)
                            stats.dropped["internal_error"] += 1
            if touched and done():
                self._deferred |= touched
            else:
                for t in touched:
                    t.flush_ack()
            self._run_timers()
            return True
        finally:
            # _leave_foreground, inline
            rx_lock.release()
            with self._fg_lock:
                self._fg -= 1
                self._fg_owner = False
                self._fg_until = time.monotonic() + FOREGROUND_LINGER

    def _rx_state(self, src_ip: str, sport: int, length: int, index: int) -> int:
        """CRC state of the masked IP/UDP prefix of a datagram from src_ip:sport to us."""
        key = (src_ip, sport, length, index)
        st = self._prefix_rx.get(key)
        if st is None:
            if len(self._prefix_rx) > 4096:
                self._prefix_rx.clear()
            st = prefix_state(
                src=ipaddress.IPv4Address(src_ip).packed,
                dst=self._src,
                sport=sport,
                dport=self.port,
                udp_payload_len=length,
                ip_id=index,
            )
            self._prefix_rx[key] = st
        return st

    def _flush_deferred(self) -> None:
        """Send the ACKs a foreground caller deferred (coalesced, off its latency path)."""
        while self._deferred:
            try:
                qp = self._deferred.pop()
            except KeyError:  # another thread flushed it
                return
            qp.flush_ack()

    def flush_deferred_acks(self) -> None:
        """Send deferred ACKs now (the host calls this right after posting its next request,
        so the NAA reads both in one wake-up)."""
        if self._deferred:
            self._flush_deferred()

    def _round(
        self,
        *,
        defer_acks: Callable[[], bool] | None,
        touched: set[QueuePair] | None = None,
    ) -> bool:
        """Drain up to 512 datagrams without blocking, send the ACKs they owe, run due timers.
        If `defer_acks()` is true after the batch (a foreground caller got what it waited for),
        the coalesced ACKs are deferred instead (flush_deferred_acks / the receive thread send
        them). False once the endpoint is closed."""
        sock = self._sock
        mv = self._rx_mv
        anc_size = self._anc_size
        if touched is None:
            touched = set()
        count = 0
        for _ in range(512):
            try:
                nbytes, anc, _flags, src = sock.recvmsg_into([mv], anc_size, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                if not self._is_running():
                    return False
                break
            count += 1
            seg = nbytes
            for level, typ, data in anc:
                if level == SOL_UDP and typ == UDP_GRO:
                    seg = struct.unpack("=i", data[:4])[0]
            self._on_received(nbytes, seg, src, 0, touched)
            if defer_acks is not None and defer_acks():
                break  # the foreground caller has its reply: no further (empty) receive call
        self._last_round_count = count
        if touched and defer_acks is not None and defer_acks():
            self._deferred |= touched
        else:
            for qp in touched:
                qp.flush_ack()
        self._run_timers()
        return True

    def _on_received(
        self, nbytes: int, seg: int, src: tuple[str, int], index: int, touched: set[QueuePair]
    ) -> None:
        """The per-packet path of a datagram (a GRO batch of `seg`-byte segments) received into
        the receive buffer, from its segment `index` on."""
        buf = self._rx_buf
        mv = self._rx_mv
        now = time.monotonic()
        off = index * seg
        if index == 0 and seg < nbytes and nbytes // seg >= 2:
            try:
                # it may receive further batches of the run into buf: it returns the
                # datagram then in buf and how many of its segments it consumed
                done, nbytes, seg, src = self._on_middle_run(
                    buf=buf, nbytes=nbytes, seg=seg, src=src, touched=touched
                )
            except Exception:  # never stop the receive thread; retry per packet
                log.exception("fast path failed for a batch from %s:%d", *src)
                done = 0
            off = done * seg
            index = done
        while off < nbytes:
            ln = min(seg, nbytes - off)
            try:
                self._on_datagram(mv[off : off + ln], src, index, now, touched)
            except Exception:  # a bug must never stop the receive thread
                log.exception("dropping a datagram from %s:%d", *src)
                self.stats.dropped["internal_error"] += 1
            off += ln
            index += 1
        if nbytes == 0:
            self.stats.dropped["short"] += 1

    def _run_timers(self) -> None:
        now = time.monotonic()
        with self._qp_lock:
            due = [
                qp for qp, _ in self._qps.values() if (d := qp.deadline()) is not None and d <= now
            ]
        for qp in due:
            qp.on_timer(now)

    def _on_middle_run(
        self,
        *,
        buf: bytearray,
        nbytes: int,
        seg: int,
        src: tuple[str, int],
        touched: set[QueuePair],
    ) -> tuple[int, int, int, tuple[str, int]]:
        """Fast path for a GRO batch that starts with consecutive RDMA WRITE MIDDLE packets of
        one QP: the QP has the compiled receiver check each segment's header, PSN and ICRC,
        place its payload and go on with the following batches of the run straight from the
        socket (sending the ACKs they ask for). A burst that ends on a new datagram starting
        another QP's run goes on with that one. Returns (done, nbytes, seg, src): the datagram
        then in `buf` and how many of its leading segments were consumed (the per-packet path
        handles the rest: duplicates, gaps, errors, other opcodes)."""
        for _ in range(_BURST_DATAGRAMS):
            r, src = self._middle_burst(buf=buf, nbytes=nbytes, seg=seg, src=src, touched=touched)
            if r is None:
                break
            nbytes, seg = r.nbytes, r.seg
            if (
                r.status != _fastpath.BURST_PENDING
                or r.done
                or not r.placed  # the datagram the fast path just refused
                or not (seg < nbytes and nbytes // seg >= 2)
            ):
                return r.done, nbytes, seg, src
        return 0, nbytes, seg, src

    def _middle_burst(
        self,
        *,
        buf: bytearray,
        nbytes: int,
        seg: int,
        src: tuple[str, int],
        touched: set[QueuePair],
    ) -> tuple[BurstResult | None, tuple[str, int]]:
        """One receive burst of `_on_middle_run`: None if the batch in `buf` is not for it
        (buf untouched), else what the QP did, and the source of the datagram then in `buf`."""
        # SE/M/pad/TVer 0 and a valid P_Key; every segment must then match these 8 bytes
        if buf[0] != _OPCODE_RDMA_WRITE_MIDDLE or buf[1] != 0 or buf[2] & 0x7F != 0x7F:
            return None, src
        first8 = bytes(buf[0:8])
        if first8[3] != 0xFF:
            return None, src
        entry = self._qps.get(int.from_bytes(first8[5:8], "big"))
        if entry is None or entry[1] != src[0]:
            return None, src
        qp = entry[0]
        key5 = (src[0], src[1], seg, first8[:4])
        cached = self._prefix_rx5.get(key5)
        if cached is None:
            if len(self._prefix_rx5) > 1024:
                self._prefix_rx5.clear()
            src_ip = ipaddress.IPv4Address(src[0]).packed
            states = _STATES.pack(
                *(
                    zlib.crc32(
                        b"\xff",
                        zlib.crc32(
                            first8[:4],
                            prefix_state(
                                src=src_ip,
                                dst=self._src,
                                sport=src[1],
                                dport=self.port,
                                udp_payload_len=seg,
                                ip_id=i,
                            ),
                        ),
                    )
                    for i in range(_fastpath.MAX_SEGS)
                )
            )
            # the ACKs go back to the peer's address (20 bytes: BTH + AETH + ICRC, IP ID 0)
            cached = (src_ip, states, self._tx_states(src[0], 20)[0])
            self._prefix_rx5[key5] = cached
        # the QP sends its ACKs itself only when they would leave at once and unimpaired
        direct = self._impair is None and not self._corked_here()
        r = qp.on_middle_burst(
            fd=self._sock.fileno(),
            buf=buf,
            nbytes=nbytes,
            seg=seg,
            src=(cached[0], src[1]),
            first8=first8,
            states=cached[1] if self.config.verify_icrc else None,
            ack_to=(cached[0], cached[2]) if direct else None,
            max_dgrams=_BURST_DATAGRAMS,
        )
        if r.status < 0:  # the QP took nothing; buf is untouched
            return None, src
        stats = self.stats
        if r.placed:
            stats.packets_rx += r.placed
            stats.bytes_rx += r.placed * seg
            touched.add(qp)
        elif r.done:  # out-of-sequence segments the QP dropped at once
            stats.packets_rx += r.done
            stats.bytes_rx += r.done * seg
        if r.acks:
            stats.packets_tx += r.acks
            stats.bytes_tx += 20 * r.acks
        if r.status == _fastpath.BURST_ERROR:
            stats.dropped[f"rx_error_{r.errno}"] += 1
        if r.ip != cached[0] or r.port != src[1]:
            src = (socket.inet_ntoa(r.ip), r.port)
        return r, src

    def _on_datagram(
        self,
        dgram: memoryview,
        src: tuple[str, int],
        index: int,
        now: float,
        touched: set[QueuePair],
    ) -> None:
        stats = self.stats
        n = len(dgram)
        stats.packets_rx += 1
        stats.bytes_rx += n
        if n < BTH_LEN + ICRC_LEN:
            stats.dropped["short"] += 1
            return
        op, b1, pkey, w2, w3 = _BTH.unpack_from(dgram, 0)
        if b1 & 0x0F:
            stats.dropped["bad_version"] += 1
            return
        if pkey & 0x7FFF != 0x7FFF:
            stats.dropped["bad_pkey"] += 1
            return
        if self.config.verify_icrc:
            st = self._prefix_rx.get((src[0], src[1], n, index))
            if st is None:
                st = self._rx_state(src[0], src[1], n, index)
            crc = zlib.crc32(dgram[:4], st)
            crc = zlib.crc32(b"\xff", crc)
            crc = zlib.crc32(dgram[5 : n - ICRC_LEN], crc)
            if crc != _CRC.unpack_from(dgram, n - ICRC_LEN)[0]:
                stats.dropped["bad_icrc"] += 1
                return
        body = dgram[: n - ICRC_LEN]
        dqp = w2 & 0xFFFFFF
        if op == _OPCODE_UD_SEND_ONLY:
            self._on_mad(body, src[0], dqp)
            return
        if op not in RC_REQUEST_OPCODES and op != _OPCODE_ACKNOWLEDGE:
            stats.dropped["bad_opcode"] += 1
            return
        entry = self._qps.get(dqp)
        if entry is None:
            stats.dropped["unknown_qp"] += 1
            return
        qp, peer_ip = entry
        if peer_ip != src[0]:
            stats.dropped["wrong_peer"] += 1
            return
        try:
            qp.on_packet(body, op, b1, w3, now)
        except (MalformedPacket, struct.error, ValueError, IndexError) as e:
            stats.dropped["malformed_" + type(e).__name__] += 1
            return
        touched.add(qp)

    def _on_mad(self, body: memoryview, peer_ip: str, dqp: int) -> None:
        stats = self.stats
        if dqp != 1:
            stats.dropped["ud_not_qp1"] += 1
            return
        if len(body) < BTH_LEN + DETH_LEN:
            stats.dropped["short"] += 1
            return
        qkey, _srcqp = struct.unpack_from("!II", body, BTH_LEN)
        if qkey != CM_QKEY:
            stats.dropped["bad_qkey"] += 1
            return
        try:
            tid, msg = decode_cm(body[BTH_LEN + DETH_LEN :])
        except (MalformedPacket, ValueError, struct.error):
            stats.dropped["bad_mad"] += 1
            return
        if self._on_cm is not None:
            self._on_cm(peer_ip, tid, msg)

    def set_cm_handler(self, handler: CmHandler) -> None:
        self._on_cm = handler

    def __repr__(self) -> str:
        return f"Endpoint({self.address}:{self.port})"


CPU_PRESSURE = "/proc/pressure/cpu"
SPIN_CPU_PRESSURE = 25.0
"""Busy-polling stays on while tasks waited for a CPU less than this share (%) of the last
10 s (`cpu_to_spare`). Two receivers spinning on an otherwise idle 2-CPU machine show ~1 %;
one more CPU-bound process there shows 50 % and more."""


def cpu_pressure(pressure: str | None = None) -> float | None:
    """This machine's CPU pressure (Linux PSI, `some avg10`: the share in % of the last 10 s
    in which some runnable task waited for a CPU), or None where it cannot be read."""
    try:
        with open(pressure or CPU_PRESSURE, "rb") as f:
            some = f.readline().split()  # b"some avg10=0.20 avg60=1.51 avg300=1.56 total=..."
        if some[0] == b"some" and some[1].startswith(b"avg10="):
            return float(some[1][6:])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_to_spare(pressure: str | None = None) -> bool:
    """Whether this machine has a CPU to spare for busy-polling receivers: its CPU pressure
    (`cpu_pressure`) is below SPIN_CPU_PRESSURE %. PSI sees contention as it happens and
    within ~10 s of its end, and a spinning receiver that yields between its polls adds none;
    the 1-minute load average, the fallback where PSI is missing (no /proc/pressure), counts
    the spinners themselves as load and lags a burst of work by minutes."""
    p = cpu_pressure(pressure)
    if p is not None:
        return p < SPIN_CPU_PRESSURE
    try:
        return os.getloadavg()[0] < (os.cpu_count() or 1)
    except OSError:
        return False


def _write_imm_len(n: int) -> int:
    """Bytes on the wire (UDP payload) of a one-packet RDMA WRITE WITH IMMEDIATE of `n`."""
    return BTH_LEN + RETH_LEN + 4 + n + (-n & 3) + ICRC_LEN


def _tx_error(err: int) -> str:
    """The drop counter of a send that failed with `err`, as `_transmit_now` names it."""
    return "tx_would_block" if err in (errno.EAGAIN, errno.EWOULDBLOCK) else f"tx_error_{err}"


_NR_NONE = _fastpath.NR_NONE
_RT_OK = _fastpath.RT_OK
_RT_FALLBACK = _fastpath.RT_FALLBACK
_RT_ERROR = _fastpath.RT_ERROR
_NR_ERROR = _fastpath.NR_ERROR

# Enum members used on the hot paths, looked up once (an IntEnum class attribute costs
# ~0.3 µs in CPython 3.11; a module global ~20 ns).
_OPCODE_ACKNOWLEDGE = Opcode.ACKNOWLEDGE
_OPCODE_RDMA_WRITE_MIDDLE = Opcode.RDMA_WRITE_MIDDLE
_OPCODE_UD_SEND_ONLY = Opcode.UD_SEND_ONLY
