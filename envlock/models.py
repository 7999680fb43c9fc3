"""The manifest: a versioned, typed fingerprint of a machine and its software stack.

Unknown is ``None`` -- never a crash and never the string "unknown"; the display layer
decides how to say it. Every list is sorted before it is stored. Volatile fields
(timestamps, hostname, paths) are listed in ``VOLATILE_FIELDS`` and kept out of the digest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from envlock.environ import check_environment
from envlock.limits import MAX_SEED, MAX_THREADS
from envlock.store import Migration, load_model

MANIFEST_KIND = "envlock.manifest"
MANIFEST_SCHEMA_VERSION = 1
# schema_version n -> n+1 upgrades, applied one step at a time on load (none yet).
MANIFEST_MIGRATIONS: dict[int, Migration] = {}


class EnvlockModel(BaseModel):
    """Base of every model in an envlock file: unknown fields are an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


_Model = EnvlockModel
Count = Annotated[int, Field(ge=0, le=2**63 - 1)]  # cores, bytes, indices: never negative, fits int64
ThreadCount = Annotated[int, Field(ge=0, le=MAX_THREADS)]


# A recorded determinism environment: allow-listed names, bounded printable values. Checked on
# load because a golden is untrusted and its environment is applied to processes and images.
RecordedEnvironment = Annotated[dict[str, str], AfterValidator(check_environment)]


