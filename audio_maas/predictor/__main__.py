"""``python -m audio_maas.predictor``: KServe's own flags plus ours; every model loads before the server starts."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    import gc

    gc.disable()  # until audio_maas.kserve.server.start_server freezes what start-up built: see there why
    from audio_maas.kserve.server import run
    from audio_maas.predictor.model import SavedModelPredictor
    from audio_maas.predictor.settings import PredictorSettings

    run(PredictorSettings, description=__doc__, argv=argv, setup=lambda args, settings: (SavedModelPredictor, None))


if __name__ == "__main__":
    main()
