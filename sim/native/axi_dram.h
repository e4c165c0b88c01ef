// AXI4 subordinate DRAM model of the native NPU harness: a cycle-exact C++ port of sim/hdl/axi_dram.v (the fast
// cocotb harness's Verilog model), plus a bandwidth cap the Verilog model does not have.
//
// Same timing as axi_dram.v, so both harnesses count the same cycles on the same program:
// * AR queue of AR_DEPTH requests served in order; the first R beat of a burst is valid 2 + read_latency cycles
//   after its AR handshake at the earliest, beats back to back.
// * AW queue of AW_DEPTH; W beats taken once their AW is at the head, bytes under WSTRB; BVALID 1 +
//   write_latency cycles after the last W handshake at the earliest; B_DEPTH responses may wait for BREADY.
// * OKAY, or DECERR for every beat at or beyond dram_bytes (read beat 0, write beat dropped).
// * Random stalls: the same 64-bit xorshift generator, advanced every cycle and seeded at reset; on each of AR,
//   R, AW, W, B a stall cycle happens with probability stall_256 / 256.
// * protocol_error (sticky, cleared by reset and by a load): [0] WLAST differs from the AWLEN count, [1] AxSIZE
//   wider than the bus, [2] a WRAP burst (served as INCR).
// Bandwidth cap (native only; 0 = none, then timing equals axi_dram.v): a byte budget that grows by
// bytes_per_cycle each cycle up to two bus words; a W beat (priority) or an R beat spends one bus word
// (bus_bytes). So reads + writes together move at most bytes_per_cycle bytes per cycle on average.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace npuforge {

/// What the NPU drives towards the DRAM, sampled before a rising clock edge.
struct DramIn {
    bool arvalid, rready, awvalid, wvalid, wlast, bready;
    uint32_t araddr, arid, awaddr, awid, wstrb;
    uint8_t arlen, arsize, arburst, awlen, awsize, awburst;
    const uint8_t* wdata;  // bus_bytes bytes, little endian
};

class AxiDram {
public:
    static constexpr unsigned AR_DEPTH = 8, AW_DEPTH = 4, B_DEPTH = 8;  // as axi_dram.v's defaults
    static constexpr uint8_t OKAY = 0, DECERR = 3;

    AxiDram(unsigned bus_bytes, uint32_t dram_bytes)
        : bus_bytes_(bus_bytes), lsb_(log2(bus_bytes)), dram_bytes_(dram_bytes), mem_(dram_bytes, 0),
          rdata_(bus_bytes, 0) {}

    // Run-time settings (set before the reset).
    uint32_t read_latency = 0, write_latency = 0, stall_256 = 0, seed = 1, bytes_per_cycle = 0;

    // -- outputs towards the NPU (registered, or from registered state only: no path from the NPU's outputs) --
    bool arready(bool rst) const { return !rst && ar_wp_ - ar_rp_ != AR_DEPTH && !stall(0); }
    bool awready(bool rst) const { return !rst && aw_wp_ - aw_rp_ != AW_DEPTH && !stall(2); }
    bool wready(bool rst) const {
        return !rst && wr_active_ && b_wp_ - b_rp_ != B_DEPTH && !stall(3) && credit_ok(0);
    }
    bool rvalid() const { return rvalid_; }
    bool rlast() const { return rlast_; }
    uint32_t rid() const { return rid_; }
    uint8_t rresp() const { return rresp_; }
    const uint8_t* rdata() const { return rdata_.data(); }
    bool bvalid() const { return bvalid_; }
    uint32_t bid() const { return bid_; }
    uint8_t bresp() const { return bresp_; }
    uint8_t protocol_error() const { return protocol_error_; }

    uint32_t dram_bytes() const { return dram_bytes_; }
    uint8_t* memory() { return mem_.data(); }

    /// Clear the decoded memory and copy ``image`` to address 0 (the Verilog model's ``load`` pulse).
    void load(const std::vector<uint8_t>& image) {
        std::fill(mem_.begin(), mem_.end(), 0);
        std::copy(image.begin(), image.end(), mem_.begin());
        protocol_error_ = 0;
    }

