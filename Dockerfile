# curate in a container. Two targets on one base image:
#   docker build -t curate:cpu --target cpu .
#   docker build -t curate:gpu --target gpu .    (CUDA torch + faiss-gpu; run with --gpus all)
# Both install with the same `make setup` the README and CI use. The entrypoint is the `curate` CLI:
#   docker run --rm -v $PWD/out:/out curate:cpu run quickstart -o /out/quickstart
#   docker run --rm -v $PWD/data:/data -v $PWD/out:/out curate:cpu run /data/recipe.yaml -o /out/run1
#
# Where no registry is reachable, docker/build_base.sh makes the base from Debian's packages and
# .ci/docker.sh builds on it with podman:
#   podman build --target cpu --build-arg BASE=localhost/curate-base:bookworm \
#       --build-arg TORCH_INDEX= --build-arg WHEELS=/wheels --volume /opt/wheels:/wheels:ro .
#
# Build arguments:
#   BASE         a python:3.1x image, or Debian bookworm or later / Ubuntu 24.04 or later (their
#                python3 is >= 3.11); python3 with venv and headers, make, gcc, g++ and libmagic1
#                are installed with apt-get when the base lacks them.
#   TORCH_INDEX  where `make setup` takes torch (its version: constraints.txt) from (see the
#                Makefile). cpu: PyTorch's CPU index. gpu: empty, i.e. PyPI, whose torch 2.13.0
#                Linux wheel is the CUDA 13.0 build (it brings its CUDA libraries as pip packages; needs an NVIDIA driver >= 580).
#                Older drivers: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 (or
#                cu128), if PyTorch publishes 2.13.0 for it.
#   WHEELS       a folder of wheels pip may take packages from (pip's --find-links), e.g. a local
#                torch CPU build mounted with podman's `--volume`; empty: none.
#
# The images carry curate and what its recipes need (the `ray` extra, for executor.kind: ray), not
# the test suite's extras (pytest, the reference implementations, hadolint).

ARG BASE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------------------ system
FROM ${BASE} AS system
# bash, so that a failure inside a pipe fails the build (both bases have it).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Only what the base lacks, so that building on docker/build_base.sh's image needs no apt access.
# (The package versions are the base's Debian release's; $missing is split into words on purpose.)
# hadolint ignore=DL3008,SC2086
RUN set -eu; missing=""; \
    for pkg in make gcc g++ libmagic1; do dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"; done; \
    python3 -c 'import ensurepip, os, sysconfig, sys; assert sys.version_info >= (3, 11); \
assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null \
        || missing="$missing python3 python3-venv python3-dev"; \
    if [ -n "$missing" ]; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing \
        && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /opt/curate
# The dependency install is the long step (minutes); it sees only the files that decide it, so a
# change to the code, the recipes or the README reuses the cached layer. `pip install -e` records
# where the two packages live, not their files: empty package folders stand in until the code is
# copied, and a one-line README for the package metadata (pyproject's `readme`).
COPY pyproject.toml Makefile constraints.txt ./
RUN mkdir -p curate stages && touch curate/__init__.py stages/__init__.py && echo "# curate" >README.md
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

# ------------------------------------------------------------------------------------------ cpu
FROM system AS cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG WHEELS=
RUN if [ -n "$WHEELS" ]; then export PIP_FIND_LINKS="$WHEELS"; fi \
    && make setup VENV=/opt/venv TORCH_INDEX="$TORCH_INDEX" EXTRAS=ray \
    && rm -rf /root/.cache/pip
COPY README.md ./
COPY curate ./curate
COPY stages ./stages
COPY recipes ./recipes
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /work
ENTRYPOINT ["curate"]
CMD ["--help"]

# ------------------------------------------------------------------------------------------ gpu
FROM system AS gpu
# inherited from `system`; repeated because linters check each stage on its own
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX=
ARG WHEELS=
# faiss-cpu (a dependency) and faiss-gpu-cu12 (the `gpu` extra) both provide `import faiss` and both
# get installed; removing faiss-cpu deletes files they share, so faiss-gpu-cu12 (same version) is
# then reinstalled over it and no file of the CPU build is left.
RUN if [ -n "$WHEELS" ]; then export PIP_FIND_LINKS="$WHEELS"; fi \
    && make setup VENV=/opt/venv TORCH_INDEX="$TORCH_INDEX" EXTRAS=ray,gpu \
    && faiss_gpu="$(/opt/venv/bin/python -m pip show faiss-gpu-cu12 | sed -n 's/^Version: //p')" \
    && /opt/venv/bin/python -m pip uninstall -y faiss-cpu \
    && /opt/venv/bin/python -m pip install --force-reinstall --no-deps "faiss-gpu-cu12==$faiss_gpu" \
    && rm -rf /root/.cache/pip
COPY README.md ./
COPY curate ./curate
COPY stages ./stages
COPY recipes ./recipes
# What the NVIDIA container runtime reads to mount the driver (the CUDA images set the same).
ENV PATH=/opt/venv/bin:$PATH NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /work
ENTRYPOINT ["curate"]
CMD ["--help"]
