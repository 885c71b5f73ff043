{{/* Names, labels and the few computed values every template shares. */}}

{{- define "roboaug.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roboaug.fullname" -}}
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

{{- define "roboaug.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object (the generated CRD template includes this one too). */}}
{{- define "roboaug.labels" -}}
helm.sh/chart: {{ include "roboaug.chart" . }}
app.kubernetes.io/name: {{ include "roboaug.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: roboaug
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "operator"). */}}
{{- define "roboaug.selectorLabels" -}}
app.kubernetes.io/name: {{ include "roboaug.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "roboaug.componentLabels" -}}
{{ include "roboaug.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "roboaug.operator.fullname" -}}
{{- printf "%s-operator" (include "roboaug.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roboaug.gateway.fullname" -}}
{{- printf "%s-gateway" (include "roboaug.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "roboaug.operator.serviceAccountName" -}}
{{- default (include "roboaug.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}

{{- define "roboaug.gateway.serviceAccountName" -}}
{{- default (include "roboaug.gateway.fullname" .) .Values.gateway.serviceAccount.name }}
{{- end }}

{{/* image reference from (dict "repository" .. "tag" .. "digest" ..) and the app version. */}}
{{- define "roboaug.imageRef" -}}
{{- $img := .image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s%s" $img.repository (default .appVersion $img.tag) (default "" .suffix) -}}
{{- end -}}
{{- end }}

{{- define "roboaug.image" -}}
{{- include "roboaug.imageRef" (dict "image" .Values.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{/* Namespaces where worker pods run: watchNamespaces (or the release namespace) + workerNamespaces. */}}
{{- define "roboaug.workerNamespaces" -}}
{{- $ns := list -}}
{{- if .Values.watchNamespaces -}}
{{- $ns = concat $ns .Values.watchNamespaces -}}
{{- else -}}
{{- $ns = append $ns .Release.Namespace -}}
{{- end -}}
{{- $ns = concat $ns .Values.workerNamespaces | uniq -}}
{{- toJson $ns -}}
{{- end }}

{{/* Chart-level consistency checks schema validation cannot express. */}}
{{- define "roboaug.validate" -}}
{{- range $type, $pool := .Values.routing }}
{{- if not (hasKey $.Values.pools $pool) }}
{{- fail (printf "routing.%s: pool %q is not defined in pools (%s)" $type $pool (keys $.Values.pools | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- if and .Values.gateway.enabled .Values.watchNamespaces (not (has .Release.Namespace .Values.watchNamespaces)) }}
{{- fail (printf "watchNamespaces must include the release namespace %q: the gateway creates AugmentationJobs there (or set gateway.enabled=false)" .Release.Namespace) }}
{{- end }}
{{- if and .Values.operator.leaderElection.enabled (ge (float64 .Values.operator.leaderElection.renewPeriodSeconds) (float64 .Values.operator.leaderElection.leaseDurationSeconds)) }}
{{- fail "operator.leaderElection.renewPeriodSeconds must be below leaseDurationSeconds" }}
{{- end }}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.leaderElection.enabled) }}
{{- fail "operator.replicas > 1 needs operator.leaderElection.enabled=true (two active operators would act on the same jobs)" }}
{{- end }}
{{- $ids := list }}
{{- range $p := .Values.projects.items }}
{{- $key := printf "%s/%s" (default $.Release.Namespace $p.namespace) (lower $p.id) }}
{{- if has $key $ids }}
{{- fail (printf "projects.items: project %s is declared twice in namespace %s" (lower $p.id) (default $.Release.Namespace $p.namespace)) }}
{{- end }}
{{- $ids = append $ids $key }}
{{- end }}
{{- if gt (int .Values.gateway.listDefaultLimit) (int .Values.gateway.listMaxLimit) }}
{{- fail "gateway.listDefaultLimit must not exceed gateway.listMaxLimit" }}
{{- end }}
{{- end }}

{{/* The operator configuration file (schema: operator/config.py, OperatorConfig). */}}
{{/* "true" when a pool or a projects.items entry names a Kueue LocalQueue, or projects.kueueQueues
says projects made elsewhere may (then the operator reads Workloads), else "". */}}
{{- define "roboaug.kueueEnabled" -}}
{{- $on := .Values.projects.kueueQueues }}
{{- range $_, $pool := .Values.pools }}{{ if $pool.kueueQueue }}{{ $on = true }}{{ end }}{{ end }}
{{- range $p := .Values.projects.items }}{{ if $p.kueueQueue }}{{ $on = true }}{{ end }}{{ end }}
{{- if $on }}true{{ end }}
{{- end }}

{{- define "roboaug.operatorConfig" -}}
{{- $root := . -}}
namespaces: {{ toJson .Values.watchNamespaces }}
pools:
{{- range $name, $pool := .Values.pools }}
  {{ $name }}:
    {{- with $pool.instanceType }}
    instance_type: {{ . | quote }}
    {{- end }}
    node_selector: {{ toJson (default (dict) $pool.nodeSelector) }}
    tolerations: {{ toJson (default (list) $pool.tolerations) }}
    {{- $res := deepCopy (default (dict) $pool.resources) }}
    {{- $req := deepCopy (default (dict) $res.requests) }}
    {{- $lim := deepCopy (default (dict) $res.limits) }}
    {{- if gt (int (default 0 $pool.gpus)) 0 }}
    {{- $_ := set $req "nvidia.com/gpu" (toString $pool.gpus) }}
    {{- $_ := set $lim "nvidia.com/gpu" (toString $pool.gpus) }}
    {{- end }}
    resources:
      requests: {{ toJson $req }}
      limits: {{ toJson $lim }}
    {{- if $pool.image }}
    image: {{ $pool.image | quote }}
    {{- else }}
    image: {{ include "roboaug.imageRef" (dict "image" $root.Values.workerImage "appVersion" $root.Chart.AppVersion "suffix" $pool.imageTagSuffix) | quote }}
    {{- end }}
    image_pull_policy: {{ default "IfNotPresent" $pool.imagePullPolicy }}
    pod_labels: {{ toJson (default (dict) $pool.podLabels) }}
    pod_annotations: {{ toJson (default (dict) $pool.podAnnotations) }}
    {{- with $pool.priorityClassName }}
    priority_class_name: {{ . | quote }}
    {{- end }}
    {{- with $pool.activeDeadlineSeconds }}
    active_deadline_seconds: {{ int . }}
    {{- end }}
    {{- with $pool.maxParallelism }}
    max_parallelism: {{ int . }}
    {{- end }}
    {{- with $pool.framesPerShard }}
    frames_per_shard: {{ int64 . }}
    {{- end }}
    {{- with $pool.kueueQueue }}
    kueue_queue: {{ . | quote }}
    {{- end }}
{{- end }}
routing: {{ toJson .Values.routing }}
image_pull_secrets: [{{ range $i, $s := .Values.imagePullSecrets }}{{ if $i }}, {{ end }}{{ $s.name | quote }}{{ end }}]
backoff_limit: {{ int .Values.jobs.backoffLimit }}
pending_timeout_seconds: {{ int .Values.jobs.pendingTimeoutSeconds }}
ttl_seconds_after_finished: {{ if kindIs "invalid" .Values.jobs.ttlSecondsAfterFinished }}null{{ else }}{{ int .Values.jobs.ttlSecondsAfterFinished }}{{ end }}
active_deadline_seconds: {{ if kindIs "invalid" .Values.jobs.activeDeadlineSeconds }}null{{ else }}{{ int .Values.jobs.activeDeadlineSeconds }}{{ end }}
{{- if .Values.hubToken.secretName }}
hub_token_secret: {name: {{ .Values.hubToken.secretName | quote }}, key: {{ .Values.hubToken.key | quote }}}
{{- else }}
hub_token_secret: null
{{- end }}
jobs_without_project:
  action: {{ .Values.projects.jobsWithoutProject.action | quote }}
  default_project: {{ with .Values.projects.jobsWithoutProject.defaultProject }}{{ lower . | quote }}{{ else }}null{{ end }}
worker_env: {{ toJson (default (dict) .Values.jobs.env) }}
scratch_size_limit: {{ if .Values.jobs.scratchSizeLimit }}{{ .Values.jobs.scratchSizeLimit | quote }}{{ else }}null{{ end }}
webhooks:
  enabled: {{ .Values.webhooks.enabled }}
  secret_names: {{ toJson .Values.webhooks.secretNames }}
  allow_http_hosts: {{ toJson .Values.webhooks.allowHttpHosts }}
  max_attempts: {{ int .Values.webhooks.maxAttempts }}
  backoff_seconds: {{ .Values.webhooks.backoffSeconds }}
  max_backoff_seconds: {{ .Values.webhooks.maxBackoffSeconds }}
  timeout_seconds: {{ .Values.webhooks.timeoutSeconds }}
leader_election:
  enabled: {{ .Values.operator.leaderElection.enabled }}
  lease_name: {{ include "roboaug.operator.fullname" . | quote }}
  lease_namespace: {{ .Release.Namespace | quote }}
  lease_duration_seconds: {{ .Values.operator.leaderElection.leaseDurationSeconds }}
  renew_period_seconds: {{ .Values.operator.leaderElection.renewPeriodSeconds }}
health_port: {{ int .Values.operator.healthPort }}
metrics_port: {{ int .Values.operator.metricsPort }}
resync_seconds: {{ .Values.operator.resyncSeconds }}
api_concurrency: {{ int .Values.operator.apiConcurrency }}
watch_initial_streaming: {{ .Values.operator.watchInitialStreaming | quote }}
status_yield_seconds: {{ .Values.operator.statusYieldSeconds }}
log_format: {{ .Values.logFormat | quote }}
log_level: {{ .Values.logLevel | quote }}
{{- end }}

{{/* Pod-level settings shared by the operator and gateway Deployments: (dict "ctx" $ "c" .Values.operator). */}}
{{- define "roboaug.podCommon" -}}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules every component needs: DNS and the API server (.Values.networkPolicy). */}}
{{- define "roboaug.np.dnsAndApi" -}}
# DNS (any namespace: cluster DNS lives in kube-system or elsewhere).
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
# The Kubernetes API server.
- to:
    {{- range .apiServerCIDRs }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  ports:
    {{- range .apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
