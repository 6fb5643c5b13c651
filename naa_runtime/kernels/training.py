"""The training core as NAA functions (fn codes ≥ 16), registered in the process kernel registry
at import (`naaice runtime serve` imports this module by default).

- `poet.train` (fn 16 in the training bitstream): POET's own offload — serialized model, inputs
  and targets in, updated model out, float64 column-major — so POET's `naaice` branch runs on
  this NAA unchanged.
- `train.configure` / `train.load` / `train.fit` / `train.fetch` / `train.infer` (fn 17–21):
  the richer path over one model held on the NAA between calls.

All kernels of one binding share a `KernelContext` (one model per NAA; a flash or scrub drops
it). Region layouts and return codes: docs/reference/training-functions.md.
"""

from __future__ import annotations

import logging
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from naa_runtime.kernels.base import KernelTimeout
from naa_runtime.kernels.registry import KernelContext, register_shared
from naa_runtime.training import estimator, wire
from naa_runtime.training.graph import Dense, GraphError, NetworkGraph, parse_description
from naa_runtime.training.loss import LossError, mass_balance_matrix
from naa_runtime.training.trainer import DeadlinePassed, HyperParameters, Trainer, TrainingError

log = logging.getLogger(__name__)

# Application return codes (bits 31..8 of the reply immediate).
OK = 0
E_LAYOUT = 1  # a region does not follow its documented layout
E_NOT_CONFIGURED = 2  # train.load/fit/fetch/infer before train.configure
E_NO_DATA = 3  # train.fit before train.load
E_REGION_TOO_SMALL = 4  # an output region cannot hold the reply
E_DOES_NOT_FIT = 5  # the estimator refused the model for the configured board
E_CONFIG = 6  # bad model description or hyper-parameters
E_SHAPE = 7  # data or weights do not match the configured model

FUNCTIONS: dict[int, str] = {
    16: "poet.train",
    17: "train.configure",
    18: "train.load",
    19: "train.fit",
    20: "train.fetch",
    21: "train.infer",
}
POET_EPOCHS = 20  # POET naaice branch: epochs per training call
POET_BATCH = 1280  # POET barite script's batch size
FIT_REQUEST = struct.Struct("<II")  # epochs, flags


@dataclass
class TrainingState:
    """What the NAA holds between calls: the configured trainer and the POET function's state."""

    trainer: Trainer | None = None
    config: dict[str, Any] = field(default_factory=dict)
    poet: Trainer | None = None
    poet_key: tuple[Any, ...] = ()


def _state(context: KernelContext) -> TrainingState:
    state = context.shared.get("training")
    if not isinstance(state, TrainingState):
        state = TrainingState()
        context.shared["training"] = state
    return state


def _fit(trainer: Trainer, epochs: int, deadline: float, context: KernelContext) -> list[float]:
    """Train and report the epochs as work, so the node agent can export energy per epoch."""
    try:
        history = trainer.fit(epochs, deadline=deadline)
    except DeadlinePassed as exc:
        raise KernelTimeout(str(exc)) from exc
    context.count_work("training_epochs", len(history))
    return history


