"""Load a model directory's serving signature and check it against ``audio_maas.protocol.contract``.

One place for it: the predictor serves through it, and export verifies and evaluation scores
through it, so all three see the same function. TensorFlow is imported only when called.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audio_maas.protocol.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY
from audio_maas.protocol.model_dir import INTERFACE_FILE

__all__ = ["load_serving_function", "load_signature", "set_threads"]


def load_serving_function(model_dir: Path) -> Any:
    """The SavedModel's ``SIGNATURE_KEY`` function: ``fn(features=float32 [N, ...])`` -> float32
    outputs by name. A model we trained answers ``OUTPUT_NAME`` alone (``[N, classes]``); a model
    with ``INTERFACE_FILE`` answers the outputs its interface names.

    Raises ``RuntimeError`` when the signature is missing or its names or dtypes break the contract.
    """
    import tensorflow as tf

    signature = load_signature(model_dir)
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    expected = (
        json.loads((model_dir / INTERFACE_FILE).read_text())["output"]["names"]
        if (model_dir / INTERFACE_FILE).is_file()
        else [OUTPUT_NAME]
    )
    if list(inputs) != [INPUT_NAME] or sorted(outputs) != sorted(expected):
        raise RuntimeError(f"signature maps {list(inputs)} to {sorted(outputs)}, expected [{INPUT_NAME}] to {expected}")
    if inputs[INPUT_NAME].dtype != tf.float32 or any(spec.dtype != tf.float32 for spec in outputs.values()):
        raise RuntimeError("the serving signature must take and return float32 tensors")
    return signature


def load_signature(model_dir: Path) -> Any:
    """The SavedModel's ``SIGNATURE_KEY`` function, whatever its tensors; ``RuntimeError`` when it has none."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    if SIGNATURE_KEY not in loaded.signatures:
        raise RuntimeError(f"{model_dir} has no '{SIGNATURE_KEY}' signature")
    signature = loaded.signatures[SIGNATURE_KEY]
    signature._loaded = loaded  # keep the variables alive as long as the function
    return signature


def set_threads(*, intra_op: int, inter_op: int) -> None:
    """TensorFlow's thread pools (0: TensorFlow's choice), before anything runs: its runtime fixes
    them when it starts. The thread count is part of the arithmetic: a float32 kernel may split
    its sums by thread, so outputs computed under other counts may differ in the last bits."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
