"""Numeric classes (issue 20): a digest of results, on the real goldens of both machine kinds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from envlock.errors import IntegrityError
from envlock.golden import class_entry, class_entry_of_runs, golden_numeric_class, load_golden, save_golden, seal
from envlock.numeric import ClassEntry, numeric_class
from envlock.results import OutputSummary, ProbeRun
from tests.helpers import DATA_DIR, GOLDENS, REPO_ROOT
from tests.recorded import recorded_runs

PORTABLE = {"amd": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu-portable.json",
            "intel": REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu-portable.json"}
AMD, INTEL = GOLDENS["amd-epyc-zen4-full-suite"], GOLDENS["intel-xeon-amx-full-suite"]


def test_the_two_vendors_are_two_classes_by_default_and_one_under_the_portable_profile() -> None:
    assert golden_numeric_class(load_golden(AMD)) != golden_numeric_class(load_golden(INTEL))
    amd, intel = (load_golden(p) for p in PORTABLE.values())
    assert golden_numeric_class(amd) == golden_numeric_class(intel)


def test_probes_that_agree_share_a_class_over_them_and_one_moved_probe_separates() -> None:
    amd, intel = load_golden(AMD), load_golden(INTEL)
    agree = [p.name for p in amd.probes if p.status == "ok" and intel.probe(p.name)
             and [o.sha256 for o in p.outputs] == [o.sha256 for o in intel.probe(p.name).outputs]]  # type: ignore[union-attr]
    assert len(agree) >= 20  # the stable probes: the same bits on both vendors
    assert golden_numeric_class(amd, agree) == golden_numeric_class(intel, agree)
    moved = next(p.name for p in amd.probes if p.status == "ok" and p.name not in agree)
    assert golden_numeric_class(amd, [*agree, moved]) != golden_numeric_class(intel, [*agree, moved])


def test_this_machines_runs_give_the_class_of_the_golden_they_were_recorded_as() -> None:
    """What verify computes from the child (runs) equals what capture computed from the records."""
    for path in (AMD, INTEL, *PORTABLE.values()):
        golden = load_golden(path)
        result = recorded_runs(golden)
        here = [class_entry_of_runs(p.name, result.runs_of(p.name)) if p.status == "ok" else class_entry(p)
                for p in golden.probes]
        profile = "portable-v1" if golden.profile else "default"
        assert numeric_class(here, profile) == golden_numeric_class(golden), path


def test_the_profile_status_order_and_repeats_count() -> None:
    entries = [ClassEntry("b", "ok", (("y", "sha256:" + "2" * 64),)),
               ClassEntry("a", "ok", (("x", "sha256:" + "1" * 64),))]
    base = numeric_class(entries)
    assert numeric_class(list(reversed(entries))) == base  # name order, not the order given
    assert numeric_class(entries, "portable-v1") != base
    assert numeric_class([entries[0], ClassEntry("a", "skipped")]) != base
    out = OutputSummary(name="x", dtype="float32", shape=(), sha256="sha256:" + "1" * 64, sample_stride=1,
                        sample_b64="")
    other = replace(out, sha256="sha256:" + "3" * 64)
    assert class_entry_of_runs("a", [ProbeRun(status="ok", outputs=(out,))] * 2) == entries[1]
    assert class_entry_of_runs("a", [ProbeRun(status="ok", outputs=(out,)), ProbeRun(status="ok", outputs=(other,))]
                               ).status == "nondeterministic"
    assert len(base) == 12 and int(base, 16) >= 0  # a Kubernetes label value


def test_a_golden_whose_class_was_edited_is_refused(tmp_path: Path) -> None:
    golden = load_golden(AMD)
    honest = seal(golden.model_copy(update={"numeric_class": golden_numeric_class(golden)}))
    save_golden(tmp_path / "ok.json", honest)
    assert load_golden(tmp_path / "ok.json").numeric_class == golden_numeric_class(golden)
    data = json.loads((tmp_path / "ok.json").read_text())
    assert data["numeric_class"] == golden_numeric_class(golden)
    lying = seal(golden.model_copy(update={"numeric_class": golden_numeric_class(load_golden(INTEL))}))
    save_golden(tmp_path / "lie.json", lying)
    with pytest.raises(IntegrityError, match="numeric_class .* is not the class of its probes' outputs"):
        load_golden(tmp_path / "lie.json")
    assert DATA_DIR.is_dir()
