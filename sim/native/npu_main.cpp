// npu_sim: the native NPU harness. The Verilated NPU (class Vnpu) + the C++ DRAM model (axi_dram.h), driven by
// a set-up script; no Python, no VPI in the loop.
//
//   npu_sim SETUP RESULT        run the set-up script, write the results
//   npu_sim --config            print the NPU configuration this binary was built for
//
// SETUP is text, one command per line (sim/harness/native.py writes it; '#' starts a comment):
//   npuforge-native 1                     format tag, first line
//   config HASH                           NPU configuration (must equal the build's, else exit 2)
//   dram BYTES RLAT WLAT BPC STALL256 SEED   decoded DRAM size, read/write latency (cycles), bandwidth cap
//                                         (bytes per cycle, 0 none), stall probability x 256, generator seed
//   reset                                 rst high for 4 cycles, then one cycle low (the cocotb reset_pulse)
//   job NAME                              start of a job's results
//   load PATH                             raw DRAM image (bytes at address 0; the rest of DRAM cleared)
//   wr ADDR VALUE                         AXI4-Lite register write (BRESP must be OKAY)
//   rd KEY ADDR                           AXI4-Lite register read, reported as "KEY VALUE"
//   irq KEY                               the irq pin, reported as "KEY VALUE"
//   wait_irq LIMIT                        run until irq is high, at most LIMIT cycles
//   wait N                                run N cycles
//   dump NBYTES PATH                      the first NBYTES of DRAM, raw, to PATH
// Every command takes exactly the clock cycles the fast cocotb testbench (sim/tb/npu_fast.py) takes for the
// same step, so both harnesses count the same cycles and see the same DRAM stall pattern.
//
// RESULT is text: "job NAME", then "KEY VALUE" lines (irq_cycles or timeout, the rd/irq keys,
// dram_protocol_error, job_cycles, job_wall_s), and at the end sim_cycles and sim_wall_s for the whole script.
// Exit status: 0 ran (a timeout is a result, not an error), 2 bad input (set-up or image file, configuration),
// 1 the harness failed (a register access that never completes). Errors are one line on stderr.
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Vnpu.h"
#include "verilated.h"
#include "axi_dram.h"

#include "native_config.h"   // NPU_CONFIG_HASH, NPU_AXI_BYTES: written per build by sim/harness/native.py

namespace {

using npuforge::AxiDram;
using npuforge::DramIn;

[[noreturn]] void fail(int code, const char* fmt, ...) {
    std::va_list ap;
    va_start(ap, fmt);
    std::fputs("npu_sim: ", stderr);
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
    std::exit(code);
}

// Ports of 1..64 bits are C++ integers, wider ones VlWide<N> (32-bit words, little endian).
template <class T>
void put_bytes(T& port, const uint8_t* src, unsigned n) {
    uint64_t v = 0;
    std::memcpy(&v, src, n);
    port = static_cast<T>(v);
}
template <std::size_t N>
void put_bytes(VlWide<N>& port, const uint8_t* src, unsigned n) {
    uint32_t w[N] = {};
    std::memcpy(w, src, n);
    for (std::size_t i = 0; i < N; ++i) port[i] = w[i];
}
template <class T>
void get_bytes(const T& port, uint8_t* dst, unsigned n) {
    const uint64_t v = port;
    std::memcpy(dst, &v, n);
}
template <std::size_t N>
void get_bytes(const VlWide<N>& port, uint8_t* dst, unsigned n) {
    uint32_t w[N];
    for (std::size_t i = 0; i < N; ++i) w[i] = port[i];
    std::memcpy(dst, w, n);
}

constexpr unsigned BUS_BYTES = NPU_AXI_BYTES;
// Verilator escapes the "__" of Amaranth's flattened port names (m_axi__awvalid) as "___05F".
#define M_AXI(member) m_axi___05F##member
#define S_AXIL(member) s_axil___05F##member
constexpr int AXIL_LIMIT = 1000;   // cycles a register access may wait for a handshake (as the cocotb driver)

struct Command {
    std::string op, key, path;
    uint64_t a = 0, b = 0;
    int line = 0;
};

class Harness {
public:
    Harness(uint32_t dram_bytes) : ctx_(new VerilatedContext), top_(new Vnpu(ctx_.get())),
                                   dram_(BUS_BYTES, dram_bytes), wdata_(BUS_BYTES) {
        top_->clk = 0;
        top_->rst = 1;
        top_->S_AXIL(wstrb) = 0xF;
        top_->eval();  // initial values, clock low: the first rising edge is seen as one
    }
    ~Harness() { top_->final(); }

