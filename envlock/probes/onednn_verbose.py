"""oneDNN's verbose output (``ONEDNN_VERBOSE=1``): which primitive implementations a probe ran.

oneDNN prints, on the process's stdout, one line per executed primitive::

    onednn_verbose,v1,primitive,exec,cpu,softmax,jit:avx10_1_512,forward_inference,...

(older releases: ``onednn_verbose,exec,cpu,...`` without the ``v1,primitive`` fields) and, once per
process, ``info`` lines such as ``onednn_verbose,v1,info,cpu,isa:<what it detected>``. Standard
library only: the probe child parses its own per-probe capture.
"""

from __future__ import annotations

PREFIX = "onednn_verbose,"


def _fields(line: str) -> list[str] | None:
    if not line.startswith(PREFIX):
        return None
    fields = line.rstrip("\n").split(",")[1:]
    if fields and fields[0].startswith("v") and fields[0][1:].isdigit():  # the v1 marker
        fields = fields[1:]
    if fields and fields[0] in ("primitive", "graph"):
        fields = fields[1:]
    return fields


def executed_primitives(text: str) -> list[str]:
    """Sorted distinct ``kind:implementation`` of the primitives executed (``gemm_api`` names no kernel)."""
    seen: set[str] = set()
    for line in text.splitlines():
        fields = _fields(line)
        if not fields or len(fields) < 3 or fields[0] != "exec" or fields[1] != "cpu":
            continue
        kind = fields[2].strip()
        impl = fields[3].strip() if len(fields) > 3 else ""
        if kind:
            seen.add(f"{kind}:{impl}" if impl else kind)
    return sorted(seen)


def detected_isa(text: str) -> str | None:
    """What oneDNN said it detected (``info,cpu,isa:...``); None when it did not say."""
    for line in text.splitlines():
        fields = _fields(line)
        if fields and len(fields) >= 3 and fields[0] == "info" and fields[1] == "cpu" and fields[2].startswith("isa:"):
            return ",".join(fields[2:])[len("isa:"):].strip() or None
    return None


def primitive_kinds(primitives: list[str]) -> dict[str, set[str]]:
    """``["softmax:jit:avx512_core", "gemm_api"]`` -> ``{"softmax": {"jit:avx512_core"}, "gemm_api": {""}}``."""
    kinds: dict[str, set[str]] = {}
    for item in primitives:
        kind, _, impl = item.partition(":")
        kinds.setdefault(kind, set()).add(impl)
    return kinds