    /// One rising clock edge with the NPU's outputs ``in`` (axi_dram.v's always block, line by line).
    void step(bool rst, const DramIn& in) {
        // now and the stall generator advance at the end: every other value below is from before the edge.
        const uint32_t now = now_;
        if (rst) {
            ar_wp_ = ar_rp_ = aw_wp_ = aw_rp_ = b_wp_ = b_rp_ = 0;
            rd_active_ = wr_active_ = rvalid_ = bvalid_ = rlast_ = false;
            rid_ = 0; rresp_ = OKAY; std::fill(rdata_.begin(), rdata_.end(), 0); bid_ = 0; bresp_ = OKAY;
            protocol_error_ = 0;
            credit_ = 2 * bus_bytes_;
            now_ = now + 1;
            rng_ = (uint64_t(seed ^ 0x9e3779b9u) << 32 | uint32_t(~seed)) | 1u;
            return;
        }
        // Combinational values before the edge (all from the old state).
        const bool ar_fire = in.arvalid && arready(false);
        const bool ar_head_ready = ar_wp_ != ar_rp_ && reached(now, arq_[ar_rp_ % AR_DEPTH].time);
        const bool aw_fire = in.awvalid && awready(false);
        const bool w_fire = in.wvalid && wready(false);
        const bool w_final = wr_left_ == 0;
        const bool w_load = aw_wp_ != aw_rp_ && (!wr_active_ || (w_fire && w_final));
        const bool r_advance = !rvalid_ || in.rready;
        const bool r_beat = r_advance && rd_active_ && !stall(1) && credit_ok(w_fire ? bus_bytes_ : 0);
        const bool r_load = ar_head_ready && (!rd_active_ || (r_beat && rd_left_ == 0));
        const bool b_advance = !bvalid_ || in.bready;
        const bool b_head_ready = b_wp_ != b_rp_ && reached(now, bq_[b_rp_ % B_DEPTH].time);
        const bool w_in_range = wr_addr_ < dram_bytes_;
        const bool r_in_range = rd_addr_ < dram_bytes_;
        if (bytes_per_cycle) {
            uint64_t c = credit_ - (w_fire ? bus_bytes_ : 0) - (r_beat ? bus_bytes_ : 0) + bytes_per_cycle;
            credit_ = std::min<uint64_t>(c, 2 * bus_bytes_);
        }
        // AR
        if (ar_fire) {
            arq_[ar_wp_ % AR_DEPTH] = {in.araddr, in.arlen, in.arsize, in.arburst, in.arid,
                                       now + 1 + read_latency};
            ++ar_wp_;
            if (in.arsize > lsb_) protocol_error_ |= 2;
            if (in.arburst == 2) protocol_error_ |= 4;
        }
        // R: the word is read before this edge's W beat writes (a same-cycle read returns the old value).
        if (r_advance) {
            if (r_beat) {
                rvalid_ = true;
                rid_ = rd_id_;
                rlast_ = rd_left_ == 0;
                rresp_ = r_in_range ? OKAY : DECERR;
                if (r_in_range)
                    std::memcpy(rdata_.data(), &mem_[rd_addr_ >> lsb_ << lsb_], bus_bytes_);
                else
                    std::fill(rdata_.begin(), rdata_.end(), 0);
                rd_addr_ = next_addr(rd_addr_, rd_size_, rd_burst_);
                if (rd_left_ == 0) rd_active_ = false;
                --rd_left_;
            } else {
                rvalid_ = false;
            }
        }
        if (r_load) {
            const Req& q = arq_[ar_rp_ % AR_DEPTH];
            rd_active_ = true; rd_addr_ = q.addr; rd_left_ = q.len; rd_size_ = q.size; rd_burst_ = q.burst;
            rd_id_ = q.id;
            ++ar_rp_;
        }
        // AW
        if (aw_fire) {
            awq_[aw_wp_ % AW_DEPTH] = {in.awaddr, in.awlen, in.awsize, in.awburst, in.awid, 0};
            ++aw_wp_;
            if (in.awsize > lsb_) protocol_error_ |= 2;
            if (in.awburst == 2) protocol_error_ |= 4;
        }
        // W
        if (w_fire) {
            if (w_in_range) {
                uint8_t* word = &mem_[wr_addr_ >> lsb_ << lsb_];
                for (unsigned i = 0; i < bus_bytes_; ++i)
                    if (in.wstrb >> i & 1) word[i] = in.wdata[i];
            }
            if (in.wlast != w_final) protocol_error_ |= 1;
            const bool err = wr_err_ || !w_in_range;
            wr_addr_ = next_addr(wr_addr_, wr_size_, wr_burst_);
            --wr_left_;
            wr_err_ = err;
            if (w_final) {
                bq_[b_wp_ % B_DEPTH] = {wr_id_, uint8_t(err ? DECERR : OKAY), now + 1 + write_latency};
                ++b_wp_;
                wr_active_ = false;
            }
        }
        if (w_load) {
            const Req& q = awq_[aw_rp_ % AW_DEPTH];
            wr_active_ = true; wr_err_ = false; wr_addr_ = q.addr; wr_left_ = q.len; wr_size_ = q.size;
            wr_burst_ = q.burst; wr_id_ = q.id;
            ++aw_rp_;
        }
        // B
        if (b_advance) {
            if (b_head_ready && !stall(4)) {
                const Resp& b = bq_[b_rp_ % B_DEPTH];
                bvalid_ = true; bid_ = b.id; bresp_ = b.resp;
                ++b_rp_;
            } else {
                bvalid_ = false;
            }
        }
        now_ = now + 1;
        rng_ = xorshift(rng_);
    }

private:
    struct Req { uint32_t addr; uint8_t len, size, burst; uint32_t id, time; };
    struct Resp { uint32_t id; uint8_t resp; uint32_t time; };

