"""Display: every text envlock prints for a person, rendered from values (pure functions).

Manifests and their differences (``capture``, ``diff``), verify's table and verdict line, and
explain's table. Unknown values read "not known"; nothing here decides an outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from envlock.errors import ENVIRONMENT, one_line
from envlock.redact import redact_value

if TYPE_CHECKING:  # only annotations: `capture` renders a manifest without loading verify's modules
    from envlock.corecheck import CoresReport
    from envlock.diff import Difference
    from envlock.explain.report import ExplainReport, Finding
    from envlock.models import Manifest
    from envlock.verdict import ProbeVerdict, VerifyReport

UNKNOWN = "not known"


def _s(text: str) -> str:
    """A string that came from a file, a module or a child, safe for a terminal: control characters,
    escapes, line breaks and unpaired surrogates escaped (one field never forges another line)."""
    return one_line(text)


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
    lines = [f"envlock manifest {_s(m.digest)} (captured {_s(str(m.captured_at))})"]
    width = max(len(label) for label, _ in _section_lines(m))
    lines += [f"  {_s(label):<{width}}  {_s(text)}" for label, text in _section_lines(m)]
    return "\n".join(lines)


def render_differences(differences: Iterable[Difference]) -> str:
    diffs = list(differences)
    if not diffs:
        return "identical: no identity differences"
    counts = {s: sum(1 for d in diffs if d.severity == s) for s in ("critical", "warning", "info")}
    lines = [f"{len(diffs)} differences ({counts['critical']} critical, {counts['warning']} warning, "
             f"{counts['info']} info)"]
    lines += [f"  {d.severity:<8}  {_s(d.reason)}" for d in diffs]
    return "\n".join(lines)


# ---------------------------------------------------------------- verify


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_HEADER = f"{'probe':28} {'status':17} {'max ULP':>10} {'max rel err':>12} {'differing':>10}"
# Statuses that always get a row; identical and skipped probes are summarised unless --verbose.
_ROW_STATUSES = ("drift", "within_tolerance", "nondeterministic", "error")


_PORTABLE_MARK = {True: "  portable", False: "  not covered", None: "  not measured"}


def _probe_row(v: ProbeVerdict, profile: str | None = None) -> str:
    row = _plain_row(v)
    return row + _PORTABLE_MARK[v.portable] if profile and v.status not in ("skipped", "error") else row


def _plain_row(v: ProbeVerdict) -> str:
    name = _s(v.name)
    if v.status in ("skipped", "error"):
        return f"{name:28} {v.status:17} {_s(v.reason or '')}"
    if v.status != "identical" and v.max_ulp is None and v.outputs_unmeasured:
        return f"{name:28} {v.status:17} raw bytes differ outside the sampled elements; size not measured"
    differing = "-" if v.mismatched is None else str(v.mismatched)
    if v.compared:
        differing += f"/{v.compared}"
    return (f"{name:28} {v.status:17} {_fmt(v.max_ulp, '.0f'):>10} {_fmt(v.max_rel_error, '.2e'):>12} "
            f"{differing:>10}")


def _families(names: list[str]) -> str:
    """['rng.a', 'rng.b', 'hw.c'] -> 'rng (2), hw (1)': the probe families, in suite order."""
    counts: dict[str, int] = {}
    for name in names:
        family = name.split(".", 1)[0]
        counts[family] = counts.get(family, 0) + 1
    return ", ".join(f"{_s(family)} ({n})" for family, n in counts.items())


def _summary_rows(report: VerifyReport) -> list[str]:
    identical = [v.name for v in report.probes if v.status == "identical"]
    covered = sum(v.portable is True for v in report.probes if v.status == "identical")
    under = f" ({covered} covered by the {report.profile} profile)" if report.profile else ""
    lines = [f"{len(identical)} identical, bit for bit{under}: {_families(identical)}"] if identical else []
    by_reason: dict[str, list[str]] = {}
    for v in report.probes:
        if v.status == "skipped":
            by_reason.setdefault(v.reason or "skipped", []).append(v.name)
    for reason, names in by_reason.items():
        shown = ", ".join(_s(n) for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"{len(names)} skipped ({shown}): {_s(reason)}")
    return lines


def render_report(report: VerifyReport, *, verbose: bool = False) -> str:
    """The human view: a row per probe that moved, one line for the identical and the skipped ones, each
    distinct cause once with the probes it explains, and what to run next. ``verbose``: every row, and
    every drifting probe's three likeliest causes."""
    lines = [f"golden  {_s(report.golden)} ({_s(report.golden_digest[:19])})",
             f"policy  {report.tolerance}, {report.repeat} repeat(s)"
             + (", golden environment" if report.golden_env else ", this machine's environment")
             + (f", {report.profile} profile" if report.profile else ""), ""]
    rows = [_probe_row(v, report.profile) for v in report.probes if verbose or v.status in _ROW_STATUSES]
    lines += [_HEADER, "-" * len(_HEADER), *rows] if rows else []
    if not verbose:
        lines += _summary_rows(report)
    # A block per probe: in the short view only where it says more than the table (a proof from explain,
    # or why it is nondeterministic); with --verbose for every probe that moved, with its causes.
    detailed = [v for v in report.probes if v.status in ("drift", "nondeterministic")
                and (verbose or v.proved or v.status == "nondeterministic")]
    for v in detailed:
        lines += ["", f"{_s(v.name)}: {v.status}: {_s(v.reason or '')}"]
        if v.proved:
            lines.append(f"  proved: {_s(v.proved)}")
        elif verbose:
            lines += [f"  {rank}. {_s(cause.reason)}" for rank, cause in enumerate(v.causes[:3], 1)]
    if report.causes:
        lines += ["", "why (the likeliest cause of each drift, from the manifest differences):"]
        for rank, cause in enumerate(report.causes, 1):
            lines.append(f"  {rank}. {_s(cause.reason)}")
            names = ", ".join(_s(n) for n in cause.probes)
            lines.append(f"     first cause for {len(cause.probes)} probe{'s' if len(cause.probes) > 1 else ''}: "
                         f"{names}")
    lines.append("")
    lines += [f"note: {_s(n)}" for n in report.notes]
    if report.suggestion:
        lines.append(f"hint: {_s(report.suggestion)}")
    if report.next_command:
        lines.append(f"next: {_s(report.next_command)}   (proves each cause by experiment"
                     + ("" if verbose else "; --verbose shows every probe") + ")")
    c = report.counts
    verdict = ("REPRODUCES" if report.reproduces else "NOTHING VERIFIED" if report.exit_code == ENVIRONMENT
               else "DOES NOT REPRODUCE")
    lines.append(f"{verdict}: {c['identical']} identical, {c['within_tolerance']} within tolerance, "
                 f"{c['drift']} drift, {c['nondeterministic']} nondeterministic, {c['skipped']} skipped"
                 + (f", {c['error']} error " if c.get("error") else " ") +
                 f"({len(report.differences)} manifest differences)")
    return "\n".join(lines)


