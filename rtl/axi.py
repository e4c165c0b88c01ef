"""AXI4 and AXI4-Lite bus signatures (manager view) with the AMBA member names.

A component port ``m_axi: Out(AXI4Signature(...))`` flattens in the emitted Verilog to
``m_axi__awvalid``, ``m_axi__awaddr``, ... so cocotbext-axi binds it with
``AxiBus.from_prefix(dut, "m_axi", bus_separator="__")``; a subordinate port is
``s_axil: In(AXI4LiteSignature(...))`` (``AxiLiteBus.from_prefix(dut, "s_axil", bus_separator="__")``).
"""

from __future__ import annotations

from amaranth.lib import enum
from amaranth.lib.wiring import In, Out, Signature

__all__ = ["Burst", "Resp", "AXI4Signature", "AXI4LiteSignature", "check_data_width"]


class Burst(enum.Enum, shape=2):
    """AxBURST encodings (AXI4 spec A3.4.1)."""
    FIXED = 0
    INCR = 1
    WRAP = 2


class Resp(enum.Enum, shape=2):
    """xRESP encodings (AXI4 spec A3.4.4)."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


AXI4_DATA_WIDTHS = (32, 64, 128, 256)


def check_data_width(data_width: int, allowed=AXI4_DATA_WIDTHS) -> None:
    if data_width not in allowed:
        raise ValueError(f"data_width must be one of {allowed} bits, got {data_width!r}")


def _check_positive(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


class AXI4Signature(Signature):
    """Full AXI4 interface, manager view (Out = driven by the manager).

    Parameters
    ----------
    addr_width : int
        Byte address bits (12..64).
    data_width : int
        Data bus bits: 32, 64, 128 or 256; ``wstrb`` has ``data_width // 8`` bits.
    id_width : int
        Transaction ID bits (1..16).

    Members: AW (``awvalid awready awid awaddr awlen awsize awburst awlock awcache awprot``),
    W (``wvalid wready wdata wstrb wlast``), B (``bvalid bready bid bresp``),
    AR (``arvalid arready arid araddr arlen arsize arburst arlock arcache arprot``),
    R (``rvalid rready rid rdata rresp rlast``).
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4):
        _check_positive("addr_width", addr_width, 12, 64)
        check_data_width(data_width)
        _check_positive("id_width", id_width, 1, 16)
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}valid": Out(1), f"{ch}ready": In(1), f"{ch}id": Out(id_width),
                f"{ch}addr": Out(addr_width), f"{ch}len": Out(8), f"{ch}size": Out(3),
                f"{ch}burst": Out(2), f"{ch}lock": Out(1), f"{ch}cache": Out(4), f"{ch}prot": Out(3),
            })
        members.update({
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width),
            "wstrb": Out(data_width // 8), "wlast": Out(1),
            "bvalid": In(1), "bready": Out(1), "bid": In(id_width), "bresp": In(2),
            "rvalid": In(1), "rready": Out(1), "rid": In(id_width), "rdata": In(data_width),
            "rresp": In(2), "rlast": In(1),
        })
        super().__init__(members)

    def __eq__(self, other):
        return (type(other) is AXI4Signature and self.addr_width == other.addr_width
                and self.data_width == other.data_width and self.id_width == other.id_width)

    def __hash__(self):
        return hash((AXI4Signature, self.addr_width, self.data_width, self.id_width))

    def __repr__(self):
        return f"AXI4Signature(addr_width={self.addr_width}, data_width={self.data_width}, id_width={self.id_width})"


class AXI4LiteSignature(Signature):
    """AXI4-Lite interface, manager view; a register file takes it as ``In(...)``.

    Parameters
    ----------
    addr_width : int
        Byte address bits (4..32).
    data_width : int
        32 or 64 bits.
    """

    def __init__(self, *, addr_width: int = 12, data_width: int = 32):
        _check_positive("addr_width", addr_width, 4, 32)
        check_data_width(data_width, (32, 64))
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "awvalid": Out(1), "awready": In(1), "awaddr": Out(addr_width), "awprot": Out(3),
            "wvalid": Out(1), "wready": In(1), "wdata": Out(data_width), "wstrb": Out(data_width // 8),
            "bvalid": In(1), "bready": Out(1), "bresp": In(2),
            "arvalid": Out(1), "arready": In(1), "araddr": Out(addr_width), "arprot": Out(3),
            "rvalid": In(1), "rready": Out(1), "rdata": In(data_width), "rresp": In(2),
        })

    def __eq__(self, other):
        return (type(other) is AXI4LiteSignature and self.addr_width == other.addr_width
                and self.data_width == other.data_width)

    def __hash__(self):
        return hash((AXI4LiteSignature, self.addr_width, self.data_width))

    def __repr__(self):
        return f"AXI4LiteSignature(addr_width={self.addr_width}, data_width={self.data_width})"
