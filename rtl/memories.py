"""On-chip memories of the NPU: the banked operand scratchpad and the int32 accumulator SRAM.

Both are arrays of *local words* of ``word_bytes`` bytes (one AXI data word, the DMA's local word and the ISA's
row granule, docs/isa.md); word ``a`` holds local bytes ``a*word_bytes .. a*word_bytes + word_bytes - 1``,
little-endian. Built from :class:`amaranth.lib.memory.Memory` so synthesis infers block RAM.

Ports (plain signals, no handshake)
    ``wr``: ``addr`` (word), ``data``, ``en`` (one bit per byte) - the write happens on the clock edge.
    ``rd``: ``addr`` (word), ``en``; ``data`` is valid the cycle after ``en`` (synchronous read) and holds
    while ``en`` is low. A read of the word written in the same cycle returns the new data (transparent), so a
    read-modify-write pipeline never sees a stale word.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WritePortSignature", "ReadPortSignature", "Scratchpad", "Accumulator"]


class WritePortSignature(wiring.Signature):
    """Word write port (driver view): ``addr``, ``data`` (``8 * word_bytes`` bits), byte enables ``en``."""

    def __init__(self, addr_width: int, word_bytes: int):
        super().__init__({"addr": Out(addr_width), "data": Out(8 * word_bytes), "en": Out(word_bytes)})


class ReadPortSignature(wiring.Signature):
    """Synchronous word read port (driver view): ``data`` is valid the cycle after ``en``."""

    def __init__(self, addr_width: int, word_bytes: int):
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": In(8 * word_bytes)})


def _check(name, value, lo, hi, pow2=True):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi or (pow2 and value & (value - 1)):
        kind = "a power of two" if pow2 else "an integer"
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {value!r}")


class Scratchpad(wiring.Component):
    """Operand scratchpad: ``depth`` words of ``word_bytes`` bytes in ``banks`` banks of contiguous ranges.

    Bank ``i`` holds words ``[i * depth / banks, (i + 1) * depth / banks)``: separate SRAM macros, each with one
    write and one read port, selected by the high address bits (the read data mux uses the bank of the read
    issued one cycle earlier).

    Parameters
    ----------
    word_bytes : int    bytes per word, 4..32 (power of two).
    depth : int         words, power of two, >= 16 * banks.
    banks : int         1..16 (power of two).

    Members
    -------
    wr : In(WritePortSignature), rd : In(ReadPortSignature)
    """

    def __init__(self, *, word_bytes: int, depth: int, banks: int = 1):
        _check("word_bytes", word_bytes, 4, 32)
        _check("banks", banks, 1, 16)
        _check("depth", depth, 16 * banks, 1 << 24)
        self.word_bytes, self.depth, self.banks = word_bytes, depth, banks
        self.addr_width = (depth - 1).bit_length()
        super().__init__({
            "wr": In(WritePortSignature(self.addr_width, word_bytes)),
            "rd": In(ReadPortSignature(self.addr_width, word_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        bank_words = self.depth // self.banks
        low = (bank_words - 1).bit_length()
        rd_bank = Signal(range(self.banks))
        with m.If(self.rd.en):
            m.d.sync += rd_bank.eq(self.rd.addr >> low)
        data = []
        for i in range(self.banks):
            mem = memory.Memory(shape=8 * self.word_bytes, depth=bank_words, init=[])
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port(granularity=8)
            rp = mem.read_port(transparent_for=(wp,))
            sel_w = (self.wr.addr >> low) == i if self.banks > 1 else 1
            sel_r = (self.rd.addr >> low) == i if self.banks > 1 else 1
            m.d.comb += [
                wp.addr.eq(self.wr.addr[:low]), wp.data.eq(self.wr.data),
                wp.en.eq(Mux(sel_w, self.wr.en, 0)),
                rp.addr.eq(self.rd.addr[:low]), rp.en.eq(self.rd.en & sel_r),
            ]
            data.append(rp.data)
        out = data[0]
        for i in range(1, self.banks):
            out = Mux(rd_bank == i, data[i], out)
        m.d.comb += self.rd.data.eq(out)
        return m


class Accumulator(wiring.Component):
    """int32 accumulator SRAM: ``depth`` words of ``word_bytes`` bytes (``word_bytes / 4`` int32, little-endian).

    One write port (byte enables, so the DMA can write part of a word and the matmul engine single int32
    elements) and one read port transparent to it.

    Members
    -------
    wr : In(WritePortSignature), rd : In(ReadPortSignature)
    """

    def __init__(self, *, word_bytes: int, depth: int):
        _check("word_bytes", word_bytes, 4, 32)
        _check("depth", depth, 2, 1 << 24)
        self.word_bytes, self.depth = word_bytes, depth
        self.addr_width = (depth - 1).bit_length()
        super().__init__({
            "wr": In(WritePortSignature(self.addr_width, word_bytes)),
            "rd": In(ReadPortSignature(self.addr_width, word_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=8 * self.word_bytes, depth=self.depth, init=[])
        wp = mem.write_port(granularity=8)
        rp = mem.read_port(transparent_for=(wp,))
        m.d.comb += [
            wp.addr.eq(self.wr.addr), wp.data.eq(self.wr.data), wp.en.eq(self.wr.en),
            rp.addr.eq(self.rd.addr), rp.en.eq(self.rd.en), self.rd.data.eq(rp.data),
        ]
        return m
