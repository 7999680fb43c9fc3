"""IEEE-754 references of the hardware-arithmetic probes, checked against both vendors' recorded goldens.

By default reciprocal and rsqrt are not IEEE-exact on either CPU (Eigen's approximate instructions), and
differ between them; under the portable profile both CPUs give exactly the IEEE bits, which is why their
goldens agree. Division and sqrt are IEEE-exact everywhere (the control).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.golden import load_golden
from envlock.probes.ieee import REFERENCES, check_outputs, check_run
from envlock.probes.registry import all_probes
from tests.helpers import DATA_DIR, REPO_ROOT

DEFAULT = {"amd-epyc-zen4": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu.json",
           "intel-xeon-amx": DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" / "golden-full-suite.json"}
PORTABLE = {"amd-epyc-zen4": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu-portable.json",
            "intel-xeon-amx": REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu-portable.json"}


def _checks(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    golden = load_golden(path)
    out = {}
    for record in golden.probes:
        check = check_run(record.name, golden.lockdown.seed, record.outputs)
        if check is not None:
            out[record.name] = (check.exact, check.inexact)
    return out


@pytest.mark.parametrize("machine", sorted(DEFAULT))
def test_the_default_path_is_not_ieee_exact_where_eigen_approximates(machine: str) -> None:
    checks = _checks(DEFAULT[machine])
    assert checks["hw.reciprocal"] == ([], ["reciprocal", "reciprocal_1_to_2"])
    assert checks["hw.rsqrt"] == ([], ["rsqrt", "rsqrt_near_one"])
    assert checks["hw.divide_sqrt"] == (["divide", "divide_no_nan", "sqrt"], [])


@pytest.mark.parametrize("machine", sorted(PORTABLE))
def test_under_the_portable_profile_both_vendors_give_the_ieee_bits(machine: str) -> None:
    checks = _checks(PORTABLE[machine])
    assert set(checks) == set(REFERENCES)
    assert all(not inexact for _, inexact in checks.values()), checks


def test_references_name_real_probes_and_their_outputs() -> None:
    probes = all_probes()
    golden = load_golden(PORTABLE["amd-epyc-zen4"])
    for name, build in REFERENCES.items():
        assert name in probes
        assert sorted(build(golden.lockdown.seed)) == sorted(o.name for o in golden.probe(name).outputs)  # type: ignore[union-attr]


def test_a_probe_without_a_reference_and_a_changed_output() -> None:
    assert check_outputs("hw.softmax_grad", 42, {}) is None
    check = check_outputs("hw.reciprocal", 42, {"reciprocal": "sha256:" + "0" * 64})
    assert check is not None and not check.ieee_exact and check.inexact == ["reciprocal", "reciprocal_1_to_2"]
