"""IB connection-management MADs (REQ, REP, RTU, DREQ, DREP, REJ) as rdma_cm sends them over
RoCEv2: 256-byte MADs (management class 0x07, class version 2, method Send) carried in UD
SEND_ONLY packets to QP1 with Q_Key 0x80010000.

Pure codec, no sockets. The endpoint (`naa_runtime.roce.endpoint`) sends and receives them;
the RDMA-IP-CM service ID (port space 0x0106 << 16 | port) and the IP-CM private-data header
carry the "port" the host connects to (PROTOCOL.md §5).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from enum import IntEnum

from naa_runtime.roce.packets import MalformedPacket

MAD_LEN = 256
MAD_HDR_LEN = 24
CM_DATA_LEN = MAD_LEN - MAD_HDR_LEN
MGMT_CLASS_CM = 0x07
CM_CLASS_VERSION = 2
METHOD_SEND = 0x03
RDMA_IP_CM_PS_TCP = 0x0106

REJ_REASON_INVALID_SERVICE_ID = 8
REJ_REASON_CONSUMER = 28
SERVER_OVERLOADED_PRIVATE_DATA = b"Server overlad\x00"
"""What the NAAICE software NAA puts in a REJ when no slot is free (sic)."""


class CmAttr(IntEnum):
    REQ = 0x0010
    MRA = 0x0011
    REJ = 0x0012
    REP = 0x0013
    RTU = 0x0014
    DREQ = 0x0015
    DREP = 0x0016


def service_id(port: int) -> int:
    """The RDMA-IP-CM service ID rdma_cm uses for a TCP-port-space "port"."""
    return (RDMA_IP_CM_PS_TCP << 16) | (port & 0xFFFF)


def port_of_service_id(sid: int) -> int | None:
    """The port encoded in an RDMA-IP-CM service ID, or None for another service ID."""
    if sid >> 16 != RDMA_IP_CM_PS_TCP:
        return None
    return sid & 0xFFFF


def _gid(ip: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{ip}").packed


def ip_cm_header(*, src_ip: str, dst_ip: str, src_port: int) -> bytes:
    """rdma_cm's 36-byte IP-CM header at the start of the REQ private data (IPv4 form)."""
    return (
        struct.pack("!BBH", 0x00, 0x40, src_port & 0xFFFF)
        + b"\0" * 12
        + ipaddress.IPv4Address(src_ip).packed
        + b"\0" * 12
        + ipaddress.IPv4Address(dst_ip).packed
    )


@dataclass(frozen=True, slots=True)
class Req:
    local_comm_id: int
    service_id: int
    local_qpn: int
    starting_psn: int
    src_ip: str
    dst_ip: str
    mtu: int = 4096
    retry_count: int = 7
    rnr_retry_count: int = 6
    responder_resources: int = 1
    initiator_depth: int = 1
    local_ack_timeout: int = 14
    private_data: bytes = b""


@dataclass(frozen=True, slots=True)
class Rep:
    local_comm_id: int
    remote_comm_id: int
    local_qpn: int
    starting_psn: int
    responder_resources: int = 1
    initiator_depth: int = 1
    rnr_retry_count: int = 6
    private_data: bytes = b""


@dataclass(frozen=True, slots=True)
class Rtu:
    local_comm_id: int
    remote_comm_id: int


@dataclass(frozen=True, slots=True)
class Dreq:
    local_comm_id: int
    remote_comm_id: int
    remote_qpn: int


@dataclass(frozen=True, slots=True)
class Drep:
    local_comm_id: int
    remote_comm_id: int


@dataclass(frozen=True, slots=True)
class Rej:
    local_comm_id: int
    remote_comm_id: int
    reason: int
    message_rejected: int = 0  # 0 = REQ
    private_data: bytes = field(default=b"")


CmMessage = Req | Rep | Rtu | Dreq | Drep | Rej

_MTU_CODE = {256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5}
_MTU_BYTES = {v: k for k, v in _MTU_CODE.items()}


def _mad(attr: CmAttr, tid: int, data: bytes) -> bytes:
    if len(data) > CM_DATA_LEN:
        raise ValueError("CM message longer than a MAD")
    hdr = struct.pack(
        "!BBBBHHQHHI", 1, MGMT_CLASS_CM, CM_CLASS_VERSION, METHOD_SEND, 0, 0, tid, attr, 0, 0
    )
    return hdr + data + b"\0" * (CM_DATA_LEN - len(data))


def _private(data: bytes, size: int) -> bytes:
    if len(data) > size:
        raise ValueError(f"private data longer than {size} bytes")
    return data + b"\0" * (size - len(data))


