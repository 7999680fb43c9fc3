"""Cause attribution: the findings of docs/causes.md, the stable-vs-canary rule, and the probe registry's tags."""

from __future__ import annotations

from typing import Any

import pytest

import envlock.rules
from envlock.diff import Difference
from envlock.errors import BadInputError
from envlock.probes.attribution import UNEXPLAINED, explain
from envlock.probes.registry import KNOWN_TAGS, all_probes, parse_probe_list, select_probes
from envlock.rules import RULES, Mechanism, rule_for


def _diff(path: str, old: Any, new: Any) -> Difference:
    # Severity and components come from the real rule table, as in a real verify.
    rule = rule_for(path)
    return Difference(path=path, old=old, new=new, severity=rule.severity, reason=f"{path}: {rule.why}",
                      components=list(rule.components))


def _tags(name: str) -> set[str]:
    return set(all_probes()[name].tags)


def test_onednn_flag_explains_matmul_but_not_xla() -> None:
    diffs = [_diff("environment.TF_ENABLE_ONEDNN_OPTS", None, "0"), _diff("tensorflow.onednn_enabled", True, False)]
    causes = explain(_tags("matmul.f32"), diffs, drifted_groups=())
    assert causes[0].path == "environment.TF_ENABLE_ONEDNN_OPTS" and causes[0].environment
    assert "oneDNN" in causes[0].reason
    assert explain(_tags("compile.xla"), diffs, drifted_groups=())[0].reason == UNEXPLAINED


def test_onednn_default_by_cpu_trap() -> None:
    # Same environment, yet oneDNN differs: the CPU (VNNI/BF16/AMX) decided TF's default.
    diffs = [_diff("tensorflow.onednn_enabled", True, False), _diff("cpu.isa.avx512_vnni", True, False),
             _diff("cpu.vendor", "GenuineIntel", "AuthenticAMD")]
    causes = explain(_tags("conv2d.grad"), diffs, drifted_groups=())
    assert causes[0].rule == "onednn-default-by-cpu"
    assert "AVX512_VNNI" in causes[0].reason and "TF_ENABLE_ONEDNN_OPTS" in causes[0].reason
    assert not causes[0].environment


def test_isa_ceiling_explains_matmul_even_with_onednn_off() -> None:
    diffs = [_diff("environment.ONEDNN_MAX_CPU_ISA", None, "AVX2"), _diff("host.kernel", "6.1", "6.2")]
    causes = explain(_tags("matmul.f64") | _tags("training.keras_fit"), diffs, drifted_groups=())
    assert causes[0].path == "environment.ONEDNN_MAX_CPU_ISA"


def test_xla_flags_only_explain_xla_probes() -> None:
    diffs = [_diff("environment.XLA_FLAGS", None, "--xla_backend_optimization_level=0")]
    assert explain(_tags("compile.xla"), diffs, drifted_groups=())[0].rule == "xla-flags"
    for name in ("compile.function", "matmul.f32", "training.keras_fit"):
        assert explain(_tags(name), diffs, drifted_groups=())[0].reason == UNEXPLAINED


def test_auto_jit_explains_tf_function_and_training() -> None:
    diffs = [_diff("environment.TF_XLA_FLAGS", None, "--tf_xla_auto_jit=2")]
    for name in ("compile.function", "training.keras_fit", "distribute.mirrored_step"):
        assert explain(_tags(name), diffs, drifted_groups=())[0].rule == "xla-autojit"
    assert explain(_tags("compile.eager"), diffs, drifted_groups=())[0].reason == UNEXPLAINED


def test_affinity_explains_numpy_matmul() -> None:
    diffs = [_diff("cpu.affinity", [0, 1], [0]), _diff("numeric.blas.openblas.num_threads", 2, 1)]
    causes = explain(_tags("numpy.matmul"), diffs, drifted_groups=())
    assert {c.rule for c in causes[:2]} == {"affinity", "blas-threads"}


def test_numpy_simd_explains_numpy_elementwise_not_tf_elementwise() -> None:
    diffs = [_diff("numeric.simd_dispatch", ["AVX512F"], ["AVX2"])]
    assert explain(_tags("numpy.elementwise"), diffs, drifted_groups=())[0].rule == "numpy-simd"
    assert explain(_tags("elementwise.tf"), diffs, drifted_groups=())[0].reason == UNEXPLAINED


