"""The KServe transformer: audio in, features to the predictor, answers out.

KServe calls ``preprocess``, ``predict`` and ``postprocess`` in turn on one request; here each
hands the next plain numpy in a dataclass, so nothing is encoded between them: the client's
request is read once (:mod:`~audio_maas.transformer.inputs`), the features travel to the
predictor as raw bytes (:mod:`~audio_maas.transformer.upstream`), and the answer is built once
(:mod:`~audio_maas.transformer.answers`).

Two kinds of model directory: a classifier we trained (``feature_spec.json``:
:class:`ClassifierTransformer`) and a model we did not, read through its ``interface.json``
(:class:`InterfaceTransformer`); :func:`transformer_for` picks by what the directory holds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse, Model
from prometheus_client import Histogram

from audio_maas.features.frontend import FrontEnd
from audio_maas.features.interface import ModelInterface, Windows
from audio_maas.features.segment import SEGMENT_PARAMETER, segment_features, segment_options
from audio_maas.features.spec import FeatureSpec
from audio_maas.kserve.batching import DynamicBatcher
from audio_maas.kserve.streaming import Refusal
from audio_maas.kserve.tensors import request_parameter
from audio_maas.protocol.contract import (
    AUDIO_INPUT,
    CLASS_ID_OUTPUT,
    INPUT_NAME,
    INTERFACE_FILE,
    LABEL_OUTPUT,
    OUTPUT_NAME,
    PARTIAL_PARAMETER,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
    WAVEFORM_INPUT,
    model_fingerprint,
    read_labels,
)
from audio_maas.protocol.errors import BadRequest, ServiceError, UpstreamUnavailable
from audio_maas.transformer.answers import answer, interface_answer, stream_response
from audio_maas.transformer.inputs import Featurised, Mode, RequestReader
from audio_maas.transformer.live import LiveStream, Piece, SequenceFailed
from audio_maas.transformer.settings import TransformerSettings
from audio_maas.transformer.upstream import PredictorClient

__all__ = ["AudioTransformer", "ClassifierTransformer", "InterfaceTransformer", "transformer_for"]

log = logging.getLogger(__name__)

FORWARDED_BATCH_SIZE = Histogram(
    "audio_maas_forwarded_batch_size",
    "Feature rows per transformer-to-predictor call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

SEGMENT_OUTPUTS = (SEQUENCE_OUTPUT, SEGMENTS_OUTPUT)
EXPLAIN_OUTPUTS = (SALIENCY_OUTPUT, SALIENCY_FRAME_S_OUTPUT)


def transformer_for(name: str, settings: TransformerSettings, *, predictor: PredictorClient) -> AudioTransformer:
    """The transformer for ``settings.model_dir``: through its ``interface.json`` when it has one."""
    kind = InterfaceTransformer if (settings.model_dir / INTERFACE_FILE).is_file() else ClassifierTransformer
    return kind(name, settings, predictor=predictor)


class AudioTransformer(Model):
    """What both kinds share: requests read into featurising jobs, run inline or on the feature
    threads, and their rows sent to ``predictor`` for the model's ``outputs``.

    Rows of concurrent requests are stacked into one predictor call (see
    :class:`~audio_maas.kserve.batching.DynamicBatcher`): one hop per batch instead of one per
    request. A batched call carries no client's headers or request id; answers keep their
    client's id. The transformer is ready only once the predictor has answered a probe of the
    model's row shape as the model directory says it should.
    """

    outputs: tuple[str, ...] = ()
    """The predictor's outputs every call asks for."""

    def __init__(self, name: str, settings: TransformerSettings, *, predictor: PredictorClient) -> None:
        super().__init__(name)
        self.settings = settings
        self.predictor = predictor
        self.reader = RequestReader(name, settings, self._featurise)
        self.fingerprint = ""
        self._pool = ThreadPoolExecutor(settings.feature_threads, thread_name_prefix="features")
        self._batcher = DynamicBatcher(
            self._forward, max_batch_size=settings.max_batch_size, on_batch=FORWARDED_BATCH_SIZE.labels(name).observe
        )
        self._predictor_agrees = False
        self._probe_lock = asyncio.Lock()
        self.not_ready_reason = "not loaded"
        """Why the model is not ready, as last seen; logged once per reason."""
        self._not_ready_error: type[ServiceError] = UpstreamUnavailable
        """What a load by name answers while not ready: 503 while the predictor is away, 400 when
        it refuses this model's features (the model directory's fault)."""

    @property
    def row_shape(self) -> tuple[int, ...]:
        """One row of the predictor's input, as the model directory says."""
        raise NotImplementedError

    def _featurise(self, waveform: np.ndarray, sample_rate: int, mode: Mode) -> Any:
        """One element's audio as the model's rows (the request's ``mode`` says how)."""
        raise NotImplementedError

    def _mode(self, request: InferRequest) -> Mode:
        raise NotImplementedError

    def _stack(self, request: InferRequest, mode: Mode, results: list[Any]) -> Any:
        """The featurising jobs' results, in element order, as what ``predict`` takes."""
        raise NotImplementedError

    def _disagreement(self, answered: tuple[np.ndarray, ...]) -> str | None:
        """What is wrong with the predictor's answer to one row of zeros, if anything."""
        raise NotImplementedError

    async def open(self) -> None:
        """Loaded by name while the server serves (``audio_maas.kserve.repository``): the predictor
        loads the model first; ours is served once the predictor takes its features."""
        await self.predictor.load(self.name)
        await asyncio.to_thread(self.load)
        if not await self.healthy():
            raise self._not_ready_error(self.not_ready_reason)

    async def healthy(self) -> bool:
        """Ready once loaded and the predictor has answered a probe of our row shape."""
        if not self.ready:
            return False
        if self._predictor_agrees:  # KServe asks on every infer request: no lock once settled
            return True
        async with self._probe_lock:
            if not self._predictor_agrees:
                self._predictor_agrees = await self._probe_predictor()
        return self._predictor_agrees

    async def _probe_predictor(self) -> bool:
        shape = self.row_shape
        try:
            answered = await self._forward(np.zeros((1, *shape), np.float32))
        except ServiceError as error:
            self._not_ready_error = UpstreamUnavailable if isinstance(error, UpstreamUnavailable) else BadRequest
            return self._not_ready(f"the predictor did not take a probe of {shape} features: {error}")
        self._not_ready_error = BadRequest
        disagreement = self._disagreement(answered)
        if disagreement is not None:
            return self._not_ready(disagreement)
        log.info("the predictor takes %s features and answers %s", shape, [a.shape[1:] for a in answered])
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
        self._pool.shutdown(wait=False)  # requests in flight finish; then the threads end

    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": AUDIO_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": WAVEFORM_INPUT, "datatype": "FP32", "shape": [-1, -1]},
        ]

    async def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> Any:  # type: ignore[override]
        if not isinstance(payload, InferRequest):
            raise BadRequest("this model speaks the V2 protocol: POST /v2/models/{name}/infer")
        mode = self._mode(payload)
        jobs, audio_bytes = self.reader.jobs(payload, mode)
        log.debug("request %s: %d %s element(s)", payload.id, len(jobs), payload.inputs[0].name)
        if audio_bytes <= self.settings.inline_features_max_bytes:  # see that setting for why
            results = [job() for job in jobs]
        else:
            loop = asyncio.get_running_loop()
            results = list(await asyncio.gather(*(loop.run_in_executor(self._pool, job) for job in jobs)))
        return self._stack(payload, mode, results)

    def validate(self, payload: Any) -> Any:
        return payload  # our own dataclass, from preprocess: KServe's checks are for dicts

    async def _forward(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """One predictor call for stacked ``[n, *row_shape]`` rows: each of ``outputs``, ``n`` rows."""
        return await self.predictor.infer(self.name, rows, outputs=self.outputs, fingerprint=self.fingerprint)


@dataclass(frozen=True)
class _Classified:
    """What ``predict`` hands ``postprocess``: the featurised request and the predictor's answer."""

    featurised: Featurised
    probabilities: np.ndarray
    """float32 ``[rows, classes]``."""
    saliency: np.ndarray | None
    """float32 ``[N, frames, bins]`` when saliency was asked for."""


class ClassifierTransformer(AudioTransformer):
    """A model we trained: the front end of its ``feature_spec.json`` (the same code training
    ran), one row of features per clip or segment, and labelled answers; saliency on request."""

    outputs = (OUTPUT_NAME,)

    def __init__(self, name: str, settings: TransformerSettings, *, predictor: PredictorClient) -> None:
        super().__init__(name, settings, predictor=predictor)
        self.front_end: FrontEnd | None = None
        self.labels: list[str] = []
        self._explain_batcher = DynamicBatcher(self._forward_explained, max_batch_size=settings.max_batch_size)

    def load(self) -> bool:
        """Read the spec and labels that travel with the model; the model's features, not ours."""
        spec = FeatureSpec.read(self.settings.model_dir)
        self.labels = read_labels(self.settings.model_dir)
        self.fingerprint = model_fingerprint(self.settings.model_dir)
        self.front_end = FrontEnd(spec)
        self.front_end.from_waveform(waveform=np.zeros(spec.clip_samples, np.float32), sample_rate=spec.sample_rate)
        log.info("front end for %s: %s -> %s %s", self.settings.model_dir, spec.feature, INPUT_NAME, spec.feature_shape)
        self.ready = True
        return self.ready

    def stop(self) -> None:
        super().stop()
        self._explain_batcher.close()

    @property
    def row_shape(self) -> tuple[int, int]:
        assert self.front_end is not None, "load() runs before the server starts"
        return self.front_end.spec.feature_shape

    def _disagreement(self, answered: tuple[np.ndarray, ...]) -> str | None:
        (probabilities,) = answered
        if probabilities.shape != (1, len(self.labels)):
            return (
                f"the predictor answers {probabilities.shape[1]} probabilities "
                f"but {self.settings.model_dir} has {len(self.labels)} labels"
            )
        return None

    def get_output_types(self) -> list[dict[str, Any]]:
        return [
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": CLASS_ID_OUTPUT, "datatype": "INT64", "shape": [-1]},
            {"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, len(self.labels)]},
            # Only with the request parameter `segment`.
            {"name": SEQUENCE_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": SEGMENTS_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            # Only when asked for by name.
            {"name": SALIENCY_OUTPUT, "datatype": "FP32", "shape": [-1, *self.row_shape]},
            {"name": SALIENCY_FRAME_S_OUTPUT, "datatype": "FP32", "shape": [-1, self.row_shape[0]]},
        ]

    def _mode(self, request: InferRequest) -> Mode:
        """Segments with the parameter ``segment``; saliency when an explanation output is asked for."""
        assert self.front_end is not None, "load() runs before the server starts"
        parameters = {name: request_parameter(request, name) for name in request.parameters or {}}
        try:
            options = segment_options(parameters, self.front_end.spec)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        wanted = [output.name for output in request.request_outputs or []]
        segment_outputs = [name for name in wanted if name in SEGMENT_OUTPUTS]
        if options is None and segment_outputs:
            raise BadRequest(f"output '{segment_outputs[0]}' needs the request parameter 'segment': true")
        explain_outputs = [name for name in wanted if name in EXPLAIN_OUTPUTS]
        if explain_outputs and options is not None:
            raise BadRequest(f"output '{explain_outputs[0]}' explains whole elements: ask for it without 'segment'")
        return "explain" if explain_outputs else options

    def _featurise(self, waveform: np.ndarray, sample_rate: int, mode: Mode) -> Any:
        """Features ``[frames, bins]``; with ``segment``, ``segment_features``'s answer; for
        saliency, features and frame times."""
        front_end = self.front_end
        assert front_end is not None, "load() runs before the server starts"
        if mode is None:
            return front_end.from_waveform(waveform=waveform, sample_rate=sample_rate)
        if mode == "explain":
            return front_end.features_and_frame_times(waveform=waveform, sample_rate=sample_rate)
        return segment_features(front_end, waveform=waveform, sample_rate=sample_rate, options=mode)

    def _stack(self, request: InferRequest, mode: Mode, results: list[Any]) -> Featurised:
        if mode is None:
            return Featurised(request, np.stack(results))
        if mode == "explain":
            features = np.stack([rows for rows, _ in results])
            return Featurised(request, features, frame_times=np.stack([times for _, times in results]))
        # The elements' own rows first, as without `segment`, then every segment's: one predictor call.
        features = np.concatenate([np.stack([rows[0] for rows, _ in results]), *(rows[1:] for rows, _ in results)])
        return Featurised(request, features, spans=[spans for _, spans in results])

    async def predict(  # type: ignore[override]
        self,
        payload: Featurised,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> _Classified:
        if payload.frame_times is None:
            (probabilities,) = await self._batcher.submit(payload.features)
            return _Classified(payload, probabilities, None)
        probabilities, saliency = await self._explain_batcher.submit(payload.features)
        return _Classified(payload, probabilities, saliency)

    async def postprocess(  # type: ignore[override]
        self,
        result: _Classified,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        return answer(
            result.featurised, result.probabilities, result.saliency, model_name=self.name, labels=self.labels
        )

    async def stream(self, requests: AsyncIterator[InferRequest]) -> AsyncIterator[InferResponse | Refusal]:
        """Live audio (:mod:`~audio_maas.transformer.live`): a response per sound heard and per
        sequence ended, and a refused piece's error, after which the stream goes on. The sounds'
        features go to the predictor through the same batches as requests'."""
        if self.front_end is None:
            raise UpstreamUnavailable(f"model '{self.name}' is not loaded")
        loop = asyncio.get_running_loop()
        reader = RequestReader(self.name, self.settings, lambda waveform, sample_rate, mode: (waveform, sample_rate))

        def audio(request: InferRequest) -> tuple[np.ndarray, int]:
            jobs, _ = reader.jobs(request, None)
            if len(jobs) != 1:
                raise BadRequest(f"a piece of a live recording is one element, got {len(jobs)}")
            waveform, sample_rate = jobs[0]()
            return waveform, sample_rate

        async def pieces() -> AsyncIterator[Piece]:
            async for request in requests:
                yield Piece(
                    decode=functools.partial(audio, request),
                    sequence_id=request_parameter(request, "sequence_id") or 0,
                    start=bool(request_parameter(request, "sequence_start")),
                    end=bool(request_parameter(request, "sequence_end")),
                    partial_ms=request_parameter(request, PARTIAL_PARAMETER),
                    request=request,
                )

        async def classify(features: np.ndarray) -> np.ndarray:
            (probabilities,) = await self._batcher.submit(features)
            return probabilities

        async def run(function: Callable[[], Any]) -> Any:
            return await loop.run_in_executor(self._pool, function)

        live = LiveStream(
            model_name=self.name, front_end=self.front_end, settings=self.settings, classify=classify, run=run
        )
        async for event in live.events(pieces()):
            response = stream_response(event, model_name=self.name, labels=self.labels)
            yield Refusal(event.error, response) if isinstance(event, SequenceFailed) else response

    async def _forward_explained(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """As :meth:`_forward`, and the saliency ``[n, frames, bins]`` too."""
        return await self.predictor.infer(
            self.name, features, outputs=(OUTPUT_NAME, SALIENCY_OUTPUT), fingerprint=self.fingerprint
        )


@dataclass(frozen=True)
class _Windowed:
    """What ``preprocess`` hands on for an interface model: the request and each element's windows."""

    request: InferRequest
    windows: list[Windows]


@dataclass(frozen=True)
class _Read:
    """What ``predict`` hands ``postprocess``: the request and each element's answers by output name."""

    request: InferRequest
    answers: list[dict[str, Any]]


class InterfaceTransformer(AudioTransformer):
    """A model we did not train, through its ``interface.json``
    (:class:`~audio_maas.features.interface.ModelInterface`): each element is cut into the
    model's windows, all of a request's windows go to the predictor together (in calls of at most
    ``max_batch_size`` rows, stacked with other requests'), and the outputs are put back on each
    element's time axis and read. Segments and saliency are a classifier's: asked of this model
    they are a 400 naming it."""

    def __init__(self, name: str, settings: TransformerSettings, *, predictor: PredictorClient) -> None:
        super().__init__(name, settings, predictor=predictor)
        self.interface: ModelInterface | None = None
        self._own_shapes: dict[str, list[int]] = {}
        """The model's own outputs' shapes per row, from the predictor's answer to the probe."""

    def load(self) -> bool:
        self.interface = ModelInterface.read(self.settings.model_dir)
        self.outputs = tuple(self.interface.output["names"])
        self.fingerprint = model_fingerprint(self.settings.model_dir)
        log.info(
            "%s: %s windows -> %s %s", self.settings.model_dir, self.interface.input["kind"], INPUT_NAME, self.row_shape
        )
        self.ready = True
        return self.ready

    @property
    def row_shape(self) -> tuple[int, ...]:
        assert self.interface is not None, "load() runs before the server starts"
        return tuple(self.interface.input["shape"])

    def _disagreement(self, answered: tuple[np.ndarray, ...]) -> str | None:
        assert self.interface is not None, "load() runs before the server starts"
        out = self.interface.output
        expected = out["frames_per_window"] if out["kind"] == "frames" else len(self.interface.labels)
        for name, value in zip(self.outputs, answered, strict=True):
            if value.shape[0] != 1 or (expected > 1 and value.shape[1] != expected):
                return (
                    f"the predictor answers '{name}' of shape {list(value.shape)} for one window, "
                    f"where {INTERFACE_FILE} says [1, {expected}, ...]"
                )
        self._own_shapes = {name: list(value.shape[1:]) for name, value in zip(self.outputs, answered, strict=True)}
        return None

    def get_output_types(self) -> list[dict[str, Any]]:
        assert self.interface is not None, "load() runs before the server starts"
        types = []
        for output in self.interface.outputs():
            shape = output.shape
            if output.name in self._own_shapes:  # frames vary with the audio; bins are the model's
                shape = [*shape[:-1], self._own_shapes[output.name][-1]]
            types.append({"name": output.name, "datatype": output.datatype, "shape": shape})
        return types

    def _mode(self, request: InferRequest) -> Mode:
        if SEGMENT_PARAMETER in (request.parameters or {}):
            raise BadRequest(
                f"model '{self.name}' answers over time already: the request parameter "
                f"'{SEGMENT_PARAMETER}' is for classifiers"
            )
        return None

    def _featurise(self, waveform: np.ndarray, sample_rate: int, mode: Mode) -> Windows:
        assert self.interface is not None, "load() runs before the server starts"
        return self.interface.windows(waveform=waveform, sample_rate=sample_rate)

    def _stack(self, request: InferRequest, mode: Mode, results: list[Any]) -> _Windowed:
        return _Windowed(request, results)

    async def predict(  # type: ignore[override]
        self,
        payload: _Windowed,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> _Read:
        assert self.interface is not None, "load() runs before the server starts"
        interface = self.interface
        answered = await self._batcher.submit(np.concatenate([windows.rows for windows in payload.windows]))
        wanted = self._wanted(payload.request)

        def read() -> list[dict[str, Any]]:
            answers, start = [], 0
            for windows in payload.windows:
                end = start + len(windows.rows)
                values = {name: value[start:end] for name, value in zip(self.outputs, answered, strict=True)}
                answers.append(interface.answers(windows, values, wanted))
                start = end
            return answers

        # Off the event loop: the notes of 30 s take 25 ms to read, against the 50-100 us a
        # thread costs next to the 0.2-2 s these models take.
        return _Read(payload.request, await asyncio.get_running_loop().run_in_executor(self._pool, read))

    async def postprocess(  # type: ignore[override]
        self,
        result: _Read,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        assert self.interface is not None, "load() runs before the server starts"
        outputs = [output for output in self.interface.outputs() if output.name in self._wanted(result.request)]
        return interface_answer(result.request, result.answers, outputs, model_name=self.name)

    def _wanted(self, request: InferRequest) -> set[str]:
        """The outputs named in ``request``; those answered by default when it names none."""
        assert self.interface is not None, "load() runs before the server starts"
        named = {output.name for output in request.request_outputs or []}
        return named or {output.name for output in self.interface.outputs() if output.by_default}
