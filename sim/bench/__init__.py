"""Benchmarks behind ``make bench``: JSON under build/bench/ plus a short table.
"""
