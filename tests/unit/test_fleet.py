"""`envlock fleet`: the real recorded goldens and verify reports of both vendors, read as a fleet.

By default the AMD EPYC Zen 4 and Intel Xeon AMX full suites are two classes and the probes that
separate them are the ones the real cross-vendor verify report says drift; under the portable
profile their goldens are one class. Reports from before numeric classes, same hostnames, mixed
versions and profiles, hostile strings and bad files are checked on files made from the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.errors import BadFileError, IntegrityError
from envlock.fleet.files import fleet_report, read_rows
from envlock.fleet.picture import FLEET_KIND, FleetReport, analyse
from envlock.fleet.plot import map_rows
from envlock.fleet.render import render_fleet
from envlock.fleet.rows import NOT_RECORDED, MachineRow, row_of_document
from tests.helpers import DATA_DIR, IN_CI, REPO_ROOT, one_error_line, reseal, write_json

GOLDENS = REPO_ROOT / "goldens"
INTEL_DIR = DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03"
AMD_FULL = GOLDENS / "amd-epyc-zen4-2vcpu.json"
INTEL_FULL = INTEL_DIR / "golden-full-suite.json"
AMD_PORTABLE = GOLDENS / "amd-epyc-zen4-2vcpu-portable.json"
INTEL_PORTABLE = GOLDENS / "intel-xeon-amx-2vcpu-portable.json"
OLD_REPORT = INTEL_DIR / "verify-of-amd-epyc-zen4-2vcpu.json"  # Intel verifying the AMD golden, before classes


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _row(path: Path) -> MachineRow:
    return row_of_document(str(path), _json(path))


def _cli(*args: str | Path) -> tuple[int, str, str]:
    """The command in this process (CliRunner): exit code, stdout, stderr."""
    result = CliRunner().invoke(app, ["fleet", *map(str, args)])
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def _one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("envlock: error: ") and stderr[:-1].isprintable(), stderr
    return stderr


def _drifting(report: Path) -> set[str]:
    return {p["name"] for p in _json(report)["probes"] if p["status"] == "drift"}


def _new_report(tmp_path: Path, name: str = "report.json", **fields: Any) -> Path:
    """The real Intel report as envlock writes it now: with both classes, the profile, host and version."""
    data = _json(OLD_REPORT)
    data.update(numeric_class=_row(INTEL_FULL).numeric_class, golden_numeric_class=_row(AMD_FULL).numeric_class,
                numeric_profile="default", hostname="vm", envlock_version="0.1.0")
    data.update(fields)
    return write_json(tmp_path / name, data)


# ---------------------------------------------------------------- the real goldens


def test_the_two_vendors_full_suites_are_two_classes_separated_by_the_probes_verify_says_drift() -> None:
    report = fleet_report([AMD_FULL, INTEL_FULL])
    (group,) = report.groups
    assert report.exit_code == 1 and len(group.classes) == 2 and group.profile == "default"
    (separation,) = group.separations
    assert separation.known and separation.evidence  # measured from the two goldens
    separating = {g.probe for g in separation.probes}
    assert separating == _drifting(OLD_REPORT)  # what the real cross-vendor verify found, from digests alone
    measured = [g.max_ulp for g in separation.probes if g.max_ulp is not None]
    assert measured and all(u >= 1 for u in measured)  # differing samples are at least one ULP apart
    agreeing = [m for m in group.machines if m.agreement == "same"]
    differing = [m for m in group.machines if m.agreement == "differs"]
    assert len(agreeing) == 1 and len(differing) == 1 and set(differing[0].differs) == separating


def test_the_portable_goldens_of_both_vendors_are_one_class() -> None:
    report = fleet_report([AMD_PORTABLE, INTEL_PORTABLE])
    (group,) = report.groups
    assert report.exit_code == 0 and group.profile == "portable-v1"
    assert len(group.classes) == 1 and len(group.classes[0].machines) == 2 and not group.separations


def test_the_profile_view_says_default_two_classes_portable_one_and_which_probes_it_makes_agree() -> None:
    report = fleet_report([AMD_FULL, INTEL_FULL, AMD_PORTABLE, INTEL_PORTABLE])
    by_profile = {p.profile: p.classes for p in report.profiles}
    assert by_profile == {"default": 2, "portable-v1": 1}
    (change,) = report.profile_changes
    assert (change.profile, change.other) == ("default", "portable-v1")
    assert set(change.agree) == _drifting(OLD_REPORT) and not change.still_separate
    text = render_fleet(report)
    assert "default: 2 classes; portable-v1: 1 class" in text
    assert "portable-v1 makes agree" in text and "matmul" not in change.agree


def test_a_golden_s_class_is_the_one_golden_py_computes() -> None:
    from envlock.golden import golden_numeric_class, load_golden

    for path in (AMD_FULL, INTEL_FULL, AMD_PORTABLE):
        assert _row(path).numeric_class == golden_numeric_class(load_golden(path))


# ---------------------------------------------------------------- verify reports


def test_a_report_from_before_classes_is_listed_without_a_class_and_changes_no_exit_code() -> None:
    report = fleet_report([AMD_PORTABLE, INTEL_PORTABLE, OLD_REPORT])
    assert report.exit_code == 0
    (view,) = report.unclassified
    assert view.numeric_class is None and set(view.differs) == _drifting(OLD_REPORT)
    assert NOT_RECORDED in render_fleet(report)


def test_a_report_of_one_class_against_a_golden_of_the_other_separates_them_with_its_ulps(tmp_path: Path) -> None:
    report = fleet_report([AMD_FULL, _new_report(tmp_path)])
    (group,) = report.groups
    assert len(group.classes) == 2 and report.exit_code == 1
    (separation,) = group.separations
    assert separation.known and separation.evidence == [str(tmp_path / "report.json")]
    verdicts = {p["name"]: p["max_ulp"] for p in _json(OLD_REPORT)["probes"] if p["status"] == "drift"}
    assert {g.probe: g.max_ulp for g in separation.probes} == verdicts


def test_a_report_that_reproduces_its_golden_joins_its_class(tmp_path: Path) -> None:
    amd = _row(AMD_FULL).numeric_class
    same = _new_report(tmp_path, numeric_class=amd, hostname="worker-7",
                       manifest_digest="sha256:" + "7" * 64)
    report = fleet_report([AMD_FULL, same])
    (group,) = report.groups
    assert report.exit_code == 0 and group.classes[0].machines == ["vm@3a3415f8", "worker-7@77777777"]


def test_two_machines_with_one_hostname_are_kept_apart_by_their_manifest_digest(tmp_path: Path) -> None:
    one = _new_report(tmp_path, "a.json", hostname="node", manifest_digest="sha256:" + "a" * 64)
    two = _new_report(tmp_path, "b.json", hostname="node", manifest_digest="sha256:" + "b" * 64)
    report = fleet_report([one, two])
    assert report.machines == 2 and report.groups[0].classes[0].machines == ["node@aaaaaaaa", "node@bbbbbbbb"]


def test_other_envlock_series_and_profiles_are_grouped_apart_never_merged(tmp_path: Path) -> None:
    newer = _new_report(tmp_path, "newer.json", envlock_version="0.9.1")
    portable = _new_report(tmp_path, "portable.json", numeric_profile="portable-v1")
    report = fleet_report([AMD_FULL, _new_report(tmp_path), newer, portable])
    keys = sorted((g.envlock, g.profile, len(g.machines)) for g in report.groups)
    assert keys == [("0.1", "default", 2), ("0.1", "portable-v1", 1), ("0.9", "default", 1)]
    assert "3 groups (never compared" in render_fleet(report)


def test_a_probe_subset_is_another_probe_set(tmp_path: Path) -> None:
    data = _json(_new_report(tmp_path))
    data["probes"] = data["probes"][:10]
    report = fleet_report([_new_report(tmp_path), write_json(tmp_path / "subset.json", data)])
    assert sorted(len(g.probes) for g in report.groups) == [10, 45]


# ---------------------------------------------------------------- rows from another reader (the seam)


def test_rows_without_probe_cells_give_classes_and_say_the_separating_probes_are_not_known() -> None:
    rows = [MachineRow(source=f"prometheus:{host}", kind="prometheus", hostname=host, manifest_digest=None,
                       envlock_version="0.1.0", profile="default", numeric_class=cls)
            for host, cls in (("a", "111111111111"), ("b", "111111111111"), ("c", "222222222222"))]
    report = analyse(rows)
    (group,) = report.groups
    assert [len(c.machines) for c in group.classes] == [2, 1] and not group.separations[0].known
    assert "not known" in render_fleet(report)


# ---------------------------------------------------------------- output


def test_json_is_a_versioned_fleet_document(tmp_path: Path) -> None:
    code, out, err = _cli("--json", AMD_FULL, INTEL_FULL)
    assert code == 1, err
    data = json.loads(out)
    assert data["kind"] == FLEET_KIND and data["schema_version"] == 1
    assert FleetReport.model_validate(data).groups[0].separations[0].probes


def test_strings_from_the_files_are_escaped_in_the_text(tmp_path: Path) -> None:
    hostile = _new_report(tmp_path, hostname="evil\x1b]0;pwned\x07\nnext")
    code, out, err = _cli(hostile)
    assert code == 0, err
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b]0;pwned\\x07\\nnext@" in out


def test_the_map_has_a_row_per_machine_and_a_share_per_probe_family() -> None:
    rows = map_rows(fleet_report([AMD_FULL, INTEL_FULL, AMD_PORTABLE, INTEL_PORTABLE]))
    assert len(rows) == 4 and len({r.group for r in rows}) == 2
    differing = [r for r in rows if any(s is not None and s < 1 for s in r.shares.values())]
    assert len(differing) == 1 and differing[0].shares["training"] == 0.0 and differing[0].shares["matmul"] == 1.0


def test_a_large_fleet_is_drawn_one_row_per_class(tmp_path: Path) -> None:
    rows = [MachineRow(source=str(i), kind="prometheus", hostname=f"h{i}", manifest_digest=None,
                       envlock_version="0.1", profile="default", numeric_class="1" * 12 if i % 3 else "2" * 12)
            for i in range(200)]
    assert [r.label for r in map_rows(analyse(rows))] == ["default class 111111111111 (133 machines)",
                                                          "default class 222222222222 (67 machines)"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    if not IN_CI:  # CI installs envlock[plot]: there a missing matplotlib fails
        pytest.importorskip("matplotlib")
    out = tmp_path / "fleet.png"
    code, _, err = _cli("--plot", out, AMD_FULL, INTEL_FULL, AMD_PORTABLE)
    assert code == 1, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_labels_from_the_files_are_neither_mathtext_nor_control_characters(tmp_path: Path) -> None:
    if not IN_CI:
        pytest.importorskip("matplotlib")
    hostile = _new_report(tmp_path, hostname="$\\frac{a}{$" + "\x1b[2J" + "x" * 200)
    out = tmp_path / "map.png"
    code, _, err = _cli("--plot", out, hostile, AMD_FULL)
    assert code == 1 and out.read_bytes()[:4] == b"\x89PNG", err
    (label, *_) = [r.label for r in map_rows(fleet_report([hostile]))]
    assert "\x1b" not in label and "\\$\\frac" in label and len(label.replace("\\$", "$")) <= 60


@pytest.mark.processes("an interpreter where matplotlib cannot be imported")
def test_plot_without_matplotlib_is_one_line_and_exit_3(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['envlock', 'fleet', '--plot', sys.argv[1], "
            "sys.argv[2]]; from envlock.__main__ import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png"), str(AMD_FULL)], capture_output=True,
                          text=True, timeout=120, cwd=REPO_ROOT, check=False)
    assert proc.returncode == 3 and "pip install 'envlock[plot]'" in one_error_line(proc)
    assert not (tmp_path / "x.png").exists() and proc.stdout == ""


# ---------------------------------------------------------------- bad input


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.json"
    with huge.open("wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: past the 16 MiB bound without using the disk
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    text = tmp_path / "text.json"
    text.write_text("not json {", encoding="utf-8")
    return {
        "not JSON": text,
        "directory": tmp_path / "dir",
        "FIFO": fifo,
        "huge": huge,
        "a JSON list": listed,
        "an explain report": INTEL_DIR / "explain-of-amd-epyc-zen4-2vcpu.json",
        "a manifest": DATA_DIR / "manifests" / "amd_epyc_zen4_2vcpu_tf2.21.0.json",
        "missing": tmp_path / "missing.json",
    }


def test_each_bad_file_is_one_bad_file_error_naming_it(tmp_path: Path) -> None:
    for what, path in _bad_files(tmp_path).items():
        with pytest.raises(BadFileError) as caught:
            read_rows([AMD_FULL, path])
        assert str(caught.value).startswith(f"{path}: "), what
        assert "\n" not in str(caught.value)
        rows, problems = read_rows([AMD_FULL, path, INTEL_FULL], keep_going=True)
        assert len(rows) == 2 and len(problems) == 1 and problems[0].startswith(f"{path}: "), what


def test_a_golden_whose_recorded_class_is_not_its_outputs_class_is_refused(tmp_path: Path) -> None:
    edited = _json(AMD_FULL)
    edited["numeric_class"] = "0" * 12
    with pytest.raises(IntegrityError, match="numeric_class 000000000000 is not the class"):
        read_rows([write_json(tmp_path / "edited.json", reseal(edited))])


def test_a_bad_file_stops_the_command_with_exit_2_and_keep_going_reads_the_others(tmp_path: Path) -> None:
    bad = write_json(tmp_path / "bad.json", {"kind": "envlock.manifest"})
    code, out, err = _cli(AMD_PORTABLE, bad, INTEL_PORTABLE)
    assert code == 2 and str(bad) in _one_line(err) and out == ""
    code, out, err = _cli("--keep-going", "--json", AMD_PORTABLE, bad, INTEL_PORTABLE)
    data = json.loads(out)
    assert code == 2 and data["files"] == 2 and len(data["groups"][0]["classes"]) == 1
    assert [str(bad) in p for p in data["problems"]] == [True]


def test_a_golden_edited_where_the_row_does_not_look_fails_its_full_load_when_measured(tmp_path: Path) -> None:
    edited = _json(AMD_FULL)
    edited["created_at"] = "2030-01-01T00:00:00+00:00"  # not a field a row reads; the digest no longer matches
    path = write_json(tmp_path / "edited.json", edited)
    with pytest.raises(IntegrityError, match="edited.json"):
        fleet_report([INTEL_FULL, path])
    report = fleet_report([INTEL_FULL, path], keep_going=True)
    assert report.exit_code == 2 and "edited.json" in report.problems[0]
    assert report.groups[0].separations[0].probes  # still known from the digests, without ULPs
    assert all(g.max_ulp is None for g in report.groups[0].separations[0].probes)



def test_the_example_in_docs_fleet_md_is_what_the_command_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = (REPO_ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    block = doc.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    command = (block[0] + " " + block[1]).replace("\\", " ").split()
    assert command[:3] == ["$", "envlock", "fleet"]
    monkeypatch.chdir(REPO_ROOT)  # the paths are printed as given
    code, out, err = _cli(*command[3:])
    assert code == 1, err
    assert out == "\n".join(block[2:]) + "\n"


def test_a_class_known_only_against_its_golden_s_class_is_separated_from_that_one(tmp_path: Path) -> None:
    amd = _row(AMD_FULL).numeric_class
    intel = [_new_report(tmp_path, f"i{n}.json", manifest_digest="sha256:" + f"{n}" * 64) for n in range(2)]
    odd = _new_report(tmp_path, "odd.json", numeric_class="0dd0dd0dd0dd", manifest_digest="sha256:" + "d" * 64)
    (group,) = fleet_report([AMD_FULL, *intel, odd]).groups
    assert [len(c.machines) for c in group.classes] == [2, 1, 1]  # Intel is the largest: the reference
    by_other = {s.other: s for s in group.separations}
    assert by_other[amd].reference == group.classes[0].numeric_class and by_other[amd].known
    assert by_other["0dd0dd0dd0dd"].reference == amd and by_other["0dd0dd0dd0dd"].known  # what its report measured
    # Against Intel, derived through AMD: it differs from AMD where Intel does, so each of those probes may
    # or may not differ from Intel; every other probe agrees with both.
    (view,) = [m for m in group.machines if m.numeric_class == "0dd0dd0dd0dd"]
    assert view.agreement == "unknown" and not view.differs and set(view.unknown) == _drifting(OLD_REPORT)
    (amd_view,) = [m for m in group.machines if m.numeric_class == amd]
    assert amd_view.agreement == "differs" and set(amd_view.differs) == _drifting(OLD_REPORT)


def test_outputs_whose_bytes_differ_outside_the_samples_are_not_measured_never_zero_ulp(tmp_path: Path) -> None:
    edited = _json(AMD_FULL)
    probe = next(p for p in edited["probes"] if p["name"] == "hw.reciprocal")
    probe["outputs"][0]["sha256"] = "sha256:" + "e" * 64  # the samples stay the same
    other = write_json(tmp_path / "other.json", reseal(edited))
    (separation,) = fleet_report([AMD_FULL, other]).groups[0].separations
    assert [(g.probe, g.max_ulp) for g in separation.probes] == [("hw.reciprocal", None)]


def test_labels_from_another_reader_are_escaped_too() -> None:
    rows = [MachineRow(source="prometheus", kind="prometheus", hostname=f"h{n}\x1b[31m", manifest_digest=None,
                       envlock_version="0.1", profile="default\u202e", numeric_class=cls)
            for n, cls in enumerate(["a\x1b]0;x\x07", "b"])]
    text = render_fleet(analyse(rows))
    assert all(line.isprintable() for line in text.splitlines())
    assert "\\x1b]0;x\\x07" in text and "\\u202e" in text


def test_keep_going_with_every_file_bad_is_exit_2_and_says_what_was_not_read(tmp_path: Path) -> None:
    bad = write_json(tmp_path / "bad.json", [])
    code, out, _ = _cli("--keep-going", bad)
    assert code == 2 and "1 file not read:" in out and str(bad) in out


@pytest.mark.processes("the share of the files read by envlock.fleet.worker on another core")
def test_reading_on_two_cores_gives_the_rows_and_problems_of_one_in_the_order_given(tmp_path: Path,
                                                                                    monkeypatch: pytest.MonkeyPatch
                                                                                    ) -> None:
    import envlock.fleet.files as files_mod

    monkeypatch.setattr(files_mod, "PARALLEL_FROM", 2)
    real = [REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu.json", REPO_ROOT / "goldens" / "cpu-reference.json",
            DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" / "verify-of-amd-epyc-zen4-2vcpu.json",
            REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu-portable.json"]
    bad_here, bad_there = tmp_path / "first.json", tmp_path / "second.json"
    bad_here.write_text("[]")
    bad_there.write_text('{"kind": "envlock.other"}')
    paths = [bad_here, *real, bad_there]
    one = read_rows(paths, keep_going=True, jobs=1)
    read_here: list[str] = []
    real_read_one = files_mod.read_one
    monkeypatch.setattr(files_mod, "read_one", lambda p: (read_here.append(p), real_read_one(p))[1])
    two = read_rows(paths, keep_going=True, jobs=2)  # the last half (with bad_there) in the worker
    assert read_here == [str(p) for p in paths[:3]]  # the worker read its share: nothing fell back to here
    assert two == one and len(one[0]) == 4 and len(one[1]) == 2
    assert [r.source for r in two[0]] == [str(p) for p in real]
    with pytest.raises(BadFileError, match="first.json"):  # without --keep-going: the first bad file given
        read_rows(paths, jobs=2)
    with pytest.raises(BadFileError, match="second.json: not an envlock golden"):  # ... even from the worker
        read_rows(paths[1:], jobs=2)
    assert fleet_report(paths[1:-1], jobs=2) == fleet_report(paths[1:-1], jobs=1)
