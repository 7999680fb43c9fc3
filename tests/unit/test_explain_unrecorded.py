"""explain's search for a cause nobody recorded: which variables are suspects, and the bisection
that narrows them down (pure: the trials are predicates on the set of variables unset)."""

from __future__ import annotations

import math

import pytest

from envlock.explain.families.unrecorded import CHILD_NEEDS, unrecorded_variables, unset_candidate
from envlock.explain.planner import Bisection, minimal_unset

NAMES = tuple(f"VAR_{i:02d}" for i in range(37))


class Oracle:
    """A trial that restores the bits when ``needed`` are all unset; records what it was asked,
    and answers None (not tried: the budget is spent) after ``budget`` sets."""

    def __init__(self, *needed: str, budget: int | None = None) -> None:
        self.needed, self.budget = set(needed), budget
        self.asked: list[tuple[str, ...]] = []
        self.batches: list[int] = []

    def __call__(self, sets: list[tuple[str, ...]]) -> list[bool | None]:
        self.batches.append(len(sets))
        out: list[bool | None] = []
        for names in sets:
            if self.budget is not None and len(self.asked) >= self.budget:
                out.append(None)
                continue
            self.asked.append(names)
            out.append(bool(self.needed) and self.needed <= set(names))
        return out

    def proved(self, found: Bisection) -> bool:
        """The cause is a set that was itself tried and restored."""
        return found.cause is not None and found.cause in self.asked and self.needed <= set(found.cause)


@pytest.mark.parametrize("culprit", [NAMES[0], NAMES[17], NAMES[-1]])
def test_one_variable_among_many_is_found_in_logarithmic_trials(culprit: str) -> None:
    oracle = Oracle(culprit)
    found = minimal_unset(NAMES, oracle)
    assert found.restores is True and found.cause == (culprit,) and oracle.proved(found)
    # Unset all, then both halves at each of ceil(log2 37) levels.
    assert found.trials == len(oracle.asked) <= 1 + 2 * math.ceil(math.log2(len(NAMES)))


def test_without_parallel_trials_one_set_is_asked_at_a_time() -> None:
    oracle = Oracle(NAMES[3])
    found = minimal_unset(NAMES, oracle, parallel=False)
    assert found.cause == (NAMES[3],) and set(oracle.batches) == {1}
    assert len(oracle.asked) <= 1 + 2 * math.ceil(math.log2(len(NAMES)))


def test_variables_that_only_act_together_give_the_smallest_set() -> None:
    oracle = Oracle(NAMES[2], NAMES[30])
    found = minimal_unset(NAMES, oracle)
    assert found.cause == (NAMES[2], NAMES[30]) and oracle.proved(found)


def test_three_together_across_the_halves() -> None:
    oracle = Oracle(NAMES[0], NAMES[19], NAMES[36])
    found = minimal_unset(NAMES, oracle)
    assert found.cause == (NAMES[0], NAMES[19], NAMES[36]) and oracle.proved(found)


def test_nothing_restores_costs_one_trial() -> None:
    oracle = Oracle()  # no variable set here matters: the drift is the hardware's
    found = minimal_unset(NAMES, oracle)
    assert found == Bisection(restores=False, cause=None, narrowed=(), trials=1)
    assert oracle.asked == [tuple(sorted(NAMES))]


def test_no_suspects_asks_nothing() -> None:
    oracle = Oracle("X")
    assert minimal_unset((), oracle) == Bisection(restores=False, cause=None, narrowed=(), trials=0)
    assert oracle.asked == []


@pytest.mark.parametrize("budget", [0, 1, 3, 6])
def test_a_spent_budget_stops_the_search_with_the_smallest_set_known_to_restore(budget: int) -> None:
    oracle = Oracle(NAMES[17], budget=budget)
    found = minimal_unset(NAMES, oracle)
    assert found.cause is None  # never claimed without its own trial
    if budget == 0:
        assert found.restores is None and found.narrowed == ()
        return
    assert found.restores is True and NAMES[17] in found.narrowed and found.narrowed in oracle.asked
    assert len(found.narrowed) <= math.ceil(len(NAMES) / 2 ** max(0, (budget - 1) // 2))


def test_a_single_suspect_is_proved_by_its_own_trial() -> None:
    oracle = Oracle("GLIBC_TUNABLES")
    found = minimal_unset(["GLIBC_TUNABLES"], oracle)
    assert found.cause == ("GLIBC_TUNABLES",) and oracle.asked == [("GLIBC_TUNABLES",)]


def test_suspects_are_every_variable_the_golden_never_saw_less_what_the_child_needs() -> None:
    here = {"PATH": "/bin", "HOME": "/home/alice", "LC_ALL": "C.UTF-8", "PYTHONPATH": "/src", "TMPDIR": "/tmp",
            "ONEDNN_VERBOSE": "1", "TF2_BEHAVIOR": "1", "ENVLOCK_GOLDEN": "/g.json",
            "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-FMA", "AWS_SECRET_ACCESS_KEY": "abc123", "my_lower": "x",
            "LD_PRELOAD": "/lib/libm-other.so", "OMP_NUM_THREADS": "1", "TF_ENABLE_ONEDNN_OPTS": "0"}
    golden = ["TF_ENABLE_ONEDNN_OPTS"]
    assert unrecorded_variables(golden, here) == ("AWS_SECRET_ACCESS_KEY", "GLIBC_TUNABLES", "LD_PRELOAD",
                                                  "OMP_NUM_THREADS", "my_lower")
    assert len(CHILD_NEEDS) < 25  # small on purpose: everything else is a suspect


def test_unset_candidates_carry_names_never_values() -> None:
    one = unset_candidate(["GLIBC_TUNABLES"], total=40, trial=1)
    assert one.id == "unset GLIBC_TUNABLES" and one.env == {"GLIBC_TUNABLES": None} and one.size == 1
    assert one.kind == "unrecorded" and "values are never shown" in one.reason
    secret = unset_candidate(["B_TOKEN", "A"], total=40, trial=2)
    assert secret.id == "unset A + unset B_TOKEN" and secret.size == 2
    assert "B_TOKEN look(s) like a credential" in secret.reason
    everything = unset_candidate(NAMES, total=len(NAMES), trial=3)
    assert everything.id == f"unset all {len(NAMES)} variables not in the golden" and everything.size == len(NAMES)
    some = unset_candidate(NAMES[:9], total=len(NAMES), trial=4)
    assert some.id == f"unset 9 of the {len(NAMES)} variables not in the golden (trial 4)"
    assert set(some.env) == set(NAMES[:9]) and set(some.env.values()) == {None}
