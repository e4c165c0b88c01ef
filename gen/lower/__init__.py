"""Lowering real models' golden integer layers (golden.models) to NPU layer programs (gen.isa.builder)."""
