"""``audio-maas serve``: predictor and transformer as two processes on this machine, as in the cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from audio_maas.client.check import wait_ready
from audio_maas.protocol.defaults import AUTH_TOKEN_ENV
from audio_maas.serving.settings import ServiceSettings

__all__ = ["LocalService", "serve"]


@dataclass(frozen=True)
class LocalService:
    """The two servers' command lines: where they listen (``settings``), the models they serve
    (name -> model directory) and the repository they come from, if one was given, and any other
    setting of each (``--<field> VALUE``, checked by the server at start)."""

    models: Mapping[str, Path]
    repository: Path | None = None
    """A model repository the servers read themselves: models added to it later can be loaded."""
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    transformer_flags: Mapping[str, str] = field(default_factory=dict)
    predictor_flags: Mapping[str, str] = field(default_factory=dict)

    def commands(self, repository: Path | None = None) -> dict[str, list[str]]:
        """One model is served as ``--model_name NAME --model_dir DIR``, as in the cluster;
        several from ``repository``, a directory holding them under their names."""
        s = self.settings
        predictor_port = s.predictor_grpc_port if s.predictor_protocol == "grpc-v2" else s.predictor_http_port
        repository = self.repository or repository
        if len(self.models) == 1 and self.repository is None:
            ((name, model_dir),) = self.models.items()
            common = ["--model_name", name, "--model_dir", str(model_dir)]
        elif repository is not None:
            common = ["--model_repository", str(repository)]
        else:
            raise ValueError("several models are served from a repository directory")

        def flags(values: Mapping[str, str]) -> list[str]:
            return [word for name, value in values.items() for word in (f"--{name}", value)]

        return {
            "predictor": [
                sys.executable, "-m", "audio_maas.predictor", *common,
                "--http_port", str(s.predictor_http_port), "--grpc_port", str(s.predictor_grpc_port),
                *flags(self.predictor_flags),
            ],
            "transformer": [
                sys.executable, "-m", "audio_maas.transformer", *common,
                "--http_port", str(s.http_port), "--grpc_port", str(s.grpc_port),
                "--predictor_host", f"127.0.0.1:{predictor_port}", "--predictor_protocol", s.predictor_protocol,
                *flags(self.transformer_flags),
            ],
        }  # fmt: skip

    def ready_urls(self) -> dict[str, str]:
        """Each server's readiness: true once every model it serves is ready (the transformer's,
        once the predictor has accepted a probe of its features)."""
        return {
            "predictor": f"http://127.0.0.1:{self.settings.predictor_http_port}/v2/health/ready",
            "transformer": f"{self.settings.url}/v2/health/ready",
        }


def serve(service: LocalService, *, ready_timeout_s: float = 120.0, grace_s: float = 20.0) -> int:
    """Start both servers, report when both are ready, stop both on Ctrl-C or SIGTERM.

    Returns 0 after a requested stop, or the exit code of a server that died by itself.
    """
    if service.repository is not None:
        return _run(service, service.commands(), ready_timeout_s=ready_timeout_s, grace_s=grace_s)
    with tempfile.TemporaryDirectory(prefix="audio-maas-models-") as repository:
        for name, model_dir in service.models.items():  # a repository of exactly these models
            (Path(repository) / name).symlink_to(model_dir.resolve(), target_is_directory=True)
        return _run(service, service.commands(Path(repository)), ready_timeout_s=ready_timeout_s, grace_s=grace_s)


def _run(service: LocalService, commands: dict[str, list[str]], *, ready_timeout_s: float, grace_s: float) -> int:
    started = time.monotonic()
    processes = {name: subprocess.Popen(command) for name, command in commands.items()}
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    def exit_code() -> int | None:
        """The code of a server that stopped by itself (never 0: it was not asked to), after saying so."""
        for name, process in processes.items():
            if process.poll() is not None:
                print(f"audio-maas serve: the {name} exited with code {process.returncode}", file=sys.stderr)
                return process.returncode or 1
        return None

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def one_exited() -> bool:
        return any(process.poll() is not None for process in processes.values())

    try:
        pending = wait_ready(
            service.ready_urls().values(), timeout_s=ready_timeout_s, stop=lambda: stopping or one_exited()
        )
        if (code := exit_code()) is not None:
            return code
        if pending and not stopping:
            print(f"audio-maas serve: not ready after {ready_timeout_s:g} s: {', '.join(pending)}", file=sys.stderr)
            return 1
        if not stopping:
            s = service.settings
            names = ", ".join(service.models)
            print(
                f"audio-maas serve: {names} ready in {time.monotonic() - started:.1f} s\n"
                f"  transformer  {s.url}  (V2 REST; gRPC on 127.0.0.1:{s.grpc_port})\n"
                f"  predictor    http://127.0.0.1:{s.predictor_http_port}  ({s.predictor_protocol})\n"
                f"  try: audio-maas predict --url {s.url} --model {next(iter(service.models))} FILE.wav",
                flush=True,
            )
            if os.environ.get(AUTH_TOKEN_ENV):
                print(f"  every request but health checks needs 'Authorization: Bearer ${AUTH_TOKEN_ENV}'", flush=True)
        while not stopping:
            if (code := exit_code()) is not None:
                return code
            time.sleep(0.2)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(processes, grace_s=grace_s)


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
