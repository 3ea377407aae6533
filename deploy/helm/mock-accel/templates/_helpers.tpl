{{- define "mock-accel.fullname" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mock-accel.labels" -}}
app.kubernetes.io/name: mock-accel
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The image of one component: (dict "root" $ "image" .Values.<component>.image). */}}
{{- define "mock-accel.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{- define "mock-accel.pluginDir" -}}
{{ .Values.nodeAgent.kubeletDir }}/plugins/{{ .Values.driverName }}
{{- end -}}
