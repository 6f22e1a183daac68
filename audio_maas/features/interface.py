"""The interface of a model we did not train (``interface.json`` beside its SavedModel): how
audio becomes its input windows, and how its outputs are put back on one time axis.

Input, ``kind``:

- ``waveform``: mono audio at ``sample_rate``, ``pad_start`` and ``pad_end`` zeros around it, cut
  into windows of ``window`` samples every ``hop``, each ``normalise``d (``none``, or
  ``standardise``: zero mean, unit deviation), shaped ``shape``;
- ``log_mel``: the log-mel recipe of musicnn (librosa's mel power spectrogram at ``sample_rate``,
  ``n_fft``, ``hop_length``, ``n_mels``, then ``log10(10000 x + 1)``), cut into patches of
  ``window`` frames every ``hop``, the last padded with silence so that no audio is left out
  (musicnn's own extractor drops what is left after the last whole patch). musicnn
  rounds the power to float16 first and computes in float16, where 10000 x overflows to infinity
  above x = 6.55 (a loud tone); here it stays float32, within 5e-4 of musicnn's where it is finite.

Output, ``kind``: ``frames`` (each window answers ``frames_per_window`` frames of each output in
``names``; ``trim_frames`` at each end of a window overlap the next and are dropped; a frame
lasts ``frame_s``, the first starting ``first_frame_s`` into its window) or ``tags`` (one row of
independent scores per window, one per label) or ``classes`` (one row of class probabilities
per window, one per label: the element's are their mean) or ``transcript`` (a speech recogniser's
``tokens``, ``no_speech`` and ``avg_logprob`` per window, its labels the tokens' text; its
windows are utterances cut at pauses, ``audio_maas.features.transcript``, each padded with
silence to ``window`` samples). Frames are read by the output's ``reader``:
``notes`` (from outputs ``note`` and ``onset``, keys from ``lowest_midi``) or ``pitch`` (from
``activation``, bins ``bin_cents`` apart from ``first_bin_cents``).

What the transformer answers for such a model is :meth:`ModelInterface.outputs`: what the reader
makes of the outputs, and, when asked for by name, the model's own outputs on the recording's
time axis.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import librosa
import numpy as np

from audio_maas.features.audio import mono_at
from audio_maas.features.readers import notes, pitch_track, top_tags
from audio_maas.features.transcript import Vocabulary, read_segments, utterances
from audio_maas.protocol.contract import (
    CLASS_ID_OUTPUT,
    CONFIDENCE_OUTPUT,
    FREQUENCY_OUTPUT,
    LABEL_OUTPUT,
    NOTES_OUTPUT,
    OUTPUT_NAME,
    SEGMENTS_OUTPUT,
    TAG_TIMELINE_OUTPUT,
    TEXT_OUTPUT,
    TIME_OUTPUT,
    TOP_TAGS_OUTPUT,
)
from audio_maas.protocol.model_dir import INTERFACE_FILE, read_labels

__all__ = ["ModelInterface", "Output", "Windows"]

TOP_TAGS = 5
"""Tags given for a whole recording."""
TOP_TAGS_PER_WINDOW = 3
"""Tags given for each window of the timeline."""


@dataclass(frozen=True)
class Windows:
    """One recording cut for the model: its input rows, and where each row starts."""

    rows: np.ndarray
    """float32 ``[n, *shape]``."""
    start_s: np.ndarray
    """float64 ``[n]``: each window's start, in seconds of the recording (negative in padding)."""
    duration_s: float
    """The recording's length."""
    end_s: np.ndarray | None = None
    """float64 ``[n]``: where each window's audio ends, for windows of utterances."""


@dataclass(frozen=True)
class Output:
    """One output the transformer answers for an interface model."""

    name: str
    datatype: Literal["BYTES", "FP32", "INT64"]
    shape: list[int]
    """Its shape for ``N`` elements, ``-1`` where it varies (frames, and bins the interface does not state)."""
    by_default: bool
    """Answered when a request names no outputs; the others only when named."""


