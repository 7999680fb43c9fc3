"""Golden results: what the probe suite produced on a reference machine, sealed with a digest.

A golden holds the reference machine's manifest, the lockdown settings the probes ran under
(seed, op determinism, thread counts, the allow-listed determinism environment), and per probe
and output: dtype, shape, sha256 of the raw bytes, an exact sample of the values (all of them
for small outputs, a fixed strided sample plus min/max/mean/abs-max for large ones) and the
repeat count. ``digest`` is a sha256 over the canonical JSON of everything else, so any edit
after recording is caught on load (``IntegrityError``, exit 2).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from envlock.environ import partition_environment
from envlock.errors import BadFileError, BadInputError, IntegrityError
from envlock.limits import MAX_INTERMEDIATES, MAX_REPEAT
from envlock.models import (
    MANIFEST_SCHEMA_VERSION,
    LockdownSettings,
    Manifest,
    RecordedEnvironment,
    TensorflowInfo,
    canonical_sha256,
    compute_digest,
    load_manifest,
    with_digest,
)
from envlock.models import EnvlockModel as _Model
from envlock.numeric import DEFAULT_PROFILE, ClassEntry, numeric_class, profile_id
from envlock.profiles import Profile, lookup
from envlock.protocol import DTYPE_ITEMSIZE
from envlock.results import ChildResult, ProbeInfo, ProbeRun
from envlock.store import Migration, atomic_write_text, dumps_canonical, load_model, read_json_file
from envlock.vocab import ProbeGroup, RecordStatus

GOLDEN_KIND = "envlock.golden"
GOLDEN_SCHEMA_VERSION = 1
# migrations[n] upgrades a version-n golden to version n+1 (none yet: version 1 is the first).
MIGRATIONS: dict[int, Migration] = {}


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_SAMPLE_ELEMENTS = 4096  # envlock stores at most 256 (FULL_LIMIT); a sample is never bigger
MAX_DIMENSION = 2**40  # a shape entry (or a stride): far beyond any probe, far below overflow


class OutputStats(_Model):
    min: FiniteFloat
    max: FiniteFloat
    mean: FiniteFloat
    abs_max: FiniteFloat


class OutputRecord(_Model):
    name: str
    dtype: str
    shape: list[Annotated[int, Field(ge=0, le=MAX_DIMENSION)]] = Field(max_length=32)
    sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    sample_stride: int = Field(ge=1, le=MAX_DIMENSION)
    sample_b64: str
    stats: OutputStats | None = None

    @model_validator(mode="after")
    def _sample_decodes(self) -> OutputRecord:
        """Checked on load, not when comparing: a broken sample is a bad golden (exit 2)."""
        itemsize = DTYPE_ITEMSIZE.get(self.dtype)
        if itemsize is None:
            raise ValueError(f"unknown dtype {self.dtype!r}")
        if len(self.sample_b64) > MAX_SAMPLE_ELEMENTS * itemsize * 4 // 3 + 4:
            raise ValueError(f"sample_b64 holds more than {MAX_SAMPLE_ELEMENTS} elements")
        try:
            raw = base64.b64decode(self.sample_b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("sample_b64 is not valid base64") from None
        if len(raw) % itemsize:
            raise ValueError(f"sample_b64 is {len(raw)} bytes, not whole {self.dtype} elements")
        return self


class IntermediateRecord(OutputRecord):
    """An intermediate tensor of a probe (``ProbeContext.record``), kept like an output, with the op
    that produced it: explain names the first one that differs (localisation)."""

    op: str | None = Field(default=None, max_length=200)


MAX_PRIMITIVES = 256


class ProbeSource(_Model):
    """Where a probe came from (envlock.probes.user.probe_source); None where unknown."""

    module: str | None = Field(default=None, max_length=256)
    distribution: str | None = Field(default=None, max_length=256)
    version: str | None = Field(default=None, max_length=128)
    file: str | None = Field(default=None, max_length=1024)  # relative to the recording directory, or a base name
    # The digest of the code the probe runs, tagged with its algorithm (envlock.probes.user):
    # "ast-v2:" its module and the user's modules it imports, as syntax trees. "sha256:" (envlock
    # before) hashed the function's text only, which cannot be compared with that: ``sha256`` reads
    # it as unknown (so the probe is compared without a source check, as one from before digests),
    # and the file keeps it as recorded (dumps and digests are unchanged).
    sha256: str | None = Field(default=None, pattern=r"^(sha256|ast-v2):[0-9a-f]{64}$")
    _recorded_sha256: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _comparable_digest(self) -> ProbeSource:
        if self.sha256 is not None and self.sha256.startswith("sha256:"):
            self._recorded_sha256, self.sha256 = self.sha256, None
        return self

    @field_serializer("sha256")
    def _as_recorded(self, value: str | None) -> str | None:
        return self._recorded_sha256 or value

    @field_validator("module", "distribution", "version", "file")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        # A golden is untrusted and verify quotes these in its reasons: no control characters.
        if value is not None and not value.isprintable():
            raise ValueError("must be printable text (no control characters)")
        return value


class ProbeRecord(_Model):
    name: str
    tags: list[str]
    group: ProbeGroup  # "hardware": added after 0.1.0 (old goldens lack it)
    status: RecordStatus
    reason: str | None = None
    outputs: list[OutputRecord] = Field(default_factory=list)
    # Added after 0.1.0 (absent from the shipped goldens, left out of the file while None):
    # intermediate tensors in computation order, and the oneDNN primitives the probe executed
    # ("softmax:jit:avx512_core", from ONEDNN_VERBOSE; [] when oneDNN ran none).
    intermediates: list[IntermediateRecord] | None = Field(default=None, max_length=MAX_INTERMEDIATES)
    onednn_primitives: list[Annotated[str, Field(max_length=200)]] | None = Field(default=None,
                                                                                max_length=MAX_PRIMITIVES)

    # Why a Keras model the probe handed to envlock was not traced (envlock.probes.keras_trace; left
    # out while None): explain says so where it stops at the outputs.
    trace_note: str | None = Field(default=None, max_length=500)
    # Where the probe came from (optional, left out while None): goldens from 0.1.0 and the pytest
    # plugin's records have none, and verify then checks nothing about the probe's code.
    source: ProbeSource | None = None

    @field_validator("outputs")
    @classmethod
    def _unique_outputs(cls, outputs: list[OutputRecord]) -> list[OutputRecord]:
        _refuse_duplicates([o.name for o in outputs], "output")
        return outputs

    @model_serializer(mode="wrap")
    def _omit_unset_additions(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ("intermediates", "onednn_primitives", "source", "trace_note"):
            if name in data and data[name] is None:
                del data[name]
        return data


class GoldenSignature(_Model):
    """An Ed25519 signature over the digest content (see ``envlock.signing``); not part of the digest."""

    algorithm: Literal["ssh-ed25519"]
    key_fingerprint: str = Field(pattern=r"^SHA256:[A-Za-z0-9+/]{43}$")
    value: str = Field(max_length=128)


class ProfileRecord(_Model):
    """The numerics profile a golden was recorded under (``capture --golden --portable``): its name and
    version in envlock's profile table, and the settings it set, so a golden from another envlock is
    checked against this one's table before any of its settings is applied."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")
    version: int = Field(ge=1, le=10_000)
    environment: RecordedEnvironment


