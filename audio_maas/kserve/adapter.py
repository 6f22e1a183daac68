"""Our models on KServe: each :class:`~audio_maas.serving.model.ServedModel` is wrapped in a
``kserve.Model`` (:class:`KServeModel`), whose requests are read into our
:class:`~audio_maas.protocol.messages.Request` and whose responses are written back as KServe's,
in the encoding the client asked for. The models know nothing of KServe; this is the one place
where the two meet, besides the streams' framing (``audio_maas.kserve.streaming``).
"""

from __future__ import annotations

from typing import Any

from kserve import InferOutput, InferRequest, InferResponse, Model

from audio_maas.kserve.tensors import request_parameter, tensor
from audio_maas.protocol.errors import BadRequest
from audio_maas.protocol.messages import Request, Response
from audio_maas.serving.model import ServedModel

__all__ = ["KServeModel", "read_request", "write_response"]


def read_request(infer_request: InferRequest) -> Request:
    """KServe's request as ours; its tensors' framing is checked already (``check_request``)."""
    return Request(
        inputs=[tensor(infer_input) for infer_input in infer_request.inputs],
        parameters={name: request_parameter(infer_request, name) for name in infer_request.parameters or {}},
        outputs=tuple(output.name for output in infer_request.request_outputs or []),
        id=infer_request.id or "",
        model_name=infer_request.model_name,
    )


def write_response(response: Response, *, raw: bool, request: InferRequest | None = None) -> InferResponse:
    """Ours as KServe's: outputs as raw binary contents when ``raw``, else typed; REST encodes
    them as ``request`` asked (binary or JSON, output by output)."""
    outputs = []
    for output in response.outputs:
        infer_output = InferOutput(name=output.name, shape=list(output.value.shape), datatype=output.datatype)
        infer_output.set_data_from_numpy(output.value, binary_data=raw)
        outputs.append(infer_output)
    return InferResponse(
        response_id=response.id,
        model_name=response.model_name,
        infer_outputs=outputs,
        use_binary_outputs=raw,
        requested_outputs=request.request_outputs if request is not None else None,
        parameters=response.parameters or None,
    )


class KServeModel(Model):
    """``model`` as KServe serves it: ready once loaded and while the model says so."""

    def __init__(self, model: ServedModel) -> None:
        super().__init__(model.name)
        self.model = model

    def load(self) -> bool:
        self.model.load()
        self.ready = True
        return self.ready

    async def open(self) -> None:
        """Loaded by name while the server serves (``audio_maas.kserve.repository``)."""
        await self.model.open()
        self.ready = True

    async def healthy(self) -> bool:
        return self.ready and await self.model.ready()

    def get_input_types(self) -> list[dict[str, Any]]:
        return self.model.inputs()

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.model.outputs()

    async def predict(
        self,
        payload: InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise BadRequest("this model speaks the V2 protocol: POST /v2/models/{name}/infer")
        response = await self.model.infer(read_request(payload))
        return write_response(response, raw=payload.use_binary_outputs, request=payload)

    def stop(self) -> None:
        self.model.unload()
