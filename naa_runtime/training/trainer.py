"""The training core: a network, the Huber + mass-balance loss, an optimizer and the epoch
loader put together; `fit` runs N epochs and returns the loss history.

This is what the NAA's training kernels run and what `naaice train poet --local` runs in-process
(the CPU reference). Data arrive already scaled to [0, 1]; the loss needs the mass-balance matrix
built from the stoichiometry and the scaling bounds (`naa_runtime.training.loss`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from naa_runtime.training.graph import NetworkGraph
from naa_runtime.training.loader import EpochLoader
from naa_runtime.training.loss import HuberMassBalance
from naa_runtime.training.network import Network
from naa_runtime.training.optim import SGD, Adam, Optimizer


@functools.cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


class TrainingError(ValueError):
    """Bad hyper-parameters or data; the message says which and what to do."""


class DeadlinePassed(RuntimeError):
    """Training stopped at an epoch boundary because the caller's deadline passed."""

    def __init__(self, history: list[float]) -> None:
        super().__init__(f"deadline passed after {len(history)} epoch(s)")
        self.history = history


@dataclass(frozen=True, slots=True)
class HyperParameters:
    """Optimizer, loss and loader settings. Defaults: POET's M0 run (Adam 1e-3, batch 1280)."""

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-7
    momentum: float = 0.9
    batch_size: int = 1280
    loss: str = "huber"
    huber_delta: float = 0.05
    mb_lambda: float = 0.0
    mb_norm: str = "l2"
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise TrainingError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise TrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise TrainingError(f"batch_size must be ≥ 1, got {self.batch_size}")
        if self.loss not in ("huber", "mse"):
            raise TrainingError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        if not self.huber_delta > 0:
            raise TrainingError(f"huber_delta must be > 0, got {self.huber_delta}")
        if self.mb_lambda < 0:
            raise TrainingError(f"mb_lambda must be ≥ 0, got {self.mb_lambda}")
        if self.mb_norm not in ("l1", "l2"):
            raise TrainingError(f"mb_norm must be 'l1' or 'l2', got {self.mb_norm!r}")
        if not 0 <= self.momentum < 1:
            raise TrainingError(f"momentum must be in [0, 1), got {self.momentum}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HyperParameters:
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise TrainingError(
                f"unknown hyper-parameter(s) {sorted(unknown)}; known: {', '.join(known)}"
            )
        values: dict[str, Any] = {}
        for key, raw in data.items():
            value = raw
            default = getattr(cls(), key)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value
            else:
                ok = isinstance(value, str)
            if not ok:
                raise TrainingError(
                    f"hyper-parameter {key!r} must be a {type(default).__name__}, got {value!r}"
                )
            values[key] = value
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Trainer:
    """Owns one network and its optimizer state; `set_data` then `fit` as often as needed."""

    def __init__(
        self,
        graph: NetworkGraph,
        hyper: HyperParameters,
        *,
        mb_matrix: np.ndarray | None = None,
        dtype: type[np.floating] = np.float32,
        blas_threads: int | None = 1,
    ) -> None:
        self.graph = graph
        # The core's GEMMs are at most batch × 128: one BLAS thread is as fast as two on an idle
        # machine and an order of magnitude faster on a busy one (OpenBLAS threads spin-wait).
        self.blas_threads = blas_threads
        self.hyper = hyper
        self.dtype = np.dtype(dtype)
        if mb_matrix is not None and mb_matrix.shape[0] != graph.outputs:
            raise TrainingError(
                f"mass-balance matrix has {mb_matrix.shape[0]} rows, the model "
                f"{graph.outputs} outputs"
            )
        self.network = Network(graph, dtype=self.dtype, seed=hyper.seed)
        self.loss = HuberMassBalance(
            delta=hyper.huber_delta,
            mb_lambda=hyper.mb_lambda,
            mb_matrix=mb_matrix,
            dtype=self.dtype,
            kind=hyper.loss,
            mb_norm=hyper.mb_norm,
        )
        size = self.network.params.size
        self.optimizer: Optimizer
        if hyper.optimizer == "adam":
            self.optimizer = Adam(
                size=size,
                dtype=self.dtype,
                lr=hyper.learning_rate,
                beta1=hyper.beta1,
                beta2=hyper.beta2,
                epsilon=hyper.epsilon,
            )
        else:
            self.optimizer = SGD(
                size=size, dtype=self.dtype, lr=hyper.learning_rate, momentum=hyper.momentum
            )
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self.loader: EpochLoader | None = None
        self.updates = 0

    @property
    def rows(self) -> int:
        return 0 if self._x is None else int(self._x.shape[0])

    def held_data(self) -> tuple[np.ndarray, np.ndarray]:
        """The training set held on the core (scaled, the core's dtype)."""
        if self._x is None or self._y is None:
            raise TrainingError("no training data loaded")
        return self._x[:, :-1], self._y

    def set_data(self, x: np.ndarray, y: np.ndarray) -> None:
        """The (scaled) training set held for the following `fit` calls."""
        if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
            raise TrainingError(f"inputs {x.shape} and targets {y.shape} must be rows × columns")
        if x.shape[1] != self.graph.inputs or y.shape[1] != self.graph.outputs:
            raise TrainingError(
                f"the model takes {self.graph.inputs} inputs and {self.graph.outputs} outputs, "
                f"the data have {x.shape[1]} and {y.shape[1]} columns"
            )
        if x.shape[0] == 0:
            raise TrainingError("the training set is empty")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise TrainingError("the training data contain NaN or infinite values")
        self._x = self.network.augment(x)  # trailing ones column: the bias input
        self._y = np.ascontiguousarray(y, dtype=self.dtype)
        epoch = self.loader.epoch if self.loader else 0
        self.loader = EpochLoader(
            rows=self._x.shape[0],
            batch_size=self.hyper.batch_size,
            seed=self.hyper.seed,
            shuffle=self.hyper.shuffle,
        )
        self.loader.epoch = epoch

    def fit(
        self,
        epochs: int,
        *,
        on_epoch: Callable[[int, float], None] | None = None,
        deadline: float | None = None,
    ) -> list[float]:
        """Train `epochs` epochs; returns the mean batch loss of each (weighted by batch size).

        `deadline` (time.monotonic()) is checked between epochs."""
        if self._x is None or self._y is None or self.loader is None:
            raise TrainingError("no training data: load data before training")
        data = (self._x, self._y, self.loader)
        if self.blas_threads is None:
            return self._fit(data, epochs, on_epoch=on_epoch, deadline=deadline)
        with _threadpools().limit(limits=self.blas_threads, user_api="blas"):
            return self._fit(data, epochs, on_epoch=on_epoch, deadline=deadline)

    def _fit(
        self,
        data: tuple[np.ndarray, np.ndarray, EpochLoader],
        epochs: int,
        *,
        on_epoch: Callable[[int, float], None] | None,
        deadline: float | None,
    ) -> list[float]:
        x, y, loader = data
        net, loss, opt = self.network, self.loss, self.optimizer
        params, grads = net.params, net.grads
        # One gather per epoch into the shuffled copies; batches are then contiguous views.
        xs, ys = np.empty_like(x), np.empty_like(y)
        batches = [
            (xs[a:b], ys[a:b], net.workspace(b - a), b - a) for a, b in loader.batch_bounds()
        ]
        forward, backward, step = net.forward, net.backward, opt.step
        history: list[float] = []
        for e in range(epochs):
            order = loader.next_order()
            np.take(x, order, axis=0, out=xs)
            np.take(y, order, axis=0, out=ys)
            total = 0.0
            for xb, yb, ws, n in batches:
                total += loss(forward(ws, xb), yb, ws.grad_out) * n
                backward(ws, xb)
                step(params, grads)
            self.updates += loader.batches_per_epoch
            history.append(total / self.rows)
            if on_epoch is not None:
                on_epoch(e, history[-1])
            if deadline is not None and e + 1 < epochs and time.monotonic() > deadline:
                raise DeadlinePassed(history)
        return history

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.blas_threads is None:
            return self.network.predict(x)
        with _threadpools().limit(limits=self.blas_threads, user_api="blas"):
            return self.network.predict(x)
