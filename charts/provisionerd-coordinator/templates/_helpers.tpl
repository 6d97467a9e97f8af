{{- define "coordinator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "coordinator.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "coordinator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
"true" when the store is an external database (PostgreSQL), "" for SQLite.
*/}}
{{- define "coordinator.external" -}}
{{- if .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
Refuses values that would deploy something broken. The schema says the
same where JSON schema can; these messages also hold with
--skip-schema-validation and say why.
*/}}
{{- define "coordinator.validate" -}}
{{- if hasKey .Values.database "url" -}}
{{- fail "database.url is not taken: a password must not sit in values or the pod spec; put the URL in a Secret and set database.existingSecret (and database.secretKey)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.database.existingSecret) -}}
{{- fail (printf "replicas: %d needs database.existingSecret (a Secret with a PostgreSQL URL): the default store is SQLite in one pod's volume, which has one writer" (int .Values.replicas)) -}}
{{- end -}}
{{- if and .Values.database.existingSecret (not .Values.adminToken.existingSecret) -}}
{{- fail "database.existingSecret needs adminToken.existingSecret: with an external database the data dir is scratch, so an admin token written there at first start would be lost with its pod" -}}
{{- end -}}
{{- end -}}

{{/*
Whether the PodDisruptionBudget is rendered: as set, or (null) when more
than one replica serves.
*/}}
{{- define "coordinator.pdbEnabled" -}}
{{- $on := .Values.podDisruptionBudget.enabled -}}
{{- if kindIs "invalid" $on -}}
{{- $on = gt (int .Values.replicas) 1 -}}
{{- end -}}
{{- if $on -}}true{{- end -}}
{{- end -}}

{{/*
The pod's affinity: the user's, plus anti-affinity between replicas when
there are several and the user's sets none of its own.
*/}}
{{- define "coordinator.affinity" -}}
{{- $affinity := deepCopy .Values.affinity -}}
{{- $mode := .Values.podAntiAffinity.mode -}}
{{- if and (gt (int .Values.replicas) 1) (ne $mode "off") (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" .Values.podAntiAffinity.topologyKey "labelSelector" (dict "matchLabels" (include "coordinator.selectorLabels" . | fromYaml)) -}}
{{- if eq $mode "required" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end -}}
{{- if $affinity -}}
{{- toYaml $affinity -}}
{{- end -}}
{{- end -}}
