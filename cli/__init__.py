"""The ``npuforge`` command line and its subcommands: the top layer, above everything it drives.
"""
