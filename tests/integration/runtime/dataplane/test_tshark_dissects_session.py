"""A session captured on `lo` with dumpcap is dissected by tshark as InfiniBand (RoCEv2): no
malformed packets, the CM handshake recognised, the expected opcode sequence, SE on the
replies, and every captured packet's ICRC accepted by scapy's independent implementation."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from scapy.contrib import roce as scapy_roce
from scapy.layers.inet import IP
from scapy.utils import rdpcap

from naa_runtime.mrsp import MrFlags
from naa_runtime.roce.qp import TransportConfig
from naa_runtime.rpc import HostConnection, Region
from tests.support.roce import ServerFactory, next_loopback

pytestmark = pytest.mark.skipif(
    shutil.which("tshark") is None or shutil.which("dumpcap") is None,
    reason="tshark/dumpcap missing: install the Debian package tshark (hack/ensure-debs.sh)",
)

# One datagram per RoCE packet, so the capture shows what a NIC would put on the wire (with
# UDP GSO on, lo hands the unsegmented batch to the capture).
NO_GSO = TransportConfig(gso=False)


def _capture_session(naa_server: ServerFactory, pcap: Path) -> None:
    srv = naa_server(config=NO_GSO)
    host = next_loopback()
    cap = subprocess.Popen(
        [
            "dumpcap",
            "-q",
            "-i",
            "lo",
            "-f",
            f"udp port 4791 and host {srv.address}",
            "-w",
            str(pcap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not pcap.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the capture filter is armed once the file exists
        a = np.zeros(10_000, np.uint8)
        b = np.zeros(100, np.uint8)
        h = HostConnection(naa_address=srv.address, local_address=host, config=NO_GSO)
        h.connect()
        h.register(
            [
                Region(view=memoryview(a), flags=MrFlags.INPUT | MrFlags.OUTPUT),
                Region(
                    view=memoryview(b), flags=MrFlags.INPUT | MrFlags.OUTPUT, requested_addr=16384
                ),
            ]
        )
        h.mrsp()
        assert h.call(1, timeout=10) == 0
        assert h.call(3, timeout=10) == 0
        h.disconnect()
        time.sleep(0.3)
    finally:
        cap.terminate()
        cap.communicate(timeout=10)


def test_tshark_dissects_a_captured_session_as_infiniband(
    naa_server: ServerFactory, tmp_path: Path
) -> None:
    pcap = tmp_path / "session.pcapng"
    _capture_session(naa_server, pcap)
    fields = (
        subprocess.run(
            [
                "tshark",
                "-r",
                str(pcap),
                "-T",
                "fields",
                "-E",
                "separator=|",
                "-e",
                "frame.protocols",
                "-e",
                "infiniband.bth.opcode",
                "-e",
                "infiniband.bth.se",
                "-e",
                "_ws.col.Info",
                "-e",
                "_ws.malformed",
                "-e",
                "infiniband.bth.psn",
                "-e",
                "ip.src",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    rows = [line.split("|") for line in fields]
    assert len(rows) > 20
    assert all(":udp:infiniband" in r[0] for r in rows), {r[0] for r in rows}
    assert not [r for r in rows if r[4]], "malformed packets"
    malformed = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", "_ws.malformed || _ws.expert.severity == error"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert malformed == ""
    infos = [r[3].strip() for r in rows]
    assert infos[:3] == ["CM: ConnectRequest", "CM: ConnectReply", "CM: ReadyToUse"]
    assert infos[-2:] == ["CM: DisconnectRequest", "CM: DisconnectReply"]
    # A stall of the loaded machine past the retransmit timeout resends a packet: the
    # session's RC packets are counted once per (source, opcode, PSN).
    once: dict[tuple[str, str, str], list[str]] = {}
    for r in rows[3:-2]:
        once.setdefault((r[6], r[1], r[5]), r)
    rc_rows = list(once.values())
    ops = [int(r[1]) for r in rc_rows]
    # MRSP: SEND_ONLY (AAR), the NAA's ACK of it before its SEND_ONLY (A); the host's ACK of
    # the A may be coalesced with later traffic: any later ACK from the host (its PSN at or
    # after the A's, in 24-bit serial arithmetic) acknowledges it cumulatively.
    assert ops[:3] == [0x04, 0x11, 0x04]
    host_ip = rows[0][6]  # the ConnectRequest comes from the host
    a_psn = int(rc_rows[2][5])
    host_acks = [int(r[5]) for r in rows if r[1] == "17" and r[6] == host_ip]
    assert [p for p in host_acks if (p - a_psn) % (1 << 24) < (1 << 23)], (
        "the A message was never ACKed",
        a_psn,
        host_acks,
    )
    seen = set(ops)
    assert {0x06, 0x07, 0x08, 0x0B, 0x11} <= seen  # WRITE FIRST/MIDDLE/LAST, ONLY_IMM, ACK
    imm_rows = [r for r in rc_rows if r[1] in ("11", "9")]
    assert len(imm_rows) == 4  # two RPCs, each a request and a reply
    assert all(r[2] == "1" for r in imm_rows)  # solicited event on every WRITE_WITH_IMM


def test_every_captured_packet_carries_an_icrc_scapy_accepts(
    naa_server: ServerFactory, tmp_path: Path
) -> None:
    pcap = tmp_path / "session.pcapng"
    _capture_session(naa_server, pcap)
    packets = [p for p in rdpcap(str(pcap)) if IP in p]
    assert len(packets) > 20
    for p in packets:
        ip = IP(bytes(p[IP]))
        wire = bytes(ip)[-4:]
        rebuilt = ip.copy()
        rebuilt[scapy_roce.BTH].icrc = None
        assert bytes(rebuilt)[-4:] == wire, p.summary()
