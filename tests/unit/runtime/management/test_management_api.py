"""The management HTTP API in-process (aiohttp test server): auth, errors, flash, scrub."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from naa_runtime.bitstream import digest_of
from naa_runtime.kernels import KernelContext, default_registry
from naa_runtime.management import create_app, naa_registry
from naa_runtime.naa import NAAConfig, SoftwareNAA

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = b"kind: SoftwareBitstream\nfunctions:\n  - {name: busy, fnCode: 20, kernel: test.busy}\n"


class _ConnectionCount:
    """Stands in for the RPC server's connection count; the integration tests use real ones."""

    def __init__(self) -> None:
        self.active_connections = 0
        self.disconnected = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def disconnect_all(self) -> None:
        self.disconnected += 1
        self.active_connections = 0


@pytest.fixture
def plane() -> _ConnectionCount:
    return _ConnectionCount()


@pytest.fixture
async def naa(plane: _ConnectionCount) -> AsyncIterator[SoftwareNAA]:
    naa = SoftwareNAA(
        config=NAAConfig(name="naa-t", address="127.0.0.1", flash_seconds=0.05),
        registry=default_registry(),
        data_plane=lambda lookup, observer: plane,
    )
    await naa.start()
    yield naa
    await naa.stop()


@pytest.fixture
async def client(naa: SoftwareNAA) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(naa=naa, token=TOKEN, metrics=naa_registry(naa))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "busy.yaml"
    path.write_bytes(DOC)
    return path.as_uri(), digest_of(DOC)


async def _wait_state(client: TestClient[Any, Any], state: str) -> dict[str, Any]:
    for _ in range(200):
        health: dict[str, Any] = await (await client.get("/v1/health", headers=AUTH)).json()
        if health["state"] == state:
            return health
        await asyncio.sleep(0.02)
    raise AssertionError(f"NAA never reached {state}: {health}")


