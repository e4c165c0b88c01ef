"""Layer programs: several operators over named DRAM tensors, lowered into one NPU program and one memory image.

A :class:`LayerBuilder` collects

* **tensors**: root buffers in external memory, either constants (weights, parameter blocks, the layer input:
  their bytes are in the image) or buffers (activations the program writes; poisoned with ``0xA5`` so a byte the
  program never stores shows), and **views** of them (:meth:`Tensor.view`: a block of rows and columns at the
  root's row pitch, e.g. one attention head's columns of Q);
* **block weights** (:meth:`LayerBuilder.block_weight`): a checkpoint's own blocks (GGUF Q4_1 / Q4_0 / Q8_0 as
  ``golden.models.qlinear.BlockInts``) stored as the codes [K, N] plus a block-record root; a :meth:`gemm` with
  one as ``b`` is a block-scaled MATMUL (``spec.block_scale``: 48-bit result, ``VEC_REQUANT.wide``);
* **operators** in program order: :meth:`LayerBuilder.gemm` (``out = requant(a @ b)``, tiled and double-buffered
  by :func:`gen.isa.compiler.plan_gemm`, reading and writing views at their pitches) and
  :meth:`LayerBuilder.vector` (a vector operator of ``gen.isa.ops``, tiled over rows with two scratchpad slots so
  the loads of tile i+1 overlap the operator on tile i).

:meth:`LayerBuilder.build` places the program at address 0 and the roots after it (constants first, so a
two-window NPU gets a read-only window over them and a read-write one over the buffers), concatenates the
operators' instructions, and fences the whole with :func:`gen.isa.compiler.insert_fences`: a later operator
waits only for the instructions whose bytes it touches (a DRAM buffer it loads, a scratchpad slot it reuses).
Intermediate tensors go through DRAM.

:meth:`LayerProgram.reference` is the golden tier: every buffer computed operator by operator with the golden
functions (``golden.gemm`` + ``golden.requant``, ``gen.isa.ops`` references), from the constants alone, never from
a simulator. The ISA simulator and the RTL must reproduce every buffer byte for byte.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import (POISON_BYTE, SlotPhase, gemm_body_phased, insert_fences, plan_gemm,
                                       same_tiling)
from npuforge.gen.isa.layout import Window, footprint, pack_block_weight, pack_requant_params
from npuforge.golden.models.intops import exact_matmul, requant_wide
from npuforge.spec.block_scale import BLOCK, BLOCK_RECORD_BYTES
from npuforge.gen.isa.ops import operator
from npuforge.spec.vector_ops import ROPE_POSITIONS, rope_heads
from npuforge.golden.gemm import MODES, gemm, max_reduction_length
from npuforge.golden.quant import pack_int4
from npuforge.golden.requant import requantize, requantize_biased
from npuforge.spec.isa import (INSTR_BYTES, PARAM_PAGE_BYTES, TILE_MAX, DmaLoad, DmaStore, Halt, Instr, VecOp,
                               encode_program)

__all__ = ["Tensor", "LayerBuilder", "LayerProgram", "ELEMENT_BITS"]

#: Element widths a tensor may have (int4 packs two elements per byte along the columns, low nibble first).
ELEMENT_BITS = (4, 8, 16, 32)
_ALIGN = 64           # byte alignment of every root buffer in external memory
_DATA_ALIGN = 4096    # the first root starts on a 4 KiB boundary after the program
_UNSET = np.iinfo(np.int64).min   # reference value of an element no operator has written


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _align(x: int, a: int) -> int:
    return _cdiv(x, a) * a


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
        return _cdiv(self.cols * self.bits, 8)

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
class _Root:
    name: str
    rows: int
    cols: int
    bits: int
    values: np.ndarray | None       # int64 [rows, cols] for a constant; None for a buffer
    raw: np.ndarray | None = None   # uint8 bytes for a raw constant (parameter blocks)
    host: bool = False              # a buffer the host writes before a program reads it (LayerBuilder.input)

    @property
    def pitch(self) -> int:
        return _cdiv(self.cols * self.bits, 8)

    @property
    def nbytes(self) -> int:
        return self.raw.size if self.raw is not None else self.rows * self.pitch


def _written_root(op) -> str:
    """The root buffer an operator writes."""
    return op.out.root if isinstance(op, _Gemm) else op.dst.root


def _to_bytes(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 [rows, row bytes] of int values (little-endian; int4 two per byte along the row)."""
    v = np.asarray(values, dtype=np.int64)
    if bits == 4:
        return pack_int4(v)
    dtype = {8: "<i1", 16: "<i2", 32: "<i4"}[bits]
    return np.ascontiguousarray(v.astype(dtype)).view(np.uint8).reshape(v.shape[0], -1)


