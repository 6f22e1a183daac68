"""Serving features of many recordings at once, spread over worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

from audio_maas.features.frontend import FrontEnd, one_blas_thread
from audio_maas.features.spec import FeatureSpec
from audio_maas.training.dataset import LONGEST_RECORDING_S, Utterance

__all__ = ["featurise", "map_chunks"]

T = TypeVar("T")


def featurise(utterances: Sequence[Utterance], spec: FeatureSpec, *, workers: int | None = None) -> np.ndarray:
    """Serving features of each utterance: float32 ``[len(utterances), frames, bins]``.

    Runs exactly the transformer's path (``FrontEnd.from_bytes``), spread over processes.
    """
    workers = workers or os.cpu_count() or 1
    if not utterances:
        return np.empty((0, *spec.feature_shape), np.float32)
    if workers == 1 or len(utterances) < 64:  # spawning workers costs more than it saves
        return _featurise_chunk(list(utterances), spec)
    return np.concatenate(map_chunks(_featurise_chunk, list(utterances), spec, workers=workers))


def _featurise_chunk(utterances: list[Utterance], spec: FeatureSpec) -> np.ndarray:
    front_end = FrontEnd(spec)
    return np.stack([front_end.from_bytes(data=u.data, max_duration_s=LONGEST_RECORDING_S) for u in utterances])


def map_chunks(function: Callable[..., T], items: list[Any], *args: Any, workers: int) -> list[T]:
    """``function(chunk, *args)`` over contiguous chunks of ``items`` in worker processes, in order.

    Workers are spawned, not forked: forking a process that has started TensorFlow can deadlock.
    Each runs one BLAS thread, as the transformer does (``one_blas_thread``).
    """
    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=one_blas_thread) as pool:
        return list(pool.map(function, chunks, *([arg] * len(chunks) for arg in args)))
