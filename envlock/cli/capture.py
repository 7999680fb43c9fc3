"""`envlock capture`, `envlock diff`, `envlock schema`: thin commands over envlock.capture/diff."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from envlock.cli.common import PROBE_MODULE_HELP, PROBE_TIMEOUT_HELP, app, show, strict_int, with_flag
from envlock.cli.progress import progress_display
from envlock.errors import DRIFT, OK, BadInputError, one_line
from envlock.limits import MAX_REPEAT


def _check_writable(output: Path, inputs: list[Path | str]) -> None:
    """Refuse an unusable -o, or one that is an input, before spending seconds capturing (one line, exit 2)."""
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.store import check_outputs

    check_outputs([output], inputs=inputs)


def _save(output: Path, model: object, save: Callable[[Path, object], None]) -> None:
    save(output, model)  # a failed write is one line from envlock.store (a full disk: exit 3)


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
        _capture_golden(output, probes, repeat, as_json=as_json, no_tf=no_tf, sign=sign,
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
    if output is not None:
        _check_writable(output, [])
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.capture import capture_manifest

    manifest = capture_manifest(include_tf=not no_tf)  # starts the TF child before anything heavy is imported
    # lazy: pydantic and the renderers load while the TF child imports TensorFlow
    from envlock.display import render_manifest
    from envlock.store import dumps_canonical, save_model

    if output is not None:
        _save(output, manifest, save_model)  # type: ignore[arg-type]
    if as_json:
        typer.echo(dumps_canonical(manifest.model_dump(mode="json")), nl=False)
    else:
        show(render_manifest(manifest))
        if output is not None:
            typer.echo(f"manifest written to {one_line(str(output))}")


def _capture_golden(output: Path | None, probes: str | None, repeat: int, *, as_json: bool, no_tf: bool,
                    sign: Path | None = None, probe_modules: list[str] | None = None,
                    probe_timeout: float | None = None, portable: bool = False) -> None:
    if output is None:
        raise BadInputError("--golden needs -o FILE (where to write the golden)")
    if no_tf:
        raise BadInputError("--golden runs TensorFlow probes; it cannot be combined with --no-tf")
    _check_writable(output, [*([sign] if sign else []), *(probe_modules or [])])
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.golden import save_golden
    from envlock.probes.registry import parse_probe_list
    from envlock.probes.supervisor import check_probe_names
    from envlock.record import capture_golden, portable_profile
    from envlock.store import dumps_canonical

    names = parse_probe_list(probes)
    # Unknown built-in names fail here, before the probe child imports TensorFlow; with --probe-module
    # the child checks them (exit 2 too).
    check_probe_names(names, probe_modules or [])
    if portable:
        portable_profile()  # a TensorFlow the profile was not measured on fails here, before the probes run
    if sign is not None:
        # lazy: a command imports its core only when it runs (CLI start-up time)
        from envlock.signing import load_signing_key, sign_golden

        key = load_signing_key(sign)  # an unusable key fails before the probes run
    with progress_display(as_json=as_json) as progress:
        result = capture_golden(probe_names=names, repeat=repeat, probe_modules=probe_modules,
                                probe_timeout=probe_timeout, portable=portable, progress=progress)
    if sign is not None:
        result = sign_golden(result, key)
    _save(output, result, save_golden)  # type: ignore[arg-type]
    if as_json:
        typer.echo(dumps_canonical(result.model_dump(mode="json")), nl=False)
    else:
        count = len(getattr(result, "probes", []) or [])
        # A probe that failed here is in the golden as skipped with its reason; say which, so a user
        # probe that raised is not discovered only at verify time.
        for record in result.probes:
            if record.status != "ok" and "GPU" not in (record.reason or ""):
                # name and reason come from the probe module: escaped (a newline could forge a line)
                typer.echo(f"  not recorded: {one_line(record.name)}: {record.status}: {one_line(record.reason or '')}")
        typer.echo(f"golden written to {one_line(str(output))}: {count} probes, manifest {result.manifest.digest}")


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(metavar="A", help="Manifest (or golden) file A.", show_default=False)],
    new: Annotated[Path, typer.Argument(metavar="B", help="Manifest (or golden) file B.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
) -> None:
    """Show every identity difference between two manifests, with severity and reason.

    Exit codes: 0 identical in identity; 1 different; 2 bad input file.
    """
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.diff import diff_manifests
    from envlock.display import render_differences
    from envlock.golden import load_any_manifest
    from envlock.models import compute_digest

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
    # lazy: a command imports its core only when it runs (CLI start-up time)
    from envlock.models import Manifest

    typer.echo(json.dumps(Manifest.model_json_schema(), indent=2, sort_keys=True))
