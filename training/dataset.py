"""Spoken-digit utterances: the Free Spoken Digit Dataset layout, its splits, and featurisation."""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from transformer.frontend import FeatureSpec, FrontEnd

__all__ = [
    "DIGIT_LABELS",
    "TEST_INDICES",
    "Split",
    "Utterance",
    "featurize",
    "load_fsdd",
    "map_chunks",
    "select_split",
]

T = TypeVar("T")

DIGIT_LABELS = [str(digit) for digit in range(10)]
"""Class names in model output order."""

TEST_INDICES = range(0, 5)
"""FSDD's official test split: recordings with index 0-4 of every digit and speaker."""

Split = Literal["train", "test", "all"]

_FSDD_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<index>[0-9]+)\.wav$")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording held in memory as its encoded file bytes."""

    name: str
    label: str
    speaker: str
    index: int
    data: bytes


def load_fsdd(data_dir: Path) -> list[Utterance]:
    """Read every ``{digit}_{speaker}_{index}.wav`` under ``data_dir`` (or its ``recordings/``).

    Raises ``ValueError`` for a ``.wav`` whose name breaks the layout, rather than skip it.
    """
    root = data_dir / "recordings" if (data_dir / "recordings").is_dir() else data_dir
    if not root.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    utterances = []
    for path in sorted(root.glob("*.wav")):
        match = _FSDD_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path} does not follow the FSDD layout {{digit}}_{{speaker}}_{{index}}.wav")
        utterances.append(
            Utterance(
                name=path.name,
                label=match["digit"],
                speaker=match["speaker"],
                index=int(match["index"]),
                data=path.read_bytes(),
            )
        )
    if not utterances:
        raise FileNotFoundError(f"no FSDD recordings (*.wav) found in {root}")
    return utterances


def select_split(
    utterances: Iterable[Utterance], split: Split, *, exclude_speakers: Sequence[str] = ()
) -> list[Utterance]:
    """Keep the official ``split`` (test: index 0-4; train: the rest), minus ``exclude_speakers``."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    return [
        utterance
        for utterance in utterances
        if utterance.speaker not in exclude_speakers
        and (split == "all" or (utterance.index in TEST_INDICES) == (split == "test"))
    ]


def featurize(utterances: Sequence[Utterance], spec: FeatureSpec, *, workers: int | None = None) -> np.ndarray:
    """Serving features of each utterance: float32 ``[len(utterances), frames, bins]``.

    Runs exactly the transformer's path (``FrontEnd.from_bytes``), spread over processes.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(utterances) < 64:  # spawning workers costs more than it saves
        return _featurize_chunk(list(utterances), spec)
    return np.concatenate(map_chunks(_featurize_chunk, list(utterances), spec, workers=workers))


def _featurize_chunk(utterances: list[Utterance], spec: FeatureSpec) -> np.ndarray:
    front_end = FrontEnd(spec)
    return np.stack([front_end.from_bytes(data=u.data) for u in utterances])


def map_chunks(function: Callable[..., T], items: list[Any], *args: Any, workers: int) -> list[T]:
    """``function(chunk, *args)`` over contiguous chunks of ``items`` in worker processes, in order.

    Workers are spawned, not forked: forking a process that has started TensorFlow can deadlock.
    """
    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(function, chunks, *([arg] * len(chunks) for arg in args)))
