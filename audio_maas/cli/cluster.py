"""``audio-maas deploy``, ``status`` and ``plan``."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from audio_maas.protocol.defaults import DEFAULT_MODEL_NAME

if TYPE_CHECKING:
    from audio_maas.deploy.cluster import ServiceStatus

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    model_name = DEFAULT_MODEL_NAME
    deploy = commands.add_parser("deploy", help="apply the Helm chart to the current Kubernetes cluster")
    _add_cluster_flags(deploy)
    deploy.add_argument(
        "--release", default=model_name, help="release name; the InferenceService is RELEASE-audio-maas"
    )
    deploy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="chart value (repeatable)")
    deploy.add_argument("--dry-run", action="store_true", help="server-side dry run: validate, persist nothing")
    deploy.add_argument("--timeout", type=float, default=600, help="seconds to wait for Ready")
    deploy.set_defaults(run=_deploy)

    status = commands.add_parser("status", help="conditions, replicas and traffic of a deployed InferenceService")
    _add_cluster_flags(status)
    status.add_argument("name", nargs="?", default=f"{model_name}-audio-maas", help="InferenceService name")
    status.set_defaults(run=_status)

    # plan's flags belong to audio_maas.deploy.capacity's own parser: `audio-maas plan --help` lists them.
    plan = commands.add_parser("plan", add_help=False, help="replicas, latency and cost of a traffic trace, simulated")
    plan.set_defaults(run=_plan, takes_rest=True)


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")


def _deploy(args: argparse.Namespace) -> int:
    import helm_python as helm

    from audio_maas.deploy.chart import manifests, merged_values
    from audio_maas.deploy.cluster import apply, connect, wait_ready

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
    from audio_maas.deploy.cluster import connect, read_status

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
    from audio_maas.deploy.capacity import main as plan

    return int(plan(args.rest))
