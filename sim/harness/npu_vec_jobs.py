"""NPU jobs that exercise the vector operators (vec.softmax, vec.layernorm, vec.rmsnorm, vec.act, vec.residual,
vec.gate, vec.rope) on the RTL.

Each job is a small program (DMA the operands and the parameter block into the scratchpad, run the vector
instruction(s), store the result) built with :func:`sim.harness.npu_run.program_job`, so its expectations are the ISA
simulator's (status, fault address, pc, the whole final DRAM image); :func:`vec_job` also attaches the golden
operator's output (the operator's entry in ``gen.isa.ops``: ``golden.softmax.softmax``, ``golden.activations.lookup``,
``golden.elementwise.residual_add`` / ``gate_mul`` / ``rope``, ``golden.norms.layernorm`` / ``rmsnorm``), computed
here from the operands, never from either simulator, as the job's expected C region. Parameter blocks, operand
counts and default immediates come from the same registry, so a new operator needs no edit here.

DRAM layout of a job: program at 0, operand A at ``A_EXT``, operand B at ``B_EXT``, the parameter block at
``P_EXT`` (a block larger than 4 KiB: at ``IMAGE_BYTES``, the image grows), the output at ``C_EXT`` (rows packed,
``n`` bytes apart). Scratchpad: A at 0, B and the output after it (word-aligned; or the output over A, in place),
the parameter block on the first free 256-byte page.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from npuforge.spec.isa import (ACT_TABLE_BYTES, PARAM_PAGE_BYTES, DmaLoad, DmaStore, Fence, Halt, Instr, VecOp, encode,
                               encode_program)
from npuforge.gen.isa.layout import Window, pack_requant_params
from npuforge.gen.isa.ops import operator, pack_norm_params, pack_residual_params, pack_rope_params
from npuforge.gen.config.npu import NPUConfig
from npuforge.golden.activations import lookup
from npuforge.golden.elementwise import residual_add, rope
from npuforge.golden.norms import layernorm
from npuforge.sim.harness.npu_run import Job, program_job

__all__ = ["A_EXT", "B_EXT", "P_EXT", "C_EXT", "IMAGE_BYTES", "elem_bytes", "vec_layout", "vec_program", "vec_job",
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
    """The scratchpad parameter block of ``op`` (``gen.isa.ops``): the int8 table (act), the residual or gate record,
    the norm block (``golden.norms`` parameters), the RoPE block (``params`` = (cos, sin) from
    ``golden.elementwise.rope_table``)."""
    return operator(op).block(params)


def golden_vec(op: str, a: np.ndarray, b: np.ndarray | None, params, *, causal: bool = False,
               row_offset: int = 0, heads: int = 1) -> np.ndarray:
    """The golden operator's output (tier 1): int8, or uint8 probabilities for softmax. rope: row i at position
    ``row_offset + i // heads``."""
    flags = heads - 1 if op == "rope" else int(causal)
    return operator(op).golden(a, b, params, flags=flags, imm=row_offset)


def elem_bytes(op: str, flags: int = 0) -> tuple[int, int, int]:
    """Bytes per element of A, B and the output of ``op`` with ``flags`` (``spec.vector_ops`` ``elem_bytes``; a
    reserved flags value, for a faulting program: 1, 1, 1)."""
    try:
        return operator(op).spec.elem_bytes(VecOp(op, m=1, n=1, src_addr=0, dst_addr=0, flags=flags))
    except ValueError:
        return 1, 1, 1


