"""The child process that runs probes: ``python -m envlock.probes.child REQUEST.json RESULT.json``.

The parent (``envlock verify`` / ``capture --golden``) never imports TensorFlow: environment
variables such as TF_ENABLE_ONEDNN_OPTS are read when TF is imported, so the only faithful way
to run under a given environment is a fresh process started with it. This process imports TF
once, applies the lockdown controls, collects TensorflowInfo, runs the probes ``repeat`` times
and writes a JSON result file (TF logs go to stderr, which the parent keeps for errors only).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

TF_MISSING_EXIT = 3
CHILD_TIMEOUT_SECONDS = 900.0


def run_child(*, probe_names: list[str], repeat: int, settings: Any, env: dict[str, str],
              runner: Any = None, timeout: float = CHILD_TIMEOUT_SECONDS, affinity: list[int] | None = None,
              onednn_verbose: bool = False) -> dict[str, Any]:
    """Parent side: run the probes in a fresh process with ``env``; return the parsed result.

    ``affinity``: the CPUs the child pins itself to before importing anything numeric (TF and
    OpenBLAS size their thread pools from it). ``onednn_verbose``: record per probe the oneDNN
    primitive implementations it executed (``ONEDNN_VERBOSE=1`` for the child only).
    Raises ``TensorflowMissing`` when the child cannot import TF and ``EnvironmentProblem``
    when it dies; both mean "this machine cannot run the probes" (exit 3).
    """
    import tempfile

    from envlock.errors import EnvironmentProblem, TensorflowMissing
    from envlock.runner import Runner

    request = {
        "probes": probe_names, "repeat": repeat, "seed": settings.seed, "op_determinism": settings.op_determinism,
        "intra_op_threads": settings.intra_op_threads, "inter_op_threads": settings.inter_op_threads,
        "collect_tf_info": True,
    }
    if affinity is not None:
        request["affinity"] = sorted(affinity)
    if onednn_verbose:
        env = {**env, "ONEDNN_VERBOSE": "1"}  # the child's only: verbose output changes no numerics
    with tempfile.TemporaryDirectory(prefix="envlock-probes-") as tmp:
        if onednn_verbose:
            request["onednn_verbose_dir"] = tmp
        request_path, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        argv = [sys.executable, "-m", "envlock.probes.child", str(request_path), str(result_path)]
        proc = (runner or Runner()).run(argv, timeout=timeout, env=env)
        result: dict[str, Any] = {}
        # The child writes its result atomically, but a child killed by the time limit or a full
        # disk may still leave none: that is a failed probe run, never a traceback.
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
            result = loaded if isinstance(loaded, dict) else {}
        if result:
            if not result.get("ok") and result.get("error") == "tensorflow_missing":
                raise TensorflowMissing(str(result.get("detail", "")))
            if result.get("ok"):
                return result
    if proc is None:
        raise EnvironmentProblem(f"the probe process did not finish within {timeout:.0f} s or could not start")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no error output"
    raise EnvironmentProblem(f"the probe process failed (exit {proc.returncode}): {last}")


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
        from envlock.fingerprint.tf import collect_tensorflow_info

        return collect_tensorflow_info().model_dump(mode="json"), None
    except Exception as exc:  # a fingerprinting failure must not lose the probe results
        return None, f"{type(exc).__name__}: {exc}"


class _StdoutCapture:
    """Sends fd 1 (where oneDNN prints its verbose lines) to a file while one probe runs."""

    def __init__(self, directory: str | None) -> None:
        self.directory = directory
        self.text = ""

    def _flush_c_stdio(self) -> None:
        import ctypes

        with contextlib.suppress(Exception):  # C stdio buffers verbose lines: flush them into the right file
            ctypes.CDLL(None).fflush(None)

    def __enter__(self) -> _StdoutCapture:
        if self.directory is None:
            return self
        import os
        import tempfile

        self._flush_c_stdio()
        sys.stdout.flush()
        self._saved = os.dup(1)
        self._file = tempfile.TemporaryFile(dir=self.directory)
        os.dup2(self._file.fileno(), 1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.directory is None:
            return
        import os

        self._flush_c_stdio()
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()


def _intermediate_records(ctx: Any) -> list[dict[str, Any]]:
    from envlock.probes.compare import summarize_array

    return [{**summarize_array(name, value), "op": op} for name, value, op in ctx.intermediates]


def _run_probe(probe: Any, ctx: Any, tf: Any, verbose_dir: str | None = None) -> dict[str, Any]:
    from envlock.probes.onednn_verbose import detected_isa, executed_primitives

    capture = _StdoutCapture(verbose_dir)
    with capture:
        result = _run_probe_inner(probe, ctx, tf)
    if verbose_dir is not None:
        result["onednn_primitives"] = executed_primitives(capture.text)
        isa = detected_isa(capture.text)
        if isa:
            result["onednn_isa"] = isa
    return result


def _run_probe_inner(probe: Any, ctx: Any, tf: Any) -> dict[str, Any]:
    from envlock.probes.compare import summarize_array
    from envlock.probes.registry import ProbeSkipped

    # Reseed before every probe so a probe's result does not depend on which probes ran
    # before it: `--probes` subsets must reproduce the full suite's bits.
    if probe.needs_gpu and not ctx.gpu_available:
        return {"status": "skipped", "reason": "no GPU visible to TensorFlow", "seconds": 0.0}
    tf.keras.utils.set_random_seed(ctx.seed)
    ctx.intermediates.clear()
    start = time.perf_counter()
    try:
        outputs = probe.fn(ctx)
    except ProbeSkipped as exc:
        return {"status": "skipped", "reason": str(exc), "seconds": time.perf_counter() - start}
    except Exception as exc:
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"status": "error", "reason": f"probe failed: {last}", "seconds": time.perf_counter() - start}
    records = [summarize_array(name, outputs[name]) for name in sorted(outputs)]
    result = {"status": "ok", "outputs": records, "seconds": time.perf_counter() - start}
    result["intermediates"] = _intermediate_records(ctx)  # [] for a probe that records none
    ctx.intermediates.clear()
    return result


def run_request(request: dict[str, Any]) -> dict[str, Any]:
    if request.get("affinity"):
        import os

        # Before TF and numpy load: their thread pools are sized from the affinity at import.
        os.sched_setaffinity(0, set(request["affinity"]))
    import_start = time.perf_counter()
    try:
        import numpy as np
        import tensorflow as tf
    except ImportError as exc:
        return {"ok": False, "error": "tensorflow_missing", "detail": str(exc)}
    import_seconds = time.perf_counter() - import_start

    from envlock.locking import apply_tf_controls
    from envlock.probes.registry import ProbeContext, select_probes

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
    ctx = ProbeContext(tf=tf, np=np, seed=request["seed"], gpu_available=gpu)
    probes = select_probes(request["probes"])
    runs: dict[str, list[dict[str, Any]]] = {p.name: [] for p in probes}
    verbose_dir = request.get("onednn_verbose_dir")
    suite_start = time.perf_counter()
    for _ in range(max(1, int(request.get("repeat", 1)))):
        for p in probes:
            runs[p.name].append(_run_probe(p, ctx, tf, verbose_dir))
    return {
        "ok": True,
        "import_seconds": import_seconds,
        "suite_seconds": time.perf_counter() - suite_start,
        "applied": applied,
        "gpu_available": gpu,
        "tf_info": tf_info,
        "tf_info_error": tf_info_error,
        "runs": runs,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m envlock.probes.child REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    result = run_request(request)
    from envlock.store import atomic_write_text

    atomic_write_text(argv[1], json.dumps(result))
    if not result["ok"]:
        return TF_MISSING_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
