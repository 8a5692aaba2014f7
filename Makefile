# The two Quick-start commands: `make run` and `make test`. Both install what is missing first.
VENV   := .venv
PY     := $(VENV)/bin/python
SYS_PY := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
STAMP  := $(VENV)/.deps-installed
ARGS   ?=

.PHONY: setup os run test lint bench doctor demo clean

setup: os $(STAMP)
	@bash scripts/link_bcc.sh $(VENV)

os:
	@bash scripts/setup_os.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(SYS_PY) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: setup
	@$(VENV)/bin/fluxtui --config config.yml $(ARGS)

lint: setup
	@$(PY) -m ruff check .
	@$(VENV)/bin/lint-imports --no-cache

test: lint
	@$(PY) -m pytest -q -ra $(ARGS)

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

doctor: setup
	@$(VENV)/bin/fluxtui doctor --config config.yml

demo: setup
	@$(VENV)/bin/fluxtui demo --config config.yml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
