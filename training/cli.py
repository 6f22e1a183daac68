"""``audio-maas``: the command line. Each subcommand imports its heavy parts only when it runs."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deploy.cluster import ServiceStatus

__all__ = ["main"]

DEFAULT_DATA_DIR = Path(os.environ.get("AUDIO_MAAS_DATA_DIR", "../shared/data/fsdd"))
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "digits-cnn"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audio-maas", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train, export and evaluate a model on FSDD")
    _add_training_flags(train)
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--exclude-speaker", action="append", default=[], help="leave this speaker out (repeatable)")

    evaluate = commands.add_parser("evaluate", help="score an exported model on FSDD and write a report")
    evaluate.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled CNN)"
    )
    evaluate.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="FSDD-layout directory")
    evaluate.add_argument("--split", choices=["test", "train", "all"], default="test")
    evaluate.add_argument("--report", type=Path, default=Path("report"), help="report folder to write")

    loso = commands.add_parser("loso", help="leave-one-speaker-out accuracy of a training configuration")
    _add_training_flags(loso)
    loso.add_argument("--model", type=Path, help="also record the result in this model directory and its card")

    serve = commands.add_parser(
        "serve", help="run transformer and predictor on this machine (requests need $AUDIO_MAAS_AUTH_TOKEN when set)"
    )
    serve.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model directory (default: bundled CNN)")
    serve.add_argument("--model-name", default="digits", help="name the model is served under")
    serve.add_argument("--http-port", type=int, default=8080, help="transformer REST port (gRPC: the next one)")
    serve.add_argument("--predictor-port", type=int, default=8085, help="predictor REST port (gRPC: the next one)")
    serve.add_argument(
        "--predictor-protocol", choices=["v2", "grpc-v2"], default="grpc-v2", help="transformer to predictor hop"
    )
    serve.add_argument("--max-batch-size", type=int, default=32, help="most rows per model call and per forward")
    serve.add_argument(
        "--max-batch-wait-ms", type=float, default=0.0, help="predictor: extra time a batch stays open for more rows"
    )

    predict = commands.add_parser(
        "predict", help="classify audio files through the V2 API (sends $AUDIO_MAAS_AUTH_TOKEN when set)"
    )
    predict.add_argument("files", type=Path, nargs="+", metavar="FILE")
    predict.add_argument("--url", default="http://127.0.0.1:8080", help="the transformer's base URL")
    predict.add_argument("--model-name", default="digits")

    deploy = commands.add_parser("deploy", help="apply the Helm chart to the current Kubernetes cluster")
    _add_cluster_flags(deploy)
    deploy.add_argument("--release", default="digits", help="release name; the InferenceService is RELEASE-audio-maas")
    deploy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="chart value (repeatable)")
    deploy.add_argument("--dry-run", action="store_true", help="server-side dry run: validate, persist nothing")
    deploy.add_argument("--timeout", type=float, default=600, help="seconds to wait for Ready")

    status = commands.add_parser("status", help="conditions, replicas and traffic of a deployed InferenceService")
    _add_cluster_flags(status)
    status.add_argument("name", nargs="?", default="digits-audio-maas", help="InferenceService name")

    # plan's flags belong to deploy.capacity's own parser: `audio-maas plan --help` lists them.
    commands.add_parser("plan", add_help=False, help="replicas, latency and cost of a traffic trace, simulated")

    args, plan_args = parser.parse_known_args(argv)
    if args.command != "plan" and plan_args:
        parser.error(f"unrecognized arguments: {' '.join(plan_args)}")
    args.plan_args = plan_args
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        commands_run = {
            "train": _train, "evaluate": _evaluate, "loso": _loso, "serve": _serve, "predict": _predict,
            "deploy": _deploy, "status": _status, "plan": _plan,
        }  # fmt: skip
        return commands_run[args.command](args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"audio-maas {args.command}: error: {error}", file=sys.stderr)
        return 2


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


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


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
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


def _serve(args: argparse.Namespace) -> int:
    from transformer.local import LocalService, serve

    if not (args.model / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{args.model} is not a SavedModel directory")
    service = LocalService(
        model_dir=args.model.resolve(),
        model_name=args.model_name,
        http_port=args.http_port,
        grpc_port=args.http_port + 1,
        predictor_http_port=args.predictor_port,
        predictor_grpc_port=args.predictor_port + 1,
        predictor_protocol=args.predictor_protocol,
        max_batch_size=args.max_batch_size,
        max_batch_wait_ms=args.max_batch_wait_ms,
    )
    return serve(service)


def _predict(args: argparse.Namespace) -> int:
    from predictor.contract import AUTH_TOKEN_ENV
    from transformer.client import ServiceUnreachable, predict_files

    try:
        token = os.environ.get(AUTH_TOKEN_ENV)
        predictions = predict_files(args.files, url=args.url, model_name=args.model_name, auth_token=token)
    except ServiceUnreachable as error:
        print(f"audio-maas predict: {error}", file=sys.stderr)
        return 1
    for prediction in predictions:
        top = ", ".join(f"{class_id}: {probability:.3f}" for class_id, probability in prediction.top)
        print(f"{prediction.path}: {prediction.label}  (top-3 class_id: probability: {top})")
    return 0


def _summary(metrics: dict) -> str:  # type: ignore[type-arg]
    auc = ", ".join(f"{label}: {value:.4f}" for label, value in metrics["roc_auc"].items() if value is not None)
    return (
        f"n={metrics['n']}  accuracy={metrics['accuracy']:.4f}  precision={metrics['precision_macro']:.4f}  "
        f"recall={metrics['recall_macro']:.4f}  F1={metrics['f1_macro']:.4f}\nROC-AUC per class: {auc}"
    )


def _deploy(args: argparse.Namespace) -> int:
    import helm_python as helm

    from deploy.chart import manifests, merged_values
    from deploy.cluster import apply, connect, wait_ready

    try:
        values = helm.parse_set_string(",".join(args.set)) if args.set else {}
        objects = manifests(values, release=args.release, namespace=args.namespace)
        model_name = merged_values(values)["modelName"]
    except helm.HelmError as error:
        raise ValueError(f"invalid chart values: {error}") from None
    api = connect(kubeconfig=args.kubeconfig, context=args.context)
    for applied in apply(api, objects, namespace=args.namespace, dry_run=args.dry_run):
        print(f"{applied} {'valid (server dry run)' if args.dry_run else 'applied'}")
    if args.dry_run:
        return 0
    (name,) = [obj["metadata"]["name"] for obj in objects if obj["kind"] == "InferenceService"]
    started = time.monotonic()

    def progress(status: ServiceStatus) -> None:
        waiting = "; ".join(status.waiting_on) or "nothing"
        print(f"[{time.monotonic() - started:5.0f} s] {name}: {'Ready' if status.ready else 'waiting on ' + waiting}")

    status = wait_ready(api, name, namespace=args.namespace, timeout_s=args.timeout, on_change=progress)
    print(f"{name} is ready at {status.url}")
    print(f"try: audio-maas predict --url {status.url} --model-name {model_name} FILE.wav")
    return 0


def _status(args: argparse.Namespace) -> int:
    from deploy.cluster import connect, read_status

    status = read_status(connect(kubeconfig=args.kubeconfig, context=args.context), args.name, namespace=args.namespace)
    print(f"{status.name}: {'Ready' if status.ready else 'not ready'}  {status.url or '(no URL yet)'}")
    for kind, (state, why) in status.conditions.items():
        print(f"  {kind:<28} {state:<8} {why}")
    for component, detail in status.components.items():
        traffic = ", ".join(f"{revision} {percent}%" for revision, percent in detail.traffic.items()) or "-"
        print(
            f"  {component:<12} pods ready {detail.pods_ready}/{detail.pods_total}  "
            f"revision {detail.latest_ready_revision or '-'}  traffic: {traffic}"
        )
    return 0 if status.ready else 1


def _plan(args: argparse.Namespace) -> int:
    from deploy.capacity import main as plan

    return plan(args.plan_args)


if __name__ == "__main__":
    sys.exit(main())
