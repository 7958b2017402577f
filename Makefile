# The two commands a newcomer needs: `make demo` and `make test`.
# Everything they need (a Python venv with the pinned emulator) is set up here.

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed

.PHONY: demo test venv lint fmt clean

## Run the worker against a local emulator on the files in examples/ and show the result.
demo: $(VENV_STAMP)
	scripts/demo

## Every test, unit and integration (the integration tests get their own emulator).
test: $(VENV_STAMP)
	scripts/with-moto cargo test

## Formatting and lints, as CI runs them.
lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt --all

venv: $(VENV_STAMP)

$(VENV_STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

clean:
	rm -rf $(VENV) .demo
	cargo clean
