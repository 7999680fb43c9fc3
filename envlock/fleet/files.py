"""``envlock fleet FILES``: read goldens and verify reports into rows, measure how far the classes'
goldens are apart, and make the picture (side effects: the files; the logic is ``fleet.picture``).

Every file goes through the one bounded reader (``envlock.store.read_json_file``: a regular file of
at most 16 MiB, bounded JSON); a bad one is a BadFileError naming it (exit 2), or, with
``keep_going``, one line in the report's problems while the others are read."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from envlock.errors import BAD_INPUT, BadFileError
from envlock.fleet.picture import FleetReport, analyse
from envlock.fleet.rows import MachineRow, row_of_document
from envlock.fleet.worker import row_from_json
from envlock.golden import Golden, load_golden
from envlock.probes.compare import Tolerance, compare_output
from envlock.runner import SPAWN_ERRORS, Child, CouldNotStart, kill_tree, spawn, wait_for
from envlock.store import read_json_file


@contextlib.contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Parsing thousands of files allocates millions of objects, none in a cycle; meanwhile the rows
    kept grow, and each of the collector's full passes walks all of them: a quarter of the time on
    10,000 files (benchmarks/bench_fleet.py). Reference counting still frees everything at once."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Below this many files one process reads them all: a second one costs its start (about 0.4 s).
PARALLEL_FROM = 400
WORKER_TIMEOUT_S = 3600.0
FileRead = tuple[MachineRow | None, BadFileError | None]


def read_rows(paths: Iterable[Path | str], *, keep_going: bool = False,
              jobs: int | None = None) -> tuple[list[MachineRow], list[str]]:
    """One row per file, in the order given, and the one-line problems of the files skipped.
    ``jobs``: processes reading at once (default: the CPUs this process may use, at most 2 below
    PARALLEL_FROM files it is 1); the others are ``envlock.fleet.worker`` children, each given a share."""
    listed = [str(p) for p in paths]
    jobs = max(1, min(jobs or len(os.sched_getaffinity(0)), 16))
    if len(listed) < PARALLEL_FROM:
        jobs = 1
    with _without_cycle_collection():
        results = _read_in_parallel(listed, jobs) if jobs > 1 else [read_one(p) for p in listed]
    rows: list[MachineRow] = []
    problems: list[str] = []
    for row, problem in results:  # the order given: the first bad file is the one reported
        if problem is not None:
            if not keep_going:
                raise problem
            problems.append(str(problem))
        elif row is not None:
            rows.append(row)
    return rows, problems


def read_one(path: str) -> FileRead:
    """One golden or verify report as a machine row, or the reason it is not one."""
    try:
        return row_of_document(path, read_json_file(path)), None
    except BadFileError as exc:
        return None, exc


def _read_in_parallel(paths: list[str], jobs: int) -> list[FileRead]:
    """The first share read here, the others by ``envlock.fleet.worker`` children at the same time."""
    size = -(-len(paths) // jobs)
    shares = [paths[i:i + size] for i in range(0, len(paths), size)]
    with contextlib.ExitStack() as stack:
        children = []
        for share in shares[1:]:
            request = stack.enter_context(tempfile.TemporaryFile())
            request.write(json.dumps(share).encode())
            request.seek(0)
            output = stack.enter_context(tempfile.TemporaryFile())
            try:
                proc = spawn([sys.executable, "-m", "envlock.fleet.worker"], stdin=request, stdout=output,
                             stderr=subprocess.DEVNULL)
            except SPAWN_ERRORS as exc:
                raise CouldNotStart([sys.executable, "-m", "envlock.fleet.worker"], exc) from None
            stack.callback(kill_tree, proc)  # whatever happens here, no reader outlives the command
            children.append((proc, output, share))
        results = [read_one(p) for p in shares[0]]
        for proc, output, share in children:
            results += _worker_results(proc, output, share)
    return results


def _worker_results(proc: Child[bytes], output: IO[bytes], share: list[str]) -> list[FileRead]:
    code = wait_for(proc, WORKER_TIMEOUT_S)
    output.seek(0)
    lines = output.read().decode("utf-8", "replace").splitlines()
    if code != 0 or len(lines) != len(share):  # a worker that died (memory, a signal): read its share here
        return [read_one(p) for p in share]
    results: list[FileRead] = []
    for path, line in zip(share, lines, strict=True):
        data = json.loads(line)
        if "problem" in data:
            results.append((None, BadFileError(path, str(data["problem"]))))
        else:
            results.append((row_from_json(data["row"]), None))
    return results


def max_ulps(reference: Golden, other: Golden, probes: Sequence[str]) -> dict[str, float | None]:
    """Each probe's largest ULP distance over the outputs' stored samples (``compare_output``);
    None where none of its differing outputs could be measured."""
    bitwise = Tolerance(0)
    out: dict[str, float | None] = {}
    for name in probes:
        mine, ref = other.probe(name), reference.probe(name)
        if mine is None or ref is None or mine.status != "ok" or ref.status != "ok":
            out[name] = None
            continue
        theirs = {o.name: o.model_dump() for o in mine.outputs}
        compared = [compare_output(o.model_dump(), theirs[o.name], bitwise) for o in ref.outputs if o.name in theirs]
        ulps = [r.max_ulp for r in compared if not r.identical and r.max_ulp is not None]  # identical ones are 0
        out[name] = max(ulps) if ulps else None
    return out


class _GoldenMeasure:
    """Loads each golden it compares in full (digest, manifest, samples: ``load_golden``), once."""

    def __init__(self, *, keep_going: bool) -> None:
        self._loaded: dict[str, Golden | None] = {}
        self._keep_going = keep_going  # False: a golden that fails its full load raises
        self.problems: list[str] = []

    def _load(self, source: str) -> Golden | None:
        if source not in self._loaded:
            try:
                self._loaded[source] = load_golden(source)
            except BadFileError as exc:
                if not self._keep_going:
                    raise
                self.problems.append(str(exc))
                self._loaded[source] = None
        return self._loaded[source]

    def __call__(self, reference: MachineRow, other: MachineRow, probes: Sequence[str]) -> Mapping[str, float | None]:
        ref, mine = self._load(reference.source), self._load(other.source)
        return max_ulps(ref, mine, probes) if ref is not None and mine is not None else {}


def fleet_report(paths: Sequence[Path | str], *, keep_going: bool = False, jobs: int | None = None,
                 extra_rows: Sequence[MachineRow] = ()) -> FleetReport:
    """The picture of ``paths`` and of ``extra_rows`` from another reader (``envlock.fleet.prometheus``)."""
    rows, problems = read_rows(paths, keep_going=keep_going, jobs=jobs)
    rows = [*rows, *extra_rows]
    measure = _GoldenMeasure(keep_going=keep_going)
    report = analyse(rows, problems=problems, measure=measure)
    if measure.problems:  # a golden that read as a row but failed its full load (e.g. its digest)
        report = report.model_copy(update={"problems": [*report.problems, *measure.problems],
                                           "exit_code": BAD_INPUT})
    return report
