"""The transformer's model: audio in, features to the predictor, responses out.

Two kinds of model directory, each a pipeline: a classifier we trained (``feature_spec.json``:
:class:`~audio_maas.transformer.classifier.ClassifierPipeline`) and a model we did not, read
through its ``interface.json`` (:class:`~audio_maas.transformer.windowed.InterfacePipeline`).
:class:`AudioTransformer` serves either (a :class:`~audio_maas.serving.model.ServedModel`, no
framework: ``audio_maas.kserve.adapter`` serves it), and is ready only once the predictor has
answered a probe of the model's row shape as the model directory says it should.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np

from audio_maas.protocol.contract import AUDIO_INPUT, WAVEFORM_INPUT
from audio_maas.protocol.errors import BadRequest, ServiceError, UpstreamUnavailable
from audio_maas.protocol.messages import Request, Response
from audio_maas.protocol.model_dir import INTERFACE_FILE
from audio_maas.serving.model import Refusal, TensorMetadata
from audio_maas.transformer.classifier import ClassifierPipeline
from audio_maas.transformer.settings import TransformerSettings
from audio_maas.transformer.stages import Predictor, Stages
from audio_maas.transformer.windowed import InterfacePipeline

__all__ = ["AudioTransformer"]

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    """How one kind of model directory turns requests into responses."""

    outputs: tuple[str, ...]
    """The predictor's outputs a plain call asks for."""

    def load(self) -> None: ...

    @property
    def row_shape(self) -> tuple[int, ...]:
        """One row of the predictor's input, as the model directory says."""

    def disagreement(self, outputs: tuple[np.ndarray, ...]) -> str | None:
        """What is wrong with the predictor's response to one row of zeros, if anything."""

    def output_types(self) -> list[TensorMetadata]: ...

    async def infer(self, request: Request) -> Response: ...

    def stream(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]: ...


class AudioTransformer:
    """Serves ``settings.model_dir`` under ``name`` through its pipeline, with ``predictor``."""

    def __init__(self, name: str, settings: TransformerSettings, *, predictor: Predictor) -> None:
        self.name = name
        self.settings = settings
        self.stages = Stages(name, settings, predictor)
        self.pipeline: Pipeline = (
            InterfacePipeline(self.stages)
            if (settings.model_dir / INTERFACE_FILE).is_file()
            else ClassifierPipeline(self.stages)
        )
        self._loaded = False
        self._predictor_agrees = False
        self._probe_lock = asyncio.Lock()
        self.not_ready_reason = "not loaded"
        """Why the model is not ready, as last seen; logged once per reason."""
        self._not_ready_error: type[ServiceError] = UpstreamUnavailable
        """What a load by name raises while not ready: 503 while the predictor is away, 400 when
        it refuses this model's features (the model directory's fault)."""

    def load(self) -> None:
        self.stages.load()
        self.pipeline.load()
        self._loaded = True

    async def open(self) -> None:
        """Loaded by name while the server serves: the predictor loads the model first; ours is
        served once the predictor takes its features."""
        await self.stages.predictor.load(self.name)
        await asyncio.to_thread(self.load)
        if not await self.ready():
            raise self._not_ready_error(self.not_ready_reason)

    async def ready(self) -> bool:
        """Ready once loaded and the predictor has answered a probe of our row shape."""
        if not self._loaded:
            return False
        if self._predictor_agrees:  # asked on every request: no lock once settled
            return True
        async with self._probe_lock:
            if not self._predictor_agrees:
                self._predictor_agrees = await self._probe_predictor()
        return self._predictor_agrees

    async def _probe_predictor(self) -> bool:
        shape = self.pipeline.row_shape
        try:
            outputs = await self.stages.forward(np.zeros((1, *shape), np.float32), self.pipeline.outputs)
        except ServiceError as error:
            self._not_ready_error = UpstreamUnavailable if isinstance(error, UpstreamUnavailable) else BadRequest
            return self._not_ready(f"the predictor did not take a probe of {shape} features: {error}")
        self._not_ready_error = BadRequest
        disagreement = self.pipeline.disagreement(outputs)
        if disagreement is not None:
            return self._not_ready(disagreement)
        log.info("the predictor takes %s features and answers %s", shape, [output.shape[1:] for output in outputs])
        return True

    def _not_ready(self, reason: str) -> bool:
        # Probes repeat every few hundred ms while the predictor loads: say each reason once.
        level = logging.DEBUG if reason == self.not_ready_reason else logging.WARNING
        log.log(level, "%s not ready: %s", self.name, reason)
        self.not_ready_reason = reason
        return False

    def inputs(self) -> list[TensorMetadata]:
        return [
            {"name": AUDIO_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": WAVEFORM_INPUT, "datatype": "FP32", "shape": [-1, -1]},
        ]

    def outputs(self) -> list[TensorMetadata]:
        return self.pipeline.output_types()

    async def infer(self, request: Request) -> Response:
        log.debug("request %s: %d input(s)", request.id, len(request.inputs))
        return await self.pipeline.infer(request)

    def stream(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]:
        """Live audio (:mod:`~audio_maas.transformer.live`), for the models that stream."""
        return self.pipeline.stream(requests)

    def unload(self) -> None:
        """No more featurising threads or predictor calls for this model."""
        self.stages.close()
