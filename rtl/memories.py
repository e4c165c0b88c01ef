"""On-chip memories of the NPU: the banked operand scratchpad and the int32 accumulator SRAM.

Both are arrays of *local words* of ``word_bytes`` bytes (one AXI data word, the DMA's local word and the ISA's
row granule, docs/isa.md); word ``a`` holds local bytes ``a*word_bytes .. a*word_bytes + word_bytes - 1``,
little-endian. Built from :class:`amaranth.lib.memory.Memory` so synthesis infers block RAM.

Ports (plain signals, no handshake)
    ``wr``: ``addr`` (word), ``data``, ``en`` (one bit per byte) - the write happens on the clock edge.
    ``rd``: ``addr`` (word), ``en``; ``data`` is valid the cycle after ``en`` (synchronous read) and holds
    while ``en`` is low. A read of the word written in the same cycle returns the new data (transparent), so a
    read-modify-write pipeline never sees a stale word.
    ``wide_rd`` (scratchpad only): the same, but ``data`` is ``read_words`` consecutive words from ``addr`` (any
    word address; word ``addr + j`` in bits ``[8 * word_bytes * j, 8 * word_bytes * (j + 1))``).
"""

from __future__ import annotations

from math import gcd

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WritePortSignature", "ReadPortSignature", "Scratchpad", "Accumulator", "read_words_for"]


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


