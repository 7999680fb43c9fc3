"""The closed vocabularies are defined once (envlock.vocab) and every part names that type."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from envlock import vocab

ROOT = Path(__file__).resolve().parents[2] / "envlock"


def test_tuples_follow_their_literals() -> None:
    assert vocab.PROBE_GROUPS == get_args(vocab.ProbeGroup) == ("stable", "canary", "hardware")
    assert vocab.RUN_STATUSES == get_args(vocab.RunStatus) == ("ok", "skipped", "error")
    assert get_args(vocab.CandidateKind) == vocab.CANDIDATE_KINDS
    assert "affinity" in vocab.CANDIDATE_KINDS


def _literal_sets(path: Path) -> list[tuple[int, frozenset[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
            elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            values = [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            if len(values) == len(elts):
                found.append((node.lineno, frozenset(values)))
    return found


def test_no_module_repeats_a_vocabulary() -> None:
    # A second copy of a vocabulary's Literal is how a new word gets added in one place and missed in
    # another (the group was spelled out in golden.py as well as the registry).
    vocabularies = {frozenset(get_args(t)): name for name, t in vars(vocab).items()
                    if name[0].isupper() and not name.isupper() and get_args(t)}
    repeats = [f"{path.relative_to(ROOT.parent)}:{line} repeats vocab.{vocabularies[values]}"
               for path in sorted(ROOT.rglob("*.py")) if path.name != "vocab.py"
               for line, values in _literal_sets(path) if values in vocabularies]
    assert repeats == []


def test_every_probe_group_has_its_row() -> None:
    # A new group is one word in ProbeGroup and one row in GROUPS: everything else reads the row.
    assert tuple(vocab.GROUPS) == vocab.PROBE_GROUPS
    assert len({rule.precedence for rule in vocab.GROUPS.values()}) == len(vocab.GROUPS), "precedences must differ"
    default = vocab.GROUPS[vocab.DEFAULT_PROBE_GROUP]
    assert default.precedence == max(rule.precedence for rule in vocab.GROUPS.values()), (
        "the default group's rule applies when nothing of higher precedence drifted")


def test_the_ruling_group_is_the_drifted_one_of_lowest_precedence() -> None:
    assert vocab.ruling_group([]) == vocab.DEFAULT_PROBE_GROUP
    assert vocab.ruling_group(["canary", "hardware"]) == "hardware"
    assert vocab.ruling_group(["hardware", "stable", None, "not a group"]) == "stable"


def _group_comparisons(path: Path) -> list[int]:
    """Lines where a group is compared with one group's word (``v.group == "stable"``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            words = [s.value for s in sides if isinstance(s, ast.Constant)]
            if any(w in vocab.PROBE_GROUPS for w in words) and "group" in ast.unparse(node).lower():
                found.append(node.lineno)
    return found


def test_no_module_singles_out_a_group_by_name() -> None:
    """What a group means lives in its row (vocab.GROUPS), not in an ``if group == "hardware"`` elsewhere."""
    found = [f"{path.relative_to(ROOT.parent)}:{line}" for path in sorted(ROOT.rglob("*.py"))
             for line in _group_comparisons(path)]
    assert found == []
