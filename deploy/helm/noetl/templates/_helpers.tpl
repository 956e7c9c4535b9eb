{{- define "noetl.fullname" -}}
{{- printf "%s-%s" .Release.Name "noetl" | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "noetl.labels" -}}
app.kubernetes.io/name: noetl
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "noetl.selector" -}}
app.kubernetes.io/name: noetl
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "noetl.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "noetl.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "noetl.fullname" .)) -}}
{{- end -}}

{{/* The settings every NoETL process reads from the Secret. */}}
{{- define "noetl.secretEnv" -}}
- name: NOETL_DATABASE_URL
  valueFrom: {secretKeyRef: {name: {{ include "noetl.secretName" . }}, key: database-url}}
- name: NOETL_ENCRYPTION_KEY
  valueFrom: {secretKeyRef: {name: {{ include "noetl.secretName" . }}, key: encryption-key}}
- name: NOETL_SERVICE_TOKEN
  valueFrom: {secretKeyRef: {name: {{ include "noetl.secretName" . }}, key: service-token}}
{{- end -}}

{{- define "noetl.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The queue depth KEDA scales a pool on: commands ready now, plus those running. Tested against a
real database by tests/deploy/test_chart.py. */}}
{{- define "noetl.queueQuery" -}}
SELECT count(*) FROM noetl.command WHERE pool = '{{ . }}' AND (status = 'leased' OR (status = 'ready' AND available_at <= now()))
{{- end -}}

{{- define "noetl.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
