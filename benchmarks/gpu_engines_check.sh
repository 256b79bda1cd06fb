#!/usr/bin/env bash
# ONE prepared GPU check of the training engines (issue 17): both training scripts under the sharded configs of
# examples/accelerate_configs/ (fsdp, deepspeed_zero2, deepspeed_zero3), compared with a plain single-GPU run.
# From the repository root:
#
#     bash benchmarks/gpu_engines_check.sh      # < 3 minutes on one H200 (engines side by side); a table at the end
#
# It installs nothing. DeepSpeed rows are SKIPPED when `import deepspeed` fails. If `import lemart_hf` fails it uses
# PYTHONPATH=src. Every engine runs as ONE process on the one GPU (--num_processes 1): that takes every code path the
# scripts have for the engine (FSDP2 wrapping with activation checkpointing and sharded checkpoints; DeepSpeed's
# engine, its config filled from the script's arguments, its checkpoints; the exported weights gathered with
# Accelerator.get_state_dict; validation and evaluation through the prepared model), but no communication between
# processes. FSDP across processes is tested on CPU processes (tests/examples/test_run_*.py); DeepSpeed across
# processes needs several GPUs. The reference row, "single", is a plain one-process run: ddp.yaml itself needs at
# least 2 GPUs (accelerate refuses --multi_gpu with one process; DDP is tested on 2 CPU processes by the tests).
# For each row, side by side (separate ports, tiny models):
#   1. run_pretrain.py: swinih-tiny at 64 px, fp32 with TF32 off (so the engines can be compared to float tolerance),
#      STEPS steps, a checkpoint and a validation every SAVE_AT steps, on generated photos;
#   2. the same resumed from that run's checkpoint-SAVE_AT into a new folder (must end with the same weights);
#   3. run_finetune.py from scratch on a generated iHarmony4-layout tree, with validation and the final test evaluation.
# The table: exit codes, max |exported weights - the single run's|, max |resumed - uninterrupted|, whether the model
# folders are complete hub repositories (lemart_hf.hub.check_hub_folder), the test PSNR and its difference to the
# single run's, seconds.
# PASS: every run exits 0, both differences <= TOL, complete folders, |delta PSNR| <= 0.01 dB.
# Knobs (environment): PYTHON (python3), STEPS (6), SAVE_AT (3), TOL (1e-4), RUN_LIMIT (seconds per launch, 120),
# WORK (scratch folder; default: a new one under /tmp). ENGINES_ALLOW_CPU=1 runs the single row on the CPU, to check
# the script itself on a machine without a GPU (the other rows are SKIPPED there).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
STEPS="${STEPS:-6}"
SAVE_AT="${SAVE_AT:-3}"
TOL="${TOL:-1e-4}"
RUN_LIMIT="${RUN_LIMIT:-120}"
WORK="${WORK:-$(mktemp -d /tmp/gpu_engines_check.XXXXXX)}"
ENGINES=(single fsdp deepspeed_zero2 deepspeed_zero3)
T0=$(date +%s)
export NVIDIA_TF32_OVERRIDE=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=2

echo "=== environment (scratch folder: $WORK) ==="
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
CPU_ONLY=0
if ! "$PY" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
    if [ "${ENGINES_ALLOW_CPU:-0}" = 1 ]; then
        CPU_ONLY=1; echo "no CUDA device: checking the script on the CPU (single row only)"
    else
        echo "!!! no CUDA device visible (torch.cuda.is_available() is False)"
        echo "    (ENGINES_ALLOW_CPU=1 checks the script itself on the CPU)"
        exit 1
    fi
fi
if ! "$PY" -c 'import lemart_hf' >/dev/null 2>&1; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    "$PY" -c 'import lemart_hf' || { echo "!!! lemart_hf is not importable, not even from ./src"; exit 1; }
    echo "lemart_hf imported from ./src (PYTHONPATH)"
