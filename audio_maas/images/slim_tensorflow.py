"""Every change we make to TensorFlow's installed files, in one place. Written against TensorFlow 2.21.0.

- :func:`slim_tensorflow`, run on the installed files when the predictor image is built (not at
  run time): ``import tensorflow`` no longer imports every submodule of the public API
  (``tf.__internal__``, ``tf.compat``, ``tf.distribute``, ``tf.lite``...) before returning, only
  those a caller touches; serving touches few of them. That is about 30% of TensorFlow's import
  (about 1.4 s to 1.0 s in the image), and half of the modules it loaded.

``tests/test_tensorflow_patches.py`` fails when an upgrade moves what this relies on.
"""

from __future__ import annotations

import re
from pathlib import Path

from audio_maas.images.patching import installed_package

__all__ = ["TENSORFLOW_VERSION", "slim_tensorflow"]

TENSORFLOW_VERSION = "2.21.0"
"""The TensorFlow release these patches were written against; the pin in pyproject.toml."""

_API_IMPORT = re.compile(r"^from tensorflow\._api\.v2 import (\w+)\n", re.MULTILINE)
"""One line of ``tensorflow/__init__.py``'s eager imports of the public API's submodules."""

_EAGER = "bitwise"
"""``tensorflow/__init__.py`` reads ``bitwise.__file__`` to find the API's directory, so it stays."""

_BEFORE_ALL = "_names_with_underscore = "
"""Where ``__init__.py`` starts building ``__all__`` from ``dir()``: the hook goes just before."""

_LAZY_HOOK = """
_LAZY_SUBMODULES = {names!r}


def __getattr__(name):
  # Written by audio-maas's image build (audio_maas.images.slim_tensorflow.slim_tensorflow): the
  # public API's submodules (tf.compat, tf.lite...) are imported on first use, not at start.
  if name not in _LAZY_SUBMODULES:
    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")
  import importlib as _importlib
  module = _importlib.import_module("tensorflow._api.v2." + name)
  # Importing it may have imported a package of the same name (tensorflow/lite, say), which Python
  # binds here; the name must mean the public API's module, as it does when TensorFlow imports eagerly.
  for other in _LAZY_SUBMODULES:
    bound = globals().get(other)
    if bound is not None and bound.__name__ != "tensorflow._api.v2." + other:
      del globals()[other]
  globals()[name] = module
  return module


"""
"""Goes before ``__all__`` is built: the lazy submodules and the module ``__getattr__`` that imports them."""

_ALL_TOO = "\n__all__.extend([_s for _s in _LAZY_SUBMODULES if not _s.startswith('_')])\n"
"""``__all__`` came from ``dir()``, which no longer lists the lazy submodules: they are added back."""


def slim_tensorflow(package: Path | None = None) -> None:
    """Rewrite the installed TensorFlow's ``__init__.py`` (``package``: its directory; the importable
    one by default) so that the public API's submodules are imported on first use. For the
    predictor image's build only; ``tensorflow`` keeps every name and ``__all__`` stays the same.

    Raises ``RuntimeError`` naming the file when it does not read as TensorFlow ``TENSORFLOW_VERSION``'s.
    """
    init = (package or installed_package("tensorflow")) / "__init__.py"
    text = init.read_text()
    names = _API_IMPORT.findall(text)
    if _EAGER not in names or len(names) < 2 or text.count(_BEFORE_ALL) != 1:
        raise RuntimeError(
            f"{init}: expected the public API's submodules imported eagerly, {_EAGER} among them, and one"
            f" {_BEFORE_ALL.strip()!r}, as in TensorFlow {TENSORFLOW_VERSION}; found {len(names)} and"
            f" {text.count(_BEFORE_ALL)}"
        )
    lazy = tuple(name for name in names if name != _EAGER)
    text = _API_IMPORT.sub(lambda line: line.group(0) if line.group(1) == _EAGER else "", text)
    cut = text.index(_BEFORE_ALL)
    init.write_text(text[:cut] + _LAZY_HOOK.format(names=lazy) + text[cut:].rstrip("\n ") + _ALL_TOO)