def nothing_verified_line(report: VerifyReport) -> str:
    """The one stderr line of a verify that compared no probe (exit 3), like every exit 2/3."""
    return (f"envlock: error: {report.golden}: no probe of the golden could be compared on this machine "
            f"({report.counts['skipped']} skipped): nothing was verified")


# ---------------------------------------------------------------- explain


def _first_difference(f: Finding) -> str:
    loc = f.localisation
    if loc is None or not loc.first_difference:
        return "-"
    if loc.method == "intermediates":
        return f"{loc.first_difference} ({loc.op or 'op not named'})"
    return f"output {loc.first_difference}" + (f" ({', '.join(loc.identical_outputs)} identical)"
                                               if loc.identical_outputs else "")


def _short_proof(f: Finding) -> str:
    if f.status in ("fixed", "partly"):
        return f.fixed_by or "-"
    if f.status == "hardware-bound":
        return "no configuration restores it (CPU)"
    if f.status == "version":
        return "versions differ: envlock build"
    return "candidates not tried"


def render_explain(report: ExplainReport) -> str:
    """One table (a row per drifting probe), then what was not tried and the environment to use."""
    lines = [f"golden  {_s(report.golden)} ({_s(report.golden_digest[:19])})"]
    if not report.findings:
        lines += [f"note: {_s(n)}" for n in report.notes]
        lines.append("REPRODUCES: nothing to explain" if report.reproduces else "DOES NOT REPRODUCE")
        return "\n".join(lines)
    rows = [("probe", "verdict", "proved by / evidence", "first difference")]
    for f in report.findings:
        rows.append((_s(f.probe), f.status, _s(_short_proof(f)), _s(_first_difference(f))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if index == 0:
            lines.append("-" * (sum(widths) + 6 + len("first difference")))
    lines.append("")
    for f in report.findings:
        lines.append(f"{_s(f.probe)}: {_s(f.proof())}")
        if f.portable is not None:
            lines.append(f"  {_s(f.portable.detail)}")
        if f.localisation is not None:
            if f.localisation.layer_primitive:
                lines.append(f"  the first differing layer's oneDNN primitive: {_s(f.localisation.layer_primitive)}")
            lines += [f"  oneDNN: {_s(p)}" for p in f.localisation.primitives]
    tried = [c for c in report.candidates if c.status == "tried"]
    lines.append(f"candidates tried: {len(tried)}"
                 + (" (" + "; ".join(f"{_s(c.id)} {c.seconds:.1f}s" for c in tried) + ")" if tried else ""))
    for c in report.candidates:
        if c.status == "crashed":
            lines.append(f"could not be tried (crashed): {_s(c.id)}: {_s(c.detail or '')}")
    if report.not_tried:
        skipped = [c for c in report.not_tried
                   if not any(x.id == c and x.status == "crashed" for x in report.candidates)]
        if skipped:
            lines.append(f"not tried within the {report.budget_seconds:.0f} s budget: "
                         f"{', '.join(_s(c) for c in skipped)}")
    lines += [f"not settable here: {_s(n)}" for n in report.not_applicable]
    lines += [f"note: {_s(n)}" for n in report.notes]
    if report.emits:
        parts = [f"{k}={v}" if v is not None else f"unset {k}" for k, v in (report.emit_env or {}).items()]
        parts += report.emitted_hints()
        lines.append(("reproduces with: " if report.emit_complete else "reproduces some probes with: ")
                     + " ".join(_s(p) for p in parts))
    counts = {s: sum(f.status == s for f in report.findings) for s in ("fixed", "partly", "hardware-bound",
                                                                       "version", "not proved")}
    lines.append("DOES NOT REPRODUCE: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                 + f" ({report.timings.get('total_seconds', 0):.1f} s)")
    return "\n".join(lines)


_VOTE_WORDS = {"majority": "off the majority", "split": "no majority", "not_compared": "not compared"}


def _groups(groups: list[list[int]]) -> str:
    from envlock.corecheck import cpu_ranges  # lazy: `capture` renders without loading the cores modules

    return " | ".join(f"CPU {cpu_ranges(g)}" for g in groups)


def render_cores(report: CoresReport) -> str:
    """``envlock cores``: the verdict line, then each probe that did not agree everywhere (which CPUs
    gave which result, the outputs that differ), then the time it took."""
    lines = [_s(report.summary), ""]
    agree = [v for v in report.votes if v.status == "agree"]
    others = [v for v in report.votes if v.status != "agree"]
    for vote in others:
        detail = f"{_s(vote.probe):28} {_VOTE_WORDS[vote.status]:16} {_groups(vote.groups)}"
        if vote.outputs:
            detail += f"; outputs differing: {_s(', '.join(vote.outputs))}"
        if vote.nondeterministic:
            detail += f"; runs differ among themselves on CPU {', '.join(map(str, vote.nondeterministic))}"
        if vote.note:
            detail += f"; {_s(vote.note)}"
        lines.append(detail)
    if agree:
        lines.append(f"{len(agree)} of {len(report.votes)} probes identical on every CPU checked: "
                     f"{_families([v.probe for v in agree])}")
    suspects = [h for h in report.health if h.health != "healthy"]
    if suspects:
        lines.append("")
        lines += [f"CPU {h.cpu}: {h.health}" + (f" (deviates on {_s(', '.join(h.deviates_on))})" if h.deviates_on
                                                else "") for h in suspects]
    t = report.timings
    if t:
        lines.append("")
        lines.append(f"{len(report.cpus)} CPU(s) x {len(report.votes)} probes x {report.repeat} run(s) in "
                     f"{t.get('total_seconds', 0.0):.1f} s ({t.get('per_cpu_seconds', 0.0):.1f} s per CPU, of which "
                     f"TensorFlow's import {t.get('import_seconds', 0.0):.1f} s, "
                     f"the probes {t.get('suite_seconds', 0.0):.1f} s)")
    lines += [f"note: {_s(n)}" for n in report.notes]
    return "\n".join(lines)
