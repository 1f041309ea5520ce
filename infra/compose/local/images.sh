#!/usr/bin/env bash
# Builds the images of the local-image compose mesh (infra/compose/local-images.yaml) with podman,
# from Debian's packages only: no registry is reachable from this kind of machine.
#   1. cloudnet/base:bookworm  debootstrap --variant=minbase, imported once, then cached in podman's
#                              image store (about 40 s; `podman rmi` it to rebuild);
#   2. cloudnet/python:local and cloudnet/python-build:local  Debian's Python 3.11 (the second
#                              with pip, for the Dockerfile's builder stage);
#   3. the services' images: the app from the Dockerfile (on those Pythons), PostgreSQL,
#      RabbitMQ, Prometheus and the gateway from the Containerfiles beside this script.
# podman's layer cache makes a rebuild with nothing changed take seconds.
# Usage: infra/compose/local/images.sh   (CONTAINERS_CONF must point at podman's config)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base=localhost/cloudnet/base:bookworm
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if ! podman image exists "$base"; then
    echo "building $base with debootstrap (once; cached in podman's image store)"
    rootfs="$(mktemp -d /tmp/cloudnet-rootfs.XXXXXX)"
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
        || { tail -20 "$rootfs.log"; echo "debootstrap failed (log: $rootfs.log)" >&2; exit 1; }
    # Packages installed in an image must not try to start their services.
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 0755 "$rootfs/usr/sbin/policy-rc.d"
    # What a container never reads: package caches, manuals, translations.
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\npath-exclude /usr/share/locale/*\n' \
        >"$rootfs/etc/dpkg/dpkg.cfg.d/01-cloudnet-slim"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    rm -rf "$rootfs" "$rootfs.log"
fi

# The Python images' build context: the Containerfile and this machine's CA bundle.
context="$(mktemp -d /tmp/cloudnet-python.XXXXXX)"
trap 'rm -rf "$context"' EXIT
cp "$here/python.Containerfile" "$context/"
cp "${CLOUDNET_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" "$context/host-ca.crt"
build() {  # IMAGE CONTAINERFILE CONTEXT [ARGS...]
    local image=$1 file=$2 dir=$3
    shift 3
    echo "building $image"
    podman build --quiet --tag "$image" --file "$file" "$@" "$dir" >/dev/null
}
build localhost/cloudnet/python:local "$context/python.Containerfile" "$context" --target runtime
build localhost/cloudnet/python-build:local "$context/python.Containerfile" "$context" --target build
build localhost/cloudnet/app:local "$root/Dockerfile" "$root" --target runtime \
    --build-arg PYTHON_IMAGE=localhost/cloudnet/python:local \
    --build-arg BUILDER_IMAGE=localhost/cloudnet/python-build:local
for service in postgres rabbitmq prometheus; do
    build "localhost/cloudnet/$service:local" "$here/$service.Containerfile" "$here"
done
build localhost/cloudnet/gateway-dns:local "$here/gateway.Containerfile" "$here" --target gateway
podman image prune --force >/dev/null  # the layers the rebuilds replaced
echo "images ready:"
podman images --filter reference='localhost/cloudnet/*' --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'

