{{/* Names, labels and shared pieces of the naaice chart; every helper is namespaced "naaice.". */}}

{{- define "naaice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name prefix of every object: the release name, plus the chart name unless included. */}}
{{- define "naaice.fullname" -}}
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

{{- define "naaice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "naaice.operator.fullname" -}}
{{- printf "%s-operator" (include "naaice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's webhook: the MutatingWebhookConfiguration and the chart's TLS Secret. */}}
{{- define "naaice.webhook.fullname" -}}
{{- printf "%s-operator-webhook" (include "naaice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret the operator serves the webhook's certificate from. */}}
{{- define "naaice.webhook.secretName" -}}
{{- .Values.operator.webhook.tls.existingSecret | default (include "naaice.webhook.fullname" .) }}
{{- end }}

{{- define "naaice.agent.fullname" -}}
{{- printf "%s-agent" (include "naaice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The runtime StatefulSet and its headless Service: pod N is named like NAA object N. The
     StatefulSet controller appends "-<ordinal>" and a pod-name label of its own, so 52 leaves
     room for both within 63. */}}
{{- define "naaice.runtime.fullname" -}}
{{- printf "%s-naa" (include "naaice.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "naaice.tokenSecretName" -}}
{{- if .Values.runtime.managementToken.existingSecret }}
{{- .Values.runtime.managementToken.existingSecret }}
{{- else }}
{{- printf "%s-management-token" (include "naaice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "naaice.labels" -}}
helm.sh/chart: {{ include "naaice.chart" . }}
{{ include "naaice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: naaice
{{- end }}

{{- define "naaice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "naaice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component: call with (dict "root" $ "component" "agent"). */}}
{{- define "naaice.componentLabels" -}}
{{ include "naaice.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "naaice.componentSelectorLabels" -}}
{{ include "naaice.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "naaice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The address NAA object N gives for runtime pod N: the fixed runtime.address, else the pod's
     DNS name under the headless Service. Call with (dict "root" $ "ordinal" N). */}}
{{- define "naaice.naaAddress" -}}
{{- $root := .root }}
{{- if $root.Values.runtime.address }}
{{- $root.Values.runtime.address }}
{{- else }}
{{- $sts := include "naaice.runtime.fullname" $root }}
{{- printf "%s-%d.%s.%s.svc.%s" $sts (int .ordinal) $sts $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}
{{- end }}
