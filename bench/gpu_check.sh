#!/usr/bin/env bash
# The GPU paths, end to end, on one GPU machine (made for one H100 / H200; under 8 minutes in all):
#   1. install the `gpu` extra (faiss-gpu-cu12) into the venv, 2. nvidia-smi, 3. versions,
#   4. CUDA fp16 embedding of 50,000 real documents (docs/s), 5. the kNN graph builder on 1M and 10M
#   synthetic 384-d vectors, 6. FAISS GPU k-means as semdedup and the order partitioning call it
#   (1M x 384), 7. the iclm_gpu recipe end to end on BBC News.
# Each step appends one JSON line ({"step": ..., "ok": ...}) to $OUT/gpu_check/results.jsonl ($OUT is
# the GPU machine's output folder; out/gpu_check/ when unset). Each step runs under its own timeout
# (GPU_CHECK_T_<STEP> seconds overrides it), and a failing or hanging step is recorded and the next
# one runs, so one hang cannot eat the budget.
#
#   bash bench/gpu_check.sh              # on the GPU machine
#   bash bench/gpu_check.sh --cpu-smoke  # every step tiny on the CPU, falling back as the code does
#                                        # when torch / faiss see no GPU (nothing installed)
# Python: $CURATE_PYTHON, else .venv/bin/python, else python3. Data: $CURATE_SHARED_DATA, else
# ../shared/data beside the checkout.
set -u
cd "$(dirname "$0")/.."
SMOKE=0
[ "${1:-}" = "--cpu-smoke" ] && SMOKE=1
if [ -n "${CURATE_PYTHON:-}" ]; then PY="$CURATE_PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
DATA="${CURATE_SHARED_DATA:-$(cd .. && pwd)/shared/data}"
export CURATE_SHARED_DATA="$DATA" PY
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DIR="${OUT:+$OUT/gpu_check}"
DIR="${DIR:-out/gpu_check}"
[ "$SMOKE" = 1 ] && DIR="$DIR/cpu_smoke"
mkdir -p "$DIR"
RESULTS="$DIR/results.jsonl"
: > "$RESULTS"

# record STEP RC SECONDS TIMEOUT: the step's own JSON line when it printed one, a wrapped JSON line
# from another tool, or a failure line with the exit status and the end of stderr
record() {
  "$PY" - "$@" "$DIR/$1.out" "$DIR/$1.err" >> "$RESULTS" <<'EOF'
import json, sys
step, rc, secs, limit, out, err = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
lines = [l for l in open(out, errors="replace").read().splitlines() if l.startswith("{")]
last = None
for l in reversed(lines):
    try:
        last = json.loads(l)
        break
    except ValueError:
        continue
tail = open(err, errors="replace").read()[-1500:]
if rc == 0 and isinstance(last, dict) and last.get("step") == step:
    row = {**last, "wall_s": secs}
elif rc == 0:
    row = {"step": step, "ok": True, "wall_s": secs, "result": last, "stdout_tail": None if last else open(out, errors="replace").read()[-1500:]}
else:
    row = {"step": step, "ok": False, "rc": rc, "timed_out": rc in (124, 137), "timeout_s": limit, "wall_s": secs,
           "stderr_tail": tail}
print(json.dumps(row))
EOF
  tail -n 1 "$RESULTS"
}

# run STEP DEFAULT_TIMEOUT COMMAND...
run() {
  local step="$1" limit="$2"; shift 2
  local var="GPU_CHECK_T_$(echo "$step" | tr 'a-z-' 'A-Z_')"
  limit="${!var:-$limit}"
  echo "== $step (timeout ${limit}s): $*" >&2
  local t0=$SECONDS
  if declare -F "$1" > /dev/null; then  # a function of this script: run it in a child bash under the timeout
    timeout -k 5 "$limit" bash -c "$(declare -f "$1"); $(printf '%q ' "$@")" > "$DIR/$step.out" 2> "$DIR/$step.err"
  else
    timeout -k 5 "$limit" "$@" > "$DIR/$step.out" 2> "$DIR/$step.err"
  fi
  local rc=$?
  record "$step" "$rc" "$((SECONDS - t0))" "$limit"
}

