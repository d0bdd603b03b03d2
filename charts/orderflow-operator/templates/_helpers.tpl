{{/* The chart name, overridable. */}}
{{- define "orderflow-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the resources: the release name, with the chart name unless already in it. */}}
{{- define "orderflow-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels that select the operator's Pods (stable across upgrades). */}}
{{- define "orderflow-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orderflow-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The app.kubernetes.io labels on every resource of the chart: the one place they are defined. */}}
{{- define "orderflow-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orderflow-operator.selectorLabels" . }}
{{- /* A label value: at most 63 characters, ending alphanumeric (skaffold tags local images with their 64-hex id). */}}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | trimSuffix "_" | trimSuffix "." | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: orderflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "orderflow-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "orderflow-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The RBAC rules, shared by the ClusterRole (all namespaces) and the per-namespace Roles. */}}
{{- define "orderflow-operator.rules" -}}
# Watch OrderFlows (kopf lists, then watches; it writes nothing into them).
- apiGroups: ["orderflow.dev"]
  resources: ["orderflows"]
  verbs: ["list", "watch"]
# Write what the operator observed and decided.
- apiGroups: ["orderflow.dev"]
  resources: ["orderflows/status"]
  verbs: ["patch"]
# Read and set replicas through the scale subresource only; never the Deployment object itself.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch"]
# Events for scaling decisions and health transitions.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- with .Values.rbac.kafkaSecretNames }}
# Librdkafka settings (SASL/TLS) of spec.kafka.secretRef, only the Secrets named in the values.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: {{ toJson . }}
  verbs: ["get"]
{{- end }}
{{- end }}
