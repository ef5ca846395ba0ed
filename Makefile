# imagesim: `make demo` runs the whole thing end to end; `make test` runs the test suite.
# Both start from nothing: they create .venv, install the project and generate the stubs.

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
WEIGHTS ?= imagenet
DATA    ?= .data
EMBEDDER_PORT ?= 50051
INDEX_PORT    ?= 50061
SOAK_SECONDS  ?= 180
WEB_PORT      ?= 8080
STAMP   := $(VENV)/.installed
NODE_STAMP := examples/node/node_modules/.installed
AXE_STAMP  := tests/web/axe/node_modules/.installed

.PHONY: install protos serve demo web docs-images browser test test-fast lint typecheck soak bench clean

install: $(STAMP)

# setuptools' meta-path finder (package-dir maps client/ to imagesim.client, ...) prints a
# notice on every editable install that a developer cannot act on: that one is silenced.
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet -e ".[dev]"
	touch $@

# Generated stubs are never committed: this (and the package build) makes them.
protos: $(STAMP)
	$(BIN)/python tools/gen_protos.py

$(NODE_STAMP): examples/node/package.json examples/node/package-lock.json
	npm ci --prefix examples/node --no-audit --no-fund --silent
	touch $@

# axe-core, which the browser tests inject into every page (accessibility checks).
$(AXE_STAMP): tests/web/axe/package.json tests/web/axe/package-lock.json
	npm ci --prefix tests/web/axe --no-audit --no-fund --silent
	touch $@

# Both servers in the foreground (one shard under $(DATA)); Ctrl-C stops them gracefully.
serve: protos
	@trap 'kill -TERM $$index 2>/dev/null; wait $$index' EXIT INT TERM; \
	$(BIN)/imagesim-index --port $(INDEX_PORT) --data $(DATA)/shard-0 --dims 2048 & index=$$!; \
	$(BIN)/imagesim-embedder --port $(EMBEDDER_PORT) --weights $(WEIGHTS)

# Installs, starts both servers, indexes real sample photos, queries one, prints the result and
# writes a contact sheet (.demo/result.png), lists the near-duplicate groups.
# On a machine that cannot download the ImageNet weights: make demo WEIGHTS=none
demo: protos
	$(BIN)/python -m examples.demo --weights $(WEIGHTS)

# The demo, then the web page on http://127.0.0.1:$(WEB_PORT)/ until Ctrl-C.
web: protos
	$(BIN)/python -m examples.demo --weights $(WEIGHTS) --web --port $(WEB_PORT)

# The pictures in docs/ (README and docs/*.md): a contact sheet and the web page, made by the code itself.
docs-images: protos browser
	$(BIN)/python -m examples.docs_images

# Debian's Chromium and ChromeDriver for the browser tests, installed once (root, or sudo).
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing chromium and chromium-driver (browser tests)"; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium chromium-driver; \
	fi

# Everything CI runs: lint, type check, the whole suite (browser tests included).
test: lint typecheck $(NODE_STAMP) $(AXE_STAMP) browser
	$(BIN)/python -m pytest -q

# The quick loop: skips the slow tests (recall at 25k, the soak, the benchmark smoke test).
test-fast: protos $(NODE_STAMP) $(AXE_STAMP) browser
	$(BIN)/python -m pytest -q -m "not slow"

lint: protos
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: protos
	$(BIN)/python tools/typecheck.py

# The soak test with faults at full length (the suite runs a short one).
soak: protos
	$(BIN)/python -m tests.support.soak --seconds $(SOAK_SECONDS) --json .soak/report.json

bench: protos
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) imagesim/v1 examples/node/node_modules tests/web/axe/node_modules .demo .bench .soak .typecheck build *.egg-info
