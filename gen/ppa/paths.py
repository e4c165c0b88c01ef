"""Estimated register-to-register paths of a Yosys ``synth_ecp5`` netlist, ranked: what limits a design's clock
when nextpnr gives no path report (a placement without routing, or a design too congested to route).

nextpnr prints one critical path, and only after routing; ``--no-route`` gives the placer's fmax estimate alone.
:func:`rank_paths` is a static timing analysis of the mapped netlist (Yosys JSON) with fixed delays per ECP5 cell
(speed grade 6, rounded from nextpnr's reports and prjtrellis' timing data, :data:`CELL_DELAY_NS`) and one of two
net delay models:

* unplaced: ``NET_BASE_NS + NET_FANOUT_NS * log2(fanout)`` per net;
* placed (the ``--write`` JSON of a nextpnr placement): nextpnr-ecp5's own placement-time estimate from the
  driver's and the sink's tile distance (``Arch::predictDelay``, 120 ps per unit at speed 6).

Carry chains (COUT -> CIN) cost no routing. The figures are estimates for ranking paths, not timing sign-off: a
routed design's paths are longer (detours, congestion), and cells are not told apart by input pin.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["CELL_DELAY_NS", "NET_BASE_NS", "NET_FANOUT_NS", "rank_paths", "format_paths"]

#: Cell delays in ns (ECP5 speed 6): combinational input -> output, clock -> output of the sequential cells, and
#: the setup time charged at every endpoint.
CELL_DELAY_NS = {
    "lut": 0.30,            # LUT4 A..D -> Z
    "mux": 0.25,            # PFUMX / L6MUX21 data -> Z (select +0.1)
    "carry_in": 0.45,       # CCU2C A/B/C/D -> S or COUT
    "carry_chain": 0.07,    # CCU2C CIN -> COUT
    "carry_sum": 0.25,      # CCU2C CIN -> S
    "ff_cq": 0.52,          # TRELLIS_FF CLK -> Q
    "bram_cq": 5.83,        # DP16KD CLK -> DO without its output register (REGMODE NOREG)
    "bram_cq_reg": 0.90,    # DP16KD CLK -> DO with its output register
    "mult_comb": 3.93,      # MULT18X18D A/B -> P, no registers
    "mult_cq_in": 3.20,     # MULT18X18D CLK -> P with input registers only
    "mult_cq_out": 0.74,    # MULT18X18D CLK -> P with its output register
    "lutram": 0.55,         # TRELLIS_DPR16X4 RAD -> DO
    "setup": 0.10,
}
NET_BASE_NS = 0.70
NET_FANOUT_NS = 0.10
_PLACED_UNIT_NS = 0.12      # nextpnr-ecp5 predictDelay: (120 - 22 * speed index 0) ps per unit

_COMB = ("LUT4", "PFUMX", "L6MUX21", "CCU2C")


def _is_data_pin(port: str) -> bool:
    return port[0] in "AB" and port[1:].isdigit()


def _reg(params: dict, name: str) -> bool:
    return str(params.get(name, "NONE")).strip() not in ("NONE", "NOREG")


def _arcs(cell: dict, port: str) -> tuple[float | None, list[tuple[str, float]]]:
    """(clock -> ``port`` delay if ``port`` starts paths, [(input port, delay to ``port``)])."""
    d, t, p = CELL_DELAY_NS, cell["type"], cell.get("parameters", {})
    if t == "LUT4":
        return None, [(q, d["lut"]) for q in "ABCD"]
    if t == "PFUMX":
        return None, [("ALUT", d["mux"]), ("BLUT", d["mux"]), ("C0", d["mux"] + 0.1)]
    if t == "L6MUX21":
        return None, [("D0", d["mux"]), ("D1", d["mux"]), ("SD", d["mux"] + 0.1)]
    if t == "CCU2C":
        halves = ("0",) if port == "S0" else ("0", "1")
        lut = [q + h for h in halves for q in "ABCD"]
        return None, [(q, d["carry_in"]) for q in lut] + [("CIN", d["carry_sum"] if port[0] == "S" else
                                                           d["carry_chain"])]
    if t == "DP16KD":
        return (d["bram_cq_reg"] if _reg(p, "REGMODE_A" if port.startswith("DOA") else "REGMODE_B")
                else d["bram_cq"]), []
    if t == "MULT18X18D":
        if _reg(p, "REG_OUTPUT_CLK"):
            return d["mult_cq_out"], []
        if _reg(p, "REG_INPUTA_CLK"):
            return d["mult_cq_in"], []
        return None, [(q, d["mult_comb"]) for q, io in cell["port_directions"].items()
                      if io == "input" and _is_data_pin(q)]
    if t == "TRELLIS_DPR16X4":
        return None, [(q, d["lutram"]) for q, io in cell["port_directions"].items()
                      if io == "input" and q.startswith("RAD")]
    return d["ff_cq"], []           # TRELLIS_FF and any other sequential cell


def _endpoint(cell: dict, port: str) -> bool:
    """Whether input ``port`` of ``cell`` ends paths (a register's or a memory's input, not a clock)."""
    t = cell["type"]
    if t in _COMB or port.startswith("CLK") or port in ("WCK",):
        return False
    if t == "MULT18X18D" and _is_data_pin(port):
        return _reg(cell.get("parameters", {}), "REG_INPUTA_CLK")
    if t == "TRELLIS_DPR16X4":
        return not port.startswith("RAD")
    return True


def _tile(bel: str | None) -> tuple[int, int] | None:
    m = re.match(r"X(\d+)/Y(\d+)/", bel or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _top(netlist: dict) -> dict:
    mods = netlist["modules"]
    return next((m for m in mods.values() if m.get("attributes", {}).get("top")), None) or list(mods.values())[-1]


def _module_of(name: str) -> str:
    """The hierarchical module of a net name: Yosys' derived suffixes (``_LUT4_Z``...), the bit index and a memory's
    tile indices dropped."""
    name = re.split(r"_(?:LUT4|TRELLIS|CCU2C|MULT18|DO[AB]\d|PFUMX|L6MUX)", name)[0]
    name = re.sub(r"\[\d+\]$", "", re.sub(r"\$\d+", "", name))
    name = re.sub(r"(\.\d+)+$", "", name)         # a memory's tiles (``bank0.3.1``)
    return name.rsplit(".", 1)[0] if "." in name else name


def rank_paths(netlist: str | Path | dict, placed: str | Path | dict | None = None, *,
               limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` worst estimated paths of a ``synth_ecp5`` JSON netlist, one per (start module, end module),
    worst first. Each: ``delay_ns``, ``levels`` (LUT / mux / carry cells), ``start`` / ``end`` (net names and cell
    types), ``through`` (net names with their arrival in ns). ``placed`` is nextpnr's ``--write`` JSON of the same
    netlist: its cell locations give the net delays (else the unplaced model)."""
    net = json.loads(Path(netlist).read_text()) if not isinstance(netlist, dict) else netlist
    top = _top(net)
    cells = {n: c for n, c in top["cells"].items() if not c["type"].startswith("$")}
    sub = sorted({t for t in (c["type"] for c in cells.values())
                  if t in net["modules"] and not net["modules"][t].get("attributes", {}).get("blackbox")})
    if sub:
        raise ValueError(f"rank_paths needs a flat netlist, got instances of {', '.join(sub[:3])} (for the NPU: "
                         "synthesize with pnr, whose netlist is flattened)")
    names: dict[int, str] = {}
    for name, info in top["netnames"].items():
        for bit in info["bits"]:
            if isinstance(bit, int):
                old = names.get(bit)
                # A user-visible name over a generated one, then the shorter.
                if old is None or (old[0] == "$", len(old)) > (name[0] == "$", len(name)):
                    names[bit] = name
    driver: dict[int, tuple[str, str]] = {}
    fanout: dict[int, int] = defaultdict(int)
    for cname, cell in cells.items():
        for port, bits in cell["connections"].items():
            out = cell["port_directions"].get(port) == "output"
            for bit in bits:
                if isinstance(bit, int):
                    if out:
                        driver[bit] = (cname, port)
                    else:
                        fanout[bit] += 1
    tiles = _placement(placed, cells, driver) if placed is not None else {}

    def net_ns(bit: int, sink: str) -> float:
        drv = driver.get(bit)
        if drv is not None and drv[1] == "COUT":
            return 0.0                                  # the dedicated carry wire
        if drv is not None and drv[0] in tiles and sink in tiles:
            (x0, y0), (x1, y1) = tiles[drv[0]], tiles[sink]
            dx, dy = abs(x0 - x1), abs(y0 - y1)
            return _PLACED_UNIT_NS * (3 + max(dx - 5, 0) + max(dy - 5, 0) + 2 * (min(dx, 5) + min(dy, 5)))
        return NET_BASE_NS + NET_FANOUT_NS * math.log2(max(fanout[bit], 1))

    arrival: dict[int, float] = {}
    pred: dict[int, int | None] = {}
    visiting: set[int] = set()

    def settle(bit: int) -> None:
        """Arrival time of ``bit`` (iterative depth-first; a combinational loop is cut where it closes)."""
        stack = [bit]
        while stack:
            b = stack[-1]
            if b in arrival:
                stack.pop()
                continue
            drv = driver.get(b)
            start, ins = _arcs(cells[drv[0]], drv[1]) if drv else (0.0, [])
            inputs = [(ib, dl) for q, dl in ins for ib in cells[drv[0]]["connections"].get(q, [])
                      if isinstance(ib, int)]
            todo = [ib for ib, _ in inputs if ib not in arrival and ib not in visiting]
            if todo:
                visiting.add(b)
                stack.extend(todo)
                continue
            best, via = (start or 0.0), None
            for ib, dl in inputs:
                if ib in arrival and arrival[ib] + net_ns(ib, drv[0]) + dl > best:
                    best, via = arrival[ib] + net_ns(ib, drv[0]) + dl, ib
            arrival[b], pred[b] = best, via
            visiting.discard(b)
            stack.pop()

    ends = []
    for cname, cell in cells.items():
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) != "input" or not _endpoint(cell, port):
                continue
            for bit in bits:
                if isinstance(bit, int):
                    settle(bit)
                    ends.append((arrival[bit] + net_ns(bit, cname) + CELL_DELAY_NS["setup"], bit, cname, port))
    ends.sort(key=lambda e: -e[0])
    paths, seen = [], set()
    for delay, bit, cname, port in ends:
        chain = [bit]
        while pred.get(chain[-1]) is not None:
            chain.append(pred[chain[-1]])
        chain.reverse()
        cell = cells[cname]
        end_net = cell["connections"]["Q"][0] if cell["type"] == "TRELLIS_FF" else bit
        ff = cell["type"] == "TRELLIS_FF"
        key = (_module_of(names.get(chain[0], "?")), _module_of(names.get(end_net, "?") if ff else cname))
        if key in seen:
            continue
        seen.add(key)
        sdrv = driver.get(chain[0])
        through: list[list[Any]] = []
        for b in chain:
            n = names.get(b, "?")
            if not through or through[-1][0] != n:
                through.append([n, round(arrival[b], 3)])
        paths.append({
            "delay_ns": round(delay, 3),
            "levels": sum(1 for b in chain[1:] if b in driver and cells[driver[b][0]]["type"] in _COMB),
            "start": {"net": names.get(chain[0], "?"), "cell": cells[sdrv[0]]["type"] if sdrv else None,
                      "port": sdrv[1] if sdrv else None},
            "end": {"net": names.get(end_net, "?") if ff else cname, "cell": cell["type"], "port": port},
            "through": through,
        })
        if len(paths) >= limit:
            break
    return paths


