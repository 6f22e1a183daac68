"""What a client's request asks of the transformer, checked, and its elements turned into features.

A request carries one input: ``audio`` (BYTES ``[N]``, encoded files) or ``waveform`` (FP32, or
INT16 PCM, ``[N, samples]`` at the request parameter ``sample_rate``). How each element is featurised is the
model's business (its front end, or its windows) and the request's :data:`Mode`. Every refusal is
a :class:`~audio_maas.protocol.errors.BadRequest` naming the input, the element or the parameter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from kserve import InferInput, InferRequest
from prometheus_client import Histogram

from audio_maas.features.audio import MAX_SAMPLE_RATE, InvalidAudioError, decode
from audio_maas.features.segment import SegmentOptions
from audio_maas.kserve.tensors import bytes_elements, request_parameter, to_numpy
from audio_maas.protocol.contract import AUDIO_INPUT, SAMPLE_RATE_PARAMETER, WAVEFORM_INPUT
from audio_maas.protocol.errors import BadRequest
from audio_maas.transformer.settings import TransformerSettings

__all__ = ["STAGE_SECONDS", "Featurise", "Featurised", "Mode", "RequestReader"]

STAGE_SECONDS = Histogram(
    "audio_maas_stage_seconds", "Seconds per audio element in each front-end stage", ["model", "stage"]
)

Mode = SegmentOptions | Literal["explain"] | None
"""How a classifier's elements are featurised: plain, cut into segments (parameter ``segment``),
or with frame times for saliency (an explanation output asked for by name)."""

Featurise = Callable[[np.ndarray, int, Mode], Any]
"""The model's featurising of one element: (waveform, its sample rate, the request's mode) -> rows."""

Job = Callable[..., Any]
"""Featurises one element of a request."""


@dataclass(frozen=True)
class Featurised:
    """One client request, featurised: what goes to the predictor and what the answer needs."""

    request: InferRequest
    """The client's request: its id, and the outputs and encoding it asked for."""
    features: np.ndarray
    """float32 ``[rows, frames, bins]``: one row per element; with ``segment``, every segment's
    rows after the elements' own."""
    spans: list[list[tuple[float, float]]] | None = None
    """With ``segment``: each element's segments, (start_s, end_s), in the order of their rows."""
    frame_times: np.ndarray | None = None
    """For saliency: float32 ``[N, frames]``, each frame's centre in seconds of its element."""


class RequestReader:
    """Checks one model's requests and turns their elements into jobs of ``featurise``."""

    def __init__(self, name: str, settings: TransformerSettings, featurise: Featurise) -> None:
        self.name = name
        self.settings = settings
        self.featurise = featurise

    def jobs(self, request: InferRequest, mode: Mode) -> tuple[list[Job], int]:
        """One featurising job per element of the request's single input, and the bytes of audio
        they read."""
        names = [infer_input.name for infer_input in request.inputs]
        if len(names) != 1 or names[0] not in (AUDIO_INPUT, WAVEFORM_INPUT):
            raise BadRequest(f"expected one input, '{AUDIO_INPUT}' (BYTES) or '{WAVEFORM_INPUT}' (FP32), got {names}")
        infer_input = request.inputs[0]
        shape = list(infer_input.shape)
        if infer_input.name == AUDIO_INPUT and len(shape) != 1:
            raise BadRequest(f"input '{AUDIO_INPUT}' must have shape [N], got {shape}")
        if infer_input.name == WAVEFORM_INPUT and (len(shape) != 2 or shape[1] < 1):
            raise BadRequest(f"input '{WAVEFORM_INPUT}' must have shape [N, samples], got {shape}")
        if shape[0] < 1:
            raise BadRequest(f"input '{infer_input.name}' has no elements (shape {shape})")
        if shape[0] > self.settings.max_batch_elements:
            raise BadRequest(
                f"input '{infer_input.name}' has {shape[0]} elements, "
                f"over the limit of {self.settings.max_batch_elements}"
            )
        if infer_input.name == AUDIO_INPUT:
            files = bytes_elements(infer_input)
            jobs = [lambda index=i, data=data: self._from_bytes(index, data, mode) for i, data in enumerate(files)]
            return jobs, sum(len(data) for data in files)
        return self._waveform_jobs(request, infer_input, shape, mode)

    def _waveform_jobs(
        self, request: InferRequest, infer_input: InferInput, shape: list[int], mode: Mode
    ) -> tuple[list[Job], int]:
        if infer_input.datatype not in ("FP32", "INT16"):
            raise BadRequest(f"input '{WAVEFORM_INPUT}' must be FP32 (or INT16 PCM), got {infer_input.datatype}")
        sample_rate = request_parameter(request, SAMPLE_RATE_PARAMETER)
        if (
            not isinstance(sample_rate, (int, float))
            or isinstance(sample_rate, bool)
            or not 1 <= sample_rate <= MAX_SAMPLE_RATE
            or sample_rate != int(sample_rate)
        ):
            raise BadRequest(
                f"input '{WAVEFORM_INPUT}' needs the request parameter '{SAMPLE_RATE_PARAMETER}': a whole number of "
                f"Hz from 1 to {MAX_SAMPLE_RATE}, got {sample_rate!r}"
            )
        if shape[1] > self.settings.max_duration_s * sample_rate:
            raise BadRequest(f"waveform is longer than the maximum of {self.settings.max_duration_s:g} s")
        waveforms = to_numpy(infer_input)
        if waveforms.dtype == np.int16:
            waveforms = waveforms.astype(np.float32) / 32768
        rate = int(sample_rate)
        jobs = [lambda index=i, row=row: self._from_waveform(index, row, rate, mode) for i, row in enumerate(waveforms)]
        return jobs, waveforms.nbytes

    def _from_bytes(self, index: int, data: bytes, mode: Mode) -> Any:
        started = time.perf_counter()
        try:
            waveform, sample_rate = decode(data=data, max_duration_s=self.settings.max_duration_s)
        except InvalidAudioError as error:
            raise BadRequest(f"element {index}: {error}") from None
        STAGE_SECONDS.labels(self.name, "decode").observe(time.perf_counter() - started)
        return self._from_waveform(index, waveform, sample_rate, mode)

    def _from_waveform(self, index: int, waveform: np.ndarray, sample_rate: int, mode: Mode) -> Any:
        started = time.perf_counter()
        try:
            featurised = self.featurise(waveform, sample_rate, mode)
        except InvalidAudioError as error:
            raise BadRequest(f"element {index}: {error}") from None
        stage = "segments" if isinstance(mode, SegmentOptions) else "features"
        STAGE_SECONDS.labels(self.name, stage).observe(time.perf_counter() - started)
        return featurised