    static unsigned log2(unsigned v) { unsigned r = 0; while ((1u << r) < v) ++r; return r; }
    static uint64_t xorshift(uint64_t x) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return x;
    }
    // now >= t for timestamps less than 2^31 cycles apart (axi_dram.v's reached()).
    static bool reached(uint32_t now, uint32_t t) { return !((now - t) >> 31 & 1); }
    // AXI4 A3.4.1: FIXED keeps the address, INCR steps to the next aligned beat.
    static uint32_t next_addr(uint32_t a, uint8_t size, uint8_t burst) {
        const uint32_t step = 1u << size;
        return burst == 0 ? a : (a & ~(step - 1)) + step;
    }
    // Stall of channel ``ch`` (0 AR, 1 R, 2 AW, 3 W, 4 B) this cycle: byte ``ch`` of the generator.
    bool stall(unsigned ch) const { return uint32_t(rng_ >> (8 * ch) & 0xFF) < stall_256; }
    bool credit_ok(unsigned spent) const { return !bytes_per_cycle || credit_ >= spent + bus_bytes_; }

    const unsigned bus_bytes_, lsb_;
    const uint32_t dram_bytes_;
    std::vector<uint8_t> mem_;
    uint32_t now_ = 0;
    uint64_t rng_ = 1;
    uint64_t credit_ = 0;
    Req arq_[AR_DEPTH] = {}, awq_[AW_DEPTH] = {};
    Resp bq_[B_DEPTH] = {};
    uint32_t ar_wp_ = 0, ar_rp_ = 0, aw_wp_ = 0, aw_rp_ = 0, b_wp_ = 0, b_rp_ = 0;  // free-running
    bool rd_active_ = false, wr_active_ = false, wr_err_ = false;
    uint32_t rd_addr_ = 0, wr_addr_ = 0, rd_id_ = 0, wr_id_ = 0;
    uint8_t rd_left_ = 0, rd_size_ = 0, rd_burst_ = 0, wr_left_ = 0, wr_size_ = 0, wr_burst_ = 0;
    bool rvalid_ = false, rlast_ = false, bvalid_ = false;
    uint32_t rid_ = 0, bid_ = 0;
    uint8_t rresp_ = OKAY, bresp_ = OKAY, protocol_error_ = 0;
    std::vector<uint8_t> rdata_;
};

}  // namespace npuforge
