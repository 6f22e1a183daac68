"""A BASELINE, not the product: the plain KServe sample pattern, for the benchmark to compare with.

    python bench/peer.py predictor --model_name digits --model_dir models/digits --http_port P
    python bench/peer.py transformer --model_name digits --predictor_host 127.0.0.1:P \
        --predictor_protocol v2 --http_port Q
    python bench/peer.py floor --model_name digits --http_port R

A transformer and a predictor written as KServe's documentation writes them (its custom
transformer and custom predictor examples), on the KServe pinned in pyproject.toml: the
transformer's ``preprocess`` decodes the JSON request's base64 audio and computes the features,
then KServe forwards them to the predictor as a JSON V2 tensor (``--predictor_protocol v2``,
KServe's own REST client); the predictor's ``predict`` runs the SavedModel once per request, no
batching; KServe's defaults otherwise. Same model, same front end code (``audio_maas.features.frontend``),
so that only the serving pattern differs from ``audio-maas serve``.

``floor`` is KServe's own cost per request: a model that answers one label at once, reading
nothing, behind the same server; no service on it can answer more requests per core.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.features.frontend import FrontEnd  # noqa: E402
from audio_maas.features.spec import FeatureSpec  # noqa: E402
from audio_maas.protocol.model_dir import read_labels  # noqa: E402


class SampleTransformer(Model):
    """KServe's custom transformer pattern: preprocess to features, postprocess to a label."""

    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)  # KServe forwards to --predictor_host over --predictor_protocol
        self.front_end = FrontEnd(FeatureSpec.read(model_dir))
        self.labels = read_labels(model_dir)
        self.ready = True

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> InferRequest:
        audio = [base64.b64decode(element) for element in payload.inputs[0].data]
        features = np.stack([self.front_end.from_bytes(data=data, max_duration_s=60) for data in audio]).astype(
            np.float32
        )
        infer_input = InferInput(name="features", shape=list(features.shape), datatype="FP32")
        infer_input.set_data_from_numpy(features, binary_data=False)  # the docs' JSON tensors
        return InferRequest(model_name=self.name, infer_inputs=[infer_input], request_id=payload.id)

    def postprocess(self, response: Any, headers: dict[str, str] | None = None) -> InferResponse:
        probabilities = response.outputs[0].as_numpy()
        label = InferOutput(name="label", shape=[len(probabilities)], datatype="BYTES")
        label.set_data_from_numpy(np.array([self.labels[i] for i in probabilities.argmax(axis=1)], dtype=object))
        return InferResponse(model_name=self.name, infer_outputs=[label], response_id=response.id)


class SamplePredictor(Model):
    """KServe's custom predictor pattern: load the SavedModel, run it once per request."""

    def __init__(self, name: str, model_dir: Path) -> None:
        super().__init__(name)
        self.model_dir = model_dir

    def load(self) -> bool:
        import tensorflow as tf

        self.serve = tf.saved_model.load(str(self.model_dir)).signatures["serving_default"]
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> InferResponse:
        features = payload.inputs[0].as_numpy()
        probabilities = self.serve(features=features)["probabilities"].numpy()
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id)


class Floor(Model):
    """Answers one label at once: what KServe's REST server costs per request on its own."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> InferResponse:
        label = InferOutput(name="label", shape=[1], datatype="BYTES", data=["0"])
        return InferResponse(model_name=self.name, infer_outputs=[label], response_id=payload.id or "0")


def main() -> None:
    role = sys.argv.pop(1)
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_dir", type=Path, default=REPO / "models" / "digits")
    args, _ = parser.parse_known_args()
    if role == "predictor":
        model: Model = SamplePredictor(args.model_name, args.model_dir)
        model.load()
    elif role == "floor":
        model = Floor(args.model_name)
    else:
        model = SampleTransformer(args.model_name, args.model_dir)
    ModelServer().start([model])


if __name__ == "__main__":
    main()
