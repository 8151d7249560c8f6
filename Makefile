# Set-up and everyday commands. `make demo` and `make test` create .venv when it is missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg
export OMP_WAIT_POLICY := passive
export NO_MKDOCS_2_WARNING := 1

.PHONY: install demo docs test test-fast lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m multimae_der.app.demo --out demo-output

# The documentation site (mkdocs-material + mkdocstrings), offline: open site/index.html.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict -q -d site

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The site is built strictly (any warning fails) before the tests; tests/project/test_docs.py reads that build.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	@site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && \
	  echo "$(BIN)/mkdocs build --strict -q -d $$site" && $(BIN)/mkdocs build --strict -q -d "$$site" && \
	  DOCS_SITE_DIR="$$site" $(BIN)/python -m pytest -x -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -x -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --out benchmarks/results

clean:
	rm -rf demo-output lightning_logs .pytest_cache site
