#!/usr/bin/env bash
# Build a minimal Debian bookworm image from Debian's own packages and import it as a local image,
# for machines that can reach a Debian mirror but no container registry (so `FROM python:...` cannot
# be pulled). The Dockerfile's cpu/gpu targets then build on it with
#   podman build --build-arg BASE=localhost/curate-base:bookworm ...
#
# Usage: docker/build_base.sh [--force] [IMAGE]         (run as root: debootstrap needs it)
#   IMAGE   default localhost/curate-base:bookworm
#   MIRROR  env, default: the first Debian URI in this machine's apt sources, else deb.debian.org
#   ENGINE  env, podman (default) or buildah
#
# The image carries what `make setup` needs: python3 (3.11 on bookworm) with venv and headers,
# gcc/g++ and make (sdists with C extensions), ca-certificates (pip over HTTPS) and libmagic1
# (python-magic, used by datatrove's readers). The Dockerfile checks for these and skips its own
# apt-get step when they are present, so the build needs no apt access once this image exists.
set -euo pipefail

FORCE=0
if [[ "${1:-}" == "--force" ]]; then FORCE=1; shift; fi
IMAGE="${1:-localhost/curate-base:bookworm}"
ENGINE="${ENGINE:-podman}"
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-dev,gcc,g++,make,ca-certificates,libmagic1

if [[ $FORCE == 0 ]] && "$ENGINE" image exists "$IMAGE" 2>/dev/null; then
    echo "base image $IMAGE exists (pass --force to rebuild)"
    exit 0
fi

if [[ -z "${MIRROR:-}" ]]; then
    # deb822 (.sources) or one-line (.list) format; keep the first plain Debian archive URI.
    MIRROR="$(grep -h -o -E 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 | tr -d ' ' || true)"
    MIRROR="${MIRROR:-http://deb.debian.org/debian}"
fi

ROOTFS="$(mktemp -d /var/tmp/curate-rootfs.XXXXXX)"
trap 'rm -rf "$ROOTFS"' EXIT
echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR"

# Inside the image apt should use the same mirror; drop the package caches debootstrap leaves.
printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/*
# The Dockerfile and the Makefile call `python3`; give `python` too, as the python: images do.
ln -sf python3 "$ROOTFS/usr/bin/python"

# Trust what this machine trusts: where HTTPS goes through an intercepting proxy (as on this
# project's CI machines, whose pypi.org answers with the proxy's certificate), pip inside the image
# fails with CERTIFICATE_VERIFY_FAILED unless the proxy's CA is in the image's bundle. Every
# certificate in the host's bundle that Debian's bundle lacks is added as a local CA.
HOST_CA_BUNDLE="${HOST_CA_BUNDLE-/etc/ssl/certs/ca-certificates.crt}"
if [[ -n "$HOST_CA_BUNDLE" && -r "$HOST_CA_BUNDLE" ]]; then
    split_dir="$(mktemp -d)"
    awk -v dir="$split_dir" '/-----BEGIN CERTIFICATE-----/ {n++; f = sprintf("%s/%04d.crt", dir, n)}
        f {print > f} /-----END CERTIFICATE-----/ {close(f); f = ""}' "$HOST_CA_BUNDLE"
    added=0
    for cert in "$split_dir"/*.crt; do
        [[ -e "$cert" ]] || continue
        # the first base64 line after BEGIN identifies a certificate well enough to compare bundles
        key="$(sed -n 2p "$cert")"
        if ! grep -qxF -- "$key" "$ROOTFS/etc/ssl/certs/ca-certificates.crt"; then
            cp "$cert" "$ROOTFS/usr/local/share/ca-certificates/host-$(basename "$cert")"
            added=$((added + 1))
        fi
    done
    rm -rf "$split_dir"
    if ((added > 0)); then
        echo "adding $added CA certificate(s) from $HOST_CA_BUNDLE that Debian's bundle lacks"
        chroot "$ROOTFS" update-ca-certificates >/dev/null
    fi
fi

CHANGES=(--change 'ENV LANG=C.UTF-8' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
         --change 'CMD ["/bin/bash"]')
if [[ "$ENGINE" == buildah ]]; then
    # buildah has no `import`: start from scratch and copy the tree in.
    ctr="$(buildah from scratch)"
    buildah copy "$ctr" "$ROOTFS" /
    buildah config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash "$ctr"
    buildah commit --rm "$ctr" "$IMAGE"
else
    tar --numeric-owner -C "$ROOTFS" -c . | podman import "${CHANGES[@]}" - "$IMAGE"
fi
"$ENGINE" image ls "$IMAGE"
