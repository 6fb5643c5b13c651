"""Backward pass and loss gradients agree with central finite differences (float64 path)."""

from __future__ import annotations

import numpy as np
import pytest

from naa_runtime.training.graph import Dense, NetworkGraph
from naa_runtime.training.loss import HuberMassBalance, mass_balance_matrix
from naa_runtime.training.network import Network


def _loss_and_grad(
    net: Network, loss: HuberMassBalance, x: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    ws = net.workspace(x.shape[0])
    ws.x[:, :-1] = x
    out = net.forward(ws)
    value = loss(out, y, ws.grad_out)
    net.backward(ws)
    return value, net.grads.copy()


def _numeric(net: Network, loss: HuberMassBalance, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    eps = 1e-6
    grad = np.zeros_like(net.params)
    for k in range(net.params.size):
        keep = net.params[k]
        net.params[k] = keep + eps
        up = _loss_and_grad(net, loss, x, y)[0]
        net.params[k] = keep - eps
        down = _loss_and_grad(net, loss, x, y)[0]
        net.params[k] = keep
        grad[k] = (up - down) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    ("activations", "kind", "mb_lambda"),
    [
        (("tanh", "sigmoid", "linear"), "huber", 0.0),
        (("tanh", "sigmoid", "linear"), "huber", 0.7),
        (("relu", "relu", "relu"), "huber", 0.7),
        (("sigmoid", "tanh", "tanh"), "mse", 0.3),
    ],
)
def test_backward_matches_finite_differences(
    activations: tuple[str, str, str], kind: str, mb_lambda: float
) -> None:
    rng = np.random.default_rng(3)
    graph = NetworkGraph(5, tuple(Dense(u, a) for u, a in zip((7, 6, 4), activations, strict=True)))
    net = Network(graph, dtype=np.float64, seed=11)
    x = rng.uniform(0, 1, size=(13, 5))
    y = rng.uniform(0, 1, size=(13, 4))
    stoich = np.array([[1.0, 0, 1, 0], [0, 1, 1, 1], [0, 0, 0, 1]])
    matrix = mass_balance_matrix(
        stoichiometry=stoich, span=np.array([0.5, 2.0, 1.0, 3.0]), element_scale=np.ones(3)
    )
    # δ small enough that both Huber branches are exercised.
    loss = HuberMassBalance(
        delta=0.2, mb_lambda=mb_lambda, mb_matrix=matrix, dtype=np.float64, kind=kind
    )
    _, analytic = _loss_and_grad(net, loss, x, y)
    numeric = _numeric(net, loss, x, y)
    assert np.max(np.abs(analytic - numeric)) < 1e-7 * max(1.0, np.max(np.abs(numeric)))
    assert np.max(np.abs(analytic)) > 1e-3


def test_huber_value_matches_its_definition_on_both_branches() -> None:
    loss = HuberMassBalance(delta=0.5, dtype=np.float64)
    pred = np.array([[0.1, 2.0]])
    target = np.zeros((1, 2))
    grad = np.empty((1, 2))
    # ½·0.1² and 0.5·(2 − 0.25), averaged over two outputs
    assert loss(pred, target, grad) == pytest.approx((0.005 + 0.875) / 2)
    assert grad.ravel().tolist() == pytest.approx([0.05, 0.25])


def test_mass_balance_term_is_the_physical_element_residual() -> None:
    stoich = np.array([[1.0, 1.0]])  # one element in two outputs
    matrix = mass_balance_matrix(
        stoichiometry=stoich, span=np.array([2.0, 4.0]), element_scale=np.array([0.5])
    )
    loss = HuberMassBalance(delta=1.0, mb_lambda=1.0, mb_matrix=matrix, dtype=np.float64)
    pred, target, grad = np.array([[0.1, 0.2]]), np.zeros((1, 2)), np.empty((1, 2))
    # residual = (2·0.1 + 4·0.2)/0.5 = 2.0 → λ·r² = 4; Huber: (0.005 + 0.02)/2
    assert loss(pred, target, grad) == pytest.approx(4.0 + 0.0125)
