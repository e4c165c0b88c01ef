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

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import (POISON_BYTE, SlotPhase, gemm_body_phased, insert_fences, plan_gemm,
                                       same_tiling)
from npuforge.gen.isa import layer_ir
from npuforge.gen.isa.layer_ir import (ELEMENT_BITS, GemmNode, Root, Tensor, VectorNode, block_matrix, to_bytes,
                                       written_roots)
from npuforge.gen.isa.layer_program import LayerProgram
from npuforge.gen.isa.layout import Window, align, footprint, pack_b_tile, pack_block_weight, pack_requant_params
from npuforge.gen.isa.ops import operator
from npuforge.golden.gemm import MODES, max_reduction_length
from npuforge.spec.block_scale import BLOCK, BLOCK_RECORD_BYTES
from npuforge.spec.isa import (INSTR_BYTES, PARAM_PAGE_BYTES, TILE_MAX, DmaLoad, DmaStore, Halt, Instr, VecOp,
                               encode_program)
from npuforge.golden.softmax import q15_row_sum_bound
from npuforge.spec.vector_ops import NORM_TOKEN, NORM_TOKEN_BITS, RMSNORM_FLAGS, ROPE_POSITIONS, SOFTMAX_Q15, rope_heads

__all__ = ["Tensor", "LayerBuilder", "LayerProgram", "ELEMENT_BITS"]   # Tensor, LayerProgram: re-exported

_ALIGN = 64           # byte alignment of every root buffer in external memory
_DATA_ALIGN = 4096    # the first root starts on a 4 KiB boundary after the program


