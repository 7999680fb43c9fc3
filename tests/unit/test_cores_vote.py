"""The per-CPU vote of `envlock cores` (envlock.corecheck), pure: 1, 2, 3 and 8 CPUs, the CPU list
parser and the renderer. The integration test (tests/integration/test_cores.py) runs real probes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.corecheck import CoresReport, build_report, cpu_ranges, parse_cpu_list, run_key, vote_probe
from envlock.display import render_cores
from envlock.errors import BAD_INPUT, DRIFT, ENVIRONMENT, OK, BadInputError

GOOD = run_key("ok", [("out", "a" * 64), ("grad", "b" * 64)])
FLIPPED = run_key("ok", [("out", "c" * 64), ("grad", "b" * 64)])
OTHER = run_key("ok", [("out", "d" * 64), ("grad", "b" * 64)])


def machine(n: int, *, bad: dict[int, list[object]] | None = None, probes: tuple[str, ...] = ("hw.a", "hw.b"),
            repeat: int = 1) -> dict[int, dict[str, list[object]]]:
    """``n`` CPUs giving GOOD on every probe, except ``bad[cpu]`` (the runs of hw.a there)."""
    runs: dict[int, dict[str, list[object]]] = {cpu: {p: [GOOD] * repeat for p in probes} for cpu in range(n)}
    for cpu, keys in (bad or {}).items():
        runs[cpu]["hw.a"] = keys
    return runs


def report(runs: dict[int, dict[str, list[object]]], repeat: int = 1) -> CoresReport:
    return build_report(runs, probes=sorted(next(iter(runs.values()))), repeat=repeat)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_identical_cpus_agree(n: int) -> None:
    r = report(machine(n))
    assert r.exit_code == OK
    assert r.verdict == ("single" if n == 1 else "agree")
    assert all(h.health == "healthy" for h in r.health) and [h.cpu for h in r.health] == list(range(n))
    assert all(v.status == "agree" and v.groups == [list(range(n))] for v in r.votes)
    assert (f"all {n} CPUs agree on 2 probes" in r.summary) == (n > 1)


def test_one_cpu_says_there_is_nothing_to_compare_with() -> None:
    assert "no other CPU to compare it with" in report(machine(1)).summary


@pytest.mark.parametrize("n", [3, 8])
def test_the_majority_names_the_deviating_cpu(n: int) -> None:
    r = report(machine(n, bad={1: [FLIPPED]}))
    assert (r.verdict, r.exit_code) == ("deviates", DRIFT)
    assert r.summary == "CPU 1 deviates from the others on probes hw.a: suspect a defective core"
    (vote,) = [v for v in r.votes if v.probe == "hw.a"]
    assert vote.status == "majority" and vote.deviating == [1] and vote.outputs == ["out"]
    assert vote.groups == [[c for c in range(n) if c != 1], [1]]
    assert {h.cpu: h.health for h in r.health} == {c: "suspect" if c == 1 else "healthy" for c in range(n)}
    assert r.health[1].deviates_on == ["hw.a"]


def test_two_cpus_that_disagree_cannot_say_which_is_wrong() -> None:
    r = report(machine(2, bad={1: [FLIPPED]}))
    assert (r.verdict, r.exit_code) == ("undecided", DRIFT)
    assert r.summary.startswith("CPUs 0 and 1 disagree on probes hw.a: with 2 CPUs a vote cannot say which one")
    assert "3 or more CPUs" in r.summary and "re-run" in r.summary
    assert [h.health for h in r.health] == ["undecided", "undecided"]
    assert r.votes[0].status == "split" and r.votes[0].deviating == [0, 1]


def test_eight_cpus_two_bad_cores_on_different_probes() -> None:
    runs = machine(8, bad={3: [FLIPPED]})
    runs[6]["hw.b"] = [OTHER]
    r = report(runs)
    assert r.verdict == "deviates"
    assert "CPU 3 deviates from the others on probes hw.a" in r.summary
    assert "CPU 6 deviates from the others on probes hw.b" in r.summary
    assert [h.cpu for h in r.health if h.health == "suspect"] == [3, 6]


def test_eight_cpus_split_four_four_has_no_majority() -> None:
    r = report(machine(8, bad={c: [FLIPPED] for c in (4, 5, 6, 7)}))
    assert r.verdict == "undecided" and "no majority of the 8 CPUs" in r.summary
    assert r.votes[0].groups == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_three_cpus_all_different_have_no_majority() -> None:
    r = report(machine(3, bad={1: [FLIPPED], 2: [OTHER]}))
    assert r.verdict == "undecided" and [h.health for h in r.health] == ["undecided"] * 3


def test_a_cpu_whose_own_repeats_differ_deviates() -> None:
    r = report(machine(3, bad={2: [GOOD, FLIPPED, GOOD]}, repeat=3), repeat=3)
    assert r.verdict == "deviates" and r.health[2].deviates_on == ["hw.a"]
    assert r.votes[0].nondeterministic == [2]


def test_a_probe_nondeterministic_everywhere_is_not_a_core_signal() -> None:
    r = report(machine(3, bad={c: [GOOD, FLIPPED] for c in range(3)}, repeat=2), repeat=2)
    assert r.votes[0].status == "not_compared" and r.verdict == "agree"  # hw.b still compared
    assert any("nondeterministic probe" in n for n in r.notes)


def test_failing_everywhere_alike_is_not_compared_but_failing_on_one_cpu_deviates() -> None:
    error = run_key("error", reason="probe failed: ValueError: x")
    assert report(machine(3, bad={c: [error] for c in range(3)})).votes[0].status == "not_compared"
    r = report(machine(3, bad={0: [error]}))
    assert r.summary.startswith("CPU 0 deviates") and r.votes[0].outputs == ["grad", "out"]


def test_nothing_compared_is_an_environment_problem() -> None:
    skipped = run_key("skipped", reason="no GPU")
    runs = {c: {"gpu.a": [skipped]} for c in range(2)}
    r = build_report(runs, probes=["gpu.a"], repeat=1)  # type: ignore[arg-type]
    assert (r.verdict, r.exit_code) == ("nothing_compared", ENVIRONMENT)


def test_a_probe_missing_from_one_cpu_counts_as_an_error_there() -> None:
    runs = machine(3)
    del runs[2]["hw.b"]
    r = build_report(runs, probes=["hw.a", "hw.b"], repeat=1)  # type: ignore[arg-type]
    assert r.health[2].deviates_on == ["hw.b"]


def test_vote_groups_largest_first_then_lowest_cpu() -> None:
    vote = vote_probe("p", {0: [FLIPPED], 1: [GOOD], 2: [GOOD], 3: [OTHER]})
    assert vote.groups == [[1, 2], [0], [3]] and vote.status == "split"


def test_the_report_survives_json() -> None:
    r = report(machine(3, bad={1: [FLIPPED]}))
    assert CoresReport.model_validate_json(r.model_dump_json()) == r


@pytest.mark.parametrize(("text", "cpus"), [("0,1", [0, 1]), ("0-3,8", [0, 1, 2, 3, 8]), ("3, 1,1", [1, 3]),
                                           ("2-2", [2])])
def test_cpu_lists(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text, range(16)) == cpus


@pytest.mark.parametrize(("text", "says"), [
    ("", "expected CPU numbers"), ("0,,1", "expected CPU numbers"), ("x", "'x' is not a CPU number"),
    ("-1", "is not a CPU number"), ("1_0", "is not a CPU number"), ("\uff11", "is not a CPU number"),
    ("3-1", "is not a range"), ("0-99999", "is not a range"), ("0,5", "CPU 5 is not one this process may run on"),
    ("4-7", "CPU 4-7 is not one this process may run on (its CPU affinity: 0-3)"),
])
def test_bad_cpu_lists_are_one_line(text: str, says: str) -> None:
    with pytest.raises(BadInputError) as info:
        parse_cpu_list(text, range(4))
    assert says in str(info.value) and "\n" not in str(info.value)


def test_cpu_ranges() -> None:
    assert cpu_ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8" and cpu_ranges([]) == ""


def test_render_names_the_cpus_and_outputs_and_escapes() -> None:
    runs = machine(3, bad={1: [run_key("ok", [("out\x1b[2J", "c" * 64), ("grad", "b" * 64)])]})
    text = render_cores(build_report(runs, probes=["hw.a", "hw.b"], repeat=1,  # type: ignore[arg-type]
                                     timings={"total_seconds": 21.0, "per_cpu_seconds": 7.0, "import_seconds": 4.5}))
    first = text.splitlines()[0]
    assert first == "CPU 1 deviates from the others on probes hw.a: suspect a defective core"
    assert "off the majority" in text and "CPU 0,2 | CPU 1" in text
    assert "\x1b" not in text and "\\x1b[2J" in text
    assert "1 of 2 probes identical on every CPU checked: hw (1)" in text
    assert "CPU 1: suspect (deviates on hw.a)" in text and "21.0 s (7.0 s per CPU" in text


@pytest.mark.parametrize(("args", "says"), [
    (["--cpus", "99999"], "is not a range of CPUs"),
    (["--cpus", "0,x"], "'x' is not a CPU number"),
    (["--cpus", ""], "expected CPU numbers"),
    (["--probes", "no.such_probe"], "unknown probe(s): no.such_probe"),
    (["--probes", ","], "--probes needs at least one probe name"),
    (["--repeat", "0"], "'--repeat'"),
    (["--jobs", "0"], "'--jobs'"),
])
def test_the_command_refuses_bad_input_in_one_line_before_any_probe_runs(args: list[str], says: str) -> None:
    result = CliRunner().invoke(app, ["cores", *args])
    lines = result.stderr.splitlines()
    assert result.exit_code == BAD_INPUT, (result.exit_code, result.stderr, result.exception)
    assert len(lines) == 1 and lines[0].startswith("envlock: error: ") and says in lines[0], result.stderr
