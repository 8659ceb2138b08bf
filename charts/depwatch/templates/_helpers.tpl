{{/*
Helpers. Every name is prefixed "depwatch." because named templates are
global: an application chart that includes this chart as a dependency sees
them all.

The helpers that build names and the container read only .Values and
.Release (plus .Capabilities when present), never .Chart, so that they give
the same result inside this chart and when an application's chart calls them
with (dict "Values" .Values.depwatch "Release" .Release "Capabilities" .Capabilities).
*/}}

{{/* Name of the application: "depwatch" unless overridden. */}}
{{- define "depwatch.name" -}}
{{- default "depwatch" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name, truncated at 63 characters (DNS label limit). Keeps the
release name alone when it already contains the name.
*/}}
{{- define "depwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "depwatch.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "depwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object this chart renders. */}}
{{- define "depwatch.labels" -}}
helm.sh/chart: {{ include "depwatch.chart" . }}
{{ include "depwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: depwatch
{{- end }}

{{/* Labels that select the standalone pods (immutable once deployed). */}}
{{- define "depwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "depwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels of the pods that carry depwatch, whatever the mode: what the Service
and the PodMonitor select.
*/}}
{{- define "depwatch.podSelectorLabels" -}}
{{- if eq .Values.mode "sidecar" }}
{{- toYaml .Values.sidecar.podLabels }}
{{- else }}
{{- include "depwatch.selectorLabels" . }}
{{- end }}
{{- end }}

{{/* ServiceAccount of the standalone pod. */}}
{{- define "depwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "depwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Default image tag: the chart's appVersion. A constant rather than
.Chart.AppVersion because an application's chart calling the sidecar templates
has its own .Chart; tests/deploy/test_chart.py checks that the two agree.
*/}}
{{- define "depwatch.defaultImageTag" -}}
0.1.0
{{- end }}

{{/* Image reference; a digest wins over the tag. */}}
{{- define "depwatch.image" -}}
{{- $tag := .Values.image.tag | default (include "depwatch.defaultImageTag" .) }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (toString $tag) }}
{{- end }}
{{- end }}

{{/* Namespace of an optional operator object: its own override or the release's. */}}
{{- define "depwatch.namespace" -}}
{{- default .root.Release.Namespace .override }}
{{- end }}

{{/* Name of the Secret holding the web config, empty when there is none. */}}
{{- define "depwatch.webConfigSecretName" -}}
{{- if .Values.webConfig.existingSecret }}
{{- .Values.webConfig.existingSecret }}
{{- else if .Values.webConfig.config }}
{{- printf "%s-web-config" (include "depwatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Scheme for the monitors' endpoints: "http" or "https". */}}
{{- define "depwatch.scrapeScheme" -}}
{{- lower .Values.webConfig.scheme }}
{{- end }}

{{/*
Checks that span several values; the schema covers each value alone.
*/}}
{{- define "depwatch.validate" -}}
{{- if and .Values.webConfig.existingSecret .Values.webConfig.config }}
{{- fail "depwatch: set webConfig.config or webConfig.existingSecret, not both" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled .Values.podMonitor.enabled }}
{{- fail "depwatch: enable serviceMonitor or podMonitor, not both (every target would be scraped twice)" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "depwatch: serviceMonitor.enabled needs service.enabled" }}
{{- end }}
{{- end }}

{{/*
The depwatch container, as one YAML list item. Context: .Values, .Release,
optional .Capabilities, and .native (true: native sidecar, restartPolicy
Always).
*/}}
{{- define "depwatch.container" -}}
{{- $port := .Values.metricsPort.name }}
{{- $scheme := .Values.webConfig.scheme -}}
- name: {{ .Values.sidecar.containerName }}
  image: {{ include "depwatch.image" . | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  {{- with .Values.extraArgs }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: {{ $port }}
      containerPort: {{ .Values.metricsPort.port }}
      protocol: TCP
  env:
    - name: DEPWATCH_LISTEN_ADDRESS
      value: {{ printf ":%v" .Values.metricsPort.port | quote }}
    - name: DEPWATCH_LOG_LEVEL
      value: {{ .Values.log.level | quote }}
    - name: DEPWATCH_LOG_FORMAT
      value: {{ .Values.log.format | quote }}
    {{- if include "depwatch.webConfigSecretName" . }}
    - name: DEPWATCH_WEB_CONFIG_FILE
      value: {{ printf "/etc/depwatch/web-config/%s" .Values.webConfig.secretKey | quote }}
    {{- end }}
    {{- range $name, $value := .Values.env }}
    - name: {{ $name }}
      value: {{ toString $value | quote }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.startupProbe.enabled }}
  startupProbe:
    httpGet:
      path: /readyz
      port: {{ $port }}
      scheme: {{ $scheme }}
    {{- toYaml (omit .Values.startupProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.livenessProbe.enabled }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $port }}
      scheme: {{ $scheme }}
    {{- toYaml (omit .Values.livenessProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- if .Values.readinessProbe.enabled }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $port }}
      scheme: {{ $scheme }}
    {{- toYaml (omit .Values.readinessProbe "enabled") | nindent 4 }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: depwatch-tmp
      mountPath: /tmp
    {{- if include "depwatch.webConfigSecretName" . }}
    - name: depwatch-web-config
      mountPath: /etc/depwatch/web-config
      readOnly: true
    {{- end }}
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
Volumes the depwatch container mounts, as YAML list items.
*/}}
{{- define "depwatch.volumes" -}}
- name: depwatch-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- with include "depwatch.webConfigSecretName" . }}
- name: depwatch-web-config
  secret:
    secretName: {{ . }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------
Public templates for the application's chart (sidecar mode). Call them with
  (dict "Values" .Values.depwatch "Release" .Release "Capabilities" .Capabilities)
where .Values.depwatch is this chart's values as the application's chart sees
them (dependency name or alias "depwatch"). See values.yaml and README.md.
--------------------------------------------------------------------- */}}

{{/*
depwatch.sidecarContainer: the depwatch container as one YAML list item, for
`containers:` or, with sidecar.native, for `initContainers:` (it then carries
restartPolicy: Always; Kubernetes >= 1.29).
*/}}
{{- define "depwatch.sidecarContainer" -}}
{{- if ne .Values.mode "sidecar" }}
{{- fail "depwatch.sidecarContainer: set depwatch.mode to \"sidecar\" (otherwise the depwatch chart also runs a standalone Deployment)" }}
{{- end }}
{{- if and .Values.sidecar.native .Capabilities }}
{{- if semverCompare "<1.29-0" .Capabilities.KubeVersion.Version }}
{{- fail (printf "depwatch.sidecarContainer: sidecar.native needs Kubernetes >= 1.29 (cluster: %s)" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- end }}
{{- include "depwatch.container" (dict "Values" .Values "Release" .Release "native" .Values.sidecar.native) }}
{{- end }}

{{/* depwatch.sidecarVolumes: the volumes the sidecar mounts, as YAML list items. */}}
{{- define "depwatch.sidecarVolumes" -}}
{{- include "depwatch.volumes" . }}
{{- end }}

{{/* depwatch.sidecarPodLabels: labels for the application's pod template. */}}
{{- define "depwatch.sidecarPodLabels" -}}
{{- toYaml .Values.sidecar.podLabels }}
{{- end }}