    AxiDram& dram() { return dram_; }
    Vnpu& top() { return *top_; }
    uint64_t ticks() const { return ticks_; }

    // The clock. Every testbench step below is written as the cocotb testbench's: tick() is "await
    // RisingEdge", inputs written after it hold for the cycle after that edge, and outputs() is "await
    // ReadOnly()": the NPU's outputs during the current cycle.
#if NPU_REGISTERED_INPUTS
    // The Verilated top is the NPU behind a register on every input (sim/harness/native.py writes it): a port
    // holds the value the NPU's input has during the cycle after the next edge. So no NPU logic depends on a
    // top-level input (Verilator re-evaluates such logic on every eval() call), and the NPU's outputs depend
    // on its state only. The edge is evaluated lazily, once the testbench has written the inputs of the cycle
    // after it (flush()), so the registers see exactly what the cocotb harness drives in each cycle.
    void tick() {
        flush();
        pending_ = true;
        ++ticks_;
    }
    Vnpu& outputs() {
        flush();
        return *top_;
    }
    void flush() {
        if (!pending_) return;
        pending_ = false;
        Vnpu& t = *top_;
        dram_.step(rst_now_, sample());
        rst_now_ = t.rst;
        drive(rst_now_);
        t.clk = 1;
        t.eval();
        t.clk = 0;
        t.eval();
    }
#else
    // The Verilated top is the NPU itself: each cycle settles its inputs (a clock-low eval) before the edge.
    void tick() {
        Vnpu& t = *top_;
        settle();
        dram_.step(t.rst, sample());
        t.clk = 1;
        t.eval();
        ++ticks_;
    }
    Vnpu& outputs() {
        settle();
        return *top_;
    }
    void flush() {}
    void settle() {
        Vnpu& t = *top_;
        drive(t.rst);
        t.clk = 0;
        t.eval();
    }
#endif

    /// The DRAM model's outputs onto the NPU's inputs (``rst``: the NPU's reset during that cycle).
    void drive(bool rst) {
        Vnpu& t = *top_;
        t.M_AXI(arready) = dram_.arready(rst);
        t.M_AXI(awready) = dram_.awready(rst);
        t.M_AXI(wready) = dram_.wready(rst);
        t.M_AXI(rvalid) = dram_.rvalid();
        t.M_AXI(rid) = dram_.rid();
        put_bytes(t.M_AXI(rdata), dram_.rdata(), BUS_BYTES);
        t.M_AXI(rresp) = dram_.rresp();
        t.M_AXI(rlast) = dram_.rlast();
        t.M_AXI(bvalid) = dram_.bvalid();
        t.M_AXI(bid) = dram_.bid();
        t.M_AXI(bresp) = dram_.bresp();
    }

    /// The NPU's AXI4 manager outputs of the current cycle, as the DRAM model takes them at the next edge.
    const DramIn& sample() {
        Vnpu& t = *top_;
        DramIn& in = dram_in_;
        in.arvalid = t.M_AXI(arvalid); in.araddr = t.M_AXI(araddr); in.arid = t.M_AXI(arid);
        in.arlen = t.M_AXI(arlen); in.arsize = t.M_AXI(arsize); in.arburst = t.M_AXI(arburst);
        in.rready = t.M_AXI(rready);
        in.awvalid = t.M_AXI(awvalid); in.awaddr = t.M_AXI(awaddr); in.awid = t.M_AXI(awid);
        in.awlen = t.M_AXI(awlen); in.awsize = t.M_AXI(awsize); in.awburst = t.M_AXI(awburst);
        in.wvalid = t.M_AXI(wvalid); in.wlast = t.M_AXI(wlast); in.wstrb = t.M_AXI(wstrb);
        in.bready = t.M_AXI(bready);
        if (in.wvalid) get_bytes(t.M_AXI(wdata), wdata_.data(), BUS_BYTES);
        in.wdata = wdata_.data();
        return in;
    }

    void cycles(uint64_t n) { for (uint64_t i = 0; i < n; ++i) tick(); }

    /// The cocotb reset_pulse: rst high for 4 edges, low for one more.
    void reset() {
        top_->rst = 1;
        cycles(4);
        top_->rst = 0;
        tick();
    }