def test_measured_harmless_differences_are_never_blamed() -> None:
    diffs = [_diff("environment.PYTHONHASHSEED", None, "1"), _diff("tensorflow.inter_op_threads", 2, 8),
             _diff("environment.TF_ENABLE_ZENDNN_OPTS", None, "1")]
    assert explain(_tags("matmul.f32"), diffs, drifted_groups=())[0].reason == UNEXPLAINED


def test_nothing_recorded_says_so_exactly() -> None:
    causes = explain(_tags("matmul.f32"), [], drifted_groups=())
    # Unknown is said to be unknown: never "hardware" by default, and what tests it is named.
    assert [c.reason for c in causes] == [
        "no recorded difference explains this: the cause is something envlock does not record (an environment "
        "variable, a library, or the hardware); `envlock explain` tests which"]


@pytest.mark.parametrize(("drifted", "top"), [({"stable"}, "tensorflow.version"), ({"canary"}, "cpu.isa.avx512f")])
def test_stable_vs_canary_rule(drifted: set[str], top: str) -> None:
    # Both a TF release and an ISA change can move a matmul; which is likelier depends on
    # whether the stable controls moved too.
    diffs = [_diff("tensorflow.version", "2.18.0", "2.21.0"), _diff("cpu.isa.avx512f", True, False)]
    assert explain(_tags("matmul.f32"), diffs, drifted_groups=drifted)[0].path == top


def test_rules_use_known_tags_and_have_reasons() -> None:
    mechanisms = {m for rule in RULES for m in rule.causes}
    for mechanism in mechanisms:
        assert mechanism.tags <= KNOWN_TAGS, mechanism.id
        assert mechanism.reason.strip()
    # Every mechanism envlock.rules defines covers at least one path (one entry of the table names it).
    defined = {v for v in vars(envlock.rules).values() if isinstance(v, Mechanism)}
    assert defined and defined <= mechanisms, sorted(m.id for m in defined - mechanisms)


def test_registry_covers_the_issue_and_tags_are_known() -> None:
    probes = all_probes()
    for probe in probes.values():
        assert set(probe.tags) <= KNOWN_TAGS and probe.description
    required = ["rng.global_seed", "rng.op_seed", "rng.generator", "rng.numpy_legacy", "rng.numpy_default_rng",
                "data.shuffle", "data.parallel_map", "init.keras", "matmul.f32", "matmul.f64", "reduce.sum_large",
                "conv2d.forward", "conv2d.grad", "elementwise.tf", "elementwise.softmax", "compile.eager",
                "compile.function", "compile.xla", "training.keras_fit", "distribute.mirrored_step",
                "numpy.matmul", "gpu.matmul", "gpu.conv2d", "gpu.cpu_vs_gpu",
                # the seed documents' other sources (docs/causes.md): RNG inside training, RNNs, batch norm,
                # mixed precision, scatter/segment reductions (GPU-nondeterministic), tf.data interleave
                "rng.dropout", "layers.lstm", "layers.gru", "layers.batchnorm_train", "mixed.bf16_matmul",
                "mixed.keras_bf16_step", "scatter.embedding_segment", "data.interleave", "gpu.rnn",
                "gpu.mixed_float16", "gpu.scatter"]
    assert not [name for name in required if name not in probes]
    # Stable controls must not depend on what moves between machines (docs/causes.md, finding 3).
    movers = {"onednn", "threads", "matmul", "conv", "xla", "blas"}
    assert not [p.name for p in probes.values() if p.group == "stable" and movers & set(p.tags)]


def test_probe_selection() -> None:
    assert parse_probe_list("a, b c") == ["a", "b", "c"] and parse_probe_list(None) is None
    with pytest.raises(BadInputError, match="at least one probe name"):
        parse_probe_list(" , ")  # given but empty is bad input, not "the whole suite"
    assert [p.name for p in select_probes(["matmul.f32", "matmul.f32"])] == ["matmul.f32"]
    with pytest.raises(Exception, match="unknown probe"):
        select_probes(["matmul.f32", "no.such.probe"])
