# curate in a container. Two targets:
#   docker build -t curate:cpu --target cpu .
#   docker build -t curate:gpu --target gpu .      (CUDA 12 runtime, CUDA torch, faiss-gpu)
# faiss-cpu and faiss-gpu-cu12 both provide `import faiss`: the gpu target removes the CPU one and
# reinstalls the GPU one so that no file of the CPU build is left over.
# Both install with the same `make setup` the README uses, so CI exercises the same install path.
# The entrypoint is the `curate` CLI:
#   docker run --rm -v $PWD/data:/data -v $PWD/out:/out curate:cpu run /data/recipe.yaml output.folder=/out/run1

ARG CPU_BASE=python:3.11-slim-bookworm
ARG GPU_BASE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04

# ------------------------------------------------------------------------------------------ cpu
FROM ${CPU_BASE} AS cpu
RUN apt-get update && apt-get install -y --no-install-recommends make gcc g++ libmagic1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/curate
COPY pyproject.toml Makefile README.md ./
COPY curate ./curate
COPY stages ./stages
COPY recipes ./recipes
RUN make setup VENV=/opt/venv TORCH_INDEX=https://download.pytorch.org/whl/cpu EXTRAS=test \
    && rm -rf /root/.cache/pip
ENV PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /work
ENTRYPOINT ["curate"]
CMD ["--help"]

# ------------------------------------------------------------------------------------------ gpu
FROM ${GPU_BASE} AS gpu
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv python3.11-dev make gcc g++ libmagic1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/curate
COPY pyproject.toml Makefile README.md ./
COPY curate ./curate
COPY stages ./stages
COPY recipes ./recipes
RUN make setup PYTHON=python3.11 VENV=/opt/venv TORCH_INDEX=https://download.pytorch.org/whl/cu126 EXTRAS=test,gpu \
    && /opt/venv/bin/python -m pip uninstall -y faiss-cpu \
    && /opt/venv/bin/python -m pip install --force-reinstall --no-deps "faiss-gpu-cu12>=1.9" \
    && rm -rf /root/.cache/pip
ENV PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /work
ENTRYPOINT ["curate"]
CMD ["--help"]
