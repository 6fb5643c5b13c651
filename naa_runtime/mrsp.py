"""MRSP, the NAAICE Memory Region Setup Protocol (PROTOCOL.md §2): the AAR (advertise +
request, host → NAA), A (advertise, NAA → host) and ERR messages, all big-endian and packed.

Pure codec and validation. The host side (`naa_runtime.rpc.host`) encodes AARs and decodes
A/ERR; the RPC server (`naa_runtime.rpc.server`) decodes AARs and answers A or ERR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

MAX_ENTRIES = 31
"""Entries an AAR may carry in practice: 4 + 32×24 = 772 B exceeds the 768-B receive both
NAAICE sides post, so 32 never fits (PROTOCOL.md §7.4); a 32-entry request gets ERR 0x03."""
RECEIVE_BUFFER = 4 + 32 * 24
"""Receive buffer the server posts for the AAR: large enough to *read* a 32-entry request
and refuse it with ERR 0x03 instead of failing at the transport."""
AAR_ENTRY_LEN = 24
A_ENTRY_LEN = 16


class MsgType(IntEnum):
    ERR = 0x00
    AAR = 0x01
    A = 0x02
    R = 0x03


class MrFlags(IntFlag):
    INTERNAL = 0x01
    SINGLESEND = 0x02
    INPUT = 0x04
    OUTPUT = 0x08


class MrspErrorCode(IntEnum):
    NOT_ENOUGH_MEMORY = 0x01
    INVALID_ADDRESS = 0x02
    TOO_MANY_REGIONS = 0x03


class MrspError(Exception):
    """An MRSP message that is malformed, or an ERR answer; `code` is the MRSP error code."""

    def __init__(self, code: MrspErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class AarEntry:
    flags: MrFlags
    requested_addr: int
    host_va: int
    host_rkey: int
    size: int


@dataclass(frozen=True, slots=True)
class AEntry:
    naa_va: int
    naa_rkey: int
    size: int


_HDR = struct.Struct("!BBH")
_AAR = struct.Struct("!QQII")
_A = struct.Struct("!QII")


def encode_aar(entries: list[AarEntry]) -> bytes:
    if len(entries) > 0xFF:
        raise ValueError("an AAR carries at most 255 entries (8-bit count)")
    out = [_HDR.pack(MsgType.AAR, len(entries), 0)]
    for e in entries:
        if e.requested_addr >> 56:
            raise ValueError(f"requested NAA address {e.requested_addr:#x} exceeds 56 bits")
        out.append(
            _AAR.pack((int(e.flags) << 56) | e.requested_addr, e.host_va, e.host_rkey, e.size)
        )
    return b"".join(out)


def decode_aar(data: bytes | memoryview) -> list[AarEntry]:
    """Entries of an AAR. Raises MrspError (with the code the NAA should answer)."""
    if len(data) < 4:
        raise MrspError(MrspErrorCode.NOT_ENOUGH_MEMORY, "MRSP message shorter than its header")
    typ, count, _pad = _HDR.unpack_from(data, 0)
    if typ != MsgType.AAR:
        raise MrspError(MrspErrorCode.NOT_ENOUGH_MEMORY, f"expected an AAR, got type {typ:#04x}")
    if count > MAX_ENTRIES:
        raise MrspError(
            MrspErrorCode.TOO_MANY_REGIONS,
            f"AAR requests {count} regions; at most {MAX_ENTRIES} fit the MRSP buffer",
        )
    if len(data) < 4 + count * AAR_ENTRY_LEN:
        raise MrspError(
            MrspErrorCode.NOT_ENOUGH_MEMORY, f"AAR truncated: {count} entries announced"
        )
    entries = []
    for i in range(count):
        w0, va, rkey, size = _AAR.unpack_from(data, 4 + i * AAR_ENTRY_LEN)
        flags = MrFlags((w0 >> 56) & 0x0F)
        entries.append(
            AarEntry(
                flags=flags,
                requested_addr=w0 & ((1 << 56) - 1),
                host_va=va,
                host_rkey=rkey,
                size=size,
            )
        )
    return entries


def encode_a(entries: list[AEntry]) -> bytes:
    return _HDR.pack(MsgType.A, len(entries), 0) + b"".join(
        _A.pack(e.naa_va, e.naa_rkey, e.size) for e in entries
    )


def encode_err(code: MrspErrorCode) -> bytes:
    return _HDR.pack(MsgType.ERR, int(code), 0)


def decode_answer(data: bytes | memoryview) -> list[AEntry]:
    """Entries of an A message; an ERR message raises MrspError with its code."""
    if len(data) < 4:
        raise MrspError(MrspErrorCode.NOT_ENOUGH_MEMORY, "MRSP answer shorter than its header")
    typ, count, _pad = _HDR.unpack_from(data, 0)
    if typ == MsgType.ERR:
        try:
            code = MrspErrorCode(count)
        except ValueError:
            code = MrspErrorCode.NOT_ENOUGH_MEMORY
        raise MrspError(
            code, f"the NAA refused the memory regions: MRSP error {count:#04x} ({code.name})"
        )
    if typ != MsgType.A:
        raise MrspError(MrspErrorCode.NOT_ENOUGH_MEMORY, f"expected an A message, got {typ:#04x}")
    if len(data) < 4 + count * A_ENTRY_LEN:
        raise MrspError(MrspErrorCode.NOT_ENOUGH_MEMORY, f"A message truncated: {count} entries")
    return [AEntry(*_A.unpack_from(data, 4 + i * A_ENTRY_LEN)) for i in range(count)]
