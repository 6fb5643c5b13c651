"""Adam and SGD follow Keras 3's update rules, and decayed optimizer state is flushed to 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from naa_runtime.training.optim import FLUSH_EVERY, SGD, Adam


def test_adam_matches_keras_update_rule_over_many_steps() -> None:
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7
    p = rng.normal(size=50)
    ref = p.copy()
    m, v = np.zeros(50), np.zeros(50)
    adam = Adam(size=50, dtype=np.dtype(np.float64), lr=lr, beta1=b1, beta2=b2, epsilon=eps)
    for t in range(1, 201):
        g = rng.normal(size=50) * (0.0 if t > 150 else 1.0)
        adam.step(p, g)
        # Keras 3: alpha = lr·√(1−β2ᵗ)/(1−β1ᵗ); m += (g−m)(1−β1); v += (g²−v)(1−β2)
        alpha = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        ref -= alpha * m / (np.sqrt(v) + eps)
    assert p == pytest.approx(ref, rel=1e-9, abs=1e-12)


def test_sgd_with_momentum_matches_keras_update_rule() -> None:
    p = np.array([1.0, -2.0])
    sgd = SGD(size=2, dtype=np.dtype(np.float64), lr=0.1, momentum=0.9)
    sgd.step(p, np.array([1.0, 1.0]))
    sgd.step(p, np.array([1.0, 1.0]))
    # v1 = −0.1, p1 = p0 − 0.1; v2 = 0.9·v1 − 0.1 = −0.19, p2 = p1 − 0.19
    assert p.tolist() == pytest.approx([0.71, -2.29])


def test_moments_of_a_dead_parameter_are_flushed_instead_of_going_subnormal() -> None:
    p = np.zeros(4, dtype=np.float32)
    adam = Adam(size=4, dtype=np.dtype(np.float32), lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-7)
    adam.step(p, np.full(4, 1e-3, dtype=np.float32))
    for _ in range(FLUSH_EVERY * 20):
        adam.step(p, np.zeros(4, dtype=np.float32))
    tiny = np.finfo(np.float32).tiny
    assert not np.any((adam.m != 0) & (np.abs(adam.m) < tiny))
    assert np.all(adam.m == 0)
