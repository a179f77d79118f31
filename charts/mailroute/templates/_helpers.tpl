{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "mailroute.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "mailroute.fullname" -}}
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

{{- define "mailroute.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "mailroute.labels" -}}
helm.sh/chart: {{ include "mailroute.chart" . }}
app.kubernetes.io/name: {{ include "mailroute.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailroute
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "root" $ "component" "relay"). */}}
{{- define "mailroute.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailroute.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mailroute.componentLabels" -}}
{{ include "mailroute.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "mailroute.operator.fullname" -}}
{{- printf "%s-operator" (include "mailroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailroute.relay.fullname" -}}
{{- printf "%s-relay" (include "mailroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The most relay pods there can be: the HPA's maxReplicas, or replicaCount without the HPA. The relay Role grants
get/update/delete of exactly their heartbeat Leases (mailroute-relay-<pod>). */}}
{{- define "mailroute.relay.maxPods" -}}
{{- if .Values.relay.autoscaling.enabled }}{{ max .Values.relay.autoscaling.maxReplicas .Values.relay.replicaCount }}{{ else }}{{ .Values.relay.replicaCount }}{{ end }}
{{- end }}

{{/* Headless Service of the relay peers (StatefulSet serviceName). */}}
{{- define "mailroute.relay.peersName" -}}
{{- printf "%s-relay-peers" (include "mailroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mailroute.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "mailroute.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailroute.relay.serviceAccountName" -}}
{{- if .Values.relay.serviceAccount.create }}
{{- default (include "mailroute.relay.fullname" .) .Values.relay.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.relay.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ConfigMap the operator writes and the relays read. Its name is fixed: the operator always writes
     mailroute-routing in its own namespace. */}}
{{- define "mailroute.routingConfigMap" -}}
mailroute-routing
{{- end }}

{{- define "mailroute.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The ConfigMap that owns (metadata.ownerReferences) what the operator creates at run time; helm uninstall
     deletes it and the garbage collector deletes the rest. */}}
{{- define "mailroute.ownerConfigMap" -}}
{{- printf "%s-owner" (include "mailroute.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
