"""`envlock capture`: this machine as a manifest (thin: parse, call envlock.capture, print); with --golden,
envlock.cli.capture_golden records a golden."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from envlock.capture import capture_manifest
from envlock.cli.common import PROBE_MODULE_HELP, PROBE_TIMEOUT_HELP, app, show, strict_int, with_flag
from envlock.display import render_manifest
from envlock.errors import BadInputError, one_line
from envlock.limits import MAX_REPEAT
from envlock.store import check_outputs, dumps_canonical, save_model


@app.command()
def capture(
    output: Annotated[Path | None, typer.Option("-o", "--output", metavar="FILE",
                                                help="Write the manifest (or golden) to FILE, "
                                                     "atomically, as JSON with sorted keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON instead of a summary.")] = False,
    no_tf: Annotated[bool, typer.Option("--no-tf", help="Skip TensorFlow: never import it.")] = False,
    golden: Annotated[bool, typer.Option("--golden", help="Also run the probe suite and write a golden file "
                                         "(needs -o and TensorFlow).")] = False,
    probes: Annotated[str | None, typer.Option("--probes", metavar="NAMES",
                                               help="With --golden: comma-separated probe names.")] = None,
    repeat: Annotated[int, typer.Option("--repeat", parser=strict_int("--repeat", 1, MAX_REPEAT), metavar="N",
                                        help="With --golden: runs per probe (1 to 100).")] = 2,
    sign: Annotated[Path | None, typer.Option("--sign", metavar="KEY", help="With --golden: sign it with this "
                                              "unencrypted Ed25519 OpenSSH private key (ssh-keygen -t ed25519); "
                                              "verify --trusted-key KEY.pub checks it.")] = None,
    probe_module: Annotated[list[str] | None, typer.Option("--probe-module", metavar="MODULE",
                                                           help=with_flag("--golden", PROBE_MODULE_HELP))] = None,
    probe_timeout: Annotated[float, typer.Option("--probe-timeout", min=1, max=86400, metavar="SECONDS",
                                                 help=with_flag("--golden", PROBE_TIMEOUT_HELP))] = 120.0,
    portable: Annotated[bool, typer.Option("--portable", help=with_flag("--golden", "record under the portable "
                                           "numerics profile (every op through XLA with IEEE-exact math, oneDNN capped "
                                           "at a level both CPU vendors have; docs/portable.md), so that another "
                                           "vendor's CPU can give the same bits. verify, explain and watch then apply "
                                           "it from the golden."))] = False,
) -> None:
    """Fingerprint this machine and its software stack as a versioned manifest.

    Prints a readable summary (or the manifest as JSON with --json); writes a file only with -o.
    TensorFlow is inspected in a child process started first, so a full capture costs about one
    TensorFlow import; --no-tf never imports it.

    Exit codes: 0 ok; 2 bad usage; 3 environment problem (e.g. --golden without TensorFlow).
    """
    if golden:
        # lazy: the golden's core (the probe supervisor, record, golden) loads only with --golden (capture start-up)
        from envlock.cli.capture_golden import capture_golden_file

        capture_golden_file(output, probes, repeat, as_json=as_json, no_tf=no_tf, sign=sign,
                            probe_modules=probe_module or [], probe_timeout=probe_timeout, portable=portable)
        return
    if portable:
        raise BadInputError("--portable only makes sense with --golden")
    if probe_module:
        raise BadInputError("--probe-module only makes sense with --golden")
    if sign is not None:
        raise BadInputError("--sign only makes sense with --golden")
    if probes is not None:
        raise BadInputError("--probes only makes sense with --golden")
    if output is not None:  # refused before spending seconds capturing (one line, exit 2)
        check_outputs([output], inputs=[])
    manifest = capture_manifest(include_tf=not no_tf)  # the TF child started in envlock.__main__, before the CLI
    if output is not None:
        save_model(output, manifest)  # a failed write is one line from envlock.store (a full disk: exit 3)
    if as_json:
        typer.echo(dumps_canonical(manifest.model_dump(mode="json")), nl=False)
    else:
        show(render_manifest(manifest))
        if output is not None:
            typer.echo(f"manifest written to {one_line(str(output))}")


