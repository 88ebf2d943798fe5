# One entry point: `make demo` and `make test` build .venv from nothing, install the pinned set, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch's CPU wheel: pip finds it on this machine's local wheel store; elsewhere point pip at PyTorch's CPU index,
# e.g. make TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test lint clean install

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt overrides.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0 $(TORCH_PIP_ARGS)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt --override overrides.txt -e '.[train,dev]'
	touch $@

demo: install
	$(BIN)/factory demo --out demo-build

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# `make ui`: a Prefect server with its UI on http://127.0.0.1:$(UI_PORT) (nothing else can reach it), serving the
# build-corpus, plan-mixture and train deployments for UI_CONFIG into UI_OUT (default: the demo corpus, written
# into UI_OUT/input the first time). Optional: UI_SCHEDULE='0 3 * * *' schedules build-corpus. Ctrl-C stops it all.
UI_PORT ?= 4200
UI_OUT ?= demo-build
UI_CONFIG ?=
UI_SCHEDULE ?=
.PHONY: ui
ui: install
	$(BIN)/factory serve $(UI_CONFIG) --out $(UI_OUT) --server --port $(UI_PORT) \
		$(if $(UI_SCHEDULE),--schedule '$(UI_SCHEDULE)')

clean:
	rm -rf $(VENV) demo-build .pytest_cache
