"""The training NAA functions called as the RPC server calls them: memory-region views in,
return code out, with state shared per binding."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from naa_runtime.kernels import process_registry
from naa_runtime.kernels import training as tk
from naa_runtime.kernels.registry import KernelBinding
from naa_runtime.poet.dataset import PoetDataset
from naa_runtime.training import wire
from naa_runtime.training.graph import poet_m0
from naa_runtime.training.network import Network


def _region(payload: bytes, size: int | None = None) -> memoryview:
    buf = bytearray(size or len(payload))
    buf[: len(payload)] = payload
    return memoryview(buf)


def _call(
    binding: KernelBinding,
    fn: int,
    inputs: list[memoryview],
    outputs: list[memoryview],
    user: int = 0,
) -> int:
    kernel = binding.lookup(fn)
    assert kernel is not None
    return kernel(inputs=inputs, outputs=outputs, user=user, deadline=time.monotonic() + 60)


@pytest.fixture
def binding() -> KernelBinding:
    return process_registry().bind(tk.FUNCTIONS)


@pytest.fixture
def poet_rows(ci_dataset: PoetDataset) -> tuple[np.ndarray, np.ndarray]:
    train, _, _ = ci_dataset.splits()
    bounds = ci_dataset.bounds(train)
    rows = slice(20_000, 22_500)  # one POET call: 2500 rows of the field
    return bounds.scale(train.x[rows]), bounds.scale(train.y[rows])


def _mse(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray) -> float:
    net = Network(poet_m0(), dtype=np.float64)
    net.set_layers(layers)
    return float(np.mean((net.predict(x) - y) ** 2))


@pytest.mark.parametrize("eigen_orientation", [False, True])
def test_poets_offload_layout_trains_and_returns_the_model_in_its_orientation(
    binding: KernelBinding, poet_rows: tuple[np.ndarray, np.ndarray], eigen_orientation: bool
) -> None:
    x, y = poet_rows
    layers = Network(poet_m0(), dtype=np.float64, seed=4).get_layers()
    model = wire.encode_poet_model(layers, transpose=eigen_orientation)
    assert len(model) == 62_752  # POET.md: ≈ 62.8 kB for the barite net
    out = _region(b"", len(model))
    rc = _call(
        binding,
        16,
        [_region(model), _region(wire.encode_columns(x)), _region(wire.encode_columns(y))],
        [out],
    )
    assert rc == tk.OK
    assert binding.context.work() == {"training_epochs": tk.POET_EPOCHS}
    trained, transposed = wire.decode_poet_model(out)  # back to fan_in × units
    assert transposed == eigen_orientation
    assert _mse(trained, x, y) < 0.5 * _mse(layers, x, y)


def test_a_truncated_poet_model_is_a_layout_error(binding: KernelBinding) -> None:
    model = wire.encode_poet_model(Network(poet_m0()).get_layers())
    data = wire.encode_columns(np.zeros((4, 9)))
    rc = _call(
        binding, 16, [_region(model[:-100]), _region(data), _region(data)], [_region(b"", 70_000)]
    )
    assert rc == tk.E_LAYOUT


def test_the_richer_path_configures_loads_fits_fetches_and_infers(
    binding: KernelBinding, poet_rows: tuple[np.ndarray, np.ndarray]
) -> None:
    x, y = poet_rows
    request = {
        "model": poet_m0().to_description(),
        "hyper": {"batch_size": 256, "seed": 1},
        "board": "u55c",
    }
    reply = _region(b"", 16_384)
    assert _call(binding, 17, [_region(wire.encode_json(request))], [reply]) == tk.OK
    answer = wire.decode_json(reply)
    assert answer["ok"] is True
    assert answer["estimate"]["reuseFactor"] == 16
    assert (
        _call(binding, 18, [_region(wire.encode_matrix(x)), _region(wire.encode_matrix(y))], [])
        == tk.OK
    )
    losses = _region(b"", 8 + 8 * 10)
    assert _call(binding, 19, [_region(struct.pack("<II", 10, 0))], [losses]) == tk.OK
    count = struct.unpack_from("<Q", losses, 0)[0]
    history = np.frombuffer(losses, dtype="<f8", count=count, offset=8)
    assert count == 10
    assert history[-1] < 0.5 * history[0]
    assert binding.context.work() == {"training_epochs": 10}  # energy per epoch needs it
    weights = _region(b"", 70_000)
    assert _call(binding, 20, [], [weights]) == tk.OK
    layers, _ = wire.decode_poet_model(weights)
    predictions = _region(b"", wire.matrix_size(len(x), 9))
    assert _call(binding, 21, [_region(wire.encode_matrix(x))], [predictions]) == tk.OK
    net = Network(poet_m0(), dtype=np.float64)
    net.set_layers(layers)
    assert np.allclose(wire.decode_matrix(predictions), net.predict(x), atol=1e-5)


def test_a_model_that_does_not_fit_is_refused_with_the_numbers(binding: KernelBinding) -> None:
    request = {"model": poet_m0().to_description(), "board": "u55c", "reuseFactor": 1}
    reply = _region(b"", 4096)
    assert _call(binding, 17, [_region(json.dumps(request).encode())], [reply]) == tk.E_DOES_NOT_FIT
    answer = wire.decode_json(reply)
    assert answer["error"] == "doesNotFit"
    assert "DSP: needs 114,615" in answer["message"]


def test_training_before_configuring_or_loading_says_so(binding: KernelBinding) -> None:
    fit = [_region(struct.pack("<II", 1, 0))]
    assert _call(binding, 19, fit, [_region(b"", 64)]) == tk.E_NOT_CONFIGURED
    request = {"model": poet_m0().to_description()}
    assert _call(binding, 17, [_region(wire.encode_json(request))], [_region(b"", 4096)]) == tk.OK
    assert _call(binding, 19, fit, [_region(b"", 64)]) == tk.E_NO_DATA


def test_a_new_binding_starts_without_the_old_model(binding: KernelBinding) -> None:
    request = {"model": poet_m0().to_description()}
    assert _call(binding, 17, [_region(wire.encode_json(request))], [_region(b"", 4096)]) == tk.OK
    assert _call(binding, 20, [], [_region(b"", 70_000)]) == tk.OK
    fresh = process_registry().bind(tk.FUNCTIONS)
    assert _call(fresh, 20, [], [_region(b"", 70_000)]) == tk.E_NOT_CONFIGURED
