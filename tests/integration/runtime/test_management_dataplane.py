"""The management plane of a real `naaice runtime serve` process driven by real RoCEv2 traffic
from the host client: flash/scrub vs open connections, kernels bound by a flash, the power
model under kernel load, and data-plane metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from naa_runtime.bitstream import digest_of
from naa_runtime.client import (
    KERNEL_TIMEOUT,
    Naa,
    NaaError,
    NaaParam,
    naa_create,
    naa_finalize,
    naa_invoke,
    naa_wait,
    reset_naa_spec,
)
from naa_runtime.roce.endpoint import Impairment
from tests.support.naa import RunningNAA, SoftwareNAAFactory, host_side_address

UNKNOWN_FUNCTION = 0x7F

BUSY = b"""\
kind: SoftwareBitstream
name: add-and-busy
functions:
  - {name: add2, fnCode: 2, kernel: test.add2}
  - {name: busy, fnCode: 20, kernel: test.busy}
"""


@pytest.fixture
def host_address() -> str:
    """The host side gets a loopback address of its own, like a separate machine."""
    return host_side_address()


@pytest.fixture
def bitstream(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "add-and-busy.yaml"
    path.write_bytes(BUSY)
    return {"name": "add-and-busy", "digest": digest_of(BUSY), "artifact": path.as_uri()}


@pytest.fixture
def spec(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    reset_naa_spec()
    yield
    reset_naa_spec()
    monkeypatch.delenv("NAA_SPEC", raising=False)


def _point_spec_at(monkeypatch: pytest.MonkeyPatch, naa: RunningNAA, *fn_params: str) -> None:
    monkeypatch.setenv("NAA_SPEC", ",".join(f"{naa.address}::{fp}" for fp in fn_params))
    reset_naa_spec()


def test_flash_is_refused_while_a_client_is_connected_and_accepted_after_it_leaves(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
    bitstream: dict[str, str],
) -> None:
    naa = software_naa()
    _point_spec_at(monkeypatch, naa, "1:1")
    data = np.arange(4096, dtype=np.uint8)
    with Naa(1, inputs=[data], outputs=[data], local_address=host_address) as rpc:
        assert rpc() == 0
        assert naa.health()["activeConnections"] == 1
        status, body = naa.post("/v1/flash", bitstream)
        assert status == 409
        assert body["error"] == "connections-active"
        assert naa.health()["state"] == "Idle"
        assert rpc() == 0
    assert np.array_equal(data, (np.arange(4096) + 2).astype(np.uint8))
    deadline = time.monotonic() + 10
    while naa.health()["activeConnections"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert naa.post("/v1/flash", bitstream)[0] == 202
    assert naa.wait_for_state("Ready")["functions"] == [2, 20]


def test_a_forced_flash_changes_the_functions_under_an_open_connection(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
    bitstream: dict[str, str],
) -> None:
    naa = software_naa(flash_seconds=0)
    _point_spec_at(monkeypatch, naa, "1:1")
    data = np.zeros(64, dtype=np.uint8)
    with Naa(1, inputs=[data], outputs=[data], local_address=host_address) as rpc:
        assert rpc() == 0
        assert naa.post("/v1/flash", {**bitstream, "force": True})[0] == 202
        naa.wait_for_state("Ready")
        # fn 1 is not in the new bitstream: answered with an application error, not dropped.
        assert rpc() == UNKNOWN_FUNCTION
    assert data[0] == 1


def test_a_flashed_kernel_past_its_deadline_answers_kernel_timeout(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
    bitstream: dict[str, str],
) -> None:
    naa = software_naa(flash_seconds=0, extra_args=("--kernel-timeout", "0.2"))
    assert naa.post("/v1/flash", bitstream)[0] == 202
    naa.wait_for_state("Ready")
    _point_spec_at(monkeypatch, naa, "20:1")
    with Naa(20, inputs=[np.zeros(8, np.uint8)], local_address=host_address) as rpc:
        assert rpc(user=5_000) == KERNEL_TIMEOUT
        assert rpc(user=1) == 0


def test_scrub_drops_an_open_connection_and_its_memory_regions(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
) -> None:
    naa = software_naa()
    _point_spec_at(monkeypatch, naa, "3:1")
    with Naa(3, inputs=[np.zeros(16, np.uint8)], local_address=host_address) as rpc:
        assert rpc() == 0
        assert naa.health()["activeConnections"] == 1
        assert naa.post("/v1/scrub") == (200, {"state": "Idle", "scrubbed": True})
        assert naa.health()["activeConnections"] == 0
        with pytest.raises(NaaError):
            rpc(timeout=3)


def _power_from_counter(naa: RunningNAA, seconds: float, during: object = None) -> float:
    _, before = naa.get("/v1/sensors")
    if callable(during):
        during()
    else:
        time.sleep(seconds)
    _, after = naa.get("/v1/sensors")
    joules = (after["energyMicrojoules"] - before["energyMicrojoules"]) / 1e6
    return joules / ((after["timestampNs"] - before["timestampNs"]) / 1e9)


def test_the_energy_counter_rises_faster_under_kernel_load_than_idle(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
    bitstream: dict[str, str],
) -> None:
    naa = software_naa(flash_seconds=0)
    assert naa.post("/v1/flash", bitstream)[0] == 202
    naa.wait_for_state("Ready")
    _point_spec_at(monkeypatch, naa, "20:1")
    idle = _power_from_counter(naa, 1.0)
    with Naa(20, inputs=[np.zeros(8, np.uint8)], local_address=host_address) as rpc:

        def load() -> None:
            for _ in range(8):
                assert rpc(user=150) == 0

        loaded = _power_from_counter(naa, 0, during=load)
    # Idle is 27 W; a kernel running nearly all the time pulls towards 95 W.
    assert idle == pytest.approx(27.0, rel=0.05)
    assert loaded > idle * 1.5
    _, sensors = naa.get("/v1/sensors")
    assert sensors["temperatureC"] > 25.0


def test_metrics_export_data_plane_counters_after_real_rpcs(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
) -> None:
    naa = software_naa()
    _point_spec_at(monkeypatch, naa, "2:1", "9:1")
    data = np.zeros(100_000, dtype=np.uint8)
    with Naa(2, inputs=[data], outputs=[data], local_address=host_address) as rpc:
        for _ in range(3):
            assert rpc() == 0
    with Naa(9, inputs=[np.zeros(4, np.uint8)], local_address=host_address) as rpc:
        assert rpc() == UNKNOWN_FUNCTION
    status, text = naa.get("/metrics")
    assert status == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("naa_rpcs_total", (("fn", "2"), ("result", "ok")))] == 3
    assert samples[("naa_rpcs_total", (("fn", "9"), ("result", "unknown_function")))] == 1
    assert samples[("naa_kernel_runs_total", (("fn", "2"), ("result", "ok")))] == 3
    assert samples[("naa_rdma_packets_total", (("direction", "received"),))] > 3 * 100_000 / 4096
    assert samples[("naa_rpc_payload_bytes_total", (("direction", "received"),))] == 300_000 + 4
    assert samples[("naa_connections_opened_total", ())] == 2
    assert np.all(data == 6)


def test_metrics_count_naks_and_retransmits_when_the_host_loses_packets(
    software_naa: SoftwareNAAFactory,
    monkeypatch: pytest.MonkeyPatch,
    spec: None,
    host_address: str,
) -> None:
    naa = software_naa()
    _point_spec_at(monkeypatch, naa, "1:1")
    data = np.zeros(1 << 20, dtype=np.uint8)
    handle = naa_create(
        1,
        [NaaParam(data)],
        [NaaParam(data)],
        local_address=host_address,
        impairment=Impairment(loss=0.05, seed=7),
    )
    try:
        for _ in range(3):
            naa_invoke(handle)
            assert naa_wait(handle, timeout=60).naa_error == 0
    finally:
        naa_finalize(handle)
    assert np.all(data == 3)
    _, text = naa.get("/metrics")
    naks = {
        s.labels["syndrome"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "naa_rdma_naks_total" and s.labels["direction"] == "sent"
    }
    assert naks.get("psn_sequence_error", 0) > 0