@pytest.mark.parametrize("path", ["/v1/identity", "/v1/health", "/v1/sensors", "/metrics"])
async def test_requests_without_a_token_get_401_json(
    client: TestClient[Any, Any], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "unauthorized"
    assert "Bearer" in body["message"]


async def test_a_wrong_token_gets_401(client: TestClient[Any, Any]) -> None:
    response = await client.get("/v1/health", headers={"Authorization": "Bearer nope"})
    assert response.status == 401


async def test_unknown_paths_and_methods_answer_json_errors(client: TestClient[Any, Any]) -> None:
    missing = await client.get("/v2/nothing", headers=AUTH)
    assert missing.status == 404
    assert (await missing.json())["error"] == "not-found"
    wrong = await client.get("/v1/flash", headers=AUTH)
    assert wrong.status == 405
    assert "POST" in (await wrong.json())["message"]


async def test_an_unflashed_naa_is_idle_and_serves_the_test_kernels(
    client: TestClient[Any, Any],
) -> None:
    health = await (await client.get("/v1/health", headers=AUTH)).json()
    assert health == {
        "state": "Idle",
        "healthy": True,
        "reason": "",
        "loadedBitstream": None,
        "activeConnections": 0,
        "functions": [1, 2, 3],
    }


async def test_flash_loads_the_bitstream_functions_and_is_idempotent_by_digest(
    client: TestClient[Any, Any], naa: SoftwareNAA, artifact: tuple[str, str]
) -> None:
    uri, digest = artifact
    body = {"name": "busy", "digest": digest, "artifact": uri}
    first = await client.post("/v1/flash", json=body, headers=AUTH)
    assert first.status == 202
    assert await first.json() == {"state": "Flashing"}
    joined = await client.post("/v1/flash", json=body, headers=AUTH)
    assert joined.status == 202
    health = await _wait_state(client, "Ready")
    assert health["loadedBitstream"] == {"name": "busy", "digest": digest}
    assert health["functions"] == [20]
    assert naa.lookup(1) is None
    again = await client.post("/v1/flash", json=body, headers=AUTH)
    assert again.status == 200
    assert await again.json() == {"state": "Ready", "alreadyLoaded": True}


async def test_a_digest_mismatch_is_400_and_leaves_the_naa_in_error(
    client: TestClient[Any, Any], naa: SoftwareNAA, artifact: tuple[str, str]
) -> None:
    uri, _ = artifact
    body = {"name": "busy", "digest": "sha256:" + "0" * 64, "artifact": uri}
    response = await client.post("/v1/flash", json=body, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"] == "digest-mismatch"
    health = await (await client.get("/v1/health", headers=AUTH)).json()
    assert health["state"] == "Error"
    assert health["healthy"] is False
    assert "digest" in health["reason"]
    assert health["functions"] == []
    assert naa.lookup(1) is None


async def test_a_bitstream_naming_an_unknown_kernel_fails_with_error_state(
    client: TestClient[Any, Any], tmp_path: Path
) -> None:
    doc = b"kind: SoftwareBitstream\nfunctions: [{name: x, fnCode: 30, kernel: poet.nothere}]\n"
    (tmp_path / "x.yaml").write_bytes(doc)
    body = {"name": "x", "digest": digest_of(doc), "artifact": (tmp_path / "x.yaml").as_uri()}
    response = await client.post("/v1/flash", json=body, headers=AUTH)
    assert response.status == 400
    error = await response.json()
    assert error["error"] == "unknown-kernel"
    assert "poet.nothere" in error["message"]
    health = await (await client.get("/v1/health", headers=AUTH)).json()
    assert health["state"] == "Error"
    assert "poet.nothere" in health["reason"]


async def test_flash_is_refused_while_connections_are_active_unless_forced(
    client: TestClient[Any, Any], plane: _ConnectionCount, artifact: tuple[str, str]
) -> None:
    uri, digest = artifact
    plane.active_connections = 2
    body: dict[str, Any] = {"name": "busy", "digest": digest, "artifact": uri}
    refused = await client.post("/v1/flash", json=body, headers=AUTH)
    assert refused.status == 409
    assert (await refused.json())["error"] == "connections-active"
    assert (await (await client.get("/v1/health", headers=AUTH)).json())["state"] == "Idle"
    forced = await client.post("/v1/flash", json={**body, "force": True}, headers=AUTH)
    assert forced.status == 202


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b'{"name": "x"}', "digest"),
        (b'{"name": "x", "digest": "sha256:1", "artifact": "file:///x"}', "sha256"),
        (b'{"name": "x", "digest": "d", "artifact": "a", "colour": 1}', "colour"),
    ],
)
async def test_malformed_flash_requests_are_400_and_change_nothing(
    client: TestClient[Any, Any], body: bytes, fragment: str
) -> None:
    response = await client.post("/v1/flash", data=body, headers=AUTH)
    assert response.status == 400
    assert fragment in (await response.json())["message"]
    assert (await (await client.get("/v1/health", headers=AUTH)).json())["state"] == "Idle"


async def test_scrub_resets_an_error_naa_to_idle_with_test_kernels(
    client: TestClient[Any, Any], naa: SoftwareNAA, artifact: tuple[str, str]
) -> None:
    uri, _ = artifact
    bad = {"name": "busy", "digest": "sha256:" + "1" * 64, "artifact": uri}
    await client.post("/v1/flash", json=bad, headers=AUTH)
    response = await client.post("/v1/scrub", headers=AUTH)
    assert response.status == 200
    assert await response.json() == {"state": "Idle", "scrubbed": True}
    assert naa.functions == [1, 2, 3]


