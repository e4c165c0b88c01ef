"""The -pt down projection as one layer program, shared by the ISA-simulator test (tests/gen/isa/test_isasim_pt.py)
and the RTL test (tests/rtl/npu/test_npu_pt_cocotb.py): g = a * up (vec.gate flags 5), (g', k) = token_shift(g, 16)
(vec.rmsnorm flags 7), y = requant_wide(g' @ W, M, shift - k) (VEC_REQUANT.row_shift; wide for the Q4_1 blocks).
The expected y comes from the golden functions called directly, not from the builder's reference. Also the two
tests' byte helpers (little-endian operands, a DRAM image)."""

from __future__ import annotations

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.builder import LayerBuilder
from npuforge.gen.isa.layer_program import LayerProgram
from npuforge.golden.models.intops import exact_matmul, requant_wide, token_shift
from npuforge.golden.models.qlinear import blocks_q4_1, linear_apply, make_linear, weight_from_blocks
from npuforge.golden.requant import quantize_multipliers
from npuforge.spec.isa import VecRequant
from npuforge.spec.vector_ops import GATE_PRODUCT_FLAGS


def le_bytes(x: np.ndarray) -> np.ndarray:
    """``x`` as little-endian bytes (uint8, flat), the layout of DRAM and the scratchpad."""
    return np.ascontiguousarray(x.astype(x.dtype.newbyteorder("<"))).view(np.uint8).ravel()


def dram_image(size: int, **at) -> np.ndarray:
    """A ``size``-byte DRAM image filled with 0x11, each ``(addr, raw bytes)`` of ``at`` placed at its address."""
    mem = np.full(size, 0x11, dtype=np.uint8)
    for addr, raw in at.values():
        mem[addr:addr + raw.size] = raw
    return mem


def pt_down_program(cfg: NPUConfig, a: np.ndarray, up: np.ndarray, weights: str, rng: np.random.Generator,
                    hidden: int = 24) -> tuple[LayerProgram, np.ndarray]:
    """The program for int16 operands ``a``, ``up`` [s, ffn] and random ``weights`` ("q4_1": GGUF blocks through
    make_linear; "int8": per-channel codes and multipliers), and golden y [s, hidden] (int32)."""
    s, ffn = a.shape
    lb = LayerBuilder(cfg)
    at, upt = lb.constant("a", a, 16), lb.constant("up", up, 16)
    g, gs, k = lb.buffer("g", s, ffn, 32), lb.buffer("gs", s, ffn, 16), lb.buffer("k", s, 1, 8)
    y = lb.buffer("y", s, hidden, 32)          # the down projection's int32 residual-stream output
    lb.vector("gate", at, g, None, src2=upt, flags=GATE_PRODUCT_FLAGS)
    lb.token_scale(g, gs, k)
    product = a.astype(np.int64) * up
    if weights == "q4_1":
        w = weight_from_blocks(blocks_q4_1(rng.normal(scale=0.05, size=(hidden, ffn))))
        lin = make_linear(w, None, in_scale=2.0 ** -22, out_scale=2.0 ** -20, out_bits=32)
        lb.gemm(gs, lb.block_weight("w", w), y, lin.multiplier, lin.shift, row_shift=k)
        want = linear_apply(product, lin, token_bits=16)
    else:
        wv = rng.integers(-127, 128, (ffn, hidden))
        mult, shift = quantize_multipliers(rng.uniform(0.5, 2.0, hidden) * 2.0 ** -20)
        lb.gemm(gs, lb.constant("w", wv), y, mult, shift, row_shift=k)
        xs, kk = token_shift(product, 16)
        want = requant_wide(exact_matmul(xs, wv), mult, shift[None, :] - kk, out_bits=32)
    prog = lb.build()
    assert any(isinstance(i, VecRequant) and i.row_shift for i in prog.program)
    return prog, want
