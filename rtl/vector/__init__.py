"""Transformer vector unit: streaming integer operators that reproduce golden/ bit for bit.

``common`` holds the shared beat layout (:class:`VecBeat`), error codes and row bookkeeping;
each operator lives in its own module (requant, table, elementwise, rope, softmax, norm) and
``unit.VectorUnit`` routes streams to them by opcode (``unit.OPCODES``, ``unit.REGISTRY``).
Operator modules are imported on use, so this package imports even while one is being written.
"""

from npuforge.rtl.vector.common import ErrorCode, RowTracker, VecBeat

__all__ = ["VecBeat", "ErrorCode", "RowTracker"]
