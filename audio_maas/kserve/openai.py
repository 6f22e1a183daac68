"""OpenAI's speech-to-text API on the transformer's REST port, for any model that answers ``text``
(``transcribe``): ``POST /v1/audio/transcriptions``, a multipart form as OpenAI's clients send it.

Fields: ``file`` (any audio the service decodes), ``model`` (a served model's name),
``response_format`` (``json``, ``text``, ``srt``, ``vtt`` or ``verbose_json`` with segments),
``language`` (``en`` or absent), ``temperature`` (0 or absent: decoding is greedy). A field we
cannot honour (a ``prompt``, another language or temperature, word timestamps, a stream) is
refused naming it, never ignored. Errors come in OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, with the status the V2 API gives the same fault; the bearer token is asked as
for V2 (``audio_maas.kserve.auth``). The request goes to the model as a V2 request of one
``audio`` element would.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from typing import Any

from kserve.protocol.dataplane import DataPlane
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from audio_maas.kserve.adapter import KServeModel
from audio_maas.kserve.errors import classify
from audio_maas.protocol.codec import Tensor
from audio_maas.protocol.contract import AUDIO_INPUT, SEGMENTS_OUTPUT, TEXT_OUTPUT
from audio_maas.protocol.errors import BadRequest, ModelNotFound, UpstreamUnavailable
from audio_maas.protocol.messages import Request
from audio_maas.protocol.subtitles import subtitles
from audio_maas.serving.model import ServedModel

__all__ = ["TRANSCRIPTIONS_PATH", "transcriptions_route"]

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")

log = logging.getLogger(__name__)


class _Refused(BadRequest):
    """A form field we cannot honour, named."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class _PartsInMemory(MultiPartParser):
    """Starlette's multipart parser, holding an uploaded file in memory: its own rolls one over
    1 MiB to a file on disk, and no audio is written to disk unasked. ``BodyLimit`` bounds the body."""

    spool_max_size = sys.maxsize


def transcriptions_route(dataplane: DataPlane) -> Route:
    async def transcriptions(http: HTTPRequest) -> Response:
        try:
            try:
                form = await _PartsInMemory(http.headers, http.stream(), max_files=1, max_fields=32).parse()
            except MultiPartException as error:
                raise _Refused("file", f"the body is not a multipart form OpenAI's clients send: {error}") from None
            fields = {name: value for name, value in form.items() if isinstance(value, str)}
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise _Refused("file", "the form has no 'file': send the audio as the multipart field 'file'")
            response_format = fields.get("response_format", "json")
            if response_format not in FORMATS:
                raise _Refused("response_format", f"response_format must be one of {', '.join(FORMATS)}")
            _refuse_what_we_cannot_honour(fields, form)
            model = await _transcriber(dataplane, fields.get("model", ""))
            outputs = (TEXT_OUTPUT, SEGMENTS_OUTPUT)
            data = await upload.read()
            request = Request(
                inputs=[Tensor(AUDIO_INPUT, [1], "BYTES", None, [data])], outputs=outputs, model_name=model.name
            )
            response = await model.infer(request)
            return _formatted(response_format, {o.name: o.value[0] for o in response.outputs}, data)
        except Exception as error:
            return _error(error, getattr(error, "param", None))

    return Route(TRANSCRIPTIONS_PATH, transcriptions, methods=["POST"])


def _refuse_what_we_cannot_honour(fields: dict[str, str], form: Any) -> None:
    if fields.get("language", "en") != "en":
        raise _Refused("language", f"language '{fields['language']}' is not served: the model hears English ('en')")
    if fields.get("prompt"):
        raise _Refused("prompt", "prompt is not supported: each utterance is decoded alone")
    try:
        temperature = float(fields.get("temperature", 0))
    except ValueError:
        raise _Refused("temperature", f"temperature must be a number, got {fields['temperature']!r}") from None
    if temperature != 0:
        raise _Refused("temperature", "temperature must be 0: decoding is greedy")
    granularities = form.getlist("timestamp_granularities[]")
    if any(granularity != "segment" for granularity in granularities):
        raise _Refused("timestamp_granularities[]", "only segment timestamps are served, not word timestamps")
    if fields.get("stream", "false").lower() != "false":
        raise _Refused("stream", "stream is not supported here: the gRPC and WebSocket streams serve live audio")


async def _transcriber(dataplane: DataPlane, name: str) -> ServedModel:
    """Our model named ``name``, if it is served, ready and answers text."""
    if not name:
        raise _Refused("model", "the form has no 'model': name a served model that transcribes, such as 'transcribe'")
    try:
        served = dataplane.get_model_from_registry(name)
    except Exception:
        raise ModelNotFound(f"model '{name}' is not served") from None
    model = served.model if isinstance(served, KServeModel) else None
    if model is None or not await model.ready():
        raise UpstreamUnavailable(f"model '{name}' is not ready")
    if TEXT_OUTPUT not in {output["name"] for output in model.outputs()}:
        raise _Refused("model", f"model '{name}' does not transcribe speech: it has no output '{TEXT_OUTPUT}'")
    return model


def _formatted(response_format: str, outputs: dict[str, Any], data: bytes) -> Response:
    text = outputs[TEXT_OUTPUT].decode()
    segments = json.loads(outputs[SEGMENTS_OUTPUT])
    if response_format == "json":
        return JSONResponse({"text": text})
    if response_format == "text":
        return PlainTextResponse(text + "\n")
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(subtitles(segments, vtt=response_format == "vtt"))
    verbose = [
        {"id": index, "seek": 0, "start": segment["start_s"], "end": segment["end_s"], "text": segment["text"],
         "tokens": segment["tokens"], "temperature": 0.0, "avg_logprob": segment["avg_logprob"],
         "no_speech_prob": segment["no_speech_prob"]}
        for index, segment in enumerate(segments)
    ]  # fmt: skip
    duration_s = _duration_s(data, segments)
    body = {"task": "transcribe", "language": "english", "duration": duration_s, "text": text, "segments": verbose}
    return JSONResponse(body)


def _duration_s(data: bytes, segments: list[dict[str, Any]]) -> float:
    """The recording's length from its header; the last words' end where the header does not say."""
    import soundfile

    try:
        return float(soundfile.info(io.BytesIO(data)).duration)
    except Exception:  # a container libsndfile reads no header of, which the service decoded otherwise
        return float(segments[-1]["end_s"]) if segments else 0.0


def _error(error: Exception, param: str | None) -> JSONResponse:
    """OpenAI's error body for ``error``, with the status V2 gives it."""
    status = classify(error)
    if not status.expected:  # a fault of ours: logged with its traceback, as V2Errors does
        log.error("error answering %s", TRANSCRIPTIONS_PATH, exc_info=error)
    kind = "invalid_request_error" if status.http_status < 500 else "server_error"
    code = {404: "model_not_found", 401: "invalid_api_key"}.get(status.http_status)
    body = {"error": {"message": status.message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status.http_status)
