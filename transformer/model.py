"""The KServe transformer: audio in, features to the predictor, labelled answers out."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, Literal

import grpc
import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, InferResponse, Model, RESTConfig
from kserve import context as kserve_context
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.infer_type import RequestedOutput
from prometheus_client import Histogram

from serving.auth import bearer_header
from serving.batching import DynamicBatcher
from serving.codec import asked_outputs, bytes_elements, request_parameter, to_numpy
from serving.contract import (
    AUDIO_INPUT,
    CLASS_ID_OUTPUT,
    INPUT_NAME,
    LABEL_OUTPUT,
    MODEL_FINGERPRINT_PARAMETER,
    OUTPUT_NAME,
    SALIENCY_FRAME_S_OUTPUT,
    SALIENCY_OUTPUT,
    SAMPLE_RATE_PARAMETER,
    SEGMENTS_OUTPUT,
    SEQUENCE_OUTPUT,
    WAVEFORM_INPUT,
    model_fingerprint,
    read_labels,
)
from serving.errors import BadRequest, ServiceError, UpstreamUnavailable
from transformer.frontend import MAX_SAMPLE_RATE, FeatureSpec, FrontEnd, InvalidAudioError, decode
from transformer.segment import SegmentOptions, segment_features, segment_options
from transformer.settings import TransformerSettings

__all__ = ["AudioTransformer"]

log = logging.getLogger(__name__)

_CLIENT_REQUEST: ContextVar[InferRequest] = ContextVar("client_request")
"""The client's request, for postprocess to answer the outputs and encoding it asked for."""
_SEGMENT_SPANS: ContextVar[list[list[tuple[float, float]]] | None] = ContextVar("segment_spans", default=None)
"""With ``segment``: each element's segments, (start_s, end_s), whose rows follow the elements' own."""
_FRAME_TIMES: ContextVar[np.ndarray | None] = ContextVar("frame_times", default=None)
"""With ``saliency`` asked for: each element's frame times ``[N, frames]``; its rows carry saliency."""
_SEGMENT_OUTPUTS = (SEQUENCE_OUTPUT, SEGMENTS_OUTPUT)
_EXPLAIN_OUTPUTS = (SALIENCY_OUTPUT, SALIENCY_FRAME_S_OUTPUT)
_Mode = SegmentOptions | Literal["explain"] | None
"""How elements are featurised: plain, cut into segments, or with frame times for saliency."""
_Featurised = np.ndarray | tuple[np.ndarray, Any]
"""One element's features ``[frames, bins]``; with ``segment``, ``transformer.segment.segment_features``'s
answer; for saliency, the features and their frame times."""


