"""Programs for the NPU: assembler, compiler (layers and GEMMs to instruction streams), ISA-level simulator.
"""
