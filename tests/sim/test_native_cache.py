"""The native harness's build cache (sim/harness/native.py): the key follows the Verilog and every option that
changes the binary, and a second request for the same build reuses it without building."""

from __future__ import annotations

from dataclasses import replace

import pytest

from npuforge.sim.harness import native
from npuforge.sim.harness.native import DEFAULT_OPTIONS, build_key
from tests.conftest import require_simulator

VERILOG = "module npu_x(input wire clk, input wire rst, output wire irq);\n  assign irq = rst;\nendmodule\n"


@pytest.fixture
def verilator():
    require_simulator("verilator")  # the key holds the Verilator version


def test_key_follows_verilog_and_options(verilator):
    base = build_key(VERILOG, "npu_x", 64, DEFAULT_OPTIONS)
    assert build_key(VERILOG, "npu_x", 64, DEFAULT_OPTIONS) == base
    assert build_key(VERILOG.replace("irq = rst", "irq = ~rst"), "npu_x", 64, DEFAULT_OPTIONS) != base
    assert build_key(VERILOG, "npu_x", 128, DEFAULT_OPTIONS) != base
    changed = [replace(DEFAULT_OPTIONS, opt_fast="-O1"), replace(DEFAULT_OPTIONS, x_fast=not DEFAULT_OPTIONS.x_fast),
               replace(DEFAULT_OPTIONS, share_modules=not DEFAULT_OPTIONS.share_modules),
               replace(DEFAULT_OPTIONS, registered_inputs=not DEFAULT_OPTIONS.registered_inputs),
               replace(DEFAULT_OPTIONS, verilator_flags=("--inline-mult", "-1")),
               replace(DEFAULT_OPTIONS, yosys="" if DEFAULT_OPTIONS.yosys else native.YOSYS_PREPASS),
               replace(DEFAULT_OPTIONS, gate_units=() if DEFAULT_OPTIONS.gate_units else ("ctrl.vec.unit",)),
               replace(DEFAULT_OPTIONS, gate_units=("ctrl.vec.unit",), gate_registered=not DEFAULT_OPTIONS.gate_registered),
               replace(DEFAULT_OPTIONS, replicate_bits=not DEFAULT_OPTIONS.replicate_bits),
               replace(DEFAULT_OPTIONS, vec_operators="flat"), replace(DEFAULT_OPTIONS, vec_operators="gated"),
               replace(DEFAULT_OPTIONS, pgo=not DEFAULT_OPTIONS.pgo)]
    keys = {build_key(VERILOG, "npu_x", 64, o) for o in changed}
    assert base not in keys and len(keys) == len(changed)
    # Parallel compile jobs do not change the binary: same key, same cached build.
    assert build_key(VERILOG, "npu_x", 64, replace(DEFAULT_OPTIONS, jobs=1)) == base


def test_cache_hit_does_not_rebuild(verilator, tmp_path, monkeypatch):
    builds = []

    def fake_build(verilog, top, axi_bits, options, build_dir, rtlil=None, train=None):
        builds.append(build_dir)
        (build_dir / "npu_sim").write_text("#!/bin/sh\n")

    monkeypatch.setattr(native, "BUILD", tmp_path)
    monkeypatch.setattr(native, "_build", fake_build)
    path = tmp_path / "npu_x.v"
    path.write_text(VERILOG)
    first = native.native_binary(path, "npu_x", 64)
    again = native.native_binary(path, "npu_x", 64)
    assert len(builds) == 1 and (first.cached, again.cached) == (False, True)
    assert again.binary == first.binary and again.binary.parent.parent == tmp_path / "native"
    path.write_text(VERILOG.replace("assign irq = rst", "assign irq = ~rst"))
    changed = native.native_binary(path, "npu_x", 64)
    assert len(builds) == 2 and not changed.cached and changed.binary != first.binary


def test_pgo_build_needs_a_training_workload(verilator, tmp_path, monkeypatch):
    """A profile-guided build without a training workload is refused before anything is built."""
    monkeypatch.setattr(native, "BUILD", tmp_path)
    path = tmp_path / "npu_x.v"
    path.write_text(VERILOG)
    with pytest.raises(ValueError, match="needs train="):
        native.native_binary(path, "npu_x", 64, options=replace(DEFAULT_OPTIONS, pgo=True))
    assert not list((tmp_path / "native").glob("*/npu_sim"))


def test_opt_fast_escapes_extra_flags():
    """The profile flags join OPT_FAST in MAKEFLAGS as one value (spaces escaped), the other settings unchanged."""
    flags = native._opt_fast("CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O3 OPT_SLOW=-O0", "-O3", "-fprofile-use=/p", "-x")
    assert flags == "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O3\\ -fprofile-use=/p\\ -x OPT_SLOW=-O0"


def test_vec_operator_modules_and_bad_mode():
    """The per-operator pre-pass finds the modules one level below the vector unit (not deeper ones, not the unit);
    an unknown mode is refused when the options are made."""
    text = "\n".join(f"module \\npu_x.{m} (clk);\nendmodule" for m in
                     ("ctrl.vec.unit", "ctrl.vec.unit.softmax", "ctrl.vec.unit.softmax.exp", "ctrl.vec.unit.gate",
                      "ctrl.vec.rows"))
    assert native.vec_operator_modules(text, "npu_x") == ["ctrl.vec.unit.gate", "ctrl.vec.unit.softmax"]
    assert native.vec_operator_modules(text, "npu_y") == []
    with pytest.raises(ValueError, match="vec_operators must be one of"):
        replace(DEFAULT_OPTIONS, vec_operators="all")


def test_present_units_finds_only_the_npus_own_units():
    """The default gates the vector unit; an NPU without vector operators has none and is built ungated."""
    with_unit = "module npu_x(clk);\nendmodule\nmodule \\npu_x.ctrl.vec.unit (rst, clk);\nendmodule\n"
    without = "module npu_x(clk);\nendmodule\nmodule \\npu_x.ctrl.vec.rows (rst, clk);\nendmodule\n"
    assert native.present_units(with_unit, "npu_x", DEFAULT_OPTIONS.gate_units) == ["ctrl.vec.unit"]
    assert native.present_units(without, "npu_x", ("ctrl.vec.unit",)) == []
    assert native.present_units(with_unit, "npu_y", ("ctrl.vec.unit",)) == []
