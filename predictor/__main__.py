"""``python -m predictor``: KServe's own flags plus ours; the model loads before the server starts."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    from kserve import model_server

    from predictor.model import SavedModelPredictor
    from predictor.settings import PredictorSettings
    from predictor.v2 import start_server

    parser = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__)
    parser.add_argument("--model_dir", type=Path, help="SavedModel directory (default: $STORAGE_URI or /mnt/models)")
    parser.add_argument("--max_batch_size", type=int, help="most rows per model call")
    parser.add_argument("--max_batch_wait_ms", type=float, help="how long a batch waits to fill (ms)")
    args, _ = parser.parse_known_args(argv)
    overrides = {
        key: value for key, value in vars(args).items() if key in PredictorSettings.model_fields and value is not None
    }
    settings = PredictorSettings(**overrides)
    model = SavedModelPredictor(args.model_name, settings)
    model.load()
    logging.getLogger(__name__).info("predictor '%s' ready on %s", args.model_name, model.device)
    start_server(model, max_body_bytes=settings.max_body_bytes)


if __name__ == "__main__":
    main()
