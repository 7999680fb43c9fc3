"""What the pytest plugin (``envlock.pytest_plugin``) does when a check runs: make the probe record
of a test's arrays, load and write the module's golden, compare, and explain a failure.

The plugin loads in every pytest session where envlock is installed, so it imports this module
(pydantic, numpy, the comparison, the attribution) only when the first check runs: the one lazy
boundary of the plugin. Here everything imports at module level. TensorFlow is never imported: a
traced Keras step (``check_model``) uses the test's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from envlock.capture import capture_manifest
from envlock.diff import diff_manifests
from envlock.errors import one_line
from envlock.explain.localise import localise
from envlock.golden import Golden, IntermediateRecord, OutputRecord, ProbeRecord, load_golden, save_golden
from envlock.models import LockdownSettings, Manifest
from envlock.probes.attribution import explain
from envlock.probes.compare import Tolerance, compare_output, summarize_array
from envlock.probes.registry import ProbeContext
from envlock.protocol import IntermediateSummary, OutputSummary
from envlock.results import ProbeRun, parse_intermediate, parse_output
from envlock.store import exclusive_lock
from envlock.tags import DEFAULT_TAGS, PROBE_TAGS
from envlock.verdict import judge_probe
from envlock.version import __version__
from envlock.vocab import check_probe_group

SINGLE_ARRAY_NAME = "array"  # the output name when check() is given one array instead of a dict
MAX_CAUSES_SHOWN = 5


def capture_this_machine(environ: dict[str, str]) -> Manifest:
    """This machine's manifest, without TensorFlow (what a pytest golden records)."""
    return capture_manifest(include_tf=False, environ=environ)


def load_golden_or_none(path: Path) -> Golden | None:
    return load_golden(path) if path.exists() else None


def record_into(path: Path, record: ProbeRecord, manifest: Manifest, *, replace: bool) -> Golden | str:
    """Add ``record`` to the golden at ``path`` as it is on disk now: read, merged and written under the
    golden's lock, so checks recorded at once by other processes (pytest-xdist, parallel jobs) are all
    kept. Returns the golden written, or why it must not be (``replace`` false and the golden on
    disk was recorded on another machine)."""
    with exclusive_lock(path):
        golden = load_golden_or_none(path)
        if golden is not None and not replace and golden.manifest.digest != manifest.digest:
            return (f"envlock: {record.name} is not in {path}, which was recorded on another machine or "
                    "environment (its manifest differs from this one): adding this machine's values would mix "
                    "two machines in one golden; re-record the module with --envlock-record")
        updated = with_record(golden, record, manifest)
        save_golden(path, updated)
    return updated


def traced_step(model: Any, x: Any, y: Any, *, loss: Any, optimizer: Any) -> tuple[dict[str, Any], ProbeContext]:
    """One traced call of a Keras ``model`` with the test's TensorFlow: a training step on (x, y), or
    inference when ``y`` is None; the outputs and the context holding the trace."""
    import tensorflow as tf  # lazy: TensorFlow is the user's, loaded by their test; never imported first

    ctx = ProbeContext(tf=tf, np=np, seed=0)
    if y is None:
        return ctx.forward(model, x), ctx
    loss = loss if loss is not None else tf.keras.losses.get(getattr(model, "loss", None))
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if loss is None or optimizer is None:
        raise ValueError("envlock_regression.check_model: a training step needs loss= and optimizer= "
                         "(or a compiled model)")
    return ctx.train_step(model, x, y, loss=loss, optimizer=optimizer), ctx


def probe_record(probe_name: str, arrays: Mapping[str, Any] | Any, tags: list[str] | None,
                 group: str) -> ProbeRecord:
    """The probe record of a check's arrays (name -> array, or one array), validated."""
    chosen = sorted(set(DEFAULT_TAGS if tags is None else tags))
    unknown = sorted(set(chosen) - set(PROBE_TAGS))
    if unknown:
        raise ValueError(f"envlock_regression.check: unknown tags {unknown} (known: {', '.join(PROBE_TAGS)})")
    check_probe_group(group, "envlock_regression.check")
    named = dict(arrays) if isinstance(arrays, Mapping) else {SINGLE_ARRAY_NAME: arrays}
    if not named:
        raise ValueError("envlock_regression.check: no arrays given")
    outputs = []
    for key in sorted(named):
        value = np.asarray(named[key])
        if not isinstance(key, str) or value.dtype.kind not in "biuf":
            raise TypeError(f"envlock_regression.check: {key!r} must be a str naming a numeric array, "
                            f"got dtype {value.dtype}")
        outputs.append(OutputRecord.model_validate(summarize_array(key, value)))
    return ProbeRecord(name=probe_name, tags=chosen, group=group, status="ok", outputs=outputs)  # type: ignore[arg-type]


def with_trace(record: ProbeRecord, ctx: Any) -> ProbeRecord:
    """``record`` with the intermediates a traced Keras step left in ``ctx`` (a ProbeContext)."""
    intermediates = [IntermediateRecord.model_validate({**summarize_array(n, v), "op": op})
                     for n, v, op in ctx.intermediates]
    return record.model_copy(update={"intermediates": intermediates, "trace_note": ctx.trace_note})


