#!/usr/bin/env bash
# The LEMaRT-vs-scratch study on HOutdoor, from nothing to the results table (issue 8).
#
#   bash examples/reproduce_houtdoor.sh DATA_DIR [OUT_DIR] [PROFILE]
#
# DATA_DIR holds photos/ (unlabeled photos for pre-training) and HOutdoor/ (iHarmony4 layout), e.g. ../shared/data.
# PROFILE picks the compute budget; the recipe is the same, only steps/batch/precision change:
#   cpu  (default) — 2 CPU cores, about 1 h 45 min on an idle machine: pre-training 6000 steps x 16 crops at
#                    64 px (83 epochs of the photos; 52 min with 2 threads), each fine-tuning 1500 steps x 16 crops
#                    at 64 px (about 24 min with 1 thread, two side by side); the models
#                    run at 64 px and evaluation is at 256 px (the protocol), the prediction carried to 256 px by the
#                    pipeline's high-resolution transfer (run_eval.py's default for a model saved at 64 px).
#                    Run the scratch fine-tunings beside pre-training (INITS=scratch STAGES=finetune) to halve the
#                    wall time.
#   gpu            — one H100/H200: bf16, 256 px, 3000 pre-training and 1500 fine-tuning steps.
# Every pair (LEMaRT vs scratch at the same label fraction) uses the same steps and hyper-parameters.
# Stages whose output already exists are skipped, so an interrupted study continues where it stopped;
# STAGES=pretrain,finetune,eval,table restricts what runs (default: all), INITS="lemart scratch" which
# initialisations are fine-tuned and evaluated (run the scratch ones beside pre-training to save wall time),
# MODEL_CONFIG which preset of which architecture (default swinih-tiny; e.g. resnet-generator-tiny, hrnet-tiny,
# harmony-transformer-tiny, vit-tiny), FRACTIONS which label fractions (default "0.1 1.0"); PRETRAIN_ARGS / FINETUNE_ARGS /
# EVAL_ARGS append arguments (the last one wins), e.g. PRETRAIN_ARGS="--max_train_steps 2" for a smoke test.
set -euo pipefail

DATA_DIR=${1:?usage: reproduce_houtdoor.sh DATA_DIR [OUT_DIR] [cpu|gpu]}
OUT_DIR=${2:-outputs/houtdoor_study}
PROFILE=${3:-cpu}
STAGES=${STAGES:-pretrain,finetune,eval,table}
INITS=${INITS:-lemart scratch}
MODEL_CONFIG=${MODEL_CONFIG:-swinih-tiny}
FRACTIONS=${FRACTIONS:-0.1 1.0}
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
  *) echo "reproduce_houtdoor.sh: error: PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2 ;;
esac
[ -d "$DATA_DIR/photos" ] || { echo "reproduce_houtdoor.sh: error: no $DATA_DIR/photos" >&2; exit 2; }
[ -d "$DATA_DIR/HOutdoor" ] || { echo "reproduce_houtdoor.sh: error: no $DATA_DIR/HOutdoor" >&2; exit 2; }
mkdir -p "$OUT_DIR"
wants() { [[ ",$STAGES," == *",$1,"* ]]; }
done_in() { [ -f "$1/model.safetensors" ] && [ -f "$1/config.json" ]; }

# 1. LEMaRT pre-training on unlabeled photos (disjoint from HOutdoor's scenes).
if wants pretrain && ! done_in "$OUT_DIR/pretrained"; then
  "${LAUNCH[@]}" "$HERE/run_pretrain.py" --train_dir "$DATA_DIR/photos" --model_config "$MODEL_CONFIG" \
    --mask_strategy random --mask_ratio 0.5 "${PRETRAIN[@]}" --seed 0 \
    --output_dir "$OUT_DIR/pretrained" --checkpointing_steps 250 --checkpoints_total_limit 2 \
    --validation_steps 500 --resume_from_checkpoint latest ${PRETRAIN_ARGS:-}
fi

# 2. Fine-tuning at 10% and 100% of the labels, from LEMaRT weights and from scratch.
if wants finetune; then
  for fraction in $FRACTIONS; do
    for init in $INITS; do
      run="$OUT_DIR/finetune_${init}_${fraction}"
      done_in "$run" && continue
      if [ "$init" = lemart ]; then start=(--model_name_or_path "$OUT_DIR/pretrained"); else start=(--model_config "$MODEL_CONFIG"); fi
      "${LAUNCH[@]}" "$HERE/run_finetune.py" --data_dir "$DATA_DIR" --subsets HOutdoor \
        --train_fraction "$fraction" "${start[@]}" "${FINETUNE[@]}" --seed 0 --skip_final_evaluation \
        --output_dir "$run" --checkpointing_steps 250 --checkpoints_total_limit 1 --validation_steps 0 \
        --resume_from_checkpoint latest ${FINETUNE_ARGS:-}
    done
  done
fi

# 3. Evaluation on HOutdoor test at 256x256 (the protocol), next to the two baselines.
if wants eval; then
  for baseline in composite color_transfer; do
    [ -f "$OUT_DIR/eval_$baseline/results.json" ] || "$PYTHON" "$HERE/run_eval.py" --data_dir "$DATA_DIR" \
      --subsets HOutdoor --baseline "$baseline" --output_dir "$OUT_DIR/eval_$baseline" ${EVAL_ARGS:-}
  done
  for fraction in $FRACTIONS; do
    for init in $INITS; do
      run="finetune_${init}_${fraction}"
      [ -f "$OUT_DIR/eval_$run/results.json" ] || "$PYTHON" "$HERE/run_eval.py" --data_dir "$DATA_DIR" \
        --subsets HOutdoor --model "$OUT_DIR/$run" --batch_size "$EVAL_BATCH" \
        --output_dir "$OUT_DIR/eval_$run" --save_images "$OUT_DIR/eval_$run/images" ${EVAL_ARGS:-}
    done
  done
fi

# 4. One table: rows = methods, columns = the protocol metrics on HOutdoor test ("All").
if wants table; then
  "$PYTHON" "$HERE/summarize_study.py" "$OUT_DIR" | tee "$OUT_DIR/results.md"
fi