async def test_scrub_replaces_kernel_instances_and_keeps_the_bitstream(
    client: TestClient[Any, Any], naa: SoftwareNAA, artifact: tuple[str, str]
) -> None:
    uri, digest = artifact
    await client.post(
        "/v1/flash", json={"name": "b", "digest": digest, "artifact": uri}, headers=AUTH
    )
    await _wait_state(client, "Ready")
    before = naa.lookup(20)
    assert (await client.post("/v1/scrub", headers=AUTH)).status == 200
    assert naa.lookup(20) is not before
    assert naa.loaded is not None
    assert naa.loaded.digest == digest


async def test_scrub_drops_open_connections_because_they_hold_the_memory_regions(
    client: TestClient[Any, Any], plane: _ConnectionCount
) -> None:
    plane.active_connections = 1
    response = await client.post("/v1/scrub", json={}, headers=AUTH)
    assert response.status == 200
    assert plane.disconnected == 1


async def test_scrub_refuses_unknown_body_fields(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/scrub", json={"force": True}, headers=AUTH)
    assert response.status == 400
    assert "force" in (await response.json())["message"]


async def test_identity_reports_board_resources_and_data_plane(
    client: TestClient[Any, Any],
) -> None:
    identity = await (await client.get("/v1/identity", headers=AUTH)).json()
    assert identity["name"] == "naa-t"
    assert identity["serial"].startswith("SWNAA-")
    assert identity["dataPlane"] == {"address": "127.0.0.1", "port": 4791, "cmPort": 12345}
    assert set(identity["resources"]) == {"lut", "ff", "dsp", "bram", "uram", "memoryBytes"}


async def test_sensors_and_metrics_report_power_and_energy(
    client: TestClient[Any, Any],
) -> None:
    sensors = await (await client.get("/v1/sensors", headers=AUTH)).json()
    assert sensors["powerWatts"] >= 27.0
    assert sensors["timestampNs"] > 1_600_000_000 * 10**9
    assert 0.0 <= sensors["activity"]["busy"] <= 1.0
    text = await (await client.get("/metrics", headers=AUTH)).text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"naa_power_watts", "naa_energy_joules", "naa_state", "naa_rpc_payload_bytes"} <= names


async def test_work_reported_by_kernels_is_exported_and_survives_a_scrub(tmp_path: Path) -> None:
    registry = default_registry()

    class Epochs:
        def __init__(self, context: KernelContext) -> None:
            self.context = context

        def __call__(self, *, inputs: object, outputs: object, user: int, deadline: float) -> int:
            self.context.count_work("training_epochs", user)
            return 0

    registry.register_shared("core.fit", Epochs)
    doc = b"kind: SoftwareBitstream\nfunctions: [{name: fit, fnCode: 19, kernel: core.fit}]\n"
    (tmp_path / "fit.yaml").write_bytes(doc)
    naa = SoftwareNAA(
        config=NAAConfig(name="naa-w", address="127.0.0.1", flash_seconds=0), registry=registry
    )
    app = create_app(naa=naa, token=TOKEN, metrics=naa_registry(naa))
    async with TestClient(TestServer(app)) as client:
        flash = {
            "name": "fit",
            "digest": digest_of(doc),
            "artifact": (tmp_path / "fit.yaml").as_uri(),
        }
        assert (await client.post("/v1/flash", json=flash, headers=AUTH)).status == 202
        await _wait_state(client, "Ready")

        def fit(epochs: int) -> None:
            kernel = naa.lookup(19)
            assert kernel is not None
            kernel(inputs=[], outputs=[], user=epochs, deadline=time.monotonic() + 10)

        async def epochs() -> float:
            text = await (await client.get("/metrics", headers=AUTH)).text()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "naa_training_epochs_total":
                        return sample.value
            raise AssertionError("naa_training_epochs_total missing")

        fit(20)
        assert await epochs() == 20
        assert (await client.post("/v1/scrub", headers=AUTH)).status == 200
        fit(5)
        assert await epochs() == 25


async def test_an_oversized_body_is_answered_with_a_json_413(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/flash", data=b"x" * 100_000, headers=AUTH)
    assert response.status == 413
    assert (await response.json())["error"] == "request-too-large"
