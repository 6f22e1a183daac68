"""The predictor's model: a TensorFlow SavedModel answering V2 requests of feature rows, with
dynamic batching. No framework: ``audio_maas.kserve.adapter`` serves it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from prometheus_client import Histogram

from audio_maas.predictor.settings import PredictorSettings
from audio_maas.protocol.codec import to_numpy
from audio_maas.protocol.contract import INPUT_NAME, MODEL_FINGERPRINT_PARAMETER, OUTPUT_NAME, SALIENCY_OUTPUT
from audio_maas.protocol.errors import BadRequest, ModelMismatch, UpstreamUnavailable
from audio_maas.protocol.messages import Output, Request, Response, respond
from audio_maas.protocol.model_dir import INTERFACE_FILE, model_fingerprint
from audio_maas.savedmodel.explain import explainer
from audio_maas.savedmodel.load import load_serving_function, set_threads
from audio_maas.serving.batching import DynamicBatcher
from audio_maas.serving.model import TensorMetadata

__all__ = ["BATCH_SIZE", "MODEL_SECONDS", "SavedModelPredictor"]

log = logging.getLogger(__name__)

BATCH_SIZE = Histogram(
    "audio_maas_batch_size",
    "Rows per model call after dynamic batching",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
MODEL_SECONDS = Histogram("audio_maas_model_seconds", "Seconds per batched model call", ["model"])
EXPLAIN_SECONDS = Histogram("audio_maas_explain_seconds", "Seconds per batched explanation call", ["model"])


class SavedModelPredictor:
    """Serves ``settings.model_dir``'s serving signature (a :class:`~audio_maas.serving.model.ServedModel`)."""

    def __init__(self, name: str, settings: PredictorSettings) -> None:
        self.name = name
        self.settings = settings
        self.device = "unloaded"
        self._signature: Any = None
        self._input_shape: list[int] = []
        self._output_shapes: dict[str, list[int]] = {}
        """Each output's shape, in the order ``_run`` answers them."""
        self._batcher: DynamicBatcher[tuple[np.ndarray, ...]] | None = None
        self.fingerprint = ""
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="model")  # off the event loop
        # Explanations cost about 8 model calls each: their own thread and batches, so that plain
        # requests never queue behind them; the function is traced on the first one.
        self._explain: Any = None
        self._explain_batcher: DynamicBatcher[tuple[np.ndarray, ...]] | None = None
        self._explain_thread = ThreadPoolExecutor(1, thread_name_prefix="explain")

    async def open(self) -> None:
        """Loaded by name while the server serves: :meth:`load` off the event loop (it reads files
        and builds TensorFlow graphs)."""
        await asyncio.to_thread(self.load)

    async def ready(self) -> bool:
        return self._batcher is not None

    def load(self) -> None:
        """Load the SavedModel, resolve its signature, warm it up, and only then report ready."""
        import tensorflow as tf

        set_threads(intra_op=self.settings.intra_op_threads, inter_op=self.settings.inter_op_threads)
        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:  # take memory as needed, so other processes on the GPU still fit
            tf.config.experimental.set_memory_growth(gpu, True)
        self.device = f"GPU ({', '.join(gpu.name for gpu in gpus)})" if gpus else "CPU"
        signature = load_serving_function(self.settings.model_dir)
        self.fingerprint = model_fingerprint(self.settings.model_dir)
        inputs = signature.structured_input_signature[1]
        outputs = signature.structured_outputs
        self._signature = signature
        self._input_shape = [-1 if d is None else d for d in inputs[INPUT_NAME].shape.as_list()]
        self._output_shapes = {
            name: [-1 if d is None else d for d in spec.shape.as_list()] for name, spec in sorted(outputs.items())
        }
        max_batch_size, capped = self._max_batch_size()
        # The first calls trace and allocate: pay for them before we say ready, on the thread that
        # will serve (TensorFlow keeps state per thread), the largest batch first and one row last,
        # the shape of a lone request. A model whose interface caps its batch has rows so costly
        # (a Whisper window: 1 s and more) that one row, which traces, is warm-up enough.
        for rows in (1,) if capped else (max_batch_size, 1):
            warm = np.zeros([rows, *self._input_shape[1:]], np.float32)
            self._model_thread.submit(self._run, warm).result()
        self._batcher = DynamicBatcher(
            self._run_off_loop,
            max_batch_size=max_batch_size,
            max_wait_s=self.settings.max_batch_wait_ms / 1000,
            on_batch=BATCH_SIZE.labels(self.name).observe,
        )
        self._explain_batcher = DynamicBatcher(self._explain_off_loop, max_batch_size=max_batch_size)
        log.info(
            "loaded %s on %s (%s intra-op, %s inter-op threads): %s %s -> %s, batches of up to %d within %g ms",
            self.settings.model_dir,
            self.device,
            tf.config.threading.get_intra_op_parallelism_threads() or "TensorFlow's choice of",
            tf.config.threading.get_inter_op_parallelism_threads() or "TensorFlow's choice of",
            INPUT_NAME,
            self._input_shape,
            self._output_shapes,
            max_batch_size,
            self.settings.max_batch_wait_ms,
        )

    def _max_batch_size(self) -> tuple[int, bool]:
        """The setting, or less where the model's interface says so (and whether it does): a
        Whisper window is 30 s of audio, 2.3 CPU-s and a 1500 x 1500 attention per head."""
        interface = self.settings.model_dir / INTERFACE_FILE
        limit = json.loads(interface.read_text())["input"].get("max_batch_size") if interface.is_file() else None
        if limit is None or limit >= self.settings.max_batch_size:
            return self.settings.max_batch_size, False
        return int(limit), True

    def inputs(self) -> list[TensorMetadata]:
        return [{"name": INPUT_NAME, "datatype": "FP32", "shape": self._input_shape}]

    def outputs(self) -> list[TensorMetadata]:
        outputs = [{"name": name, "datatype": "FP32", "shape": shape} for name, shape in self._output_shapes.items()]
        if self._explains:  # only when asked for
            outputs.append({"name": SALIENCY_OUTPUT, "datatype": "FP32", "shape": self._input_shape})
        return outputs

    @property
    def _explains(self) -> bool:
        """Saliency explains a class choice: for classifiers, whose one output is ``OUTPUT_NAME``."""
        return list(self._output_shapes) == [OUTPUT_NAME]

    async def infer(self, request: Request) -> Response:
        if self._batcher is None or self._explain_batcher is None:
            raise UpstreamUnavailable(f"model '{self.name}' is not loaded")
        self._check_caller_model(request)
        features = self._features(request)
        if self._explains and SALIENCY_OUTPUT in request.outputs:
            probabilities, saliency = await self._explain_batcher.submit(features)
            outputs = [Output(OUTPUT_NAME, "FP32", probabilities), Output(SALIENCY_OUTPUT, "FP32", saliency)]
        else:
            values = await self._batcher.submit(features)
            outputs = [Output(name, "FP32", value) for name, value in zip(self._output_shapes, values, strict=True)]
        return respond(request, outputs, model_name=self.name)

    def _check_caller_model(self, request: Request) -> None:
        """ModelMismatch when the transformer calling says it holds another model's spec or labels:
        a rollout pairing revisions of different models, or a storageUri changed between the two
        containers' downloads. Features of another front end would be answered wrongly, silently."""
        theirs = request.parameter(MODEL_FINGERPRINT_PARAMETER)
        if theirs is not None and theirs != self.fingerprint:
            raise ModelMismatch(
                f"model '{self.name}' here has feature spec and labels {self.fingerprint}, the caller's are "
                f"{theirs}: transformer and predictor serve different models (a rollout mixing revisions?)"
            )

    def _features(self, request: Request) -> np.ndarray:
        """The request's one input as float32 ``[N, ...]`` of the model's shape, or BadRequest naming the fault."""
        names = [infer_input.name for infer_input in request.inputs]
        if names != [INPUT_NAME]:
            raise BadRequest(f"expected exactly one input named '{INPUT_NAME}', got {names}")
        infer_input = request.inputs[0]
        if infer_input.datatype != "FP32":
            raise BadRequest(f"input '{INPUT_NAME}' must be FP32, got {infer_input.datatype}")
        shape = list(infer_input.shape)
        expected = self._input_shape
        if len(shape) != len(expected) or shape[0] < 1 or shape[1:] != expected[1:]:
            wanted = ", ".join(["N", *map(str, expected[1:])])
            raise BadRequest(f"input '{INPUT_NAME}' of model '{self.name}' must have shape [{wanted}], got {shape}")
        features = to_numpy(infer_input)
        if not np.isfinite(features).all():
            raise BadRequest(f"input '{INPUT_NAME}' contains NaN or infinite values")
        return features

    def unload(self) -> None:
        """Requests in flight finish, then nothing holds the model."""
        for batcher in (self._batcher, self._explain_batcher):
            if batcher is not None:
                batcher.close()
        self._model_thread.shutdown(wait=False)
        self._explain_thread.shutdown(wait=False)

    async def _run_off_loop(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, self._run, features)

    async def _explain_off_loop(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        return await asyncio.get_running_loop().run_in_executor(self._explain_thread, self._run_explain, features)

    def _run_explain(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """float32 ``[n, frames, bins]`` -> probabilities ``[n, classes]`` and saliency ``[n, frames,
        bins]`` (``audio_maas.savedmodel.explain``); called from its own thread."""
        if self._explain is None:
            self._explain = explainer(self._signature)
        started = time.perf_counter()
        outputs = tuple(tensor.numpy() for tensor in self._explain(features))
        EXPLAIN_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return outputs

    def _run(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """float32 ``[n, ...]`` -> each output, float32 with ``n`` rows, in ``_output_shapes``'
        order; called from one thread."""
        started = time.perf_counter()
        named = self._signature(**{INPUT_NAME: features})
        result = tuple(named[name].numpy() for name in self._output_shapes)
        MODEL_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        return result
