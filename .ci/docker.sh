#!/usr/bin/env bash
# CI: build the CPU image from scratch the way a machine without registry access can, and run the
# quickstart in it. Needs root (apt-get, debootstrap, rootful podman) and a Debian mirror + PyPI.
#   1. podman, runc and debootstrap from Debian's packages (skipped when present)
#   2. docker/build_base.sh: Debian bookworm base image via debootstrap (skipped when it exists)
#   3. docker/podman_build.sh cpu: the Dockerfile's cpu target (podman's layer cache reused)
#   4. `curate run quickstart` inside the image, output checked
# `--install-only` stops after step 1 (CI's test run then builds and runs the image in
# tests/test_docker_image.py).
# Timing on the project's 2-core CI machine: see docker/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
stamp() { echo "[docker.sh] $(( $(date +%s) - t0 )) s: $*"; }

need=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if ((${#need[@]})); then
    stamp "installing ${need[*]}"
    apt-get update -qq
    # with podman's recommends (fuse-overlayfs, slirp4netns, uidmap, buildah): the set tested here
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap ca-certificates >/dev/null
fi

if [ "${1:-}" = "--install-only" ]; then  # .ci/run: the tools only; tests/test_docker_image.py builds and runs
    stamp "tools ready"
    exit 0
fi

stamp "base image"
docker/build_base.sh
stamp "cpu image"
docker/podman_build.sh cpu

out="$(mktemp -d /var/tmp/curate-docker-ci.XXXXXX)"
trap 'rm -rf "$out"' EXIT
stamp "quickstart in the container"
CONTAINERS_CONF="$PWD/docker/containers.conf" podman run --rm -v "$out:/out" localhost/curate:cpu \
    run quickstart -o /out/quickstart
python3 - "$out/quickstart" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
status = json.load(open(os.path.join(out, "run.json")))["status"]
order = glob.glob(os.path.join(out, "**", "order.parquet"), recursive=True)
windows = glob.glob(os.path.join(out, "pack.windows", "**", "*.parquet"), recursive=True)
print(f"run.json status={status}; order.parquet: {len(order)}; window files: {len(windows)}")
sys.exit(0 if status == "done" and order and windows else 1)
PY
stamp "done"