def canonical_json(data: Any) -> str:
    """The canonical JSON of ``data``: sorted keys, no whitespace (what digests and signatures cover)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def canonical_sha256(data: Any) -> str:
    """``sha256:<hex>`` over the canonical JSON of ``data`` (sorted keys, no whitespace)."""
    return "sha256:" + hashlib.sha256(canonical_json(data).encode()).hexdigest()


class HostInfo(_Model):
    os: str | None = None
    distro: str | None = None
    distro_version: str | None = None
    kernel: str | None = None
    architecture: str | None = None
    glibc: str | None = None
    container_runtime: Literal["docker", "kubernetes", "podman", "containerd", "lxc", "none"] | None = None
    hostname: str | None = None


class IsaSummary(_Model):
    """ISA features that change which numeric kernels oneDNN/Eigen/XLA/numpy pick."""

    sse4_1: bool | None = None
    sse4_2: bool | None = None
    avx: bool | None = None
    avx2: bool | None = None
    fma: bool | None = None
    f16c: bool | None = None
    avx512f: bool | None = None
    avx512dq: bool | None = None
    avx512bw: bool | None = None
    avx512vl: bool | None = None
    avx512cd: bool | None = None
    avx512_vnni: bool | None = None
    avx512_bf16: bool | None = None
    avx512_fp16: bool | None = None
    avx_vnni: bool | None = None
    amx_tile: bool | None = None
    amx_bf16: bool | None = None
    amx_int8: bool | None = None
    neon: bool | None = None
    sve: bool | None = None


def _omit_none(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    for name in names:
        if name in data and data[name] is None:
            del data[name]
    return data


class CacheInfo(_Model):
    """One cache level as the OS reports it (sysfs ``cache/index*``), for one instance of it.

    Eigen's contraction blocking reads these sizes (from CPUID), so they can move a matmul's bits.
    """

    level: Count
    type: Literal["Data", "Instruction", "Unified"]
    size_bytes: Count | None = None
    line_bytes: Count | None = None
    ways: Count | None = None  # 0: fully associative (sysfs) or not reported (getconf)
    sets: Count | None = None
    shared_by: Count | None = None  # logical CPUs sharing one instance
    instances: Count | None = None  # how many instances this machine has


class CpuInfo(_Model):
    vendor: str | None = None
    model_name: str | None = None
    family: Count | None = None
    model: Count | None = None
    stepping: Count | None = None
    microcode: str | None = None
    logical_cores: Count | None = None
    physical_cores: Count | None = None
    affinity: list[Count] | None = None
    flags: list[str] = Field(default_factory=list)
    isa: IsaSummary = Field(default_factory=IsaSummary)
    # Added after 0.1.0 (see NOT_RECORDED_WHEN_ABSENT): omitted from the file and the digest while None.
    caches: list[CacheInfo] | None = None

    @model_serializer(mode="wrap")
    def _omit_unrecorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_none(handler(self), ("caches",))


class MemoryInfo(_Model):
    total_bytes: Count | None = None
    numa_nodes: Count | None = None


class BlasLibrary(_Model):
    user_api: str | None = None
    internal_api: str | None = None
    filename: str | None = None
    version: str | None = None
    architecture: str | None = None
    threading_layer: str | None = None
    num_threads: Count | None = None


class NumericInfo(_Model):
    numpy_version: str | None = None
    blas: list[BlasLibrary] = Field(default_factory=list)
    simd_baseline: list[str] | None = None
    simd_dispatch: list[str] | None = None


class GpuDevice(_Model):
    index: Count
    name: str | None = None
    compute_capability: str | None = None
    memory_total_bytes: Count | None = None
    uuid_sha256: str | None = None
    mig_mode: Literal["enabled", "disabled", "unsupported"] | None = None
    ecc_mode: Literal["enabled", "disabled", "unsupported"] | None = None


class GpuInfo(_Model):
    status: Literal["ok", "no_gpu", "no_driver", "nvml_unavailable", "error"]
    detail: str | None = None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    devices: list[GpuDevice] = Field(default_factory=list)


class LoadedLibrary(_Model):
    name: str
    version: str | None = None
    path: str | None = None


class TensorflowInfo(_Model):
    status: Literal["present", "absent", "not_captured", "error"]
    detail: str | None = None
    version: str | None = None
    git_version: str | None = None
    compiler: str | None = None
    is_cuda_build: bool | None = None
    is_rocm_build: bool | None = None
    built_cuda_version: str | None = None
    built_cudnn_version: str | None = None
    build_info: dict[str, Any] | None = None
    onednn_enabled: bool | None = None
    xla_jit: str | None = None
    op_determinism: bool | None = None
    intra_op_threads: Count | None = None
    inter_op_threads: Count | None = None
    physical_devices: list[str] | None = None
    keras_version: str | None = None
    loaded_libraries: list[LoadedLibrary] = Field(default_factory=list)
    # Added after 0.1.0 (see NOT_RECORDED_WHEN_ABSENT): oneDNN's own report (ONEDNN_VERBOSE "info"
    # lines) of its version and of the instruction set it detected; omitted while None.
    onednn_version: str | None = None
    onednn_isa: str | None = None

    @model_serializer(mode="wrap")
    def _omit_unrecorded(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _omit_none(handler(self), ("onednn_version", "onednn_isa"))


class Distribution(_Model):
    name: str
    version: str
    record_sha256: str | None = None


class PythonInfo(_Model):
    version: str | None = None
    implementation: str | None = None
    compiler: str | None = None
    executable: str | None = None
    distributions: list[Distribution] = Field(default_factory=list)


class Manifest(_Model):
    kind: Literal["envlock.manifest"] = "envlock.manifest"
    schema_version: int = MANIFEST_SCHEMA_VERSION
    envlock_version: str
    captured_at: str
    host: HostInfo
    cpu: CpuInfo
    memory: MemoryInfo
    numeric: NumericInfo
    gpu: GpuInfo
    tensorflow: TensorflowInfo
    python: PythonInfo
    environment: RecordedEnvironment = Field(default_factory=dict)
    digest: str = ""


# Fields that change between two captures of the same machine and environment, or that
# say where rather than what: kept in the file, left out of the digest and of ``diff``.
VOLATILE_FIELDS: dict[str, Any] = {
    "digest": True,
    "captured_at": True,
    "envlock_version": True,
    "host": {"hostname": True},
    "python": {"executable": True},
    "tensorflow": {"loaded_libraries": {"__all__": {"path"}}, "detail": True},
    "gpu": {"detail": True},
}


# Identity fields added after 0.1.0. While None they are left out of the file and of
# ``identity_dict`` (so a manifest written before them keeps its digest), and ``diff`` treats one
# that a side lacks as "not recorded" rather than as a difference.
NOT_RECORDED_WHEN_ABSENT: tuple[str, ...] = ("cpu.caches", "tensorflow.onednn_version", "tensorflow.onednn_isa")


def identity_dict(manifest: Manifest) -> dict[str, Any]:
    """The identity fields of a manifest as plain JSON data (what the digest covers)."""
    return manifest.model_dump(mode="json", exclude=VOLATILE_FIELDS)


def compute_digest(manifest: Manifest) -> str:
    return canonical_sha256(identity_dict(manifest))


def with_digest(manifest: Manifest) -> Manifest:
    return manifest.model_copy(update={"digest": compute_digest(manifest)})


class LockdownSettings(_Model):
    """The controls envlock applies before running probes or a user's job.

    ``environment`` is the allow-listed determinism environment in force when the golden
    was recorded (see ``envlock.environ``); ``--golden-env`` reproduces it exactly.
    """

    seed: int = Field(default=42, ge=0, le=MAX_SEED)  # numpy refuses others: exit 2 here, not 3 in TF
    op_determinism: bool = True
    intra_op_threads: ThreadCount | None = None  # 0: TensorFlow's default; negative SIGABRTs TF
    inter_op_threads: ThreadCount | None = None
    environment: RecordedEnvironment = Field(default_factory=dict)


def load_manifest(path: Path | str) -> Manifest:
    """Read a manifest file (validated, migrated); any problem is a one-line BadFileError."""
    return load_model(
        path, Manifest, kind=MANIFEST_KIND, current_version=MANIFEST_SCHEMA_VERSION, migrations=MANIFEST_MIGRATIONS
    )
