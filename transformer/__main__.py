"""``python -m transformer --predictor_host HOST:PORT --predictor_protocol v2|grpc-v2``."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    import gc

    gc.disable()  # until serving.server.start_server freezes what start-up built: see there why
    from pathlib import Path

    from serving.logs import configure_logs
    from serving.repository import ModelRepository, run_load
    from serving.server import start_server
    from serving.settings import parse_flags
    from transformer.frontend import one_blas_thread
    from transformer.model import AudioTransformer, ask_predictor
    from transformer.settings import TransformerSettings

    args, settings = parse_flags(TransformerSettings, description=__doc__, argv=argv)
    configure_logs(args)
    one_blas_thread()

    def build(name: str, model_dir: Path) -> AudioTransformer:
        return AudioTransformer(name, settings.model_copy(update={"model_dir": model_dir}))

    async def open_model(name: str, model_dir: Path) -> AudioTransformer:
        """The predictor loads the model first; ours is served once the predictor takes its features."""
        await ask_predictor("load", name, settings=settings)
        model = await run_load(build(name, model_dir))
        if not await model.healthy():
            raise RuntimeError(model.not_ready_reason)
        return model

    async def close_model(name: str) -> None:
        await ask_predictor("unload", name, settings=settings)

    models = [build(name, model_dir) for name, model_dir in settings.served_models(args.model_name).items()]
    for model in models:
        model.load()
    repository = ModelRepository(
        directories=lambda: settings.served_models(args.model_name),
        open_model=open_model,
        close_model=close_model,
        version=settings.model_version,
    )
    start_server(models, repository=repository, args=args, settings=settings)


if __name__ == "__main__":
    main()
