# Tally: `make up` brings the whole stack up, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= config/config.yaml
STAMP := $(VENV)/.installed

.PHONY: up down status test test-unit bench bench-cluster bench-full faults-full faults-cluster adversarial-full venv ui-assets browser clean prune price-map price-map-diff

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is missing: install Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "make: cannot create a virtual environment: apt-get install -y python3-venv"; exit 1; }
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' || { echo "make: installing Python packages from PyPI failed (see above)"; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

# The Usage page's charting library, from the npm registry (not committed).
ui-assets:
	@bash stack/vendor_ui.sh

# The default price catalog from the newest litellm release on PyPI: shows what changes, then
# writes shared/pricing/data/model_prices.json and upstream.json (docs/pricer.md). -diff writes nothing.
price-map: venv
	@$(PY) -m shared.pricing.refresh --apply

price-map-diff: venv
	@$(PY) -m shared.pricing.refresh --show 200

# `make up CLUSTER=3`: three Kafka nodes and two pricers, ledgers and proxies (docs/operations.md).
up: venv ui-assets
	@TALLY_CONFIG=$(abspath $(CONFIG)) $(PY) -m stack up --config $(abspath $(CONFIG)) $(if $(CLUSTER),--cluster $(CLUSTER))

down:
	@test -x $(PY) && $(PY) -m stack down || echo "nothing to stop (no virtual environment)"

status: venv
	@$(PY) -m stack status

# Headless Chromium for the Usage page's browser test, from Debian's packages.
browser:
	@test -x /usr/bin/chromium || { (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null || { echo "make: installing chromium failed"; exit 1; }; }

test: venv ui-assets browser
	@$(PY) -m pytest -q --durations=15

test-unit: venv
	@$(PY) -m pytest -q tests/unit

# The fault suite at full length (Kafka down 20 s, six kills each; docs/faults.md). `make test` runs it short.
faults-full: venv
	@TALLY_FAULTS_FULL=1 $(PY) -m pytest -q -s -m faults tests/faults

# The cluster fault suite on its own three Kafka nodes, every step (docs/faults.md; `make test` runs
# its first: a broker SIGKILLed under load); TALLY_FAULTS_FULL=1 for longer calm windows.
faults-cluster: venv
	@TALLY_FAULTS_ALL=1 $(PY) -m pytest -q -s -m cluster_faults tests/faults/test_cluster_faults.py

# The adversarial suite at length: 1,500 new random cases per generated test (docs/adversarial.md). `make test` runs 25, derandomized.
adversarial-full: venv
	@TALLY_ADVERSARIAL_EXAMPLES=1500 TALLY_ADVERSARIAL_RANDOM=1 $(PY) -m pytest -q -m adversarial tests/adversarial

bench: venv ui-assets
	@$(PY) -m bench

# The end-to-end freshness ramp on a single broker and on three Kafka nodes, one run (docs/operations.md).
bench-cluster: venv
	@$(PY) bench/bench_e2e.py --compare-cluster

# Delete the scratch topics tests and benchmarks left on the local broker (stack/prune.py).
prune: venv
	@$(PY) -m stack.prune

clean: down
	rm -rf .run
