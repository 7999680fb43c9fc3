"""`envlock explain`: prove by experiment why this machine does not reproduce a golden (thin)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import (
    PROBE_MODULE_HELP,
    PROBE_TIMEOUT_HELP,
    GoldenArgument,
    GoldenOption,
    TrustedKeyOption,
    app,
    resolve_golden_path,
    show,
    strict_int,
)
from envlock.cli.progress import progress_display
from envlock.display import render_explain, render_report
from envlock.errors import BadInputError, one_line
from envlock.explain.run import environment_file, explain_golden
from envlock.probes.registry import parse_probe_list
from envlock.signing import load_trusted_keys
from envlock.store import atomic_write_text, check_outputs, dumps_canonical

BUDGET_HELP = ("Whole seconds for the whole run, verify included, 1 to 86400 (default 120); candidates that do "
               "not fit are listed as not tried.")
# Whole seconds in plain digits: float() would take "nan", "inf" and "1e40", none of them a budget.
BUDGET_PARSER = strict_int("--budget", 1, 86_400)


def run_explain(golden: Path, *, as_json: bool, report: Path | None, emit_env: Path | None,
                probes: str | None, budget: float, jobs: int, trusted_key: list[Path] | None,
                with_verify_table: bool, probe_module: list[str] | None = None,
                probe_timeout: float | None = None) -> int:
    """Shared by `explain` and `verify --explain`: run, write the files asked for, print; the exit code."""
    if budget <= 0:
        raise BadInputError(f"--budget must be a positive number of seconds, not {budget}")
    keys = load_trusted_keys(trusted_key or [])
    names = parse_probe_list(probes)
    # before the probes run: a typo, or an output that is an input or the other output, should not cost a TF import
    check_outputs([report, emit_env], inputs=[golden, *(trusted_key or []), *(probe_module or [])])
    with progress_display(as_json=as_json) as progress:
        result = explain_golden(golden, probe_names=names, budget=budget, jobs=jobs, trusted_keys=keys,
                                probe_modules=probe_module or [], probe_timeout=probe_timeout, progress=progress)
    text = dumps_canonical(result.model_dump(mode="json"))
    # Always written when asked for, so no stale file survives: without a reproducing environment,
    # sourcing it fails and says so.
    writes = [(report, text), (emit_env, environment_file(result) if emit_env is not None else "")]
    for path, content in writes:
        if path is None:
            continue
        atomic_write_text(path, content)  # a failed write is one line from envlock.store (a full disk: exit 3)
    if as_json:
        typer.echo(text, nl=False)
    else:
        if with_verify_table:
            show(render_report(result.verify))
            typer.echo("")
        show(render_explain(result))
        if emit_env is not None and not result.emits and not result.reproduces:
            typer.echo(f"no environment reproduces the golden here: {one_line(str(emit_env))} says so "
                       "(sourcing it fails)")
    return result.exit_code


@app.command()
def explain(
    golden: GoldenArgument = None,
    golden_file: GoldenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE",
                                                help="Also write the JSON report to FILE.")] = None,
    emit_env: Annotated[Path | None, typer.Option(
        "--emit-env", metavar="FILE",
        help="Write the environment that makes this machine reproduce (a shell snippet) to FILE; where none "
        "does, the file says so and sourcing it fails.")] = None,
    probes: Annotated[str | None, typer.Option("--probes", metavar="NAMES",
                                               help="Comma-separated probe names (default: all the "
                                                    "golden's probes).")] = None,
    budget: Annotated[int, typer.Option("--budget", parser=BUDGET_PARSER, metavar="SECONDS",
                                          help=BUDGET_HELP)] = 120,
    jobs: Annotated[int, typer.Option("--jobs", parser=strict_int("--jobs", 1, 64), metavar="N",
                                      help="Probe children at once, 1 to 64 (default 2).")] = 2,
    trusted_key: TrustedKeyOption = None,
    probe_module: Annotated[list[str] | None, typer.Option("--probe-module", metavar="MODULE",
                                                           help=PROBE_MODULE_HELP)] = None,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=1, max=86400, metavar="SECONDS",
                                                 help=PROBE_TIMEOUT_HELP)] = 120.0,
) -> None:
    """Verify, then re-run only the drifting probes in fresh processes under configurations derived
    from the differences between the golden and this machine (determinism variables, oneDNN,
    affinity and threads, ISA ceilings): per probe, fixed by X (the smallest set), partly, or not
    fixable by configuration here (hardware-bound), with the first operation that differs.

    Exit codes: 0 reproduces (nothing to explain); 1 drift or nondeterminism; 2 bad golden or bad
    usage; 3 cannot run the probes (e.g. TensorFlow missing).
    """
    path = resolve_golden_path(golden, golden_file)
    raise typer.Exit(run_explain(path, as_json=as_json, report=report, emit_env=emit_env, probes=probes,
                                 budget=budget, jobs=jobs, trusted_key=trusted_key, with_verify_table=False,
                                 probe_module=probe_module, probe_timeout=probe_timeout))
