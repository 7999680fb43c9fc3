"""CPU cache topology per level: size, line, associativity, sets and sharing.

Eigen's tensor contraction chooses its blocking, and whether to shard a product by K, from the
cache sizes it reads from CPUID; TF single-threads a oneDNN matmul that fits in Eigen's idea of
L2. Two CPUs with other cache sizes can therefore sum the same matmul in another order.

Read from ``/sys/devices/system/cpu/cpu*/cache/index*/`` (what the kernel derived from CPUID),
through the Runner; where sysfs lacks it (some containers, non-Linux), ``getconf -a``'s
``LEVEL*_CACHE_*`` values, which carry no sharing. Both parsers are pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from envlock.models import CacheInfo
from envlock.runner import Runner

SYSFS_CPU = "/sys/devices/system/cpu"
# sysfs file -> CacheInfo field (sizes are "32K", "2048K", ...; the rest plain integers).
_SYSFS_FIELDS = {"size": "size_bytes", "coherency_line_size": "line_bytes", "ways_of_associativity": "ways",
                 "number_of_sets": "sets"}
_SYSFS_FILES = ("level", "type", *_SYSFS_FIELDS, "shared_cpu_list")
_CPU_DIR = re.compile(r"cpu(\d+)")
_INDEX_DIR = re.compile(r"index(\d+)")
_TYPES = {"data": "Data", "instruction": "Instruction", "unified": "Unified"}
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str | None) -> int | None:
    """``"32K"`` -> 32768; ``"1024"`` -> 1024; anything else None."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text or "", re.IGNORECASE)
    return int(match.group(1)) * _UNITS[match.group(2).upper()] if match else None


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def parse_cpu_list(text: str | None) -> list[int] | None:
    """``"0-3,8"`` -> [0, 1, 2, 3, 8]; unreadable -> None."""
    cpus: set[int] = set()
    for part in (text or "").strip().split(","):
        low, sep, high = part.partition("-")
        if not low.isdigit() or (sep and not high.isdigit()):
            return None
        cpus.update(range(int(low), int(high) + 1) if sep else (int(low),))
    return sorted(cpus) if cpus else None


def parse_sysfs_caches(entries: Mapping[str, Mapping[str, str]]) -> list[CacheInfo] | None:
    """Cache levels from ``{"cpu0/cache/index0": {"level": "1", "type": "Data", ...}, ...}``.

    One record per (level, type), with how many distinct instances (by shared_cpu_list) the
    machine has; where CPUs disagree (hybrid cores), the first CPU's values are kept. None when
    nothing usable was read.
    """
    levels: dict[tuple[int, str], CacheInfo] = {}
    sharing: dict[tuple[int, str], set[str]] = {}
    for key in sorted(entries, key=_entry_order):
        files = entries[key]
        level, kind = _int(files.get("level")), _TYPES.get((files.get("type") or "").strip().lower())
        if level is None or kind is None:
            continue
        shared = (files.get("shared_cpu_list") or "").strip()
        sharing.setdefault((level, kind), set()).add(shared)
        if (level, kind) in levels:
            continue
        cpus = parse_cpu_list(shared)
        levels[(level, kind)] = CacheInfo(
            level=level, type=kind,  # type: ignore[arg-type]  # checked against _TYPES above
            size_bytes=parse_size(files.get("size")), line_bytes=_int(files.get("coherency_line_size")),
            ways=_int(files.get("ways_of_associativity")), sets=_int(files.get("number_of_sets")),
            shared_by=len(cpus) if cpus else None)
    if not levels:
        return None
    return [levels[k].model_copy(update={"instances": len(sharing[k])}) for k in sorted(levels)]


def _entry_order(key: str) -> tuple[int, int, str]:
    cpu = _CPU_DIR.search(key)
    index = _INDEX_DIR.search(key)
    return (int(cpu.group(1)) if cpu else 0, int(index.group(1)) if index else 0, key)


# getconf name -> (level, type)
_GETCONF = {"LEVEL1_DCACHE": (1, "Data"), "LEVEL1_ICACHE": (1, "Instruction"), "LEVEL2_CACHE": (2, "Unified"),
            "LEVEL3_CACHE": (3, "Unified"), "LEVEL4_CACHE": (4, "Unified")}


def parse_getconf(text: str) -> list[CacheInfo] | None:
    """Cache levels from ``getconf -a`` (glibc's reading of CPUID): size, line and ways; no sharing."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        if name.startswith("LEVEL") and value.strip().isdigit():
            values[name] = int(value.strip())
    caches = []
    for prefix, (level, kind) in _GETCONF.items():
        size = values.get(f"{prefix}_SIZE")
        if not size:
            continue  # 0 or empty: no such level
        caches.append(CacheInfo(level=level, type=kind,  # type: ignore[arg-type]
                                size_bytes=size, line_bytes=values.get(f"{prefix}_LINESIZE") or None,
                                ways=values.get(f"{prefix}_ASSOC")))
    return caches or None


def read_sysfs_entries(runner: Runner) -> dict[str, dict[str, str]]:
    """The sysfs cache files of every CPU, as ``{"cpuN/cache/indexM": {file: text}}``."""
    entries: dict[str, dict[str, str]] = {}
    for cpu in runner.listdir(SYSFS_CPU) or []:
        if not _CPU_DIR.fullmatch(cpu):
            continue
        for index in runner.listdir(f"{SYSFS_CPU}/{cpu}/cache") or []:
            if not _INDEX_DIR.fullmatch(index):
                continue
            base = f"{SYSFS_CPU}/{cpu}/cache/{index}"
            files = {name: text for name in _SYSFS_FILES if (text := runner.read_text(f"{base}/{name}")) is not None}
            if files:
                entries[f"{cpu}/cache/{index}"] = files
    return entries


def collect_caches(runner: Runner) -> list[CacheInfo] | None:
    """This machine's cache levels: sysfs first, ``getconf -a`` where sysfs has none; None if neither."""
    caches = parse_sysfs_caches(read_sysfs_entries(runner))
    if caches:
        return caches
    result = runner.run(["getconf", "-a"], timeout=5.0)
    return parse_getconf(result.stdout) if result and result.returncode == 0 else None
