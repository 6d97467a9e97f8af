{{- define "provisionerd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "provisionerd.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "provisionerd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "provisionerd.keySecret" -}}
{{- if .Values.key.existingSecret -}}
{{- .Values.key.existingSecret -}}
{{- else -}}
{{- printf "%s-key" (include "provisionerd.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "provisionerd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "provisionerd.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Without create and name the pods run as the namespace's `default` account,
which every pod that names none shares: its token, or workspace rights bound
to it, would reach far beyond this pool. Refused unless named explicitly.
*/}}
{{- define "provisionerd.checkServiceAccount" -}}
{{- $sa := .Values.serviceAccount -}}
{{- if and (not $sa.create) (not $sa.name) -}}
{{- if $sa.automountToken -}}
{{- fail "serviceAccount.automountToken with serviceAccount.create=false needs serviceAccount.name: the namespace's default account is every unnamed pod's; name the account meant for this pool (name: default to mean that one)" -}}
{{- end -}}
{{- if $sa.workspacePerms -}}
{{- fail "serviceAccount.workspacePerms with serviceAccount.create=false needs serviceAccount.name: the namespace's default account is every unnamed pod's; name the account meant for this pool (name: default to mean that one)" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The drain deadline: the pod's grace period less a margin for the kubelet.
The daemon cancels its job early enough inside it that the cancel grace and
the final report fit (it refuses a deadline shorter than grace + 10s).
*/}}
{{- define "provisionerd.drainTimeout" -}}
{{- $grace := int .Values.shutdown.terminationGracePeriodSeconds -}}
{{- $drain := sub $grace (int .Values.shutdown.stopMarginSeconds) -}}
{{- $needed := add (int .Values.daemon.cancelGraceSeconds) 10 -}}
{{- if lt (int $drain) (int $needed) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds (%d) less stopMarginSeconds (%d) must be at least daemon.cancelGraceSeconds + 10 (%d): the daemon needs that long to interrupt terraform and report" $grace (int .Values.shutdown.stopMarginSeconds) $needed) -}}
{{- end -}}
{{- printf "%ds" $drain -}}
{{- end -}}
