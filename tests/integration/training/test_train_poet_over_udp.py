"""The POET surrogate trained on a real software NAA (`naaice runtime serve`) over RoCEv2/UDP:
the training-core bitstream is flashed through the management plane, the host application
drives it through the five-call API, and the held-out metrics come back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from naa_runtime.apps import train_poet as app
from naa_runtime.bitstream import digest_of
from naa_runtime.client import reset_naa_spec
from naa_runtime.training.trainer import HyperParameters
from tests.support.naa import RunningNAA, SoftwareNAAFactory, host_side_address

ARTIFACT = Path(__file__).resolve().parents[3] / "examples" / "bitstreams" / "training-core.yaml"
PARAMS = {16: 3, 17: 1, 18: 2, 19: 1, 20: 1, 21: 1}


@pytest.fixture
def training_naa(
    software_naa: SoftwareNAAFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RunningNAA]:
    monkeypatch.setenv("NAAICE_CACHE", str(tmp_path / "cache"))
    naa = software_naa()
    data = ARTIFACT.read_bytes()
    status, body = naa.post(
        "/v1/flash",
        {"name": "training-core", "digest": digest_of(data), "artifact": ARTIFACT.as_uri()},
    )
    assert status == 202, body
    assert naa.wait_for_state("Ready")["functions"] == sorted(PARAMS)
    monkeypatch.setenv("NAA_SPEC", ",".join(f"{naa.address}::{fn}:{n}" for fn, n in PARAMS.items()))
    reset_naa_spec()
    yield naa
    reset_naa_spec()


def test_the_session_functions_train_the_surrogate_and_report_held_out_metrics(
    training_naa: RunningNAA, tmp_path: Path
) -> None:
    config = app.RunConfig(
        preset="ci",
        keep_inert=0.2,
        hyper=HyperParameters(batch_size=256, mb_lambda=1.0, seed=2),
        epochs=6,
        local_address=host_side_address(),
        out=tmp_path / "run",
    )
    prepared = app.prepare(config)
    result = app.run(config, prepared=prepared)
    history = result["lossHistory"]
    assert len(history) == 6
    assert history[-1] < 0.3 * history[0]
    assert result["path"].startswith("NAA")
    assert result["estimate"]["board"] == "u55c"
    test = result["evaluation"]["test"]
    # Clearly better than predicting the training mean of every column (the test split lies
    # later in time, so it is partly extrapolation).
    _, y_train = prepared.scaled(prepared.train)
    _, y_test = prepared.scaled(prepared.test)
    assert 0 < test["mse"] < 0.5 * float(np.mean((y_test - y_train.mean(axis=0)) ** 2))
    assert set(test["massResidualMean"]) == {"Ba", "Sr", "S", "Cl"}
    written = json.loads((tmp_path / "run" / "result.json").read_text())
    assert written["evaluation"]["test"]["mse"] == test["mse"]
    for plot in ("loss.png", "predicted-vs-reference.png", "mass-balance.png"):
        assert (tmp_path / "run" / plot).stat().st_size > 10_000


def test_poets_own_offload_layout_trains_over_udp(training_naa: RunningNAA, tmp_path: Path) -> None:
    config = app.RunConfig(
        preset="ci",
        iterations=20,
        hyper=HyperParameters(batch_size=1280, seed=1),
        epochs=20,
        mode="poet",
        chunk_rows=2500,
        local_address=host_side_address(),
        out=tmp_path / "poet",
        plots=False,
    )
    result = app.run(config)
    history = result["lossHistory"]  # MSE of each 2500-row chunk before its call
    assert len(history) == 3  # 14 training iterations × 400 cells = 5600 rows
    assert history[-1] < history[0]
    assert result["evaluation"]["test"]["mse"] < history[0]
