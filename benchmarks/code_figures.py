"""Figures about envlock's code, for reports: module sizes, the largest class, function-local imports, ``Any``.

    python benchmarks/code_figures.py [-v] [PACKAGE_DIR]      # default: the envlock/ beside this script

Standard library only (``ast``), so it reads any checkout, an old revision's included
(``git archive REV envlock | tar -x -C /tmp/rev`` then ``code_figures.py /tmp/rev/envlock``).
A function-local import is an ``import``/``from`` statement inside a function body; "own" means one
of the package's own modules (absolute or relative), the rest is third-party or the standard library.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PACKAGE = Path(__file__).resolve().parent.parent / "envlock"


@dataclass(frozen=True)
class LocalImport:
    module: str  # "envlock.store", "numpy"; a relative import is made absolute
    where: str  # path:line


@dataclass(frozen=True)
class Figures:
    lines: dict[str, int]  # module path -> lines
    largest_class: tuple[str, int, int]  # (path:Class, lines, methods)
    local_imports: list[LocalImport]
    any_uses: int
    lazy_comments: int


def _module_name(path: Path, package_dir: Path) -> str:
    parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _local_imports(tree: ast.Module, path: str, module: str, is_package: bool) -> list[LocalImport]:
    found: list[LocalImport] = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for statement in ast.walk(function):
            if isinstance(statement, ast.Import):
                found += [LocalImport(alias.name, f"{path}:{statement.lineno}") for alias in statement.names]
            elif isinstance(statement, ast.ImportFrom):
                found.append(LocalImport(_absolute(statement, module, is_package), f"{path}:{statement.lineno}"))
    # a nested function is walked twice (inside its parent too): one entry per statement
    return sorted(set(found), key=lambda imp: imp.where)


def _any_uses(tree: ast.Module) -> int:
    names = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "Any")
    attributes = sum(1 for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "Any")
    return names + attributes


def figures(package_dir: Path) -> Figures:
    lines: dict[str, int] = {}
    local: list[LocalImport] = []
    any_uses = lazy = 0
    largest = ("", 0, 0)
    for path in sorted(package_dir.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        relative = str(path.relative_to(package_dir.parent))
        tree = ast.parse(text, filename=relative)
        lines[relative] = len(text.splitlines())
        lazy += text.count("lazy:")
        local += _local_imports(tree, relative, _module_name(path, package_dir), path.name == "__init__.py")
        any_uses += _any_uses(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                methods = sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in node.body)
                if size > largest[1]:
                    largest = (f"{relative}:{node.name}", size, methods)
    return Figures(lines, largest, local, any_uses, lazy)


def _is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Figures about a package's code.")
    parser.add_argument("package_dir", nargs="?", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("-v", "--verbose", action="store_true", help="also list every function-local import")
    args = parser.parse_args(argv)
    package_dir = args.package_dir
    result = figures(package_dir)
    own_name = package_dir.name
    sizes = sorted(result.lines.values())
    biggest = max(result.lines, key=lambda k: result.lines[k])
    own = [i for i in result.local_imports if i.module == own_name or i.module.startswith(own_name + ".")]
    stdlib = [i for i in result.local_imports if i not in own and _is_stdlib(i.module)]
    third = [i for i in result.local_imports if i not in own and i not in stdlib]
    print(f"modules: {len(sizes)}, lines: {sum(sizes)}")
    print(f"lines per module: max {sizes[-1]} ({biggest}), median {statistics.median(sizes):g}")
    name, size, methods = result.largest_class
    print(f"largest class: {name}: {size} lines, {methods} methods")
    print(f"function-local imports: {len(result.local_imports)} "
          f"(own modules {len(own)}, third-party {len(third)}, standard library {len(stdlib)})")
    print(f"'lazy:' comments: {result.lazy_comments}")
    print(f"uses of Any: {result.any_uses}")
    if args.verbose:
        for label, group in (("own", own), ("third-party", third), ("standard library", stdlib)):
            for imp in group:
                print(f"  {label}: {imp.where}: {imp.module}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
