# `make test` and `make demo` each build what they need on a fresh machine first: a local virtual
# environment with the CPU build of torch installed BEFORE the package, so nothing pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
DEMO_DIR ?= outputs/demo

.PHONY: venv test demo clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q tests

# Pre-trains the tiny SwinIH preset with LEMaRT on the photos embedded in the [dev] install (a few
# minutes on a CPU) and writes a model that loads with SwinIHForHarmonization.from_pretrained($(DEMO_DIR)).
demo: venv
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/accelerate launch --num_processes 1 --cpu \
		examples/run_pretrain.py --model_config swinih-tiny --output_dir $(DEMO_DIR) \
		--resolution 128 --train_batch_size 8 --max_train_steps 300 --checkpointing_steps 100

clean:
	rm -rf $(VENV) outputs