def _placement(placed, cells: dict, driver: dict) -> dict[str, tuple[int, int]]:
    """Tile of each netlist cell in a nextpnr ``--write`` JSON: by name, a CCU2C by its packed halves, a PFUMX /
    L6MUX21 (packed into a slice) at a cell driving one of its inputs."""
    data = json.loads(Path(placed).read_text()) if not isinstance(placed, dict) else placed
    tiles = {}
    for name, cell in _top(data)["cells"].items():
        tile = _tile(cell.get("attributes", {}).get("NEXTPNR_BEL"))
        if tile:
            tiles[name] = tile
    for name in cells:
        if name not in tiles and name + "$CCU2_COMB0" in tiles:
            tiles[name] = tiles[name + "$CCU2_COMB0"]
    for name, cell in cells.items():
        if name in tiles:
            continue
        for port, bits in cell["connections"].items():
            if cell["port_directions"].get(port) == "input" and bits and isinstance(bits[0], int):
                drv = driver.get(bits[0])
                if drv and drv[0] in tiles:
                    tiles[name] = tiles[drv[0]]
                    break
    return tiles


def format_paths(paths: list[dict[str, Any]], *, depth: int = 12) -> str:
    """Paths as text: delay, levels and ends, then up to ``depth`` nets with their arrival times."""
    lines = []
    for p in paths:
        lines.append(f"{p['delay_ns']:7.2f} ns  {p['levels']:3d} levels  {p['start']['net']} ({p['start']['cell']}) "
                     f"-> {p['end']['net']} ({p['end']['cell']}.{p['end']['port']})")
        through = p["through"]
        if len(through) > depth:
            through = through[:depth // 2] + [["...", None]] + through[-(depth - depth // 2):]
        for name, t in through:
            lines.append(f"          {'' if t is None else f'{t:6.2f}'}  {name}")
    return "\n".join(lines)
