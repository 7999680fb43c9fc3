"""`envlock build`: golden -> package set -> wheelhouse -> build context -> (Docker) image.

Every step but the last is plain files; ``--context-only`` stops there, for people who build
elsewhere. The use case of the image package: it decides the order, and the side effects are
its neighbours' -- the third-party wheels ``wheelhouse``, envlock's own wheel ``wheel``, Docker
``docker_engine`` (which imports the docker SDK only when Docker is used).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from envlock.environ import partition_environment, refused_note
from envlock.errors import BadFileError, EnvironmentProblem, IntegrityError
from envlock.golden import load_golden
from envlock.image import compat as compat_table
from envlock.image import data, docker_engine, lockfile, wheelhouse
from envlock.image.data import BaseImage
from envlock.image.render import DOCKERIGNORE, render
from envlock.image.spec import ImageSpec, Variant, check_golden_for_image, check_line, spec_from_golden
from envlock.image.wheel import envlock_wheel
from envlock.signing import TrustedKey, check_signature
from envlock.store import atomic_write_bytes, read_input_bytes, read_input_text
from envlock.version import __version__

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    root = os.environ.get("ENVLOCK_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "envlock")
    return Path(root)


@dataclass
class BuildOptions:
    golden: Path
    variant: Variant = "cpu"
    tag: str | None = None
    base_image: str | None = None
    wheelhouse: Path | None = None
    context_only: Path | None = None
    no_cache: bool = False
    requirements: Path | None = None
    trusted_keys: tuple[TrustedKey, ...] = ()  # when given, the golden must be signed by one of them
    cache_dir: Path = field(default_factory=default_cache_dir)


@dataclass
class BuildResult:
    context_dir: Path
    spec: ImageSpec
    tag: str | None = None
    image_id: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def requirements_file(path: Path) -> list[lockfile.Pin]:
    """The pins of a requirements/lock file (``envlock.image.lockfile``: pinned, hashes kept)."""
    return lockfile.parse_lock(read_input_text(path), path)  # the one reader: regular files only, bounded


@contextlib.contextmanager
def file_errors(where: Path) -> Iterator[None]:
    """A file-system failure (disk full, permissions, a file where a directory belongs) as one line."""
    try:
        yield
    except OSError as exc:
        raise BadFileError(exc.filename or where, exc.strerror or str(exc)) from None


def writable_dir(path: Path, what: str) -> None:
    """Make sure ``path`` is (or can be made) a directory we can write, before minutes of pip work."""
    if path.exists() and not path.is_dir():
        raise BadFileError(path, f"{what} must be a directory, but this is a file")
    with file_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):
        raise BadFileError(path, f"{what} is not writable")


def _arch(golden_arch: str | None) -> str:
    arch = golden_arch or platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch.lower(), arch)


def _resolve_base(options: BuildOptions, python_version: str | None, client: object | None) -> BaseImage:
    """The pinned base: from images/base-images.cfg, or --base-image pinned to its local image ID."""
    if options.base_image is None:
        base = data.base_for_python(python_version)
        # A local image ID pins bytes made on one machine; no registry can supply them.
        pinned_here = client is not None and base.image.startswith("sha256:")
        if pinned_here and docker_engine.image_id(client, base.image) is None:
            raise EnvironmentProblem(f"the pinned base {base.tag} ({base.image[:19]}...) is not on this "
                                     f"Docker host; make it with images/make-base.sh, use --base-image {base.tag}")
        return base
    ref = options.base_image
    check_line("--base-image", ref)
    if "@sha256:" in ref or ref.startswith("sha256:") or client is None:
        return BaseImage(name="command-line", image=ref, tag=ref, python=None)
    image = docker_engine.image_id(client, ref)
    if image is None:
        raise EnvironmentProblem(f"base image {ref} is not on this Docker host (no registry is used); "
                            "make it with images/make-base.sh")
    return BaseImage(name="command-line", image=image, tag=ref, python=None)


def _link_or_copy(src: Path, dst: Path) -> None:
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime_ns == src.stat().st_mtime_ns:
            return
        dst.unlink()
    try:
        os.link(src, dst)  # same file system: instant, and no second copy of a 500 MB wheel
    except OSError:
        shutil.copy2(src, dst)


def _sync_wheels(directory: Path, wheels: list[Path]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    keep = {w.name for w in wheels}
    for old in directory.glob("*.whl"):
        if old.name not in keep:
            old.unlink()  # a stale wheel would change the layer (and could shadow a locked one)
    for wheel in wheels:
        _link_or_copy(wheel, directory / wheel.name)


def _same_content(path: Path, data: bytes) -> bool:
    """Whether ``path`` holds exactly ``data``, read with the bounded reader: whatever sits in the
    context's place (a FIFO, a device, a huge file) is read no further than ``len(data)`` bytes."""
    try:
        return read_input_bytes(path, max_bytes=len(data)) == data
    except BadFileError:
        return False


def _write_if_changed(path: Path, data: bytes, mode: int | None = None) -> None:
    same = _same_content(path, data)
    if not same or (mode is not None and path.stat().st_mode & 0o777 != mode):
        atomic_write_bytes(path, data, mode)


