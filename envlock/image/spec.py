"""What goes into an image, decided from a golden: environment, labels, base. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from envlock.environ import environment_problem, partition_environment
from envlock.errors import BadInputError
from envlock.image.compat import TfCompat
from envlock.image.data import BaseImage
from envlock.models import LockdownSettings, Manifest
from envlock.redact import needs_redaction

Variant = Literal["cpu", "gpu"]

# Baked into every image whatever the golden says: they only remove sources of run-to-run
# nondeterminism (and TF32 rounding on Ampere+), they never pick a different numeric path on CPU.
DETERMINISM_ENV: dict[str, str] = {
    "TF_DETERMINISTIC_OPS": "1",
    "TF_CUDNN_DETERMINISTIC": "1",
    "TF_CUDNN_USE_AUTOTUNE": "0",
    "PYTHONHASHSEED": "0",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
    "NVIDIA_TF32_OVERRIDE": "0",
}

# Allow-listed variables that describe the recording host's devices, not its numerics: baking
# them would hide or renumber the GPUs of whoever runs the image.
HOST_ONLY_ENV: frozenset[str] = frozenset(
    {"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"}
)

# A newline in an ENV/LABEL value would end the instruction and start a new one (RUN ...): a
# golden must never be able to add build steps. Keys must be names docker takes as they are.
_LINE_BREAKS = ("\n", "\r", "\0")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")

# What a golden's package and platform fields must look like before they reach pip's
# constraints file, a pip option, a label or a tag (PEP 508 names, PEP 440 versions).
DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
PEP440_VERSION = re.compile(
    r"(?:\d{1,9}!)?\d{1,9}(?:\.\d{1,9}){0,9}"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d{0,9})?"
    r"(?:-\d{1,9}|[-_.]?(?:post|rev|r)[-_.]?\d{0,9})?"
    r"(?:[-_.]?dev[-_.]?\d{0,9})?"
    r"(?:\+[a-z0-9]{1,32}(?:[-_.][a-z0-9]{1,32}){0,9})?",
    re.IGNORECASE,
)
PYTHON_VERSION = re.compile(r"\d{1,2}\.\d{1,3}(?:\.\d{1,3})?(?:[a-z]{1,5}\d{0,3})?\+?")
ARCHITECTURE = re.compile(r"[A-Za-z0-9_]{1,32}")
DRIVER_VERSION = re.compile(r"\d{1,6}(?:\.\d{1,6}){0,3}")

VENV = "/opt/venv"
GOLDEN_IN_IMAGE = "/etc/envlock/golden.json"


class ImageSpec(BaseModel):
    """Everything ``render`` needs; JSON-serialisable so reference specs can be committed."""

    model_config = ConfigDict(extra="forbid")

    variant: Variant
    base: BaseImage
    envlock_version: str
    environment: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    venv: str = VENV
    user: str = "envlock"
    uid: int = 1000
    cuda: str | None = None
    minimum_driver: str | None = None


def check_line(what: str, value: str) -> None:
    """Refuse a value that would not stay on its one Dockerfile line."""
    if any(ch in value for ch in _LINE_BREAKS):
        raise BadInputError(f"{what}: contains a line break or NUL; refusing to put it in a Dockerfile")


def check_pairs(what: str, items: Mapping[str, str], name: re.Pattern[str]) -> None:
    """``what`` (e.g. "golden environment") must have valid names and one-line values."""
    for key, value in items.items():
        if not name.fullmatch(key):
            raise BadInputError(f"{what} {key!r}: not a valid name; refusing to put it in a Dockerfile")
        check_line(f"{what} {key}", value)


def check_golden_environment(manifest: Manifest, lockdown: LockdownSettings) -> None:
    """What a golden contributes to ENV is safe to render (called before any slow build work).

    Beyond one line per value: only allow-listed names with short printable values (never
    PYTHONPATH, LD_PRELOAD, ...), and no value that envlock would redact (a credential or a home
    directory): baking the redacted text would change what the job runs with, so it is refused.
    """
    for what, environment in (("golden environment", manifest.environment),
                              ("golden lockdown environment", lockdown.environment)):
        check_pairs(what, environment, ENV_NAME)
        problem = environment_problem(environment)
        if problem:
            raise BadInputError(f"{what}: {problem}; refusing to put it in a Dockerfile")
        for key, value in environment.items():
            if needs_redaction(value):
                raise BadInputError(f"{what} {key}: value carries a credential or a home directory (envlock "
                                    "redacts those); refusing to bake it into an image: re-record the golden "
                                    "without it")


def _check_shape(what: str, value: str | None, shape: re.Pattern[str]) -> None:
    if value is not None and not shape.fullmatch(value):
        raise BadInputError(f"golden {what} {ascii(value[:64])}: not a valid {what}; refusing to build from it")


def check_golden_packages(manifest: Manifest) -> None:
    """The golden's package and platform fields that reach pip, labels and tags have sane shapes."""
    _check_shape("TensorFlow version", manifest.tensorflow.version, PEP440_VERSION)
    _check_shape("Python version", manifest.python.version, PYTHON_VERSION)
    _check_shape("architecture", manifest.host.architecture, ARCHITECTURE)
    _check_shape("NVIDIA driver version", manifest.gpu.driver_version, DRIVER_VERSION)
    for dist in manifest.python.distributions:
        _check_shape("distribution name", dist.name, DISTRIBUTION_NAME)
        _check_shape(f"version of {dist.name}", dist.version, PEP440_VERSION)


