"""The Network Graph: a Keras-like model description (JSON/YAML) parsed and validated into a
typed graph of dense layers.

One description feeds both the training core (`naa_runtime.training.network`) and the resource
estimator (`naa_runtime.training.estimator`). Called by the training kernels, the host
application and the bench. Every validation error names the layer and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

ACTIVATIONS: tuple[str, ...] = ("linear", "relu", "tanh", "sigmoid")
DTYPES: tuple[str, ...] = ("float32", "float64")


class GraphError(ValueError):
    """A model description that cannot be built; the message names the layer and field."""


@dataclass(frozen=True, slots=True)
class Dense:
    """A fully connected layer `units` wide with its activation."""

    units: int
    activation: str


@dataclass(frozen=True, slots=True)
class NetworkGraph:
    """A feed-forward network: an input width and a chain of dense layers."""

    inputs: int
    layers: tuple[Dense, ...]
    dtype: str = "float32"
    name: str = "model"

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.inputs, *(layer.units for layer in self.layers))

    @property
    def outputs(self) -> int:
        return self.layers[-1].units

    @property
    def macs_per_layer(self) -> tuple[int, ...]:
        """Multiply–accumulates per sample of each layer's forward pass."""
        w = self.widths
        return tuple(w[i] * w[i + 1] for i in range(len(self.layers)))

    @property
    def parameter_count(self) -> int:
        w = self.widths
        return sum(w[i] * w[i + 1] + w[i + 1] for i in range(len(self.layers)))

    def to_description(self) -> dict[str, Any]:
        """The canonical description (round-trips through `parse_description`)."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "layers": [
                {"type": "Input", "shape": [self.inputs]},
                *(
                    {"type": "Dense", "units": layer.units, "activation": layer.activation}
                    for layer in self.layers
                ),
            ],
        }


def poet_m0(*, output_activation: str = "linear") -> NetworkGraph:
    """POET's published barite surrogate 9-9-48-96-24-9 with ReLU hidden layers."""
    hidden = tuple(Dense(u, "relu") for u in (9, 48, 96, 24))
    return NetworkGraph(9, (*hidden, Dense(9, output_activation)), "float32", "poet-barite-m0")


def _layer_fields(index: int, raw: object) -> tuple[str, Mapping[str, Any]]:
    where = f"layers[{index}]"
    if not isinstance(raw, Mapping):
        raise GraphError(
            f"{where}: expected a mapping like {{type: Dense, units: 48}}, got {raw!r}"
        )
    if "class_name" in raw:  # Keras' own serialisation: {class_name, config: {...}}
        kind, fields = raw["class_name"], raw.get("config", {})
        if not isinstance(fields, Mapping):
            raise GraphError(f"{where} ({kind}): field 'config' must be a mapping")
    else:
        kind, fields = raw.get("type"), raw
    if not isinstance(kind, str):
        raise GraphError(f"{where}: field 'type' is missing; use Input or Dense")
    return kind, fields


def _positive_int(where: str, field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GraphError(f"{where}: field '{field}' must be a positive integer, got {value!r}")
    return value


def parse_description(description: Mapping[str, Any] | str) -> NetworkGraph:
    """Validate a description (mapping, or JSON/YAML text) and build the graph.

    Format: ``{name?, dtype?: float32|float64, layers: [{type: Input, shape: [n]},
    {type: Dense, units: k, activation: relu|linear|tanh|sigmoid}, ...]}``; Keras'
    ``{class_name, config}`` layer form is accepted too."""
    if isinstance(description, str):
        try:
            loaded = yaml.safe_load(description)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise GraphError(f"model description is neither JSON nor YAML: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise GraphError("model description must be a mapping with a 'layers' list")
        description = loaded
    unknown = set(description) - {"name", "dtype", "layers"}
    if unknown:
        raise GraphError(f"model: unknown field(s) {sorted(unknown)}; allowed: name, dtype, layers")
    dtype = description.get("dtype", "float32")
    if dtype not in DTYPES:
        raise GraphError(f"model: field 'dtype' must be one of {DTYPES}, got {dtype!r}")
    layers = description.get("layers")
    if not isinstance(layers, list) or len(layers) < 2:
        raise GraphError("model: field 'layers' must list an Input and at least one Dense layer")
    kind0, fields0 = _layer_fields(0, layers[0])
    if kind0 not in ("Input", "InputLayer"):
        raise GraphError(f"layers[0] ({kind0}): the first layer must be Input")
    shape = fields0.get("shape", fields0.get("batch_shape", fields0.get("units")))
    if isinstance(shape, list):
        if len(shape) and shape[0] is None:
            shape = shape[1:]
        if len(shape) != 1:
            raise GraphError(
                f"layers[0] (Input): field 'shape' must be one-dimensional, got {shape}"
            )
        shape = shape[0]
    inputs = _positive_int("layers[0] (Input)", "shape", shape)
    dense: list[Dense] = []
    for i, raw in enumerate(layers[1:], start=1):
        kind, fields = _layer_fields(i, raw)
        where = f"layers[{i}] ({kind})"
        if kind != "Dense":
            raise GraphError(f"{where}: unsupported layer type; only Dense follows the Input")
        units = _positive_int(where, "units", fields.get("units"))
        activation = fields.get("activation", "linear")
        if activation is None:
            activation = "linear"
        if activation not in ACTIVATIONS:
            raise GraphError(
                f"{where}: field 'activation' must be one of {ACTIVATIONS}, got {activation!r}"
            )
        dense.append(Dense(units, activation))
    name = description.get("name", "model")
    if not isinstance(name, str):
        raise GraphError(f"model: field 'name' must be a string, got {name!r}")
    return NetworkGraph(inputs, tuple(dense), dtype, name)


def dumps(graph: NetworkGraph) -> str:
    return json.dumps(graph.to_description())
