"""``audio_maas.kserve.patches`` stands on KServe internals: these fail when an upgrade moves them.

The behaviour each patch gives is tested against the real servers elsewhere (``test_errors``,
``test_readiness``, ``test_service``); here, that what the patches override and read is still
where they were written to find it, so that an upgrade fails loudly rather than quietly
serving KServe's behaviour again.
"""

from __future__ import annotations

import inspect
import shutil
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from kserve import InferInput, model_server
from kserve import ModelServer as KServeModelServer
from kserve.protocol.dataplane import DataPlane as KServeDataPlane
from kserve.protocol.grpc.server import GRPCServer as KServeGRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer as KServeInferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v2_endpoints import V2Endpoints

from audio_maas.images.slim_kserve import slim_kserve
from audio_maas.kserve import KSERVE_VERSION
from audio_maas.kserve.patches import DataPlane, InferenceServicer
from tests.conftest import REPO, patched_copy, run_python


def test_the_installed_kserve_is_the_one_the_patches_were_written_against() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"kserve=={KSERVE_VERSION}" in dependencies["serving"]
    assert version("kserve") == KSERVE_VERSION


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_methods_we_override_keep_their_signatures() -> None:
    assert _parameters(KServeDataPlane.ready) == ["self"]
    assert _parameters(KServeDataPlane.infer) == ["self", "model_name", "request", "headers"]
    assert _parameters(KServeDataPlane.model_metadata) == ["self", "model_name"]
    assert _parameters(KServeDataPlane.encode) == ["self", "model_name", "response", "headers", "req_attributes"]
    assert _parameters(KServeDataPlane.decode_inference_request) == ["self", "body", "headers", "model_name"]
    assert _parameters(KServeGRPCServer.__init__)[:4] == ["self", "port", "data_plane", "model_repository_extension"]
    assert _parameters(KServeGRPCServer.start) == ["self", "max_workers"]
    assert "validate_grpc_request" in vars(KServeInferenceServicer)
    assert "registered_models" in _parameters(KServeModelServer.__init__)
    for method in ("index", "load", "unload"):
        assert method in vars(ModelRepositoryExtension)
    for ours, theirs in [(DataPlane, KServeDataPlane), (InferenceServicer, KServeInferenceServicer)]:
        assert issubclass(ours, theirs)


def test_what_the_patches_read_is_still_there() -> None:
    """Module globals, private attributes and the order in which KServe sets up its app."""
    assert hasattr(model_server, "app") and hasattr(model_server, "parser")
    assert {"enable_latency_logging", "model_name"} <= {action.dest for action in model_server.parser._actions}
    assert "_raw_data" in vars(InferInput(name="x", shape=[1], datatype="FP32"))
    grpc_init = inspect.getsource(KServeGRPCServer.__init__)
    assert all(f"self.{name}" in grpc_init for name in ("_kwargs", "_data_plane", "_model_repository_extension"))
    # KServe adds its error handlers and TimingMiddleware when its REST server starts, after
    # ours: finish_app undoes them from a startup event.
    create = inspect.getsource(RESTServer.create_application)
    assert create.index("_add_middlewares") < create.index("_add_exception_handlers")
    assert "TimingMiddleware" in inspect.getsource(RESTServer._add_middlewares)
    # _infer_route calls KServe's endpoint as FastAPI did, positionally.
    infer = list(inspect.signature(V2Endpoints.infer).parameters)
    assert infer[:5] == ["self", "raw_request", "raw_response", "model_name", "request_body"]
    # Our repository extension is set after ModelServer.__init__ and read by start(); KServe's
    # gRPC servicer reads load and unload answers as dicts.
    start = inspect.getsource(KServeModelServer.start)
    assert "self.model_repository_extension" in start
    servicer = inspect.getsource(KServeInferenceServicer.RepositoryModelLoad)
    assert 'response["name"]' in servicer and 'response["load"]' in servicer


_WITHOUT_KUBERNETES_AND_PANDAS = """
import sys

class LeftOut:  # as in the serving images, where neither is installed
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("kubernetes", "pandas"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, LeftOut())
"""


@pytest.fixture(scope="module")
def slim_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the installed KServe, slimmed as the image build slims it."""
    return patched_copy(tmp_path_factory.mktemp("slim"), "kserve", slim_kserve)


def test_slim_kserve_serves_without_kubernetes_or_pandas(slim_copy: Path) -> None:
    """Both servers' modules import with neither installed, and a request goes through KServe's codec."""
    out = run_python(
        _WITHOUT_KUBERNETES_AND_PANDAS
        + """
import kserve, audio_maas.kserve.server, audio_maas.kserve.repository, audio_maas.transformer.model, kserve.model_server
from kserve import InferRequest, InferInput
print(kserve.__file__)
print(sorted({m.partition(".")[0] for m in sys.modules} & {"kubernetes", "pandas"}))
request = InferRequest(model_name="m", infer_inputs=[InferInput("x", [2], "FP32", data=[1.0, 2.0])])
print(request.inputs[0].as_numpy().tolist())
try:
    kserve.KServeClient
except ModuleNotFoundError as error:
    print("KServeClient:", error)
""",
        first_on_path=slim_copy,
    )
    assert out.splitlines() == [
        str(slim_copy / "kserve" / "__init__.py"),
        "[]",
        "[1.0, 2.0]",
        "KServeClient: No module named 'kubernetes'",
    ]


def test_slim_kserve_keeps_every_name_where_both_are_installed(slim_copy: Path) -> None:
    out = run_python(
        """
import kserve
from kserve import InferRequest, InferInput
print(kserve.KServeClient.__module__, kserve.V1beta1InferenceService.__name__, kserve.ApiException.__name__)
request = InferRequest(model_name="m", infer_inputs=[InferInput("x", [2], "FP32", data=[1.0, 2.0])])
print(request.as_dataframe()["x"].tolist())
""",
        first_on_path=slim_copy,
    )
    assert out.splitlines() == ["kserve.api.kserve_client V1beta1InferenceService ApiException", "[1.0, 2.0]"]


def test_slim_kserve_refuses_files_it_was_not_written_for(slim_copy: Path, tmp_path: Path) -> None:
    """Slimming twice finds the control-plane line gone: the build stops, naming the file."""
    shutil.copytree(slim_copy / "kserve", tmp_path / "kserve")
    with pytest.raises(RuntimeError, match=r"kserve/__init__.py: expected one 'from .api.kserve_client import"):
        slim_kserve(tmp_path / "kserve")