    /// The fast testbench's load/dump: an edge, the pulse edge (the model acts), one more edge.
    void load(const std::vector<uint8_t>& image) {
        tick();
        tick();
        flush();
        dram_.load(image);
        tick();
    }
    void dump(uint64_t nbytes, const std::string& path) {
        tick();
        tick();
        flush();
        std::ofstream out(path, std::ios::binary);
        out.write(reinterpret_cast<const char*>(dram_.memory()), std::streamsize(nbytes));
        if (!out) fail(2, "cannot write the DRAM dump %s", path.c_str());
        tick();
    }

    /// AXI4-Lite write, cycle for cycle as FastTb.wr in sim/tb/npu_fast.py.
    void write_reg(uint32_t addr, uint32_t value) {
        Vnpu& t = *top_;
        tick();
        t.S_AXIL(awaddr) = addr;
        t.S_AXIL(wdata) = value;
        t.S_AXIL(wstrb) = 0xF;
        t.S_AXIL(awvalid) = 1;
        t.S_AXIL(wvalid) = 1;
        bool aw_done = false, w_done = false;
        int i = 0;
        for (; i < AXIL_LIMIT; ++i) {
            outputs();
            const bool aw_now = !aw_done && t.S_AXIL(awready);
            const bool w_now = !w_done && t.S_AXIL(wready);
            tick();
            if (aw_now) { aw_done = true; t.S_AXIL(awvalid) = 0; }
            if (w_now) { w_done = true; t.S_AXIL(wvalid) = 0; }
            if (aw_done && w_done) break;
        }
        if (i == AXIL_LIMIT) fail(1, "register write 0x%03x: no AWREADY/WREADY within %d cycles", addr, AXIL_LIMIT);
        t.S_AXIL(bready) = 1;
        for (i = 0; i < AXIL_LIMIT; ++i) {
            outputs();
            if (t.S_AXIL(bvalid)) {
                const unsigned resp = t.S_AXIL(bresp);
                tick();
                t.S_AXIL(bready) = 0;
                if (resp) fail(1, "register write 0x%03x: BRESP %u", addr, resp);
                return;
            }
            tick();
        }
        fail(1, "register write 0x%03x: no BVALID within %d cycles", addr, AXIL_LIMIT);
    }

    /// AXI4-Lite read, cycle for cycle as FastTb.rd.
    uint32_t read_reg(uint32_t addr) {
        Vnpu& t = *top_;
        tick();
        t.S_AXIL(araddr) = addr;
        t.S_AXIL(arvalid) = 1;
        int i = 0;
        for (; i < AXIL_LIMIT; ++i) {
            outputs();
            const bool done = t.S_AXIL(arready);
            tick();
            if (done) { t.S_AXIL(arvalid) = 0; break; }
        }
        if (i == AXIL_LIMIT) fail(1, "register read 0x%03x: no ARREADY within %d cycles", addr, AXIL_LIMIT);
        t.S_AXIL(rready) = 1;
        for (i = 0; i < AXIL_LIMIT; ++i) {
            outputs();
            if (t.S_AXIL(rvalid)) {
                const uint32_t data = t.S_AXIL(rdata);
                const unsigned resp = t.S_AXIL(rresp);
                tick();
                t.S_AXIL(rready) = 0;
                if (resp) fail(1, "register read 0x%03x: RRESP %u", addr, resp);
                return data;
            }
            tick();
        }
        fail(1, "register read 0x%03x: no RVALID within %d cycles", addr, AXIL_LIMIT);
    }

    /// Cycles until irq is high (FastTb.wait_irq); -1 after ``limit`` cycles without it.
    int64_t wait_irq(uint64_t limit) {
        const uint64_t start = ticks_;
        while (!outputs().irq) {
            if (ticks_ - start >= limit) return -1;
            tick();
        }
        return int64_t(ticks_ - start);
    }

private:
    std::unique_ptr<VerilatedContext> ctx_;
    std::unique_ptr<Vnpu> top_;
    AxiDram dram_;
    std::vector<uint8_t> wdata_;
    DramIn dram_in_{};
    uint64_t ticks_ = 0;
    bool pending_ = false;  // an edge waits for flush()
    bool rst_now_ = true;   // the NPU's reset during the current cycle
};

uint64_t parse_uint(const std::string& tok, const char* what, const std::string& file, int line) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(tok.c_str(), &end, 0);
    if (tok.empty() || tok[0] == '-' || *end || errno)
        fail(2, "%s:%d: %s must be an unsigned integer, got '%s'", file.c_str(), line, what, tok.c_str());
    return v;
}

