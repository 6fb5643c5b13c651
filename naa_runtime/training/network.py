"""The FNN of the training core: parameters in one flat buffer, forward and backward passes over
preallocated per-batch-size workspaces, activation derivatives fused into the backward pass.

Each layer's weights and bias live together as one (fan_in + 1) × units block [W; b] and every
layer input carries a trailing column of ones, so one GEMM computes x·W + b and one GEMM gives
both weight and bias gradients: per batch the Python overhead is a few calls per layer.
Weights use Keras' kernel layout (fan_in × units), Glorot-uniform from a seed, biases zero.
float32 is the core's format; float64 is the gradient-check path. Called by
`naa_runtime.training.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from naa_runtime.training.graph import NetworkGraph


@dataclass(slots=True)
class Workspace:
    """Buffers for one batch size. `x` and every hidden activation have a trailing column of
    ones (the bias input); `outs[i]` is layer i's activation without it."""

    batch: int
    x: np.ndarray  # (batch, inputs + 1)
    acts: list[np.ndarray]  # (batch, units + 1) for hidden layers, (batch, units) for the last
    outs: list[np.ndarray]  # views: activations without the ones column
    deltas: list[np.ndarray]  # like acts (hidden layers), so elementwise work is contiguous
    dviews: list[np.ndarray]  # views: the errors proper (the extra column stays 0)
    masks: list[np.ndarray]  # like acts
    grad_out: np.ndarray  # ∂L/∂output, written by the loss


class Network:
    """A dense feed-forward network for one graph, with its flat parameter and gradient buffers."""

    def __init__(self, graph: NetworkGraph, *, dtype: npt.DTypeLike = np.float32, seed: int = 0):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        widths = graph.widths
        self.shapes = [(widths[i], widths[i + 1]) for i in range(len(graph.layers))]
        total = sum((fi + 1) * fo for fi, fo in self.shapes)
        self.params = np.zeros(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.blocks: list[np.ndarray] = []  # [W; b] per layer
        self.block_grads: list[np.ndarray] = []
        offset = 0
        for fi, fo in self.shapes:
            size = (fi + 1) * fo
            self.blocks.append(self.params[offset : offset + size].reshape(fi + 1, fo))
            self.block_grads.append(self.grads[offset : offset + size].reshape(fi + 1, fo))
            offset += size
        self.weights = [block[:-1] for block in self.blocks]
        self.biases = [block[-1] for block in self.blocks]
        self.weight_grads = [g[:-1] for g in self.block_grads]
        self.bias_grads = [g[-1] for g in self.block_grads]
        self.activations = [layer.activation for layer in graph.layers]
        self._workspaces: dict[int, Workspace] = {}
        self.initialise(seed)

    def initialise(self, seed: int) -> None:
        """Glorot-uniform weights, zero biases (Keras' Dense defaults)."""
        rng = np.random.default_rng(seed)
        for w, b, (fi, fo) in zip(self.weights, self.biases, self.shapes, strict=True):
            limit = np.sqrt(6.0 / (fi + fo))
            w[...] = rng.uniform(-limit, limit, size=(fi, fo))
            b[...] = 0.0

    def augment(self, x: np.ndarray) -> np.ndarray:
        """x with the trailing ones column the layers expect, in the network's dtype."""
        out = np.ones((x.shape[0], x.shape[1] + 1), dtype=self.dtype)
        out[:, :-1] = x
        return out

    def workspace(self, batch: int) -> Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            dt = self.dtype
            last = len(self.shapes) - 1
            acts = [
                np.ones((batch, fo + (i != last)), dtype=dt)
                for i, (_, fo) in enumerate(self.shapes)
            ]
            deltas = [np.zeros_like(a) for a in acts]
            ws = Workspace(
                batch=batch,
                x=np.ones((batch, self.graph.inputs + 1), dtype=dt),
                acts=acts,
                outs=[a if i == last else a[:, :-1] for i, a in enumerate(acts)],
                deltas=deltas,
                dviews=[d if i == last else d[:, :-1] for i, d in enumerate(deltas)],
                masks=[np.empty(a.shape, dtype=bool) for a in acts],
                grad_out=np.empty((batch, self.graph.outputs), dtype=dt),
            )
            self._workspaces[batch] = ws
        return ws

    def forward(self, ws: Workspace, x: np.ndarray | None = None) -> np.ndarray:
        """Activations of every layer into `ws`; returns the output (a view into ws).

        `x` is an augmented batch (trailing ones column); default `ws.x`."""
        a = ws.x if x is None else x
        for block, z, full, act in zip(
            self.blocks, ws.outs, ws.acts, self.activations, strict=True
        ):
            np.matmul(a, block, out=z)
            if act == "relu":  # on the whole buffer: contiguous, and max(1, 0) keeps the ones
                np.maximum(full, 0, out=full)
            elif act == "tanh":
                np.tanh(z, out=z)
            elif act == "sigmoid":
                np.negative(z, out=z)
                np.exp(z, out=z)
                np.add(z, 1, out=z)
                np.reciprocal(z, out=z)
            a = full
        return ws.outs[-1]

    def _activation_derivative(
        self, index: int, ws: Workspace, full: np.ndarray, delta: np.ndarray
    ) -> None:
        """delta ⊙= f'(z) in place; `full` is delta's whole (contiguous) buffer."""
        act = self.activations[index]
        if act == "relu":
            mask = ws.masks[index]
            np.greater(ws.acts[index], 0, out=mask)
            np.multiply(full, mask, out=full)
        elif act == "tanh":
            a = ws.outs[index]
            delta *= 1 - a * a
        elif act == "sigmoid":
            a = ws.outs[index]
            delta *= a * (1 - a)

    def backward(self, ws: Workspace, x: np.ndarray | None = None) -> None:
        """Gradients of the loss w.r.t. every parameter into `self.grads`, given ∂L/∂output
        in `ws.grad_out` (the loss writes it there); `x` as in `forward`."""
        last = len(self.blocks) - 1
        full = delta = ws.grad_out  # deltas[last] is unused: grad_out plays its part
        inputs = ws.x if x is None else x
        for i in range(last, -1, -1):
            self._activation_derivative(i, ws, full, delta)
            a_prev = inputs if i == 0 else ws.acts[i - 1]
            np.matmul(a_prev.T, delta, out=self.block_grads[i])
            if i:
                prev_full, prev = ws.deltas[i - 1], ws.dviews[i - 1]
                np.matmul(delta, self.weights[i].T, out=prev)
                full, delta = prev_full, prev

    def predict(self, x: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
        """Outputs for any number of rows (not augmented), in chunks, in the network's dtype."""
        out = np.empty((x.shape[0], self.graph.outputs), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            ws = self.workspace(part.shape[0])
            ws.x[:, :-1] = part
            out[start : start + part.shape[0]] = self.forward(ws)
        return out

    def get_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Copies of (W, b) per layer, W as fan_in × units."""
        return [(w.copy(), b.copy()) for w, b in zip(self.weights, self.biases, strict=True)]

    def set_layers(self, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        if len(layers) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} layers, got {len(layers)}")
        for i, (w, b) in enumerate(layers):
            if w.shape != self.weights[i].shape or b.shape != self.biases[i].shape:
                raise ValueError(
                    f"layer {i}: expected W {self.weights[i].shape} and b "
                    f"{self.biases[i].shape}, got {w.shape} and {b.shape}"
                )
            self.weights[i][...] = w
            self.biases[i][...] = b
