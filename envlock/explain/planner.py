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

When no recorded difference explains a drift, the cause may be a variable envlock never records
(it records only numerics variables, ``envlock.environ``): ``unrecorded_variables`` lists what is set
here and absent from the golden, whatever its name, and ``minimal_unset`` bisects it (delta
debugging) down to the variable, or the smallest set, whose unsetting restores the bits. Only
names are ever shown: an unset needs no value.

A ceiling can only be lowered: when the golden's CPU had more than this one, no setting here can
give the golden's kernels, and the plan says so (``not_applicable``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envlock.environ import SET_BY_IMPORT, is_allowed
from envlock.models import IsaSummary, Manifest
from envlock.redact import needs_redaction
from envlock.vocab import CandidateKind

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

# What a probe child needs to start, find its modules and do I/O: never unset while looking for an
# unrecorded cause. Small on purpose: everything else set here is a suspect, whatever its name.
CHILD_NEEDS: frozenset[str] = frozenset({
    "PATH",                                # libraries run helpers found on it (ldconfig, nvidia-smi)
    "HOME",                                # the user's site-packages and the libraries' caches hang off it
    "TMPDIR", "TMP", "TEMP",               # where the child and its libraries write temporary files
    "PWD",                                 # the shell's idea of the working directory, read by os.getcwd users
    "LANG", "LANGUAGE",                    # (and LC_*): the encoding of the child's text I/O
    # Where the interpreter finds envlock, TensorFlow and the user's probe modules:
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONPLATLIBDIR",
    "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH",  # where the loader finds libpython and the CUDA libraries
    *IGNORED_VARIABLES,                    # envlock sets them for its own children
    *SET_BY_IMPORT,                        # TensorFlow sets them itself when it loads: unsetting changes nothing
})
CHILD_NEEDS_PREFIXES: tuple[str, ...] = (
    "LC_",       # locale categories, as LANG
    "ENVLOCK_",  # envlock's own settings (the golden to use, the daemon's): the probe child reads none
)



@dataclass(frozen=True)
class Candidate:
    """One configuration to try: environment changes (None = unset) and/or a CPU affinity."""

    id: str  # what it sets, e.g. "TF_ENABLE_ONEDNN_OPTS=1" or "affinity=0,1"
    kind: CandidateKind
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


def unrecorded_variables(golden_names: Iterable[str], here_env: Mapping[str, str]) -> tuple[str, ...]:
    """The variables set here that the golden's environment (its manifest's and its lockdown's) does
    not have, whatever their names, less what a probe child needs to run (``CHILD_NEEDS``); sorted."""
    recorded = set(golden_names)
    return tuple(sorted(n for n in here_env if n not in recorded and n not in CHILD_NEEDS
                        and not n.startswith(CHILD_NEEDS_PREFIXES)))


def looks_like_a_credential(name: str) -> bool:
    """redact's credential-name test (``NAME=value`` is redacted when NAME looks like one)."""
    return needs_redaction(f"{name}=x")


def unset_candidate(names: Sequence[str], *, total: int, trial: int) -> Candidate:
    """Unset ``names`` (some of the ``total`` unrecorded variables): names only, never a value.
    ``trial`` numbers the large sets, whose ids would otherwise list dozens of names."""
    names = tuple(sorted(names))
    if len(names) <= 3:
        label = " + ".join(f"unset {n}" for n in names)
    elif len(names) == total:
        label = f"unset all {total} variables not in the golden"
    else:
        label = f"unset {len(names)} of the {total} variables not in the golden (trial {trial})"
    secret = [n for n in names if looks_like_a_credential(n)]
    reason = ("set here and absent from the golden's environment: envlock does not record "
              + ("it" if len(names) == 1 else "them") + " (names only: values are never shown)")
    if secret:
        reason += f"; {', '.join(secret)} look(s) like a credential and is unset like any other"
    return Candidate(label, "unrecorded", reason, env=dict.fromkeys(names),
                     paths=tuple(f"environment.{n}" for n in names),
                     members=tuple(f"unset {n}" for n in names) if len(names) > 1 else ())


# A batch of trials, each a set of variables to unset; per set: did the probe come back bitwise
# identical (True), not (False), or could it not be tried within the budget (None).
Trial = Callable[[list[tuple[str, ...]]], list[bool | None]]


@dataclass(frozen=True)
class Bisection:
    """What ``minimal_unset`` found."""

    restores: bool | None  # unsetting all of the names restores the bits (None: not tried, budget)
    cause: tuple[str, ...] | None  # the minimal set, itself tried and restoring: proved
    narrowed: tuple[str, ...]  # the smallest set known to restore (the cause, or where the budget ran out)
    trials: int  # sets asked for


class _OutOfBudget(Exception):
    pass


class _Search:
    def __init__(self, trial: Trial, parallel: bool) -> None:
        self.trial, self.parallel = trial, parallel
        self.known: dict[frozenset[str], bool] = {}
        self.asked = 0

    def ask(self, sets: list[tuple[str, ...]]) -> list[bool | None]:
        """Each set's result, asking only what is not known yet (None: not tried, the budget is spent)."""
        new = [s for s in dict.fromkeys(tuple(sorted(s)) for s in sets) if frozenset(s) not in self.known]
        if new:
            self.asked += len(new)
            for names, result in zip(new, self.trial(new), strict=True):
                if result is not None:
                    self.known[frozenset(names)] = result
        return [self.known.get(frozenset(s)) for s in sets]

    def one(self, names: tuple[str, ...]) -> bool:
        result = self.ask([names])[0]
        if result is None:
            raise _OutOfBudget
        return result

    def smallest_restoring(self) -> tuple[str, ...]:
        restoring = [tuple(sorted(s)) for s, ok in self.known.items() if ok]
        return min(restoring, key=lambda s: (len(s), s)) if restoring else ()

    def minimal(self, names: tuple[str, ...], context: tuple[str, ...]) -> tuple[str, ...]:
        """The part of ``names`` that must be unset, given that unsetting ``context + names`` restores."""
        if len(names) == 1:
            return names
        half = len(names) // 2
        first, second = names[:half], names[half:]
        if self.parallel:  # both halves at once: two children in the wall time of one
            self.ask([context + first, context + second])
        if self.one(context + first):
            return self.minimal(first, context)
        if self.one(context + second):
            return self.minimal(second, context)
        # Neither half alone: a variable from each is needed. Keep the second while shrinking the first.
        from_first = self.minimal(first, context + second)
        from_second = self.minimal(second, context + from_first)
        return from_first + from_second


def minimal_unset(names: Sequence[str], trial: Trial, *, parallel: bool = True) -> Bisection:
    """Delta debugging on values: unset all of ``names``; if that restores the bits, unset half and keep
    the half that still restores, recursing, until one variable (or, where variables only act together,
    the smallest set) is left. ``parallel`` asks for both halves at once (two children, same wall time
    on two workers). The result is proved only by a trial of exactly that set: it is asked for when the
    search did not end on one."""
    search = _Search(trial, parallel)
    everything = tuple(sorted(names))
    if not everything:
        return Bisection(False, None, (), 0)
    try:
        if not search.one(everything):
            return Bisection(False, None, (), search.asked)
        found = tuple(sorted(search.minimal(everything, ())))
        if not search.one(found):  # variables that act only together in ways halving missed
            return Bisection(True, None, search.smallest_restoring(), search.asked)
        return Bisection(True, found, found, search.asked)
    except _OutOfBudget:
        return Bisection(search.known.get(frozenset(everything)), None, search.smallest_restoring(), search.asked)
