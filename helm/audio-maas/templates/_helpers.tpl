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

{{/* The serving runtime the predictor runs on. */}}
{{- define "audio-maas.runtimeName" -}}
{{- default (include "audio-maas.fullname" .) .Values.runtime.name }}
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

{{/* An image reference: by digest when one is given, else by tag. */}}
{{- define "audio-maas.image" -}}
{{- if .digest }}{{ .repository }}@{{ .digest }}{{ else }}{{ .repository }}:{{ .tag }}{{ end }}
{{- end }}

{{/* The predictor's placement, as YAML: its scheduling values, and the GPU's node selector and
tolerations when it asks for a GPU. */}}
{{- define "audio-maas.predictorScheduling" -}}
{{- $scheduling := deepCopy .Values.predictor.scheduling -}}
{{- $gpu := .Values.predictor.gpu -}}
{{- if $gpu.enabled }}
{{- $_ := set $scheduling "nodeSelector" (merge (deepCopy (default dict $scheduling.nodeSelector)) (default dict $gpu.nodeSelector)) }}
{{- $_ := set $scheduling "tolerations" (concat (default list $scheduling.tolerations) (default list $gpu.tolerations)) }}
{{- end }}
{{- toYaml $scheduling }}
{{- end }}

{{/* Pod-level fields KServe passes on to a component's pods. Args: scheduling (placement values), root. */}}
{{- define "audio-maas.podFields" -}}
{{- $root := .root -}}
{{- $scheduling := .scheduling -}}
automountServiceAccountToken: false  # neither server talks to the Kubernetes API
{{- with $root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- with $root.Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- range $field := list "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" }}
{{- with get $scheduling $field }}
{{ $field }}:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
volumes:
  # The root filesystem is read-only; servers and libraries get a private /tmp.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end }}

{{/* Component-level fields KServe reads for scaling and rollout. Args: component (values), root. */}}
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
{{- end }}

{{/* The bearer token's variable, when a Secret holds one: both servers require it, and the
transformer sends it on to the predictor. */}}
{{- define "audio-maas.tokenEnv" -}}
{{- with .Values.auth.existingSecret }}
- name: AUDIO_MAAS_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auth.secretKey }}
{{- end }}
{{- end }}

{{/* Container fields both components share. */}}
{{- define "audio-maas.containerCommon" -}}
securityContext:
  {{- toYaml .Values.containerSecurityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}

{{/* Probes of a server: REST on 8080, or a TCP check of a gRPC-only port 8081. Both servers
listen only once their model is loaded, so start-up waits for the process; readiness asks the model
(the transformer's is ready once the predictor answered it). In Knative mode readiness has no
period: Knative's queue-proxy then probes every 50 ms until ready, instead of once a period, which
would add up to a period to every cold start. Args: port, path, root. */}}
{{- define "audio-maas.probes" -}}
{{- $grpc := eq (int .port) 8081 -}}
{{- $live := ternary (dict "tcpSocket" (dict "port" 8081)) (dict "httpGet" (dict "path" "/v2/health/live" "port" 8080)) $grpc -}}
{{- $ready := ternary $live (dict "httpGet" (dict "path" .path "port" 8080)) $grpc -}}
startupProbe:
  {{- toYaml $live | nindent 2 }}
  periodSeconds: {{ .root.Values.startupProbe.periodSeconds }}
  failureThreshold: {{ .root.Values.startupProbe.failureThreshold }}
readinessProbe:
  {{- toYaml $ready | nindent 2 }}
  {{- if eq .root.Values.deploymentMode "Standard" }}
  periodSeconds: 2
  timeoutSeconds: 2
  failureThreshold: 3
  {{- end }}
livenessProbe:
  {{- toYaml $live | nindent 2 }}
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
{{- end }}
