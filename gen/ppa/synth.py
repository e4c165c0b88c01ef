"""PPA flow: Yosys (yowasp) area on ECP5 / iCE40 / generic CMOS, nextpnr-ecp5 out-of-context fmax.

Result contract (:func:`synthesize`): a JSON-able dict with at least ``luts, ffs, dsps, brams, transistors,
fmax_mhz`` (``fmax_mhz`` is None without place and route; a figure that does not apply to the target is None),
plus the raw cell counts, the device and the critical path summary from the nextpnr report.

Definitions
-----------
* ECP5 ``luts`` = LUT4 cells + 2 x CCU2C (each carry cell occupies two LUT4 sites of a slice); the raw
  ``lut4`` and ``ccu2c`` counts are reported too. ``ffs`` = TRELLIS_FF, ``dsps`` = MULT18X18D,
  ``brams`` = DP16KD, ``lutram`` = TRELLIS_DPR16X4.
* iCE40 ``luts`` = SB_LUT4 (SB_CARRY is separate, it shares the LUT's logic cell), ``dsps`` = SB_MAC16,
  ``brams`` = SB_RAM40_4K; ``fits`` checks the UP5K (5280 LUTs, 8 DSPs, 30 BRAMs).
* ``transistors``: generic ``synth`` then ``stat -tech cmos`` (Yosys' CMOS estimate of the gate netlist:
  technology-neutral area, the same figure for every target).
* Multipliers on ECP5 (``dsp=True``): the design is elaborated for the target (``rtl.dsp.TechTarget("ecp5")``), so
  every PE multiplier is an instantiated MULT18X18D with its input and output registers inside the block
  (``mult18`` in the result counts the blocks and how many have them); Yosys' own DSP inference (which leaves the
  block's registers unused) only handles multiplies outside the mapping layer. The technology-neutral estimate
  and iCE40 use the generic elaboration.
* fmax: nextpnr-ecp5 ``--85k --speed 6 --out-of-context`` on a wrapper that registers every boundary signal,
  so the figure is the unit's internal register-to-register fmax, not limited by I/O. A unit that does not fit
  the LFE5U-85F (e.g. more than 156 MULT18X18D) is not placed: ``fmax_mhz`` stays None and ``pnr_skipped``
  says why (``dsp=False`` maps multipliers to LUTs instead).

Units are looked up by convention so other engineers plug theirs in without editing this module: unit ``U``
is available when ``gen.build.units`` defines ``build_U(cfg)`` or a module ``gen.build_U`` defines ``build(cfg)``
(``cfg`` is an :class:`~gen.config.array.ArrayConfig`, the builder returns an Amaranth component);
:func:`register_unit` adds one explicitly.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from amaranth.hdl import Module
from amaranth.lib import wiring

from npuforge.gen.config.array import ArrayConfig
from amaranth.back import rtlil
from npuforge.rtl.dsp import TechTarget
from npuforge.gen.build.toolchain import ToolError, yosys_command

__all__ = ["TARGETS", "KNOWN_UNITS", "register_unit", "available_units", "unit_builder", "RegisteredBoundary",
           "nextpnr_command", "synthesize", "ECP5_DEVICE", "ICE40_DEVICE", "NPU_UNITS", "unit_of_module",
           "over_device", "pnr_seed", "pnr_figures", "ROUTERS",
           "auto_router", "ecp5_dsp_blocks"]

TARGETS = ("ecp5", "ice40", "generic")
#: Units offered when their builder exists (see module docstring).
KNOWN_UNITS = ("mac", "array", "vector", "npu")
ECP5_DEVICE = {"name": "LFE5U-85F", "nextpnr": ["--85k", "--speed", "6", "--package", "CABGA381"],
               "luts": 83640, "ffs": 83640, "dsps": 156, "brams": 208}
ICE40_DEVICE = {"name": "iCE40UP5K", "luts": 5280, "ffs": 5280, "dsps": 8, "brams": 30}

_REGISTERED: dict[str, Callable[[ArrayConfig], Any]] = {}


# -- unit registry -----------------------------------------------------------------------------------
def register_unit(name: str, builder: Callable[[ArrayConfig], Any]) -> None:
    """Make ``builder(cfg) -> component`` synthesizable as ``--unit name``."""
    _REGISTERED[name] = builder


def unit_builder(name: str) -> Callable[[ArrayConfig], Any] | None:
    if name in _REGISTERED:
        return _REGISTERED[name]
    try:
        build = importlib.import_module("npuforge.gen.build.units")
        fn = getattr(build, f"build_{name}", None)
        if fn is not None:
            return fn
    except ImportError:
        pass
    if importlib.util.find_spec(f"npuforge.gen.build.unit_{name}") is not None:
        return getattr(importlib.import_module(f"npuforge.gen.build.unit_{name}"), "build", None)
    return None


def available_units() -> list[str]:
    names = list(KNOWN_UNITS) + [n for n in _REGISTERED if n not in KNOWN_UNITS]
    return [n for n in names if unit_builder(n) is not None]


# -- tools -------------------------------------------------------------------------------------------
def nextpnr_command(family: str) -> str:
    """Path of the yowasp-nextpnr-``family`` launcher (ecp5 or ice40) installed beside this Python."""
    exe = Path(sys.executable).parent / f"yowasp-nextpnr-{family}"
    if exe.exists():
        return str(exe)
    found = shutil.which(f"yowasp-nextpnr-{family}")
    if found is None:
        raise ToolError(f"yowasp-nextpnr-{family} not found: install the project's [ppa] extra (make venv)")
    return found


def _run_tool(cmd: list[str], *, cwd: Path, log: Path, what: str) -> None:
    # yowasp tools see host paths through WASI preopens; cwd-relative paths are the portable choice
    # (inside the sandbox /tmp is a private folder). Yosys' console output stops after its first ABC call
    # (ABC redirects the Wasm stdout), so results are read from files (-l log, tee -o), never stdout.
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        tail = ""
        if log.exists():
            errors = [l for l in log.read_text(errors="replace").splitlines() if "ERROR" in l]
            tail = errors[-1].strip() if errors else ""
        tail = tail or (proc.stderr.strip().splitlines() or [""])[-1]
        raise ToolError(f"{what} failed (exit {proc.returncode}): {tail} [log: {log}]")


# -- registered-boundary wrapper ----------------------------------------------------------------------
class RegisteredBoundary(wiring.Component):
    """Same ports as ``inner``, with a register between every port and the inner component.

    Out-of-context place and route then times only register-to-register paths inside the unit; the extra
    boundary registers stand in for whatever registers the surrounding design would have.
    """

    def __init__(self, inner: wiring.Component):
        self._inner = inner
        super().__init__(wiring.Signature(dict(inner.signature.members.items())))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.unit = self._inner
        outer = {path: (member, value) for path, member, value in self.signature.flatten(self)}
        for path, member, inner_value in self._inner.signature.flatten(self._inner):
            _, outer_value = outer[path]
            if member.flow == wiring.In:
                m.d.sync += inner_value.eq(outer_value)
            else:
                m.d.sync += outer_value.eq(inner_value)
        return m


# -- Yosys scripts --------------------------------------------------------------------------------------
def _read(src: str) -> str:
    # Amaranth names anonymous signals "\\$signal$N" (public names that look private); this Yosys build's
    # abc9 reintegration then asserts on a name clash. Hiding the internal wire names (ports are kept)
    # avoids it; the netlist still carries Amaranth's src attributes, so reports point to the Python source.
    read = f"read_rtlil {src}" if src.endswith(".il") else f"read_verilog {src}"
    return f"{read}\nrename -hide w:*"


def _ecp5_script(vfile: str, top: str, *, abc9: bool, json_out: str | None, stat_out: str, dsp: bool,
                 flatten: bool = True, flat_json_out: str | None = None) -> str:
    """``flat_json_out``: after the (hierarchical) statistics, flatten the mapped netlist and write it there for
    nextpnr, so one Yosys run gives both the table by unit and the placeable netlist."""
    opts = ("" if dsp else " -nodsp") + ("" if flatten else " -noflatten")
    json_opt = (f" -json {json_out}" if json_out else "") + opts
    if abc9:
        synth = f"synth_ecp5 -top {top}{json_opt}"
    else:
        # Classic ABC LUT mapping in the map_luts step: the fallback for Yosys' ABC9 reintegration assertion on some
        # netlists, and the mapper of the whole NPU (abc9's write_xaiger2 took most of a 40-minute NPU run).
        synth = (f"synth_ecp5 -top {top} -run :map_luts{opts}\n"
                 "techmap -map +/lattice/latches_map.v\n"
                 "abc -lut 4 -dress\n"
                 "clean\n"
                 f"synth_ecp5 -top {top} -run map_cells:{json_opt}")
    flat = f"flatten\nclean\nwrite_json {flat_json_out}\n" if flat_json_out else ""
    return f"{_read(vfile)}\n{synth}\ntee -q -o {stat_out} stat -json\n{flat}"


def _yosys(script: str, *, cwd: Path, name: str) -> None:
    (cwd / f"{name}.ys").write_text(script)
    _run_tool([yosys_command(), "-q", "-l", f"{name}.log", "-s", f"{name}.ys"], cwd=cwd, log=cwd / f"{name}.log",
              what=f"yosys ({name})")


def _cells(stat_file: Path) -> dict[str, int]:
    data = json.loads(stat_file.read_text())
    design = data.get("design")
    if design is None:
        (design,) = data["modules"].values()
    return {k.lstrip("\\"): int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def ecp5_dsp_blocks(component, *, out_dir: str | Path, name: str = "dsp_count") -> int:
    """MULT18X18D blocks of ``component`` after ``synth_ecp5``'s multiplier mapping, without LUT mapping (the
    flow stops before ``map_ram``): the DSP count of a full run in seconds, for smoke tests."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.il").write_text(rtlil.convert(component, name=name))
    _yosys(f"{_read(name + '.il')}\nsynth_ecp5 -top {name} -run :map_ram\ntee -q -o {name}_stat.json stat -json\n",
           cwd=out, name=name)
    return _cells(out / f"{name}_stat.json").get("MULT18X18D", 0)