class LayerBuilder:
    """Collects tensors and operators for one NPU program (see the module docstring)."""

    def __init__(self, cfg: NPUConfig):
        if not isinstance(cfg, NPUConfig):
            raise ValueError(f"cfg must be an NPUConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self._roots: dict[str, Root] = {}
        self._ops: list[GemmNode | VectorNode] = []
        self._starts: dict[str, int] = {}     # program name -> index of its first operator
        # block weight codes root -> (records root, D^T, O^T int64 [K / 32, N])
        self._blocks: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}

    # -- tensors ------------------------------------------------------------------------------------------------
    def _add(self, root: Root) -> Tensor:
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
        return self._add(Root(name, v.shape[0], v.shape[1], bits, v))

    def buffer(self, name: str, rows: int, cols: int, bits: int = 8) -> Tensor:
        """A [rows, cols] buffer the program writes (poisoned in the image); 8, 16 or 32-bit elements."""
        if bits == 4:
            raise ValueError(f"buffer {name!r}: no operator writes int4 elements; bits must be 8, 16 or 32")
        return self._add(Root(name, rows, cols, bits, None))

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
        self._add(Root(rec, img.records.shape[0], img.records.shape[1], 8, None, raw=img.records.ravel()))
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
        self._add(Root(name, 1, raw.size, 8, None, raw=raw))
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
             order: str | None = None, row_shift: Tensor | None = None) -> None:
        """``out = requantize(a @ b (+ bias), multiplier, shift, zero_point)`` with ``out.bits`` (8, 16 or 32)
        output bits; the mode follows the operand widths (a int8/int16, b int8/int4). ``bias``: int32 [N] in
        accumulator units (VEC_REQUANT.bias). ``b_trans``: ``b`` is stored [N, K] and the product is ``a @ b.T``
        (MATMUL.b_trans, int8 B: Q.K^T with K as its projection wrote it).

        ``b`` a :meth:`block_weight` (or a view of whole 32-row blocks of it) and ``a`` int16: a block-scaled linear,
        ``out = golden.models.intops.requant_wide(a @ (D s + O) (+ bias))`` (mode w4a16 / w8a16 with MATMUL.blocks,
        VEC_REQUANT.wide; zero_point 0; the NPU needs ``block_scaled``).

        ``row_shift``: the k_r [M, 1] tensor a :meth:`token_scale` wrote (``a`` its int16 rows): row r is requantized
        with ``shift - k_r`` (``VEC_REQUANT.row_shift``, ``golden.models.intops.requant_wide(acc, M, shift - k)``, i.e.
        ``golden.models.qlinear.linear_apply(x, lin, token_bits=16)`` without a bias); no bias, zero_point 0.

        ``a`` and ``b`` both int16 (the int16 K / V caches of the ``*-kv16`` schemes: Q.K^T with ``b_trans``, P.V):
        ``out = golden.models.intops.requant_wide(a @ b (+ bias))``, two MATMUL.b16 byte-plane passes per tile into the
        48-bit accumulator and VEC_REQUANT.wide (mode w8a16; zero_point 0; the NPU needs ``kv16``)."""
        b16 = a.bits == 16 and b.bits == 16
        mode = "w8a16" if b16 else next((m for m, bits in MODES.items() if bits == (a.bits, b.bits)), None)
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
        if row_shift is not None:
            self._check_shifts(row_shift, a.rows)
            if bias is not None or zero_point:
                raise ValueError("a gemm with row_shift takes no bias and zero_point 0 (VEC_REQUANT.row_shift)")
        for t in (a, b) if row_shift is None else (a, b, row_shift):
            r = self._roots[t.root]
            if r.values is None and not r.host and t.root not in self._written():
                raise ValueError(f"gemm reads {t.root!r} before any operator writes it")
        mult, sh = np.asarray(multiplier, dtype=np.int64), np.asarray(shift, dtype=np.int64)
        if mult.shape != (n,) or sh.shape != (n,):
            raise ValueError(f"multiplier and shift must be per output column [{n}], got {mult.shape} and "
                             f"{sh.shape}")
        name = name or f"gemm{len(self._ops)}"
        blocks = b.root in self._blocks
        if b16 and (zero_point or row_shift is not None or not self.cfg.kv16):
            raise ValueError(f"an int16 x int16 gemm ({name}: MATMUL.b16) needs an NPU built with kv16, zero_point 0 "
                             f"and no row_shift (kv16 {self.cfg.kv16})")
        if blocks:
            if b_trans or zero_point or b.r0 % BLOCK or b.rows % BLOCK or b.pitch != self._roots[b.root].pitch:
                raise ValueError(f"a block-scaled gemm on {b.root!r} needs whole 32-row blocks of B (rows "
                                 f"{b.r0}:{b.r0 + b.rows}) of the weight as stored (no reshape), no b_trans and "
                                 f"zero_point 0")
            acc_bound = self._block_bound(a, b)
        elif b16:
            acc_bound = None        # 48-bit: |sum| < 2^15 x 2^15 x 4095 < 2^42
        else:
            acc_bound = self._acc_bound(a, b, b_trans) if k > max_reduction_length(a.bits, b.bits) else None
        # The plan is made here so a shape the memories cannot hold is refused where the operator is added.
        plan_gemm(self.cfg, a.rows, k, n, mode=mode, out_bits=out.bits, tiles=tiles, order=order,
                  bias=bias is not None, b_trans=b_trans, acc_bound=acc_bound, blocks=blocks,
                  row_shift=row_shift is not None, b16=b16)
        params = self._raw(f"{name}.requant", pack_requant_params(mult, sh))
        bias_root, bias_v = "", None
        if bias is not None:
            bias_v = np.asarray(bias, dtype=np.int64)
            if bias_v.shape != (n,) or bias_v.min() < -(1 << 31) or bias_v.max() >= 1 << 31:
                raise ValueError(f"bias must be int32 per output column [{n}], got shape {bias_v.shape}")
            bias_root = self._raw(f"{name}.bias", bias_v.astype("<i4").view(np.uint8))
        self._ops.append(GemmNode(a, b, out, mode, mult, sh, int(zero_point), params, tiles, order, bias_v,
                               bias_root, bool(b_trans), acc_bound, self._blocks[b.root][0] if blocks else "",
                               self._block_do(b) if blocks else None, row_shift, b16))

    def _check_shifts(self, k: Tensor, rows: int) -> None:
        """A k_r tensor: [rows, 1] 8-bit elements one byte apart (a [rows, 1] root or a row view of one)."""
        if k.shape != (rows, 1) or k.bits != 8 or k.pitch != 1:
            raise ValueError(f"row shifts must be an 8-bit [{rows}, 1] tensor (one byte per row, a [rows, 1] root "
                             f"or a view of its rows), got {k.root!r} {k.shape} of {k.bits} bits, pitch {k.pitch}")

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
        col = max((int(np.abs(block_matrix(s[:, c:c + layer_ir.BLOCK_CHUNK], d[:, c:c + layer_ir.BLOCK_CHUNK], o[:, c:c + layer_ir.BLOCK_CHUNK]))
                       .sum(axis=0).max()) for c in range(0, b.cols, layer_ir.BLOCK_CHUNK)), default=0)
        return a_max * col

    def _acc_bound(self, a: Tensor, b: Tensor, b_trans: bool) -> int:
        """A bound on |every partial sum| of a @ b when K is past the mode's worst-case int32 bound: |A|max (the
        constant's own, else its width's 2^(bits-1)) x the largest column sum of |B| (B a constant, e.g. weights:
        real weights are far from all-maximal, so e.g. a w8a16 down projection with K = 1536 fits), or, when A is a
        Q0.15 softmax output (P.V), the proven row-sum bound of its rows x |B|max (``_softmax_row_sum``)."""
        def values(t: Tensor) -> np.ndarray | None:
            v = self._roots[t.root].values
            return None if v is None else v[t.r0:t.r0 + t.rows, t.c0:t.c0 + t.cols]
        bv = values(b)
        row_sum = self._softmax_row_sum(a)
        if row_sum is not None:
            b_max = (1 << (b.bits - 1)) if bv is None else int(np.abs(bv).max(initial=0))
            return row_sum * b_max
        if bv is None:
            k = b.cols if b_trans else b.rows
            raise ValueError(f"K {k} is above the worst-case int32 bound {max_reduction_length(a.bits, b.bits)} of "
                             f"{a.bits}x{b.bits}-bit operands, B {b.root!r} is not a constant and A {a.root!r} is "
                             f"not a Q0.15 softmax output, so no tighter bound is known")
        av = values(a)
        a_max = (1 << (a.bits - 1)) if av is None else int(np.abs(av).max(initial=0))
        col_l1 = np.abs(bv).sum(axis=1 if b_trans else 0)
        return a_max * int(col_l1.max(initial=0))

    def _softmax_row_sum(self, a: Tensor) -> int | None:
        """The proven bound on a row sum of ``a`` (golden.softmax.q15_row_sum_bound of the softmax row length) when
        every operator written so far into a's root is a Q0.15 softmax over whole rows of it (so each row of the
        root is one softmax row, its elements >= 0, and a view's row is part of one) and a is not reshaped; else
        None."""
        root = self._roots[a.root]
        writers = [op for op in self._ops if a.root in written_roots(op)]
        if (not writers or root.values is not None or root.raw is not None or root.host or a.pitch != root.pitch
                or not all(isinstance(op, VectorNode) and op.op == "softmax" and op.flags & SOFTMAX_Q15
                           and op.dst.c0 == 0 and op.dst.cols == root.cols and op.dst.pitch == root.pitch
                           for op in writers)):
            return None
        return q15_row_sum_bound(root.cols)

    def vector(self, op: str, src: Tensor, dst: Tensor, params, *, src2: Tensor | None = None, flags: int = 0,
               imm: int | None = None, name: str | None = None) -> None:
        """``dst = op(src[, src2])`` with the golden parameters ``params`` of ``gen.isa.ops.operator(op)``; ``imm``
        defaults to the operator's own (residual: the shift). Softmax's causal row offset and RoPE's first
        position (``imm``) refer to row 0 of ``src``. The tensors' element widths must be the ones ``flags``
        select (``spec.vector_ops`` ``elem_bytes``: int8 rows, but softmax's int16/int32 scores and Q0.15 output,
        the wide residual's int16/int32 operands and output)."""
        entry = operator(op)
        if op == "rmsnorm" and flags & NORM_TOKEN:
            raise ValueError("the token-scale-only vec.rmsnorm (flags bit 2) writes k_r too: use token_scale")
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
        raw = entry.block(params)
        probe = VecOp(op, m=1, n=2, src_addr=0, dst_addr=0, flags=flags)
        if (raw.size == 0) != (not entry.spec.param_ranges(probe)):
            raise ValueError(f"vec.{op} with flags {flags:#x} {'reads no' if raw.size else 'needs a'} parameter "
                             f"block, got {type(params).__name__} parameters")
        block = self._raw(f"{name}.params", raw) if raw.size else ""
        self._vector_rows(op, src.cols, raw.size, flags)     # refuse a row that cannot fit
        self._ops.append(VectorNode(op, src, dst, src2, params, block, int(flags), int(imm)))

    def token_scale(self, src: Tensor, dst: Tensor, shifts: Tensor, *, name: str | None = None) -> None:
        """The per-token power-of-two scale (``vec.rmsnorm`` flags 7): ``dst`` (int16) row r =
        ``golden.models.intops.token_shift(src row r, 16)[0]`` of the int32 ``src`` and ``shifts`` (8-bit [rows, 1],
        one byte per row) = its k_r, which a later :meth:`gemm` on ``dst`` takes as ``row_shift``."""
        self._check_shifts(shifts, src.rows)
        if src.bits != 32 or dst.bits != NORM_TOKEN_BITS or dst.shape != src.shape:
            raise ValueError(f"token_scale takes an int32 src and an int16 dst of its shape, got {src.bits}-bit "
                             f"{src.shape} and {dst.bits}-bit {dst.shape}")
        name = name or f"token_scale{len(self._ops)}"
        self._vector_rows("rmsnorm", src.cols, 0, RMSNORM_FLAGS, side=True)
        self._ops.append(VectorNode("rmsnorm", src, dst, None, None, "", RMSNORM_FLAGS, 0, side=shifts))

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
        return {root for op in self._ops for root in written_roots(op)}

    def _row_strides(self, op: str, n: int, flags: int) -> tuple[int, int, int]:
        """Scratchpad bytes per row of (src, src2, dst): the row at the element width, rounded to the word."""
        bits = self._elem_bits(op, flags)
        two = operator(op).spec.operands == 2
        return tuple(self.cfg.local_stride("spad", n * bits[r] // 8) if r != "src2" or two else 0
                     for r in ("src", "src2", "dst"))

    def _vector_rows(self, op: str, n: int, block_bytes: int, flags: int, side: bool = False) -> int:
        """Rows per tile of a vector operator: two slots of (src[, src2], dst[, a word-aligned byte per row: the
        token scale's k_r]) and the parameter block fit the scratchpad; RoPE tiles hold whole positions (``heads =
        rope_heads(flags)`` rows), at most ROPE_POSITIONS."""
        cfg = self.cfg
        per_row = sum(self._row_strides(op, n, flags)) + int(side)
        room = cfg.spad_bytes - align(block_bytes, PARAM_PAGE_BYTES) - (2 * cfg.spad_word_bytes if side else 0)
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
                    cursor = align(cursor + r.nbytes, _ALIGN)
        bases[""] = cursor          # end of the image
        return bases

    def _gemm_plan(self, g: GemmNode, bases: dict[str, int]):
        k, n = (g.b.cols, g.b.rows) if g.b_trans else (g.b.rows, g.b.cols)
        plan = plan_gemm(self.cfg, g.a.rows, k, n, mode=g.mode, out_bits=g.out.bits, tiles=g.tiles, order=g.order,
                         bias=g.bias is not None, b_trans=g.b_trans, acc_bound=g.acc_bound, blocks=bool(g.blocks),
                         row_shift=g.row_shift is not None, b16=g.b16)
        blocks = {}
        if g.blocks:     # the view's records: block row r0 / 32, record column c0, rows 4 N bytes apart
            rec = self._roots[g.blocks]
            blocks = dict(s_base=bases[g.blocks] + g.b.r0 // BLOCK * rec.pitch + g.b.c0 * BLOCK_RECORD_BYTES,
                          s_pitch=rec.pitch)
        if g.row_shift is not None:
            blocks["r_base"] = bases[g.row_shift.root] + g.row_shift.offset
        b_base, b_pitch = bases[g.b.root] + g.b.offset, g.b.pitch
        if plan.k_packed:   # int4 block codes stored K-packed: rows of K pairs, one byte per column
            b_pitch = self._roots[g.b.root].cols
            b_base = bases[g.b.root] + g.b.r0 // 2 * b_pitch + g.b.c0
        return dataclasses.replace(plan, a_base=bases[g.a.root] + g.a.offset, b_base=b_base,
                                   p_base=bases[g.params], c_base=bases[g.out.root] + g.out.offset,
                                   bias_base=bases[g.bias_root] if g.bias is not None else 0,
                                   a_pitch=g.a.pitch, b_pitch=b_pitch, c_pitch=g.out.pitch, **blocks)

    def _lower_vector(self, v: VectorNode, bases: dict[str, int]) -> list[Instr]:
        cfg = self.cfg
        n = v.src.cols
        block = self._roots[v.block].nbytes if v.block else 0
        side = v.side is not None
        rows = self._vector_rows(v.op, n, block, v.flags, side)
        strides = self._row_strides(v.op, n, v.flags)
        page = (cfg.spad_bytes - align(block, PARAM_PAGE_BYTES)) // PARAM_PAGE_BYTES if block else 0
        # one slot: src, src2 (if any), dst tiles and (token scale) the k_r bytes back to back
        slot = rows * sum(strides) + (align(rows, cfg.spad_word_bytes) if side else 0)
        two = v.src2 is not None
        out: list[Instr] = [DmaLoad("spad", page * PARAM_PAGE_BYTES, bases[v.block], block, 1, block)] if block else []
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
            k_l = dst_l + rows * strides[2]
            out.append(VecOp(v.op, m=m, n=n, src_addr=src_l, dst_addr=dst_l,
                             src2_addr=src2_l if two else k_l if side else 0, param_page=page, flags=v.flags, imm=imm))
            out.append(DmaStore("spad", dst_l, ext(v.dst), v.dst.pitch, m, v.dst.row_bytes))
            if side:            # the tile's k_r: m bytes, one per row, contiguous in external memory
                out.append(DmaStore("spad", k_l, ext(v.side), m, 1, m))
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
            if not isinstance(op, GemmNode):
                body += tail + self._lower_vector(op, bases)
                tail = []
                i += 1
                continue
            plans = [self._gemm_plan(op, bases)]
            j = i + 1
            while (j < len(ops) and isinstance(ops[j], GemmNode) and ops[j].zero_point == op.zero_point
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
        origin = align(longest * INSTR_BYTES, _DATA_ALIGN)
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
            elif r.name in self._blocks and r.bits == 4:     # int4 block codes are K-packed (gen.isa.layout)
                codes = pack_b_tile(r.values, 4, k_packed=True).ravel()     # K rows even: <= nbytes
                image[lo:lo + codes.size] = codes
            elif r.values is not None:
                image[lo:lo + r.nbytes] = to_bytes(r.values, r.bits).ravel()
            else:
                image[lo:lo + r.nbytes] = POISON_BYTE
                continue
            const_end = max(const_end, align(lo + r.nbytes, _ALIGN))
        size = bases[""]
        if self.cfg.windows >= 2 and origin < const_end < size:
            windows = [Window(origin, const_end - origin, read=True, write=False),
                       Window(const_end, size - const_end, read=True, write=True)]
        else:
            windows = [Window(origin, size - origin, read=True, write=True)]
        return LayerProgram(self.cfg, programs, image, windows, bases, dict(self._roots), segments, origin)
