"""Serving benchmark: the limit two cores allow, the in-process ceiling, ours, and a KServe peer.

    .venv/bin/python bench/serving.py [--data-dir DIR] [--requests 3000] [--runs 5] [--json FILE] [--plot FILE]

(a) per-stage costs, one clip at a time on one core: decode, features, and the model at batch 1
and 32. The limit is what the machine's cores could do if they ran nothing else: cores /
(decode + features + model per clip at batch 32). One clip in process is decode + features +
model at batch 1.
(b) the in-process ceiling: decode + features + model in one process per core, all at once, for
several batch sizes; their clips/s summed.
(c) ``audio-maas serve`` on loopback, driven by ``hey`` (a compiled load generator: a Python
client on the same two cores would be the bottleneck), one FSDD file per request, at concurrency
1, 8 and 32, with the binary tensor extension and with JSON (base64); CPU seconds each server
spent per clip, and resident memory.
(d) a second transformer process beside the first, sharing its predictor, binary requests at 16
in flight at each: how more transformers per predictor use the cores.
(e) the same JSON requests to the plain KServe sample pattern (``bench/peer.py``, a baseline).
(f) KServe's floor: the same JSON requests at concurrency 32 to a KServe model that answers at
once (``bench/peer.py floor``): what one KServe REST process can answer at most, here.
Prints clips/s, p50 and p99, and the ratios the targets are judged by, in every run; with
``--runs N``, each target's value in every run and in how many it held.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.cli.local import LocalService  # noqa: E402
from audio_maas.client.check import wait_ready as client_wait_ready  # noqa: E402
from audio_maas.protocol.codec import encode_bytes_tensor  # noqa: E402
from audio_maas.protocol.contract import AUDIO_INPUT, LABEL_OUTPUT  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from audio_maas.training.dataset import load_fsdd, select_split  # noqa: E402
from bench.soak import rss_mib, server_pid, start_service  # noqa: E402

MODEL_NAME = ServiceSettings().model_name

MODEL = REPO / "models" / "digits"
CONCURRENCY = (1, 8, 32)


def stage_costs(files: list[bytes]) -> dict[str, float]:
    """Seconds per clip of each stage on one core (TensorFlow's pools as the predictor sets them).

    Runs in a child process, so that this process stays lean while it drives the service.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from audio_maas.features.audio import decode
    from audio_maas.features.frontend import FrontEnd, one_blas_thread
    from audio_maas.features.spec import FeatureSpec
    from audio_maas.savedmodel.load import load_serving_function

    one_blas_thread()  # as the transformer runs
    front_end = FrontEnd(FeatureSpec.read(MODEL))
    serve = load_serving_function(MODEL)
    for data in files[:20]:  # first calls compile librosa's JIT kernels: warm, as a served process is
        front_end.from_bytes(data=data, max_duration_s=60)
    started = time.perf_counter()
    decoded = [decode(data=data, max_duration_s=60) for data in files]
    decode_s = (time.perf_counter() - started) / len(files)
    started = time.perf_counter()
    features = np.stack([front_end.from_waveform(waveform=w, sample_rate=r) for w, r in decoded])
    features_s = (time.perf_counter() - started) / len(files)
    costs = {"decode": decode_s, "features": features_s}
    for batch in (1, 32):
        serve(features=features[:batch])  # trace and allocate first
        calls = [features[i : i + batch] for i in range(0, len(features) - batch + 1, batch)]
        times = []
        for rows in calls:
            t = time.perf_counter()
            serve(features=rows)["probabilities"].numpy()
            times.append(time.perf_counter() - t)
        costs[f"model_batch_{batch}"] = float(np.median(times)) / batch
    return costs


def in_process(files: list[bytes], batch_size: int) -> tuple[float, float]:
    """clips/s and median seconds per batch for decode + features + model, in this process on
    one core's worth of threads, as the servers run them."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from audio_maas.features.frontend import FrontEnd, one_blas_thread
    from audio_maas.features.spec import FeatureSpec
    from audio_maas.savedmodel.load import load_serving_function

    one_blas_thread()
    front_end = FrontEnd(FeatureSpec.read(MODEL))
    serve = load_serving_function(MODEL)
    serve(
        features=np.stack([front_end.from_bytes(data=data, max_duration_s=60) for data in files[:batch_size]])
    )  # warm up both
    times = []
    started = time.perf_counter()
    for i in range(0, len(files) - batch_size + 1, batch_size):
        t = time.perf_counter()
        features = np.stack([front_end.from_bytes(data=data, max_duration_s=60) for data in files[i : i + batch_size]])
        serve(features=features)["probabilities"].numpy()
        times.append(time.perf_counter() - t)
    done = len(times) * batch_size
    return done / (time.perf_counter() - started), float(np.median(times))


def _in_child(function, *args):  # type: ignore[no-untyped-def]
    return _in_children(1, function, *args)[0]


def _in_children(count, function, *args):  # type: ignore[no-untyped-def]
    """``function(*args)`` in ``count`` fresh processes at once; their answers."""
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as children:
        return [future.result() for future in [children.submit(function, *args) for _ in range(count)]]


def binary_body(data: bytes, path: Path, **request: Any) -> tuple[Path, list[str]]:
    """One audio file as a binary V2 request body at ``path`` (``request``: more JSON fields), and
    the arguments ``hey`` needs to send it."""
    raw = encode_bytes_tensor([data])
    tensor = {"name": AUDIO_INPUT, "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}
    header = json.dumps({"inputs": [tensor], **request}).encode()
    path.write_bytes(header + raw)
    return path, ["-T", "application/octet-stream", "-H", f"Inference-Header-Content-Length: {len(header)}"]


def request_bodies(data: bytes, scratch: Path) -> dict[str, tuple[Path, list[str]]]:
    """One FSDD file as a V2 request, binary and JSON: body file and headers for ``hey``."""
    outputs = [{"name": LABEL_OUTPUT}]
    tensor = {"name": AUDIO_INPUT, "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(data).decode()]}
    (scratch / "json").write_text(json.dumps({"inputs": [tensor], "outputs": outputs}))
    return {
        "binary": binary_body(data, scratch / "binary", outputs=outputs),
        "json": (scratch / "json", ["-T", "application/json"]),
    }


def hey(url: str, body: Path, headers: list[str], *, requests: int, concurrency: int) -> dict[str, float]:
    """clips/s, p50 and p99 (s) of ``requests`` POSTs of ``body``; every answer must be a 200.
    ``requests`` must be a multiple of ``concurrency``: hey gives each worker the same number."""
    command = ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-D", str(body), *headers, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    answered = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", output))
    if answered != requests:
        raise SystemExit(f"hey: {answered} of {requests} requests answered 200:\n{output}")

    def figure(pattern: str) -> float:
        match = re.search(pattern, output)
        if match is None:
            raise SystemExit(f"hey printed no {pattern!r}:\n{output}")
        return float(match.group(1))

    return {
        "clips_per_s": figure(r"Requests/sec:\s+([0-9.]+)"),
        "p50_s": figure(r"50% in ([0-9.]+) secs"),
        "p99_s": figure(r"99% in ([0-9.]+) secs"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(
    url: str, bodies: dict[str, tuple[Path, list[str]]], pids: dict[str, int], *, requests: int, label: str
) -> dict[str, list[dict[str, float]]]:
    """hey at concurrency 1, 8 and 32 for each body; clips/s, p50, p99 and CPU ms per clip of each process."""
    levels: dict[str, list[dict[str, float]]] = {}
    for encoding, (body, headers) in bodies.items():
        hey(url, body, headers, requests=320, concurrency=32)  # warm connections, caches, batch shapes
        levels[encoding] = []
        for concurrency in CONCURRENCY:
            count = requests - requests % concurrency
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            figures = hey(url, body, headers, requests=count, concurrency=concurrency)
            for name, pid in pids.items():
                figures[f"{name}_cpu_ms_per_clip"] = (cpu_seconds(pid) - before[name]) * 1000 / count
            levels[encoding].append({"concurrency": concurrency, **figures})
            print(
                f"    {label} {encoding:>6} c={concurrency:>2}: {figures['clips_per_s']:7.1f} clips/s   "
                f"p50 {figures['p50_s'] * 1000:6.1f} ms   p99 {figures['p99_s'] * 1000:6.1f} ms   "
                f"CPU per clip: transformer {figures['transformer_cpu_ms_per_clip']:.2f} ms, "
                f"predictor {figures['predictor_cpu_ms_per_clip']:.2f} ms"
            )
    return levels


def start_peer(transformer_port: int, predictor_port: int) -> dict[str, subprocess.Popen[bytes]]:
    """The KServe sample pattern (``bench/peer.py``), both processes ready."""
    common = ["--model_name", MODEL_NAME, "--model_dir", str(MODEL)]
    processes = {
        "predictor": subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "peer.py"), "predictor", *common,
             "--http_port", str(predictor_port), "--grpc_port", str(predictor_port + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
        "transformer": subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "peer.py"), "transformer", *common,
             "--predictor_host", f"127.0.0.1:{predictor_port}", "--predictor_protocol", "v2",
             "--http_port", str(transformer_port), "--grpc_port", str(transformer_port + 1)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    }  # fmt: skip
    wait_ready(
        [predictor_port, transformer_port], list(processes.values()), "the KServe sample pattern (bench/peer.py)"
    )
    return processes


def wait_ready(ports: list[int], processes: list[subprocess.Popen[bytes]], what: str, timeout_s: float = 120) -> None:
    """Until the model answers ready on each of ``ports``; SystemExit naming ``what`` if one of
    ``processes`` ends first or ``timeout_s`` passes."""
    urls = [f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready" for port in ports]
    if client_wait_ready(urls, timeout_s=timeout_s, stop=lambda: any(p.poll() is not None for p in processes)):
        raise SystemExit(f"{what} did not start")


def two_transformers(
    service: ServiceSettings, path: str, body: tuple[Path, list[str]], *, requests: int
) -> dict[str, float]:
    """A second transformer beside ``service``'s, calling the same predictor, and ``hey`` at 16
    requests in flight at each at once: how far more transformer processes per predictor use the
    cores, since one transformer process holds one (the GIL). clips/s of both together, CPU ms per
    clip of the transformers and the predictor."""
    port = service.http_port + 100
    beside = service.model_copy(update={"http_port": port})  # the same predictor
    command = LocalService(models={MODEL_NAME: MODEL}, settings=beside).commands()["transformer"]
    second = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready([port], [second], "the second transformer", timeout_s=60)
        urls = [service.url + path, f"http://127.0.0.1:{port}{path}"]
        hey(urls[1], *body, requests=320, concurrency=32)  # warm it as the first one was
        pids = [server_pid("transformer", service.http_port), second.pid]
        predictor = server_pid("predictor", service.predictor_http_port)
        count = (requests - requests % 32) // 2
        before = [cpu_seconds(pid) for pid in [*pids, predictor]]
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda url: hey(url, *body, requests=count, concurrency=16), urls))
        spent = [cpu_seconds(pid) - start for pid, start in zip([*pids, predictor], before, strict=True)]
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    return {
        "clips_per_s": sum(figures["clips_per_s"] for figures in both),
        "p50_s": max(figures["p50_s"] for figures in both),
        "transformers_cpu_ms_per_clip": sum(spent[:2]) * 1000 / (2 * count),
        "predictor_cpu_ms_per_clip": spent[2] * 1000 / (2 * count),
    }


def start_peer_floor(port: int) -> subprocess.Popen[bytes]:
    """``bench/peer.py floor``, ready: KServe's REST server with a model that answers at once."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "peer.py"), "floor", "--model_name", MODEL_NAME,
         "--http_port", str(port), "--grpc_port", str(port + 1)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_ready([port], [process], "bench/peer.py floor", timeout_s=60)
    return process


def one_run(test_split: list[bytes], *, requests: int, cores: int) -> dict[str, Any]:
    """Every figure of one run: stage costs and the limit, the ceiling, ours, and the peer."""
    costs = _in_child(stage_costs, test_split)
    per_clip = costs["decode"] + costs["features"] + costs["model_batch_32"]
    limit = cores / per_clip
    one_clip = costs["decode"] + costs["features"] + costs["model_batch_1"]
    ms = {stage: seconds * 1000 for stage, seconds in costs.items()}
    print(
        f"(a) per clip on one core: decode {ms['decode']:.2f} ms, features {ms['features']:.2f} ms, "
        f"model {ms['model_batch_1']:.2f} ms at batch 1, {ms['model_batch_32']:.2f} ms at batch 32"
    )
    print(
        f"    limit: {cores} cores / {per_clip * 1000:.2f} ms = {limit:.0f} clips/s; "
        f"one clip in process {one_clip * 1000:.2f} ms"
    )
    print(f"(b) in-process ceiling: {cores} processes at once, one per core, each {len(test_split)} clips")
    ceiling = 0.0
    for batch_size in (1, 8, 32):
        answers = _in_children(cores, in_process, test_split, batch_size)
        rate = sum(clips_per_s for clips_per_s, _ in answers)
        median = float(np.median([median for _, median in answers]))
        print(f"    batch {batch_size:>2}: {rate:7.1f} clips/s   median {median * 1000:7.1f} ms per batch")
        ceiling = max(ceiling, rate)

    service = ServiceSettings(http_port=18080, predictor_http_port=18085)
    started = time.monotonic()
    serve = start_service(service, "--model", str(MODEL), timeout_s=120)
    ready_s = time.monotonic() - started
    url = f"/v2/models/{MODEL_NAME}/infer"
    with tempfile.TemporaryDirectory() as scratch:
        bodies = request_bodies(test_split[0], Path(scratch))
        try:
            pids = {
                "transformer": server_pid("transformer", service.http_port),
                "predictor": server_pid("predictor", service.predictor_http_port),
            }
            print(f"(c) audio-maas serve (ready in {ready_s:.1f} s), one file per request, driven by hey")
            ours = drive(service.url + url, bodies, pids, requests=requests, label="ours")
            rss = {name: rss_mib(pid) for name, pid in pids.items()}
            two = two_transformers(service, url, bodies["binary"], requests=requests)
            print(
                f"(d) two transformers sharing the predictor, binary, 16 requests in flight at each: "
                f"{two['clips_per_s']:.1f} clips/s (one: {ours['binary'][-1]['clips_per_s']:.1f} at 32), "
                f"CPU per clip: transformers {two['transformers_cpu_ms_per_clip']:.2f} ms, "
                f"predictor {two['predictor_cpu_ms_per_clip']:.2f} ms"
            )
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=30)
        peer = start_peer(18090, 18095)
        try:
            peer_pids = {name: process.pid for name, process in peer.items()}
            print("(e) the KServe sample pattern (bench/peer.py: JSON tensors, one model call per request)")
            theirs = drive("http://127.0.0.1:18090" + url, {"json": bodies["json"]}, peer_pids,
                           requests=requests, label="peer")["json"]  # fmt: skip
            peer_rss = {name: rss_mib(pid) for name, pid in peer_pids.items()}
        finally:
            for process in peer.values():
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        floor = start_peer_floor(18097)
        try:
            count = requests - requests % 32
            before = cpu_seconds(floor.pid)
            floor_c32 = hey("http://127.0.0.1:18097" + url, *bodies["json"], requests=count, concurrency=32)
            floor_c32["cpu_ms_per_request"] = (cpu_seconds(floor.pid) - before) * 1000 / count
        finally:
            floor.send_signal(signal.SIGTERM)
            floor.wait(timeout=30)
    print(
        f"(f) KServe's floor (bench/peer.py floor: answers at once, reads nothing), the same JSON body, c=32: "
        f"{floor_c32['clips_per_s']:.1f} requests/s, {floor_c32['cpu_ms_per_request']:.2f} ms CPU per request"
    )
    print(f"    resident memory: ours transformer {rss['transformer']:.0f} MiB, predictor {rss['predictor']:.0f} MiB; "
          f"peer {peer_rss['transformer']:.0f} and {peer_rss['predictor']:.0f} MiB")  # fmt: skip
    ratios = {
        "binary_c32_over_limit": ours["binary"][-1]["clips_per_s"] / limit,
        "json_c32_over_peer": ours["json"][-1]["clips_per_s"] / theirs[-1]["clips_per_s"],
        "binary_c1_p50_over_one_clip": ours["binary"][0]["p50_s"] / one_clip,
        "binary_c32_over_ceiling": ours["binary"][-1]["clips_per_s"] / ceiling,
    }
    print("ratios: " + "; ".join(f"{name} {value:.2f}" for name, value in ratios.items()))
    return {
        "stage_seconds_per_clip": costs,
        "limit_clips_per_s": limit,
        "one_clip_in_process_s": one_clip,
        "in_process_ceiling_clips_per_s": ceiling,
        "ready_s": ready_s,
        "service": ours["binary"],
        "service_json": ours["json"],
        "peer_json": theirs,
        "rss_mib": rss,
        "peer_rss_mib": peer_rss,
        "kserve_floor_json_c32": floor_c32,
        "two_transformers_binary_c32": two,
        "ratios": ratios,
    }


