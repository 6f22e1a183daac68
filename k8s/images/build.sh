#!/usr/bin/env bash
# Build the transformer and predictor images with podman (or docker: PODMAN=docker).
#
#   k8s/images/build.sh [TAG]            # default tag: the chart's appVersion
#
# BASE (default docker.io/library/python:3.11-slim-bookworm) must carry Python 3.11 and venv.
# With BASE=debootstrap, the base is made here from Debian bookworm with debootstrap and
# `podman import`, for machines that reach package mirrors but no container registry.
# EXTRA_CA (a PEM bundle) is handed to pip inside the build, for TLS-intercepting proxies.
# PODMAN_RUN_FLAGS carries what a sandboxed podman needs (e.g. --runtime runc and ulimits).
set -euo pipefail
cd "$(dirname "$0")/../.."
PODMAN=${PODMAN:-podman}
TAG=${1:-$(sed -n 's/^appVersion: "\(.*\)"/\1/p' helm/audio-maas/Chart.yaml)}
BASE=${BASE:-docker.io/library/python:3.11-slim-bookworm}
read -r -a FLAGS <<< "${PODMAN_RUN_FLAGS:-}"

if [[ $BASE == debootstrap ]]; then
  BASE=localhost/audio-maas-base:bookworm-slim
  if ! $PODMAN image exists "$BASE" 2>/dev/null; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    # As Debian's slim images (python:3.11-slim's base): no documentation, manual pages or
    # translations, about 50 MB; the copyright notices stay.
    find "$rootfs"/usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | $PODMAN import - "$BASE" >/dev/null
  fi
fi

ARGS=(--build-arg "BASE=$BASE")
if [[ -n ${EXTRA_CA:-} ]]; then
  mkdir -p build && cp "$EXTRA_CA" build/ca-certificates.crt
  ARGS+=(--build-arg PIP_CERT=build/ca-certificates.crt)
fi
$PODMAN build "${FLAGS[@]}" "${ARGS[@]}" -f k8s/images/transformer.Dockerfile -t "ghcr.io/audio-maas/transformer:$TAG" .
$PODMAN build "${FLAGS[@]}" "${ARGS[@]}" -f k8s/images/predictor.Dockerfile -t "ghcr.io/audio-maas/predictor:$TAG" .
if [[ ${GPU:-0} == 1 ]]; then
  $PODMAN build "${FLAGS[@]}" "${ARGS[@]}" --build-arg EXTRA=predictor-gpu \
    -f k8s/images/predictor.Dockerfile -t "ghcr.io/audio-maas/predictor:$TAG-gpu" .
fi
