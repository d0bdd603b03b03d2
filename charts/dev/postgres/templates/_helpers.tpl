{{/* The name of every resource: the release name unless overridden (`orderflow-postgres` in skaffold.yaml). */}}
{{- define "devpostgres.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 53 | trimSuffix "-" }}
{{- end }}

{{- define "devpostgres.selectorLabels" -}}
app.kubernetes.io/name: postgres
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "devpostgres.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "devpostgres.selectorLabels" . }}
{{- /* A label value: at most 63 characters, ending alphanumeric (skaffold tags local images with their 64-hex id). */}}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | trimSuffix "_" | trimSuffix "." | quote }}
app.kubernetes.io/component: postgres-dev
app.kubernetes.io/part-of: orderflow
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The four services whose databases this creates. */}}
{{- define "devpostgres.services" -}}
order inventory billing shipping
{{- end }}