skip() {
  "$PY" -c 'import json,sys; print(json.dumps({"step": sys.argv[1], "ok": True, "skipped": sys.argv[2]}))' "$1" "$2" >> "$RESULTS"
  tail -n 1 "$RESULTS"
}

install_gpu_extra() {
  # faiss-cpu (a dependency) and faiss-gpu-cu12 (the extra) both install `faiss`; as in the Dockerfile,
  # remove faiss-cpu and reinstall faiss-gpu-cu12 over the shared files
  "$PY" -m pip install "faiss-gpu-cu12>=1.9" || return 1
  local v
  v="$("$PY" -m pip show faiss-gpu-cu12 | sed -n 's/^Version: //p')"
  "$PY" -m pip uninstall -y faiss-cpu || true
  "$PY" -m pip install --force-reinstall --no-deps "faiss-gpu-cu12==$v" || return 1
  "$PY" -c 'import faiss, json; print(json.dumps({"step": "install", "ok": True, "faiss": faiss.__version__, "faiss_gpus": faiss.get_num_gpus()}))'
}

nvidia() {
  nvidia-smi >&2 || return 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
    | "$PY" -c 'import json,sys; print(json.dumps({"step": "nvidia_smi", "ok": True, "gpus": [l.strip() for l in sys.stdin if l.strip()]}))'
}

if [ "$SMOKE" = 1 ]; then
  skip install "cpu smoke: nothing is installed"
  skip nvidia_smi "cpu smoke"
  run env 60 "$PY" bench/gpu_check.py env
  run embed 300 "$PY" bench/gpu_check.py embed --cpu-smoke --batch-size 32
  run knn 300 "$PY" bench/knn.py --sizes 2000 --device cpu --skip-ivf
  run kmeans 120 "$PY" bench/gpu_check.py kmeans --cpu-smoke
  TINY="$("$PY" bench/gpu_check.py tiny-corpus "$DIR/input" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["path"])')"
  run recipe 600 "$PY" -m curate.cli run recipes/iclm_gpu.yaml "input.paths=$TINY" stages.embed.device=cpu \
    stages.embed.gpus=0 stages.embed.batch_size=32 stages.neighbors.gpus=0 executor.tasks=1 executor.workers=1 \
    -o "$DIR/iclm_gpu" --overwrite --no-report
else
  run install 60 install_gpu_extra
  run nvidia_smi 20 nvidia
  run env 20 "$PY" bench/gpu_check.py env
  run embed 80 "$PY" bench/gpu_check.py embed --docs 50000 --batch-size 512
  run knn 180 "$PY" bench/knn.py --sizes 1000000,10000000 --device gpu --skip-ivf
  run kmeans 50 "$PY" bench/gpu_check.py kmeans --rows 1000000
  run recipe 90 "$PY" -m curate.cli run recipes/iclm_gpu.yaml "vars.data=$DATA" -o "$DIR/iclm_gpu" --overwrite --no-report
fi
# the recipe's own figures (ordering quality) beside its step line
if [ -f "$DIR/iclm_gpu/manifest.json" ] || ls "$DIR"/iclm_gpu/order*/data/quality.json > /dev/null 2>&1; then
  "$PY" - "$DIR/iclm_gpu" >> "$RESULTS" <<'EOF'
import glob, json, os, sys
q = sorted(glob.glob(os.path.join(sys.argv[1], "order*", "data", "quality.json")))
print(json.dumps({"step": "recipe_quality", "ok": bool(q), "quality": json.load(open(q[-1])) if q else None}))
EOF
fi
echo "results: $RESULTS" >&2
"$PY" -c 'import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(json.dumps({"gpu_check": "done", "steps": len(rows), "failed": [r["step"] for r in rows if not r.get("ok")]}))' "$RESULTS"
