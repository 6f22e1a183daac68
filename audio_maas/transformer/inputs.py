"""What a client's request asks of the transformer, checked, and its elements read as audio.

A request carries one input: ``audio`` (BYTES ``[N]``, encoded files) or ``waveform`` (FP32, or
INT16 PCM, ``[N, samples]`` at the request parameter ``sample_rate``). The reader hands back one
decoding job per element; what becomes of the audio is the model's business. Every refusal is a
:class:`~audio_maas.protocol.errors.BadRequest` naming the input, the element or the parameter.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import Histogram

from audio_maas.features.audio import MAX_SAMPLE_RATE, InvalidAudioError, decode
from audio_maas.protocol.codec import Tensor, bytes_elements, to_numpy
from audio_maas.protocol.contract import AUDIO_INPUT, SAMPLE_RATE_PARAMETER, WAVEFORM_INPUT
from audio_maas.protocol.errors import BadRequest
from audio_maas.protocol.messages import Request
from audio_maas.transformer.settings import TransformerSettings

__all__ = ["STAGE_SECONDS", "Decode", "RequestReader"]

STAGE_SECONDS = Histogram(
    "audio_maas_stage_seconds", "Seconds per audio element in each front-end stage", ["model", "stage"]
)

Decode = Callable[[], tuple[np.ndarray, int]]
"""Reads one element: its waveform (float32 ``[samples]`` or ``[samples, channels]``) and rate."""


class RequestReader:
    """Checks one model's requests and reads their elements."""

    def __init__(self, name: str, settings: TransformerSettings) -> None:
        self.name = name
        self.settings = settings
        self.max_duration_s = settings.max_duration_s
        """Longest audio of one element: the setting, or what the model's interface says it takes."""

    def elements(self, request: Request) -> tuple[list[Decode], int]:
        """One decoding job per element of the request's single input, and the bytes of audio they read."""
        names = [tensor.name for tensor in request.inputs]
        if len(names) != 1 or names[0] not in (AUDIO_INPUT, WAVEFORM_INPUT):
            raise BadRequest(f"expected one input, '{AUDIO_INPUT}' (BYTES) or '{WAVEFORM_INPUT}' (FP32), got {names}")
        tensor = request.inputs[0]
        shape = list(tensor.shape)
        if tensor.name == AUDIO_INPUT and len(shape) != 1:
            raise BadRequest(f"input '{AUDIO_INPUT}' must have shape [N], got {shape}")
        if tensor.name == WAVEFORM_INPUT and (len(shape) != 2 or shape[1] < 1):
            raise BadRequest(f"input '{WAVEFORM_INPUT}' must have shape [N, samples], got {shape}")
        if shape[0] < 1:
            raise BadRequest(f"input '{tensor.name}' has no elements (shape {shape})")
        if shape[0] > self.settings.max_batch_elements:
            raise BadRequest(
                f"input '{tensor.name}' has {shape[0]} elements, over the limit of {self.settings.max_batch_elements}"
            )
        if tensor.name == AUDIO_INPUT:
            files = bytes_elements(tensor)
            jobs: list[Decode] = [functools.partial(self._decode, index, data) for index, data in enumerate(files)]
            return jobs, sum(len(data) for data in files)
        return self._waveforms(request, tensor, shape)

    def _waveforms(self, request: Request, tensor: Tensor, shape: list[int]) -> tuple[list[Decode], int]:
        if tensor.datatype not in ("FP32", "INT16"):
            raise BadRequest(f"input '{WAVEFORM_INPUT}' must be FP32 (or INT16 PCM), got {tensor.datatype}")
        sample_rate = request.parameter(SAMPLE_RATE_PARAMETER)
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
        if shape[1] > self.max_duration_s * sample_rate:
            raise BadRequest(f"waveform is longer than the maximum of {self.max_duration_s:g} s")
        waveforms = to_numpy(tensor)
        if waveforms.dtype == np.int16:
            waveforms = waveforms.astype(np.float32) / 32768
        rate = int(sample_rate)
        rows: list[Decode] = [functools.partial(_as_read, row, rate) for row in waveforms]
        return rows, waveforms.nbytes

    def _decode(self, index: int, data: bytes) -> tuple[np.ndarray, int]:
        started = time.perf_counter()
        try:
            decoded = decode(data=data, max_duration_s=self.max_duration_s)
        except InvalidAudioError as error:
            raise BadRequest(f"element {index}: {error}") from None
        STAGE_SECONDS.labels(self.name, "decode").observe(time.perf_counter() - started)
        return decoded


def _as_read(waveform: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    return waveform, sample_rate
