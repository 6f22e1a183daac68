"""Metrics, alerts and the dashboard, checked with the real Prometheus tools.

The request metrics are read from the real service (``audio-maas serve`` on loopback). The chart's
PrometheusRule is checked and unit-tested with ``promtool`` (Debian's ``prometheus`` package, which
``make test`` installs), and a real Prometheus server scrapes the running service: every dashboard
query and every alert's expression must return data from our own metrics. Only the relabelling a
PodMonitor does in a cluster (the pod's ``component`` label) is stood in for, by static labels.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from audio_maas.deploy.chart import CHART_DIR, render
from audio_maas.serving.settings import ServiceSettings
from tests.conftest import free_port_pair

PROMETHEUS, PROMTOOL = shutil.which("prometheus") or "prometheus", shutil.which("promtool") or "promtool"
RULE_VALUES = {"metrics": {"prometheusRule": {"enabled": True}}}
COMPARISON = re.compile(r"\s*(>|==)\s*[0-9.]+\s*$")
"""An alert's threshold, cut off to leave the query it compares."""


def _rule_groups() -> list[dict[str, Any]]:
    (rule,) = [obj for objects in render(RULE_VALUES).values() for obj in objects if obj["kind"] == "PrometheusRule"]
    return list(rule["spec"]["groups"])


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((CHART_DIR / "dashboards" / "audio-maas.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def _metrics(url: str) -> str:
    return str(urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` with exactly ``labels`` in the exposition ``text``; 0 if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def _wav(fsdd_dir: Path) -> bytes:
    return sorted((fsdd_dir / "recordings").glob("*.wav"))[0].read_bytes()


def _traffic(service: ServiceSettings, fsdd_dir: Path) -> None:
    """Good and bad requests on both protocols: two answered, two refused with 400 / INVALID_ARGUMENT."""
    audio = {"name": "audio", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(_wav(fsdd_dir)).decode()]}
    infer = f"{service.url}/v2/models/digits/infer"
    assert requests.post(infer, json={"inputs": [audio]}, timeout=30).status_code == 200
    assert requests.post(infer, json={"inputs": [{**audio, "data": ["bm90IGF1ZGlv"]}]}, timeout=30).status_code == 400
    subprocess.run([sys.executable, "-c", GRPC_TRAFFIC, f"127.0.0.1:{service.grpc_port}"], check=True, timeout=60)


GRPC_TRAFFIC = """
import sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
client = grpcclient.InferenceServerClient(sys.argv[1])
audio = grpcclient.InferInput("audio", [1], "BYTES")
audio.set_data_from_numpy(np.array([b"not audio"], dtype=object))
try:
    client.infer("digits", [audio])
    raise SystemExit("bad audio was answered")
except InferenceServerException as error:
    assert "INVALID_ARGUMENT" in str(error.status()), error.status()
"""


def test_every_inference_request_is_counted_and_timed_by_protocol_and_outcome(
    service: ServiceSettings, fsdd_dir: Path
) -> None:
    before = _metrics(service.url)
    _traffic(service, fsdd_dir)
    unserved = f"{service.url}/v2/models/no-such-model/infer"
    assert requests.post(unserved, json={}, timeout=30).status_code == 400  # refused before the name is looked up
    wav = base64.b64encode(_wav(fsdd_dir)).decode()
    body = {"inputs": [{"name": "audio", "shape": [1], "datatype": "BYTES", "data": [wav]}]}
    assert requests.post(unserved, json=body, timeout=30).status_code == 404
    after = _metrics(service.url)

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    rest = {"model": "digits", "protocol": "rest"}
    assert delta("audio_maas_requests_total", **rest, code="200", outcome="ok") == 1
    assert delta("audio_maas_requests_total", **rest, code="400", outcome="client_error") == 1
    assert delta("audio_maas_requests_total", model="digits", protocol="grpc", code="INVALID_ARGUMENT",
                 outcome="client_error") == 1  # fmt: skip
    assert delta("audio_maas_request_seconds_count", **rest) == 2
    # A name not served is counted under "-": clients cannot grow the label set.
    unserved = {"model": "-", "protocol": "rest", "outcome": "client_error"}
    assert delta("audio_maas_requests_total", **unserved, code="404") == delta(
        "audio_maas_requests_total", **unserved, code="400"
    ) == 1  # fmt: skip
    assert "no-such-model" not in after
    assert _sample(after, "audio_maas_model_ready", model="digits") == 1
    predictor = _metrics(f"http://127.0.0.1:{service.predictor_http_port}")
    assert _sample(predictor, "audio_maas_model_ready", model="digits") == 1


def test_promtool_accepts_the_rules_and_their_unit_tests_pass(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": _rule_groups()}))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout
    unit = tmp_path / "rules_test.yaml"
    unit.write_text(yaml.safe_dump(ALERT_TESTS | {"rule_files": [str(rules)]}))
    tested = subprocess.run([PROMTOOL, "test", "rules", str(unit)], capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


T, P = 'component="transformer",model="digits"', 'component="predictor",model="digits"'
ERROR_DESCRIPTION = (
    "Requests answered 5xx (gRPC INTERNAL, UNAVAILABLE...) over 5 minutes; "
    "503 names a predictor that is away or a model mismatch."
)
ALERT_TESTS: dict[str, Any] = {
    "evaluation_interval": "1m",
    "tests": [
        {   # 10% of requests fail from minute 0: the error alert fires after its 5 minutes, nothing else.
            "interval": "1m",
            "input_series": [
                _series("audio_maas_requests_total", f'{T},outcome="ok",code="200",protocol="rest"', "0+90x20"),
                _series("audio_maas_requests_total", f'{T},outcome="server_error",code="503"', "0+10x20"),
                _series("audio_maas_request_seconds_bucket", f'{T},protocol="rest",le="0.05"', "0+100x20"),
                _series("audio_maas_request_seconds_bucket", f'{T},protocol="rest",le="+Inf"', "0+100x20"),
                _series("audio_maas_model_ready", P, "1x20"),
                _series("audio_maas_batch_size_bucket", f'{P},le="16.0"', "0+100x20"),
                _series("audio_maas_batch_size_count", P, "0+100x20"),
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "AudioMaasErrorRatioHigh", "exp_alerts": []},
                {"eval_time": "10m", "alertname": "AudioMaasErrorRatioHigh", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "model": "digits"}, "exp_annotations": {
                        "summary": "Model digits answers 10% of its requests with a server error",
                        "description": ERROR_DESCRIPTION}}]},
                {"eval_time": "15m", "alertname": "AudioMaasLatencyHigh", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "AudioMaasPredictorNotReady", "exp_alerts": []},
                {"eval_time": "15m", "alertname": "AudioMaasBatchesFull", "exp_alerts": []},
            ],
        },
        {   # Slow answers, full batches, and a predictor that stopped serving; no errors at all.
            "interval": "1m",
            "input_series": [
                _series("audio_maas_requests_total", f'{T},outcome="ok",code="200",protocol="rest"', "0+100x30"),
                _series("audio_maas_request_seconds_bucket", f'{T},protocol="rest",le="0.25"', "0+50x30"),
                _series("audio_maas_request_seconds_bucket", f'{T},protocol="rest",le="1.0"', "0+100x30"),
                _series("audio_maas_request_seconds_bucket", f'{T},protocol="rest",le="+Inf"', "0+100x30"),
                _series("audio_maas_model_ready", P, "1x5 0x25"),
                _series("audio_maas_batch_size_bucket", f'{P},le="16.0"', "0+10x30"),
                _series("audio_maas_batch_size_count", P, "0+100x30"),
            ],
            "alert_rule_test": [
                {"eval_time": "20m", "alertname": "AudioMaasErrorRatioHigh", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "AudioMaasLatencyHigh", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "model": "digits"}, "exp_annotations": {
                        "summary": "Model digits answers in 985ms at p99",
                        "description": "The 99th percentile of request time over 5 minutes is above 0.5 s; "
                                       "see the stage panels of the dashboard."}}]},
                {"eval_time": "20m", "alertname": "AudioMaasPredictorNotReady", "exp_alerts": [
                    {"exp_labels": {"severity": "critical", "model": "digits"}, "exp_annotations": {
                        "summary": "The predictor of model digits has not served for 5 minutes",
                        "description": "A predictor's model is loading or failed to load; its log names why."}}]},
                {"eval_time": "20m", "alertname": "AudioMaasBatchesFull", "exp_alerts": [
                    {"exp_labels": {"severity": "warning", "model": "digits"}, "exp_annotations": {
                        "summary": "Model digits: 90% of predictor batches are over half full",
                        "description": "Requests queue for the predictor (batches over 16 of 32 rows); "
                                       "add predictor replicas or GPUs."}}]},
            ],
        },
    ],
}  # fmt: skip
"""promtool unit tests: each alert fires on what it names, and only then."""


@pytest.fixture
def prometheus(service: ServiceSettings, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus scraping both servers every second; its base URL."""
    port = free_port_pair()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "audio-maas", "static_configs": [
                {"targets": [f"127.0.0.1:{service.http_port}"], "labels": {"component": "transformer"}},
                {"targets": [f"127.0.0.1:{service.predictor_http_port}"], "labels": {"component": "predictor"}},
            ]},
        ],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        answer = json.loads(urllib.request.urlopen(url, timeout=5).read())
    except OSError:
        return []  # not up yet
    assert answer["status"] == "success", (expr, answer)
    return list(answer["data"]["result"])


def test_prometheus_scrapes_the_service_and_every_dashboard_query_and_alert_returns_data(
    service: ServiceSettings, fsdd_dir: Path, prometheus: str
) -> None:
    queries = [expr.replace("$__rate_interval", "1m").replace('model=~"$model"', 'model=~".*"')
               for expr in _dashboard_queries()]  # fmt: skip
    queries += [COMPARISON.sub("", rule["expr"].strip()) for group in _rule_groups() for rule in group["rules"]]
    assert len(queries) >= 12
    missing = queries
    deadline = time.monotonic() + 60
    while missing and time.monotonic() < deadline:
        _traffic(service, fsdd_dir)  # rates need two scrapes with requests between them
        time.sleep(2)
        missing = [expr for expr in missing if not _query(prometheus, expr)]
    assert missing == []
