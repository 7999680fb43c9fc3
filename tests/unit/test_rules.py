"""The one rule table (envlock.rules): specific paths get specific judgements, every section has its
fallback, no entry hides behind an earlier one, and the mechanisms are well formed.

Each assertion names an expected value, so a changed severity, a reordered table or a lost
mechanism fails here (not only in a verify on another machine).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envlock.models import Manifest, identity_dict
from envlock.probes.registry import KNOWN_TAGS
from envlock.rules import ALL_COMPONENTS, HARMLESS, RULES, Mechanism, rule_for

# path -> (the pattern that must judge it, severity, the mechanisms attribution ranks, in order)
KNOWN_PATHS: dict[str, tuple[str, str, list[str]]] = {
    "tensorflow.status": ("tensorflow.status", "critical", []),
    "tensorflow.version": ("tensorflow.version", "critical", ["tf-version"]),
    "tensorflow.onednn_enabled": ("tensorflow.onednn_enabled", "critical", ["onednn-default-by-cpu", "onednn-opts"]),
    "tensorflow.onednn_isa": ("tensorflow.onednn_isa", "critical", ["onednn-detected-isa"]),
    "tensorflow.xla_jit": ("tensorflow.xla_jit", "critical", ["xla-autojit"]),
    "tensorflow.intra_op_threads": ("tensorflow.intra_op_threads", "warning", ["tf-intra-threads"]),
    "tensorflow.inter_op_threads": ("tensorflow.inter_op_threads", "info", ["known-harmless"]),
    "tensorflow.loaded_libraries.libcudnn": ("tensorflow.loaded_libraries.libcud*", "critical", []),
    "tensorflow.loaded_libraries.libtensorflow_cc": ("tensorflow.loaded_libraries.libtensorflow*", "critical",
                                                     ["tf-version"]),
    "tensorflow.loaded_libraries.libgomp": ("tensorflow.loaded_libraries.*", "warning", []),
    "numeric.numpy_version": ("numeric.numpy_version", "critical", ["numpy-version"]),
    "numeric.blas.openblas.num_threads": ("numeric.blas.*.num_threads", "warning", ["blas-threads", "numpy-version"]),
    "numeric.blas.openblas.version": ("numeric.blas*", "critical", ["numpy-version"]),
    "numeric.simd_dispatch": ("numeric.simd_*", "critical", ["numpy-simd"]),
    "cpu.isa.avx512_vnni": ("cpu.isa.avx512_vnni", "critical", ["onednn-default-isa", "cpu-isa"]),
    "cpu.isa.avx_vnni": ("cpu.isa.avx_vnni", "critical", ["onednn-default-isa"]),
    "cpu.isa.amx_tile": ("cpu.isa.amx_*", "critical", ["onednn-bf16-isa", "onednn-default-isa"]),
    "cpu.isa.avx512f": ("cpu.isa.avx512*", "critical", ["cpu-isa"]),
    "cpu.isa.avx2": ("cpu.isa.avx2", "critical", ["cpu-isa"]),
    "cpu.flags.avx2": ("cpu.flags.avx*", "critical", ["cpu-isa"]),
    "cpu.flags.fma": ("cpu.flags.fma*", "critical", ["cpu-isa"]),
    "cpu.flags.sse4_2": ("cpu.flags.sse*", "critical", []),
    "cpu.flags.amx_tile": ("cpu.flags.amx*", "critical", ["onednn-bf16-isa"]),
    "cpu.flags.hypervisor": ("cpu.flags.*", "info", []),
    "cpu.vendor": ("cpu.vendor", "warning", ["cpu-model", "cpu-arithmetic"]),
    "cpu.model_name": ("cpu.model_name", "warning", ["cpu-model", "cpu-arithmetic"]),
    "cpu.microcode": ("cpu.microcode", "warning", ["cpu-model"]),
    "cpu.logical_cores": ("cpu.logical_cores", "warning", ["affinity"]),
    "cpu.affinity": ("cpu.affinity", "warning", ["affinity"]),
    "cpu.caches.L2.size_bytes": ("cpu.caches.*.size_bytes", "warning", ["cpu-cache-blocking"]),
    "cpu.caches.L3.shared_by": ("cpu.caches.*.shared_by", "warning", ["cpu-cache-blocking"]),
    "cpu.caches.L1d.ways": ("cpu.caches.*", "info", ["cpu-cache-blocking"]),
    "gpu.devices.0.compute_capability": ("gpu.devices.*.compute_capability", "critical", []),
    "gpu.devices.0.uuid_sha256": ("gpu.devices.*.uuid_sha256", "info", []),
    "gpu.driver_version": ("gpu.*", "warning", []),
    "python.distributions.tensorflow-cpu": ("python.distributions.tensorflow*", "critical", ["tf-version"]),
    "python.distributions.keras": ("python.distributions.keras", "critical", ["keras-version"]),
    "python.distributions.numpy": ("python.distributions.numpy", "critical", ["numpy-version"]),
    "python.distributions.scipy-openblas32": ("python.distributions.scipy-openblas*", "critical",
                                              ["numpy-version"]),
    "python.distributions.requests": ("python.distributions.*", "warning", []),
    "python.version": ("python.version", "warning", []),
    "environment.TF_ENABLE_ONEDNN_OPTS": ("environment.TF_ENABLE_ONEDNN_OPTS", "critical", ["onednn-opts"]),
    "environment.ONEDNN_MAX_CPU_ISA": ("environment.ONEDNN_MAX_CPU_ISA", "critical", ["onednn-isa-ceiling"]),
    "environment.ONEDNN_VERBOSE": ("environment.ONEDNN_*", "warning", []),
    "environment.TF_XLA_FLAGS": ("environment.TF_XLA_FLAGS", "critical", ["xla-autojit", "xla-eager-clustering"]),
    "environment.XLA_FLAGS": ("environment.XLA_FLAGS", "critical", ["xla-flags"]),
    "environment.TF_DETERMINISTIC_OPS": ("environment.TF_DETERMINISTIC_OPS", "critical", ["op-determinism"]),
    "environment.CUDA_VISIBLE_DEVICES": ("environment.CUDA_VISIBLE_DEVICES", "critical", []),
    "environment.TF_NUM_INTRAOP_THREADS": ("environment.TF_NUM_INTRAOP_THREADS", "warning", ["tf-intra-threads"]),
    "environment.OMP_NUM_THREADS": ("environment.OMP_NUM_THREADS", "warning", ["blas-threads"]),
    "environment.OPENBLAS_NUM_THREADS": ("environment.OPENBLAS_NUM_THREADS", "warning", ["blas-threads"]),
    "environment.OPENBLAS_CORETYPE": ("environment.OPENBLAS_*", "warning", []),
    "environment.NPY_DISABLE_CPU_FEATURES": ("environment.NPY_*_CPU_FEATURES", "critical", ["numpy-simd"]),
    "environment.PYTHONHASHSEED": ("environment.PYTHONHASHSEED", "warning", ["known-harmless"]),
    "environment.TF_ENABLE_ZENDNN_OPTS": ("environment.TF_ENABLE_ZENDNN_OPTS", "info", ["known-harmless"]),
    "environment.TF_CPP_MIN_LOG_LEVEL": ("environment.TF_CPP_*", "info", ["known-harmless"]),
    "environment.KMP_DUPLICATE_LIB_OK": ("environment.KMP_DUPLICATE_LIB_OK", "warning", ["known-harmless"]),
    "environment.SOME_NEW_VARIABLE": ("environment.*", "warning", []),
    "host.architecture": ("host.architecture", "critical", ["cpu-isa"]),
    "host.kernel": ("host.kernel", "warning", []),
    "host.container_runtime": ("host.*", "info", []),
    "memory.total_bytes": ("memory.*", "info", []),
    "kind": ("kind", "info", []),
    "schema_version": ("schema_version", "info", []),
    "a_section_no_manifest_has": ("*", "warning", []),
}


@pytest.mark.parametrize("path", sorted(KNOWN_PATHS))
def test_known_paths_get_their_rule(path: str) -> None:
    pattern, severity, causes = KNOWN_PATHS[path]
    rule = rule_for(path)
    assert (rule.pattern, rule.severity, [m.id for m in rule.causes]) == (pattern, severity, causes)


# path -> (components it must name, components it must not name): what a change there can and cannot move.
COMPONENTS: dict[str, tuple[set[str], set[str]]] = {
    "tensorflow.version": (set(ALL_COMPONENTS), set()),
    "tensorflow.onednn_enabled": ({"onednn", "matmul", "conv", "training"}, {"rng", "xla", "gpu"}),
    "tensorflow.inter_op_threads": ({"threads"}, {"matmul", "conv", "reduction"}),
    "environment.XLA_FLAGS": ({"xla"}, {"onednn", "matmul", "rng"}),
    "environment.OMP_NUM_THREADS": ({"blas", "numpy", "threads"}, {"onednn", "xla"}),
    "numeric.numpy_version": ({"numpy", "blas"}, {"onednn", "xla", "gpu"}),
    "cpu.isa.avx512f": ({"onednn", "eigen", "matmul", "xla", "numpy"}, {"rng", "gpu"}),
    "cpu.caches.L2.size_bytes": ({"eigen", "matmul"}, {"rng", "numpy"}),
    "gpu.devices.0.name": ({"gpu"}, {"onednn", "numpy"}),
    "cpu.flags.hypervisor": (set(), set(ALL_COMPONENTS)),
    "memory.total_bytes": (set(), set(ALL_COMPONENTS)),
}


@pytest.mark.parametrize("path", sorted(COMPONENTS))
def test_components_say_what_a_change_can_move(path: str) -> None:
    must, must_not = COMPONENTS[path]
    components = set(rule_for(path).components)
    assert must <= components, must - components
    assert not components & must_not, components & must_not


def test_every_section_of_a_real_manifest_has_its_own_fallback(recorded_manifest: Manifest) -> None:
    # A field added to any section later is judged by that section's rule, never by the catch-all.
    for section, value in identity_dict(recorded_manifest).items():
        path = f"{section}.a_field_added_later" if isinstance(value, dict) else section
        rule = rule_for(path)
        assert rule.pattern != "*", path
        assert rule.pattern.split(".")[0] == section, (path, rule.pattern)


@pytest.mark.parametrize(
    ("path", "pattern"),
    [("tensorflow.a_new_setting", "tensorflow.*"), ("numeric.a_new_field", "numeric.*"),
     ("numeric.blas_new", "numeric.blas*"),
     ("cpu.a_new_field", "cpu.*"), ("cpu.isa.a_new_feature", "cpu.isa.*"), ("cpu.flags.a_new_flag", "cpu.flags.*"),
     ("cpu.caches.L4.a_new_field", "cpu.caches.*"), ("gpu.a_new_field", "gpu.*"), ("python.a_new_field", "python.*"),
     ("python.distributions.a-new-package", "python.distributions.*"), ("environment.A_NEW_VAR", "environment.*"),
     ("host.a_new_field", "host.*"), ("memory.a_new_field", "memory.*")],
)
def test_an_unnamed_path_falls_to_its_sections_fallback(path: str, pattern: str) -> None:
    assert rule_for(path).pattern == pattern


def _example(pattern: str) -> str:
    """A path only ``pattern`` was written for: every wildcard becomes a word no other pattern names."""
    return re.sub(r"\*", "zzq", pattern)


def test_no_rule_is_hidden_by_an_earlier_one() -> None:
    # First match wins, so a generic pattern placed before a specific one would silently take its paths.
    hidden = [rule.pattern for rule in RULES if rule_for(_example(rule.pattern)) is not rule]
    assert hidden == []
    assert len({rule.pattern for rule in RULES}) == len(RULES)


def test_harmless_paths_name_no_other_mechanism() -> None:
    # A measured-harmless path is never blamed, so another mechanism beside it could never apply.
    for rule in RULES:
        if HARMLESS in rule.causes:
            assert rule.causes == (HARMLESS,), rule.pattern


def test_mechanisms_are_well_formed() -> None:
    mechanisms = {m for rule in RULES for m in rule.causes}
    assert len({m.id for m in mechanisms}) == len(mechanisms)  # one id, one mechanism
    for mechanism in mechanisms:
        assert isinstance(mechanism, Mechanism)
        assert mechanism.tags <= KNOWN_TAGS, mechanism.id
        assert (mechanism.weight <= 0) == (mechanism is HARMLESS), mechanism.id
        text = mechanism.reason.format(path="cpu.vendor", old="'A'", new="'B'")
        assert "{" not in text and "}" not in text, mechanism.id


def _doc_table(header: str) -> list[list[str]]:
    """The rows of the table in docs/attribution.md whose header line is ``header``."""
    lines = (Path(__file__).parents[2] / "docs" / "attribution.md").read_text().splitlines()
    start = lines.index(header) + 2  # past the header and its |---| line
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    return rows


def test_the_documented_table_is_the_code() -> None:
    # docs/attribution.md is written by hand from RULES: a rule changed in one place only fails here.
    groups = {name: set(tags.split(", ")) for name, tags in _doc_table("| group | probe tags |")}

    def components(cell: str) -> set[str]:
        return set() if cell == "-" else set().union(*(groups.get(t, {t}) for t in cell.split(", ")))

    def names(cell: str) -> list[str]:
        return [] if cell == "-" else cell.split(", ")

    documented = [(pattern, severity, components(comps), names(mechs))
                  for pattern, severity, comps, mechs in _doc_table("| pattern | severity | components | mechanisms |")]
    assert documented == [(r.pattern, r.severity, set(r.components), [m.id for m in r.causes]) for r in RULES]
    mechanisms = {m.id: m for rule in RULES for m in rule.causes}
    rows = _doc_table("| mechanism | kind | weight | probe tags it can move |")
    assert {row[0] for row in rows} == set(mechanisms)
    for name, kind, weight, tags in rows:
        m = mechanisms[name]
        assert (kind, float(weight), set(names(tags))) == (m.kind, m.weight, set(m.tags)), name
