"""Design-point configuration: frozen, validated dataclasses for the array and the whole NPU.
"""
