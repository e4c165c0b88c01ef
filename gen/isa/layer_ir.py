"""The records a layer program is made of, shared by :class:`~npuforge.gen.isa.builder.LayerBuilder` (which
collects them) and :class:`~npuforge.gen.isa.layer_program.LayerProgram` (which runs the golden tier over them):
tensors and their views, root buffers, the GEMM and vector-operator nodes, and the byte packing of element values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from npuforge.gen.isa.layout import cdiv
from npuforge.golden.models.intops import exact_matmul
from npuforge.golden.quant import pack_int4
from npuforge.spec.block_scale import BLOCK

__all__ = ["ELEMENT_BITS", "UNSET", "Tensor", "Root", "GemmNode", "VectorNode", "written_root", "written_roots",
           "to_bytes",
           "BLOCK_CHUNK", "block_matrix", "block_product"]

#: Element widths a tensor may have (int4 packs two elements per byte along the columns, low nibble first).
ELEMENT_BITS = (4, 8, 16, 32)
UNSET = np.iinfo(np.int64).min   # reference value of an element no operator has written


@dataclass(frozen=True)
class Tensor:
    """A [rows, cols] block of root buffer ``root`` starting at element (r0, c0), elements of ``bits`` bits, rows
    ``pitch`` bytes apart in external memory (the root's row bytes)."""
    root: str
    rows: int
    cols: int
    bits: int
    pitch: int
    r0: int = 0
    c0: int = 0

    @property
    def row_bytes(self) -> int:
        """Bytes of one row of this view (int4: two elements per byte)."""
        return cdiv(self.cols * self.bits, 8)

    @property
    def offset(self) -> int:
        """Bytes from the root's base to element (r0, c0)."""
        return self.r0 * self.pitch + self.c0 * self.bits // 8

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    def view(self, rows: slice | None = None, cols: slice | None = None) -> "Tensor":
        """The block ``[rows, cols]`` of this tensor (unit-step slices within it; int4 column views start and end
        on a byte)."""
        r_lo, r_hi, r_step = (rows or slice(None)).indices(self.rows)
        c_lo, c_hi, c_step = (cols or slice(None)).indices(self.cols)
        if r_step != 1 or c_step != 1 or r_hi <= r_lo or c_hi <= c_lo:
            raise ValueError(f"a view of {self.root} must be a non-empty unit-step block, got rows {rows}, "
                             f"cols {cols} of [{self.rows}, {self.cols}]")
        if self.bits == 4 and (c_lo % 2 or (c_hi % 2 and c_hi != self.cols)):
            raise ValueError(f"an int4 view of {self.root} must start and end on a byte (even columns), got "
                             f"columns {c_lo}:{c_hi}")
        return dataclasses.replace(self, rows=r_hi - r_lo, cols=c_hi - c_lo, r0=self.r0 + r_lo, c0=self.c0 + c_lo)

    def reshape(self, rows: int, cols: int) -> "Tensor":
        """The same bytes as ``[rows, cols]`` rows of ``cols`` elements back to back (e.g. Q [T, heads * head_dim]
        as one row per (token, head) for vec.rope, or back). Only a view whose rows are contiguous in memory (full
        root rows, pitch = row bytes) can be reshaped, into a shape with the same element count."""
        if rows * cols != self.rows * self.cols or rows < 1 or cols < 1:
            raise ValueError(f"reshape of {self.root} [{self.rows}, {self.cols}] needs the same element count, got "
                             f"[{rows}, {cols}]")
        if self.pitch != self.row_bytes or self.bits == 4 or self.c0:
            raise ValueError(f"only whole contiguous rows of {self.root} can be reshaped (a view of full rows of a "
                             f"byte-element root), got a [{self.rows}, {self.cols}] view at column {self.c0}")
        first = self.r0 * self.cols          # element index of the view's first element in the root
        if first % cols:
            raise ValueError(f"reshape of {self.root} into rows of {cols} elements must start on such a row, got "
                             f"element {first}")
        return Tensor(self.root, rows, cols, self.bits, cols * self.bits // 8, r0=first // cols)


@dataclass
class Root:
    name: str
    rows: int
    cols: int
    bits: int
    values: np.ndarray | None       # int64 [rows, cols] for a constant; None for a buffer
    raw: np.ndarray | None = None   # uint8 bytes for a raw constant (parameter blocks)
    host: bool = False              # a buffer the host writes before a program reads it (LayerBuilder.input)

    @property
    def pitch(self) -> int:
        return cdiv(self.cols * self.bits, 8)

    @property
    def nbytes(self) -> int:
        return self.raw.size if self.raw is not None else self.rows * self.pitch


def written_root(op) -> str:
    """The root buffer an operator writes (its main output)."""
    return op.out.root if isinstance(op, GemmNode) else op.dst.root


def written_roots(op) -> list[str]:
    """Every root buffer an operator writes: the main output and a token scale's k_r."""
    side = getattr(op, "side", None)
    return [written_root(op)] + ([side.root] if side is not None else [])


def to_bytes(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 [rows, row bytes] of int values (little-endian; int4 two per byte along the row)."""
    v = np.asarray(values, dtype=np.int64)
    if bits == 4:
        return pack_int4(v)
    dtype = {8: "<i1", 16: "<i2", 32: "<i4"}[bits]
    return np.ascontiguousarray(v.astype(dtype)).view(np.uint8).reshape(v.shape[0], -1)


@dataclass
class GemmNode:
    a: Tensor
    b: Tensor
    out: Tensor
    mode: str
    multiplier: np.ndarray
    shift: np.ndarray
    zero_point: int
    params: str                     # root of the requant records
    tiles: tuple[int, int, int] | None
    order: str | None
    bias: np.ndarray | None = None  # int64 [N] in accumulator units, stored as int32 at root ``bias_root``
    bias_root: str = ""
    b_trans: bool = False           # b is stored [N, K] (B^T: the K matrix of Q.K^T as written)
    acc_bound: int | None = None    # proven |partial sum| bound from constant B (K past the mode's worst case)
    blocks: str = ""                # block-scaled B: the root of its block records (MATMUL.blocks) ...
    block_do: tuple | None = None   # ... and the view's D, O int64 [K / 32, N] (the reference)
    row_shift: Tensor | None = None  # per-row shifts k_r [M, 1] uint8 (VEC_REQUANT.row_shift; no bias, zero point 0)
    b16: bool = False               # int16 A and B (MATMUL.b16 byte planes, the int16 KV cache): 48-bit, requant wide


@dataclass
class VectorNode:
    op: str
    src: Tensor
    dst: Tensor
    src2: Tensor | None
    params: object                  # the golden parameters (reference) ...
    block: str                      # ... and the root holding their packed block ("" : the op reads none)
    flags: int
    imm: int
    side: Tensor | None = None      # a second output: the token scale's k_r [rows, 1] (vec.rmsnorm flags 7)


#: Columns of B = D s + O formed at a time (a 49152-row LM head would otherwise need K x N int64 at once).
BLOCK_CHUNK = 4096


def block_matrix(s: np.ndarray, d: np.ndarray, o: np.ndarray) -> np.ndarray:
    """B = D s + O (int64 [K, N]) from codes s [K, N] and block multipliers d, o [K / 32, N]."""
    return np.repeat(d, BLOCK, axis=0) * np.asarray(s, dtype=np.int64) + np.repeat(o, BLOCK, axis=0)


def block_product(a: np.ndarray, s: np.ndarray, d: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The exact a @ (D s + O) (int64 [M, N]), formed :data:`BLOCK_CHUNK` columns at a time."""
    n = s.shape[1]
    return np.concatenate([exact_matmul(a, block_matrix(s[:, c:c + BLOCK_CHUNK], d[:, c:c + BLOCK_CHUNK], o[:, c:c + BLOCK_CHUNK]))
                           for c in range(0, n, BLOCK_CHUNK)], axis=1)
