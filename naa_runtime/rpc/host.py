"""The host side of the NAAICE RPC: connect with CM (REQ → REP → RTU), register the host's
memory regions, run MRSP, post RPCs (input writes in index order, the last one
WRITE_WITH_IMM carrying 0x80|fn), track the reply, disconnect (DREQ → DREP).

`naa_runtime.client` builds the five-call API on `HostConnection`; tests and benchmarks use it
directly. Endpoints are shared per local address (one "RDMA device" per IP, several QPs).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from naa_runtime.mrsp import (
    AarEntry,
    AEntry,
    MrFlags,
    MrspError,
    MrspErrorCode,
    decode_answer,
    encode_aar,
)
from naa_runtime.roce.cm import (
    REJ_REASON_CONSUMER,
    CmMessage,
    Drep,
    Dreq,
    Rej,
    Rep,
    Req,
    Rtu,
    service_id,
)
from naa_runtime.roce.endpoint import Endpoint, Impairment
from naa_runtime.roce.memory import Access, MemoryRegion, MemoryTable, as_byte_view
from naa_runtime.roce.packets import ROCE_UDP_PORT
from naa_runtime.roce.qp import Completion, QueuePair, TransportConfig, WcOpcode, WcStatus

NAA_PAGE_WIDTH = 4096
MRSP_HOST_BUFFER = 768
"""The host's MRSP receive buffer, as in the NAAICE library (PROTOCOL.md §1.5)."""


class State(IntEnum):
    """Connection states, numbered as the NAAICE library's enum (PROTOCOL.md §1.4)."""

    INIT = 0
    READY = 1
    CONNECTED = 2
    DISCONNECTED = 3
    MRSP_SENDING = 10
    MRSP_RECEIVING = 11
    MRSP_DONE = 12
    DATA_SENDING = 20
    CALCULATING = 21
    DATA_RECEIVING = 22
    FINISHED = 30
    ERROR = 40


class HostError(Exception):
    """Base of the host side's errors."""


class ConnectError(HostError):
    """The NAA did not accept the connection (unreachable, rejected, or no slot free)."""


class TransferError(HostError):
    """A transfer failed (the NAA refused a write, or retries were exhausted)."""


@dataclass(frozen=True)
class Region:
    """A host memory region for MRSP: `view` is its writable byte view."""

    view: memoryview
    flags: MrFlags
    requested_addr: int = 0
    send_bytes: int | None = None


