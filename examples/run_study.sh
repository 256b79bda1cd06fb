#!/usr/bin/env bash
# One LEMaRT-vs-scratch study, from nothing to its results table: LEMaRT pre-training on unlabeled photos,
# fine-tuning at some label fractions from the LEMaRT weights and from scratch (same steps and hyper-parameters per
# pair), evaluation on the test splits next to the baselines. The HOutdoor study of the README (issue 8) is the default;
# examples/reproduce_ablations.sh runs one such study per ablation variant.
#
#   bash examples/run_study.sh DATA_DIR [OUT_DIR] [PROFILE]
#
# DATA_DIR holds the photos (PHOTOS, default DATA_DIR/photos) and the iHarmony4-layout SUBSETS (default HOutdoor),
# e.g. ../shared/data.
# PROFILE picks the compute budget; the recipe is the same, only steps/batch/precision change:
#   cpu  (default) — 2 CPU cores, about 1 h 45 min on an idle machine: pre-training 6000 steps x 16 crops at
#                    64 px (83 epochs of the photos; 52 min with 2 threads), each fine-tuning 1500 steps x 16 crops
#                    at 64 px (about 24 min with 1 thread, two side by side); the models
#                    run at 64 px and evaluation is at 256 px (the protocol), the prediction carried to 256 px by the
#                    pipeline's high-resolution transfer (run_eval.py's default for a model saved at 64 px).
#                    Run the scratch fine-tunings beside pre-training (INITS=scratch STAGES=finetune) to halve the
#                    wall time.
#   gpu            — one H100/H200: bf16, 256 px, 3000 pre-training and 1500 fine-tuning steps.
# Stages whose output already exists are skipped, so an interrupted study continues where it stopped.
# Environment (defaults in brackets):
#   STAGES [pretrain,finetune,eval,table]   what runs
#   INITS ["lemart scratch"]                which initialisations are fine-tuned and evaluated ("" with STAGES=eval:
#                                           the baselines only)
#   FRACTIONS ["0.1 1.0"]                   label fractions
#   SUBSETS [HOutdoor]                      labelled subsets to fine-tune on and evaluate (their train / test lists)
#   PHOTOS [DATA_DIR/photos]                photo folders for pre-training (several: space-separated)
#   MASK_STRATEGY [random], MASK_RATIO [0.5]  LEMaRT's masks
#   SEED [0]                                the seed of the whole chain (pre-training, label subset, fine-tuning)
#   BASELINES ["composite color_transfer"]  model-free rows ("" for none)
#   SAVE_IMAGES [1]                         write each model's test predictions (PNG) and grids (0: only scores)
#   MODEL_CONFIG [swinih-tiny]              the preset (e.g. resnet-generator-tiny, hrnet-tiny,
#                                           harmony-transformer-tiny, vit-tiny)
#   PRETRAIN_ARGS / FINETUNE_ARGS / EVAL_ARGS  appended arguments (the last one wins), e.g.
#                                           PRETRAIN_ARGS="--max_train_steps 2" for a smoke test.
set -euo pipefail

DATA_DIR=${1:?usage: run_study.sh DATA_DIR [OUT_DIR] [cpu|gpu]}
OUT_DIR=${2:-outputs/houtdoor_study}
PROFILE=${3:-cpu}
STAGES=${STAGES:-pretrain,finetune,eval,table}
INITS=${INITS-lemart scratch}
MODEL_CONFIG=${MODEL_CONFIG:-swinih-tiny}
FRACTIONS=${FRACTIONS-0.1 1.0}
SUBSETS=${SUBSETS:-HOutdoor}
PHOTOS=${PHOTOS:-$DATA_DIR/photos}
MASK_STRATEGY=${MASK_STRATEGY:-random}
MASK_RATIO=${MASK_RATIO:-0.5}
SEED=${SEED:-0}
BASELINES=${BASELINES-composite color_transfer}
SAVE_IMAGES=${SAVE_IMAGES:-1}
PYTHON=${PYTHON:-python}
ACCELERATE=${ACCELERATE:-accelerate}
HERE=$(cd "$(dirname "$0")" && pwd)

