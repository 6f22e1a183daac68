"""What the image builds' rewrites of installed packages share (``audio_maas.images.slim_kserve.slim_kserve``,
``audio_maas.images.slim_tensorflow.slim_tensorflow``, ``audio_maas.images.slim_librosa.slim_librosa``):
finding the package, and refusing files that are not the release a rewrite was written for.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["installed_package", "text_with_one"]


def installed_package(name: str) -> Path:
    """The directory of the importable package ``name``."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None, f"{name} is not installed"
    return Path(spec.origin).parent


def text_with_one(path: Path, expected: str, *, release: str) -> str:
    """``path``'s text, once ``expected`` is found in it exactly once; otherwise ``RuntimeError``
    naming the file, what was expected and ``release``, the one the rewrite was written against."""
    text = path.read_text()
    found = text.count(expected)
    if found != 1:
        raise RuntimeError(f"{path}: expected one {expected.strip()!r}, as in {release}; found {found}")
    return text
