"""``audio-maas deploy`` and ``audio-maas status``: the chart applied through the Kubernetes API.

Objects go in by server-side apply (field manager ``audio-maas``), through the ``kubernetes``
client's typed APIs: kserve 0.21's ``KServeClient.create()`` fails against kubernetes 37
(a pydantic validation error), so the InferenceService is applied as a custom object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "FIELD_MANAGER",
    "ClusterError",
    "ComponentStatus",
    "ServiceStatus",
    "apply",
    "connect",
    "parse_status",
    "read_status",
    "wait_ready",
]

FIELD_MANAGER = "audio-maas"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
APPLY_PATCH = "application/apply-patch+yaml"
CUSTOM_KINDS = {
    "InferenceService": (PLURAL, True),
    "ServingRuntime": ("servingruntimes", True),
    "ClusterServingRuntime": ("clusterservingruntimes", False),
    "PodMonitor": ("podmonitors", True),
    "PrometheusRule": ("prometheusrules", True),
}
"""The chart's custom kinds: plural, and whether namespaced (the group and version come from apiVersion)."""


class ClusterError(RuntimeError):
    """No cluster to talk to, or the cluster refused what we asked, in words a user can act on."""


@dataclass(frozen=True)
class ComponentStatus:
    latest_ready_revision: str | None
    latest_created_revision: str | None
    traffic: dict[str, int]
    """Percent of traffic per revision name."""
    pods_ready: int = 0
    pods_total: int = 0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    ready: bool
    url: str | None
    conditions: dict[str, tuple[str, str]]
    """Condition type -> (status True/False/Unknown, reason and message)."""
    components: dict[str, ComponentStatus] = field(default_factory=dict)

    @property
    def waiting_on(self) -> list[str]:
        """Conditions not yet True, with why."""
        return [
            f"{kind}: {why}" if why else kind for kind, (status, why) in self.conditions.items() if status != "True"
        ]


def parse_status(isvc: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> ServiceStatus:
    """An InferenceService document (and its pods, as the API lists them) -> what a user asks about."""
    status = isvc.get("status") or {}
    conditions = {
        condition["type"]: (
            condition.get("status", "Unknown"),
            ": ".join(part for part in (condition.get("reason"), condition.get("message")) if part),
        )
        for condition in status.get("conditions") or []
    }
    components = {}
    for name, component in (status.get("components") or {}).items():
        mine = [pod for pod in pods or [] if pod["metadata"].get("labels", {}).get("component") == name]
        components[name] = ComponentStatus(
            latest_ready_revision=component.get("latestReadyRevision"),
            latest_created_revision=component.get("latestCreatedRevision"),
            traffic={
                entry.get("revisionName", "?"): int(entry.get("percent", 0)) for entry in component.get("traffic") or []
            },
            pods_ready=sum(_pod_ready(pod) for pod in mine),
            pods_total=len(mine),
        )
    return ServiceStatus(
        name=isvc["metadata"]["name"],
        ready=conditions.get("Ready", ("Unknown", ""))[0] == "True",
        url=status.get("url"),
        conditions=conditions,
        components=components,
    )


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def connect(*, kubeconfig: str | None = None, context: str | None = None) -> Any:
    """An API client from the kubeconfig (or the pod's service account), checked by one call."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # its retry warnings, not ours to show

    try:
        api = config.new_client_from_config(config_file=kubeconfig, context=context)
    except (ConfigException, FileNotFoundError) as error:
        try:
            config.load_incluster_config()
            api = client.ApiClient()
        except ConfigException:
            raise ClusterError(f"no Kubernetes cluster configured: {error}") from None
    try:
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as error:  # urllib3's connection errors come in several classes
        raise ClusterError(f"cannot reach the Kubernetes API at {api.configuration.host}: {_reason(error)}") from None
    return api


def apply(api: Any, objects: list[dict[str, Any]], *, namespace: str, dry_run: bool) -> list[str]:
    """Server-side apply each object in ``namespace``; returns ``Kind/name`` of each, as applied."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    dry = "All" if dry_run else None
    applied = []
    for obj in objects:
        name, kind = obj["metadata"]["name"], obj["kind"]
        # force: we own these objects, so take over fields another manager last set.
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "dry_run": dry,
            "_content_type": APPLY_PATCH,
        }
        try:
            if kind in CUSTOM_KINDS:
                plural, namespaced = CUSTOM_KINDS[kind]
                group, version = obj["apiVersion"].split("/")
                custom = client.CustomObjectsApi(api)
                if namespaced:
                    custom.patch_namespaced_custom_object(group, version, namespace, plural, name, obj, **options)
                else:
                    custom.patch_cluster_custom_object(group, version, plural, name, obj, **options)
            elif kind == "ConfigMap":
                client.CoreV1Api(api).patch_namespaced_config_map(name, namespace, obj, **options)
            elif kind == "NetworkPolicy":
                client.NetworkingV1Api(api).patch_namespaced_network_policy(name, namespace, obj, **options)
            else:
                raise ClusterError(f"deploy does not know how to apply a {kind}")
        except ApiException as error:
            raise ClusterError(f"applying {kind}/{name} failed ({error.status}): {_api_message(error)}") from None
        applied.append(f"{kind}/{name}")
    return applied


def read_status(api: Any, name: str, *, namespace: str) -> ServiceStatus:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        isvc: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, namespace, PLURAL, name
        )
        pods = client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"serving.kserve.io/inferenceservice={name}"
        )
    except ApiException as error:
        if error.status == 404:
            raise ClusterError(f"no InferenceService {name} in namespace {namespace}") from None
        raise ClusterError(f"reading InferenceService {name} failed ({error.status}): {_api_message(error)}") from None
    return parse_status(isvc, [api.sanitize_for_serialization(pod) for pod in pods.items])


def wait_ready(
    api: Any,
    name: str,
    *,
    namespace: str,
    timeout_s: float,
    poll_s: float = 2.0,
    on_change: Callable[[ServiceStatus], None] = lambda status: None,
) -> ServiceStatus:
    """Poll until the InferenceService is Ready; ``on_change`` hears each new set of waiting conditions."""
    deadline = time.monotonic() + timeout_s
    last: list[str] | None = None
    while True:
        status = read_status(api, name, namespace=namespace)
        if status.waiting_on != last:
            on_change(status)
            last = status.waiting_on
        if status.ready:
            return status
        if time.monotonic() > deadline:
            raise ClusterError(f"{name} not Ready after {timeout_s:g} s; waiting on {'; '.join(status.waiting_on)}")
        time.sleep(poll_s)


def _api_message(error: Any) -> str:
    import json

    try:
        return str(json.loads(error.body).get("message", error.reason))
    except (TypeError, ValueError):
        return str(error.reason)


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or error
    return str(reason).splitlines()[0][:200]
