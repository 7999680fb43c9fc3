"""One typed row per machine, from a golden or a verify report already parsed from JSON (pure).

A fleet reads thousands of files, each 100-300 KB: full validation of every golden (its manifest,
every sample decoded, the integrity digest) would cost ten times the parse. A row needs a few fields,
so only those are validated (strictly, bounded); a golden's recorded ``numeric_class`` is checked
against its outputs' digests. The goldens whose samples are compared (one per class) are loaded in
full, digest and all (``envlock.fleet.files``). Another reader (Prometheus series
``envlock_numeric_class{class,profile,...}``) builds the same ``MachineRow`` with no probe cells.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from envlock.errors import BadFileError, IntegrityError
from envlock.golden import GOLDEN_KIND, GOLDEN_SCHEMA_VERSION
from envlock.numeric import DEFAULT_PROFILE, ClassEntry, numeric_class, profile_id
from envlock.vocab import RecordStatus

RowKind = Literal["golden", "verify", "prometheus"]
NOT_RECORDED = "class not recorded (a verify report from before numeric classes: re-run `envlock verify` there)"


class ProbeCell(NamedTuple):  # a tuple: a fleet makes hundreds of thousands
    """One probe on one machine. A golden: its status and ``digest``, 16 hex over its outputs'
    sha256s (equal exactly when every output is bit for bit equal). A verify report: its verdict
    against the report's golden and the ULPs measured on the samples."""

    status: str
    digest: str | None = None
    max_ulp: float | None = None


@dataclass(frozen=True)
class MachineRow:
    source: str  # the file, or the series, it came from
    kind: RowKind
    hostname: str | None
    manifest_digest: str | None  # "sha256:<hex>": tells apart machines that share a hostname
    envlock_version: str | None  # None: not recorded (verify reports before 0.4)
    profile: str  # "default", "portable-v1"
    numeric_class: str | None  # None: not recorded
    cells: Mapping[str, ProbeCell] = field(default_factory=dict)  # probe name -> cell; {} from Prometheus
    probe_set: tuple[str, ...] = ()  # the probes the class is over, sorted ((): not known)
    golden_class: str | None = None  # a verify report: the golden's class over the same probes
    cpu: str | None = None

    @property
    def machine(self) -> str:
        """``host@3a3415f8``: the hostname and the first 8 hex of the manifest digest."""
        digest = (self.manifest_digest or "").removeprefix("sha256:")[:8] or "?"
        return f"{self.hostname or '?'}@{digest}"


# ---------------------------------------------------------------- the fields a row reads, validated

_NAME = Annotated[str, Field(min_length=1, max_length=256)]
_CLASS = Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]
_SHA = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
_MAX_PROBES = 4096


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Output(_Read):
    name: _NAME
    sha256: _SHA


class _GoldenProbe(_Read):
    name: _NAME
    status: RecordStatus
    outputs: list[_Output] = Field(default_factory=list, max_length=_MAX_PROBES)


class _Host(_Read):
    hostname: Annotated[str, Field(max_length=255)] | None = None


class _Cpu(_Read):
    model_name: Annotated[str, Field(max_length=256)] | None = None


class _Manifest(_Read):
    digest: _SHA
    host: _Host
    cpu: _Cpu


class _Profile(_Read):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9-]*$")]
    version: Annotated[int, Field(ge=1, le=10_000)]


class _Golden(_Read):
    kind: Literal["envlock.golden"]
    schema_version: Annotated[int, Field(ge=1, le=GOLDEN_SCHEMA_VERSION)]
    envlock_version: Annotated[str, Field(min_length=1, max_length=64)]
    manifest: _Manifest
    probes: list[_GoldenProbe] = Field(min_length=1, max_length=_MAX_PROBES)
    profile: _Profile | None = None
    numeric_class: _CLASS | None = None


class _Verdict(_Read):
    name: _NAME
    status: Literal["identical", "within_tolerance", "drift", "nondeterministic", "skipped", "error"]
    max_ulp: Annotated[float, Field(ge=0)] | None = None


