"""``audio-maas serve``: predictor and transformer as two processes on this machine, as in the cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from predictor.contract import AUTH_TOKEN_ENV

__all__ = ["LocalService", "is_ready", "serve"]


@dataclass(frozen=True)
class LocalService:
    """Where the two servers listen; KServe binds every interface, callers use loopback."""

    model_dir: Path
    model_name: str = "digits"
    http_port: int = 8080
    grpc_port: int = 8081
    predictor_http_port: int = 8085
    predictor_grpc_port: int = 8086
    predictor_protocol: str = "grpc-v2"
    max_batch_size: int = 32
    max_batch_wait_ms: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def commands(self) -> dict[str, list[str]]:
        predictor_host = (
            f"127.0.0.1:{self.predictor_grpc_port}"
            if self.predictor_protocol == "grpc-v2"
            else f"127.0.0.1:{self.predictor_http_port}"
        )
        common = ["--model_name", self.model_name, "--model_dir", str(self.model_dir)]
        return {
            "predictor": [
                sys.executable, "-m", "predictor", *common,
                "--http_port", str(self.predictor_http_port), "--grpc_port", str(self.predictor_grpc_port),
                "--max_batch_size", str(self.max_batch_size), "--max_batch_wait_ms", str(self.max_batch_wait_ms),
            ],
            "transformer": [
                sys.executable, "-m", "transformer", *common,
                "--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port),
                "--predictor_host", predictor_host, "--predictor_protocol", self.predictor_protocol,
                "--max_batch_size", str(self.max_batch_size),
            ],
        }  # fmt: skip

    def ready_urls(self) -> dict[str, str]:
        path = f"/v2/models/{self.model_name}/ready"
        return {
            "predictor": f"http://127.0.0.1:{self.predictor_http_port}{path}",
            "transformer": f"{self.url}{path}",
        }


def serve(service: LocalService, *, ready_timeout_s: float = 120.0, grace_s: float = 20.0) -> int:
    """Start both servers, report when both are ready, stop both on Ctrl-C or SIGTERM.

    Returns 0 after a requested stop, or the exit code of a server that died by itself.
    """
    started = time.monotonic()
    processes = {name: subprocess.Popen(command) for name, command in service.commands().items()}
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        pending = dict(service.ready_urls())
        while pending and not stopping:
            for name, url in list(pending.items()):
                if processes[name].poll() is not None:
                    print(
                        f"audio-maas serve: the {name} exited with code {processes[name].returncode}", file=sys.stderr
                    )
                    return processes[name].returncode or 1
                if is_ready(url):
                    del pending[name]
            if time.monotonic() - started > ready_timeout_s:
                print(f"audio-maas serve: not ready after {ready_timeout_s:g} s: {', '.join(pending)}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        if not stopping:
            print(
                f"audio-maas serve: model '{service.model_name}' ready in {time.monotonic() - started:.1f} s\n"
                f"  transformer  {service.url}  (V2 REST; gRPC on 127.0.0.1:{service.grpc_port})\n"
                f"  predictor    http://127.0.0.1:{service.predictor_http_port}  ({service.predictor_protocol})\n"
                f"  try: audio-maas predict --url {service.url} FILE.wav",
                flush=True,
            )
            if os.environ.get(AUTH_TOKEN_ENV):
                print(f"  every request but health checks needs 'Authorization: Bearer ${AUTH_TOKEN_ENV}'", flush=True)
        while not stopping:
            for name, process in processes.items():
                if process.poll() is not None:
                    print(f"audio-maas serve: the {name} exited with code {process.returncode}", file=sys.stderr)
                    return process.returncode or 1
            time.sleep(0.2)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(processes, grace_s=grace_s)


def is_ready(url: str) -> bool:
    """Whether ``url`` answers 200 now (a readiness endpoint); False when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(processes: dict[str, subprocess.Popen[bytes]], *, grace_s: float) -> None:
    """SIGTERM both (KServe drains in-flight requests on it), then SIGKILL what outlives the grace period."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes.values():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
