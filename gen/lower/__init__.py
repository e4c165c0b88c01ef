"""Real models lowered to NPU programs (gen.lower.bert, gen.lower.llama) and run on the ISA simulator (execute)."""

from __future__ import annotations


def require_features(cfg, family: str, precisions: tuple[str, ...], vector_ops: tuple[str, ...]) -> None:
    """ValueError naming the MATMUL modes / vector operators a ``family`` program needs that ``cfg`` lacks."""
    missing = [p for p in precisions if p not in cfg.array.precisions]
    if missing:
        raise ValueError(f"the NPU must be built with MATMUL modes {', '.join(precisions)} for {family}, missing "
                         f"{', '.join(missing)}")
    missing = [op for op in vector_ops if op not in cfg.vector_ops]
    if missing:
        raise ValueError(f"the NPU must be built with vector operators {', '.join(vector_ops)} for {family}, "
                         f"missing {', '.join(missing)}")
