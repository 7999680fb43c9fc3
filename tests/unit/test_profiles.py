"""The portable numerics profile: its table, its evidence from both vendors, and the goldens' use of it.

The cross-vendor proof is replayed from recorded goldens (tests/unit/test_cross_vendor_recorded.py's
``replay``): the Intel Xeon's golden recorded under the profile against the AMD EPYC Zen 4's outputs
under it, and the reverse. The integration test (tests/integration/test_portable.py) does it for real on
whichever machine CI runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from envlock.cli import app
from envlock.environ import partition_environment
from envlock.errors import BadFileError, BadInputError
from envlock.golden import ProfileRecord, golden_profile, load_golden, save_golden, seal
from envlock.models import check_environment
from envlock.probes.registry import all_probes
from envlock.profiles import all_profiles, latest, lookup
from tests.helpers import DATA_DIR, REPO_ROOT
from tests.recorded import replay

PORTABLE_GOLDENS = {
    "amd-epyc-zen4": REPO_ROOT / "goldens" / "amd-epyc-zen4-2vcpu-portable.json",
    "intel-xeon-amx": REPO_ROOT / "goldens" / "intel-xeon-amx-2vcpu-portable.json",
}
EXAMPLE_PROBES = {"user.seed_doc_train_model", "user.seed_doc_fit_predict"}
INTEL_CONFIGS = DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" / "configs"


def test_every_setting_says_why_and_passes_a_goldens_environment_checks() -> None:
    for profile in all_profiles():
        assert profile.settings and profile.summary and profile.measured
        for setting in profile.settings:
            assert len(setting.why) > 40, setting.name
        assert check_environment(profile.environment) == profile.environment
        applied, refused = partition_environment(profile.environment)
        assert (applied, refused) == (profile.environment, {})


def test_every_built_in_probe_is_classified_once() -> None:
    """A new probe must be measured under the profile (covered) or say why it is not."""
    names = set(all_probes())
    for profile in all_profiles():
        covered, not_covered = set(profile.covered), set(profile.not_covered)
        assert not covered & not_covered
        assert names <= covered | not_covered, sorted(names - covered - not_covered)
        assert covered | not_covered <= names | EXAMPLE_PROBES
        assert "training.keras_fit" in covered and "compile.eager" in covered and "hw.rsqrt" in covered


def test_the_profile_is_the_configuration_that_was_measured_across_vendors() -> None:
    """Its settings are exactly those the Intel golden that reproduced on the Zen 4 was recorded under."""
    measured = load_golden(INTEL_CONFIGS / "golden-portable-all-mincluster1-with-example-probes.json")
    profile = latest("portable", "2.21.0")
    assert {k: measured.lockdown.environment[k] for k in profile.environment} == profile.environment
    # Without eager clustering (the default minimum cluster size) the eager probes did not agree:
    # that is why --tf_xla_min_cluster_size=1 is in the profile.
    assert "--tf_xla_min_cluster_size=1" in profile.environment["TF_XLA_FLAGS"]


@pytest.mark.parametrize(("golden", "machine"),
                         [("amd-epyc-zen4", "intel-xeon-amx"), ("intel-xeon-amx", "amd-epyc-zen4")])
def test_under_the_profile_the_two_vendors_give_the_same_bits(golden: str, machine: str) -> None:
    report = replay(PORTABLE_GOLDENS[golden], PORTABLE_GOLDENS[machine])
    profile = golden_profile(load_golden(PORTABLE_GOLDENS[golden]), PORTABLE_GOLDENS[golden])
    assert profile is not None
    statuses = {v.name: v.status for v in report.probes}
    covered = [n for n in profile.covered if n in statuses]
    assert set(covered) >= {"training.keras_fit", "compile.function", "distribute.mirrored_step", "compile.eager",
                            "hw.reciprocal", "hw.rsqrt", "layers.batchnorm_train", *EXAMPLE_PROBES}
    assert {n: statuses[n] for n in covered if statuses[n] != "identical"} == {}
    assert report.exit_code == 0


def _resealed(tmp_path: Path, record: ProfileRecord | None) -> Path:
    golden = load_golden(PORTABLE_GOLDENS["intel-xeon-amx"])
    path = tmp_path / "golden.json"
    save_golden(path, seal(golden.model_copy(update={"profile": record})))
    return path


@pytest.mark.parametrize(("record", "message"), [
    (ProfileRecord(name="portable", version=99, environment={}), "unknown numerics profile 'portable' version 99"),
    (ProfileRecord(name="fastest", version=1, environment={}), "unknown numerics profile 'fastest'"),
    (ProfileRecord(name="portable", version=1, environment={"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}),
     "settings differ from this envlock's table"),
])
def test_a_goldens_profile_is_checked_against_the_table(tmp_path: Path, record: ProfileRecord, message: str) -> None:
    path = _resealed(tmp_path, record)
    with pytest.raises(BadFileError, match=message):
        golden_profile(load_golden(path), path)
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_verify_portable_of_a_golden_recorded_without_it_is_exit_2(tmp_path: Path) -> None:
    path = _resealed(tmp_path, None)
    result = CliRunner().invoke(app, ["verify", str(path), "--portable"])
    assert result.exit_code == 2
    assert "recorded without the portable profile" in result.output and "--golden --portable" in result.output


def test_an_unmeasured_tensorflow_or_name_is_refused() -> None:
    with pytest.raises(BadInputError, match="not measured on TensorFlow 2.15.1"):
        latest("portable", "2.15.1")
    with pytest.raises(BadInputError, match="unknown numerics profile"):
        lookup("turbo", 1)


def test_the_profile_table_is_versioned_data() -> None:
    data = json.loads((REPO_ROOT / "envlock" / "data" / "profiles.json").read_text())
    assert data["kind"] == "envlock.profiles" and data["schema_version"] == 1


def test_build_bakes_the_profile_into_the_image() -> None:
    """`envlock build` renders a golden's lockdown environment into the image: a portable golden's holds
    the profile's settings, so the image runs every job under the profile."""
    from envlock.image.spec import image_environment

    for path in PORTABLE_GOLDENS.values():
        golden = load_golden(path)
        profile = golden_profile(golden, path)
        assert profile is not None
        env = image_environment(golden.manifest, golden.lockdown)
        assert {k: env[k] for k in profile.environment} == profile.environment


def test_a_profile_whose_settings_fail_the_value_rules_is_exit_2(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile table is checked like a golden's environment before it is applied (here a table that
    would dump XLA's output to a path): one line, exit 2, nothing applied."""
    import dataclasses

    import envlock.golden as golden_module
    from envlock.profiles import Setting

    real = latest("portable", "2.21.0")
    bad = dataclasses.replace(real, settings=(*real.settings, Setting("XLA_FLAGS", "--xla_dump_to=/etc/x", "no")))
    monkeypatch.setattr(golden_module, "lookup", lambda name, version: bad)
    path = _resealed(tmp_path, ProfileRecord(name="portable", version=1, environment=bad.environment))
    with pytest.raises(BadFileError, match="the portable v1 profile sets values the environment rules refuse"):
        golden_profile(load_golden(path), path)
    result = CliRunner().invoke(app, ["verify", str(path)])
    assert result.exit_code == 2 and "XLA_FLAGS" in result.output
