"""The package set of an image, resolved on the host and downloaded into a wheelhouse.

Resolution asks pip for a report (``pip install --dry-run --report``) for the image's Python
and platform, with every distribution of the golden as a constraint, so each package lands at
the golden's exact version and only TensorFlow's dependency closure (plus envlock's runtime
dependencies) is installed -- not the golden venv's dev tools. Wheels are fetched with
``pip download --require-hashes`` and re-checked against their sha256 before use.

A side-effect module: pip runs through ``envlock.runner``, and what it caches under the cache
directory (resolutions in ``locks/``, the wheelhouse's sha256 cache) is read with the bounded
reader of ``envlock.store``; a cache entry that cannot be read (damaged, from another envlock, a
FIFO or a huge file in its place) is a cache miss, removed and made again. envlock's own wheel
is ``wheel.py``'s job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from envlock.errors import BadFileError, BadInputError, EnvironmentProblem
from envlock.fingerprint.python_env import normalize_name
from envlock.image.compat import TfCompat
from envlock.image.spec import check_golden_packages
from envlock.models import Manifest
from envlock.runner import Runner, run_streaming
from envlock.store import atomic_write_text, read_json_file, require_regular_file, sha256_of_file

Progress = Callable[[str], None]

TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tensorflow-aarch64", "tf-nightly",
                    "tf-nightly-cpu")
# Part of the resolution cache key: a new envlock whose lock rows differ never reads old ones.
LOCK_CACHE_FORMAT = 2


@dataclass(frozen=True)
class PackageSet:
    requirements: list[str]
    constraints: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LockedWheel:
    name: str
    version: str
    filename: str
    url: str
    sha256: str


def envlock_runtime_requirements() -> list[str]:
    """envlock's own runtime dependencies (no extras): the image must be able to run ``envlock verify``."""
    try:
        requires = metadata.requires("envlock") or []
    except metadata.PackageNotFoundError:
        return []
    return sorted(r for r in requires if "extra ==" not in r)


def package_set(manifest: Manifest, *, variant: str, compat: TfCompat | None,
                envlock_requirements: Iterable[str]) -> PackageSet:
    """What to install: the golden's TensorFlow (+ CUDA wheels for gpu) and envlock's runtime deps."""
    check_golden_packages(manifest)  # names and versions become lines of pip's constraints file
    dists = {normalize_name(d.name): d for d in manifest.python.distributions}
    tf_name = next((n for n in TF_DISTRIBUTIONS if n in dists), None)
    tf_version = manifest.tensorflow.version or (dists[tf_name].version if tf_name else None)
    if tf_version is None:
        raise BadInputError("the golden records no TensorFlow version; capture it where TensorFlow is installed")
    notes: list[str] = []
    if variant == "gpu":
        requirements = [f"tensorflow[and-cuda]=={tf_version}"]
        if tf_name not in (None, "tensorflow"):
            notes.append(f"the golden ran {tf_name}; the GPU image uses tensorflow[and-cuda]=={tf_version} "
                         "(same version, different wheel: CPU results may differ in the last bits)")
    else:
        requirements = [f"{tf_name or 'tensorflow-cpu'}=={tf_version}"]
    skip = {"envlock"} | ({tf_name} if variant == "gpu" and tf_name and tf_name != "tensorflow" else set())
    constraints = [f"{d.name}=={d.version}" for n, d in sorted(dists.items()) if n not in skip]
    if variant == "gpu" and compat is not None:
        # CUDA wheels the golden does not pin: the versions TensorFlow was built and tested with.
        for name, version in sorted(compat.and_cuda.items()):
            if normalize_name(name) not in dists:
                constraints.append(f"{name}=={version}")
    requirements.extend(envlock_requirements)
    return PackageSet(requirements=requirements, constraints=constraints, notes=notes)


