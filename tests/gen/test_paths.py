"""gen.ppa.paths: the estimated path ranking of an ECP5 netlist, on hand-made netlists whose delays follow from the
documented cell and net delays, and through `npuforge synth --place-only --paths` on a real MAC."""

from __future__ import annotations

import json
import math

import pytest

from npuforge.cli.main import main
from npuforge.gen.config.array import ArrayConfig
from npuforge.gen.ppa.paths import CELL_DELAY_NS as D, NET_BASE_NS, NET_FANOUT_NS, rank_paths
from npuforge.gen.ppa.synth import PLACED_NETLIST, pnr_seed, synthesize


def _ff(d, q, name):
    return name, {"type": "TRELLIS_FF", "port_directions": {"CLK": "input", "DI": "input", "Q": "output"},
                  "connections": {"CLK": [1], "DI": [d], "Q": [q]}}


def _lut(ins, z, name):
    return name, {"type": "LUT4", "port_directions": {"A": "input", "B": "input", "C": "input", "D": "input",
                                                      "Z": "output"},
                  "connections": {"A": [ins[0]], "B": [ins[1] if len(ins) > 1 else "0"], "C": ["0"], "D": ["0"],
                                  "Z": [z]}}


def _ccu2c(a0, cin, s0, cout, name):
    ports = {p: "input" for p in ("A0", "B0", "C0", "D0", "A1", "B1", "C1", "D1", "CIN")}
    ports.update(S0="output", S1="output", COUT="output")
    conn = {p: ["0"] for p in ports}
    conn.update(A0=[a0], CIN=[cin], S0=[s0], S1=["x"], COUT=[cout])
    return name, {"type": "CCU2C", "port_directions": ports, "connections": conn}


def _netlist(cells, names):
    return {"modules": {"top": {"attributes": {"top": "1"}, "cells": dict(cells),
                                "netnames": {n: {"bits": [b]} for n, b in names.items()}}}}


def _net(fanout=1):
    return NET_BASE_NS + NET_FANOUT_NS * math.log2(fanout)


def test_two_luts_between_registers():
    """q1 -> LUT -> LUT -> d2: clock-to-Q, three nets, two LUTs and the setup; a one-LUT path beside it ranks
    second."""
    cells = [_ff(9, 10, "ra.ff"), _lut([10], 11, "x.l1"), _lut([11], 12, "x.l2"), _ff(12, 13, "rb.ff"),
             _ff(20, 21, "rc.ff"), _lut([21], 22, "y.l"), _ff(22, 23, "rd.ff")]
    names = {"ra.q": 10, "x.n1": 11, "x.n2": 12, "rb.q": 13, "rc.q": 21, "y.n": 22, "rd.q": 23, "in_a": 9, "in_c": 20}
    paths = rank_paths(_netlist(cells, names))
    two = D["ff_cq"] + 3 * _net() + 2 * D["lut"] + D["setup"]
    one = D["ff_cq"] + 2 * _net() + D["lut"] + D["setup"]
    assert [p["delay_ns"] for p in paths[:2]] == [pytest.approx(two, abs=1e-3), pytest.approx(one, abs=1e-3)]
    assert paths[0]["levels"] == 2 and paths[0]["start"]["net"] == "ra.q" and paths[0]["end"]["net"] == "rb.q"
    assert [n for n, _ in paths[0]["through"]] == ["ra.q", "x.n1", "x.n2"]


def test_carry_chain_costs_no_routing_and_fanout_costs_some():
    """COUT -> CIN is a dedicated wire (no net delay); a net with four sinks costs log2(4) fanout steps."""
    cells = [_ff(9, 10, "r0.ff"), _ccu2c(10, "0", 30, 11, "c.c0"), _ccu2c("0", 11, 12, 31, "c.c1"),
             _ff(12, 13, "r1.ff"), _ff(10, 40, "f1.ff"), _ff(10, 41, "f2.ff")]
    names = {"r0.q": 10, "c.co": 11, "c.s": 12, "r1.q": 13, "in": 9}
    paths = rank_paths(_netlist(cells, names))
    # r0.q drives c0.A0 and two flip-flops: fanout 3.
    expect = D["ff_cq"] + _net(3) + D["carry_in"] + 0.0 + D["carry_sum"] + _net() + D["setup"]
    assert paths[0]["delay_ns"] == pytest.approx(expect, abs=1e-3) and paths[0]["end"]["net"] == "r1.q"