std::vector<Command> parse_setup(const std::string& file) {
    std::ifstream in(file);
    if (!in) fail(2, "cannot open the set-up file %s", file.c_str());
    std::vector<Command> cmds;
    std::string text;
    int line = 0;
    bool tagged = false;
    while (std::getline(in, text)) {
        ++line;
        const auto hash = text.find('#');
        if (hash != std::string::npos) text.erase(hash);
        std::istringstream words(text);
        Command c;
        c.line = line;
        if (!(words >> c.op)) continue;
        std::vector<std::string> args;
        for (std::string w; words >> w;) args.push_back(w);
        auto need = [&](std::size_t n, const char* usage) {
            if (args.size() != n)
                fail(2, "%s:%d: '%s' takes %s, got %zu arguments", file.c_str(), line, c.op.c_str(), usage,
                     args.size());
        };
        if (!tagged) {
            if (c.op != "npuforge-native" || args.size() != 1 || args[0] != "1")
                fail(2, "%s:%d: not an npuforge native set-up file (first line must be 'npuforge-native 1')",
                     file.c_str(), line);
            tagged = true;
            continue;
        }
        if (c.op == "config" || c.op == "job" || c.op == "irq") {
            need(1, "one word");
            c.key = args[0];
        } else if (c.op == "dram") {
            need(6, "BYTES RLAT WLAT BPC STALL256 SEED");
            c.path = text;  // the six numbers, parsed below
            cmds.push_back(c);
            for (std::size_t i = 0; i < 6; ++i) parse_uint(args[i], "a dram setting", file, line);
            continue;
        } else if (c.op == "reset") {
            need(0, "nothing");
        } else if (c.op == "load") {
            need(1, "PATH");
            c.path = args[0];
        } else if (c.op == "wr") {
            need(2, "ADDR VALUE");
            c.a = parse_uint(args[0], "ADDR", file, line);
            c.b = parse_uint(args[1], "VALUE", file, line);
            if (c.a > 0xFFF || c.b > 0xFFFFFFFFu)
                fail(2, "%s:%d: wr needs ADDR <= 0xfff and VALUE < 2^32", file.c_str(), line);
        } else if (c.op == "rd") {
            need(2, "KEY ADDR");
            c.key = args[0];
            c.a = parse_uint(args[1], "ADDR", file, line);
            if (c.a > 0xFFF) fail(2, "%s:%d: rd needs ADDR <= 0xfff", file.c_str(), line);
        } else if (c.op == "wait_irq" || c.op == "wait") {
            need(1, "a cycle count");
            c.a = parse_uint(args[0], "the cycle count", file, line);
        } else if (c.op == "dump") {
            need(2, "NBYTES PATH");
            c.a = parse_uint(args[0], "NBYTES", file, line);
            c.path = args[1];
        } else {
            fail(2, "%s:%d: unknown command '%s' (config, dram, reset, job, load, wr, rd, irq, wait_irq, wait, dump)",
                 file.c_str(), line, c.op.c_str());
        }
        cmds.push_back(c);
    }
    if (!tagged) fail(2, "%s is empty, not an npuforge native set-up file", file.c_str());
    return cmds;
}

