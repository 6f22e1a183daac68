"""Musical note names, as the ``notes`` output names its notes and the pretrained ``notes`` model its keys."""

from __future__ import annotations

__all__ = ["note_name"]


def note_name(midi: int) -> str:
    """MIDI note number -> scientific pitch name (69 -> A4), as ``NOTES_OUTPUT`` names notes."""
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[midi % 12]}{midi // 12 - 1}"
