# The two commands: `make run` (embedded default: SQLite, local lake, local key, server + worker) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Every install comes from uv.lock (exact versions and hashes), through a pinned uv kept in its own venv.
# Upgrading is deliberate: `make lock-upgrade` re-resolves, then run `make test` and commit uv.lock.
UV_VERSION := 0.13.9
UV         := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Installed packages get their .pyc at install time: without them (PYTHONDONTWRITEBYTECODE, read-only venvs) every
# `vai` command would compile SQLAlchemy, pydantic and typer from source again, about a second per start.
export UV_COMPILE_BYTECODE := 1
SYNC := $(UV) sync --locked --python $(PYTHON)

.PHONY: run demo-etl test lint typecheck pytest bench clean lock lock-upgrade

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install -q uv==$(UV_VERSION)

# Re-sync only when the project or the lock changes. `--inexact` keeps the dev tools if a dev sync ran before.
$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(SYNC) --inexact
	touch $@

$(VENV)/.installed-dev: pyproject.toml uv.lock | $(UV)
	$(SYNC) --extra dev
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml uv.lock | $(UV)
	$(SYNC) --extra dev --extra bench
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed

# After changing dependencies in pyproject.toml: record them in uv.lock without moving the others.
lock: | $(UV)
	$(UV) lock --python $(PYTHON)

# Move every dependency to the newest release pyproject.toml allows.
lock-upgrade: | $(UV)
	$(UV) lock --upgrade --python $(PYTHON)

run: $(VENV)/.installed
	$(BIN)/vai migrate
	$(BIN)/vai serve --demo

# With `make run` serving in another shell: run the demo organization's ETL and watch its steps live.
demo-etl: $(VENV)/.installed
	$(BIN)/vai automation run demo-shop-etl --follow --org "$$($(BIN)/vai org list --json | $(BIN)/python -c \
	  'import json, sys; print(next(o["id"] for o in json.load(sys.stdin) if o["name"] == "Demo organization"))')"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# In parallel, a process per core (pytest-xdist): every test owns its databases, files and ports.
pytest: $(VENV)/.installed-dev
	$(BIN)/pytest -n auto

test: lint typecheck pytest

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools .mypy_cache .pytest_cache .ruff_cache .hypothesis
