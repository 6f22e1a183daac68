"""The KServe transformer: audio in, features to the predictor, labelled answers out.

KServe calls ``preprocess``, ``predict`` and ``postprocess`` in turn on one request; here each
hands the next plain numpy in a dataclass, so nothing is encoded between them: the client's
request is read once (:mod:`~audio_maas.transformer.inputs`), the features travel to the
predictor as raw bytes (:mod:`~audio_maas.transformer.upstream`), and the answer is built once
(:mod:`~audio_maas.transformer.answers`).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse, Model
from prometheus_client import Histogram

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec
from audio_maas.kserve.batching import DynamicBatcher
from audio_maas.protocol.contract import (
    AUDIO_INPUT,
    CLASS_ID_OUTPUT,
    INPUT_NAME,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
    WAVEFORM_INPUT,
    model_fingerprint,
    read_labels,
)
from audio_maas.protocol.errors import BadRequest, ServiceError, UpstreamUnavailable
from audio_maas.transformer.answers import answer
from audio_maas.transformer.inputs import Featurised, RequestReader
from audio_maas.transformer.settings import TransformerSettings
from audio_maas.transformer.upstream import PredictorClient

__all__ = ["AudioTransformer"]

log = logging.getLogger(__name__)

FORWARDED_BATCH_SIZE = Histogram(
    "audio_maas_forwarded_batch_size",
    "Feature rows per transformer-to-predictor call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


@dataclass(frozen=True)
class _Predicted:
    """What ``predict`` hands ``postprocess``: the featurised request and the predictor's answer."""

    featurised: Featurised
    probabilities: np.ndarray
    """float32 ``[rows, classes]``."""
    saliency: np.ndarray | None
    """float32 ``[N, frames, bins]`` when saliency was asked for."""


