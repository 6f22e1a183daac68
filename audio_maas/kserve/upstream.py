"""The transformer's one client of its predictor: inference, load and unload, over gRPC or binary
REST, with the same address, TLS, timeout and token for every call, and one error mapping.

Features go out as the raw bytes of the numpy array and answers come back into numpy, with no
V2 object built in between. What the predictor answers becomes our error table's
(:func:`audio_maas.protocol.errors.error_class`): its refusal of a client's mistake stays that
(400, 404, 409, 413), its being away or not ready is 503, and any other failure of it is 502,
each message naming the predictor.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import grpc
import httpx
import numpy as np
from pydantic import SecretStr

from audio_maas.kserve.auth import bearer_header
from audio_maas.kserve.proto import pb, stub
from audio_maas.protocol.codec import BINARY_HEADER, Tensor, binary_body, split_binary_body, to_numpy
from audio_maas.protocol.contract import INPUT_NAME, MODEL_FINGERPRINT_PARAMETER, OUTPUT_NAME
from audio_maas.protocol.errors import BadGateway, BadRequest, ServiceError, UpstreamUnavailable, error_class

__all__ = ["PredictorClient"]


class PredictorClient:
    """Calls one predictor at ``host`` (``HOST:PORT``) over ``protocol``: ``grpc-v2`` or ``v2``
    (binary REST), with TLS when ``use_ssl``; every call carries ``auth_token`` when set.
    Channels and connections are opened once and kept."""

    def __init__(
        self,
        *,
        host: str,
        protocol: Literal["grpc-v2", "v2"],
        use_ssl: bool,
        timeout_s: float,
        auth_token: SecretStr | None,
    ) -> None:
        self.host = host
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._headers = bearer_header(auth_token)
        self._use_ssl = use_ssl
        self._grpc: Any = None
        self._http: httpx.AsyncClient | None = None

    def _stub(self) -> Any:
        """gRPC's channel is opened on first use, on the event loop that serves (grpc.aio binds to it)."""
        if self._grpc is None:
            options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
            channel = (
                grpc.aio.secure_channel(self.host, grpc.ssl_channel_credentials(), options=options)
                if self._use_ssl
                else grpc.aio.insecure_channel(self.host, options=options)
            )
            self._grpc = stub(channel)
        return self._grpc

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            scheme = "https" if self._use_ssl else "http"
            self._http = httpx.AsyncClient(
                base_url=f"{scheme}://{self.host}", headers=self._headers, timeout=self.timeout_s
            )
        return self._http

    async def infer(
        self, model_name: str, features: np.ndarray, *, outputs: Sequence[str], fingerprint: str
    ) -> tuple[np.ndarray, ...]:
        """The predictor's ``outputs`` for float32 ``features`` ``[n, frames, bins]``, in that
        order, each float32 with ``n`` rows; ``fingerprint`` is the model's, which the predictor
        checks against its own."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        try:
            if self.protocol == "grpc-v2":
                named = await self._infer_grpc(model_name, features, outputs, fingerprint)
            else:
                named = await self._infer_rest(model_name, features, outputs, fingerprint)
        except Exception as error:
            raise self._error(error, "infer") from None
        if any(name not in named for name in outputs):
            raise BadGateway(f"predictor {self.host} answered {sorted(named)}, not {list(outputs)}")
        return tuple(named[name].astype(np.float32, copy=False) for name in outputs)

    async def _infer_grpc(
        self, model_name: str, features: np.ndarray, outputs: Sequence[str], fingerprint: str
    ) -> dict[str, np.ndarray]:
        request = pb.ModelInferRequest(
            model_name=model_name,
            id=str(uuid.uuid4()),
            inputs=[pb.ModelInferRequest.InferInputTensor(name=INPUT_NAME, datatype="FP32", shape=features.shape)],
            raw_input_contents=[features.tobytes()],
            parameters={MODEL_FINGERPRINT_PARAMETER: pb.InferParameter(string_param=fingerprint)},
        )
        if list(outputs) != [OUTPUT_NAME]:  # the plain call names none: the predictor's default response is just that
            request.outputs.extend(pb.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in outputs)
        response = await self._stub().ModelInfer(request, metadata=[*self._headers.items()], timeout=self.timeout_s)
        raws = list(response.raw_output_contents)
        named = {}
        for index, output in enumerate(response.outputs):
            raw = raws[index] if index < len(raws) else None
            data = None if raw is not None else list(output.contents.fp32_contents)
            named[output.name] = to_numpy(Tensor(output.name, list(output.shape), output.datatype, raw, data))
        return named

    async def _infer_rest(
        self, model_name: str, features: np.ndarray, outputs: Sequence[str], fingerprint: str
    ) -> dict[str, np.ndarray]:
        header: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "parameters": {MODEL_FINGERPRINT_PARAMETER: fingerprint, "binary_data_output": True},
        }
        if list(outputs) != [OUTPUT_NAME]:
            header["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in outputs]
        body, json_length = binary_body(header, [(INPUT_NAME, "FP32", features)])
        response = await self._client().post(
            f"/v2/models/{model_name}/infer",
            content=body,
            headers={BINARY_HEADER: str(json_length), "content-type": "application/octet-stream"},
        )
        response.raise_for_status()
        length = response.headers.get(BINARY_HEADER)
        if length is not None:
            header, raws = split_binary_body(response.content, json_length=int(length), key="outputs")
        else:
            header = response.json()
            raws = [None] * len(header.get("outputs", []))
        return {
            item["name"]: to_numpy(Tensor(item["name"], item["shape"], item["datatype"], raw, item.get("data")))
            for item, raw in zip(header["outputs"], raws, strict=True)
        }

    async def load(self, model_name: str) -> None:
        """Have the predictor load ``model_name`` (V2 repository extension)."""
        await self._repository("load", model_name)

    async def unload(self, model_name: str) -> None:
        """Have the predictor unload ``model_name``."""
        await self._repository("unload", model_name)

    async def _repository(self, action: Literal["load", "unload"], model_name: str) -> None:
        try:
            if self.protocol == "grpc-v2":
                call = self._stub().RepositoryModelLoad if action == "load" else self._stub().RepositoryModelUnload
                message = pb.RepositoryModelLoadRequest if action == "load" else pb.RepositoryModelUnloadRequest
                # Loading builds TensorFlow graphs: no deadline shorter than the server's own.
                await call(message(model_name=model_name), metadata=[*self._headers.items()])
            else:
                response = await self._client().post(f"/v2/repository/models/{model_name}/{action}", timeout=None)
                response.raise_for_status()
        except Exception as error:
            raise self._error(error, action) from None

    def _error(self, error: Exception, action: str) -> ServiceError:
        """One mapping for every call: the predictor's answer, or its absence, in our table."""
        if isinstance(error, httpx.HTTPStatusError):
            response = error.response
            return error_class(http_status=response.status_code)(
                f"predictor {self.host} answered {response.status_code} to {action}: {_reason(response)}"
            )
        if isinstance(error, grpc.aio.AioRpcError):
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                return UpstreamUnavailable(f"predictor {self.host} is unreachable: {error.details()}")
            return error_class(grpc_code=code)(
                f"predictor {self.host} answered {code.name} to {action}: {error.details()}"
            )
        if isinstance(error, httpx.TransportError):
            return UpstreamUnavailable(f"predictor {self.host} is unreachable: {error or type(error).__name__}")
        if isinstance(error, (ValueError, KeyError, TypeError, BadRequest)):  # BadRequest: our codec, on its response
            return BadGateway(f"predictor {self.host} answered {action} with a malformed body: {error}")
        raise error  # a fault of ours: a 500, logged with its traceback

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()


def _reason(response: httpx.Response) -> str:
    """The V2 error body's message, or the start of whatever else the predictor sent."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
