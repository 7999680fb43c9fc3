"""The child process that runs probes: ``python -m envlock.probes.child REQUEST.json RESULT.json``.

The parent (``envlock verify`` / ``capture --golden``) never imports TensorFlow: environment
variables such as TF_ENABLE_ONEDNN_OPTS are read when TF is imported, so the only faithful way
to run under a given environment is a fresh process started with it. This process imports TF
once, applies the lockdown controls, collects TensorflowInfo, runs the probes ``repeat`` times
and writes a JSON result file (TF logs go to stderr, which the parent keeps for errors only).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# Only standard-library modules here: numpy and TensorFlow size their thread pools when they are
# imported, so they load inside run_request, after the CPU affinity is set; pydantic never loads
# before TensorFlow (its import is the child's critical path).
from envlock.errors import ProbeModuleError
from envlock.probes.onednn_verbose import detected_isa, executed_primitives
from envlock.probes.registry import ProbeContext, ProbeSkipped, all_probes
from envlock.probes.user import (
    ENTRY_POINT_GROUP,
    load_entry_points,
    load_probe_modules,
    looks_like_path,
    probe_source,
)
from envlock.protocol import (
    DTYPE_ITEMSIZE,
    ChildRequest,
    ChildResult,
    ChildSetup,
    IntermediateSummary,
    OutputSummary,
    ProbeMetadata,
    ProbeRun,
)
from envlock.tfcontrols import apply_tf_controls

TF_MISSING_EXIT = 3


def _configure_devices(tf: Any) -> None:
    # Two logical CPUs let MirroredStrategy run on a CPU-only box; this must happen before
    # anything initialises TF's devices, hence first thing after the import.
    cpus = tf.config.list_physical_devices("CPU")
    if cpus:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )


def _collect_tf_info() -> tuple[dict[str, Any] | None, str | None]:
    try:
        from envlock.fingerprint.tf import collect_tensorflow_info  # lazy: its models import pydantic, after TF

        return collect_tensorflow_info().model_dump(mode="json"), None
    except Exception as exc:  # a fingerprinting failure must not lose the probe results
        return None, f"{type(exc).__name__}: {exc}"


class _StdoutCapture:
    """Sends fd 1 (where oneDNN prints its verbose lines) to a file while one probe runs."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.text = ""

    def _flush_c_stdio(self) -> None:
        with contextlib.suppress(Exception):  # C stdio buffers verbose lines: flush them into the right file
            ctypes.CDLL(None).fflush(None)

    def __enter__(self) -> _StdoutCapture:
        if self.directory is None:
            return self
        self._flush_c_stdio()
        sys.stdout.flush()
        self._saved = os.dup(1)
        self._file = tempfile.TemporaryFile(dir=self.directory)
        os.dup2(self._file.fileno(), 1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.directory is None:
            return
        self._flush_c_stdio()
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()


def _intermediate_records(ctx: Any) -> list[IntermediateSummary]:
    from envlock.probes.compare import summarize_array  # lazy: compare imports numpy (see the imports above)

    return [{**summarize_array(name, value), "op": op} for name, value, op in ctx.intermediates]


def _run_probe(probe: Any, ctx: Any, tf: Any, verbose_dir: str | None = None) -> ProbeRun:
    capture = _StdoutCapture(verbose_dir)
    with capture:
        result = _run_probe_inner(probe, ctx, tf)
    if verbose_dir is not None:
        result["onednn_primitives"] = executed_primitives(capture.text)
        isa = detected_isa(capture.text)
        if isa:
            result["onednn_isa"] = isa
    return result


def _run_probe_inner(probe: Any, ctx: Any, tf: Any) -> ProbeRun:
    # Reseed before every probe so a probe's result does not depend on which probes ran
    # before it: `--probes` subsets must reproduce the full suite's bits.
    if probe.needs_gpu and not ctx.gpu_available:
        return {"status": "skipped", "reason": "no GPU visible to TensorFlow", "seconds": 0.0}
    # Keras names layers from per-process counters ("dense_3"): reset them so a traced model's layer
    # names do not depend on which probes ran before (free_memory=False: no gc pass, 0.3 ms).
    tf.keras.backend.clear_session(free_memory=False)
    tf.keras.utils.set_random_seed(ctx.seed)
    ctx.start_probe()
    start = time.perf_counter()
    try:
        outputs = probe.fn(ctx)
    except ProbeSkipped as exc:
        return {"status": "skipped", "reason": str(exc), "seconds": time.perf_counter() - start}
    except (Exception, SystemExit) as exc:  # a user probe calling sys.exit() fails alone, too
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "error", "reason": f"probe failed: {last}", "seconds": time.perf_counter() - start}
    records, problem = output_records(outputs)
    if problem is not None:
        return {"status": "error", "reason": problem, "seconds": time.perf_counter() - start}
    result: ProbeRun = {"status": "ok", "outputs": records, "seconds": time.perf_counter() - start}
    result["intermediates"] = _intermediate_records(ctx)  # [] for a probe that records none
    ctx.intermediates.clear()
    if ctx.trace_note:
        result["trace_note"] = ctx.trace_note
    return result


