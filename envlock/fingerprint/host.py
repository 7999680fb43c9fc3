"""Host identity: OS/distro, kernel, glibc, architecture, container runtime, hostname."""

from __future__ import annotations

import os
import platform
import re
import shlex
from collections.abc import Mapping

from envlock.models import HostInfo
from envlock.runner import Runner

ContainerRuntime = str  # one of HostInfo.container_runtime's literals

# cgroup path fragments -> runtime, most specific first (a Kubernetes pod also shows the
# runtime underneath it, e.g. "kubepods/.../docker-<id>.scope").
_CGROUP_MARKERS: tuple[tuple[str, ContainerRuntime], ...] = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
)


def parse_os_release(text: str) -> dict[str, str]:
    """The KEY=value pairs of /etc/os-release (values may be shell-quoted)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        try:
            parts = shlex.split(value)
        except ValueError:
            parts = [value.strip("\"'")]
        fields[key] = " ".join(parts)
    return fields


def parse_glibc(confstr_value: str | None) -> str | None:
    """"glibc 2.36" (os.confstr CS_GNU_LIBC_VERSION) -> "2.36"."""
    if not confstr_value:
        return None
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", confstr_value)
    return match.group(1) if match else None


def detect_container_runtime(
    *, dockerenv: bool, containerenv: bool, cgroup_text: str | None, environ: Mapping[str, str]
) -> ContainerRuntime:
    """Which container runtime this process runs under; "none" when no sign of one."""
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    if containerenv or environ.get("container") == "podman":
        return "podman"
    if dockerenv:
        return "docker"
    for marker, runtime in _CGROUP_MARKERS:
        if cgroup_text and marker in cgroup_text:
            return runtime
    if environ.get("container") in {"lxc", "docker"}:
        return environ["container"]
    return "none"


def _glibc() -> str | None:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError, AttributeError):
        value = None
    if value:
        return parse_glibc(value)
    libc, version = platform.libc_ver()
    return version or None if libc == "glibc" else None


def collect_host(runner: Runner, environ: Mapping[str, str]) -> HostInfo:
    release = parse_os_release(runner.read_text("/etc/os-release") or runner.read_text("/usr/lib/os-release") or "")
    kernel = (runner.read_text("/proc/sys/kernel/osrelease") or "").strip() or platform.release() or None
    return HostInfo(
        os=platform.system() or None,
        distro=release.get("NAME") or release.get("ID") or None,
        distro_version=release.get("VERSION_ID") or None,
        kernel=kernel,
        architecture=platform.machine() or None,
        glibc=_glibc(),
        container_runtime=detect_container_runtime(  # type: ignore[arg-type]
            dockerenv=runner.exists("/.dockerenv"),
            containerenv=runner.exists("/run/.containerenv"),
            cgroup_text=runner.read_text("/proc/1/cgroup"),
            environ=environ,
        ),
        hostname=platform.node() or None,
    )
