"""Both machine kinds decide, never the one a test runs on: verify replayed from recorded goldens.

``replay(golden, machine)`` (tests/recorded.py) is what ``envlock verify GOLDEN`` computes on the machine that recorded
``machine``: that machine's probe outputs (its own golden's records, as the child would report them),
the two manifests' differences, and this envlock's probe registry. The AMD EPYC Zen 4 full-suite
golden ships in goldens/; the Intel Xeon's was recorded there on 2026-12-03 with the same versions
(tests/data/README.md). So the ranking, the notes and the view are checked for both directions on any
host, and so are the probe groups: a probe that moved across vendors with identical versions is never
"stable".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.display import render_report
from envlock.golden import Golden, load_golden
from envlock.probes.attribution import UNEXPLAINED
from envlock.probes.compare import Tolerance
from envlock.probes.registry import all_probes
from envlock.verdict import (
    STABLE_UNEXPLAINED_NOTE,
    ProbeVerdict,
    attribute,
    build_report,
    verdict_for,
)
from tests.helpers import DATA_DIR, REPO_ROOT
from tests.recorded import recorded_runs, replay

INTEL_DIR = DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03"
AMD_GOLDEN = REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu.json"
INTEL_GOLDEN = INTEL_DIR / "golden-full-suite.json"
INTEL_CONFIGS = sorted((INTEL_DIR / "configs").glob("golden-*.json"))
VERSIONED = ("tensorflow-cpu", "keras", "numpy")


def _versions(golden: Golden) -> dict[str, str | None]:
    recorded = {d.name: d.version for d in golden.manifest.python.distributions}
    return {name: recorded.get(name) for name in VERSIONED}


def _moved(a: Golden, b: Golden) -> set[str]:
    """Probes recorded in both whose outputs differ in any byte."""
    other = {r.name: r for r in b.probes}
    return {r.name for r in a.probes if r.status == "ok" and r.name in other and other[r.name].status == "ok"
            and [o.sha256 for o in r.outputs] != [o.sha256 for o in other[r.name].outputs]}


@pytest.fixture(scope="module")
def amd() -> Golden:
    return load_golden(AMD_GOLDEN)


@pytest.fixture(scope="module")
def intel() -> Golden:
    return load_golden(INTEL_GOLDEN)


# ---------------------------------------------------------------- groups rest on both vendors


def test_the_two_full_suite_goldens_hold_the_same_versions(amd: Golden, intel: Golden) -> None:
    assert _versions(amd) == _versions(intel)
    assert amd.manifest.cpu.vendor != intel.manifest.cpu.vendor


def test_no_probe_that_moved_across_vendors_is_stable(amd: Golden, intel: Golden) -> None:
    registry = all_probes()
    moved = _moved(amd, intel)
    assert "layers.batchnorm_train" in moved and "hw.reciprocal" in moved  # the data says what it says
    stable_but_moved = sorted(n for n in moved if registry[n].group == "stable")
    assert not stable_but_moved, f"moved across vendors with identical versions, yet 'stable': {stable_but_moved}"


def _clusters_eager_ops(golden: Golden) -> bool:
    return "--tf_xla_min_cluster_size=1" in golden.lockdown.environment.get("TF_XLA_FLAGS", "")


@pytest.mark.parametrize("config", INTEL_CONFIGS, ids=lambda p: p.stem)
def test_no_probe_that_a_setting_moved_is_stable(intel: Golden, config: Path) -> None:
    """Stable means: TF's own kernels for RNG, data order, init, elementwise and row reductions move only
    with versions or seeds. A configuration that hands every eager op to XLA replaces those kernels."""
    golden = load_golden(config)
    registry = all_probes()
    stable_moved = sorted(n for n in _moved(intel, golden) if n in registry and registry[n].group == "stable")
    if _clusters_eager_ops(golden):
        # Measured: XLA-compiled eager ops move even the stable probes; a recorded cause must say so.
        assert stable_moved
        report = replay(INTEL_GOLDEN, config)
        for verdict in report.probes:
            if verdict.name in stable_moved:  # a setting of the configuration, never "unknown" or "a version"
                assert verdict.causes[0].environment, verdict.causes[0]
                assert "environment.TF_XLA_FLAGS" in {c.path for c in verdict.causes}, verdict.causes
        assert not any("suspect the version" in n or n == STABLE_UNEXPLAINED_NOTE for n in report.notes)
    else:
        assert not stable_moved


def test_every_probe_that_moved_across_vendors_carries_a_cpu_mechanism(amd: Golden, intel: Golden) -> None:
    """Its tags must let a CPU difference explain it: approximate arithmetic, bf16 kernels or GEMM kernels."""
    registry = all_probes()
    for name in _moved(amd, intel):
        assert set(registry[name].tags) & {"approx", "bf16", "eigen"}, name


# ---------------------------------------------------------------- verify ranks the way explain proves


@pytest.mark.parametrize(("golden_path", "machine_path"), [(AMD_GOLDEN, INTEL_GOLDEN), (INTEL_GOLDEN, AMD_GOLDEN)],
                         ids=["zen4-golden-on-intel", "intel-golden-on-zen4"])
def test_verify_across_vendors_ranks_the_cpu_arithmetic_first(golden_path: Path, machine_path: Path) -> None:
    report = replay(golden_path, machine_path)
    probes = {v.name: v for v in report.probes}
    drifted = {n: v for n, v in probes.items() if v.status == "drift"}
    assert report.exit_code == 1 and len(drifted) == 11, sorted(drifted)
    assert all(v.group != "stable" for v in drifted.values())
    for name, verdict in drifted.items():
        first = verdict.causes[0]
        if "approx" in verdict.tags:
            assert first.rule == "cpu-arithmetic", (name, first)
            assert {"cpu.vendor", "cpu.model"} <= set(first.paths), first.paths
        else:  # the bf16 probe: the ISA flag a ceiling on it restores (explain proved it), AMX
            assert name == "mixed.bf16_matmul"
            assert first.rule == "onednn-bf16-isa" and any("amx" in p for p in first.paths), first
    # No ISA flag is anybody's first cause but where a ceiling on it changes the result.
    assert not [v.name for v in drifted.values() if v.causes[0].rule == "cpu-isa"]
    # Notes that are true: no version differs, so no "suspect a version"; the hardware note instead.
    assert not any("version" in n and "suspect" in n for n in report.notes), report.notes
    assert any(n.startswith("hardware-arithmetic probes moved") for n in report.notes)
    # The bf16 product differs outside the sampled elements: said so, never "0 ULP".
    bf16 = probes["mixed.bf16_matmul"]
    assert bf16.max_ulp is None and bf16.mismatched is None and bf16.outputs_unmeasured == ["product"]
    assert report.next_command == f"envlock explain {golden_path}"


def test_each_distinct_cause_is_said_once_with_its_probes_and_text_and_json_agree(amd: Golden) -> None:
    report = replay(AMD_GOLDEN, INTEL_GOLDEN)
    assert [c.rule for c in report.causes] == ["cpu-arithmetic", "onednn-bf16-isa"]
    assert len(report.causes[0].probes) == 10 and report.causes[1].probes == ["mixed.bf16_matmul"]
    text = render_report(report)
    lines = text.splitlines()
    assert len(lines) <= 60, len(lines)
    for cause in report.causes:
        assert sum(cause.reason in line for line in lines) == 1  # once, not under every probe
        assert ", ".join(cause.probes) in text
    as_json = json.loads(report.model_dump_json())
    assert [c["reason"] for c in as_json["causes"]] == [c.reason for c in report.causes]
    assert "raw bytes differ outside the sampled elements; size not measured" in text
    assert "0/128" not in text
    assert lines[-2].startswith(f"next: envlock explain {AMD_GOLDEN}")
    # Identical probes are summarised in one line; --verbose shows every row.
    assert sum("identical" in line for line in lines[:-1]) == 1
    verbose = render_report(report, verbose=True)
    assert all(v.name in verbose for v in report.probes)
    assert len(verbose.splitlines()) > len(lines)


def test_the_recorded_intel_verify_of_the_zen4_golden_fed_through_attribution() -> None:
    """The report verify printed on the Intel machine (code as it landed): re-judged by this envlock's
    groups and rules, its first causes and notes are the ones explain proved there."""
    from envlock.diff import Difference

    recorded = json.loads((INTEL_DIR / "verify-of-amd-epyc-zen4-2vcpu.json").read_text())
    registry = all_probes()
    verdicts = []
    for probe in recorded["probes"]:
        verdict = ProbeVerdict.model_validate({k: v for k, v in probe.items() if k != "causes"})
        verdict.group, verdict.tags = registry[verdict.name].group, list(registry[verdict.name].tags)
        verdicts.append(verdict)
    differences = [Difference.model_validate(d) for d in recorded["differences"]]
    stable_drifted = attribute(verdicts, differences)
    assert not stable_drifted
    report = build_report(AMD_GOLDEN, load_golden(AMD_GOLDEN), recorded["manifest_digest"], verdicts, differences,
                          tolerance=Tolerance(), repeat=2, golden_env=False, stable_drifted=False, timings={})
    firsts = {v.name: v.causes[0].rule for v in report.probes if v.status == "drift"}
    assert firsts.pop("mixed.bf16_matmul") == "onednn-bf16-isa"
    assert set(firsts.values()) == {"cpu-arithmetic"}
    assert not any("suspect a version" in n for n in report.notes)
    # Explain's proof on the same machine agrees: the bf16 probe is the only one a setting fixed.
    explained = json.loads((INTEL_DIR / "explain-of-amd-epyc-zen4-2vcpu.json").read_text())
    fixed = {f["probe"] for f in explained["findings"] if f["status"] == "fixed"}
    assert fixed == {"mixed.bf16_matmul"}


# ---------------------------------------------------------------- an unrecorded cause is said to be unknown


def test_a_drift_nothing_recorded_explains_is_unknown_not_hardware(amd: Golden) -> None:
    """Same machine, same manifest, a stable probe moved: an unrecorded variable, say. Never 'hardware'."""
    golden = amd
    machine = golden.model_copy(deep=True)
    record = next(r for r in machine.probes if r.name == "rng.global_seed")
    output = record.outputs[0]
    record.outputs[0] = output.model_copy(update={"sha256": "sha256:" + "0" * 64})
    result = recorded_runs(machine)
    verdicts = [verdict_for(r, result, Tolerance(), pytest_golden=False, allow_changed_probes=False)
                for r in golden.probes]
    stable_drifted = attribute(verdicts, [])
    report = build_report(AMD_GOLDEN, golden, golden.manifest.digest, verdicts, [], tolerance=Tolerance(), repeat=2,
                          golden_env=False, stable_drifted=stable_drifted, timings={})
    drifted = [v for v in report.probes if v.status == "drift"]
    assert [v.name for v in drifted] == ["rng.global_seed"]
    assert drifted[0].causes[0].reason == UNEXPLAINED
    assert "hardware or firmware" not in UNEXPLAINED and "envlock explain" in UNEXPLAINED
    assert STABLE_UNEXPLAINED_NOTE in report.notes
    assert not any("suspect the version" in n for n in report.notes)
    assert report.next_command is not None
