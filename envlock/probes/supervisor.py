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
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import BadInputError, EnvironmentProblem, TensorflowMissing

DEFAULT_PROBE_TIMEOUT = 120.0


@dataclass(frozen=True)
class ProbeInfo:
    """A probe as the child reported it (a user probe exists only there)."""

    name: str
    tags: tuple[str, ...]
    group: str
    dtype: str | None = None
    description: str | None = None
    needs_gpu: bool = False
    source: dict[str, Any] | None = None


def probe_infos(result: dict[str, Any], names: list[str] | None) -> list[ProbeInfo]:
    """The probes a child ran, in the order asked (the child's order for the whole suite)."""
    metadata: dict[str, Any] = result.get("probes") or {}
    order = list(dict.fromkeys(names)) if names else list(result.get("order") or metadata)
    infos = []
    for name in order:
        meta = metadata.get(name) or {}
        infos.append(ProbeInfo(name=name, tags=tuple(meta.get("tags") or ()), group=meta.get("group") or "canary",
                               dtype=meta.get("dtype"), description=meta.get("description"),
                               needs_gpu=bool(meta.get("needs_gpu")), source=meta.get("source")))
    return infos


def check_probe_names(names: list[str] | None, probe_modules: list[str]) -> None:
    """Unknown names fail in the parent, before TensorFlow is imported, when only built-ins can have them.

    With ``--probe-module`` (or an installed ``envlock.probes`` entry point) the names can only be
    checked where those modules are imported: the child, which reports unknown ones (exit 2 too).
    """
    if not names:
        return
    from envlock.probes.registry import all_probes, select_probes

    if probe_modules or (any(n not in all_probes() for n in names) and _has_entry_points()):
        return
    select_probes(names)


def _has_entry_points() -> bool:
    from envlock.probes.user import probe_entry_points

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
    setup: dict[str, Any] | None = None
    current: tuple[str, int] | None = None
    current_since: float = 0.0
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stopped: str | None = None

    def poll(self) -> str | None:
        self._read()
        if self.current is not None and time.monotonic() - self.current_since > self.probe_timeout:
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
        kind = event.get("event")
        if kind == "setup":
            self.setup = event
        elif kind == "start":
            self.current, self.current_since = (event["probe"], event["repeat"]), time.monotonic()
        elif kind == "run":
            self.runs.setdefault(event["probe"], []).append(event["run"])
            self.current = None


def _crash_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"crashed the probe process with {signal.Signals(-returncode).name}"
        except ValueError:
            return f"crashed the probe process with signal {-returncode}"
    return f"ended the probe process (exit {returncode})"


def _one_child(request: dict[str, Any], *, env: dict[str, str], runner: Any, timeout: float,
               probe_timeout: float) -> tuple[dict[str, Any], _Watch, Any]:
    with tempfile.TemporaryDirectory(prefix="envlock-probes-") as tmp:
        request_path, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        watch = _Watch(Path(tmp) / "progress.jsonl", probe_timeout)
        extra = {"onednn_verbose_dir": tmp} if request.get("onednn_verbose") else {}  # per-probe stdout files
        request_path.write_text(json.dumps({**request, "progress": str(watch.path), **extra}), encoding="utf-8")
        argv = [sys.executable, "-m", "envlock.probes.child", str(request_path), str(result_path)]
        proc = runner.run_watched(argv, timeout=timeout, env=env, watch=watch.poll)
        watch.poll()  # the lines written after the last poll
        result: dict[str, Any] = {}
        # The child writes its result atomically, but a child killed by the time limit or a full
        # disk may still leave none: that is a failed probe run, never a traceback.
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
            result = loaded if isinstance(loaded, dict) else {}
    return result, watch, proc


def run_probes(request: dict[str, Any], *, env: dict[str, str], runner: Any, timeout: float,
               probe_timeout: float | None = None) -> dict[str, Any]:
    """Run ``request`` (see ``envlock.probes.child``) in as many fresh children as failing probes need."""
    probe_timeout = DEFAULT_PROBE_TIMEOUT if probe_timeout is None else probe_timeout
    repeat = max(1, int(request.get("repeat", 1)))
    done: dict[str, list[dict[str, Any]]] = {}  # probes whose repeats are all settled, from children that died
    setup: dict[str, Any] | None = None
    suite_seconds, restarts = 0.0, 0
    while True:
        started = time.perf_counter()
        result, watch, proc = _one_child(request, env=env, runner=runner, timeout=timeout, probe_timeout=probe_timeout)
        if result.get("error") == "tensorflow_missing":
            raise TensorflowMissing(str(result.get("detail", "")))
        if result.get("error") == "bad_input":
            raise BadInputError(str(result.get("detail", "bad probe selection")))
        if result.get("ok"):
            if not restarts:
                return result
            # The first child's setup (its TF fingerprint, the whole suite's order and metadata), every run.
            return {**(setup or {}), "ok": True, "runs": {**done, **result.get("runs", {})},
                    "suite_seconds": suite_seconds + float(result.get("suite_seconds", 0.0)), "restarts": restarts}
        if watch.setup is None or watch.current is None:  # died before or between probes: not one probe's fault
            if proc is None:
                raise EnvironmentProblem(f"the probe process did not finish within {timeout:.0f} s or could not start")
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
        setup = setup or {key: value for key, value in watch.setup.items() if key != "event"}
        done.update({name: runs for name, runs in watch.runs.items() if len(runs) >= repeat})
        done[failed] = [{"status": "error", "reason": f"probe {reason}; the other probes ran in a fresh process",
                         "seconds": 0.0}]
        suite_seconds += time.perf_counter() - started
        restarts += 1
        remaining = [name for name in watch.setup.get("order", []) if name not in done]
        if not remaining:
            return {**setup, "ok": True, "runs": done, "suite_seconds": suite_seconds, "restarts": restarts}
        # The fresh child needs no TF fingerprint (the first one sent it) and knows the names now.
        request = {**request, "probes": remaining, "collect_tf_info": False}
