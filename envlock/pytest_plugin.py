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
installed, so importing this module must stay cheap: what a check does (envlock's models, numpy,
the comparison) is ``envlock.pytest_checks``, imported by ``_checks()`` when the first check runs,
the plugin's one lazy boundary.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from envlock.errors import BadInputError, EnvlockError
from envlock.vocab import DEFAULT_PROBE_GROUP

if TYPE_CHECKING:  # types only: the modules load with envlock.pytest_checks
    from types import ModuleType

    from envlock.golden import Golden, ProbeRecord
    from envlock.models import Manifest

GOLDEN_SUFFIX = ".golden.json"


def _checks() -> ModuleType:
    """envlock.pytest_checks, imported when a check first needs it."""
    # lazy: the plugin loads in every pytest session: no pydantic or numpy until a check runs
    from envlock import pytest_checks

    return pytest_checks


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
        try:
            _checks().parse_tolerance(tolerance_text)
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
            state.manifest = _checks().capture_this_machine(state.environ)
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
        outputs, ctx = _checks().traced_step(model, x, y, loss=loss, optimizer=optimizer)
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
        checks = _checks()
        probe_name = f"{probe_test_id(self._node.nodeid)}::{_check_name(name, self._names)}"
        record = checks.probe_record(probe_name, arrays, tags, group)
        if traced is not None:
            record = checks.with_trace(record, traced)
        try:
            golden = self._load()
            stored = golden.probe(probe_name) if golden is not None else None
            if self._state.record or golden is None or stored is None:
                self._record(record)
                return
            policy = checks.parse_tolerance(tolerance or self._state.tolerance_text)
            failure = checks.compare(self.golden_path, golden, stored, record, policy, self._this_machine)
        except EnvlockError as exc:
            pytest.fail(f"envlock: error: {exc}", pytrace=False)
        if failure:
            pytest.fail(failure, pytrace=False)

    def _load(self) -> Golden | None:
        goldens = self._state.goldens
        if self.golden_path not in goldens:
            goldens[self.golden_path] = _checks().load_golden_or_none(self.golden_path)
        return goldens[self.golden_path]

    def _record(self, record: ProbeRecord) -> None:
        """Add ``record`` to the golden as it is on disk now: read, merged and written under the golden's
        lock, so checks recorded at once by other processes (pytest-xdist, parallel jobs) are all kept."""
        updated = _checks().record_into(self.golden_path, record, self._this_machine(), replace=self._state.record)
        if isinstance(updated, str):
            pytest.fail(updated, pytrace=False)
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