def with_record(golden: Golden | None, record: ProbeRecord, manifest: Manifest) -> Golden:
    """The golden with ``record`` added or replaced (probes sorted by name), on this machine's manifest."""
    probes = {p.name: p for p in (golden.probes if golden is not None else [])}
    probes[record.name] = record
    # The plugin applies no lockdown: it records the determinism environment the tests ran under,
    # and unknown thread counts; seed and op determinism are whatever the tests themselves set.
    return Golden(
        envlock_version=__version__,
        created_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        manifest=manifest,
        lockdown=LockdownSettings(environment=dict(manifest.environment)),
        repeat=1,
        probes=[probes[name] for name in sorted(probes)],
        recorded_by="pytest",
    )


def parse_tolerance(text: str) -> Tolerance:
    return Tolerance.parse(text)


# ---------------------------------------------------------------- comparing and explaining


def compare(path: Path, golden: Golden, stored: ProbeRecord, current: ProbeRecord, tolerance: Tolerance,
            this_machine: Callable[[], Manifest]) -> str | None:
    """None when ``current`` reproduces ``stored``; otherwise the failure message."""
    outputs = tuple(parse_output(cast(OutputSummary, o.model_dump())) for o in current.outputs)
    verdict = judge_probe(stored, [ProbeRun(status="ok", outputs=outputs)], tolerance)
    if verdict.status in ("identical", "within_tolerance"):
        return None
    lines = [f"envlock: {current.name} does not reproduce its golden ({tolerance.label}): {verdict.reason}",
             f"  golden {path} (recorded {golden.created_at})", ""]
    lines += output_table(stored, current, tolerance)
    if stored.intermediates or stored.trace_note:  # a traced model (check_model): where it starts to differ
        run = ProbeRun(status="ok", outputs=outputs,
                       intermediates=tuple(parse_intermediate(cast(IntermediateSummary, i.model_dump()))
                                           for i in current.intermediates or []))
        lines += ["", f"inside the model: {one_line(localise(stored, run).summary)}"]
    differences = diff_manifests(golden.manifest, this_machine())
    tags = current.tags
    shown = "all" if len(tags) == len(_all_tags()) else ", ".join(tags)
    causes = [c for c in explain(set(tags), differences, drifted_groups={current.group}) if c.path]
    lines += ["", f"manifest differences that could explain it (tags: {shown}; group: {current.group}), "
                  "most likely first:"]
    if causes:
        lines += [f"  {rank}. {cause.reason}" for rank, cause in enumerate(causes[:MAX_CAUSES_SHOWN], 1)]
        if len(causes) > MAX_CAUSES_SHOWN:
            lines.append(f"  ... and {len(causes) - MAX_CAUSES_SHOWN} more: `envlock capture --no-tf -o here.json "
                         f"&& envlock diff {path} here.json` lists every difference")
    else:
        lines.append(f"  none: this machine's manifest matches the recording one in everything these tags depend on "
                     f"({len(differences)} other differences); suspect the code under test, its data or seeds, "
                     "or something envlock does not record (an environment variable, a library, the hardware)")
    lines += ["", "if the new values are right, re-record them with --envlock-record"]
    return "\n".join(lines)


def _all_tags() -> tuple[str, ...]:
    return DEFAULT_TAGS


def output_table(stored: ProbeRecord, current: ProbeRecord, tolerance: Tolerance) -> list[str]:
    golden = {o.name: o.model_dump() for o in stored.outputs}
    here = {o.name: o.model_dump() for o in current.outputs}
    header = f"  {'output':24} {'status':17} {'max ULP':>10} {'max rel err':>12} {'differing':>10}"
    lines = [header, "  " + "-" * (len(header) - 2)]
    for name in sorted(set(golden) | set(here)):
        if name not in here or name not in golden:
            lines.append(f"  {name:24} {'missing here' if name not in here else 'not in the golden'}")
            continue
        result = compare_output(golden[name], here[name], tolerance)
        if result.identical:
            lines.append(f"  {name:24} identical")
            continue
        status = "within_tolerance" if result.within_tolerance else "drift"
        ulp = "-" if result.max_ulp is None else f"{result.max_ulp:.0f}"
        rel = "-" if result.max_rel_error is None else f"{result.max_rel_error:.2e}"
        differing = "-" if result.mismatched is None else f"{result.mismatched}/{result.compared}"
        line = f"  {name:24} {status:17} {ulp:>10} {rel:>12} {differing:>10}"
        lines.append(line + (f"  ({result.note})" if result.note else ""))
    return lines


__all__ = ["MAX_CAUSES_SHOWN", "SINGLE_ARRAY_NAME", "capture_this_machine", "compare", "load_golden_or_none",
           "parse_tolerance", "probe_record", "record_into", "traced_step", "with_record", "with_trace"]