def ecp5_bram_output_sinks(component, *, out_dir: str | Path, name: str = "bram_sinks") -> dict[str, set[str]]:
    """The cell types each DP16KD data output of ``component`` drives after ``synth_ecp5``'s block RAM mapping (the
    flow stops after ``map_ram``, before the gates are mapped): a read whose every output bit drives only flip-flops
    (``$dff``, ``$dffe``, ``$sdff`` ...) has nothing combinational between the block RAM and a register."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.il").write_text(rtlil.convert(component, name=name))
    _yosys(f"{_read(name + '.il')}\nsynth_ecp5 -top {name} -run :map_ffram\nselect {name}\nwrite_json -selected {name}.json\n",
           cwd=out, name=name)
    (module,) = json.loads((out / f"{name}.json").read_text())["modules"].values()
    cells = module["cells"]
    sinks: dict[Any, set[str]] = {}
    for cell in cells.values():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input":
                for bit in bits:
                    sinks.setdefault(bit, set()).add(cell["type"])
    result = {}
    for cell_name, cell in cells.items():
        if cell["type"] == "DP16KD":
            result[cell_name] = {t for port, bits in cell["connections"].items() if re.fullmatch(r"DO[AB]\d+", port)
                                 for bit in bits for t in sinks.get(bit, ())}
    return result


def _memory_bits(stat_file: Path) -> int:
    """Bits of the memories a generic netlist keeps as ``$mem_v2`` cells (SRAM macros, not gates)."""
    data = json.loads(stat_file.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    return int(design.get("num_memory_bits", 0) or 0)


def _transistors(stat_file: Path) -> int | None:
    data = json.loads(stat_file.read_text())
    design = data.get("design") or next(iter(data["modules"].values()))
    for key in ("estimated_num_transistors", "num_transistors"):
        if key in design:
            return int(str(design[key]).rstrip("+"))
    return None


def _synth_ecp5(vfile: str, top: str, cwd: Path, *, json_out: str | None, tag: str,
                dsp: bool, flatten: bool = True, abc9: bool = True,
                flat_json_out: str | None = None) -> tuple[dict[str, int], str]:
    """Cell counts and the LUT mapper used (``abc9``, or classic ``abc`` when asked or as abc9's fallback)."""
    kw = dict(json_out=json_out, stat_out=f"{tag}_stat.json", dsp=dsp, flatten=flatten, flat_json_out=flat_json_out)
    if abc9:
        try:
            _yosys(_ecp5_script(vfile, top, abc9=True, **kw), cwd=cwd, name=tag)
            return _cells(cwd / f"{tag}_stat.json"), "abc9"
        except ToolError as e:
            if "ABC_OPS_REINTEGRATE" not in (cwd / f"{tag}.log").read_text(errors="replace") and "abc9" not in str(e):
                raise
    _yosys(_ecp5_script(vfile, top, abc9=False, **kw), cwd=cwd, name=tag)
    return _cells(cwd / f"{tag}_stat.json"), "abc"


_PRIMITIVE_SUFFIX = re.compile(r"_(TRELLIS_|CCU2C|MULT18X18D|LUT4|PFUMX|L6MUX|SB_|\$).*$")


def _short(cell: str | None) -> str | None:
    """Hierarchical signal name of a mapped cell (cut Yosys' primitive-name suffix chain)."""
    return _PRIMITIVE_SUFFIX.sub("", cell) if cell else cell


def _summarize_path(path: list[dict[str, Any]]) -> dict[str, Any]:
    logic = sum(float(s.get("delay", 0)) for s in path if s.get("type") != "routing")
    routing = sum(float(s.get("delay", 0)) for s in path if s.get("type") == "routing")
    cells = [s.get("to", {}).get("cell") for s in path if s.get("type") == "logic"]
    return {
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "logic_levels": len(cells),
        "from": _short(path[0].get("from", {}).get("cell")) if path else None,
        "to": _short(path[-1].get("to", {}).get("cell")) if path else None,
        "through": list(dict.fromkeys(_short(c) for c in cells if c))[:12],
        "sources": _path_sources(path),
    }


def _path_sources(path: list[dict[str, Any]]) -> list[str]:
    """Python source lines (Amaranth src attributes) of the nets on a path, repo-relative, in path order."""
    root = str(Path(__file__).resolve().parents[2]) + os.sep
    seen: list[str] = []
    for step in path:
        for src in step.get("sources", []) or []:
            src = src.replace(root, "")
            if src not in seen:
                seen.append(src)
    return seen[:16]


#: Units of the NPU's resource table: (unit, hierarchy component that marks it), first match along a module's path.
NPU_UNITS = (("array", "array"), ("vector", "vec"), ("requant", "requant"), ("scratchpad", "spad"),
             ("accumulator", "acc"), ("dma", "dma"), ("csr", "csr"))
_RESOURCES = ("luts", "ffs", "dsps", "brams")


def _resources(cells: dict[str, int]) -> dict[str, int]:
    return {"luts": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0), "ffs": cells.get("TRELLIS_FF", 0),
            "dsps": cells.get("MULT18X18D", 0), "brams": cells.get("DP16KD", 0),
            "lutram": cells.get("TRELLIS_DPR16X4", 0)}


