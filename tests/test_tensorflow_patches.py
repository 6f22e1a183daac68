"""``audio_maas.images.slim_tensorflow`` rewrites TensorFlow's installed files: these fail when an upgrade moves
what it relies on, or when the slimmed TensorFlow stops serving the bundled models as the stock one does.

The image build slims TensorFlow in place; here a copy of its ``__init__.py`` is slimmed beside links
to the rest of the installed package, and both are imported in fresh interpreters.
"""

from __future__ import annotations

import json
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from audio_maas.images.patching import installed_package
from audio_maas.images.slim_tensorflow import TENSORFLOW_VERSION, slim_tensorflow
from tests.conftest import REPO, run_python


def test_the_installed_tensorflow_is_the_one_the_patches_were_written_against() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"tensorflow-cpu=={TENSORFLOW_VERSION}" in dependencies["predictor"]
    assert version("tensorflow-cpu") == TENSORFLOW_VERSION


@pytest.fixture(scope="module")
def slim_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The installed TensorFlow with its ``__init__.py`` slimmed as the image build slims it."""
    installed = installed_package("tensorflow")
    package = tmp_path_factory.mktemp("slim") / "tensorflow"
    package.mkdir()
    for entry in installed.iterdir():
        if entry.name not in ("__init__.py", "__pycache__"):
            (package / entry.name).symlink_to(entry)
    (package / "__init__.py").write_text((installed / "__init__.py").read_text())
    slim_tensorflow(package)
    return package.parent


_SERVE_THE_BUNDLED_MODELS = """
import json, sys
sys.modules["keras"] = None  # as in the predictor image, which leaves Keras out
import numpy as np
import tensorflow as tf
from pathlib import Path
from audio_maas.savedmodel.load import load_serving_function

api = ("__internal__", "compat", "distribute", "lite")
before = [name for name in api if f"tensorflow._api.v2.{name}" in sys.modules]
outputs = {}
for model in sorted(Path("models").iterdir()):
    function = load_serving_function(model)
    shape = [3, *function.structured_input_signature[1]["features"].shape[1:]]
    features = np.sin(np.arange(np.prod(shape), dtype=np.float32)).reshape(shape)
    outputs[model.name] = function(features=tf.constant(features))["probabilities"].numpy().tolist()
print(json.dumps({
    "file": tf.__file__,
    "imported_at_start": before,
    "outputs": outputs,
    "all": sorted(tf.__all__),
    "names": [tf.compat.v1.Session.__name__, tf.__internal__.__name__, tf.lite.Interpreter.__name__,
              tf.nn.relu.__name__],
}))
"""


def _serve(*, tensorflow_in: Path | None) -> dict[str, Any]:
    """Run the bundled models through ``tensorflow_in``'s TensorFlow (the installed one by default)."""
    out = run_python(_SERVE_THE_BUNDLED_MODELS, first_on_path=tensorflow_in, TF_CPP_MIN_LOG_LEVEL="3")
    answer: dict[str, Any] = json.loads(out.splitlines()[-1])
    return answer


def test_slim_tensorflow_imports_the_api_on_first_use_and_serves_as_the_stock_one(slim_copy: Path) -> None:
    slim, stock = _serve(tensorflow_in=slim_copy), _serve(tensorflow_in=None)
    assert slim["file"] == str(slim_copy / "tensorflow" / "__init__.py")
    assert stock["file"] != slim["file"]
    assert slim["imported_at_start"] == []
    assert stock["imported_at_start"] == ["__internal__", "compat", "distribute", "lite"]
    assert slim["outputs"] == stock["outputs"]
    assert sorted(slim["outputs"]) == ["digits", "digits-lstm", "sounds"]
    assert slim["all"] == stock["all"]
    assert slim["names"] == stock["names"] == ["Session", "tensorflow._api.v2.__internal__", "Interpreter", "relu"]


def test_slim_tensorflow_refuses_files_it_was_not_written_for(slim_copy: Path, tmp_path: Path) -> None:
    """Slimming twice finds the eager imports gone: the build stops, naming the file."""
    (tmp_path / "__init__.py").write_text((slim_copy / "tensorflow" / "__init__.py").read_text())
    with pytest.raises(RuntimeError, match=r"__init__.py: expected the public API's submodules imported eagerly"):
        slim_tensorflow(tmp_path)
