"""`envlock capture --golden`: run the probe suite and write a golden (thin: parse, call envlock.record, print)."""

from __future__ import annotations

from pathlib import Path

import typer

from envlock.cli.progress import progress_display
from envlock.errors import BadInputError, one_line
from envlock.golden import save_golden
from envlock.probes.registry import parse_probe_list
from envlock.probes.supervisor import check_probe_names
from envlock.record import capture_golden, portable_profile
from envlock.signing import load_signing_key, sign_golden
from envlock.store import check_outputs, dumps_canonical


def capture_golden_file(output: Path | None, probes: str | None, repeat: int, *, as_json: bool, no_tf: bool,
                        sign: Path | None = None, probe_modules: list[str] | None = None,
                        probe_timeout: float | None = None, portable: bool = False) -> None:
    """`capture --golden`: check the arguments before the probe child imports TensorFlow, record, sign, write."""
    if output is None:
        raise BadInputError("--golden needs -o FILE (where to write the golden)")
    if no_tf:
        raise BadInputError("--golden runs TensorFlow probes; it cannot be combined with --no-tf")
    # an unusable -o, or one that is an input, is refused before the probes run (one line, exit 2)
    check_outputs([output], inputs=[*([sign] if sign else []), *(probe_modules or [])])
    names = parse_probe_list(probes)
    # Unknown built-in names fail here, before the probe child imports TensorFlow; with --probe-module
    # the child checks them (exit 2 too).
    check_probe_names(names, probe_modules or [])
    if portable:
        portable_profile()  # a TensorFlow the profile was not measured on fails here, before the probes run
    if sign is not None:
        key = load_signing_key(sign)  # an unusable key fails before the probes run
    with progress_display(as_json=as_json) as progress:
        result = capture_golden(probe_names=names, repeat=repeat, probe_modules=probe_modules,
                                probe_timeout=probe_timeout, portable=portable, progress=progress)
    if sign is not None:
        result = sign_golden(result, key)
    save_golden(output, result)  # a failed write is one line from envlock.store (a full disk: exit 3)
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
