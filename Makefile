# Two commands on a fresh machine: `make demo` and `make test`. Both call `make setup`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nemo_vtp-installed

.PHONY: setup demo test test-unit test-gpu lint bench clean

setup: $(STAMP)

$(STAMP): setup.py scripts/setup_env.sh constraints.txt
	bash scripts/setup_env.sh $(VENV)
	touch $(STAMP)

demo: setup
	$(VENV)/bin/nemo-vtp demo

test: setup
	bash scripts/run_tests.sh $(VENV)

test-unit: setup
	$(PY) -m pytest -q tests/unit

# On a GPU node whose python already has the GPU stack: make test-gpu GPU_PY=python3 (no venv is built)
ifeq ($(GPU_PY),)
test-gpu: setup
	$(PY) -m pytest -q -m gpu tests/gpu
else
test-gpu:
	$(GPU_PY) -m pytest -q -m gpu tests/gpu
endif

lint: setup
	$(PY) -m ruff check nemo_vtp tests bench conversion

clean:
	rm -rf $(VENV) build *.egg-info
