"""The barite/celestite generator: exact element conservation, determinism, cache, physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from naa_runtime.poet import chemistry, generator
from naa_runtime.poet.dataset import COLUMNS, ELEMENTS, PoetDataset, stoichiometry


def test_every_element_is_conserved_exactly_in_every_pair(ci_dataset: PoetDataset) -> None:
    e = stoichiometry()
    before, after = ci_dataset.x @ e.T, ci_dataset.y @ e.T
    assert np.max(np.abs(after - before) / np.maximum(np.abs(before), 1e-300)) < 1e-14
    # The data are not trivially conservative: the minerals really react.
    assert np.max(np.abs(ci_dataset.y[:, 7] - ci_dataset.x[:, 7])) > 1e-3


def test_charge_stays_balanced_through_the_reactions(ci_dataset: PoetDataset) -> None:
    assert np.max(np.abs(ci_dataset.y[:, COLUMNS.index("Charge")])) < 1e-12


def test_the_same_configuration_gives_bit_identical_data() -> None:
    config = generator.preset("ci", iterations=5)
    x1, y1, _ = generator.simulate(config)
    x2, y2, _ = generator.simulate(config)
    assert np.array_equal(x1, x2)
    assert np.array_equal(y1, y2)


def test_generated_data_are_cached_and_reloaded(cache_dir: Path) -> None:
    config = generator.preset("ci", iterations=3)
    first = generator.generate(config)
    files = list(cache_dir.glob("ci-*.npz"))
    assert len(files) == 1
    second = generator.generate(config)
    assert np.array_equal(first.y, second.y)
    assert second.meta["iterations"] == 3


def test_pore_water_saturation_is_close_to_phreeqc() -> None:
    # PHREEQC 3.8.6 with phreeqc.dat gives 6.2047e-4 mol/kgw Sr = S(6) at celestite saturation.
    assert chemistry.celestite_saturation() == pytest.approx(6.2047e-4, rel=0.05)


def test_injected_barium_precipitates_barite_and_dissolves_celestite(
    ci_dataset: PoetDataset,
) -> None:
    last = ci_dataset.y[ci_dataset.iteration == ci_dataset.iteration.max()]
    corner = last[0]  # cell (0, 0) sits at the BaCl2 inlet
    far = last[-1]
    assert corner[COLUMNS.index("Barite")] > 0.01
    assert corner[COLUMNS.index("Celestite")] < 0.99
    assert far[COLUMNS.index("Barite")] == pytest.approx(0.001, abs=1e-5)


def test_splits_follow_time_and_bounds_cover_the_training_split(ci_dataset: PoetDataset) -> None:
    train, val, test = ci_dataset.splits()
    assert len(train) + len(val) + len(test) == len(ci_dataset)
    assert len(train) == 70 * 400
    bounds = ci_dataset.bounds(train)
    scaled = bounds.scale(train.y)
    assert scaled.min() >= 0.0
    assert scaled.max() <= 1.0
    assert ELEMENTS == ("Ba", "Sr", "S", "Cl")


def test_an_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(generator.UnknownPreset, match="barite50"):
        generator.preset("barite51")


def test_the_cached_file_ships_stoichiometry_and_bounds(cache_dir: Path) -> None:
    data = generator.generate(generator.preset("ci", iterations=4))
    (path,) = cache_dir.glob("ci-*.npz")
    with np.load(path) as z:
        assert np.array_equal(z["stoichiometry"], stoichiometry())
        assert tuple(z["columns"]) == COLUMNS
        assert np.array_equal(z["bounds_lo"], data.bounds().lo)
        assert np.array_equal(z["bounds_hi"], data.bounds().hi)


def test_loading_a_cached_file_gives_the_same_dataset(cache_dir: Path) -> None:
    first = generator.generate(generator.preset("ci", iterations=4))
    again = PoetDataset.load(next(cache_dir.glob("ci-*.npz")))
    assert np.array_equal(first.x, again.x)
    assert np.array_equal(first.iteration, again.iteration)