@dataclass(frozen=True)
class ModelInterface:
    """A model directory's ``interface.json`` (its ``input`` and ``output`` as the module says)
    and its labels."""

    input: dict[str, Any]
    output: dict[str, Any]
    labels: list[str]
    vocabulary: Vocabulary | None = None
    """A speech recogniser's labels read as its tokens (output kind ``transcript``)."""

    @classmethod
    def read(cls, model_dir: Path) -> ModelInterface:
        fields = json.loads((model_dir / INTERFACE_FILE).read_text())
        labels = read_labels(model_dir)
        vocabulary = Vocabulary(labels) if fields["output"]["kind"] == "transcript" else None
        interface = cls(input=fields["input"], output=fields["output"], labels=labels, vocabulary=vocabulary)
        kinds = (interface.input["kind"], interface.output["kind"], interface.output.get("reader"))
        if kinds[0] not in ("waveform", "log_mel") or kinds[1:] not in (
            ("frames", "notes"),
            ("frames", "pitch"),
            ("tags", None),
            ("classes", None),
            ("transcript", None),
        ):
            raise ValueError(
                f"{model_dir / INTERFACE_FILE}: unknown kind of input {kinds[0]!r} or output {kinds[1:]!r}"
            )
        if kinds[1] == "classes" and OUTPUT_NAME in interface.output["names"]:
            raise ValueError(
                f"{model_dir / INTERFACE_FILE}: '{OUTPUT_NAME}' is what the transformer answers for a whole "
                "element; name the model's output otherwise"
            )
        return interface

    def outputs(self) -> list[Output]:
        """What the transformer answers: the reader's outputs by default; the model's own (on
        the time axis, ``[N, frames, bins]``) and their times when named."""
        out = self.output
        if out["kind"] == "transcript":
            return [
                Output(TEXT_OUTPUT, "BYTES", [-1], by_default=True),
                Output(SEGMENTS_OUTPUT, "BYTES", [-1], by_default=False),
                *(  # tokens of each utterance; or one number per utterance
                    Output(name, "FP32", [-1, -1, -1] if name == "tokens" else [-1, -1], by_default=False)
                    for name in out["names"]
                ),
                Output(TIME_OUTPUT, "FP32", [-1, -1], by_default=False),
            ]
        if out["kind"] == "classes":
            (scores,) = out["names"]
            return [
                Output(LABEL_OUTPUT, "BYTES", [-1], by_default=True),
                Output(CLASS_ID_OUTPUT, "INT64", [-1], by_default=True),
                Output(OUTPUT_NAME, "FP32", [-1, len(self.labels)], by_default=True),
                Output(scores, "FP32", [-1, -1, len(self.labels)], by_default=False),
                Output(TIME_OUTPUT, "FP32", [-1, -1], by_default=False),
            ]
        if out["kind"] == "tags":
            (scores,) = out["names"]
            return [
                Output(TOP_TAGS_OUTPUT, "BYTES", [-1], by_default=True),
                Output(TAG_TIMELINE_OUTPUT, "BYTES", [-1], by_default=True),
                Output(scores, "FP32", [-1, -1, len(self.labels)], by_default=False),
                Output(TIME_OUTPUT, "FP32", [-1, -1], by_default=False),
            ]
        own = [Output(name, "FP32", [-1, -1, -1], by_default=False) for name in out["names"]]
        if out["reader"] == "notes":
            return [
                Output(NOTES_OUTPUT, "BYTES", [-1], by_default=True),
                *own,
                Output(TIME_OUTPUT, "FP32", [-1, -1], by_default=False),
            ]
        return [
            Output(FREQUENCY_OUTPUT, "FP32", [-1, -1], by_default=True),
            Output(CONFIDENCE_OUTPUT, "FP32", [-1, -1], by_default=True),
            Output(TIME_OUTPUT, "FP32", [-1, -1], by_default=True),
            *own,
        ]

    def windows(self, *, waveform: np.ndarray, sample_rate: int) -> Windows:
        """Any waveform (float ``[samples]`` or ``[samples, channels]`` at ``sample_rate``) cut
        into the model's input rows."""
        spec = self.input
        rate = spec["sample_rate"]
        if spec["kind"] == "log_mel":
            mono = mono_at(waveform=waveform, sample_rate=sample_rate, rate=rate, shortest=spec["n_fft"])
            power = librosa.feature.melspectrogram(
                y=mono, sr=rate, n_fft=spec["n_fft"], hop_length=spec["hop_length"], n_mels=spec["n_mels"]
            ).T
            frames = np.log10(10000 * power + 1).astype(np.float32)
            patches = 1 + max(0, -(-(len(frames) - spec["window"]) // spec["hop"]))
            silence = (patches - 1) * spec["hop"] + spec["window"] - len(frames)  # log10(10000 * 0 + 1) = 0
            frames = np.pad(frames, ((0, silence), (0, 0)))
            rows = np.lib.stride_tricks.sliding_window_view(frames, spec["window"], axis=0)[:: spec["hop"]]
            rows = np.ascontiguousarray(rows.transpose(0, 2, 1))  # [n, window frames, mels]
            starts = np.arange(len(rows)) * spec["hop"] * spec["hop_length"] / rate
            return Windows(rows, starts, mono.size / rate)
        mono = mono_at(waveform=waveform, sample_rate=sample_rate, rate=rate, shortest=1)
        if self.output["kind"] == "transcript":
            cut = utterances(mono, sample_rate=rate, window=spec["window"])
            rows = np.zeros([len(cut), spec["window"]], np.float32)
            for row, utterance in zip(rows, cut, strict=True):
                row[: utterance.end - utterance.start] = mono[utterance.start : utterance.end]
            starts = np.array([utterance.start for utterance in cut], np.float64) / rate
            ends = np.array([utterance.end for utterance in cut], np.float64) / rate
            return Windows(rows.reshape(len(cut), *spec["shape"]), starts, mono.size / rate, end_s=ends)
        padded = np.pad(mono, (spec["pad_start"], spec["pad_end"]))
        rows = np.lib.stride_tricks.sliding_window_view(padded, spec["window"])[:: spec["hop"]].astype(np.float32)
        if spec["normalise"] == "standardise":
            rows = rows - rows.mean(axis=1, keepdims=True)
            rows /= np.maximum(rows.std(axis=1, keepdims=True), 1e-8)
        starts = (np.arange(len(rows)) * spec["hop"] - spec["pad_start"]) / rate
        return Windows(np.ascontiguousarray(rows).reshape(len(rows), *spec["shape"]), starts, mono.size / rate)

    def frames(self, windows: Windows, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One ``frames`` output's values ``[n, frames_per_window, bins]`` (or ``[n, bins]`` with
        one frame a window) for ``windows``, on one time axis: ``(values [frames, bins], time_s
        [frames])``, the frames within the recording and each one's time as the model places it
        (``first_frame_s`` says where in its window)."""
        out = self.output
        trim = out["trim_frames"]
        values = values.reshape(len(values), out["frames_per_window"], -1)  # CREPE's one frame has no axis
        kept = values[:, trim : values.shape[1] - trim]
        offsets = out["first_frame_s"] + (trim + np.arange(kept.shape[1])) * out["frame_s"]
        times = (windows.start_s[:, None] + offsets[None, :]).reshape(-1)
        flat = kept.reshape(-1, kept.shape[2])
        inside = (times >= -1e-9) & (times < windows.duration_s)
        return flat[inside], times[inside]

    def outputs_of(self, windows: Windows, values: dict[str, np.ndarray], wanted: Collection[str]) -> dict[str, Any]:
        """One recording's outputs by name (those of :meth:`outputs`; the reader runs only when
        one of its outputs is ``wanted``), from the model's ``values`` for its ``windows``: arrays,
        or lists sent as JSON."""
        out = self.output
        if out["kind"] == "transcript":
            return self._transcript(windows, values, wanted)
        if out["kind"] in ("classes", "tags"):
            ((name, scores),) = values.items()
            outputs: dict[str, Any] = {name: scores, TIME_OUTPUT: windows.start_s}
            if out["kind"] == "classes":
                outputs[OUTPUT_NAME] = scores.mean(axis=0)  # each window's vote, equally
                outputs[CLASS_ID_OUTPUT] = int(outputs[OUTPUT_NAME].argmax())
                outputs[LABEL_OUTPUT] = self.labels[outputs[CLASS_ID_OUTPUT]]
                return outputs
            if TOP_TAGS_OUTPUT in wanted:
                outputs[TOP_TAGS_OUTPUT] = _tagged(top_tags(scores.mean(axis=0), self.labels, TOP_TAGS))
            if TAG_TIMELINE_OUTPUT in wanted:
                frames = self.input["window"] * self.input.get("hop_length", 1)  # log-mel frames or samples
                length_s = frames / self.input["sample_rate"]
                outputs[TAG_TIMELINE_OUTPUT] = [
                    {"start_s": round(start, 3), "end_s": round(min(start + length_s, windows.duration_s), 3),
                     "tags": _tagged(top_tags(row, self.labels, TOP_TAGS_PER_WINDOW))}
                    for start, row in zip(windows.start_s.tolist(), scores, strict=True)
                ]  # fmt: skip
            return outputs
        outputs = {}
        for name in out["names"]:
            outputs[name], outputs[TIME_OUTPUT] = self.frames(windows, values[name])
        time_s = outputs[TIME_OUTPUT]
        if out["reader"] == "notes" and NOTES_OUTPUT in wanted:
            outputs[NOTES_OUTPUT] = notes(
                outputs["note"], outputs["onset"], time_s, frame_s=out["frame_s"], lowest_midi=out["lowest_midi"]
            )
        if out["reader"] == "pitch" and {FREQUENCY_OUTPUT, CONFIDENCE_OUTPUT} & set(wanted):
            outputs[FREQUENCY_OUTPUT], outputs[CONFIDENCE_OUTPUT] = pitch_track(
                outputs["activation"], first_bin_cents=out["first_bin_cents"], bin_cents=out["bin_cents"]
            )
        return outputs

    def _transcript(self, windows: Windows, values: dict[str, np.ndarray], wanted: Collection[str]) -> dict[str, Any]:
        if self.vocabulary is None or windows.end_s is None:
            raise ValueError("a transcript needs the model's vocabulary and windows of utterances")
        segments = read_segments(self.vocabulary, values, start_s=windows.start_s, end_s=windows.end_s)
        outputs: dict[str, Any] = {name: values[name] for name in self.output["names"] if name in wanted}
        outputs[TEXT_OUTPUT] = " ".join(segment["text"] for segment in segments)
        outputs[SEGMENTS_OUTPUT] = segments
        outputs[TIME_OUTPUT] = windows.start_s
        return outputs


def _tagged(best: list[tuple[str, float]]) -> list[dict[str, Any]]:
    return [{"tag": tag, "score": score} for tag, score in best]
