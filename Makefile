# Set-up and everyday commands. `make quickstart` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup data quickstart test clean-runs

# The virtual environment is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# Fashion-MNIST from Debian's package where apt is usable; otherwise the loader downloads it.
data:
	bash scripts/get-fashion-mnist.sh

quickstart: setup data
	$(BIN)/automl-bin run recipes/quickstart.toml

test: setup
	$(BIN)/pytest

clean-runs:
	rm -rf runs mlruns mlflow.db