def output_records(outputs: Any) -> tuple[list[OutputSummary], str | None]:
    """The records of a probe's outputs, or what is wrong with them (a user probe's own message)."""
    import numpy as np  # lazy: numpy loads after the CPU affinity is set (run_request)

    from envlock.probes.compare import summarize_array  # lazy: compare imports numpy

    if not isinstance(outputs, Mapping):
        if not (isinstance(outputs, np.ndarray) or hasattr(outputs, "numpy")):  # one array or tensor is fine
            return [], (f"probe returned {type(outputs).__name__}: a probe returns a dict of output name -> array "
                        "(or one array)")
        outputs = {"output": outputs}
    if not outputs:
        return [], "probe returned no outputs (an empty dict)"
    records = []
    for name in sorted(outputs, key=str):
        if not isinstance(name, str) or not name or not name.isprintable():
            return [], f"probe returned an output named {name!r}: names are non-empty printable strings"
        try:
            arr = np.asarray(outputs[name])
        except Exception as exc:
            return [], f"output {name!r} is not an array: {type(exc).__name__}: {exc}"
        if arr.dtype.name not in DTYPE_ITEMSIZE:
            return [], (f"output {name!r} has dtype {arr.dtype.name} ({type(outputs[name]).__name__}): outputs must "
                        f"be numeric or bool arrays ({', '.join(sorted(DTYPE_ITEMSIZE))})")
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
            return [], (f"output {name!r} has {nan} NaN and {inf} Inf of {arr.size} values: outputs must be "
                        "finite (a NaN cannot show drift)")
        records.append(summarize_array(name, arr))
    return records, None


