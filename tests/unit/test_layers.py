"""The shape of the package, checked on the source (no process, no host): every module sits in one
layer of the import-linter contract that `.ci/run` enforces (docs/layers.md), every function-local
import says why it is lazy, and child processes start in one module only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import tomllib  # Python 3.11+, what CI runs

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "envlock"
LAZY_MARK = "# lazy:"
# Packages whose __init__ is only a docstring: they belong to no layer, their modules do.
NAMESPACE_PACKAGES = {"envlock.probes", "envlock.explain", "envlock.image", "envlock.fleet"}
# The process seam: the only module that may start a child process (README, docs/layers.md).
PROCESS_MODULE = "envlock.runner"
PROCESS_CALLS = {("subprocess", "Popen"), ("subprocess", "run"), ("subprocess", "call"), ("subprocess", "check_call"),
                 ("subprocess", "check_output"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput"),
                 ("os", "system"), ("os", "popen"), ("os", "fork"), ("os", "forkpty"), ("os", "posix_spawn"),
                 ("os", "posix_spawnp"), ("os", "execv"), ("os", "execve"), ("os", "execvp"), ("os", "execvpe")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layers() -> list[list[str]]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "layers"]  # the package-wide one
    return [[name.strip() for name in layer.replace("|", ":").split(":") if name.strip()]
            for layer in contract["layers"]]


def _covering(module: str, listed: set[str]) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in listed:
            return ".".join(parts[:end])
    return None


def test_every_module_is_in_exactly_one_layer() -> None:
    layers = _layers()
    listed = [name for layer in layers for name in layer]
    assert len(listed) == len(set(listed)), "a module is listed in two layers"
    assert not [name for name in listed if name not in MODULES], "the contract names a module that does not exist"
    unplaced = [m for m in MODULES if m != "envlock" and m not in NAMESPACE_PACKAGES
                and _covering(m, set(listed)) is None]
    assert not unplaced, f"modules in no layer (add them to pyproject's layers contract and docs/layers.md): {unplaced}"


@pytest.mark.parametrize("package", sorted(NAMESPACE_PACKAGES))
def test_unlayered_package_inits_import_nothing(package: str) -> None:
    tree = ast.parse(MODULES[package].read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def test_docs_name_every_layered_module() -> None:
    text = (REPO_ROOT / "docs" / "layers.md").read_text(encoding="utf-8")
    missing = [name for layer in _layers() for name in layer
               if f"`{name}`" not in text and not name.startswith("envlock.probes.suite_")]
    assert not missing, f"docs/layers.md does not name {missing}"


def _function_local_imports(path: Path) -> list[tuple[int, bool]]:
    """(line, justified) for every import inside a function: justified when its first line carries
    '# lazy:' or a '# lazy:' comment line heads the run of imports (blank lines allowed) it is in."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: dict[int, bool] = {}
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)) and sub.lineno not in found:
                found[sub.lineno] = LAZY_MARK in lines[sub.lineno - 1] or _headed_by_lazy(lines, sub.lineno - 2)
    return sorted(found.items())


def _headed_by_lazy(lines: list[str], k: int) -> bool:
    """Walk up from line index ``k`` over the run of imports (and blank lines) to its heading line."""
    in_parentheses = False
    while k >= 0:
        text = lines[k].strip()
        if in_parentheses:
            in_parentheses = not text.endswith("(")  # the import's opening line ends the wrapped names
        elif text == ")":
            in_parentheses = True
        elif text and not text.startswith(("import ", "from ")):
            return text.startswith(LAZY_MARK)
        k -= 1
    return False


def test_every_function_local_import_says_why() -> None:
    unexplained = [f"{path.relative_to(REPO_ROOT)}:{line}" for path in MODULES.values()
                   for line, justified in _function_local_imports(path) if not justified]
    assert not unexplained, ("function-local imports without a '# lazy: <reason>' comment (move them to the top "
                             f"of the module, or say why they must wait): {_summary(unexplained)}")


def _summary(items: list[str]) -> str:
    return ", ".join(items[:20]) + (f" and {len(items) - 20} more" if len(items) > 20 else "")


def test_the_lazy_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1\n\n\ndef f():\n    y = 2\n\n    import json\n    return json\n\n\n"
                   "def g():\n    # lazy: a reason\n    import json\n\n    from os import path\n"
                   "    return json, path\n", encoding="utf-8")
    assert _function_local_imports(bad) == [(7, False), (13, True), (15, True)]
    # A '# lazy:' line above other code does not cover an import further down.
    misplaced = tmp_path / "misplaced.py"
    misplaced.write_text("def h(x):\n    if x:\n    # lazy: a reason\n        return 1\n    import json\n"
                         "    return json\n", encoding="utf-8")
    assert _function_local_imports(misplaced) == [(5, False)]


def _process_starts(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    starts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in PROCESS_CALLS:
            starts.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
        if isinstance(node, ast.ImportFrom) and node.module in ("subprocess", "os") \
                and any((node.module, alias.name) in PROCESS_CALLS for alias in node.names):
            starts.append(f"from {node.module} import ... (line {node.lineno})")
        if isinstance(node, (ast.Import, ast.ImportFrom)) and "multiprocessing" in (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]):
            starts.append(f"multiprocessing (line {node.lineno})")
    return starts


def test_child_processes_start_in_the_runner_only() -> None:
    elsewhere = {name: starts for name, path in MODULES.items() if name != PROCESS_MODULE
                 for starts in [_process_starts(path)] if starts}
    assert not elsewhere, f"processes started outside {PROCESS_MODULE}: {elsewhere}"
    assert _process_starts(MODULES[PROCESS_MODULE]), "the runner itself starts processes: the check can see them"
