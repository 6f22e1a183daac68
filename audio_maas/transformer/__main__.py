"""``python -m audio_maas.transformer --predictor_host HOST:PORT --predictor_protocol v2|grpc-v2``."""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    import gc

    gc.disable()  # until audio_maas.kserve.server.start_server freezes what start-up built: see there why
    import argparse

    from audio_maas.features.frontend import one_blas_thread
    from audio_maas.kserve.server import Build, Close, run
    from audio_maas.kserve.upstream import PredictorClient
    from audio_maas.transformer.model import AudioTransformer
    from audio_maas.transformer.settings import TransformerSettings

    def setup(args: argparse.Namespace, settings: TransformerSettings) -> tuple[Build[TransformerSettings], Close]:
        one_blas_thread()
        if not args.predictor_host:
            raise SystemExit("the transformer needs --predictor_host HOST:PORT")
        predictor = PredictorClient(
            host=args.predictor_host,
            protocol=args.predictor_protocol,
            use_ssl=args.predictor_use_ssl,
            timeout_s=args.predictor_request_timeout_seconds,
            auth_token=settings.auth_token,  # local mode: one token for both servers
        )

        def build(name: str, model_settings: TransformerSettings) -> AudioTransformer:
            return AudioTransformer(name, model_settings, predictor=predictor)

        return build, predictor.unload

    run(TransformerSettings, description=__doc__, argv=argv, setup=setup, streams=True, openai=True)


if __name__ == "__main__":
    main()