class Golden(_Model):
    kind: Literal["envlock.golden"] = "envlock.golden"
    schema_version: int = GOLDEN_SCHEMA_VERSION
    envlock_version: str
    created_at: str
    manifest: Manifest
    lockdown: LockdownSettings
    repeat: int = Field(ge=1, le=MAX_REPEAT)
    probes: list[ProbeRecord] = Field(min_length=1)  # an empty suite would "reproduce" anything
    digest: str = ""
    signature: GoldenSignature | None = None
    # "pytest": the probes are arrays pinned by the envlock pytest plugin (envlock.pytest_plugin),
    # named "<test>::<name>"; verify cannot re-run them. None: recorded by `capture --golden`.
    recorded_by: Literal["pytest"] | None = None
    profile: ProfileRecord | None = None  # recorded under a numerics profile (envlock.profiles)
    # The recording machine's numeric class (envlock.numeric), derived from the outputs; checked on
    # load. Added in 0.4: older goldens lack it (``golden_numeric_class`` computes it for them).
    numeric_class: str | None = Field(default=None, pattern=r"^[0-9a-f]{12}$")

    @field_validator("probes")
    @classmethod
    def _unique_probes(cls, probes: list[ProbeRecord]) -> list[ProbeRecord]:
        _refuse_duplicates([p.name for p in probes], "probe")
        return probes

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