def write_context(context: Path, *, dockerfile: str, lock_text: str, wheels: list[Path], own_lock_text: str,
                  own_wheel: Path, golden: Path, golden_digest: str) -> None:
    """The complete build context; files are rewritten only when their content changed.

    The golden is copied as bytes (read once) and the copy is what gets checked: it must load as
    a golden with ``golden_digest``, the one the image's labels and tag were made from, so a golden
    edited while the build ran can never end up in the image.
    """
    _sync_wheels(context / "wheelhouse", wheels)
    _sync_wheels(context / "envlock", [own_wheel])
    texts = (("Dockerfile", dockerfile), ("requirements.lock", lock_text), (".dockerignore", DOCKERIGNORE),
             ("envlock/self.lock", own_lock_text))
    for name, text in texts:
        _write_if_changed(context / name, text.encode("utf-8"))
    target = context / "envlock" / "golden.json"
    _write_if_changed(target, read_input_bytes(golden))
    try:
        copied = load_golden(target).digest
    except BadFileError as exc:
        raise IntegrityError(golden, f"changed while envlock build was reading it ({exc.problem})") from None
    if copied != golden_digest:
        raise IntegrityError(golden, "changed while envlock build was reading it (a different golden now); "
                                     "run envlock build again")
    _write_if_changed(context / "envlock" / "entrypoint.sh", data.entrypoint_script(), mode=0o755)


def run_build(options: BuildOptions, progress: Progress = lambda _: None) -> BuildResult:
    """Prepare the context and, unless ``context_only``, build the image."""
    start = time.monotonic()
    golden = load_golden(options.golden)
    if options.trusted_keys:
        check_signature(golden, options.golden, options.trusted_keys)
    manifest = golden.manifest
    check_golden_for_image(manifest, golden.lockdown)  # one line, exit 2, before Docker or pip
    # Input files are all read before Docker or the network: a bad one is exit 2, not 3.
    pins = requirements_file(options.requirements) if options.requirements is not None else None
    cache = options.cache_dir
    house = options.wheelhouse or cache / "wheelhouse"
    writable_dir(cache, "the cache directory (ENVLOCK_CACHE_DIR)")
    writable_dir(house, "--wheelhouse")
    if options.context_only is not None:
        writable_dir(options.context_only, "--context-only")
    row = compat_table.lookup(manifest.tensorflow.version)
    warnings: list[str] = []
    refused = refused_note(partition_environment({**manifest.environment, **golden.lockdown.environment})[1])
    warnings += [f"{refused}; they are not put in the image's ENV"] if refused else []
    client = None
    if options.context_only is None:
        client = docker_engine.connect()  # fail fast (exit 3) before minutes of downloads
    if options.variant == "gpu":
        warnings += _gpu_warnings(row, manifest.tensorflow.version, manifest.python.version,
                                  manifest.gpu.driver_version)
    base = _resolve_base(options, manifest.python.version, client)
    spec = spec_from_golden(manifest, golden.lockdown, variant=options.variant, base=base, golden_digest=golden.digest,
                            envlock_version=__version__, compat=row)
    python_minor = ".".join((manifest.python.version or "3.11").split(".")[:2])
    arch = _arch(manifest.host.architecture)
    glibc = data.glibc_for(base, manifest.python.version)
    if pins is not None:
        packages = wheelhouse.PackageSet(
            requirements=[pin.requirement for pin in pins] + wheelhouse.envlock_runtime_requirements(), constraints=[])
    else:
        packages = wheelhouse.package_set(manifest, variant=options.variant, compat=row,
                                          envlock_requirements=wheelhouse.envlock_runtime_requirements())
    warnings += packages.notes
    for line in warnings:
        progress(f"warning: {line}")
    context = options.context_only or cache / "contexts" / f"{options.variant}-{golden.digest.split(':')[-1][:16]}"
    with file_errors(cache):
        lock = wheelhouse.resolve(packages, python_version=python_minor, arch=arch, glibc=glibc, cache_dir=cache,
                                  progress=progress)
        if pins is not None and options.requirements is not None:
            lockfile.check_resolved(pins, lock, options.requirements)  # before any wheel is downloaded
        wheelhouse.download(lock, house, python_version=python_minor, arch=arch, glibc=glibc, progress=progress)
        own = envlock_wheel(__version__, cache_dir=cache, wheelhouse=house, progress=progress)
        own_locked = wheelhouse.LockedWheel(name="envlock", version=__version__, filename=own.name,
                                            url=own.as_uri(), sha256=wheelhouse.file_sha256(own))
        write_context(context, dockerfile=render(spec), lock_text=wheelhouse.lock_text(lock),
                      wheels=[house / w.filename for w in lock], own_lock_text=wheelhouse.lock_text([own_locked]),
                      own_wheel=own, golden=options.golden, golden_digest=golden.digest)
    progress(f"context: {context} ({len(lock) + 1} wheels)")
    result = BuildResult(context_dir=context, spec=spec, warnings=warnings)
    if client is not None:
        tag = options.tag or default_tag(spec, golden.digest)
        result.image_id = docker_engine.build(client, context, tag=tag, nocache=options.no_cache, progress=progress)
        result.tag = tag
    result.seconds = time.monotonic() - start
    return result


def default_tag(spec: ImageSpec, golden_digest: str) -> str:
    tf = spec.labels.get("io.envlock.tensorflow.version", "none")
    # A PEP 440 local version ("2.21.0+cpu") or upper case is not a valid Docker repository name.
    tf = re.sub(r"[^a-z0-9._-]", "-", tf.lower())
    return f"envlock/tf{tf}-{spec.variant}:{golden_digest.split(':')[-1][:12]}"


def _gpu_warnings(row: compat_table.TfCompat | None, tf_version: str | None, python_version: str | None,
                  driver: str | None) -> list[str]:
    if row is None:
        return [f"TensorFlow {tf_version} is not in images/tf-compat.json; CUDA/cuDNN/driver needs unknown "
                "(refresh it with images/refresh.py compat)"]
    warnings = []
    problem = compat_table.driver_problem(row, driver)
    if problem:
        warnings.append(problem)
    if compat_table.python_supported(row, python_version) is False:
        warnings.append(f"TensorFlow {row.tensorflow} is tested with Python {row.python}, not {python_version}")
    return warnings
