"""oneDNN's own report of its version and of the instruction set it detected.

oneDNN prints them once, as ``info`` lines, when ``ONEDNN_VERBOSE`` is on at its first primitive:

    onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
    onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support ...

The TF child of ``envlock capture`` turns verbose on around one tiny matmul only (oneDNN reads
the variable at its first primitive) and captures file descriptor 1 meanwhile. Standard library
only: this runs inside the TF child, whose critical path must stay light.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Callable
from typing import Any

_VERSION = re.compile(r"^(?:onednn|dnnl)_verbose,(?:v\d+,)?(?:[\d.]+,)?info,(?:oneDNN|DNNL) v(\S+)")
_ISA = re.compile(r"^(?:onednn|dnnl)_verbose,(?:v\d+,)?(?:[\d.]+,)?info,cpu,isa:(.+)$")
MAX_CAPTURED_BYTES = 1 << 16


def parse_verbose_info(text: str) -> dict[str, str | None]:
    """``{"onednn_version": "3.7.3", "onednn_isa": "Intel AVX-512 with ..."}``; None where not printed."""
    version = isa = None
    for line in text.splitlines():
        line = line.strip()
        if version is None and (match := _VERSION.match(line)):
            version = match.group(1)
        elif isa is None and (match := _ISA.match(line)):
            isa = " ".join(match.group(1).split())
    return {"onednn_version": version, "onednn_isa": isa}


def capture_fd1(action: Callable[[], Any]) -> str:
    """What ``action`` wrote to file descriptor 1 (C code included), at most MAX_CAPTURED_BYTES."""

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            action()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        return sink.read(MAX_CAPTURED_BYTES).decode("utf-8", errors="replace")


def onednn_info(tiny_op: Callable[[], Any]) -> dict[str, str | None]:
    """Run ``tiny_op`` (oneDNN's first primitive in this process) with ONEDNN_VERBOSE=1 and parse
    oneDNN's info lines. A user's own ONEDNN_VERBOSE is left as it was; failures read as None."""
    previous = os.environ.get("ONEDNN_VERBOSE")
    os.environ["ONEDNN_VERBOSE"] = "1"
    try:
        text = capture_fd1(tiny_op)
    except Exception:  # noqa: BLE001 - an optional fact: unknown, never a crash of capture
        text = ""
    finally:
        if previous is None:
            os.environ.pop("ONEDNN_VERBOSE", None)
        else:
            os.environ["ONEDNN_VERBOSE"] = previous
    return parse_verbose_info(text)
