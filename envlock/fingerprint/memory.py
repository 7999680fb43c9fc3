"""Memory total and NUMA nodes (free memory is volatile and deliberately not recorded)."""

from __future__ import annotations

import re

from envlock.models import MemoryInfo
from envlock.runner import Runner

_NODE_DIR = re.compile(r"^node\d+$")


def parse_meminfo_total(text: str) -> int | None:
    """MemTotal from /proc/meminfo, in bytes."""
    match = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def count_numa_nodes(entries: list[str] | None) -> int | None:
    """NUMA node count from the names in /sys/devices/system/node ("node0", "node1", ...)."""
    if entries is None:
        return None
    count = sum(1 for name in entries if _NODE_DIR.match(name))
    return count or None


def collect_memory(runner: Runner) -> MemoryInfo:
    meminfo = runner.read_text("/proc/meminfo")
    return MemoryInfo(
        total_bytes=parse_meminfo_total(meminfo) if meminfo else None,
        numa_nodes=count_numa_nodes(runner.listdir("/sys/devices/system/node")),
    )
