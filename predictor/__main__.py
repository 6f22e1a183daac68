"""``python -m predictor``: KServe's own flags plus ours; every model loads before the server starts."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    import gc

    gc.disable()  # until serving.server.start_server freezes what start-up built: see there why
    from pathlib import Path

    from predictor.model import SavedModelPredictor
    from predictor.settings import PredictorSettings
    from serving.logs import configure_logs
    from serving.repository import ModelRepository, run_load
    from serving.server import start_server
    from serving.settings import parse_flags

    args, settings = parse_flags(PredictorSettings, description=__doc__, argv=argv)
    configure_logs(args)

    def build(name: str, model_dir: Path) -> SavedModelPredictor:
        return SavedModelPredictor(name, settings.model_copy(update={"model_dir": model_dir}))

    async def open_model(name: str, model_dir: Path) -> SavedModelPredictor:
        return await run_load(build(name, model_dir))

    models = [build(name, model_dir) for name, model_dir in settings.served_models(args.model_name).items()]
    for model in models:
        model.load()  # logs the device and the tensors
    repository = ModelRepository(
        directories=lambda: settings.served_models(args.model_name),
        open_model=open_model,
        version=settings.model_version,
    )
    start_server(models, repository=repository, args=args, settings=settings)


if __name__ == "__main__":
    main()
