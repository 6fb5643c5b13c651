"""`naaice runtime serve` as a real process: the management API over real HTTP."""

from __future__ import annotations

import functools
import http.server
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from naa_runtime.bitstream import digest_of
from tests.support.naa import SoftwareNAAFactory, naaice_executable, next_free_address

BUSY = b"""\
apiVersion: naaice.io/v1alpha1
kind: SoftwareBitstream
name: busy-and-add
functions:
  - {name: add1, fnCode: 1, kernel: test.add1}
  - {name: busy, fnCode: 20, kernel: test.busy}
"""


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[str, str]:
    path = tmp_path / "busy-and-add.yaml"
    path.write_bytes(BUSY)
    return path.as_uri(), digest_of(BUSY)


@pytest.fixture
def http_artifacts(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server for artifacts in tmp_path; yields its base URL."""
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "busy-and-add.yaml").write_bytes(BUSY)
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served")
    )
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_without_or_with_a_wrong_token_are_refused(
    software_naa: SoftwareNAAFactory,
) -> None:
    naa = software_naa()
    for token in (None, "wrong-token"):
        status, body = naa.get("/v1/identity", token=token)
        assert status == 401
        assert body["error"] == "unauthorized"
    status, body = naa.post("/v1/flash", {"name": "x"}, token=None)
    assert status == 401


def test_identity_names_the_naa_and_its_data_plane(software_naa: SoftwareNAAFactory) -> None:
    naa = software_naa(name="naa-identity")
    status, identity = naa.get("/v1/identity")
    assert status == 200
    assert identity["name"] == "naa-identity"
    assert identity["dataPlane"] == {"address": naa.address, "port": 4791, "cmPort": 12345}
    # The serial is derived from the name, so it is stable across restarts.
    naa.stop()
    again = software_naa(name="naa-identity")
    assert again.get("/v1/identity")[1]["serial"] == identity["serial"]


def test_the_runtime_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [naaice_executable(), "runtime", "serve", "--address", next_free_address()],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode != 0
    assert "NAAICE_MGMT_TOKEN" in result.stderr


def test_insecure_mode_must_be_asked_for_and_is_logged(software_naa: SoftwareNAAFactory) -> None:
    naa = software_naa(secure=False)
    assert naa.get("/v1/health", token=None)[0] == 200
    assert "WITHOUT authentication" in naa.log()


def test_flashing_a_file_artifact_loads_its_functions_and_reflash_is_a_no_op(
    software_naa: SoftwareNAAFactory, artifact: tuple[str, str]
) -> None:
    uri, digest = artifact
    naa = software_naa(flash_seconds=0.3)
    assert naa.health()["functions"] == [1, 2, 3]
    request = {"name": "busy-and-add", "digest": digest, "artifact": uri}
    status, body = naa.post("/v1/flash", request)
    assert (status, body) == (202, {"state": "Flashing"})
    health = naa.wait_for_state("Ready")
    assert health["loadedBitstream"] == {"name": "busy-and-add", "digest": digest}
    assert health["functions"] == [1, 20]
    status, body = naa.post("/v1/flash", request)
    assert (status, body) == (200, {"state": "Ready", "alreadyLoaded": True})
    assert "flashing busy-and-add" in naa.log().lower()
    assert naa.log().lower().count("flashing busy-and-add") == 1


def test_flashing_an_http_artifact_works_like_a_file(
    software_naa: SoftwareNAAFactory, http_artifacts: str
) -> None:
    naa = software_naa(flash_seconds=0)
    request = {
        "name": "busy-and-add",
        "digest": digest_of(BUSY),
        "artifact": f"{http_artifacts}/busy-and-add.yaml",
    }
    assert naa.post("/v1/flash", request)[0] == 202
    assert naa.wait_for_state("Ready")["functions"] == [1, 20]


def test_an_unreachable_http_artifact_is_502_and_error(
    software_naa: SoftwareNAAFactory, http_artifacts: str
) -> None:
    naa = software_naa()
    request = {
        "name": "gone",
        "digest": digest_of(BUSY),
        "artifact": f"{http_artifacts}/gone.yaml",
    }
    status, body = naa.post("/v1/flash", request)
    assert status == 502
    assert body["error"] == "artifact-unavailable"
    assert "404" in body["message"]
    assert naa.health()["state"] == "Error"


def test_a_digest_mismatch_is_refused_and_puts_the_naa_in_error(
    software_naa: SoftwareNAAFactory, artifact: tuple[str, str]
) -> None:
    uri, digest = artifact
    naa = software_naa()
    wrong = "sha256:" + ("0" if digest[-1] != "0" else "1") * 64
    status, body = naa.post("/v1/flash", {"name": "x", "digest": wrong, "artifact": uri})
    assert status == 400
    assert body["error"] == "digest-mismatch"
    assert digest in body["message"]
    health = naa.health()
    assert health["state"] == "Error"
    assert health["healthy"] is False
    assert health["functions"] == []
    # Recovery: the right digest flashes fine from Error.
    assert naa.post("/v1/flash", {"name": "x", "digest": digest, "artifact": uri})[0] == 202
    assert naa.wait_for_state("Ready")["healthy"] is True


def test_sensors_report_a_rising_energy_counter_with_increasing_timestamps(
    software_naa: SoftwareNAAFactory,
) -> None:
    naa = software_naa()
    _, first = naa.get("/v1/sensors")
    naa.wait_for_state("Idle")
    time.sleep(0.3)
    _, second = naa.get("/v1/sensors")
    assert second["timestampNs"] > first["timestampNs"]
    assert second["energyMicrojoules"] > first["energyMicrojoules"]
    assert second["powerWatts"] == pytest.approx(27.0, abs=0.5)


def test_metrics_parse_as_prometheus_text(software_naa: SoftwareNAAFactory) -> None:
    naa = software_naa()
    status, text = naa.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    state = {s.labels["state"]: s.value for s in families["naa_state"].samples}
    assert state == {"Idle": 1.0, "Flashing": 0.0, "Ready": 0.0, "Error": 0.0}
    assert families["naa_energy_joules"].type == "counter"


EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("example", ["test-kernels", "poet-surrogate"])
def test_each_example_bitstream_flashes_with_its_published_digest(
    software_naa: SoftwareNAAFactory, example: str
) -> None:
    import yaml

    bitstream = yaml.safe_load((EXAMPLES / f"bitstream-{example}.yaml").read_text())
    artifact = EXAMPLES / "bitstreams" / f"{example}.yaml"
    naa = software_naa()
    request = {
        "name": bitstream["metadata"]["name"],
        "digest": bitstream["spec"]["digest"],
        "artifact": artifact.as_uri(),
    }
    status, body = naa.post("/v1/flash", request)
    assert status == 202, body
    health = naa.wait_for_state("Ready")
    assert health["functions"] == [f["fnCode"] for f in bitstream["spec"]["functions"]]


def test_the_flash_command_computes_the_digest_and_waits_for_ready(
    software_naa: SoftwareNAAFactory, tmp_path: Path
) -> None:
    naa = software_naa()
    (tmp_path / "busy-and-add.yaml").write_bytes(BUSY)
    token_file = tmp_path / "cli.token"
    token_file.write_text(naa.token)
    common = ["--endpoint", naa.url, "--token-file", str(token_file)]
    result = subprocess.run(
        [naaice_executable(), "runtime", "flash", str(tmp_path / "busy-and-add.yaml"), *common],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"state": "Ready"' in result.stdout
    assert naa.health()["loadedBitstream"] == {
        "name": "busy-and-add",
        "digest": digest_of(BUSY),
    }
    wrong = subprocess.run(
        [naaice_executable(), "runtime", "health", "--endpoint", naa.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "NAAICE_MGMT_TOKEN": "not-the-token"},
    )
    assert wrong.returncode == 1
    assert "401 unauthorized" in wrong.stderr
