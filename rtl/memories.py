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
from amaranth.lib import data, memory, wiring
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
    write port and ``read_ports`` read ports (the NPU uses three: matmul activations, matmul weights, DMA store /
    requant records), so the array's operand streams never wait for the DMA. A read port's data mux uses the
    bank of the read issued one cycle earlier.

    Parameters
    ----------
    word_bytes : int    bytes per word, 4..32 (power of two).
    depth : int         words, power of two, >= 16 * banks.
    banks : int         1..16 (power of two).
    read_ports : int    1..4.

    Members
    -------
    wr : In(WritePortSignature); rd : In(ArrayLayout of ReadPortSignature) - ``rd[i]`` is read port ``i``.
    """

    def __init__(self, *, word_bytes: int, depth: int, banks: int = 1, read_ports: int = 1):
        _check("word_bytes", word_bytes, 4, 32)
        _check("banks", banks, 1, 16)
        _check("depth", depth, 16 * banks, 1 << 24)
        _check("read_ports", read_ports, 1, 4, pow2=False)
        self.word_bytes, self.depth, self.banks, self.read_ports = word_bytes, depth, banks, read_ports
        self.addr_width = (depth - 1).bit_length()
        super().__init__({
            "wr": In(WritePortSignature(self.addr_width, word_bytes)),
            "rd": In(ReadPortSignature(self.addr_width, word_bytes)).array(read_ports),
        })

    def elaborate(self, platform):
        m = Module()
        bank_words = self.depth // self.banks
        low = (bank_words - 1).bit_length()
        rd_bank = [Signal(range(self.banks), name=f"rd{p}_bank") for p in range(self.read_ports)]
        for p in range(self.read_ports):
            with m.If(self.rd[p].en):
                m.d.sync += rd_bank[p].eq(self.rd[p].addr >> low)
        data = [[] for _ in range(self.read_ports)]
        for i in range(self.banks):
            mem = memory.Memory(shape=8 * self.word_bytes, depth=bank_words, init=[])
            m.submodules[f"bank{i}"] = mem
            wp = mem.write_port(granularity=8)
            sel_w = (self.wr.addr >> low) == i if self.banks > 1 else 1
            m.d.comb += [wp.addr.eq(self.wr.addr[:low]), wp.data.eq(self.wr.data),
                         wp.en.eq(Mux(sel_w, self.wr.en, 0))]
            for p in range(self.read_ports):
                rp = mem.read_port(transparent_for=(wp,))
                sel_r = (self.rd[p].addr >> low) == i if self.banks > 1 else 1
                m.d.comb += [rp.addr.eq(self.rd[p].addr[:low]), rp.en.eq(self.rd[p].en & sel_r)]
                data[p].append(rp.data)
        for p in range(self.read_ports):
            out = data[p][0]
            for i in range(1, self.banks):
                out = Mux(rd_bank[p] == i, data[p][i], out)
            m.d.comb += self.rd[p].data.eq(out)
        return m


class Accumulator(wiring.Component):
    """int32 accumulator SRAM: ``depth`` words of ``word_bytes`` bytes (``word_bytes / 4`` int32, little-endian),
    word-interleaved over ``banks`` banks (word ``w`` in bank ``w % banks``, row ``w // banks``).

    The *wide* port reads and writes one word in every bank per cycle (the matmul engine's read-modify-write of
    a whole result row segment); the *narrow* ports move one word at a global word address (requant reads,
    DMA loads/stores). A narrow write wins over a wide write to the same bank (the controller never runs both).
    Wide reads are transparent to the writes of the same cycle.

    Members
    -------
    wide_rd_addr : In(ArrayLayout(row bits, banks)), wide_rd_en : In(1), wide_rd_data : Out(ArrayLayout(word, banks))
    wide_wr_addr : In(ArrayLayout(row bits, banks)), wide_wr_data : In(ArrayLayout(word, banks)),
    wide_wr_en : In(ArrayLayout(word_bytes, banks)) (byte enables)
    rd : In(ReadPortSignature); wr : In(WritePortSignature)
    """

    def __init__(self, *, word_bytes: int, depth: int, banks: int = 1):
        _check("word_bytes", word_bytes, 4, 32)
        _check("banks", banks, 1, 64)
        _check("depth", depth, 2 * banks, 1 << 24)
        self.word_bytes, self.depth, self.banks = word_bytes, depth, banks
        self.addr_width = (depth - 1).bit_length()
        self.lb = (banks - 1).bit_length()
        self.row_width = max(1, self.addr_width - self.lb)
        W = 8 * word_bytes
        super().__init__({
            "wide_rd_addr": In(data.ArrayLayout(self.row_width, banks)),
            "wide_rd_en": In(1),
            "wide_rd_data": Out(data.ArrayLayout(W, banks)),
            "wide_wr_addr": In(data.ArrayLayout(self.row_width, banks)),
            "wide_wr_data": In(data.ArrayLayout(W, banks)),
            "wide_wr_en": In(data.ArrayLayout(word_bytes, banks)),
            "wr": In(WritePortSignature(self.addr_width, word_bytes)),
            "rd": In(ReadPortSignature(self.addr_width, word_bytes)),
        })

    def elaborate(self, platform):
        m = Module()
        NB, lb = self.banks, self.lb
        rd_bank = Signal(range(NB))
        with m.If(self.rd.en):
            m.d.sync += rd_bank.eq(self.rd.addr[:lb] if lb else 0)
        narrow = []
        for b in range(NB):
            mem = memory.Memory(shape=8 * self.word_bytes, depth=self.depth // NB, init=[])
            m.submodules[f"bank{b}"] = mem
            wp = mem.write_port(granularity=8)
            wide_rp = mem.read_port(transparent_for=(wp,))
            narrow_rp = mem.read_port(transparent_for=(wp,))
            n_sel_w = (self.wr.addr[:lb] == b) if lb else 1
            n_wr = Signal(name=f"narrow_wr{b}")
            m.d.comb += n_wr.eq(n_sel_w & (self.wr.en != 0))
            m.d.comb += [
                wp.addr.eq(Mux(n_wr, self.wr.addr >> lb, self.wide_wr_addr[b])),
                wp.data.eq(Mux(n_wr, self.wr.data, self.wide_wr_data[b])),
                wp.en.eq(Mux(n_wr, self.wr.en, self.wide_wr_en[b])),
                wide_rp.addr.eq(self.wide_rd_addr[b]), wide_rp.en.eq(self.wide_rd_en),
                self.wide_rd_data[b].eq(wide_rp.data),
                narrow_rp.addr.eq(self.rd.addr >> lb),
                narrow_rp.en.eq(self.rd.en & ((self.rd.addr[:lb] == b) if lb else 1)),
            ]
            narrow.append(narrow_rp.data)
        out = narrow[0]
        for b in range(1, NB):
            out = Mux(rd_bank == b, narrow[b], out)
        m.d.comb += self.rd.data.eq(out)
        return m
