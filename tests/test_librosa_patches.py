"""``audio_maas.images.slim_librosa`` rewrites librosa's installed files: these fail when an upgrade moves
what it relies on, or when the slimmed librosa stops giving the front end's features.

The image build slims librosa in place; here a copy is slimmed and imported in fresh interpreters.
"""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audio_maas.images.slim_librosa import LIBROSA_VERSION, slim_librosa
from tests.conftest import FSDD_DIR, patched_copy, run_python


def test_the_installed_librosa_is_the_one_the_patches_were_written_against() -> None:
    assert version("librosa") == LIBROSA_VERSION


@pytest.fixture(scope="module")
def slim_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the installed librosa, slimmed as the image build slims it."""
    return patched_copy(tmp_path_factory.mktemp("slim"), "librosa", slim_librosa)


_WITHOUT_SKLEARN = """
import sys

class LeftOut:  # as in the transformer image, where scikit-learn is not installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, LeftOut())
"""

_FEATURES_OF_EVERY_BUNDLED_MODEL = """
import json, sys
from pathlib import Path
import librosa
from audio_maas.features.frontend import FrontEnd
from audio_maas.features.spec import FeatureSpec

clips = sorted(Path(sys.argv[1]).glob("?_theo_1.wav"))
features = {}
for model in sorted(Path("models").iterdir()):
    front_end = FrontEnd(FeatureSpec.read(model))
    features[model.name] = [front_end.from_bytes(data=clip.read_bytes(), max_duration_s=60).tolist() for clip in clips]
print(json.dumps({"file": librosa.__file__, "sklearn": "sklearn" in sys.modules, "clips": len(clips),
                  "features": features}))
"""


def _python(code: str, *, librosa_in: Path | None) -> dict[str, Any]:
    """Run ``code`` with librosa from ``librosa_in`` (the installed one by default) and FSDD's
    recordings as its argument; its last line of stdout, as JSON."""
    out = run_python(code, str(FSDD_DIR / "recordings"), first_on_path=librosa_in)
    answer: dict[str, Any] = json.loads(out.splitlines()[-1])
    return answer


@pytest.mark.slow
def test_slim_librosa_gives_the_front_ends_features_without_sklearn(slim_copy: Path) -> None:
    slim = _python(_WITHOUT_SKLEARN + _FEATURES_OF_EVERY_BUNDLED_MODEL, librosa_in=slim_copy)
    stock = _python(_FEATURES_OF_EVERY_BUNDLED_MODEL, librosa_in=None)
    assert slim["file"] == str(slim_copy / "librosa" / "__init__.py")
    assert stock["file"] != slim["file"]
    assert slim["sklearn"] is False and stock["sklearn"] is True
    assert slim["clips"] == stock["clips"] == 10
    assert sorted(slim["features"]) == ["digits", "digits-lstm", "sounds"]
    assert slim["features"] == stock["features"]


@pytest.mark.slow
def test_slim_librosa_keeps_hpss_where_sklearn_is_installed(slim_copy: Path) -> None:
    code = """
import json, numpy as np, librosa
clicks = np.where(np.arange(8000) % 800 == 0, 1.0, 0.0)
waveform = (np.sin(np.arange(8000) / 5) + clicks).astype(np.float32)
print(json.dumps({"file": librosa.__file__, "percussive": librosa.effects.percussive(waveform).tolist()}))
"""
    slim, stock = _python(code, librosa_in=slim_copy), _python(code, librosa_in=None)
    assert slim["file"] != stock["file"]
    np.testing.assert_array_equal(slim["percussive"], stock["percussive"])


def test_slim_librosa_refuses_files_it_was_not_written_for(slim_copy: Path, tmp_path: Path) -> None:
    """Slimming twice finds the eager import gone: the build stops, naming the file."""
    shutil.copytree(slim_copy / "librosa", tmp_path / "librosa")
    with pytest.raises(RuntimeError, match=r"librosa/effects.py: expected one 'from . import decompose'"):
        slim_librosa(tmp_path / "librosa")
