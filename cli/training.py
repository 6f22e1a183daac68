"""``audio-maas train``, ``evaluate`` and ``loso``."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["BUNDLED_MODEL_DIR", "DEFAULT_DATA_DIR", "add_commands"]

DEFAULT_DATA_DIR = Path(os.environ.get("AUDIO_MAAS_DATA_DIR", "../shared/data/fsdd"))
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "digits"


def add_commands(commands: Any) -> None:
    train = commands.add_parser("train", help="train, export and evaluate a model on FSDD")
    _add_training_flags(train)
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--exclude-speaker", action="append", default=[], help="leave this speaker out (repeatable)")
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score an exported model on FSDD and write a report")
    evaluate.add_argument(
        "--model", type=Path, default=BUNDLED_MODEL_DIR, help="model directory (default: bundled CNN)"
    )
    evaluate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="FSDD-layout directory")
    evaluate.add_argument("--split", choices=["test", "train", "all"], default="test")
    evaluate.add_argument("--report", type=Path, default=Path("report"), help="report folder to write")
    evaluate.set_defaults(run=_evaluate)

    loso = commands.add_parser("loso", help="leave-one-speaker-out accuracy of a training configuration")
    _add_training_flags(loso)
    loso.add_argument("--model", type=Path, help="also record the result in this model directory and its card")
    loso.set_defaults(run=_loso)


def _add_training_flags(parser: argparse.ArgumentParser) -> None:
    from training.config import TrainConfig

    defaults = TrainConfig()
    parser.add_argument("--arch", choices=["cnn", "lstm"], default=defaults.arch)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="FSDD-layout directory")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--augment-copies", type=int, default=defaults.augment_copies)
    parser.add_argument(
        "--synthetic-takes", type=int, default=defaults.synthetic_takes, help="espeak-ng takes per voice; 0 for none"
    )


def _config(args: argparse.Namespace) -> Any:
    from training.config import TrainConfig

    return TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        augment_copies=args.augment_copies,
        synthetic_takes=args.synthetic_takes,
    )


def _train(args: argparse.Namespace) -> int:
    from training.dataset import load_fsdd
    from training.train import train_and_report

    result = train_and_report(
        _config(args), fsdd=load_fsdd(args.data_dir), model_dir=args.out, exclude_speakers=tuple(args.exclude_speaker)
    )
    metrics = result["metrics"]
    print(f"model written to {args.out} in {result['seconds']['total']:.0f} s")
    print(_summary(metrics))
    if "synthetic_held_out_voices_accuracy" in metrics:
        print(f"held-out synthetic voices accuracy: {metrics['synthetic_held_out_voices_accuracy']:.4f}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.card import confusion_matrix_lines
    from training.dataset import load_fsdd, select_split
    from training.evaluate import evaluate

    metrics = evaluate(args.model, select_split(load_fsdd(args.data_dir), args.split), report_dir=args.report)
    print(_summary(metrics))
    print("confusion matrix (rows: true, columns: predicted):")
    print("\n".join(confusion_matrix_lines(metrics["labels"], metrics["confusion_matrix"])))
    print(f"report written to {args.report}/")
    return 0


def _loso(args: argparse.Namespace) -> int:
    from training.card import LOSO_FILE, write_model_card
    from training.dataset import load_fsdd
    from training.train import leave_one_speaker_out

    with tempfile.TemporaryDirectory() as work_dir:
        result = leave_one_speaker_out(_config(args), fsdd=load_fsdd(args.data_dir), work_dir=Path(work_dir))
    for speaker, accuracy in result["accuracy"].items():
        print(f"{speaker:>10}: {accuracy:.4f}")
    print(f"{'mean':>10}: {result['mean_accuracy']:.4f}")
    if args.model:
        (args.model / LOSO_FILE).write_text(json.dumps(result, indent=2) + "\n")
        write_model_card(args.model)
    return 0


def _summary(metrics: dict[str, Any]) -> str:
    """One model's figures in two lines."""
    auc = ", ".join(f"{label}: {value:.4f}" for label, value in metrics["roc_auc"].items() if value is not None)
    return (
        f"n={metrics['n']}  accuracy={metrics['accuracy']:.4f}  precision={metrics['precision_macro']:.4f}  "
        f"recall={metrics['recall_macro']:.4f}  F1={metrics['f1_macro']:.4f}\nROC-AUC per class: {auc}"
    )
