"""SGD with momentum and Adam over the network's flat parameter vector: a handful of in-place
vector operations per weight update, whatever the number of layers. Update rules follow Keras 3
(Adam: ε added to √v without bias correction; SGD: v ← μv − ηg, p ← p + v), so runs compare
like for like. Called by `naa_runtime.training.trainer`.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

FLUSH_EVERY = 64  # updates between flushes of subnormal optimizer state
TINY = 1e-30


def flush_subnormals(state: np.ndarray) -> None:
    """Zero the values that have decayed towards the subnormal range. The moments of a
    parameter whose gradient is 0 (a dead ReLU unit) shrink geometrically and in a few hundred
    updates become float32 subnormals, on which x86 arithmetic is ~100× slower (measured: Adam's
    update took 400 µs instead of 10 µs). XLA flushes them by hardware mode; NumPy cannot."""
    np.copyto(state, 0, where=np.abs(state) < TINY)


class Optimizer(Protocol):
    def step(self, params: np.ndarray, grads: np.ndarray) -> None: ...

    def reset(self) -> None: ...


class SGD:
    def __init__(self, *, size: int, dtype: np.dtype[np.floating], lr: float, momentum: float):
        self.lr, self.momentum = lr, momentum
        self.velocity = np.zeros(size, dtype=dtype)
        self._steps = 0
        self._tmp = np.empty(size, dtype=dtype)

    def reset(self) -> None:
        self.velocity[...] = 0

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        if self.momentum:
            self.velocity *= self.momentum
            np.multiply(grads, self.lr, out=self._tmp)
            self.velocity -= self._tmp
            params += self.velocity
            self._steps += 1
            if self._steps % FLUSH_EVERY == 0:
                flush_subnormals(self.velocity)
        else:
            np.multiply(grads, self.lr, out=self._tmp)
            params -= self._tmp


class Adam:
    """Keras' Adam. Internally m and v are kept divided by (1 − β1) and (1 − β2), which saves
    two vector operations per update; the step is unchanged."""

    def __init__(
        self,
        *,
        size: int,
        dtype: np.dtype[np.floating],
        lr: float,
        beta1: float,
        beta2: float,
        epsilon: float,
    ):
        self.lr, self.beta1, self.beta2, self.epsilon = lr, beta1, beta2, epsilon
        self.m = np.zeros(size, dtype=dtype)
        self.v = np.zeros(size, dtype=dtype)
        self._tmp = np.empty(size, dtype=dtype)
        self.t = 0

    def reset(self) -> None:
        self.m[...] = 0
        self.v[...] = 0
        self.t = 0

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        self.t += 1
        b1, b2, tmp = self.beta1, self.beta2, self._tmp
        # m = (1−β1)·m̃, v = (1−β2)·ṽ:  m/(√v + ε) = c·m̃/(√ṽ + ε/√(1−β2)), c = (1−β1)/√(1−β2)
        root = math.sqrt(1.0 - b2)
        alpha = self.lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t) * (1.0 - b1) / root
        self.m *= b1
        self.m += grads
        self.v *= b2
        np.multiply(grads, grads, out=tmp)
        self.v += tmp
        np.sqrt(self.v, out=tmp)
        tmp += self.epsilon / root
        np.divide(self.m, tmp, out=tmp)
        tmp *= alpha
        params -= tmp
        if self.t % FLUSH_EVERY == 0:
            flush_subnormals(self.m)
            flush_subnormals(self.v)
