"""Every change we make to KServe's installed files, run when the serving images are built (never
at run time). Written against KServe ``KSERVE_VERSION``.

- :func:`slim_kserve`: ``import kserve`` no longer imports KServe's control-plane client (the
  Kubernetes client and about 140 generated API classes) nor pandas (for two DataFrame helpers that
  only KServe's sklearn-style servers call), so that the images can leave both out.

``tests/test_kserve_patches.py`` fails when an upgrade moves what this relies on.
"""

from __future__ import annotations

from pathlib import Path

from audio_maas.images.patching import installed_package, text_with_one
from audio_maas.kserve import KSERVE_VERSION

__all__ = ["slim_kserve"]

_CONTROL_PLANE_FROM = "from .api.kserve_client import KServeClient\n"
"""The first line of ``kserve/__init__.py``'s control-plane half, which runs to the end of the file."""

_LAZY_CONTROL_PLANE = """
def __getattr__(name):
    # Written by audio-maas's image build (audio_maas.images.slim_kserve.slim_kserve): the control-plane
    # client is imported on first use, so that serving needs neither it nor the Kubernetes client.
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(__name__ + "._control_plane"), name)
"""

_PANDAS_IMPORT = "import pandas as pd\n"

_OPTIONAL_PANDAS = """try:
    import pandas as pd
except ImportError:  # audio-maas's serving images leave pandas out: only the DataFrame helpers use it
    pd = None
"""


def slim_kserve(package: Path | None = None) -> None:
    """Rewrite the installed KServe (``package``: its directory; the importable one by default)
    so that importing it needs neither the Kubernetes client nor pandas. For the serving images'
    build only; ``kserve`` keeps every name, the control-plane ones imported on first use.

    - ``kserve/__init__.py`` imports ``KServeClient``, the API client and the generated V1beta1
      classes; that half moves to ``kserve/_control_plane.py``, read by a module ``__getattr__``.
    - ``kserve/protocol/infer_type.py`` and ``kserve/utils/utils.py`` import pandas for
      ``InferRequest.as_dataframe`` and two helpers for sklearn-style servers; they name
      ``pd.DataFrame`` in annotations only, which ``from __future__ import annotations`` leaves
      unevaluated, so pandas becomes optional there.

    Raises ``RuntimeError`` naming the file when it does not read as KServe ``KSERVE_VERSION``'s.
    """
    package = package or installed_package("kserve")
    release = f"KServe {KSERVE_VERSION}"
    init = text_with_one(package / "__init__.py", _CONTROL_PLANE_FROM, release=release)
    cut = init.index(_CONTROL_PLANE_FROM)
    (package / "_control_plane.py").write_text(init[cut:])
    (package / "__init__.py").write_text(init[:cut] + _LAZY_CONTROL_PLANE)
    for relative in ("protocol/infer_type.py", "utils/utils.py"):
        text = text_with_one(package / relative, _PANDAS_IMPORT, release=release)
        text = text.replace(_PANDAS_IMPORT, _OPTIONAL_PANDAS)
        (package / relative).write_text("from __future__ import annotations\n" + text)
