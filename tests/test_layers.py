"""vtok's packages import downward only, in the order README.md's Layout section gives, and no module imports itself
back in a cycle. Parses the source (every import, including ones inside functions), so the layering cannot rot."""

from __future__ import annotations

import ast
from pathlib import Path

import vtok

ROOT = Path(vtok.__file__).parent

# Lowest first: a package may import packages listed before it, never after it.
LAYERS = (
    "version",
    "io",
    "devices",
    "networks",
    "checkpoint",
    "metrics",
    "losses",
    "data",
    "config",
    "inference",
    "evaluation",
    "training",
    "download",
    "demo",
    "cli",
)
ENTRY_POINTS = ("__init__", "__main__", "train")  # the facade and the commands: they may import anything


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks (type hints only: never run)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            hidden.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return hidden


def imported_modules(root: Path, path: Path, runtime_only: bool = False) -> set[str]:
    """The modules of `root`'s package that `path` imports, as absolute names (relative imports resolved);
    `runtime_only` leaves out the imports under `if TYPE_CHECKING:`."""
    top = root.name
    name = module_name(root, path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    hidden = type_checking_nodes(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == top)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != top:
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import x` may name modules
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def import_graph(root: Path, runtime_only: bool = False) -> dict[str, set[str]]:
    """{module: the package's modules it imports} (a name imported from a module counts as that module)."""
    paths = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for target in imported_modules(root, path, runtime_only):
            while target not in paths and "." in target:
                target = target.rpartition(".")[0]
            if target in paths and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    problems = []
    for name, targets in graph.items():
        own = layer_of(name)
        if own in ENTRY_POINTS:
            continue
        for target in sorted(targets):
            other = layer_of(target)
            if other != own and (other in ENTRY_POINTS or layers.index(other) > layers.index(own)):
                problems.append(f"{name} imports {target}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Cycles between modules; importing one's own package `__init__` (which re-exports it) does not count."""
    edges = {name: {t for t in targets if t != name.rpartition(".")[0]} for name, targets in graph.items()}
    cycles: list[str] = []
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*trail[trail.index(nxt) :], node, nxt]))
            elif nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    return cycles


def test_every_package_has_a_layer() -> None:
    tops = {layer_of(m) for m in import_graph(ROOT)}
    assert tops - set(LAYERS) - set(ENTRY_POINTS) == set(), "add new packages to LAYERS (and README.md's Layout)"


def test_packages_import_downward_only() -> None:
    problems = upward_imports(import_graph(ROOT), LAYERS)
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_no_module_import_cycles() -> None:
    cycles = import_cycles(import_graph(ROOT, runtime_only=True))
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_checks_find_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    for rel, text in {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from ..high.b import g\n",  # an upward import, hidden in a function
        "high/__init__.py": "from .b import g\n",
        "high/b.py": "from ..low import a\nfrom . import c\ng = 1\n",
        "high/c.py": "import pkg.high.b\n",  # b -> c -> b
        "high/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .e import E\n",
        "high/e.py": "from . import d\n",  # d -> e -> d, but d's import is for type hints only
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    graph = import_graph(root)
    assert graph["pkg.low.a"] == {"pkg.high.b"}
    assert graph["pkg.high.b"] == {"pkg.low", "pkg.low.a", "pkg.high", "pkg.high.c"}
    assert upward_imports(graph, ("low", "high")) == ["pkg.low.a imports pkg.high.b"]
    assert upward_imports(graph, ("high", "low")) == ["pkg.high.b imports pkg.low", "pkg.high.b imports pkg.low.a"]
    assert any("pkg.high.b" in c and "pkg.high.c" in c for c in import_cycles(graph))
    assert not any("pkg.high.d" in c for c in import_cycles(import_graph(root, runtime_only=True)))
