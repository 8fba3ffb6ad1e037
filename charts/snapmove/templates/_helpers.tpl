{{/*
Labels of every object. The mover's own objects have fixed names (snapmove-mover): one mover
serves the Velero of its namespace, and snapmove's commands find it by that name.
*/}}
{{- define "snapmove.labels" -}}
app.kubernetes.io/part-of: snapmove
app.kubernetes.io/version: {{ include "snapmove.tag" . | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "snapmove.tag" -}}
{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The one image: mover, workers and Velero's initContainer. */}}
{{- define "snapmove.image" -}}
{{ .Values.image.repository }}:{{ include "snapmove.tag" . }}
{{- end }}

{{/* Cluster-scoped objects are named after the namespace: one mover per Velero namespace. */}}
{{- define "snapmove.clusterName" -}}
snapmove-mover-{{ .Release.Namespace }}
{{- end }}

{{/* The port of an address like ":8085" or "127.0.0.1:8085". */}}
{{- define "snapmove.port" -}}
{{ regexReplaceAll "^.*:" . "" }}
{{- end }}

{{- define "snapmove.metricsOn" -}}
{{- if and .Values.metrics.bindAddress (ne .Values.metrics.bindAddress "0") }}true{{ end }}
{{- end }}
