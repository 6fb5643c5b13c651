"""The RoCEv2 codec: header round trips, rejection of malformed packets, and the ICRC checked
against scapy's RoCE layer and against a CRC-32 computed bit by bit from the masked bytes."""

from __future__ import annotations

import struct

import pytest
from scapy.contrib import roce as scapy_roce
from scapy.layers.inet import IP, UDP

from naa_runtime.roce.packets import (
    AETH,
    BTH,
    DETH,
    RETH,
    MalformedPacket,
    Opcode,
    Packet,
    compute_icrc,
    decode_aeth,
    decode_bth,
    decode_deth,
    decode_packet,
    decode_reth,
    encode_aeth,
    encode_bth,
    encode_deth,
    encode_packet,
    encode_reth,
    psn_add,
    psn_diff,
)


def test_bth_fields_survive_a_round_trip() -> None:
    h = BTH(
        opcode=0x0B,
        dest_qp=0xABCDEF,
        psn=0xFFFFFF,
        solicited=True,
        ack_req=True,
        pad=3,
        pkey=0x7FFF,
        migreq=True,
        fecn=True,
        becn=True,
    )
    raw = encode_bth(h)
    assert len(raw) == 12
    assert decode_bth(raw) == h


def test_bth_layout_matches_the_ibta_bit_positions() -> None:
    raw = encode_bth(
        BTH(opcode=0x0A, dest_qp=0x000102, psn=0x030405, solicited=True, ack_req=True, pad=2)
    )
    assert raw.hex() == "0aa0ffff00000102" + "80030405"


def test_extension_headers_survive_round_trips() -> None:
    assert decode_reth(encode_reth(RETH(va=2**64 - 1, rkey=0xDEADBEEF, dma_len=2**31))) == RETH(
        va=2**64 - 1, rkey=0xDEADBEEF, dma_len=2**31
    )
    assert decode_aeth(encode_aeth(AETH(syndrome=0x62, msn=0x123456))) == AETH(0x62, 0x123456)
    assert decode_deth(encode_deth(DETH(qkey=0x80010000, src_qp=1))) == DETH(0x80010000, 1)


@pytest.mark.parametrize("payload", [b"", b"a", b"abc", b"abcd", bytes(range(256)) * 16])
def test_a_write_with_immediate_round_trips_with_padding(payload: bytes) -> None:
    p = Packet(
        bth=BTH(opcode=Opcode.RDMA_WRITE_ONLY_WITH_IMMEDIATE, dest_qp=7, psn=9, solicited=True),
        reth=RETH(va=0x1000, rkey=42, dma_len=len(payload)),
        imm=0x81,
        payload=payload,
    )
    raw = encode_packet(p)
    assert len(raw) % 4 == 0
    back = decode_packet(raw)
    assert back.payload == payload
    assert back.imm == 0x81
    assert back.reth == p.reth
    assert back.bth.pad == (-len(payload)) & 3


def test_an_acknowledge_round_trips() -> None:
    p = Packet(bth=BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=5, psn=77), aeth=AETH(0x1F, 3))
    assert decode_packet(encode_packet(p)).aeth == AETH(0x1F, 3)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x04\x00\xff", "short"),
        (encode_bth(BTH(opcode=0x55, dest_qp=1, psn=1)), "bad_opcode"),
        (encode_bth(BTH(opcode=0x04, dest_qp=1, psn=1, tver=1)), "bad_version"),
        (encode_bth(BTH(opcode=Opcode.RDMA_WRITE_ONLY, dest_qp=1, psn=1)) + b"\0" * 8, "short"),
        (encode_bth(BTH(opcode=Opcode.SEND_ONLY, dest_qp=1, psn=1, pad=3)) + b"\0", "bad_pad"),
    ],
)
def test_malformed_packets_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode_packet(raw)
    assert info.value.reason == reason


def test_psn_arithmetic_wraps_at_24_bits() -> None:
    assert psn_add(0xFFFFFF, 1) == 0
    assert psn_diff(0, 0xFFFFFF) == 1
    assert psn_diff(0xFFFFFF, 0) == -1
    assert psn_diff(0x7FFFFF, 0) == 0x7FFFFF


def _scapy_icrc(body: bytes, *, src: str, dst: str, sport: int, ip_id: int) -> bytes:
    pkt = (
        IP(src=src, dst=dst, id=ip_id, flags="DF", ttl=64, tos=0)
        / UDP(sport=sport, dport=4791)
        / scapy_roce.BTH(body + b"\0\0\0\0")
    )
    pkt[scapy_roce.BTH].icrc = None
    built = bytes(pkt)
    return built[-4:]


@pytest.mark.parametrize("ip_id", [0, 1, 63])
@pytest.mark.parametrize(
    "packet",
    [
        Packet(
            bth=BTH(opcode=Opcode.SEND_ONLY, dest_qp=0x1234, psn=5, solicited=True),
            payload=b"\x01\x02\x00\x00" + bytes(48),
        ),
        Packet(
            bth=BTH(opcode=Opcode.RDMA_WRITE_MIDDLE, dest_qp=0xABCDE, psn=0xFFFFFF),
            payload=bytes(range(256)) * 16,
        ),
        Packet(bth=BTH(opcode=Opcode.ACKNOWLEDGE, dest_qp=3, psn=0), aeth=AETH(0x60, 9)),
    ],
)
def test_icrc_agrees_with_scapys_roce_layer(packet: Packet, ip_id: int) -> None:
    body = encode_packet(packet)
    ours = compute_icrc(
        body=body, src=bytes([127, 0, 0, 3]), dst=bytes([127, 0, 0, 2]), sport=4791, ip_id=ip_id
    )
    theirs = _scapy_icrc(body, src="127.0.0.3", dst="127.0.0.2", sport=4791, ip_id=ip_id)
    assert ours == theirs


def _bitwise_crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_icrc_matches_a_hand_worked_vector() -> None:
    # SEND_ONLY to QP 0x000011, PSN 1, payload "NAAICE!!" from 10.0.0.1:4791 to 10.0.0.2.
    body = bytes.fromhex("04 00 ffff 00000011 00000001") + b"NAAICE!!"
    # The bytes the ICRC covers, written out with every variant field masked:
    masked = (
        bytes.fromhex(
            "ffffffffffffffff"  # LRH stand-in
            "45 ff 0034 0000 4000 ff 11 ffff 0a000001 0a000002"  # IPv4, TOS/TTL/csum masked
            "12b7 12b7 0020 ffff"  # UDP: length 8+20+4 (ICRC), checksum = 1s
            "04 00 ffff ff000011 00000001"  # BTH with byte 4 = 0xff
        )
        + b"NAAICE!!"
    )
    expected = struct.pack("<I", _bitwise_crc32(masked))
    assert (
        compute_icrc(body=body, src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), sport=4791)
        == expected
    )
