"""`envlock verify`: does this machine reproduce a golden? (thin: parse, call envlock.verify, print)."""

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
    with_flag,
)
from envlock.cli.explain import BUDGET_HELP, BUDGET_PARSER, run_explain
from envlock.cli.progress import progress_display
from envlock.display import nothing_verified_line, render_report
from envlock.errors import ENVIRONMENT, BadInputError, one_line
from envlock.limits import MAX_REPEAT
from envlock.probes.compare import Tolerance
from envlock.probes.registry import all_probes, parse_probe_list
from envlock.signing import load_trusted_keys
from envlock.store import atomic_write_text, check_outputs, dumps_canonical
from envlock.verify import verify_golden


def _list_probes() -> str:
    rows = [f"{'probe':28} {'group':8} {'dtype':8} tags"]
    # an installed package's probes are listed too: their names and descriptions are escaped
    rows += [one_line(f"{p.name:28} {p.group:8} {p.dtype:8} {','.join(p.tags)}")
             + f"\n{'':28} {one_line(p.description)}" for p in all_probes().values()]
    return "\n".join(rows)


@app.command()
def verify(
    golden: GoldenArgument = None,
    golden_file: GoldenOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="A row for every probe, and each drifting "
                                          "probe's three likeliest causes.")] = False,
    report: Annotated[Path | None, typer.Option("--report", metavar="FILE",
                                                help="Also write the JSON report to FILE (atomically).")]
    = None,
    tolerance: Annotated[str, typer.Option(
        "--tolerance", metavar="POLICY",
        help="'bitwise' (default), or 'ulp:N': an element passes when it is within N ULPs of the "
        "golden value or within N ULPs of the output's largest magnitude (protects near-zero elements).")]
    = "bitwise",
    probes: Annotated[str | None, typer.Option("--probes", metavar="NAMES",
                                               help="Comma-separated probe names (default: all the "
                                                    "golden's probes).")] = None,
    repeat: Annotated[int | None, typer.Option(
        "--repeat", parser=strict_int("--repeat", 1, MAX_REPEAT), metavar="N",
        help="Runs per probe here, 1 to 100 (default: the golden's repeat count); differing runs mean "
             "'nondeterministic'.")] = None,
    golden_env: Annotated[bool, typer.Option(
        "--golden-env", help="Run the probes with the golden's allow-listed determinism environment variables "
        "exactly (set those it had, unset the others): would this hardware reproduce if configured like the "
        "golden?")] = False,
    list_probes: Annotated[bool, typer.Option("--list-probes", help="List the probes with their group, dtype and "
                                              "tags, and exit.")] = False,
    trusted_key: TrustedKeyOption = None,
    explain: Annotated[bool, typer.Option("--explain", help="Then prove the causes of any drift by experiment "
                                          "(`envlock explain`): its causes say 'proved'.")] = False,
    budget: Annotated[int, typer.Option("--budget", parser=BUDGET_PARSER, metavar="SECONDS",
                                          help=with_flag("--explain", BUDGET_HELP))] = 120,
    probe_module: Annotated[list[str] | None, typer.Option("--probe-module", metavar="MODULE",
                                                           help=PROBE_MODULE_HELP)] = None,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=1, max=86400, metavar="SECONDS",
                                                 help=PROBE_TIMEOUT_HELP)] = 120.0,
    portable: Annotated[bool, typer.Option(
        "--portable", help="Require the golden to be recorded under the portable numerics profile (`capture --golden "
        "--portable`); one that is applies it with no flag.")] = False,
    allow_changed_probes: Annotated[bool, typer.Option(
        "--allow-changed-probes", help="Compare probes whose source code changed since the golden was recorded "
        "(by default they are skipped with the two digests).")] = False,
) -> None:
    """Run the probe suite here and compare it with a golden: identical, within tolerance, drift
    (with likely causes), nondeterministic or skipped, per probe.

    Exit codes: 0 reproduces; 1 drift, nondeterminism or a probe that fails here; 2 bad golden, bad usage
    or a --probe-module that does not import; 3 cannot run the probes (e.g. TensorFlow missing).
    """
    if list_probes:
        typer.echo(_list_probes())
        return
    if explain:
        if tolerance != "bitwise" or repeat is not None or golden_env:
            raise BadInputError("--explain proves bitwise causes with the golden's repeat count in this machine's "
                                "environment: it does not combine with --tolerance, --repeat or --golden-env")
        raise typer.Exit(run_explain(resolve_golden_path(golden, golden_file), as_json=as_json, report=report,
                                     emit_env=None, probes=probes,
                                     budget=budget, jobs=2, trusted_key=trusted_key, with_verify_table=True,
                                     probe_module=probe_module, probe_timeout=probe_timeout))
    keys = load_trusted_keys(trusted_key or [])  # a bad key file fails before the golden is read
    policy = Tolerance.parse(tolerance)
    names = parse_probe_list(probes)
    path = resolve_golden_path(golden, golden_file)
    # Checked before the probes run: a typo (or --report naming the golden) should not cost a TF import.
    check_outputs([report], inputs=[path, *(trusted_key or []), *(probe_module or [])])
    with progress_display(as_json=as_json) as progress:
        result = verify_golden(path, probe_names=names, tolerance=policy, repeat=repeat, golden_env=golden_env,
                               trusted_keys=keys, probe_modules=probe_module or [], probe_timeout=probe_timeout,
                               allow_changed_probes=allow_changed_probes, portable=portable, progress=progress)
    text = dumps_canonical(result.model_dump(mode="json"))
    if report is not None:
        atomic_write_text(report, text)  # a failed write is one line from envlock.store (a full disk: exit 3)
    if as_json:
        typer.echo(text, nl=False)
    else:
        show(render_report(result, verbose=verbose))
    if result.exit_code == ENVIRONMENT:  # like every exit 2/3: one line on stderr says why
        typer.echo(one_line(nothing_verified_line(result)), err=True)
    raise typer.Exit(result.exit_code)
