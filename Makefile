# Set-up and everyday commands. `make quickstart` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup browser data quickstart test clean-runs

# The virtual environment is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,ui-test]'
	touch $@

setup: $(VENV)/.installed

# Chromium for the browser test (tests/test_ui_browser.py; Playwright, from the ui-test extra,
# drives it): Debian's package where apt is usable. Never `playwright install` (it downloads).
# Without a browser the test is skipped, unless AUTOML_BIN_REQUIRE_BROWSER=1 (CI) fails it.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: /usr/bin/chromium"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update && apt-get install -y --no-install-recommends chromium; \
	else \
	  echo "make browser: needs root and apt-get; install Chromium yourself (e.g." \
	       "sudo apt-get install chromium) or set AUTOML_BIN_CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; \
	fi

# Fashion-MNIST from Debian's package where apt is usable; otherwise the loader downloads it.
data:
	bash scripts/get-fashion-mnist.sh

quickstart: setup data
	$(BIN)/automl-bin run recipes/quickstart.toml

test: setup
	$(BIN)/pytest

clean-runs:
	rm -rf runs mlruns mlflow.db
