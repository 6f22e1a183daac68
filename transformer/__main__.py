"""``python -m transformer --predictor_host HOST:PORT --predictor_protocol v2|grpc-v2``."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from serving.logs import configure_logs
    from serving.server import start_server
    from serving.settings import parse_flags
    from transformer.model import AudioTransformer
    from transformer.settings import TransformerSettings

    args, settings = parse_flags(TransformerSettings, description=__doc__, argv=argv)
    configure_logs(args)
    model = AudioTransformer(args.model_name, settings)
    model.load()
    start_server(model, args=args, settings=settings)


if __name__ == "__main__":
    main()
