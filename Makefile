# Two commands do all the set-up on a fresh machine:
#   make demo   creates .venv, installs the plugin with its demo extras, and runs the main job
#   make test   creates .venv, installs the plugin with its test extras, and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Test processes (pytest-xdist): one per core of the 2-core CI machine; `make test PYTEST_WORKERS=0` runs in-process.
PYTEST_WORKERS ?= 2
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml anomalib_gaussft/_registration.py anomalib_gaussft/_register.pth | cksum | cut -d' ' -f1)

.PHONY: demo test install lint clean

$(STAMP):
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m anomalib_gaussft.cli.demo $(DEMO_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check anomalib_gaussft tests tools && $(VENV)/bin/ruff format --check anomalib_gaussft tests tools

clean:
	rm -rf $(VENV) results datasets demo_output .pytest_cache
