# `make test` and `make demo` each build what they need on a fresh machine first: a local virtual
# environment with the CPU build of torch installed BEFORE the package, so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= outputs/demo
DEMO_THREADS ?= 1

.PHONY: venv test demo clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev,demo]"
	touch $@

venv: $(VENV)/.installed

test: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q tests

# First the package's main job: the packaged model harmonizes the real composites shipped with the package and writes
# a before/after gallery ($(DEMO_DIR)/gallery/index.html and page_01.png; seconds). Then it pre-trains the tiny SwinIH preset with LEMaRT on the photos embedded in the [dev] install (scikit-image's), offline,
# at 64x64: about 4 minutes on 2 CPU cores. --time_budget_minutes stops it cleanly (and saves) on a slower or busy
# machine. Then checks that the model loads with SwinIHForHarmonization.from_pretrained($(DEMO_DIR)).
# One intra-op thread (DEMO_THREADS) leaves the other core to the data worker; on a busy 2-core machine it is also
# twice as fast as two threads. DEMO_THREADS=2 on an idle one.
demo: venv
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$(DEMO_THREADS) $(PY) examples/compare_on_composites.py $(DEMO_DIR)/gallery --reinhard
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/accelerate launch --num_processes 1 --cpu --num_machines 1 \
		--mixed_precision no --dynamo_backend no examples/run_pretrain.py \
		--model_config swinih-tiny --output_dir $(DEMO_DIR) --resolution 64 --train_batch_size 8 \
		--max_train_steps 160 --lr_warmup_steps 16 --checkpointing_steps 50 --checkpoints_total_limit 1 \
		--validation_steps 50 --num_validation_composites 8 --dataloader_num_workers 1 --time_budget_minutes 3.5
	HF_HUB_OFFLINE=1 $(PY) -c "from lemart_hf import SwinIHForHarmonization as M; \
		m = M.from_pretrained('$(DEMO_DIR)'); \
		print(f'demo: {sum(p.numel() for p in m.parameters()) / 1e6:.1f} M-parameter model in $(DEMO_DIR) (see README.md, sample_grid.png)')"

clean:
	rm -rf $(VENV) outputs
