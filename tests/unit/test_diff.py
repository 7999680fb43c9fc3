"""diff_manifests: severity as data, readable reasons, and digest stability/sensitivity.

Every test runs on each recorded machine's real manifest (the ``recorded_manifest`` fixture),
never on a capture of this host, and a changed field takes a value that differs from the base
by construction (``other_than``): the same assertions hold whichever CPU CI runs on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from envlock.diff import Difference, diff_manifests, flatten
from envlock.models import GpuDevice, GpuInfo, LoadedLibrary, Manifest, compute_digest, identity_dict, with_digest
from envlock.probes.registry import KNOWN_TAGS
from envlock.rules import ALL_COMPONENTS, RULES, rule_for
from tests.recorded import dotted_get, other_than


@pytest.fixture()
def base(recorded_manifest: Manifest) -> Manifest:
    """A recorded machine's manifest with a fixed determinism environment."""
    return with_digest(recorded_manifest.model_copy(update={"environment": {"TF_ENABLE_ONEDNN_OPTS": "0"}}))


def _set(manifest: Manifest, path: str, value: Any) -> Manifest:
    """A copy of ``manifest`` with the dotted ``path`` set to ``value``."""
    data = manifest.model_dump(mode="json")
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value
    return with_digest(Manifest.model_validate(data))


# A new value for a field, derived from its current one so that the two always differ.
Change = Callable[[Any], Any]
NEW_KERNEL: Change = lambda v: other_than(v, "5.15.0", "6.1.0")  # noqa: E731
NEW_MICROCODE: Change = lambda v: other_than(v, "0x1", "0xdeadbeef")  # noqa: E731
NEW_NUMPY: Change = lambda v: other_than(v, "1.26.4", "2.0.2")  # noqa: E731
FLIPPED: Change = lambda v: not v  # noqa: E731
NEW_MEMORY: Change = lambda v: other_than(v, 1, 2)  # noqa: E731
NEW_CORES: Change = lambda v: other_than(v, 64, 128)  # noqa: E731
NEW_RUNTIME: Change = lambda v: other_than(v, "none", "docker")  # noqa: E731


def _changed(manifest: Manifest, path: str, change: Change) -> Manifest:
    old = dotted_get(manifest.model_dump(mode="json"), path)
    new = change(old)
    assert new != old, f"{path}: the change must differ from {old!r}"
    return _set(manifest, path, new)


def test_the_recorded_machines_differ_and_are_real(recorded_manifest: Manifest) -> None:
    # A recorded manifest is read as a user's file would be (load_manifest checks its digest) and is
    # a full capture of a real machine, TensorFlow included.
    assert recorded_manifest.digest == compute_digest(recorded_manifest)
    assert recorded_manifest.tensorflow.status == "present" and recorded_manifest.cpu.flags


@pytest.mark.parametrize(
    ("path", "change"),
    [("host.kernel", NEW_KERNEL), ("cpu.microcode", NEW_MICROCODE), ("numeric.numpy_version", NEW_NUMPY),
     ("cpu.isa.avx512f", FLIPPED), ("cpu.isa.avx2", FLIPPED), ("memory.total_bytes", NEW_MEMORY)],
)
def test_changing_one_identity_field_changes_the_digest(base: Manifest, path: str, change: Change) -> None:
    assert _changed(base, path, change).digest != base.digest


def test_changing_the_environment_changes_the_digest(base: Manifest) -> None:
    assert _set(base, "environment", {"TF_ENABLE_ONEDNN_OPTS": "1"}).digest != base.digest


@pytest.mark.parametrize(
    ("path", "value"),
    [("host.hostname", "another-host"), ("captured_at", "1999-01-01T00:00:00+00:00"), ("envlock_version", "9.9"),
     ("python.executable", "/somewhere/else/python")],
)
def test_volatile_fields_do_not_change_the_digest(base: Manifest, path: str, value: Any) -> None:
    changed = _set(base, path, value)
    assert changed.digest == base.digest
    assert diff_manifests(base, changed) == []


def _only(differences: list[Difference], path: str) -> Difference:
    matching = [d for d in differences if d.path == path]
    assert len(matching) == 1, [d.path for d in differences]
    return matching[0]


def test_isa_flag_loss_is_critical_with_components(base: Manifest) -> None:
    flags = [f for f in base.cpu.flags if f != "avx2"] if "avx2" in base.cpu.flags else base.cpu.flags + ["avx2"]
    cpu = base.cpu.model_copy(update={"flags": flags, "isa": base.cpu.isa.model_copy(update={"avx2": "avx2" in flags})})
    other = with_digest(base.model_copy(update={"cpu": cpu}))
    diffs = diff_manifests(base, other)
    assert {d.path for d in diffs} == {"cpu.flags.avx2", "cpu.isa.avx2"}
    assert all(d.severity == "critical" for d in diffs)
    assert "matmul" in _only(diffs, "cpu.isa.avx2").components


def test_non_isa_flag_is_info(base: Manifest) -> None:
    cpu = base.cpu.model_copy(update={"flags": sorted(set(base.cpu.flags) ^ {"hypervisor"})})
    d = _only(diff_manifests(base, with_digest(base.model_copy(update={"cpu": cpu}))), "cpu.flags.hypervisor")
    assert d.severity == "info"


