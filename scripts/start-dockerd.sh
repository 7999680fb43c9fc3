#!/usr/bin/env bash
# Make sure a Docker daemon answers: install Debian's docker.io (and debootstrap, used to make
# base images locally since no registry is reachable) if needed, start dockerd as root, wait.
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  nohup dockerd >/tmp/envlock-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 1
  done
  echo "dockerd did not start; see /tmp/envlock-dockerd.log" >&2
  tail -5 /tmp/envlock-dockerd.log >&2 || true
  exit 1
fi