def unit_of_module(path: str) -> str:
    """Unit of the NPU resource table that the (hierarchical, dot-separated) module ``path`` belongs to."""
    parts = path.lstrip("\\").split(".")[1:]
    for unit, key in NPU_UNITS:
        if key in parts:
            return unit
    return "control"


def _unit_table(stat_file: Path, boundary: str | None = None) -> dict[str, dict[str, int]]:
    """Per-unit ECP5 resources from ``stat -json`` of a hierarchical (``-noflatten``) netlist; the cells of module
    ``boundary`` (a :class:`RegisteredBoundary` wrapper's own registers) form the row ``boundary``."""
    data = json.loads(stat_file.read_text())
    table: dict[str, dict[str, int]] = {}
    for name, module in data.get("modules", {}).items():
        cells = {k.lstrip("\\"): int(v) for k, v in module.get("num_cells_by_type", {}).items()}
        unit = "boundary" if boundary is not None and name.lstrip("\\") == boundary else unit_of_module(name)
        row = table.setdefault(unit, dict.fromkeys(_RESOURCES + ("lutram",), 0))
        for k, v in _resources(cells).items():
            row[k] += v
    return dict(sorted(table.items()))


def over_device(result: dict[str, Any], device: dict[str, Any]) -> list[str]:
    """One phrase per resource above the device's count: ``"MULT18X18D: need 460, LFE5U-85F has 156"``."""
    names = {"luts": "LUT4", "ffs": "FF", "dsps": "MULT18X18D", "brams": "DP16KD"}
    return [f"{names[k]}: need {result[k]}, {device['name']} has {device[k]}" for k in _RESOURCES
            if result.get(k) is not None and result[k] > device[k]]


