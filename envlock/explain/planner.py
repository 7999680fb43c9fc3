"""The intervention planner: which configurations could make this machine give the golden's bits.

Pure: from the golden (its manifest and lockdown), this machine's manifest and environment, it
derives candidate configurations for a fresh probe child; explain runs them. A candidate under
which a drifting probe is bitwise identical *proves* the cause. Candidates come only from
differences between the two sides, each from one family of ``envlock.explain.families`` (the
table ``FAMILIES``, in its order, ending with all of them together). Versions no setting can
change are listed apart (``version_differences``).

When no recorded difference explains a drift, the cause may be a variable envlock never records
(``envlock.explain.families.unrecorded``): ``minimal_unset`` bisects the suspects (delta debugging)
down to the variable, or the smallest set, whose unsetting restores the bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from envlock.explain.families import FAMILIES, Candidate, Sides
from envlock.models import Manifest

VERSIONED_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-keras", "keras", "numpy")


@dataclass
class Plan:
    candidates: list[Candidate]
    not_applicable: list[str]  # differences no setting on this machine can undo, and why
    version_differences: list[str]  # "tensorflow-cpu 2.15.1 -> 2.21.0": no setting changes these


def version_differences(golden: Manifest, here: Manifest) -> list[str]:
    """TensorFlow, Keras and numpy versions that differ: no environment setting changes these."""
    g = {d.name.lower(): d.version for d in golden.python.distributions}
    h = {d.name.lower(): d.version for d in here.python.distributions}
    out = [f"{name} {g.get(name) or 'absent'} -> {h.get(name) or 'absent'}" for name in VERSIONED_DISTRIBUTIONS
           if (name in g or name in h) and g.get(name) != h.get(name)]
    tf_g, tf_h = golden.tensorflow.version, here.tensorflow.version
    if tf_g and tf_h and tf_g != tf_h and not any(o.startswith("tensorflow") for o in out):
        out.append(f"tensorflow {tf_g} -> {tf_h}")
    if golden.numeric.numpy_version and here.numeric.numpy_version and \
            golden.numeric.numpy_version != here.numeric.numpy_version and not any(o.startswith("numpy") for o in out):
        out.append(f"numpy {golden.numeric.numpy_version} -> {here.numeric.numpy_version}")
    return out


def plan_interventions(golden_manifest: Manifest, golden_env: Mapping[str, str], here: Manifest,
                       here_env: Mapping[str, str]) -> Plan:
    """Every candidate configuration, most specific first, then all of them together: each family's
    proposal in the table's order."""
    sides = Sides(golden_manifest, golden_env, here, here_env)
    candidates: list[Candidate] = []
    not_applicable: list[str] = []
    for family in FAMILIES:
        proposal = family.propose(sides, candidates)
        candidates += proposal.candidates
        not_applicable += proposal.not_applicable
    return Plan(candidates, not_applicable, version_differences(golden_manifest, here))


# A batch of trials, each a set of variables to unset; per set: did the probe come back bitwise
# identical (True), not (False), or could it not be tried within the budget (None).
Trial = Callable[[list[tuple[str, ...]]], list[bool | None]]


@dataclass(frozen=True)
class Bisection:
    """What ``minimal_unset`` found."""

    restores: bool | None  # unsetting all of the names restores the bits (None: not tried, budget)
    cause: tuple[str, ...] | None  # the minimal set, itself tried and restoring: proved
    narrowed: tuple[str, ...]  # the smallest set known to restore (the cause, or where the budget ran out)
    trials: int  # sets asked for


class _OutOfBudget(Exception):
    pass


class _Search:
    def __init__(self, trial: Trial, parallel: bool) -> None:
        self.trial, self.parallel = trial, parallel
        self.known: dict[frozenset[str], bool] = {}
        self.asked = 0

    def ask(self, sets: list[tuple[str, ...]]) -> list[bool | None]:
        """Each set's result, asking only what is not known yet (None: not tried, the budget is spent)."""
        new = [s for s in dict.fromkeys(tuple(sorted(s)) for s in sets) if frozenset(s) not in self.known]
        if new:
            self.asked += len(new)
            for names, result in zip(new, self.trial(new), strict=True):
                if result is not None:
                    self.known[frozenset(names)] = result
        return [self.known.get(frozenset(s)) for s in sets]

    def one(self, names: tuple[str, ...]) -> bool:
        result = self.ask([names])[0]
        if result is None:
            raise _OutOfBudget
        return result

    def smallest_restoring(self) -> tuple[str, ...]:
        restoring = [tuple(sorted(s)) for s, ok in self.known.items() if ok]
        return min(restoring, key=lambda s: (len(s), s)) if restoring else ()

    def minimal(self, names: tuple[str, ...], context: tuple[str, ...]) -> tuple[str, ...]:
        """The part of ``names`` that must be unset, given that unsetting ``context + names`` restores."""
        if len(names) == 1:
            return names
        half = len(names) // 2
        first, second = names[:half], names[half:]
        if self.parallel:  # both halves at once: two children in the wall time of one
            self.ask([context + first, context + second])
        if self.one(context + first):
            return self.minimal(first, context)
        if self.one(context + second):
            return self.minimal(second, context)
        # Neither half alone: a variable from each is needed. Keep the second while shrinking the first.
        from_first = self.minimal(first, context + second)
        from_second = self.minimal(second, context + from_first)
        return from_first + from_second


def minimal_unset(names: Sequence[str], trial: Trial, *, parallel: bool = True) -> Bisection:
    """Delta debugging on values: unset all of ``names``; if that restores the bits, unset half and keep
    the half that still restores, recursing, until one variable (or, where variables only act together,
    the smallest set) is left. ``parallel`` asks for both halves at once (two children, same wall time
    on two workers). The result is proved only by a trial of exactly that set: it is asked for when the
    search did not end on one."""
    search = _Search(trial, parallel)
    everything = tuple(sorted(names))
    if not everything:
        return Bisection(False, None, (), 0)
    try:
        if not search.one(everything):
            return Bisection(False, None, (), search.asked)
        found = tuple(sorted(search.minimal(everything, ())))
        if not search.one(found):  # variables that act only together in ways halving missed
            return Bisection(True, None, search.smallest_restoring(), search.asked)
        return Bisection(True, found, found, search.asked)
    except _OutOfBudget:
        return Bisection(search.known.get(frozenset(everything)), None, search.smallest_restoring(), search.asked)
