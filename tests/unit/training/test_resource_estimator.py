"""The FPGA resource estimator: documented numbers for POET's model, refusal with numbers."""

from __future__ import annotations

import pytest

from naa_runtime.training import estimator
from naa_runtime.training.graph import parse_description, poet_m0


@pytest.mark.parametrize("board", ["u55c", "u280"])
def test_poets_model_fits_an_alveo_at_reuse_16_with_documented_numbers(board: str) -> None:
    est = estimator.estimate(graph=poet_m0(), target=estimator.board(board))
    assert est.reuse_factor == 16
    # 3 GEMMs × 5 DSP per float32 MAC × Σ⌈MACs/16⌉ = 15 × (6+27+288+144+14)
    assert est.dsp == 7185
    assert est.bram == 479
    assert est.uram == 0
    assert est.lut == 3 * 420 * 479 + estimator.CONTROL_LUT
    assert est.cycles_per_sample == 16
    assert est.available["dsp"] == 7219
    # DSP utilisation 99.5 % derates the 300 MHz kernel clock to 211 MHz.
    assert est.clock_mhz == pytest.approx(211.06, abs=0.01)
    assert est.samples_per_second == pytest.approx(211.06e6 / 16, rel=1e-4)


def test_a_fully_parallel_float32_core_is_refused_with_the_dsp_numbers() -> None:
    with pytest.raises(estimator.ModelDoesNotFit) as info:
        estimator.estimate(graph=poet_m0(), target=estimator.board("u55c"), reuse_factor=1)
    assert info.value.shortfalls["dsp"] == (114_615, 7_219)
    assert "DSP: needs 114,615, u55c has 7,219 available" in str(info.value)


def test_a_model_too_large_for_any_reuse_is_refused_for_memory() -> None:
    big = parse_description(
        {
            "layers": [{"type": "Input", "shape": [12]}]
            + [{"type": "Dense", "units": 2048, "activation": "relu"}] * 3
            + [{"type": "Dense", "units": 12}]
        }
    )
    with pytest.raises(estimator.ModelDoesNotFit, match="URAM: needs") as info:
        estimator.estimate(graph=big, target=estimator.board("u280"))
    need, have = info.value.shortfalls["uram"]
    assert need > have == 768


def test_fixed_point_needs_fewer_dsps_and_runs_faster() -> None:
    f32 = estimator.estimate(graph=poet_m0(), target=estimator.board("u55c"))
    fx16 = estimator.estimate(
        graph=poet_m0(), target=estimator.board("u55c"), number_format="fixed16"
    )
    assert fx16.reuse_factor < f32.reuse_factor
    assert fx16.samples_per_second > f32.samples_per_second


def test_an_unknown_board_lists_the_known_ones() -> None:
    with pytest.raises(estimator.EstimatorError, match="u55c"):
        estimator.board("vu19p")
