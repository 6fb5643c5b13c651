"""SGD with momentum and Adam over the network's flat parameter vector: a handful of in-place
vector operations per weight update, whatever the number of layers. Update rules follow Keras 3
(Adam: ε added to √v without bias correction; SGD: v ← μv − ηg, p ← p + v), so runs compare
like for like. Called by `naa_runtime.training.trainer`.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np


class Optimizer(Protocol):
    def step(self, params: np.ndarray, grads: np.ndarray) -> None: ...

    def reset(self) -> None: ...


class SGD:
    def __init__(self, *, size: int, dtype: np.dtype[np.floating], lr: float, momentum: float):
        self.lr, self.momentum = lr, momentum
        self.velocity = np.zeros(size, dtype=dtype)
        self._tmp = np.empty(size, dtype=dtype)

    def reset(self) -> None:
        self.velocity[...] = 0

    def step(self, params: np.ndarray, grads: np.ndarray) -> None:
        if self.momentum:
            self.velocity *= self.momentum
            np.multiply(grads, self.lr, out=self._tmp)
            self.velocity -= self._tmp
            params += self.velocity
        else:
            np.multiply(grads, self.lr, out=self._tmp)
            params -= self._tmp


class Adam:
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
        alpha = self.lr * math.sqrt(1.0 - b2**self.t) / (1.0 - b1**self.t)
        self.m *= b1
        np.multiply(grads, 1.0 - b1, out=tmp)
        self.m += tmp
        self.v *= b2
        np.multiply(grads, grads, out=tmp)
        tmp *= 1.0 - b2
        self.v += tmp
        np.sqrt(self.v, out=tmp)
        tmp += self.epsilon
        np.divide(self.m, tmp, out=tmp)
        tmp *= alpha
        params -= tmp
