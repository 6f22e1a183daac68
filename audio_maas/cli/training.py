"""``audio-maas train``, ``evaluate`` and ``cross-validate``."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from audio_maas import CHECKOUT

__all__ = ["BUNDLED_MODEL_DIR", "DEFAULT_DATA_DIR", "add_commands"]

DEFAULT_DATA_DIR = Path(os.environ.get("AUDIO_MAAS_DATA_DIR", "../shared/data/fsdd"))
BUNDLED_MODEL_DIR = CHECKOUT / "models" / "digits"


def add_commands(commands: Any) -> None:
    try:
        import audio_maas.training.config  # noqa: F401  (its defaults are the flags' defaults)
    except ImportError as error:  # an install with the client alone (audio-maas[client]): no training
        for name in ("train", "evaluate", "cross-validate"):
            unavailable = commands.add_parser(name, help=f"(needs audio-maas[training]; {error.name} is missing)")
            unavailable.set_defaults(run=lambda args, error=error: _needs_training(error))
        return
    train = commands.add_parser("train", help="train, export and evaluate a model on a folder of labelled recordings")
    _add_training_flags(train)
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--exclude-speaker", action="append", default=[], help="leave this speaker out (repeatable)")
    train.add_argument("--sample-rate", type=int, help="features' sample rate in Hz (default: chosen from the data)")
    train.add_argument("--clip-s", type=float, help="clip length in seconds (default: chosen from the data)")
    _add_unknown_flags(train)
    _add_bad_file_flag(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score an exported model on labelled recordings, write a report")
    evaluate.add_argument(
        "--model", type=Path, default=BUNDLED_MODEL_DIR, help="model directory (default: bundled CNN)"
    )
    evaluate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=_DATA_DIR_HELP)
    _add_unknown_flags(evaluate)
    _add_bad_file_flag(evaluate)
    evaluate.add_argument("--split", choices=["test", "train", "all"], default="test")
    evaluate.add_argument("--report", type=Path, default=Path("report"), help="report folder to write")
    evaluate.set_defaults(run=_evaluate)

    cross = commands.add_parser(
        "cross-validate",
        help="accuracy with one fold (where file names give them) or one speaker held out at a time",
    )
    _add_training_flags(cross)
    _add_unknown_flags(cross)
    _add_bad_file_flag(cross)
    cross.add_argument("--model", type=Path, help="also record the result in this model directory and its card")
    cross.set_defaults(run=_cross_validate)


_DATA_DIR_HELP = "labelled recordings: FSDD's layout, or one folder per class (default: FSDD)"


def _add_unknown_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unknown",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="labelled recordings of other things (repeatable): they become one more class, 'unknown'",
    )
    parser.add_argument(
        "--unknown-per-class", type=int, default=50, help="recordings drawn from each class of each --unknown folder"
    )


def _load(args: argparse.Namespace, *, seed: int) -> Any:
    """The dataset named by ``--data-dir``, plus ``unknown`` from ``--unknown`` folders."""
    from audio_maas.training.dataset import load_dataset, with_unknown

    dataset = load_dataset(args.data_dir, on_bad_file=args.on_bad_file, seed=seed)
    if not args.unknown:
        return dataset
    return with_unknown(
        dataset, args.unknown, per_class=args.unknown_per_class, on_bad_file=args.on_bad_file, seed=seed
    )


def _add_bad_file_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--on-bad-file",
        choices=["stop", "skip"],
        default="stop",
        help="a file that cannot be read: stop, naming it (default), or name it and go on",
    )


def _needs_training(error: ImportError) -> int:
    raise RuntimeError(f"training needs pip install 'audio-maas[training]' ({error.name} is not installed)")


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    from audio_maas.training.config import ENCODERS, TrainConfig

    defaults = TrainConfig()
    parser.add_argument("--arch", choices=["cnn", "lstm"], default=defaults.arch)
    parser.add_argument(
        "--encoder",
        choices=sorted(ENCODERS),
        help="train a small head on this pretrained encoder, frozen, instead of --arch from scratch",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("build"),
        help="where the encoder's archive and its outputs for training are kept (default: build)",
    )
    parser.add_argument(
        "--cnn-filters",
        type=_filters,
        default=defaults.cnn_filters,
        metavar="N,N,...",
        help=f"filters of the CNN's conv stages (default: {','.join(map(str, defaults.cnn_filters))})",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=_DATA_DIR_HELP)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--augment-copies", type=int, default=defaults.augment_copies)
    parser.add_argument(
        "--unknown-bias",
        type=float,
        default=defaults.unknown_bias,
        help="added to the 'unknown' class's logit before export: below 0 it answers 'unknown' only when surer",
    )
    parser.add_argument(
        "--synthetic-takes",
        type=int,
        default=defaults.synthetic_takes,
        help="espeak-ng takes per voice when the labels are the digits 0-9; 0 for none",
    )


def _filters(text: str) -> tuple[int, ...]:
    """``--cnn-filters 16,32,64`` -> ``(16, 32, 64)``."""
    try:
        filters = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated filter counts, got {text!r}") from None
    if not filters or min(filters) < 1:
        raise argparse.ArgumentTypeError(f"expected positive filter counts, got {text!r}")
    return filters


def _config(args: argparse.Namespace, dataset: Any) -> Any:
    """The training configuration from the flags, with the front end and augmentation chosen for ``dataset``."""
    from audio_maas.training.augment import AugmentSettings, sound_augment_settings
    from audio_maas.training.config import TrainConfig
    from audio_maas.training.dataset import is_digits, spec_for

    spec = spec_for(dataset, sample_rate=getattr(args, "sample_rate", None), clip_s=getattr(args, "clip_s", None))
    if args.encoder:
        from audio_maas.training.encoder import encoder_spec

        spec = encoder_spec(spec)
    return TrainConfig(
        spec=spec,
        augment=AugmentSettings() if is_digits(dataset.labels) else sound_augment_settings(spec.clip_s),
        arch=args.arch,
        cnn_filters=args.cnn_filters,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        augment_copies=args.augment_copies,
        synthetic_takes=args.synthetic_takes,
        unknown_bias=args.unknown_bias,
        encoder=args.encoder,
    )


def _train(args: argparse.Namespace) -> int:
    from audio_maas.training.train import train_and_report

    dataset = _load(args, seed=args.seed)
    config = _config(args, dataset)
    spec = config.spec
    print(
        f"{len(dataset.utterances)} recordings, {len(dataset.labels)} classes ({dataset.layout} layout); "
        f"split: {dataset.split_rule}; features: {spec.sample_rate} Hz, {spec.clip_s:g} s clips"
    )
    result = train_and_report(
        config, dataset=dataset, model_dir=args.out, exclude_speakers=tuple(args.exclude_speaker), cache_dir=args.cache
    )
    metrics = result["metrics"]
    print(f"model written to {args.out} in {result['seconds']['total']:.0f} s")
    print(_summary(metrics))
    if "synthetic_held_out_voices_accuracy" in metrics:
        print(f"held-out synthetic voices accuracy: {metrics['synthetic_held_out_voices_accuracy']:.4f}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from audio_maas.protocol.model_dir import TRAINING_FILE
    from audio_maas.training.card import confusion_matrix_lines
    from audio_maas.training.dataset import select_split
    from audio_maas.training.evaluate import evaluate

    training = args.model / TRAINING_FILE  # the seed that drew the model's split draws it again here
    seed = json.loads(training.read_text())["config"]["seed"] if training.is_file() else 0
    dataset = _load(args, seed=seed)
    metrics = evaluate(args.model, select_split(dataset.utterances, args.split), report_dir=args.report)
    print(_summary(metrics))
    print("confusion matrix (rows: true, columns: predicted):")
    print("\n".join(confusion_matrix_lines(metrics["labels"], metrics["confusion_matrix"])))
    print(f"report written to {args.report}/")
    return 0


def _cross_validate(args: argparse.Namespace) -> int:
    from audio_maas.training.card import CROSS_VALIDATION_FILE, write_model_card
    from audio_maas.training.train import cross_validate

    dataset = _load(args, seed=args.seed)
    with tempfile.TemporaryDirectory() as work_dir:
        result = cross_validate(_config(args, dataset), dataset=dataset, work_dir=Path(work_dir), cache_dir=args.cache)
    for group, accuracy in result["accuracy"].items():
        print(f"{group:>10}: {accuracy:.4f}")
    print(f"{'mean':>10}: {result['mean_accuracy']:.4f} (standard deviation {result['std_accuracy']:.4f})")
    if args.model:
        (args.model / CROSS_VALIDATION_FILE).write_text(json.dumps(result, indent=2) + "\n")
        write_model_card(args.model)
    return 0


def _summary(metrics: dict[str, Any]) -> str:
    """One model's figures in two lines."""
    auc = ", ".join(f"{label}: {value:.4f}" for label, value in metrics["roc_auc"].items() if value is not None)
    unknown = metrics["per_class"].get("unknown")
    return (
        f"n={metrics['n']}  accuracy={metrics['accuracy']:.4f}  precision={metrics['precision_macro']:.4f}  "
        f"recall={metrics['recall_macro']:.4f}  F1={metrics['f1_macro']:.4f}\nROC-AUC per class: {auc}"
        + (f"\nunknown: precision={unknown['precision']:.4f}  recall={unknown['recall']:.4f}" if unknown else "")
    )