STAGE_SECONDS = Histogram(
    "audio_maas_stage_seconds", "Seconds per audio element in each front-end stage", ["model", "stage"]
)
FORWARDED_BATCH_SIZE = Histogram(
    "audio_maas_forwarded_batch_size",
    "Feature rows per transformer-to-predictor call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


class AudioTransformer(Model):
    """Runs the model's own front end on V2 audio requests and forwards binary features.

    Feature rows of concurrent requests are stacked into one predictor call (see
    :class:`~serving.batching.DynamicBatcher`): one hop per batch instead of one per request.
    A batched call carries no client's headers or request id; answers keep their client's id.
    The transformer is ready only once the predictor has accepted features of this spec's
    shape and answered one probability per label.
    """

    def __init__(self, name: str, settings: TransformerSettings) -> None:
        super().__init__(name)
        self.settings = settings
        self.front_end: FrontEnd | None = None
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
        assert self.front_end is not None, "load() runs before the server starts"
        shape = self.front_end.spec.feature_shape
        try:
            probabilities = await self._forward(np.zeros((1, *shape), np.float32))
        except ServiceError as error:
            return self._not_ready(f"the predictor did not take a probe of {shape} features: {error}")
        if probabilities.shape != (1, len(self.labels)):
            return self._not_ready(
                f"the predictor answers {probabilities.shape[1]} probabilities "
                f"but {self.settings.model_dir} has {len(self.labels)} labels"
            )
        log.info("the predictor takes %s features and answers %d classes", shape, len(self.labels))
        return True

    def _not_ready(self, reason: str) -> bool:
        # Probes repeat every few hundred ms while the predictor loads: say each reason once.
        log.log(
            logging.DEBUG if reason == self.not_ready_reason else logging.WARNING, "%s not ready: %s", self.name, reason
        )
        self.not_ready_reason = reason
        return False

    def stop(self) -> None:
        """Unloaded (``serving.repository``): no more featurising threads for this model."""
        self._batcher.close()
        self._explain_batcher.close()
        self._pool.shutdown(wait=False)  # requests in flight finish; then the threads end

    @functools.cached_property
    def _rest_client(self) -> InferenceRESTClient:
        """KServe's REST client for the v2 hop. For an ``http://`` predictor it is built without
        the TLS set-up KServe's own makes regardless: loading the CA bundle, twice, was 80 of the
        200 ms the first readiness probe took here, after the server had started. For ``https://``
        it is KServe's own, with its CA bundle."""
        config = self.predictor_config
        assert config is not None, "the v2 hop has a predictor"
        if config.use_ssl:
            return self._http_client
        plain = RESTConfig(protocol=config.protocol, timeout=config.timeout, retries=config.retries, verify=False)
        return InferenceRESTClient(plain)  # verify=False: plain HTTP has no certificate to verify

    @property
    def _predictor_host(self) -> str:
        return self.predictor_config.predictor_host if self.predictor_config else "(none)"

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

    @property
    def _feature_shape(self) -> tuple[int, int]:
        assert self.front_end is not None, "load() runs before the server starts"
        return self.front_end.spec.feature_shape

    async def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferRequest:
        if not isinstance(payload, InferRequest):
            raise BadRequest("this model speaks the V2 protocol: POST /v2/models/{name}/infer")
        mode = self._mode(payload)
        jobs, audio_bytes = self._jobs(payload, mode)
        log.debug("request %s: %d %s element(s)", payload.id, len(jobs), payload.inputs[0].name)
        _CLIENT_REQUEST.set(payload)
        if audio_bytes <= self.settings.inline_features_max_bytes:  # see that setting for why
            results = [job() for job in jobs]
        else:
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(loop.run_in_executor(self._pool, job) for job in jobs))
        _FRAME_TIMES.set(None)  # set for every request: what postprocess reads is this request's
        _SEGMENT_SPANS.set(None)
        if mode is None:
            features = np.stack(results)
        elif mode == "explain":
            features = np.stack([rows for rows, _ in results])
            _FRAME_TIMES.set(np.stack([times for _, times in results]))
        else:  # the elements' own rows first, as without `segment`, then every segment's: one predictor call
            features = np.concatenate([np.stack([rows[0] for rows, _ in results]), *(rows[1:] for rows, _ in results)])
            _SEGMENT_SPANS.set([spans for _, spans in results])
        return _features_request(features, model_name=self.name, request_id=payload.id, fingerprint=self.fingerprint)

    def _mode(self, payload: InferRequest) -> _Mode:
        """Segments with the parameter ``segment``; saliency when an explanation output is asked for."""
        assert self.front_end is not None, "load() runs before the server starts"
        parameters = {name: request_parameter(payload, name) for name in payload.parameters or {}}
        try:
            options = segment_options(parameters, self.front_end.spec)
        except ValueError as error:
            raise BadRequest(str(error)) from None
        wanted = [o.name for o in payload.request_outputs or []]
        segment_outputs = [name for name in wanted if name in _SEGMENT_OUTPUTS]
        if options is None and segment_outputs:
            raise BadRequest(f"output '{segment_outputs[0]}' needs the request parameter 'segment': true")
        explain_outputs = [name for name in wanted if name in _EXPLAIN_OUTPUTS]
        if explain_outputs and options is not None:
            raise BadRequest(f"output '{explain_outputs[0]}' explains whole elements: ask for it without 'segment'")
        return "explain" if explain_outputs else options

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        features = to_numpy(payload.inputs[0])  # our own features request, from preprocess
        if _FRAME_TIMES.get() is None:
            answers = [(OUTPUT_NAME, "FP32", await self._batcher.submit(features))]
        else:
            probabilities, saliency = await self._explain_batcher.submit(features)
            answers = [(OUTPUT_NAME, "FP32", probabilities), (SALIENCY_OUTPUT, "FP32", saliency)]
        outputs = asked_outputs(payload, answers, binary_data=False)  # our own request names none: all
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)

    async def _forward(self, features: np.ndarray) -> np.ndarray:
        """One predictor call for stacked ``[n, frames, bins]`` features; ``[n, classes]`` back."""
        return (await self._ask_predictor(features, (OUTPUT_NAME,)))[0]

    async def _forward_explained(self, features: np.ndarray) -> tuple[np.ndarray, ...]:
        """As :meth:`_forward`, and the saliency ``[n, frames, bins]`` too."""
        return await self._ask_predictor(features, (OUTPUT_NAME, SALIENCY_OUTPUT))

    async def _ask_predictor(self, features: np.ndarray, names: tuple[str, ...]) -> tuple[np.ndarray, ...]:
        """The predictor's outputs ``names`` for ``features``, in that order."""
        request = _features_request(
            features, model_name=self.name, request_id=str(uuid.uuid4()), fingerprint=self.fingerprint
        )
        if names != (OUTPUT_NAME,):  # the plain hop names none: the predictor's default answer is just that
            request.request_outputs = [RequestedOutput(name=name) for name in names]
        credentials = bearer_header(self.settings.auth_token)  # local mode: one token for both servers
        try:
            if self.predictor_config is not None and self.predictor_config.protocol == "v2":
                # KServe's own REST path sends binary tensors under two Content-Type headers, JSON
                # first, and the predictor rejects the body; let the client set octet-stream alone.
                response = await self._rest_client.infer(
                    self.predictor_config.predictor_base_url, model_name=self.name, data=request, headers=credentials
                )
            else:
                response = await super().predict(request, headers=credentials)  # KServe forwards authorization
        except httpx.TransportError as error:
            raise UpstreamUnavailable(f"predictor {self._predictor_host} is unreachable: {error}") from None
        except httpx.HTTPStatusError as error:
            raise UpstreamUnavailable(
                f"predictor answered {error.response.status_code}: {error.response.text[:400]}"
            ) from None
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                message = f"predictor {self._predictor_host} is unreachable: {error.details()}"
                raise UpstreamUnavailable(message) from None
            raise UpstreamUnavailable(f"predictor answered {error.code().name}: {error.details()}") from None
        assert isinstance(response, InferResponse)
        outputs = {output.name: output for output in response.outputs}
        if any(name not in outputs for name in names):
            raise UpstreamUnavailable(f"the predictor answered {sorted(outputs)}, not {list(names)}")
        return tuple(
            np.asarray(outputs[name].as_numpy(), dtype=np.float32).reshape(outputs[name].shape) for name in names
        )

    async def postprocess(
        self,
        result: InferResponse,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        answered = {output.name: np.asarray(output.as_numpy()).reshape(output.shape) for output in result.outputs}
        rows = answered[OUTPUT_NAME]
        spans = _SEGMENT_SPANS.get()
        frame_times = _FRAME_TIMES.get()
        probabilities = rows if spans is None else rows[: len(spans)]
        class_ids = probabilities.argmax(axis=1).astype(np.int64)
        labels = np.array([self.labels[i].encode() for i in class_ids], dtype=object)
        request = _CLIENT_REQUEST.get()
        answers: list[tuple[str, str, np.ndarray]] = [
            (LABEL_OUTPUT, "BYTES", labels),
            (CLASS_ID_OUTPUT, "INT64", class_ids),
            (OUTPUT_NAME, "FP32", probabilities),
        ]
        if spans is not None:
            answers += self._segment_answers(rows[len(spans) :], spans)
        if frame_times is not None:
            answers += [
                (SALIENCY_OUTPUT, "FP32", answered[SALIENCY_OUTPUT]),
                (SALIENCY_FRAME_S_OUTPUT, "FP32", frame_times),
            ]
        return InferResponse(
            response_id=request.id or result.id or str(uuid.uuid4()),  # V2 answers always carry an id
            model_name=self.name,
            infer_outputs=asked_outputs(request, answers, binary_data=False),
            use_binary_outputs=request.use_binary_outputs,
            requested_outputs=request.request_outputs,
        )

    def _segment_answers(
        self, probabilities: np.ndarray, spans: list[list[tuple[float, float]]]
    ) -> list[tuple[str, str, np.ndarray]]:
        """``sequence`` and ``segments`` of each element, from its segments' rows of ``probabilities``."""
        sequences, tables = [], []
        offset = 0
        for element_spans in spans:
            rows = probabilities[offset : offset + len(element_spans)]
            offset += len(element_spans)
            labels = [self.labels[int(row.argmax())] for row in rows]
            table = [
                {"start_s": round(start_s, 3), "end_s": round(end_s, 3), "label": label, "probability": round(p, 4)}
                for (start_s, end_s), label, p in zip(element_spans, labels, rows.max(axis=1).tolist(), strict=True)
            ]
            sequences.append(" ".join(labels).encode())
            tables.append(json.dumps(table).encode())
        return [
            (SEQUENCE_OUTPUT, "BYTES", np.array(sequences, dtype=object)),
            (SEGMENTS_OUTPUT, "BYTES", np.array(tables, dtype=object)),
        ]

    def _jobs(self, payload: InferRequest, mode: _Mode) -> tuple[list[Any], int]:
        """One featurising callable per element of the request's single input, and the bytes of
        audio they read."""
        names = [infer_input.name for infer_input in payload.inputs]
        if len(names) != 1 or names[0] not in (AUDIO_INPUT, WAVEFORM_INPUT):
            raise BadRequest(f"expected one input, '{AUDIO_INPUT}' (BYTES) or '{WAVEFORM_INPUT}' (FP32), got {names}")
        infer_input = payload.inputs[0]
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
        return self._waveform_jobs(payload, infer_input, shape, mode)

    def _waveform_jobs(
        self, payload: InferRequest, infer_input: InferInput, shape: list[int], mode: _Mode
    ) -> tuple[list[Any], int]:
        if infer_input.datatype != "FP32":
            raise BadRequest(f"input '{WAVEFORM_INPUT}' must be FP32, got {infer_input.datatype}")
        sample_rate = request_parameter(payload, SAMPLE_RATE_PARAMETER)
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
        rate = int(sample_rate)
        jobs = [lambda index=i, row=row: self._from_waveform(index, row, rate, mode) for i, row in enumerate(waveforms)]
        return jobs, waveforms.nbytes

    def _from_bytes(self, index: int, data: bytes, mode: _Mode) -> _Featurised:
        started = time.perf_counter()
        try:
            waveform, sample_rate = decode(data=data, max_duration_s=self.settings.max_duration_s)
        except InvalidAudioError as error:
            raise BadRequest(f"element {index}: {error}") from None
        STAGE_SECONDS.labels(self.name, "decode").observe(time.perf_counter() - started)
        return self._from_waveform(index, waveform, sample_rate, mode)

    def _from_waveform(self, index: int, waveform: np.ndarray, sample_rate: int, mode: _Mode) -> _Featurised:
        assert self.front_end is not None, "load() runs before the server starts"
        started = time.perf_counter()
        try:
            featurised: _Featurised
            if mode is None:
                featurised = self.front_end.from_waveform(waveform=waveform, sample_rate=sample_rate)
            elif mode == "explain":
                featurised = self.front_end.features_and_frame_times(waveform=waveform, sample_rate=sample_rate)
            else:
                featurised = segment_features(self.front_end, waveform=waveform, sample_rate=sample_rate, options=mode)
        except InvalidAudioError as error:
            raise BadRequest(f"element {index}: {error}") from None
        stage = "segments" if isinstance(mode, SegmentOptions) else "features"
        STAGE_SECONDS.labels(self.name, stage).observe(time.perf_counter() - started)
        return featurised


def _features_request(
    features: np.ndarray, *, model_name: str, request_id: str | None, fingerprint: str
) -> InferRequest:
    """Features as a binary FP32 V2 request, asking for binary outputs, carrying the fingerprint
    of the model they were computed for (the predictor refuses them for another)."""
    infer_input = InferInput(name=INPUT_NAME, shape=list(features.shape), datatype="FP32")
    infer_input.set_data_from_numpy(features, binary_data=True)
    parameters: dict[str, Any] = {"binary_data_output": True, MODEL_FINGERPRINT_PARAMETER: fingerprint}
    return InferRequest(model_name=model_name, infer_inputs=[infer_input], request_id=request_id, parameters=parameters)


async def ask_predictor(action: Literal["load", "unload"], name: str, *, settings: TransformerSettings) -> None:
    """Have the predictor load or unload model ``name`` (V2 repository extension), over the
    protocol the transformer calls it with; UpstreamUnavailable or BadRequest saying why not."""
    config = kserve_context.get_predictor_config()
    if config is None or not config.predictor_host:
        raise UpstreamUnavailable("no predictor is configured (--predictor_host)")
    metadata = bearer_header(settings.auth_token)
    try:
        if config.predictor_protocol == "grpc-v2":
            async with grpc.aio.insecure_channel(config.predictor_host) as channel:
                stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
                call: Any = stub.RepositoryModelLoad if action == "load" else stub.RepositoryModelUnload
                request_type = pb.RepositoryModelLoadRequest if action == "load" else pb.RepositoryModelUnloadRequest
                await call(request_type(model_name=name), metadata=[*metadata.items()])
        else:
            async with httpx.AsyncClient(timeout=120) as client:
                url = f"{config.predictor_base_url}/v2/repository/models/{name}/{action}"
                response = await client.post(url, headers=metadata)
                if response.status_code != 200:
                    raise BadRequest(f"the predictor could not {action} '{name}': {response.text[:300]}")
    except httpx.TransportError as error:
        raise UpstreamUnavailable(f"predictor {config.predictor_host} is unreachable: {error}") from None
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            raise UpstreamUnavailable(f"predictor {config.predictor_host} is unreachable: {error.details()}") from None
        raise BadRequest(f"the predictor could not {action} '{name}': {error.details()}") from None
