"""The V2 model repository extension, as Triton defines it: index, load and unload by name.

Each server keeps its models in a :class:`ModelRepository`, which can open a model by name
from the directory of model directories it serves (``--model_repository``) and close it,
while the others keep serving. How a model is opened is the server's: the predictor loads a
SavedModel; the transformer first has the predictor load it, then builds its front end and
stays unready until the predictor takes its features. KServe has the REST and gRPC routes for
load and unload; the index route is ours (``POST /v2/repository/index``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from kserve import Model
from kserve.model_repository import ModelRepository as KServeModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from audio_maas.protocol.errors import BadRequest, ModelNotFound, ServiceError, UpstreamUnavailable

__all__ = ["ModelRepository", "RepositoryExtension", "add_index_route"]

log = logging.getLogger(__name__)

OpenModel = Callable[[str, Path], Awaitable[Model]]
"""(name, model directory) -> a loaded model, ready to register; raises naming what failed."""
CloseModel = Callable[[str], Awaitable[None]]
"""Called after a model is unregistered (the transformer unloads it on the predictor too)."""


class ModelRepository(KServeModelRepository):
    """The models a server serves, and those it could: ``repository`` (or one ``model_dir``)."""

    def __init__(
        self,
        *,
        directories: Callable[[], dict[str, Path]],
        open_model: OpenModel,
        close_model: CloseModel | None = None,
        version: str,
    ) -> None:
        super().__init__(models_dir="")
        self._directories = directories
        self._open = open_model
        self._close = close_model
        self.version = version
        self._not_ready: dict[str, tuple[str, str]] = {}
        """name -> (state, reason) of a model that is not registered: LOADING, or UNAVAILABLE and why."""
        self._changing: dict[str, asyncio.Lock] = {}
        """One lock per model name: loads and unloads of one model take turns; of others, not."""

    async def open(self, name: str) -> None:
        """Load ``name`` from its directory and serve it; a model already served is reloaded."""
        async with self._changing.setdefault(name, asyncio.Lock()):
            await self._load_model(name)

    async def close(self, name: str) -> None:
        """Stop serving ``name``; its directory stays in the repository, to be loaded again."""
        async with self._changing.setdefault(name, asyncio.Lock()):
            await self._close_model(name)

    async def _load_model(self, name: str) -> None:
        directory = self._available().get(name)
        if directory is None:
            raise ModelNotFound(f"the model repository has no model '{name}'")
        self._not_ready[name] = ("LOADING", "")
        try:
            model = await self._open(name, directory)
        except Exception as error:
            raise self._load_failed(name, error) from None
        if name in self.models:
            self.unload(name)
        self.update(model)
        del self._not_ready[name]
        log.info("model '%s' loaded from %s", name, directory)

    def _load_failed(self, name: str, error: Exception) -> ServiceError:
        """What answers a failed load: a refusal in our table keeps its status (the predictor away
        is 503); a model directory whose files are wrong is the client's 400; anything else is a
        fault of ours, a 500 whose traceback is logged."""
        reason = str(error) or type(error).__name__
        self._not_ready[name] = ("UNAVAILABLE", reason)
        message = f"model '{name}' failed to load: {reason}"
        if isinstance(error, ServiceError):
            log.warning("%s", message)
            return type(error)(message)
        if isinstance(error, (FileNotFoundError, ValueError)):  # the model's own files: its owner's to fix
            log.warning("%s", message)
            return BadRequest(message)
        log.error("model '%s' failed to load", name, exc_info=error)
        return ServiceError(f"model '{name}' failed to load: a fault of the server's, in its log")

    async def _close_model(self, name: str) -> None:
        try:
            self.unload(name)  # KServe's: calls the model's stop()
        except KeyError:
            raise ModelNotFound(f"model '{name}' is not loaded") from None
        self._not_ready[name] = ("UNAVAILABLE", "unloaded")
        if self._close is not None:
            await self._close(name)
        log.info("model '%s' unloaded", name)

    async def index(self, *, ready_only: bool = False) -> list[dict[str, str]]:
        """Every model served or in the repository: name, version, state and, unless READY, why."""
        entries = []
        try:
            available = self._available()
        except UpstreamUnavailable as error:  # the models still served are still listed
            log.warning("%s", error)
            available = {}
        for name in sorted(set(available) | set(self.models)):
            if name in self.models:
                ready = await self.is_model_ready(name)
                state, reason = ("READY", "") if ready else ("UNAVAILABLE", "loaded, not ready yet")
            else:
                state, reason = self._not_ready.get(name, ("UNAVAILABLE", "not loaded"))
            if ready_only and state != "READY":
                continue
            entry = {"name": name, "version": self.version, "state": state}
            entries.append(entry | ({"reason": reason} if reason else {}))
        return entries

    def knows(self, name: str) -> bool:
        """Whether ``name`` is served or being opened here."""
        return name in self.models or name in self._not_ready

    def readiness(self) -> dict[str, bool]:
        """Each model served or being opened -> whether it serves (its ``ready`` flag), for metrics."""
        return {name: False for name in self._not_ready} | {name: bool(m.ready) for name, m in self.models.items()}

    def _available(self) -> dict[str, Path]:
        """The repository as it is now. One changed since start (emptied, a folder with a name no
        URL can carry) is named in a 503, not a 500."""
        try:
            return self._directories()
        except (OSError, ValueError) as error:
            raise UpstreamUnavailable(f"the model repository cannot be read: {error}") from None

    def load(self, name: str) -> bool:  # KServe's synchronous hook; every caller here uses open()
        raise NotImplementedError("use ModelRepository.open")


class RepositoryExtension(ModelRepositoryExtension):
    """KServe's extension, whose load and unload its REST routes and gRPC servicer call, over
    :class:`ModelRepository`: errors in our table, not KServe's "Error type: ..." text."""

    def __init__(self, repository: ModelRepository) -> None:
        super().__init__(model_registry=repository)
        self.repository = repository

    async def index(self, filter_ready: bool | None = False) -> list[dict[str, str]]:
        return await self.repository.index(ready_only=bool(filter_ready))

    # KServe's gRPC servicer reads these answers (KServe's own extension returns None, and its
    # servicer fails on it); its REST routes build their own.
    async def load(self, model_name: str) -> dict[str, Any]:  # type: ignore[override]
        await self.repository.open(model_name)
        return {"name": model_name, "load": True}

    async def unload(self, model_name: str) -> dict[str, Any]:  # type: ignore[override]
        await self.repository.close(model_name)
        return {"name": model_name, "unload": True}


def add_index_route(app: FastAPI, extension: RepositoryExtension) -> None:
    """``POST /v2/repository/index`` with an optional ``{"ready": true}``: Triton's index."""

    async def index(request: Request) -> list[dict[str, str]]:
        body = await request.body()
        options: Any = {}
        if body.strip():
            try:
                options = await request.json()
            except ValueError:
                raise BadRequest('the index request must be JSON, such as {"ready": true}') from None
        if not isinstance(options, dict) or not isinstance(options.get("ready", False), bool):
            raise BadRequest("the index request takes one optional field, 'ready', true or false")
        return await extension.index(filter_ready=options.get("ready", False))

    app.add_api_route("/v2/repository/index", index, methods=["POST"])
