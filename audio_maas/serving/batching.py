"""In-process dynamic batching of concurrent requests.

KServe's batcher sidecar understands only v1 JSON requests, so V2 batching is ours. Like
Triton's dynamic batcher, a request that finds the model idle runs at once; requests that
arrive while a batch is running wait and go together in the next call, up to
``max_batch_size`` rows. ``max_wait_s`` (default 0) additionally holds a batch open to
collect more rows at low load, trading latency for larger batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["DynamicBatcher"]

log = logging.getLogger(__name__)

Answer = TypeVar("Answer", np.ndarray, tuple[np.ndarray, ...])
"""What ``run`` returns for ``[n, ...]`` rows: ``[n, ...]``, or several such arrays (say a response
and its explanation), each split among the callers the same way."""


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[Any]


class DynamicBatcher(Generic[Answer]):
    """Stacks concurrent ``submit`` calls along axis 0 into calls of ``run``.

    ``run`` maps ``[n, ...]`` to ``[n, ...]`` (or a tuple of such); one call runs at a time, so
    the next batch gathers while the current one runs.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], Awaitable[Answer]],
        *,
        max_batch_size: int,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self._run: Callable[[np.ndarray], Awaitable[Answer]] = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._worker: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Let the worker end once what is queued has run (the model is unloaded): nothing then
        holds the model. Later ``submit`` calls start a new worker."""
        if self._queue is not None:
            self._queue.put_nowait(None)
            self._queue = None

    async def submit(self, rows: np.ndarray) -> Answer:
        """Run ``rows`` ``[n, ...]``, batched with whatever else is waiting; returns their ``n`` results.

        More rows than ``max_batch_size`` (a request of many elements, a long recording's segments)
        go as several calls of at most that many, so no call outgrows what the model was sized for.
        """
        if len(rows) > self.max_batch_size:
            size = self.max_batch_size
            parts = await asyncio.gather(*(self.submit(rows[i : i + size]) for i in range(0, len(rows), size)))
            if isinstance(parts[0], tuple):
                return tuple(np.concatenate(arrays) for arrays in zip(*parts, strict=True))
            return np.concatenate(parts)
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve(self._queue))
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, future))
        return await future

    async def _serve(self, queue: asyncio.Queue[_Pending | None]) -> None:
        loop = asyncio.get_running_loop()
        leader: _Pending | None = None
        closing = False
        while not closing:
            first = leader or await queue.get()
            if first is None:
                return
            batch = [first]
            leader = None
            size = len(batch[0].rows)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch_size:
                timeout = deadline - loop.time()
                try:
                    pending = queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(queue.get(), timeout)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if pending is None:  # closed: run what was gathered, then end
                    closing = True
                    break
                if size + len(pending.rows) > self.max_batch_size:
                    leader = pending  # keep a request's rows together: it leads the next batch
                    break
                batch.append(pending)
                size += len(pending.rows)
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [pending for pending in batch if not pending.future.cancelled()]
        if not live:
            return
        stacked = np.concatenate([pending.rows for pending in live]) if len(live) > 1 else live[0].rows
        if self._on_batch is not None:
            self._on_batch(len(stacked))
        try:
            outputs = await self._run(stacked)
        except Exception as error:  # every caller in the batch hears why
            log.warning("a batch of %d rows failed: %s", len(stacked), error)
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in live:
            end = start + len(pending.rows)
            if not pending.future.done():
                pending.future.set_result(
                    tuple(array[start:end] for array in outputs) if isinstance(outputs, tuple) else outputs[start:end]
                )
            start = end
