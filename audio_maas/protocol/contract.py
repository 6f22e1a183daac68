"""What export, both servers and every client agree on: the tensors and parameters by name.

A model's serving signature ``SIGNATURE_KEY`` maps ``INPUT_NAME`` (float32 features ``[batch,
frames, bins]``) to ``OUTPUT_NAME`` (float32 class probabilities ``[batch, classes]``); its
directory is ``audio_maas.protocol.model_dir``'s. The transformer's own tensors (audio in; label,
class id and probabilities out) and parameters are named here too, so that clients need not
import the server. This module imports nothing: every container, the client and training use it.
"""

from __future__ import annotations

__all__ = [
    "AUDIO_INPUT",
    "CLASS_ID_OUTPUT",
    "CONFIDENCE_OUTPUT",
    "END_S_OUTPUT",
    "FINAL_RESPONSE_PARAMETER",
    "FREQUENCY_OUTPUT",
    "INPUT_NAME",
    "LABEL_OUTPUT",
    "MODEL_FINGERPRINT_PARAMETER",
    "NOTES_OUTPUT",
    "OUTPUT_NAME",
    "PARTIAL_PARAMETER",
    "PARTIAL_RESPONSE_PARAMETER",
    "SALIENCY_FRAME_S_OUTPUT",
    "SALIENCY_OUTPUT",
    "SAMPLE_RATE_PARAMETER",
    "SEGMENTS_OUTPUT",
    "SEQUENCE_OUTPUT",
    "SIGNATURE_KEY",
    "START_S_OUTPUT",
    "TAG_TIMELINE_OUTPUT",
    "TEXT_OUTPUT",
    "TIME_OUTPUT",
    "TOP_TAGS_OUTPUT",
    "WAVEFORM_INPUT",
]

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "features"
"""The predictor's input: FP32 ``[N, frames, bins]``."""
OUTPUT_NAME = "probabilities"
"""The predictor's output, and the transformer's: FP32 ``[N, classes]``."""

AUDIO_INPUT = "audio"
"""The transformer's input, BYTES ``[N]``: each element one encoded audio file."""
WAVEFORM_INPUT = "waveform"
"""The transformer's other input, FP32 ``[N, samples]`` at the request parameter ``SAMPLE_RATE_PARAMETER``."""
SAMPLE_RATE_PARAMETER = "sample_rate"
LABEL_OUTPUT = "label"
"""BYTES ``[N]``: the most probable class's name."""
CLASS_ID_OUTPUT = "class_id"
"""INT64 ``[N]``: the most probable class's index into ``LABELS_FILE``."""
SALIENCY_OUTPUT = "saliency"
"""FP32 ``[N, frames, bins]``, only when asked for by name, from the predictor and the transformer:
each feature's evidence for the predicted class (``audio_maas.savedmodel.explain``), on the model's own grid."""
SALIENCY_FRAME_S_OUTPUT = "saliency_frame_s"
"""FP32 ``[N, frames]``, only when asked for: the time of each frame's centre, in seconds of the
audio the client sent (frames in padding get times outside it)."""
SEQUENCE_OUTPUT = "sequence"
"""BYTES ``[N]``, with the request parameter ``segment``: each element's segment labels in time
order, separated by single spaces."""
SEGMENTS_OUTPUT = "segments"
"""BYTES ``[N]``, with ``segment``: each element's segments as a JSON array of ``{"start_s",
"end_s", "label", "probability"}`` in time order, not overlapping."""
NOTES_OUTPUT = "notes"
"""BYTES ``[N]``, from a note transcriber (``interface.json``'s reader ``notes``): each element's
notes as a JSON array of ``{"start_s", "end_s", "midi", "name", "confidence"}`` in time order."""
FREQUENCY_OUTPUT = "frequency_hz"
"""FP32 ``[N, frames]``, from a pitch tracker (reader ``pitch``): the pitch of each frame."""
CONFIDENCE_OUTPUT = "confidence"
"""FP32 ``[N, frames]``, beside ``FREQUENCY_OUTPUT``: how sure the model is that the frame has that pitch."""
TIME_OUTPUT = "time_s"
"""FP32 ``[N, frames]``: where each frame of a frame-wise output lies, in seconds of the element
(for a tagger, where each window starts). Elements of different lengths are padded with NaN."""
TOP_TAGS_OUTPUT = "top_tags"
"""BYTES ``[N]``, from a tagger (output kind ``tags``): each element's best tags over its whole
length, as a JSON array of ``{"tag", "score"}``, best first."""
TAG_TIMELINE_OUTPUT = "tag_timeline"
"""BYTES ``[N]``, beside ``TOP_TAGS_OUTPUT``: each window's best tags, as a JSON array of
``{"start_s", "end_s", "tags": [{"tag", "score"}]}`` in time order."""
TEXT_OUTPUT = "text"
"""BYTES ``[N]``, from a speech recogniser (output kind ``transcript``): each element's words, UTF-8;
empty where nobody speaks. With it, by name, ``SEGMENTS_OUTPUT``: each utterance with words as a
JSON array of ``{"start_s", "end_s", "text", "tokens", "avg_logprob", "no_speech_prob"}`` in time order."""
START_S_OUTPUT = "start_s"
"""FP32 ``[1]``, in each response of a live stream (gRPC ``ModelStreamInfer``): where the sound
begins, in seconds since the recording's first piece."""
END_S_OUTPUT = "end_s"
"""FP32 ``[1]``, beside ``START_S_OUTPUT``: where the sound ends."""
FINAL_RESPONSE_PARAMETER = "triton_final_response"
"""Response parameter, true in the response (without outputs) that ends a live recording, as Triton flags it."""
PARTIAL_PARAMETER = "partial_ms"
"""Request parameter of a live stream: also answer the sound going on, as heard so far, every this
many ms of the recording; the sound's own answer follows when it ends."""
PARTIAL_RESPONSE_PARAMETER = "partial"
"""Response parameter, true in such a response of a sound still going on."""
MODEL_FINGERPRINT_PARAMETER = "audio_maas_model"
"""Request parameter of every transformer-to-predictor call: the :func:`model_fingerprint` of the
transformer's model directory, which the predictor compares with its own. Other clients leave it out."""
