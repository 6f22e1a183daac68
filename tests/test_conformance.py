"""Open Inference Protocol conformance of the running transformer, checked by schemathesis.

schemathesis generates requests from the official REST spec (../shared/specs/open_inference_rest.yaml),
sends them to the real service, and checks every answer: no server errors, status codes and
bodies as the spec documents them, malformed input refused with 4xx. The spec's path templates
are written ``${MODEL_NAME}``; they become ``{MODEL_NAME}`` here, in memory, and each versioned
model path gets its unversioned twin, which the protocol allows. Path parameters are pinned to
the served model and version: unknown names and versions are covered in test_service.py.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
import yaml
from schemathesis.config import SchemathesisConfig

from audio_maas.serving.settings import ServiceSettings

PINNED = {"MODEL_NAME": "digits", "MODEL_VERSION": "1"}
"""The served model and version; generated requests go to them."""
SPEC = Path(__file__).resolve().parents[2] / "shared" / "specs" / "open_inference_rest.yaml"


def _spec() -> dict[str, Any]:
    text = SPEC.read_text().replace("${MODEL_NAME}", "{MODEL_NAME}").replace("${MODEL_VERSION}", "{MODEL_VERSION}")
    spec: dict[str, Any] = yaml.safe_load(text)
    for item in spec["paths"].values():
        for parameter in item.get("parameters", []):
            parameter["schema"] = {"type": "string", "enum": [PINNED[parameter["name"]]]}
    for path, item in list(spec["paths"].items()):
        if "/versions/{MODEL_VERSION}" in path:
            twin = copy.deepcopy(item)
            twin["parameters"] = [p for p in twin.get("parameters", []) if p["name"] != "MODEL_VERSION"]
            for operation in twin.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    operation["operationId"] += "-unversioned"
            spec["paths"][path.replace("/versions/{MODEL_VERSION}", "")] = twin
    return spec


@pytest.fixture(scope="module")
def conformance_schema(service: ServiceSettings) -> Any:
    config = SchemathesisConfig.from_dict({"base-url": service.url})
    return schemathesis.openapi.from_dict(_spec(), config=config)


OPERATIONS = sorted(
    f"{method.upper()} {path}"
    for path, item in _spec()["paths"].items()
    for method in item
    if method in {"get", "post"}
)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_conforms_to_the_open_inference_protocol(conformance_schema: Any, operation: str) -> None:
    """Well-formed and malformed requests (schemathesis's positive and negative modes), driven
    through hypothesis directly: schemathesis's own pytest plugin does not load under pytest 9."""
    method, path = operation.split(" ", 1)
    api_operation = conformance_schema[path][method]
    pinned = {name: value for name, value in PINNED.items() if f"{{{name}}}" in path}
    strategies = [api_operation.as_strategy(mode, path_parameters=pinned) for mode in schemathesis.GenerationMode]
    # The spec is model-agnostic: any inputs list is schema-valid, but this model takes one
    # 'audio' or 'waveform' input of real audio, so a valid-looking request may rightly get 400.
    excluded = [schemathesis.checks.positive_data_acceptance] if path.endswith("/infer") else []

    @hypothesis.settings(
        max_examples=60, deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
    )
    @hypothesis.given(case=hypothesis.strategies.one_of(strategies))
    def conforms(case: schemathesis.Case) -> None:
        response = case.call_and_validate(excluded_checks=excluded)
        if response.status_code >= 400:
            assert set(response.json()) == {"error"}, response.text  # the V2 error body, not FastAPI's

    conforms()


@pytest.mark.parametrize(
    "path", ["/v2/models/{MODEL_NAME}/infer", "/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer"]
)
def test_a_real_answer_conforms_too(conformance_schema: Any, fsdd_dir: Path, path: str) -> None:
    """Generated bodies are rarely audio, so send one real recording and check the 200 the same way."""
    recording = (fsdd_dir / "recordings" / "3_theo_0.wav").read_bytes()
    audio = {"name": "audio", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(recording).decode()]}
    pinned = {name: value for name, value in PINNED.items() if f"{{{name}}}" in path}
    case = conformance_schema[path]["POST"].Case(
        body={"inputs": [audio]}, media_type="application/json", path_parameters=pinned
    )
    response = case.call_and_validate()
    assert response.status_code == 200
    assert response.headers["content-type"] == ["application/json"]
    answer = response.json()
    assert answer["model_version"] == "1" and answer["outputs"][0]["data"] == ["3"]
    assert "null" not in response.text
