"""Hostile and odd audio through the real service, as binary BYTES elements.

The corpus is built here: broken headers, lying sizes, impossible fields, nothing at all, an hour
of silence compressed into a few hundred kilobytes, NaN samples, random bytes. Each must get a 4xx
naming the problem while the transformer keeps serving and its memory stays bounded. Odd but
valid audio (8 channels, 384 kHz, 32-bit float, near-silence) must be answered normally.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import requests

from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import load_fsdd, select_split
from bench.soak import server_rss_mib
from tests.conftest import assert_distributions, encode, tone
from tests.test_service import _infer_files


def _wav_header(*, channels: int, sample_rate: int, bits: int, data_bytes: int, format_tag: int = 1) -> bytes:
    """A canonical 44-byte RIFF/WAVE header whose fields say whatever we ask them to."""
    block_align = channels * bits // 8
    return (
        b"RIFF" + struct.pack("<I", min(36 + data_bytes, 0xFFFFFFFF)) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, format_tag, channels, sample_rate, sample_rate * block_align,
                                block_align, bits)
        + b"data" + struct.pack("<I", data_bytes)
    )  # fmt: skip


def _hostile_corpus() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, the 400's error after its "element 0: ", or a phrase of it)."""
    good = encode(tone(frequency_hz=300, seconds=0.5, sample_rate=8000), sample_rate=8000, format="WAV")
    rng = np.random.default_rng(7)
    silence_hour = np.zeros(3600 * 8000, np.float32)
    nan_wav = encode(np.full(4000, np.nan, np.float32), sample_rate=8000, format="WAV", subtype="FLOAT")
    return {
        "zero length": (b"", "audio is empty"),
        "truncated header": (good[:20], "could not decode audio"),
        "wrong magic": (b"RIFX" + good[4:], "could not decode audio"),
        "random bytes": (rng.bytes(5000), "could not decode audio"),
        "zero channels": (
            _wav_header(channels=0, sample_rate=8000, bits=16, data_bytes=8) + bytes(8),
            "could not decode audio (52 bytes): Channel count is zero.",
        ),
        "zero sample rate": (
            _wav_header(channels=1, sample_rate=0, bits=16, data_bytes=8) + bytes(8),
            "could not decode audio (52 bytes): the header leaves its sample rate, channel count or format unset",
        ),
        # libsndfile reads 3-bit samples as 8-bit ones: 8 of them, far too short to classify.
        "impossible bit depth": (
            _wav_header(channels=1, sample_rate=8000, bits=3, data_bytes=8) + bytes(8),
            "audio is 1.0 ms long; at least 32 ms is needed",
        ),
        "huge declared size": (
            _wav_header(channels=1, sample_rate=8000, bits=16, data_bytes=0xFFFFFFF0) + bytes(16),
            "ms long; at least 32 ms is needed",
        ),
        "an hour of silence (compressed)": (
            encode(silence_hour, sample_rate=8000, format="FLAC"),
            "longer than the maximum of 30 s",
        ),
        "NaN samples": (nan_wav, "NaN or infinite"),
    }


def _post_binary(url: str, files: list[bytes]) -> requests.Response:
    """A V2 request carrying ``files`` as one binary BYTES input, as tritonclient sends it."""
    raw = b"".join(len(f).to_bytes(4, "little") + f for f in files)
    audio = {"name": "audio", "shape": [len(files)], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [audio]}).encode()
    return requests.post(
        f"{url}/v2/models/digits/infer",
        data=header + raw,
        headers={"content-type": "application/octet-stream", "inference-header-content-length": str(len(header))},
        timeout=60,
    )


@pytest.fixture(scope="module")
def a_real_recording(fsdd_dir: Path) -> tuple[bytes, str]:
    utterance = select_split(load_fsdd(fsdd_dir), "test")[0]
    return utterance.data, utterance.label


def test_hostile_files_get_400_the_server_keeps_serving_and_memory_stays_bounded(
    service: ServiceSettings, a_real_recording: tuple[bytes, str]
) -> None:
    recording, label = a_real_recording
    _infer_files(service.url, [recording])  # warm, so that the baseline holds the working set
    before = server_rss_mib("transformer", service.http_port)
    for name, (data, phrase) in _hostile_corpus().items():
        for _ in range(3):  # repeated, so that a leak would show
            response = _post_binary(service.url, [data])
            assert response.status_code == 400, f"{name}: {response.status_code} {response.text}"
            error = response.json()["error"]
            assert error.startswith("element 0: ") and phrase in error, f"{name}: {error}"
        assert _infer_files(service.url, [recording])[0] == [label], f"not serving after {name}"
    growth = server_rss_mib("transformer", service.http_port) - before
    print(f"transformer RSS {before:.0f} MiB before the corpus, growth {growth:+.1f} MiB after 30 hostile files")
    assert growth < 64


def test_odd_but_valid_audio_is_answered(service: ServiceSettings) -> None:
    rng = np.random.default_rng(3)
    two_seconds = 2 * 384_000
    eight_channels = (np.sin(2 * np.pi * 440 * np.arange(two_seconds) / 384_000)[:, None] * np.ones(8)).astype(
        np.float32
    )
    near_silence = (1e-4 * rng.standard_normal(16_000)).astype(np.float32)  # -80 dBFS of noise
    files = {
        "8 channels, 384 kHz, 32-bit float": encode(
            0.3 * eight_channels, sample_rate=384_000, format="WAV", subtype="FLOAT"
        ),
        "2 s of near-silence": encode(near_silence, sample_rate=8000, format="WAV", subtype="PCM_16"),
        "mono 48 kHz FLAC": encode(
            tone(frequency_hz=200, seconds=1, sample_rate=48_000), sample_rate=48_000, format="FLAC"
        ),
    }
    for name, data in files.items():
        response = _post_binary(service.url, [data])
        assert response.status_code == 200, f"{name}: {response.text}"
        outputs = {output["name"]: output for output in response.json()["outputs"]}
        assert outputs["label"]["shape"] == [1]
        assert_distributions(np.array(outputs["probabilities"]["data"], np.float32))
