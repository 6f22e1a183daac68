{{/*
Values KServe or a stock Knative Serving would refuse, refused here with the reason, so that a bad
install fails at `helm install` instead of leaving an InferenceService that never becomes Ready.
What they check: KServe's validateAutoScalingCompExtension (inference_service_validation.go) and
Knative's PodSpecMask with its default feature flags (fieldmask.go, features.go). Kubernetes
older than Chart.yaml's kubeVersion Helm refuses itself.
*/}}
{{- define "audio-maas.validate" -}}
{{- if semverCompare "<0.16.0-0" (toString .Values.kserveVersion) }}
{{- fail (printf "kserveVersion %s: this chart needs KServe 0.16 or newer (deploymentMode Knative|Standard)" (toString .Values.kserveVersion)) }}
{{- end }}
{{- $knative := eq .Values.deploymentMode "Knative" -}}
{{- $flags := .Values.knative.enabledFeatures -}}
{{- range $component := list "transformer" "predictor" }}
{{- $values := get $.Values $component -}}
{{- $scaling := $values.autoscaling -}}
{{- if gt (int $scaling.minReplicas) (int $scaling.maxReplicas) }}
{{- fail (printf "%s.autoscaling: minReplicas %v is over maxReplicas %v" $component $scaling.minReplicas $scaling.maxReplicas) }}
{{- end }}
{{- $hpaMetric := has $scaling.scaleMetric (list "cpu" "memory") -}}
{{- if and $knative $hpaMetric }}
{{- fail (printf "%s.autoscaling.scaleMetric %s: Knative's autoscaler scales on concurrency or rps; cpu and memory need deploymentMode=Standard" $component $scaling.scaleMetric) }}
{{- end }}
{{- if and (not $knative) (not $hpaMetric) }}
{{- fail (printf "%s.autoscaling.scaleMetric %s: Standard mode scales with an HPA on cpu or memory; concurrency and rps need deploymentMode=Knative" $component $scaling.scaleMetric) }}
{{- end }}
{{- if and $hpaMetric (gt (int $scaling.scaleTarget) 100) }}
{{- fail (printf "%s.autoscaling.scaleTarget %v: KServe takes a %s target as a utilisation percentage, 1-100" $component $scaling.scaleTarget $scaling.scaleMetric) }}
{{- end }}
{{- if $knative }}
{{- $podFields := deepCopy $values.scheduling -}}
{{- if eq $component "predictor" }}
{{- $podFields = include "audio-maas.predictorScheduling" $ | fromYaml }}
{{- end }}
{{- $_ := set $podFields "securityContext" $.Values.podSecurityContext -}}
{{- $flagOf := dict "nodeSelector" "kubernetes.podspec-nodeselector" "tolerations" "kubernetes.podspec-tolerations" "affinity" "kubernetes.podspec-affinity" "topologySpreadConstraints" "kubernetes.podspec-topologyspreadconstraints" "securityContext" "kubernetes.podspec-securitycontext" -}}
{{- range $field, $flag := $flagOf }}
{{- if and (get $podFields $field) (not (has $flag $flags)) }}
{{- fail (printf "%s pods get %s, which a stock Knative Serving refuses: enable its %s feature flag (ConfigMap config-features in knative-serving) and list it in knative.enabledFeatures, or use deploymentMode=Standard" $component $field $flag) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (not $.Values.runtime.create) (not $.Values.runtime.name) }}
{{- fail "runtime.create=false needs runtime.name: the (Cluster)ServingRuntime to run the predictor on" }}
{{- end }}
{{- end }}