class _Progress:
    """Each probe run as it starts and ends, one JSON line each, flushed: if this process dies or
    hangs in a probe, the parent still knows which one and keeps the runs that finished."""

    def __init__(self, path: str | None) -> None:
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - lives with the process

    def write(self, event: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()


@contextlib.contextmanager
def _user_directory(path: str | None) -> Iterator[None]:
    """The user's working directory while their probe modules import (relative paths in
    ``--probe-module`` and in the modules mean what they meant there); the private one otherwise."""
    if not path:
        yield
        return
    private = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(private)


def _select(request: ChildRequest, progress: _Progress) -> tuple[list[Any], list[str], set[str]]:
    """The probes to run (built-ins, --probe-module modules, entry points), the unknown names, and
    the modules loaded from a file. Raises ``ProbeModuleError`` for a module that does not import.
    Each import is a progress event: it counts against the probe timeout."""
    specs = list(request.get("probe_modules") or [])
    loaded: list[str] = []
    names = request.get("probes")
    built_in = set(all_probes()) if request.get("module_probes") else set()
    with _user_directory(request.get("cwd")):
        for spec in specs:
            progress.write({"event": "import", "module": spec})
            loaded += load_probe_modules([spec])
            progress.write({"event": "imported", "module": spec})
        registry = all_probes()
        from_modules = [n for n in registry if n not in built_in] if request.get("module_probes") else []
        # Entry points are imported only when needed: for the whole suite, or for a name nothing else has.
        if request.get("entry_points", True) and (names is None or any(n not in registry for n in names)):
            progress.write({"event": "import", "module": f"the {ENTRY_POINT_GROUP} entry points"})
            load_entry_points()
            progress.write({"event": "imported", "module": ENTRY_POINT_GROUP})
            registry = all_probes()
    from_file = {name for spec, name in zip(specs, loaded, strict=True) if looks_like_path(spec)}
    if names is None:
        return list(registry.values()), [], from_file
    if request.get("module_probes"):  # the names given and every probe the --probe-module modules registered
        names = [*names, *(n for n in from_modules if n not in names)]
    unknown = [n for n in dict.fromkeys(names) if n not in registry]
    return [registry[n] for n in dict.fromkeys(names) if n in registry], unknown, from_file


def _probe_metadata(p: Any, from_file: set[str], cwd: str | None) -> ProbeMetadata:
    return {"name": p.name, "tags": list(p.tags), "group": p.group, "dtype": p.dtype, "description": p.description,
            "needs_gpu": p.needs_gpu, "source": probe_source(p.fn, from_file=getattr(p.fn, "__module__", None)
                                                             in from_file, cwd=Path(cwd) if cwd else None)}


def run_request(request: ChildRequest) -> ChildResult:
    if request.get("affinity"):
        # Before TF and numpy load: their thread pools are sized from the affinity at import.
        os.sched_setaffinity(0, set(request["affinity"]))
    import_start = time.perf_counter()
    try:
        import numpy as np  # lazy: after the affinity above, and TF is the child's whole purpose
        import tensorflow as tf  # lazy: as numpy
    except ImportError as exc:
        return {"ok": False, "error": "tensorflow_missing", "detail": str(exc)}
    import_seconds = time.perf_counter() - import_start

    progress = _Progress(request.get("progress"))
    _configure_devices(tf)
    # Fingerprint TF as the user's job finds it, before the lockdown controls: the golden records
    # those separately (Golden.lockdown), and a plain `envlock capture` of the same machine must
    # then diff identical against the golden's manifest.
    tf_info, tf_info_error = _collect_tf_info() if request.get("collect_tf_info", True) else (None, None)
    applied = apply_tf_controls(
        tf, seed=request["seed"], op_determinism=request["op_determinism"],
        intra_op_threads=request.get("intra_op_threads"), inter_op_threads=request.get("inter_op_threads"),
    )
    gpu = bool(tf.config.list_physical_devices("GPU"))
    ctx = ProbeContext(tf=tf, np=np, seed=request["seed"], gpu_available=gpu, trace=bool(request.get("trace")))
    # User modules are imported after the controls are applied: one that runs TF ops at import
    # time would otherwise initialise TF's thread pools before the lockdown fixes them.
    try:
        probes, unknown, from_file = _select(request, progress)
    except ProbeModuleError as exc:
        return {"ok": False, "error": "bad_input", "detail": str(exc)}
    if unknown and request.get("unknown", "error") == "error":
        return {"ok": False, "error": "bad_input",
                "detail": f"unknown probe(s): {', '.join(unknown)} (not built in, not in the probe modules given, "
                          "not from an installed envlock.probes entry point)"}
    metadata = {p.name: _probe_metadata(p, from_file, request.get("cwd")) for p in probes}
    setup: ChildSetup = {"import_seconds": import_seconds, "applied": applied, "gpu_available": gpu, "tf_info": tf_info,
             "tf_info_error": tf_info_error, "probes": metadata, "order": [p.name for p in probes], "unknown": unknown}
    progress.write({"event": "setup", **setup})
    runs: dict[str, list[ProbeRun]] = {p.name: [] for p in probes}
    verbose_dir = request.get("onednn_verbose_dir")
    suite_start = time.perf_counter()
    for index in range(max(1, int(request.get("repeat", 1)))):
        for p in probes:
            progress.write({"event": "start", "probe": p.name, "repeat": index})
            run = _run_probe(p, ctx, tf, verbose_dir)
            runs[p.name].append(run)
            progress.write({"event": "run", "probe": p.name, "repeat": index, "run": run})
    return {"ok": True, **setup, "suite_seconds": time.perf_counter() - suite_start, "runs": runs}


def _children() -> list[int]:
    """This process's children (with PR_SET_CHILD_SUBREAPER: every orphan of what it started), from /proc."""
    me, found = str(os.getpid()), []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, IndexError), \
                        open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                    if handle.read().rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
    return found


def end_descendants(*, rounds: int = 50) -> None:
    """SIGKILL and reap everything this process started, setsid'd or double-forked: as a subreaper
    (the parent's spawn made it one) the orphans of each killed child become its children in turn."""
    for _ in range(rounds):
        children = _children()
        if not children:
            return
        for pid in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)


class _Terminated(BaseException):
    """SIGTERM from the parent: neither an Exception nor SystemExit, which a probe's failure is
    caught as (a probe must not swallow its process being stopped)."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m envlock.probes.child REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    # SIGTERM (the parent stopping it) unwinds, so what the probes started is ended below.
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return _main(argv)
    except _Terminated:
        return 128 + signal.SIGTERM
    finally:
        end_descendants()


def _main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run_request(request)
    from envlock.store import atomic_write_text  # lazy: store imports pydantic; loaded once the probes ran

    atomic_write_text(argv[1], json.dumps(result))
    if not result["ok"]:
        return TF_MISSING_EXIT if result.get("error") == "tensorflow_missing" else 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
