"""The library's import graph: no circle, and no arrow from a lower floor to a higher one.

The floors, lowest first, are ``LAYERS`` below; a module may import its own floor's modules and any floor beneath.
Read from the source (every ``import`` and ``from ... import``, module level or inside a function), so an import
hidden in a function body to dodge a circle counts as what it is.
"""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"

# Each floor: top-level modules or packages of advhash. A new module joins the lowest floor whose imports it needs.
LAYERS = [
    {"utils", "fingerprint", "uncertainty", "atomic", "publish"},   # helpers: no advhash import but utils
    {"data", "metrics", "models"},                              # the ground: data, retrieval metrics, networks
    {"codes", "losses", "checkpoint", "resumable"},             # closed-form codes, hashing losses, run files
    {"train"},                                                  # the training loop
    {"victim", "manifest"},                                     # a trained model as an attack's target
    {"attacks"},                                                # one class per attack
    {"evaluation", "results", "transfer"},                      # the attack protocol, results files
    {"defenses", "crossmodal"},                                 # the defenses' and the cross-modal wing
    {"fitting", "robustness", "robustness_checks", "figures", "tables"},   # orchestrators, readers of results
    {"report", "pipeline", "claims", "evidence", "findings", "overview"},   # notebooks, the DVC pipeline, the claims
                                                                # registry, per-query evidence, findings, their overview
    {"advhash"},                                                # the package's own __init__
]


def library_modules() -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package's __init__)} of every module under lib/."""
    modules = {}
    for path in LIB.rglob("*.py"):
        parts = list(path.relative_to(LIB).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def import_edges(modules) -> dict[str, set[str]]:
    """{module: the library modules it imports}, relative imports resolved; ``from a import b`` counts as an
    import of ``a.b`` when that is a module, else of ``a``."""
    edges = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                candidates = [f"{stem}.{alias.name}" for alias in node.names]
                found = [candidate for candidate in candidates if candidate in modules]
                targets.update(found or ([stem] if stem in modules else []))
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names if alias.name in modules)
        edges[name] = targets - {name}
    return edges


def circles(edges) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    return found


def floor(module: str) -> int:
    """The floor of a dotted module name: that of its top-level module or package."""
    top = module.split(".")[1] if "." in module else module
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"{module} is on no floor: add its top-level name to LAYERS in tests/test_imports.py")


def test_the_library_has_no_import_circle():
    assert circles(import_edges(library_modules())) == []


def test_no_module_imports_a_higher_floor():
    upward = [f"{source} (floor {floor(source)}) imports {target} (floor {floor(target)})"
              for source, targets in import_edges(library_modules()).items() for target in sorted(targets)
              if floor(target) > floor(source)]
    assert upward == []


def test_the_checks_find_a_circle_and_an_upward_arrow():
    """The checks themselves can fail: a made-up graph with a circle and an arrow from codes up to attacks."""
    edges = {"advhash.codes.a": {"advhash.attacks.b"}, "advhash.attacks.b": {"advhash.codes.a"},
             "advhash.metrics": set()}
    assert circles(edges) == [["advhash.attacks.b", "advhash.codes.a"]]
    assert floor("advhash.codes.a") < floor("advhash.attacks.b")
    with pytest.raises(AssertionError, match="on no floor"):
        floor("advhash.nowhere")
