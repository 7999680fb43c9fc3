"""User probes: modules named with ``--probe-module`` and the ``envlock.probes`` entry-point group.

Imported only in the probe child (a user's module may ``import tensorflow`` at top level, and
the parent never imports TensorFlow). Importing a module runs its ``@envlock.probe`` decorators,
which register into the same registry as the built-in suites. Standard library only (and
envlock's base layer: ``envlock.errors``).

Each probe's *source* is recorded in the golden: its module, the installed distribution and
version the module belongs to (if any), its file (relative to the working directory when
inside it, else the base name: no home directories in a golden), and a digest of the code it
runs, so verify can refuse to compare a probe whose code changed.

The digest (``ast-v2:<sha256>``) covers what a user probe actually runs: its whole module and,
transitively, every module it imports from the user's own code (the same top-level package, or
for a module outside any package, modules in its own directory), each as its syntax tree without
positions, so whitespace and comments do not count and a changed helper or constant does. A
built-in probe's digest covers its function only (its helpers are envlock's and move with
envlock's version, which the golden records). Goldens written before hold ``sha256:<hex>`` of the
function's text only; that cannot be compared with this, and ``envlock.golden`` reads it as unknown.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import stat
import sys
import textwrap
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from envlock.errors import ProbeModuleError

ENTRY_POINT_GROUP = "envlock.probes"
BUILTIN_MODULE_PREFIX = "envlock.probes."
# The source digest's algorithm, part of the stored value (golden.ProbeSource.sha256)
DIGEST_TAG = "ast-v2"
# A user's import closure larger than this, or a module file larger than this, is not digested
# (unknown, not a guess): no real probe module comes near either.
MAX_DIGESTED_MODULES = 2000
MAX_DIGESTED_FILE_BYTES = 16 * 1024 * 1024


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def looks_like_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _not_a_module_file(path: Path) -> str | None:
    """Why ``path`` cannot be a probe module file (None: a regular file, or a link to one).
    stat only, never open: opening a FIFO with no writer would block for ever."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file" if not path.is_symlink() else "a symbolic link to nothing (no such file)"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (too many levels of symbolic links)"
        return f"cannot be read ({exc.strerror or exc})"
    except ValueError:
        return "invalid path (it contains a NUL byte)"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"{kind}, not a Python source file"


def _import_file(path: Path) -> str:
    """Import a probe module from a file; its module name is the file's stem."""
    problem = _not_a_module_file(path)
    if problem is not None:
        raise ProbeModuleError(f"probe module {str(path)!r}: {problem}")
    name = path.stem
    if not name.isidentifier():
        raise ProbeModuleError(f"probe module {str(path)!r}: {name!r} is not a Python module name")
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path.resolve():
            return name
        raise ProbeModuleError(f"probe module {str(path)!r}: a module called {name!r} is already imported "
                               "from elsewhere; rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ProbeModuleError(f"probe module {str(path)!r}: cannot be loaded as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect.getsource and pickling find it like any module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        raise ProbeModuleError(f"probe module {str(path)!r} failed to import: {_last_line(exc)}") from None
    return name


def load_probe_modules(specs: list[str]) -> list[str]:
    """Import each ``--probe-module`` (a dotted name or a .py file); return the module names.

    Raises ``ProbeModuleError`` for a module that is missing or raises on import (a probe
    registered twice or with an unknown tag raises there too).
    """
    names = []
    for spec in specs:
        if looks_like_path(spec):
            names.append(_import_file(Path(spec)))
            continue
        try:
            importlib.import_module(spec)
        except BaseException as exc:
            raise ProbeModuleError(f"probe module {spec!r} failed to import: {_last_line(exc)}") from None
        names.append(spec)
    return names


def probe_entry_points() -> list[Any]:
    """The installed ``envlock.probes`` entry points, sorted by name (reading metadata imports nothing)."""
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))


def load_entry_points() -> None:
    """Import every installed package's probe module (``[project.entry-points."envlock.probes"]``)."""
    for ep in probe_entry_points():
        dist = getattr(getattr(ep, "dist", None), "name", None)
        try:
            ep.load()
        except BaseException as exc:
            where = f" (distribution {dist})" if dist else ""
            raise ProbeModuleError(f"entry point {ep.name} = {ep.value}{where} of group {ENTRY_POINT_GROUP} failed "
                                   f"to load: {_last_line(exc)}") from None


_DISTRIBUTIONS: dict[str, list[str]] | None = None


def _distribution_of(module: str) -> tuple[str | None, str | None]:
    global _DISTRIBUTIONS
    if _DISTRIBUTIONS is None:
        try:
            _DISTRIBUTIONS = dict(importlib.metadata.packages_distributions())
        except Exception:  # a broken installed distribution must not lose the probe results
            _DISTRIBUTIONS = {}
    dists = sorted(_DISTRIBUTIONS.get(module.split(".")[0], []))
    if not dists:
        return None, None
    try:
        return dists[0], importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return dists[0], None


def _display_file(path: str, cwd: Path) -> str:
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return resolved.name


