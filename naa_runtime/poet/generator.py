"""The POET barite benchmark generated in code: 2-D diffusion of the aqueous totals, then
closed-cell barite/celestite kinetics per cell, recorded as (before chemistry, after chemistry)
training pairs exactly as POET's `naaice` branch forms them.

Owns the grid presets, the transport step, the simulation loop and the on-disk cache
(`$NAAICE_CACHE/poet`). Called by `naa_runtime.apps.train_poet`, the bench and the tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from naa_runtime.poet import chemistry
from naa_runtime.poet.dataset import COLUMNS, PoetDataset

GENERATOR_VERSION = 1
H_WATER = 111.0124  # mol H in 1 kg water
O_WATER = 55.5087  # mol O in 1 kg water
INJECT_BA = 0.1  # mol/kgw, the BaCl2 solution
INJECT_CL = 0.2


@dataclass(frozen=True, slots=True)
class GridConfig:
    """One run of the benchmark. All boundaries are closed except the injection faces."""

    name: str
    nx: int
    ny: int
    lx: float  # m
    ly: float  # m
    diffusion: float  # m²/s
    dt: float  # s
    iterations: int
    inject_cells: int = 2  # first cells of the W and N edges (NW corner) held at BaCl2
    barite0: float = 0.001  # mol per cell (seed)
    celestite0: float = 1.0  # mol per cell
    kinetics: chemistry.Kinetics = field(default_factory=chemistry.Kinetics)

    def cache_key(self) -> str:
        blob = json.dumps({"v": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


PRESETS: dict[str, GridConfig] = {
    # D1-small: CI-sized, POET's barite.R grid with the NW-corner injection of barite_50ai.
    "ci": GridConfig("ci", 20, 20, 1.0, 1.0, 1e-6, 200.0, 100),
    # D1: POET's barite_50ai AI benchmark (2.5 M pairs).
    "barite50": GridConfig("barite50", 50, 50, 0.25, 0.25, 1e-8, 200.0, 1000),
    # D2: barite_200 (α = 4, so diffusion is substepped).
    "barite200": GridConfig("barite200", 200, 200, 1.0, 1.0, 1e-6, 100.0, 50),
}


class UnknownPreset(ValueError):
    """A preset name that is not in PRESETS."""


def preset(name: str, *, iterations: int | None = None) -> GridConfig:
    """A named preset, optionally with fewer or more iterations."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise UnknownPreset(
            f"unknown POET preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
    if iterations is None:
        return base
    return GridConfig(**{**asdict(base), "iterations": iterations, "kinetics": base.kinetics})


def _diffuse(c: np.ndarray, *, alpha: float, boundary: list[tuple[int, int, float, int]]) -> None:
    """One explicit FTCS step in place on c (species, ny, nx) with no-flux edges.

    `boundary` lists Dirichlet faces as (row, col, value-index, species-row)."""
    p = np.pad(c, ((0, 0), (1, 1), (1, 1)), mode="edge")
    lap = p[:, :-2, 1:-1] + p[:, 2:, 1:-1] + p[:, 1:-1, :-2] + p[:, 1:-1, 2:] - 4.0 * c
    for row, col, value, sp in boundary:
        lap[sp, row, col] += value - c[sp, row, col]
    c += alpha * lap


def simulate(config: GridConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the benchmark; returns X, Y (pairs × 9 POET columns, float64) and iteration (1-based)."""
    n = config.nx * config.ny
    sat = chemistry.celestite_saturation()
    # Aqueous totals: Ba, Cl, S(6), Sr (POET column order), mol/kgw.
    aq = np.zeros((4, config.ny, config.nx))
    aq[2] = sat
    aq[3] = sat
    barite = np.full(n, config.barite0)
    celestite = np.full(n, config.celestite0)
    dx, dy = config.lx / config.nx, config.ly / config.ny
    alpha_full = config.diffusion * config.dt / min(dx, dy) ** 2
    sub = max(1, math.ceil(alpha_full / 0.2))
    alpha = alpha_full / sub
    faces: list[tuple[int, int, float, int]] = []
    for k in range(min(config.inject_cells, config.nx, config.ny)):
        for row, col in ((0, k), (k, 0)):  # N edge, W edge
            faces += [(row, col, INJECT_BA, 0), (row, col, INJECT_CL, 1)]
            faces += [(row, col, 0.0, 2), (row, col, 0.0, 3)]
    x_all = np.empty((config.iterations, n, len(COLUMNS)))
    y_all = np.empty_like(x_all)
    for it in range(config.iterations):
        for _ in range(sub):
            _diffuse(aq, alpha=alpha, boundary=faces)
        np.maximum(aq, 0.0, out=aq)
        ba, cl, s, sr = (aq[i].reshape(n).copy() for i in range(4))
        _fill(x_all[it], ba, cl, s, sr, barite, celestite)
        xi_b, xi_c = chemistry.react(
            ba=ba,
            sr=sr,
            s=s,
            cl=cl,
            barite=barite,
            celestite=celestite,
            dt=config.dt,
            kinetics=config.kinetics,
        )
        ba = ba - xi_b
        sr = sr + xi_c
        s = s + xi_c - xi_b
        barite = barite + xi_b
        celestite = celestite - xi_c
        _fill(y_all[it], ba, cl, s, sr, barite, celestite)
        for i, arr in enumerate((ba, cl, s, sr)):
            aq[i] = arr.reshape(config.ny, config.nx)
    iteration = np.repeat(np.arange(1, config.iterations + 1, dtype=np.int32), n)
    return x_all.reshape(-1, len(COLUMNS)), y_all.reshape(-1, len(COLUMNS)), iteration


def _fill(  # noqa: PLR0917 - one positional per POET column keeps the call sites readable
    out: np.ndarray,
    ba: np.ndarray,
    cl: np.ndarray,
    s: np.ndarray,
    sr: np.ndarray,
    barite: np.ndarray,
    celestite: np.ndarray,
) -> None:
    out[:, 0] = H_WATER
    out[:, 1] = O_WATER
    out[:, 2] = 2.0 * ba + 2.0 * sr - 2.0 * s - cl  # charge: pH 7, so H+ and OH- cancel
    out[:, 3] = ba
    out[:, 4] = cl
    out[:, 5] = s
    out[:, 6] = sr
    out[:, 7] = barite
    out[:, 8] = celestite


def cache_dir() -> Path:
    """$NAAICE_CACHE/poet (default ~/.cache/naaice/poet)."""
    root = os.environ.get("NAAICE_CACHE") or str(Path.home() / ".cache" / "naaice")
    return Path(root) / "poet"


def generate(config: GridConfig, *, cache: bool = True) -> PoetDataset:
    """The dataset of `config`, from the cache when present, else simulated (and cached)."""
    path = cache_dir() / f"{config.name}-{config.cache_key()}.npz"
    if cache and path.exists():
        return PoetDataset.load(path)
    x, y, iteration = simulate(config)
    data = PoetDataset.from_arrays(x=x, y=y, iteration=iteration, meta=asdict(config))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        os.close(fd)
        data.save(Path(tmp))
        os.replace(tmp, path)
    return data
