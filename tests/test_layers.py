"""The import layering of the package: imports point down only and there is no cycle.

Every module under ``deepens/`` is parsed (never imported) and every import of a deepens module is
collected, including the lazy ones inside functions. A module must sit in one of :data:`LAYERS`
(lowest first); it may import modules of its own layer or of lower ones, and no chain of imports may
lead back to where it started.
"""

from __future__ import annotations

import ast
import fnmatch
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deepens"

# Low to high. "name.*" matches the modules of a subpackage; the subpackage's own __init__ is "name".
LAYERS: list[list[str]] = [
    ["_version", "cache", "files", "io", "validation", "devices", "data", "data.*", "tables"],
    ["losses"],
    ["distributions"],
    ["heads"],
    ["uncertainty"],
    ["mixture"],
    ["prediction"],
    ["metrics", "metrics.*", "calibration", "calibrated"],
    ["models", "adversarial"],
    ["methods", "methods.*"],
    ["ensemble"],
    ["checkpoint", "config"],
    ["program", "early_stopping"],
    ["train"],
    ["serialization"],
    ["sklearn", "estimators", "estimators.*"],
    ["plots"],
    ["experiments", "experiments.*", "cli", "cli.*", "__init__", "__main__"],
]


def module_name(path: Path) -> str:
    """``deepens/metrics/ood.py`` -> ``metrics.ood``; a package's ``__init__.py`` is the package
    (``metrics``), the root's is ``__init__``."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(dotted: str, known: set[str]) -> str | None:
    """The deepens module named by an absolute dotted name (``deepens.x.y``), or None if outside."""
    if dotted == "deepens":
        return "__init__"
    if not dotted.startswith("deepens."):
        return None
    return dotted[len("deepens.") :]  # an unknown name is reported by test_imports_point_down


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The deepens modules ``name`` imports anywhere in its file (module level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    package_parts = ["deepens", *(name.split(".") if name != "__init__" else [])]
    if not is_package:
        package_parts = package_parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _resolve(alias.name, known)
                if target is not None:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            target = _resolve(base, known)
            if target is None:
                continue
            for alias in node.names:
                # "from deepens import io" or "from deepens.metrics import ood" imports a submodule.
                sub = alias.name if target == "__init__" else f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    found.discard(name)
    return found


def layer_of(name: str) -> int | None:
    for index, patterns in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return index
    return None


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_parser_sees_lazy_and_relative_imports(tmp_path):
    source = tmp_path / "x.py"
    source.write_text(
        "import deepens.io\nfrom deepens import train as t\n"
        "def f():\n    from deepens.metrics import ood\n    from . import ensemble\n    import numpy\n"
    )
    known = {"io", "train", "metrics", "metrics.ood", "ensemble", "x"}
    assert imports_of("x", source, known) == {"io", "train", "metrics.ood", "ensemble"}


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in modules() if layer_of(name) is None)
    assert not unplaced, f"modules without a layer (add them to LAYERS in tests/test_layers.py): {unplaced}"


def test_imports_point_down():
    edges = graph()
    unknown = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets if b not in edges)
    assert not unknown, f"imports of modules that do not exist: {unknown}"
    upward = sorted(
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
        for a, targets in edges.items()
        for b in targets
        if layer_of(a) is not None and layer_of(b) is not None and layer_of(b) > layer_of(a)  # type: ignore[operator]
    )
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_no_import_cycles():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_import_and_the_command_line_parser_do_not_import_jax():
    """``import deepens`` and every command's ``--help`` start without JAX (issue 12: start-up time); the
    public names and submodules still load on first use."""
    script = (
        "import sys, deepens\n"
        "from deepens.cli import build_parser\n"
        "from deepens.config import DEFAULTS\n"
        "parser = build_parser(); parser.format_help()\n"
        "for command in parser._subparsers._group_actions[0].choices.values(): command.format_help()\n"
        "heavy = sorted(m for m in ('jax', 'optax', 'flax', 'sklearn', 'scipy', 'pandas', 'matplotlib') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert deepens.fit.__module__ == 'deepens.train' and 'jax' in sys.modules\n"
        "assert deepens.Gaussian.__module__ == 'deepens.heads' and deepens.io.FormatError  # a submodule\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=PACKAGE.parent
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_the_built_in_method_names_match_the_registry():
    from deepens.config import METHOD_NAMES
    from deepens.methods import METHODS

    assert set(METHOD_NAMES) <= set(METHODS)
    assert {name for name, cls in METHODS.items() if cls.__module__.startswith("deepens.methods.")} == set(METHOD_NAMES)


if __name__ == "__main__":  # print the graph: python tests/test_layers.py
    for module, targets in sorted(graph().items(), key=lambda item: (layer_of(item[0]) or 0, item[0])):
        print(f"[{layer_of(module)}] {module} -> {', '.join(sorted(targets)) or '-'}")
    pytest.main([__file__, "-q"])