def _mult18_summary(netlist: Path) -> dict[str, int]:
    """MULT18X18D blocks of a Yosys JSON netlist and how many have input / output registers on."""
    data = json.loads(netlist.read_text())
    total = reg_in = reg_out = 0
    for module in data.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            if cell.get("type") != "MULT18X18D":
                continue
            params = cell.get("parameters", {})
            total += 1
            reg_in += params.get("REG_INPUTA_CLK", "NONE").strip() != "NONE" and \
                params.get("REG_INPUTB_CLK", "NONE").strip() != "NONE"
            reg_out += params.get("REG_OUTPUT_CLK", "NONE").strip() != "NONE"
    return {"blocks": total, "input_registered": int(reg_in), "output_registered": int(reg_out)}


#: nextpnr routers (``--router``): router1 is nextpnr's default; router2 finishes congested designs (the scalable
#: 8x8 array, the NPU) that router1 does not finish in hours.
ROUTERS = ("router1", "router2")


def auto_router(cfg: ArrayConfig) -> str:
    """The router the bench and the sweep use for ``cfg``: router1 for int8-only arrays (it finishes them, and on the
    8x8 int8 array it gave 182.82 MHz where router2 gave 153.23, seed 1), router2 for arrays with the scalable MAC
    and NPUs around them (router1 had 100 k of the scalable 8x8 array's 111 k arcs left after 200 s and did not
    converge)."""
    return "router1" if tuple(cfg.precisions) == ("int8",) else "router2"


