# The two Quick-start commands: `make run` and `make test`. Both install what is missing first:
# `make run` only what the product needs, `make test` also the test-only tools and packages.
VENV   := .venv
PY     := $(VENV)/bin/python
SYS_PY := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
STAMP  := $(VENV)/.deps-installed
DEV_STAMP := $(VENV)/.dev-deps-installed
ARGS   ?=
# make install-service: where the unit and the service's configuration go
UNIT_DIR   ?= /etc/systemd/system
CONFIG_DIR ?= /etc/fluxtui

.PHONY: setup test-setup os test-os run test lint bench doctor demo install-service clean

setup: os $(STAMP)
	@bash scripts/link_bcc.sh $(VENV)
	@# Byte-compiled as a regular pip install would: an editable install under
	@# PYTHONDONTWRITEBYTECODE compiles every module at every start (0.2-0.5 s of the first frame).
	@$(PY) -m compileall -q fluxtui > /dev/null

os:
	@bash scripts/setup_os.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(SYS_PY) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e .
	@touch $(STAMP)

# Tests and benchmarks: the product's set-up, then test-only OS tools and Python packages.
test-setup: setup test-os $(DEV_STAMP)

test-os:
	@bash scripts/setup_test_os.sh

$(DEV_STAMP): $(STAMP) pyproject.toml
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(DEV_STAMP)

run: setup
	@$(VENV)/bin/fluxtui --config config.yml $(ARGS)

lint: test-setup
	@$(PY) -m ruff check .
	@$(VENV)/bin/lint-imports --no-cache
	@$(PY) -m mypy

test: lint
	@$(PY) -m pytest -q -ra $(ARGS)

bench: test-setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

doctor: setup
	@$(VENV)/bin/fluxtui doctor --config config.yml

demo: setup
	@$(VENV)/bin/fluxtui demo --config config.yml

# The headless mode as a systemd service (packaging/fluxtui.service); see README "Running as a
# service". Installs the unit with this checkout's fluxtui and a configuration if none exists.
install-service: setup
	@bash scripts/install_service.sh "$(abspath $(VENV))/bin/fluxtui" "$(UNIT_DIR)" "$(CONFIG_DIR)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
