# Set-up and everyday commands. `make demo` and `make test` work on a fresh machine: each one
# creates .venv and installs unetkit into it first (once; again when pyproject.toml changes).
VENV ?= .venv
BIN := $(VENV)/bin
# torch and torchvision first, pinned, so that nothing else pulls in another build of them.
TORCH := torch==2.14.1 torchvision==0.29.1

# The suite on every core (pytest-xdist), at most 8 workers: each holds torch and a model or two
# in memory. worksteal: a worker that runs out of tests takes some from another's queue, so the
# run does not end on one core while the other waits. `make test XDIST=` runs it in one process.
XDIST ?= -n auto --maxprocesses 8 --dist worksteal

.PHONY: install browser demo docs lint test test-fast

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check $(TORCH)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test,onnx,serve,serve-test,video,tensorboard,mlflow,wandb,docs]'
	touch $@

# The browser test of `unetkit serve` drives Debian's Chromium (browsers are not downloadable
# here). Installed only when missing, and only as root; otherwise that test says what to do.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: install
	$(BIN)/unetkit demo

# ruff (configured in pyproject.toml): style, import order and likely bugs; lint-imports: the
# package's layers (docs/architecture.md), so an import circle or an upward import fails CI.
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports

# The documentation site (docs/, mkdocs.yml) into site/: the command line and configuration
# references are generated from the code first; strict mode fails on a broken link, a missing
# page or an API name that does not exist. Offline: nothing is fetched.
docs: install
	$(BIN)/python docs/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet

test: install browser
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: install browser
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"
