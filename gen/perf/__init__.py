"""Performance models: the array-level cycle model and tokens/s, and the whole-program NPU cycle model.
"""
