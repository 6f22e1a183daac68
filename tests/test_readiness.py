"""Server readiness tells the truth: ready only when every model is, on REST and gRPC alike.

The Open Inference Protocol's server-ready "indicates if all the models are ready for
inferencing" and is what a readinessProbe calls. KServe 0.21 answers it true as soon as the
server listens: 48 of 49 polls said ready while the model said 503.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
import requests
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from tests.conftest import free_port_pair
from tests.test_faults import _start_predictor, _start_transformer, _stop


@dataclass
class Poll:
    server_ready: bool
    model_ready: bool


def _rest_poll(base: str) -> Poll:
    """Server first, then the model: a server that says ready before its model would show."""

    def ok(path: str) -> bool:
        try:
            return requests.get(f"{base}{path}", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    return Poll(ok("/v2/health/ready"), ok("/v2/models/digits/ready"))


def _grpc_poll(stub: pb_grpc.GRPCInferenceServiceStub) -> Poll:
    def ask(call: object, request: object) -> bool:
        try:
            return bool(call(request, timeout=2).ready)  # type: ignore[operator]
        except grpc.RpcError:
            return False

    return Poll(
        ask(stub.ServerReady, pb.ServerReadyRequest()), ask(stub.ModelReady, pb.ModelReadyRequest(name="digits"))
    )


def test_server_ready_is_never_true_while_the_model_is_not_from_the_first_second() -> None:
    """The transformer starts with no predictor (its model cannot be ready), then the predictor
    starts; every server and model readiness is polled from the first second on both protocols."""
    transformer_port, predictor_port = free_port_pair(), free_port_pair()
    base = f"http://127.0.0.1:{transformer_port}"
    transformer = _start_transformer(transformer_port, predictor_port)
    predictor = None
    polls: dict[str, list[Poll]] = {"rest": [], "grpc": []}
    try:
        with grpc.insecure_channel(f"127.0.0.1:{transformer_port + 1}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            def poll() -> None:
                polls["rest"].append(_rest_poll(base))
                polls["grpc"].append(_grpc_poll(stub))

            deadline = time.monotonic() + 8  # the transformer's start, then serving without a predictor
            while time.monotonic() < deadline:
                poll()
                time.sleep(0.1)
            predictor = _start_predictor(predictor_port)
            deadline = time.monotonic() + 90
            while not (polls["rest"][-1].model_ready and polls["grpc"][-1].server_ready):
                assert time.monotonic() < deadline, "never ready"
                poll()
                time.sleep(0.1)
            poll()
    finally:
        _stop(transformer, predictor)
    for protocol, seen in polls.items():
        lies = [p for p in seen if p.server_ready and not p.model_ready]
        assert not lies, f"{protocol}: server ready while the model was not, in {len(lies)} of {len(seen)} polls"
        assert sum(not p.model_ready for p in seen) >= 20, f"{protocol}: too few polls before the model was ready"
        assert seen[-1] == Poll(server_ready=True, model_ready=True), protocol