fi
"$PY" -c 'import torch, accelerate, transformers
print("torch", torch.__version__, "| accelerate", accelerate.__version__, "| transformers", transformers.__version__)'
if "$PY" -c 'import deepspeed; print("deepspeed", deepspeed.__version__)' 2>/dev/null; then HAVE_DS=1; else
    HAVE_DS=0; echo "deepspeed is not installed: its rows are SKIPPED"; fi

echo "=== data: generated photos and a tiny iHarmony4-layout tree ==="
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

work, rng = Path(sys.argv[1]), np.random.default_rng(0)


def image(height, width):
    """Smooth colour gradients plus noise, uint8 RGB."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(0, 1, (3, 3))
    pixels = base[:, 0, None, None] + base[:, 1, None, None] * xx + base[:, 2, None, None] * yy
    pixels = pixels.transpose(1, 2, 0) / pixels.max() + rng.normal(0, 0.03, (height, width, 3))
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


(work / "photos").mkdir(parents=True)
for i in range(24):
    height, width = rng.integers(72, 120, size=2)
    Image.fromarray(image(int(height), int(width))).save(work / "photos" / f"{i:02d}.png")
subset = work / "iharmony4" / "HTiny"
for name in ("composite_images", "masks", "real_images"):
    (subset / name).mkdir(parents=True)
lists = {"train": [], "test": []}
for i in range(24):
    real, mask = image(64, 64), np.zeros((64, 64), np.uint8)
    mask[16:44, 12:48] = 255
    composite = np.where(mask[..., None] > 0, np.clip(real + rng.uniform(-60, 60, 3), 0, 255), real).astype(np.uint8)
    Image.fromarray(real).save(subset / "real_images" / f"r{i:03d}.jpg", quality=95)
    Image.fromarray(mask).save(subset / "masks" / f"r{i:03d}_1.png")
    Image.fromarray(composite).save(subset / "composite_images" / f"r{i:03d}_1_1.jpg", quality=95)
    lists["train" if i < 16 else "test"].append(f"r{i:03d}_1_1.jpg")
for split, names in lists.items():
    (subset / f"HTiny_{split}.txt").write_text("\n".join(names) + "\n")
print("24 photos, 16 training and 8 test pairs in", work)
EOF

COMMON=(--model_config swinih-tiny --resolution 64 --train_batch_size 4 --logging_steps 1 --lr_warmup_steps 1
        --max_train_steps "$STEPS" --checkpointing_steps "$SAVE_AT" --validation_steps "$SAVE_AT"
        --dataloader_num_workers 1 --report_to none)

run_engine() {  # run_engine ENGINE PORT: the three launches of one engine, one after the other; logs and exit codes
    local engine=$1 port=$2 dir="$WORK/$1"
    mkdir -p "$dir"
    local launch=("$PY" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no
                  --dynamo_backend no)
    if [ "$engine" != single ]; then
        launch+=(--config_file "examples/accelerate_configs/$engine.yaml" --main_process_port "$port")
    elif [ "$CPU_ONLY" = 1 ]; then
        launch+=(--cpu)
    fi
    local start=$(date +%s)
    timeout --kill-after=15 "$RUN_LIMIT" "${launch[@]}" examples/run_pretrain.py "${COMMON[@]}" \
        --train_dir "$WORK/photos" --num_validation_composites 8 --output_dir "$dir/pretrain" >"$dir/pretrain.log" 2>&1
    echo $? >"$dir/pretrain.rc"
    timeout --kill-after=15 "$RUN_LIMIT" "${launch[@]}" examples/run_pretrain.py "${COMMON[@]}" \
        --train_dir "$WORK/photos" --num_validation_composites 8 --output_dir "$dir/resumed" \
        --resume_from_checkpoint "$dir/pretrain/checkpoint-$SAVE_AT" >"$dir/resumed.log" 2>&1
    echo $? >"$dir/resumed.rc"
    timeout --kill-after=15 "$RUN_LIMIT" "${launch[@]}" examples/run_finetune.py "${COMMON[@]}" \
        --data_dir "$WORK/iharmony4" --validation_max_samples 4 --eval_batch_size 4 --output_dir "$dir/finetune" \
        >"$dir/finetune.log" 2>&1
    echo $? >"$dir/finetune.rc"
    echo $(( $(date +%s) - start )) >"$dir/seconds"
}

echo "=== runs (side by side; logs in $WORK/<engine>/*.log) ==="
port=29611
for engine in "${ENGINES[@]}"; do
    if { [ "$engine" != single ] && [ "$CPU_ONLY" = 1 ]; } || { [[ "$engine" == deepspeed* ]] && [ "$HAVE_DS" = 0 ]; }; then
        mkdir -p "$WORK/$engine"; touch "$WORK/$engine/SKIPPED"; continue
    fi
    run_engine "$engine" "$port" &
    port=$((port + 1))
done
wait
echo "all runs done at t=$(( $(date +%s) - T0 ))s"

echo "=== results ==="
"$PY" - "$WORK" "$TOL" "$CPU_ONLY" "${ENGINES[@]}" <<'EOF'
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

from lemart_hf.hub import check_hub_folder

work, tol, cpu_only, engines = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]


def weights(folder):
    path = folder / "model.safetensors"
    return load_file(path) if path.is_file() else None


def max_diff(a, b):
    if a is None or b is None:
        return None
    if a.keys() != b.keys():
        return float("inf")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_psnr(folder):
    path = folder / "eval_results.json"
    return json.loads(path.read_text())["table"]["All"]["psnr"] if path.is_file() else None


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


single = work / "single"
reference, reference_psnr = weights(single / "pretrain"), test_psnr(single / "finetune")
print(
    "| engine | exit codes (pretrain, resumed, finetune) | max abs export - single | max abs resumed - uninterrupted "
    "| complete folders | test PSNR (delta single) | seconds | verdict |"
)
print("| --- | --- | ---: | ---: | --- | ---: | ---: | --- |")
failed = False
for engine in engines:
    folder = work / engine
    if (folder / "SKIPPED").exists():
        why = "no GPU (script check on CPU)" if cpu_only else "deepspeed not installed"
        print(f"| {engine} | SKIPPED: {why} | | | | | | SKIPPED |")
        continue
    codes = [int((folder / f"{run}.rc").read_text()) if (folder / f"{run}.rc").is_file() else None
             for run in ("pretrain", "resumed", "finetune")]
    exported = weights(folder / "pretrain")
    vs_single = max_diff(exported, reference)
    resumed = max_diff(weights(folder / "resumed"), exported)
    complete = all(not check_hub_folder(folder / run) for run in ("pretrain", "finetune") if (folder / run).is_dir())
    psnr = test_psnr(folder / "finetune")
    delta = None if psnr is None or reference_psnr is None else psnr - reference_psnr
    ok = (codes == [0, 0, 0] and vs_single is not None and vs_single <= tol and resumed is not None and resumed <= tol
          and complete and delta is not None and abs(delta) <= 0.01)
    failed |= not ok
    seconds = (folder / "seconds").read_text().strip() if (folder / "seconds").is_file() else "-"
    print(f"| {engine} | {codes} | {fmt(vs_single, '.2e')} | {fmt(resumed, '.2e')} | {complete} | "
          f"{fmt(psnr, '.3f')} ({fmt(delta, '+.4f')}) | {seconds} | {'PASS' if ok else 'FAIL'} |")
print(f"\nverdict: {'FAIL (logs: ' + str(work) + '/<engine>/*.log)' if failed else 'PASS'}")
for engine in engines:
    for run in ("pretrain", "resumed", "finetune"):
        log = work / engine / f"{run}.log"
        rc = work / engine / f"{run}.rc"
        if rc.is_file() and rc.read_text().strip() != "0":
            print(f"--- {engine} {run}: last lines ---")
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
EOF
echo "=== done in $(( $(date +%s) - T0 ))s ==="
