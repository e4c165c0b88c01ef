# npuforge: every target sets up .venv/ from pyproject.toml by itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# pytest-xdist workers; each cocotb configuration is still built once (sim/runner.py locks it).
JOBS   ?= auto
export AMARANTH_USE_YOSYS := system

.PHONY: venv test test-fast demo clean help

help:
	@echo "make demo        run the main job (see README)"
	@echo "make test        golden, Amaranth-simulator and cocotb tests (Verilator, Icarus if installed)"
	@echo "make test-fast   the tests without cocotb simulations"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q

test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m "not cocotb"

clean:
	rm -rf build .pytest_cache
