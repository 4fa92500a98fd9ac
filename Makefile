# Two entry points for a fresh clone: `make demo` trains, `make test` runs the tests.
# Both create .venv on first use (CPU torch when there is no GPU; see scripts/install.sh).
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.explora-installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/explora train --env MiniGrid-DoorKey-8x8-v0 --bonus rnd --frames 1000000 --seed 1 --out runs/quickstart --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) runs
