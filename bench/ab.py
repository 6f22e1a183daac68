"""A/B of the transformer against an earlier commit, in one run: each side's predictor and
transformer (digits, gRPC hop) started once from its own checkout, then ``hey`` bursts of one
FSDD clip per binary request at concurrency 32 and 1, sides alternating (ABBA...) so that both
see the machine's drift alike; transformer and predictor CPU ms per clip from /proc, p50 and
clips/s from hey. Prints each round, the B/A ratio of the medians, and the median and quartiles
of each round's B/A (the two sides of a round ran back to back).

    python bench/ab.py --baseline /tmp/old [--rounds 10] [--requests 2000]

``--baseline`` is a checkout of the earlier commit (``git worktree add /tmp/old ed2b245``); it runs
with this virtual environment, its own packages (``audio_maas``, or before c417785 the top-level
``serving``, ``transformer``, ...) found from its folder.
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

from audio_maas.client.check import wait_ready  # noqa: E402
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
    package = "audio_maas." if (checkout / "audio_maas").is_dir() else ""  # before c417785: top-level packages
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
    """``requests`` must be a multiple of ``concurrency``: hey sends ``requests // concurrency`` per worker."""
    assert requests % concurrency == 0, (requests, concurrency)
    out = subprocess.run(
        ["hey", "-n", str(requests), "-c", str(concurrency), "-m", "POST", "-D", str(body),
         "-H", f"{BINARY_HEADER}: {json_length}", "-T", "application/octet-stream",
         f"http://127.0.0.1:{port}/v2/models/digits/infer"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    assert codes == [("200", str(requests))], out
    p50 = re.search(r"50%+ in ([\d.]+) secs", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert p50 and rate, out
    return {"p50_ms": float(p50.group(1)) * 1000, "clips_per_s": float(rate.group(1))}


def burst(
    side: dict[str, subprocess.Popen[bytes]],
    port: int,
    body: Path,
    json_length: int,
    *,
    concurrency: int,
    requests: int,
) -> dict[str, float]:
    """One hey burst at one side: its p50 and clips/s, and each server's CPU ms per clip in it."""
    before = {name: cpu_s(process.pid) for name, process in side.items()}
    figures = hey(port, body, json_length, concurrency=concurrency, requests=requests)
    for name, process in side.items():
        figures[f"{name}_cpu_ms_per_clip"] = (cpu_s(process.pid) - before[name]) * 1000 / requests
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="checkout of the earlier commit (side A)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args()
    import numpy as np

    body_bytes, json_length = binary_body({}, [("audio", "BYTES", np.array([CLIP.read_bytes()], dtype=object))])
    with tempfile.NamedTemporaryFile(suffix=".bin") as body:
        Path(body.name).write_bytes(body_bytes)
        ports = {"A": 18900, "B": 18950}
        sides = {"A": start("A", args.baseline, ports["A"]), "B": start("B", REPO, ports["B"])}
        rounds: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
        try:
            for port in ports.values():
                hey(port, Path(body.name), json_length, concurrency=8, requests=496)  # warm up
            for index in range(args.rounds):
                for name in ("A", "B") if index % 2 == 0 else ("B", "A"):
                    figures: dict[str, float] = {}
                    for concurrency in (32, 1):
                        n = (args.requests if concurrency == 32 else args.requests // 4) // concurrency * concurrency
                        result = burst(sides[name], ports[name], Path(body.name), json_length,
                                       concurrency=concurrency, requests=n)  # fmt: skip
                        figures.update({f"c{concurrency}_{key}": value for key, value in result.items()})
                    rounds[name].append(figures)
                    print(
                        f"round {index + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                        flush=True,
                    )
        finally:
            for process in (process for side in sides.values() for process in side.values()):
                process.send_signal(signal.SIGTERM)
            for process in (process for side in sides.values() for process in side.values()):
                process.wait(timeout=30)
    print("\nmedians, A (baseline) -> B (this checkout); B/A of the medians; each round's B/A, median [quartiles]:")
    for key in rounds["A"][0]:
        a = statistics.median(r[key] for r in rounds["A"])
        b = statistics.median(r[key] for r in rounds["B"])
        pairs = [rb[key] / ra[key] for ra, rb in zip(rounds["A"], rounds["B"], strict=True)]
        low, middle, high = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else pairs * 3
        print(f"  {key:36s} {a:9.3f} -> {b:9.3f}  {b / a:5.2f}x  {middle:5.2f}x [{low:.2f}-{high:.2f}]")
    if args.json:
        args.json.write_text(json.dumps(rounds, indent=2) + "\n")


if __name__ == "__main__":
    main()