def platform_tags(arch: str = "x86_64", glibc: str = "2.36") -> list[str]:
    """manylinux tags a base with this glibc accepts, newest first (pip does not expand them itself)."""
    major, minor = (int(x) for x in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
    return tags + [f"{name}_{arch}" for name, needs in legacy.items() if needs <= minor]


def pip_target_args(python_version: str, arch: str, glibc: str) -> list[str]:
    """pip's options that resolve wheels for the image's interpreter and platform, not this machine's."""
    minor = "".join(python_version.split(".")[:2])
    args = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp", "--abi", f"cp{minor}"]
    for tag in platform_tags(arch, glibc):
        args += ["--platform", tag]
    return args


def resolve(packages: PackageSet, *, python_version: str, arch: str, glibc: str, cache_dir: Path,
            runner: Runner | None = None, progress: Progress = lambda _: None) -> list[LockedWheel]:
    """Exact wheels (name, version, file, sha256) for ``packages``; cached by the inputs' hash."""
    runner = runner or Runner()
    target = pip_target_args(python_version, arch, glibc)
    cache_file = lock_cache_file(packages, target, cache_dir)
    cached = _read_lock_cache(cache_file)
    if cached is not None:
        progress(f"package set: cached resolution {cache_file.name}")
        return cached
    if os.path.lexists(cache_file):
        progress(f"package set: cached resolution {cache_file.name} is damaged or from another envlock; "
                 "resolving again")
        _discard(cache_file)
    progress(f"package set: resolving {len(packages.requirements)} requirements for Python {python_version} {arch}")
    with tempfile.TemporaryDirectory(prefix="envlock-resolve-") as tmp:
        req, cons, report = Path(tmp, "requirements.in"), Path(tmp, "constraints.txt"), Path(tmp, "report.json")
        req.write_text("\n".join(packages.requirements) + "\n")
        cons.write_text("\n".join(packages.constraints) + "\n")
        argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                "--disable-pip-version-check", "--report", str(report), "--target", str(Path(tmp, "t")),
                *target, "-c", str(cons), "-r", str(req)]
        result = runner.run(argv, timeout=1800)
        if result is None or result.returncode != 0 or not report.is_file():
            detail = (result.stderr.strip().splitlines() or ["pip failed"])[-1] if result else "pip did not run"
            raise EnvironmentProblem(f"cannot resolve the image's package set: {detail}")
        lock = parse_report(json.loads(report.read_text()))
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cache_file, json.dumps([asdict(w) for w in lock], indent=1) + "\n")
    return lock


def lock_cache_file(packages: PackageSet, target: list[str], cache_dir: Path) -> Path:
    key_text = json.dumps([LOCK_CACHE_FORMAT, packages.requirements, packages.constraints, target], sort_keys=True)
    return cache_dir / "locks" / (hashlib.sha256(key_text.encode()).hexdigest()[:32] + ".json")


def _read_cache_json(path: Path) -> Any:
    """The JSON of a cache entry, or None when there is none or it cannot be read.

    Read through the bounded reader like any input: a FIFO, device or directory in the entry's
    place is refused without blocking, a huge or deeply nested file without exhausting memory;
    missing, unreadable, not UTF-8, not JSON: all of them a cache miss, never an error.
    """
    try:
        return read_json_file(path)
    except BadFileError:
        return None


def _discard(path: Path) -> None:
    """Remove a cache entry that could not be used, whatever it is, so it is made again: a FIFO or
    a device left in its place would be written through by the atomic writer, not replaced."""
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _read_lock_cache(path: Path) -> list[LockedWheel] | None:
    """The cached lock, or None when there is none or it cannot be trusted (a cache miss, not an error)."""
    rows = _read_cache_json(path)
    fields = set(LockedWheel.__dataclass_fields__)
    if not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(r, dict) and set(r) == fields and all(isinstance(v, str) for v in r.values())
               for r in rows):
        return None
    return [LockedWheel(**row) for row in rows]


