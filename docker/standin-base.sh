#!/usr/bin/env bash
# Build the local stand-in for the Dockerfile's base, debian:bookworm-slim, which no registry here
# can supply: a minimal Debian 12 rootfs from debootstrap, imported into podman's local storage.
# The Dockerfile installs everything else itself, so the image built on it is the one that
# ships, but for the base's own files. Prints the image's name. The tag is a hash of this file, which alone
# defines the image, so a later run (CI on the same machine) finds it built and reuses it.
set -euo pipefail

SUITE=bookworm  # debian:bookworm-slim's release
# The one package beyond the base: `make image-test` mounts this machine's CA bundle over the
# package's file, for pip to reach PyPI here, and the package could not replace it when the
# Dockerfile installs it.
PACKAGES=ca-certificates

for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "standin-base: error: $tool not found (apt-get install $tool)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "standin-base: error: debootstrap needs root" >&2; exit 1; }

image="localhost/trainstyles-standin-base:$(sha256sum "$0" | cut -c1-12)"
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" >&2  # Debian's default mirror
# What debootstrap downloaded is not part of the image, as in any published base image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --quiet - "$image" >&2
echo "$image"
