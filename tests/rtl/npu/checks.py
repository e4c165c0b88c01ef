"""Assertions the NPU system tests on the fast harness share."""

from __future__ import annotations


def assert_fast_exact(jobs, results) -> None:
    """Every job finished without timeout or error status, with a clean AXI protocol, the expected ring tail and
    MACS counter, and no byte different from either golden tier (ISA simulator image, golden requant(gemm))."""
    for job, res in zip(jobs, results, strict=True):
        assert res["dram_protocol_error"] == 0, (job.name, res)
        assert not res["timeout"] and res["error"] == job.expect_status == 0, (job.name, res)
        assert res["mismatches"] == 0 and res["golden_mismatch_bytes"] == 0, (job.name, res)
        assert res["isasim_mismatch_bytes"] == 0 and res["tail"] == job.expect_tail, (job.name, res)
        assert res["counters"]["MACS"] == job.macs, (job.name, res["counters"])
