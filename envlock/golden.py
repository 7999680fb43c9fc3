"""Golden results: what the probe suite produced on a reference machine, sealed with a digest.

A golden holds the reference machine's manifest, the lockdown settings the probes ran under
(seed, op determinism, thread counts, the allow-listed determinism environment), and per probe
and output: dtype, shape, sha256 of the raw bytes, an exact sample of the values (all of them
for small outputs, a fixed strided sample plus min/max/mean/abs-max for large ones) and the
repeat count. ``digest`` is a sha256 over the canonical JSON of everything else, so any edit
after recording is caught on load (``IntegrityError``, exit 2).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from envlock import __version__
from envlock.errors import IntegrityError
from envlock.models import EnvlockModel as _Model
from envlock.models import LockdownSettings, Manifest, TensorflowInfo, canonical_json, canonical_sha256, with_digest
from envlock.store import Migration, atomic_write_text, dumps_canonical, load_model

GOLDEN_KIND = "envlock.golden"
GOLDEN_SCHEMA_VERSION = 1
# migrations[n] upgrades a version-n golden to version n+1 (none yet: version 1 is the first).
MIGRATIONS: dict[int, Migration] = {}


class OutputStats(_Model):
    min: float
    max: float
    mean: float
    abs_max: float


class OutputRecord(_Model):
    name: str
    dtype: str
    shape: list[int]
    sha256: str
    sample_stride: int = Field(ge=1)
    sample_b64: str
    stats: OutputStats | None = None


class ProbeRecord(_Model):
    name: str
    tags: list[str]
    group: Literal["stable", "canary"]
    status: Literal["ok", "skipped", "nondeterministic"]
    reason: str | None = None
    outputs: list[OutputRecord] = Field(default_factory=list)


class GoldenSignature(_Model):
    """An Ed25519 signature over the digest content (see ``envlock.signing``); not part of the digest."""

    algorithm: Literal["ssh-ed25519"]
    key_fingerprint: str = Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")
    value: str = Field(max_length=128)


class Golden(_Model):
    kind: Literal["envlock.golden"] = "envlock.golden"
    schema_version: int = GOLDEN_SCHEMA_VERSION
    envlock_version: str
    created_at: str
    manifest: Manifest
    lockdown: LockdownSettings
    repeat: int = Field(ge=1)
    probes: list[ProbeRecord]
    digest: str = ""
    signature: GoldenSignature | None = None
    # "pytest": the probes are arrays pinned by the envlock pytest plugin (envlock.pytest_plugin),
    # named "<test>::<name>"; verify cannot re-run them. None: recorded by `capture --golden`.
    recorded_by: Literal["pytest"] | None = None

    def probe(self, name: str) -> ProbeRecord | None:
        return next((p for p in self.probes if p.name == name), None)

    @model_serializer(mode="wrap")
    def _omit_unset_optional_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Optional fields added after 0.1.0 are left out of the file and the digest while unset, so
        # goldens written before they existed keep their digest and new ones keep their old shape.
        data: dict[str, Any] = handler(self)
        for name in _OMITTED_WHEN_NONE:
            if name in data and data[name] is None:
                del data[name]
        return data


_OMITTED_WHEN_NONE = ("recorded_by",)


# Left out of the digest: the digest itself, and the signature (made over the digest content).
_NOT_DIGESTED = {"digest", "signature"}


def compute_golden_digest(golden: Golden) -> str:
    return canonical_sha256(golden.model_dump(mode="json", exclude=_NOT_DIGESTED))


def digest_content_bytes(golden: Golden) -> bytes:
    """The canonical JSON the digest is the sha256 of (what a signature signs)."""
    return canonical_json(golden.model_dump(mode="json", exclude=_NOT_DIGESTED)).encode()


def seal(golden: Golden) -> Golden:
    return golden.model_copy(update={"digest": compute_golden_digest(golden)})


def load_golden(path: Path | str) -> Golden:
    """Read, migrate and validate a golden, then check its integrity digest."""
    golden = load_model(path, Golden, kind=GOLDEN_KIND, current_version=GOLDEN_SCHEMA_VERSION, migrations=MIGRATIONS)
    if not golden.digest:
        raise IntegrityError(path, "golden has no integrity digest (not written by envlock, or edited)")
    expected = compute_golden_digest(golden)
    if golden.digest != expected:
        raise IntegrityError(path, "integrity digest does not match the content: the golden was modified after "
                                   "it was recorded (re-record it with `envlock capture --golden`)")
    return golden


def save_golden(path: Path | str, golden: Golden) -> None:
    """Write atomically, sealing the digest if the caller has not."""
    sealed = golden if golden.digest == compute_golden_digest(golden) else seal(golden)
    # An unsigned golden is written without the field, exactly as before signatures existed.
    exclude = None if sealed.signature else {"signature"}
    atomic_write_text(path, dumps_canonical(sealed.model_dump(mode="json", exclude=exclude)))


def probe_record(probe: Any, runs: list[dict[str, Any]]) -> ProbeRecord:
    """Turn a probe's repeated child runs into its golden record."""
    first = runs[0]
    base = {"name": probe.name, "tags": list(probe.tags), "group": probe.group}
    if first["status"] != "ok":
        return ProbeRecord(**base, status="skipped", reason=first.get("reason"))
    if any(repeat_hashes(r) != repeat_hashes(first) for r in runs[1:]):
        return ProbeRecord(**base, status="nondeterministic",
                           reason=f"outputs differed between {len(runs)} repeats on the recording machine")
    return ProbeRecord(**base, status="ok", outputs=[OutputRecord.model_validate(o) for o in first["outputs"]])


