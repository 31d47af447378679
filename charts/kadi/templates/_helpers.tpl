{{/*
Names, labels and shared pod fragments. Every object name and label in this
chart comes from here.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "kadi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, with the chart name
unless the release name already contains it. */}}
{{- define "kadi.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one part of the release: (dict "root" $ "part" "controller"). */}}
{{- define "kadi.partname" -}}
{{- printf "%s-%s" (include "kadi.fullname" .root) .part | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kadi.controller.fullname" -}}
{{- include "kadi.partname" (dict "root" . "part" "controller") -}}
{{- end -}}

{{- define "kadi.postgresql.fullname" -}}
{{- include "kadi.partname" (dict "root" . "part" "postgresql") -}}
{{- end -}}

{{- define "kadi.redis.fullname" -}}
{{- include "kadi.partname" (dict "root" . "part" "redis") -}}
{{- end -}}

{{- define "kadi.migrations.fullname" -}}
{{- include "kadi.partname" (dict "root" . "part" "migrations") -}}
{{- end -}}

{{/* Secret with the external connection URLs the chart was given. */}}
{{- define "kadi.external.secretName" -}}
{{- include "kadi.partname" (dict "root" . "part" "external") -}}
{{- end -}}

{{- define "kadi.app.serviceAccountName" -}}
{{- if .Values.app.serviceAccount.create -}}
{{- default (include "kadi.fullname" .) .Values.app.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.app.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kadi.controller.serviceAccountName" -}}
{{- if .Values.controller.serviceAccount.create -}}
{{- default (include "kadi.controller.fullname" .) .Values.controller.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.controller.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "kadi.controller.leaseName" -}}
{{- default (include "kadi.controller.fullname" .) .Values.controller.leaseName -}}
{{- end -}}

{{- define "kadi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one component: (dict "root" $ "component" "server"). */}}
{{- define "kadi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kadi.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every label of an object of one component. */}}
{{- define "kadi.labels" -}}
helm.sh/chart: {{ include "kadi.chart" .root }}
{{ include "kadi.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: kadi
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* image reference from an image block: (dict "root" $ "image" .Values.app.image).
An empty tag means the chart's appVersion; `latest` is refused. */}}
{{- define "kadi.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion | toString -}}
{{- if or (eq $tag "latest") (eq $tag "") -}}
{{- fail (printf "image %s needs a fixed tag, not %q" .image.repository $tag) -}}
{{- end -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}

{{/* Pod security context of a non-root workload: (dict "uid" 65532). */}}
{{- define "kadi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: the restricted Pod Security Standard plus a
read-only root filesystem. */}}
{{- define "kadi.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Base of short URLs. */}}
{{- define "kadi.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.host -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host -}}
{{- else -}}
{{- printf "http://%s.%s.svc" (include "kadi.fullname" .) .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* Refuses value combinations that cannot work, before anything renders. */}}
{{- define "kadi.validate" -}}
{{- if and .Values.postgresql.enabled (or .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "set either postgresql.enabled or externalDatabase.url/existingSecret, not both" -}}
{{- end -}}
{{- if not (or .Values.postgresql.enabled .Values.externalDatabase.url .Values.externalDatabase.existingSecret) -}}
{{- fail "Kadi needs PostgreSQL: set externalDatabase.existingSecret (or externalDatabase.url), or postgresql.enabled=true" -}}
{{- end -}}
{{- if and .Values.redis.enabled (or .Values.externalRedis.url .Values.externalRedis.existingSecret) -}}
{{- fail "set either redis.enabled or externalRedis.url/existingSecret, not both" -}}
{{- end -}}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) -}}
{{- fail "ingress.enabled needs ingress.host" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) -}}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" -}}
{{- end -}}
{{- end -}}

{{/* Does the cluster serve the custom metrics API (an adapter is installed)? */}}
{{- define "kadi.requestRateScaling" -}}
{{- $mode := .Values.autoscaling.requestRate.enabled | toString -}}
{{- if eq $mode "true" -}}
true
{{- else if and (eq $mode "auto") (or (.Capabilities.APIVersions.Has "custom.metrics.k8s.io/v1beta2") (.Capabilities.APIVersions.Has "custom.metrics.k8s.io/v1beta1")) -}}
true
{{- end -}}
{{- end -}}

{{/* Env entries that set DATABASE_URL.
(dict "root" $ "secretName" "") – a non-empty secretName overrides where an
external URL given by value is read from (the migration hook uses its own). */}}
{{- define "kadi.databaseEnv" -}}
{{- $v := .root.Values -}}
{{- if $v.postgresql.enabled }}
- name: KADI_POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kadi.postgresql.fullname" .root }}
      key: password
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(KADI_POSTGRES_PASSWORD)@%s:5432/%s" $v.postgresql.auth.username (include "kadi.postgresql.fullname" .root) $v.postgresql.auth.database | quote }}
{{- else if $v.externalDatabase.existingSecret }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalDatabase.existingSecret }}
      key: {{ $v.externalDatabase.existingSecretKey }}
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | default (include "kadi.external.secretName" .root) }}
      key: database-url
{{- end }}
{{- end -}}

{{/* Env entries that set REDIS_URL, when there is a Redis. */}}
{{- define "kadi.redisEnv" -}}
{{- $v := .Values -}}
{{- if $v.redis.enabled }}
- name: KADI_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "kadi.redis.fullname" . }}
      key: password
- name: REDIS_URL
  value: {{ printf "redis://:$(KADI_REDIS_PASSWORD)@%s:6379" (include "kadi.redis.fullname" .) | quote }}
{{- else if $v.externalRedis.existingSecret }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.externalRedis.existingSecret }}
      key: {{ $v.externalRedis.existingSecretKey }}
{{- else if $v.externalRedis.url }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "kadi.external.secretName" . }}
      key: redis-url
{{- end }}
{{- end -}}

{{/* A password for a bundled service: the given one, else the one already
stored in its Secret, else a new random one.
(dict "root" $ "secret" "name" "given" "value") */}}
{{- define "kadi.bundledPassword" -}}
{{- if .given -}}
{{- .given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data "password") -}}
{{- index $existing.data "password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Spread constraints over nodes and zones for one component. */}}
{{- define "kadi.topologySpread" -}}
{{- $root := .root -}}
{{- $when := .when -}}
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
- maxSkew: 1
  topologyKey: {{ $key }}
  whenUnsatisfiable: {{ $when }}
  labelSelector:
    matchLabels:
      {{- include "kadi.selectorLabels" (dict "root" $root "component" "server") | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}
{{- end -}}

{{/* Name of the Secret holding the bootstrap API key, and its key. */}}
{{- define "kadi.bootstrapKey.secretName" -}}
{{- .Values.app.bootstrapKey.existingSecret | default (include "kadi.partname" (dict "root" . "part" "api-key")) -}}
{{- end -}}

{{/* Env entry that hands the bootstrap API key to a container. */}}
{{- define "kadi.bootstrapKeyEnv" -}}
- name: KADI_BOOTSTRAP_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "kadi.bootstrapKey.secretName" .root }}
      key: {{ .root.Values.app.bootstrapKey.existingSecretKey }}
{{- end -}}
