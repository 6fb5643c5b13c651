"""`naaice train poet`: the host application that trains the POET barite surrogate on an NAA.

Generates (or loads from the cache) the barite dataset, splits it by time, scales it with the
training split's min–max bounds, trains through the five-call API of `naa_runtime.client` on the
NAAs listed in `NAA_SPEC` — or in-process with `local=True`, the CPU reference — evaluates on
held-out data and writes `result.json` and PNG plots. Called by `naa_runtime.apps.cli`.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from naa_runtime.poet import generator
from naa_runtime.poet.dataset import COLUMNS, ELEMENTS, Bounds, PoetDataset, Split
from naa_runtime.training import metrics, wire
from naa_runtime.training.graph import NetworkGraph, poet_m0
from naa_runtime.training.loss import mass_balance_matrix
from naa_runtime.training.network import Network
from naa_runtime.training.trainer import HyperParameters, Trainer

FN_POET = 16
FN_CONFIGURE, FN_LOAD, FN_FIT, FN_FETCH, FN_INFER = 17, 18, 19, 20, 21
SIGNAL_COLUMNS = ("Ba", "Cl", "S", "Sr", "Barite", "Celestite")


class AppError(RuntimeError):
    """A failure the user can act on; the message says what to do."""


@dataclass(frozen=True)
class RunConfig:
    preset: str = "ci"
    iterations: int | None = None
    keep_inert: float = 1.0
    graph: NetworkGraph = field(default_factory=poet_m0)
    hyper: HyperParameters = field(default_factory=HyperParameters)
    epochs: int = 20
    mode: str = "session"  # "session" (fn 17-21) or "poet" (fn 16, 2500-row calls)
    chunk_rows: int = 2500
    board: str | None = "u55c"
    local: bool = False
    local_address: str | None = None  # host-side RoCEv2 address (default: chosen by route)
    out: Path = Path("naaice-train-poet")
    plots: bool = True


@dataclass
class Prepared:
    data: PoetDataset
    train: Split
    val: Split
    test: Split
    bounds: Bounds
    element_scale: np.ndarray

    def scaled(self, split: Split) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.bounds.scale(split.x).astype(np.float32),
            self.bounds.scale(split.y).astype(np.float32),
        )


def prepare(config: RunConfig) -> Prepared:
    """Dataset, time splits, bounds and element scales (s_e: the largest column span in each
    element's row of E, so every element's residual is on the scale of its columns)."""
    data = generator.generate(generator.preset(config.preset, iterations=config.iterations))
    if config.keep_inert < 1.0:
        data = data.subsample(keep_inert=config.keep_inert, seed=config.hyper.seed)
    train, val, test = data.splits()
    bounds = data.bounds(train)
    e = data.stoichiometry
    scale = (e * bounds.span).max(axis=1)
    return Prepared(data, train, val, test, bounds, scale)


def mass_balance(prepared: Prepared) -> dict[str, Any]:
    return {
        "stoichiometry": prepared.data.stoichiometry.tolist(),
        "span": prepared.bounds.span.tolist(),
        "elementScale": prepared.element_scale.tolist(),
    }


class Progress:
    """What the CLI shows: `advance(n)` steps of `total`, with a status line."""

    def __init__(self, update: Callable[[int, str], None] | None = None) -> None:
        self._update = update

    def __call__(self, steps: int, status: str) -> None:
        if self._update is not None:
            self._update(steps, status)


def _train_local(
    config: RunConfig, prepared: Prepared, progress: Progress
) -> tuple[list[float], Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    e = prepared.data.stoichiometry
    matrix = mass_balance_matrix(
        stoichiometry=e, span=prepared.bounds.span, element_scale=prepared.element_scale
    )
    trainer = Trainer(config.graph, config.hyper, mb_matrix=matrix)
    x, y = prepared.scaled(prepared.train)
    trainer.set_data(x, y)
    history = trainer.fit(config.epochs, on_epoch=lambda i, loss: progress(1, f"loss {loss:.3g}"))
    return history, trainer.predict, {"path": "local (CPU reference, not the NAA)"}


def _call(naa: Any, what: str, *, user: int = 0) -> None:
    rc = naa(user=user)
    if rc != 0:
        raise AppError(
            f"the NAA's {what} function returned {rc} (see docs/reference/training-functions.md)"
        )


def _train_session(
    config: RunConfig, prepared: Prepared, progress: Progress
) -> tuple[list[float], Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    from naa_runtime.client import Naa

    request: dict[str, Any] = {
        "model": config.graph.to_description(),
        "hyper": config.hyper.to_json(),
        "massBalance": mass_balance(prepared),
    }
    if config.board:
        request["board"] = config.board
    req = bytearray(wire.encode_json(request))
    reply = bytearray(64 * 1024)
    with Naa(
        FN_CONFIGURE, inputs=[req], outputs=[reply], local_address=config.local_address
    ) as naa:
        rc = naa()
    answer = wire.decode_json(reply) if any(reply) else {}
    if rc != 0:
        raise AppError(
            f"the NAA refused the configuration ({rc}): {answer.get('message', 'no detail')}"
        )
    x, y = prepared.scaled(prepared.train)
    bx, by = bytearray(wire.encode_matrix(x)), bytearray(wire.encode_matrix(y))
    with Naa(FN_LOAD, inputs=[bx, by], local_address=config.local_address) as naa:
        _call(naa, "train.load")
    fit_req = bytearray(struct.pack("<II", 1, 0))
    losses = bytearray(16)
    history: list[float] = []
    with Naa(FN_FIT, inputs=[fit_req], outputs=[losses], local_address=config.local_address) as naa:
        for _ in range(config.epochs):  # one RPC per epoch drives the progress bar
            _call(naa, "train.fit")
            history.append(struct.unpack_from("<d", losses, 8)[0])
            progress(1, f"loss {history[-1]:.3g}")
    weights = bytearray(wire.poet_model_size(Network(config.graph).get_layers()))
    with Naa(
        FN_FETCH, inputs=[bytearray(8)], outputs=[weights], local_address=config.local_address
    ) as naa:
        _call(naa, "train.fetch")
    layers, _ = wire.decode_poet_model(weights)

    def infer(xs: np.ndarray) -> np.ndarray:
        inp = bytearray(wire.encode_matrix(xs))
        out = bytearray(wire.matrix_size(xs.shape[0], config.graph.outputs))
        with Naa(FN_INFER, inputs=[inp], outputs=[out], local_address=config.local_address) as naa:
            _call(naa, "train.infer")
        return np.array(wire.decode_matrix(out))

    return (
        history,
        infer,
        {
            "path": "NAA (train.configure/load/fit/fetch/infer)",
            "estimate": answer.get("estimate"),
            "weights": len(layers),
        },
    )


def _train_poet_calls(
    config: RunConfig, prepared: Prepared, progress: Progress
) -> tuple[list[float], Callable[[np.ndarray], np.ndarray], dict[str, Any]]:
    """POET's own online loop: one fn-16 call per `chunk_rows` rows in time order, shipping the
    model each time; the loss history is the MSE of each chunk before its call."""
    from naa_runtime.client import Naa

    net = Network(config.graph, dtype=np.float64, seed=config.hyper.seed)
    x, y = prepared.scaled(prepared.train)
    history: list[float] = []
    user = (config.hyper.batch_size << 8) | (config.epochs & 0xFF)
    size = wire.poet_model_size(net.get_layers())
    for start in range(0, len(x), config.chunk_rows):
        cx, cy = x[start : start + config.chunk_rows], y[start : start + config.chunk_rows]
        history.append(float(np.mean((net.predict(cx) - cy) ** 2)))
        model = bytearray(wire.encode_poet_model(net.get_layers()))
        out = bytearray(size)
        inputs = [model, bytearray(wire.encode_columns(cx)), bytearray(wire.encode_columns(cy))]
        with Naa(FN_POET, inputs=inputs, outputs=[out], local_address=config.local_address) as naa:
            _call(naa, "poet.train", user=user)
        layers, _ = wire.decode_poet_model(out)
        net.set_layers(layers)
        progress(1, f"chunk MSE {history[-1]:.3g}")

    def infer(xs: np.ndarray) -> np.ndarray:
        return net.predict(xs)

    return history, infer, {"path": "NAA (poet.train, POET's offload layout)"}


def steps(config: RunConfig, prepared: Prepared) -> int:
    if config.mode == "poet" and not config.local:
        return -(-len(prepared.train) // config.chunk_rows)
    return config.epochs


def run(
    config: RunConfig, *, prepared: Prepared | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Train, evaluate on the validation and test splits, write result.json and plots."""
    prepared = prepared or prepare(config)
    progress = progress or Progress()
    if config.mode not in ("session", "poet"):
        raise AppError(f"mode must be 'session' or 'poet', got {config.mode!r}")
    started = time.perf_counter()
    if config.local:
        history, infer, info = _train_local(config, prepared, progress)
    elif config.mode == "poet":
        history, infer, info = _train_poet_calls(config, prepared, progress)
    else:
        history, infer, info = _train_session(config, prepared, progress)
    seconds = time.perf_counter() - started
    evaluation: dict[str, Any] = {}
    predictions: dict[str, np.ndarray] = {}
    for name, split in (("validation", prepared.val), ("test", prepared.test)):
        if not len(split):
            continue
        xs, ys = prepared.scaled(split)
        ps = np.asarray(infer(xs), dtype=np.float64)
        predictions[name] = ps
        evaluation[name] = metrics.evaluate(
            pred_scaled=ps,
            target_scaled=ys,
            pred=prepared.bounds.unscale(ps),
            inputs=split.x,
            stoichiometry=prepared.data.stoichiometry,
            elements=ELEMENTS,
        ).to_json()
    result = {
        "preset": config.preset,
        "rows": {
            "train": len(prepared.train),
            "validation": len(prepared.val),
            "test": len(prepared.test),
        },
        "model": config.graph.to_description(),
        "hyper": config.hyper.to_json(),
        "epochs": config.epochs,
        "mode": "local" if config.local else config.mode,
        "lossHistory": history,
        "trainingSeconds": seconds,
        "evaluation": evaluation,
        "bounds": prepared.bounds.to_json(),
        "elementScale": prepared.element_scale.tolist(),
        **info,
    }
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "result.json").write_text(json.dumps(result, indent=2))
    if config.plots and "test" in predictions:
        write_plots(
            out=config.out,
            history=history,
            split=prepared.test,
            pred=prepared.bounds.unscale(predictions["test"]),
            stoichiometry=prepared.data.stoichiometry,
            loss_label="chunk MSE before each call"
            if config.mode == "poet" and not config.local
            else "training loss",
        )
    return result


