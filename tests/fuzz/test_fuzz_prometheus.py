"""`envlock fleet --prometheus`'s reader of Prometheus answers (envlock.fleet.prometheus), fed arbitrary
bytes, arbitrary JSON and mutations of Prometheus 2.42's real answers: only one-line envlock errors,
and every line it renders printable."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from envlock.errors import EnvlockError
from envlock.fleet import prometheus as fp
from envlock.fleet.picture import analyse
from envlock.fleet.render import render_fleet
from tests.fuzz.helpers import FuzzInput, arbitrary_bytes, dump, examples, json_paths, json_values, mutated
from tests.helpers import DATA_DIR

_ANSWERS = [json.loads((DATA_DIR / "records" / f"prometheus-2.42-query-{q}.json").read_text())
            for q in ("envlock_numeric_class", "envlock_golden_info")]
answer_mutations = st.one_of(*(mutated(a, json_paths(a), targeted=False) for a in _ANSWERS)).map(
    lambda d: FuzzInput("prometheus answer mutation", dump(d)))
any_answer = st.one_of(arbitrary_bytes, json_values.map(lambda v: FuzzInput("json", json.dumps(v).encode())),
                       answer_mutations)


@examples(200)
@given(classes=any_answer, goldens=any_answer)
def test_any_answer_is_a_picture_or_one_line_error(classes: FuzzInput, goldens: FuzzInput) -> None:
    base = "http://prometheus:9090"
    try:
        fleet = fp.build_fleet(base, fp.parse_vector(classes.content, base=base),
                               fp.parse_vector(goldens.content, base=base))
    except EnvlockError as exc:
        assert "\n" not in str(exc) and base in str(exc)
        return
    report = analyse(fp.machine_rows(fleet))
    assert all(line.isprintable() for line in render_fleet(report).splitlines())
    json.dumps(report.model_dump(mode="json"))
