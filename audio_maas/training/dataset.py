"""Labelled recordings from a folder: its layout detected, and its split.

Two layouts (``load_dataset``):

- FSDD: ``{digit}_{speaker}_{index}.wav`` files (in the folder or its ``recordings/``); the
  official test split is index 0-4, and we draw validation curves on index 5-9;
- one folder per class: ``DIR/<class>/**/*.{wav,flac,ogg,mp3}``, the label being the folder's
  name without a leading number and separator (``001 - Dog bark`` -> ``Dog bark``, ``2_no`` ->
  ``no``). File names give folds as ESC-50 does (``<fold>-<source>-<take>``: the highest fold
  is the test set) or a speaker as Speech Commands does (``<speaker>_nohash_<n>``); otherwise
  each file is its own source. Without folds the split is seeded and keeps each source on one
  side only (20% of sources test, 10% validation).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile

from audio_maas.features.spec import FeatureSpec

__all__ = [
    "AUDIO_SUFFIXES",
    "DIGIT_LABELS",
    "TEST_INDICES",
    "UNKNOWN_LABEL",
    "Dataset",
    "Split",
    "Utterance",
    "class_label",
    "held_out_group",
    "is_digits",
    "load_dataset",
    "load_fsdd",
    "select_split",
    "spec_for",
    "with_unknown",
]

log = logging.getLogger(__name__)


LONGEST_RECORDING_S = 3600.0
"""Longest recording training reads (s): a bound against a corrupt header, not a policy; what the
service accepts is the transformer's ``max_duration_s``."""

DIGIT_LABELS = [str(digit) for digit in range(10)]
"""Class names in model output order."""

UNKNOWN_LABEL = "unknown"
"""The class of whatever a model was not trained to name: other words, noise, other sounds."""

TEST_INDICES = range(0, 5)
"""FSDD's official test split: recordings with index 0-4 of every digit and speaker."""
VALIDATION_INDICES = range(5, 10)
"""FSDD indices held out of training to draw the validation curves; never used to pick a model."""

VALIDATED_PER_CLASS = 20
"""A folder's training side needs this many recordings a class for a validation subset."""

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})

Split = Literal["train", "test", "all"]
Subset = Literal["train", "validation", "test"]

_FSDD_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<index>[0-9]+)\.wav$")
_ESC_NAME = re.compile(r"^(?P<fold>[0-9]+)-(?P<source>[^-]+)-[A-Za-z0-9]+$")
_SPEAKER_NAME = re.compile(r"^(?P<speaker>.+)_nohash_[0-9]+$")
_LABEL_PREFIX = re.compile(r"^[0-9]+\s*[-_.]\s*")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording held in memory as its encoded file bytes."""

    name: str
    label: str
    speaker: str
    """Who or what was recorded: recordings of one speaker or source stay on one side of a split."""
    index: int
    """FSDD's take number; -1 in other layouts."""
    data: bytes
    subset: Subset = "train"


@dataclass(frozen=True)
class Dataset:
    """A folder's labelled recordings, split."""

    root: Path
    layout: Literal["fsdd", "folders"]
    labels: list[str]
    """Class names in model output order."""
    utterances: list[Utterance]
    split_rule: str
    """How test and validation were chosen, in words, for the model card."""
    skipped: list[str]
    """Files left out because they could not be read (``on_bad_file="skip"``), each with why."""
    unknown_from: tuple[str, ...] = ()
    """Folders that recordings of the class ``unknown`` were drawn from (``with_unknown``)."""
    unknown_per_class: int = 0
    """Recordings drawn from each class of each of those folders, at most."""


def is_digits(labels: Sequence[str]) -> bool:
    """Whether ``labels`` are the ten digits, with or without ``unknown``: digit-only steps apply."""
    return sorted(set(labels) - {UNKNOWN_LABEL}) == DIGIT_LABELS


def class_label(folder: str) -> str:
    """A class folder's name as its label: ``001 - Dog bark`` -> ``Dog bark``, ``2_no`` -> ``no``."""
    return _LABEL_PREFIX.sub("", folder).strip() or folder