def write_plots(
    *,
    out: Path,
    history: list[float],
    split: Split,
    pred: np.ndarray,
    stoichiometry: np.ndarray,
    loss_label: str,
) -> None:
    """loss.png, predicted-vs-reference.png, mass-balance.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(range(1, len(history) + 1), history, marker=".")
    ax.set_xlabel("epoch" if "loss" in loss_label else "call")
    ax.set_ylabel(loss_label)
    ax.set_title("POET surrogate training")
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 3, figsize=(11, 7))
    for ax, name in zip(axes.ravel(), SIGNAL_COLUMNS, strict=True):
        j = COLUMNS.index(name)
        ax.scatter(split.y[:, j], pred[:, j], s=2, alpha=0.4)
        lo, hi = float(split.y[:, j].min()), float(split.y[:, j].max())
        ax.plot([lo, hi], [lo, hi], color="black", linewidth=0.8)
        ax.set_title(name)
        ax.set_xlabel("reference (mol)")
        ax.set_ylabel("predicted (mol)")
    fig.suptitle("Held-out test split: predicted vs reference")
    fig.tight_layout()
    fig.savefig(out / "predicted-vs-reference.png", dpi=110)
    plt.close(fig)

    dm = np.abs((pred - split.x) @ stoichiometry.T)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, element in enumerate(ELEMENTS):
        values = np.log10(np.maximum(dm[:, i], 1e-16))
        ax.hist(values, bins=60, histtype="step", label=element)
    ax.set_xlabel("log10 |Δm| (mol) per cell and step")
    ax.set_ylabel("cells")
    ax.set_title("Mass-balance residual on the test split")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "mass-balance.png", dpi=110)
    plt.close(fig)


def with_overrides(base: HyperParameters, **changes: Any) -> HyperParameters:
    return replace(base, **{k: v for k, v in changes.items() if v is not None})