def _canonical(node: Any, out: list[str]) -> None:
    """The syntax tree as text without positions, comments or layout. Fields that are None or
    empty are left out, so the same code gives the same text on Python versions that add
    fields (3.12's ``type_params``) or print them differently (3.13's ``ast.dump``)."""
    if isinstance(node, ast.AST):
        out.append(type(node).__name__ + "(")
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            out.append(name + "=")
            _canonical(value, out)
            out.append(",")
        out.append(")")
    elif isinstance(node, list):
        out.append("[")
        for item in node:
            _canonical(item, out)
            out.append(",")
        out.append("]")
    else:
        out.append(repr(node))


def _tree_text(tree: ast.AST) -> str:
    out: list[str] = []
    _canonical(tree, out)
    return "".join(out)


def _parse_file(path: str) -> ast.Module | None:
    try:
        if os.stat(path).st_size > MAX_DIGESTED_FILE_BYTES:
            return None
        with open(path, "rb") as handle:
            return ast.parse(handle.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None


def _imported_names(tree: ast.Module, package: str | None) -> list[str]:
    """Every module an ``import`` anywhere in ``tree`` may name (a ``from x import y`` may mean
    the module ``x.y``): absolute names, relative ones resolved against ``package``."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    continue
                try:
                    base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
                except (ImportError, ValueError):
                    continue
            else:
                base = node.module or ""
            if base:
                names.append(base)
            names += [f"{base}.{alias.name}" if base else alias.name for alias in node.names if alias.name != "*"]
    return names


def _module_file(name: str) -> tuple[str, str | None] | None:
    """(file, package) of the module ``name`` when it is Python source; None when unknown.
    An already imported module is asked first; otherwise its spec is found, which for a dotted
    name imports the parent package (one of the user's own, already imported by the probe module)."""
    module = sys.modules.get(name)
    if module is not None:
        file = getattr(module, "__file__", None)
        package = getattr(module, "__package__", None)
    else:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        if spec is None or not spec.has_location:
            return None
        file = spec.origin
        package = name if spec.submodule_search_locations is not None else name.rpartition(".")[0]
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    return file, package if isinstance(package, str) else None


def _closure_digest(module: ModuleType) -> str | None:
    """The digest of ``module`` and the user's own modules it imports, transitively."""
    name = module.__name__
    root = _module_file(name)
    if root is None:
        return None
    top = name.split(".")[0]
    in_a_package = "." in name or hasattr(module, "__path__")
    directory = Path(root[0]).resolve().parent

    def ours(other: str, file: str) -> bool:
        if in_a_package:
            return other == top or other.startswith(top + ".")
        return "." not in other and Path(file).resolve().parent == directory

    texts: dict[str, str] = {}
    pending = [(name, root)]
    while pending:
        current, (file, package) = pending.pop()
        if current in texts:
            continue
        if len(texts) >= MAX_DIGESTED_MODULES:
            return None
        tree = _parse_file(file)
        if tree is None:
            return None
        texts[current] = _tree_text(tree)
        for imported in _imported_names(tree, package):
            # a foreign name is never looked up: finding a dotted one's spec imports its parent
            if imported in texts or (in_a_package and not ours(imported, "")) or (
                    not in_a_package and "." in imported):
                continue
            found = _module_file(imported)
            if found is not None and ours(imported, found[0]):
                pending.append((imported, found))
    digest = hashlib.sha256()
    for current in sorted(texts):
        digest.update(f"{current}\0{texts[current]}\n".encode("utf-8", "backslashreplace"))
    return f"{DIGEST_TAG}:{digest.hexdigest()}"


def _function_digest(fn: Any) -> str | None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    return f"{DIGEST_TAG}:" + hashlib.sha256(_tree_text(tree).encode("utf-8", "backslashreplace")).hexdigest()


def source_digest(fn: Any) -> str | None:
    """What verify compares to tell whether a probe's code changed (see the module docstring);
    None when it cannot be known (no source file, a syntax tree that does not parse)."""
    name = getattr(fn, "__module__", None)
    module = sys.modules.get(name) if isinstance(name, str) else None
    try:
        if module is None or (isinstance(name, str) and name.startswith(BUILTIN_MODULE_PREFIX)):
            return _function_digest(fn)
        return _closure_digest(module)
    except (OSError, TypeError, SyntaxError, ValueError, RecursionError):
        return None


def probe_source(fn: Any, *, from_file: bool = False, cwd: Path | None = None) -> dict[str, str | None]:
    """Where ``fn`` comes from: module, distribution, version, file, and the digest of its code.

    Unknown parts are None (a function defined in a REPL has no source file). ``from_file``:
    the module was loaded from a path, so it belongs to no distribution whatever its name.
    """
    module = getattr(fn, "__module__", None)
    module = module if isinstance(module, str) else None
    distribution, version = (None, None) if from_file or module is None else _distribution_of(module)
    file: str | None = None
    try:
        source_file = inspect.getsourcefile(fn)
        file = _display_file(source_file, cwd or Path.cwd()) if source_file else None
    except (OSError, TypeError):
        pass
    sha256 = source_digest(fn) if file is not None else None
    return {"module": module, "distribution": distribution, "version": version, "file": file, "sha256": sha256}