def buffer_address(view: memoryview) -> int:
    """The virtual address of a buffer's first byte (its published address in MRSP)."""
    if view.nbytes == 0:
        return 0
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def route_source_address(naa_address: str) -> str:
    """The local address the kernel routes towards `naa_address` from (like rdma_resolve_addr)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((naa_address, ROCE_UDP_PORT))
        return str(s.getsockname()[0])


class _Device:
    """A shared endpoint for one local address, demultiplexing CM replies by comm id."""

    def __init__(self, address: str, config: TransportConfig, impairment: Impairment | None):
        self.endpoint = Endpoint(
            address=address, config=config, impairment=impairment, on_cm=self._on_cm
        )
        self.impairment = impairment
        self.waiters: dict[int, HostConnection] = {}
        self.refs = 0
        self.endpoint.start()

    def _on_cm(self, peer_ip: str, tid: int, msg: CmMessage) -> None:
        if isinstance(msg, Rep | Rej | Drep):
            conn = self.waiters.get(msg.remote_comm_id)
            if conn is not None:
                conn._on_cm(msg, tid)
        elif isinstance(msg, Dreq):  # the NAA never disconnects first, but answer politely
            self.endpoint.send_mad(
                peer_ip,
                Drep(local_comm_id=msg.remote_comm_id, remote_comm_id=msg.local_comm_id),
                tid=tid,
            )


_devices: dict[str, _Device] = {}
_devices_lock = threading.Lock()


def _acquire_device(
    address: str, config: TransportConfig, impairment: Impairment | None
) -> _Device:
    with _devices_lock:
        dev = _devices.get(address)
        if dev is None:
            dev = _Device(address, config, impairment)
            _devices[address] = dev
        elif dev.endpoint.config != config or dev.impairment != impairment:
            raise HostError(
                f"local address {address} is already used by connections with another transport "
                "configuration or impairment; use the same settings or another local address"
            )
        dev.refs += 1
        return dev


def _release_device(dev: _Device) -> None:
    with _devices_lock:
        dev.refs -= 1
        if dev.refs <= 0:
            _devices.pop(dev.endpoint.address, None)
            dev.endpoint.stop()


class HostConnection:
    """One RC connection from this host to an NAA, with its regions and RPC state."""

    def __init__(
        self,
        *,
        naa_address: str,
        cm_port: int = 12345,
        local_address: str | None = None,
        config: TransportConfig | None = None,
        impairment: Impairment | None = None,
        cm_timeout: float = 0.25,
        cm_retries: int = 15,
    ) -> None:
        self.naa_address = naa_address
        self.cm_port = cm_port
        self.local_address = (
            local_address or os.environ.get("NAA_LOCAL_IP") or route_source_address(naa_address)
        )
        self.config = config or TransportConfig()
        self._impairment = impairment
        self.cm_timeout = cm_timeout
        self.cm_retries = cm_retries
        self.state = _STATE_INIT
        self.error: str | None = None
        self.memory = MemoryTable()
        self.regions: list[Region] = []
        self.host_mrs: list[MemoryRegion] = []
        self.naa_regions: list[AEntry] = []
        self.rpc_count = 0
        self.return_code = 0
        self.bytes_received = 0
        # the condition's lock, held directly on the compiled round trip's path (`with` on
        # an RLock is C; on a Condition it is a Python-level __enter__/__exit__)
        self._cond_lock = threading.RLock()
        self._cond = threading.Condition(self._cond_lock)
        self._cm_reply: CmMessage | None = None
        self._local_comm_id = secrets.randbits(32) or 1
        self._remote_comm_id = 0
        self._device: _Device | None = None
        self.qp: QueuePair | None = None
        self._pending_writes = 0
        self._reply: Completion | None = None
        self._mrsp_buf = bytearray(MRSP_HOST_BUFFER)
        self._mrsp_recv: Completion | None = None
        self._mrsp_sent = False
        self._raw: list[Completion] = []
        self._inputs_first: list[int] = []
        self._inputs_again: list[int] = []
        self._fast_outputs: list[int] = []
        self._plans: dict[bool, _Plan | None] = {}

    # ------------------------------------------------------------------- connection

    def _on_cm(self, msg: CmMessage, tid: int) -> None:
        with self._cond:
            if isinstance(msg, Rep) and self.qp is not None and self.state >= _STATE_CONNECTED:
                # Our RTU was lost and the NAA retransmitted its REP: answer again.
                assert self._device is not None
                self._device.endpoint.send_mad(
                    self.naa_address,
                    Rtu(local_comm_id=self._local_comm_id, remote_comm_id=msg.local_comm_id),
                    tid=tid,
                )
                return
            self._cm_reply = msg
            self._cond.notify_all()

    def _current_cm_reply(self) -> CmMessage | None:
        return self._cm_reply

    def _cm_exchange(self, send: CmMessage, want: tuple[type, ...]) -> CmMessage:
        assert self._device is not None
        ep = self._device.endpoint
        tid = secrets.randbits(64)
        with self._cond:
            self._cm_reply = None
            for _ in range(self.cm_retries + 1):
                ep.send_mad(self.naa_address, send, tid=tid)
                end = time.monotonic() + self.cm_timeout
                while (reply := self._current_cm_reply()) is None or not isinstance(reply, want):
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    return reply
        raise ConnectError(
            f"no CM answer from {self.naa_address} (port {self.cm_port}) after "
            f"{self.cm_retries + 1} attempts; is an NAA serving there?"
        )

    def connect(self) -> None:
        dev = _acquire_device(self.local_address, self.config, self._impairment)
        self._device = dev
        dev.waiters[self._local_comm_id] = self
        ep = dev.endpoint
        qpn = ep.reserve_qpn()
        psn = secrets.randbits(24)
        self.state = _STATE_READY
        req = Req(
            local_comm_id=self._local_comm_id,
            service_id=service_id(self.cm_port),
            local_qpn=qpn,
            starting_psn=psn,
            src_ip=self.local_address,
            dst_ip=self.naa_address,
            mtu=self.config.mtu,
            rnr_retry_count=self.config.rnr_retry_count,
            retry_count=self.config.retry_count,
        )
        try:
            reply = self._cm_exchange(req, (Rep, Rej))
        except ConnectError:
            self._teardown()
            raise
        if isinstance(reply, Rej):
            self._teardown()
            why = (
                "no free slot (server overloaded)"
                if reply.reason == REJ_REASON_CONSUMER
                else (f"reason {reply.reason}")
            )
            raise ConnectError(f"the NAA at {self.naa_address} rejected the connection: {why}")
        assert isinstance(reply, Rep)
        self._remote_comm_id = reply.local_comm_id
        self.qp = ep.create_qp(
            peer_ip=self.naa_address,
            peer_qpn=reply.local_qpn,
            send_psn=psn,
            expect_psn=reply.starting_psn,
            memory=self.memory,
            on_completion=self._on_completion,
            qpn=qpn,
        )
        self.qp.config = dataclasses.replace(self.qp.config, ack_before_completion=False)
        ep.send_mad(
            self.naa_address,
            Rtu(local_comm_id=self._local_comm_id, remote_comm_id=reply.local_comm_id),
            tid=0,
        )
        self.state = _STATE_CONNECTED

    def _teardown(self) -> None:
        dev = self._device
        if dev is None:
            return
        dev.waiters.pop(self._local_comm_id, None)
        if self.qp is not None:
            dev.endpoint.destroy_qp(self.qp)
        self._device = None
        _release_device(dev)

    def disconnect(self) -> None:
        """DREQ → DREP (the host is the only side that disconnects), then release everything."""
        if self._device is None:
            return
        try:
            if self.qp is not None:
                self.qp.flush_ack()  # a coalesced ACK of the last reply goes before the DREQ
                self._cm_exchange(
                    Dreq(
                        local_comm_id=self._local_comm_id,
                        remote_comm_id=self._remote_comm_id,
                        remote_qpn=self.qp.peer_qpn,
                    ),
                    (Drep,),
                )
        except ConnectError:
            pass  # the NAA is gone; nothing more to tell it
        finally:
            self._teardown()
            self.memory.clear()
            self.state = _STATE_DISCONNECTED

    # ------------------------------------------------------------------- completions

    def _on_completion(self, c: Completion) -> None:
        with self._cond:
            if c.wr_id >= 1000:
                self._raw.append(c)
            elif c.status != _WCSTATUS_SUCCESS:
                if c.status != _WCSTATUS_WR_FLUSH_ERR or self.state != _STATE_ERROR:
                    self.error = f"{c.opcode.name} failed: {c.status.name}"
                self.state = _STATE_ERROR
            elif c.wr_id == 1:  # MRSP
                if c.opcode == _WCOPCODE_SEND:
                    self._mrsp_sent = True
                elif c.opcode == _WCOPCODE_RECV:
                    self._mrsp_recv = c
                if self._mrsp_sent and self.state == _STATE_MRSP_SENDING:
                    self.state = _STATE_MRSP_RECEIVING
            elif c.wr_id == 2:  # RPC
                if c.opcode == _WCOPCODE_RDMA_WRITE:
                    self._pending_writes -= 1
                elif c.opcode == _WCOPCODE_RECV_RDMA_WITH_IMM:
                    self._reply = c
                self._advance()
            self._cond.notify_all()

    def _advance(self) -> None:
        if self.state not in (_STATE_DATA_SENDING, _STATE_DATA_RECEIVING):
            return
        if self._pending_writes == 0:
            self.state = _STATE_DATA_RECEIVING
            if self._reply is not None:
                # Finished only once our own writes completed (PROTOCOL.md §3.5): a reply that
                # overtakes a lost ACK waits for it instead of failing.
                self.return_code = (self._reply.imm or 0) >> 8
                self.bytes_received = self._reply.byte_len
                self.state = _STATE_FINISHED

    # -------------------------------------------------------------------------- MRSP

    def register(self, regions: list[Region]) -> None:
        self._plans.clear()
        self.regions = list(regions)
        inputs = [i for i, r in enumerate(self.regions) if r.flags & _MRFLAGS_INPUT]
        self._inputs_first = inputs
        self._inputs_again = [i for i in inputs if not self.regions[i].flags & _MRFLAGS_SINGLESEND]
        self._fast_outputs = [i for i, r in enumerate(self.regions) if r.flags & _MRFLAGS_OUTPUT]
        self.host_mrs = [
            self.memory.register(
                r.view, va=buffer_address(r.view), access=Access.LOCAL_WRITE | Access.REMOTE_WRITE
            )
            for r in self.regions
        ]

    def mrsp(self, *, timeout: float = 3600.0) -> None:
        qp = self._need_qp()
        entries = [
            AarEntry(
                flags=r.flags,
                requested_addr=r.requested_addr,
                host_va=mr.va,
                host_rkey=mr.rkey,
                size=r.view.nbytes,
            )
            for r, mr in zip(self.regions, self.host_mrs, strict=True)
        ]
        with self._cond:
            self.state = _STATE_MRSP_SENDING
        qp.post_recv(wr_id=1, buffer=memoryview(self._mrsp_buf))
        qp.post_send(wr_id=1, data=encode_aar(entries), solicited=True)
        end = time.monotonic() + timeout
        with self._cond:
            while (got := self._mrsp_recv) is None and not self._failed():
                left = end - time.monotonic()
                if left <= 0:
                    raise TransferError("MRSP timed out waiting for the NAA's answer")
                self._cond.wait(left)
            if got is None or self._failed():
                raise TransferError(f"MRSP failed: {self.error}")
            while not self._mrsp_sent and not self._failed():
                self._cond.wait(0.1)
            data = bytes(self._mrsp_buf[: got.byte_len])
        try:
            answer = decode_answer(data)
        except MrspError:
            self.state = _STATE_ERROR
            raise
        if len(answer) != len(self.regions):
            self.state = _STATE_ERROR
            raise MrspError(
                MrspErrorCode.NOT_ENOUGH_MEMORY,
                f"the NAA answered {len(answer)} regions for {len(self.regions)} requested",
            )
        self._plans.clear()
        self.naa_regions = answer
        self.state = _STATE_MRSP_DONE

    def _failed(self) -> bool:
        return self.state == _STATE_ERROR

    def _need_qp(self) -> QueuePair:
        if self.qp is None:
            raise HostError("not connected: call connect() first")
        return self.qp

    # --------------------------------------------------------------------------- RPC

    def invoke(self, fn_code: int, *, user: int = 0) -> None:
        """Post one RPC (non-blocking): a zero-length receive for the reply, then one write per
        input region in index order, the last WRITE_WITH_IMM (SE) with 0x80|fn_code."""
        qp = self._check_invoke(fn_code)
        dev = self._device
        ep = dev.endpoint if dev is not None else None
        if ep is not None:
            ep.cork()
        try:
            self._post_rpc(qp, fn_code, user)
        finally:
            if ep is not None:
                ep.uncork()

    def _check_invoke(self, fn_code: int) -> QueuePair:
        if not 1 <= fn_code <= 127:
            raise ValueError(f"fn code {fn_code} is outside 1..127 (bit 7 marks host→NAA)")
        qp = self._need_qp()
        if self.state not in (_STATE_MRSP_DONE, _STATE_FINISHED):
            raise HostError(f"cannot invoke in state {self.state.name}")
        return qp

    def _post_rpc(self, qp: QueuePair, fn_code: int, user: int) -> None:
        with self._cond:
            if self.state not in (_STATE_MRSP_DONE, _STATE_FINISHED):
                raise HostError(f"cannot invoke in state {self.state.name}")
            self.state = _STATE_DATA_SENDING
            self._reply = None
            imm = ((user & 0xFFFFFF) << 8) | 0x80 | fn_code
            send = self._inputs_first if self.rpc_count == 0 else self._inputs_again
            self._pending_writes = max(1, len(send))
            self.rpc_count += 1
        qp.post_recv(wr_id=2)
        if not send:
            a0 = self.naa_regions[0]
            qp.post_write(
                wr_id=2,
                local=memoryview(b""),
                remote_va=a0.naa_va,
                rkey=a0.naa_rkey,
                imm=imm,
                solicited=True,
            )
        for k, i in enumerate(send):
            r = self.regions[i]
            a = self.naa_regions[i]
            n = r.view.nbytes if r.send_bytes is None else r.send_bytes
            last = k == len(send) - 1
            qp.post_write(
                wr_id=2,
                local=r.view[:n],
                remote_va=a.naa_va,
                rkey=a.naa_rkey,
                imm=imm if last else None,
                solicited=last,
            )
        dev = self._device
        if dev is not None:
            # The ACK of the previous reply (deferred by drive) rides behind the request:
            # one GSO send, and the NAA reads both in one wake-up.
            dev.endpoint.flush_deferred_acks()

    def _fast_plan(self) -> _Plan | None:
        """What the compiled round trip (`Endpoint.rpc_call`) needs if this RPC can take it:
        one input region to send, of at most one MTU (the request: local view, NAA address,
        NAA rkey) and one output region (the reply's target: view, address, rkey); else
        None. Worked out once per registration and MRSP answer, for the first RPC and for
        the later ones (SINGLESEND regions are sent by the first only)."""
        first = self.rpc_count == 0
        try:
            return self._plans[first]
        except KeyError:
            plan = self._plans[first] = self._make_fast_plan()
            return plan

    def _make_fast_plan(self) -> _Plan | None:
        if not self.config.fast_round_trip or len(self._fast_outputs) != 1:
            return None
        send = self._inputs_first if self.rpc_count == 0 else self._inputs_again
        if len(send) != 1:
            return None
        i = send[0]
        r = self.regions[i]
        n = r.view.nbytes if r.send_bytes is None else r.send_bytes
        if n > self.config.mtu:
            return None
        a = self.naa_regions[i]
        o = self._fast_outputs[0]
        mr = self.host_mrs[o]
        return r.view[:n], a.naa_va, a.naa_rkey, self.regions[o].view, mr.va, mr.rkey

    def _on_fast_reply(self, imm: int, nbytes: int) -> bool:
        """`Endpoint.rpc_call`'s report of a round trip finished in C: the request's write
        completed and the reply (`imm`, `nbytes` bytes placed) arrived, which
        `_on_completion` would record from the two completions; it does so itself if the
        connection is not in the state `call` left it in. Returns `_rpc_done()`."""
        with self._cond_lock:
            if self._pending_writes == 1 and self.state is _STATE_DATA_SENDING:
                self._pending_writes = 0
                self._reply = None
                self.return_code = imm >> 8
                self.bytes_received = nbytes
                self.state = _STATE_FINISHED
                self._cond.notify_all()
                return True
        self._on_completion(
            Completion(opcode=_WCOPCODE_RDMA_WRITE, status=_WCSTATUS_SUCCESS, wr_id=2, byte_len=0)
        )
        self._on_completion(
            Completion(
                opcode=_WCOPCODE_RECV_RDMA_WITH_IMM,
                status=_WCSTATUS_SUCCESS,
                wr_id=2,
                byte_len=nbytes,
                imm=imm,
                solicited=True,
            )
        )
        return self._rpc_done()

    def _rpc_done(self) -> bool:
        return self.state not in (_STATE_DATA_SENDING, _STATE_DATA_RECEIVING)

    def wait(self, timeout: float | None = None) -> State:
        """Block until the RPC finished or failed (or `timeout` passed); the current state.
        The waiting thread receives the packets itself (`Endpoint.drive`): no hand-off from
        the receive thread on the latency path."""
        end = None if timeout is None else time.monotonic() + timeout
        self._wait_until(
            lambda: self.state not in (_STATE_DATA_SENDING, _STATE_DATA_RECEIVING), end
        )
        return self.state

    def _wait_until(self, done: Callable[[], bool], end: float | None) -> None:
        """Until `done()` or time.monotonic() passes `end`: drive the endpoint on this thread,
        or, while another caller drives it, sleep on our condition (its callbacks notify)."""
        dev = self._device
        while not done():
            now = time.monotonic()
            if end is not None and now >= end:
                return
            if dev is not None and dev.endpoint.drive(done, end):
                continue
            with self._cond:
                if not done():
                    left = 0.001 if end is None else min(0.001, end - now)
                    self._cond.wait(max(0.0, left))

    def call(self, fn_code: int, *, user: int = 0, timeout: float | None = None) -> int:
        """invoke + wait; the NAA's return code. Raises TransferError if the RPC failed.
        A small RPC (one input region of at most one MTU, one output region of at most one
        MTU) takes the compiled round trip of `Endpoint.rpc_call` when the connection is
        idle; anything unusual on the way goes on through the per-packet path and `wait`."""
        end = None if timeout is None else time.monotonic() + timeout
        # _check_invoke, inline
        if not 1 <= fn_code <= 127:
            raise ValueError(f"fn code {fn_code} is outside 1..127 (bit 7 marks host→NAA)")
        qp = self.qp
        if qp is None:
            raise HostError("not connected: call connect() first")
        st = self.state
        if st is not _STATE_MRSP_DONE and st is not _STATE_FINISHED:
            raise HostError(f"cannot invoke in state {st.name}")
        try:  # _fast_plan, inline
            plan = self._plans[self.rpc_count == 0]
        except KeyError:
            plan = self._fast_plan()
        dev = self._device
        posted = False
        if plan is not None and dev is not None:
            with self._cond_lock:
                before = self.state
                if before is not _STATE_MRSP_DONE and before is not _STATE_FINISHED:
                    raise HostError(f"cannot invoke in state {before.name}")
                self.state = _STATE_DATA_SENDING
                self._reply = None
                self._pending_writes = 1
                self.rpc_count += 1
            local, va, rkey, target, target_va, target_rkey = plan
            posted = dev.endpoint.rpc_call(  # by position: wr_id, local, remote_va, rkey, imm,
                qp,  # target, target_va, target_rkey, on_completion, done, deadline, on_reply
                2,
                local,
                va,
                rkey,
                ((user & 0xFFFFFF) << 8) | 0x80 | fn_code,
                target,
                target_va,
                target_rkey,
                self._on_completion,
                self._rpc_done,
                end,
                self._on_fast_reply,
            )
            if posted:
                if self.state == _STATE_FINISHED:  # as wait() would find it
                    return self.return_code
            else:  # not applicable now: post it the usual way
                with self._cond:
                    self.state = before
                    self.rpc_count -= 1
        if not posted:
            self.invoke(fn_code, user=user)
        st = self.wait(None if end is None else max(0.0, end - time.monotonic()))
        if st == _STATE_ERROR:
            raise TransferError(f"RPC fn {fn_code} failed: {self.error}")
        if st != _STATE_FINISHED:
            raise TransferError(f"RPC fn {fn_code} did not finish within {timeout} s")
        return self.return_code

    # ---------------------------------------------------------------- raw transport

    def raw_write(
        self,
        *,
        local: memoryview,
        remote_va: int,
        rkey: int,
        imm: int | None = None,
        timeout: float = 5.0,
    ) -> Completion:
        """Post one RDMA WRITE outside the RPC protocol and wait for its completion (tests)."""
        qp = self._need_qp()
        with self._cond:
            self._raw.clear()
        qp.post_write(wr_id=1000, local=local, remote_va=remote_va, rkey=rkey, imm=imm)
        end = time.monotonic() + timeout
        with self._cond:
            while not self._raw:
                left = end - time.monotonic()
                if left <= 0:
                    raise TransferError("raw write did not complete")
                self._cond.wait(left)
            return self._raw[0]


_Plan = tuple[memoryview, int, int, memoryview, int, int]
"""A compiled round trip's request (local view, NAA address, NAA rkey) and reply target
(view, host address, host rkey): `HostConnection._fast_plan`."""


def byte_region(buffer: object, flags: MrFlags, *, requested_addr: int = 0) -> Region:
    return Region(view=as_byte_view(buffer), flags=flags, requested_addr=requested_addr)


# Enum members used on the hot paths, looked up once (an IntEnum class attribute costs
# ~0.3 µs in CPython 3.11; a module global ~20 ns).
_MRFLAGS_INPUT = MrFlags.INPUT
_MRFLAGS_OUTPUT = MrFlags.OUTPUT
_MRFLAGS_SINGLESEND = MrFlags.SINGLESEND
_STATE_CONNECTED = State.CONNECTED
_STATE_DATA_RECEIVING = State.DATA_RECEIVING
_STATE_DATA_SENDING = State.DATA_SENDING
_STATE_DISCONNECTED = State.DISCONNECTED
_STATE_ERROR = State.ERROR
_STATE_FINISHED = State.FINISHED
_STATE_INIT = State.INIT
_STATE_MRSP_DONE = State.MRSP_DONE
_STATE_MRSP_RECEIVING = State.MRSP_RECEIVING
_STATE_MRSP_SENDING = State.MRSP_SENDING
_STATE_READY = State.READY
_WCOPCODE_RDMA_WRITE = WcOpcode.RDMA_WRITE
_WCOPCODE_RECV = WcOpcode.RECV
_WCOPCODE_RECV_RDMA_WITH_IMM = WcOpcode.RECV_RDMA_WITH_IMM
_WCOPCODE_SEND = WcOpcode.SEND
_WCSTATUS_SUCCESS = WcStatus.SUCCESS
_WCSTATUS_WR_FLUSH_ERR = WcStatus.WR_FLUSH_ERR
