"""Dataflows of the PE array: their encoding on the array's ``dataflow`` port and in ``MATMUL.dataflow``, and
what a configuration's ``dataflow`` choice builds.

``ws`` weight-stationary (weights held in the PEs, activations stream through: best when many tokens reuse the
weights), ``os`` output-stationary (partial sums held in the PEs). A configuration chooses ``ws``, ``os`` or
``both`` (both datapaths with a run-time switch). The NPU's controller needs ``ws`` (``ws`` or ``both``).
"""

from __future__ import annotations

__all__ = ["DATAFLOW_CODES", "DATAFLOWS", "DATAFLOW_CHOICES", "NPU_DATAFLOW_CHOICES", "dataflows_of"]

#: Run-time dataflow -> code on the ``dataflow`` port and in ``MATMUL.dataflow`` (1 bit).
DATAFLOW_CODES: dict[str, int] = {"ws": 0, "os": 1}
#: Run-time dataflows in code order.
DATAFLOWS: tuple[str, ...] = tuple(DATAFLOW_CODES)
#: Values of a configuration's ``dataflow`` field.
DATAFLOW_CHOICES: tuple[str, ...] = ("ws", "os", "both")
#: The configuration values an NPU accepts (its controller schedules weight-stationary MATMULs).
NPU_DATAFLOW_CHOICES: tuple[str, ...] = ("ws", "both")


def dataflows_of(choice: str) -> tuple[str, ...]:
    """The run-time dataflows a configuration's ``dataflow`` choice builds: ``both`` -> ``("ws", "os")``."""
    if choice not in DATAFLOW_CHOICES:
        raise ValueError(f"dataflow must be one of {', '.join(DATAFLOW_CHOICES)}, got {choice!r}")
    return DATAFLOWS if choice == "both" else (choice,)
