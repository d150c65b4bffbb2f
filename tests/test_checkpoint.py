"""Checkpoints round-trip arrays and plain values, and never unpickle."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hpo.agent import decode_checkpoint, encode_checkpoint


def test_round_trip_nested_state() -> None:
    rng = np.random.default_rng(3)
    state = {
        "weights": {"w0": rng.normal(size=(4, 3)), "b0": np.zeros(3)},
        "rng": rng.bit_generator.state,
        "best": float("inf"),
        "history": [1.0, 0.5],
        "name": "mlp",
    }
    restored, step = decode_checkpoint(encode_checkpoint(state, 12))
    assert step == 12
    np.testing.assert_array_equal(restored["weights"]["w0"], state["weights"]["w0"])
    np.testing.assert_array_equal(restored["weights"]["b0"], state["weights"]["b0"])
    assert restored["rng"] == state["rng"]
    assert restored["best"] == float("inf")
    assert restored["history"] == [1.0, 0.5] and restored["name"] == "mlp"
    again = np.random.default_rng()
    again.bit_generator.state = restored["rng"]
    assert again.random() == rng.random()


def test_object_arrays_are_refused() -> None:
    with pytest.raises(TypeError, match="pickle"):
        encode_checkpoint({"bad": np.array([object()], dtype=object)}, 1)


def test_a_pickled_payload_is_not_loaded() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, __hpo_meta__=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        decode_checkpoint(buffer.getvalue())
