{{/* Chart name, overridable with nameOverride. */}}
{{- define "audio-maas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name of the InferenceService; KServe appends -predictor/-transformer, so keep room. */}}
{{- define "audio-maas.fullname" -}}
{{- if contains (include "audio-maas.name" .) .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "audio-maas.name" .) | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels for every object; helm.sh/chart changes with each chart version, so it stays out of selectors. */}}
{{- define "audio-maas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "audio-maas.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "audio-maas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "audio-maas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Component-level fields KServe reads for scaling and rollout. Args: component values, root context. */}}
{{- define "audio-maas.componentScaling" -}}
{{- $scaling := .component.autoscaling -}}
minReplicas: {{ $scaling.minReplicas }}
maxReplicas: {{ $scaling.maxReplicas }}
scaleMetric: {{ $scaling.scaleMetric }}
scaleTarget: {{ $scaling.scaleTarget }}
{{- if and (eq .root.Values.deploymentMode "Knative") (gt (int $scaling.containerConcurrency) 0) }}
containerConcurrency: {{ $scaling.containerConcurrency }}
{{- end }}
{{- if not (kindIs "invalid" .root.Values.canaryTrafficPercent) }}
canaryTrafficPercent: {{ .root.Values.canaryTrafficPercent }}
{{- end }}
automountServiceAccountToken: false  # neither server talks to the Kubernetes API
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
volumes:
  # The root filesystem is read-only; servers and libraries get a private /tmp.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end }}

{{/* Container fields both components share. */}}
{{- define "audio-maas.containerCommon" -}}
env:
  - name: STORAGE_URI  # KServe's storage initializer puts this model directory in /mnt/models
    value: {{ .Values.storageUri | quote }}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}
