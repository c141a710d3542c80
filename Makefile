# One entry point. `make demo` and `make test` set everything up on a fresh machine.
# `make demo` installs layerkit alone (what the demo runs); `make test` adds the test extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TEST_STAMP := $(VENV)/.installed-test-stamp
export KERAS_BACKEND ?= jax

.PHONY: demo test setup clean

setup: $(TEST_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"
	@touch $(TEST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/layerkit train

# pytest exits 5 when it collected no test: that is a failure here.
test: $(TEST_STAMP)
	@$(PY) -m pytest -q -n 2 --dist worksteal $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
