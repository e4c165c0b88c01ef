"""NPU jobs that exercise the vector operators (vec.softmax, vec.act, vec.residual, vec.gate) on the RTL.

Each job is a small program (DMA the operands and the parameter block into the scratchpad, run the vector
instruction(s), store the result) built with :func:`sim.npu_run.program_job`, so its expectations are the ISA
simulator's (status, fault address, pc, the whole final DRAM image); :func:`vec_job` also attaches the golden
operator's output (``golden.softmax.softmax``, ``golden.activations.lookup``, ``golden.elementwise.residual_add``
/ ``gate_mul``), computed
here from the operands, never from either simulator, as the job's expected C region.

DRAM layout of a job: program at 0, operand A at ``A_EXT``, operand B at ``B_EXT``, the parameter block at
``P_EXT``, the output at ``C_EXT`` (rows packed, ``n`` bytes apart). Scratchpad: A at 0, B and the output after it
(word-aligned), the parameter block on the first free 256-byte page.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from gen.isa import (ACT_TABLE_BYTES, PARAM_PAGE_BYTES, DmaLoad, DmaStore, Fence, Halt, Instr, VecOp, encode,
                     encode_program)
from gen.isasim import Window, pack_requant_params, pack_residual_params
from gen.npu_config import NPUConfig
from golden.activations import lookup
from golden.elementwise import GateParams, ResidualParams, gate_mul, residual_add
from golden.softmax import softmax
from sim.npu_run import Job, program_job

__all__ = ["A_EXT", "B_EXT", "P_EXT", "C_EXT", "IMAGE_BYTES", "vec_layout", "vec_program", "vec_job",
           "golden_vec", "param_block", "raw_job", "edge_operands"]

A_EXT, B_EXT, P_EXT, C_EXT = 0x1000, 0x3000, 0x5000, 0x6000
IMAGE_BYTES = 0x8000
_MAX_BYTES = B_EXT - A_EXT   # largest operand (m * n bytes)


def edge_operands(m: int, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random int8 A, B [m, n] with the directed edges present: -128, 127, -8, 7, 0 and their pairings."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, n), dtype=np.int64)
    b = rng.integers(-128, 128, size=(m, n), dtype=np.int64)
    edges_a = [-128, 127, -128, 127, 0, -8, 7, 0]
    edges_b = [-128, 127, 127, -128, 0, 7, -8, 127]
    k = min(a.size, len(edges_a))
    a.flat[:k] = edges_a[:k]
    b.flat[:k] = edges_b[:k]
    return a.astype(np.int8), b.astype(np.int8)


def param_block(op: str, params) -> np.ndarray:
    """The scratchpad parameter block of ``op``: the int8 table (act), the residual or gate record."""
    if op == "act":
        table = np.asarray(params)
        if table.shape != (ACT_TABLE_BYTES,) or table.dtype != np.int8:
            raise ValueError(f"an act table must be int8 of shape (256,), got {table.dtype} {table.shape}")
        return table.view(np.uint8).copy()
    if op == "residual":
        return pack_residual_params(params.a_multiplier, params.b_multiplier)
    if op == "gate":
        return pack_requant_params([params.multiplier], [params.shift])
    if op == "softmax":
        return pack_requant_params([params.exp_multiplier], [params.exp_shift])
    raise ValueError(f"op must be softmax, act, residual or gate, got {op!r}")


def golden_vec(op: str, a: np.ndarray, b: np.ndarray | None, params, *, causal: bool = False,
               row_offset: int = 0) -> np.ndarray:
    """The golden operator's output (tier 1): int8, or uint8 probabilities for softmax."""
    if op == "softmax":
        return softmax(a, params, causal=causal, row_offset=row_offset)
    if op == "act":
        return lookup(a, np.asarray(params))
    if op == "residual":
        return residual_add(a, b, params)
    if op == "gate":
        return gate_mul(a, b, params)
    raise ValueError(f"op must be softmax, act, residual or gate, got {op!r}")


