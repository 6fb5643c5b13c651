"""Evaluation metrics of a surrogate: MSE/MAE in scaled units, the per-element mass-balance
residual in physical units, and the fraction of predictions that pass POET's own runtime check.
Pure functions; called by the host application, the training kernels and the bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POET_EPSILONS = (1e-5, 1e-7, 3e-9)


@dataclass(frozen=True, slots=True)
class Metrics:
    mse: float
    mae: float
    mass_residual_mean: dict[str, float]  # mean |Δm_e| (mol) per element
    mass_residual_max: dict[str, float]
    poet_pass: dict[str, float]  # fraction passing |Δ(Ba+Barite)| + |Δ(Sr+Celestite)| < ε

    def to_json(self) -> dict[str, object]:
        return {
            "mse": self.mse,
            "mae": self.mae,
            "massResidualMean": self.mass_residual_mean,
            "massResidualMax": self.mass_residual_max,
            "poetPass": self.poet_pass,
        }


def evaluate(
    *,
    pred_scaled: np.ndarray,
    target_scaled: np.ndarray,
    pred: np.ndarray,
    inputs: np.ndarray,
    stoichiometry: np.ndarray,
    elements: tuple[str, ...],
    poet_rows: tuple[int, int] = (0, 1),
) -> Metrics:
    """Metrics of predictions `pred` (physical units) against the pre-chemistry `inputs`.

    The mass-balance residual Δm = E·(ĉ − c_in) is what the surrogate must keep at zero: a cell
    is closed over one chemistry step. `poet_rows` are the Ba and Sr rows of E (POET's check)."""
    diff = pred_scaled.astype(np.float64) - target_scaled
    dm = np.abs((pred.astype(np.float64) - inputs) @ stoichiometry.T)
    poet = dm[:, poet_rows[0]] + dm[:, poet_rows[1]]
    return Metrics(
        mse=float(np.mean(diff * diff)),
        mae=float(np.mean(np.abs(diff))),
        mass_residual_mean={e: float(dm[:, i].mean()) for i, e in enumerate(elements)},
        mass_residual_max={e: float(dm[:, i].max()) for i, e in enumerate(elements)},
        poet_pass={f"{eps:g}": float(np.mean(poet < eps)) for eps in POET_EPSILONS},
    )
