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