def _pnr_ecp5(netlist: str, cwd: Path, *, freq_mhz: float, seed: int, router: str = "router1",
              place_only: bool = False) -> dict[str, Any]:
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
    cmd = [nextpnr_command("ecp5"), *ECP5_DEVICE["nextpnr"], "--json", netlist, "--out-of-context", "--timing-allow-fail",
           "--freq", f"{freq_mhz:g}", "--seed", str(seed), "--router", router, "-q", "-l", "pnr.log"]
    if place_only:
        # No routing: the placer's fmax estimate, and the placed netlist for gen.ppa.paths' ranking.
        cmd += ["--no-route", "--write", PLACED_NETLIST]
    else:
        cmd += ["--report", "pnr_report.json"]
    _run_tool(cmd, cwd=cwd, log=cwd / "pnr.log", what="nextpnr-ecp5")
    if place_only:
        return placement_figures(cwd / "pnr.log", cwd / netlist, cwd / PLACED_NETLIST)
    return pnr_figures(cwd / "pnr_report.json")


#: The placed netlist a place-only run writes (nextpnr ``--write``), beside the flow's other files.
PLACED_NETLIST = "placed.json"

#: Paths a place-only run ranks (gen.ppa.paths) into its result.
PLACED_PATHS = 10


def placement_figures(log_file: str | Path, netlist: str | Path, placed: str | Path) -> dict[str, Any]:
    """A place-only run's figures: nextpnr's post-placement fmax estimate (the last one its log prints; the slowest
    clock's) and the estimated worst paths of the placed netlist (:func:`gen.ppa.paths.rank_paths`). No fmax: the
    design is not routed."""
    from npuforge.gen.ppa.paths import rank_paths

    found = re.findall(r"Max frequency for clock '([^']+)': ([0-9.]+) MHz", Path(log_file).read_text())
    last = {clock: float(mhz) for clock, mhz in found}      # a later estimate of a clock replaces an earlier one
    return {"fmax_mhz": None, "placement_estimate_mhz": min(last.values()) if last else None,
            "paths": rank_paths(netlist, placed, limit=PLACED_PATHS)}


