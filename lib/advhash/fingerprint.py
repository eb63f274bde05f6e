"""Code fingerprints: which code computed a checkpoint, so that a fix to the training code retrains.

A checkpoint's name hashes its settings, its data and its pretrained weights (``advhash.checkpoint``), and
``code_fingerprint(...)`` of the modules on its training path: the *closure* of the entry modules, each module's
source plus every ``advhash`` module it imports, and so on, with no list kept by hand. Over-inclusion errs on the
safe side (a retrain), never on a stale model.

What counts is the code, not its text: each file is parsed and unparsed without its docstrings (``ast``), so
comments, docstrings and formatting can change without renaming a checkpoint; a statement, default, constant or
import cannot. To see what a fingerprint covers:

    >>> code_modules("advhash.train")          # ['advhash.checkpoint', 'advhash.data.dataset', ...]

The torch and torchvision versions are not part of it (the README states the tolerance across machines).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from pathlib import Path

__all__ = ["code_fingerprint", "code_modules", "modules_of"]

PACKAGE = "advhash"
_parsed: dict[tuple[str, int, int], tuple[str, tuple[str, ...]]] = {}    # (file, mtime, size) -> (code, imports)


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _imports(tree: ast.AST, name: str, is_package: bool) -> tuple[str, ...]:
    """The ``advhash`` modules a module imports: ``from .x import y`` gives ``pkg.x`` (and ``pkg.x.y`` when that
    is a module), ``import advhash.x`` gives ``advhash.x``."""
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.append(target)
            found += [f"{target}.{alias.name}" for alias in node.names
                      if _module_file(f"{target}.{alias.name}") is not None]
    return tuple(dict.fromkeys(found))


def _read(name: str) -> tuple[str, tuple[str, ...]] | None:
    path = _module_file(name)
    if path is None:
        return None
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _parsed:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = _imports(tree, name, path.name == "__init__.py")
        _parsed[key] = (ast.unparse(_strip_docstrings(tree)), imports)
    return _parsed[key]


def _closure(modules) -> dict[str, str]:
    code, pending = {}, list(modules)
    while pending:
        name = pending.pop()
        if name in code:
            continue
        read = _read(name)
        if read is None:
            if not name.startswith(PACKAGE + ".") and name != PACKAGE:
                raise ValueError(f"code_fingerprint: no Python source for module {name!r}; pass importable module "
                                 "names (e.g. type(obj).__module__)")
            continue          # an imported name that is not a module of its own
        code[name], imports = read
        pending += imports
    return code


def code_modules(*modules: str) -> list[str]:
    """The modules ``code_fingerprint(*modules)`` covers, sorted: the given ones and every ``advhash`` module they
    import, transitively."""
    return sorted(_closure(modules))


def code_fingerprint(*modules: str, length: int = 8) -> str:
    """A short hash of the code of ``modules`` and of every ``advhash`` module they import, transitively, without
    docstrings, comments or formatting (see the module docstring). Modules outside ``advhash`` (a user's own
    defense) count with their own file. Cached per file by path, modification time and size."""
    digest = hashlib.sha1()
    for name, code in sorted(_closure(modules).items()):
        digest.update(f"{name}\n{code}\n".encode())
    return digest.hexdigest()[:length]


def _entry(obj) -> str | None:
    """The module that defines ``obj`` (a function, a class or an instance), for ``code_fingerprint``."""
    module = getattr(obj, "__module__", None) or getattr(type(obj), "__module__", None)
    return module if module and module != "__main__" and module != "builtins" else None


def modules_of(*objects) -> tuple[str, ...]:
    """The defining modules of ``objects`` (Nones and objects defined in ``__main__`` or a notebook are left
    out: their code has no file to fingerprint)."""
    return tuple(module for module in map(_entry, (o for o in objects if o is not None)) if module is not None)
