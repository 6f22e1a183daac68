"""The soak's short form: the real service under 32 concurrent requests for 20 s.

The long form is ``bench/soak.py --minutes 5`` (measured figures in README)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.soak import server_rss_mib, soak
from training.dataset import load_fsdd, select_split
from transformer.local import LocalService


def test_every_answer_under_load_matches_its_request_and_memory_holds(service: LocalService, fsdd_dir: Path) -> None:
    test_split = select_split(load_fsdd(fsdd_dir), "test")
    files, expected = [u.data for u in test_split], [u.label for u in test_split]  # the bundled model scores 300/300
    url = service.url.removeprefix("http://")
    warm = asyncio.run(soak(url, files, expected, concurrency=32, seconds=3))
    before = {name: server_rss_mib(name, port) for name, port in
              (("transformer", service.http_port), ("predictor", service.predictor_http_port))}  # fmt: skip
    result = asyncio.run(soak(url, files, expected, concurrency=32, seconds=20))
    after = {name: server_rss_mib(name, port) for name, port in
             (("transformer", service.http_port), ("predictor", service.predictor_http_port))}  # fmt: skip
    latency = f"p50 {result.p50_s * 1000:.1f} ms, p99 {result.p99_s * 1000:.1f} ms"
    print(f"soak: {result.requests} answers in 20 s, {latency}, RSS {before} -> {after} MiB")
    assert warm.errors == [] and result.errors == []
    assert result.requests > 1000
    for name in before:
        assert after[name] < 1.1 * before[name], f"{name} grew from {before[name]:.0f} to {after[name]:.0f} MiB"
