"""Subtitles of a transcript: SubRip and WebVTT of a speech recogniser's ``segments``
(``audio_maas.protocol.contract.SEGMENTS_OUTPUT`` beside ``TEXT_OUTPUT``), for the OpenAI-style
endpoint and ``audio-maas predict --srt``."""

from __future__ import annotations

from typing import Any

__all__ = ["subtitles"]


def subtitles(segments: list[dict[str, Any]], *, vtt: bool) -> str:
    """SubRip (numbered cues, ``00:00:01,500``) or WebVTT (a header, ``00:00:01.500``) of the segments."""

    def stamp(seconds: float) -> str:
        millis = round(seconds * 1000)
        hours, millis = divmod(millis, 3_600_000)
        minutes, millis = divmod(millis, 60_000)
        secs, millis = divmod(millis, 1000)
        return f"{hours:02d}:{minutes:02d}:{secs:02d}{'.' if vtt else ','}{millis:03d}"

    cues = [
        ("" if vtt else f"{number}\n") + f"{stamp(s['start_s'])} --> {stamp(s['end_s'])}\n{s['text']}\n"
        for number, s in enumerate(segments, start=1)
    ]
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)
