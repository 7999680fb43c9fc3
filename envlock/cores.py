"""``envlock cores``: run known-answer probes pinned to each CPU in turn and compare the bits.

One probe process per CPU, pinned to that CPU (``os.sched_setaffinity`` in the child before numpy
and TensorFlow load: every thread they ever start inherits the one-CPU mask), with one intra-op and
one inter-op thread. Each CPU thus runs the whole computation, inputs included, from a cold start:
the most faithful form, and a crash on one core costs only that core's process. The price is a
TensorFlow import per CPU (about 4.5 s of the 7 s one CPU takes here); ``jobs`` runs that many CPUs'
processes at once (each still on its own CPU). docs/cores.md has the measurements and the
alternative (one process re-pinning its threads) with why it was not chosen.

The vote and the report are ``envlock.corecheck``'s (pure); this module only runs the children.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from envlock.corecheck import CANARIES, CoresReport, RunKey, build_report, run_key
from envlock.errors import BadInputError, EnvironmentProblem
from envlock.models import LockdownSettings
from envlock.probes.registry import all_probes
from envlock.probes.supervisor import check_probe_names, run_child
from envlock.results import ChildResult, ProbeRun
from envlock.vocab import GROUPS

# Within one CPU's process: one thread per pool, so the work runs where it is pinned and no
# thread count differs from one CPU to the next. Seed and determinism as every golden has them.
CORE_SETTINGS = LockdownSettings(seed=42, op_determinism=True, intra_op_threads=1, inter_op_threads=1)


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity set: cgroup cpusets and taskset included)."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        raise EnvironmentProblem("envlock cores pins probes to CPUs with sched_setaffinity, which this system "
                                 "lacks (Linux only)")
    return sorted(getter(0))


def default_probe_names() -> list[str]:
    """The groups run on every CPU (the hardware-arithmetic one: ``envlock.vocab.GROUPS``), then the
    canaries (``corecheck.CANARIES``)."""
    registry = all_probes()
    return [n for n, p in registry.items() if GROUPS[p.group].per_cpu] + [n for n in CANARIES if n in registry]


def _keys(runs: Sequence[ProbeRun]) -> list[RunKey]:
    return [run_key(r.status, ((o.name, o.sha256) for o in r.outputs), r.reason) for r in runs]


Outcome = tuple[ChildResult | None, str | None, float]  # one CPU's result, or why its process failed; seconds


def _one_cpu(cpu: int, *, names: list[str], repeat: int, probe_modules: list[str], probe_timeout: float | None,
             env: dict[str, str], module_probes: bool) -> Outcome:
    """CPU ``cpu``'s result, or why its process failed outside any probe (then every probe is an
    error there: a core that kills TensorFlow's import is a finding, not an environment problem)."""
    started = time.perf_counter()
    try:
        result = run_child(probe_names=names, repeat=repeat, settings=CORE_SETTINGS, env=env,
                           probe_modules=probe_modules, probe_timeout=probe_timeout, affinity=[cpu],
                           module_probes=module_probes, collect_tf_info=False)
    except EnvironmentProblem as exc:
        if type(exc) is not EnvironmentProblem:  # TensorflowMissing: the same on every CPU
            raise
        return None, str(exc), time.perf_counter() - started
    return result, None, time.perf_counter() - started


def check_cores(cpus: Sequence[int], *, probe_names: list[str] | None = None, probe_modules: Sequence[str] = (),
                repeat: int = 1, jobs: int = 1, probe_timeout: float | None = None) -> CoresReport:
    """Run the probes pinned to each of ``cpus`` (checked against ``allowed_cpus()`` by the caller)
    and vote. ``probe_names`` None: the defaults plus every probe of ``probe_modules``. Raises
    BadInputError (exit 2: unknown probe, a probe module that does not import), TensorflowMissing /
    EnvironmentProblem (exit 3: every CPU's probe process failed outside the probes)."""
    if not cpus:
        raise BadInputError("envlock cores needs at least one CPU")
    started = time.perf_counter()
    names = list(dict.fromkeys(probe_names)) if probe_names else default_probe_names()
    modules = list(probe_modules)
    check_probe_names(names, modules)  # a built-in typo fails before TensorFlow loads
    env = dict(os.environ)
    one_cpu = functools.partial(_one_cpu, names=names, repeat=repeat, probe_modules=modules, env=env,
                                probe_timeout=probe_timeout, module_probes=probe_names is None and bool(modules))
    first, *rest = sorted(cpus)
    # The first CPU alone: a bad probe module or name fails once, before the other processes start.
    outcomes = {first: one_cpu(first)}
    # At most `jobs` submitted at a time (nothing queued): Ctrl-C or SIGTERM waits only for those.
    pending, workers = list(rest), max(1, min(jobs, len(rest) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: dict[Future[Outcome], int] = {}
        while pending or running:
            while pending and len(running) < workers:
                cpu = pending.pop(0)
                running[pool.submit(one_cpu, cpu)] = cpu
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[running.pop(future)] = future.result()
    failed = {cpu: why for cpu, (_r, why, _s) in outcomes.items() if why is not None}
    if len(failed) == len(outcomes):
        raise EnvironmentProblem(f"the probe process failed on every CPU checked: {next(iter(failed.values()))}")
    order = next(list(r.order or names) for r, _w, _s in outcomes.values() if r is not None)
    runs = {cpu: ({} if result is None else {p: _keys(v) for p, v in result.runs.items()})
            for cpu, (result, _w, _s) in outcomes.items()}
    for cpu, why in failed.items():
        runs[cpu] = {p: [run_key("error", reason=f"the probe process failed: {why}")] * repeat for p in order}
    imports = [r.import_seconds or 0.0 for r, _w, _s in outcomes.values() if r is not None]
    suites = [r.suite_seconds for r, _w, _s in outcomes.values() if r is not None]
    seconds = {cpu: s for cpu, (_r, _w, s) in outcomes.items()}
    timings = {"total_seconds": time.perf_counter() - started,
               "per_cpu_seconds": sum(seconds.values()) / len(seconds),
               "import_seconds": sum(imports) / len(imports), "suite_seconds": sum(suites) / len(suites)}
    notes = [f"each CPU ran the probes in its own process, pinned to it before TensorFlow loaded, with "
             f"{CORE_SETTINGS.intra_op_threads} intra-op and {CORE_SETTINGS.inter_op_threads} inter-op thread "
             f"(seed {CORE_SETTINGS.seed}, op determinism on); {min(jobs, len(cpus))} at a time"]
    return build_report(runs, probes=order, repeat=repeat, seconds=seconds, timings=timings, notes=notes)