TARGETS = {
    "binary_c32_over_limit": (">=", 0.6),
    "json_c32_over_peer": (">=", 3.0),
    "binary_c1_p50_over_one_clip": ("<=", 2.5),
}
"""Issue 15's targets, each judged run by run."""


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target's value in every run, how many runs met it, and the median."""
    out = {}
    for name, (direction, target) in TARGETS.items():
        values = [run["ratios"][name] for run in runs]
        met = sum(value >= target if direction == ">=" else value <= target for value in values)
        out[name] = {"target": f"{direction} {target}", "runs": values, "met": met, "median": float(np.median(values))}
        print(
            f"{name}: {', '.join(f'{v:.2f}' for v in values)} (median {np.median(values):.2f}); "
            f"target {direction} {target} met in {met} of {len(values)} runs"
        )
    ready = [run["ready_s"] for run in runs]
    met = sum(r <= 10 for r in ready)
    out["ready_s"] = {"target": "<= 10", "runs": ready, "met": met, "median": float(np.median(ready))}
    print(f"ready_s: {', '.join(f'{r:.1f}' for r in ready)}; target <= 10 met in {met} of {len(ready)} runs")
    return out


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """clips/s and p99 against concurrency: ours (binary, JSON; binary with two transformers at 32),
    the peer, the limit and KServe's floor; medians over runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_axis, p99_axis) = plt.subplots(1, 2, figsize=(10, 4))
    series = {"ours, binary": "service", "ours, JSON": "service_json", "KServe sample pattern, JSON": "peer_json"}
    for label, key in series.items():
        rates = np.median([[level["clips_per_s"] for level in run[key]] for run in runs], axis=0)
        p99s = np.median([[level["p99_s"] * 1000 for level in run[key]] for run in runs], axis=0)
        rate_axis.plot(CONCURRENCY, rates, marker="o", label=label)
        p99_axis.plot(CONCURRENCY, p99s, marker="o", label=label)
    limit = float(np.median([run["limit_clips_per_s"] for run in runs]))
    rate_axis.axhline(limit, color="grey", linestyle="--", label=f"limit ({limit:.0f} clips/s)")
    two = float(np.median([run["two_transformers_binary_c32"]["clips_per_s"] for run in runs]))
    rate_axis.scatter([CONCURRENCY[-1]], [two], marker="^", color="C0", label="ours, binary, two transformers")
    floor = float(np.median([run["kserve_floor_json_c32"]["clips_per_s"] for run in runs]))
    rate_axis.axhline(floor, color="grey", linestyle=":", label=f"KServe's floor, JSON c=32 ({floor:.0f}/s)")
    ticks = {"xscale": "log", "xticks": CONCURRENCY, "xticklabels": CONCURRENCY, "xlabel": "requests in flight"}
    rate_axis.set(ylabel="clips/s", **ticks)
    p99_axis.set(ylabel="p99 latency (ms)", yscale="log", **ticks)
    rate_axis.legend(fontsize=8)
    rate_axis.set_title(f"Throughput, median of {len(runs)} run(s)")
    p99_axis.set_title("p99 latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument("--runs", type=int, default=1, help="whole runs; targets are judged run by run")
    parser.add_argument("--json", type=Path, help="also write the figures here (the capacity planner reads them)")
    parser.add_argument("--plot", type=Path, help="also draw clips/s and p99 against concurrency here (PNG)")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("bench needs hey (Debian: apt-get install hey); `make bench` installs it")
    from importlib.metadata import version

    test_split = [u.data for u in select_split(load_fsdd(args.data_dir), "test")]
    cores = os.cpu_count() or 1
    print(f"{cores} CPU cores; KServe {version('kserve')} for both ours and the peer")
    runs = []
    for run in range(args.runs):
        print(f"== run {run + 1} of {args.runs}")
        runs.append(one_run(test_split, requests=args.requests, cores=cores))
    print(f"== {args.runs} run(s)")
    judged = summary(runs)
    if args.plot:
        plot(runs, args.plot)
    if args.json:
        median_run = sorted(runs, key=lambda r: r["ratios"]["binary_c32_over_limit"])[len(runs) // 2]
        figures_out = {
            "machine": f"{cores} CPU cores, one transformer and one predictor process",
            **median_run,  # the run with the median throughput ratio: what the capacity planner reads
            "runs": runs,
            "summary": judged,
        }
        args.json.write_text(json.dumps(figures_out, indent=2) + "\n")


if __name__ == "__main__":
    main()