def encode_cm(msg: CmMessage, *, tid: int) -> bytes:
    """The 256-byte MAD for `msg`."""
    if isinstance(msg, Req):
        d = bytearray(CM_DATA_LEN)
        struct.pack_into("!IIQQ", d, 0, msg.local_comm_id, 0, msg.service_id, 0)
        struct.pack_into("!I", d, 28, 0)  # Q_Key: unused for RC
        struct.pack_into("!I", d, 32, (msg.local_qpn << 8) | msg.responder_resources)
        struct.pack_into("!I", d, 36, msg.initiator_depth)
        # Remote EECN 0 | remote CM response timeout 20 | transport RC (0) | no E2E flow ctl.
        struct.pack_into("!I", d, 40, (20 << 3))
        struct.pack_into("!I", d, 44, (msg.starting_psn << 8) | (20 << 3) | msg.retry_count)
        struct.pack_into("!H", d, 48, 0xFFFF)
        d[50] = (_MTU_CODE[msg.mtu] << 4) | (msg.rnr_retry_count & 7)
        d[51] = 15 << 4  # max CM retries
        struct.pack_into("!HH", d, 52, 0xFFFF, 0xFFFF)  # permissive LIDs on RoCE
        d[56:72] = _gid(msg.src_ip)
        d[72:88] = _gid(msg.dst_ip)
        d[93] = 64  # hop limit
        d[95] = (msg.local_ack_timeout & 0x1F) << 3
        priv = ip_cm_header(src_ip=msg.src_ip, dst_ip=msg.dst_ip, src_port=0) + msg.private_data
        d[140:232] = _private(priv, 92)
        return _mad(CmAttr.REQ, tid, bytes(d))
    if isinstance(msg, Rep):
        d = bytearray(CM_DATA_LEN)
        struct.pack_into(
            "!IIIII", d, 0, msg.local_comm_id, msg.remote_comm_id, 0, msg.local_qpn << 8, 0
        )
        struct.pack_into("!I", d, 20, msg.starting_psn << 8)
        d[24] = msg.responder_resources
        d[25] = msg.initiator_depth
        d[26] = 15 << 3  # target ACK delay
        d[27] = (msg.rnr_retry_count & 7) << 5
        d[36:232] = _private(msg.private_data, 196)
        return _mad(CmAttr.REP, tid, bytes(d))
    if isinstance(msg, Rtu | Drep):
        attr = CmAttr.RTU if isinstance(msg, Rtu) else CmAttr.DREP
        return _mad(attr, tid, struct.pack("!II", msg.local_comm_id, msg.remote_comm_id))
    if isinstance(msg, Dreq):
        return _mad(
            CmAttr.DREQ,
            tid,
            struct.pack("!III", msg.local_comm_id, msg.remote_comm_id, msg.remote_qpn << 8),
        )
    d = bytearray(CM_DATA_LEN)
    struct.pack_into(
        "!IIBBH",
        d,
        0,
        msg.local_comm_id,
        msg.remote_comm_id,
        (msg.message_rejected & 3) << 6,
        0,
        msg.reason,
    )
    d[84:232] = _private(msg.private_data, 148)
    return _mad(CmAttr.REJ, tid, bytes(d))


def decode_cm(mad: bytes | memoryview) -> tuple[int, CmMessage]:
    """(transaction id, message) of a CM MAD. Raises MalformedPacket for anything else."""
    if len(mad) < MAD_LEN:
        raise MalformedPacket("bad_mad", f"MAD is {len(mad)} bytes, expected {MAD_LEN}")
    base, mclass, cver, method, _st, _cs, tid, attr, _r, _mod = struct.unpack_from(
        "!BBBBHHQHHI", mad, 0
    )
    if base != 1 or mclass != MGMT_CLASS_CM or cver != CM_CLASS_VERSION:
        raise MalformedPacket("bad_mad", f"not a CM MAD (class {mclass:#x} v{cver})")
    if method != METHOD_SEND:
        raise MalformedPacket("bad_mad", f"CM method {method:#x}")
    d = bytes(mad[MAD_HDR_LEN:MAD_LEN])
    if attr == CmAttr.REQ:
        comm, _r1, sid = struct.unpack_from("!IIQ", d, 0)
        (w32,) = struct.unpack_from("!I", d, 32)
        (w36,) = struct.unpack_from("!I", d, 36)
        (w44,) = struct.unpack_from("!I", d, 44)
        mtu = _MTU_BYTES.get(d[50] >> 4)
        if mtu is None:
            raise MalformedPacket("bad_mad", f"REQ path MTU code {d[50] >> 4}")
        priv = d[140:232]
        src_ip = str(ipaddress.IPv4Address(priv[16:20]))
        dst_ip = str(ipaddress.IPv4Address(priv[32:36]))
        return tid, Req(
            local_comm_id=comm,
            service_id=sid,
            local_qpn=w32 >> 8,
            responder_resources=w32 & 0xFF,
            initiator_depth=w36 & 0xFF,
            starting_psn=w44 >> 8,
            retry_count=w44 & 7,
            mtu=mtu,
            rnr_retry_count=d[50] & 7,
            local_ack_timeout=d[95] >> 3,
            src_ip=src_ip,
            dst_ip=dst_ip,
            private_data=priv[36:],
        )
    if attr == CmAttr.REP:
        comm, rcomm, _qkey, w12, _w16, w20 = struct.unpack_from("!IIIIII", d, 0)
        return tid, Rep(
            local_comm_id=comm,
            remote_comm_id=rcomm,
            local_qpn=w12 >> 8,
            starting_psn=w20 >> 8,
            responder_resources=d[24],
            initiator_depth=d[25],
            rnr_retry_count=d[27] >> 5,
            private_data=d[36:232],
        )
    if attr in (CmAttr.RTU, CmAttr.DREP):
        comm, rcomm = struct.unpack_from("!II", d, 0)
        if attr == CmAttr.RTU:
            return tid, Rtu(local_comm_id=comm, remote_comm_id=rcomm)
        return tid, Drep(local_comm_id=comm, remote_comm_id=rcomm)
    if attr == CmAttr.DREQ:
        comm, rcomm, w8 = struct.unpack_from("!III", d, 0)
        return tid, Dreq(local_comm_id=comm, remote_comm_id=rcomm, remote_qpn=w8 >> 8)
    if attr == CmAttr.REJ:
        comm, rcomm, b8, _b9, reason = struct.unpack_from("!IIBBH", d, 0)
        return tid, Rej(
            local_comm_id=comm,
            remote_comm_id=rcomm,
            reason=reason,
            message_rejected=b8 >> 6,
            private_data=d[84:232],
        )
    raise MalformedPacket("bad_mad", f"unsupported CM attribute {attr:#06x}")