def vec_layout(cfg: NPUConfig, m: int, n: int, *, nparam: int = ACT_TABLE_BYTES, in_place: bool = False,
               elem: tuple[int, int, int] = (1, 1, 1)) -> dict:
    """Scratchpad addresses of A, B, the output and the parameter page for [m, n] operands of ``elem`` bytes per
    element (A, B, output; ``in_place``: the output over A, no B)."""
    rows_a, rows_b, rows_o = (m * cfg.local_stride("spad", n * e) for e in elem)
    b = rows_a
    dst = 0 if in_place else rows_a + rows_b
    page = -(-(max(rows_a, rows_o) if in_place else dst + rows_o) // PARAM_PAGE_BYTES)
    if page * PARAM_PAGE_BYTES + nparam > cfg.spad_bytes:
        raise ValueError(f"operands [{m}, {n}] and a {nparam}-byte parameter block do not fit the "
                         f"{cfg.spad_bytes}-byte scratchpad")
    return {"a": 0, "b": b, "dst": dst, "page": page}


def _p_ext(nparam: int) -> int:
    """DRAM address of the parameter block: P_EXT, or past the standard image when it is larger than 4 KiB."""
    return P_EXT if nparam <= C_EXT - P_EXT else IMAGE_BYTES


def vec_program(cfg: NPUConfig, op: str, m: int, n: int, *, flags: int = 0, imm: int = 0, repeat: int = 1,
                params_bytes: int | None = None, in_place: bool = False, **overrides) -> list[Instr]:
    """Load A (and B), the parameter block, run ``op`` ``repeat`` times, store the output, halt.

    ``overrides`` replace fields of the vector instruction (to build faulting programs)."""
    spec = operator(op).spec
    two = spec.operands == 2
    nparam = params_bytes or spec.param_bytes()
    ea, eb, eo = elem_bytes(op, flags)
    lay = vec_layout(cfg, m, n, nparam=nparam, in_place=in_place, elem=(ea, eb, eo))
    prog: list[Instr] = [DmaLoad("spad", lay["a"], A_EXT, n * ea, m, n * ea)]
    if two:
        prog.append(DmaLoad("spad", lay["b"], B_EXT, n * eb, m, n * eb))
    prog += [DmaLoad("spad", lay["page"] * PARAM_PAGE_BYTES, _p_ext(nparam), nparam, 1, nparam), Fence(load=0)]
    fields = dict(op=op, m=m, n=n, src_addr=lay["a"], dst_addr=lay["dst"], src2_addr=lay["b"] if two else 0,
                  param_page=lay["page"], flags=flags, imm=imm)
    fields.update(overrides)
    prog += [VecOp(**fields)] * repeat
    prog += [Fence(vector=0), DmaStore("spad", lay["dst"], C_EXT, n * eo, m, n * eo), Halt()]
    return prog


def _le_bytes(x: np.ndarray) -> np.ndarray:
    """The little-endian bytes of an integer array, row-major."""
    return np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"))).view(np.uint8).ravel()


def _image(a: np.ndarray, b: np.ndarray | None, block: np.ndarray, out_bytes: int | None = None) -> np.ndarray:
    if a.nbytes > _MAX_BYTES:
        raise ValueError(f"operand of {a.nbytes} bytes exceeds the job layout's {_MAX_BYTES}")
    p_ext = _p_ext(block.size)
    image = np.zeros(max(IMAGE_BYTES, -(-(p_ext + block.size) // 4096) * 4096), dtype=np.uint8)
    image[A_EXT:A_EXT + a.nbytes] = _le_bytes(a)
    if b is not None:
        image[B_EXT:B_EXT + b.nbytes] = _le_bytes(b)
    image[p_ext:p_ext + block.size] = block
    # Poison the output region so a store that never happens (or a short one) cannot pass.
    image[C_EXT:C_EXT + (a.size if out_bytes is None else out_bytes)] = 0xA5
    return image


def vec_job(cfg: NPUConfig, name: str, op: str, a: np.ndarray, b: np.ndarray | None, params, *,
            flags: int = 0, imm: int | None = None, repeat: int = 1, in_place: bool = False) -> Job:
    """One vector operator on [m, n] operands (int8; softmax scores int8 / int16 / int32 by ``flags``, given as
    arrays of that type); expectations from the ISA simulator and the golden operator."""
    m, n = a.shape
    entry = operator(op)
    if imm is None:
        imm = entry.imm_of(params)
    block = entry.block(params)
    eo = elem_bytes(op, flags)[2]
    prog = vec_program(cfg, op, m, n, flags=flags, imm=imm, repeat=repeat, params_bytes=block.size,
                       in_place=in_place)
    image = _image(a, b, block, m * n * eo)
    job = program_job(cfg, name, encode_program(prog), image, [Window(0, image.size)])
    want = np.asarray(entry.golden(a, b, params, flags=flags, imm=imm))
    assert want.dtype.itemsize == eo, (want.dtype, eo)
    job.expect_c = _le_bytes(want)
    job.c_range = (C_EXT, C_EXT + m * n * eo)
    job.c_elem_bytes = eo
    job.extra.update(op=op, elements=m * n * repeat)
    return job


def raw_job(cfg: NPUConfig, name: str, program: Sequence[Instr | bytes], image: np.ndarray) -> Job:
    """A program given as instructions or raw 16-byte words (for encodings the ISA classes refuse)."""
    blob = b"".join(p if isinstance(p, bytes) else encode(p) for p in program)
    return program_job(cfg, name, blob, image, [Window(0, image.size)])


def without_vector(cfg: NPUConfig, keep: Sequence[str] = ()) -> NPUConfig:
    """The same design point with only the vector operators ``keep``."""
    return replace(cfg, vector_ops=tuple(keep))


def chain_job(cfg: NPUConfig, m: int, k: int, n: int, *, seed: int = 0) -> tuple[Job, dict]:
    """matmul -> requant -> act (SiLU table) -> residual, with a vector op, a DMA load and a DMA store running
    concurrently with the matrix / vector units (the program's FENCEs order only what conflicts).

    Returns the job (expected C = the golden chain) and the golden arrays of the side outputs
    ``{"act_x": lookup(x_res), "copy": the 1 KiB block}`` with their DRAM addresses."""
    from npuforge.golden.activations import silu_table
    from npuforge.golden.elementwise import residual_params
    from npuforge.golden.gemm import gemm
    from npuforge.golden.requant import quantize_multipliers, requantize
    from npuforge.spec.isa import MatMul, VecRequant

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


def norm_rope_chain_job(cfg: NPUConfig, *, seed: int = 0) -> tuple[Job, dict]:
    """Two chains on one program: residual -> layernorm (a pre-norm block's ``x + attn`` then LN) and
    matmul -> requant -> rope (a Q projection of 4 tokens x 2 heads of head_dim 16, rotated at positions 3..6),
    the rope overlapping the second chain's residual in the vector unit's queue order.

    Returns the job (expected C = the LayerNorm output) and the golden side output ``{"rope": (addr, bytes)}``."""
    from npuforge.golden.elementwise import residual_params, rope_table
    from npuforge.golden.gemm import gemm
    from npuforge.golden.norms import layernorm_params
    from npuforge.golden.requant import quantize_multipliers, requantize
    from npuforge.spec.isa import MatMul, VecRequant

    rng = np.random.default_rng(seed)
    t, hidden, hd, heads = 4, 24, 16, 2
    x, y = edge_operands(t, hidden, seed=seed)
    rp = residual_params(0.05, 0.04, 0.07)
    lp = layernorm_params(0.07, rng.uniform(0.5, 1.5, hidden), rng.uniform(-0.5, 0.5, hidden), 0.04)
    a, _ = edge_operands(t, hidden, seed=seed + 1)                      # activations [t, hidden]
    w = rng.integers(-128, 128, size=(hidden, heads * hd)).astype(np.int8)
    mult, shift = quantize_multipliers(rng.uniform(0.5, 2.0, heads * hd) * 48.0 / (np.sqrt(hidden) * 75.0))
    cos, sin = rope_table(hd, 8)
    ln_block, rope_block = pack_norm_params(lp), pack_rope_params(cos, sin)
    ext = {"x": 0x1000, "y": 0x1100, "a": 0x1200, "w": 0x1300, "rec": 0x1800, "rrec": 0x1a00, "ln": 0x1c00,
           "rope": 0x2000, "c": C_EXT, "q": 0x7000}
    sp = {"x": 0x0, "y": 0x100, "r": 0x200, "ln": 0x300, "a": 0x400, "w": 0x500, "rec": 0x800, "rrec": 0xa00,
          "lnp": 0xb00, "ropep": 0xd00, "q": 0x1000, "qr": 0x1100}
    image = np.zeros(IMAGE_BYTES, dtype=np.uint8)
    for key, arr in (("x", x), ("y", y), ("a", a), ("w", w)):
        image[ext[key]:ext[key] + arr.size] = arr.view(np.uint8).ravel()
    image[ext["rec"]:ext["rec"] + 8 * heads * hd] = pack_requant_params(mult, shift)
    image[ext["rrec"]:ext["rrec"] + 8] = pack_residual_params(rp.a_multiplier, rp.b_multiplier)
    image[ext["ln"]:ext["ln"] + ln_block.size] = ln_block
    image[ext["rope"]:ext["rope"] + rope_block.size] = rope_block
    image[ext["c"]:ext["c"] + t * hidden] = 0xA5
    qn = heads * hd
    prog = [
        DmaLoad("spad", sp["x"], ext["x"], hidden, t, hidden), DmaLoad("spad", sp["y"], ext["y"], hidden, t, hidden),
        DmaLoad("spad", sp["a"], ext["a"], hidden, t, hidden), DmaLoad("spad", sp["w"], ext["w"], qn, hidden, qn),
        DmaLoad("spad", sp["rec"], ext["rec"], 8 * qn, 1, 8 * qn), DmaLoad("spad", sp["rrec"], ext["rrec"], 8, 1, 8),
        DmaLoad("spad", sp["lnp"], ext["ln"], ln_block.size, 1, ln_block.size),
        DmaLoad("spad", sp["ropep"], ext["rope"], rope_block.size, 1, rope_block.size),
        Fence(load=0),
        MatMul("int8", "ws", 0, t, hidden, qn, sp["a"], sp["w"], 0),
        VecOp("residual", m=t, n=hidden, src_addr=sp["x"], dst_addr=sp["r"], src2_addr=sp["y"],
              param_page=sp["rrec"] >> 8, imm=rp.shift),
        VecOp("layernorm", m=t, n=hidden, src_addr=sp["r"], dst_addr=sp["ln"], param_page=sp["lnp"] >> 8),
        Fence(matrix=0),
        VecRequant(m=t, n=qn, src_addr=0, dst_addr=sp["q"], param_page=sp["rec"] >> 8),
        # [t, heads * hd] row-major is [t * heads, hd] head vectors at the 16-byte stride: token i, head h = row
        # 2i + h at position 3 + i.
        VecOp("rope", m=t * heads, n=hd, src_addr=sp["q"], dst_addr=sp["qr"], param_page=sp["ropep"] >> 8,
              flags=heads - 1, imm=3),
        Fence(vector=0),
        DmaStore("spad", sp["ln"], ext["c"], hidden, t, hidden), DmaStore("spad", sp["qr"], ext["q"], qn, t, qn),
        Halt(),
    ]
    job = program_job(cfg, "norm_rope_chain", encode_program(prog), image, [Window(0, IMAGE_BYTES)])
    want = layernorm(residual_add(x, y, rp), lp)
    job.expect_c = np.ascontiguousarray(want).view(np.uint8).ravel()
    job.c_range = (ext["c"], ext["c"] + t * hidden)
    job.c_elem_bytes = 1
    q = requantize(gemm(a, w, a_bits=8, b_bits=8), mult, shift).reshape(t * heads, hd)
    q_rot = rope(q, 3 + np.arange(t * heads) // heads, cos, sin)
    return job, {"rope": (ext["q"], q_rot.astype(np.int8).view(np.uint8).ravel())}
