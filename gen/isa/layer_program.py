"""Built layer programs (:class:`LayerProgram`): the programs and the memory image a
:class:`~npuforge.gen.isa.builder.LayerBuilder` lowered, the host's view of them (load a program, write an input,
read a root) and the golden tier (:meth:`LayerProgram.reference`: every buffer computed operator by operator with
the golden functions from the constants and the host inputs, never from a simulator)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from npuforge.gen.config.npu import NPUConfig
from npuforge.gen.isa.compiler import POISON_BYTE
from npuforge.gen.isa.layer_ir import UNSET, GemmNode, Root, Tensor, block_product, to_bytes, written_root
from npuforge.gen.isa.ops import operator
from npuforge.golden.gemm import gemm
from npuforge.golden.models.intops import requant_wide
from npuforge.golden.requant import requantize, requantize_biased
from npuforge.spec.isa import encode_program

__all__ = ["LayerProgram"]


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
    roots: dict[str, Root] = field(repr=False)
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
        return sum(op.a.rows * op.a.cols * op.out.cols for op in self.segments[name] if isinstance(op, GemmNode))

    def load(self, memory, name: str) -> np.ndarray:
        """A copy of ``memory`` (the image the previous program left) with program ``name`` in the program area."""
        out = np.array(memory, dtype=np.uint8, copy=True)
        blob = np.frombuffer(self.encoded(name), dtype=np.uint8)
        out[:self.program_area] = 0
        out[:blob.size] = blob
        return out

    def encoded(self, name: str) -> bytes:
        """Program ``name``'s instruction words (encoded once)."""
        blobs = self.__dict__.setdefault("_encoded", {})
        if name not in blobs:
            blobs[name] = encode_program(self.programs[name])
        return blobs[name]

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
        out[self.bases[name]:self.bases[name] + r.nbytes] = to_bytes(v, r.bits).ravel()
        return out

    def inputs(self) -> list[str]:
        """The host-written input roots, in definition order."""
        return [r.name for r in self.roots.values() if r.host]

    def written(self, name: str) -> list[str]:
        """The roots program ``name`` writes, in operator order (the last one is its output)."""
        return [written_root(op) for op in self.segments[name]]

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
                grid = np.full((r.rows, r.pitch * 8 // r.bits), UNSET, dtype=np.int64)
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
            if (block == UNSET).any():
                raise ValueError(f"the reference reads {t.root}[{t.r0}:{t.r0 + t.rows}, {t.c0}:{t.c0 + t.cols}] "
                                 f"before an operator writes it")
            return block

        def put(t: Tensor, value: np.ndarray) -> None:
            vals[t.root][index(t)] = value

        for op in ops:
            if isinstance(op, GemmNode) and op.row_shift is not None:
                # per-token scaled input (a = token_shift's rows): golden.models.qlinear.linear_apply(token_bits=16)
                # without a bias, requant_wide(acc, M, shift - k) on the int32 or the block-scaled 48-bit sum
                b = get(op.b).T if op.b_trans else get(op.b)
                acc = block_product(get(op.a), b, *op.block_do) if op.blocks else \
                    get(op.a).astype(np.int64) @ b.astype(np.int64)
                put(op.out, requant_wide(acc, op.multiplier, op.shift[None, :] - get(op.row_shift),
                                         out_bits=op.out.bits))
            elif isinstance(op, GemmNode) and op.b16:
                # int16 x int16 (the int16 KV cache): the exact sum and golden's wide requant, as the golden
                # attention's requant_wide(q . k^T) / requant_wide(p . v)
                b = get(op.b).T if op.b_trans else get(op.b)
                acc = get(op.a).astype(np.int64) @ b.astype(np.int64)
                put(op.out, requant_wide(acc if op.bias is None else acc + op.bias, op.multiplier, op.shift,
                                         out_bits=op.out.bits))
            elif isinstance(op, GemmNode) and op.blocks:
                # block-scaled: the exact 48-bit sum and golden's wide requant (golden.models.qlinear.linear_apply)
                acc = block_product(get(op.a), get(op.b), *op.block_do)
                put(op.out, requant_wide(acc if op.bias is None else acc + op.bias, op.multiplier, op.shift,
                                         out_bits=op.out.bits))
            elif isinstance(op, GemmNode):
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
                a = as_elements(get(op.src), op.src.bits)
                b = as_elements(get(op.src2), op.src2.bits) if op.src2 is not None else None
                res = operator(op.op).golden(a, b, op.params, flags=op.flags, imm=op.imm)
                if op.side is not None:     # the token scale: (int16 rows, k_r)
                    res, k = res
                    put(op.side, np.asarray(k, dtype=np.int64)[:, None])
                put(op.dst, np.asarray(res).astype(np.int64))
        return {name: expected_bytes(vals[name].reshape(r.rows, -1)[:, :r.cols], r.bits)
                for name in self.buffers() for r in (self.roots[name],)}


def as_elements(values: np.ndarray, bits: int) -> np.ndarray:
    """Stored values as the signed integers of their width (an 8-bit uint8 probability reads back as int8, as the
    bytes do)."""
    return values.astype({8: np.int8, 16: np.int16, 32: np.int32}[bits])


def expected_bytes(values: np.ndarray, bits: int) -> np.ndarray:
    """uint8 [rows, row bytes] of reference values (8 bits: the low byte, so uint8 probabilities and int8 alike);
    elements no operator wrote keep the poison byte."""
    unset = values == UNSET
    v = np.where(unset, 0, values)
    raw = (v & 0xFF).astype(np.uint8) if bits == 8 else to_bytes(v, bits)
    raw[np.repeat(unset, bits // 8, axis=1)] = POISON_BYTE
    return raw
