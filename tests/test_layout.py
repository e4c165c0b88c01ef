"""The layer contract of docs/architecture.md, checked on the sources: each layer imports only the layers below it,
the ground floor imports neither NumPy nor Amaranth, ``rtl/`` no NumPy or cocotb, and pyproject.toml installs every
package folder under the one ``npuforge`` namespace."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: Layer folder -> the npuforge layers it may import (besides itself), bottom to top.
LAYERS = {
    "spec": (),
    "golden": ("spec",),
    "rtl": ("spec",),
    "gen": ("spec", "golden", "rtl"),
    "sim": ("spec", "golden", "rtl", "gen"),
    "cli": ("spec", "golden", "rtl", "gen", "sim"),
}
#: Third-party packages a layer must never import.
FORBIDDEN = {
    "spec": ("numpy", "amaranth", "cocotb"),
    "golden": ("amaranth", "cocotb"),
    "rtl": ("numpy", "cocotb"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _sources(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_layer_imports_only_lower_layers(layer):
    bad = []
    for path in _sources(layer):
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] in LAYERS:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} without the npuforge prefix")
            elif parts[0] == "npuforge" and len(parts) > 1:
                target = parts[1]
                if target != layer and target not in LAYERS[layer]:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {module} (a higher layer)")
            elif parts[0] in FORBIDDEN.get(layer, ()):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_pyproject_installs_every_package_folder():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(meta["packages"])
    found = {"npuforge." + ".".join(p.parent.relative_to(ROOT).parts)
             for layer in LAYERS for p in (ROOT / layer).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert listed == found
    assert meta["package-dir"] == {f"npuforge.{layer}": layer for layer in LAYERS}


def test_tests_mirror_the_sources():
    """Each folder of tests/ holding tests is named after the source it tests: a layer, one of its sub-packages, or
    a module (tests/rtl/npu/ tests rtl/npu.py), so a newcomer finds a unit's tests where its source is."""
    for folder in sorted({p.parent for p in (ROOT / "tests").rglob("test_*.py")}):
        rel = folder.relative_to(ROOT / "tests")
        if rel == Path("."):
            continue
        assert rel.parts[0] in LAYERS, f"tests/{rel} is not named after a layer {sorted(LAYERS)}"
        source = ROOT / rel
        assert source.is_dir() or source.with_suffix(".py").is_file(), f"tests/{rel} has no source {rel}[.py]"