def check_golden_for_image(manifest: Manifest, lockdown: LockdownSettings) -> None:
    """Everything a golden contributes to an image, checked before Docker, pip or any file write."""
    check_golden_environment(manifest, lockdown)
    check_golden_packages(manifest)


def image_environment(manifest: Manifest, lockdown: LockdownSettings) -> dict[str, str]:
    """The golden's own numerics environment plus the fixed determinism settings, sorted."""
    # Only what a golden's variable may hold where it is applied (refused ones: run_build warns).
    golden_env = partition_environment({**manifest.environment, **lockdown.environment})[0]
    env = {k: v for k, v in golden_env.items() if k not in HOST_ONLY_ENV}
    env.update(DETERMINISM_ENV)
    # oneDNN's default depends on the CPU (on for AVX512_VNNI/BF16, AMX...): pin what the golden
    # actually ran with, so the image takes the same path on any CPU.
    if "TF_ENABLE_ONEDNN_OPTS" not in env and manifest.tensorflow.onednn_enabled is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if manifest.tensorflow.onednn_enabled else "0"
    # Fixed thread counts make TF's results independent of the container's CPU count.
    if lockdown.intra_op_threads is not None:
        env.setdefault("TF_NUM_INTRAOP_THREADS", str(lockdown.intra_op_threads))
    if lockdown.inter_op_threads is not None:
        env.setdefault("TF_NUM_INTEROP_THREADS", str(lockdown.inter_op_threads))
    env["ENVLOCK_GOLDEN"] = GOLDEN_IN_IMAGE
    env["PATH"] = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return dict(sorted(env.items()))


def image_labels(
    manifest: Manifest, *, variant: Variant, base: BaseImage, golden_digest: str, envlock_version: str,
    compat: TfCompat | None,
) -> dict[str, str]:
    """OCI labels plus envlock's. No creation time: it would make every render and build differ."""
    tf = manifest.tensorflow.version or "none"
    labels = {
        "org.opencontainers.image.title": f"envlock TensorFlow {tf} ({variant})",
        "org.opencontainers.image.description": "Reproduces an envlock golden; the entrypoint verifies it first.",
        "org.opencontainers.image.version": f"tf{tf}-{variant}",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": base.tag,
        "org.opencontainers.image.base.digest": base.image,
        "io.envlock.version": envlock_version,
        "io.envlock.variant": variant,
        "io.envlock.golden.digest": golden_digest,
        "io.envlock.manifest.digest": manifest.digest,
        "io.envlock.tensorflow.version": tf,
        "io.envlock.python.version": manifest.python.version or "none",
    }
    if variant == "gpu" and compat is not None:
        labels["io.envlock.cuda.version"] = compat.cuda
        labels["io.envlock.cudnn.version"] = compat.cudnn
        if compat.minimum_driver:
            labels["io.envlock.nvidia.minimum-driver"] = compat.minimum_driver
    return dict(sorted(labels.items()))


def spec_from_golden(
    manifest: Manifest, lockdown: LockdownSettings, *, variant: Variant, base: BaseImage, golden_digest: str,
    envlock_version: str, compat: TfCompat | None,
) -> ImageSpec:
    check_golden_for_image(manifest, lockdown)
    for what, value in (("base image tag", base.tag), ("base image", base.image), ("envlock version", envlock_version)):
        check_line(what, value)
    spec = ImageSpec(
        variant=variant,
        base=base,
        envlock_version=envlock_version,
        environment=image_environment(manifest, lockdown),
        labels=image_labels(manifest, variant=variant, base=base, golden_digest=golden_digest,
                            envlock_version=envlock_version, compat=compat),
        cuda=compat.cuda if (variant == "gpu" and compat) else None,
        minimum_driver=compat.minimum_driver if (variant == "gpu" and compat) else None,
    )
    check_pairs("label", spec.labels, LABEL_NAME)
    return spec
