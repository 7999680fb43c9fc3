"""`envlock fleet FILES...`: which machines give the same bits (thin: parse, call envlock.fleet, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import app, show

FLEET_HELP = """Read goldens and verify reports (`envlock verify --json` or `--report`) from many machines
and say which numeric classes there are, which machines are in each, which probes separate the
classes and by how many ULPs, and where the numerics profile changes the picture. Machines of
another envlock version (major.minor), profile or probe set are grouped apart, never compared;
two machines with one hostname are told apart by their manifest digest (host@digest).

Exit codes: 0 every group is one class; 1 a group holds more than one class; 2 a file that is not
a golden or verify report (or unreadable), which with --keep-going is listed while the others are
still read, and bad usage; 3 --plot without matplotlib (pip install 'envlock[plot]')."""


@app.command(help=FLEET_HELP)
def fleet(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="Goldens and verify reports (any number).",
                                                show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the picture as one JSON object "
                                          "(kind envlock.fleet).")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE.png",
                                              help="Also draw the map (machines by probe family, coloured by "
                                                   "agreement with their group's largest class) to FILE.png; "
                                                   "needs matplotlib (envlock[plot]).")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="List a bad file and read the others (the "
                                             "exit code is still 2).")] = False,
) -> None:
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.fleet.files import fleet_report
    from envlock.fleet.render import render_fleet
    from envlock.store import check_outputs, dumps_canonical

    if plot is not None:  # checked before reading thousands of files: a bad path, or no matplotlib
        # lazy: matplotlib is an optional extra, imported only for --plot
        from envlock.fleet.plot import require_matplotlib

        check_outputs([plot], inputs=files)
        require_matplotlib()
    report = fleet_report(files, keep_going=keep_going)
    if plot is not None:
        # lazy: matplotlib is an optional extra, imported only for --plot
        from envlock.fleet.plot import write_plot

        write_plot(report, plot)
    if as_json:
        typer.echo(dumps_canonical(report.model_dump(mode="json")), nl=False)
    else:
        show(render_fleet(report), nl=False)
    raise typer.Exit(report.exit_code)
