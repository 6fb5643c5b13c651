"""The FNN of the training core: parameters in one flat buffer, forward and backward passes over
preallocated per-batch-size workspaces, activation derivatives fused into the backward pass.

Weights use Keras' kernel layout (fan_in × units, y = x·W + b), Glorot-uniform initialised from
a seed, biases zero. float32 is the core's format; float64 is the gradient-check path. Called by
`naa_runtime.training.trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from naa_runtime.training.graph import NetworkGraph


@dataclass(slots=True)
class Workspace:
    """Buffers for one batch size: each layer's activation, back-propagated error, ReLU mask."""

    batch: int
    x: np.ndarray
    y: np.ndarray
    acts: list[np.ndarray]
    deltas: list[np.ndarray]
    masks: list[np.ndarray]
    grad_out: np.ndarray


class Network:
    """A dense feed-forward network for one graph, with its flat parameter and gradient buffers."""

    def __init__(self, graph: NetworkGraph, *, dtype: npt.DTypeLike = np.float32, seed: int = 0):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        widths = graph.widths
        self.shapes = [(widths[i], widths[i + 1]) for i in range(len(graph.layers))]
        total = sum(fi * fo + fo for fi, fo in self.shapes)
        self.params = np.zeros(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.weights: list[np.ndarray] = []
        self.biases: list[np.ndarray] = []
        self.weight_grads: list[np.ndarray] = []
        self.bias_grads: list[np.ndarray] = []
        offset = 0
        for fi, fo in self.shapes:
            self.weights.append(self.params[offset : offset + fi * fo].reshape(fi, fo))
            self.weight_grads.append(self.grads[offset : offset + fi * fo].reshape(fi, fo))
            offset += fi * fo
            self.biases.append(self.params[offset : offset + fo])
            self.bias_grads.append(self.grads[offset : offset + fo])
            offset += fo
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

    def workspace(self, batch: int) -> Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            dt = self.dtype
            ws = Workspace(
                batch=batch,
                x=np.empty((batch, self.graph.inputs), dtype=dt),
                y=np.empty((batch, self.graph.outputs), dtype=dt),
                acts=[np.empty((batch, fo), dtype=dt) for _, fo in self.shapes],
                deltas=[np.empty((batch, fo), dtype=dt) for _, fo in self.shapes],
                masks=[np.empty((batch, fo), dtype=bool) for _, fo in self.shapes],
                grad_out=np.empty((batch, self.graph.outputs), dtype=dt),
            )
            self._workspaces[batch] = ws
        return ws

    def forward(self, ws: Workspace, x: np.ndarray | None = None) -> np.ndarray:
        """Activations of every layer into `ws.acts`; returns the output (a view into ws)."""
        a = ws.x if x is None else x
        for w, b, z, act in zip(self.weights, self.biases, ws.acts, self.activations, strict=True):
            np.matmul(a, w, out=z)
            np.add(z, b, out=z)
            if act == "relu":
                np.maximum(z, 0, out=z)
            elif act == "tanh":
                np.tanh(z, out=z)
            elif act == "sigmoid":
                np.negative(z, out=z)
                np.exp(z, out=z)
                np.add(z, 1, out=z)
                np.reciprocal(z, out=z)
            a = z
        return a

    def _activation_derivative(self, index: int, ws: Workspace, delta: np.ndarray) -> None:
        act, a = self.activations[index], ws.acts[index]
        if act == "relu":
            mask = ws.masks[index]
            np.greater(a, 0, out=mask)
            np.multiply(delta, mask, out=delta)
        elif act == "tanh":
            delta *= 1 - a * a
        elif act == "sigmoid":
            delta *= a * (1 - a)

    def backward(self, ws: Workspace, x: np.ndarray | None = None) -> None:
        """Gradients of the loss w.r.t. every parameter into `self.grads`, given ∂L/∂output
        in `ws.grad_out` (the loss writes it there)."""
        last = len(self.weights) - 1
        delta = ws.grad_out
        inputs = ws.x if x is None else x
        for i in range(last, -1, -1):
            self._activation_derivative(i, ws, delta)
            a_prev = inputs if i == 0 else ws.acts[i - 1]
            np.matmul(a_prev.T, delta, out=self.weight_grads[i])
            np.sum(delta, axis=0, out=self.bias_grads[i])
            if i:
                prev = ws.deltas[i - 1]  # deltas[last] is unused: grad_out plays its part
                np.matmul(delta, self.weights[i].T, out=prev)
                delta = prev

    def predict(self, x: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
        """Outputs for any number of rows, in chunks (float of the network's dtype)."""
        x = np.ascontiguousarray(x, dtype=self.dtype)
        out = np.empty((x.shape[0], self.graph.outputs), dtype=self.dtype)
        for start in range(0, x.shape[0], chunk):
            part = x[start : start + chunk]
            ws = self.workspace(part.shape[0])
            out[start : start + part.shape[0]] = self.forward(ws, part)
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
