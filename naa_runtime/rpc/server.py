"""The software NAA's RPC server: accepts CM connections into a fixed number of slots, runs
MRSP, then serves RPCs (PROTOCOL.md §3.3) by dispatching fn codes to kernels and writing every
output region back, the last write carrying the return code in bits 31..8 of the immediate.

Composed by `naaice runtime serve` (`naa_runtime.cli` / `naa_runtime.naa`) and by the tests and
benchmarks. `RpcServer` satisfies the `DataPlane` protocol of `naa_runtime.naa` (async
`start` / `stop` / `disconnect_all`) and is also a synchronous context manager.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from naa_runtime.kernels.base import ActivityObserver, Kernel, KernelLookup, KernelTimeout
from naa_runtime.mrsp import (
    RECEIVE_BUFFER,
    AEntry,
    MrFlags,
    MrspError,
    MrspErrorCode,
    decode_aar,
    encode_a,
    encode_err,
)
from naa_runtime.roce.cm import (
    REJ_REASON_CONSUMER,
    REJ_REASON_INVALID_SERVICE_ID,
    SERVER_OVERLOADED_PRIVATE_DATA,
    CmMessage,
    Drep,
    Dreq,
    Rej,
    Rep,
    Req,
    Rtu,
    port_of_service_id,
)
from naa_runtime.roce.endpoint import Endpoint, Impairment, TransportStats
from naa_runtime.roce.memory import Access, MemoryTable
from naa_runtime.roce.packets import PSN_MASK, ROCE_UDP_PORT
from naa_runtime.roce.qp import Completion, QueuePair, TransportConfig, WcOpcode, WcStatus

log = logging.getLogger(__name__)

NAA_SUCCESS = 0
KERNEL_TIMEOUT = 0x02
KERNEL_FAILED = 0x7E
"""Application return code for a kernel that raised (not a timeout)."""
UNKNOWN_FUNCTION = 0x7F
"""Application return code for an fn code no kernel is bound to (or a malformed immediate)."""

INLINE_KERNEL_SECONDS = 200e-6
"""Kernels whose last run took less than this run on the receive thread (lowest latency);
slower or unknown ones on the connection's own thread, so they never stall the transport.
Kernels that declare `inline = True` (see `naa_runtime.kernels.base.Kernel`) always run on
the receive thread, without the watchdog."""

_WR_MRSP = 1
_WR_RPC = 2


_RESULT_NAMES = {
    NAA_SUCCESS: "ok",
    KERNEL_TIMEOUT: "kernel_timeout",
    KERNEL_FAILED: "kernel_failed",
    UNKNOWN_FUNCTION: "unknown_function",
}


def result_name(code: int) -> str:
    return _RESULT_NAMES.get(code, "app_error")


@dataclass
class RpcStats:
    """Everything the management plane exports as metrics."""

    transport: TransportStats
    rpcs: Counter[tuple[int, str]] = field(default_factory=Counter)
    connections_accepted: int = 0
    connections_rejected: int = 0
    mrsp_errors: Counter[str] = field(default_factory=Counter)

    @property
    def packets_received(self) -> int:
        return self.transport.packets_rx

    @property
    def packets_sent(self) -> int:
        return self.transport.packets_tx

    @property
    def packets_malformed(self) -> int:
        return sum(self.transport.dropped.values())

    @property
    def bytes_received(self) -> int:
        return self.transport.bytes_rx

    @property
    def bytes_sent(self) -> int:
        return self.transport.bytes_tx

    @property
    def retransmits(self) -> int:
        return self.transport.retransmits

    @property
    def naks_sent(self) -> dict[str, int]:
        return dict(self.transport.naks_sent)

    @property
    def naks_received(self) -> dict[str, int]:
        return dict(self.transport.naks_received)

    @property
    def dropped(self) -> dict[str, int]:
        """Malformed or unusable datagrams dropped, by reason."""
        return dict(self.transport.dropped)


@dataclass
class _Region:
    flags: MrFlags
    buffer: bytearray
    host_va: int
    host_rkey: int
    naa_va: int
    naa_rkey: int


class _Connection:
    def __init__(self, server: RpcServer, *, peer_ip: str, req: Req, tid: int) -> None:
        self.server = server
        self.peer_ip = peer_ip
        self.remote_comm_id = req.local_comm_id
        self.local_comm_id = secrets.randbits(32)
        self.tid = tid
        self.memory = MemoryTable()
        self.completions: queue.SimpleQueue[Completion | None] = queue.SimpleQueue()
        self.closed = threading.Event()
        psn = secrets.randbits(24)
        ep = server.endpoint
        self.qp: QueuePair = ep.create_qp(
            peer_ip=peer_ip,
            peer_qpn=req.local_qpn,
            send_psn=psn,
            expect_psn=req.starting_psn & PSN_MASK,
            memory=self.memory,
            on_completion=self._on_completion,
        )
        self.qp.on_request = self._on_request
        self.mrsp_buffer = bytearray(RECEIVE_BUFFER)
        self.qp.post_recv(wr_id=_WR_MRSP, buffer=memoryview(self.mrsp_buffer))
        self.rep = Rep(
            local_comm_id=self.local_comm_id,
            remote_comm_id=self.remote_comm_id,
            local_qpn=self.qp.qpn,
            starting_psn=psn,
        )
        self.regions: list[_Region] = []
        self.thread = threading.Thread(
            target=self._run, name=f"naa-conn-{peer_ip}-{self.qp.qpn}", daemon=True
        )
        self.out_regions: list[_Region] = []
        self._reply_plan: list[tuple[memoryview, int, int]] = []
        self.inputs: list[memoryview] = []
        self.outputs: list[memoryview] = []
        self.in_bytes = 0
        self.out_bytes = 0
        self.serving = False
        self._rpc_lock = threading.Lock()
        self._recent: dict[int, float] = {}
        self.mrsp_done = False

    # --- completion plumbing -----------------------------------------------------------

    def _next(self, opcode: WcOpcode, *, deadline: float | None = None) -> Completion | None:
        """The next successful completion of `opcode`; None once the connection is closed
        (or, with `deadline`, once time.monotonic() passes it)."""
        while not self.closed.is_set():
            if deadline is not None and time.monotonic() > deadline:
                return None
            wait = 0.5 if deadline is None else max(0.001, min(0.5, deadline - time.monotonic()))
            try:
                c = self.completions.get(timeout=wait)
            except queue.Empty:
                continue
            if c is None:
                return None
            if c.status != _WCSTATUS_SUCCESS:
                if c.status != _WCSTATUS_WR_FLUSH_ERR:
                    log.warning(
                        "connection from %s: %s completion failed: %s",
                        self.peer_ip,
                        c.opcode.name,
                        c.status.name,
                    )
                continue
            if c.opcode == opcode:
                return c
        return None

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self.completions.put(None)
        self.server.endpoint.destroy_qp(self.qp)
        self.memory.clear()

    # --- the per-connection worker -----------------------------------------------------

    def _run(self) -> None:
        try:
            if self._mrsp():
                self._serve_rpcs()
        except Exception:  # a bug must not take the server down; log and drop the connection
            log.exception("connection from %s failed", self.peer_ip)
        finally:
            if not self.closed.is_set() and not self.mrsp_done:
                # A half-open connection (no AAR within the setup timeout) frees its slot.
                log.info(
                    "connection from %s: no MRSP within %.1f s, dropped",
                    self.peer_ip,
                    self.server.setup_timeout,
                )
                self.close()
            self.closed.wait()
            self.server._release(self)

    def _mrsp(self) -> bool:
        c = self._next(_WCOPCODE_RECV, deadline=time.monotonic() + self.server.setup_timeout)
        if c is None:
            return False
        self.mrsp_done = True
        data = bytes(self.mrsp_buffer[: c.byte_len])
        try:
            entries = decode_aar(data)
            total = sum(e.size for e in entries)
            if total > self.server.memory_bytes:
                raise MrspError(
                    MrspErrorCode.NOT_ENOUGH_MEMORY,
                    f"{total} bytes requested, NAA memory is {self.server.memory_bytes}",
                )
            for e in entries:
                if e.requested_addr + e.size > self.server.memory_bytes:
                    raise MrspError(
                        MrspErrorCode.NOT_ENOUGH_MEMORY,
                        f"region {e.requested_addr:#x}+{e.size} lies beyond NAA memory",
                    )
        except MrspError as err:
            self.server.stats.mrsp_errors[err.code.name.lower()] += 1
            log.info("MRSP from %s refused: %s", self.peer_ip, err)
            self.qp.post_send(wr_id=_WR_MRSP, data=encode_err(err.code), solicited=True)
            return False
        answer: list[AEntry] = []
        for e in entries:
            buf = bytearray(e.size)
            if e.flags & _MRFLAGS_INTERNAL:
                continue  # NAA-only scratch: allocated by kernels, never transferred
            mr = self.memory.register(
                buf, va=e.requested_addr, access=Access.LOCAL_WRITE | Access.REMOTE_WRITE
            )
            self.regions.append(
                _Region(
                    flags=e.flags,
                    buffer=buf,
                    host_va=e.host_va,
                    host_rkey=e.host_rkey,
                    naa_va=mr.va,
                    naa_rkey=mr.rkey,
                )
            )
            answer.append(AEntry(naa_va=mr.va, naa_rkey=mr.rkey, size=e.size))
        # The first RPC's receive is posted before the host can learn our regions: no RNR.
        self.qp.post_recv(wr_id=_WR_RPC)
        self.qp.post_send(wr_id=_WR_MRSP, data=encode_a(answer), solicited=True)
        return True

    def _reply(self, rc: int) -> None:
        """Write every output region back, the last write carrying `rc` in bits 31..8."""
        reply_imm = (rc & 0xFFFFFF) << 8
        plan = self._reply_plan
        if len(plan) == 1:  # the common case: one output region
            view, va, rkey = plan[0]
            self.qp.post_reply(_WR_RPC, view, va, rkey, reply_imm)
            return
        outs = self.out_regions
        if not outs:
            r0 = self.regions[0] if self.regions else None
            self.qp.post_write(
                wr_id=_WR_RPC,
                local=memoryview(b""),
                remote_va=r0.host_va if r0 else 0,
                rkey=r0.host_rkey if r0 else 0,
                imm=reply_imm,
                solicited=True,
            )
            return
        for i, r in enumerate(outs):
            last = i == len(outs) - 1
            self.qp.post_write(
                wr_id=_WR_RPC,
                local=memoryview(r.buffer),
                remote_va=r.host_va,
                rkey=r.host_rkey,
                imm=reply_imm if last else None,
                solicited=last,
            )

    def _on_completion(self, c: Completion) -> None:
        """Runs on the endpoint's receive thread. An RPC whose kernel declares itself inline,
        or recently finished within INLINE_KERNEL_SECONDS, runs right here (no thread
        hand-off: the latency path); all else goes to the connection's worker thread."""
        if self.serving and c.status == _WCSTATUS_SUCCESS:
            op = c.opcode
            if op == _WCOPCODE_RDMA_WRITE:
                return  # our reply writes completed: the worker has nothing to do (no wake-up)
            if op == _WCOPCODE_RECV_RDMA_WITH_IMM and self._rpc_lock.acquire(blocking=False):
                try:
                    imm = c.imm or 0
                    fn = imm & 0x7F
                    kernel = self.server.kernels(fn) if imm & 0x80 and fn else None
                    if kernel is not None and getattr(kernel, "inline", False):
                        self._run_inline(kernel, fn, imm)
                        return
                    if self._recent.get(fn, 1.0) < INLINE_KERNEL_SECONDS:
                        self._handle_rpc(c)
                        return
                finally:
                    self._rpc_lock.release()
        self.completions.put(c)

    def _on_request(self, imm: int) -> bool:
        """The QP's `on_request` (a request the compiled receive step took, on the receive
        thread): `_on_completion`'s inline-kernel case without building the `Completion`;
        False for anything else (`_on_completion` then gets it)."""
        if not self.serving or not self._rpc_lock.acquire(blocking=False):
            return False
        try:
            kernel = self._inline_kernel(imm)
            if kernel is None:
                return False
            self._run_inline(kernel, imm & 0x7F, imm)
            return True
        finally:
            self._rpc_lock.release()

    def _inline_kernel(self, imm: int) -> Kernel | None:
        """The kernel of an RPC with ImmDt `imm` if it declares itself inline, else None."""
        fn = imm & 0x7F
        kernel = self.server.kernels(fn) if imm & 0x80 and fn else None
        return kernel if kernel is not None and getattr(kernel, "inline", False) else None

    def _inline_reply(self, imm: int) -> tuple[int, memoryview, int, int, int, int] | bool | None:
        """The QP's `inline_reply` (one output region; on the receive thread, the request
        placed, its ACK held back to leave with the reply): `_on_request`'s case, but the
        reply, and the next RPC's receive behind it, are handed back to the QP to post
        (`naa_receive` sends the reply itself, no Python between the kernel and the send).
        None for anything else."""
        if not self.serving or not self._rpc_lock.acquire(blocking=False):
            return None
        try:
            kernel = self._inline_kernel(imm)
            if kernel is None:
                return None
            rc = self._inline_rc(kernel, imm & 0x7F, imm)
            if self.closed.is_set():
                self.qp.post_recv(wr_id=_WR_RPC)
                return True
            view, va, rkey = self._reply_plan[0]
            return _WR_RPC, view, va, rkey, (rc & 0xFFFFFF) << 8, _WR_RPC
        finally:
            self._rpc_lock.release()

    def _run_inline(self, kernel: Kernel, fn: int, imm: int) -> None:
        """An RPC whose kernel declared itself inline (it returns within microseconds and never
        blocks): run on the receive thread right after the request's ACK, without the watchdog
        (nothing to interrupt) and without the per-RPC bookkeeping of `_handle_rpc`."""
        rc = self._inline_rc(kernel, fn, imm)
        if not self.closed.is_set():
            self._reply(rc)
        # The next RPC's receive, after the reply (off the round trip): its request can only
        # be handled by this thread, once this returns, so it never finds the queue empty.
        self.qp.post_recv(wr_id=_WR_RPC)

    def _inline_rc(self, kernel: Kernel, fn: int, imm: int) -> int:
        """`_run_inline` up to its reply: the kernel run, timed against the deadline, reported
        to the observer and counted; its return code."""
        server = self.server
        obs = server.observer
        if obs is not None:
            obs.on_bytes(received=self.in_bytes, sent=self.out_bytes)
            obs.on_kernel_start(fn_code=fn)
        start = time.monotonic()
        rc = self._call_kernel(kernel, fn, imm, start + server.kernel_timeout)
        elapsed = time.monotonic() - start
        if rc == NAA_SUCCESS and elapsed > server.kernel_timeout:
            rc = KERNEL_TIMEOUT
        if obs is not None:
            obs.on_kernel_end(fn_code=fn, seconds=elapsed, return_code=rc)
        server.stats.rpcs[(fn, result_name(rc))] += 1
        return rc

    def _serve_rpcs(self) -> None:
        self.inputs = [memoryview(r.buffer) for r in self.regions if r.flags & _MRFLAGS_INPUT]
        self.outputs = [memoryview(r.buffer) for r in self.regions if r.flags & _MRFLAGS_OUTPUT]
        self.out_regions = [r for r in self.regions if r.flags & _MRFLAGS_OUTPUT]
        self._reply_plan = [
            (memoryview(r.buffer), r.host_va, r.host_rkey) for r in self.out_regions
        ]
        self.in_bytes = sum(len(v) for v in self.inputs)
        self.out_bytes = sum(len(v) for v in self.outputs)
        # Serving drops its reply writes' completions unread (`_on_completion`): post them
        # unsignaled, so their ACKs retire them without building one (the NAA's turnaround).
        self.qp.signal_writes = False
        if len(self._reply_plan) == 1:  # the common case: the reply can leave from C
            self.qp.inline_reply = self._inline_reply
        self.serving = True
        while True:
            c = self._next(_WCOPCODE_RECV_RDMA_WITH_IMM)
            if c is None:
                return
            with self._rpc_lock:
                self._handle_rpc(c)

    def _handle_rpc(self, c: Completion) -> None:
        server = self.server
        obs = server.observer
        imm = c.imm or 0
        # The next RPC's receive goes up before this reply can reach the host: no RNR.
        self.qp.post_recv(wr_id=_WR_RPC)
        fn = imm & 0x7F
        valid = bool(imm & 0x80) and fn != 0
        kernel = server.kernels(fn) if valid else None
        if obs is not None:
            obs.on_bytes(received=self.in_bytes, sent=self.out_bytes)
        if kernel is None:
            log.info("RPC from %s: no kernel bound to fn code %d", self.peer_ip, fn)
            self._finish(_Rpc(fn, time.monotonic()), UNKNOWN_FUNCTION)
            return
        start = time.monotonic()
        rpc = _Rpc(fn, start + server.kernel_timeout)
        if obs is not None:
            obs.on_kernel_start(fn_code=fn)
        # The server's watchdog answers KERNEL_TIMEOUT on the kernel's behalf if it overruns;
        # its late result is then dropped.
        server._watchdog.watch(rpc, self)
        try:
            rc = self._call_kernel(kernel, fn, imm, rpc.deadline)
        finally:
            server._watchdog.unwatch(rpc)
        elapsed = time.monotonic() - start
        self._recent[fn] = elapsed
        if rc == NAA_SUCCESS and elapsed > server.kernel_timeout:
            rc = KERNEL_TIMEOUT
        if obs is not None:
            obs.on_kernel_end(fn_code=fn, seconds=elapsed, return_code=rc)
        self._finish(rpc, rc)

    def _call_kernel(self, kernel: Kernel, fn: int, imm: int, deadline: float) -> int:
        """Run the kernel on this connection's regions; its return code, or KERNEL_TIMEOUT /
        KERNEL_FAILED (logged) if it raises."""
        try:
            return int(
                kernel(inputs=self.inputs, outputs=self.outputs, user=imm >> 8, deadline=deadline)
            )
        except KernelTimeout:
            return KERNEL_TIMEOUT
        except Exception:
            log.exception("kernel for fn code %d failed", fn)
            return KERNEL_FAILED

    def _finish(self, rpc: _Rpc, rc: int) -> None:
        """Reply once per RPC (the watchdog and the worker may race)."""
        with rpc.lock:
            if rpc.answered:
                return
            rpc.answered = True
        self.server.stats.rpcs[(rpc.fn, result_name(rc))] += 1
        if not self.closed.is_set():
            self._reply(rc)


