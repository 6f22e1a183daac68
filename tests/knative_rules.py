"""What a stock Knative Serving refuses in a pod spec, for checking the chart offline.

No cluster runs here, so Knative's admission webhook cannot judge our renders; this encodes what
it checks, from Knative Serving's own source:

- the field masks, ``PodSpecMask``, ``ContainerMask``, ``SecurityContextMask``,
  ``PodSecurityContextMask``, ``CapabilitiesMask``, ``VolumeSourceMask``, ``EnvVarSourceMask``
  (``../shared/specs/knative/fieldmask.go``): a field outside the mask is refused
  ("must not set the field(s)");
- the feature flags' defaults (``../shared/specs/knative/features.go``, ``defaultFeaturesConfig``):
  every ``kubernetes.podspec-*`` flag is Disabled but ``kubernetes.podspec-volumes-emptydir``,
  and ``secure-pod-defaults`` is Disabled;
- ``ValidatePodSpec`` and the container checks of ``pkg/apis/serving/k8s_validation.go``
  (knative/serving main): one port across the containers, named ``http1``, ``h2c`` or nothing,
  TCP, not a reserved port; reserved mount paths and environment variables; read-only mounts
  except of emptyDir and PVC volumes; one handler per probe; readiness ``timeoutSeconds`` and
  ``failureThreshold`` of at least 1 when ``periodSeconds`` is set, and neither when it is not
  (``validateReadinessProbe``: no period is Knative's aggressive probing).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FLAG_OF_POD_FIELD", "refusals"]

FLAG_OF_POD_FIELD = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
}
"""PodSpecMask: pod fields behind a feature flag (all Disabled by default)."""
POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
              "automountServiceAccountToken"}  # fmt: skip
"""PodSpecMask: pod fields always allowed (automountServiceAccountToken only when false)."""
CONTAINER_FIELDS = {
    "name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy", "livenessProbe",
    "ports", "readinessProbe", "resources", "securityContext", "startupProbe", "terminationMessagePath",
    "terminationMessagePolicy", "volumeMounts",
}  # fmt: skip
"""ContainerMask."""
SECURITY_CONTEXT_FIELDS = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
                           "allowPrivilegeEscalation", "seccompProfile", "privileged"}  # fmt: skip
"""SecurityContextMask (privileged only when false; capabilities.add only with its own flag)."""
VOLUME_SOURCES = {"secret", "configMap", "projected", "emptyDir"}
"""VolumeSourceMask with the default flags (emptyDir Enabled; PVC, hostPath, CSI, ephemeral, image Disabled)."""
PROBE_FIELDS = {"httpGet", "tcpSocket", "exec", "grpc", "initialDelaySeconds", "timeoutSeconds", "periodSeconds",
                "successThreshold", "failureThreshold", "terminationGracePeriodSeconds"}  # fmt: skip
RESERVED_PATHS = {"/", "/dev", "/dev/log"}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
"""Queue-proxy's ports and the profiling port."""


def refusals(pod: dict[str, Any], *, enabled: frozenset[str] = frozenset()) -> list[str]:
    """What Knative's webhook would refuse in ``pod`` (a pod spec), given the ``enabled`` flags."""
    found = []
    for field, value in pod.items():
        if field in FLAG_OF_POD_FIELD:
            if FLAG_OF_POD_FIELD[field] not in enabled:
                found.append(f"{field}: needs {FLAG_OF_POD_FIELD[field]}")
        elif field == "automountServiceAccountToken":
            if value is not False:
                found.append("automountServiceAccountToken: only false is allowed")
        elif field not in POD_FIELDS:
            found.append(f"{field}: not allowed")
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for name, volume in volumes.items():
        sources = set(volume) - {"name"}
        if not sources <= VOLUME_SOURCES or len(sources) != 1:
            found.append(f"volumes.{name}: {sorted(sources)} is not one of {sorted(VOLUME_SOURCES)}")
    containers = pod.get("containers", [])
    ports = [port for container in containers for port in container.get("ports", [])]
    if len(ports) > 1 or (len(containers) > 1 and not ports):
        found.append(f"ports: exactly one port across the containers, found {len(ports)}")
    mounted = set()
    for container in containers:
        found += [f"{container['name']}.{issue}" for issue in _container_refusals(container, volumes, enabled)]
        mounted |= {mount["name"] for mount in container.get("volumeMounts", [])}
    found += [f"volumes.{name}: not mounted" for name in volumes if name not in mounted]
    return found


def _container_refusals(container: dict[str, Any], volumes: dict[str, Any], enabled: frozenset[str]) -> list[str]:
    found = [f"{field}: not allowed" for field in container if field not in CONTAINER_FIELDS]
    for port in container.get("ports", []):
        if port.get("name", "") not in {"", "http1", "h2c"}:
            found.append(f"ports: name {port['name']!r} is not http1 or h2c")
        if port.get("protocol", "TCP") != "TCP" or port["containerPort"] in RESERVED_PORTS:
            found.append(f"ports: {port} is not a TCP port Knative leaves free")
        if set(port) - {"name", "containerPort", "protocol"}:
            found.append(f"ports: {sorted(set(port) - {'name', 'containerPort', 'protocol'})} not allowed")
    for env in container.get("env", []):
        if env["name"] in RESERVED_ENV:
            found.append(f"env.{env['name']}: reserved")
        source = env.get("valueFrom", {})
        allowed = {"configMapKeyRef", "secretKeyRef"} | (
            {"fieldRef", "resourceFieldRef"} if "kubernetes.podspec-fieldref" in enabled else set()
        )
        if set(source) - allowed:
            found.append(f"env.{env['name']}.valueFrom: {sorted(set(source) - allowed)} not allowed")
    context = container.get("securityContext", {})
    found += [f"securityContext.{field}: not allowed" for field in context if field not in SECURITY_CONTEXT_FIELDS]
    if context.get("privileged") is True:
        found.append("securityContext.privileged: only false is allowed")
    if context.get("capabilities", {}).get("add") and "kubernetes.containerspec-addcapabilities" not in enabled:
        found.append("securityContext.capabilities.add: needs kubernetes.containerspec-addcapabilities")
    for mount in container.get("volumeMounts", []):
        path = mount["mountPath"].rstrip("/") or "/"
        if path in RESERVED_PATHS:
            found.append(f"volumeMounts.{mount['name']}: {path} is reserved")
        volume = volumes.get(mount["name"])
        if volume is None:
            found.append(f"volumeMounts.{mount['name']}: no such volume")
        elif "emptyDir" not in volume and not mount.get("readOnly"):
            found.append(f"volumeMounts.{mount['name']}: must be readOnly for this kind of volume")
        if "mountPropagation" in mount:
            flag = "kubernetes.podspec-volumes-mount-propagation"
            found.append(f"volumeMounts.{mount['name']}.mountPropagation: needs {flag}")
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(kind)
        if probe is None:
            continue
        found += [f"{kind}.{field}: not allowed" for field in probe if field not in PROBE_FIELDS]
        handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in probe]
        if len(handlers) != 1:
            found.append(f"{kind}: exactly one handler, found {handlers}")
        if kind != "readinessProbe":
            continue
        if probe.get("periodSeconds", 0) > 0:
            if probe.get("timeoutSeconds", 1) < 1 or probe.get("failureThreshold", 3) < 1:
                found.append(f"{kind}: timeoutSeconds and failureThreshold must be at least 1")
        else:
            found += [
                f"{kind}.{field}: disallowed when periodSeconds is zero"
                for field in ("timeoutSeconds", "failureThreshold")
                if probe.get(field, 0) != 0
            ]
    return found
