"""``audio-maas deploy`` and ``status`` through the real ``kubernetes`` client.

No Kubernetes cluster runs here, so the API server is a fake: a loopback HTTP server that
records each request the client sends and answers with InferenceService documents in the shape
KServe writes (tests/data/inferenceservices, checked against the status schema of KServe's CRD).
What is real: the kubernetes client, its kubeconfig loading, the request paths, queries, content
types and bodies, and our parsing of the answers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import yaml

from audio_maas.cli import main
from audio_maas.deploy.chart import manifests
from audio_maas.deploy.cluster import parse_status

DATA = Path(__file__).parent / "data" / "inferenceservices"
SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"
VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0", "gitCommit": "0" * 40, "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc", "platform": "linux/amd64",
}  # fmt: skip
"""What GET /version answers on a real API server."""
ISVC_PATH = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/digits-audio-maas"


def _document(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / f"{name}.json").read_text()))


def _pod(component: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"name": f"digits-{component}-{ready}", "labels": {"component": component}},
        "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
    }


class FakeApiServer(ThreadingHTTPServer):
    """Records requests; answers GETs of the InferenceService from ``documents``, one per call."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.documents: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.refuse_apply: tuple[int, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest's output clean
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, body: Any = None) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        self.server.requests.append(
            {"method": self.command, "path": parts.path, "query": parse_qs(parts.query),
             "content_type": self.headers.get("content-type"), "body": body}
        )  # fmt: skip
        return parts.path, parse_qs(parts.query)

    def do_GET(self) -> None:
        path, _ = self._record()
        if path.rstrip("/") == "/version":
            self._answer(200, VERSION)
        elif path == ISVC_PATH and self.server.documents:
            document = self.server.documents.pop(0) if len(self.server.documents) > 1 else self.server.documents[0]
            self._answer(200, document)
        elif path == "/api/v1/namespaces/ml/pods":
            self._answer(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": self.server.pods})
        else:
            self._answer(404, {"kind": "Status", "status": "Failure", "message": f"{path} not found", "code": 404})

    def do_PATCH(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self._record(body)
        if self.server.refuse_apply is not None:
            code, message = self.server.refuse_apply
            self._answer(code, {"kind": "Status", "status": "Failure", "message": message, "code": code})
        else:
            self._answer(200, body)


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(api_server: FakeApiServer, tmp_path: Path) -> str:
    host = f"http://127.0.0.1:{api_server.server_address[1]}"
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": host}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me", "namespace": "ml"}}],
        "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_status_documents_fit_kserve_crd_status_schema() -> None:
    crd = yaml.safe_load((SPECS / "serving.kserve.io_inferenceservices.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    for name in ("starting", "ready", "canary", "failed"):
        jsonschema.validate(_document(name), version["schema"]["openAPIV3Schema"])


def test_parse_status_reads_readiness_url_traffic_and_the_reason_for_waiting() -> None:
    ready = parse_status(_document("ready"), [_pod("predictor", True), _pod("transformer", True)])
    assert ready.ready and ready.url == "http://digits-audio-maas.ml.example.com" and ready.waiting_on == []
    assert ready.components["predictor"].traffic == {"digits-audio-maas-predictor-00001": 100}
    assert (ready.components["predictor"].pods_ready, ready.components["predictor"].pods_total) == (1, 1)

    canary = parse_status(_document("canary"))
    assert canary.components["transformer"].traffic == {
        "digits-audio-maas-transformer-00002": 10,
        "digits-audio-maas-transformer-00001": 90,
    }
    failed = parse_status(_document("failed"), [_pod("predictor", False)])
    assert not failed.ready and failed.url is None
    assert failed.waiting_on[0].startswith("PredictorReady: RevisionFailed: Revision")
    assert "Back-off pulling image" in failed.waiting_on[0]
    assert failed.components["predictor"].latest_ready_revision is None
    assert (failed.components["predictor"].pods_ready, failed.components["predictor"].pods_total) == (0, 1)


def test_deploy_applies_the_chart_server_side_and_waits_for_ready(
    api_server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.documents = [_document("starting"), _document("starting"), _document("ready")]
    code = main(["deploy", "--kubeconfig", kubeconfig, "-n", "ml", "--set", "networkPolicy.enabled=true",
                 "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
                 "--timeout", "30"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    patches = [r for r in api_server.requests if r["method"] == "PATCH"]
    metrics = {"podMonitor": {"enabled": True}, "grafanaDashboard": {"enabled": True}}
    values = {"networkPolicy": {"enabled": True}, "metrics": metrics}
    expected = manifests(values, release="digits", namespace="ml")
    assert [r["path"] for r in patches] == [  # the runtime before the InferenceService that names it
        "/apis/serving.kserve.io/v1alpha1/namespaces/ml/servingruntimes/digits-audio-maas",
        "/api/v1/namespaces/ml/configmaps/digits-audio-maas-dashboard",
        ISVC_PATH,
        "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies/digits-audio-maas-predictor",
        "/apis/monitoring.coreos.com/v1/namespaces/ml/podmonitors/digits-audio-maas",
    ]
    for request, obj in zip(patches, expected, strict=True):
        assert request["content_type"] == "application/apply-patch+yaml"  # server-side apply
        assert request["query"] == {"fieldManager": ["audio-maas"], "force": ["true"]}
        assert request["body"] == obj
    assert "waiting on PredictorReady: RevisionMissing" in out
    assert "digits-audio-maas: Ready" in out
    assert "try: audio-maas predict --url http://digits-audio-maas.ml.example.com --model-name digits FILE.wav" in out


def test_deploy_dry_run_asks_the_server_to_persist_nothing_and_does_not_wait(
    api_server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "--kubeconfig", kubeconfig, "-n", "ml", "--dry-run"]) == 0
    patches = [r for r in api_server.requests if r["method"] == "PATCH"]
    assert [r["query"]["dryRun"] for r in patches] == [["All"], ["All"]]  # the runtime and the InferenceService
    assert not [r for r in api_server.requests if r["path"] == ISVC_PATH and r["method"] == "GET"]
    assert "InferenceService/digits-audio-maas valid (server dry run)" in capsys.readouterr().out


def test_deploy_reports_what_the_api_server_refused(
    api_server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.refuse_apply = (422, 'admission webhook "servingruntime.kserve-webhook-server.validator" denied it')
    assert main(["deploy", "--kubeconfig", kubeconfig, "-n", "ml"]) == 2
    err = capsys.readouterr().err
    assert "applying ServingRuntime/digits-audio-maas failed (422): admission webhook" in err


def test_deploy_refuses_invalid_values_before_calling_the_cluster(
    api_server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["deploy", "--kubeconfig", kubeconfig, "--set", "predictor.autoscaling.scaleMetric=gpu"]) == 2
    err = capsys.readouterr().err
    assert "invalid chart values" in err and "scaleMetric" in err
    assert api_server.requests == []


def test_status_prints_conditions_pods_and_traffic_split(
    api_server: FakeApiServer, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    api_server.documents = [_document("canary")]
    api_server.pods = [_pod("predictor", True), _pod("predictor", False), _pod("transformer", True)]
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "ml"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits-audio-maas: Ready  http://digits-audio-maas.ml.example.com")
    assert "predictor    pods ready 1/2  revision digits-audio-maas-predictor-00002  traffic: " in out
    assert "digits-audio-maas-predictor-00002 10%, digits-audio-maas-predictor-00001 90%" in out


def test_status_of_a_missing_service_says_so(kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--kubeconfig", kubeconfig, "-n", "ml", "nope"]) == 2
    assert "no InferenceService nope in namespace ml" in capsys.readouterr().err


def test_an_unreachable_cluster_is_named_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}}],
                "users": [{"name": "me", "user": {"token": "x"}}],
            }
        )
    )
    assert main(["status", "--kubeconfig", str(config)]) == 2
    assert "cannot reach the Kubernetes API at https://127.0.0.1:1" in capsys.readouterr().err


def test_no_kubeconfig_at_all_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", "--kubeconfig", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "no Kubernetes cluster configured" in capsys.readouterr().err
