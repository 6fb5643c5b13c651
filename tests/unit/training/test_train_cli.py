"""`naaice train …` as a user runs it: the estimate command and a short local training run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from naaice_cli.main import app


def test_estimate_prints_the_documented_numbers_for_poets_model() -> None:
    result = CliRunner().invoke(app, ["train", "estimate", "--board", "u280"])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.output)
    assert estimate["reuseFactor"] == 16
    assert estimate["resources"]["dsp"] == 7185


def test_estimate_refuses_a_model_that_does_not_fit_with_the_numbers() -> None:
    result = CliRunner().invoke(app, ["train", "estimate", "--reuse-factor", "1"])
    assert result.exit_code == 1
    assert "DSP: needs 114,615" in result.output


def test_a_bad_model_file_names_the_layer(tmp_path: Path) -> None:
    model = tmp_path / "model.yaml"
    model.write_text("layers:\n  - {type: Input, shape: [9]}\n  - {type: Dense, units: 0}\n")
    result = CliRunner().invoke(app, ["train", "estimate", "--model", str(model)])
    assert result.exit_code == 2
    assert "layers[1]" in result.output


def test_local_training_writes_the_result_and_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NAAICE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "poet",
            "--local",
            "--iterations",
            "20",
            "--epochs",
            "3",
            "--batch-size",
            "256",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((out / "result.json").read_text())
    assert written["mode"] == "local"
    assert "not the NAA" in written["path"]
    assert len(written["lossHistory"]) == 3
    assert written["evaluation"]["test"]["mse"] > 0
    assert (out / "loss.png").exists()