@pytest.mark.parametrize(
    ("path", "change", "severity", "component"),
    [
        ("environment", lambda _: {"TF_ENABLE_ONEDNN_OPTS": "1"}, "critical", "onednn"),
        ("environment", lambda _: {"TF_ENABLE_ONEDNN_OPTS": "0", "OMP_NUM_THREADS": "1"}, "warning", "threads"),
        ("environment", lambda _: {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_XLA_FLAGS": "--tf_xla_auto_jit=2"}, "critical",
         "xla"),
        ("numeric.numpy_version", NEW_NUMPY, "critical", "blas"),
        ("cpu.logical_cores", NEW_CORES, "warning", "threads"),
        ("cpu.microcode", NEW_MICROCODE, "warning", "onednn"),
        ("host.container_runtime", NEW_RUNTIME, "info", None),
        ("host.kernel", NEW_KERNEL, "warning", None),
        ("memory.total_bytes", NEW_MEMORY, "info", None),
    ],
    ids=["onednn-env", "omp-threads", "xla-flags", "numpy", "cores", "microcode", "runtime", "kernel", "memory"],
)
def test_severity_rules(base: Manifest, path: str, change: Change, severity: str, component: str | None) -> None:
    diffs = diff_manifests(base, _changed(base, path, change))
    assert diffs, "a changed identity field must produce a difference"
    top = diffs[0]
    assert top.severity == severity
    if component is not None:
        assert component in top.components
    assert "\n" not in top.reason and top.path in top.reason


def test_tensorflow_fields(base: Manifest) -> None:
    tf_a = base.tensorflow.model_copy(update={"status": "present", "version": "2.21.0", "onednn_enabled": False,
                                              "xla_jit": "off", "intra_op_threads": 0,
                                              "loaded_libraries": [LoadedLibrary(name="libcudnn", version="9",
                                                                                 path="/a/libcudnn.so.9")]})
    tf_b = tf_a.model_copy(update={"onednn_enabled": True, "intra_op_threads": 1,
                                   "loaded_libraries": [LoadedLibrary(name="libcudnn", version="8",
                                                                      path="/b/libcudnn.so.8")]})
    a = with_digest(base.model_copy(update={"tensorflow": tf_a}))
    b = with_digest(base.model_copy(update={"tensorflow": tf_b}))
    diffs = diff_manifests(a, b)
    assert [d.path for d in diffs] == ["tensorflow.loaded_libraries.libcudnn", "tensorflow.onednn_enabled",
                                      "tensorflow.intra_op_threads"]
    assert [d.severity for d in diffs] == ["critical", "critical", "warning"]
    assert _only(diffs, "tensorflow.onednn_enabled").old is False


def test_only_a_library_path_change_is_no_difference(base: Manifest) -> None:
    lib = [LoadedLibrary(name="libgomp", version="1.0.0", path="/x/libgomp.so.1.0.0")]
    moved = [LoadedLibrary(name="libgomp", version="1.0.0", path="/y/libgomp.so.1.0.0")]
    a = base.model_copy(update={"tensorflow": base.tensorflow.model_copy(update={"loaded_libraries": lib})})
    b = base.model_copy(update={"tensorflow": base.tensorflow.model_copy(update={"loaded_libraries": moved})})
    assert diff_manifests(a, b) == []
    assert compute_digest(a) == compute_digest(b)


def test_gpu_compute_capability_is_critical_and_driver_a_warning(base: Manifest) -> None:
    dev = GpuDevice(index=0, name="NVIDIA A100-SXM4-80GB", compute_capability="8.0", uuid_sha256="aa")
    gpu_a = GpuInfo(status="ok", driver_version="535.216.01", devices=[dev])
    gpu_b = GpuInfo(status="ok", driver_version="570.86.15",
                    devices=[dev.model_copy(update={"compute_capability": "8.9", "uuid_sha256": "bb"})])
    diffs = diff_manifests(base.model_copy(update={"gpu": gpu_a}), base.model_copy(update={"gpu": gpu_b}))
    by_path = {d.path: d.severity for d in diffs}
    assert by_path == {"gpu.devices.0.compute_capability": "critical", "gpu.driver_version": "warning",
                       "gpu.devices.0.uuid_sha256": "info"}
    assert diffs[0].path == "gpu.devices.0.compute_capability"  # most severe first


def test_distribution_rebuilt_with_same_version(base: Manifest) -> None:
    dists = base.python.distributions
    assert dists, "this machine has installed distributions"
    first = dists[0]
    rebuilt = [first.model_copy(update={"record_sha256": "0" * 64}), *dists[1:]]
    other = base.model_copy(update={"python": base.python.model_copy(update={"distributions": rebuilt})})
    d = _only(diff_manifests(base, other), f"python.distributions.{first.name}")
    assert first.version in str(d.old) and first.version in str(d.new) and d.old != d.new


def test_every_identity_path_of_a_real_manifest_has_a_rule_of_its_own(base: Manifest) -> None:
    # The catch-all "*" rule is the last resort for paths no rule names: a real manifest has none.
    for path in flatten(identity_dict(base)):
        assert rule_for(path).pattern != "*", path


def test_rules_are_data() -> None:
    assert len(RULES) > 30
    assert RULES[-1].pattern == "*"
    assert {r.severity for r in RULES} == {"critical", "warning", "info"}


def test_components_are_probe_tags() -> None:
    assert set(ALL_COMPONENTS) <= KNOWN_TAGS
    for rule in RULES:
        assert set(rule.components) <= set(ALL_COMPONENTS), rule.pattern
