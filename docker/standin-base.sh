#!/usr/bin/env bash
# Build the local stand-in for the official TensorFlow image, which no registry here can supply:
# a Debian rootfs from debootstrap with the same Python minor (3.11) and pip, imported into
# podman's local storage. Prints the image's name. The tag is a hash of this file, which alone
# defines the image, so a later run (CI on the same machine) finds it built and reuses it.
set -euo pipefail

SUITE=bookworm  # Python 3.11, as in tensorflow/tensorflow:2.21.0-gpu
PACKAGES=python3,python3-pip,ca-certificates

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
