"""Shared fixtures of the training-core tests: the CI-sized POET set, generated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from naa_runtime.poet import generator
from naa_runtime.poet.dataset import PoetDataset


@pytest.fixture(scope="session")
def ci_dataset(tmp_path_factory: pytest.TempPathFactory) -> PoetDataset:
    # NAAICE_CACHE is redirected only while generating: other areas' tests in the same session
    # find their cached binaries through it.
    cache = tmp_path_factory.mktemp("naaice-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NAAICE_CACHE", str(cache))
        return generator.generate(generator.preset("ci"))


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NAAICE_CACHE", str(tmp_path))
    return tmp_path / "poet"