_OMITTED_WHEN_NONE = ("recorded_by", "profile", "numeric_class")


# Left out of the digest: the digest itself, and the signature (made over the digest content).
_NOT_DIGESTED = {"digest", "signature"}


def _refuse_duplicates(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} {name!r} appears twice")
        seen.add(name)


def compute_golden_digest(golden: Golden) -> str:
    return canonical_sha256(golden.model_dump(mode="json", exclude=_NOT_DIGESTED))


def seal(golden: Golden) -> Golden:
    return golden.model_copy(update={"digest": compute_golden_digest(golden)})


def _check_digest_as_written(path: Path | str) -> Callable[[dict[str, Any]], None]:
    """The integrity digest is checked over the document as written, before migrations and defaults:
    a golden from an older envlock lacks fields added since, and must keep its digest."""

    def check(document: dict[str, Any]) -> None:
        digest = document.get("digest")
        if not isinstance(digest, str) or not digest:
            raise IntegrityError(path, "golden has no integrity digest (not written by envlock, or edited)")
        content = {key: value for key, value in document.items() if key not in _NOT_DIGESTED}
        if canonical_sha256(content) != digest:
            raise IntegrityError(path, "integrity digest does not match the content: the golden was modified "
                                       "after it was recorded (re-record it with `envlock capture --golden`)")

    return check


def golden_profile(golden: Golden, path: Path | str) -> Profile | None:
    """The numerics profile ``golden`` was recorded under, as this envlock's table defines it; None when
    it was recorded without one. An unknown name or version, or recorded settings that differ from the
    table's, is a BadFileError (exit 2): a golden's word is never taken for what a profile sets."""
    if golden.profile is None:
        return None
    try:
        profile = lookup(golden.profile.name, golden.profile.version)
    except BadInputError as exc:
        raise BadFileError(path, str(exc)) from None
    if golden.profile.environment != profile.environment:
        differing = sorted(set(golden.profile.environment.items()) ^ set(profile.environment.items()))
        names = sorted({name for name, _ in differing})
        raise BadFileError(path, f"its {profile.label} settings differ from this envlock's table ({', '.join(names)}):"
                                 " re-record it with `envlock capture --golden --portable`")
    _, refused = partition_environment(profile.environment)
    if refused:  # the table itself must pass what any golden's environment must pass before it is applied
        raise BadFileError(path, f"the {profile.label} profile sets values the environment rules refuse: "
                                 + "; ".join(f"{n}: {r}" for n, r in sorted(refused.items())))
    return profile


def load_golden(path: Path | str) -> Golden:
    """Read, check the integrity digest, migrate and validate a golden."""
    golden = load_model(path, Golden, kind=GOLDEN_KIND, current_version=GOLDEN_SCHEMA_VERSION, migrations=MIGRATIONS,
                        check_as_written=_check_digest_as_written(path))
    # The outer digest is only a checksum anyone can recompute: the manifest inside must hold up
    # on its own too (its version is the one this envlock reads, its identity digest is its own).
    inner = golden.manifest
    if inner.schema_version != MANIFEST_SCHEMA_VERSION:
        raise BadFileError(path, f"field 'manifest.schema_version': {inner.schema_version}, but a golden of "
                                 f"this version holds a schema_version {MANIFEST_SCHEMA_VERSION} manifest")
    if inner.digest != compute_digest(inner):
        raise IntegrityError(path, "the manifest's digest does not match the manifest: it was edited after capture")
    if golden.numeric_class is not None and golden.numeric_class != golden_numeric_class(golden):
        raise IntegrityError(path, f"numeric_class {golden.numeric_class} is not the class of its probes' outputs "
                                   f"({golden_numeric_class(golden)}): it was edited after capture")
    return golden


