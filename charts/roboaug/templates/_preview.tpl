{{/* Names of the preview service (preview-*.yaml) and the URL the gateway calls it at. */}}

{{- define "roboaug.preview.fullname" -}}
{{- printf "%s-preview" (include "roboaug.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roboaug.preview.serviceAccountName" -}}
{{- default (include "roboaug.preview.fullname" .) .Values.preview.serviceAccount.name }}
{{- end }}

{{/* Rendered only with the gateway: it is the service's one client. */}}
{{- define "roboaug.preview.enabled" -}}
{{- if and .Values.gateway.enabled .Values.preview.enabled }}true{{ end }}
{{- end }}

{{- define "roboaug.preview.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "roboaug.preview.fullname" .) .Release.Namespace (int .Values.preview.service.port) }}
{{- end }}

{{- define "roboaug.preview.image" -}}
{{- include "roboaug.imageRef" (dict "image" .Values.workerImage "appVersion" .Chart.AppVersion) }}
{{- end }}
