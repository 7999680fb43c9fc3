"""The parent side of the probe child: start it, watch each probe, survive a probe that hangs or crashes.

The child (``envlock.probes.child``) appends a line to a progress file as each probe run starts
and ends. A probe that runs past ``probe_timeout`` gets its child killed; a probe that kills its
child (a SIGSEGV in a TF kernel) ends it. Either way the parent records that probe as ``error``
with the reason, keeps every probe that finished all its repeats, and runs the rest in a fresh
child: one probe's failure never costs the others. The parent never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import site
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from envlock.errors import BadInputError, EnvironmentProblem, TensorflowMissing
from envlock.probes.registry import all_probes, select_probes
from envlock.probes.user import probe_entry_points
from envlock.protocol import ChildRequest, ProgressEvent
from envlock.results import ChildResult, ProbeInfo, ProbeRun, parse_child_result, parse_run
from envlock.runner import (
    ChildLimits,
    CommandResult,
    Runner,
    default_child_limits,
    make_private_dir,
    remove_stale_private_dirs,
    remove_stale_task_groups,
    signal_name,
)
from envlock.vocab import DEFAULT_PROBE_GROUP

if TYPE_CHECKING:
    from envlock.models import LockdownSettings

DEFAULT_PROBE_TIMEOUT = 120.0
CHILD_TIMEOUT_SECONDS = 900.0
PRIVATE_DIR_PREFIX = "envlock-probes-"


def probe_infos(result: ChildResult, names: list[str] | None) -> list[ProbeInfo]:
    """The probes a child ran, in the order asked (the child's order for the whole suite). A probe
    asked for that the child never reported (it died first) has the default group and no tags."""
    order = list(dict.fromkeys(names)) if names else list(result.order or result.probes)
    return [result.probes.get(name) or ProbeInfo(name=name, tags=(), group=DEFAULT_PROBE_GROUP) for name in order]


def check_probe_names(names: list[str] | None, probe_modules: list[str]) -> None:
    """Unknown names fail in the parent, before TensorFlow is imported, when only built-ins can have them.

    With ``--probe-module`` (or an installed ``envlock.probes`` entry point) the names can only be
    checked where those modules are imported: the child, which reports unknown ones (exit 2 too).
    """
    if not names:
        return
    if probe_modules or (any(n not in all_probes() for n in names) and _has_entry_points()):
        return
    select_probes(names)


def _has_entry_points() -> bool:
    try:
        return bool(probe_entry_points())
    except Exception:  # broken metadata: the child reports it when it loads them
        return True


@dataclass
class _Watch:
    """Follows the progress file while the child runs; says when the current probe is past its time."""

    path: Path
    probe_timeout: float
    offset: int = 0
    setup: ChildResult | None = None  # the setup line (protocol.ChildSetup's keys), parsed
    current: tuple[str, int] | None = None
    current_since: float = 0.0
    importing: str | None = None  # the probe module being imported, which counts against the probe timeout
    runs: dict[str, list[ProbeRun]] = field(default_factory=dict)
    stopped: str | None = None
    on_event: Callable[[ProgressEvent], None] | None = None  # each line, for a progress display

    def poll(self) -> str | None:
        self._read()
        if (self.current is not None or self.importing is not None) and \
                time.monotonic() - self.current_since > self.probe_timeout:
            self.stopped = f"timed out after {self.probe_timeout:g} s (--probe-timeout)"
        return self.stopped

    def _read(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        for line in data[: end + 1].splitlines():
            with contextlib.suppress(ValueError):
                self._event(json.loads(line))

    def _event(self, event: dict[str, Any]) -> None:
        """One progress line (``envlock.protocol.ProgressEvent``; setup carries ChildSetup's keys)."""
        kind = event.get("event")
        if kind == "import":
            self.importing, self.current_since = str(event.get("module")), time.monotonic()
        elif kind == "imported":
            self.importing = None
        elif kind == "setup":
            self.setup = parse_child_result({key: value for key, value in event.items() if key != "event"})
        elif kind == "start":
            self.current, self.current_since = (event["probe"], event["repeat"]), time.monotonic()
        elif kind == "run":
            self.runs.setdefault(event["probe"], []).append(parse_run(event["run"]))
            self.current = None
        if self.on_event is not None:
            self.on_event(cast(ProgressEvent, event))


def _crash_reason(returncode: int) -> str:
    if returncode < 0:
        return f"crashed the probe process with {signal_name(-returncode)}"
    return f"ended the probe process (exit {returncode})"


def _private_environment(env: dict[str, str], private: Path, cwd: Path) -> dict[str, str]:
    """The child's environment: HOME and TMPDIR inside its private directory (libraries write
    caches and config there: Keras's ~/.keras, XLA's and oneDNN's temp files), with the user's own
    imports as before: relative PYTHONPATH entries and the working directory (``python -m`` puts it
    first on sys.path) made absolute, and the user site-packages kept where HOME found them."""
    given = env.get("PYTHONPATH")
    entries = [str(cwd)] + ([os.path.join(cwd, entry) for entry in given.split(os.pathsep)] if given else [])
    sandboxed = {**env, "HOME": str(private / "home"), "TMPDIR": str(private / "tmp"),
                 "PYTHONPATH": os.pathsep.join(dict.fromkeys(entries))}
    if "PYTHONUSERBASE" not in env and site.ENABLE_USER_SITE:
        sandboxed["PYTHONUSERBASE"] = site.getuserbase()
    return sandboxed


def _child_limits() -> ChildLimits:
    try:
        return default_child_limits(os.environ)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None


def _one_child(request: ChildRequest, *, env: dict[str, str], runner: Runner, timeout: float,
               probe_timeout: float, on_event: Callable[[ProgressEvent], None] | None = None,
               ) -> tuple[ChildResult, _Watch, CommandResult | None]:
    limits = _child_limits()
    remove_stale_private_dirs(PRIVATE_DIR_PREFIX)  # what SIGKILLed runs left behind
    remove_stale_task_groups()
    tmp = make_private_dir(PRIVATE_DIR_PREFIX)
    try:
        for part in ("home", "tmp", "work"):
            (tmp / part).mkdir()
        request_path, result_path = tmp / "request.json", tmp / "result.json"
        watch = _Watch(tmp / "progress.jsonl", probe_timeout, on_event=on_event)
        cwd = Path.cwd()
        sent: ChildRequest = {**request, "progress": str(watch.path), "cwd": str(cwd)}
        if request.get("onednn_verbose"):
            sent["onednn_verbose_dir"] = str(tmp)  # per-probe stdout files
        request_path.write_text(json.dumps(sent), encoding="utf-8")
        argv = [sys.executable, "-m", "envlock.probes.child", str(request_path), str(result_path)]
        proc = runner.run_watched(argv, timeout=timeout, env=_private_environment(env, tmp, cwd), watch=watch.poll,
                                  cwd=tmp / "work", limits=limits)
        watch.poll()  # the lines written after the last poll
        loaded: object = {}
        # The child writes its result atomically, but a child killed by the time limit or a full
        # disk may still leave none: that is a failed probe run, never a traceback.
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
        result = parse_child_result(loaded if isinstance(loaded, dict) else {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result, watch, proc


def run_probes(request: ChildRequest, *, env: dict[str, str], runner: Runner, timeout: float,
               probe_timeout: float | None = None, on_event: Callable[[ProgressEvent], None] | None = None,
               ) -> ChildResult:
    """Run ``request`` (see ``envlock.probes.child``) in as many fresh children as failing probes need."""
    probe_timeout = DEFAULT_PROBE_TIMEOUT if probe_timeout is None else probe_timeout
    repeat = max(1, int(request.get("repeat", 1)))
    done: dict[str, tuple[ProbeRun, ...]] = {}  # probes whose repeats are all settled, from children that died
    setup: ChildResult | None = None
    suite_seconds, restarts = 0.0, 0
    while True:
        started = time.perf_counter()
        result, watch, proc = _one_child(request, env=env, runner=runner, timeout=timeout, probe_timeout=probe_timeout,
                                         on_event=on_event)
        if result.error == "tensorflow_missing":
            raise TensorflowMissing("" if result.detail is None else result.detail)
        if result.error == "bad_input":
            raise BadInputError("bad probe selection" if result.detail is None else result.detail)
        if result.ok:
            if not restarts:
                return result
            # The first child's setup (its TF fingerprint, the whole suite's order and metadata), every run.
            return replace(setup or result, ok=True, runs={**done, **result.runs},
                           suite_seconds=suite_seconds + result.suite_seconds, restarts=restarts)
        if watch.importing is not None and watch.stopped:  # a probe module that never finished importing
            raise BadInputError(f"probe module {watch.importing!r} did not finish importing: {watch.stopped}")
        if watch.setup is None or watch.current is None:  # died before or between probes: not one probe's fault
            if proc is None:
                raise EnvironmentProblem(f"the probe process did not finish within {timeout:.0f} s")
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            last = lines[-1].strip() if lines else "no error output"
            raise EnvironmentProblem(f"the probe process failed (exit {proc.returncode}): {last}")
        # One probe hung or crashed: record it, keep the finished ones, run the rest in a fresh child.
        failed, _ = watch.current
        if watch.stopped:
            reason = watch.stopped
        elif proc is None:
            reason = f"did not finish within the probe process's time limit ({timeout:.0f} s)"
        else:
            reason = _crash_reason(proc.returncode)
        setup = setup or watch.setup
        done.update({name: tuple(runs) for name, runs in watch.runs.items() if len(runs) >= repeat})
        done[failed] = (ProbeRun(status="error", reason=f"probe {reason}; the other probes ran in a fresh process",
                                 seconds=0.0),)
        suite_seconds += time.perf_counter() - started
        restarts += 1
        remaining = [name for name in watch.setup.order if name not in done]
        if not remaining:
            return replace(setup, ok=True, runs=done, suite_seconds=suite_seconds, restarts=restarts)
        # The fresh child needs no TF fingerprint (the first one sent it) and knows the names now.
        request = {**request, "probes": remaining, "collect_tf_info": False}


def run_child(*, probe_names: list[str] | None, repeat: int, settings: LockdownSettings, env: dict[str, str],
              runner: Runner | None = None, timeout: float = CHILD_TIMEOUT_SECONDS,
              probe_modules: list[str] | None = None, probe_timeout: float | None = None,
              unknown: Literal["error", "skip"] = "error", affinity: list[int] | None = None,
              onednn_verbose: bool = False, trace: bool = False,
              on_event: Callable[[ProgressEvent], None] | None = None,
              module_probes: bool = False, collect_tf_info: bool = True) -> ChildResult:
    """Parent side: run the probes in a fresh process with ``env``; return the result, parsed (``envlock.results``).

    ``probe_names`` None: every probe the child knows (built-ins, ``probe_modules``, entry points).
    ``unknown``: "error" (a name nobody registers is bad input, exit 2) or "skip" (listed in the
    result's ``unknown``). A probe that hangs past ``probe_timeout`` or crashes the child is an
    ``error`` run of that probe (``run_probes``). ``affinity``: the CPUs the child pins
    itself to before importing anything numeric (TF and OpenBLAS size their thread pools from it).
    ``trace``: record the intermediates of the Keras models probes hand to ``ctx.train_step``/``forward``
    (a golden being recorded, explain localising; verify compares outputs only and pays nothing).
    ``onednn_verbose``: record per probe the oneDNN primitive implementations it executed
    (``ONEDNN_VERBOSE=1`` for the child only). ``on_event``: called with each line of the child's
    progress file, in the thread that runs the child (a progress display). ``module_probes``: with
    ``probe_names``, also every probe the ``probe_modules`` register. ``collect_tf_info``: fingerprint
    TF in the child (False when the caller needs no manifest). Raises ``TensorflowMissing``
    when the child cannot import TF and ``EnvironmentProblem`` when it dies outside any probe (exit 3).
    """
    request: ChildRequest = {
        "probes": probe_names, "repeat": repeat, "seed": settings.seed, "op_determinism": settings.op_determinism,
        "intra_op_threads": settings.intra_op_threads, "inter_op_threads": settings.inter_op_threads,
        "collect_tf_info": collect_tf_info, "probe_modules": list(probe_modules or []), "unknown": unknown,
    }
    if module_probes:
        request["module_probes"] = True
    if affinity is not None:
        request["affinity"] = sorted(affinity)
    if trace:
        request["trace"] = True
    if onednn_verbose:
        env = {**env, "ONEDNN_VERBOSE": "1"}  # the child's only: verbose output changes no numerics
        request["onednn_verbose"] = True
    return run_probes(request, env=env, runner=runner or Runner(), timeout=timeout, probe_timeout=probe_timeout,
                      on_event=on_event)
