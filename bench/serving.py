"""Serving benchmark: (a) the in-process ceiling, (b) the service end to end, and their ratio.

    .venv/bin/python bench/serving.py [--data-dir DIR] [--requests 3000]

(a) decode + features + model in one process, no network, for several model batch sizes;
(b) ``audio-maas serve`` on loopback called by tritonclient (binary BYTES, one file per
request) at concurrency 1, 8 and 32, cycling through the FSDD test split. Prints clips/s,
p50 and p99 latency, and (b)/(a). The client shares the machine's cores with the service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cli.local import LocalService  # noqa: E402
from serving.contract import AUDIO_INPUT, LABEL_OUTPUT  # noqa: E402
from serving.settings import ServiceSettings  # noqa: E402
from training.dataset import load_fsdd, select_split  # noqa: E402
from transformer.client import is_ready  # noqa: E402

MODEL_NAME = ServiceSettings().model_name

MODEL = REPO / "models" / "digits"


def in_process(files: list[bytes], batch_size: int) -> tuple[float, float]:
    """clips/s and median seconds per batch for decode + features + model, single process.

    Runs in a child process, so that the load client below stays a lean process without TensorFlow.
    """
    from predictor.savedmodel import load_serving_function
    from transformer.frontend import FeatureSpec, FrontEnd

    front_end = FrontEnd(FeatureSpec.read(MODEL))
    serve = load_serving_function(MODEL)
    serve(features=np.stack([front_end.from_bytes(data=data) for data in files[:batch_size]]))  # warm up both
    times = []
    started = time.perf_counter()
    for i in range(0, len(files) - batch_size + 1, batch_size):
        t = time.perf_counter()
        features = np.stack([front_end.from_bytes(data=data) for data in files[i : i + batch_size]])
        serve(features=features)["probabilities"].numpy()
        times.append(time.perf_counter() - t)
    done = len(times) * batch_size
    return done / (time.perf_counter() - started), float(np.median(times))


def end_to_end(url: str, files: list[bytes], concurrency: int) -> tuple[float, float, float]:
    """clips/s, p50 and p99 latency (s) for one-file requests, ``concurrency`` in flight at once."""
    return asyncio.run(_end_to_end(url, files, concurrency))


async def _end_to_end(url: str, files: list[bytes], concurrency: int) -> tuple[float, float, float]:
    import tritonclient.http.aio as http  # asyncio client: tritonclient's gevent client is not thread-safe

    client = http.InferenceServerClient(url, conn_limit=concurrency)
    queue = list(range(len(files)))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            i = queue.pop()
            audio = http.InferInput(AUDIO_INPUT, [1], "BYTES")
            audio.set_data_from_numpy(np.array([files[i]], dtype=object), binary_data=True)
            t = time.perf_counter()
            await client.infer(MODEL_NAME, [audio], outputs=[http.InferRequestedOutput(LABEL_OUTPUT, binary_data=True)])
            latencies.append(time.perf_counter() - t)

    try:
        queue[:] = list(range(min(len(files), max(200, concurrency))))  # warm connections, caches, batch shapes
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        latencies.clear()
        queue[:] = list(range(len(files)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return len(files) / elapsed, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--json", type=Path, help="also write the figures here (the capacity planner reads them)")
    args = parser.parse_args()
    test_split = [u.data for u in select_split(load_fsdd(args.data_dir), "test")]
    files = (test_split * (1 + args.requests // len(test_split)))[: args.requests]

    print(f"(a) in-process ceiling, {len(test_split)} clips, {os.cpu_count()} CPU cores")
    ceiling, single_latency = 0.0, 0.0
    for batch_size in (1, 8, 32):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            rate, median = child.submit(in_process, test_split, batch_size).result()
        print(f"    batch {batch_size:>2}: {rate:7.1f} clips/s   median {median * 1000:7.1f} ms per batch")
        ceiling = max(ceiling, rate)
        if batch_size == 1:
            single_latency = median

    service = ServiceSettings(http_port=18080, predictor_http_port=18085)
    port = service.http_port
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--http-port", str(port), "--predictor-port",
         str(service.predictor_http_port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for ready in LocalService(models={MODEL_NAME: MODEL}, settings=service).ready_urls().values():
            while not is_ready(ready):
                if serve.poll() is not None or time.monotonic() - started > 120:
                    raise SystemExit("the service did not start")
                time.sleep(0.2)
        ready_s = time.monotonic() - started
        print(f"(b) service end to end (ready in {ready_s:.1f} s), one file per request")
        levels = []
        for concurrency in (1, 8, 32):
            rate, p50, p99 = end_to_end(f"127.0.0.1:{port}", files, concurrency)
            levels.append({"concurrency": concurrency, "clips_per_s": rate, "p50_s": p50, "p99_s": p99})
            print(
                f"    concurrency {concurrency:>2}: {rate:7.1f} clips/s   p50 {p50 * 1000:7.1f} ms   "
                f"p99 {p99 * 1000:7.1f} ms   throughput / ceiling = {rate / ceiling:.2f}"
                + (f"   p50 / in-process single clip = {p50 / single_latency:.2f}" if concurrency == 1 else "")
            )
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    if args.json:
        figures = {
            "machine": f"{os.cpu_count()} CPU cores, one transformer and one predictor process",
            "ready_s": ready_s,
            "in_process_ceiling_clips_per_s": ceiling,
            "service": levels,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
