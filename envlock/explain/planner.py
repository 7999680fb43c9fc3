"""The intervention planner: which configurations could make this machine give the golden's bits.

Pure: from the golden (its manifest and lockdown), this machine's manifest and environment, it
derives candidate configurations, each a set of environment changes and/or a CPU affinity for a
fresh probe child. explain runs them; a candidate under which a drifting probe is bitwise
identical *proves* the cause. Candidates come only from differences between the two sides:

* each differing determinism variable set to the golden's value (unset where it had none);
* oneDNN on or off as the golden effectively had it (``tensorflow.onednn_enabled``);
* CPU affinity matched (which also matches the thread counts TF and OpenBLAS derive from it),
  and OpenBLAS's thread count;
* instruction-set ceilings lowered to the golden CPU's level: oneDNN (``ONEDNN_MAX_CPU_ISA``),
  XLA (``--xla_cpu_max_isa``), numpy's SIMD dispatch (``NPY_DISABLE_CPU_FEATURES``) and
  OpenBLAS's core type (``OPENBLAS_CORETYPE``);
* all of them together.

A ceiling can only be lowered: when the golden's CPU had more than this one, no setting here can
give the golden's kernels, and the plan says so (``not_applicable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envlock.environ import is_allowed
from envlock.models import IsaSummary, Manifest

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

VERSIONED_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-keras", "keras", "numpy")
# Set by explain's own children (verbose output only): never a difference worth a candidate.
IGNORED_VARIABLES = frozenset({"ONEDNN_VERBOSE", "DNNL_VERBOSE"})


@dataclass(frozen=True)
class Candidate:
    """One configuration to try: environment changes (None = unset) and/or a CPU affinity."""

    id: str  # what it sets, e.g. "TF_ENABLE_ONEDNN_OPTS=1" or "affinity=0,1"
    kind: str  # environment, onednn, affinity, threads, isa, all
    reason: str
    env: dict[str, str | None] = field(default_factory=dict)
    affinity: tuple[int, ...] | None = None
    paths: tuple[str, ...] = ()  # the manifest/environment differences it tests
    members: tuple[str, ...] = ()  # for "all together": the ids it combines

    @property
    def size(self) -> int:
        return len(self.members) or 1


@dataclass
class Plan:
    candidates: list[Candidate]
    not_applicable: list[str]  # differences no setting on this machine can undo, and why
    version_differences: list[str]  # "tensorflow-cpu 2.15.1 -> 2.21.0": no setting changes these


def isa_level(isa: IsaSummary, levels: tuple[tuple[str, tuple[str, ...]], ...]) -> int | None:
    """Index of the highest level whose features ``isa`` all has; None when a needed fact is unknown."""
    if getattr(isa, levels[0][1][0]) is None:
        return None  # not even the baseline is known: an unknown CPU (e.g. a manifest without flags)
    best: int | None = None
    for index, (_, features) in enumerate(levels):
        if all(getattr(isa, f) for f in features):
            best = index
    return best


def _environment_candidates(golden_env: dict[str, str], here_env: dict[str, str]) -> list[Candidate]:
    changes: dict[str, str | None] = {n: None for n in here_env if is_allowed(n) and n not in golden_env}
    changes.update({n: v for n, v in golden_env.items() if here_env.get(n) != v})
    out = []
    for name, value in sorted(changes.items()):
        if name in IGNORED_VARIABLES:
            continue
        label = f"unset {name}" if value is None else f"{name}={value}"
        out.append(Candidate(label, "environment", f"the golden ran with {label.replace('unset ', 'no ')}",
                             env={name: value}, paths=(f"environment.{name}",)))
    return out


def _onednn_candidate(golden: Manifest, here: Manifest, env_ids: set[str]) -> Candidate | None:
    wanted, now = golden.tensorflow.onednn_enabled, here.tensorflow.onednn_enabled
    if wanted is None or now is None or wanted == now:
        return None
    value = "1" if wanted else "0"
    if f"TF_ENABLE_ONEDNN_OPTS={value}" in env_ids:
        return None  # the environment candidate already sets exactly this
    return Candidate(f"TF_ENABLE_ONEDNN_OPTS={value}", "onednn",
                     f"oneDNN optimisations were {'on' if wanted else 'off'} in the golden, "
                     f"{'on' if now else 'off'} here", env={"TF_ENABLE_ONEDNN_OPTS": value},
                     paths=("tensorflow.onednn_enabled",))


def _affinity_candidates(golden: Manifest, here: Manifest, not_applicable: list[str]) -> list[Candidate]:
    out: list[Candidate] = []
    wanted, now = golden.cpu.affinity, here.cpu.affinity
    online = here.cpu.logical_cores
    if wanted and now is not None and sorted(wanted) != sorted(now):
        if online is not None and len(wanted) <= online:
            cpus = tuple(sorted(wanted)) if max(wanted) < online else tuple(range(len(wanted)))
            out.append(Candidate("affinity=" + ",".join(map(str, cpus)), "affinity",
                                 f"the golden's process could run on {len(wanted)} CPU(s), this one on {len(now)}: "
                                 "TF's and OpenBLAS's thread pools follow the affinity",
                                 affinity=cpus, paths=("cpu.affinity",)))
        else:
            not_applicable.append(f"cpu.affinity: the golden ran on {len(wanted)} CPUs, this machine has {online}")
    golden_blas = [b.num_threads for b in golden.numeric.blas if b.internal_api == "openblas"]
    here_blas = [b.num_threads for b in here.numeric.blas if b.internal_api == "openblas"]
    if golden_blas and here_blas and golden_blas[0] is not None and golden_blas[0] != here_blas[0]:
        out.append(Candidate(f"OPENBLAS_NUM_THREADS={golden_blas[0]}", "threads",
                             f"OpenBLAS used {golden_blas[0]} thread(s) in the golden, {here_blas[0]} here",
                             env={"OPENBLAS_NUM_THREADS": str(golden_blas[0])}, paths=("numeric.blas",)))
    return out


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


def _isa_candidates(golden: Manifest, here: Manifest, here_env: dict[str, str],
                    not_applicable: list[str]) -> list[Candidate]:
    out = []
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
            not_applicable.append(f"numpy SIMD: the golden dispatched to {', '.join(missing)}, which this CPU lacks")
    g_core = next((b.architecture for b in golden.numeric.blas if b.internal_api == "openblas"), None)
    h_core = next((b.architecture for b in here.numeric.blas if b.internal_api == "openblas"), None)
    if g_core and h_core and g_core != h_core:
        out.append(Candidate(f"OPENBLAS_CORETYPE={g_core}", "isa", f"OpenBLAS's kernels for the golden's core "
                             f"type ({g_core}, {h_core} here)", env={"OPENBLAS_CORETYPE": g_core},
                             paths=("numeric.blas",)))
    return out


def version_differences(golden: Manifest, here: Manifest) -> list[str]:
    """TensorFlow, Keras and numpy versions that differ: no environment setting changes these."""
    g = {d.name.lower(): d.version for d in golden.python.distributions}
    h = {d.name.lower(): d.version for d in here.python.distributions}
    out = [f"{name} {g.get(name) or 'absent'} -> {h.get(name) or 'absent'}" for name in VERSIONED_DISTRIBUTIONS
           if (name in g or name in h) and g.get(name) != h.get(name)]
    tf_g, tf_h = golden.tensorflow.version, here.tensorflow.version
    if tf_g and tf_h and tf_g != tf_h and not any(o.startswith("tensorflow") for o in out):
        out.append(f"tensorflow {tf_g} -> {tf_h}")
    if golden.numeric.numpy_version and here.numeric.numpy_version and \
            golden.numeric.numpy_version != here.numeric.numpy_version and not any(o.startswith("numpy") for o in out):
        out.append(f"numpy {golden.numeric.numpy_version} -> {here.numeric.numpy_version}")
    return out


def combine(candidates: list[Candidate], here_env: dict[str, str]) -> Candidate:
    """Several candidates at once (later ones win a shared variable; XLA_FLAGS parts are joined)."""
    env: dict[str, str | None] = {}
    affinity: tuple[int, ...] | None = None
    for c in candidates:
        for name, value in c.env.items():
            if name == "XLA_FLAGS" and value and env.get("XLA_FLAGS") and "--xla_cpu_max_isa" in value:
                base = env["XLA_FLAGS"] or ""
                value = " ".join(p for p in (base, value.replace(here_env.get("XLA_FLAGS", ""), "").strip()) if p)
            env[name] = value
        affinity = c.affinity or affinity
    ids = tuple(c.id for c in candidates)
    return Candidate(" + ".join(ids), "all", "the candidates together", env=env, affinity=affinity,
                     paths=tuple(dict.fromkeys(p for c in candidates for p in c.paths)), members=ids)


def plan_interventions(golden_manifest: Manifest, golden_env: dict[str, str], here: Manifest,
                       here_env: dict[str, str]) -> Plan:
    """Every candidate configuration, most specific first, then all of them together."""
    not_applicable: list[str] = []
    candidates = _environment_candidates(golden_env, here_env)
    onednn = _onednn_candidate(golden_manifest, here, {c.id for c in candidates})
    if onednn:
        candidates.append(onednn)
    candidates += _affinity_candidates(golden_manifest, here, not_applicable)
    candidates += _isa_candidates(golden_manifest, here, here_env, not_applicable)
    # Together: one candidate per variable (the first: "unset X" and "X=1" cannot both hold).
    together: list[Candidate] = []
    claimed: set[str] = set()
    for c in candidates:
        if not claimed & set(c.env):
            together.append(c)
            claimed |= set(c.env)
    if len(together) > 1:
        candidates.append(combine(together, here_env))
    return Plan(candidates, not_applicable, version_differences(golden_manifest, here))