class _Report(_Read):
    reproduces: bool
    golden_digest: Annotated[str, Field(max_length=80)]
    manifest_digest: _SHA
    probes: list[_Verdict] = Field(max_length=_MAX_PROBES)
    numeric_class: _CLASS | None = None
    golden_numeric_class: _CLASS | None = None
    numeric_profile: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z][a-z0-9-]*$")] | None = None
    hostname: Annotated[str, Field(max_length=255)] | None = None
    envlock_version: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    profile: Annotated[str, Field(max_length=80)] | None = None  # the label, "portable v1" (before numeric_profile)


_LABEL = re.compile(r"([a-z][a-z0-9-]{0,63}) v([0-9]{1,5})")


def _report_profile(report: _Report) -> str:
    if report.numeric_profile is not None:
        return report.numeric_profile
    label = _LABEL.fullmatch(report.profile or "")
    return profile_id(label[1], int(label[2])) if label else DEFAULT_PROFILE


def _problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"field '{where}': {first['msg']}"


def outputs_digest(outputs: list[tuple[str, str]]) -> str:
    """16 hex over (name, sha256) pairs in name order: one probe's outputs as one value."""
    text = "\n".join(f"{n}\t{d}" for n, d in sorted(outputs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _unique(names: list[str], path: str) -> None:
    if len(set(names)) != len(names):
        raise BadFileError(path, "a probe appears twice")


def golden_row(path: str, document: Mapping[str, Any]) -> MachineRow:
    try:
        golden = _Golden.model_validate(document)
    except ValidationError as exc:
        raise BadFileError(path, f"not a usable golden: {_problem(exc)}") from None
    _unique([p.name for p in golden.probes], path)
    profile = profile_id(golden.profile.name, golden.profile.version) if golden.profile else DEFAULT_PROFILE
    pairs = {p.name: [(o.name, o.sha256) for o in p.outputs] for p in golden.probes}
    computed = numeric_class([ClassEntry(p.name, p.status, tuple(pairs[p.name])) for p in golden.probes], profile)
    if golden.numeric_class is not None and golden.numeric_class != computed:
        raise IntegrityError(path, f"numeric_class {golden.numeric_class} is not the class of its probes' outputs "
                                   f"({computed}): it was edited after capture")
    # Names interned: 10,000 rows share one copy of each probe's name (a quarter of their memory).
    cells = {sys.intern(p.name): ProbeCell(p.status, outputs_digest(pairs[p.name]) if p.status == "ok" else None)
             for p in golden.probes}
    return MachineRow(source=path, kind="golden", hostname=golden.manifest.host.hostname,
                      manifest_digest=golden.manifest.digest, envlock_version=golden.envlock_version,
                      profile=profile, numeric_class=computed, cells=cells, probe_set=tuple(sorted(cells)),
                      cpu=golden.manifest.cpu.model_name)


def report_row(path: str, document: Mapping[str, Any]) -> MachineRow:
    try:
        report = _Report.model_validate(document)
    except ValidationError as exc:
        raise BadFileError(path, f"not a usable verify report: {_problem(exc)}") from None
    _unique([p.name for p in report.probes], path)
    cells = {sys.intern(p.name): ProbeCell(p.status, None, p.max_ulp) for p in report.probes}
    return MachineRow(source=path, kind="verify", hostname=report.hostname, manifest_digest=report.manifest_digest,
                      envlock_version=report.envlock_version, profile=_report_profile(report),
                      numeric_class=report.numeric_class, cells=cells, probe_set=tuple(sorted(cells)),
                      golden_class=report.golden_numeric_class)


_REPORT_KEYS = ("reproduces", "golden_digest", "manifest_digest", "probes")  # what a verify report always has


def row_of_document(path: str, document: Any) -> MachineRow:
    """A golden (``kind: envlock.golden``) or a verify report (``envlock verify --json``/``--report``)
    as a row; anything else is a BadFileError naming the file (exit 2)."""
    if not isinstance(document, dict):
        raise BadFileError(path, f"not an envlock golden or verify report (a JSON {type(document).__name__})")
    kind = document.get("kind")
    if kind == GOLDEN_KIND:
        return golden_row(path, document)
    if kind is None and all(key in document for key in _REPORT_KEYS):
        return report_row(path, document)
    what = f"kind {kind!r}" if kind is not None else "no 'kind' field, and not a verify report"
    raise BadFileError(path, f"not an envlock golden or verify report ({what})")
