{{/* The chart name, overridable. */}}
{{- define "orderflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: the prefix of every resource name (the release name, with the chart name unless in it). */}}
{{- define "orderflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The four services, in the order of the saga. */}}
{{- define "orderflow.serviceNames" -}}
order inventory billing shipping
{{- end }}

{{/* The topic streams each service consumes (services/events/catalog.py; a test keeps them equal). */}}
{{- define "orderflow.consumes" -}}
{{- $streams := dict "order" (list "inventory" "payments" "shipments") "inventory" (list "orders" "payments" "shipments") "billing" (list "inventory" "orders" "shipments") "shipping" (list "inventory" "orders" "payments") -}}
{{- index $streams . | join " " -}}
{{- end }}

{{/* The name of one service's Deployment, Service and PDB: (dict "root" $ "service" "order"). */}}
{{- define "orderflow.componentName" -}}
{{- printf "%s-%s" (include "orderflow.fullname" .root) .service }}
{{- end }}

{{/* Labels that select the release's Pods (stable across upgrades). */}}
{{- define "orderflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orderflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select one service's Pods: (dict "root" $ "service" "order"). */}}
{{- define "orderflow.componentSelectorLabels" -}}
{{ include "orderflow.selectorLabels" .root }}
app.kubernetes.io/component: {{ .service }}
{{- end }}

{{/* The app.kubernetes.io labels on every resource of the chart: the one place they are defined.
     (dict "root" $ "service" "order") for a service's resources, (dict "root" $) for the release's. */}}
{{- define "orderflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "orderflow.selectorLabels" .root }}
{{- with .service }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- /* A label value: at most 63 characters, ending alphanumeric (skaffold tags local images with their 64-hex id). */}}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | trunc 63 | trimSuffix "-" | trimSuffix "_" | trimSuffix "." | quote }}
app.kubernetes.io/part-of: orderflow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* The image reference. */}}
{{- define "orderflow.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* `security.protocol` -> `ORDERFLOW_KAFKA_SECURITY_PROTOCOL`. */}}
{{- define "orderflow.kafkaEnvName" -}}
{{- printf "ORDERFLOW_KAFKA_%s" (. | upper | replace "." "_" | replace "-" "_") }}
{{- end }}

{{/* `(dict "transport" "nats" "name" "tls_ca")` -> `ORDERFLOW_NATS_TLS_CA`: what config.transport_options reads. */}}
{{- define "orderflow.transportEnvName" -}}
{{- printf "ORDERFLOW_%s_%s" (.transport | upper) (.name | upper | replace "." "_" | replace "-" "_") }}
{{- end }}

{{/* The selected transport's values (transport.nats or transport.rabbitmq); fails naming what is missing. */}}
{{- define "orderflow.broker" -}}
{{- $type := .Values.transport.type }}
{{- $broker := index .Values.transport $type }}
{{- if not (or $broker.url $broker.existingSecret) }}
{{- fail (printf "transport.type is %s: set transport.%s.url, or transport.%s.existingSecret to a Secret with ORDERFLOW_%s_URL" $type $type $type (upper $type)) }}
{{- end }}
{{- toYaml $broker }}
{{- end }}

{{/* A map as `key=value,key=value` (sorted by key): the form of OTEL_RESOURCE_ATTRIBUTES. */}}
{{- define "orderflow.keyValues" -}}
{{- $pairs := list }}
{{- range $key := keys . | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%v" $key (index $ $key)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
