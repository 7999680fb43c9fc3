"""envlock's pytest plugin: pin the arrays a test computes, compare them bitwise or by ULPs, and
say which difference between this machine and the recording one could explain a change.

    def test_training(envlock_regression):
        model = train(seed=42)
        envlock_regression.check("weights", {"kernel": kernel, "bias": bias}, tags=["training"])

The first run records (so does ``--envlock-record``); later runs compare with the same comparison
as ``envlock verify`` (``--envlock-tolerance bitwise|ulp:N``). A failure lists the manifest
differences between this machine and the one the values were recorded on, ranked by verify's
attribution rules for the check's tags (all tags by default).

The recorded file is a golden, one per test module, beside it: ``test_model.py`` ->
``test_model.golden.json``, with one probe per check named ``<test>::<name>`` (the test's id
inside its module, e.g. ``TestFit::test_step[adam]::weights``), ``recorded_by: "pytest"``, and the
recording machine's manifest captured without TensorFlow. Checks recorded at once by several processes
(pytest-xdist, parallel jobs) are merged into it under a lock (``.test_model.golden.json.lock``, beside
it). ``envlock diff`` reads it like any golden; ``envlock verify`` compares its manifest with this
machine but reports its probes as recorded by the pytest plugin: it cannot re-run a test.

The plugin never imports TensorFlow. It is loaded in every pytest session where envlock is
installed, so importing this module must stay cheap: envlock's models, numpy and the comparison
are imported inside the functions that need them, when a check runs.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from envlock.errors import BadInputError, EnvlockError, one_line
from envlock.protocol import IntermediateSummary, OutputSummary
from envlock.results import ProbeRun, parse_intermediate, parse_output
from envlock.tags import DEFAULT_TAGS, PROBE_TAGS
from envlock.version import __version__
from envlock.vocab import DEFAULT_PROBE_GROUP, check_probe_group

if TYPE_CHECKING:
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.golden import Golden, ProbeRecord
    from envlock.models import Manifest
    from envlock.probes.compare import Tolerance

GOLDEN_SUFFIX = ".golden.json"
SINGLE_ARRAY_NAME = "array"  # the output name when check() is given one array instead of a dict
MAX_CAUSES_SHOWN = 5


@dataclass
class _SessionState:
    """What one pytest session shares between checks: options, loaded goldens, this machine."""

    record: bool
    tolerance_text: str
    environ: dict[str, str]  # snapshotted at configure time, before tests change os.environ
    goldens: dict[Path, Golden | None] = field(default_factory=dict)
    manifest: Manifest | None = None
    recorded: list[str] = field(default_factory=list)


_STATE = pytest.StashKey[_SessionState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("envlock", "envlock: pin arrays in goldens and explain their drift")
    group.addoption("--envlock-record", action="store_true", default=False,
                    help="record every envlock_regression check that runs, replacing its stored values")
    group.addoption("--envlock-tolerance", default=None, metavar="bitwise|ulp:N",
                    help="how envlock_regression compares: bitwise (default) or within N ULPs of the value or of "
                         "the output's scale, as `envlock verify --tolerance`")


def pytest_configure(config: pytest.Config) -> None:
    tolerance_text = config.getoption("envlock_tolerance") or "bitwise"
    if tolerance_text != "bitwise":
        # lazy: the plugin loads in every pytest session: no numpy until a check runs
        from envlock.probes.compare import Tolerance

        try:
            Tolerance.parse(tolerance_text)
        except BadInputError as exc:
            raise pytest.UsageError(str(exc).replace("--tolerance", "--envlock-tolerance")) from None
    config.stash[_STATE] = _SessionState(record=bool(config.getoption("envlock_record")),
                                         tolerance_text=tolerance_text, environ=dict(os.environ))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.recorded:
        terminalreporter.write_sep("-", "envlock")
        for line in state.recorded:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def envlock_this_machine(pytestconfig: pytest.Config) -> Callable[[], Manifest]:
    """How the plugin captures this machine (once per session, only when a check needs it).

    Override it in a conftest.py to supply another manifest (envlock's own tests use recorded ones).
    """
    state = pytestconfig.stash[_STATE]

    def capture() -> Manifest:
        if state.manifest is None:
            # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
            from envlock.capture import capture_manifest

            state.manifest = capture_manifest(include_tf=False, environ=state.environ)
        return state.manifest

    return capture


@pytest.fixture
def envlock_regression(request: pytest.FixtureRequest,
                       envlock_this_machine: Callable[[], Manifest]) -> EnvlockRegression:
    """Pin arrays in the test module's golden: ``envlock_regression.check(name, arrays)``."""
    return EnvlockRegression(request.node, request.config.stash[_STATE], envlock_this_machine)


class EnvlockRegression:
    """The fixture's object: one per test."""

    def __init__(self, node: pytest.Item, state: _SessionState, this_machine: Callable[[], Manifest]) -> None:
        self._node = node
        self._state = state
        self._this_machine = this_machine
        self._names: set[str] = set()
        self.golden_path = golden_path_for(Path(str(node.path)))

    def check_model(self, name: str, model: Any, x: Any, y: Any = None, *, loss: Any = None, optimizer: Any = None,
                    tags: list[str] | None = None, group: str = DEFAULT_PROBE_GROUP,
                    tolerance: str | None = None) -> None:
        """Record or compare one traced step of a Keras ``model``: a training step on (x, y) with
        ``loss`` and ``optimizer`` (the model's compiled ones when not given), or one inference call
        when ``y`` is None. Every layer's output, the loss, each gradient and each updated variable are
        recorded (envlock.probes.keras_trace); on failure the message names the first layer that differs.
        A training step updates the model's weights, as a step of ``fit`` would."""
        # lazy: TensorFlow is the user's, loaded by their test; the plugin must not import it first
        import numpy as np
        import tensorflow as tf

        from envlock.probes.registry import ProbeContext

        ctx = ProbeContext(tf=tf, np=np, seed=0)
        if y is None:
            outputs = ctx.forward(model, x)
        else:
            loss = loss if loss is not None else tf.keras.losses.get(getattr(model, "loss", None))
            optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
            if loss is None or optimizer is None:
                raise ValueError("envlock_regression.check_model: a training step needs loss= and optimizer= "
                                 "(or a compiled model)")
            outputs = ctx.train_step(model, x, y, loss=loss, optimizer=optimizer)
        self._check(name, outputs, tags=tags, group=group, tolerance=tolerance, traced=ctx)

    def check(self, name: str, arrays: Mapping[str, Any] | Any, *, tags: list[str] | None = None,
              group: str = DEFAULT_PROBE_GROUP, tolerance: str | None = None) -> None:
        """Record ``arrays`` (name -> array, or one array) the first time; compare them afterwards.

        ``tags``: the components the arrays depend on (envlock's probe tags; all by default), used
        to rank the manifest differences on failure. ``group``: "canary" (moves with hardware,
        threads, oneDNN, XLA) or "stable" (moves only with versions or seeds). ``tolerance``:
        "bitwise" or "ulp:N" for this check, instead of ``--envlock-tolerance``.
        """
        self._check(name, arrays, tags=tags, group=group, tolerance=tolerance, traced=None)

    def _check(self, name: str, arrays: Mapping[str, Any] | Any, *, tags: list[str] | None, group: str,
               tolerance: str | None, traced: Any) -> None:
        probe_name = f"{probe_test_id(self._node.nodeid)}::{_check_name(name, self._names)}"
        record = _probe_record(probe_name, arrays, tags, group)
        if traced is not None:
            record = _with_trace(record, traced)
        try:
            golden = self._load()
            stored = golden.probe(probe_name) if golden is not None else None
            if self._state.record or golden is None or stored is None:
                self._record(record)
                return
            failure = _compare(self.golden_path, golden, stored, record,
                               _parse_tolerance(tolerance or self._state.tolerance_text), self._this_machine)
        except EnvlockError as exc:
            pytest.fail(f"envlock: error: {exc}", pytrace=False)
        if failure:
            pytest.fail(failure, pytrace=False)

    def _load(self) -> Golden | None:
        goldens = self._state.goldens
        if self.golden_path not in goldens:
            # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
            from envlock.golden import load_golden

            goldens[self.golden_path] = load_golden(self.golden_path) if self.golden_path.exists() else None
        return goldens[self.golden_path]

    def _record(self, record: ProbeRecord) -> None:
        """Add ``record`` to the golden as it is on disk now: read, merged and written under the golden's
        lock, so checks recorded at once by other processes (pytest-xdist, parallel jobs) are all kept."""
        # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
        from envlock.golden import load_golden, save_golden
        from envlock.store import exclusive_lock

        manifest = self._this_machine()
        with exclusive_lock(self.golden_path):
            golden = load_golden(self.golden_path) if self.golden_path.exists() else None
            if golden is not None and not self._state.record and golden.manifest.digest != manifest.digest:
                pytest.fail(f"envlock: {record.name} is not in {self.golden_path}, which was recorded on another "
                            "machine or environment (its manifest differs from this one): adding this machine's "
                            "values would mix two machines in one golden; re-record the module with "
                            "--envlock-record", pytrace=False)
            updated = _with_record(golden, record, manifest)
            save_golden(self.golden_path, updated)
        self._state.goldens[self.golden_path] = updated
        self._state.recorded.append(f"recorded {record.name} in {self.golden_path}")


# ---------------------------------------------------------------- naming and recording


def golden_path_for(module_path: Path) -> Path:
    """The golden of a test module: ``tests/test_model.py`` -> ``tests/test_model.golden.json``."""
    return module_path.with_name(module_path.stem + GOLDEN_SUFFIX)


def probe_test_id(nodeid: str) -> str:
    """``tests/test_m.py::TestA::test_b[x]`` -> ``TestA::test_b[x]``: stable whatever the rootdir."""
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


def _check_name(name: str, used: set[str]) -> str:
    if not isinstance(name, str) or not name or not name.isprintable():
        raise ValueError(f"envlock_regression.check: name must be a non-empty printable string, not {name!r}")
    if name in used:
        raise ValueError(f"envlock_regression.check: name {name!r} is used twice in this test")
    used.add(name)
    return name


def _probe_record(probe_name: str, arrays: Mapping[str, Any] | Any, tags: list[str] | None,
                  group: str) -> ProbeRecord:
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    import numpy as np

    from envlock.golden import OutputRecord, ProbeRecord
    from envlock.probes.compare import summarize_array

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


def _with_trace(record: ProbeRecord, ctx: Any) -> ProbeRecord:
    """``record`` with the intermediates a traced Keras step left in ``ctx`` (a ProbeContext)."""
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.golden import IntermediateRecord
    from envlock.probes.compare import summarize_array

    intermediates = [IntermediateRecord.model_validate({**summarize_array(n, v), "op": op})
                     for n, v, op in ctx.intermediates]
    return record.model_copy(update={"intermediates": intermediates, "trace_note": ctx.trace_note})


def _with_record(golden: Golden | None, record: ProbeRecord, manifest: Manifest) -> Golden:
    """The golden with ``record`` added or replaced (probes sorted by name), on this machine's manifest."""

    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.golden import Golden
    from envlock.models import LockdownSettings

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


def _parse_tolerance(text: str) -> Tolerance:
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.probes.compare import Tolerance

    return Tolerance.parse(text)


# ---------------------------------------------------------------- comparing and explaining


def _compare(path: Path, golden: Golden, stored: ProbeRecord, current: ProbeRecord, tolerance: Tolerance,
             this_machine: Callable[[], Manifest]) -> str | None:
    """None when ``current`` reproduces ``stored``; otherwise the failure message."""
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.verdict import judge_probe

    outputs = tuple(parse_output(cast(OutputSummary, o.model_dump())) for o in current.outputs)
    verdict = judge_probe(stored, [ProbeRun(status="ok", outputs=outputs)], tolerance)
    if verdict.status in ("identical", "within_tolerance"):
        return None
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.diff import diff_manifests
    from envlock.probes.attribution import explain

    lines = [f"envlock: {current.name} does not reproduce its golden ({tolerance.label}): {verdict.reason}",
             f"  golden {path} (recorded {golden.created_at})", ""]
    lines += _output_table(stored, current, tolerance)
    if stored.intermediates or stored.trace_note:  # a traced model (check_model): where it starts to differ
        # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
        from envlock.explain.localise import localise

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


def _output_table(stored: ProbeRecord, current: ProbeRecord, tolerance: Tolerance) -> list[str]:
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock.probes.compare import compare_output

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
