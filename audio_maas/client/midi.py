"""``audio-maas predict --midi``: the notes model's notes as a MIDI file (pretty_midi)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_midi"]


def write_midi(notes: list[dict[str, Any]], path: Path) -> None:
    """``notes`` (the ``notes`` output's ``start_s``, ``end_s``, ``midi``, ``confidence``) as a
    one-track MIDI file (piano), each note's velocity its confidence."""
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    for note in notes:
        velocity = max(1, min(127, round(127 * note["confidence"])))
        piano.notes.append(pretty_midi.Note(velocity, note["midi"], note["start_s"], note["end_s"]))
    midi.instruments.append(piano)
    midi.write(str(path))