def pnr_figures(report_file: str | Path) -> dict[str, Any]:
    """fmax (the slowest clock's), fmax by clock, the critical path summary and the utilization of a nextpnr
    ``--report`` JSON file."""
    report = json.loads(Path(report_file).read_text())
    clocks = {name: v for name, v in report.get("fmax", {}).items()}
    fmax = min((float(v["achieved"]) for v in clocks.values()), default=None)
    crit = report.get("critical_paths", [])
    worst = max(crit, key=lambda c: sum(float(s.get("delay", 0)) for s in c.get("path", [])), default=None)
    util = {k: v.get("used") for k, v in report.get("utilization", {}).items() if v.get("used")}
    return {"fmax_mhz": round(fmax, 2) if fmax is not None else None,
            "fmax_by_clock": {k: round(float(v["achieved"]), 2) for k, v in clocks.items()},
            "critical_path": _summarize_path(worst["path"]) if worst else None,
            "pnr_utilization": util}


_PNR_FIELDS = ("fmax_mhz", "fmax_by_clock", "critical_path", "pnr_utilization", "pnr", "placement_estimate_mhz",
               "paths")


def pnr_seed(run_dir: str | Path, seed: int, *, out_dir: str | Path, router: str | None = None,
             place_only: bool = False) -> dict[str, Any]:
    """Place and route again, with nextpnr seed ``seed``, the netlist of a finished ``synthesize(..., pnr=True)``
    run in ``run_dir``: its ``synth.json`` with this seed's place-and-route fields (also written as
    ``out_dir/synth.json``). Yosys is deterministic, so this is the full flow with another seed minus the
    synthesis (8 minutes for the ``ecp5-85f`` NPU, several per array point). ``router`` None keeps the run's.
    A run whose place and route was stopped (its ``synth.json`` is written before nextpnr starts) works too.
    ``place_only`` places without routing (:func:`placement_figures`)."""
    src = Path(run_dir)
    base = json.loads((src / "synth.json").read_text())
    if not base.get("pnr"):
        raise ValueError(f"{src}/synth.json has no place-and-route run to repeat (synthesize with pnr=True first)")
    router = router or base["pnr"].get("router", "router1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = f"{base['top']}_regwrap.json"
    if (src / net).resolve() != (out / net).resolve():
        shutil.copyfile(src / net, out / net)
    result = {k: v for k, v in base.items() if k not in _PNR_FIELDS}
    freq = base["pnr"]["freq_target_mhz"]
    result.update(_pnr_ecp5(net, out, freq_mhz=freq, seed=seed, router=router, place_only=place_only))
    result["pnr"] = {**base["pnr"], "seed": seed, "router": router, "netlist_from": str(src), "finished": True,
                     "routed": not place_only}
    (out / "synth.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


# -- entry point --------------------------------------------------------------------------------------
def synthesize(cfg: ArrayConfig, *, unit: str = "array", target: str = "ecp5", pnr: bool = False,
               out_dir: str | Path = "build/synth", cmos: bool = True, freq_mhz: float = 250.0,
               seed: int = 1, dsp: bool = True, npu=None, router: str = "router1",
               place_only: bool = False) -> dict[str, Any]:
    """Synthesize ``unit`` of design point ``cfg`` for ``target``; write logs and ``synth.json`` in ``out_dir``.

    ``npu`` (a :class:`gen.config.npu.NPUConfig` around ``cfg``, units ``npu`` and ``vector``) sizes the NPU, or the
    vector unit it carries (lanes, operators); without it the NPU parameters are the defaults.

    ``cmos`` adds the generic-synthesis transistor estimate (always on for target ``generic``).
    ``pnr`` (ECP5 only) places and routes the registered-boundary wrapper for fmax; ``freq_mhz`` is the
    timing-driven placement target, not a pass/fail limit; ``router`` is one of :data:`ROUTERS`. ``dsp=False`` maps
    multipliers to LUTs/carry chains (``-nodsp``): one LUT-only area figure, and arrays larger than the DSP budget
    still fit. ``place_only`` (with ``pnr``) stops after placement: no fmax, nextpnr's post-placement estimate
    (``placement_estimate_mhz``) and the placed netlist's estimated worst paths (``paths``, :mod:`gen.ppa.paths`).
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if pnr and target != "ecp5":
        raise ValueError(f"--pnr is supported for target ecp5 only, got target {target!r}")
    if place_only and not pnr:
        raise ValueError("place_only needs pnr (--place-only needs --pnr)")
    if not freq_mhz > 0:
        raise ValueError(f"freq_mhz must be > 0, got {freq_mhz!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, got {router!r}")
    builder = unit_builder(unit)
    if builder is None:
        raise ValueError(f"unit must be one of {', '.join(available_units())}, got {unit!r}")
    top = cfg.name if unit == "array" else f"{cfg.name}_{unit}"
    if unit == "npu" and npu is None:
        from npuforge.gen.config.npu import NPUConfig

        npu = NPUConfig(array=cfg)
    if npu is not None:
        if unit not in ("npu", "vector"):
            raise ValueError(f"NPU parameters apply to units npu and vector only, got unit {unit!r}")
        if npu.array != cfg:
            raise ValueError("the NPU config's array differs from the design point cfg")
        if unit == "vector":
            from npuforge.gen.build.units import build_vector

            builder = lambda _cfg: build_vector(_cfg, npu)  # noqa: E731
        else:
            from npuforge.gen.build.npu import build_npu, npu_top_name

            builder, top = (lambda _cfg: build_npu(npu)), npu_top_name(npu)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # RTLIL straight from Amaranth (pure Python, no extra Yosys run); Yosys reads it with read_rtlil. ECP5 with DSPs
    # elaborates through the multiplier mapping layer (registered MULT18X18D); everything else generically.
    mapped = target == "ecp5" and dsp
    platform = TechTarget("ecp5") if mapped else None
    vfile = f"{top}.il"
    (out / vfile).write_text(rtlil.convert(builder(cfg), name=top, platform=platform))
    generic_file = vfile
    if mapped and (target == "generic" or cmos):
        generic_file = f"{top}_generic.il"
        (out / generic_file).write_text(rtlil.convert(builder(cfg), name=top))

    result: dict[str, Any] = {"unit": unit, "target": target, "top": top, "config": cfg.to_dict(), "dsp": dsp,
                              "luts": None, "ffs": None, "dsps": None, "brams": None, "transistors": None,
                              "fmax_mhz": None}
    if npu is not None:
        result["npu_config"] = npu.to_dict()
    hierarchical = unit == "npu"
    # The NPU with place and route: ONE Yosys run on the registered-boundary wrapper, kept hierarchical for the
    # table by unit (the wrapper's registers are its row "boundary", and in the totals), then flattened for
    # nextpnr; classic ABC maps its LUTs (abc9 spent most of a 40-minute NPU run in write_xaiger2).
    one_pass = hierarchical and pnr and target == "ecp5"
    wtop = f"{top}_regwrap"
    if one_pass:
        (out / f"{wtop}.il").write_text(rtlil.convert(RegisteredBoundary(builder(cfg)), name=wtop, platform=platform))
    if target == "ecp5":
        # The NPU keeps its hierarchy in this pass, so one run gives the resource table by unit.
        syn_file, syn_top, net = (f"{wtop}.il", wtop, f"{wtop}.json") if one_pass else (vfile, top, f"{top}.json")
        cells, mapper = _synth_ecp5(syn_file, syn_top, out, json_out=None if one_pass else net, tag="ecp5", dsp=dsp,
                                    flatten=not hierarchical, abc9=not hierarchical,
                                    flat_json_out=net if one_pass else None)
        result["mult18"] = _mult18_summary(out / net)
        if hierarchical:
            result["units"] = _unit_table(out / "ecp5_stat.json", boundary=wtop if one_pass else None)
        result.update(device=ECP5_DEVICE["name"], lut_mapper=mapper, cells=cells,
                      lut4=cells.get("LUT4", 0), ccu2c=cells.get("CCU2C", 0),
                      luts=cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
                      ffs=cells.get("TRELLIS_FF", 0), dsps=cells.get("MULT18X18D", 0),
                      brams=cells.get("DP16KD", 0), lutram=cells.get("TRELLIS_DPR16X4", 0))
        result["fits"] = all(result[k] <= ECP5_DEVICE[k] for k in ("luts", "ffs", "dsps", "brams"))
    elif target == "ice40":
        _yosys(f"{_read(vfile)}\nsynth_ice40{' -dsp' if dsp else ''} -top {top}\ntee -q -o ice40_stat.json stat -json\n",
               cwd=out, name="ice40")
        cells = _cells(out / "ice40_stat.json")
        result.update(device=ICE40_DEVICE["name"], cells=cells,
                      luts=cells.get("SB_LUT4", 0), carry=cells.get("SB_CARRY", 0),
                      ffs=sum(n for c, n in cells.items() if c.startswith("SB_DFF")),
                      dsps=cells.get("SB_MAC16", 0), brams=cells.get("SB_RAM40_4K", 0))
        result["fits"] = all(result[k] <= ICE40_DEVICE[k] for k in ("luts", "ffs", "dsps", "brams"))
    if target == "generic" or cmos:
        if hierarchical:
            # Generic synthesis would turn the NPU's SRAMs (megabits) into flip-flops and exhaust the
            # WebAssembly Yosys; memories stay memory cells (SRAM macros, counted as sram_bits, not transistors).
            script = (f"{_read(generic_file)}\nsynth -top {top} -run :fine\nopt -fast -full\ntechmap\nopt -fast\n"
                      f"abc -fast\nopt -fast\ntee -q -o cmos_stat.json stat -tech cmos -json\n")
            result["transistors_exclude"] = "SRAM macros (sram_bits)"
            result["sram_bits"] = 8 * (npu.spad_bytes + npu.acc_bytes) if npu is not None else None
        else:
            script = f"{_read(generic_file)}\nsynth -top {top}\ntee -q -o cmos_stat.json stat -tech cmos -json\n"
        _yosys(script, cwd=out, name="generic")
        result["transistors"] = _transistors(out / "cmos_stat.json")
        if target == "generic":
            cells = _cells(out / "cmos_stat.json")
            result.update(cells=cells, ffs=sum(n for c, n in cells.items() if "DFF" in c),
                          dsps=0, brams=0)
    if pnr and result.get("fits") is False:
        # nextpnr would only fail on the resource check; record why there is no fmax instead.
        result["pnr_skipped"] = f"does not fit: {'; '.join(over_device(result, ECP5_DEVICE))}"
    elif pnr:
        if not one_pass:
            (out / f"{wtop}.il").write_text(rtlil.convert(RegisteredBoundary(builder(cfg)), name=wtop,
                                                          platform=platform))
            _synth_ecp5(f"{wtop}.il", wtop, out, json_out=f"{wtop}.json", tag="ecp5_regwrap", dsp=dsp)
        result["pnr"] = {"tool": "nextpnr-ecp5", "args": ECP5_DEVICE["nextpnr"] + ["--out-of-context"],
                         "freq_target_mhz": freq_mhz, "seed": seed, "router": router, "wrapper": "registered boundary",
                         "finished": False, "routed": not place_only}
        # Written before nextpnr starts: the synthesis figures survive a stopped place and route, and
        # pnr_seed (synth --netlist-from) can place and route the netlist again.
        (out / "synth.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        result.update(_pnr_ecp5(f"{wtop}.json", out, freq_mhz=freq_mhz, seed=seed, router=router,
                                place_only=place_only))
        result["pnr"]["finished"] = True
    (out / "synth.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result
