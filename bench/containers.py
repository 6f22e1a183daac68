"""The images run as the chart runs them, with podman: for the container tests
(``tests/test_images.py``) and the cold-start benchmark (``bench/coldstart.py``) alike."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

MODEL = Path(__file__).resolve().parent.parent / "models" / "digits"

PODMAN = os.environ.get("PODMAN", "podman")


def podman(*args: str) -> str:
    return subprocess.run([PODMAN, *args], check=True, capture_output=True, text=True).stdout.strip()


def run_flags() -> list[str]:
    """``podman run``'s flags: ``PODMAN_RUN_FLAGS`` (what a sandboxed podman needs), and the host's
    network, on which the tests and the bench reach the containers. The network is named once:
    podman refuses two, and a sandbox's build needs ``--network host`` in the same variable."""
    flags, given = [], shlex.split(os.environ.get("PODMAN_RUN_FLAGS", ""))
    while given:
        flag = given.pop(0)
        if flag == "--network" and given:
            given.pop(0)
        elif not flag.startswith("--network="):
            flags.append(flag)
    return [*flags, "--network", "host"]


def run_container(name: str, image: str, *args: str, model: Path = MODEL) -> None:
    """``image`` as the chart runs it, ``model`` at ``/mnt/models`` (bench/coldstart.py times it so too)."""
    podman(
        "run", "--detach", "--name", name, *run_flags(),
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{model}:/mnt/models:ro", image, *args,
    )  # fmt: skip