def save_golden(path: Path | str, golden: Golden) -> None:
    """Write atomically, sealing the digest if the caller has not."""
    sealed = golden if golden.digest == compute_golden_digest(golden) else seal(golden)
    # An unsigned golden is written without the field, exactly as before signatures existed.
    exclude = None if sealed.signature else {"signature"}
    atomic_write_text(path, dumps_canonical(sealed.model_dump(mode="json", exclude=exclude)))


def probe_record(probe: ProbeInfo, runs: Sequence[ProbeRun]) -> ProbeRecord:
    """Turn a probe's repeated child runs into its golden record."""
    first = runs[0]
    base: dict[str, Any] = {"name": probe.name, "tags": list(probe.tags), "group": probe.group}
    if probe.source:  # what the child reported: a user probe's module, distribution and digest
        base["source"] = ProbeSource.model_validate(probe.source)
    if first.status != "ok":
        return ProbeRecord(**base, status="skipped", reason=first.reason)
    if any(r.output_hashes != first.output_hashes for r in runs[1:]):
        return ProbeRecord(**base, status="nondeterministic",
                           reason=f"outputs differed between {len(runs)} repeats on the recording machine")
    extra: dict[str, Any] = {}
    if first.intermediates is not None:
        extra["intermediates"] = [IntermediateRecord.model_validate(i.wire()) for i in first.intermediates]
    if first.onednn_primitives is not None:
        extra["onednn_primitives"] = sorted(first.onednn_primitives)
    if first.trace_note:
        extra["trace_note"] = first.trace_note
    return ProbeRecord(**base, status="ok", outputs=[OutputRecord.model_validate(o.wire()) for o in first.outputs],
                       **extra)


def class_entry(record: ProbeRecord) -> ClassEntry:
    """A golden's probe as its numeric class sees it (envlock.numeric)."""
    return ClassEntry(record.name, record.status, tuple((o.name, o.sha256) for o in record.outputs))


def class_entry_of_runs(name: str, runs: Sequence[ProbeRun]) -> ClassEntry:
    """This machine's runs of a probe as the class sees them: what ``probe_record`` would record."""
    if not runs or runs[0].status != "ok":
        return ClassEntry(name, "skipped")
    if any(r.output_hashes != runs[0].output_hashes for r in runs[1:]):
        return ClassEntry(name, "nondeterministic")
    return ClassEntry(name, "ok", tuple((o.name, o.sha256) for o in runs[0].outputs))


def golden_profile_id(golden: Golden) -> str:
    return profile_id(golden.profile.name, golden.profile.version) if golden.profile else DEFAULT_PROFILE


def golden_numeric_class(golden: Golden, names: Iterable[str] | None = None) -> str:
    """The class of the machine that recorded ``golden`` (over ``names``, when given: a verify of some probes)."""
    wanted = None if names is None else set(names)
    return numeric_class([class_entry(p) for p in golden.probes if wanted is None or p.name in wanted],
                         golden_profile_id(golden))


def manifest_with_tf(manifest: Manifest, child_result: ChildResult) -> Manifest:
    """Fill the manifest's TensorFlow section from the child (the parent never imports TF)."""
    if child_result.tf_info is None:
        tf_section = TensorflowInfo(status="error", detail=child_result.tf_info_error)
    else:
        tf_section = TensorflowInfo.model_validate(dict(child_result.tf_info))
    return with_digest(manifest.model_copy(update={"tensorflow": tf_section}))


def load_any_manifest(path: Path | str) -> Manifest:
    """A manifest from a manifest file or from a golden file (its recorded manifest)."""
    data = read_json_file(path)
    if isinstance(data, dict) and data.get("kind") == GOLDEN_KIND:
        return load_golden(path).manifest
    return load_manifest(path)
