"""RoCEv2 packet codec: BTH, RETH, ImmDt, AETH and DETH layouts, opcodes, AETH syndromes,
and the invariant CRC (ICRC).

Pure functions and small immutable records, no sockets. Called by the queue pairs
(`naa_runtime.roce.qp`), the endpoint's transmit/receive paths and the CM codec.
Layouts follow IBTA vol. 1 ch. 9 and Annex A17 (RoCEv2), as summarised in PROTOCOL.md §5.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

ROCE_UDP_PORT = 4791
"""The only UDP port RoCEv2 uses (destination; the source port is per-flow entropy)."""

DEFAULT_PKEY = 0xFFFF
CM_QKEY = 0x80010000
"""Q_Key of the general services interface (QP1), used by every CM MAD."""

PSN_MASK = 0xFFFFFF
PSN_HALF = 0x800000

BTH_LEN = 12
RETH_LEN = 16
AETH_LEN = 4
DETH_LEN = 8
IMM_LEN = 4
ICRC_LEN = 4


class Opcode(IntEnum):
    """BTH opcodes this implementation emits or understands (RC = 0x00.., UD = 0x60..)."""

    SEND_FIRST = 0x00
    SEND_MIDDLE = 0x01
    SEND_LAST = 0x02
    SEND_ONLY = 0x04
    RDMA_WRITE_FIRST = 0x06
    RDMA_WRITE_MIDDLE = 0x07
    RDMA_WRITE_LAST = 0x08
    RDMA_WRITE_LAST_WITH_IMMEDIATE = 0x09
    RDMA_WRITE_ONLY = 0x0A
    RDMA_WRITE_ONLY_WITH_IMMEDIATE = 0x0B
    ACKNOWLEDGE = 0x11
    UD_SEND_ONLY = 0x64


RC_REQUEST_OPCODES = frozenset(
    {
        Opcode.SEND_FIRST,
        Opcode.SEND_MIDDLE,
        Opcode.SEND_LAST,
        Opcode.SEND_ONLY,
        Opcode.RDMA_WRITE_FIRST,
        Opcode.RDMA_WRITE_MIDDLE,
        Opcode.RDMA_WRITE_LAST,
        Opcode.RDMA_WRITE_LAST_WITH_IMMEDIATE,
        Opcode.RDMA_WRITE_ONLY,
        Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
    }
)
HAS_RETH = frozenset(
    {Opcode.RDMA_WRITE_FIRST, Opcode.RDMA_WRITE_ONLY, Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE}
)
HAS_IMM = frozenset({Opcode.RDMA_WRITE_LAST_WITH_IMMEDIATE, Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE})
STARTS_MESSAGE = frozenset(
    {
        Opcode.SEND_FIRST,
        Opcode.SEND_ONLY,
        Opcode.RDMA_WRITE_FIRST,
        Opcode.RDMA_WRITE_ONLY,
        Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
    }
)
ENDS_MESSAGE = frozenset(
    {
        Opcode.SEND_LAST,
        Opcode.SEND_ONLY,
        Opcode.RDMA_WRITE_LAST,
        Opcode.RDMA_WRITE_LAST_WITH_IMMEDIATE,
        Opcode.RDMA_WRITE_ONLY,
        Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE,
    }
)


class Syndrome(IntEnum):
    """AETH syndromes: bits 7..5 select ACK / RNR NAK / NAK; the low bits are the credit
    count, the RNR timer code or the NAK code."""

    ACK_UNLIMITED = 0x1F
    RNR_NAK = 0x20
    NAK_PSN_SEQUENCE_ERROR = 0x60
    NAK_INVALID_REQUEST = 0x61
    NAK_REMOTE_ACCESS_ERROR = 0x62
    NAK_REMOTE_OPERATIONAL_ERROR = 0x63


def syndrome_name(syndrome: int) -> str:
    """A stable, metric-friendly name for an AETH syndrome."""
    kind = syndrome & 0xE0
    if kind == 0x00:
        return "ack"
    if kind == 0x20:
        return "rnr"
    names = {
        0x60: "psn_sequence_error",
        0x61: "invalid_request",
        0x62: "remote_access_error",
        0x63: "remote_operational_error",
    }
    return names.get(syndrome, "reserved")


RNR_TIMER_MS = (
    655.36,
    0.01,
    0.02,
    0.03,
    0.04,
    0.06,
    0.08,
    0.12,
    0.16,
    0.24,
    0.32,
    0.48,
    0.64,
    0.96,
    1.28,
    1.92,
    2.56,
    3.84,
    5.12,
    7.68,
    10.24,
    15.36,
    20.48,
    30.72,
    40.96,
    61.44,
    81.92,
    122.88,
    163.84,
    245.76,
    327.68,
    491.52,
)
"""Minimum RNR NAK timer by 5-bit code (IBTA table 45), in milliseconds."""

MTU_CODES = {256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5}
"""IB path-MTU enumeration used in CM REQ."""


def psn_add(psn: int, n: int) -> int:
    return (psn + n) & PSN_MASK


def psn_diff(a: int, b: int) -> int:
    """Signed distance a - b in 24-bit PSN space (-2^23 .. 2^23-1)."""
    d = (a - b) & PSN_MASK
    return d - 0x1000000 if d >= PSN_HALF else d


# ---------------------------------------------------------------------------------------------
# Header records and their codec.


class MalformedPacket(ValueError):
    """A datagram that is not a RoCEv2 packet this implementation accepts; `reason` is a short
    metric label (e.g. "short", "bad_icrc", "bad_opcode")."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BTH:
    opcode: int
    dest_qp: int
    psn: int
    solicited: bool = False
    ack_req: bool = False
    pad: int = 0
    pkey: int = DEFAULT_PKEY
    migreq: bool = False
    tver: int = 0
    fecn: bool = False
    becn: bool = False


