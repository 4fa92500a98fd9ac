# Two entry points for a fresh clone: `make demo` runs the quick benchmark and writes its report,
# `make test` runs the tests.
# Both create .venv on first use (CPU torch when there is no GPU; see scripts/install.sh).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.explora-installed

.PHONY: install demo train-demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/explora bench --suite quick --store bench/quick/store.db --workers 2

train-demo: $(STAMP)
	$(BIN)/explora train --env MiniGrid-DoorKey-8x8-v0 --bonus rnd --frames 1000000 --seed 1 --out runs/quickstart --overwrite

# The report's test renders it in headless Chromium; install it when missing (root + apt).
test: $(STAMP)
	bash scripts/install_chromium.sh || echo "no chromium: the report's browser test will be skipped"
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs bench