def vec_layout(cfg: NPUConfig, m: int, n: int) -> dict:
    """Scratchpad addresses of A, B, the output and the parameter page for [m, n] int8 operands."""
    rows = m * cfg.local_stride("spad", n)
    b = rows
    dst = 2 * rows
    page = -(-(3 * rows) // PARAM_PAGE_BYTES)
    if page * PARAM_PAGE_BYTES + ACT_TABLE_BYTES > cfg.spad_bytes:
        raise ValueError(f"operands [{m}, {n}] do not fit the {cfg.spad_bytes}-byte scratchpad three times")
    return {"a": 0, "b": b, "dst": dst, "page": page}


def vec_program(cfg: NPUConfig, op: str, m: int, n: int, *, flags: int = 0, imm: int = 0, repeat: int = 1,
                params_bytes: int | None = None, **overrides) -> list[Instr]:
    """Load A (and B), the parameter block, run ``op`` ``repeat`` times, store the output, halt.

    ``overrides`` replace fields of the vector instruction (to build faulting programs)."""
    lay = vec_layout(cfg, m, n)
    two = op in ("residual", "gate")
    nparam = params_bytes or (ACT_TABLE_BYTES if op == "act" else 8)
    prog: list[Instr] = [DmaLoad("spad", lay["a"], A_EXT, n, m, n)]
    if two:
        prog.append(DmaLoad("spad", lay["b"], B_EXT, n, m, n))
    prog += [DmaLoad("spad", lay["page"] * PARAM_PAGE_BYTES, P_EXT, nparam, 1, nparam), Fence(load=0)]
    fields = dict(op=op, m=m, n=n, src_addr=lay["a"], dst_addr=lay["dst"], src2_addr=lay["b"] if two else 0,
                  param_page=lay["page"], flags=flags, imm=imm)
    fields.update(overrides)
    prog += [VecOp(**fields)] * repeat
    prog += [Fence(vector=0), DmaStore("spad", lay["dst"], C_EXT, n, m, n), Halt()]
    return prog


def _image(a: np.ndarray, b: np.ndarray | None, block: np.ndarray) -> np.ndarray:
    if a.size > _MAX_BYTES:
        raise ValueError(f"operand of {a.size} bytes exceeds the job layout's {_MAX_BYTES}")
    image = np.zeros(IMAGE_BYTES, dtype=np.uint8)
    image[A_EXT:A_EXT + a.size] = a.view(np.uint8).ravel()
    if b is not None:
        image[B_EXT:B_EXT + b.size] = b.view(np.uint8).ravel()
    image[P_EXT:P_EXT + block.size] = block
    # Poison the output region so a store that never happens (or a short one) cannot pass.
    image[C_EXT:C_EXT + a.size] = 0xA5
    return image


def vec_job(cfg: NPUConfig, name: str, op: str, a: np.ndarray, b: np.ndarray | None, params, *,
            flags: int = 0, imm: int | None = None, repeat: int = 1) -> Job:
    """One vector operator on [m, n] int8 operands; expectations from the ISA simulator and the golden operator."""
    m, n = a.shape
    if imm is None:
        imm = params.shift if op == "residual" else 0
    prog = vec_program(cfg, op, m, n, flags=flags, imm=imm, repeat=repeat)
    image = _image(a, b, param_block(op, params))
    job = program_job(cfg, name, encode_program(prog), image, [Window(0, IMAGE_BYTES)])
    want = golden_vec(op, a, b, params, causal=bool(flags & 1) and op == "softmax", row_offset=imm)
    job.expect_c = np.ascontiguousarray(want).view(np.uint8).ravel()
    job.c_range = (C_EXT, C_EXT + m * n)
    job.c_elem_bytes = 1
    job.extra.update(op=op, elements=m * n * repeat)
    return job


def raw_job(cfg: NPUConfig, name: str, program: Sequence[Instr | bytes], image: np.ndarray) -> Job:
    """A program given as instructions or raw 16-byte words (for encodings the ISA classes refuse)."""
    blob = b"".join(p if isinstance(p, bytes) else encode(p) for p in program)
    return program_job(cfg, name, blob, image, [Window(0, IMAGE_BYTES)])


def without_vector(cfg: NPUConfig, keep: Sequence[str] = ()) -> NPUConfig:
    """The same design point with only the vector operators ``keep``."""
    return replace(cfg, vector_ops=tuple(keep))


def chain_job(cfg: NPUConfig, m: int, k: int, n: int, *, seed: int = 0) -> tuple[Job, dict]:
    """matmul -> requant -> act (SiLU table) -> residual, with a vector op, a DMA load and a DMA store running
    concurrently with the matrix / vector units (the program's FENCEs order only what conflicts).

    Returns the job (expected C = the golden chain) and the golden arrays of the side outputs
    ``{"act_x": lookup(x_res), "copy": the 1 KiB block}`` with their DRAM addresses."""
    from golden.activations import silu_table
    from golden.elementwise import residual_params
    from golden.gemm import gemm
    from golden.requant import quantize_multipliers, requantize
    from gen.isa import MatMul, VecRequant

    rng = np.random.default_rng(seed)
    a, _ = edge_operands(m, k, seed=seed)
    b = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
    b[:, -1] = -128
    x_res, _ = edge_operands(m, n, seed=seed + 1)
    mult, shift = quantize_multipliers(rng.uniform(0.5, 2.0, n) * 48.0 / (np.sqrt(k) * 75.0))
    table = silu_table(0.06, 0.04)
    rp = residual_params(0.04, 0.05, 0.07)
    block = rng.integers(0, 256, 1024).astype(np.uint8)
    ext = {"a": 0x1000, "b": 0x3000, "copy_src": 0x4400, "rec": 0x5000, "table": 0x5400, "rrec": 0x5500,
           "x": 0x5600, "c": C_EXT, "act_x": 0x7000, "copy": 0x7400}
    sp = {"a": 0x0, "b": 0x1000, "rec": 0x2000, "table": 0x2400, "rrec": 0x2500, "x": 0x2600, "h": 0x2800,
          "g": 0x2a00, "out": 0x2c00, "act_x": 0x3000, "copy": 0x3800}
    if m * cfg.local_stride("spad", n) > 0x200 or m * cfg.local_stride("spad", k) > 0x1000 \
            or k * cfg.local_stride("spad", n) > 0x1000 or n * 8 > 0x400 or m * n * 4 > cfg.acc_bytes:
        raise ValueError(f"chain shape ({m}, {k}, {n}) does not fit the fixed layout")
    image = np.zeros(IMAGE_BYTES, dtype=np.uint8)
    for key, arr in (("a", a), ("b", b), ("x", x_res)):
        image[ext[key]:ext[key] + arr.size] = arr.view(np.uint8).ravel()
    image[ext["rec"]:ext["rec"] + 8 * n] = pack_requant_params(mult, shift)
    image[ext["table"]:ext["table"] + 256] = table.view(np.uint8)
    image[ext["rrec"]:ext["rrec"] + 8] = pack_residual_params(rp.a_multiplier, rp.b_multiplier)
    image[ext["copy_src"]:ext["copy_src"] + 1024] = block
    image[ext["c"]:ext["c"] + m * n] = 0xA5
    prog = [
        DmaLoad("spad", sp["a"], ext["a"], k, m, k), DmaLoad("spad", sp["b"], ext["b"], n, k, n),
        DmaLoad("spad", sp["rec"], ext["rec"], 8 * n, 1, 8 * n), DmaLoad("spad", sp["table"], ext["table"], 256, 1, 256),
        DmaLoad("spad", sp["rrec"], ext["rrec"], 8, 1, 8), DmaLoad("spad", sp["x"], ext["x"], n, m, n),
        Fence(load=0),
        MatMul("int8", "ws", 0, m, k, n, sp["a"], sp["b"], 0),
        VecOp("act", m=m, n=n, src_addr=sp["x"], dst_addr=sp["act_x"], param_page=sp["table"] >> 8, flags=1),
        DmaLoad("spad", sp["copy"], ext["copy_src"], 1024, 1, 1024),
        Fence(matrix=0, vector=0),
        VecRequant(m=m, n=n, src_addr=0, dst_addr=sp["h"], param_page=sp["rec"] >> 8),
        DmaStore("spad", sp["act_x"], ext["act_x"], n, m, n),
        VecOp("act", m=m, n=n, src_addr=sp["h"], dst_addr=sp["g"], param_page=sp["table"] >> 8, flags=1),
        VecOp("residual", m=m, n=n, src_addr=sp["g"], dst_addr=sp["out"], src2_addr=sp["x"],
              param_page=sp["rrec"] >> 8, imm=rp.shift),
        Fence(load=0, store=0, vector=0),
        DmaStore("spad", sp["out"], ext["c"], n, m, n), DmaStore("spad", sp["copy"], ext["copy"], 1024, 1, 1024),
        Halt(),
    ]
    job = program_job(cfg, f"chain_{m}x{k}x{n}", encode_program(prog), image, [Window(0, IMAGE_BYTES)])
    h = requantize(gemm(a, b, a_bits=8, b_bits=8), mult, shift)
    want = residual_add(lookup(h, table), x_res, rp)
    job.expect_c = np.ascontiguousarray(want.astype(np.int8)).view(np.uint8).ravel()
    job.c_range = (ext["c"], ext["c"] + m * n)
    side = {"act_x": (ext["act_x"], lookup(x_res, table).view(np.uint8).ravel()), "copy": (ext["copy"], block)}
    return job, side
