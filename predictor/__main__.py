"""``python -m predictor``: KServe's own flags plus ours; the model loads before the server starts."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from predictor.model import SavedModelPredictor
    from predictor.settings import PredictorSettings
    from serving.logs import configure_logs
    from serving.server import start_server
    from serving.settings import parse_flags

    args, settings = parse_flags(PredictorSettings, description=__doc__, argv=argv)
    configure_logs(args)
    model = SavedModelPredictor(args.model_name, settings)
    model.load()  # logs the device and the tensors
    start_server(model, args=args, settings=settings)


if __name__ == "__main__":
    main()
