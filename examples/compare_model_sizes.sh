#!/usr/bin/env bash
# Which model size gives the best harmonization for the compute (issue 15): each preset is pre-trained with LEMaRT
# and fine-tuned for about the same wall-clock time, then scored on the validation split held out of the labelled
# TRAIN pairs (never a test split), and the curves of validation fPSNR against training hours are drawn.
#
#   bash examples/compare_model_sizes.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR holds photos/ and photos_diverse/ (pre-training; PHOTOS overrides) and HOutdoor/ + HDiverse/ (fine-tuning
# and validation), e.g. ../shared/data. Each preset is one examples/run_study.sh chain in OUT_DIR/<preset>
# (INITS=lemart, FRACTIONS=1.0): pre-training at 128 px in bf16, batch 16, lr 1e-3; fine-tuning on HOutdoor +
# HDiverse train with 10% of the photos held out and a quarter of every batch LEMaRT composites (the released
# model's recipe), validation every VALIDATION_STEPS steps; run_eval.py on the held-out photos at 256 px. Then
# examples/summarize_study.py writes OUT_DIR/results.md and examples/plot_compute_curves.py OUT_DIR/compute_curves.png.
# Finished stages are skipped, so an interrupted comparison continues where it stopped.
#
# Equal time, not equal steps: each preset's step counts are PRETRAIN_MINUTES / FINETUNE_MINUTES divided by its
# seconds per step, so every schedule (warm-up and cosine decay) runs to its end in about the same time;
# --time_budget_minutes (1.5x + 10 min, validation included) only guards against a much slower machine, and a run it
# stops is marked "STOPPED EARLY" in plot_compute_curves.py's lines. The curves' x axis is each run's measured training
# time (train/hours: validation left out), so they stay honest when the estimate is off.
# Environment (defaults in brackets):
#   PRESETS ["swinih-tiny:2.01 swinih-small:3.00"]  preset (or config.json):seconds per training step at 128 px,
#            batch 16, bf16, data and compositing included (benchmarks/bench_training_loop.py --sizes 128
#            --workers 1 --model_config PRESET, on a 2-core AVX512-BF16 CPU with the machine otherwise idle)
#   PRETRAIN_MINUTES [45], FINETUNE_MINUTES [15]     minutes per preset; about 2 x 65 min in all with evaluation
#   VALIDATION_STEPS [100]                           pre-training validation runs 4x less often
#   PHOTOS, SEED [0], PRETRAIN_ARGS / FINETUNE_ARGS / EVAL_ARGS (appended; e.g. "--max_train_steps 2" for a smoke test)
set -euo pipefail

DATA_DIR=${1:?usage: compare_model_sizes.sh DATA_DIR [OUT_DIR]}
OUT_DIR=${2:-outputs/model_sizes}
PRESETS=${PRESETS:-swinih-tiny:2.01 swinih-small:3.00}
PRETRAIN_MINUTES=${PRETRAIN_MINUTES:-45}
FINETUNE_MINUTES=${FINETUNE_MINUTES:-15}
VALIDATION_STEPS=${VALIDATION_STEPS:-100}
PHOTOS=${PHOTOS:-$DATA_DIR/photos $DATA_DIR/photos_diverse}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)

steps() {  # steps MINUTES SECONDS_PER_STEP: the steps that fill MINUTES
  "$PYTHON" -c "import sys; print(max(1, round(float(sys.argv[1]) * 60 / float(sys.argv[2]))))" "$1" "$2"
}
guard() {  # guard MINUTES: the time budget that stops a run on a machine much slower than the estimate
  "$PYTHON" -c "import sys; print(round(float(sys.argv[1]) * 1.5 + 10, 1))" "$1"
}

folders=()
for entry in $PRESETS; do
  preset=${entry%%:*} seconds=${entry#*:}
  name=$(basename "$preset" .json)  # a preset name, or a config file's name
  if [ "$preset" = "$entry" ] || ! "$PYTHON" -c "import sys; assert float(sys.argv[1]) > 0" "$seconds" 2>/dev/null; then
    echo "compare_model_sizes.sh: error: PRESETS entry '$entry' is not preset:seconds (seconds > 0)" >&2; exit 2
  fi
  pretrain_steps=$(steps "$PRETRAIN_MINUTES" "$seconds")
  finetune_steps=$(steps "$FINETUNE_MINUTES" "$seconds")
  echo "== $preset: $pretrain_steps pre-training and $finetune_steps fine-tuning steps ($seconds s per step)"
  MODEL_CONFIG=$preset INITS=lemart FRACTIONS=1.0 SUBSETS="HOutdoor HDiverse" PHOTOS="$PHOTOS" SEED=${SEED:-0} \
    STAGES=pretrain,finetune,eval BASELINES=composite SAVE_IMAGES=0 \
    PRETRAIN_ARGS="--resolution 128 --max_train_steps $pretrain_steps --mixed_precision bf16 --learning_rate 1e-3
      --validation_steps $((4 * VALIDATION_STEPS)) --time_budget_minutes $(guard "$PRETRAIN_MINUTES") ${PRETRAIN_ARGS:-}" \
    FINETUNE_ARGS="--resolution 128 --max_train_steps $finetune_steps --mixed_precision bf16 --learning_rate 5e-4
      --lemart_fraction 0.25 --validation_fraction 0.1 --validation_steps $VALIDATION_STEPS
      --time_budget_minutes $(guard "$FINETUNE_MINUTES") ${FINETUNE_ARGS:-}" \
    EVAL_ARGS="--split train --held_out_fraction 0.1 ${EVAL_ARGS:-}" \
    bash "$HERE/run_study.sh" "$DATA_DIR" "$OUT_DIR/$name" cpu
  folders+=("$OUT_DIR/$name")
done

"$PYTHON" "$HERE/summarize_study.py" "${folders[@]}" | tee "$OUT_DIR/results.md"
"$PYTHON" "$HERE/plot_compute_curves.py" "${folders[@]}" --output "$OUT_DIR/compute_curves.png"
