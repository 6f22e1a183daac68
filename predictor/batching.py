"""In-process dynamic batching of concurrent requests.

KServe's batcher sidecar understands only v1 JSON requests, so V2 batching is ours: requests
that arrive within ``max_wait_s`` of each other are stacked into one model call of at most
``max_batch_size`` rows, run off the event loop, and each caller gets its own rows back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["DynamicBatcher"]

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]


class DynamicBatcher:
    """Stacks concurrent ``submit`` calls along axis 0 into calls of ``run``.

    ``run`` maps float32 ``[n, ...]`` to ``[n, ...]`` and is called in one worker thread, so
    model calls never overlap and never block the event loop.
    """

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="model")

    async def submit(self, rows: np.ndarray) -> np.ndarray:
        """Run ``rows`` ``[n, ...]`` through the model, batched with whatever else is waiting."""
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve(self._queue))
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(rows, future))
        return await future

    async def _serve(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = len(batch[0].rows)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch_size:
                timeout = deadline - loop.time()
                try:
                    pending = queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(queue.get(), timeout)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if size + len(pending.rows) > self.max_batch_size:
                    batch_next = pending  # keep request rows together: it leads the next batch
                    await self._run_batch(batch)
                    batch, size, deadline = [batch_next], len(batch_next.rows), loop.time() + self.max_wait_s
                    continue
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
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, stacked)
        except Exception as error:  # the model failed: every caller in the batch hears why
            log.exception("model call failed for a batch of %d", len(stacked))
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        start = 0
        for pending in live:
            end = start + len(pending.rows)
            if not pending.future.done():
                pending.future.set_result(outputs[start:end])
            start = end
