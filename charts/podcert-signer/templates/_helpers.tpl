{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "podcert-signer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "podcert-signer.fullname" -}}
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

{{- define "podcert-signer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "podcert-signer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podcert-signer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "podcert-signer.labels" -}}
helm.sh/chart: {{ include "podcert-signer.chart" . }}
{{ include "podcert-signer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "podcert-signer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "podcert-signer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "podcert-signer.leaseName" -}}
{{- default (include "podcert-signer.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The ClusterTrustBundle name kube-apiserver requires for the signer: / becomes :. */}}
{{- define "podcert-signer.trustBundleName" -}}
{{- printf "%s:%s" (replace "/" ":" .Values.signer.name) .Values.trustBundle.suffix }}
{{- end }}

{{/* The preview ClusterTrustBundle beside it (SPIFFE Filesystem Delivery canarying). */}}
{{- define "podcert-signer.previewBundleName" -}}
{{- $suffix := ternary "preview" (printf "%s-preview" .Values.trustBundle.suffix) (eq .Values.trustBundle.suffix "live") }}
{{- printf "%s:%s" (replace "/" ":" .Values.signer.name) $suffix }}
{{- end }}

{{/* The Secret the flag signer reads its CA from (bootstrap and existingSecret modes). */}}
{{- define "podcert-signer.caSecretName" -}}
{{- if not .Values.signer.enabled }}
{{- else if eq .Values.ca.mode "bootstrap" }}
{{- default (printf "%s-ca" (include "podcert-signer.fullname" .)) .Values.ca.bootstrap.secretName }}
{{- else if eq .Values.ca.mode "existingSecret" }}
{{- required "ca.existingSecret.name is required when ca.mode is existingSecret" .Values.ca.existingSecret.name }}
{{- end }}
{{- end }}

{{- /* The default tag is appVersion, with image.pkcs11Suffix when a token key is used: the
FROM scratch image cannot load a PKCS#11 module (Dockerfile.pkcs11). An explicit tag is kept. */ -}}
{{- define "podcert-signer.image" -}}
{{- $tag := .Values.image.tag -}}
{{- if not $tag -}}
{{- $tag = .Chart.AppVersion -}}
{{- if .Values.ca.pkcs11.uri -}}
{{- $tag = printf "%s%s" $tag (.Values.image.pkcs11Suffix | default "") -}}
{{- end -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}

{{/* "true" when the process publishes trust bundles (--trust-bundle): one switch for the flag
signer and the PodCertificateSigner objects (deployment.yaml refuses values that disagree). */}}
{{- define "podcert-signer.trustBundles" -}}
{{- if .Values.signer.enabled }}
{{- .Values.trustBundle.enabled }}
{{- else }}
{{- .Values.crdSigners.trustBundles }}
{{- end }}
{{- end }}

{{/* `<domain>/*` for each served domain, as a YAML flow list: kube-apiserver checks `sign` and
`attest` on the signer name and then on `<domain>/*`, so one rule covers every object's name. */}}
{{- define "podcert-signer.domainSigners" -}}
{{- $names := list }}
{{- range .Values.crdSigners.domains }}
{{- $names = append $names (printf "%s/*" . | quote) }}
{{- end }}
{{- printf "[%s]" (join ", " $names) }}
{{- end }}
