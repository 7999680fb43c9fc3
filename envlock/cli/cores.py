"""`envlock cores`: do all CPUs of this machine compute the same bits? (thin: parse, call envlock.cores, print)."""

from __future__ import annotations

from typing import Annotated

import typer

from envlock.cli.common import PROBE_MODULE_HELP, PROBE_TIMEOUT_HELP, app, show, strict_int
from envlock.corecheck import parse_cpu_list
from envlock.cores import allowed_cpus, check_cores
from envlock.display import render_cores
from envlock.errors import ENVIRONMENT, one_line
from envlock.limits import MAX_REPEAT
from envlock.probes.registry import parse_probe_list
from envlock.store import dumps_canonical


@app.command()
def cores(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    cpus: Annotated[str | None, typer.Option(
        "--cpus", metavar="LIST", help="The CPUs to check, e.g. 0,1 or 0-3,8 (default: every CPU this process "
        "may run on); each must be in this process's CPU affinity.")] = None,
    probes: Annotated[str | None, typer.Option(
        "--probes", metavar="NAMES", help="Comma-separated probe names (default: the hardware-arithmetic group and "
        "a few canaries, plus every probe of the --probe-module modules).")] = None,
    probe_module: Annotated[list[str] | None, typer.Option("--probe-module", metavar="MODULE",
                                                           help=PROBE_MODULE_HELP)] = None,
    repeat: Annotated[int, typer.Option(
        "--repeat", parser=strict_int("--repeat", 1, MAX_REPEAT), metavar="N",
        help="Runs per probe on each CPU, 1 to 100; a CPU whose own runs differ deviates.")] = 1,
    jobs: Annotated[int, typer.Option(
        "--jobs", parser=strict_int("--jobs", 1, 4096), metavar="N",
        help="CPUs checked at once, each by its own process pinned to it (default 1: beside a workload, one "
        "CPU busy at a time).")] = 1,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=1, max=86400, metavar="SECONDS",
                                                 help=PROBE_TIMEOUT_HELP)] = 120.0,
) -> None:
    """Run known-answer probes pinned to each CPU in turn and compare the bits across CPUs: a CPU
    that deviates from the majority is a suspected defective ("mercurial") core.

    Exit codes: 0 all CPUs agree (or only one was checked); 1 a CPU deviates, or CPUs disagree with no
    majority; 2 bad usage (a CPU not in this process's affinity, an unknown probe, a --probe-module that
    does not import); 3 cannot run the probes (e.g. TensorFlow missing).
    """
    allowed = allowed_cpus()
    chosen = parse_cpu_list(cpus, allowed) if cpus is not None else allowed
    report = check_cores(chosen, probe_names=parse_probe_list(probes), probe_modules=probe_module or [],
                         repeat=repeat, jobs=jobs, probe_timeout=probe_timeout)
    if as_json:
        typer.echo(dumps_canonical(report.model_dump(mode="json")), nl=False)
    else:
        show(render_cores(report))
    if report.exit_code == ENVIRONMENT:
        typer.echo(one_line(report.summary), err=True)
    raise typer.Exit(report.exit_code)
