# The two commands a newcomer needs: `make demo` and `make test`.
# Everything they need (a Python venv with the pinned emulator) is set up here.

PYTHON ?= python3
VENV := .venv
VENV_STAMP := $(VENV)/.installed

.PHONY: demo test venv lint lint-deploy fmt clean bench bench-compare bench-e2e bench-wide bench-small-files
BENCH_STAMP := $(VENV)/.bench-installed
# The release binary the side-by-side benchmarks run (cargo's target dir may be elsewhere).
RELEASE_BIN := $(or $(CARGO_TARGET_DIR),target)/release/lakeworker

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

## The container and the CloudFormation stack, with the linters AWS users rely on (pinned),
## and the template's security properties (deploy/test_template.py).
LINT_VENV := .venv-lint
LINT_STAMP := $(LINT_VENV)/.installed
lint-deploy: $(LINT_STAMP)
	$(LINT_VENV)/bin/hadolint Dockerfile
	$(LINT_VENV)/bin/cfn-lint deploy/lakeworker.yaml
	$(LINT_VENV)/bin/checkov --quiet --compact --skip-download -f deploy/lakeworker.yaml -f Dockerfile
	$(LINT_VENV)/bin/python -m unittest discover --start-directory deploy --pattern 'test_*.py'

$(LINT_STAMP): deploy/requirements.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	touch $@

fmt:
	cargo fmt --all

## Criterion benchmarks of the conversion path (input MB/s, one thread and every core).
bench:
	cargo bench --bench convert

## lakeworker, pyarrow, DuckDB and Polars converting the same inputs of each data shape
## (BENCH_SHAPES, each ~BENCH_MB MB of CSV, and JSON lines for narrow and wide).
BENCH_MB ?= 1000
BENCH_SHAPES ?= narrow,wide,text,numeric
bench-compare: $(BENCH_STAMP)
	cargo build --release --quiet
	$(VENV)/bin/python bench/compare.py --bin $(RELEASE_BIN) --mb $(BENCH_MB) --shapes $(BENCH_SHAPES)

## Peak memory converting rows of several hundred KB (BENCH_WIDE_MB), against the budget.
BENCH_WIDE_MB ?= 400
bench-wide: $(VENV_STAMP)
	cargo build --release --quiet
	$(VENV)/bin/python bench/wide_rows.py --bin $(RELEASE_BIN) --mb $(BENCH_WIDE_MB)

## The worker's own cost per message on in-memory stores (no emulator), then the worker
## draining files dropped into the emulator, for 1, 2 and 4 pollers.
bench-e2e: $(BENCH_STAMP)
	cargo bench --quiet --features bench-fakes --bench messages
	cargo build --release --quiet
	scripts/with-moto $(VENV)/bin/python bench/e2e.py --bin $(RELEASE_BIN)

## 500 small files into a Hive table and into an Iceberg table: drain time, objects, snapshots.
bench-small-files: $(BENCH_STAMP)
	cargo build --release --quiet
	scripts/with-moto $(VENV)/bin/python bench/small_files.py --bin $(RELEASE_BIN)

$(BENCH_STAMP): bench/requirements.txt $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

venv: $(VENV_STAMP)

$(VENV_STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

clean:
	rm -rf $(VENV) $(LINT_VENV) .demo
	cargo clean
