"""Discover the environment variable names TensorFlow and its numeric libraries can read.

Scans the string tables of the installed shared libraries (TensorFlow's libtensorflow_cc /
libtensorflow_framework / _pywrap_tensorflow_internal, XLA and oneDNN are linked into them,
numpy's extension modules and the OpenBLAS it bundles, and any NVIDIA CUDA libraries installed
as wheels) for NUL-terminated, identifier-shaped upper-case strings with an underscore: every
``getenv("NAME")`` literal is one. That is a superset (enum names such as ``DT_FLOAT`` pass too),
which is harmless: envlock records a name from this list only when it is set in the environment,
is no credential and no general process variable (``envlock.environ``).

Scanning ~900 MB takes seconds, too slow for every capture, so the result is DATA: one JSON per
TensorFlow version, ``envlock/data/env_names-tf<version>.json``, committed.

    python scripts/scan_env_names.py [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import mmap
import re
import sys
import time
from pathlib import Path

from envlock.environ import is_discoverable

# A NUL, then an identifier in upper case with at least one underscore, then a NUL.
NAME = re.compile(rb"(?<=\x00)([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])(?=\x00)")
MIN_LENGTH, MAX_LENGTH = 4, 64
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "envlock" / "data"


def names_in(path: Path) -> set[str]:
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        return {m.group(1).decode() for m in NAME.finditer(data) if MIN_LENGTH <= len(m.group(1)) <= MAX_LENGTH}


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec and spec.origin else None


def libraries() -> dict[str, list[Path]]:
    """The shared libraries to scan, by component."""
    found: dict[str, list[Path]] = {}
    tf_dir = _package_dir("tensorflow")
    if tf_dir:
        found["tensorflow"] = sorted({*tf_dir.glob("libtensorflow*.so*"),
                                      *tf_dir.glob("python/_pywrap_tensorflow_internal*.so")})
    np_dir = _package_dir("numpy")
    if np_dir:
        found["numpy"] = sorted(np_dir.rglob("*.so"))
        found["openblas"] = sorted((np_dir.parent / "numpy.libs").glob("*openblas*.so*"))
    nvidia = _package_dir("nvidia")
    if nvidia:
        found["cuda"] = sorted(nvidia.rglob("lib*.so*"))
    return {k: v for k, v in found.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    import tensorflow as tf  # the version the names belong to

    start = time.perf_counter()
    by_component: dict[str, list[str]] = {}
    scanned: dict[str, list[str]] = {}
    for component, paths in libraries().items():
        names: set[str] = set()
        for path in paths:
            names |= names_in(path)
        by_component[component] = sorted(n for n in names if is_discoverable(n))
        scanned[component] = sorted(p.name for p in paths)
    document = {
        "kind": "envlock.env-names",
        "tensorflow_version": tf.__version__,
        "generated_by": "scripts/scan_env_names.py",
        "libraries": scanned,
        "names": by_component,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"env_names-tf{tf.__version__}.json"
    target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    total = len({n for names in by_component.values() for n in names})
    print(f"{target}: {total} names from {sum(len(v) for v in scanned.values())} libraries "
          f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