class _Kernel(ABC):
    """A training NAA function: subclasses implement `run`; layout errors become return codes."""

    def __init__(self, context: KernelContext) -> None:
        self.context = context
        self.state = _state(context)

    def __call__(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        try:
            return self.run(inputs=inputs, outputs=outputs, user=user, deadline=deadline)
        except wire.LayoutError as exc:
            log.warning("%s: %s", type(self).__name__, exc)
            return E_REGION_TOO_SMALL if "does not fit the" in str(exc) else E_LAYOUT

    @abstractmethod
    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int: ...


def _need(regions: Sequence[memoryview], count: int, what: str) -> None:
    if len(regions) < count:
        raise wire.LayoutError(f"expected {count} {what} region(s), got {len(regions)}")


class PoetNaaice(_Kernel):
    """POET's offload: model, inputs, targets in; the updated model out (same layout).

    Hidden layers ReLU, output linear (POET's C++ inference), MSE loss and Adam 1e-3 as in
    POET's stored model. `user` = 0: 20 epochs, batch 1280; else bits 0–7 epochs and
    bits 8–23 batch size. Adam's moments persist between calls while the model's shape stays
    the same, as in a Keras model that POET keeps fitting."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        _need(inputs, 3, "input")
        _need(outputs, 1, "output")
        layers, transposed = wire.decode_poet_model(inputs[0])
        x = wire.decode_columns(inputs[1])
        y = wire.decode_columns(inputs[2])
        epochs = (user & 0xFF) or POET_EPOCHS
        batch = (user >> 8) & 0xFFFF or POET_BATCH
        widths = [layers[0][0].shape[0], *(w.shape[1] for w, _ in layers)]
        if x.shape[1] != widths[0] or y.shape[1] != widths[-1] or x.shape[0] != y.shape[0]:
            log.warning("poet.train: data %s/%s vs model widths %s", x.shape, y.shape, widths)
            return E_SHAPE
        if wire.poet_model_size(layers) > len(outputs[0]):
            return E_REGION_TOO_SMALL
        key = (tuple(widths), batch)
        state = self.state
        if state.poet is None or state.poet_key != key:
            hidden = [Dense(u, "relu") for u in widths[1:-1]]
            graph = NetworkGraph(widths[0], (*hidden, Dense(widths[-1], "linear")))
            hyper = HyperParameters(batch_size=batch, loss="mse")
            state.poet, state.poet_key = Trainer(graph, hyper), key
        trainer = state.poet
        trainer.network.set_layers(layers)
        trainer.set_data(x, y)
        _fit(trainer, epochs, deadline, self.context)
        reply = wire.encode_poet_model(trainer.network.get_layers(), transpose=transposed)
        wire.write_into(outputs[0], reply)
        return OK


class Configure(_Kernel):
    """JSON in: {model, hyper?, board?, reuseFactor?, numberFormat?, massBalance?}; JSON out."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        _need(inputs, 1, "input")
        _need(outputs, 1, "output")
        request = wire.decode_json(inputs[0])
        code, reply = self._configure(request)
        wire.write_into(outputs[0], wire.encode_json(reply))
        return code

    def _configure(self, request: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(request, dict) or "model" not in request:
            return E_CONFIG, _error("config", "the request must be a JSON object with 'model'")
        try:
            graph = parse_description(request["model"])
            hyper = HyperParameters.from_json(request.get("hyper", {}))
            matrix = None
            mb = request.get("massBalance")
            if mb is not None:
                matrix = mass_balance_matrix(
                    stoichiometry=np.asarray(mb["stoichiometry"], dtype=np.float64),
                    span=np.asarray(mb["span"], dtype=np.float64),
                    element_scale=np.asarray(mb["elementScale"], dtype=np.float64),
                )
            elif hyper.mb_lambda > 0:
                raise LossError("mb_lambda > 0 needs 'massBalance' (stoichiometry, span, scale)")
            est = None
            if request.get("board"):
                est = estimator.estimate(
                    graph=graph,
                    target=estimator.board(str(request["board"])),
                    reuse_factor=request.get("reuseFactor"),
                    number_format=request.get("numberFormat"),
                    optimizer=hyper.optimizer,
                )
            trainer = Trainer(graph, hyper, mb_matrix=matrix)
        except estimator.ModelDoesNotFit as exc:
            return E_DOES_NOT_FIT, _error("doesNotFit", str(exc))
        except (GraphError, TrainingError, LossError, estimator.EstimatorError) as exc:
            return E_CONFIG, _error("config", str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            return E_CONFIG, _error("config", f"bad massBalance: {exc}")
        self.state.trainer = trainer
        self.state.config = request
        reply: dict[str, Any] = {"ok": True, "parameters": graph.parameter_count}
        if est is not None:
            reply["estimate"] = est.to_json()
        return OK, reply


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message}


class Load(_Kernel):
    """Two matrix regions (inputs, targets; float32 row-major, scaled); `user` bit 0 appends."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        trainer = self.state.trainer
        if trainer is None:
            return E_NOT_CONFIGURED
        _need(inputs, 2, "input")
        x = wire.decode_matrix(inputs[0])
        y = wire.decode_matrix(inputs[1])
        if user & 1 and trainer.rows:
            old_x, old_y = trainer.held_data()
            x, y = np.concatenate([old_x, x]), np.concatenate([old_y, y])
        try:
            trainer.set_data(x, y)
        except TrainingError as exc:
            log.warning("train.load: %s", exc)
            return E_SHAPE
        return OK


class Fit(_Kernel):
    """In: u32 epochs, u32 flags (bit 0: reset the optimizer). Out: u64 n, n float64 losses."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        trainer = self.state.trainer
        if trainer is None:
            return E_NOT_CONFIGURED
        if not trainer.rows:
            return E_NO_DATA
        _need(inputs, 1, "input")
        _need(outputs, 1, "output")
        if len(inputs[0]) < FIT_REQUEST.size:
            raise wire.LayoutError("train.fit needs 8 bytes: u32 epochs, u32 flags")
        epochs, flags = FIT_REQUEST.unpack_from(inputs[0], 0)
        if 8 + 8 * epochs > len(outputs[0]):
            return E_REGION_TOO_SMALL
        if flags & 1:
            trainer.optimizer.reset()
        history = _fit(trainer, epochs, deadline, self.context)
        payload = wire.U64.pack(len(history)) + np.asarray(history, dtype="<f8").tobytes()
        wire.write_into(outputs[0], payload)
        return OK


class Fetch(_Kernel):
    """Out: the model's weights in POET's layout (W as fan_in × units, float64 column-major)."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        trainer = self.state.trainer
        if trainer is None:
            return E_NOT_CONFIGURED
        _need(outputs, 1, "output")
        layers = trainer.network.get_layers()
        if wire.poet_model_size(layers) > len(outputs[0]):
            return E_REGION_TOO_SMALL
        wire.write_into(outputs[0], wire.encode_poet_model(layers))
        return OK


class Infer(_Kernel):
    """In: matrix (rows × inputs, float32). Out: matrix (rows × outputs, float32)."""

    def run(
        self,
        *,
        inputs: Sequence[memoryview],
        outputs: Sequence[memoryview],
        user: int,
        deadline: float,
    ) -> int:
        trainer = self.state.trainer
        if trainer is None:
            return E_NOT_CONFIGURED
        _need(inputs, 1, "input")
        _need(outputs, 1, "output")
        x = wire.decode_matrix(inputs[0])
        if x.shape[1] != trainer.graph.inputs:
            return E_SHAPE
        if wire.matrix_size(x.shape[0], trainer.graph.outputs) > len(outputs[0]):
            return E_REGION_TOO_SMALL
        wire.write_into(outputs[0], wire.encode_matrix(trainer.predict(x)))
        return OK


KERNELS: dict[str, type[_Kernel]] = {
    "poet.train": PoetNaaice,
    "train.configure": Configure,
    "train.load": Load,
    "train.fit": Fit,
    "train.fetch": Fetch,
    "train.infer": Infer,
}

for _name, _cls in KERNELS.items():
    register_shared(_name, _cls, replace=True)
