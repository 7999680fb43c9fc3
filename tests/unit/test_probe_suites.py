"""The built-in suites are one table of real imports (envlock.probes.registry.SUITES): every suite module
is in it and in pyproject's layers contract, and none imports more than the standard library and envlock
at import time (the TF-free parent imports them all)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tomllib

from envlock.probes.registry import SUITES, all_probes
from tests.helpers import REPO_ROOT

PROBES_DIR = REPO_ROOT / "envlock" / "probes"


def _suite_files() -> set[str]:
    return {f"envlock.probes.{path.stem}" for path in PROBES_DIR.glob("suite_*.py")}


def test_every_suite_module_is_in_the_table() -> None:
    assert [suite.__name__ for suite in SUITES] == list(dict.fromkeys(s.__name__ for s in SUITES))
    assert {suite.__name__ for suite in SUITES} == _suite_files()


def test_every_suite_is_in_the_layers_contract() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]
    listed = {name.strip() for layer in contract["layers"] for name in layer.replace("|", ":").split(":")}
    assert {suite.__name__ for suite in SUITES} <= listed


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:  # module level only: a probe body gets TF and numpy from ctx
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_suites_import_only_the_standard_library_and_envlock() -> None:
    for suite in SUITES:
        path = Path(suite.__file__ or "")
        heavy = {name for name in _module_level_imports(path)
                 if name not in sys.stdlib_module_names and name not in ("envlock", "__future__")}
        assert not heavy, f"{suite.__name__} imports {sorted(heavy)} at import time"


def test_the_built_in_probes_come_in_the_table_order() -> None:
    modules = [p.fn.__module__ for p in all_probes().values() if p.fn.__module__.startswith("envlock.probes.")]
    assert list(dict.fromkeys(modules)) == [suite.__name__ for suite in SUITES if suite.__name__ in modules]
