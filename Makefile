# Two entry points for a fresh machine (Python 3.11 and git): `make demo` and `make test`.
# Both bootstrap .venv with uv (installed with pip if missing); the second run only
# reinstalls when pyproject.toml changed.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed
UV     := $(PYTHON) -m uv
PYTEST_ARGS ?=
# Two workers (the CI machine has 2 cores; most tests wait on subprocesses); the live
# deployments' tests each stay on one worker (xdist groups, see tests/live/conftest.py).
XDIST ?= -n 2 --dist loadgroup

.PHONY: demo test lint format env clean

env: $(STAMP)

$(STAMP): pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	@test -x $(VENV)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip install --quiet --python $(VENV)/bin/python -e '.[all,dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/wisefuse demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV)
