"""``audio-maas predict`` with what ``pip install 'audio-maas[client]'`` installs, and nothing of the
servers: the command runs in a Python that refuses to import KServe, TensorFlow, librosa, FastAPI or
pydantic(-settings), against the real service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from audio_maas.serving.settings import ServiceSettings

SERVER_PACKAGES = {"kserve", "tensorflow", "keras", "librosa", "fastapi", "pydantic", "pydantic_settings"}

CLIENT_ALONE = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(SERVER_PACKAGES)!r}:
            raise ModuleNotFoundError(f"{{name}} is not part of audio-maas[client]")
        return None

sys.meta_path.insert(0, NotInstalled())
from audio_maas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _client_alone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CLIENT_ALONE, *args], capture_output=True, text=True, timeout=120)


def test_predict_runs_with_the_client_alone(service: ServiceSettings, fsdd_dir: Path) -> None:
    recording = fsdd_dir / "recordings" / "7_theo_0.wav"
    done = _client_alone("predict", "--url", service.url, str(recording))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{recording}: 7  (top-3 class_id: probability: 7: ")


def test_the_blocker_blocks() -> None:
    """The check above could fail: a server module does not import under it."""
    done = _client_alone("serve", "--model", "models/digits", "--http-port", "1")
    assert done.returncode != 0
    assert "is not part of audio-maas[client]" in done.stderr
