"""Soak: the service under steady load, every answer checked, memory watched.

    .venv/bin/python bench/soak.py [--minutes 5] [--concurrency 32] [--data-dir DIR]

Starts ``audio-maas serve``, learns the answer for each FSDD test recording, then sends them
round and round at ``concurrency`` requests in flight, each request with its own id. Every
answer must carry its request's id and the label learned for its file: nothing lost, nothing
duplicated, nothing crossed between concurrent requests. Prints errors, p50/p99 latency per
minute, and the resident memory of both servers at the start and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audio_maas.client.check import wait_ready  # noqa: E402
from audio_maas.protocol.contract import AUDIO_INPUT, LABEL_OUTPUT  # noqa: E402
from audio_maas.serving.settings import ServiceSettings  # noqa: E402
from audio_maas.training.dataset import load_fsdd, select_split  # noqa: E402

__all__ = ["SoakResult", "rss_mib", "server_pid", "server_rss_mib", "soak", "start_service"]

MODEL_NAME = ServiceSettings().model_name


@dataclass
class SoakResult:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)

    @property
    def p99_s(self) -> float:
        return float(np.percentile(self.latencies_s, 99)) if self.latencies_s else float("nan")

    @property
    def p50_s(self) -> float:
        return float(np.percentile(self.latencies_s, 50)) if self.latencies_s else float("nan")


def start_service(
    settings: ServiceSettings, *model_flags: str, timeout_s: float = 180, checkout: Path = REPO
) -> subprocess.Popen[bytes]:
    """``audio-maas serve`` with ``model_flags`` on ``settings``' ports, returned once both servers
    say every model is ready; SystemExit if it dies or takes longer than ``timeout_s``. The code
    served is ``checkout``'s (another checkout of this repo, for an A/B)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.cli", "serve", *model_flags,
         "--http-port", str(settings.http_port), "--predictor-port", str(settings.predictor_http_port)],
        cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    urls = [f"http://127.0.0.1:{port}/v2/health/ready" for port in (settings.http_port, settings.predictor_http_port)]
    if wait_ready(urls, timeout_s=timeout_s, stop=lambda: process.poll() is not None):
        process.kill()
        raise SystemExit("the service did not start")
    return process


def server_pid(module: str, http_port: int) -> int:
    """The ``python -m audio_maas.MODULE ... --http_port PORT`` process (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # the process went away
            continue
        if (
            args[1:3] == ["-m", f"audio_maas.{module}"]
            and "--http_port" in args
            and args[args.index("--http_port") + 1] == str(http_port)
        ):
            return int(cmdline.parent.name)
    raise LookupError(f"no {module} process on port {http_port}")


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024


def server_rss_mib(module: str, http_port: int) -> float:
    """Resident memory of the ``python -m MODULE ... --http_port PORT`` process."""
    return rss_mib(server_pid(module, http_port))


async def soak(url: str, files: list[bytes], expected: list[str], *, concurrency: int, seconds: float) -> SoakResult:
    """Send ``files`` round and round for ``seconds``; check each answer against ``expected``."""
    import tritonclient.http.aio as http

    client = http.InferenceServerClient(url, conn_limit=concurrency)
    result = SoakResult()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**12))

    async def worker() -> None:
        while time.monotonic() < deadline:
            number = next(counter)
            index = number % len(files)
            audio = http.InferInput(AUDIO_INPUT, [1], "BYTES")
            audio.set_data_from_numpy(np.array([files[index]], dtype=object), binary_data=True)
            started = time.perf_counter()
            try:
                answer = await client.infer(
                    MODEL_NAME, [audio], request_id=f"soak-{number}",
                    outputs=[http.InferRequestedOutput(LABEL_OUTPUT, binary_data=True)],
                )  # fmt: skip
            except Exception as error:  # every failure is counted and shown, none stops the soak
                result.errors.append(f"request {number}: {error}")
                continue
            result.latencies_s.append(time.perf_counter() - started)
            result.requests += 1
            label = answer.as_numpy(LABEL_OUTPUT)[0].decode()
            answered_id = answer.get_response()["id"]
            if answered_id != f"soak-{number}" or label != expected[index]:
                result.errors.append(f"request soak-{number} (file {index}): answer {answered_id!r} says {label!r}")

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await client.close()
    return result


async def _labels(url: str, files: list[bytes]) -> list[str]:
    import tritonclient.http.aio as http

    client = http.InferenceServerClient(url)
    try:
        labels = []
        for start in range(0, len(files), 50):
            chunk = files[start : start + 50]
            audio = http.InferInput(AUDIO_INPUT, [len(chunk)], "BYTES")
            audio.set_data_from_numpy(np.array(chunk, dtype=object), binary_data=True)
            answer = await client.infer(MODEL_NAME, [audio], outputs=[http.InferRequestedOutput(LABEL_OUTPUT)])
            labels += [label.decode() for label in answer.as_numpy(LABEL_OUTPUT)]
        return labels
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    files = [u.data for u in select_split(load_fsdd(args.data_dir), "test")]
    port, predictor_port = 19080, 19085
    serve = subprocess.Popen(
        [sys.executable, "-m", "audio_maas.cli", "serve",
         "--http-port", str(port), "--predictor-port", str(predictor_port)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"127.0.0.1:{port}"
        expected = _wait_and_learn(url, files, serve)
        rss = {name: server_rss_mib(name, p) for name, p in (("transformer", port), ("predictor", predictor_port))}
        print(f"start: transformer {rss['transformer']:.0f} MiB, predictor {rss['predictor']:.0f} MiB")
        total = SoakResult()
        for minute in range(int(np.ceil(args.minutes))):
            seconds = min(60.0, args.minutes * 60 - minute * 60)
            result = asyncio.run(soak(url, files, expected, concurrency=args.concurrency, seconds=seconds))
            total.requests += result.requests
            total.errors += result.errors
            total.latencies_s += result.latencies_s
            print(f"minute {minute + 1}: {result.requests} answers, {len(result.errors)} errors, "
                  f"p50 {result.p50_s * 1000:.1f} ms, p99 {result.p99_s * 1000:.1f} ms")  # fmt: skip
        end = {name: server_rss_mib(name, p) for name, p in (("transformer", port), ("predictor", predictor_port))}
        for name in rss:
            print(f"end: {name} {end[name]:.0f} MiB ({100 * (end[name] / rss[name] - 1):+.1f}%)")
        print(f"total: {total.requests} answers, {len(total.errors)} errors, p99 {total.p99_s * 1000:.1f} ms")
        for error in total.errors[:10]:
            print(f"  {error}")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)


def _wait_and_learn(url: str, files: list[bytes], serve: subprocess.Popen[bytes]) -> list[str]:
    started = time.monotonic()
    while True:
        try:
            return asyncio.run(_labels(url, files))
        except Exception:
            if serve.poll() is not None or time.monotonic() - started > 120:
                raise SystemExit("the service did not start") from None
            time.sleep(1)


if __name__ == "__main__":
    main()