_BTH = struct.Struct("!BBHII")


def encode_bth(h: BTH) -> bytes:
    b1 = (h.solicited << 7) | (h.migreq << 6) | ((h.pad & 3) << 4) | (h.tver & 0xF)
    w2 = (h.fecn << 31) | (h.becn << 30) | (h.dest_qp & 0xFFFFFF)
    w3 = (h.ack_req << 31) | (h.psn & PSN_MASK)
    return _BTH.pack(h.opcode, b1, h.pkey, w2, w3)


def decode_bth(data: bytes | memoryview, offset: int = 0) -> BTH:
    if len(data) - offset < BTH_LEN:
        raise MalformedPacket("short", "shorter than a BTH")
    op, b1, pkey, w2, w3 = _BTH.unpack_from(data, offset)
    return BTH(
        opcode=op,
        solicited=bool(b1 & 0x80),
        migreq=bool(b1 & 0x40),
        pad=(b1 >> 4) & 3,
        tver=b1 & 0xF,
        pkey=pkey,
        fecn=bool(w2 & 0x80000000),
        becn=bool(w2 & 0x40000000),
        dest_qp=w2 & 0xFFFFFF,
        ack_req=bool(w3 & 0x80000000),
        psn=w3 & PSN_MASK,
    )


@dataclass(frozen=True, slots=True)
class RETH:
    va: int
    rkey: int
    dma_len: int


_RETH = struct.Struct("!QII")


def encode_reth(h: RETH) -> bytes:
    return _RETH.pack(h.va, h.rkey, h.dma_len)


def decode_reth(data: bytes | memoryview, offset: int = 0) -> RETH:
    if len(data) - offset < RETH_LEN:
        raise MalformedPacket("short", "shorter than a RETH")
    va, rkey, n = _RETH.unpack_from(data, offset)
    return RETH(va=va, rkey=rkey, dma_len=n)


@dataclass(frozen=True, slots=True)
class AETH:
    syndrome: int
    msn: int


def encode_aeth(h: AETH) -> bytes:
    return struct.pack("!I", ((h.syndrome & 0xFF) << 24) | (h.msn & 0xFFFFFF))


def decode_aeth(data: bytes | memoryview, offset: int = 0) -> AETH:
    if len(data) - offset < AETH_LEN:
        raise MalformedPacket("short", "shorter than an AETH")
    (w,) = struct.unpack_from("!I", data, offset)
    return AETH(syndrome=w >> 24, msn=w & 0xFFFFFF)


@dataclass(frozen=True, slots=True)
class DETH:
    qkey: int
    src_qp: int


def encode_deth(h: DETH) -> bytes:
    return struct.pack("!II", h.qkey, h.src_qp & 0xFFFFFF)


def decode_deth(data: bytes | memoryview, offset: int = 0) -> DETH:
    if len(data) - offset < DETH_LEN:
        raise MalformedPacket("short", "shorter than a DETH")
    qkey, w = struct.unpack_from("!II", data, offset)
    return DETH(qkey=qkey, src_qp=w & 0xFFFFFF)