def read_words_for(word_bytes: int, beat_bytes) -> int:
    """Words ``I`` of a wide scratchpad read such that a beat of ``n`` bytes (``n`` in ``beat_bytes``) at any
    multiple of ``n`` from a word-aligned row start is covered by ONE read of ``I`` consecutive words.

    Such a beat starts at a byte offset within its first word that is a multiple of ``g = gcd(n, word_bytes)``,
    at most ``word_bytes - g``, so it spans at most ``ceil((word_bytes - g + n) / word_bytes)`` words; ``I`` is
    the next power of two (cheap word interleaving). 1 whenever every beat fits in one word (e.g. 8x8 on a 64-bit
    bus); ``next_pow2(n / word_bytes)`` for power-of-two beats wider than a word (16x16 on 64-bit: 2).
    """
    span = max(-(-(word_bytes - gcd(n, word_bytes) + n) // word_bytes) for n in beat_bytes)
    return 1 << (span - 1).bit_length()


class Scratchpad(wiring.Component):
    """Operand scratchpad: ``depth`` words of ``word_bytes`` bytes in ``banks`` banks of contiguous ranges.

    Bank ``i`` holds words ``[i * depth / banks, (i + 1) * depth / banks)``: separate SRAM macros, each with one
    write port and a read port per scratchpad read port (the NPU uses two wide ones, matmul activations and
    weights, and one or two narrow ones: DMA store / requant records, the vector sequencer), so the array's
    operand streams never wait for the DMA.

    Wide reads: each bank is word-interleaved over ``read_words`` sub-memories (word ``w`` in sub-memory
    ``w % read_words``, row ``w // read_words`` of its bank). A wide read of words ``a .. a + read_words - 1``
    addresses every sub-memory once (sub-memory ``s`` reads word ``a + ((s - a) mod read_words)``, which may lie
    in the next bank) and rotates the words into order, so an operand beat wider than a word, at any word
    address, is one read. The write port and the narrow read ports address the one sub-memory of their word.
    A read port's data mux uses the bank / sub-memory choice of the read issued one cycle earlier. Reads past
    the last word wrap to word 0.

    Parameters
    ----------
    word_bytes : int    bytes per word, 4..32 (power of two).
    depth : int         words, power of two, >= 16 * banks.
    banks : int         1..16 (power of two).
    read_ports : int    narrow (one-word) read ports, 0..4.
    wide_ports : int    wide read ports, 0..4 (``read_ports + wide_ports >= 1``).
    read_words : int    words per wide read, 1..8 (power of two, <= depth / banks).

    Members
    -------
    wr : In(WritePortSignature)
    rd : In(ArrayLayout of ReadPortSignature(word_bytes)) - ``rd[i]`` is narrow read port ``i``.
    wide_rd : In(ArrayLayout of ReadPortSignature(read_words * word_bytes)) - only with ``wide_ports``.
    """

    def __init__(self, *, word_bytes: int, depth: int, banks: int = 1, read_ports: int = 1, wide_ports: int = 0,
                 read_words: int = 1):
        _check("word_bytes", word_bytes, 4, 32)
        _check("banks", banks, 1, 16)
        _check("depth", depth, 16 * banks, 1 << 24)
        _check("read_ports", read_ports, 0, 4, pow2=False)
        _check("wide_ports", wide_ports, 0, 4, pow2=False)
        if read_ports + wide_ports < 1:
            raise ValueError(f"a scratchpad needs a read port: read_ports + wide_ports must be >= 1, "
                             f"got {read_ports} + {wide_ports}")
        _check("read_words", read_words, 1, min(8, depth // banks))
        self.word_bytes, self.depth, self.banks, self.read_ports = word_bytes, depth, banks, read_ports
        self.wide_ports, self.read_words = wide_ports, read_words
        self.addr_width = (depth - 1).bit_length()
        members = {
            "wr": In(WritePortSignature(self.addr_width, word_bytes)),
            "rd": In(ReadPortSignature(self.addr_width, word_bytes)).array(read_ports),
        }
        if wide_ports:
            members["wide_rd"] = In(ReadPortSignature(self.addr_width, word_bytes * read_words)).array(wide_ports)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        NI = self.read_words
        LI = (NI - 1).bit_length()
        sub_words = self.depth // self.banks // NI     # rows of one sub-memory
        low = (sub_words - 1).bit_length()              # row bits; the bank is word >> (LI + low)
        AW = self.addr_width
        # Every read port as a list of (word address, enable) per sub-memory it drives, and its data assembly.
        ports = [(self.rd[p], 1) for p in range(self.read_ports)]
        ports += [(self.wide_rd[p], NI) for p in range(self.wide_ports)]
        mems = [[None] * NI for _ in range(self.banks)]
        wps = [[None] * NI for _ in range(self.banks)]
        for b in range(self.banks):
            for s in range(NI):
                mem = memory.Memory(shape=8 * self.word_bytes, depth=sub_words, init=[])
                m.submodules[f"bank{b}" if NI == 1 else f"bank{b}_{s}"] = mem
                mems[b][s] = mem
                wp = mems[b][s].write_port(granularity=8)
                wps[b][s] = wp
                sel_w = 1
                if self.banks > 1:
                    sel_w = sel_w & ((self.wr.addr >> (LI + low)) == b)
                if NI > 1:
                    sel_w = sel_w & (self.wr.addr[:LI] == s)
                m.d.comb += [wp.addr.eq(self.wr.addr[LI:LI + low]), wp.data.eq(self.wr.data),
                             wp.en.eq(Mux(sel_w, self.wr.en, 0))]
        for p, (port, width) in enumerate(ports):
            name = f"rd{p}" if width == 1 else f"wide{p - self.read_ports}"
            # Sub-memory s serves the word of this read that lives in it.
            words = []
            for s in range(NI if width > 1 else 1):
                w = Signal(AW, name=f"{name}_word{s}")
                if width > 1:
                    m.d.comb += w.eq(port.addr + ((s - port.addr[:LI]) & (NI - 1)))
                else:
                    m.d.comb += w.eq(port.addr)
                words.append(w)
            # Registered choices for the data mux: bank of each served word, rotation / sub-memory.
            sel_bank = [Signal(range(self.banks), name=f"{name}_bank{s}") for s in range(len(words))]
            sel_sub = Signal(range(NI), name=f"{name}_sub")
            with m.If(port.en):
                m.d.sync += [sb.eq(w >> (LI + low)) for sb, w in zip(sel_bank, words)]
                m.d.sync += sel_sub.eq(port.addr[:LI] if NI > 1 else 0)
            sub_data = []                  # data of sub-memory s for this port (after the bank mux)
            for s in range(NI):
                w = words[s] if width > 1 else words[0]
                bank_sel = sel_bank[s] if width > 1 else sel_bank[0]
                outs = []
                for b in range(self.banks):
                    rp = mems[b][s].read_port(transparent_for=(wps[b][s],))
                    en = port.en
                    if self.banks > 1:
                        en = en & ((w >> (LI + low)) == b)
                    if width == 1 and NI > 1:
                        en = en & (w[:LI] == s)
                    m.d.comb += [rp.addr.eq(w[LI:LI + low]), rp.en.eq(en)]
                    outs.append(rp.data)
                out = outs[0]
                for b in range(1, self.banks):
                    out = Mux(bank_sel == b, outs[b], out)
                sub_data.append(out)
            if width == 1:
                out = sub_data[0]
                for s in range(1, NI):
                    out = Mux(sel_sub == s, sub_data[s], out)
                m.d.comb += port.data.eq(out)
            else:
                # Word j of the read is in sub-memory (a + j) mod NI: rotate by the registered a mod NI.
                for j in range(NI):
                    out = sub_data[j]
                    for r in range(1, NI):
                        out = Mux(sel_sub == r, sub_data[(r + j) % NI], out)
                    m.d.comb += port.data[8 * self.word_bytes * j:8 * self.word_bytes * (j + 1)].eq(out)
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
        # 2-byte words: the accumulator extension of a 32-bit bus (16 bits per int32 element, spec.block_scale)
        _check("word_bytes", word_bytes, 2, 32)
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