case "$PROFILE" in
  cpu)
    LAUNCH=("$ACCELERATE" launch --num_processes 1 --cpu)
    PRETRAIN=(--resolution 64 --train_batch_size 16 --max_train_steps 6000 --learning_rate 1e-3
              --dataloader_num_workers 1 --num_validation_composites 16)
    FINETUNE=(--resolution 64 --train_batch_size 16 --max_train_steps 1500 --learning_rate 5e-4
              --dataloader_num_workers 1)
    EVAL_BATCH=16 ;;
  gpu)
    LAUNCH=("$ACCELERATE" launch --num_processes 1 --mixed_precision bf16)
    PRETRAIN=(--resolution 256 --train_batch_size 64 --max_train_steps 3000 --learning_rate 2e-3
              --dataloader_num_workers 12 --allow_tf32)
    FINETUNE=(--resolution 256 --train_batch_size 32 --max_train_steps 1500 --learning_rate 1e-3
              --dataloader_num_workers 12 --allow_tf32)
    EVAL_BATCH=64 ;;
  *) echo "run_study.sh: error: PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2 ;;
esac
for folder in $PHOTOS; do
  [ -d "$folder" ] || { echo "run_study.sh: error: no photo folder $folder" >&2; exit 2; }
done
for subset in $SUBSETS; do
  [ -d "$DATA_DIR/$subset" ] || { echo "run_study.sh: error: no $DATA_DIR/$subset" >&2; exit 2; }
done
mkdir -p "$OUT_DIR"
wants() { [[ ",$STAGES," == *",$1,"* ]]; }
done_in() { [ -f "$1/model.safetensors" ] && [ -f "$1/config.json" ]; }

# 1. LEMaRT pre-training on unlabeled photos (disjoint from the test splits' scenes), when a LEMaRT row is wanted.
if wants pretrain && [[ " $INITS " == *" lemart "* ]] && ! done_in "$OUT_DIR/pretrained"; then
  # shellcheck disable=SC2086  # PHOTOS is a list of folders
  "${LAUNCH[@]}" "$HERE/run_pretrain.py" --train_dir $PHOTOS --model_config "$MODEL_CONFIG" \
    --mask_strategy "$MASK_STRATEGY" --mask_ratio "$MASK_RATIO" "${PRETRAIN[@]}" --seed "$SEED" \
    --output_dir "$OUT_DIR/pretrained" --checkpointing_steps 250 --checkpoints_total_limit 2 \
    --validation_steps 500 --resume_from_checkpoint latest ${PRETRAIN_ARGS:-}
fi

# 2. Fine-tuning at each label fraction, from the LEMaRT weights and from scratch.
if wants finetune; then
  for fraction in $FRACTIONS; do
    for init in $INITS; do
      run="$OUT_DIR/finetune_${init}_${fraction}"
      done_in "$run" && continue
      if [ "$init" = lemart ]; then start=(--model_name_or_path "$OUT_DIR/pretrained"); else start=(--model_config "$MODEL_CONFIG"); fi
      # shellcheck disable=SC2086  # SUBSETS is a list
      "${LAUNCH[@]}" "$HERE/run_finetune.py" --data_dir "$DATA_DIR" --subsets $SUBSETS \
        --train_fraction "$fraction" "${start[@]}" "${FINETUNE[@]}" --seed "$SEED" --skip_final_evaluation \
        --output_dir "$run" --checkpointing_steps 250 --checkpoints_total_limit 1 --validation_steps 0 \
        --resume_from_checkpoint latest ${FINETUNE_ARGS:-}
    done
  done
fi

# 3. Evaluation on the test splits at 256x256 (the protocol), next to the baselines.
if wants eval; then
  for baseline in $BASELINES; do
    # shellcheck disable=SC2086
    [ -f "$OUT_DIR/eval_$baseline/results.json" ] || "$PYTHON" "$HERE/run_eval.py" --data_dir "$DATA_DIR" \
      --subsets $SUBSETS --baseline "$baseline" --output_dir "$OUT_DIR/eval_$baseline" ${EVAL_ARGS:-}
  done
  for fraction in $FRACTIONS; do
    for init in $INITS; do
      run="finetune_${init}_${fraction}"
      images=(); [ "$SAVE_IMAGES" = 1 ] && images=(--save_images "$OUT_DIR/eval_$run/images")
      # shellcheck disable=SC2086
      [ -f "$OUT_DIR/eval_$run/results.json" ] || "$PYTHON" "$HERE/run_eval.py" --data_dir "$DATA_DIR" \
        --subsets $SUBSETS --model "$OUT_DIR/$run" --batch_size "$EVAL_BATCH" \
        --output_dir "$OUT_DIR/eval_$run" "${images[@]}" ${EVAL_ARGS:-}
    done
  done
fi

# 4. One table: rows = methods, columns = the protocol metrics on the test splits ("All").
if wants table; then
  "$PYTHON" "$HERE/summarize_study.py" "$OUT_DIR" | tee "$OUT_DIR/results.md"
fi