@dataclass
class _Gemm:
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


@dataclass
class _Vector:
    op: str
    src: Tensor
    dst: Tensor
    src2: Tensor | None
    params: object                  # the golden parameters (reference) ...
    block: str                      # ... and the root holding their packed block
    flags: int
    imm: int


class LayerBuilder:
    """Collects tensors and operators for one NPU program (see the module docstring)."""

    def __init__(self, cfg: NPUConfig):
        if not isinstance(cfg, NPUConfig):
            raise ValueError(f"cfg must be an NPUConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self._roots: dict[str, _Root] = {}
        self._ops: list[_Gemm | _Vector] = []
        self._starts: dict[str, int] = {}     # program name -> index of its first operator
        # block weight codes root -> (records root, D^T, O^T int64 [K / 32, N])
        self._blocks: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}

    # -- tensors ------------------------------------------------------------------------------------------------
    def _add(self, root: _Root) -> Tensor:
        if root.name in self._roots:
            raise ValueError(f"tensor {root.name!r} is already defined")
        if root.bits not in ELEMENT_BITS:
            raise ValueError(f"tensor {root.name!r}: bits must be one of {ELEMENT_BITS}, got {root.bits!r}")
        if root.rows < 1 or root.cols < 1:
            raise ValueError(f"tensor {root.name!r} must have at least one row and column, got "
                             f"[{root.rows}, {root.cols}]")
        self._roots[root.name] = root
        return Tensor(root.name, root.rows, root.cols, root.bits, root.pitch)

    def constant(self, name: str, values, bits: int = 8) -> Tensor:
        """A [rows, cols] integer constant (weights, the layer input) stored in the image; values must fit
        ``bits`` signed bits."""
        v = np.asarray(values)
        if v.ndim != 2 or v.dtype.kind not in "iu":
            raise ValueError(f"constant {name!r} must be a 2-D integer array, got {v.dtype} {v.shape}")
        v = v.astype(np.int64)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"constant {name!r} must be in [{lo}, {hi}] ({bits}-bit), got "
                             f"{int(v.min() if v.min() < lo else v.max())}")
        return self._add(_Root(name, v.shape[0], v.shape[1], bits, v))

    def buffer(self, name: str, rows: int, cols: int, bits: int = 8) -> Tensor:
        """A [rows, cols] buffer the program writes (poisoned in the image); 8, 16 or 32-bit elements."""
        if bits == 4:
            raise ValueError(f"buffer {name!r}: no operator writes int4 elements; bits must be 8, 16 or 32")
        return self._add(_Root(name, rows, cols, bits, None))

    def block_weight(self, name: str, weight) -> Tensor:
        """A block-scaled weight W [N, K] (``golden.models.qlinear.IntWeight`` from ``weight_from_blocks``, or its
        ``BlockInts``) as the B operand [K, N] of ``x @ W^T``: root ``name`` holds the codes s^T (int4 for Q4_x, int8
        for Q8_0; ``gen.isa.layout.pack_block_weight``), root ``name + ".blocks"`` the block records [K / 32, 4 N]
        (D, O int16). Pass the returned tensor (or a view of whole blocks of rows) as ``b`` of :meth:`gemm`."""
        blocks = getattr(weight, "blocks", weight)
        if blocks is None or not all(hasattr(blocks, f) for f in ("s", "d", "o", "bits")):
            raise ValueError(f"block weight {name!r} needs an IntWeight from weight_from_blocks (with .blocks) or a "
                             f"BlockInts, got {type(weight).__name__}")
        img = pack_block_weight(blocks.s, blocks.d, blocks.o, bits=blocks.bits)
        t = self.constant(name, np.asarray(blocks.s, dtype=np.int64).T, bits=blocks.bits)
        rec = f"{name}.blocks"
        self._add(_Root(rec, img.records.shape[0], img.records.shape[1], 8, None, raw=img.records.ravel()))
        self._blocks[name] = (rec, np.asarray(blocks.d, dtype=np.int64).T, np.asarray(blocks.o, dtype=np.int64).T)
        return t

    def input(self, name: str, rows: int, cols: int, bits: int = 8) -> Tensor:
        """A [rows, cols] buffer the host writes between programs (:meth:`LayerProgram.write`), e.g. the embedding
        rows of a token generated by the previous program: operators may read it before any operator writes it."""
        t = self.buffer(name, rows, cols, bits)
        self._roots[name].host = True
        return t

    def _raw(self, name: str, raw: np.ndarray) -> str:
        raw = np.asarray(raw, dtype=np.uint8).ravel()
        self._add(_Root(name, 1, raw.size, 8, None, raw=raw))
        return name

    # -- programs -----------------------------------------------------------------------------------------------
    def program(self, name: str) -> None:
        """Start program ``name``: the operators added from now on belong to it. Several programs share one image
        (the roots are placed once), run one after another on the memory the previous one left (e.g. a prefill,
        then one program per decode step appending to a KV cache). Without a call, all operators form one
        program named "main"."""
        if not isinstance(name, str) or not name or name in self._starts:
            raise ValueError(f"program name must be a new non-empty string, got {name!r}")
        if not self._starts and self._ops:
            self._starts["main"] = 0
        if self._starts and list(self._starts.values())[-1] == len(self._ops):
            raise ValueError(f"program {list(self._starts)[-1]!r} has no operator")
        self._starts[name] = len(self._ops)

    def _segments(self) -> dict[str, list]:
        starts = self._starts or {"main": 0}
        names, firsts = list(starts), list(starts.values()) + [len(self._ops)]
        return {n: self._ops[firsts[i]:firsts[i + 1]] for i, n in enumerate(names)}

    # -- operators ----------------------------------------------------------------------------------------------
    def gemm(self, a: Tensor, b: Tensor, out: Tensor, multiplier, shift, *, zero_point: int = 0, bias=None,
             b_trans: bool = False, name: str | None = None, tiles: tuple[int, int, int] | None = None,
             order: str | None = None) -> None:
        """``out = requantize(a @ b (+ bias), multiplier, shift, zero_point)`` with ``out.bits`` (8, 16 or 32)
        output bits; the mode follows the operand widths (a int8/int16, b int8/int4). ``bias``: int32 [N] in
        accumulator units (VEC_REQUANT.bias). ``b_trans``: ``b`` is stored [N, K] and the product is ``a @ b.T``
        (MATMUL.b_trans, int8 B: Q.K^T with K as its projection wrote it).

        ``b`` a :meth:`block_weight` (or a view of whole 32-row blocks of it) and ``a`` int16: a block-scaled linear,
        ``out = golden.models.intops.requant_wide(a @ (D s + O) (+ bias))`` (mode w4a16 / w8a16 with MATMUL.blocks,
        VEC_REQUANT.wide; zero_point 0; the NPU needs ``block_scaled``)."""
        mode = next((m for m, bits in MODES.items() if bits == (a.bits, b.bits)), None)
        if mode is None:
            raise ValueError(f"no MATMUL mode takes a {a.bits}-bit A and a {b.bits}-bit B "
                             f"(modes: {', '.join(f'{m} {x}x{y}' for m, (x, y) in MODES.items())})")
        k, n = (b.cols, b.rows) if b_trans else (b.rows, b.cols)
        if a.cols != k or out.shape != (a.rows, n):
            raise ValueError(f"gemm shapes do not chain: a {a.shape} @ b{'.T' if b_trans else ''} {b.shape} -> "
                             f"out {out.shape}")
        if out.bits not in (8, 16, 32):
            raise ValueError(f"gemm output must be 8, 16 or 32 bits, got {out.bits}")
        if a.bits == 4:
            raise ValueError("int4 activations (row-pair packed along M) are not layer-program tensors; use int8")
        for t in (a, b):
            r = self._roots[t.root]
            if r.values is None and not r.host and t.root not in self._written():
                raise ValueError(f"gemm reads {t.root!r} before any operator writes it")
        mult, sh = np.asarray(multiplier, dtype=np.int64), np.asarray(shift, dtype=np.int64)
        if mult.shape != (n,) or sh.shape != (n,):
            raise ValueError(f"multiplier and shift must be per output column [{n}], got {mult.shape} and "
                             f"{sh.shape}")
        name = name or f"gemm{len(self._ops)}"
        blocks = b.root in self._blocks
        if blocks:
            if b_trans or zero_point or b.r0 % BLOCK or b.rows % BLOCK or b.pitch != self._roots[b.root].pitch:
                raise ValueError(f"a block-scaled gemm on {b.root!r} needs whole 32-row blocks of B (rows "
                                 f"{b.r0}:{b.r0 + b.rows}) of the weight as stored (no reshape), no b_trans and "
                                 f"zero_point 0")
            acc_bound = self._block_bound(a, b)
        else:
            acc_bound = self._acc_bound(a, b, b_trans) if k > max_reduction_length(a.bits, b.bits) else None
        # The plan is made here so a shape the memories cannot hold is refused where the operator is added.
        plan_gemm(self.cfg, a.rows, k, n, mode=mode, out_bits=out.bits, tiles=tiles, order=order,
                  bias=bias is not None, b_trans=b_trans, acc_bound=acc_bound, blocks=blocks)
        params = self._raw(f"{name}.requant", pack_requant_params(mult, sh))
        bias_root, bias_v = "", None
        if bias is not None:
            bias_v = np.asarray(bias, dtype=np.int64)
            if bias_v.shape != (n,) or bias_v.min() < -(1 << 31) or bias_v.max() >= 1 << 31:
                raise ValueError(f"bias must be int32 per output column [{n}], got shape {bias_v.shape}")
            bias_root = self._raw(f"{name}.bias", bias_v.astype("<i4").view(np.uint8))
        self._ops.append(_Gemm(a, b, out, mode, mult, sh, int(zero_point), params, tiles, order, bias_v,
                               bias_root, bool(b_trans), acc_bound, self._blocks[b.root][0] if blocks else "",
                               self._block_do(b) if blocks else None))

    def _block_do(self, b: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """D, O int64 [rows / 32, cols] of a view of a block weight."""
        _, d_t, o_t = self._blocks[b.root]
        sl = (slice(b.r0 // BLOCK, (b.r0 + b.rows) // BLOCK), slice(b.c0, b.c0 + b.cols))
        return d_t[sl], o_t[sl]

    def _block_bound(self, a: Tensor, b: Tensor) -> int:
        """|A|max (its width's 2^15 unless a constant) x the largest column sum of |D s + O|: bounds every partial
        sum of the 48-bit accumulator (plan_gemm refuses a bound above 2^47 - 1)."""
        av = self._roots[a.root].values
        a_max = (1 << (a.bits - 1)) if av is None else int(np.abs(av).max(initial=0))
        s = self._roots[b.root].values[b.r0:b.r0 + b.rows, b.c0:b.c0 + b.cols]
        d, o = self._block_do(b)
        col = max((int(np.abs(_block_matrix(s[:, c:c + _CHUNK], d[:, c:c + _CHUNK], o[:, c:c + _CHUNK]))
                       .sum(axis=0).max()) for c in range(0, b.cols, _CHUNK)), default=0)
        return a_max * col

    def _acc_bound(self, a: Tensor, b: Tensor, b_trans: bool) -> int:
        """A bound on |every partial sum| of a @ b when K is past the mode's worst-case int32 bound: |A|max (the
        constant's own, else its width's 2^(bits-1)) x the largest column sum of |B| (B must be a constant, e.g.
        weights). Real weights are far from all-maximal, so e.g. a w8a16 down projection with K = 1536 fits."""
        def values(t: Tensor) -> np.ndarray | None:
            v = self._roots[t.root].values
            return None if v is None else v[t.r0:t.r0 + t.rows, t.c0:t.c0 + t.cols]
        bv = values(b)
        if bv is None:
            k = b.cols if b_trans else b.rows
            raise ValueError(f"K {k} is above the worst-case int32 bound {max_reduction_length(a.bits, b.bits)} of "
                             f"{a.bits}x{b.bits}-bit operands and B {b.root!r} is not a constant, so no tighter "
                             f"bound is known")
        av = values(a)
        a_max = (1 << (a.bits - 1)) if av is None else int(np.abs(av).max(initial=0))
        col_l1 = np.abs(bv).sum(axis=1 if b_trans else 0)
        return a_max * int(col_l1.max(initial=0))

    def vector(self, op: str, src: Tensor, dst: Tensor, params, *, src2: Tensor | None = None, flags: int = 0,
               imm: int | None = None, name: str | None = None) -> None:
        """``dst = op(src[, src2])`` with the golden parameters ``params`` of ``gen.isa.ops.operator(op)``; ``imm``
        defaults to the operator's own (residual: the shift). Softmax's causal row offset and RoPE's first
        position (``imm``) refer to row 0 of ``src``. The tensors' element widths must be the ones ``flags``
        select (``spec.vector_ops`` ``elem_bytes``: int8 rows, but softmax's int16/int32 scores and Q0.15 output,
        the wide residual's int16/int32 operands and output)."""
        entry = operator(op)
        if (src2 is not None) != (entry.spec.operands == 2):
            raise ValueError(f"vec.{op} takes {entry.spec.operands} operand(s)")
        widths = self._elem_bits(op, flags)
        for role, t in (("src", src), ("src2", src2), ("dst", dst)):
            if t is None:
                continue
            if t.bits != widths[role]:
                raise ValueError(f"vec.{op} with flags {flags:#x} takes {widths[role]}-bit {role} elements, got "
                                 f"{t.root!r} with {t.bits} bits")
            if t.shape != src.shape:
                raise ValueError(f"vec.{op} operands must have one shape, got {src.shape} and {t.root} {t.shape}")
        imm = entry.imm_of(params) if imm is None else imm
        name = name or f"{op}{len(self._ops)}"
        block = self._raw(f"{name}.params", entry.block(params))
        self._vector_rows(op, src.cols, self._roots[block].nbytes, flags)     # refuse a row that cannot fit
        self._ops.append(_Vector(op, src, dst, src2, params, block, int(flags), int(imm)))

    @staticmethod
    def _elem_bits(op: str, flags: int) -> dict[str, int]:
        """Element bits of src, src2 and dst for these flags (the spec's widths; a bad flag is a ValueError)."""
        probe = VecOp(op, m=1, n=2, src_addr=0, dst_addr=0, flags=flags)     # the smallest legal row
        why = operator(op).spec.static_error(probe)
        if why is not None:
            raise ValueError(why)
        src_b, src2_b, dst_b = operator(op).spec.elem_bytes(probe)
        return {"src": 8 * src_b, "src2": 8 * src2_b, "dst": 8 * dst_b}

    def _written(self) -> set[str]:
        return {_written_root(op) for op in self._ops}

    def _row_strides(self, op: str, n: int, flags: int) -> tuple[int, int, int]:
        """Scratchpad bytes per row of (src, src2, dst): the row at the element width, rounded to the word."""
        bits = self._elem_bits(op, flags)
        two = operator(op).spec.operands == 2
        return tuple(self.cfg.local_stride("spad", n * bits[r] // 8) if r != "src2" or two else 0
                     for r in ("src", "src2", "dst"))

    def _vector_rows(self, op: str, n: int, block_bytes: int, flags: int) -> int:
        """Rows per tile of a vector operator: two slots of (src[, src2], dst) and the parameter block fit the
        scratchpad; RoPE tiles hold whole positions (``heads = rope_heads(flags)`` rows), at most ROPE_POSITIONS."""
        cfg = self.cfg
        per_row = sum(self._row_strides(op, n, flags))
        room = cfg.spad_bytes - _align(block_bytes, PARAM_PAGE_BYTES)
        rows = min(room // (2 * per_row) if per_row else 0, TILE_MAX)
        unit = rope_heads(flags) if op == "rope" else 1
        if op == "rope":        # one vec.rope spans at most ROPE_POSITIONS positions (the operator's resident table)
            rows = min(rows, ROPE_POSITIONS * unit)
        rows -= rows % unit
        if rows < unit:
            raise ValueError(f"vec.{op} rows of {n} elements and its {block_bytes}-byte parameter block do not fit "
                             f"spad_bytes={cfg.spad_bytes} (two slots of {unit} row(s) needed)")
        return rows

    # -- lowering -----------------------------------------------------------------------------------------------
    def _place(self, origin: int) -> dict[str, int]:
        """Root base addresses from ``origin``: constants (and parameter blocks) first, then buffers."""
        bases, cursor = {}, origin
        for const in (True, False):
            for r in self._roots.values():
                if (r.values is not None or r.raw is not None) == const:
                    bases[r.name] = cursor
                    cursor = _align(cursor + r.nbytes, _ALIGN)
        bases[""] = cursor          # end of the image
        return bases

    def _gemm_plan(self, g: _Gemm, bases: dict[str, int]):
        k, n = (g.b.cols, g.b.rows) if g.b_trans else (g.b.rows, g.b.cols)
        plan = plan_gemm(self.cfg, g.a.rows, k, n, mode=g.mode, out_bits=g.out.bits, tiles=g.tiles, order=g.order,
                         bias=g.bias is not None, b_trans=g.b_trans, acc_bound=g.acc_bound, blocks=bool(g.blocks))
        blocks = {}
        if g.blocks:     # the view's records: block row r0 / 32, record column c0, rows 4 N bytes apart
            rec = self._roots[g.blocks]
            blocks = dict(s_base=bases[g.blocks] + g.b.r0 // BLOCK * rec.pitch + g.b.c0 * BLOCK_RECORD_BYTES,
                          s_pitch=rec.pitch)
        return dataclasses.replace(plan, a_base=bases[g.a.root] + g.a.offset, b_base=bases[g.b.root] + g.b.offset,
                                   p_base=bases[g.params], c_base=bases[g.out.root] + g.out.offset,
                                   bias_base=bases[g.bias_root] if g.bias is not None else 0,
                                   a_pitch=g.a.pitch, b_pitch=g.b.pitch, c_pitch=g.out.pitch, **blocks)

    def _lower_vector(self, v: _Vector, bases: dict[str, int]) -> list[Instr]:
        cfg = self.cfg
        n = v.src.cols
        block = self._roots[v.block].nbytes
        rows = self._vector_rows(v.op, n, block, v.flags)
        strides = self._row_strides(v.op, n, v.flags)
        page = (cfg.spad_bytes - _align(block, PARAM_PAGE_BYTES)) // PARAM_PAGE_BYTES
        slot = rows * sum(strides)          # one slot: src, src2 (if any) and dst tiles back to back
        two = v.src2 is not None
        out: list[Instr] = [DmaLoad("spad", page * PARAM_PAGE_BYTES, bases[v.block], block, 1, block)]
        heads = rope_heads(v.flags) if v.op == "rope" else 1
        for i, r0 in enumerate(range(0, v.src.rows, rows)):
            m = min(rows, v.src.rows - r0)
            src_l = (i % 2) * slot
            src2_l = src_l + rows * strides[0]
            dst_l = src2_l + rows * strides[1]

            def ext(t: Tensor) -> int:
                return bases[t.root] + t.offset + r0 * t.pitch
            out.append(DmaLoad("spad", src_l, ext(v.src), v.src.pitch, m, v.src.row_bytes))
            if two:
                out.append(DmaLoad("spad", src2_l, ext(v.src2), v.src2.pitch, m, v.src2.row_bytes))
            imm = v.imm
            if v.op == "softmax" and v.flags & 1:
                imm += r0                       # causal: the row offset of this tile's first row
            elif v.op == "rope":
                imm += r0 // heads              # the position of this tile's first row
            out.append(VecOp(v.op, m=m, n=n, src_addr=src_l, dst_addr=dst_l, src2_addr=src2_l if two else 0,
                             param_page=page, flags=v.flags, imm=imm))
            out.append(DmaStore("spad", dst_l, ext(v.dst), v.dst.pitch, m, v.dst.row_bytes))
        return out

    def _lower(self, ops: list, bases: dict[str, int]) -> list[Instr]:
        body: list[Instr] = []
        # Consecutive GEMMs are software-pipelined: a run of GEMMs with one tiling (e.g. the attention heads) is one
        # double-buffered loop; otherwise each GEMM starts in the slots the previous one's last step leaves free and
        # its first loads are issued before the previous one's last requant and store. insert_fences still orders
        # every real dependence (it works from the bytes each instruction touches).
        phase, tail = SlotPhase(), []
        i = 0
        while i < len(ops):
            op = ops[i]
            if not isinstance(op, _Gemm):
                body += tail + self._lower_vector(op, bases)
                tail = []
                i += 1
                continue
            plans = [self._gemm_plan(op, bases)]
            j = i + 1
            while (j < len(ops) and isinstance(ops[j], _Gemm) and ops[j].zero_point == op.zero_point
                   and same_tiling(plans[0], p := self._gemm_plan(ops[j], bases))):
                plans.append(p)
                j += 1
            g = gemm_body_phased(plans, zero_point=op.zero_point, phase=phase)
            # Hoisting the prologue above the previous tail must not change what any byte holds: only when no
            # access of one conflicts with an access of the other (the plans' local layouts differ).
            hoist = not any(a.conflicts(b) for x in g.prologue for a in footprint(self.cfg, x)
                            for y in tail for b in footprint(self.cfg, y))
            body += g.prologue + tail + g.main if hoist else tail + g.prologue + g.main
            phase, tail = g.next_phase, g.tail
            i = j
        return insert_fences(self.cfg, body + tail + [Halt()])

    def build(self) -> "LayerProgram":
        """Every program (fenced, ending with HALT) and the image: a program area at address 0 that holds the
        largest program (the first one written there), then every root."""
        segments = self._segments()
        empty = [n for n, ops in segments.items() if not ops]
        if not self._ops or empty:
            raise ValueError(f"every program needs at least one operator (empty: {', '.join(empty) or 'main'})")
        # Fences depend only on which bytes overlap, which moving every root by the same amount does not change,
        # so a first lowering at origin 0 gives the programs' lengths.
        longest = max(len(self._lower(ops, self._place(0))) for ops in segments.values())
        origin = _align(longest * INSTR_BYTES, _DATA_ALIGN)
        bases = self._place(origin)
        programs = {n: self._lower(ops, bases) for n, ops in segments.items()}
        assert max(len(p) for p in programs.values()) == longest
        image = np.zeros(bases[""], dtype=np.uint8)
        blob = np.frombuffer(encode_program(next(iter(programs.values()))), dtype=np.uint8)
        image[:blob.size] = blob
        const_end = origin
        for r in self._roots.values():
            lo = bases[r.name]
            if r.raw is not None:
                image[lo:lo + r.nbytes] = r.raw
            elif r.values is not None:
                image[lo:lo + r.nbytes] = _to_bytes(r.values, r.bits).ravel()
            else:
                image[lo:lo + r.nbytes] = POISON_BYTE
                continue
            const_end = max(const_end, _align(lo + r.nbytes, _ALIGN))
        size = bases[""]
        if self.cfg.windows >= 2 and origin < const_end < size:
            windows = [Window(origin, const_end - origin, read=True, write=False),
                       Window(const_end, size - const_end, read=True, write=True)]
        else:
            windows = [Window(origin, size - origin, read=True, write=True)]
        return LayerProgram(self.cfg, programs, image, windows, bases, dict(self._roots), segments, origin)


@dataclass
class LayerProgram:
    """Built layer programs: ``programs`` by name in run order (the first one at external address 0 of
    ``image``; :meth:`load` writes another one there), the DMA ``windows``, each root's external ``bases``, the
    operators of each program (for :meth:`reference`) and the program area's size ``program_area`` (bytes)."""
    cfg: NPUConfig
    programs: dict[str, list]
    image: np.ndarray
    windows: list
    bases: dict[str, int]
    roots: dict[str, _Root] = field(repr=False)
    segments: dict[str, list] = field(repr=False)
    program_area: int = 0

    @property
    def program(self) -> list:
        """The first (for a single-program build: the) program."""
        return next(iter(self.programs.values()))

    @property
    def program_bytes(self) -> bytes:
        return encode_program(self.program)

    @property
    def ops(self) -> list:
        return [op for ops in self.segments.values() for op in ops]

    @property
    def macs(self) -> int:
        """MACs of the first program."""
        return self.macs_of(next(iter(self.programs)))

    def macs_of(self, name: str) -> int:
        return sum(op.a.rows * op.a.cols * op.out.cols for op in self.segments[name] if isinstance(op, _Gemm))

    def load(self, memory, name: str) -> np.ndarray:
        """A copy of ``memory`` (the image the previous program left) with program ``name`` in the program area."""
        out = np.array(memory, dtype=np.uint8, copy=True)
        blob = np.frombuffer(encode_program(self.programs[name]), dtype=np.uint8)
        out[:self.program_area] = 0
        out[:blob.size] = blob
        return out

    def write(self, memory, name: str, values) -> np.ndarray:
        """A copy of ``memory`` with root ``name`` (an input, :meth:`LayerBuilder.input`) holding ``values``."""
        r = self.roots[name]
        if not r.host:
            raise ValueError(f"{name!r} is not a host input (inputs: {', '.join(self.inputs()) or 'none'})")
        v = np.asarray(values)
        if v.shape != (r.rows, r.cols):
            raise ValueError(f"input {name!r} is [{r.rows}, {r.cols}], got {v.shape}")
        lo, hi = -(1 << (r.bits - 1)), (1 << (r.bits - 1)) - 1
        if v.size and (v.min() < lo or v.max() > hi):
            raise ValueError(f"input {name!r} must be in [{lo}, {hi}] ({r.bits}-bit)")
        out = np.array(memory, dtype=np.uint8, copy=True)
        out[self.bases[name]:self.bases[name] + r.nbytes] = _to_bytes(v, r.bits).ravel()
        return out

    def inputs(self) -> list[str]:
        """The host-written input roots, in definition order."""
        return [r.name for r in self.roots.values() if r.host]

    def written(self, name: str) -> list[str]:
        """The roots program ``name`` writes, in operator order (the last one is its output)."""
        return [_written_root(op) for op in self.segments[name]]

    def buffers(self) -> list[str]:
        """The roots the program writes, in definition order."""
        return [r.name for r in self.roots.values() if r.values is None and r.raw is None]

    def read(self, memory, name: str) -> np.ndarray:
        """Root ``name``'s bytes [rows, row bytes] from a final memory image."""
        r = self.roots[name]
        lo = self.bases[name]
        return np.asarray(memory, dtype=np.uint8)[lo:lo + r.nbytes].reshape(r.rows, r.pitch).copy()

    def reference(self, upto: str | None = None, inputs: dict | None = None) -> dict[str, np.ndarray]:
        """Every written root's expected bytes [rows, row bytes] after the programs up to and including ``upto``
        (default: all): the golden operators applied in program order to the constants and the host ``inputs``
        ({name: values}; an input not given is unset) (uint8 softmax probabilities are stored as their bytes)."""
        names = list(self.segments)
        if upto is not None and upto not in names:
            raise ValueError(f"upto must name a program ({', '.join(names)}), got {upto!r}")
        ops = [op for n in names[:names.index(upto) + 1 if upto else len(names)] for op in self.segments[n]]
        inputs = inputs or {}
        unknown = set(inputs) - set(self.inputs())
        if unknown:
            raise ValueError(f"inputs must name host inputs ({', '.join(self.inputs()) or 'none'}), got "
                             f"{', '.join(sorted(unknown))}")
        # Each root's elements flat at its pitch (in elements), so a reshaped view indexes the same storage.
        vals: dict[str, np.ndarray] = {}
        for r in self.roots.values():
            if r.raw is None:
                grid = np.full((r.rows, r.pitch * 8 // r.bits), _UNSET, dtype=np.int64)
                if r.values is not None:
                    grid[:, :r.cols] = r.values
                elif r.name in inputs:
                    grid[:, :r.cols] = np.asarray(inputs[r.name], dtype=np.int64).reshape(r.rows, r.cols)
                vals[r.name] = grid.ravel()

        def index(t: Tensor) -> np.ndarray:
            pe = t.pitch * 8 // t.bits
            return (t.r0 * pe + t.c0) + np.arange(t.rows)[:, None] * pe + np.arange(t.cols)[None, :]

        def get(t: Tensor) -> np.ndarray:
            block = vals[t.root][index(t)]
            if (block == _UNSET).any():
                raise ValueError(f"the reference reads {t.root}[{t.r0}:{t.r0 + t.rows}, {t.c0}:{t.c0 + t.cols}] "
                                 f"before an operator writes it")
            return block

        def put(t: Tensor, value: np.ndarray) -> None:
            vals[t.root][index(t)] = value

        for op in ops:
            if isinstance(op, _Gemm) and op.blocks:
                # block-scaled: the exact 48-bit sum and golden's wide requant (golden.models.qlinear.linear_apply)
                acc = _block_product(get(op.a), get(op.b), *op.block_do)
                put(op.out, requant_wide(acc if op.bias is None else acc + op.bias, op.multiplier, op.shift,
                                         out_bits=op.out.bits))
            elif isinstance(op, _Gemm):
                b = get(op.b).T if op.b_trans else get(op.b)
                if op.acc_bound is None:
                    acc = gemm(get(op.a), b, a_bits=op.a.bits, b_bits=op.b.bits)
                else:   # K past the worst case: exact in int64; the proven bound keeps it within int32
                    acc = get(op.a).astype(np.int64) @ b.astype(np.int64)
                    assert np.abs(acc).max(initial=0) <= op.acc_bound
                if op.bias is None:
                    out = requantize(acc, op.multiplier, op.shift, zero_point=op.zero_point, out_bits=op.out.bits)
                else:
                    out = requantize_biased(acc, op.bias, op.multiplier, op.shift, zero_point=op.zero_point,
                                            out_bits=op.out.bits)
                put(op.out, out)
            else:
                a = _as_elements(get(op.src), op.src.bits)
                b = _as_elements(get(op.src2), op.src2.bits) if op.src2 is not None else None
                res = operator(op.op).golden(a, b, op.params, flags=op.flags, imm=op.imm)
                put(op.dst, np.asarray(res).astype(np.int64))
        return {name: _expected_bytes(vals[name].reshape(r.rows, -1)[:, :r.cols], r.bits)
                for name in self.buffers() for r in (self.roots[name],)}


#: Columns of B = D s + O formed at a time (a 49152-row LM head would otherwise need K x N int64 at once).
_CHUNK = 4096


def _block_matrix(s: np.ndarray, d: np.ndarray, o: np.ndarray) -> np.ndarray:
    """B = D s + O (int64 [K, N]) from codes s [K, N] and block multipliers d, o [K / 32, N]."""
    return np.repeat(d, BLOCK, axis=0) * np.asarray(s, dtype=np.int64) + np.repeat(o, BLOCK, axis=0)


def _block_product(a: np.ndarray, s: np.ndarray, d: np.ndarray, o: np.ndarray) -> np.ndarray:
    """The exact a @ (D s + O) (int64 [M, N]), formed :data:`_CHUNK` columns at a time."""
    n = s.shape[1]
    return np.concatenate([exact_matmul(a, _block_matrix(s[:, c:c + _CHUNK], d[:, c:c + _CHUNK], o[:, c:c + _CHUNK]))
                           for c in range(0, n, _CHUNK)], axis=1)


def _as_elements(values: np.ndarray, bits: int) -> np.ndarray:
    """Stored values as the signed integers of their width (an 8-bit uint8 probability reads back as int8, as the
    bytes do)."""
    return values.astype({8: np.int8, 16: np.int16, 32: np.int32}[bits])


def _expected_bytes(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 [rows, row bytes] of reference values (8 bits: the low byte, so uint8 probabilities and int8 alike);
    elements no operator wrote keep the poison byte."""
    unset = values == _UNSET
    v = np.where(unset, 0, values)
    raw = (v & 0xFF).astype(np.uint8) if bits == 8 else _to_bytes(v, bits)
    raw[np.repeat(unset, bits // 8, axis=1)] = POISON_BYTE
    return raw
