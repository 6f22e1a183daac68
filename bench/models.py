"""Several models in one service: memory per model, load time, and whether a busy model stalls another.

    .venv/bin/python bench/models.py [--data-dir DIR] [--requests 1000]

The bundled models: ``digits`` (CNN), ``digits-lstm`` and ``sounds`` (CNN on 5 s clips at 16 kHz),
served from a repository of links to ``models/``.

(a) resident memory of each process serving ``digits`` alone, then all three; (b) the time to
unload and load each of the other two through the repository extension; (c) ``digits-lstm``'s p50
at concurrency 1, alone and while ``digits`` takes 32 requests at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.protocol.contract import AUDIO_INPUT, LABEL_OUTPUT  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from audio_maas.training.dataset import load_fsdd, select_split  # noqa: E402
from bench.soak import server_rss_mib, start_service  # noqa: E402

MODELS = REPO / "models"
ALL = ("digits", "digits-lstm", "sounds")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


async def _drive(url: str, files: list[bytes], plan: dict[str, int], requests_per_worker: int) -> dict[str, float]:
    """Run ``plan`` (model -> concurrency) at once; each model's p50 latency in seconds."""
    import tritonclient.http.aio as http

    client = http.InferenceServerClient(url, conn_limit=sum(plan.values()))
    latencies: dict[str, list[float]] = {model: [] for model in plan}
    busy = asyncio.Event()

    async def worker(model: str, count: int) -> None:
        for i in range(count):
            audio = http.InferInput(AUDIO_INPUT, [1], "BYTES")
            audio.set_data_from_numpy(np.array([files[i % len(files)]], dtype=object), binary_data=True)
            started = time.perf_counter()
            await client.infer(model, [audio], outputs=[http.InferRequestedOutput(LABEL_OUTPUT, binary_data=True)])
            latencies[model].append(time.perf_counter() - started)

    async def background(model: str, concurrency: int) -> None:
        async def loop() -> None:
            while not busy.is_set():
                await worker(model, 1)

        await asyncio.gather(*(loop() for _ in range(concurrency)))

    try:
        (measured, _), *others = sorted(plan.items(), key=lambda item: item[1])
        loads = [asyncio.ensure_future(background(model, concurrency)) for model, concurrency in others]
        await asyncio.sleep(1 if loads else 0)  # the other model is busy before the measurement starts
        await worker(measured, 50)  # warm
        latencies[measured].clear()
        await worker(measured, requests_per_worker)
        busy.set()
        await asyncio.gather(*loads)
    finally:
        await client.close()
    return {model: float(np.median(values)) for model, values in latencies.items() if values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--requests", type=int, default=1000, help="measured requests at concurrency 1")
    args = parser.parse_args()
    files = [u.data for u in select_split(load_fsdd(args.data_dir), "test")]
    settings = ServiceSettings(http_port=18180, predictor_http_port=18185)
    base = f"http://127.0.0.1:{settings.http_port}"

    with tempfile.TemporaryDirectory() as scratch:
        repository = Path(scratch)
        rss: dict[int, dict[str, float]] = {}
        load_s: dict[str, float] = {}
        unload_s: dict[str, float] = {}
        for served in (ALL[:1], ALL):
            for name in served:
                if not (repository / name).exists():
                    (repository / name).symlink_to(MODELS / name, target_is_directory=True)
            process = start_service(settings, "--model-repository", str(repository))
            try:
                url = f"127.0.0.1:{settings.http_port}"
                asyncio.run(_drive(url, files, dict.fromkeys(served, 1), 200))  # warm each
                rss[len(served)] = {
                    "transformer": server_rss_mib("transformer", settings.http_port),
                    "predictor": server_rss_mib("predictor", settings.predictor_http_port),
                }
                if len(served) == len(ALL):
                    for name in ALL[1:]:
                        started = time.perf_counter()
                        requests.post(f"{base}/v2/repository/models/{name}/unload", timeout=120).raise_for_status()
                        unload_s[name] = time.perf_counter() - started
                        started = time.perf_counter()
                        requests.post(f"{base}/v2/repository/models/{name}/load", timeout=120).raise_for_status()
                        load_s[name] = time.perf_counter() - started
                    alone = asyncio.run(_drive(url, files, {"digits-lstm": 1}, args.requests))["digits-lstm"]
                    beside = asyncio.run(_drive(url, files, {"digits-lstm": 1, "digits": 32}, args.requests))
            finally:
                _stop(process)

    print("(a) resident memory (MiB), after 200 requests to each model")
    for count, figures in rss.items():
        print(
            f"    {', '.join(ALL[:count]):30s} transformer {figures['transformer']:6.0f}   "
            f"predictor {figures['predictor']:6.0f}"
        )
    for server in ("transformer", "predictor"):
        print(f"    per additional model, {server}: {(rss[3][server] - rss[1][server]) / 2:+.0f} MiB")
    for name in ALL[1:]:
        timing = f"load (both servers, via the transformer) {load_s[name]:.2f} s, unload {unload_s[name]:.2f} s"
        print(f"(b) {name}: {timing}")
    busy = beside["digits"] * 1000
    print(
        f"(c) digits-lstm at concurrency 1: p50 {alone * 1000:.1f} ms alone, "
        f"{beside['digits-lstm'] * 1000:.1f} ms while digits takes 32 at a time (its p50 {busy:.1f} ms)"
    )


if __name__ == "__main__":
    main()
