"""A model we trained (``feature_spec.json``): the front end of its spec (the same code training
ran), one row of features per clip or per segment, and labelled responses; saliency on request;
live streams (:mod:`~audio_maas.transformer.live`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import TypeVar

import numpy as np

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.segment import SegmentOptions, segment_features, segment_options
from audio_maas.features.spec import FeatureSpec
from audio_maas.protocol.contract import (
    CLASS_ID_OUTPUT,
    INPUT_NAME,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
)
from audio_maas.protocol.errors import BadRequest, UpstreamUnavailable
from audio_maas.protocol.messages import Request, Response
from audio_maas.protocol.model_dir import read_labels
from audio_maas.serving.model import Refusal, TensorMetadata
from audio_maas.transformer.responses import class_outputs, classifier_response
from audio_maas.transformer.stages import Stages

__all__ = ["ClassifierPipeline"]

log = logging.getLogger(__name__)

SEGMENT_OUTPUTS = (SEQUENCE_OUTPUT, SEGMENTS_OUTPUT)
EXPLAIN_OUTPUTS = (SALIENCY_OUTPUT, SALIENCY_FRAME_S_OUTPUT)

T = TypeVar("T")


class ClassifierPipeline:
    """Requests featurised by the model's front end, classified by the predictor."""

    outputs: tuple[str, ...] = (OUTPUT_NAME,)
    """The predictor's outputs a plain call asks for."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.name = stages.name
        self.labels: list[str] = []
        self._front_end: FrontEnd | None = None
        self._classify = stages.batcher(lambda: self.outputs)
        self._explain = stages.batcher(lambda: (OUTPUT_NAME, SALIENCY_OUTPUT))

    def load(self) -> None:
        """Read the spec and labels that travel with the model: the model's features, not ours."""
        model_dir = self.stages.settings.model_dir
        spec = FeatureSpec.read(model_dir)
        self.labels = read_labels(model_dir)
        front_end = FrontEnd(spec)
        front_end.from_waveform(waveform=np.zeros(spec.clip_samples, np.float32), sample_rate=spec.sample_rate)
        self._front_end = front_end
        log.info("front end for %s: %s -> %s %s", model_dir, spec.feature, INPUT_NAME, spec.feature_shape)

    @property
    def front_end(self) -> FrontEnd:
        if self._front_end is None:
            raise UpstreamUnavailable(f"model '{self.name}' is not loaded")
        return self._front_end

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.front_end.spec.feature_shape

    def disagreement(self, answered: tuple[np.ndarray, ...]) -> str | None:
        """What is wrong with the predictor's response to one row of zeros, if anything."""
        (probabilities,) = answered
        if probabilities.shape != (1, len(self.labels)):
            return (
                f"the predictor answers {probabilities.shape[1]} probabilities "
                f"but {self.stages.settings.model_dir} has {len(self.labels)} labels"
            )
        return None

    @property
    def explains(self) -> bool:
        """Whether saliency is offered: integrated gradients explain log-mel or MFCC features, not
        a waveform whose front end is inside the model (a pretrained encoder's)."""
        return self.front_end.spec.feature != "waveform"

    def output_types(self) -> list[TensorMetadata]:
        frames, bins = self.row_shape
        types: list[TensorMetadata] = [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": CLASS_ID_OUTPUT, "datatype": "INT64", "shape": [-1]},
            {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(self.labels)]},
            # Only with the request parameter `segment`.
            {"name": SEQUENCE_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": SEGMENTS_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        ]
        if self.explains:  # only when asked for by name
            types.append({"name": SALIENCY_OUTPUT, "datatype": "FP32", "shape": [-1, frames, bins]})
            types.append({"name": SALIENCY_FRAME_S_OUTPUT, "datatype": "FP32", "shape": [-1, frames]})
        return types

    async def infer(self, request: Request) -> Response:
        """Each element classified; with ``segment``, each of its sounds too; with an explanation
        output named, with saliency."""
        options = self._segment_options(request)
        respond = functools.partial(classifier_response, request, model_name=self.name, labels=self.labels)
        if options is not None:
            segments = functools.partial(self._segments, options=options)
            results = await self.stages.featurise(request, segments, "segments")
            # The elements' own rows first, as without `segment`, then every segment's: one predictor call.
            rows = np.concatenate([np.stack([rows[0] for rows, _ in results]), *(rows[1:] for rows, _ in results)])
            (probabilities,) = await self._classify.submit(rows)
            return respond(probabilities, spans=[spans for _, spans in results])
        if any(name in EXPLAIN_OUTPUTS for name in request.outputs):
            explained = await self.stages.featurise(request, self._with_times, "features")
            probabilities, saliency = await self._explain.submit(np.stack([rows for rows, _ in explained]))
            return respond(probabilities, saliency=(saliency, np.stack([times for _, times in explained])))
        features = await self.stages.featurise(request, self._features, "features")
        (probabilities,) = await self._classify.submit(np.stack(features))
        return respond(probabilities)

    def _segment_options(self, request: Request) -> SegmentOptions | None:
        """Segments with the parameter ``segment``; an explanation output is for whole elements."""
        try:
            options = segment_options(request.parameters, self.front_end.spec)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        segment_outputs = [name for name in request.outputs if name in SEGMENT_OUTPUTS]
        if options is None and segment_outputs:
            raise BadRequest(f"output '{segment_outputs[0]}' needs the request parameter 'segment': true")
        explain_outputs = [name for name in request.outputs if name in EXPLAIN_OUTPUTS]
        if explain_outputs and not self.explains:
            raise BadRequest(
                f"output '{explain_outputs[0]}' is not offered by model '{self.name}': it reads the waveform "
                "into a pretrained encoder, and saliency explains log-mel features"
            )
        if explain_outputs and options is not None:
            raise BadRequest(f"output '{explain_outputs[0]}' explains whole elements: ask for it without 'segment'")
        return options

    def _features(self, waveform: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.front_end.from_waveform(waveform=waveform, sample_rate=sample_rate)

    def _with_times(self, waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        return self.front_end.features_and_frame_times(waveform=waveform, sample_rate=sample_rate)

    def _segments(
        self, waveform: np.ndarray, sample_rate: int, *, options: SegmentOptions
    ) -> tuple[np.ndarray, list[tuple[float, float]]]:
        return segment_features(self.front_end, waveform=waveform, sample_rate=sample_rate, options=options)

    def stream(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]:
        """Live audio: a response per sound heard and per sequence ended, and a refused piece's
        refusal, after which the stream goes on. The sounds' features join requests' batches."""

        async def classify(features: np.ndarray) -> np.ndarray:
            (probabilities,) = await self._classify.submit(features)
            return probabilities

        return self.stages.live(
            requests,
            front_end=self.front_end,
            options=SegmentOptions.for_spec(self.front_end.spec),
            classify=classify,
            outputs_of=lambda row: class_outputs(row[np.newaxis], self.labels),
        )
