"""The house rules, checked on the source: no import cycles, no backend
branches outside backends/, no compiled sources, small modules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (ROOT / "tinynet", ROOT / "backends")


def _modules() -> dict[str, Path]:
    """Module name -> file; backends/ is installed as tinynet.backends."""
    found = {}
    for folder in PACKAGES:
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[0] == "backends":
                parts = ["tinynet", *parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every tinynet module ``name`` imports, at the top or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
            out.update(subs or [base])
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in modules and m != name}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert graph["tinynet.model"] >= {"tinynet.checkpoint", "tinynet.core"}  # the walk sees edges


def test_no_backend_branches_outside_backends():
    pattern = re.compile(r"\.name\s*[!=]=\s*[\"'](numpy|jax|cupy|strict|torch)[\"']")
    offenders = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in (ROOT / "tinynet").rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_pure_python_and_small_modules():
    assert not list(ROOT.glob("setup.py"))
    compiled = [p for folder in PACKAGES for p in folder.rglob("*") if p.suffix in (".c", ".pyx")]
    assert compiled == []
    sizes = {
        p: len(p.read_text().splitlines()) for folder in PACKAGES for p in folder.rglob("*.py")
    }
    assert max(sizes.values()) <= 500, max(sizes, key=sizes.get)
