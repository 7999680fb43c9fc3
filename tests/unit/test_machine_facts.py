"""Machine facts on recorded data: cache topology, oneDNN's report, discovered variable
names, old goldens and manifests migrating, and the hardware-arithmetic group's attribution."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envlock.diff import diff_manifests
from envlock.environ import (
    DISCOVERED_FAMILIES,
    DISCOVERED_NAMES_DIR,
    capture_environment,
    discovered_names,
    is_allowed,
)
from envlock.fingerprint.cache import SYSFS_CPU, collect_caches, parse_cpu_list, parse_getconf, parse_size
from envlock.fingerprint.onednn import capture_fd1, parse_verbose_info
from envlock.golden import ProbeRecord, load_golden
from envlock.models import CacheInfo, Manifest, compute_digest, identity_dict, with_digest
from envlock.probes.attribution import explain
from envlock.probes.registry import all_probes
from envlock.runner import CommandResult, FakeRunner
from envlock.verdict import ProbeVerdict, attribute
from envlock.vocab import GROUPS
from tests.helpers import DATA_DIR
from tests.recorded import RECORDED_MACHINES, recorded_manifest

ROOT = Path(__file__).resolve().parents[2]
SYSFS = {"amd-epyc-zen4": DATA_DIR / "sysfs_cache" / "amd_epyc_zen4_avx512_this_machine.txt",
         "intel-xeon-amx": DATA_DIR / "sysfs_cache" / "intel_xeon_sapphire_rapids_amx_kvm.txt"}
VERBOSE = {"amd-epyc-zen4": DATA_DIR / "onednn_verbose" / "amd_epyc_zen4_tiny_matmul.txt",
           "intel-xeon-amx": DATA_DIR / "onednn_verbose" / "intel_xeon_amx_dense_grad.txt"}
GOLDENS = [ROOT / "goldens" / "cpu-reference.json", ROOT / "goldens" / "intel-xeon-amx-2vcpu.json"]
_SYSFS_NAMES = {"level": "level", "type": "type", "size": "size", "line": "coherency_line_size",
                "ways": "ways_of_associativity", "sets": "number_of_sets", "shared_cpu_list": "shared_cpu_list"}


def sysfs_runner(machine: str) -> FakeRunner:
    """The recorded flattened lines ("cpu0/cache/index0 level=1 type=Data ...") as sysfs files."""
    files = {}
    for line in SYSFS[machine].read_text().splitlines():
        where, *pairs = line.split()
        for pair in pairs:
            key, _, value = pair.partition("=")
            files[f"{SYSFS_CPU}/{where}/{_SYSFS_NAMES[key]}"] = value + "\n"
    return FakeRunner(files=files)


def caches_by_name(caches: list[CacheInfo] | None) -> dict[str, CacheInfo]:
    assert caches
    return {f"L{c.level}{ {'Data': 'd', 'Instruction': 'i'}.get(c.type, '')}": c for c in caches}


def test_sysfs_caches_of_both_machines() -> None:
    amd = caches_by_name(collect_caches(sysfs_runner("amd-epyc-zen4")))
    intel = caches_by_name(collect_caches(sysfs_runner("intel-xeon-amx")))
    assert sorted(amd) == sorted(intel) == ["L1d", "L1i", "L2", "L3"]
    assert (amd["L1d"].size_bytes, amd["L1d"].ways, amd["L1d"].line_bytes) == (32 * 1024, 8, 64)
    assert (intel["L1d"].size_bytes, intel["L1d"].ways) == (48 * 1024, 12)
    assert (amd["L2"].size_bytes, intel["L2"].size_bytes) == (1024 * 1024, 2048 * 1024)
    assert amd["L2"].shared_by == 1 and amd["L2"].instances == 2  # one per core
    assert (amd["L3"].size_bytes, amd["L3"].shared_by, amd["L3"].instances) == (32 * 1024**2, 2, 1)
    assert (intel["L3"].size_bytes, intel["L3"].sets) == (491520 * 1024, 491520)


def test_getconf_fallback_where_sysfs_has_nothing() -> None:
    text = (DATA_DIR / "sysfs_cache" / "getconf_amd_epyc_zen4_this_machine.txt").read_text()
    runner = FakeRunner(commands={("getconf", "-a"): CommandResult(0, text, "")})
    caches = caches_by_name(collect_caches(runner))
    # glibc reads CPUID, which on this VM reports the host's L3 (320 MiB), not the guest's 32 MiB.
    assert caches["L2"].size_bytes == 1024 * 1024 and caches["L3"].size_bytes == 320 * 1024**2
    assert caches["L1i"].ways is None and caches["L1d"].ways == 8  # empty value: not reported
    assert all(c.shared_by is None for c in caches.values())
    assert collect_caches(FakeRunner()) is None  # neither source: unknown, not a crash
    assert parse_getconf("LEVEL4_CACHE_SIZE 0\n") is None


def test_small_parsers() -> None:
    assert [parse_size(t) for t in ("32K", "2048K", "1M", "64", "", "x")] == [32768, 2097152, 1048576, 64, None, None]
    assert parse_cpu_list("0-3,8") == [0, 1, 2, 3, 8] and parse_cpu_list("") is None and parse_cpu_list("a") is None


@pytest.mark.parametrize(("machine", "isa"), [
    ("amd-epyc-zen4", "Intel AVX-512 with Intel DL Boost and bfloat16 support"),
    ("intel-xeon-amx", "Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with "
                       "bfloat16 and 8-bit integer support"),
])
def test_onednn_verbose_info_of_both_machines(machine: str, isa: str) -> None:
    info = parse_verbose_info(VERBOSE[machine].read_text())
    assert info == {"onednn_version": "3.7.3", "onednn_isa": isa}
    assert parse_verbose_info("no oneDNN here\n") == {"onednn_version": None, "onednn_isa": None}


def test_fd1_capture_takes_c_level_writes_and_restores() -> None:
    text = capture_fd1(lambda: os.write(1, b"onednn_verbose,v1,info,oneDNN v9.9 (commit x)\n"))
    assert parse_verbose_info(text)["onednn_version"] == "9.9"


def test_discovered_names_extend_the_allow_list_but_refusals_hold() -> None:
    names = discovered_names()
    # The variables docs/causes.md measured are in the libraries' own string tables.
    for measured in ("TF_ENABLE_ONEDNN_OPTS", "XLA_FLAGS", "TF_XLA_FLAGS", "OPENBLAS_NUM_THREADS",
                     "NPY_DISABLE_CPU_FEATURES", "TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        assert measured in names, measured
    # A TF switch outside every hand-written prefix, found only by the scan:
    assert "TF_FP16_MATMUL_USE_FP32_COMPUTE" in names and is_allowed("TF_FP16_MATMUL_USE_FP32_COMPUTE")
    # Read by a library, still refused: credentials, Terraform, and process variables.
    for refused in ("AWS_SECRET_ACCESS_KEY", "TF_DATA_DIR", "LD_LIBRARY_PATH", "HOME", "TF_TOKEN_APP"):
        assert not is_allowed(refused), refused
    # In TensorFlow's string table but no numerics setting: a CA bundle path, gRPC, cloud storage.
    for unrelated in ("CURL_CA_BUNDLE", "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "GRPC_TRACE",
                      "GCS_METADATA_REQUEST_TIMEOUT_SECS"):
        assert not is_allowed(unrelated), unrelated
    # The committed data holds nothing else either (scan_env_names.py filters what it writes).
    data = json.loads(next(DISCOVERED_NAMES_DIR.glob("env_names-tf*.json")).read_text(encoding="utf-8"))
    written = {n for group in data["names"].values() for n in group}
    assert written and all(n.startswith(DISCOVERED_FAMILIES) for n in written)
    captured = capture_environment({"TF_FP16_MATMUL_USE_FP32_COMPUTE": "1", "AWS_SECRET_ACCESS_KEY": "x",
                                    "LD_LIBRARY_PATH": "/opt/lib", "PATH": "/bin"})
    assert captured == {"TF_FP16_MATMUL_USE_FP32_COMPUTE": "1"}


@pytest.mark.parametrize("path", GOLDENS, ids=lambda p: p.name)
def test_shipped_goldens_migrate(path: Path) -> None:
    golden = load_golden(path)  # raises if the digest or the manifest's digest did not hold
    manifest = golden.manifest
    assert manifest.cpu.caches is None and manifest.tensorflow.onednn_version is None
    assert {p.group for p in golden.probes} <= {"stable", "canary"}
    assert "caches" not in identity_dict(manifest)["cpu"]
    assert compute_digest(manifest) == manifest.digest


def _new_capture(machine: str) -> Manifest:
    """What a capture with the new fields gives on a recorded machine."""
    old = recorded_manifest(machine)
    onednn = parse_verbose_info(VERBOSE[machine].read_text())
    return with_digest(old.model_copy(update={
        "cpu": old.cpu.model_copy(update={"caches": collect_caches(sysfs_runner(machine))}),
        "tensorflow": old.tensorflow.model_copy(update=onednn)}))


@pytest.mark.parametrize("machine", sorted(RECORDED_MACHINES))
def test_recorded_manifests_migrate_without_spurious_drift(machine: str) -> None:
    old = recorded_manifest(machine)
    assert compute_digest(old) == old.digest
    assert json.loads(RECORDED_MACHINES[machine].read_text())["digest"] == old.digest
    new = _new_capture(machine)
    assert new.digest != old.digest  # the new facts are identity once recorded
    assert diff_manifests(old, new) == [] and diff_manifests(new, old) == []
    # Written and read back, the new fields survive.
    assert Manifest.model_validate_json(new.model_dump_json()).cpu.caches == new.cpu.caches


def test_new_facts_differ_between_the_two_machines() -> None:
    paths = {d.path: d for d in diff_manifests(_new_capture("amd-epyc-zen4"), _new_capture("intel-xeon-amx"))}
    assert paths["cpu.caches.L2.size_bytes"].severity == "warning"
    assert "eigen" in paths["cpu.caches.L2.size_bytes"].components
    assert paths["tensorflow.onednn_isa"].severity == "critical"
    assert "tensorflow.onednn_version" not in paths  # both 3.7.3


def _verdict(name: str) -> ProbeVerdict:
    probe = all_probes()[name]
    return ProbeVerdict(name=name, group=probe.group, tags=list(probe.tags), status="drift")


def test_hardware_group_blames_the_cpu_model_on_recorded_machines() -> None:
    differences = diff_manifests(_new_capture("amd-epyc-zen4"), _new_capture("intel-xeon-amx"))
    verdicts = [_verdict("hw.reciprocal"), _verdict("hw.eigen_contraction"), _verdict("compile.eager"),
                ProbeVerdict(name="rng.global_seed", group="stable", tags=["rng"], status="identical")]
    assert attribute(verdicts, differences) is False  # stable held
    reciprocal, contraction, canary = verdicts[0].causes[0], verdicts[1].causes[0], verdicts[2].causes[0]
    assert reciprocal.rule == "cpu-arithmetic"
    assert reciprocal.path in ("cpu.model_name", "cpu.vendor", "cpu.family", "cpu.model")
    assert "approximate instructions" in reciprocal.reason and not reciprocal.environment
    assert contraction.rule == "cpu-cache-blocking" and contraction.path.startswith("cpu.caches.")
    assert canary.path and canary.path.startswith(("cpu.", "tensorflow.onednn_isa"))


def test_hardware_rule_yields_to_versions_when_stable_moved() -> None:
    differences = diff_manifests(_new_capture("amd-epyc-zen4"), _new_capture("intel-xeon-amx"))
    version = recorded_manifest("amd-epyc-zen4").model_copy(deep=True)
    bumped = version.model_copy(update={"tensorflow": version.tensorflow.model_copy(update={"version": "2.18.0"})})
    differences += diff_manifests(bumped, recorded_manifest("amd-epyc-zen4"))
    tags = set(all_probes()["hw.layernorm_grad"].tags)
    assert explain(tags, differences, drifted_groups={"stable", "hardware"})[0].path == "tensorflow.version"
    assert explain(tags, differences, drifted_groups={"hardware"})[0].rule == "cpu-arithmetic"


def test_hardware_group_is_a_third_group_in_goldens() -> None:
    hardware = [p for p in all_probes().values() if p.group == "hardware"]
    assert {p.name for p in hardware} >= {"hw.reciprocal", "hw.rsqrt", "hw.divide_sqrt", "hw.softmax_grad",
                                          "hw.layernorm_grad", "hw.batchnorm_grad", "hw.eigen_contraction"}
    # Measured: no setting moves them; so none depends on oneDNN, threads or XLA.
    assert not [p.name for p in hardware if {"onednn", "threads", "xla", "blas"} & set(p.tags)]
    assert ProbeRecord(name="hw.rsqrt", tags=["approx"], group="hardware", status="ok").group == "hardware"
    assert "CPU model" in (GROUPS["hardware"].drift_note or "")


def test_a_variable_tensorflow_sets_on_import_is_never_recorded() -> None:
    # TF writes TF2_BEHAVIOR=1 into os.environ when imported; recorded, it read as drift in strict lockdown.

    assert not is_allowed("TF2_BEHAVIOR")
    assert capture_environment({"TF2_BEHAVIOR": "1", "OMP_NUM_THREADS": "2"}) == {"OMP_NUM_THREADS": "2"}
