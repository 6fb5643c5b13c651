"""The POET training-pair dataset and what ships with it: POET's 9 column names, the
stoichiometry matrix (elements × columns), time-based splits and min–max scaling bounds.

Owned here; produced by `naa_runtime.poet.generator` (and the PHREEQC reference), consumed by
the training core, the host application and the bench.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# POET's "dht_species" order: input and output columns of the surrogate.
COLUMNS: tuple[str, ...] = ("H", "O", "Charge", "Ba", "Cl", "S", "Sr", "Barite", "Celestite")
ELEMENTS: tuple[str, ...] = ("Ba", "Sr", "S", "Cl")


def stoichiometry() -> np.ndarray:
    """E (4 elements × 9 columns): element totals are E·c with c in mol (1 kg water per cell).

    S(6) stands for sulfate; H, O and Charge carry no tracked element."""
    e = np.zeros((len(ELEMENTS), len(COLUMNS)))
    col = {name: i for i, name in enumerate(COLUMNS)}
    e[0, col["Ba"]] = e[0, col["Barite"]] = 1.0
    e[1, col["Sr"]] = e[1, col["Celestite"]] = 1.0
    e[2, col["S"]] = e[2, col["Barite"]] = e[2, col["Celestite"]] = 1.0
    e[3, col["Cl"]] = 1.0
    return e


@dataclass(frozen=True, slots=True)
class Split:
    """Rows of one split in physical units (mol), float64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True, slots=True)
class Bounds:
    """Fixed per-column min–max bounds: scaled = (c − lo) / (hi − lo)."""

    lo: np.ndarray
    hi: np.ndarray

    @property
    def span(self) -> np.ndarray:
        span: np.ndarray = self.hi - self.lo
        return span

    def scale(self, c: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (c - self.lo) / self.span
        return scaled

    def unscale(self, s: np.ndarray) -> np.ndarray:
        phys: np.ndarray = self.lo + self.span * s
        return phys

    def to_json(self) -> dict[str, list[float]]:
        return {"lo": self.lo.tolist(), "hi": self.hi.tolist()}


@dataclass(frozen=True, slots=True)
class PoetDataset:
    """All pairs of one generated run, with the iteration each came from."""

    x: np.ndarray  # (n, 9) float64, state after transport (the surrogate's input)
    y: np.ndarray  # (n, 9) float64, the same cell after chemistry (the target)
    iteration: np.ndarray  # (n,) int32, 1-based
    meta: dict[str, Any]

    @classmethod
    def from_arrays(
        cls, *, x: np.ndarray, y: np.ndarray, iteration: np.ndarray, meta: dict[str, Any]
    ) -> PoetDataset:
        return cls(x=x, y=y, iteration=iteration, meta=meta)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def stoichiometry(self) -> np.ndarray:
        return stoichiometry()

    def splits(self, *, train: float = 0.7, val: float = 0.15) -> tuple[Split, Split, Split]:
        """Split by time (iterations): the first `train` fraction, then `val`, then the rest."""
        last = int(self.iteration.max())
        t_end = max(1, round(last * train))
        v_end = max(t_end, round(last * (train + val)))
        masks = (
            self.iteration <= t_end,
            (self.iteration > t_end) & (self.iteration <= v_end),
            self.iteration > v_end,
        )
        a, b, c = (Split(self.x[m], self.y[m]) for m in masks)
        return a, b, c

    def bounds(self, split: Split | None = None) -> Bounds:
        """Min–max over inputs and targets of `split` (default: the training split).

        A constant column gets a span of 1 around its value so scaling stays finite."""
        if split is None:
            split = self.splits()[0]
        both = np.concatenate([split.x, split.y])
        lo, hi = both.min(axis=0), both.max(axis=0)
        flat = hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))
        lo = np.where(flat, lo - 0.5, lo)
        hi = np.where(flat, hi + 0.5, hi)
        return Bounds(lo=lo, hi=hi)

    def subsample(self, *, keep_inert: float, seed: int, threshold: float = 1e-9) -> PoetDataset:
        """Keep every reactive pair and a seeded random fraction of the inert ones.

        A pair is inert when no mineral changes by more than `threshold` mol."""
        change = np.abs(self.y[:, 7:9] - self.x[:, 7:9]).max(axis=1)
        rng = np.random.default_rng(seed)
        keep = (change > threshold) | (rng.random(len(self)) < keep_inert)
        return PoetDataset(self.x[keep], self.y[keep], self.iteration[keep], dict(self.meta))

    def save(self, path: Path) -> None:
        """One .npz with the pairs, E, the column names, the metadata and the min–max bounds of
        the default training split (`bounds()`), so the data travel with what the loss needs."""
        bounds = self.bounds()
        with path.open("wb") as fh:
            np.savez(
                fh,
                x=self.x,
                y=self.y,
                iteration=self.iteration,
                stoichiometry=stoichiometry(),
                columns=np.array(COLUMNS),
                elements=np.array(ELEMENTS),
                bounds_lo=bounds.lo,
                bounds_hi=bounds.hi,
                meta=np.array(json.dumps(self.meta)),
            )

    @classmethod
    def load(cls, path: Path) -> PoetDataset:
        with np.load(path) as z:
            return cls(
                x=z["x"], y=z["y"], iteration=z["iteration"], meta=json.loads(str(z["meta"]))
            )
