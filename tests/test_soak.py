"""The soak: the real service under 32 concurrent requests, every answer checked.

The short form (20 s) runs in ``make test``; the 5-minute form with ``make test-slow``
(``bench/soak.py --minutes 5`` is the same with figures for the README)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from audio_maas.serving.settings import ServiceSettings
from audio_maas.training.dataset import Utterance
from bench.soak import server_rss_mib, soak
from tests.conftest import BUNDLED_LABELS


@pytest.mark.parametrize("seconds", [20, pytest.param(300, marks=pytest.mark.slow)])
def test_every_answer_under_load_matches_its_request_and_memory_holds(
    service: ServiceSettings, test_split: list[Utterance], offline_probabilities: np.ndarray, seconds: int
) -> None:
    files = [u.data for u in test_split]
    # Under load every answer must be its own request's: what the exported model answers for that
    # file, not the true label (the model misses one of the 300).
    expected = [BUNDLED_LABELS[i] for i in offline_probabilities.argmax(axis=1)]
    url = service.url.removeprefix("http://")
    warm = asyncio.run(soak(url, files, expected, concurrency=32, seconds=3))
    before = {name: server_rss_mib(name, port) for name, port in
              (("transformer", service.http_port), ("predictor", service.predictor_http_port))}  # fmt: skip
    result = asyncio.run(soak(url, files, expected, concurrency=32, seconds=seconds))
    after = {name: server_rss_mib(name, port) for name, port in
             (("transformer", service.http_port), ("predictor", service.predictor_http_port))}  # fmt: skip
    latency = f"p50 {result.p50_s * 1000:.1f} ms, p99 {result.p99_s * 1000:.1f} ms"
    print(f"soak: {result.requests} answers in {seconds} s, {latency}, RSS {before} -> {after} MiB")
    assert warm.errors == [] and result.errors == []
    assert result.requests > 50 * seconds
    for name in before:
        assert after[name] < 1.1 * before[name], f"{name} grew from {before[name]:.0f} to {after[name]:.0f} MiB"
