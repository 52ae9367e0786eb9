"""Data flows one way: no module imports one that comes later in the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).parent.parent / "energyopt"

# a module may import only modules of its own rank or lower
RANK = {
    "errors": 0, "schema": 0, "defaults": 1, "io": 1, "fleet": 1, "fit": 2, "characterize": 2,
    "accounting": 0, "version": 0, "modelstore": 2, "writers": 1, "inputs": 2, "problem": 3, "formulation": 4, "diagnose": 4, "solvers": 5, "packing": 5, "methods": 6, "schedule": 7, "check": 6,
    "plan": 9, "compare": 10, "sweep": 10, "explain": 10, "report": 11, "cli": 12, "__init__": 12,
}


def internal_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level >= 1:
            mod = (node.module or "").split(".")[0]
            if node.level == 2 or path.parent != PKG:
                mod = (node.module or "").split(".")[0] if node.level == 2 else mod
            if mod:
                out.add(mod)
    return out


def test_no_reversed_arrows():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        top = rel.parts[0].removesuffix(".py")
        if path.parent != PKG and path.parent.parent == PKG:
            # a subpackage's own relative imports (level 1) stay inside it
            tree = ast.parse(path.read_text())
            mods = {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 2 and n.module}
        else:
            mods = internal_imports(path)
        for m in mods:
            if m in RANK and m != top:
                assert RANK[m] <= RANK[top], f"{rel} imports {m}: the arrow points backwards"
