#!/usr/bin/env bash
# The paper's three ablations at our scale (issue 20), from nothing to the tables and the plot:
#   - mask strategy (paper Table 5): random / grid / block masks at ratio 0.5,
#   - mask ratio (paper Table 6): 0.3 / 0.5 / 0.7 with random masks,
#   - label fraction (paper Figure 6): 1 / 5 / 10 / 20 / 50 / 100% of the labels, LEMaRT vs scratch.
# Every LEMaRT variant has the same pre-training budget and is fine-tuned the same way at 10% of the labels; every
# pair on the label-fraction curve has the same steps and hyper-parameters. All fine-tune on HOutdoor + HDiverse train
# and are scored on both test splits. The 10% rows are run again with a second seed (SEEDS: the whole chain, from
# pre-training to the label subset) so the reader sees what difference is noise.
#
#   bash examples/reproduce_ablations.sh DATA_DIR [OUT_DIR] [cpu|gpu]
#
# DATA_DIR holds photos/, photos_diverse/ (pre-training; PHOTOS overrides), HOutdoor/ and HDiverse/ (e.g. ../shared/data).
# Each variant is one examples/run_study.sh chain in OUT_DIR/seed<S>/<strategy>_<ratio>; finished stages are
# skipped, so an interrupted run continues where it stopped. Then examples/summarize_ablations.py writes
# OUT_DIR/results.md and OUT_DIR/label_fraction_curve.png.
# Profiles (the run_study.sh profile, with these budgets):
#   cpu (default) — swinih-tiny at 64 px in bf16, batch 16: pre-training 3,000 steps (lr 1e-3, 10 epochs of the 4,844
#                   photos), fine-tuning 500 steps (lr 5e-4); the models run at 64 px and are scored at the protocol's
#                   256 px through the high-resolution transfer. 10 pre-trainings, 23 fine-tunings, 25 evaluations.
#                   Measured on a 2-core AVX512-BF16 machine: a pre-training about 28 min (1.8 steps/s idle), a
#                   fine-tuning about 6 min, an evaluation of both test splits about 50 s: about 7.5 h in all, so
#                   on a machine whose sessions last 3 h it takes three (it resumes where it stopped). 1,000
#                   pre-training steps were too few: LEMaRT beat scratch at 10% by only 0.23 dB fPSNR, too little
#                   to tell mask strategies apart.
#   gpu           — run_study.sh's gpu profile unchanged: 256 px, 3,000 pre-training and 1,500 fine-tuning steps.
# Environment: SEEDS ["0 1"] (the first seed also runs the whole label-fraction curve), FRACTIONS
# ["0.01 0.05 0.1 0.2 0.5 1.0"] (the curve), VARIANTS ["random_0.5 grid_0.5 block_0.5 random_0.3 random_0.7"]
# (<strategy>_<ratio>; random_0.5 carries the curve and the scratch rows), PHOTOS, and PRETRAIN_ARGS /
# FINETUNE_ARGS / EVAL_ARGS appended to every run (e.g. "--max_train_steps 2" for a smoke test).
set -euo pipefail

DATA_DIR=${1:?usage: reproduce_ablations.sh DATA_DIR [OUT_DIR] [cpu|gpu]}
OUT_DIR=${2:-outputs/ablations}
PROFILE=${3:-cpu}
SEEDS=${SEEDS:-0 1}
FRACTIONS=${FRACTIONS:-0.01 0.05 0.1 0.2 0.5 1.0}
VARIANTS=${VARIANTS:-random_0.5 grid_0.5 block_0.5 random_0.3 random_0.7}
PHOTOS=${PHOTOS:-$DATA_DIR/photos $DATA_DIR/photos_diverse}
PYTHON=${PYTHON:-python}
HERE=$(cd "$(dirname "$0")" && pwd)

case "$PROFILE" in
  cpu)
    PRETRAIN="--max_train_steps 3000 --mixed_precision bf16 --validation_steps 1000"
    FINETUNE="--max_train_steps 500 --mixed_precision bf16" ;;
  gpu) PRETRAIN="" FINETUNE="" ;;
  *) echo "reproduce_ablations.sh: error: PROFILE must be cpu or gpu, got '$PROFILE'" >&2; exit 2 ;;
esac

# study OUT_SUB SEED STRATEGY RATIO FRACTIONS INITS: one run_study.sh chain, evaluated on both test splits.
study() {
  SEED=$2 MASK_STRATEGY=$3 MASK_RATIO=$4 FRACTIONS=$5 INITS=$6 BASELINES="" SAVE_IMAGES=0 \
    SUBSETS="HOutdoor HDiverse" PHOTOS="$PHOTOS" STAGES=pretrain,finetune,eval \
    PRETRAIN_ARGS="$PRETRAIN ${PRETRAIN_ARGS:-}" FINETUNE_ARGS="$FINETUNE ${FINETUNE_ARGS:-}" \
    bash "$HERE/run_study.sh" "$DATA_DIR" "$OUT_DIR/$1" "$PROFILE"
}

# The model-free rows, once.
INITS="" FRACTIONS="" SUBSETS="HOutdoor HDiverse" PHOTOS="$PHOTOS" STAGES=eval \
  bash "$HERE/run_study.sh" "$DATA_DIR" "$OUT_DIR" "$PROFILE"

# Every variant at 10% of the labels (the default one, random_0.5, also from scratch), then the first seed's
# label-fraction curve on the default variant: the mask rows come first, should the run be cut short.
first=${SEEDS%% *}
for seed in $SEEDS; do
  for variant in $VARIANTS; do
    inits=lemart; [ "$variant" = random_0.5 ] && inits="lemart scratch"
    study "seed$seed/$variant" "$seed" "${variant%_*}" "${variant#*_}" 0.1 "$inits"
  done
  if [ "$seed" = "$first" ]; then
    study "seed$seed/random_0.5" "$seed" random 0.5 "$FRACTIONS" "lemart scratch"
  fi
done

"$PYTHON" "$HERE/summarize_ablations.py" "$OUT_DIR" | tee "$OUT_DIR/results.md"
