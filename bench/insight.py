"""What explanations and segmentation cost through the service, and whether plain requests paid.

    .venv/bin/python bench/insight.py [--baseline CHECKOUT] [--pairs 2] [--requests 1920] [--json FILE]

``audio-maas serve`` (the bundled ``digits``) driven by ``hey``, a compiled load generator:
(a) at concurrency 1, 200 requests each, p50 and the CPU both servers spent per request: one FSDD
file, plain and asking for ``saliency`` and ``saliency_frame_s``; a 5.4 s recording of seven
digits, plain and with ``segment``.
(b) plain requests, one FSDD file each, at concurrency 1 and 32 (``--requests`` per level, a
multiple of 32). With ``--baseline``, another checkout of this repo (e.g. ``git worktree add
/tmp/before COMMIT``) is served the same way, alternating with this one ``--pairs`` times: did
plain requests get slower?
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import soundfile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from audio_maas.training.dataset import load_fsdd, select_split  # noqa: E402
from bench.segments import RATE, build_sequences  # noqa: E402
from bench.serving import binary_body, cpu_seconds, hey  # noqa: E402
from bench.soak import server_pid, start_service  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repo to compare plain requests with")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1920, help="plain requests per level (a multiple of 32)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    settings = ServiceSettings(http_port=18380, predictor_http_port=18385)
    url = f"{settings.url}/v2/models/{settings.model_name}/infer"
    clip = select_split(load_fsdd(args.data_dir / "fsdd"), "test")[0].data
    waveform = build_sequences(args.data_dir, split="test", count=1, seed=0)[0]["waveform"]
    wav = io.BytesIO()
    soundfile.write(wav, waveform, RATE, format="WAV")
    recording = wav.getvalue()
    report: dict[str, Any] = {"per_request": {}, "plain": []}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        plain = binary_body(clip, folder / "clip", outputs=[{"name": "label"}])
        asked = {
            "one file, plain": plain,
            "one file, with saliency": binary_body(
                clip,
                folder / "saliency",
                outputs=[{"name": "label"}, {"name": "saliency"}, {"name": "saliency_frame_s"}],
            ),
            f"{len(waveform) / RATE:.1f} s of digits, plain": binary_body(
                recording, folder / "long", outputs=[{"name": "label"}]
            ),
            f"{len(waveform) / RATE:.1f} s of digits, with segment": binary_body(
                recording, folder / "segment", outputs=[{"name": "sequence"}], parameters={"segment": True}
            ),
        }
        checkouts = {"this": REPO} | ({"baseline": args.baseline} if args.baseline else {})
        for pair in range(args.pairs):
            for label, checkout in checkouts.items():
                process = start_service(settings, checkout=checkout)
                try:
                    hey(url, *plain, requests=200, concurrency=8)  # warm
                    if label == "this" and not pair:
                        ports = {"transformer": settings.http_port, "predictor": settings.predictor_http_port}
                        pids = [server_pid(module, port) for module, port in ports.items()]
                        print("(a) concurrency 1, 200 requests", flush=True)
                        for name, body in asked.items():
                            hey(url, *body, requests=100, concurrency=1)  # warm: an explanation traces first
                            cpu = sum(cpu_seconds(pid) for pid in pids)
                            figures = hey(url, *body, requests=200, concurrency=1)
                            cpu_ms = (sum(cpu_seconds(pid) for pid in pids) - cpu) / 200 * 1000
                            report["per_request"][name] = {"p50_ms": figures["p50_s"] * 1000, "cpu_ms": cpu_ms}
                            print(
                                f"    {name:35s} p50 {figures['p50_s'] * 1000:6.1f} ms   CPU {cpu_ms:6.1f} ms",
                                flush=True,
                            )
                    c1 = hey(url, *plain, requests=args.requests, concurrency=1)
                    c32 = hey(url, *plain, requests=args.requests, concurrency=32)
                    report["plain"].append(
                        {"checkout": label, "c1_p50_ms": c1["p50_s"] * 1000, "c32_clips_per_s": c32["clips_per_s"]}
                    )
                    print(
                        f"(b) pair {pair + 1}, {label:8s} plain, one file per request: "
                        f"c=1 p50 {c1['p50_s'] * 1000:.2f} ms, c=32 {c32['clips_per_s']:.0f} clips/s",
                        flush=True,
                    )
                finally:
                    process.terminate()
                    process.wait(timeout=30)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