def encode_imm(imm: int) -> bytes:
    return struct.pack("!I", imm & 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded RoCEv2 packet (the UDP payload without the ICRC)."""

    bth: BTH
    reth: RETH | None = None
    imm: int | None = None
    aeth: AETH | None = None
    deth: DETH | None = None
    payload: bytes = b""


def header_length(opcode: int) -> int:
    """Bytes of BTH + extension headers for an opcode; raises MalformedPacket if unknown."""
    if opcode in RC_REQUEST_OPCODES:
        n = BTH_LEN
        if opcode in HAS_RETH:
            n += RETH_LEN
        if opcode in HAS_IMM:
            n += IMM_LEN
        return n
    if opcode == Opcode.ACKNOWLEDGE:
        return BTH_LEN + AETH_LEN
    if opcode == Opcode.UD_SEND_ONLY:
        return BTH_LEN + DETH_LEN
    raise MalformedPacket("bad_opcode", f"opcode {opcode:#04x} is not supported")


def encode_packet(p: Packet) -> bytes:
    """The UDP payload of `p` without the ICRC (payload padded to 4 bytes per BTH.PadCnt)."""
    pad = (-len(p.payload)) & 3
    bth = dataclasses.replace(p.bth, pad=pad)
    parts = [encode_bth(bth)]
    if p.deth is not None:
        parts.append(encode_deth(p.deth))
    if p.reth is not None:
        parts.append(encode_reth(p.reth))
    if p.imm is not None:
        parts.append(encode_imm(p.imm))
    if p.aeth is not None:
        parts.append(encode_aeth(p.aeth))
    parts.append(p.payload)
    parts.append(b"\0" * pad)
    return b"".join(parts)


def decode_packet(data: bytes | memoryview) -> Packet:
    """Decode a UDP payload *without* its ICRC (strip it first). Raises MalformedPacket."""
    bth = decode_bth(data)
    if bth.tver != 0:
        raise MalformedPacket("bad_version", f"BTH transport version {bth.tver}")
    n = header_length(bth.opcode)
    if len(data) < n:
        raise MalformedPacket("short", f"opcode {bth.opcode:#04x} needs {n} header bytes")
    off = BTH_LEN
    deth = reth = aeth = None
    imm = None
    if bth.opcode == Opcode.UD_SEND_ONLY:
        deth = decode_deth(data, off)
        off += DETH_LEN
    if bth.opcode in HAS_RETH:
        reth = decode_reth(data, off)
        off += RETH_LEN
    if bth.opcode in HAS_IMM:
        (imm,) = struct.unpack_from("!I", data, off)
        off += IMM_LEN
    if bth.opcode == Opcode.ACKNOWLEDGE:
        aeth = decode_aeth(data, off)
        off += AETH_LEN
    body = bytes(data[off:])
    if bth.pad > len(body):
        raise MalformedPacket("bad_pad", "pad count exceeds payload")
    payload = body[: len(body) - bth.pad]
    return Packet(bth=bth, reth=reth, imm=imm, aeth=aeth, deth=deth, payload=payload)


# ---------------------------------------------------------------------------------------------
# ICRC (IBTA Annex A17.4.1): CRC-32 over 8 bytes of 0xFF, the IPv4 header with TOS, TTL and
# header checksum set to all ones, the UDP header with the checksum set to all ones, and the
# BTH with byte 4 (FECN/BECN/reserved) set to all ones, then the rest of the packet; appended
# least significant byte first.

_LRH_STANDIN = b"\xff" * 8


def ipv4_pseudo_prefix(
    *, src: bytes, dst: bytes, sport: int, dport: int, udp_payload_len: int, ip_id: int = 0
) -> bytes:
    """The masked IPv4 + UDP header bytes the ICRC covers, for a UDP payload of that length.

    `ip_id` is the IPv4 identification the sender's kernel writes: 0 for an unconnected socket
    with IP_PMTUDISC_DO (what the endpoint uses), i for segment i of a GSO batch.
    """
    total = 20 + 8 + udp_payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0xFF, total, ip_id, 0x4000, 0xFF, 17, 0xFFFF, src, dst)
    udp = struct.pack("!HHHH", sport, dport, 8 + udp_payload_len, 0xFFFF)
    return ip + udp


def prefix_state(
    *, src: bytes, dst: bytes, sport: int, dport: int, udp_payload_len: int, ip_id: int = 0
) -> int:
    """CRC-32 state after the LRH stand-in and the masked IP/UDP headers (continue with BTH)."""
    return zlib.crc32(
        _LRH_STANDIN
        + ipv4_pseudo_prefix(
            src=src,
            dst=dst,
            sport=sport,
            dport=dport,
            udp_payload_len=udp_payload_len,
            ip_id=ip_id,
        )
    )


def icrc_of(state: int, body: bytes | bytearray | memoryview) -> int:
    """Continue `state` (from `prefix_state`) over a packet body (BTH first, without ICRC),
    masking BTH byte 4. Returns the CRC as an integer (append with `icrc_bytes`)."""
    mv = memoryview(body)
    crc = zlib.crc32(mv[:4], state)
    crc = zlib.crc32(b"\xff", crc)
    return zlib.crc32(mv[5:], crc)


def icrc_bytes(crc: int) -> bytes:
    """The 4 ICRC bytes as they go on the wire (CRC least significant byte first)."""
    return struct.pack("<I", crc & 0xFFFFFFFF)


def compute_icrc(
    *,
    body: bytes | bytearray | memoryview,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int = ROCE_UDP_PORT,
    ip_id: int = 0,
) -> bytes:
    """ICRC bytes for a complete UDP payload `body` (BTH … payload, without the ICRC)."""
    st = prefix_state(
        src=src, dst=dst, sport=sport, dport=dport, udp_payload_len=len(body) + 4, ip_id=ip_id
    )
    return icrc_bytes(icrc_of(st, body))