class AudioTransformer(Model):
    """Runs the model's own front end on V2 audio requests and asks ``predictor`` for the answers.

    Feature rows of concurrent requests are stacked into one predictor call (see
    :class:`~audio_maas.kserve.batching.DynamicBatcher`): one hop per batch instead of one per
    request. A batched call carries no client's headers or request id; answers keep their
    client's id. The transformer is ready only once the predictor has accepted features of this
    spec's shape and answered one probability per label.
    """

    def __init__(self, name: str, settings: TransformerSettings, *, predictor: PredictorClient) -> None:
        super().__init__(name)
        self.settings = settings
        self.predictor = predictor
        self.reader: RequestReader | None = None
        self.labels: list[str] = []
        self.fingerprint = ""
        self._pool = ThreadPoolExecutor(settings.feature_threads, thread_name_prefix="features")
        self._batcher = DynamicBatcher(
            self._forward, max_batch_size=settings.max_batch_size, on_batch=FORWARDED_BATCH_SIZE.labels(name).observe
        )
        self._explain_batcher = DynamicBatcher(self._forward_explained, max_batch_size=settings.max_batch_size)
        self._predictor_agrees = False
        self._probe_lock = asyncio.Lock()
        self.not_ready_reason = "not loaded"
        """Why the model is not ready, as last seen; logged once per reason."""
        self._not_ready_error: type[ServiceError] = UpstreamUnavailable
        """What a load by name answers while not ready: 503 while the predictor is away, 400 when
        it refuses this model's features (the model directory's fault)."""

    def load(self) -> bool:
        """Read the spec and labels that travel with the model; the model's features, not ours."""
        spec = FeatureSpec.read(self.settings.model_dir)
        self.labels = read_labels(self.settings.model_dir)
        self.fingerprint = model_fingerprint(self.settings.model_dir)
        front_end = FrontEnd(spec)
        front_end.from_waveform(waveform=np.zeros(spec.clip_samples, np.float32), sample_rate=spec.sample_rate)
        self.reader = RequestReader(self.name, front_end, self.settings)
        log.info("front end for %s: %s -> %s %s", self.settings.model_dir, spec.feature, INPUT_NAME, spec.feature_shape)
        self.ready = True
        return self.ready

    async def open(self) -> None:
        """Loaded by name while the server serves (``audio_maas.kserve.repository``): the predictor
        loads the model first; ours is served once the predictor takes its features."""
        await self.predictor.load(self.name)
        await asyncio.to_thread(self.load)
        if not await self.healthy():
            raise self._not_ready_error(self.not_ready_reason)

    async def healthy(self) -> bool:
        """Ready once loaded and the predictor has answered a probe of our feature shape."""
        if not self.ready:
            return False
        if self._predictor_agrees:  # KServe asks on every infer request: no lock once settled
            return True
        async with self._probe_lock:
            if not self._predictor_agrees:
                self._predictor_agrees = await self._probe_predictor()
        return self._predictor_agrees

    async def _probe_predictor(self) -> bool:
        shape = self._feature_shape
        try:
            probabilities = await self._forward(np.zeros((1, *shape), np.float32))
        except ServiceError as error:
            self._not_ready_error = UpstreamUnavailable if isinstance(error, UpstreamUnavailable) else BadRequest
            return self._not_ready(f"the predictor did not take a probe of {shape} features: {error}")
        self._not_ready_error = BadRequest
        if probabilities.shape != (1, len(self.labels)):
            return self._not_ready(
                f"the predictor answers {probabilities.shape[1]} probabilities "
                f"but {self.settings.model_dir} has {len(self.labels)} labels"
            )
        log.info("the predictor takes %s features and answers %d classes", shape, len(self.labels))
        return True

    def _not_ready(self, reason: str) -> bool:
        # Probes repeat every few hundred ms while the predictor loads: say each reason once.
        level = logging.DEBUG if reason == self.not_ready_reason else logging.WARNING
        log.log(level, "%s not ready: %s", self.name, reason)
        self.not_ready_reason = reason
        return False

    def stop(self) -> None:
        """Unloaded (``audio_maas.kserve.repository``): no more featurising threads for this model."""
        self._batcher.close()
        self._explain_batcher.close()
        self._pool.shutdown(wait=False)  # requests in flight finish; then the threads end

    @property
    def _feature_shape(self) -> tuple[int, int]:
        assert self.reader is not None, "load() runs before the server starts"
        return self.reader.front_end.spec.feature_shape

    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": AUDIO_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": WAVEFORM_INPUT, "datatype": "FP32", "shape": [-1, -1]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": CLASS_ID_OUTPUT, "datatype": "INT64", "shape": [-1]},
            {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(self.labels)]},
            # Only with the request parameter `segment`.
            {"name": SEQUENCE_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": SEGMENTS_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            # Only when asked for by name.
            {"name": SALIENCY_OUTPUT, "datatype": "FP32", "shape": [-1, *self._feature_shape]},
            {"name": SALIENCY_FRAME_S_OUTPUT, "datatype": "FP32", "shape": [-1, self._feature_shape[0]]},
        ]

    async def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Featurised:  # type: ignore[override]
        if not isinstance(payload, InferRequest):
            raise BadRequest("this model speaks the V2 protocol: POST /v2/models/{name}/infer")
        assert self.reader is not None, "load() runs before the server starts"
        mode = self.reader.mode(payload)
        jobs, audio_bytes = self.reader.jobs(payload, mode)
        log.debug("request %s: %d %s element(s)", payload.id, len(jobs), payload.inputs[0].name)
        if audio_bytes <= self.settings.inline_features_max_bytes:  # see that setting for why
            results = [job() for job in jobs]
        else:
            loop = asyncio.get_running_loop()
            results = list(await asyncio.gather(*(loop.run_in_executor(self._pool, job) for job in jobs)))
        return RequestReader.stack(payload, mode, results)

    def validate(self, payload: Any) -> Any:
        return payload  # our own Featurised, from preprocess: KServe's checks are for dicts

    async def predict(  # type: ignore[override]
        self,
        payload: Featurised,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> _Predicted:
        if payload.frame_times is None:
            return _Predicted(payload, await self._batcher.submit(payload.features), None)
        probabilities, saliency = await self._explain_batcher.submit(payload.features)
        return _Predicted(payload, probabilities, saliency)

    async def postprocess(  # type: ignore[override]
        self,
        result: _Predicted,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        return answer(
            result.featurised, result.probabilities, result.saliency, model_name=self.name, labels=self.labels
        )

    async def _forward(self, features: np.ndarray) -> np.ndarray:
        """One predictor call for stacked ``[n, frames, bins]`` features; ``[n, classes]`` back."""
        (probabilities,) = await self.predictor.infer(
            self.name, features, outputs=(OUTPUT_NAME,), fingerprint=self.fingerprint
        )
        return probabilities

    async def _forward_explained(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """As :meth:`_forward`, and the saliency ``[n, frames, bins]`` too."""
        return await self.predictor.infer(
            self.name, features, outputs=(OUTPUT_NAME, SALIENCY_OUTPUT), fingerprint=self.fingerprint
        )
