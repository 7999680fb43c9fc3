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
from envlock.results import ProbeRun, parse_run
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


def _run_of(path: Path, probe: str) -> ProbeRun:
    record = load_golden(path).probe(probe)
    assert record is not None
    return parse_run({"status": "ok", "seconds": 0.0,
                      "outputs": [o.model_dump(mode="json") for o in record.outputs]})  # type: ignore[misc]


@pytest.mark.parametrize("machine", sorted(PORTABLE))
def test_explain_says_a_portable_golden_would_travel_from_one_machines_run(machine: str) -> None:
    """explain's one-machine proof, fed each vendor's recorded runs: under the profile hw.reciprocal is
    IEEE-exact; on the default path it stays vendor-specific; probes without a reference defer to the
    two-vendor measurement or say why they are not covered."""
    from envlock.explain.portable import portable_check
    from envlock.profiles import latest

    profile = latest("portable", "2.21.0")
    seed = load_golden(PORTABLE[machine]).lockdown.seed
    exact = portable_check("hw.reciprocal", seed, _run_of(PORTABLE[machine], "hw.reciprocal"), profile)
    assert exact.status == "ieee-exact" and "portable under --portable (IEEE-exact here" in exact.detail
    default = portable_check("hw.rsqrt", seed, _run_of(DEFAULT[machine], "hw.rsqrt"), profile)
    assert default.status == "vendor-specific" and "rsqrt, rsqrt_near_one differ" in default.detail
    covered = portable_check("hw.softmax_grad", seed, _run_of(PORTABLE[machine], "hw.softmax_grad"), profile)
    assert covered.status == "covered"
    uncovered = portable_check("numpy.matmul", seed, _run_of(PORTABLE[machine], "numpy.matmul"), profile)
    assert uncovered.status == "not covered" and "numpy" in uncovered.detail
    assert portable_check("hw.rsqrt", seed, None, profile).status == "not run"
