"""`envlock fleet FILES...`: which machines give the same bits (thin: parse, call envlock.fleet, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import app, show
from envlock.errors import BadInputError
from envlock.fleet.files import fleet_report
from envlock.fleet.plot import require_matplotlib, write_plot
from envlock.fleet.prometheus import machine_rows, read_prometheus
from envlock.fleet.render import render_fleet
from envlock.store import check_outputs, dumps_canonical

FLEET_HELP = """Read goldens and verify reports (`envlock verify --json` or `--report`) from many machines
and say which numeric classes there are, which machines are in each, which probes separate the
classes and by how many ULPs, and where the numerics profile changes the picture. Machines of
another envlock version (major.minor), profile or probe set are grouped apart, never compared;
two machines with one hostname are told apart by their manifest digest (host@digest).

With --prometheus URL it also reads the classes of the nodes a Prometheus scrapes (the
`envlock_numeric_class` series of `envlock watch`; deploy/README.md): one machine per scrape target,
grouped apart from the files' machines (the series carry no probes).

Exit codes: 0 every group is one class; 1 a group holds more than one class; 2 a file that is not
a golden or verify report (or unreadable), which with --keep-going is listed while the others are
still read, a --prometheus URL that is not one or that answers something else than Prometheus's API,
and bad usage; 3 --plot without matplotlib (pip install 'envlock[plot]'), or a Prometheus that cannot
be reached or answers with a server error."""


@app.command(help=FLEET_HELP)
def fleet(
    files: Annotated[list[Path] | None, typer.Argument(metavar="[FILE]...", help="Goldens and verify reports "
                                                       "(any number).", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the picture as one JSON object "
                                          "(kind envlock.fleet).")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE.png",
                                              help="Also draw the map (machines by probe family, coloured by "
                                                   "agreement with their group's largest class) to FILE.png; "
                                                   "needs matplotlib (envlock[plot]).")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="List a bad file and read the others (the "
                                             "exit code is still 2).")] = False,
    jobs: Annotated[int | None, typer.Option("--jobs", min=1, max=16, help="Processes reading files at once "
                                             "(default: the CPUs this process may use; 1 below 400 files).",
                                             show_default=False)] = None,
    prometheus: Annotated[str | None, typer.Option("--prometheus", metavar="URL",
                                                   help="Also read the classes of the daemons this Prometheus "
                                                        "scrapes (its base URL, e.g. http://prometheus:9090).")] = None,
) -> None:
    files = files or []
    if not files and prometheus is None:
        raise BadInputError("give goldens or verify reports (FILE...), or --prometheus URL")
    if plot is not None and prometheus is not None:
        raise BadInputError("--plot draws probe families, which Prometheus's series do not carry: "
                            "use --plot with files only")
    if plot is not None:  # checked before reading thousands of files: a bad path, or no matplotlib
        check_outputs([plot], inputs=files)
        require_matplotlib()
    extra = []
    if prometheus is not None:
        extra = machine_rows(read_prometheus(prometheus))
    report = fleet_report(files, keep_going=keep_going, jobs=jobs, extra_rows=extra)
    if plot is not None:
        write_plot(report, plot)
    if as_json:
        typer.echo(dumps_canonical(report.model_dump(mode="json")), nl=False)
    else:
        show(render_fleet(report), nl=False)
    raise typer.Exit(report.exit_code)
