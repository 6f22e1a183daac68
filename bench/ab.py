"""A/B of the transformer against an earlier commit, in one run: each side's predictor and
transformer (digits, gRPC hop) started from its own checkout, ``hey`` sending one FSDD clip per
binary request at concurrency 32 and 1, sides alternating; transformer and predictor CPU ms per
clip from /proc, p50 and clips/s from hey. Prints each round and the B/A ratios of the medians.

    python bench/ab.py --baseline /tmp/old [--rounds 2] [--requests 3000]

``--baseline`` is a checkout of the earlier commit (``git worktree add /tmp/old c417785``); it runs
with this virtual environment, its own top-level packages (``serving``, ``transformer``, ...)
found from its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.client.v2 import wait_ready  # noqa: E402
from audio_maas.protocol.codec import BINARY_HEADER, binary_body  # noqa: E402

MODEL = REPO / "models" / "digits"
CLIP = (
    Path(os.environ.get("AUDIO_MAAS_DATA_DIR", REPO.parent / "shared" / "data" / "fsdd"))
    / "recordings"
    / "7_theo_0.wav"
)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(side: str, checkout: Path, port: int) -> dict[str, subprocess.Popen[bytes]]:
    new = side == "B"
    package = "audio_maas." if new else ""
    common = ["--model_name", "digits", "--model_dir", str(MODEL)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(checkout)}
    predictor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"{package}predictor",
            *common,
            "--http_port",
            str(port + 5),
            "--grpc_port",
            str(port + 6),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=checkout,
        env=env,
    )
    transformer = subprocess.Popen(
        [sys.executable, "-m", f"{package}transformer", *common, "--http_port", str(port), "--grpc_port", str(port + 1),
         "--predictor_host", f"127.0.0.1:{port + 6}", "--predictor_protocol", "grpc-v2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=checkout, env=env,
    )  # fmt: skip
    processes = {"predictor": predictor, "transformer": transformer}
    urls = [f"http://127.0.0.1:{p}/v2/models/digits/ready" for p in (port + 5, port)]
    if wait_ready(urls, timeout_s=120, stop=lambda: any(p.poll() is not None for p in processes.values())):
        raise SystemExit(f"side {side} did not start")
    return processes


def hey(port: int, body: Path, json_length: int, *, concurrency: int, requests: int) -> dict[str, float]:
    out = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-D", str(body),
         "-H", f"{BINARY_HEADER}: {json_length}", "-T", "application/octet-stream",
         f"http://127.0.0.1:{port}/v2/models/digits/infer"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    assert codes == [("200", str(requests))], f"not every answer was 200: {codes}"
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert p50 and rate, out
    return {"p50_ms": float(p50.group(1)) * 1000, "clips_per_s": float(rate.group(1))}


def measure(side: str, checkout: Path, body: Path, json_length: int, requests: int) -> dict[str, float]:
    port = 18900 if side == "A" else 18950
    processes = start(side, checkout, port)
    try:
        hey(port, body, json_length, concurrency=8, requests=500)  # warm up
        figures: dict[str, float] = {}
        for concurrency in (32, 1):
            n = requests if concurrency == 32 else requests // 3
            before = {name: cpu_s(p.pid) for name, p in processes.items()}
            result = hey(port, body, json_length, concurrency=concurrency, requests=n)
            for name, process in processes.items():
                figures[f"c{concurrency}_{name}_cpu_ms_per_clip"] = (cpu_s(process.pid) - before[name]) * 1000 / n
            figures.update({f"c{concurrency}_{key}": value for key, value in result.items()})
        return figures
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the earlier commit (side A)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args()
    import numpy as np

    body_bytes, json_length = binary_body({}, [("audio", "BYTES", np.array([CLIP.read_bytes()], dtype=object))])
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        Path(body.name).write_bytes(body_bytes)
        rounds: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        for index in range(args.rounds):
            for side in ("A", "B") if index % 2 == 0 else ("B", "A"):
                checkout = args.baseline if side == "A" else REPO
                figures = measure(side, checkout, Path(body.name), json_length, args.requests)
                rounds[side].append(figures)
                print(f"round {index + 1} {side}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    print("\nmedians, A (baseline) -> B (this checkout), B/A:")
    for key in rounds["A"][0]:
        a = statistics.median(r[key] for r in rounds["A"])
        b = statistics.median(r[key] for r in rounds["B"])
        print(f"  {key:36s} {a:9.3f} -> {b:9.3f}  {b / a:5.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=2) + "\n")


if __name__ == "__main__":
    main()
