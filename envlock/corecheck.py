"""Per-CPU known-answer checks (``envlock cores``), the pure part: parse the CPU list, vote, report.

The same probes ran pinned to each CPU in turn; every CPU of a healthy machine computes the same
bits. Per probe, CPUs are grouped by what they produced (status and output sha256s, every repeat):

* one group: the CPUs agree;
* a group holding more than half of the CPUs: the majority; each CPU outside it *deviates* (a
  suspected defective core, as in "Cores that don't count", Hochschild et al., HotOS 2021);
* no strict majority (2 CPUs that disagree, or a 2-2 split): nobody can say which side is wrong,
  the CPUs involved are *undecided*.

A CPU whose own repeats differ forms a group of its own (a mercurial core's failures come and go).
A probe that failed or was skipped identically everywhere, or was nondeterministic on every CPU,
says nothing about one core: it is not compared.

Pure (no I/O): ``envlock.cores`` runs the probes and hands the runs here; ``envlock.display``
renders the report; the daemon parses the report JSON of its ``envlock cores --json`` child.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from envlock.errors import DRIFT, ENVIRONMENT, OK, BadInputError

# The hardware-arithmetic group runs whole; these canaries join it: each exercises a different unit
# of a core (name -> why), and the set costs about 0.7 s per CPU on a Zen 4 (docs/cores.md).
CANARIES: dict[str, str] = {
    "matmul.f32": "oneDNN's float32 GEMM: the FMA vector units",
    "matmul.odd_shapes": "GEMM edge tiles (masked vector loads and stores)",
    "conv2d.grad": "oneDNN convolution backward: long dependent FMA chains",
    "reduce.sum_large": "a large float32 reduction: vector adds in Eigen's tree order",
    "numpy.matmul": "OpenBLAS's GEMM: another library's kernels on the same core",
}
MAX_CPUS = 4096  # Linux's CONFIG_NR_CPUS upper bound in common kernels; a --cpus range past it is a typo

RunKey = tuple[str, tuple[tuple[str, str], ...], str]  # (status, sorted (output, sha256), reason if not ok)
Verdict = Literal["agree", "deviates", "undecided", "single", "nothing_compared"]
VoteStatus = Literal["agree", "majority", "split", "not_compared"]
Health = Literal["healthy", "suspect", "undecided"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeVote(_Frozen):
    """One probe across the CPUs."""

    probe: str
    status: VoteStatus
    # CPUs by identical result, the largest group first (ties: lowest CPU first)
    groups: list[list[int]]
    deviating: list[int] = Field(default_factory=list)  # off the majority (majority) / involved (split)
    outputs: list[str] = Field(default_factory=list)  # the outputs whose digests differ between groups
    nondeterministic: list[int] = Field(default_factory=list)  # CPUs whose own repeats differ
    note: str | None = None  # why not compared


class CpuHealth(_Frozen):
    cpu: int
    health: Health
    deviates_on: list[str] = Field(default_factory=list)  # probes where it is off the majority
    undecided_on: list[str] = Field(default_factory=list)  # probes split with no majority
    seconds: float | None = None  # its probe process, start to end (TF import included)


class CoresReport(_Frozen):
    """What ``envlock cores`` found; ``--json`` prints it, the daemon reads it back."""

    verdict: Verdict
    exit_code: int
    summary: str  # the one line a person reads first
    cpus: list[int]
    probes: list[str]
    repeat: int
    votes: list[ProbeVote]
    health: list[CpuHealth]
    notes: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


def parse_cpu_list(text: str, allowed: Iterable[int]) -> list[int]:
    """``"0,1"``, ``"0-3,8"`` -> sorted CPUs; each must be one this process may run on (``allowed``,
    its affinity set). Anything else is one ``BadInputError`` line (exit 2)."""
    allowed_set = set(allowed)
    cpus: set[int] = set()
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise BadInputError(f"--cpus {text!r}: expected CPU numbers and ranges like 0,1 or 0-3,8")
    for part in parts:
        low_text, dash, high_text = part.partition("-")
        if not _digits(low_text) or (dash and not _digits(high_text)):
            raise BadInputError(f"--cpus {text!r}: {part!r} is not a CPU number or a range like 0-3")
        low, high = int(low_text), int(high_text) if dash else int(low_text)
        if high < low or high >= MAX_CPUS:
            raise BadInputError(f"--cpus {text!r}: {part!r} is not a range of CPUs 0 to {MAX_CPUS - 1}")
        cpus.update(range(low, high + 1))
    outside = sorted(cpus - allowed_set)
    if outside:
        raise BadInputError(f"--cpus {text!r}: CPU {cpu_ranges(outside)} is not one this process may run on "
                            f"(its CPU affinity: {cpu_ranges(sorted(allowed_set))})")
    return sorted(cpus)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 6


def cpu_ranges(cpus: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    ranges: list[tuple[int, int]] = []
    for cpu in sorted(set(cpus)):
        if ranges and ranges[-1][1] == cpu - 1:
            ranges[-1] = (ranges[-1][0], cpu)
        else:
            ranges.append((cpu, cpu))
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def run_key(status: str, outputs: Iterable[tuple[str, str]] = (), reason: str | None = None) -> RunKey:
    """What one run produced, as the vote compares it: outputs only when ok, the reason otherwise."""
    return (status, tuple(sorted(outputs)) if status == "ok" else (), "" if status == "ok" else (reason or ""))


def _differing_outputs(keys: Sequence[RunKey]) -> list[str]:
    names: set[str] = set()
    digests: dict[str, set[str]] = {}
    for _status, outputs, _reason in keys:
        names.update(n for n, _ in outputs)
        for name, digest in outputs:
            digests.setdefault(name, set()).add(digest)
    present = [dict(outputs) for _s, outputs, _r in keys]
    return sorted(n for n in names if len(digests.get(n, ())) > 1 or any(n not in p for p in present))


def vote_probe(probe: str, runs: Mapping[int, Sequence[RunKey]]) -> ProbeVote:
    """Group the CPUs by what ``probe`` produced on each (every repeat), and vote."""
    cpus = sorted(runs)
    nondeterministic = [c for c in cpus if len(set(runs[c])) > 1]
    if cpus and len(nondeterministic) == len(cpus):
        return ProbeVote(probe=probe, status="not_compared", groups=[[c] for c in cpus],
                         nondeterministic=nondeterministic,
                         note="its runs differ among themselves on every CPU: a nondeterministic probe, not a "
                              "per-core signal")
    by_value: dict[tuple[RunKey, ...] | int, list[int]] = {}
    for cpu in cpus:
        value: tuple[RunKey, ...] | int = cpu if cpu in nondeterministic else (runs[cpu][0],)
        by_value.setdefault(value, []).append(cpu)
    groups = sorted(by_value.values(), key=lambda g: (-len(g), g[0]))
    if len(groups) == 1:
        status, reason = runs[cpus[0]][0][0], runs[cpus[0]][0][2]
        if status != "ok":
            what = "failed" if status == "error" else "was skipped"
            return ProbeVote(probe=probe, status="not_compared", groups=groups,
                             note=f"{what} on every CPU alike" + (f": {reason}" if reason else ""))
        return ProbeVote(probe=probe, status="agree", groups=groups)
    outputs = _differing_outputs([key for cpu in cpus for key in runs[cpu]])
    if len(groups[0]) * 2 > len(cpus):
        deviating = sorted(c for g in groups[1:] for c in g)
        return ProbeVote(probe=probe, status="majority", groups=groups, deviating=deviating, outputs=outputs,
                         nondeterministic=nondeterministic)
    return ProbeVote(probe=probe, status="split", groups=groups, deviating=cpus, outputs=outputs,
                     nondeterministic=nondeterministic)


def _probe_list(names: Sequence[str]) -> str:
    return ", ".join(names)


def build_report(runs: Mapping[int, Mapping[str, Sequence[RunKey]]], *, probes: Sequence[str], repeat: int,
                 seconds: Mapping[int, float] | None = None, timings: Mapping[str, float] | None = None,
                 notes: Sequence[str] = ()) -> CoresReport:
    """The vote over every probe and what it means per CPU: ``runs[cpu][probe]`` holds the run keys
    of ``probe`` on ``cpu``, one per repeat (a probe missing on a CPU counts as an error there)."""
    cpus = sorted(runs)
    missing: RunKey = run_key("error", reason="no result from this CPU's probe process")
    votes = [vote_probe(p, {c: list(runs[c].get(p) or [missing]) for c in cpus}) for p in probes]
    health = []
    for cpu in cpus:
        deviates = [v.probe for v in votes if v.status == "majority" and cpu in v.deviating]
        undecided = [v.probe for v in votes if v.status == "split"]
        state: Health = "suspect" if deviates else "undecided" if undecided else "healthy"
        health.append(CpuHealth(cpu=cpu, health=state, deviates_on=deviates, undecided_on=undecided,
                                seconds=(seconds or {}).get(cpu)))
    compared = [v for v in votes if v.status != "not_compared"]
    verdict, summary = _verdict(cpus, votes, health, compared, repeat)
    code = {"agree": OK, "single": OK, "deviates": DRIFT, "undecided": DRIFT, "nothing_compared": ENVIRONMENT}[verdict]
    all_notes = list(notes) + [f"{v.probe} not compared: {v.note}" for v in votes if v.status == "not_compared"]
    return CoresReport(verdict=verdict, exit_code=code, summary=summary, cpus=cpus, probes=list(probes),
                       repeat=repeat, votes=votes, health=health, notes=all_notes, timings=dict(timings or {}))


def _verdict(cpus: list[int], votes: list[ProbeVote], health: list[CpuHealth], compared: list[ProbeVote],
             repeat: int) -> tuple[Verdict, str]:
    runs = f"{repeat} run{'s' if repeat != 1 else ''} each"
    if not compared:
        return "nothing_compared", (f"no probe could be compared across the CPUs ({len(votes)} failed, were skipped "
                                    "or were nondeterministic everywhere): see the notes")
    suspects = [h for h in health if h.health == "suspect"]
    if suspects:
        lines = [f"CPU {h.cpu} deviates from the others on probes {_probe_list(h.deviates_on)}: suspect a defective "
                 "core" for h in suspects]
        return "deviates", "; ".join(lines)
    split = [v for v in votes if v.status == "split"]
    if split:
        names = _probe_list([v.probe for v in split])
        if len(cpus) == 2:
            return "undecided", (f"CPUs {cpus[0]} and {cpus[1]} disagree on probes {names}: with 2 CPUs a vote cannot "
                                 "say which one is wrong; run on a machine with 3 or more CPUs (or give more with "
                                 "--cpus), or re-run to see whether it repeats")
        return "undecided", (f"no majority of the {len(cpus)} CPUs agrees on probes {names}: re-run to see whether "
                             "it repeats")
    if len(cpus) == 1:
        return "single", (f"only CPU {cpus[0]} was checked ({len(compared)} probes, {runs}): there is no other CPU "
                          "to compare it with")
    return "agree", f"all {len(cpus)} CPUs agree on {len(compared)} probes (bitwise, {runs})"