def parse_report(report: dict[str, Any]) -> list[LockedWheel]:
    """The wheels of a ``pip install --report`` JSON document, each with its URL and sha256."""
    lock = []
    for item in report.get("install", []):
        info = item["download_info"]
        sha = (info.get("archive_info", {}).get("hashes") or {}).get("sha256")
        if not sha:
            raise EnvironmentProblem(f"the index gave no sha256 for {info['url']}; cannot pin it")
        lock.append(LockedWheel(name=item["metadata"]["name"], version=item["metadata"]["version"],
                                filename=info["url"].rsplit("/", 1)[-1], url=info["url"], sha256=sha))
    return sorted(lock, key=lambda w: normalize_name(w.name))


def file_sha256(path: Path) -> str:
    """A wheel's sha256; a FIFO or device named like a wheel is one line (exit 2), never a hang."""
    return sha256_of_file(path)


class _HashCache:
    """sha256 of wheelhouse files, re-hashed only when size or mtime change (keeps rebuilds fast)."""

    def __init__(self, wheelhouse: Path) -> None:
        self.path = wheelhouse / ".envlock-sha256.json"
        self.entries: dict[str, list[Any]] = {}
        entries = _read_cache_json(self.path)
        if isinstance(entries, dict):
            self.entries = entries
        elif os.path.lexists(self.path):
            _discard(self.path)  # damaged: re-hashing every wheel once is the whole cost

    def sha256(self, file: Path) -> str:
        stat = file.stat()
        entry = self.entries.get(file.name)
        if (isinstance(entry, list) and len(entry) == 3 and entry[0] == stat.st_size and entry[1] == stat.st_mtime_ns
                and isinstance(entry[2], str)):
            return entry[2]
        sha = file_sha256(file)
        self.entries[file.name] = [stat.st_size, stat.st_mtime_ns, sha]
        return sha

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.entries, indent=0, sort_keys=True))


def lock_text(lock: Iterable[LockedWheel]) -> str:
    lines = ["# envlock requirements.lock: the exact wheels in ./wheelhouse and their sha256.",
             "# pip install --no-index --require-hashes --find-links wheelhouse -r requirements.lock"]
    for wheel in sorted(lock, key=lambda w: normalize_name(w.name)):
        lines.append(f"{normalize_name(wheel.name)}=={wheel.version} \\\n    --hash=sha256:{wheel.sha256}")
    return "\n".join(lines) + "\n"


def download(lock: list[LockedWheel], wheelhouse: Path, *, python_version: str, arch: str, glibc: str,
             progress: Progress = lambda _: None) -> None:
    """Make sure every locked wheel is in ``wheelhouse`` with the right sha256 (downloading what is missing)."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    hashes = _HashCache(wheelhouse)
    for wheel in lock:  # pip would block writing into a FIFO named like a wheel; envlock replaces no node
        if os.path.lexists(wheelhouse / wheel.filename):
            require_regular_file(wheelhouse / wheel.filename)
    missing = [w for w in lock if not (wheelhouse / w.filename).is_file()
               or hashes.sha256(wheelhouse / w.filename) != w.sha256]
    if missing:
        progress(f"wheelhouse: downloading {len(missing)} of {len(lock)} wheels into {wheelhouse}")
        with tempfile.NamedTemporaryFile("w", suffix=".lock", delete=False) as need:
            need.write(lock_text(missing))
        try:
            argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--progress-bar", "off",
                    "--disable-pip-version-check", *pip_target_args(python_version, arch, glibc),
                    "-d", str(wheelhouse), "-r", need.name]
            if run_streaming(argv, lambda line: progress("  " + line)) != 0:
                raise EnvironmentProblem("pip download failed for the image's wheels (see the lines above)")
        finally:
            os.unlink(need.name)
    for wheel in lock:
        path = wheelhouse / wheel.filename
        if not path.is_file() or hashes.sha256(path) != wheel.sha256:
            raise EnvironmentProblem(f"{path}: missing or sha256 does not match the lock after download")
    hashes.save()
    progress(f"wheelhouse: {len(lock)} wheels present, sha256 checked")
