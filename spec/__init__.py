"""The hardware/software contract as plain Python data (stdlib only): instruction formats, opcodes, error
codes, precision modes, dataflow codes, operator limits and the integer constants golden and RTL share.
"""
