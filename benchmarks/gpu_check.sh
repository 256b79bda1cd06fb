#!/usr/bin/env bash
# ONE prepared GPU check for SwinIH speed (issue #7). From the repository root, on a fresh CUDA box:
#
#     bash benchmarks/gpu_check.sh            # at most 8 min 35 s (see Time below); everything to stdout
#
# It installs nothing. If `import lemart_hf` fails it first tries PYTHONPATH=src, and only then
# `pip install -e . --no-deps --no-build-isolation` (limited to 60 s). Each section has its own time limit and a
# failure in one does not stop the others. Sections:
#   1. environment (GPU, torch, transformers) and torch._dynamo.explain graph-break count
#   2. paper config, 256x256, bf16, batch 32: forward and forward+backward with SDPA and (when .git is there) the
#      pre-optimisation model code: img/s, % of the measured bf16 matmul rate, MFU against the nominal peak
#   3. the same at batch 8 against the eager attention (the SDPA / eager ratio; eager needs too much memory at 32)
#   3b. paper and tiny configs at 512x512, batch 1, forward: SDPA vs eager, the issue's 1.5x target on the full models
#      (their eager global layer needs 32 / 48 GiB in fp32, more than the 24 GiB CPU machine has)
#   3c. inference: torch fp32 / bf16 (weights cast, and autocast) / ONNX Runtime fp32 on the CUDAExecutionProvider,
#      paper + tiny at 256x256, batch 1 and 8 (benchmarks/bench_inference.py --device cuda): img/s, speed-up over torch
#      fp32, peak memory, largest difference from fp32, and which execution provider ran each ONNX node. The ONNX
#      Runtime row needs onnxruntime-gpu: without it one line says it is skipped and the torch rows still run
#   4. a short real LEMaRT training loop (composites made on the GPU each step, AdamW, bf16): img/s, MFU and the
#      share of a training step spent compositing (timed alone, and as the slowdown of back-to-back steps)
#   5. the LEMaRT composer on the GPU at batch 32: composites/s, kernel launches and device read-backs per call,
#      dense (the GPU default) vs by subsets vs the composer code of COMPOSER_BASELINE
#   6. the training loop with torch.compile, then the batch-32 forward with torch.compile vs without
# The most useful numbers come first, so a section that runs out of time (compilation) costs only what follows it.
# Time: the section limits sum to 45 + 90 + 60 + 60 + 180 + 45 + 60 + 120 + 60 = 720 s, and the environment step
# (imports; the pip install fallback, limited to 60 s) up to about 90 s: 810 s, over the 9 minutes a check may take.
# So a DEADLINE (default 510 s after the start, environment step included) caps them: each section's limit is cut
# to what is left before it, a section with under 15 s left is skipped, and a section outlives its limit by at most
# the 5 s between TERM and KILL. Worst case: 510 + 5 = 515 s (8 min 35 s), whatever the sections do (as long as the
# environment step's imports return). Sections that end early leave their time to the later ones; the compile
# sections, last, are the ones the deadline would cut.
# Knobs (environment): PYTHON (default python3), BATCH (default 32), LOOP_STEPS (default 20), BASELINE (git revision
# of the reference model code, default 2a17b49 = before the speed work; empty to skip), COMPOSER_BASELINE (git revision
# of the reference composer code, default 0236fe2 = before the dense GPU path; empty to skip), DEADLINE (seconds, 510).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
BATCH="${BATCH:-32}"
LOOP_STEPS="${LOOP_STEPS:-20}"
BASELINE="${BASELINE-2a17b49}"
COMPOSER_BASELINE="${COMPOSER_BASELINE-0236fe2}"
DEADLINE="${DEADLINE:-510}"
T0=$(date +%s)

section() { echo; echo "=== [t=$(( $(date +%s) - T0 ))s] $* ==="; }
guarded() {  # guarded SECONDS CMD...: run with a time limit (cut to what DEADLINE leaves), report a failure, carry on
    local limit=$1; shift
    local left=$(( DEADLINE - ($(date +%s) - T0) ))
    if [ "$left" -lt 15 ]; then
        echo "!!! section skipped: ${left}s left before the deadline (DEADLINE=${DEADLINE}s)"; return 0
    fi
    if [ "$left" -lt "$limit" ]; then echo "(time limit ${limit}s cut to ${left}s by the deadline)"; limit=$left; fi
    timeout --kill-after=5 "$limit" "$@" 2>&1
    local rc=$?
    if [ "$rc" -ne 0 ]; then echo "!!! section failed (rc=$rc$([ "$rc" -eq 124 ] && echo ', time limit')); continuing"; fi
    return 0
}

