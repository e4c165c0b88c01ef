// AXI4 subordinate DRAM model for simulation (plain Verilog-2005: Verilator and Icarus).
//
// Replaces cocotbext-axi's AxiRam in the fast NPU system harness (sim/tb_npu_fast.py): no per-cycle Python.
//
// * Data width DATA_BITS (32..256), ID_BITS-bit IDs, 32-bit byte addresses. FIXED and INCR bursts of 1..256
//   beats, narrow beats (AxSIZE < bus width: the word holding the address is returned / written under WSTRB);
//   WRAP bursts are not modelled (flagged in protocol_error[2], served as INCR).
// * Reads: an AR queue of AR_DEPTH requests (several outstanding), served in order, R beats back to back.
//   The first R beat of a burst is valid 2 + read_latency cycles after its AR handshake at the earliest.
// * Writes: an AW queue of AW_DEPTH; W beats are taken once their AW is at the head (allowed: a subordinate
//   may wait for AWVALID before WREADY); byte lanes under WSTRB. BVALID comes 1 + write_latency cycles after
//   the last W handshake at the earliest; B_DEPTH responses may wait for BREADY.
// * Responses OKAY; DECERR for every beat at or beyond dram_bytes (the read beat returns 0, the write beat
//   writes nothing, the burst's B says DECERR).
// * Random stalls: a 64-bit xorshift generator advanced every cycle; on each of AR, R, AW, W, B a stall cycle
//   happens with probability stall_256 / 256 (ARREADY/AWREADY/WREADY low, or the next R/B beat held back:
//   a VALID once raised stays until its handshake, as AXI requires).
// * Memory image: on a clock edge with `load` high the first dram_bytes are cleared and the file named by the
//   plusarg +dram_image=PATH is read with $readmemh (one DATA_BITS-bit hex word per line, word 0 = bytes
//   0..DATA_BITS/8-1, little endian); with `dump` high the first dram_bytes are written with $writememh to
//   +dram_dump=PATH. So one simulator instance runs many jobs without per-word Python. Pulse load/dump only
//   while the bus is idle.
// * protocol_error (sticky, cleared by load or reset): [0] WLAST differs from the AWLEN count, [1] AxSIZE wider
//   than the bus, [2] a WRAP burst, [3] a load/dump plusarg is missing.
//
// Run-time settings (plusargs, each defaulting to the parameter of the same meaning): +dram_bytes=N (decoded
// size, <= MEM_BYTES), +dram_read_latency=N, +dram_write_latency=N (cycles), +dram_stall_256=N (0..255),
// +dram_seed=N.
`default_nettype none

module axi_dram #(
    parameter DATA_BITS = 64,
    parameter ID_BITS = 4,
    parameter MEM_BYTES = 1048576,     // storage, a power of two; the decoded size is dram_bytes <= MEM_BYTES
    parameter AR_DEPTH = 8,            // outstanding reads (power of two)
    parameter AW_DEPTH = 4,            // queued write addresses (power of two)
    parameter B_DEPTH = 8,             // write responses waiting for BREADY (power of two)
    parameter READ_LATENCY = 0,        // extra cycles, see above
    parameter WRITE_LATENCY = 0,
    parameter STALL_256 = 0,
    parameter SEED = 1
) (
    input  wire                     clk,
    input  wire                     rst,
    input  wire                     load,
    input  wire                     dump,
    output reg  [3:0]               protocol_error,
    // AW
    input  wire                     awvalid,
    output wire                     awready,
    input  wire [ID_BITS-1:0]       awid,
    input  wire [31:0]              awaddr,
    input  wire [7:0]               awlen,
    input  wire [2:0]               awsize,
    input  wire [1:0]               awburst,
    // W
    input  wire                     wvalid,
    output wire                     wready,
    input  wire [DATA_BITS-1:0]     wdata,
    input  wire [DATA_BITS/8-1:0]   wstrb,
    input  wire                     wlast,
    // B
    output reg                      bvalid,
    input  wire                     bready,
    output reg  [ID_BITS-1:0]       bid,
    output reg  [1:0]               bresp,
    // AR
    input  wire                     arvalid,
    output wire                     arready,
    input  wire [ID_BITS-1:0]       arid,
    input  wire [31:0]              araddr,
    input  wire [7:0]               arlen,
    input  wire [2:0]               arsize,
    input  wire [1:0]               arburst,
    // R
    output reg                      rvalid,
    input  wire                     rready,
    output reg  [ID_BITS-1:0]       rid,
    output reg  [DATA_BITS-1:0]     rdata,
    output reg  [1:0]               rresp,
    output reg                      rlast
);
    localparam BYTES = DATA_BITS / 8;
    localparam LSB = $clog2(BYTES);
    localparam WORDS = MEM_BYTES / BYTES;
    localparam WA = $clog2(WORDS);          // word-address bits
    localparam MAX_SIZE = LSB;              // largest legal AxSIZE
    localparam ARP = $clog2(AR_DEPTH);
    localparam AWP = $clog2(AW_DEPTH);
    localparam BP = $clog2(B_DEPTH);
    localparam [1:0] OKAY = 2'd0, DECERR = 2'd3;

    reg [DATA_BITS-1:0] mem [0:WORDS-1];

    // ---- run-time settings ----
    reg [31:0] dram_bytes, read_latency, write_latency, stall_256, seed;
    reg [8*1024-1:0] image_file, dump_file;
    reg have_image, have_dump;
    initial begin
        dram_bytes = MEM_BYTES;
        read_latency = READ_LATENCY;
        write_latency = WRITE_LATENCY;
        stall_256 = STALL_256;
        seed = SEED;
        if ($value$plusargs("dram_bytes=%d", dram_bytes)) begin end
        if ($value$plusargs("dram_read_latency=%d", read_latency)) begin end
        if ($value$plusargs("dram_write_latency=%d", write_latency)) begin end
        if ($value$plusargs("dram_stall_256=%d", stall_256)) begin end
        if ($value$plusargs("dram_seed=%d", seed)) begin end
        have_image = $value$plusargs("dram_image=%s", image_file);
        have_dump = $value$plusargs("dram_dump=%s", dump_file);
        if (dram_bytes > MEM_BYTES || dram_bytes < BYTES) begin
            $display("axi_dram: +dram_bytes=%0d outside [%0d, %0d], using %0d", dram_bytes, BYTES, MEM_BYTES,
                     MEM_BYTES);
            dram_bytes = MEM_BYTES;
        end
        if (stall_256 > 255) begin
            $display("axi_dram: +dram_stall_256=%0d outside [0, 255], using 255", stall_256);
            stall_256 = 255;
        end
    end

    // ---- cycle counter (timestamps for the latency model; wrap-safe compares) and stall generator ----
    reg [31:0] now;
    reg [63:0] rng;
    wire [63:0] rng_a = rng ^ (rng << 13);
    wire [63:0] rng_b = rng_a ^ (rng_a >> 7);
    wire [63:0] rng_next = rng_b ^ (rng_b << 17);
    wire stall_ar = {24'd0, rng[7:0]} < stall_256;
    wire stall_r  = {24'd0, rng[15:8]} < stall_256;
    wire stall_aw = {24'd0, rng[23:16]} < stall_256;
    wire stall_w  = {24'd0, rng[31:24]} < stall_256;
    wire stall_b  = {24'd0, rng[39:32]} < stall_256;

    function reached;   // now >= t, for timestamps less than 2^31 cycles apart
        input [31:0] now_, t;
        reg [31:0] d;
        begin
            d = now_ - t;
            reached = ~d[31];
        end
    endfunction

    function [31:0] next_addr;   // AXI4 A3.4.1: FIXED keeps the address, INCR steps to the next aligned beat
        input [31:0] a;
        input [2:0] size;
        input [1:0] burst;
        reg [31:0] step;
        begin
            step = 32'd1 << size;
            next_addr = (burst == 2'd0) ? a : ((a & ~(step - 32'd1)) + step);
        end
    endfunction

    // ---- AR queue ----
    reg [31:0] arq_addr [0:AR_DEPTH-1];
    reg [7:0] arq_len [0:AR_DEPTH-1];
    reg [2:0] arq_size [0:AR_DEPTH-1];
    reg [1:0] arq_burst [0:AR_DEPTH-1];
    reg [ID_BITS-1:0] arq_id [0:AR_DEPTH-1];
    reg [31:0] arq_time [0:AR_DEPTH-1];
    reg [ARP:0] ar_wp, ar_rp;
    wire [ARP:0] ar_count = ar_wp - ar_rp;
    wire ar_head_ready = (ar_count != 0) && reached(now, arq_time[ar_rp[ARP-1:0]]);
    assign arready = !rst && ar_count != AR_DEPTH && !stall_ar;
    wire ar_fire = arvalid && arready;

    // ---- read engine: the burst being returned ----
    reg rd_active;
    reg [31:0] rd_addr;
    reg [7:0] rd_left;          // beats after the current one
    reg [2:0] rd_size;
    reg [1:0] rd_burst;
    reg [ID_BITS-1:0] rd_id;
    wire r_advance = !rvalid || rready;
    wire r_beat = r_advance && rd_active && !stall_r;
    wire r_load = ar_head_ready && (!rd_active || (r_beat && rd_left == 8'd0));

    // ---- AW queue and write engine ----
    reg [31:0] awq_addr [0:AW_DEPTH-1];
    reg [7:0] awq_len [0:AW_DEPTH-1];
    reg [2:0] awq_size [0:AW_DEPTH-1];
    reg [1:0] awq_burst [0:AW_DEPTH-1];
    reg [ID_BITS-1:0] awq_id [0:AW_DEPTH-1];
    reg [AWP:0] aw_wp, aw_rp;
    wire [AWP:0] aw_count = aw_wp - aw_rp;
    assign awready = !rst && aw_count != AW_DEPTH && !stall_aw;
    wire aw_fire = awvalid && awready;

    reg wr_active, wr_err;
    reg [31:0] wr_addr;
    reg [7:0] wr_left;
    reg [2:0] wr_size;
    reg [1:0] wr_burst;
    reg [ID_BITS-1:0] wr_id;

    // ---- B queue ----
    reg [ID_BITS-1:0] bq_id [0:B_DEPTH-1];
    reg [1:0] bq_resp [0:B_DEPTH-1];
    reg [31:0] bq_time [0:B_DEPTH-1];
    reg [BP:0] b_wp, b_rp;
    wire [BP:0] b_count = b_wp - b_rp;
    // A W beat is taken only while its response has a slot.
    assign wready = !rst && wr_active && b_count != B_DEPTH && !stall_w;
    wire w_fire = wvalid && wready;
    wire w_final = wr_left == 8'd0;
    wire w_load = aw_count != 0 && (!wr_active || (w_fire && w_final));
    wire b_advance = !bvalid || bready;
    wire b_head_ready = b_count != 0 && reached(now, bq_time[b_rp[BP-1:0]]);

    wire w_in_range = wr_addr < dram_bytes;
    wire r_in_range = rd_addr < dram_bytes;

    reg [DATA_BITS-1:0] word;
    integer i;

    // One process owns the memory (blocking writes after the read: a word read and written in the same
    // cycle returns its old value), so the simulators agree.
    always @(posedge clk) begin
        now <= now + 32'd1;
        rng <= rng_next;
        if (rst) begin
            ar_wp <= 0; ar_rp <= 0; aw_wp <= 0; aw_rp <= 0; b_wp <= 0; b_rp <= 0;
            rd_active <= 1'b0; wr_active <= 1'b0; rvalid <= 1'b0; bvalid <= 1'b0; rlast <= 1'b0;
            rid <= 0; rresp <= OKAY; rdata <= 0; bid <= 0; bresp <= OKAY;
            protocol_error <= 4'd0;
            rng <= {seed ^ 32'h9e3779b9, ~seed} | 64'd1;
        end else begin
            // AR
            if (ar_fire) begin
                arq_addr[ar_wp[ARP-1:0]] <= araddr;
                arq_len[ar_wp[ARP-1:0]] <= arlen;
                arq_size[ar_wp[ARP-1:0]] <= arsize;
                arq_burst[ar_wp[ARP-1:0]] <= arburst;
                arq_id[ar_wp[ARP-1:0]] <= arid;
                arq_time[ar_wp[ARP-1:0]] <= now + 32'd1 + read_latency;
                ar_wp <= ar_wp + 1'b1;
                if (arsize > MAX_SIZE) protocol_error[1] <= 1'b1;
                if (arburst == 2'd2) protocol_error[2] <= 1'b1;
            end
            // R
            if (r_advance) begin
                if (r_beat) begin
                    rvalid <= 1'b1;
                    rid <= rd_id;
                    rlast <= rd_left == 8'd0;
                    rresp <= r_in_range ? OKAY : DECERR;
                    rdata <= r_in_range ? mem[rd_addr[LSB +: WA]] : {DATA_BITS{1'b0}};
                    rd_addr <= next_addr(rd_addr, rd_size, rd_burst);
                    rd_left <= rd_left - 8'd1;
                    if (rd_left == 8'd0) rd_active <= 1'b0;
                end else begin
                    rvalid <= 1'b0;
                end
            end
            if (r_load) begin
                rd_active <= 1'b1;
                rd_addr <= arq_addr[ar_rp[ARP-1:0]];
                rd_left <= arq_len[ar_rp[ARP-1:0]];
                rd_size <= arq_size[ar_rp[ARP-1:0]];
                rd_burst <= arq_burst[ar_rp[ARP-1:0]];
                rd_id <= arq_id[ar_rp[ARP-1:0]];
                ar_rp <= ar_rp + 1'b1;
            end
            // AW
            if (aw_fire) begin
                awq_addr[aw_wp[AWP-1:0]] <= awaddr;
                awq_len[aw_wp[AWP-1:0]] <= awlen;
                awq_size[aw_wp[AWP-1:0]] <= awsize;
                awq_burst[aw_wp[AWP-1:0]] <= awburst;
                awq_id[aw_wp[AWP-1:0]] <= awid;
                aw_wp <= aw_wp + 1'b1;
                if (awsize > MAX_SIZE) protocol_error[1] <= 1'b1;
                if (awburst == 2'd2) protocol_error[2] <= 1'b1;
            end
            // W
            if (w_fire) begin
                if (w_in_range) begin
                    word = mem[wr_addr[LSB +: WA]];
                    for (i = 0; i < BYTES; i = i + 1)
                        if (wstrb[i]) word[8 * i +: 8] = wdata[8 * i +: 8];
                    mem[wr_addr[LSB +: WA]] = word;
                end
                if (wlast != w_final) protocol_error[0] <= 1'b1;
                wr_addr <= next_addr(wr_addr, wr_size, wr_burst);
                wr_left <= wr_left - 8'd1;
                wr_err <= wr_err | !w_in_range;
                if (w_final) begin
                    bq_id[b_wp[BP-1:0]] <= wr_id;
                    bq_resp[b_wp[BP-1:0]] <= (wr_err || !w_in_range) ? DECERR : OKAY;
                    bq_time[b_wp[BP-1:0]] <= now + 32'd1 + write_latency;
                    b_wp <= b_wp + 1'b1;
                    wr_active <= 1'b0;
                end
            end
            if (w_load) begin
                wr_active <= 1'b1;
                wr_err <= 1'b0;
                wr_addr <= awq_addr[aw_rp[AWP-1:0]];
                wr_left <= awq_len[aw_rp[AWP-1:0]];
                wr_size <= awq_size[aw_rp[AWP-1:0]];
                wr_burst <= awq_burst[aw_rp[AWP-1:0]];
                wr_id <= awq_id[aw_rp[AWP-1:0]];
                aw_rp <= aw_rp + 1'b1;
            end
            // B
            if (b_advance) begin
                if (b_head_ready && !stall_b) begin
                    bvalid <= 1'b1;
                    bid <= bq_id[b_rp[BP-1:0]];
                    bresp <= bq_resp[b_rp[BP-1:0]];
                    b_rp <= b_rp + 1'b1;
                end else begin
                    bvalid <= 1'b0;
                end
            end
            // Memory image in and out (the bus is idle: the testbench pulses these between jobs).
            if (load) begin
                protocol_error <= have_image ? 4'd0 : 4'b1000;
                for (i = 0; i < dram_bytes / BYTES; i = i + 1)
                    mem[i] = {DATA_BITS{1'b0}};
                if (have_image) $readmemh(image_file, mem);
            end
            if (dump) begin
                if (have_dump) $writememh(dump_file, mem, 0, dram_bytes / BYTES - 1);
                else protocol_error[3] <= 1'b1;
            end
        end
    end

    initial begin
        now = 32'd0;
        rng = 64'd1;
    end
endmodule

`default_nettype wire
