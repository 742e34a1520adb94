{{/*
Helpers shared by the templates. Keep the templates within what the chart's test renderer
implements (crates/operator/tests/helm_chart.rs): Go text/template plus include, default,
trunc, trimSuffix, contains, replace, quote, toYaml and nindent.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "myset-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The objects' name: fullnameOverride, else the release name when it already contains the chart's
name (`helm install myset-operator ...` gives myset-operator), else release-chart. Truncated to
63 characters, the longest a label value or DNS label may be.
*/}}
{{- define "myset-operator.fullname" -}}
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

{{/* The helm.sh/chart label: name-version. */}}
{{- define "myset-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Every object's labels. */}}
{{- define "myset-operator.labels" -}}
helm.sh/chart: {{ include "myset-operator.chart" . }}
{{ include "myset-operator.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator Pods' selector (immutable once the Deployment exists). */}}
{{- define "myset-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "myset-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "myset-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "myset-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
