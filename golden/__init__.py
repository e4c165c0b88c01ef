"""NumPy golden model of integer Transformer operators: the spec the RTL must equal bit for bit.

This package knows nothing of hardware; it imports only NumPy (and safetensors for checkpoints).
"""