def repeat_hashes(run: dict[str, Any]) -> tuple[str, ...] | None:
    if run.get("status") != "ok":
        return None
    return tuple(o["sha256"] for o in run["outputs"])


def lockdown_settings_for_this_process(environ: dict[str, str], seed: int = 42) -> LockdownSettings:
    """The controls a golden is recorded under: explicit thread counts and today's determinism env."""
    from envlock.fingerprint.environ import capture_environment
    from envlock.locking import default_thread_count

    threads = default_thread_count()
    return LockdownSettings(seed=seed, op_determinism=True, intra_op_threads=threads, inter_op_threads=threads,
                            environment=capture_environment(environ))


def manifest_with_tf(manifest: Manifest, child_result: dict[str, Any]) -> Manifest:
    """Fill the manifest's TensorFlow section from the child (the parent never imports TF)."""
    info = child_result.get("tf_info")
    if info is None:
        tf_section = TensorflowInfo(status="error", detail=child_result.get("tf_info_error"))
    else:
        tf_section = TensorflowInfo.model_validate(info)
    return with_digest(manifest.model_copy(update={"tensorflow": tf_section}))


def capture_golden(*, probe_names: list[str] | None = None, repeat: int = 2) -> Golden:
    """Run the probe suite on this machine in a child process and build a sealed golden."""
    from envlock.capture import capture_manifest
    from envlock.probes.child import run_child
    from envlock.probes.registry import select_probes

    probes = select_probes(probe_names)
    # Snapshot the environment before capturing: collectors may add variables to os.environ
    # (threadpoolctl sets KMP_DUPLICATE_LIB_OK), and the probes must see the user's environment.
    environ = dict(os.environ)
    settings = lockdown_settings_for_this_process(environ)
    manifest = capture_manifest(include_tf=False, environ=environ)
    result = run_child(probe_names=[p.name for p in probes], repeat=repeat, settings=settings, env=environ)
    golden = Golden(
        envlock_version=__version__,
        created_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        manifest=manifest_with_tf(manifest, result),
        lockdown=settings,
        repeat=repeat,
        probes=[probe_record(p, result["runs"][p.name]) for p in probes],
    )
    return seal(golden)
