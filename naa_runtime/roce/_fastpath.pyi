"""Type stubs of the compiled bulk and round-trip paths (naa_runtime/roce/_fastpath.c)."""

from collections.abc import Sequence
from typing import Any, Literal

MAX_SEGS: int
BURST_DRAINED: int
BURST_PENDING: int
BURST_ERROR: int
BURST_ACK_OWED: int
RT_OK: int
RT_FALLBACK: int
RT_TIMEOUT: int
RT_ERROR: int
NR_NONE: int
NR_DGRAM: int
NR_REQUEST: int
NR_ERROR: int

def crc32(data: bytes | bytearray | memoryview, value: int = 0, /) -> int: ...
def icrc(state: int, body: bytes | bytearray | memoryview, /) -> int: ...
def send_middle_run(
    fd: int,
    ip: bytes,
    port: int,
    op: int,
    dest_qp: int,
    first_psn: int,
    first_index: int,
    count: int,
    payload: bytes | bytearray | memoryview,
    mtu: int,
    ack_every: int,
    states: bytes,
    per_batch: int,
    /,
) -> tuple[int, int]: ...
def rx_middle_run(
    buf: bytes | bytearray | memoryview,
    nbytes: int,
    seg: int,
    first8: bytes,
    states: bytes | None,
    target: bytearray | memoryview,
    pos: int,
    max_run: int,
    psn: int,
    /,
) -> tuple[int, bool]: ...
def rx_burst(
    fd: int,
    buf: bytearray | memoryview,
    nbytes: int,
    seg: int,
    src_ip: bytes,
    src_port: int,
    first8: bytes,
    states: bytes | None,
    target: bytearray | memoryview,
    pos: int,
    room: int,
    psn: int,
    max_dgrams: int,
    ack: tuple[bytes, int, bytes] | None,
    /,
) -> tuple[int, int, int, int, int, int, bytes, int, int, int]: ...
def rpc_round_trip(
    fd: int,
    ip: bytes,
    out: Sequence[bytes | bytearray | memoryview],
    gso_seg: int,
    qpn: int,
    req_psn: int,
    epsn: int,
    ack_state: int,
    reply_state: int,
    reply_len: int,
    spin_ns: int,
    timeout_ns: int,
    rxbuf: bytearray,
    place: tuple[bytearray | memoryview, int, int] | None = None,
    held: Any = None,
    sample: bool = False,
    /,
) -> tuple[int, int, tuple[tuple[int, int, int, bytes, int], ...], int]: ...
def send_round_trip(
    fd: int, ip: bytes, out: bytes | bytearray | memoryview, gso_seg: int, /
) -> int: ...
def prefix_state(
    src: bytes, dst: bytes, sport: int, dport: int, udp_payload_len: int, ip_id: int = 0, /
) -> int: ...
def send_small(
    fd: int,
    ip: bytes,
    port: int,
    hdr: bytearray,
    payload: bytes | bytearray | memoryview,
    pad: int,
    state: int,
    /,
) -> int: ...
def naa_receive(
    fd: int,
    wake_fd: int,
    timeout_ms: int,
    spin_ns: int,
    buf: bytearray,
    qps: dict[int, tuple[Any, str]],
    local_ip: bytes,
    local_port: int,
    reply: bool = False,
    /,
) -> tuple[
    int,
    int,
    int,
    bytes,
    int,
    int,
    tuple[
        Any,
        int,
        int,
        int,
        int,
        int,
        int,
        int,
        Literal[True] | tuple[tuple[int, memoryview, int, int, int, int], int] | None,
    ]
    | None,
]: ...
def ack_step(
    qp: Any, psn: int, aeth: int, now: float, /
) -> tuple[tuple[int, bool, int], ...] | None: ...
def build_round_trip(
    req_state: int,
    ack_state: int,
    dqp_word: int,
    psn: int,
    payload: bytes | bytearray | memoryview,
    va: int,
    rkey: int,
    imm: int,
    ack_psn: int,
    aeth: int,
    /,
) -> bytes: ...
def send_write_imm(
    fd: int,
    ip: bytes,
    port: int,
    src_ip: bytes,
    src_port: int,
    dqp_word: int,
    psn: int,
    payload: bytes | bytearray | memoryview,
    va: int,
    rkey: int,
    imm: int,
    solicited: bool,
    /,
) -> int: ...
