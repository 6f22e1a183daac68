"""The package's layers and what each may import (``audio_maas/__init__.py`` names them).

Every import in every module counts, at any depth (a function's lazy import too): a layer may
import itself and the layers listed for it, and none of the third-party packages barred to it.
KServe belongs to one layer, the adapter (``kserve``): the servers' models know nothing of it,
and only their entry points (``__main__.py``, which start a server) import the adapter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audio_maas"

LAYERS: dict[str, set[str]] = {
    "protocol": set(),
    "features": {"protocol"},
    "savedmodel": {"protocol"},
    "serving": {"protocol"},
    "kserve": {"protocol", "serving"},
    "transformer": {"protocol", "features", "serving"},
    "predictor": {"protocol", "savedmodel", "serving"},
    "client": {"protocol"},
    "training": {"protocol", "features", "savedmodel", "pretrained"},
    "deploy": {"protocol"},
    "images": {"kserve"},  # KSERVE_VERSION, from the kserve layer's package alone
    "pretrained": {"protocol", "features"},
    "cli": {
        "protocol",
        "features",
        "savedmodel",
        "serving",
        "kserve",
        "transformer",
        "predictor",
        "client",
        "training",
        "deploy",
        "pretrained",
    },
}
"""Layer -> the other layers it may import. ``audio_maas`` itself (``CHECKOUT``) any may."""

ADAPTER = "kserve"
ENTRY_POINT = "__main__.py"
"""A layer's entry point starts its server: it alone may import the adapter layer too."""

WIRE = {"kserve", "fastapi", "starlette", "uvicorn", "grpc", "grpc_interceptor", "httpx", "websockets"}
"""The frameworks and the wire: the adapter's alone."""
SERVERS = WIRE | {"pydantic_settings", "prometheus_client"}
BARRED: dict[str, set[str]] = {
    "protocol": SERVERS - {"grpc"}
    | {"tensorflow", "keras", "librosa", "soundfile", "tritonclient"},  # grpc: its status codes
    "features": SERVERS | {"tensorflow", "keras"},
    "savedmodel": SERVERS | {"librosa"},
    "client": SERVERS | {"tensorflow", "keras", "librosa", "pydantic"},
    "training": SERVERS,
    "deploy": SERVERS | {"tensorflow", "keras", "librosa"},
    "serving": WIRE | {"tensorflow", "keras", "librosa"},
    "transformer": WIRE | {"tensorflow", "keras"},
    "predictor": WIRE | {"librosa", "soundfile"},
    "images": SERVERS | {"tensorflow", "keras", "librosa"},
    "pretrained": SERVERS,
}
"""Layer -> third-party packages it must not import: the client installs without the servers,
the front end without TensorFlow, each image without the other's libraries."""

KSERVE_INTERNALS_LAYER = "kserve"
"""The one layer that may import KServe's modules below its package (``kserve.protocol...``);
the servers use its public names (``from kserve import Model``) alone."""


def imports(source: str) -> list[str]:
    """Every module ``source`` imports, as written (absolute), at any depth."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def violations(layer: str, source: str, *, entry_point: bool = False) -> list[str]:
    """What in ``source``, a module of ``layer`` (its entry point, when ``entry_point``), breaks the layer's rules."""
    found = []
    allowed = LAYERS[layer] | ({ADAPTER} if entry_point else set())
    for name in imports(source):
        top, _, rest = name.partition(".")
        if top == "audio_maas" and rest:
            other = rest.split(".")[0]
            if other != layer and other not in allowed:
                found.append(f"imports {name}: layer '{layer}' may import {sorted(LAYERS[layer]) or 'no other layer'}")
        elif top in BARRED.get(layer, set()):
            found.append(f"imports {name}: barred from layer '{layer}'")
        elif top == "kserve" and rest and layer != KSERVE_INTERNALS_LAYER:
            found.append(f"imports {name}: KServe's internals belong to layer '{KSERVE_INTERNALS_LAYER}'")
    return found


def test_every_layer_is_named() -> None:
    folders = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert folders == set(LAYERS)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    problems = [
        f"{path.relative_to(PACKAGE.parent)}: {problem}"
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        for problem in violations(layer, path.read_text(), entry_point=path.name == ENTRY_POINT)
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("protocol", "import kserve", "barred from layer 'protocol'"),
        ("client", "def f():\n    from pydantic_settings import BaseSettings", "barred from layer 'client'"),
        ("transformer", "from audio_maas.savedmodel.load import load_serving_function", "may import"),
        ("predictor", "from audio_maas.transformer import model", "may import"),
        ("cli", "from kserve.protocol.grpc import grpc_predict_v2_pb2", "KServe's internals"),
        ("transformer", "from kserve import Model", "barred from layer 'transformer'"),
        ("predictor", "import kserve", "barred from layer 'predictor'"),
        ("transformer", "from audio_maas.kserve.adapter import KServeModel", "may import"),
        ("serving", "import grpc", "barred from layer 'serving'"),
        ("features", "import tensorflow as tf", "barred from layer 'features'"),
    ],
)
def test_a_forbidden_import_is_caught(layer: str, source: str, expected: str) -> None:
    """The rules themselves bite: each of these would fail the test above."""
    (problem,) = violations(layer, source)
    assert expected in problem


def test_what_a_layer_may_import_passes() -> None:
    allowed = (
        "from audio_maas.protocol.contract import INPUT_NAME\nfrom prometheus_client import Histogram\nimport numpy"
    )
    assert violations("transformer", allowed) == []
    assert violations("transformer", "from audio_maas.kserve.server import run", entry_point=True) == []


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_layer_readme_names_every_module(layer: str) -> None:
    """A layer's README says what each of its modules is for: none is left out."""
    readme = PACKAGE / layer / "README.md"
    modules = sorted(path.name for path in (PACKAGE / layer).glob("*.py") if path.name != "__init__.py")
    if not readme.is_file():
        pytest.fail(f"{layer} has no README.md naming its modules {modules}")
    text = readme.read_text()
    assert [module for module in modules if f"`{module}`" not in text] == []
