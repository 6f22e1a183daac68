"""Real recordings of the ten digits by a voice outside FSDD, for evaluation only (never trained on).

FSDD is six adult men, and its held-out espeak-ng voices are synthetic. Debian's
``asterisk-core-sounds-en-wav`` package (installed by ``make system-deps``) holds a woman's
studio recordings of the digits for telephone prompts: Allison Smith, US English, 8 kHz WAV,
CC BY-SA 3.0. It is one speaker and ten clips: a check that a real voice unlike FSDD's is heard,
not an accuracy estimate for all voices.
"""

from __future__ import annotations

from pathlib import Path

from audio_maas.training.dataset import DIGIT_LABELS, Utterance

__all__ = ["ALLISON_CREDIT", "ALLISON_DIGITS", "allison_digits"]

ALLISON_DIGITS = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
"""Where the Debian package puts them: ``0.wav`` ... ``9.wav`` among other prompts."""

ALLISON_CREDIT = (
    "Allison Smith's recordings of the digits from the Asterisk core sounds (Debian's `asterisk-core-sounds-en-wav`), "
    "CC BY-SA 3.0, used for evaluation only"
)


def allison_digits(root: Path = ALLISON_DIGITS) -> list[Utterance]:
    """The ten recordings, labelled; empty when the package is not installed (a model's card then
    says that no real voice outside FSDD was measured)."""
    paths = [root / f"{digit}.wav" for digit in DIGIT_LABELS]
    if not all(path.is_file() for path in paths):
        return []
    return [
        Utterance(name=str(path), label=digit, speaker="allison", index=-1, data=path.read_bytes())
        for digit, path in zip(DIGIT_LABELS, paths, strict=True)
    ]