def load_dataset(data_dir: Path, *, on_bad_file: Literal["stop", "skip"] = "stop", seed: int = 0) -> Dataset:
    """Every labelled recording under ``data_dir`` in either layout of the module docstring.

    Raises ``FileNotFoundError`` or ``ValueError`` naming the path: no such folder, a folder that
    matches no layout, an empty class, a single class, or (``on_bad_file="stop"``) a file that
    does not decode; with ``"skip"`` such files are named in ``Dataset.skipped`` and left out.
    """
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    classes = sorted(path for path in data_dir.iterdir() if path.is_dir() and path.name != "recordings")
    if not classes:
        utterances = load_fsdd(data_dir)
        return Dataset(
            root=data_dir, layout="fsdd", labels=DIGIT_LABELS, utterances=utterances, skipped=[],
            split_rule="FSDD's official split: index 0-4 test, 5-9 validation, the rest training",
        )  # fmt: skip
    utterances, skipped = [], []
    for folder in classes:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"class folder {folder} holds no audio ({', '.join(sorted(AUDIO_SUFFIXES))})")
        for path in files:
            data = path.read_bytes()
            problem = _unreadable(data)
            if problem is not None:
                if on_bad_file == "stop":
                    raise ValueError(f"{path} cannot be read as audio: {problem} (--on-bad-file skip leaves it out)")
                log.warning("skipping %s: %s", path, problem)
                skipped.append(f"{path}: {problem}")
                continue
            utterances.append(_folder_utterance(path, label=class_label(folder.name), data=data))
    labels = sorted({u.label for u in utterances})
    if len(labels) < 2:
        raise ValueError(f"{data_dir} holds one class ({', '.join(labels)}); a classifier needs two or more")
    utterances, rule = _split(utterances, seed=seed)
    return Dataset(
        root=data_dir, layout="folders", labels=labels, utterances=utterances, split_rule=rule, skipped=skipped
    )


