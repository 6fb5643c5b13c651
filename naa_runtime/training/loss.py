"""Huber + λ·mass-balance loss and its gradient w.r.t. the network output, fused per batch.

L = mean_{batch, outputs} Huber_δ(ŷ − y) + λ · mean_{batch, elements} (r_e / s_e)², with
r = E·diag(hi − lo)·(ŷ − y): the element totals of prediction and target in physical units
(min–max scaling is linear, so the residual is one constant matrix M = diag(span)·Eᵀ·diag(1/s)
applied to ŷ − y). With exactly conservative data E·c_target = E·c_input, so this is the
residual against the pre-chemistry input too; against PHREEQC's (not exactly conservative) data
the target is the safer reference. Called by `naa_runtime.training.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class LossError(ValueError):
    """Inconsistent loss configuration."""


def mass_balance_matrix(
    *, stoichiometry: np.ndarray, span: np.ndarray, element_scale: np.ndarray
) -> np.ndarray:
    """M (outputs × elements) so that (ŷ − y)·M is the scaled element residual r_e / s_e."""
    e = np.asarray(stoichiometry, dtype=np.float64)
    span = np.asarray(span, dtype=np.float64)
    scale = np.asarray(element_scale, dtype=np.float64)
    if e.ndim != 2 or e.shape[1] != span.shape[0]:
        raise LossError(
            f"stoichiometry matrix is {e.shape}, expected elements × {span.shape[0]} outputs"
        )
    if scale.shape != (e.shape[0],) or np.any(scale <= 0):
        raise LossError(f"element scales must be {e.shape[0]} positive numbers, got {scale}")
    m: np.ndarray = (span[:, None] * e.T) / scale[None, :]
    return m


class HuberMassBalance:
    """The loss over preallocated buffers; `mb_lambda = 0` (or no matrix) is plain Huber."""

    def __init__(
        self,
        *,
        delta: float,
        mb_lambda: float = 0.0,
        mb_matrix: np.ndarray | None = None,
        dtype: np.dtype[np.floating] | type[np.floating] = np.float32,
        kind: str = "huber",
        mb_norm: str = "l2",
    ) -> None:
        if kind not in ("huber", "mse"):
            raise LossError(f"loss must be 'huber' or 'mse', got {kind!r}")
        if mb_norm not in ("l1", "l2"):
            raise LossError(f"mass-balance norm must be 'l1' or 'l2', got {mb_norm!r}")
        if delta <= 0:
            raise LossError(f"Huber delta must be > 0, got {delta}")
        if mb_lambda < 0:
            raise LossError(f"mass-balance weight λ must be ≥ 0, got {mb_lambda}")
        if mb_lambda > 0 and mb_matrix is None:
            raise LossError("λ > 0 needs the stoichiometry matrix and scaling bounds")
        self.kind = kind
        self.mb_norm = mb_norm
        self.delta = float(delta)
        self.mb_lambda = float(mb_lambda)
        self.dtype = np.dtype(dtype)
        self.matrix = None if mb_matrix is None or mb_lambda == 0 else mb_matrix.astype(self.dtype)
        self._buffers: dict[int, _Buffers] = {}

    def _bufs(self, shape: tuple[int, int]) -> _Buffers:
        bufs = self._buffers.get(shape[0])
        if bufs is None:
            m = self.matrix
            r = None if m is None else np.empty((shape[0], m.shape[1]), self.dtype)
            # L2 folds into one outputs × outputs matrix: ∂/∂ŷ λ·mean(r²) = (ŷ − y)·G_B with
            # G_B = 2λ·M·Mᵀ / (B·n_e), and λ·mean(r²) = ½·⟨(ŷ − y)·G_B, ŷ − y⟩.
            gram = None
            if m is not None:
                g64 = m.astype(np.float64) @ m.astype(np.float64).T
                gram = (g64 * 2.0 * self.mb_lambda / (shape[0] * m.shape[1])).astype(self.dtype)
            bufs = _Buffers(
                diff=np.empty(shape, self.dtype),
                q=np.empty(shape, self.dtype),
                q2=np.empty(shape, self.dtype),
                r=r,
                gram=gram,
            )
            self._buffers[shape[0]] = bufs
        return bufs

    def __call__(self, pred: np.ndarray, target: np.ndarray, grad: np.ndarray) -> float:
        """The batch loss; writes ∂L/∂pred into `grad`."""
        bufs = self._bufs(pred.shape)
        diff, q = bufs.diff, bufs.q
        n = pred.size
        np.subtract(pred, target, out=diff)
        if self.kind == "mse":
            value = float(np.vdot(diff, diff)) / n
            np.multiply(diff, 2.0 / n, out=grad)
        else:
            # Huber(d) = q·(d − q/2) with q = clip(d, −δ, δ); its derivative is q.
            np.clip(diff, -self.delta, self.delta, out=q)
            value = float(np.vdot(q, diff)) - 0.5 * float(np.vdot(q, q))
            value /= n
            np.multiply(q, 1.0 / n, out=grad)
        if self.matrix is None:
            return value
        if self.mb_norm == "l2" and bufs.gram is not None:
            np.matmul(diff, bufs.gram, out=bufs.q2)
            value += 0.5 * float(np.vdot(bufs.q2, diff))
            grad += bufs.q2
        elif bufs.r is not None:  # the slide's |Δm|: λ·mean|r|, gradient λ·sign(r)·Mᵀ / size
            r = bufs.r
            np.matmul(diff, self.matrix, out=r)
            value += self.mb_lambda * float(np.abs(r).sum()) / r.size
            np.sign(r, out=r)
            np.matmul(r, self.matrix.T, out=q)
            q *= self.mb_lambda / r.size
            grad += q
        return value


@dataclass(slots=True)
class _Buffers:
    diff: np.ndarray
    q: np.ndarray
    q2: np.ndarray
    r: np.ndarray | None
    gram: np.ndarray | None
