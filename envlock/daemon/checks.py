"""The two checks the daemon runs.

* fingerprint: re-capture this machine WITHOUT TensorFlow (in-process, ~a second) and diff it
  against the golden's manifest. The ``tensorflow`` section is skipped: only a process that
  imports TensorFlow can know it, and that is the verify check's job.
* verify: ``envlock verify GOLDEN --json`` in a CHILD process, in its own process group, with a
  time limit. A hang is killed (the whole group, so grandchildren go too) and recorded as a
  timeout; a crash or unparsable output is recorded as an error with the exit code and the last
  stderr line. TensorFlow is therefore never loaded into the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from pydantic_core import to_jsonable_python

from envlock.daemon.results import CheckResult, DriftItem, ProbeSummary, difference_key
from envlock.runner import kill_tree, spawn

# Manifest sections a capture without TensorFlow cannot know (left to the verify check).
TF_ONLY_PREFIXES = ("tensorflow",)
FAILING_SEVERITIES = ("critical", "warning")
DRIFTING_PROBE_STATUSES = ("drift", "nondeterministic", "error")  # "error": a probe failed to run here
_MAX_OUTPUT_BYTES = 16 * 1024 * 1024
# A verify being stopped (daemon stopping, golden replaced, time limit) gets SIGTERM and this long
# to kill its probe child and remove its temp files before the whole group gets SIGKILL.
VERIFY_STOP_GRACE_S = 5.0


def _is_tf_only(path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in TF_ONLY_PREFIXES)


def _with_more(first: str, total: int) -> str:
    return first if total <= 1 else f"{first} (and {total - 1} more)"


def capture_without_tf(environ: Mapping[str, str]) -> Any:
    """Capture this machine without TensorFlow, with ``environ`` as its environment.

    ``environ`` is the daemon's environment as it STARTED (WatchConfig.environ), never os.environ
    now: the capture's own imports write to os.environ (threadpoolctl sets KMP_DUPLICATE_LIB_OK),
    so a second capture would report a variable the user never set."""
    from envlock.capture import capture_manifest  # lazy: keeps `envlock --help` fast

    return capture_manifest(include_tf=False, environ=dict(environ))


def _diff(old: Any, new: Any) -> list[Any]:
    from envlock.diff import diff_manifests

    return diff_manifests(old, new)


def value_json(value: Any) -> str:
    """Canonical JSON of a difference's new value, the same whether it comes from a Difference
    object here or from the JSON report of a verify child."""
    return json.dumps(to_jsonable_python(value, fallback=str), sort_keys=True)


def fingerprint_check(
    golden_manifest: Any,
    *,
    golden_digest: str | None,
    environ: Mapping[str, str],
    vouched: frozenset[str] = frozenset(),
    capture: Callable[[Mapping[str, str]], Any] = capture_without_tf,
    diff: Callable[[Any, Any], list[Any]] = _diff,
    clock: Callable[[], float] = time.time,
) -> CheckResult:
    """Capture this machine without TensorFlow (``capture(environ)``) and compare it with the golden manifest.

    A difference in ``vouched`` (same field, same new value) was present during a verify whose
    probes reproduced, so it is reported as tolerated instead of failing the check: e.g. an image
    built from the golden deliberately sets determinism variables the recording machine lacked."""
    started = clock()
    t0 = time.monotonic()
    try:
        current = capture(environ)
        differences = diff(golden_manifest, current)
    except Exception as exc:  # noqa: BLE001 - a failed capture is a failed check, never a dead daemon
        return CheckResult(
            kind="fingerprint", started_at=started, duration_s=time.monotonic() - t0, outcome="error",
            reason=f"fingerprint capture failed: {type(exc).__name__}: {exc}".splitlines()[0],
            golden_digest=golden_digest,
        )
    failing = [
        DriftItem(path=d.path, severity=d.severity, reason=d.reason, value=value_json(getattr(d, "new", None)))
        for d in differences
        if d.severity in FAILING_SEVERITIES and not _is_tf_only(d.path)
    ]
    drift = [item for item in failing if item.key not in vouched]
    return CheckResult(
        kind="fingerprint", started_at=started, duration_s=time.monotonic() - t0,
        outcome="drift" if drift else "pass",
        reason=_with_more(drift[0].reason, len(drift)) if drift else None,
        golden_digest=golden_digest, fingerprint_digest=getattr(current, "digest", None) or None,
        drift=drift, tolerated=[item for item in failing if item.key in vouched],
    )


# ---- verify in a child process -----------------------------------------------------------


def _read_tail(handle: IO[bytes]) -> str:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(max(0, size - _MAX_OUTPUT_BYTES))
    return handle.read().decode("utf-8", errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def parse_report(stdout: str) -> dict[str, Any] | None:
    """The VerifyReport object from the child's stdout: the whole output, or the last JSON object
    starting at the beginning of a line (compact or indented), after any stray log lines."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("{")]
    candidates = [stdout.strip()] + ["\n".join(lines[i:]) for i in reversed(starts)]
    candidates += [lines[i] for i in reversed(starts)]  # a one-line report followed by more output
    for text in candidates:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and "reproduces" in data:
            return data
    return None


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _probe_summaries(report: dict[str, Any]) -> list[ProbeSummary]:
    out = []
    for probe in report.get("probes") or []:
        if isinstance(probe, dict) and isinstance(probe.get("name"), str):
            out.append(ProbeSummary(
                name=probe["name"], status=str(probe.get("status")),
                max_ulp=_float_or_none(probe.get("max_ulp")), max_rel_error=_float_or_none(probe.get("max_rel_error")),
            ))
    return sorted(out, key=lambda p: p.name)


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _verify_drift(report: dict[str, Any], probes: list[ProbeSummary]) -> list[DriftItem]:
    """Drifted probes, plus manifest differences only a TF process sees (the rest is the fingerprint check's)."""
    reasons = {p.get("name"): p.get("reason") for p in report.get("probes") or [] if isinstance(p, dict)}
    items = [
        DriftItem(
            path=f"probes.{p.name}", severity="critical", reason=f"probe {p.name}: {reasons.get(p.name) or p.status}",
        )
        for p in probes
        if p.status in DRIFTING_PROBE_STATUSES
    ]
    for diff in report.get("differences") or []:
        path = diff.get("path") if isinstance(diff, dict) else None
        if isinstance(path, str) and _is_tf_only(path) and diff.get("severity") in FAILING_SEVERITIES:
            items.append(DriftItem(path=path, severity=diff["severity"], reason=str(diff.get("reason"))))
    return items


def interpret_verify(
    *, returncode: int, stdout: str, stderr: str, started: float, duration: float, golden_digest: str | None
) -> CheckResult:
    """Turn what the verify child did into a check result."""
    report = parse_report(stdout)
    base: dict[str, Any] = {"kind": "verify", "started_at": started, "duration_s": duration, "exit_code": returncode}
    if report is None or returncode not in (0, 1):
        detail = _last_line(stderr) or _last_line(stdout) or "no output"
        what = "printed no JSON report" if report is None and returncode in (0, 1) else _exit_description(returncode)
        return CheckResult(**base, outcome="error", reason=f"verify {what}: {detail}", golden_digest=golden_digest)
    probes = _probe_summaries(report)
    drift = _verify_drift(report, probes)
    reproduces = bool(report.get("reproduces")) and returncode == 0
    reason = None
    if not reproduces:
        if drift:
            reason = _with_more(drift[0].reason, len(drift))
        else:
            diffs = [d for d in report.get("differences") or [] if isinstance(d, dict)]
            reason = str(diffs[0].get("reason")) if diffs else "verify reports the golden does not reproduce"
    vouched = sorted({
        difference_key(d["path"], value_json(d.get("new")))
        for d in report.get("differences") or [] if isinstance(d, dict) and isinstance(d.get("path"), str)
    }) if reproduces else []
    return CheckResult(
        **base, outcome="pass" if reproduces else "drift", reason=reason,
        golden_digest=golden_digest,  # the daemon's view of the golden it asked about
        fingerprint_digest=report.get("manifest_digest"), drift=drift, probes=probes, vouched=vouched,
    )


class VerifyRunner:
    """Runs the verify command in a child process group; ``cancel()`` kills it from another thread."""

    def __init__(
        self, argv: Sequence[str], *, timeout_s: float, golden_digest: str | None, env: Mapping[str, str],
    ) -> None:
        # ``env``: the daemon's environment as it STARTED (WatchConfig.environ); libraries imported
        # since (threadpoolctl) wrote to os.environ, and the child must not inherit what the user never set.
        self.env = dict(env)
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self.golden_digest = golden_digest
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[Any] | None = None
        self._cancelled = False
        self._cancel_event = threading.Event()

    def cancel(self) -> None:
        """Stop the running verify (from another thread): it gets SIGTERM to clean up, then SIGKILL."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        self._cancel_event.set()
        if proc is not None:
            _signal_group(proc, signal.SIGTERM)

    def kill_now(self) -> None:
        """SIGKILL the running verify's whole group at once (the daemon is being forced out)."""
        with self._lock:
            self._cancelled = True
            proc = self._proc
        self._cancel_event.set()
        if proc is not None:
            _signal_group(proc, signal.SIGKILL)

    def run(self) -> CheckResult | None:
        """Run once. Returns None when cancelled (the daemon is stopping: nothing was learned).

        The child is started with ``runner.spawn`` (own process group, killed by the kernel if the
        daemon dies, even by SIGKILL) and gets a private TMPDIR that is removed afterwards, so not
        even a SIGKILLed verify leaves its temp files behind."""
        started = time.time()
        t0 = time.monotonic()
        # files, not pipes: a grandchild that escaped the group cannot keep us waiting for EOF
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                tempfile.TemporaryDirectory(prefix="envlock-verify-") as private_tmp:
            try:
                with self._lock:
                    if self._cancelled:
                        return None
                    self._proc = spawn(self.argv, stdout=out, stderr=err, env={**self.env, "TMPDIR": private_tmp})
            except (OSError, subprocess.SubprocessError) as exc:
                return CheckResult(
                    kind="verify", started_at=started, duration_s=time.monotonic() - t0, outcome="error",
                    reason=f"cannot start verify command {self.argv[0]!r}: {getattr(exc, 'strerror', None) or exc}",
                    golden_digest=self.golden_digest,
                )
            proc = self._proc
            timed_out = self._wait(proc, t0 + self.timeout_s)
            leftovers = [pid for pid in _group_members(proc.pid) if pid != proc.pid]
            # on timeout or cancel the child gets its grace to clean up; leftover grandchildren go anyway
            kill_tree(proc, grace_s=VERIFY_STOP_GRACE_S if timed_out or self._cancel_event.is_set() else 0.0)
            _reap_orphans(leftovers)
            duration = time.monotonic() - t0
            with self._lock:
                self._proc = None
                if self._cancelled:
                    return None
            if timed_out:
                return CheckResult(
                    kind="verify", started_at=started, duration_s=duration, outcome="timeout",
                    reason=f"verify timed out after {self.timeout_s:g} s (killed)", golden_digest=self.golden_digest,
                )
            return interpret_verify(
                returncode=proc.returncode, stdout=_read_tail(out), stderr=_read_tail(err),
                started=started, duration=duration, golden_digest=self.golden_digest,
            )

    def _wait(self, proc: subprocess.Popen[Any], deadline: float) -> bool:
        """Wait until the child exits (False), the deadline passes (True) or cancel() (False)."""
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self._cancel_event.wait(timeout=min(left, 0.2)):
                return False
        return False


def _signal_group(proc: subprocess.Popen[Any], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)  # the child leads its own group (runner.spawn)


def _group_members(pgid: int) -> list[int]:
    """Processes (zombies included) in process group ``pgid``, from /proc; [] where there is none."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry))
    return members


def _reap_orphans(pids: list[int], *, timeout_s: float = 2.0) -> None:
    """Wait for killed grandchildren that were re-parented to this process.

    As PID 1 of a container (or a subreaper) the daemon inherits the orphans of a killed verify
    group; nobody else will ever wait for them, so each hung verify would leave a zombie behind.
    Only these pids are waited for, never -1: that would steal exit statuses from other threads'
    subprocesses. Elsewhere waitpid says "not my child" and the loop ends when init reaps them.
    """
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                reaped, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                reaped = pid if not os.path.exists(f"/proc/{pid}") else 0  # gone, or someone else's
            if reaped:
                pending.discard(pid)
        if pending:
            time.sleep(0.02)
