"""User probes: modules named with ``--probe-module`` and the ``envlock.probes`` entry-point group.

Imported only in the probe child (a user's module may ``import tensorflow`` at top level, and
the parent never imports TensorFlow). Importing a module runs its ``@envlock.probe`` decorators,
which register into the same registry as the built-in suites. Standard library only (and
envlock's base layer: ``envlock.errors``).

Each probe's *source* is recorded in the golden: its module, the installed distribution and
version the module belongs to (if any), its file (relative to the working directory when
inside it, else the base name: no home directories in a golden), and a sha256 of the probe
function's source text, so verify can refuse to compare a probe whose code changed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from envlock.errors import ProbeModuleError

ENTRY_POINT_GROUP = "envlock.probes"
BUILTIN_MODULE_PREFIX = "envlock.probes."


def _last_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def looks_like_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def _import_file(path: Path) -> str:
    """Import a probe module from a file; its module name is the file's stem."""
    if not path.is_file():
        raise ProbeModuleError(f"probe module {str(path)!r}: no such file")
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


def probe_source(fn: Any, *, from_file: bool = False, cwd: Path | None = None) -> dict[str, str | None]:
    """Where ``fn`` comes from: module, distribution, version, file, sha256 of its source text.

    Unknown parts are None (a function defined in a REPL has no source file). ``from_file``:
    the module was loaded from a path, so it belongs to no distribution whatever its name.
    """
    module = getattr(fn, "__module__", None)
    module = module if isinstance(module, str) else None
    distribution, version = (None, None) if from_file or module is None else _distribution_of(module)
    file: str | None = None
    sha256: str | None = None
    try:
        source_file = inspect.getsourcefile(fn)
        file = _display_file(source_file, cwd or Path.cwd()) if source_file else None
        sha256 = "sha256:" + hashlib.sha256(inspect.getsource(fn).encode("utf-8")).hexdigest()
    except (OSError, TypeError):
        pass
    return {"module": module, "distribution": distribution, "version": version, "file": file, "sha256": sha256}
