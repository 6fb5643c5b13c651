"""The Keras-like model description: valid forms build the graph, bad ones name layer and field."""

from __future__ import annotations

import pytest

from naa_runtime.training.graph import GraphError, parse_description, poet_m0


def test_poets_published_model_has_7827_parameters() -> None:
    assert poet_m0().parameter_count == 7827
    assert poet_m0().widths == (9, 9, 48, 96, 24, 9)


def test_json_yaml_and_keras_forms_describe_the_same_graph() -> None:
    yaml_text = """
layers:
  - {type: Input, shape: [9]}
  - {type: Dense, units: 48, activation: relu}
  - {type: Dense, units: 9}
"""
    keras = {
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 9]}},
            {"class_name": "Dense", "config": {"units": 48, "activation": "relu"}},
            {"class_name": "Dense", "config": {"units": 9, "activation": "linear"}},
        ]
    }
    assert parse_description(yaml_text) == parse_description(keras)
    graph = poet_m0()
    assert parse_description(graph.to_description()) == graph


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ([{"type": "Dense", "units": 3}], "layers"),
        ([{"type": "Input", "shape": [9]}, {"type": "Dense", "units": -3}], r"layers\[1\].*units"),
        (
            [{"type": "Input", "shape": [9]}, {"type": "Dense", "units": 3, "activation": "gelu"}],
            r"layers\[1\] \(Dense\).*activation.*gelu",
        ),
        ([{"type": "Input", "shape": [9]}, {"type": "Conv2D", "units": 3}], r"layers\[1\].*Conv2D"),
        ([{"type": "Dense", "units": 3}, {"type": "Dense", "units": 3}], r"layers\[0\].*Input"),
        ([{"type": "Input", "shape": [3, 3]}, {"type": "Dense", "units": 3}], "one-dimensional"),
    ],
)
def test_invalid_descriptions_name_the_layer_and_field(layers: list[object], message: str) -> None:
    with pytest.raises(GraphError, match=message):
        parse_description({"layers": layers})


def test_an_unknown_model_field_is_refused() -> None:
    with pytest.raises(GraphError, match="optimizer"):
        parse_description({"layers": poet_m0().to_description()["layers"], "optimizer": "adam"})
