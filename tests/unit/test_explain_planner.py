"""The intervention planner on recorded goldens and manifests (no TF, no host)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.explain.families.isa import ONEDNN_LEVELS, XLA_LEVELS, isa_level
from envlock.explain.planner import plan_interventions
from envlock.golden import load_golden
from envlock.models import Manifest
from tests.recorded import recorded_manifest

REPO = Path(__file__).resolve().parents[2]
AMD_GOLDEN = load_golden(REPO / "goldens" / "cpu-reference.json")
INTEL_GOLDEN = load_golden(REPO / "goldens" / "intel-xeon-amx-2vcpu.json")


def _ids(manifest: Manifest, env: dict[str, str], golden_manifest: Manifest | None = None,
         golden_env: dict[str, str] | None = None) -> list[str]:
    plan = plan_interventions(golden_manifest or AMD_GOLDEN.manifest,
                              AMD_GOLDEN.lockdown.environment if golden_env is None else golden_env, manifest, env)
    return [c.id for c in plan.candidates]


def test_isa_levels_of_the_recorded_cpus() -> None:
    amd, intel = recorded_manifest("amd-epyc-zen4").cpu.isa, recorded_manifest("intel-xeon-amx").cpu.isa
    assert ONEDNN_LEVELS[isa_level(amd, ONEDNN_LEVELS) or 0][0] == "AVX512_CORE_BF16"
    assert ONEDNN_LEVELS[isa_level(intel, ONEDNN_LEVELS) or 0][0] == "AVX512_CORE_AMX"
    assert XLA_LEVELS[isa_level(amd, XLA_LEVELS) or 0][0] == "AVX512_BF16"
    assert isa_level(Manifest.model_validate({**amd_dump(), "cpu": {}}).cpu.isa, ONEDNN_LEVELS) is None


def amd_dump() -> dict:
    return recorded_manifest("amd-epyc-zen4").model_dump()


def test_amd_golden_on_the_intel_machine_lowers_every_ceiling_to_zen4() -> None:
    intel = recorded_manifest("intel-xeon-amx")
    plan = plan_interventions(AMD_GOLDEN.manifest, AMD_GOLDEN.lockdown.environment, intel, dict(intel.environment))
    by_id = {c.id: c for c in plan.candidates}
    assert by_id["ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16"].env == {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}
    assert by_id["XLA_FLAGS+=--xla_cpu_max_isa=AVX512_BF16"].env == {"XLA_FLAGS": "--xla_cpu_max_isa=AVX512_BF16"}
    assert by_id["NPY_DISABLE_CPU_FEATURES=AVX512_SPR"].env == {"NPY_DISABLE_CPU_FEATURES": "AVX512_SPR"}
    together = plan.candidates[-1]
    assert together.kind == "all" and set(together.env) == {"ONEDNN_MAX_CPU_ISA", "XLA_FLAGS",
                                                            "NPY_DISABLE_CPU_FEATURES"}
    assert plan.version_differences == [] and plan.not_applicable == []


def test_intel_golden_on_the_amd_machine_cannot_raise_a_ceiling() -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    plan = plan_interventions(INTEL_GOLDEN.manifest, INTEL_GOLDEN.lockdown.environment, amd, dict(amd.environment))
    assert plan.candidates == []
    assert any(n.startswith("oneDNN ISA") and "AVX512_CORE_AMX" in n for n in plan.not_applicable)
    assert any("AVX512_SPR" in n for n in plan.not_applicable)


def test_each_differing_variable_alone_and_all_together() -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    env = {**amd.environment, "OMP_NUM_THREADS": "1", "TF_XLA_FLAGS": "--tf_xla_auto_jit=2", "HOME": "/x"}
    ids = _ids(amd, env)
    assert ids == ["unset OMP_NUM_THREADS", "unset TF_XLA_FLAGS",
                   "unset OMP_NUM_THREADS + unset TF_XLA_FLAGS"]  # HOME is not a determinism variable
    golden_env = {**AMD_GOLDEN.lockdown.environment, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert _ids(amd, dict(amd.environment), golden_env=golden_env) == ["ONEDNN_MAX_CPU_ISA=AVX2"]


def test_a_reproducing_configuration_plans_nothing() -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    assert _ids(amd, dict(amd.environment)) == []


def test_onednn_state_affinity_blas_threads_and_versions() -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    changed = amd.model_copy(deep=True)
    changed.tensorflow.onednn_enabled = False
    changed.cpu.affinity = [0]
    changed.numeric.blas[0].num_threads = 1
    changed.numeric.blas[0].architecture = "Haswell"
    changed.python.distributions = [d.model_copy(update={"version": "2.15.1"}) if d.name == "tensorflow-cpu" else d
                                    for d in changed.python.distributions]
    plan = plan_interventions(AMD_GOLDEN.manifest, AMD_GOLDEN.lockdown.environment, changed,
                              dict(changed.environment))
    by_id = {c.id: c for c in plan.candidates}
    assert by_id["TF_ENABLE_ONEDNN_OPTS=1"].paths == ("tensorflow.onednn_enabled",)
    assert by_id["affinity=0,1"].settings == {"affinity": (0, 1)} and by_id["affinity=0,1"].env == {}
    assert by_id["OPENBLAS_NUM_THREADS=2"].env == {"OPENBLAS_NUM_THREADS": "2"}
    assert by_id["OPENBLAS_CORETYPE=SkylakeX"].env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert plan.version_differences == ["tensorflow-cpu 2.21.0 -> 2.15.1"]


def test_the_environment_candidate_wins_over_the_onednn_one_and_together_never_contradicts() -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    changed = amd.model_copy(deep=True)
    changed.tensorflow.onednn_enabled = False
    ids = _ids(changed, {**amd.environment, "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert ids == ["unset TF_ENABLE_ONEDNN_OPTS", "TF_ENABLE_ONEDNN_OPTS=1"]  # no "unset X + X=1"


@pytest.mark.parametrize("cores", [1, 4])
def test_affinity_the_golden_had_more_cpus_than_exist_here(cores: int) -> None:
    amd = recorded_manifest("amd-epyc-zen4")
    changed = amd.model_copy(deep=True)
    changed.cpu.logical_cores, changed.cpu.affinity = cores, list(range(cores))
    plan = plan_interventions(AMD_GOLDEN.manifest, AMD_GOLDEN.lockdown.environment, changed,
                              dict(changed.environment))
    if cores == 1:
        assert not [c for c in plan.candidates if c.settings] and "cpu.affinity" in plan.not_applicable[0]
    else:
        assert [c.settings["affinity"] for c in plan.candidates if c.settings] == [(0, 1)]
