"""explain's report (JSON with ``--json``); ``envlock.display.render_explain`` is its text.

Every string in it has been through ``envlock.redact`` (``envlock.explain.run``); the environment
file's text, which keeps this machine's own values raw, travels with it but is never serialised.

Two of its values are structured in memory and one field in the JSON, which keeps the shape it has
always had: a probe's outcome under a candidate (``ProbeOutcome``) is its sentence
("partly: restored a, b"), and the settings beyond the environment a candidate, a finding or the
emitted environment carry (``envlock.explain.families.SETTINGS``) are one field each, named after
the setting (``<setting>``, ``emit_<setting>``). Only a report read from JSON parses the sentence.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, PrivateAttr, SerializerFunctionWrapHandler, model_serializer, model_validator

from envlock.explain.families import SETTINGS, shell_hint
from envlock.explain.localise import Localisation
from envlock.explain.portable import PortableCheck
from envlock.verdict import VerifyReport
from envlock.vocab import CandidateKind, CandidateStatus, FindingStatus

# What one candidate's child did to one drifting probe.
ProbeOutcomeStatus = Literal["identical", "partly", "unchanged", "could not run"]

# Settings beyond the environment, by name (envlock.explain.families.SETTINGS): a CPU list today.
Settings = dict[str, list[int]]


class ProbeOutcome(BaseModel, frozen=True):
    """A drifting probe under one candidate: identical to the golden, partly (some of the outputs that
    differed are restored), unchanged, or it could not run (and why)."""

    status: ProbeOutcomeStatus
    restored: tuple[str, ...] = ()  # partly: the outputs it restored
    reason: str | None = None  # could not run: why

    @property
    def sentence(self) -> str:
        if self.status == "partly":
            return "partly: restored " + ", ".join(self.restored)
        if self.status == "could not run":
            return f"could not run: {self.reason}"
        return self.status

    @property
    def restored_text(self) -> str:
        return "restored " + ", ".join(self.restored)

    @model_serializer(mode="wrap", when_used="json")
    def _as_sentence(self, handler: SerializerFunctionWrapHandler) -> str:
        return self.sentence

    @model_validator(mode="before")
    @classmethod
    def _from_sentence(cls, data: Any) -> Any:
        """A report read from JSON: the sentence ``sentence`` wrote."""
        if not isinstance(data, str):
            return data
        if data.startswith("partly: restored "):
            return {"status": "partly", "restored": tuple(data.removeprefix("partly: restored ").split(", "))}
        if data.startswith("could not run: "):
            return {"status": "could not run", "reason": data.removeprefix("could not run: ")}
        return {"status": data}


IDENTICAL = ProbeOutcome(status="identical")
UNCHANGED = ProbeOutcome(status="unchanged")


def _gather_settings(data: Any, field: str, prefix: str) -> Any:
    """The settings' fields of the JSON (``prefix + setting``) into ``field``."""
    if not isinstance(data, dict) or not any(prefix + s in data for s in SETTINGS):
        return data
    data = dict(data)
    settings = dict(data.get(field) or {})
    for name in SETTINGS:
        value = data.pop(prefix + name, None)
        if value is not None:
            settings[name] = value
    data[field] = settings
    return data


def _flatten_settings(dumped: dict[str, Any], field: str, prefix: str, after: str) -> dict[str, Any]:
    """``field`` as one field per setting (None where unset), in its place after ``after``."""
    if field not in dumped:
        return dumped
    settings = dumped.pop(field) or {}
    flat = {prefix + name: settings.get(name) for name in SETTINGS}
    out: dict[str, Any] = {}
    for key, value in dumped.items():
        out[key] = value
        if key == after:
            out.update(flat)
    out.update({k: v for k, v in flat.items() if k not in out})
    return out


class _FlatSettings(BaseModel):
    """A model whose ``SETTINGS_FIELD`` is written as one JSON field per setting (``SETTINGS_PREFIX`` +
    its name, None where unset) in its place after ``SETTINGS_AFTER``, and read back from them."""

    SETTINGS_FIELD: ClassVar[str] = "settings"
    SETTINGS_PREFIX: ClassVar[str] = ""
    SETTINGS_AFTER: ClassVar[str] = "env"

    @model_validator(mode="before")
    @classmethod
    def _gather(cls, data: Any) -> Any:
        return _gather_settings(data, cls.SETTINGS_FIELD, cls.SETTINGS_PREFIX)

    @model_serializer(mode="wrap")
    def _flatten(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _flatten_settings(handler(self), self.SETTINGS_FIELD, self.SETTINGS_PREFIX, self.SETTINGS_AFTER)


class CandidateOutcome(_FlatSettings):
    id: str
    kind: CandidateKind
    reason: str
    env: dict[str, str | None] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=dict)  # in JSON: one field per setting, named after it
    size: int = 1
    status: CandidateStatus = "not tried (budget)"
    detail: str | None = None
    seconds: float | None = None
    probes: dict[str, ProbeOutcome] = Field(default_factory=dict)


class Finding(_FlatSettings):
    probe: str
    status: FindingStatus = "not proved"
    fixed_by: str | None = None
    alternatives: list[str] = Field(default_factory=list)
    env: dict[str, str | None] = Field(default_factory=dict)
    settings: Settings = Field(default_factory=dict)  # in JSON: one field per setting, named after it
    detail: str = ""
    outputs_differing: list[str] = Field(default_factory=list)
    localisation: Localisation | None = None
    # For a hardware-bound probe: what a run under the portable profile showed here (envlock.explain.portable).
    portable: PortableCheck | None = None

    def proof(self) -> str:
        """The line verify shows instead of its ranked guesses."""
        if self.status == "fixed":
            also = f" (also: {', '.join(self.alternatives)})" if self.alternatives else ""
            return f"fixed by {self.fixed_by}{also}: bitwise identical under it (explain ran it)"
        if self.status == "partly":
            return f"partly fixed by {self.fixed_by}: {self.detail}"
        return self.detail


class ExplainReport(_FlatSettings):
    golden: str
    golden_digest: str
    reproduces: bool
    exit_code: int
    budget_seconds: float
    findings: list[Finding] = Field(default_factory=list)
    candidates: list[CandidateOutcome] = Field(default_factory=list)
    not_tried: list[str] = Field(default_factory=list)
    not_applicable: list[str] = Field(default_factory=list)
    version_differences: list[str] = Field(default_factory=list)
    emit_env: dict[str, str | None] | None = None
    emit_settings: Settings = Field(default_factory=dict)  # in JSON: "emit_" + each setting's name
    emit_complete: bool = False
    notes: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    verify: VerifyReport
    _environment_file: str | None = PrivateAttr(default=None)

    SETTINGS_FIELD: ClassVar[str] = "emit_settings"
    SETTINGS_PREFIX: ClassVar[str] = "emit_"
    SETTINGS_AFTER: ClassVar[str] = "emit_env"

    @property
    def emits(self) -> bool:
        """Whether an environment (or a setting beyond it) was proved to reproduce some probes."""
        return self.emit_env is not None or any(self.emit_settings.values())

    def emitted_hints(self) -> list[str]:
        """How a person gets each emitted setting by hand, in the families' order (each family's shell hint)."""
        return [shell_hint(name, value) for name in SETTINGS if (value := self.emit_settings.get(name))]

    def attach_environment_file(self, text: str) -> None:
        """The ``--emit-env`` text made with the raw values (``envlock.explain.run.environment_text``)."""
        self._environment_file = text

    @property
    def environment_file(self) -> str | None:
        return self._environment_file
