"""A golden's environment is applied only where each VALUE is one its variable may hold (issue 17,
class 1): no dump, path or plugin flag, no home or library variable, bounded counts. Refused
variables load (the golden stays readable) and are named where they would have been applied."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock.environ import (
    VALUE_RULES,
    XLA_FLAG_RULES,
    golden_environment_changes,
    partition_environment,
    refused_note,
)
from envlock.image.spec import image_environment
from envlock.verify import child_environment
from tests.helpers import DATA_DIR, REPO_ROOT, make_hostile_golden

# The shipped goldens and the Intel configuration goldens (tests/data/README.md has their provenance).
SHIPPED = sorted([*REPO_ROOT.glob("goldens/*.json"),
                  *(DATA_DIR / "machines" / "intel-xeon-amx-2vcpu-2026-12-03" / "configs").glob("*.json")])
assert len(SHIPPED) >= 15, SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_goldens_keep_every_variable(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for env in (data["lockdown"]["environment"], data["manifest"]["environment"]):
        applied, refused = partition_environment(env)
        assert refused == {} and applied == env


REFUSED = [
    ("XLA_FLAGS", "--xla_dump_to=/etc/x", "--xla_dump_to"),
    ("XLA_FLAGS", "--xla_cpu_enable_fast_math=false --xla_dump_hlo_as_text", "--xla_dump_hlo_as_text"),
    ("XLA_FLAGS", "--xla_gpu_cuda_data_dir=/opt/evil", "--xla_gpu_cuda_data_dir"),
    ("XLA_FLAGS", "--xla_cpu_dump_unoptimized_hlo_snapshots", "--xla_cpu_dump_unoptimized_hlo_snapshots"),
    ("XLA_FLAGS", "--xla_backend_extra_options=-info-output-file=/etc/x", "--xla_backend_extra_options"),
    ("XLA_FLAGS", "/etc/flagfile", "names a file"),  # XLA reads a value not starting with '-' as a flag file
    ("XLA_FLAGS", "--xla_cpu_max_isa=../x", "--xla_cpu_max_isa"),
    ("XLA_FLAGS", "--xla_backend_optimization_level=99", "from 0 to 3"),
    ("TF_XLA_FLAGS", "--tf_xla_persistent_cache_directory=/etc", "--tf_xla_persistent_cache_directory"),
    ("TF_XLA_FLAGS", "--tf_xla_clustering_debug", "--tf_xla_clustering_debug"),
    ("TF_XLA_FLAGS", "--tf_xla_min_cluster_size=-5", "--tf_xla_min_cluster_size"),
    ("KERAS_HOME", "/etc/keras", "directory"),
    ("OMP_TOOL_LIBRARIES", "/tmp/x.so", "library"),
    ("OMP_TOOL", "enabled", "library"),
    ("NCCL_NET_PLUGIN", "evil", "library"),
    ("NCCL_DEBUG_FILE", "/etc/x", "file"),
    ("ONEDNN_JIT_DUMP", "1", "dumps"),
    ("TF_JITRT_FLAGS", "--vectorize", "flag list"),
    ("TF_NUM_INTRAOP_THREADS", "999999", "thread count"),
    ("TF_NUM_INTEROP_THREADS", "1025", "thread count"),
    ("OMP_NUM_THREADS", "-1", "thread count"),
    ("OMP_STACKSIZE", "4G", "stack size"),
    ("PYTHONHASHSEED", "99999999999", "4294967295"),
    ("KERAS_BACKEND", "evil_module", "one of"),
    ("ONEDNN_MAX_CPU_ISA", "../../x", "ISA"),
    ("OPENBLAS_CORETYPE", "/etc/passwd", "no path"),
    ("KMP_AFFINITY", "~/x", "no path"),
    ("TF_CPP_VMODULE", "$(touch x)", "shell"),
]


@pytest.mark.parametrize(("name", "value", "reason"), REFUSED, ids=[f"{n}={v}" for n, v, _ in REFUSED])
def test_a_value_its_variable_may_not_hold_is_refused(name: str, value: str, reason: str) -> None:
    applied, refused = partition_environment({name: value, "TF_ENABLE_ONEDNN_OPTS": "0"})
    assert applied == {"TF_ENABLE_ONEDNN_OPTS": "0"}
    assert reason in refused[name]
    assert value not in refused[name] or value in reason  # a reason never quotes the value (it may be secret)


ALLOWED = {
    "XLA_FLAGS": "--xla_cpu_enable_fast_math=false --xla_cpu_max_isa=AVX2 --xla_cpu_fast_math_honor_nans "
                 "--xla_backend_extra_options=xla_cpu_disable_platform_dependent_math --xla_allow_excess_precision=0",
    "TF_XLA_FLAGS": "--tf_xla_auto_jit=2 --tf_xla_cpu_global_jit --tf_xla_min_cluster_size=1 "
                    "--tf_xla_enable_lazy_compilation=false",
    "OMP_NUM_THREADS": "4,2", "TF_NUM_INTRAOP_THREADS": "1024", "TF_NUM_INTEROP_THREADS": "0",
    "OMP_STACKSIZE": "16M", "PYTHONHASHSEED": "0", "KERAS_BACKEND": "tensorflow",
    "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "KMP_AFFINITY": "granularity=fine,compact,1,0", "OMP_PLACES": "{0:4},{4:4}",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD", "TF_ENABLE_ONEDNN_OPTS": "1", "CUDA_VISIBLE_DEVICES": "0,1",
}


def test_numerics_values_are_applied() -> None:
    assert partition_environment(ALLOWED) == (ALLOWED, {})


def test_the_rules_are_tables_with_a_catch_all_last() -> None:
    assert VALUE_RULES[-1].pattern == "*" and all(r.why for r in VALUE_RULES if r.kind == "refuse")
    assert not [name for name in XLA_FLAG_RULES if any(w in name for w in ("dump", "dir", "path", "cache", "file"))]


def test_a_refused_variable_is_neither_set_nor_unset() -> None:
    golden = {"KERAS_HOME": "/etc/keras", "TF_ENABLE_ONEDNN_OPTS": "0"}
    changes, refused = golden_environment_changes({"KERAS_HOME": "/home/me/.k", "OMP_NUM_THREADS": "2"}, golden)
    assert changes == {"OMP_NUM_THREADS": None, "TF_ENABLE_ONEDNN_OPTS": "0"}
    assert list(refused) == ["KERAS_HOME"]
    note = refused_note(refused)
    assert note is not None and note.startswith("refused to apply 1 of the golden's") and "/etc" not in note
    assert refused_note({}) is None


def test_verify_golden_env_and_build_apply_only_what_passes() -> None:
    golden = make_hostile_golden(lockdown_env={"XLA_FLAGS": "--xla_dump_to=/etc/x", "TF_ENABLE_ONEDNN_OPTS": "0"})
    env = child_environment(golden, {"PATH": "/bin", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"},
                            golden_env=True)
    assert env == {"PATH": "/bin", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false", "TF_ENABLE_ONEDNN_OPTS": "0"}
    baked = image_environment(golden.manifest, golden.lockdown)
    assert "XLA_FLAGS" not in baked and baked["TF_ENABLE_ONEDNN_OPTS"] == "0"
