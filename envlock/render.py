"""Readable text for manifests and differences. The display layer decides how to say "unknown"."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envlock.diff import Difference
from envlock.models import Manifest
from envlock.redact import redact_value

UNKNOWN = "not known"


def _v(value: Any, unit: str = "") -> str:
    return UNKNOWN if value is None else f"{value}{unit}"


def _on_off(value: bool | None) -> str:
    return UNKNOWN if value is None else ("on" if value else "off")


def _ranges(cpus: list[int] | None) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    if cpus is None:
        return UNKNOWN
    runs: list[list[int]] = []
    for cpu in cpus:
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


def _gib(n: int | None) -> str:
    return UNKNOWN if n is None else f"{n / 2**30:.1f} GiB"


def _section_lines(m: Manifest) -> list[tuple[str, str]]:
    h, c, num, g, p = m.host, m.cpu, m.numeric, m.gpu, m.python
    isa = [name for name, present in c.isa.model_dump().items() if present]
    lines = [
        ("host", f"{_v(h.distro)} {h.distro_version or ''}".rstrip() + f", kernel {_v(h.kernel)}, glibc {_v(h.glibc)}, "
         f"{_v(h.architecture)}, container {_v(h.container_runtime)}"),
        ("cpu", f"{_v(c.vendor)} {_v(c.model_name)} (family {_v(c.family)}, model {_v(c.model)}, stepping "
         f"{_v(c.stepping)}, microcode {_v(c.microcode)}); {_v(c.logical_cores)} logical / {_v(c.physical_cores)} "
         f"physical cores; may run on CPUs {_ranges(c.affinity)}"),
        ("isa", " ".join(isa) if isa else (UNKNOWN if not c.flags else "none of the tracked features")),
        ("memory", f"{_gib(m.memory.total_bytes)}, NUMA nodes {_v(m.memory.numa_nodes)}"),
    ]
    blas = "; ".join(
        f"{b.internal_api or b.user_api} {_v(b.version)} ({_v(b.architecture)}, {_v(b.threading_layer)}, "
        f"{_v(b.num_threads)} threads)" for b in num.blas
    ) or UNKNOWN
    baseline = " ".join(num.simd_baseline or []) or UNKNOWN
    simd = f"baseline {baseline}, dispatch {' '.join(num.simd_dispatch or []) or UNKNOWN}"
    lines.append(("numpy", f"{_v(num.numpy_version)}; BLAS {blas}; SIMD {simd}"))
    if g.status == "ok":
        for d in g.devices:
            lines.append((f"gpu {d.index}", f"{_v(d.name)}, compute {_v(d.compute_capability)}, "
                          f"{_gib(d.memory_total_bytes)}, MIG {_v(d.mig_mode)}, ECC {_v(d.ecc_mode)}"))
        lines.append(("driver", f"{_v(g.driver_version)}, CUDA driver {_v(g.cuda_driver_version)}"))
    else:
        lines.append(("gpu", {"no_gpu": "no GPU", "no_driver": "no NVIDIA driver", "nvml_unavailable":
                              "NVML not available", "error": "could not collect"}[g.status]
                      + (f" ({g.detail})" if g.detail else "")))
    lines.extend(_tensorflow_lines(m))
    lines.append(("python", f"{_v(p.version)} {_v(p.implementation)} ({_v(p.compiler)}), "
                  f"{len(p.distributions)} distributions"))
    env = " ".join(f"{k}={redact_value(v)}" for k, v in m.environment.items()) or "no numerics-related variables set"
    lines.append(("environment", env))
    return lines


def _tensorflow_lines(m: Manifest) -> list[tuple[str, str]]:
    t = m.tensorflow
    if t.status != "present":
        text = {"absent": "not installed", "not_captured": "not captured (--no-tf)", "error": "could not collect"}
        return [("tensorflow", text[t.status] + (f" ({t.detail})" if t.detail and t.status == "error" else ""))]
    build = "CUDA " + _v(t.built_cuda_version) + ", cuDNN " + _v(t.built_cudnn_version) if t.is_cuda_build else (
        "ROCm build" if t.is_rocm_build else "CPU build")
    libs = ", ".join(f"{lib.name} {lib.version or ''}".rstrip() for lib in t.loaded_libraries) or "none found"
    return [
        ("tensorflow", f"{_v(t.version)} ({_v(t.git_version)}, {_v(t.compiler)}), {build}, "
         f"keras {_v(t.keras_version)}"),
        ("tf config", f"oneDNN {_on_off(t.onednn_enabled)}, XLA jit {_v(t.xla_jit)}, op determinism "
         f"{_on_off(t.op_determinism)}, threads intra {_v(t.intra_op_threads)} / inter {_v(t.inter_op_threads)} "
         "(0 = TF default)"),
        ("devices", ", ".join(t.physical_devices) if t.physical_devices is not None else UNKNOWN),
        ("loaded libs", libs),
    ]


def render_manifest(m: Manifest) -> str:
    lines = [f"envlock manifest {m.digest} (captured {m.captured_at})"]
    width = max(len(label) for label, _ in _section_lines(m))
    lines += [f"  {label:<{width}}  {text}" for label, text in _section_lines(m)]
    return "\n".join(lines)


def render_differences(differences: Iterable[Difference]) -> str:
    diffs = list(differences)
    if not diffs:
        return "identical: no identity differences"
    counts = {s: sum(1 for d in diffs if d.severity == s) for s in ("critical", "warning", "info")}
    lines = [f"{len(diffs)} differences ({counts['critical']} critical, {counts['warning']} warning, "
             f"{counts['info']} info)"]
    lines += [f"  {d.severity:<8}  {d.reason}" for d in diffs]
    return "\n".join(lines)
