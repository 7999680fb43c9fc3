"""`envlock diff` and `envlock schema`: thin commands over envlock.diff and the manifest's model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import app, show
from envlock.diff import diff_manifests
from envlock.display import render_differences
from envlock.errors import DRIFT, OK
from envlock.golden import load_any_manifest
from envlock.models import Manifest, compute_digest


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(metavar="A", help="Manifest (or golden) file A.", show_default=False)],
    new: Annotated[Path, typer.Argument(metavar="B", help="Manifest (or golden) file B.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Show every identity difference between two manifests, with severity and reason.

    Exit codes: 0 identical in identity; 1 different; 2 bad input file.
    """
    a, b = load_any_manifest(old), load_any_manifest(new)
    differences = diff_manifests(a, b)
    if as_json:
        report = {
            "identical": not differences,
            "old": {"path": str(old), "digest": compute_digest(a)},
            "new": {"path": str(new), "digest": compute_digest(b)},
            "differences": [d.model_dump(mode="json") for d in differences],
        }
        typer.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        show(render_differences(differences))
    raise typer.Exit(DRIFT if differences else OK)


@app.command()
def schema() -> None:
    """Print the manifest's JSON Schema (exit code 0)."""
    typer.echo(json.dumps(Manifest.model_json_schema(), indent=2, sort_keys=True))
