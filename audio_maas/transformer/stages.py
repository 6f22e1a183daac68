"""What every transformer pipeline runs on: a request's elements read and featurised on the event
loop or the feature threads, and rows sent to the predictor, stacked with other requests' rows.

Rows of concurrent requests go to the predictor in one call (see
:class:`~audio_maas.serving.batching.DynamicBatcher`): one hop per batch instead of one per
request. A batched call carries no client's headers or request id; responses keep their
client's id.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
from prometheus_client import Histogram

from audio_maas.features.audio import InvalidAudioError
from audio_maas.features.segment import SegmentOptions
from audio_maas.features.stream import StreamFrontEnd
from audio_maas.protocol.contract import PARTIAL_PARAMETER
from audio_maas.protocol.errors import BadRequest
from audio_maas.protocol.messages import Output, Request, Response
from audio_maas.protocol.model_dir import model_fingerprint
from audio_maas.serving.batching import DynamicBatcher
from audio_maas.serving.model import Refusal
from audio_maas.transformer.inputs import STAGE_SECONDS, Decode, RequestReader
from audio_maas.transformer.live import Classify, LiveStream, Piece, SequenceFailed
from audio_maas.transformer.responses import stream_response
from audio_maas.transformer.settings import TransformerSettings

__all__ = ["Predictor", "Stages"]

FORWARDED_BATCH_SIZE = Histogram(
    "audio_maas_forwarded_batch_size",
    "Feature rows per transformer-to-predictor call",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

T = TypeVar("T")


class Predictor(Protocol):
    """The transformer's predictor (``audio_maas.kserve.upstream.PredictorClient`` on the wire)."""

    async def infer(
        self, model_name: str, features: np.ndarray, *, outputs: Sequence[str], fingerprint: str
    ) -> tuple[np.ndarray, ...]:
        """The predictor's ``outputs`` for float32 rows ``[n, ...]``, each with ``n`` rows."""

    async def load(self, model_name: str) -> None: ...

    async def unload(self, model_name: str) -> None: ...


class Stages:
    """One model's request reader, feature threads and calls to ``predictor``."""

    def __init__(self, name: str, settings: TransformerSettings, predictor: Predictor) -> None:
        self.name = name
        self.settings = settings
        self.predictor = predictor
        self.reader = RequestReader(name, settings)
        self.fingerprint = ""
        """The model directory's, once loaded: the predictor checks it against its own."""
        self._pool = ThreadPoolExecutor(settings.feature_threads, thread_name_prefix="features")
        self._batchers: list[DynamicBatcher[Any]] = []

    def load(self) -> None:
        self.fingerprint = model_fingerprint(self.settings.model_dir)

    async def featurise(self, request: Request, featurise: Callable[[np.ndarray, int], T], stage: str) -> list[T]:
        """``featurise(waveform, sample_rate)`` of each element of ``request``, in order, timed as
        ``stage``, its audio's faults a BadRequest naming the element: on the event loop for little
        audio, else on the feature threads (``inline_features_max_bytes`` says why)."""
        decoders, audio_bytes = self.reader.elements(request)

        def job(index: int, decode: Decode) -> T:
            waveform, sample_rate = decode()
            started = time.perf_counter()
            try:
                featurised = featurise(waveform, sample_rate)
            except InvalidAudioError as error:
                raise BadRequest(f"element {index}: {error}") from None
            STAGE_SECONDS.labels(self.name, stage).observe(time.perf_counter() - started)
            return featurised

        jobs = [functools.partial(job, index, decode) for index, decode in enumerate(decoders)]
        if audio_bytes <= self.settings.inline_features_max_bytes:
            return [job() for job in jobs]
        return list(await asyncio.gather(*(self.run(job) for job in jobs)))

    async def live(
        self,
        requests: AsyncIterator[Request],
        *,
        front_end: StreamFrontEnd,
        options: SegmentOptions,
        classify: Classify,
        outputs_of: Callable[[np.ndarray], list[Output]],
    ) -> AsyncIterator[Response | Refusal]:
        """A live stream of ``requests`` (``audio_maas.transformer.live``): a response per sound
        heard (``classify``'s row of it, read by ``outputs_of``) and per sequence ended, and a
        refused piece's refusal, after which the stream goes on."""

        def audio(request: Request) -> tuple[np.ndarray, int]:
            decoders, _ = self.reader.elements(request)
            if len(decoders) != 1:
                raise BadRequest(f"a piece of a live recording is one element, got {len(decoders)}")
            return decoders[0]()

        async def pieces() -> AsyncIterator[Piece]:
            async for request in requests:
                yield Piece(
                    decode=functools.partial(audio, request),
                    sequence_id=request.parameter("sequence_id") or 0,
                    start=bool(request.parameter("sequence_start")),
                    end=bool(request.parameter("sequence_end")),
                    partial_ms=request.parameter(PARTIAL_PARAMETER),
                    request=request,
                )

        live = LiveStream(
            model_name=self.name,
            front_end=front_end,
            settings=self.settings,
            classify=classify,
            run=self.run,
            options=options,
        )
        async for event in live.events(pieces()):
            response = stream_response(event, model_name=self.name, outputs_of=outputs_of)
            yield Refusal(event.error, response) if isinstance(event, SequenceFailed) else response

    async def run(self, job: Callable[[], T]) -> T:
        """``job`` on the feature threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    def batcher(self, outputs: Callable[[], Sequence[str]]) -> DynamicBatcher[tuple[np.ndarray, ...]]:
        """Stacks concurrent rows into one predictor call for the ``outputs()`` of the moment
        (a model read through its interface knows them once loaded)."""

        async def forward(rows: np.ndarray) -> tuple[np.ndarray, ...]:
            return await self.forward(rows, outputs())

        batcher = DynamicBatcher(
            forward,
            max_batch_size=self.settings.max_batch_size,
            on_batch=FORWARDED_BATCH_SIZE.labels(self.name).observe,
        )
        self._batchers.append(batcher)
        return batcher

    async def forward(self, rows: np.ndarray, outputs: Sequence[str]) -> tuple[np.ndarray, ...]:
        """One predictor call for stacked rows ``[n, ...]``: each of ``outputs``, ``n`` rows."""
        return await self.predictor.infer(self.name, rows, outputs=outputs, fingerprint=self.fingerprint)

    def close(self) -> None:
        """No more batches or featurising threads: requests in flight finish, then the threads end."""
        for batcher in self._batchers:
            batcher.close()
        self._pool.shutdown(wait=False)