class _Rpc:
    __slots__ = ("answered", "deadline", "fn", "lock")

    def __init__(self, fn: int, deadline: float) -> None:
        self.fn = fn
        self.deadline = deadline
        self.lock = threading.Lock()
        self.answered = False


class _Watchdog:
    """One thread per server that answers KERNEL_TIMEOUT for kernels past their deadline."""

    def __init__(self, *, start: bool, tick: float = 1.0) -> None:
        self._tick = tick
        self._cond = threading.Condition()
        self._watched: dict[_Rpc, _Connection] = {}
        self._wake_at: float | None = None
        self._running = start
        if start:
            threading.Thread(target=self._run, name="naa-kernel-watchdog", daemon=True).start()

    def watch(self, rpc: _Rpc, conn: _Connection) -> None:
        with self._cond:
            self._watched[rpc] = conn
            if self._wake_at is None or rpc.deadline < self._wake_at:
                # Only an earlier deadline needs the thread awake (deadlines mostly arrive in
                # order, so the latency path rarely pays for a wake-up).
                self._cond.notify()

    def unwatch(self, rpc: _Rpc) -> None:
        with self._cond:
            self._watched.pop(rpc, None)

    def stop(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._running:
                    return
                now = time.monotonic()
                due = [(r, c) for r, c in self._watched.items() if r.deadline <= now]
                for r, _ in due:
                    del self._watched[r]
                if not due:
                    # Wake at the earliest deadline, and at least every tick: an RPC watched
                    # later (its deadline is at least kernel_timeout > tick away) then never
                    # needs a notify, so the latency path does not wake this thread.
                    nxt = min((r.deadline for r in self._watched), default=now + self._tick)
                    wake = min(nxt, now + self._tick)
                    self._wake_at = wake
                    self._cond.wait(max(0.0, wake - now) + 0.001)
                    self._wake_at = None
                    continue
            for r, c in due:
                log.warning("kernel for fn code %d passed its deadline: KERNEL_TIMEOUT", r.fn)
                c._finish(r, KERNEL_TIMEOUT)


class RpcServer:
    """A software NAA's data plane on `address` (UDP 4791), accepting rdma_cm connections to
    the CM port `cm_port` into `slots` concurrent connections."""

    def __init__(
        self,
        *,
        address: str,
        port: int = ROCE_UDP_PORT,
        cm_port: int = 12345,
        kernels: KernelLookup,
        slots: int = 4,
        kernel_timeout: float = 60.0,
        observer: ActivityObserver | None = None,
        memory_bytes: int = 8 << 30,
        setup_timeout: float = 10.0,
        config: TransportConfig | None = None,
        impairment: Impairment | None = None,
    ) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        if kernel_timeout <= 0:
            raise ValueError("kernel_timeout must be positive (seconds)")
        self.address = address
        self.port = port
        self.cm_port = cm_port
        self.kernels = kernels
        self.slots = slots
        self.kernel_timeout = kernel_timeout
        self.observer = observer
        self.memory_bytes = memory_bytes
        self.setup_timeout = setup_timeout
        self.config = config or TransportConfig()
        self._impairment = impairment
        self._lock = threading.Lock()
        self._conns: dict[tuple[str, int], _Connection] = {}
        self._endpoint: Endpoint | None = None
        self._watchdog = _Watchdog(start=False)
        self.stats = RpcStats(transport=TransportStats())

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            raise RuntimeError("the RPC server is not started")
        return self._endpoint

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._conns)

    # --- lifecycle --------------------------------------------------------------------

    def open(self) -> None:
        """Bind the socket and start serving (synchronous)."""
        if self._endpoint is not None:
            return
        self._watchdog = _Watchdog(start=True, tick=min(1.0, self.kernel_timeout / 4))
        ep = Endpoint(
            address=self.address,
            port=self.port,
            config=self.config,
            impairment=self._impairment,
            on_cm=self._on_cm,
        )
        self._endpoint = ep
        self.stats.transport = ep.stats
        ep.start()

    def close(self) -> None:
        """Drop every connection and stop (synchronous)."""
        self.drop_connections()
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None
        self._watchdog.stop()

    def drop_connections(self) -> None:
        """Close every connection and forget it now (its worker thread's own release later
        finds it gone), so a scrub or a flash that returns sees no connection left."""
        with self._lock:
            conns = list(self._conns.values())
        for c in conns:
            c.close()
            self._release(c)

    async def start(self) -> None:
        self.open()

    async def stop(self) -> None:
        self.close()

    async def disconnect_all(self) -> None:
        self.drop_connections()

    def __enter__(self) -> RpcServer:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- connection management (runs on the endpoint's receive thread) ------------------

    def _on_cm(self, peer_ip: str, tid: int, msg: CmMessage) -> None:
        ep = self.endpoint
        if isinstance(msg, Req):
            self._on_req(peer_ip, tid, msg)
        elif isinstance(msg, Rtu):
            pass  # established: the worker already waits for the AAR
        elif isinstance(msg, Dreq):
            with self._lock:
                conn = next(
                    (
                        c
                        for c in self._conns.values()
                        if c.peer_ip == peer_ip and c.local_comm_id == msg.remote_comm_id
                    ),
                    None,
                )
            ep.send_mad(
                peer_ip,
                Drep(local_comm_id=msg.remote_comm_id, remote_comm_id=msg.local_comm_id),
                tid=tid,
            )
            if conn is not None:
                conn.close()

    def _on_req(self, peer_ip: str, tid: int, req: Req) -> None:
        ep = self.endpoint
        key = (peer_ip, req.local_comm_id)
        with self._lock:
            existing = self._conns.get(key)
            if existing is not None:  # a retransmitted REQ: our REP was lost
                ep.send_mad(peer_ip, existing.rep, tid=tid)
                return
            if port_of_service_id(req.service_id) != self.cm_port:
                self.stats.connections_rejected += 1
                ep.send_mad(
                    peer_ip,
                    Rej(
                        local_comm_id=0,
                        remote_comm_id=req.local_comm_id,
                        reason=REJ_REASON_INVALID_SERVICE_ID,
                    ),
                    tid=tid,
                )
                return
            if len(self._conns) >= self.slots:
                self.stats.connections_rejected += 1
                ep.send_mad(
                    peer_ip,
                    Rej(
                        local_comm_id=0,
                        remote_comm_id=req.local_comm_id,
                        reason=REJ_REASON_CONSUMER,
                        private_data=SERVER_OVERLOADED_PRIVATE_DATA,
                    ),
                    tid=tid,
                )
                return
            conn = _Connection(self, peer_ip=peer_ip, req=req, tid=tid)
            if req.mtu < self.config.mtu:
                conn.qp.config = dataclasses.replace(self.config, mtu=req.mtu)
            self._conns[key] = conn
            self.stats.connections_accepted += 1
        if self.observer is not None:
            self.observer.on_connection(opened=True)
        conn.thread.start()
        ep.send_mad(peer_ip, conn.rep, tid=tid)

    def _release(self, conn: _Connection) -> None:
        key = (conn.peer_ip, conn.remote_comm_id)
        with self._lock:
            # Only this connection: a new one may hold the same key by now.
            removed = self._conns.pop(key) if self._conns.get(key) is conn else None
        if removed is not None and self.observer is not None:
            self.observer.on_connection(opened=False)

    def region_snapshot(self, peer_ip: str) -> list[bytes]:
        """Copies of the NAA-side regions of the connection from `peer_ip` (diagnostics)."""
        with self._lock:
            conn = next((c for c in self._conns.values() if c.peer_ip == peer_ip), None)
        if conn is None:
            raise LookupError(f"no connection from {peer_ip}")
        return [bytes(r.buffer) for r in conn.regions]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once no connection is active (tests and graceful shutdown)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.active_connections == 0:
                return True
            time.sleep(0.01)
        return self.active_connections == 0


# Enum members used on the hot paths, looked up once (an IntEnum class attribute costs
# ~0.3 µs in CPython 3.11; a module global ~20 ns).
_MRFLAGS_INPUT = MrFlags.INPUT
_MRFLAGS_INTERNAL = MrFlags.INTERNAL
_MRFLAGS_OUTPUT = MrFlags.OUTPUT
_WCOPCODE_RDMA_WRITE = WcOpcode.RDMA_WRITE
_WCOPCODE_RECV = WcOpcode.RECV
_WCOPCODE_RECV_RDMA_WITH_IMM = WcOpcode.RECV_RDMA_WITH_IMM
_WCSTATUS_SUCCESS = WcStatus.SUCCESS
_WCSTATUS_WR_FLUSH_ERR = WcStatus.WR_FLUSH_ERR
