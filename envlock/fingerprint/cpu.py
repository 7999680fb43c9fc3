"""CPU identity from /proc/cpuinfo: vendor, model, microcode, cores, flags and the ISA summary.

The parser is pure (text in, model out) and is tested on real cpuinfo files from several
CPU generations in tests/data/cpuinfo. On Linux we read /proc/cpuinfo directly: it is what
py-cpuinfo parses too, but py-cpuinfo's get_cpu_info() spawns helper processes and costs
about a second; it is only the fallback where /proc/cpuinfo does not exist.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from envlock.fingerprint.cache import collect_caches
from envlock.models import CpuInfo, IsaSummary
from envlock.runner import Runner

# IsaSummary field -> the flag names Linux (x86: arch/x86/include/asm/cpufeatures.h,
# arm64: /proc/cpuinfo "Features") and py-cpuinfo use for it.
ISA_FLAG_NAMES: dict[str, tuple[str, ...]] = {
    "sse4_1": ("sse4_1",),
    "sse4_2": ("sse4_2",),
    "avx": ("avx",),
    "avx2": ("avx2",),
    "fma": ("fma",),
    "f16c": ("f16c",),
    "avx512f": ("avx512f",),
    "avx512dq": ("avx512dq",),
    "avx512bw": ("avx512bw",),
    "avx512vl": ("avx512vl",),
    "avx512cd": ("avx512cd",),
    "avx512_vnni": ("avx512_vnni", "avx512vnni"),
    "avx512_bf16": ("avx512_bf16", "avx512bf16"),
    "avx512_fp16": ("avx512_fp16", "avx512fp16"),
    "avx_vnni": ("avx_vnni", "avxvnni"),
    "amx_tile": ("amx_tile", "amxtile"),
    "amx_bf16": ("amx_bf16", "amxbf16"),
    "amx_int8": ("amx_int8", "amxint8"),
    "neon": ("asimd", "neon"),
    "sve": ("sve",),
}

# ARM "CPU implementer" codes (arch/arm64/include/asm/cputype.h) -> vendor name.
ARM_IMPLEMENTERS: dict[int, str] = {
    0x41: "ARM",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x50: "APM",
    0x51: "Qualcomm",
    0x61: "Apple",
    0x69: "Intel",
    0x6D: "Microsoft",
    0xC0: "Ampere",
}


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip(), 0)
    except ValueError:
        return None


def _blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per blank-line separated block ("processor" entries, plus ARM's trailer)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.setdefault(key.strip().lower(), value.strip())
    if current:
        blocks.append(current)
    return blocks


def isa_summary(flags: list[str]) -> IsaSummary:
    """Which kernel-relevant ISA features ``flags`` has; all None when the flag list is unknown."""
    if not flags:
        return IsaSummary()
    present = set(flags)
    return IsaSummary(**{field: any(name in present for name in names) for field, names in ISA_FLAG_NAMES.items()})


def _physical_cores(processors: list[dict[str, str]]) -> int | None:
    pairs = {(p.get("physical id"), p.get("core id")) for p in processors if "core id" in p}
    if pairs:
        return len(pairs)
    # ARM cpuinfo has no topology: cores are not hyper-threaded, one processor entry each.
    if processors and all("cpu implementer" in p for p in processors):
        return len(processors)
    return None


def parse_proc_cpuinfo(text: str) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (x86 or ARM); fields it cannot find are None."""
    blocks = _blocks(text)
    processors = [b for b in blocks if "processor" in b and _parse_int(b["processor"]) is not None]
    first = processors[0] if processors else (blocks[0] if blocks else {})
    merged = {**{k: v for b in blocks for k, v in b.items()}, **first}
    flag_text = merged.get("flags") or merged.get("features") or ""
    flags = sorted(set(flag_text.split()))
    if "vendor_id" in merged:
        vendor: str | None = merged["vendor_id"]
        family = _parse_int(merged.get("cpu family"))
        model = _parse_int(merged.get("model"))
        stepping = _parse_int(merged.get("stepping"))
        model_name = merged.get("model name")
    else:
        implementer = _parse_int(merged.get("cpu implementer"))
        vendor = ARM_IMPLEMENTERS.get(implementer) if implementer is not None else None
        if vendor is None and implementer is not None:
            vendor = f"0x{implementer:02x}"
        family = _parse_int(merged.get("cpu architecture"))
        model = _parse_int(merged.get("cpu part"))
        stepping = _parse_int(merged.get("cpu revision"))
        model_name = merged.get("model name") or merged.get("hardware") or merged.get("processor")
        if model_name is not None and _parse_int(model_name) is not None:
            model_name = None  # "processor : 0" is an index, not a name
    return CpuInfo(
        vendor=vendor or None,
        model_name=" ".join(model_name.split()) if model_name else None,
        family=family,
        model=model,
        stepping=stepping,
        microcode=merged.get("microcode") or None,
        logical_cores=len(processors) or None,
        physical_cores=_physical_cores(processors),
        flags=flags,
        isa=isa_summary(flags),
    )


def from_py_cpuinfo(info: dict[str, Any]) -> CpuInfo:
    """A CpuInfo from py-cpuinfo's get_cpu_info() dict (the fallback off Linux)."""
    flags = sorted(set(info.get("flags") or []))
    return CpuInfo(
        vendor=info.get("vendor_id_raw") or None,
        model_name=info.get("brand_raw") or None,
        family=info.get("family"),
        model=info.get("model"),
        stepping=info.get("stepping"),
        logical_cores=info.get("count"),
        flags=flags,
        isa=isa_summary(flags),
    )


def _affinity() -> list[int] | None:
    getter: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return sorted(getter(0))
    except OSError:
        return None


def collect_cpu(runner: Runner) -> CpuInfo:
    text = runner.read_text("/proc/cpuinfo")
    if text:
        cpu = parse_proc_cpuinfo(text)
    else:
        try:
            # lazy: py-cpuinfo is slow (it spawns processes): only where /proc/cpuinfo is missing
            import cpuinfo  # py-cpuinfo: slow (spawns processes), only where /proc/cpuinfo is missing

            cpu = from_py_cpuinfo(cpuinfo.get_cpu_info())
        except Exception:  # noqa: BLE001 - an unknown CPU is None fields, not a crash
            cpu = CpuInfo()
    updates: dict[str, Any] = {"affinity": _affinity(), "caches": collect_caches(runner)}
    if cpu.logical_cores is None:
        updates["logical_cores"] = os.cpu_count()
    return cpu.model_copy(update=updates)
