#!/bin/sh
# Make a pinned Debian base image locally, with no registry: debootstrap from a Debian
# mirror, then `docker import`. Used by the tests and CI, and by sites without a registry.
#
#   images/make-base.sh [TAG]            (default TAG: envlock-base:bookworm)
#
# Environment: ENVLOCK_DEBIAN_MIRROR (default: first deb.debian.org-style URI in
# /etc/apt/sources.list*, else http://deb.debian.org/debian), ENVLOCK_BASE_SUITE (bookworm),
# ENVLOCK_CACHE_DIR (default ~/.cache/envlock): the rootfs tarball is kept there so that
# re-importing after `docker image rm` takes seconds instead of minutes.
#
# Idempotent: if TAG already exists it only prints its image id. Needs root (debootstrap).
# The image id printed on the last line is the pin: `envlock build --base-image <id>`
# (or the tag; envlock resolves a tag to its id and pins FROM to it).
#
# Why python3 + python3-venv: envlock installs every wheel into /opt/venv with the base's
# own python3 (Debian bookworm: 3.11, so cp311 manylinux wheels fit); ensurepip comes with
# python3-venv, so no pip is downloaded inside the build.
set -eu

TAG="${1:-envlock-base:bookworm}"
SUITE="${ENVLOCK_BASE_SUITE:-bookworm}"
CACHE_DIR="${ENVLOCK_CACHE_DIR:-${HOME:-/root}/.cache/envlock}"
TARBALL="$CACHE_DIR/rootfs-$SUITE-python3.tar"

if docker image inspect --format '{{.Id}}' "$TAG" >/dev/null 2>&1; then
    echo "make-base: $TAG already exists" >&2
    docker image inspect --format '{{.Id}}' "$TAG"
    exit 0
fi

mirror_from_sources() {
    # deb822 "URIs:" lines first, then one-line "deb URL suite" entries; debian main only.
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^URIs:[[:space:]]*\(http[^ ]*\/debian\)\/*$/\1/p' \
                 -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(http[^ ]*\/debian\)\/*[[:space:]].*/\2/p' \
        | head -n 1
}
MIRROR="${ENVLOCK_DEBIAN_MIRROR:-$(mirror_from_sources)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || { echo "make-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }
    mkdir -p "$CACHE_DIR"
    ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
    trap 'rm -rf "$ROOTFS"' EXIT
    echo "make-base: debootstrap $SUITE from $MIRROR (a few minutes)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$ROOTFS" "$MIRROR" >&2
    # Caches and logs only make the image bigger and less reproducible.
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* \
           "$ROOTFS"/var/log/* "$ROOTFS"/debootstrap "$ROOTFS"/tmp/* 2>/dev/null || true
    tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

echo "make-base: docker import $TARBALL as $TAG" >&2
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --message "envlock base: debootstrap --variant=minbase $SUITE + python3 python3-venv from $MIRROR" \
    "$TARBALL" "$TAG" >/dev/null
docker image inspect --format '{{.Id}}' "$TAG"