std::vector<uint8_t> read_image(const std::string& path, uint32_t dram_bytes) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(2, "cannot open the DRAM image %s", path.c_str());
    const std::streamoff size = in.tellg();
    if (size <= 0) fail(2, "DRAM image %s is empty", path.c_str());
    if (uint64_t(size) > dram_bytes)
        fail(2, "DRAM image %s has %lld bytes, more than the DRAM's %u", path.c_str(), (long long)size, dram_bytes);
    std::vector<uint8_t> image(size);
    in.seekg(0);
    in.read(reinterpret_cast<char*>(image.data()), size);
    if (!in) fail(2, "cannot read the DRAM image %s", path.c_str());
    return image;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--config") {
        std::printf("%s %u\n", NPU_CONFIG_HASH, BUS_BYTES * 8);
        return 0;
    }
    if (argc != 3) fail(2, "usage: npu_sim SETUP RESULT  |  npu_sim --config");
    const std::string setup = argv[1];
    const std::vector<Command> cmds = parse_setup(setup);
    // Check the header commands before any simulation: configuration first, then the DRAM.
    std::size_t i = 0;
    if (cmds.empty() || cmds[0].op != "config")
        fail(2, "%s: the first command after the tag must be 'config HASH'", setup.c_str());
    if (cmds[0].key != NPU_CONFIG_HASH)
        fail(2, "%s: set-up for NPU configuration %s, but this harness was built for %s", setup.c_str(),
             cmds[0].key.c_str(), NPU_CONFIG_HASH);
    if (cmds.size() < 2 || cmds[1].op != "dram")
        fail(2, "%s: the second command must be 'dram BYTES RLAT WLAT BPC STALL256 SEED'", setup.c_str());
    uint64_t d[6];
    {
        std::istringstream words(cmds[1].path);
        std::string op;
        words >> op;
        for (auto& v : d) { std::string w; words >> w; v = std::strtoull(w.c_str(), nullptr, 0); }
    }
    if (d[0] < BUS_BYTES || d[0] > (1ull << 31) || (d[0] & (d[0] - 1)))
        fail(2, "%s:%d: DRAM size must be a power of two in [%u, 2^31] bytes, got %" PRIu64, setup.c_str(),
             cmds[1].line, BUS_BYTES, d[0]);
    if (d[1] > 1000000 || d[2] > 1000000)
        fail(2, "%s:%d: DRAM latency must be in [0, 1000000] cycles", setup.c_str(), cmds[1].line);
    if (d[4] > 255) fail(2, "%s:%d: STALL256 must be in [0, 255], got %" PRIu64, setup.c_str(), cmds[1].line, d[4]);
    if (d[3] > 4096) fail(2, "%s:%d: BPC must be in [0, 4096] bytes per cycle, got %" PRIu64, setup.c_str(),
                          cmds[1].line, d[3]);
    i = 2;

    Verilated::commandArgs(1, argv);
    Harness h{uint32_t(d[0])};
    AxiDram& dram = h.dram();
    dram.read_latency = uint32_t(d[1]);
    dram.write_latency = uint32_t(d[2]);
    dram.bytes_per_cycle = uint32_t(d[3]);
    dram.stall_256 = uint32_t(d[4]);
    dram.seed = uint32_t(d[5]);

    std::ostringstream out;
    const auto t_all = std::chrono::steady_clock::now();
    auto t_job = t_all;
    uint64_t job_start = 0;
    bool in_job = false;
    auto end_job = [&]() {
        if (!in_job) return;
        out << "dram_protocol_error " << unsigned(dram.protocol_error()) << "\n";
        out << "job_cycles " << h.ticks() - job_start << "\n";
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.6f", seconds_since(t_job));
        out << "job_wall_s " << buf << "\n";
        in_job = false;
    };
    for (; i < cmds.size(); ++i) {
        const Command& c = cmds[i];
        if (c.op == "config" || c.op == "dram") {
            fail(2, "%s:%d: '%s' may only appear once, at the top", setup.c_str(), c.line, c.op.c_str());
        } else if (c.op == "reset") {
            h.reset();
        } else if (c.op == "job") {
            end_job();
            out << "job " << c.key << "\n";
            in_job = true;
            job_start = h.ticks();
            t_job = std::chrono::steady_clock::now();
        } else if (c.op == "load") {
            h.load(read_image(c.path, dram.dram_bytes()));
        } else if (c.op == "wr") {
            h.write_reg(uint32_t(c.a), uint32_t(c.b));
        } else if (c.op == "rd") {
            out << c.key << " " << h.read_reg(uint32_t(c.a)) << "\n";
        } else if (c.op == "irq") {
            out << c.key << " " << unsigned(h.outputs().irq) << "\n";
        } else if (c.op == "wait_irq") {
            const int64_t n = h.wait_irq(c.a);
            if (n < 0) out << "timeout " << c.a << "\n";
            else out << "irq_cycles " << n << "\n";
        } else if (c.op == "wait") {
            h.cycles(c.a);
        } else if (c.op == "dump") {
            if (c.a > dram.dram_bytes())
                fail(2, "%s:%d: dump of %" PRIu64 " bytes, more than the DRAM's %u", setup.c_str(), c.line, c.a,
                     dram.dram_bytes());
            h.dump(c.a, c.path);
        }
    }
    end_job();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", seconds_since(t_all));
    out << "sim_cycles " << h.ticks() << "\nsim_wall_s " << buf << "\n";
    std::ofstream result(argv[2]);
    result << out.str();
    if (!result) fail(2, "cannot write the result file %s", argv[2]);
    return 0;
}
