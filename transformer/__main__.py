"""``python -m transformer --predictor_host HOST:PORT --predictor_protocol v2|grpc-v2``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from kserve import model_server

    from predictor.v2 import start_server
    from transformer.model import AudioTransformer
    from transformer.settings import TransformerSettings

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    parser.add_argument("--model_dir", type=Path, help="model directory (default: $STORAGE_URI or /mnt/models)")
    parser.add_argument("--max_duration_s", type=float, help="longest audio per element (s)")
    parser.add_argument("--max_body_bytes", type=int, help="largest request body (bytes)")
    parser.add_argument("--max_batch_elements", type=int, help="most audio elements per request")
    args, _ = parser.parse_known_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in TransformerSettings.model_fields and v is not None}
    settings = TransformerSettings(**overrides)
    model = AudioTransformer(args.model_name, settings)
    model.load()
    start_server(model, max_body_bytes=settings.max_body_bytes)


if __name__ == "__main__":
    main()