def with_unknown(
    dataset: Dataset,
    sources: Sequence[Path],
    *,
    per_class: int,
    on_bad_file: Literal["stop", "skip"] = "stop",
    seed: int = 0,
) -> Dataset:
    """``dataset`` plus a class ``unknown`` of recordings that are none of its classes.

    Each of ``sources`` is a labelled folder in either layout; up to ``per_class`` recordings of
    each of its classes are drawn (seeded) and relabelled ``unknown``, so that a few large
    classes do not make up the whole of it. They keep the split of their own folder (its folds
    or speakers), so no speaker or source recording is on two sides.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    rng = np.random.default_rng(seed)
    extra, skipped = [], list(dataset.skipped)
    for root in sources:
        other = load_dataset(root, on_bad_file=on_bad_file, seed=seed)
        shared = sorted(set(other.labels) & set(dataset.labels))
        if shared:
            raise ValueError(f"{root} holds classes the model names ({', '.join(shared)}); they cannot be unknown")
        skipped += other.skipped
        for label in other.labels:
            members = [u for u in other.utterances if u.label == label]
            drawn = sorted(rng.choice(len(members), size=min(per_class, len(members)), replace=False))
            extra += [
                replace(members[i], label=UNKNOWN_LABEL, speaker=f"{root.name}/{members[i].speaker}") for i in drawn
            ]
    return replace(
        dataset,
        labels=[*dataset.labels, UNKNOWN_LABEL],
        utterances=dataset.utterances + extra,
        skipped=skipped,
        unknown_from=tuple(str(root) for root in sources),
        unknown_per_class=per_class,
    )


def _unreadable(data: bytes) -> str | None:
    try:
        soundfile.info(io.BytesIO(data))
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        return str(getattr(error, "error_string", None) or error)
    return None


def _folder_utterance(path: Path, *, label: str, data: bytes) -> Utterance:
    fold = _ESC_NAME.match(path.stem)
    speaker = _SPEAKER_NAME.match(path.stem)
    source = f"fold{fold['fold']}:{fold['source']}" if fold else speaker["speaker"] if speaker else path.stem
    return Utterance(name=str(path), label=label, speaker=source, index=-1, data=data)


def _fold(u: Utterance) -> str | None:
    """``fold3`` for a recording whose file name gives its fold (ESC-50's layout), else None."""
    return u.speaker.split(":")[0] if u.speaker.startswith("fold") else None


def held_out_group(u: Utterance) -> str:
    """What cross-validation holds out together: the recording's fold where file names give
    folds, else its speaker or source."""
    return _fold(u) or u.speaker


def _split(utterances: list[Utterance], *, seed: int) -> tuple[list[Utterance], str]:
    """Test and validation sides, keeping each source on one side (module docstring). Validation
    only draws the training curves: where the training side holds fewer than
    ``VALIDATED_PER_CLASS`` recordings a class, every one of them trains instead."""
    folds = {_fold(u) for u in utterances}
    if None not in folds and len(folds) > 1:
        test_fold = max(folds, key=lambda fold: int(str(fold).removeprefix("fold")))

        def test(u: Utterance) -> bool:
            return _fold(u) == test_fold

        rule = f"folds from the file names: {str(test_fold).removeprefix('fold')} (the last) is the test set"
        validation_share = 0.1
    else:

        def test(u: Utterance) -> bool:
            return _fraction(u.speaker, seed) < 0.2

        rule = f"seeded (seed {seed}) by source: 20% of sources test, 10% validation, none on two sides"
        validation_share = 0.3
    classes = len({u.label for u in utterances})
    if sum(not test(u) for u in utterances) < VALIDATED_PER_CLASS * classes:
        validation_share = 0.0
        rule = rule.replace(", 10% validation", "") + (
            f"; no validation subset: under {VALIDATED_PER_CLASS} recordings a class train"
        )

    def subset(u: Utterance) -> Subset:
        if test(u):
            return "test"
        return "validation" if _fraction(u.speaker, seed) < validation_share else "train"

    return [replace(u, subset=subset(u)) for u in utterances], rule


def _fraction(source: str, seed: int) -> float:
    """A stable pseudo-random number in [0, 1) for a source: the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}:{source}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def spec_for(dataset: Dataset, *, sample_rate: int | None = None, clip_s: float | None = None) -> FeatureSpec:
    """The front end for ``dataset``: FSDD's defaults, or chosen from the recordings (flags win).

    A folder's sample rate is 16 kHz when most recordings have at least that, else 8 kHz; its
    clip length covers 90% of them, in quarter seconds from 0.5 to 5 s. Windows keep FSDD's
    milliseconds (32 ms, 10 ms hop) until a clip would pass 125 frames; longer clips get a longer
    hop instead, so a model's input, and with it training and serving cost, stays near FSDD's
    size. 64 mel bands at 16 kHz (40 at 8 kHz); bands and band-pass reach up to Nyquist.
    """
    if dataset.layout == "fsdd" and sample_rate is None and clip_s is None:
        return FeatureSpec()
    infos = [soundfile.info(io.BytesIO(u.data)) for u in dataset.utterances]
    if sample_rate is None:
        sample_rate = 16000 if np.median([info.samplerate for info in infos]) >= 16000 else 8000
    if clip_s is None:
        longest = float(np.percentile([info.duration for info in infos], 90))
        clip_s = min(5.0, max(0.5, np.ceil(longest * 4) / 4))
    nyquist = sample_rate / 2
    scale = sample_rate / 8000  # FSDD's spec is for 8 kHz
    hop_length = max(round(80 * scale), math.ceil(clip_s * sample_rate / 125))
    return FeatureSpec(
        sample_rate=sample_rate,
        clip_s=float(clip_s),
        n_fft=max(round(256 * scale), 1 << math.ceil(math.log2(1.5 * hop_length))),
        hop_length=hop_length,
        n_mels=64 if sample_rate >= 16000 else 40,
        fmax=nyquist,
        band_pass_hz=(60.0, 0.95 * nyquist),
    )


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
        index = int(match["index"])
        subset: Subset = "test" if index in TEST_INDICES else "validation" if index in VALIDATION_INDICES else "train"
        utterances.append(
            Utterance(
                name=path.name,
                label=match["digit"],
                speaker=match["speaker"],
                index=index,
                data=path.read_bytes(),
                subset=subset,
            )
        )
    if not utterances:
        raise FileNotFoundError(f"no FSDD recordings (*.wav) found in {root}")
    return utterances


def select_split(
    utterances: Iterable[Utterance], split: Split, *, exclude_speakers: Sequence[str] = ()
) -> list[Utterance]:
    """Keep ``split`` (test: the test subset; train: training and validation), minus ``exclude_speakers``."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be train, test or all, got {split!r}")
    return [
        utterance
        for utterance in utterances
        if utterance.speaker not in exclude_speakers
        and (split == "all" or (utterance.subset == "test") == (split == "test"))
    ]