section "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv 2>&1 || true
if ! "$PY" -c 'import torch, transformers; assert torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|", torch.cuda.get_device_name(0),
      "| transformers", transformers.__version__)'; then
    echo "!!! torch with CUDA and transformers are needed; nothing else can run"; exit 1
fi
if ! "$PY" -c 'import lemart_hf' >/dev/null 2>&1; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    if "$PY" -c 'import lemart_hf' >/dev/null 2>&1; then
        echo "lemart_hf imported from ./src (PYTHONPATH)"
    else
        echo "lemart_hf not importable from ./src either:"; "$PY" -c 'import lemart_hf' 2>&1 | tail -3
        echo "trying: pip install -e . --no-deps --no-build-isolation"
        timeout --kill-after=5 60 "$PY" -m pip install -q -e . --no-deps --no-build-isolation 2>&1 | tail -3 || true
        "$PY" -c 'import lemart_hf' >/dev/null 2>&1 \
            || echo "still not importable: bench_model.py loads the SwinIH folder on its own (no LEMaRT composer then)"
    fi
fi
BASE_ARGS=()
COMPOSER_BASE_ARGS=()
if [ -n "$BASELINE" ] && git rev-parse --verify -q "$BASELINE^{commit}" >/dev/null 2>&1; then
    BASE_ARGS=(--baseline "$BASELINE")
    [ -n "$COMPOSER_BASELINE" ] && COMPOSER_BASE_ARGS=(--baseline "$COMPOSER_BASELINE")
else
    echo "no git history here: the pre-optimisation references (baselines) are skipped"
fi

section "graph breaks under torch.compile (torch._dynamo.explain, small SwinIH, eval + train)"
guarded 45 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --explain --skip-table

section "paper config 256x256 bf16, batch $BATCH: fwd and fwd+bwd, SDPA (and the pre-optimisation code)"
guarded 90 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --no-eager --configs paper --sizes 256 \
    --modes fwd,train --batch "paper:256=$BATCH" --rounds 5 --warmup 2 ${BASE_ARGS[@]+"${BASE_ARGS[@]}"}

section "paper config 256x256 bf16, batch 8: SDPA vs the eager attention (eager needs B x heads x 4096^2 scores)"
guarded 60 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --configs paper --sizes 256 \
    --modes fwd,train --batch "paper:256=8" --rounds 5 --warmup 2

section "paper and tiny configs 512x512 bf16, batch 1: forward, SDPA vs the eager attention (target: >= 1.5x)"
guarded 60 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --configs paper,tiny --sizes 512 \
    --modes fwd --batch "paper:512=1,tiny:512=1" --rounds 3 --warmup 1

section "inference: torch fp32 / bf16 / ORT CUDA, paper + tiny at 256x256, batch 1 and 8 (ONNX export on the CPU first)"
guarded 180 "$PY" benchmarks/bench_inference.py --device cuda --configs paper,tiny --size 256 --batches 1,8 --rounds 5

section "LEMaRT training loop, paper config 256x256 bf16, batch $BATCH, $LOOP_STEPS steps, no compile"
guarded 45 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --skip-table \
    --loop-steps "$LOOP_STEPS" --loop-config paper --loop-size 256 --loop-batch "$BATCH"

section "LEMaRT composer on the GPU, batch 32 at 256x256: dense vs by subsets (and the older composer code)"
guarded 60 "$PY" benchmarks/bench_composer.py --device cuda --batch_size 32 --rounds 5 \
    ${COMPOSER_BASE_ARGS[@]+"${COMPOSER_BASE_ARGS[@]}"}

section "LEMaRT training loop, as above, with torch.compile (compiles the training graph first)"
guarded 120 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --skip-table --compile \
    --loop-steps "$LOOP_STEPS" --loop-config paper --loop-size 256 --loop-batch "$BATCH"

section "paper config 256x256 bf16, batch $BATCH: forward with torch.compile vs without"
guarded 60 "$PY" benchmarks/bench_model.py --device cuda --dtype bf16 --compile --no-eager --configs paper \
    --sizes 256 --modes fwd --batch "paper:256=$BATCH" --rounds 5 --warmup 2

section "done in $(( $(date +%s) - T0 ))s"
