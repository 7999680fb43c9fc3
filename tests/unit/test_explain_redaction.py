"""explain's report carries no secret (issue 17, class 2), and its environment file keeps a raw
value only where it is this machine's own (envlock.explain.run's docstring): a resealed golden
whose lockdown environment holds credentials and a home directory, planned against this machine."""

from __future__ import annotations

import json
from pathlib import Path

from envlock.display import render_explain
from envlock.explain import run as explain_run
from envlock.explain.findings import emit_environment, finding_for
from envlock.explain.planner import plan_interventions
from envlock.explain.report import IDENTICAL, UNCHANGED, CandidateOutcome, ExplainReport
from envlock.probes.compare import Tolerance
from envlock.verdict import ProbeVerdict, build_report
from tests.helpers import SECRETS, assert_no_secret, make_hostile_golden, make_manifest

GOLDEN_ENV = {"XLA_FLAGS": "--xla_dump_to=https://user:pw456@host/x?token=abc123",
              "NCCL_DEBUG_FILE": "/home/alice/nccl.log", "TF_XLA_FLAGS": "--x=https://u:pw456@h/"}
HERE_ENV = {"HOME": "/home/bob", "PATH": "/usr/bin", "OMP_NUM_THREADS": "3"}


def _explained(probe_fixed_by: str) -> tuple[ExplainReport, dict[str, str]]:
    """The report explain_golden builds when ``probe_fixed_by`` (a candidate id) fixes matmul.f32."""
    golden = make_hostile_golden(lockdown_env=GOLDEN_ENV)
    here = make_manifest(env={"OMP_NUM_THREADS": "3"})
    plan = plan_interventions(golden.manifest, golden.lockdown.environment, here, HERE_ENV)
    assert any(secret in c.id for c in plan.candidates for secret in SECRETS)  # the raw material is there
    verdict = ProbeVerdict(name="matmul.f32", status="drift", outputs_differing=["product"])
    verify = build_report(Path("g.json"), golden, here.digest, [verdict], [], tolerance=Tolerance(), repeat=1,
                          golden_env=False, stable_drifted=False, timings={})
    outcomes = [CandidateOutcome(id=c.id, kind=c.kind, reason=c.reason, env=dict(c.env), size=c.size,
                                 status="tried", seconds=1.0,
                                 probes={"matmul.f32": IDENTICAL if c.id == probe_fixed_by else UNCHANGED})
                for c in plan.candidates]
    explain = ExplainReport(golden="g.json", golden_digest=golden.digest, reproduces=False, exit_code=1,
                            budget_seconds=60, verify=verify, candidates=outcomes,
                            not_tried=[c.id for c in plan.candidates])
    explain.findings.append(finding_for("matmul.f32", outcomes, plan=plan, localisation=None, differing=["product"],
                                        cpu_change=None))
    explain.notes.append(f"fixed by {probe_fixed_by}")
    emit_environment(explain)
    return explain, {c.id: c.kind for c in plan.candidates}


def test_text_json_and_report_of_a_foreign_golden_carry_no_secret() -> None:
    fixed_by = "XLA_FLAGS=" + GOLDEN_ENV["XLA_FLAGS"]
    raw, _ = _explained(fixed_by)
    assert raw.findings[0].fixed_by == fixed_by  # before: the golden's value, verbatim
    redacted = explain_run.redact_report(raw, "/home/bob", explain_run.environment_text(raw, HERE_ENV))
    assert_no_secret(redacted.model_dump_json())  # what --json and --report write
    assert_no_secret(render_explain(redacted))  # the text
    assert redacted.findings[0].fixed_by == "XLA_FLAGS=--xla_dump_to=https://REDACTED@host/x?token=REDACTED"
    assert redacted.findings[0].proof().startswith("fixed by XLA_FLAGS=--xla_dump_to=https://REDACTED@")
    assert redacted.candidates[0].env and "~/nccl.log" in json.dumps([c.env for c in redacted.candidates])
    # The golden's value would not reproduce redacted and is someone else's secret: not written either.
    text = explain_run.environment_file(redacted)
    assert_no_secret(text)
    assert "# XLA_FLAGS: not written" in text and "export XLA_FLAGS" not in text
    assert "some drifting probes" in text  # incomplete, and says so


def test_the_environment_file_keeps_this_machines_own_values_raw() -> None:
    here = {"XLA_FLAGS": "--xla_dump_to=/home/bob/dumps", "HOME": "/home/bob"}
    appended = {"XLA_FLAGS": "--xla_dump_to=/home/bob/dumps --xla_cpu_max_isa=AVX2", "GLIBC_TUNABLES": None,
                "OMP_NUM_THREADS": "2"}
    kept, refused = explain_run.writable_values(appended, here, "/home/bob")
    assert kept == appended and refused == []  # its own XLA_FLAGS, plus what envlock appended
    kept, refused = explain_run.writable_values({"XLA_FLAGS": "--xla_dump_to=/home/alice/d"}, here, "/home/bob")
    assert kept == {} and refused == ["XLA_FLAGS"]  # a home that is not in this machine's value


def test_the_environment_file_when_nothing_or_everything_reproduces() -> None:
    raw, kinds = _explained("no such candidate")
    assert raw.findings[0].status != "fixed" and raw.emit_env is None
    nothing = explain_run.environment_text(raw, HERE_ENV)
    assert "no environment reproduces g.json" in nothing and nothing.rstrip().endswith("return 1 2>/dev/null || exit 1")
    reproduces = raw.model_copy(update={"findings": [], "reproduces": True, "exit_code": 0})
    assert "nothing to set" in explain_run.environment_text(reproduces, HERE_ENV)
    # A golden path with a line break stays inside its comment.
    hostile = raw.model_copy(update={"golden": "g\nexport PWNED=1\n.json"})
    assert "\nexport PWNED" not in explain_run.environment_text(hostile, HERE_ENV)
    fixed, _ = _explained("unset OMP_NUM_THREADS")
    assert "unset OMP_NUM_THREADS" in kinds and fixed.findings[0].status == "fixed"
    text = explain_run.environment_text(fixed, HERE_ENV)
    assert "unset OMP_NUM_THREADS" in text and "every drifting probe" in text
