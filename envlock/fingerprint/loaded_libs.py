"""Which numeric shared libraries a process actually loaded, read from /proc/self/maps.

What TF was *built* against (build info) and what the dynamic loader *found* can differ
(a pip-installed cuDNN shadowing a system one, two OpenMP runtimes): both are recorded.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from envlock.models import LoadedLibrary

# Library families that decide which numeric kernels run. Matched on the file name's stem
# (the part before ".so"), longest names first so "libcublasLt" is not taken for "libcublas".
NUMERIC_LIBRARY_STEMS: tuple[str, ...] = (
    "libtensorflow_framework",
    "libtensorflow_cc",
    "libcudart",
    "libcublasLt",
    "libcublas",
    "libcudnn",
    "libcufft",
    "libcurand",
    "libcusolver",
    "libcusparse",
    "libnccl",
    "libnvrtc",
    "libnvinfer",
    "libnvJitLink",
    "libcuda",
    "libdnnl",
    "libmkldnn",
    "libmkl_rt",
    "libmkl_core",
    "libmkl_intel_thread",
    "libmkl_gnu_thread",
    "libiomp5",
    "libgomp",
    "libomp",
    "libopenblas",
    "libscipy_openblas",
    "libblas",
    "liblapack",
    "libblis",
    "libamdhip64",
    "libMIOpen",
    "librocblas",
)

# "libcudnn_ops.so.9.1.0", "libgomp-a34b3233.so.1.0.0", "libscipy_openblas64_-32a4b2a6.so"
_SO_NAME = re.compile(r"^(?P<stem>[A-Za-z0-9_+]+?)(?:[-.][0-9a-f]{8})?\.so(?:\.(?P<version>[0-9][0-9.]*))?$")


def _family(stem: str) -> str | None:
    for family in sorted(NUMERIC_LIBRARY_STEMS, key=len, reverse=True):
        if stem == family or stem.startswith(family):
            return family
    return None


def parse_library_filename(filename: str) -> tuple[str, str | None] | None:
    """(name, version) from a shared-library file name, or None when it is not a numeric library.

    The name keeps the full stem ("libcudnn_ops", "libscipy_openblas64_") because sibling
    libraries can carry different versions; auditwheel's 8-hex-digit hash suffix is dropped.
    """
    match = _SO_NAME.match(filename)
    if match is None:
        return None
    stem = match.group("stem")
    if _family(stem) is None:
        return None
    version = match.group("version")
    return stem, version.rstrip(".") if version else None


def loaded_library_records(text: str) -> list[dict[str, Any]]:
    """Numeric libraries mapped in a process as plain dicts (no pydantic: the TF child uses this
    and must not pay for importing it), one per file, sorted by name, version, then path."""
    seen: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6:
            continue
        path = parts[5].strip()
        if not path.startswith("/") or ".so" not in path or path in seen:
            continue
        parsed = parse_library_filename(path.rsplit("/", 1)[-1])
        if parsed is not None:
            seen[path] = {"name": parsed[0], "version": parsed[1], "path": path}
    return sorted(seen.values(), key=lambda lib: (lib["name"], lib["version"] or "", lib["path"]))


def parse_proc_maps(text: str) -> list[LoadedLibrary]:
    """Numeric libraries mapped in a process (text of /proc/<pid>/maps), one entry per file."""
    from envlock.models import LoadedLibrary  # lazy: the TF child uses loaded_library_records without pydantic

    return [LoadedLibrary(**record) for record in loaded_library_records(text)]
