"""A model we did not train, through its ``interface.json``
(:class:`~audio_maas.features.interface.ModelInterface`): each element is cut into the model's
windows, all of a request's windows go to the predictor together (in calls of at most
``max_batch_size`` rows, stacked with other requests'), and the outputs are put back on each
element's time axis and read. Segments and saliency are a classifier's: asked of this model they
are refused naming it; streams are a classifier's and a speech recogniser's (live captions).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from audio_maas.features.interface import ModelInterface, Windows
from audio_maas.features.segment import SEGMENT_PARAMETER
from audio_maas.features.transcript import UTTERANCE_OPTIONS, UtteranceFrontEnd, UtteranceSpec
from audio_maas.protocol.contract import INPUT_NAME, TEXT_OUTPUT
from audio_maas.protocol.errors import BadRequest, UpstreamUnavailable
from audio_maas.protocol.messages import Output, Request, Response
from audio_maas.protocol.model_dir import INTERFACE_FILE
from audio_maas.serving.model import Refusal, TensorMetadata
from audio_maas.transformer.responses import interface_response
from audio_maas.transformer.stages import Stages

__all__ = ["InterfacePipeline"]

log = logging.getLogger(__name__)

LIVE_UTTERANCE_S = 20.0
"""The longest utterance of a live stream: with 5 s of context, within the default 30 s of ``sequence_max_held_s``."""


class InterfacePipeline:
    """Requests cut into the model's windows, its outputs read back on their time axis."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.name = stages.name
        self.outputs: tuple[str, ...] = ()
        """The predictor's outputs every call asks for: all the model's own."""
        self._interface: ModelInterface | None = None
        self._own_shapes: dict[str, list[int]] = {}
        """The model's own outputs' shapes per row, from the predictor's response to the probe."""
        self._windows = stages.batcher(lambda: self.outputs)

    def load(self) -> None:
        interface = ModelInterface.read(self.stages.settings.model_dir)
        self.outputs = tuple(interface.output["names"])
        self.stages.reader.max_duration_s = interface.input.get("max_duration_s", self.stages.settings.max_duration_s)
        self._interface = interface
        log.info(
            "%s: %s windows -> %s %s",
            self.stages.settings.model_dir,
            interface.input["kind"],
            INPUT_NAME,
            self.row_shape,
        )

    @property
    def interface(self) -> ModelInterface:
        if self._interface is None:
            raise UpstreamUnavailable(f"model '{self.name}' is not loaded")
        return self._interface

    @property
    def row_shape(self) -> tuple[int, ...]:
        return tuple(self.interface.input["shape"])

    def disagreement(self, outputs: tuple[np.ndarray, ...]) -> str | None:
        """What is wrong with the predictor's response to one window of zeros, if anything."""
        out = self.interface.output
        expected: int = len(self.interface.labels)  # classes or tags: a score per label
        if out["kind"] in ("frames", "transcript"):  # frames as the interface says; a transcript's rows vary
            expected = out.get("frames_per_window", 1)
        for name, value in zip(self.outputs, outputs, strict=True):
            if value.shape[0] != 1 or (expected > 1 and value.shape[1] != expected):
                return (
                    f"the predictor answers '{name}' of shape {list(value.shape)} for one window, "
                    f"where {INTERFACE_FILE} says [1, {expected}, ...]"
                )
        self._own_shapes = {name: list(value.shape[1:]) for name, value in zip(self.outputs, outputs, strict=True)}
        return None

    def output_types(self) -> list[TensorMetadata]:
        types = []
        for output in self.interface.outputs():
            shape = output.shape
            if self._own_shapes.get(output.name):  # frames vary with the audio; bins are the model's
                shape = [*shape[:-1], self._own_shapes[output.name][-1]]
            types.append({"name": output.name, "datatype": output.datatype, "shape": shape})
        return types

    async def infer(self, request: Request) -> Response:
        interface = self.interface
        if SEGMENT_PARAMETER in request.parameters:
            raise BadRequest(
                f"model '{self.name}' answers over time already: the request parameter "
                f"'{SEGMENT_PARAMETER}' is for classifiers"
            )
        windows = await self.stages.featurise(request, self._windows_of, "features")
        rows = np.concatenate([element.rows for element in windows])
        if len(rows):
            values = await self._windows.submit(rows)
        else:  # nothing to hear (a speech recogniser's silence): no predictor call
            values = tuple(np.zeros([0, *self._own_shapes[name]], np.float32) for name in self.outputs)
        wanted = self._wanted(request)

        def read() -> list[dict[str, Any]]:
            read, start = [], 0
            for element in windows:
                end = start + len(element.rows)
                own = {name: value[start:end] for name, value in zip(self.outputs, values, strict=True)}
                read.append(interface.outputs_of(element, own, wanted))
                start = end
            return read

        # Off the event loop: the notes of 30 s take 25 ms to read, against the 50-100 us a
        # thread costs next to the 0.2-2 s these models take.
        outputs = [output for output in interface.outputs() if output.name in wanted]
        return interface_response(request, await self.stages.run(read), outputs, model_name=self.name)

    def _windows_of(self, waveform: np.ndarray, sample_rate: int) -> Windows:
        return self.interface.windows(waveform=waveform, sample_rate=sample_rate)

    def _wanted(self, request: Request) -> set[str]:
        """The outputs named in ``request``; those given by default when it names none."""
        return set(request.outputs) or {output.name for output in self.interface.outputs() if output.by_default}

    def stream(self, requests: AsyncIterator[Request]) -> AsyncIterator[Response | Refusal]:
        """Live captions, for a speech recogniser: each utterance's ``text`` once a pause ends it
        (utterances of at most ``LIVE_UTTERANCE_S``, so that one and its context stay within
        ``sequence_max_held_s``). Other models take requests one by one."""
        vocabulary = self.interface.vocabulary
        if vocabulary is None:
            raise BadRequest(f"model '{self.name}' does not answer streams: send it requests one by one")
        rate, window = self.interface.input["sample_rate"], self.interface.input["window"]
        front_end = UtteranceFrontEnd(UtteranceSpec(rate, clip_s=LIVE_UTTERANCE_S), window=window)

        async def hear(windows: np.ndarray) -> np.ndarray:
            """Each window's tokens, then its no-speech probability and mean log-probability."""
            values = dict(zip(self.outputs, await self._windows.submit(windows), strict=True))
            return np.column_stack([values["tokens"], values["no_speech"], values["avg_logprob"]])

        def caption(row: np.ndarray) -> list[Output]:
            ids = vocabulary.read(row[:-2], no_speech=float(row[-2]), avg_logprob=float(row[-1]))
            return [Output(TEXT_OUTPUT, "BYTES", np.array([vocabulary.words(ids).encode()], dtype=object))]

        return self.stages.live(
            requests, front_end=front_end, options=UTTERANCE_OPTIONS, classify=hear, outputs_of=caption
        )
