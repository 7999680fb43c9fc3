"""`envlock build`: a Docker image that reproduces a golden (thin: parse, call envlock.image.build, print)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import GoldenOption, TrustedKeyOption, app, resolve_golden_path
from envlock.errors import one_line
from envlock.image.build import BuildOptions, run_build
from envlock.signing import load_trusted_keys
from envlock.store import check_outputs


@app.command()
def build(
    golden: GoldenOption = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Render Dockerfile.gpu: the and-cuda wheels of tensorflow, "
                                      "hash-pinned, on the pinned OS base (the host needs only the driver).")]
    = False,
    tag: Annotated[str | None, typer.Option("--tag", "-t", metavar="TAG", help="Image tag (default: "
                                            "envlock/tf<version>-<cpu|gpu>:<golden digest>).")] = None,
    base_image: Annotated[str | None, typer.Option("--base-image", metavar="IMAGE",
                                                   help="Base image instead of the pinned one "
                                                        "(a local tag is pinned to its image ID).")] = None,
    wheelhouse: Annotated[Path | None, typer.Option("--wheelhouse", metavar="DIR",
                                                    help="Directory of downloaded wheels, reused "
                                                         "between builds (default: ~/.cache/envlock/wheelhouse).")]
    = None,
    context_only: Annotated[Path | None, typer.Option("--context-only", metavar="DIR",
                                                      help="Write the complete build context "
                                                           "(Dockerfile, wheelhouse, lock, golden) to DIR; no Docker.")]
    = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not reuse cached Docker layers.")] = False,
    requirements: Annotated[Path | None, typer.Option("--requirements", "-r", metavar="FILE",
                                                      help="Install the pins of this "
                                                           "requirements/lock file instead of the golden's "
                                                           "package set.")] = None,
    trusted_key: TrustedKeyOption = None,
) -> None:
    """Build a Docker image that reproduces a golden: exact wheels by sha256 (installed offline),
    determinism environment baked in, the golden inside, and an entrypoint that verifies it
    before running your command (ENVLOCK_ON_DRIFT=warn only warns).

    Progress goes to stderr; the image ID (or the context directory) is printed on stdout.

    Exit codes: 0 built; 2 bad golden or bad usage; 3 Docker unreachable, download or build failed.
    """
    def progress(line: str) -> None:
        typer.echo(one_line(line), err=True)  # Docker's and pip's output: no escape sequence reaches the terminal

    # The context's own files never replace an input (-r ctx/requirements.lock would be lost).
    check_outputs([context_only / n for n in ("Dockerfile", "requirements.lock")]
                  if context_only and context_only.is_dir() else [],
                  inputs=[resolve_golden_path(golden), requirements, *(trusted_key or [])], need_directory=False)
    options = BuildOptions(golden=resolve_golden_path(golden),
                           variant="gpu" if gpu else "cpu", tag=tag, base_image=base_image,
                           wheelhouse=wheelhouse, context_only=context_only, no_cache=no_cache,
                           requirements=requirements, trusted_keys=tuple(load_trusted_keys(trusted_key or [])))
    result = run_build(options, progress)
    if result.image_id is None:
        typer.echo(one_line(str(result.context_dir)))
    else:
        typer.echo(f"built {one_line(result.tag or '')} ({result.image_id}) in {result.seconds:.1f} s", err=True)
        typer.echo(result.image_id)
