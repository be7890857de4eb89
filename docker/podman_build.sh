#!/usr/bin/env bash
# Build a curate image with podman on a machine that has no registry access (this project's CI),
# from the base docker/build_base.sh makes. With Docker and registry access, plain
# `docker build --target cpu .` is all you need; this script is the same build plus this machine's
# workarounds.
#
# Usage: docker/podman_build.sh [cpu|gpu] [extra podman build args...]
#   IMAGE        default localhost/curate:<target>
#   BASE         default localhost/curate-base:bookworm (built by docker/build_base.sh if absent)
#   WHEELS_DIR   a folder of wheels for pip (--find-links), mounted into the build; default: the
#                host's pip find-links ($PIP_FIND_LINKS or pip's config) when it is a local folder
#                (here: /opt/wheels, holding the local torch 2.13.0+cpu build); empty: none. download.pytorch.org is unreachable here, so with a wheels folder
#                TORCH_INDEX defaults to empty: torch==2.13.0 then resolves to the local +cpu wheel.
#   TORCH_INDEX  passed as the build argument when set (even empty)
#   PRUNE        1 (default): remove dangling images after the build; 0: keep them
# Repeated builds reuse podman's layer cache: the dependency install is rebuilt only when the
# Dockerfile, pyproject.toml or Makefile change (a code change rebuilds only the COPY layers).
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${1:-cpu}"
shift || true
IMAGE="${IMAGE:-localhost/curate:$TARGET}"
BASE="${BASE:-localhost/curate-base:bookworm}"
# runc instead of crun, ulimits the runtime may set: see docker/containers.conf. Absolute path:
# podman's copier subprocess does not run in this folder.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/docker/containers.conf}"

if [[ "$BASE" == localhost/curate-base:* ]] && ! podman image exists "$BASE"; then
    docker/build_base.sh "$BASE"
fi

args=(--target "$TARGET" -t "$IMAGE" --build-arg "BASE=$BASE" --layers -f Dockerfile)
if [[ -z "${WHEELS_DIR+set}" ]]; then
    # the host's own pip setting: PIP_FIND_LINKS, else pip's config files; the first local folder
    WHEELS_DIR=""
    for candidate in ${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}; do
        candidate="${candidate#file://}"
        if [[ -d "$candidate" ]]; then WHEELS_DIR="$candidate"; break; fi
    done
fi
if [[ -n "$WHEELS_DIR" ]]; then
    args+=(--volume "$WHEELS_DIR:/wheels:ro" --build-arg WHEELS=/wheels)
    args+=(--build-arg "TORCH_INDEX=${TORCH_INDEX-}")
elif [[ -n "${TORCH_INDEX+set}" ]]; then
    args+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
fi

echo "+ podman build ${args[*]} $* ."
start=$(date +%s)
podman build "${args[@]}" "$@" .
# The image this tag pointed at before, if any, is now dangling: with the dependency layer
# rebuilt, that is ~3 GB per pyproject change. Dangling images are no one's cache (the layers of
# tagged images are kept), so remove them; PRUNE=0 keeps them.
if [[ "${PRUNE:-1}" == 1 ]]; then podman image prune -f >/dev/null; fi
echo "built $IMAGE in $(( $(date +%s) - start )) s; $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
