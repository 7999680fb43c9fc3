"""Instruction-set ceilings lowered to the golden CPU's level: oneDNN (``ONEDNN_MAX_CPU_ISA``), XLA
(``--xla_cpu_max_isa``), numpy's SIMD dispatch (``NPY_DISABLE_CPU_FEATURES``) and OpenBLAS's core
type (``OPENBLAS_CORETYPE``).

A ceiling can only be lowered: when the golden's CPU had more than this one, no setting here can
give the golden's kernels, and the proposal says so (``not_applicable``).
"""

from __future__ import annotations

from collections.abc import Sequence

from envlock.explain.families.base import Candidate, Family, Proposal, Sides
from envlock.models import IsaSummary

# oneDNN's ONEDNN_MAX_CPU_ISA names, lowest first, each with the CPU features it needs (on top of
# the previous level's where marked "+").
ONEDNN_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SSE41", ("sse4_1",)),
    ("AVX", ("sse4_1", "avx")),
    ("AVX2", ("sse4_1", "avx", "avx2", "fma")),
    ("AVX2_VNNI", ("sse4_1", "avx", "avx2", "fma", "avx_vnni")),
    ("AVX512_CORE", ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq")),
    ("AVX512_CORE_VNNI", ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                          "avx512_vnni")),
    ("AVX512_CORE_BF16", ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                          "avx512_vnni", "avx512_bf16")),
    ("AVX512_CORE_FP16", ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                          "avx512_vnni", "avx512_bf16", "avx512_fp16")),
    ("AVX512_CORE_AMX", ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                         "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")),
)

# XLA:CPU's --xla_cpu_max_isa names, lowest first.
XLA_LEVELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SSE4_2", ("sse4_2",)),
    ("AVX", ("sse4_2", "avx")),
    ("AVX2", ("sse4_2", "avx", "avx2", "fma")),
    ("AVX512", ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq")),
    ("AVX512_VNNI", ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni")),
    ("AVX512_BF16", ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
                     "avx512_bf16")),
    ("AMX", ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
             "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")),
)
def isa_level(isa: IsaSummary, levels: tuple[tuple[str, tuple[str, ...]], ...]) -> int | None:
    """Index of the highest level whose features ``isa`` all has; None when a needed fact is unknown."""
    if getattr(isa, levels[0][1][0]) is None:
        return None  # not even the baseline is known: an unknown CPU (e.g. a manifest without flags)
    best: int | None = None
    for index, (_, features) in enumerate(levels):
        if all(getattr(isa, f) for f in features):
            best = index
    return best


def _ceiling(name: str, levels: tuple[tuple[str, tuple[str, ...]], ...], golden: IsaSummary, here: IsaSummary,
             not_applicable: list[str]) -> str | None:
    g, h = isa_level(golden, levels), isa_level(here, levels)
    if g is None or h is None or g == h:
        return None
    if g > h:
        not_applicable.append(f"{name}: the golden's CPU reached {levels[g][0]}, this one only {levels[h][0]}: "
                              "a ceiling can only be lowered")
        return None
    return levels[g][0]


class Isa(Family):
    kind = "isa"

    def propose(self, sides: Sides, earlier: Sequence[Candidate]) -> Proposal:
        golden, here, here_env = sides.golden, sides.here, sides.here_env
        out: list[Candidate] = []
        not_applicable: list[str] = []
        onednn = _ceiling("oneDNN ISA", ONEDNN_LEVELS, golden.cpu.isa, here.cpu.isa, not_applicable)
        if onednn:
            out.append(Candidate(f"ONEDNN_MAX_CPU_ISA={onednn}", "isa",
                                 f"oneDNN's kernels capped at the golden CPU's level ({onednn})",
                                 env={"ONEDNN_MAX_CPU_ISA": onednn}, paths=("cpu.isa",)))
        xla = _ceiling("XLA ISA", XLA_LEVELS, golden.cpu.isa, here.cpu.isa, not_applicable)
        if xla:
            flags = " ".join(part for part in (here_env.get("XLA_FLAGS", ""), f"--xla_cpu_max_isa={xla}") if part)
            out.append(Candidate(f"XLA_FLAGS+=--xla_cpu_max_isa={xla}", "isa",
                                 f"XLA's code generation capped at the golden CPU's level ({xla})",
                                 env={"XLA_FLAGS": flags}, paths=("cpu.isa",)))
        g_simd, h_simd = golden.numeric.simd_dispatch, here.numeric.simd_dispatch
        if g_simd is not None and h_simd is not None:
            extra = sorted(set(h_simd) - set(g_simd))
            if extra:
                current = here_env.get("NPY_DISABLE_CPU_FEATURES", "").split()
                value = " ".join(dict.fromkeys([*current, *extra]))
                out.append(Candidate(f"NPY_DISABLE_CPU_FEATURES={value}", "isa",
                                     f"numpy's SIMD dispatch without what the golden's CPU lacked ({', '.join(extra)})",
                                     env={"NPY_DISABLE_CPU_FEATURES": value}, paths=("numeric.simd_dispatch",)))
            missing = sorted(set(g_simd) - set(h_simd))
            if missing:
                not_applicable.append(f"numpy SIMD: the golden dispatched to {', '.join(missing)}, "
                                      "which this CPU lacks")
        g_core = next((b.architecture for b in golden.numeric.blas if b.internal_api == "openblas"), None)
        h_core = next((b.architecture for b in here.numeric.blas if b.internal_api == "openblas"), None)
        if g_core and h_core and g_core != h_core:
            out.append(Candidate(f"OPENBLAS_CORETYPE={g_core}", "isa", f"OpenBLAS's kernels for the golden's core "
                                 f"type ({g_core}, {h_core} here)", env={"OPENBLAS_CORETYPE": g_core},
                                 paths=("numeric.blas",)))
        return Proposal(out, not_applicable)


FAMILY = Isa()