def test_placed_net_delay_follows_tile_distance():
    """With a placement, a net costs nextpnr-ecp5's estimate from the tiles: 0.12 ns x (3 + (dx - 5) + 2 * 5) for
    10 tiles apart in x, 0.12 x 3 in the same tile."""
    cells = [_ff(9, 10, "a.ff"), _lut([10], 11, "b.l"), _ff(11, 12, "c.ff")]
    names = {"a.q": 10, "b.n": 11, "c.q": 12, "in": 9}
    placed = {"modules": {"top": {"attributes": {"top": "1"}, "cells": {
        "a.ff": {"attributes": {"NEXTPNR_BEL": "X1/Y4/SLICEA.FF0"}},
        "b.l": {"attributes": {"NEXTPNR_BEL": "X11/Y4/SLICEB.K0"}},
        "c.ff": {"attributes": {"NEXTPNR_BEL": "X11/Y4/SLICEC.FF1"}}}}}}
    paths = rank_paths(_netlist(cells, names), placed)
    expect = D["ff_cq"] + 0.12 * (3 + 5 + 10) + D["lut"] + 0.12 * 3 + D["setup"]
    assert paths[0]["delay_ns"] == pytest.approx(expect, abs=1e-3)


def test_block_ram_read_starts_a_path_and_a_hierarchical_netlist_is_refused():
    ram = ("m.ram", {"type": "DP16KD", "parameters": {"REGMODE_B": "NOREG"},
                     "port_directions": {"CLKB": "input", "ADB0": "input", "DOB0": "output"},
                     "connections": {"CLKB": [1], "ADB0": [9], "DOB0": [10]}})
    cells = [ram, _lut([10], 11, "u.l"), _ff(11, 12, "u.ff")]
    names = {"m.dob": 10, "u.n": 11, "u.q": 12, "addr": 9}
    paths = rank_paths(_netlist(cells, names))
    assert paths[0]["start"]["cell"] == "DP16KD"
    assert paths[0]["delay_ns"] == pytest.approx(D["bram_cq"] + 2 * _net() + D["lut"] + D["setup"], abs=1e-3)
    hier = _netlist([("u0", {"type": "sub", "port_directions": {}, "connections": {}})], {})
    hier["modules"]["sub"] = {"cells": {}, "netnames": {}}
    with pytest.raises(ValueError, match="flat netlist"):
        rank_paths(hier)


def test_place_only_on_a_mac(capsys, out_dir):
    """nextpnr placement without routing on a real int8 MAC: the post-placement estimate and the ranked paths of
    the placed netlist, from synthesize and from `npuforge synth --netlist-from --place-only --paths`."""
    res = synthesize(ArrayConfig(rows=1, cols=1, precisions=("int8",)), unit="mac", target="ecp5", pnr=True,
                     cmos=False, out_dir=out_dir, place_only=True)
    assert res["fmax_mhz"] is None and not res["pnr"]["routed"] and res["pnr"]["finished"]
    assert 10 < res["placement_estimate_mhz"] < 1000
    delays = [p["delay_ns"] for p in res["paths"]]
    assert delays and delays == sorted(delays, reverse=True)
    assert (out_dir / PLACED_NETLIST).is_file()
    again = pnr_seed(out_dir, 2, out_dir=out_dir / "seed2", place_only=True)
    assert again["pnr"]["seed"] == 2 and 10 < again["placement_estimate_mhz"] < 1000
    code = main(["synth", "--netlist-from", str(out_dir), "--place-only", "--paths", "2", "--json",
                 "-o", str(out_dir / "cli")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["paths"]) == 2 and out["placement_estimate_mhz"] == res["placement_estimate_mhz"]


@pytest.mark.parametrize("argv, word", [(["--paths", "0"], "--paths"), (["--place-only"], "--place-only"),
                                        (["--paths", "3", "--target", "generic"], "--paths")])
def test_bad_paths_flags_are_one_line(capsys, tmp_path, argv, word):
    code = main(["synth", "--rows", "2", "--cols", "2", *argv, "-o", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and word in err[0]
