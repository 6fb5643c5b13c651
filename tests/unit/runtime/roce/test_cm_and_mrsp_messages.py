"""CM MADs and MRSP messages: byte layouts as rdma_cm and the NAAICE library put them on the
wire, round trips, and refusal of what an NAA must refuse."""

from __future__ import annotations

import pytest

from naa_runtime.mrsp import (
    AarEntry,
    AEntry,
    MrFlags,
    MrspError,
    MrspErrorCode,
    decode_aar,
    decode_answer,
    encode_a,
    encode_aar,
    encode_err,
)
from naa_runtime.roce.cm import (
    MAD_LEN,
    Drep,
    Dreq,
    Rej,
    Rep,
    Req,
    Rtu,
    decode_cm,
    encode_cm,
    port_of_service_id,
    service_id,
)
from naa_runtime.roce.packets import MalformedPacket


def test_the_service_id_carries_the_cm_port_in_the_rdma_ip_cm_space() -> None:
    assert service_id(12345) == 0x0000000001063039
    assert port_of_service_id(0x0000000001063039) == 12345
    assert port_of_service_id(0x1234) is None


@pytest.mark.parametrize(
    "msg",
    [
        Req(
            local_comm_id=0x11223344,
            service_id=service_id(12345),
            local_qpn=0xABCDE,
            starting_psn=0xFFFFFE,
            src_ip="127.0.0.3",
            dst_ip="127.0.0.2",
        ),
        Rep(local_comm_id=1, remote_comm_id=2, local_qpn=0x42, starting_psn=0x123456),
        Rtu(local_comm_id=1, remote_comm_id=2),
        Dreq(local_comm_id=1, remote_comm_id=2, remote_qpn=0x42),
        Drep(local_comm_id=2, remote_comm_id=1),
        Rej(local_comm_id=0, remote_comm_id=9, reason=28, private_data=b"Server overlad\0"),
    ],
)
def test_cm_messages_round_trip_as_256_byte_mads(msg: object) -> None:
    mad = encode_cm(msg, tid=0xDEADBEEF)  # type: ignore[arg-type]
    assert len(mad) == MAD_LEN
    assert mad[:4] == bytes([1, 0x07, 2, 0x03])  # base version, CM class, v2, Send
    tid, back = decode_cm(mad)
    assert tid == 0xDEADBEEF
    for name in (
        "local_comm_id",
        "remote_comm_id",
        "local_qpn",
        "starting_psn",
        "reason",
        "src_ip",
        "dst_ip",
        "service_id",
        "remote_qpn",
    ):
        if hasattr(msg, name):
            assert getattr(back, name) == getattr(msg, name), name


def test_a_req_carries_the_ip_cm_header_and_ipv4_mapped_gids() -> None:
    req = Req(
        local_comm_id=1,
        service_id=service_id(12345),
        local_qpn=2,
        starting_psn=3,
        src_ip="10.1.2.3",
        dst_ip="10.4.5.6",
    )
    mad = encode_cm(req, tid=1)
    data = mad[24:]
    assert data[8:16] == bytes.fromhex("0000000001063039")
    assert data[56:72] == bytes(10) + b"\xff\xff" + bytes([10, 1, 2, 3])
    priv = data[140:]
    assert priv[0] == 0x00
    assert priv[1] == 0x40
    assert priv[16:20] == bytes([10, 1, 2, 3])
    assert priv[32:36] == bytes([10, 4, 5, 6])


def test_a_mad_of_another_class_is_malformed() -> None:
    mad = bytearray(encode_cm(Rtu(local_comm_id=1, remote_comm_id=2), tid=1))
    mad[1] = 0x04
    with pytest.raises(MalformedPacket):
        decode_cm(bytes(mad))


def test_the_aar_of_the_protocol_example_has_the_documented_bytes() -> None:
    aar = encode_aar(
        [
            AarEntry(
                flags=MrFlags.INPUT,
                requested_addr=0,
                host_va=0x7F1234560000,
                host_rkey=0x1A2B,
                size=0x1000,
            ),
            AarEntry(
                flags=MrFlags.OUTPUT,
                requested_addr=0x1000,
                host_va=0x7F1234570000,
                host_rkey=0x1A2C,
                size=0x1000,
            ),
        ]
    )
    assert aar.hex() == (
        "01020000"
        "0400000000000000"
        "00007f1234560000"
        "00001a2b"
        "00001000"
        "0800000000001000"
        "00007f1234570000"
        "00001a2c"
        "00001000"
    )
    assert len(aar) == 52
    assert decode_aar(aar)[1].flags == MrFlags.OUTPUT


def test_an_a_message_maps_entries_by_position_and_err_raises_its_code() -> None:
    a = encode_a([AEntry(0x1000, 7, 64), AEntry(0x2000, 8, 128)])
    assert len(a) == 36
    assert decode_answer(a)[1] == AEntry(0x2000, 8, 128)
    with pytest.raises(MrspError) as info:
        decode_answer(encode_err(MrspErrorCode.TOO_MANY_REGIONS))
    assert info.value.code == MrspErrorCode.TOO_MANY_REGIONS


def test_31_regions_are_accepted_and_32_are_refused_with_error_3() -> None:
    entry = AarEntry(flags=MrFlags.INPUT, requested_addr=0, host_va=1, host_rkey=1, size=1)
    assert len(decode_aar(encode_aar([entry] * 31))) == 31
    with pytest.raises(MrspError) as info:
        decode_aar(encode_aar([entry] * 32))
    assert info.value.code == MrspErrorCode.TOO_MANY_REGIONS
