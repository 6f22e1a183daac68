"""Cold start of the two images: to live, to ready and to the first answer, image sizes, and where
start-up time goes.

    .venv/bin/python bench/coldstart.py [--runs 5] [--tag 0.1.0] [--baseline TAG] [--json FILE]
                                        [--model DIR --clip FILE]

Builds nothing: it needs the images that ``k8s/images/build.sh`` builds (``make test-images``
does). Each container is started ``--runs`` times as the chart runs it and as ``make
test-images`` does: non-root, read-only root with ``/tmp`` on tmpfs, no capabilities, the model
(by default the bundled ``digits``; any model directory with ``--model`` and a recording for it
with ``--clip``) at ``/mnt/models`` read-only, host network, ``PODMAN_RUN_FLAGS`` added. Times count
from just before ``podman run``: to ``/v2/health/live``, to the model's ``ready``, and to the
first answered request after ready. First the predictor alone; then the transformer with a
predictor already up, whose first request is compared with the p50 of 50 that follow. With
``--baseline TAG``, the images so tagged are started in turn with ``--tag``'s, run by run, and
each figure is reported for both.

Where the time goes, from separate ``podman run``s of each image's own Python: the interpreter
alone, then importing the server module (and, for the predictor, TensorFlow alone), each
including the interpreter's start, with the garbage collector off as the servers import. What
is left of time to ready is the model's load and warm-up, the servers' start and, for the
transformer, its probe of the predictor.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.client.check import is_ready  # noqa: E402
from bench.containers import PODMAN, podman, run_container, run_flags  # noqa: E402

MODEL = REPO / "models" / "digits"
CLIP = REPO.parent / "shared" / "data" / "fsdd" / "recordings" / "7_theo_0.wav"
TARGET = {"model": MODEL, "clip": CLIP}
"""The model started and the recording sent: ``--model`` and ``--clip`` set them."""
PORTS = {"predictor": 18585, "transformer": 18580}
IMPORTS = {
    "predictor": {
        "interpreter": "pass",
        "tensorflow": "import tensorflow",
        "server module": "import audio_maas.predictor.model",
    },
    "transformer": {"interpreter": "pass", "server module": "import audio_maas.transformer.model"},
}
AS_SERVED = "import gc; gc.disable(); "
"""Each server imports with the garbage collector off (see ``audio_maas.kserve.server``); so do the timings."""


def server_args(server: str) -> list[str]:
    port = PORTS[server]
    args = ["--model_name", TARGET["model"].name, "--http_port", str(port), "--grpc_port", str(port + 1)]
    if server == "transformer":
        args += ["--workers", "1", "--predictor_host", f"127.0.0.1:{PORTS['predictor']}", "--predictor_protocol", "v2"]
    return args


def wait_for(url: str, started: float, timeout_s: float = 180) -> float:
    while not is_ready(url):
        if time.perf_counter() - started > timeout_s:
            raise SystemExit(f"{url} not ready within {timeout_s} s")
        time.sleep(0.02)
    return time.perf_counter() - started


@functools.cache
def request_body(server: str) -> bytes:
    """The clip as each server takes it (JSON): audio for the transformer, its features (its first
    window, for a model read through its interface) for the predictor. Made before any container
    starts, so that no run counts the making."""
    model, clip = TARGET["model"], TARGET["clip"]
    if server == "transformer":
        data = base64.b64encode(clip.read_bytes()).decode()
        body = {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": [data]}]}
    else:
        from audio_maas.features.audio import decode
        from audio_maas.features.frontend import FrontEnd
        from audio_maas.features.interface import ModelInterface
        from audio_maas.features.spec import FeatureSpec
        from audio_maas.protocol.contract import INPUT_NAME
        from audio_maas.protocol.model_dir import INTERFACE_FILE

        if (model / INTERFACE_FILE).is_file():
            waveform, rate = decode(data=clip.read_bytes(), max_duration_s=3600)
            features = ModelInterface.read(model).windows(waveform=waveform, sample_rate=rate).rows[0]
        else:
            features = FrontEnd(FeatureSpec.read(model)).from_bytes(data=clip.read_bytes(), max_duration_s=60)
        body = {"inputs": [{"name": INPUT_NAME, "shape": [1, *features.shape], "datatype": "FP32",
                            "data": features.ravel().tolist()}]}  # fmt: skip
    return json.dumps(body).encode()


def first_answers(server: str) -> tuple[float, float, float]:
    """When the first request after ready was answered (``time.perf_counter``), how long it took,
    and the p50 of the 50 that follow."""
    url = f"http://127.0.0.1:{PORTS[server]}/v2/models/{TARGET['model'].name}/infer"
    times, answered_at = [], []
    for _ in range(51):
        request = urllib.request.Request(url, data=request_body(server), headers={"content-type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        answered_at.append(time.perf_counter())
        times.append(answered_at[-1] - started)
    return answered_at[0], times[0], statistics.median(times[1:])


def start_up(server: str, images: dict[str, str], runs: int) -> dict[str, dict[str, Any]]:
    """``runs`` starts of each of ``images`` (label: image), taking turns, so that a machine whose
    speed drifts (this one's does, by tens of percent within an hour) weighs on each alike."""
    figures = {label: {"live_s": [], "ready_s": [], "first_answer_s": [], "first_request_s": []} for label in images}
    warm_p50: dict[str, list[float]] = {label: [] for label in images}
    name = f"audio-maas-coldstart-{server}"
    port = PORTS[server]
    request_body(server)
    for _ in range(runs):
        for label, image in images.items():
            started = time.perf_counter()
            run_container(name, image, *server_args(server), model=TARGET["model"])
            try:
                figures[label]["live_s"].append(wait_for(f"http://127.0.0.1:{port}/v2/health/live", started))
                ready = f"http://127.0.0.1:{port}/v2/models/{TARGET['model'].name}/ready"
                figures[label]["ready_s"].append(wait_for(ready, started))
                answered_at, first, warm = first_answers(server)
                figures[label]["first_answer_s"].append(answered_at - started)
                figures[label]["first_request_s"].append(first)
                warm_p50[label].append(warm)
            finally:
                subprocess.run([PODMAN, "rm", "--force", name], capture_output=True)
    summaries = {}
    for label in images:
        summary: dict[str, Any] = {
            key: {"median": statistics.median(values), "max": max(values), "all": values}
            for key, values in figures[label].items()
        }
        summary["warm_p50_s"] = statistics.median(warm_p50[label])
        summaries[label] = summary
    return summaries


def import_times(server: str, image: str) -> dict[str, float]:
    """Seconds of ``podman run IMAGE python -c STATEMENT`` for each statement, median of 3: the
    interpreter alone (``pass``) is the floor that the others include."""
    times = {}
    for label, statement in IMPORTS[server].items():
        samples = []
        for _ in range(3):
            started = time.perf_counter()
            podman("run", "--rm", *run_flags(), "--read-only", "--tmpfs", "/tmp", "--entrypoint", "python", image, "-c",
                   AS_SERVED + statement)  # fmt: skip
            samples.append(time.perf_counter() - started)
        times[label] = statistics.median(samples)
    return times


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{'container':12s} {'image':>8s} {'live':>13s} {'ready':>13s} {'1st answer':>13s} {'1st req / warm p50':>20s}"
    )
    for server, figures in report.items():
        cells = [
            f"{figures[k]['median']:5.1f} ({figures[k]['max']:4.1f})" for k in ("live_s", "ready_s", "first_answer_s")
        ]
        first_ms, warm_ms = figures["first_request_s"]["median"] * 1000, figures["warm_p50_s"] * 1000
        print(
            f"{server:12s} {figures['image_mb']:6.0f}MB {cells[0]:>13s} {cells[1]:>13s} {cells[2]:>13s} "
            f"{first_ms:7.1f} / {warm_ms:5.1f} ms ({first_ms / warm_ms:.1f}x)"
        )
        print("    " + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in figures["where"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tag", default="0.1.0")
    parser.add_argument("--baseline", metavar="TAG", help="images to compare with, started in turn with --tag's")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path, default=MODEL, help="the model directory to start with")
    parser.add_argument("--clip", type=Path, default=CLIP, help="a recording the model takes")
    args = parser.parse_args()
    TARGET.update(model=args.model.resolve(), clip=args.clip.resolve())
    tags = {"measured": args.tag, **({"baseline": args.baseline} if args.baseline else {})}
    reports: dict[str, dict[str, Any]] = {label: {} for label in tags}
    predictor_up = None
    try:
        for server in ("predictor", "transformer"):
            images = {label: f"ghcr.io/audio-maas/{server}:{tag}" for label, tag in tags.items()}
            summaries = start_up(server, images, args.runs)
            for label, image in images.items():
                size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", image)) / 1e6
                reports[label][server] = {"image_mb": size_mb, **summaries[label], "where": import_times(server, image)}
            if server == "predictor":  # the transformer's runs need one up: --tag's
                predictor_up = "audio-maas-coldstart-predictor-up"
                run_container(predictor_up, images["measured"], *server_args("predictor"), model=TARGET["model"])
                ready = f"http://127.0.0.1:{PORTS['predictor']}/v2/models/{TARGET['model'].name}/ready"
                wait_for(ready, time.perf_counter())
    finally:
        if predictor_up:
            subprocess.run([PODMAN, "rm", "--force", predictor_up], capture_output=True)
    for label, tag in tags.items():
        print(f"{label}: images tagged {tag}")
        print_table(reports[label])
    if args.baseline:
        for server in reports["measured"]:
            ratio = reports["measured"][server]["ready_s"]["median"] / reports["baseline"][server]["ready_s"]["median"]
            print(f"{server}: ready, median, {ratio:.2f}x the baseline's")
    print("seconds from podman run: median (max) of the runs; 'where': podman run of one statement each")
    if args.json:
        report = reports["measured"]
        if args.baseline:
            report[f"baseline, started in turn: images tagged {args.baseline}"] = reports["baseline"]
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
